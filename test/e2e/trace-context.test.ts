/**
 * W3C trace context end to end, against a real `eventful serve` process: a `traceparent` in an
 * event's metadata reaches a subscriber (binary protocol and Server-Sent Events), a consumer
 * group member, and the consumers of a queue bound to the log (as a header of the delivery); a
 * sent message's traceparent header reaches its consumer. An HTTP append or send with a
 * `traceparent` request header puts it on each event or message that has none of its own, and
 * never overrides one that has.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect } from '../../src/client/index.js';
import type { Delivery, RecordedEvent, RemoteEventStore } from '../../src/client/index.js';
import { tempDir } from '../helpers.js';
import { startServerProcess } from './server-process.js';
import type { ServerProcess } from './server-process.js';

// Response bodies are arbitrary JSON taken apart field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const IN_METADATA = '00-11111111111111111111111111111111-aaaaaaaaaaaaaaaa-01';
const IN_HEADER = '00-22222222222222222222222222222222-bbbbbbbbbbbbbbbb-01';
const OWN = '00-33333333333333333333333333333333-cccccccccccccccc-00';
const ON_MESSAGE = '00-44444444444444444444444444444444-dddddddddddddddd-01';
const SEND_HEADER = '00-55555555555555555555555555555555-eeeeeeeeeeeeeeee-01';

let server: ServerProcess;
let client: RemoteEventStore;

before(async () => {
  server = await startServerProcess(tempDir(), ['--durability', 'none']);
  client = await connect(server.tcpUrl, { timeoutMs: 10_000 });
});

after(async () => {
  await client?.close().catch(() => undefined);
  await server?.stop();
});

async function post(p: string, body: unknown, headers: Record<string, string> = {}): Promise<Json> {
  const res = await fetch(server.httpUrl + p, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.ok(res.ok, `${p}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** The first `n` events of an async iterable, or a failure after `ms`. */
async function take<T>(it: AsyncIterable<T>, n: number, ms = 8000): Promise<T[]> {
  const out: T[] = [];
  const iterator = it[Symbol.asyncIterator]();
  const deadline = Date.now() + ms;
  while (out.length < n) {
    const left = deadline - Date.now();
    const r = await Promise.race([iterator.next(), new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), Math.max(0, left)))]);
    if (r === 'timeout') assert.fail(`only ${out.length} of ${n} arrived in ${ms} ms`);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

/** Server-Sent Events of /subscribe/all until `n` events came. */
async function sse(query: string, n: number): Promise<{ events: Json[]; ready: Promise<void> }> {
  const abort = new AbortController();
  const res = await fetch(`${server.httpUrl}/subscribe/all${query}`, { signal: abort.signal });
  assert.equal(res.status, 200);
  const events: Json[] = [];
  let buffer = '';
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  const ready = (async () => {
    while (events.length < n) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (data) events.push(JSON.parse(data.slice(6)));
      }
    }
    abort.abort();
  })().catch(() => undefined);
  return { events, ready };
}

test('a traceparent travels from an HTTP append to subscribers, group members and bound-queue consumers', async () => {
  await post('/queues/payments', { settings: { binding: { filter: { category: 'pay' } } } });
  await post('/groups/ledger', { filter: { category: 'pay' }, from: 'end' });
  const head = ((await (await fetch(`${server.httpUrl}/info`)).json()) as Json).headPosition;
  const subscription = client.subscribeToAll({ from: head + 1, filter: { category: 'pay' } });
  const member = client.groups.join('ledger', { memberName: 'm1' });
  const stream = await sse(`?from=${head + 1}&category=pay`, 3);

  // In the event's metadata; from the request header; the event's own beats the header.
  await post('/streams/pay-1', { events: [{ type: 'Paid', data: { n: 1 }, metadata: { traceparent: IN_METADATA, tenant: 't1' } }] });
  await post('/streams/pay-2', { events: [{ type: 'Paid', data: { n: 2 } }] }, { traceparent: IN_HEADER, tracestate: 'vendor=abc' });
  await post('/streams/pay-3', { events: [{ type: 'Paid', data: { n: 3 }, metadata: { traceparent: OWN } }] }, { traceparent: IN_HEADER });
  // A malformed header is ignored, not refused.
  await post('/streams/other-1', { events: [{ type: 'Noise' }] }, { traceparent: 'not-a-traceparent' });

  const expected = [
    { traceparent: IN_METADATA, tenant: 't1' },
    { traceparent: IN_HEADER, tracestate: 'vendor=abc' },
    { traceparent: OWN },
  ];
  const viaTcp = await take<RecordedEvent>(subscription, 3);
  assert.deepEqual(
    viaTcp.map((e) => e.metadata),
    expected,
    'a subscriber over the binary protocol',
  );
  await stream.ready;
  assert.deepEqual(
    stream.events.map((e) => e.metadata),
    expected,
    'a subscriber over Server-Sent Events',
  );
  const viaGroup = await take<RecordedEvent>(member, 3);
  assert.deepEqual(
    viaGroup.map((e) => e.metadata.traceparent),
    expected.map((m) => m.traceparent),
    'a consumer group member',
  );

  // The bound queue hands out the events where they are: their metadata is the delivery's headers.
  const deliveries: Delivery[] = [];
  for (let i = 0; i < 50 && deliveries.length < 3; i++) deliveries.push(...(await client.queues.receive('payments', { max: 3 - deliveries.length, waitMs: 500 })));
  assert.deepEqual(
    deliveries.map((d) => d.headers),
    expected,
    'bound-queue deliveries carry the metadata as headers',
  );
  await client.queues.ack('payments', deliveries.map((d) => d.receipt));
  const other = (await (await fetch(`${server.httpUrl}/streams/other-1`)).json()) as Json;
  assert.deepEqual(other.events[0].metadata, {}, 'the malformed header was dropped');

  await subscription.close();
  await member.close();
});

test('a sent message carries its traceparent header to the consumer; an HTTP send takes the request header', async () => {
  await post('/queues/emails', {});
  await client.queues.send('emails', [{ body: { to: 'a' }, headers: { traceparent: ON_MESSAGE } }]);
  await post('/queues/emails/messages', { messages: [{ body: { to: 'b' } }, { body: { to: 'c' }, headers: { traceparent: OWN } }] }, { traceparent: SEND_HEADER });

  const consumer = client.queues.consume('emails', { prefetch: 10 });
  const got = await take<Delivery>(consumer, 3);
  assert.deepEqual(
    got.map((d) => [(d.body as { to: string }).to, d.headers.traceparent]),
    [
      ['a', ON_MESSAGE],
      ['b', SEND_HEADER],
      ['c', OWN],
    ],
  );
  await consumer.ack(got.map((d) => d.receipt));
  await consumer.close();

  // And over HTTP receive: the same headers.
  await post('/queues/emails/messages', { messages: [{ body: { to: 'd' } }] }, { traceparent: SEND_HEADER });
  const r = await post('/queues/emails/receive', { max: 1, waitMs: 2000 });
  assert.equal(r.deliveries[0].headers.traceparent, SEND_HEADER);
});
