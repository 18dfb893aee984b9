/**
 * Metrics and logs of a real `eventful serve` process: GET /metrics has every documented metric
 * and its values move with appends (over HTTP and the binary protocol), reads, queue activity,
 * consumer groups and errors; /metrics and /stats need a token exactly when configured to; the
 * JSON logs carry request ids and levels, and no token ever appears in them.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from '../../src/client/index.js';
import type { RemoteEventStore } from '../../src/client/index.js';
import { FRAME, encodeFrame } from '../../src/protocol/codec.js';
import { tempDir } from '../helpers.js';
import { startServerProcess, writeJson } from './server-process.js';
import type { ServerProcess } from './server-process.js';

// Response bodies are arbitrary JSON taken apart field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const ADMIN = 'admin-secret-token-aaaaaaaaaaaa';
const READER = 'reader-secret-token-bbbbbbbbbbb';
const SCRAPER = 'scraper-secret-token-ccccccccc';
const WRONG = 'wrong-secret-token-ddddddddddd';

let plain: ServerProcess;
let client: RemoteEventStore;

before(async () => {
  plain = await startServerProcess(tempDir(), ['--durability', 'always']);
  client = await connect(plain.tcpUrl, { timeoutMs: 10_000 });
});

after(async () => {
  await client?.close().catch(() => undefined);
  await plain?.stop();
});

async function http(base: string, method: string, p: string, body?: unknown, token?: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; json: Json; headers: Headers }> {
  const h: Record<string, string> = { ...headers };
  if (body !== undefined) h['content-type'] = 'application/json';
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  const res = await fetch(base + p, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

/** Samples of the text exposition format: `name{labels}` to value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** The sum of the samples of `name` whose labels include every one of `labels`. */
function value(m: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const [key, v] of m) {
    const brace = key.indexOf('{');
    const n = brace < 0 ? key : key.slice(0, brace);
    if (n !== name) continue;
    const ls = brace < 0 ? '' : key.slice(brace);
    if (Object.entries(labels).every(([k, x]) => ls.includes(`${k}="${x}"`))) {
      sum += v;
      found = true;
    }
  }
  return found ? sum : NaN;
}

async function scrape(base: string): Promise<Map<string, number>> {
  // Readings of queues and groups are shared for half a second: wait that out.
  await new Promise((r) => setTimeout(r, 550));
  const r = await http(base, 'GET', '/metrics');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseMetrics(r.text);
}

const DOCUMENTED = [
  'eventful_info',
  'eventful_append_duration_seconds_bucket',
  'eventful_appended_events_total',
  'eventful_read_page_duration_seconds_count',
  'eventful_read_events_total',
  'eventful_log_write_bytes_total',
  'eventful_log_write_duration_seconds_count',
  'eventful_log_fsync_duration_seconds_count',
  'eventful_http_request_duration_seconds_count',
  'eventful_connections',
  'eventful_connections_opened_total',
  'eventful_errors_total',
  'eventful_log_head_position',
  'eventful_log_size_bytes',
  'eventful_log_segments',
  'eventful_queue_depth',
  'eventful_queue_ready',
  'eventful_queue_in_flight',
  'eventful_queue_delayed',
  'eventful_queue_parked_groups',
  'eventful_queue_consumers',
  'eventful_queue_oldest_unacked_age_seconds',
  'eventful_queue_sent_total',
  'eventful_queue_acked_total',
  'eventful_queue_nacked_total',
  'eventful_queue_redelivered_total',
  'eventful_queue_expired_total',
  'eventful_queue_dropped_total',
  'eventful_queue_rejected_total',
  'eventful_queue_dead_lettered_total',
  'eventful_group_position',
  'eventful_group_lag_positions',
  'eventful_group_lag_events',
  'eventful_group_lag_seconds',
  'eventful_group_members',
  'process_cpu_seconds_total',
  'nodejs_eventloop_lag_seconds',
];

test('/metrics: every documented metric is there, and the values move with what the server does', async () => {
  const base = plain.httpUrl;
  await http(base, 'POST', '/queues/jobs', { settings: { maxDeliveries: 1, deadLetterQueue: 'jobs-dlq' } });
  await http(base, 'POST', '/groups/audit', { filter: { category: 'order' }, from: 'start' });
  const before = await scrape(base);

  // Appends: 3 events over HTTP, 2 over TCP; a read of each kind; a refused append.
  assert.equal((await http(base, 'POST', '/streams/order-1', { events: [{ type: 'A' }, { type: 'B' }, { type: 'C' }] })).status, 201);
  await client.append('order-2', [{ type: 'A' }, { type: 'B' }]);
  await client.readStream('order-2').toArray();
  assert.equal((await client.readAll({ filter: { category: 'order' } }).toArray()).length, 5);
  assert.equal((await http(base, 'GET', '/all?category=order')).json.events.length, 5);
  assert.equal((await http(base, 'POST', '/streams/order-1', { expectedRevision: 0, events: [{ type: 'D' }] })).status, 409);
  // Queues: two sent, one acked, one dead-lettered.
  await http(base, 'POST', '/queues/jobs/messages', { messages: [{ body: 1 }, { body: 2 }] });
  const got = (await http(base, 'POST', '/queues/jobs/receive', { max: 2, waitMs: 2000 })).json.deliveries;
  assert.equal(got.length, 2);
  await http(base, 'POST', '/queues/jobs/ack', { receipts: got[0].receipt });
  await http(base, 'POST', '/queues/jobs/nack', { receipts: got[1].receipt, deadLetter: true });

  const now = await scrape(base);
  const head = (await http(base, 'GET', '/info')).json.headPosition;
  for (const name of DOCUMENTED) assert.ok(!Number.isNaN(value(now, name)), `${name} is exposed`);

  const delta = (name: string, labels?: Record<string, string>): number => value(now, name, labels) - (Number.isNaN(value(before, name, labels)) ? 0 : value(before, name, labels));
  assert.equal(delta('eventful_appended_events_total', { transport: 'http' }), 3);
  assert.equal(delta('eventful_appended_events_total', { transport: 'tcp' }), 2);
  assert.equal(delta('eventful_append_duration_seconds_count', { transport: 'http' }), 1);
  assert.equal(delta('eventful_append_duration_seconds_count', { transport: 'tcp' }), 1);
  assert.equal(delta('eventful_read_events_total', { transport: 'tcp', kind: 'stream' }), 2);
  assert.equal(delta('eventful_read_events_total', { transport: 'tcp', kind: 'all' }), 5);
  assert.equal(delta('eventful_read_events_total', { transport: 'http', kind: 'all' }), 5);
  assert.ok(delta('eventful_log_write_bytes_total') > 0);
  assert.ok(delta('eventful_log_fsync_duration_seconds_count') >= 3, 'durability always: a sync per batch');
  assert.equal(delta('eventful_errors_total', { transport: 'http', code: 'WRONG_EXPECTED_REVISION' }), 1);
  assert.ok(delta('eventful_http_request_duration_seconds_count', { method: 'POST', route: '/streams/:stream', status: '201' }) >= 1);
  assert.equal(value(now, 'eventful_log_head_position'), head);
  assert.ok(value(now, 'eventful_log_size_bytes') > 0);
  assert.equal(value(now, 'eventful_connections', { transport: 'tcp' }), 1);
  assert.ok(value(now, 'eventful_connections_opened_total', { transport: 'http' }) >= 1);
  // Queues, read from queues.stats at scrape time.
  assert.equal(value(now, 'eventful_queue_sent_total', { queue: 'jobs' }), 2);
  assert.equal(value(now, 'eventful_queue_acked_total', { queue: 'jobs' }), 1);
  assert.equal(value(now, 'eventful_queue_dead_lettered_total', { queue: 'jobs' }), 1);
  assert.equal(value(now, 'eventful_queue_depth', { queue: 'jobs' }), 0);
  assert.equal(value(now, 'eventful_queue_depth', { queue: 'jobs-dlq' }), 1);
  assert.ok(value(now, 'eventful_queue_oldest_unacked_age_seconds', { queue: 'jobs-dlq' }) >= 0);
  // The group has read nothing: it lags by every order event.
  assert.equal(value(now, 'eventful_group_lag_events', { group: 'audit' }), 5);
  assert.equal(value(now, 'eventful_group_members', { group: 'audit' }), 0);

  // A deleted queue leaves the metrics.
  await http(base, 'DELETE', '/queues/jobs');
  assert.ok(Number.isNaN(value(await scrape(base), 'eventful_queue_depth', { queue: 'jobs' })));

  // /stats: the same numbers as JSON.
  const stats = (await http(base, 'GET', '/stats')).json;
  assert.equal(stats.headPosition, (await http(base, 'GET', '/info')).json.headPosition, 'the delete was appended too');
  assert.ok(stats.appends.events >= 5);
  assert.equal(stats.connections.tcp, 1);
  assert.equal(stats.errors.byCode.WRONG_EXPECTED_REVISION, 1);
});

test('/metrics and /stats: open on loopback by default; with metricsAuth token, only the metrics or admin role', async () => {
  const dir = tempDir();
  const tokens = [
    { name: 'ops', token: ADMIN, roles: [{ role: 'admin' }] },
    { name: 'reader', token: READER, roles: [{ role: 'read' }] },
    { name: 'prometheus', token: SCRAPER, roles: [{ role: 'metrics' }] },
  ];
  const open = await startServerProcess(path.join(dir, 'a'), ['--config', writeJson(path.join(dir, 'a.json'), { auth: { tokens } })]);
  const locked = await startServerProcess(path.join(dir, 'b'), ['--config', writeJson(path.join(dir, 'b.json'), { auth: { tokens } }), '--metrics-auth', 'token']);
  try {
    assert.match(open.stdout(), /metrics\s+\S+\/metrics\s+\(no token needed\)/);
    assert.equal((await http(open.httpUrl, 'GET', '/metrics')).status, 200, 'auto on a loopback address: open, like the health checks');
    assert.equal((await http(open.httpUrl, 'GET', '/stats')).status, 200);
    assert.equal((await http(open.httpUrl, 'GET', '/info')).status, 401, 'the rest of the API still needs a token');

    assert.match(locked.stdout(), /token with the metrics or admin role/);
    for (const p of ['/metrics', '/stats']) {
      const none = await http(locked.httpUrl, 'GET', p);
      assert.deepEqual([none.status, none.json.code], [401, 'UNAUTHENTICATED'], p);
      const wrong = await http(locked.httpUrl, 'GET', p, undefined, WRONG);
      assert.equal(wrong.status, 401, p);
      const reader = await http(locked.httpUrl, 'GET', p, undefined, READER);
      assert.deepEqual([reader.status, reader.json.code], [403, 'FORBIDDEN'], `${p}: reading streams is not reading metrics`);
      assert.equal((await http(locked.httpUrl, 'GET', p, undefined, SCRAPER)).status, 200, p);
      assert.equal((await http(locked.httpUrl, 'GET', p, undefined, ADMIN)).status, 200, p);
    }
    const scraper = await http(locked.httpUrl, 'GET', '/streams/order-1', undefined, SCRAPER);
    assert.equal(scraper.status, 403, 'the metrics role reads no events');
  } finally {
    await Promise.all([open.stop(), locked.stop()]);
  }
});

test('logs: JSON lines with levels and request ids; no token ever written, whatever the request', async () => {
  const dir = tempDir();
  const tokens = [{ name: 'ops', token: ADMIN, roles: [{ role: 'admin' }] }];
  const server = await startServerProcess(path.join(dir, 'data'), ['--config', writeJson(path.join(dir, 'c.json'), { auth: { tokens } }), '--log-level', 'debug']);
  try {
    const base = server.httpUrl;
    const ok = await http(base, 'POST', '/streams/order-1', { events: [{ type: 'A', metadata: { note: 'hi' } }] }, ADMIN, { 'x-request-id': 'req-from-client-1' });
    assert.equal(ok.status, 201);
    assert.equal(ok.headers.get('x-request-id'), 'req-from-client-1', 'a sane request id from the client is kept');
    const refused = await http(base, 'GET', '/streams/order-1', undefined, WRONG);
    assert.equal(refused.status, 401);
    const generated = refused.headers.get('x-request-id') ?? '';
    assert.match(generated, /^[0-9a-f-]{36}$/);
    const odd = await http(base, 'GET', '/info', undefined, ADMIN, { 'x-request-id': 'not a plain id; with spaces' });
    assert.match(odd.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/, 'an odd one is replaced');
    await http(base, 'GET', `/streams/order-1?token=${WRONG}`, undefined, `  ${ADMIN}`);
    // The binary protocol: a HELLO with a wrong token, refused and logged.
    await new Promise<void>((resolve) => {
      const s = net.connect(Number(new URL(server.tcpUrl).port), '127.0.0.1', () => s.write(encodeFrame(FRAME.HELLO, 1, { version: 1, token: WRONG })));
      s.on('data', () => s.end());
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 300));
    await server.stop();

    const err = server.stderr();
    for (const secret of [ADMIN, WRONG]) assert.ok(!err.includes(secret), `the log holds no token:\n${err}`);
    const lines = err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.length >= 5, err);
    for (const l of lines) {
      assert.match(String(l.level), /^(debug|info|warn|error)$/);
      assert.match(String(l.time), /^\d{4}-\d\d-\d\dT/);
      assert.equal(typeof l.msg, 'string');
    }
    const requests = lines.filter((l) => l.msg === 'request');
    assert.ok(requests.some((l) => l.reqId === 'req-from-client-1' && l.status === 201 && l.route === '/streams/:stream'));
    assert.ok(requests.some((l) => l.reqId === generated && l.status === 401));
    assert.ok(lines.some((l) => l.level === 'warn' && /protocol error/.test(String(l.msg)) && l.code === 'UNAUTHENTICATED'));
    assert.ok(lines.some((l) => l.msg === 'serving' && l.auth === true));
    assert.ok(err.includes('[redacted]'), 'the query-string token is cut from the logged URL');
  } finally {
    await server.stop();
  }
});
