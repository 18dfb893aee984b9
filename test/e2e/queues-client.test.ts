/**
 * Queues end to end through the client (`connect(url).queues`) against one real `eventful serve`
 * process: push consumers with prefetch over TCP and WebSocket, competing consumers on two
 * connections, who owns a lease (a connection owns its consumers' and non-detached receives'
 * leases, and gives them back when it closes; detached leases outlive it), typed errors over the
 * wire, a consumer that resumes across a server restart, and a queue bound to the log.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ConnectionLostError,
  EventfulError,
  InvalidArgumentError,
  LeaseNotOwnedError,
  QueueExistsError,
  QueueFullError,
  QueueNotFoundError,
  ReceiptInvalidError,
  connect,
} from '../../src/client/index.js';
import type { Consumer, Delivery, MessageInput, QueueStats, RemoteEventStore } from '../../src/client/index.js';
import { startServerProcess } from './server-process.js';
import type { ServerProcess } from './server-process.js';

// ---------------------------------------------------------------------------------------------
// One server for the file (the restart test replaces it with a new process on the same ports)

let dataDir: string;
let server: ServerProcess;
const stores: RemoteEventStore[] = [];

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-queues-e2e-'));
  server = await startServerProcess(dataDir);
});

after(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A client that the after hook closes if the test did not. */
async function client(url: string, options: Parameters<typeof connect>[1] = {}): Promise<RemoteEventStore> {
  const s = await connect(url, { timeoutMs: 15_000, ...options });
  stores.push(s);
  return s;
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/** Redeliver at once after a failed delivery (the default back-off starts at 1 s). */
const NO_BACKOFF = { initialMs: 0, maxMs: 0, multiplier: 1, jitter: 0 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true; fails with `what` after `ms`. */
async function eventually(what: string, probe: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

/** Takes deliveries from a consumer one at a time, with a timeout that does not lose one. */
class Taker {
  #it: AsyncIterator<Delivery>;
  #pending: Promise<IteratorResult<Delivery>> | undefined;
  constructor(consumer: Consumer) {
    this.#it = consumer[Symbol.asyncIterator]();
  }
  /** The next delivery, or undefined when none comes within `ms`. */
  async next(ms = 10_000): Promise<Delivery | undefined> {
    if (this.#pending === undefined) {
      this.#pending = this.#it.next();
      // Seen by the race below; a rejection after the test gave up must not go unhandled.
      this.#pending.catch(() => undefined);
    }
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.#pending, new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), ms)))]);
    clearTimeout(timer);
    if (r === 'timeout') return undefined;
    this.#pending = undefined;
    if (r.done === true) assert.fail('the consumer ended');
    return r.value;
  }
  /** Exactly `n` deliveries, each within `ms`. */
  async take(n: number, ms = 10_000): Promise<Delivery[]> {
    const out: Delivery[] = [];
    while (out.length < n) {
      const d = await this.next(ms);
      assert.ok(d !== undefined, `expected ${n} deliveries, got ${out.length}`);
      out.push(d);
    }
    return out;
  }
}

function isError<T extends EventfulError>(cls: abstract new (...args: never[]) => T, code: string, check?: (e: T) => void): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.ok(e instanceof EventfulError);
    assert.equal(e.code, code);
    check?.(e);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------

test('push consumer over TCP and WebSocket: prefetch bounds what is unacked, each message once, every delivery field', async () => {
  for (const kind of ['tcp', 'ws'] as const) {
    const store = await client(kind === 'tcp' ? server.tcpUrl : server.wsUrl);
    const q = `push-${kind}`;
    const info = await store.queues.create(q);
    assert.equal(info.name, q);
    assert.equal(info.stream, `$queue-${q}`);
    assert.equal(info.settings.leaseMs, 30_000);

    const TOTAL = 23;
    const PREFETCH = 5;
    const messages: MessageInput[] = Array.from({ length: TOTAL }, (_, i) =>
      i % 5 === 3
        ? { body: new Uint8Array([i, 0, 255, 7]), headers: { n: String(i), kind: 'bin' } }
        : i % 5 === 4
          ? { body: new Uint8Array([i, 1]), contentType: 'application/x-thing', type: 'Thing', headers: { n: String(i), kind: 'thing' } }
          : { body: { i, kind, nested: { list: [1, 'two', null] } }, headers: { n: String(i), kind: 'json' } },
    );
    const fixedId = randomUUID();
    messages[0] = { ...messages[0]!, id: fixedId };
    const before = Date.now();
    const sent = await store.queues.send(q, messages);
    const afterSend = Date.now();
    assert.equal(sent.ids.length, TOTAL);
    assert.equal(sent.ids[0], fixedId);
    assert.equal(new Set(sent.ids).size, TOTAL);
    assert.equal(sent.duplicates, 0);
    assert.deepEqual([...sent.positions].sort((a, b) => a - b), sent.positions, 'positions in send order');
    await eventually('the queue holds every message', async () => (await store.queues.stats(q)).depth === TOTAL);

    const consumer = store.queues.consume(q, { prefetch: PREFETCH });
    assert.equal(consumer.queue, q);
    const taker = new Taker(consumer);
    const delivered: Delivery[] = [];
    let round = 0;
    while (delivered.length < TOTAL) {
      // Take deliveries without acking: never more than PREFETCH come.
      const held = await taker.take(Math.min(PREFETCH, TOTAL - delivered.length));
      delivered.push(...held);
      if (held.length === PREFETCH) {
        assert.equal(await taker.next(150), undefined, `a delivery beyond prefetch ${PREFETCH} came while ${PREFETCH} were unacked (${kind})`);
        const s = await store.queues.stats(q);
        assert.equal(s.inFlight, PREFETCH);
        assert.equal(s.consumers, 1);
      }
      // Ack in the three ways a client's own connection may: the delivery, the consumer, the queues.
      if (round % 3 === 0) for (const d of held) await d.ack();
      else if (round % 3 === 1) await consumer.ack(held.map((d) => d.receipt));
      else await store.queues.ack(q, held.map((d) => d.receipt));
      round++;
    }
    assert.equal(await taker.next(150), undefined, 'nothing is delivered after every message was acked');
    await consumer.close();

    // Each message exactly once, in log order, with its fields.
    assert.deepEqual(delivered.map((d) => d.id), sent.ids);
    for (let i = 0; i < TOTAL; i++) {
      const d = delivered[i]!;
      assert.equal(d.queue, q);
      assert.equal(d.position, sent.positions[i]);
      assert.equal(d.deliveryCount, 1);
      assert.equal(d.stream, `$queue-${q}`);
      assert.equal(typeof d.receipt, 'string');
      assert.ok(d.receipt.length > 0);
      assert.ok(d.sentAt >= before && d.sentAt <= afterSend, `sentAt ${d.sentAt} not within the send [${before}, ${afterSend}]`);
      assert.ok(d.firstDeliveredAt >= d.sentAt && d.firstDeliveredAt <= Date.now());
      assert.ok(d.leaseExpiresAt >= d.firstDeliveredAt + 29_000 && d.leaseExpiresAt <= d.firstDeliveredAt + 30_000 + 1000, `leaseExpiresAt ${d.leaseExpiresAt - d.firstDeliveredAt} ms after delivery`);
      assert.equal(d.groupKey, undefined);
      assert.deepEqual(d.headers, messages[i]!.headers);
      if (i % 5 === 3) {
        assert.ok(d.body instanceof Uint8Array, `binary body of message ${i} is ${Object.prototype.toString.call(d.body)}`);
        assert.deepEqual([...d.body], [i, 0, 255, 7]);
        assert.equal(d.contentType, 'application/octet-stream');
        assert.equal(d.type, 'message');
      } else if (i % 5 === 4) {
        assert.ok(d.body instanceof Uint8Array);
        assert.deepEqual([...d.body], [i, 1]);
        assert.equal(d.contentType, 'application/x-thing');
        assert.equal(d.type, 'Thing');
      } else {
        assert.deepEqual(d.body, { i, kind, nested: { list: [1, 'two', null] } });
        assert.equal(d.contentType, 'application/json');
        assert.equal(d.type, 'message');
      }
    }
    const stats = await store.queues.stats(q);
    assert.equal(stats.depth, 0);
    assert.equal(stats.inFlight, 0);
    assert.equal(stats.ready, 0);
    assert.equal(stats.totals.acked, TOTAL);
    assert.equal(stats.totals.sent, TOTAL);
    assert.equal(stats.totals.redelivered, 0);
    await eventually('the closed consumer is gone', async () => (await store.queues.stats(q)).consumers === 0);

    // FIFO: groupKey comes with each delivery; one message of a group at a time, in order.
    const f = `fifo-${kind}`;
    await store.queues.create(f, { ordering: 'fifo' });
    const groups = ['a', 'b', 'a', 'b', 'a'];
    const fsent = await store.queues.send(f, groups.map((g, i) => ({ body: { g, i }, groupKey: g })));
    const fc = store.queues.consume(f, { prefetch: 10 });
    const ft = new Taker(fc);
    const order: Delivery[] = [];
    for (const expected of [2, 2, 1]) {
      const got = await ft.take(expected);
      assert.equal(await ft.next(150), undefined, 'a group had two messages in flight at once');
      order.push(...got);
      for (const d of got) await d.ack();
    }
    for (const d of order) {
      assert.equal(d.groupKey, (d.body as { g: string }).g);
      assert.equal(d.position, fsent.positions[(d.body as { i: number }).i]);
      assert.equal(d.deliveryCount, 1);
    }
    for (const g of ['a', 'b']) {
      const inGroup = order.filter((d) => d.groupKey === g).map((d) => (d.body as { i: number }).i);
      assert.deepEqual(inGroup, groups.flatMap((x, i) => (x === g ? [i] : [])), `group ${g} out of order`);
    }
    await fc.close();
    assert.equal((await store.queues.stats(f)).depth, 0);
    await store.close();
  }
});

test('competing consumers on two connections share the messages, none twice', async () => {
  const a = await client(server.tcpUrl);
  const b = await client(server.wsUrl);
  const q = 'compete';
  await a.queues.create(q);
  const ca = a.queues.consume(q, { prefetch: 4 });
  const cb = b.queues.consume(q, { prefetch: 4 });
  await eventually('both consumers are attached', async () => (await a.queues.stats(q)).consumers === 2);

  const TOTAL = 120;
  const sent = await a.queues.send(q, Array.from({ length: TOTAL }, (_, i) => ({ body: { i } })));
  const got: Record<'a' | 'b', Delivery[]> = { a: [], b: [] };
  let count = 0;
  let allIn!: () => void;
  const allDelivered = new Promise<void>((r) => (allIn = r));
  const run = async (c: Consumer, list: Delivery[]): Promise<void> => {
    for await (const d of c) {
      list.push(d);
      await sleep(1); // some work, so that both take turns
      await d.ack();
      if (++count === TOTAL) allIn();
    }
  };
  const runs = [run(ca, got.a), run(cb, got.b)];
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([allDelivered, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`only ${count} of ${TOTAL} delivered`)), 15_000)))]);
  clearTimeout(timer);
  await sleep(300); // anything delivered twice would show up now
  await ca.close();
  await cb.close();
  await Promise.all(runs);

  assert.ok(got.a.length >= 10 && got.b.length >= 10, `the two consumers did not share: ${got.a.length} / ${got.b.length}`);
  const ids = [...got.a, ...got.b].map((d) => d.id);
  assert.equal(ids.length, TOTAL, 'a message was delivered twice');
  assert.deepEqual(new Set(ids), new Set(sent.ids));
  for (const d of [...got.a, ...got.b]) assert.equal(d.deliveryCount, 1);
  const stats = await a.queues.stats(q);
  assert.equal(stats.depth, 0);
  assert.equal(stats.totals.acked, TOTAL);
  await eventually('both consumers are gone', async () => (await a.queues.stats(q)).consumers === 0);
  await a.close();
  await b.close();
});

test('lease ownership: a connection owns its non-detached leases and gives them back when it closes; detached ones run out', async () => {
  const A = await client(server.tcpUrl);
  const B = await client(server.wsUrl);
  const q = 'owned';
  const LEASE = 1500;
  await A.queues.create(q, { leaseMs: LEASE, retryBackoff: NO_BACKOFF });
  const sent = await A.queues.send(q, [1, 2, 3, 4].map((n) => ({ body: { n } })));

  // Non-detached receive on A: B may not settle it, A may.
  const [a1, a2] = await A.queues.receive(q, { max: 2 });
  assert.ok(a1 && a2);
  assert.deepEqual([a1.position, a2.position], sent.positions.slice(0, 2));
  await assert.rejects(B.queues.ack(q, a1.receipt), isError(LeaseNotOwnedError, 'LEASE_NOT_OWNED', (e) => assert.equal(e.details.receipt, a1.receipt)));
  await assert.rejects(B.queues.nack(q, [a1.receipt]), LeaseNotOwnedError);
  await assert.rejects(B.queues.extend(q, a1.receipt, 60_000), LeaseNotOwnedError);
  // All or nothing: a batch with one bad receipt fails and acks nothing (a1 is still held).
  await assert.rejects(A.queues.ack(q, [a1.receipt, 'zz.1.zz']), ReceiptInvalidError);
  await a1.ack();
  // B's failed attempts left B usable.
  assert.equal((await B.queues.stats(q)).inFlight, 1);

  // Detached receive on A: B may settle it.
  const [d3] = await A.queues.receive(q, { detached: true });
  assert.ok(d3);
  assert.equal(d3.position, sent.positions[2]);
  await B.queues.ack(q, d3.receipt);
  await assert.rejects(d3.ack(), isError(ReceiptInvalidError, 'RECEIPT_INVALID', (e) => assert.equal(e.details.reason, 'unknown')));

  // A holds a2 (its own) and d4 (detached), then closes.
  const [d4] = await A.queues.receive(q, { detached: true });
  assert.ok(d4);
  assert.equal(d4.position, sent.positions[3]);
  const closedAt = Date.now();
  await A.close();

  // a2 comes back at once (released, back-off 0); d4 does not: its lease is still running.
  const again = await B.queues.receive(q, { max: 10, waitMs: 5000 });
  const gotAt = Date.now();
  assert.ok(gotAt < d4.leaseExpiresAt, `test too slow: ${gotAt - closedAt} ms after close, past the detached lease`);
  assert.deepEqual(again.map((d) => d.position), [a2.position], 'only the closed connection\'s own lease comes back at once');
  const r2 = again[0]!;
  assert.equal(r2.id, a2.id);
  assert.equal(r2.deliveryCount, 2);
  assert.equal(r2.firstDeliveredAt, a2.firstDeliveredAt);
  assert.ok(gotAt < a2.leaseExpiresAt, 'a2 came back by its lease running out, not by the close');
  let s = await B.queues.stats(q);
  if (Date.now() < d4.leaseExpiresAt) {
    assert.equal(s.inFlight, 2, 'the detached lease is still held after its connection closed');
    assert.equal(s.ready, 0);
  }
  assert.equal(s.totals.redelivered, 1);
  await r2.ack();

  // d4 comes back only once its lease runs out.
  const late = await B.queues.receive(q, { max: 10, waitMs: 5000 });
  const lateAt = Date.now();
  assert.deepEqual(late.map((d) => d.position), [d4.position]);
  assert.ok(lateAt >= d4.leaseExpiresAt - 10, `the detached lease came back ${d4.leaseExpiresAt - lateAt} ms before it ran out`);
  assert.equal(late[0]!.deliveryCount, 2);
  assert.equal(late[0]!.id, d4.id);
  // The old receipts are dead.
  await assert.rejects(B.queues.ack(q, d4.receipt), isError(ReceiptInvalidError, 'RECEIPT_INVALID', (e) => assert.equal(e.details.reason, 'expired')));
  await B.queues.ack(q, late[0]!.receipt);
  s = await B.queues.stats(q);
  assert.equal(s.depth, 0);
  assert.ok(s.totals.expired >= 1);

  // A consumer's leases are its connection's too: B cannot ack them; closing the connection
  // (without closing the consumer) gives them back.
  const C = await client(server.tcpUrl);
  const consumer = C.queues.consume(q, { prefetch: 1 });
  const [m5] = (await C.queues.send(q, [{ body: { n: 5 } }])).positions;
  const c5 = (await new Taker(consumer).take(1))[0]!;
  assert.equal(c5.position, m5);
  await assert.rejects(B.queues.ack(q, c5.receipt), LeaseNotOwnedError);
  await C.close();
  const back = await B.queues.receive(q, { waitMs: 5000 });
  assert.deepEqual(back.map((d) => [d.position, d.deliveryCount]), [[m5, 2]]);
  assert.ok(Date.now() < c5.leaseExpiresAt, 'the consumer lease came back by running out, not by the close');
  await back[0]!.ack();
  assert.equal((await B.queues.stats(q)).depth, 0);
  await B.close();
});

test('errors come back typed over the wire, and the connection stays usable', async () => {
  const store = await client(server.tcpUrl);
  const ws = await client(server.wsUrl);
  const usable = async (): Promise<void> => {
    assert.ok((await store.queues.list()).some((i) => i.name === 'errs'));
  };
  await store.queues.create('errs', { retryBackoff: NO_BACKOFF });

  // QUEUE_NOT_FOUND
  for (const s of [store, ws]) {
    const nf = isError(QueueNotFoundError, 'QUEUE_NOT_FOUND', (e) => assert.equal(e.details.queue, 'nope'));
    await assert.rejects(s.queues.send('nope', [{ body: 1 }]), nf);
    await assert.rejects(s.queues.stats('nope'), nf);
    await assert.rejects(s.queues.receive('nope'), nf);
    await assert.rejects(s.queues.ack('nope', 'a.1.1'), nf);
    await assert.rejects(s.queues.delete('nope'), nf);
    assert.equal(await s.queues.get('nope'), undefined);
    const c = s.queues.consume('nope');
    await assert.rejects(c[Symbol.asyncIterator]().next(), nf);
    await usable();
  }

  // QUEUE_EXISTS
  await assert.rejects(store.queues.create('errs'), isError(QueueExistsError, 'QUEUE_EXISTS', (e) => assert.equal(e.details.queue, 'errs')));
  await usable();

  // INVALID_ARGUMENT for bad settings and options; nothing created
  const bad: Array<Record<string, unknown>> = [{ leaseMs: 0 }, { leaseMs: 'soon' }, { maxDeliveries: 0 }, { leaseMss: 1000 }, { ordering: 'random' }, { retryBackoff: { initialMs: -1 } }, { overflow: 'explode' }];
  for (const settings of bad) {
    await assert.rejects(store.queues.create('bad-settings', settings as never), isError(InvalidArgumentError, 'INVALID_ARGUMENT', (e) => assert.ok(e.message.length > 0)), JSON.stringify(settings));
  }
  assert.equal(await store.queues.get('bad-settings'), undefined);
  await assert.rejects(store.queues.update('errs', { maxDeliveries: 100_000 }), InvalidArgumentError);
  await assert.rejects(store.queues.receive('errs', { max: 0 }), InvalidArgumentError);
  await assert.rejects(store.queues.create('bad name with spaces'), InvalidArgumentError);
  await assert.rejects(store.queues.consume('errs', { prefetch: 0 })[Symbol.asyncIterator]().next(), InvalidArgumentError);
  await assert.rejects(store.queues.send('errs', [{ body: 1, id: 'not-a-uuid' }]), InvalidArgumentError);
  assert.equal((await store.queues.get('errs'))?.settings.maxDeliveries, 5);
  await usable();

  // RECEIPT_INVALID with its reason
  await store.queues.send('errs', [{ body: 1 }, { body: 2 }]);
  const [m1] = await store.queues.receive('errs');
  assert.ok(m1);
  const reason = (r: string) => isError(ReceiptInvalidError, 'RECEIPT_INVALID', (e) => assert.equal(e.details.reason, r));
  await assert.rejects(store.queues.ack('errs', 'garbage'), reason('malformed'));
  await assert.rejects(store.queues.ack('errs', [m1.receipt, m1.receipt]), reason('repeated'));
  await m1.ack();
  await assert.rejects(m1.ack(), reason('unknown'));
  await assert.rejects(store.queues.extend('errs', m1.receipt), reason('unknown'));
  const [m2] = await store.queues.receive('errs');
  assert.ok(m2);
  await m2.nack({ delayMs: 60_000 });
  await assert.rejects(store.queues.ack('errs', m2.receipt), reason('expired'));
  assert.equal(await store.queues.cancel('errs', m2.id), true);
  await usable();

  // QUEUE_FULL: nothing of the send is written
  await store.queues.create('full', { maxLength: 3 });
  await store.queues.send('full', [{ body: 1 }, { body: 2 }]);
  await assert.rejects(
    store.queues.send('full', [{ body: 3 }, { body: 4 }]),
    isError(QueueFullError, 'QUEUE_FULL', (e) => {
      assert.equal(e.retriable, true);
      assert.equal(e.details.queue, 'full');
      assert.equal(e.details.maxLength, 3);
    }),
  );
  await eventually('the full queue holds 2', async () => (await store.queues.stats('full')).depth === 2);
  let s: QueueStats = await store.queues.stats('full');
  assert.equal(s.totals.rejected, 2);
  assert.equal(s.totals.sent, 2);
  await store.queues.send('full', [{ body: 3 }]); // still room for one
  await assert.rejects(ws.queues.send('full', [{ body: 4 }]), QueueFullError);
  await eventually('the full queue holds 3', async () => (await store.queues.stats('full')).depth === 3);
  const bodies = (await store.queues.receive('full', { max: 10 })).map((d) => d.body);
  assert.deepEqual(bodies, [1, 2, 3]);
  s = await store.queues.stats('full');
  assert.equal(s.depth, 3);
  await usable();

  // A consumer whose queue is deleted ends with QUEUE_NOT_FOUND; the connection goes on.
  await store.queues.create('doomed');
  const doomed = ws.queues.consume('doomed');
  await eventually('the consumer is attached', async () => (await store.queues.stats('doomed')).consumers === 1);
  const pending = doomed[Symbol.asyncIterator]().next();
  pending.catch(() => undefined); // it may reject before assert.rejects below looks at it
  await store.queues.delete('doomed');
  await assert.rejects(pending, isError(QueueNotFoundError, 'QUEUE_NOT_FOUND', (e) => assert.equal(e.details.queue, 'doomed')));
  assert.equal(await ws.queues.get('doomed'), undefined);
  await usable();
  await store.close();
  await ws.close();
  // A closed client says so.
  await assert.rejects(store.queues.stats('errs'), ConnectionLostError);
});

test('bound queue: an append to a stream of the bound category is delivered where it is in the log', async () => {
  const store = await client(server.tcpUrl);
  const q = 'billing';
  const info = await store.queues.create(q, { binding: { filter: { category: 'invoice', types: ['InvoiceIssued'] } } });
  assert.deepEqual(info.settings.binding?.filter, { category: 'invoice', types: ['InvoiceIssued'] });
  const consumer = store.queues.consume(q, { prefetch: 10 });
  const taker = new Taker(consumer);

  const id = randomUUID();
  const r = await store.append('invoice-42', [{ id, type: 'InvoiceIssued', data: { total: 99 }, metadata: { by: 'ada' } }]);
  await store.append('invoice-42', [{ type: 'InvoicePaid', data: {} }]); // another type: not taken
  await store.append('invoices-1', [{ type: 'InvoiceIssued', data: {} }]); // another category: not taken
  const r2 = await store.append('invoice-43', [{ type: 'InvoiceIssued', data: new Uint8Array([9, 9]), contentType: 'application/x-raw' }]);

  const [d1, d2] = await taker.take(2);
  assert.ok(d1 && d2);
  assert.equal(d1.stream, 'invoice-42');
  assert.equal(d1.position, r.positions[0]);
  assert.equal(d1.id, id);
  assert.equal(d1.type, 'InvoiceIssued');
  assert.deepEqual(d1.body, { total: 99 });
  assert.deepEqual(d1.headers, { by: 'ada' });
  assert.equal(d1.deliveryCount, 1);
  assert.equal(d1.queue, q);
  assert.equal(d2.stream, 'invoice-43');
  assert.equal(d2.position, r2.positions[0]);
  assert.ok(d2.body instanceof Uint8Array);
  assert.deepEqual([...d2.body], [9, 9]);
  assert.equal(await taker.next(250), undefined, 'an event outside the binding was delivered');
  await consumer.ack([d1.receipt, d2.receipt]);
  await consumer.close();
  const s = await store.queues.stats(q);
  assert.equal(s.depth, 0);
  assert.equal(s.totals.acked, 2);
  // Nothing was copied: the queue's own stream holds no message.
  assert.equal(await store.streamInfo(`$queue-${q}`), undefined);
  await store.close();
});

test('server restart with the client connected: the consumer resumes, unacked messages come again, acked ones never', async () => {
  // Clients an earlier failed test left open would only slow the stop down.
  for (const s of stores.splice(0)) await s.close();
  const tcpPort = portOf(server.tcpUrl);
  const httpPort = portOf(server.httpUrl);
  const states: string[] = [];
  const store = await client(server.tcpUrl, { reconnectDelayMs: 50, reconnectDelayMaxMs: 200, timeoutMs: 20_000, onStateChange: (s) => states.push(s) });
  const q = 'restart';
  await store.queues.create(q, { retryBackoff: NO_BACKOFF });
  const TOTAL = 20;
  const sent = await store.queues.send(q, Array.from({ length: TOTAL }, (_, i) => ({ body: { i }, headers: { i: String(i) } })));
  const consumer = store.queues.consume(q, { prefetch: TOTAL });
  const taker = new Taker(consumer);
  const first = await taker.take(TOTAL);
  assert.deepEqual(first.map((d) => d.id), sent.ids);
  const acked = first.filter((_, i) => i % 3 === 0);
  const unacked = first.filter((_, i) => i % 3 !== 0);
  await consumer.ack(acked.map((d) => d.receipt));

  const stopping = Date.now();
  const code = await server.stop('SIGTERM');
  assert.equal(code, 0, server.stderr());
  assert.ok(Date.now() - stopping < 10_000, `graceful stop took ${Date.now() - stopping} ms`);
  server = await startServerProcess(dataDir, [], { tcpPort, httpPort });

  const again = await taker.take(unacked.length, 15_000);
  assert.deepEqual(new Set(again.map((d) => d.id)), new Set(unacked.map((d) => d.id)), 'the unacked messages, and only they, come again');
  assert.equal(new Set(again.map((d) => d.id)).size, unacked.length, 'a message came twice');
  for (const d of again) {
    const was = first.find((x) => x.id === d.id)!;
    assert.equal(d.position, was.position);
    assert.deepEqual(d.body, was.body);
    assert.deepEqual(d.headers, was.headers);
    assert.equal(d.deliveryCount, 2, `message ${d.position} delivered again with deliveryCount ${d.deliveryCount}`);
    assert.notEqual(d.receipt, was.receipt);
  }
  assert.ok(states.includes('disconnected') && states.lastIndexOf('connected') > states.indexOf('disconnected'), `states: ${states.join(',')}`);
  // A receipt from before the restart is dead.
  await assert.rejects(consumer.ack(unacked[0]!.receipt), ReceiptInvalidError);
  await consumer.ack(again.map((d) => d.receipt));
  assert.equal(await taker.next(500), undefined, 'an acked message came back after the restart');
  await consumer.close();
  const s = await store.queues.stats(q);
  assert.equal(s.depth, 0);
  assert.equal(s.inFlight, 0);
  await store.close();
});

test('a server with a WebSocket consumer connected shuts down promptly (the closing handshake is read)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-ws-stop-'));
  const server = await startServerProcess(dir);
  try {
    const client = await connect(server.wsUrl, { reconnect: false });
    await client.queues.create('ws-stop');
    const consumer = client.queues.consume('ws-stop', { prefetch: 10 });
    await client.queues.send('ws-stop', [{ body: 1 }]);
    const it = consumer[Symbol.asyncIterator]();
    assert.deepEqual((await it.next()).value!.body, 1);
    const started = Date.now();
    assert.equal(await server.stop(), 0);
    assert.ok(Date.now() - started < 5000, `stopped in ${Date.now() - started} ms`);
    await client.close().catch(() => undefined);
  } finally {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serve --queue-auto-create makes a queue on its first send; without it the send is QUEUE_NOT_FOUND', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-autocreate-'));
  const auto = await startServerProcess(dir, ['--queue-auto-create']);
  try {
    const client = await connect(auto.tcpUrl, { reconnect: false });
    const r = await client.queues.send('made-on-use', [{ body: 'hi' }]);
    assert.equal(r.ids.length, 1);
    assert.equal((await client.queues.get('made-on-use'))?.settings.leaseMs, 30_000, 'default settings');
    const [d] = await client.queues.receive('made-on-use', { max: 1, waitMs: 2000 });
    assert.equal(d?.body, 'hi');
    await client.close();
  } finally {
    await auto.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  // The main server of this file runs without the flag.
  const plain = await connect(server.tcpUrl, { reconnect: false });
  await assert.rejects(plain.queues.send('never-made', [{ body: 1 }]), QueueNotFoundError);
  await plain.close();
});
