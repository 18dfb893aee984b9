/**
 * The HTTP JSON API end to end, against real `eventful serve` processes: appends, reads and
 * paging, expected revisions, idempotency, $all filters, binary data, CloudEvents, bad input
 * (each a 4xx with a stable code, a message that says what was expected, and nothing written),
 * token auth with stream-scoped roles, the refusal to listen on a public address without auth,
 * and that /openapi.json stays true: every route the server answers is documented, and every
 * response this file received matches the schema documented for its path, method and status.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FormatRegistry, Type } from '@sinclair/typebox';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { isUuid } from '../../src/core/ids.js';
import { ensureDashboardBuilt } from '../dashboard/build.js';
import { tempDir } from '../helpers.js';
import { cliArgs, startServerProcess, writeJson } from './server-process.js';
import type { ServerProcess } from './server-process.js';

// Response bodies are arbitrary JSON that the tests take apart field by field and compare with
// deepEqual; their shape is checked against the OpenAPI document at the end, not by the compiler.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const HTTP_BODY_BYTES_MAX = 2_000_000;
const EVENT_BYTES_MAX = 1_048_576;
const HTTP_READ_EVENTS_MAX = 1000; // the default

// ---------------------------------------------------------------------------------------------
// Requests, recorded for the OpenAPI checks at the end

interface Exchange {
  server: 'main' | 'auth';
  method: string;
  /** Path as sent (still URL-encoded), without the query. */
  path: string;
  requestContentType: string | undefined;
  requestJson: unknown;
  status: number;
  contentType: string;
  body: Json;
}

const exchanges: Exchange[] = [];

interface CallOptions {
  /** A value to send as JSON (content type application/json unless `contentType` is given). */
  json?: unknown;
  /** Raw body. */
  raw?: string | Buffer;
  contentType?: string;
  token?: string;
  headers?: Record<string, string>;
}

interface Reply {
  status: number;
  body: Json;
  headers: Headers;
}

let main: ServerProcess;
let authServer: ServerProcess;

async function call(server: 'main' | 'auth', method: string, pathAndQuery: string, o: CallOptions = {}): Promise<Reply> {
  const base = server === 'main' ? main.httpUrl : authServer.httpUrl;
  const headers: Record<string, string> = { ...o.headers };
  let body: string | Buffer | undefined;
  if (o.json !== undefined) {
    body = JSON.stringify(o.json);
    headers['content-type'] = o.contentType ?? 'application/json';
  } else if (o.raw !== undefined) {
    body = o.raw;
    if (o.contentType !== undefined) headers['content-type'] = o.contentType;
  }
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  const res = await fetch(base + pathAndQuery, { method, headers, body, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  const contentType = res.headers.get('content-type') ?? '';
  let parsed: Json = text;
  if (contentType.startsWith('application/json')) parsed = JSON.parse(text);
  exchanges.push({
    server,
    method,
    path: pathAndQuery.split('?')[0]!,
    requestContentType: headers['content-type'],
    requestJson: o.json,
    status: res.status,
    contentType,
    body: parsed,
  });
  return { status: res.status, body: parsed, headers: res.headers };
}

const get = (p: string, o?: CallOptions) => call('main', 'GET', p, o);
const post = (p: string, json: unknown, o?: CallOptions) => call('main', 'POST', p, { ...o, json });

/** Asserts an error reply: status, stable code, and a message matching `message`. */
function assertError(r: Reply, status: number, code: string, message: RegExp, what = ''): void {
  const where = `${what} -> ${r.status} ${JSON.stringify(r.body)}`;
  assert.equal(r.status, status, where);
  assert.equal(r.body?.code, code, where);
  assert.match(r.body.message, message, where);
  assert.equal(typeof r.body.details, 'object', where);
}

// ---------------------------------------------------------------------------------------------
// What was validly written to the main server, by position: the whole log must equal this.

interface Stored {
  position: number;
  stream: string;
  revision: number;
  type: string;
  contentType: string;
  data?: unknown;
  dataBase64?: string;
  metadata: Record<string, unknown>;
}

const model = new Map<number, Stored>();

/** Records a successful append of `events` (already in their stored form) in the model. */
function written(stream: string, result: { positions: number[]; revision: number }, events: Array<Omit<Stored, 'position' | 'stream' | 'revision'>>): void {
  assert.equal(result.positions.length, events.length);
  result.positions.forEach((position, i) => {
    const revision = result.revision - (events.length - 1) + i;
    const prior = model.get(position);
    const e: Stored = { position, stream, revision, ...events[i]! };
    if (prior !== undefined) assert.deepEqual(prior, e, `position ${position} written twice with different content`);
    model.set(position, e);
  });
}

const jsonEvent = (type: string, data: unknown = null, metadata: Record<string, unknown> = {}) => ({ type, contentType: 'application/json', data, metadata });

function stored(e: Json): Stored {
  const out: Stored = { position: e.position, stream: e.stream, revision: e.revision, type: e.type, contentType: e.contentType, metadata: e.metadata };
  if ('data' in e) out.data = e.data;
  if ('dataBase64' in e) out.dataBase64 = e.dataBase64;
  return out;
}

async function headPosition(): Promise<number> {
  const r = await get('/info');
  assert.equal(r.status, 200);
  return r.body.headPosition as number;
}

// ---------------------------------------------------------------------------------------------
// Servers

const ADMIN_TOKEN = randomBytes(24).toString('base64url'); // 32 characters
const WRITER_TOKEN = randomBytes(24).toString('base64url');

// The servers' data directories are removed here, after the servers stop: test/helpers.ts's
// tempDir() cleans up in an `after` hook that runs before this file's, under a running server.
const dataDirs: string[] = [];
function dataDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-http-'));
  dataDirs.push(d);
  return d;
}

before(async () => {
  const limits = writeJson(path.join(tempDir(), 'limits.json'), { limits: { httpBodyBytesMax: HTTP_BODY_BYTES_MAX, eventBytesMax: EVENT_BYTES_MAX } });
  const auth = writeJson(path.join(tempDir(), 'auth.json'), {
    auth: {
      tokens: [
        { name: 'admin', token: ADMIN_TOKEN, roles: [{ role: 'admin' }] },
        { name: 'orders-writer', token: WRITER_TOKEN, roles: [{ role: 'write', streams: 'order-' }, { role: 'read', streams: 'order-' }] },
      ],
    },
  });
  [main, authServer] = await Promise.all([startServerProcess(dataDir(), ['--config', limits]), startServerProcess(dataDir(), ['--config', auth])]);
});

after(async () => {
  const codes = await Promise.all([main?.stop(), authServer?.stop()]);
  for (const d of dataDirs) fs.rmSync(d, { recursive: true, force: true });
  // Bad input is the caller's problem: none of it may have been logged as a server failure.
  assert.doesNotMatch(main.stderr(), /"level":"error"/, main.stderr());
  assert.doesNotMatch(authServer.stderr(), /"level":"error"/, authServer.stderr());
  assert.deepEqual(codes, [0, 0], 'both servers shut down cleanly');
});

// ---------------------------------------------------------------------------------------------

test('append and read a stream: positions and revision, paging with next, expected revisions, idempotent retries', async () => {
  const placed = randomUUID();
  const paid = randomUUID();
  const first = { expectedRevision: 'no_stream', events: [{ id: placed, type: 'OrderPlaced', data: { total: 10 }, metadata: { by: 'alice' } }, { id: paid, type: 'OrderPaid', data: { total: 10 } }] };
  const r1 = await post('/streams/order-1', first);
  assert.equal(r1.status, 201, JSON.stringify(r1.body));
  assert.deepEqual(r1.body, { positions: [1, 2], revision: 1 });
  written('order-1', r1.body, [jsonEvent('OrderPlaced', { total: 10 }, { by: 'alice' }), jsonEvent('OrderPaid', { total: 10 })]);

  const o2id = randomUUID();
  const r2 = await post('/streams/order-2', { events: [{ id: o2id, type: 'OrderPlaced', data: { total: 5 } }] });
  assert.deepEqual([r2.status, r2.body], [201, { positions: [3], revision: 0 }]);
  written('order-2', r2.body, [jsonEvent('OrderPlaced', { total: 5 })]);

  const r3 = await post('/streams/user-1', { events: [{ type: 'UserRegistered', data: { name: 'Ann' } }] });
  assert.deepEqual([r3.status, r3.body], [201, { positions: [4], revision: 0 }]);
  written('user-1', r3.body, [jsonEvent('UserRegistered', { name: 'Ann' })]);

  // `orders-1` shares the prefix `order` with order-*, but not the category.
  const r4 = await post('/streams/orders-1', { events: [{ type: 'OrdersArchived' }] });
  assert.deepEqual([r4.status, r4.body], [201, { positions: [5], revision: 0 }]);
  written('orders-1', r4.body, [jsonEvent('OrdersArchived')]);

  const r5 = await post('/streams/order-1', { expectedRevision: 1, events: [{ type: 'OrderShipped' }, { type: 'OrderDelivered', data: [1, 'two'] }, { type: 'OrderClosed', data: 'done' }] });
  assert.deepEqual([r5.status, r5.body], [201, { positions: [6, 7, 8], revision: 4 }]);
  written('order-1', r5.body, [jsonEvent('OrderShipped'), jsonEvent('OrderDelivered', [1, 'two']), jsonEvent('OrderClosed', 'done')]);

  // The whole stream, every field.
  const all = await get('/streams/order-1');
  assert.equal(all.status, 200);
  assert.equal(all.body.next, null);
  assert.deepEqual(all.body.events.map((e: Json) => e.revision), [0, 1, 2, 3, 4]);
  assert.deepEqual(all.body.events.map(stored), [...model.values()].filter((e) => e.stream === 'order-1'));
  assert.deepEqual(all.body.events.slice(0, 2).map((e: Json) => e.id), [placed, paid]);
  for (const e of all.body.events) {
    assert.ok(isUuid(e.id), e.id);
    assert.ok(Number.isInteger(e.timestamp) && Math.abs(e.timestamp - Date.now()) < 60_000, String(e.timestamp));
  }

  // Paging forwards: `next` is the revision to continue from, null at the end.
  const p1 = await get('/streams/order-1?limit=2');
  assert.deepEqual([p1.body.events.map((e: Json) => e.revision), p1.body.next], [[0, 1], 2]);
  const p2 = await get(`/streams/order-1?from=${p1.body.next}&limit=2`);
  assert.deepEqual([p2.body.events.map((e: Json) => e.revision), p2.body.next], [[2, 3], 4]);
  const p3 = await get(`/streams/order-1?from=${p2.body.next}&limit=2`);
  assert.deepEqual([p3.body.events.map((e: Json) => e.revision), p3.body.next], [[4], null]);
  // An exact page ends with next null too: no empty page after it.
  const exact = await get('/streams/order-1?from=3&limit=2');
  assert.deepEqual([exact.body.events.map((e: Json) => e.revision), exact.body.next], [[3, 4], null]);
  // Backwards, from the end and from a revision.
  const b1 = await get('/streams/order-1?direction=backwards&limit=2');
  assert.deepEqual([b1.body.events.map((e: Json) => e.revision), b1.body.next], [[4, 3], 2]);
  const b2 = await get(`/streams/order-1?from=${b1.body.next}&direction=backwards&limit=2`);
  assert.deepEqual([b2.body.events.map((e: Json) => e.revision), b2.body.next], [[2, 1], 0]);
  const b3 = await get('/streams/order-1?from=end&direction=backwards&limit=10');
  assert.deepEqual([b3.body.events.map((e: Json) => e.revision), b3.body.next], [[4, 3, 2, 1, 0], null]);
  assert.deepEqual((await get('/streams/order-1?from=start')).body.events.length, 5);
  assert.deepEqual((await get('/streams/order-1?from=end')).body, { events: [], next: null });
  // A stream with no events reads as empty (only /info says 404).
  assert.deepEqual(await get('/streams/never-1').then((r) => [r.status, r.body]), [200, { events: [], next: null }]);

  // Expected revision mismatches: 409 with the stream's actual revision, nothing written.
  const head = await headPosition();
  const w1 = await post('/streams/order-1', { expectedRevision: 2, events: [{ type: 'Late' }] });
  assertError(w1, 409, 'WRONG_EXPECTED_REVISION', /expected revision 2.*at 4/);
  assert.deepEqual([w1.body.details.actualRevision, w1.body.details.stream], [4, 'order-1']);
  const w2 = await post('/streams/order-1', { expectedRevision: 'no_stream', events: [{ type: 'Late' }] });
  assertError(w2, 409, 'WRONG_EXPECTED_REVISION', /no_stream/);
  assert.equal(w2.body.details.actualRevision, 4);
  const w3 = await post('/streams/order-9', { expectedRevision: 'stream_exists', events: [{ type: 'Late' }] });
  assertError(w3, 409, 'WRONG_EXPECTED_REVISION', /stream_exists/);
  assert.equal(w3.body.details.actualRevision, -1);
  const w4 = await post('/streams/order-9', { expectedRevision: 0, events: [{ type: 'Late' }] });
  assertError(w4, 409, 'WRONG_EXPECTED_REVISION', /expected revision 0/);
  assert.equal(await headPosition(), head, 'a failed expectation writes nothing');

  // Idempotency: re-posting the same event ids gives the first result and writes nothing.
  const again1 = await post('/streams/order-1', first);
  assert.deepEqual([again1.status, again1.body], [201, { positions: [1, 2], revision: 1 }]);
  const again2 = await post('/streams/order-2', { events: [{ id: o2id, type: 'OrderPlaced', data: { total: 5 } }] });
  assert.deepEqual([again2.status, again2.body], [201, { positions: [3], revision: 0 }]);
  const again3 = await post('/streams/order-2', { expectedRevision: 'any', events: [{ id: o2id, type: 'OrderPlaced', data: { total: 5 } }] });
  assert.deepEqual([again3.status, again3.body], [201, { positions: [3], revision: 0 }]);
  assert.equal(await headPosition(), head, 'idempotent retries write nothing');
  assert.equal((await get('/streams/order-1')).body.events.length, 5);
});

test('binary data round-trips through dataBase64 with its content type', async () => {
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const r = await post('/streams/blob-1', {
    events: [
      { type: 'ImageUploaded', dataBase64: bytes.toString('base64'), contentType: 'image/png' },
      { type: 'BlobUploaded', dataBase64: Buffer.from('raw bytes').toString('base64') },
      { type: 'Empty', dataBase64: '', contentType: 'application/x-empty' },
    ],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  written('blob-1', r.body, [
    { type: 'ImageUploaded', contentType: 'image/png', dataBase64: bytes.toString('base64'), metadata: {} },
    { type: 'BlobUploaded', contentType: 'application/octet-stream', dataBase64: Buffer.from('raw bytes').toString('base64'), metadata: {} },
    { type: 'Empty', contentType: 'application/x-empty', dataBase64: '', metadata: {} },
  ]);
  const read = await get('/streams/blob-1');
  assert.equal(read.status, 200);
  assert.deepEqual(read.body.events.map(stored), [...model.values()].filter((e) => e.stream === 'blob-1'));
  for (const e of read.body.events) assert.ok(!('data' in e), 'binary events carry dataBase64, not data');
  assert.deepEqual(Buffer.from(read.body.events[0].dataBase64, 'base64'), bytes);
  // Bytes declared as JSON are stored as JSON (and read back as data).
  const asJson = await post('/streams/blob-2', { events: [{ type: 'JsonBytes', dataBase64: Buffer.from('{"a":[1,2]}').toString('base64'), contentType: 'application/json' }] });
  assert.equal(asJson.status, 201, JSON.stringify(asJson.body));
  written('blob-2', asJson.body, [jsonEvent('JsonBytes', { a: [1, 2] })]);
  assert.deepEqual((await get('/streams/blob-2')).body.events[0].data, { a: [1, 2] });
});

test('stream info, the stream list by prefix, $all with positions, paging and filters, server info and health', async () => {
  const events = [...model.values()].sort((a, b) => a.position - b.position);
  const orderOne = events.filter((e) => e.stream === 'order-1');

  const info = await get('/streams/order-1/info');
  assert.equal(info.status, 200);
  const { createdAt, updatedAt, ...facts } = info.body;
  assert.deepEqual(facts, { stream: 'order-1', revision: 4, eventCount: 5, firstPosition: orderOne[0]!.position, lastPosition: orderOne.at(-1)!.position });
  assert.ok(Number.isInteger(createdAt) && createdAt <= updatedAt, JSON.stringify(info.body));
  const missing = await get('/streams/nope-1/info');
  assertError(missing, 404, 'NOT_FOUND', /nope-1/);
  assert.equal(missing.body.details.stream, 'nope-1');

  const names = (r: Reply) => r.body.streams.map((s: Json) => s.stream);
  const list = await get('/streams?prefix=order-');
  assert.equal(list.status, 200);
  assert.deepEqual(names(list), ['order-1', 'order-2']);
  assert.deepEqual(list.body.streams[0], info.body);
  assert.deepEqual(names(await get('/streams?prefix=order')), ['order-1', 'order-2', 'orders-1']);
  assert.deepEqual(names(await get('/streams?prefix=order-&limit=1')), ['order-1']);
  assert.deepEqual(names(await get('/streams?prefix=order-&after=order-1')), ['order-2']);
  assert.deepEqual(names(await get('/streams?prefix=zzz')), []);
  assert.deepEqual(names(await get('/streams')), [...new Set(events.map((e) => e.stream))].sort());

  // $all: everything, in position order, exactly as written.
  const all = await get('/all');
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.events.map(stored), events);
  assert.equal(all.body.next, null);
  // from and limit, `next` being the position to continue from.
  const page = await get('/all?from=3&limit=2');
  assert.deepEqual([page.body.events.map((e: Json) => e.position), page.body.next], [[3, 4], 5]);
  const back = await get('/all?from=end&direction=backwards&limit=3');
  assert.deepEqual(back.body.events.map((e: Json) => e.position), events.slice(-3).reverse().map((e) => e.position));
  assert.equal(back.body.next, events.at(-4)!.position);

  const positions = async (q: string) => {
    const r = await get(`/all?${q}`);
    assert.equal(r.status, 200, `${q}: ${JSON.stringify(r.body)}`);
    return r.body.events.map((e: Json) => e.position) as number[];
  };
  const where = (f: (e: Stored) => boolean) => events.filter(f).map((e) => e.position);
  assert.deepEqual(await positions('category=order'), where((e) => e.stream.startsWith('order-')));
  assert.deepEqual(await positions('category=order,user'), where((e) => e.stream.startsWith('order-') || e.stream.startsWith('user-')));
  assert.deepEqual(await positions('streamPrefix=order'), where((e) => e.stream.startsWith('order')));
  assert.deepEqual(await positions('streamPrefix=user-,blob-'), where((e) => e.stream.startsWith('user-') || e.stream.startsWith('blob-')));
  assert.deepEqual(await positions('types=OrderPlaced,UserRegistered'), where((e) => e.type === 'OrderPlaced' || e.type === 'UserRegistered'));
  assert.deepEqual(await positions('category=order&types=OrderPlaced'), where((e) => e.stream.startsWith('order-') && e.type === 'OrderPlaced'));
  assert.deepEqual(await positions('category=nothing'), []);

  // Paging a filtered read with `next` visits exactly the filtered events, once each.
  const paged: number[] = [];
  let from: number | null = 1;
  for (let pages = 0; from !== null; pages++) {
    assert.ok(pages < 20, 'paging terminates');
    const r: Reply = await get(`/all?category=order&limit=2&from=${from}`);
    paged.push(...r.body.events.map((e: Json) => e.position));
    from = r.body.next;
  }
  assert.deepEqual(paged, where((e) => e.stream.startsWith('order-')));

  const server = await get('/info');
  assert.equal(server.status, 200);
  assert.deepEqual({ ...server.body, version: undefined, uptimeMs: undefined }, { name: 'eventful', version: undefined, headPosition: events.at(-1)!.position, durability: 'always', auth: false, uptimeMs: undefined });
  assert.match(server.body.version, /^\d+\.\d+\.\d+/);
  assert.ok(Number.isInteger(server.body.uptimeMs) && server.body.uptimeMs >= 0);
  assert.deepEqual(await get('/health/live').then((r) => [r.status, r.body]), [200, { status: 'ok' }]);
  assert.deepEqual(await get('/health/ready').then((r) => [r.status, r.body]), [200, { status: 'ready' }]);
});

test('CloudEvents: structured and batch, attributes in metadata.cloudevents, idempotent by source and id, expected revision header, data_base64', async () => {
  const CE = 'application/cloudevents+json';
  const BATCH = 'application/cloudevents-batch+json';
  const placed = {
    specversion: '1.0',
    id: 'shop-order-17', // not a UUID: CloudEvents ids are only unique per source
    source: 'https://shop.example/orders',
    type: 'com.example.order.placed',
    subject: 'order-17',
    time: '2024-05-01T12:00:00Z',
    datacontenttype: 'application/json',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    priority: 3,
    data: { total: 42, lines: [{ sku: 'A-1', qty: 2 }] },
  };
  // Every attribute but the data is kept in metadata.cloudevents (datacontenttype included).
  const { data, ...attributes } = placed;
  const r1 = await post('/streams/ce-1', placed, { contentType: CE });
  assert.equal(r1.status, 201, JSON.stringify(r1.body));
  assert.equal(r1.body.revision, 0);
  written('ce-1', r1.body, [jsonEvent('com.example.order.placed', data, { cloudevents: attributes })]);

  const read = await get('/streams/ce-1');
  const e = read.body.events[0];
  assert.equal(e.type, 'com.example.order.placed');
  assert.deepEqual(e.data, data);
  assert.deepEqual(Object.keys(e.metadata.cloudevents).sort(), Object.keys(attributes).sort());
  assert.ok(isUuid(e.id), `a non-UUID CloudEvent id becomes a stable UUID, got ${e.id}`);

  // The same CloudEvent delivered again (a webhook retry): the first result, nothing written.
  const head = await headPosition();
  const r2 = await post('/streams/ce-1', placed, { contentType: CE });
  assert.deepEqual([r2.status, r2.body], [201, r1.body]);
  assert.equal(await headPosition(), head);

  // A batch, with the expected revision in a header; binary data with data_base64.
  const bytes = randomBytes(64);
  const batch = [
    { specversion: '1.0', id: 'shop-order-17-paid', source: 'https://shop.example/orders', type: 'com.example.order.paid', data: { amount: 42 } },
    { specversion: '1.0', id: 'shop-order-17-invoice', source: 'https://shop.example/billing', type: 'com.example.invoice.rendered', datacontenttype: 'application/pdf', data_base64: bytes.toString('base64') },
    { specversion: '1.0', id: 'shop-order-17-note', source: 'https://shop.example/orders', type: 'com.example.order.noted', datacontenttype: 'text/plain', data: 'leave at the door' },
  ];
  const ceAttrs = (ce: Record<string, unknown>) => {
    const { data: _d, data_base64: _b, ...rest } = ce;
    return { cloudevents: rest };
  };
  const r3 = await call('main', 'POST', '/streams/ce-1', { json: batch, contentType: BATCH, headers: { 'eventful-expected-revision': '0' } });
  assert.equal(r3.status, 201, JSON.stringify(r3.body));
  assert.equal(r3.body.revision, 3);
  written('ce-1', r3.body, [
    jsonEvent('com.example.order.paid', { amount: 42 }, ceAttrs(batch[0]!)),
    { type: 'com.example.invoice.rendered', contentType: 'application/pdf', dataBase64: bytes.toString('base64'), metadata: ceAttrs(batch[1]!) },
    { type: 'com.example.order.noted', contentType: 'text/plain', dataBase64: Buffer.from('leave at the door').toString('base64'), metadata: ceAttrs(batch[2]!) },
  ]);
  const readBatch = await get('/streams/ce-1?from=1');
  assert.deepEqual(readBatch.body.events.map(stored), [...model.values()].filter((x) => x.stream === 'ce-1' && x.revision >= 1));
  assert.deepEqual(Buffer.from(readBatch.body.events[1].dataBase64, 'base64'), bytes);

  // The batch re-delivered: idempotent as a whole.
  const r4 = await call('main', 'POST', '/streams/ce-1', { json: batch, contentType: BATCH });
  assert.deepEqual([r4.status, r4.body], [201, r3.body]);

  // The header is checked like expectedRevision in a JSON body.
  const late = { specversion: '1.0', id: 'late-1', source: 'https://shop.example/orders', type: 'com.example.order.late' };
  const stale = await call('main', 'POST', '/streams/ce-1', { json: late, contentType: CE, headers: { 'eventful-expected-revision': '0' } });
  assertError(stale, 409, 'WRONG_EXPECTED_REVISION', /expected revision 0/);
  assert.equal(stale.body.details.actualRevision, 3);
  const exists = await call('main', 'POST', '/streams/ce-1', { json: late, contentType: CE, headers: { 'eventful-expected-revision': 'no_stream' } });
  assertError(exists, 409, 'WRONG_EXPECTED_REVISION', /no_stream/);
  const fresh = await call('main', 'POST', '/streams/ce-2', { json: [late], contentType: `${BATCH}; charset=utf-8`, headers: { 'eventful-expected-revision': 'no_stream' } });
  assert.deepEqual([fresh.status, fresh.body.revision], [201, 0], JSON.stringify(fresh.body));
  written('ce-2', fresh.body, [jsonEvent('com.example.order.late', null, ceAttrs(late))]);
  assert.equal(await headPosition(), head + 4);

  // Attribute values keep their JSON types: the integer extension `priority` stays an integer.
  assert.deepEqual(e.metadata.cloudevents, attributes);
});

test('bad input: a 4xx with a stable code and a message saying what was expected; the server stays up and nothing is written', async (t) => {
  const before = await get('/all?limit=1000');
  assert.equal(before.status, 200);
  const ok = [{ type: 'Fine' }];
  const big = (n: number) => 'x'.repeat(n);

  interface Case {
    name: string;
    send: () => Promise<Reply>;
    status: number;
    code: string;
    message: RegExp;
    check?: (r: Reply) => void;
  }
  const cases: Case[] = [
    { name: 'malformed JSON', send: () => call('main', 'POST', '/streams/bad-1', { raw: '{"events": [', contentType: 'application/json' }), status: 400, code: 'INVALID_ARGUMENT', message: /JSON/ },
    { name: 'malformed JSON as a CloudEvent', send: () => call('main', 'POST', '/streams/bad-1', { raw: '{"specversion":', contentType: 'application/cloudevents+json' }), status: 400, code: 'INVALID_ARGUMENT', message: /JSON/ },
    { name: 'an empty JSON body', send: () => call('main', 'POST', '/streams/bad-1', { raw: '', contentType: 'application/json' }), status: 400, code: 'INVALID_ARGUMENT', message: /empty/ },
    { name: 'a JSON array instead of an object', send: () => post('/streams/bad-1', ok), status: 400, code: 'INVALID_ARGUMENT', message: /object/ },
    { name: 'no events field', send: () => post('/streams/bad-1', { expectedRevision: 'any' }), status: 400, code: 'INVALID_ARGUMENT', message: /events/ },
    // An unknown field is most often a typo: the message must name it.
    { name: 'an unknown field in the body', send: () => post('/streams/bad-1', { events: ok, expectedRevison: 0 }), status: 400, code: 'INVALID_ARGUMENT', message: /expectedRevison/ },
    { name: 'an unknown field in an event', send: () => post('/streams/bad-1', { events: [{ type: 'A', colour: 'red' }] }), status: 400, code: 'INVALID_ARGUMENT', message: /colour/ },
    { name: 'an unknown query parameter on a stream read', send: () => get('/streams/order-1?lmit=2'), status: 400, code: 'INVALID_ARGUMENT', message: /lmit/ },
    { name: 'an unknown query parameter on $all', send: () => get('/all?stream=order-1'), status: 400, code: 'INVALID_ARGUMENT', message: /stream/ },
    { name: 'events not an array', send: () => post('/streams/bad-1', { events: { type: 'A' } }), status: 400, code: 'INVALID_ARGUMENT', message: /'events': Expected array/ },
    // JSON bodies are typed: a number or boolean is not silently turned into a string.
    { name: 'a number as event type', send: () => post('/streams/bad-1', { events: [{ type: 5 }] }), status: 400, code: 'INVALID_ARGUMENT', message: /'events\.0\.type': Expected string/ },
    { name: 'a boolean as event type', send: () => post('/streams/bad-1', { events: [{ type: true }] }), status: 400, code: 'INVALID_ARGUMENT', message: /'events\.0\.type': Expected string/ },
    { name: 'an empty event type', send: () => post('/streams/bad-1', { events: [{ type: '' }] }), status: 400, code: 'INVALID_ARGUMENT', message: /'events\.0\.type': Expected string length greater or equal to 1/ },
    { name: 'a string as expectedRevision', send: () => post('/streams/bad-1', { expectedRevision: '0', events: ok }), status: 400, code: 'INVALID_ARGUMENT', message: /expectedRevision/ },
    { name: 'an unknown expectedRevision word', send: () => post('/streams/bad-1', { expectedRevision: 'latest', events: ok }), status: 400, code: 'INVALID_ARGUMENT', message: /expectedRevision/ },
    { name: 'expectedRevision below -1', send: () => post('/streams/bad-1', { expectedRevision: -2, events: ok }), status: 400, code: 'INVALID_ARGUMENT', message: /expectedRevision/ },
    { name: 'metadata not an object', send: () => post('/streams/bad-1', { events: [{ type: 'A', metadata: 'x' }] }), status: 400, code: 'INVALID_ARGUMENT', message: /'events\.0\.metadata': Expected object/ },
    { name: 'an event id that is not a UUID', send: () => post('/streams/bad-1', { events: [{ type: 'A', id: 'order-17' }] }), status: 400, code: 'INVALID_ARGUMENT', message: /'events\.0\.id': Expected string to match 'uuid' format/ },
    { name: 'dataBase64 that is not base64', send: () => post('/streams/bad-1', { events: [{ type: 'A', dataBase64: '*** not base64 ***' }] }), status: 400, code: 'INVALID_ARGUMENT', message: /base64/ },
    { name: 'data and dataBase64 together', send: () => post('/streams/bad-1', { events: [{ type: 'A', data: 1, dataBase64: 'AA==' }] }), status: 400, code: 'INVALID_ARGUMENT', message: /data or dataBase64, not both/ },
    { name: 'a non-JSON contentType with JSON data', send: () => post('/streams/bad-1', { events: [{ type: 'A', data: { a: 1 }, contentType: 'image/png' }] }), status: 400, code: 'EVENT_INVALID', message: /contentType must be application\/json/ },
    { name: 'the same event id twice in one append', send: () => { const id = randomUUID(); return post('/streams/bad-1', { events: [{ id, type: 'A' }, { id, type: 'B' }] }); }, status: 400, code: 'EVENT_INVALID', message: /appears twice/ },
    { name: 'an empty events array', send: () => post('/streams/bad-1', { events: [] }), status: 400, code: 'INVALID_ARGUMENT', message: /'events': Expected array length to be greater or equal to 1/ },
    { name: 'an empty CloudEvents batch', send: () => call('main', 'POST', '/streams/bad-1', { json: [], contentType: 'application/cloudevents-batch+json' }), status: 400, code: 'INVALID_ARGUMENT', message: /body: Expected array length to be greater or equal to 1/ },
    { name: 'a CloudEvent without specversion', send: () => call('main', 'POST', '/streams/bad-1', { json: { id: '1', source: '/s', type: 'T' }, contentType: 'application/cloudevents+json' }), status: 400, code: 'INVALID_ARGUMENT', message: /specversion/ },
    { name: 'a CloudEvent of another specversion', send: () => call('main', 'POST', '/streams/bad-1', { json: { specversion: '0.3', id: '1', source: '/s', type: 'T' }, contentType: 'application/cloudevents+json' }), status: 400, code: 'INVALID_ARGUMENT', message: /specversion|constant/ },
    { name: 'a CloudEvent with data and data_base64', send: () => call('main', 'POST', '/streams/bad-1', { json: { specversion: '1.0', id: '1', source: '/s', type: 'T', data: 1, data_base64: 'AA==' }, contentType: 'application/cloudevents+json' }), status: 400, code: 'INVALID_ARGUMENT', message: /data or data_base64, not both/ },
    { name: 'a CloudEvent whose data_base64 is not base64', send: () => call('main', 'POST', '/streams/bad-1', { json: { specversion: '1.0', id: '1', source: '/s', type: 'T', data_base64: '***' }, contentType: 'application/cloudevents+json' }), status: 400, code: 'INVALID_ARGUMENT', message: /base64/ },
    { name: 'a CloudEvent extension that is an object', send: () => call('main', 'POST', '/streams/bad-1', { json: { specversion: '1.0', id: '1', source: '/s', type: 'T', ext: { a: 1 } }, contentType: 'application/cloudevents+json' }), status: 400, code: 'INVALID_ARGUMENT', message: /ext/ },
    { name: 'a bad eventful-expected-revision header', send: () => call('main', 'POST', '/streams/bad-1', { json: { specversion: '1.0', id: '1', source: '/s', type: 'T' }, contentType: 'application/cloudevents+json', headers: { 'eventful-expected-revision': 'latest' } }), status: 400, code: 'INVALID_ARGUMENT', message: /eventful-expected-revision must be any, no_stream, stream_exists or a revision/ },
    { name: 'a stream name with a space (URL-encoded)', send: () => post('/streams/bad%201', { events: ok }), status: 400, code: 'STREAM_NAME_INVALID', message: /whitespace/, check: (r) => assert.equal(r.body.details.stream, 'bad 1') },
    { name: 'a stream name with a tab', send: () => post('/streams/bad%091', { events: ok }), status: 400, code: 'STREAM_NAME_INVALID', message: /control characters/ },
    { name: 'a stream name starting with $', send: () => post('/streams/$bad-1', { events: ok }), status: 400, code: 'STREAM_NAME_INVALID', message: /reserved/ },
    { name: 'a stream name starting with $ (URL-encoded)', send: () => post('/streams/%24all', { events: ok }), status: 400, code: 'STREAM_NAME_INVALID', message: /reserved/ },
    { name: 'a stream name over 256 bytes', send: () => post(`/streams/${'s'.repeat(300)}`, { events: ok }), status: 400, code: 'STREAM_NAME_INVALID', message: /at most 256/ },
    { name: 'reading a stream with a space in its name', send: () => get('/streams/bad%201'), status: 400, code: 'STREAM_NAME_INVALID', message: /whitespace/ },
    { name: 'stream info with a space in its name', send: () => get('/streams/bad%201/info'), status: 400, code: 'STREAM_NAME_INVALID', message: /whitespace/ },
    {
      name: 'a body over httpBodyBytesMax',
      send: () => post('/streams/bad-1', { events: [{ type: 'Huge', data: big(HTTP_BODY_BYTES_MAX + 100_000) }] }),
      status: 413,
      code: 'LIMIT_EXCEEDED',
      message: /httpBodyBytesMax/,
      check: (r) => assert.deepEqual([r.body.details.limit, r.body.details.max], ['httpBodyBytesMax', HTTP_BODY_BYTES_MAX], 'details name the limit and its value'),
    },
    {
      name: 'an event over eventBytesMax',
      send: () => post('/streams/bad-1', { events: [{ type: 'Big', data: big(EVENT_BYTES_MAX + 1000) }] }),
      status: 413,
      code: 'LIMIT_EXCEEDED',
      message: /at most 1048576/,
      check: (r) => assert.deepEqual([r.body.details.limit, r.body.details.max], ['eventBytesMax', EVENT_BYTES_MAX]),
    },
    { name: 'text/plain', send: () => call('main', 'POST', '/streams/bad-1', { raw: JSON.stringify({ events: ok }), contentType: 'text/plain' }), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: /application\/json/ },
    { name: 'application/xml', send: () => call('main', 'POST', '/streams/bad-1', { raw: '<events/>', contentType: 'application/xml' }), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: /application\/json/ },
    { name: 'no content type', send: () => call('main', 'POST', '/streams/bad-1', { raw: Buffer.from(JSON.stringify({ events: ok })) }), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: /application\/json/ },
    { name: 'an unknown route', send: () => get('/nope'), status: 404, code: 'NOT_FOUND', message: /no route GET \/nope/ },
    { name: 'an unknown method on a route', send: () => call('main', 'PATCH', '/streams/order-1'), status: 404, code: 'NOT_FOUND', message: /no route PATCH/ },
    { name: 'a stream read limit above httpReadEventsMax', send: () => get(`/streams/order-1?limit=${HTTP_READ_EVENTS_MAX + 1}`), status: 413, code: 'LIMIT_EXCEEDED', message: /httpReadEventsMax/, check: (r) => assert.equal(r.body.details.max, HTTP_READ_EVENTS_MAX) },
    { name: 'a $all read limit above httpReadEventsMax', send: () => get(`/all?limit=${HTTP_READ_EVENTS_MAX + 1}`), status: 413, code: 'LIMIT_EXCEEDED', message: /httpReadEventsMax/, check: (r) => assert.equal(r.body.details.max, HTTP_READ_EVENTS_MAX) },
    { name: 'a limit of 0', send: () => get('/all?limit=0'), status: 400, code: 'INVALID_ARGUMENT', message: /'limit': Expected integer to be greater or equal to 1/ },
    { name: 'a limit that is not a number', send: () => get('/streams/order-1?limit=ten'), status: 400, code: 'INVALID_ARGUMENT', message: /'limit': Expected/ },
    { name: 'a negative from', send: () => get('/all?from=-1'), status: 400, code: 'INVALID_ARGUMENT', message: /from/ },
    { name: 'an unknown direction', send: () => get('/all?direction=sideways'), status: 400, code: 'INVALID_ARGUMENT', message: /direction/ },
    { name: 'an empty filter', send: () => get('/all?category='), status: 400, code: 'INVALID_ARGUMENT', message: /'category': Expected string length greater or equal to 1/ },
    { name: 'a stream list limit above 1000', send: () => get('/streams?limit=1001'), status: 400, code: 'INVALID_ARGUMENT', message: /'limit': Expected integer to be less or equal to 1000/ },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const r = await c.send();
      assertError(r, c.status, c.code, c.message, c.name);
      c.check?.(r);
    });
  }

  // Still up, and no bad input got in.
  assert.equal(main.child.exitCode, null, 'the server is still running');
  assert.deepEqual(await get('/health/live').then((r) => r.status), 200);
  const afterBad = await get('/all?limit=1000');
  assert.equal(afterBad.status, 200);
  assert.deepEqual(afterBad.body.events.slice(before.body.events.length), [], 'bad input wrote nothing');
  assert.deepEqual(afterBad.body, before.body);
  assertError(await get('/streams/bad-1/info'), 404, 'NOT_FOUND', /bad-1/);
});

test('the log holds exactly what was validly written above: every field of every event, nothing else', async () => {
  const all = await get('/all?limit=1000');
  assert.equal(all.status, 200);
  assert.equal(all.body.next, null);
  assert.deepEqual(all.body.events.map(stored), [...model.values()].sort((a, b) => a.position - b.position));
});

test('stream names: any valid name up to streamNameBytesMax (256) UTF-8 bytes, URL-encoded, works on every stream route', async (t) => {
  const names = { 'zürich-1': 'zürich-1', 'a/b:c@d?e#f': 'a/b:c@d?e#f', '101 ASCII bytes': 's'.repeat(101), '256 ASCII bytes': 's'.repeat(256), '255 bytes of 2-byte UTF-8 + 1': `${'é'.repeat(127)}x` };
  for (const [what, name] of Object.entries(names)) {
    await t.test(what, async () => {
      const enc = encodeURIComponent(name);
      const r = await post(`/streams/${enc}`, { events: [{ type: 'Named' }] });
      assert.equal(r.status, 201, `${Buffer.byteLength(name)} bytes, ${enc.length} URL-encoded: ${JSON.stringify(r.body).slice(0, 200)}`);
      const read = await get(`/streams/${enc}`);
      assert.deepEqual([read.status, read.body.events?.map((e: Json) => e.stream)], [200, [name]]);
      const info = await get(`/streams/${enc}/info`);
      assert.deepEqual([info.status, info.body.stream], [200, name]);
    });
  }
});

test('auth: tokens are required, roles are scoped by stream prefix, health needs no token', async () => {
  const as = (token: string | undefined) => ({
    get: (p: string) => call('auth', 'GET', p, { token }),
    post: (p: string, json: unknown) => call('auth', 'POST', p, { token, json }),
  });
  const anon = as(undefined);
  const admin = as(ADMIN_TOKEN);
  const writer = as(WRITER_TOKEN);
  const wrong = as(randomBytes(24).toString('base64url'));

  assertError(await anon.get('/info'), 401, 'UNAUTHENTICATED', /token/);
  assertError(await wrong.get('/info'), 401, 'UNAUTHENTICATED', /token/);
  assertError(await anon.post('/streams/order-1', { events: [{ type: 'A' }] }), 401, 'UNAUTHENTICATED', /token/);
  assertError(await wrong.post('/streams/order-1', { events: [{ type: 'A' }] }), 401, 'UNAUTHENTICATED', /token/);
  assertError(await anon.get('/all'), 401, 'UNAUTHENTICATED', /token/);
  assertError(await anon.get('/streams/order-1'), 401, 'UNAUTHENTICATED', /token/);
  assertError(await call('auth', 'GET', '/info', { headers: { authorization: `Basic ${ADMIN_TOKEN}` } }), 401, 'UNAUTHENTICATED', /token/);
  // A token must never be echoed back.
  for (const x of exchanges.filter((e) => e.server === 'auth')) assert.ok(!JSON.stringify(x.body).includes(ADMIN_TOKEN));

  const info = await admin.get('/info');
  assert.equal(info.status, 200);
  assert.equal(info.body.auth, true);
  assert.equal((await call('auth', 'GET', '/info', { headers: { authorization: `bearer ${WRITER_TOKEN}` } })).status, 200, 'the scheme is case-insensitive');
  assert.equal((await writer.get('/info')).status, 200);

  // The writer may write and read order-* only.
  const denied = await writer.post('/streams/user-1', { events: [{ type: 'UserRegistered' }] });
  assertError(denied, 403, 'FORBIDDEN', /orders-writer.*write.*user-1/);
  assert.deepEqual([denied.body.details.role, denied.body.details.stream], ['write', 'user-1']);
  const mine = await writer.post('/streams/order-1', { events: [{ type: 'OrderPlaced', data: { by: 'writer' } }] });
  assert.deepEqual([mine.status, mine.body], [201, { positions: [1], revision: 0 }]);
  const adminWrite = await admin.post('/streams/user-1', { events: [{ type: 'UserRegistered' }] });
  assert.deepEqual([adminWrite.status, adminWrite.body], [201, { positions: [2], revision: 0 }]);
  assert.equal((await admin.get('/streams/user-1')).body.events.length, 1, 'the forbidden append wrote nothing');

  assert.equal((await writer.get('/streams/order-1')).status, 200);
  assert.equal((await writer.get('/streams/order-1/info')).status, 200);
  assertError(await writer.get('/streams/user-1'), 403, 'FORBIDDEN', /read.*user-1/);
  assertError(await writer.get('/streams/user-1/info'), 403, 'FORBIDDEN', /read.*user-1/);

  assertError(await writer.get('/all'), 403, 'FORBIDDEN', /streamPrefix/);
  assertError(await writer.get('/all?category=order'), 403, 'FORBIDDEN', /streamPrefix/);
  assertError(await writer.get('/all?streamPrefix=order-,user-'), 403, 'FORBIDDEN', /streamPrefix/);
  assertError(await writer.get('/all?types=UserRegistered'), 403, 'FORBIDDEN', /streamPrefix/);
  const scoped = await writer.get('/all?streamPrefix=order-');
  assert.equal(scoped.status, 200);
  assert.deepEqual(scoped.body.events.map((e: Json) => [e.stream, e.type]), [['order-1', 'OrderPlaced']]);
  assert.deepEqual((await admin.get('/all')).body.events.map((e: Json) => e.stream), ['order-1', 'user-1']);

  assertError(await writer.get('/streams'), 403, 'FORBIDDEN', /read/);
  const list = await writer.get('/streams?prefix=order-');
  assert.deepEqual([list.status, list.body.streams.map((s: Json) => s.stream)], [200, ['order-1']]);

  assert.deepEqual(await anon.get('/health/live').then((r) => [r.status, r.body]), [200, { status: 'ok' }]);
  assert.deepEqual(await anon.get('/health/ready').then((r) => [r.status, r.body]), [200, { status: 'ready' }]);
  assert.equal((await wrong.get('/health/live')).status, 200, 'a bad token does not matter where none is needed');
  assert.equal((await anon.get('/openapi.json')).status, 200, 'the API description is public, as documented');
});

test('the server refuses to listen on a non-loopback address without auth, and says how to override', async () => {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('EVENTFUL_')) delete env[k];
  const child = spawn(process.execPath, cliArgs(['serve', '--data-dir', dataDir(), '--host', '0.0.0.0', '--http-port', '0', '--tcp-port', '0', '--log-level', 'warn']), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`still running after 15 s (it should have refused to start):\n${out}\n${err}`)), 15_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.notEqual(code, 0, `exit code ${code}`);
    assert.notEqual(code, null);
    assert.match(err, /--insecure-no-auth/);
    assert.doesNotMatch(out, /HTTP API/, 'it never listened');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
}

/** Opens an SSE stream and collects events until `until` says stop (or the timeout). */
async function sse(pathAndQuery: string, until: (events: SseEvent[], lastId: string | undefined) => boolean, headers: Record<string, string> = {}): Promise<{ status: number; contentType: string; events: SseEvent[]; lastId: string | undefined }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 10_000);
  const res = await fetch(main.httpUrl + pathAndQuery, { headers, signal: abort.signal });
  const events: SseEvent[] = [];
  let lastId: string | undefined;
  let buf = '';
  const decoder = new TextDecoder();
  try {
    if (res.status !== 200) return { status: res.status, contentType: res.headers.get('content-type') ?? '', events, lastId };
    const reader = res.body!.getReader();
    while (!until(events, lastId)) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const e: SseEvent = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const i = line.indexOf(':');
          const k = line.slice(0, i);
          const v = line.slice(i + 1).replace(/^ /, '');
          if (k === 'id') lastId = e.id = v;
          else if (k === 'event') e.event = v;
          else if (k === 'data') e.data = (e.data === undefined ? '' : e.data + '\n') + v;
        }
        if (e.data !== undefined) events.push(e);
        if (until(events, lastId)) break;
      }
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', events, lastId };
}

test('Server-Sent Events: $all and a stream, history then live, resuming after Last-Event-ID with no gap and no duplicate', async () => {
  const stream = `sse-${randomUUID().slice(0, 8)}`;
  for (let i = 0; i < 5; i++) assert.equal((await post(`/streams/${stream}`, { events: [{ type: 'Tick', data: { i } }] })).status, 201);
  // History from the start of the stream, then live events appended while it is open.
  const live = sse(`/subscribe/streams/${stream}?from=start`, (es) => es.length >= 8);
  await new Promise((r) => setTimeout(r, 200));
  for (let i = 5; i < 8; i++) await post(`/streams/${stream}`, { events: [{ type: 'Tick', data: { i } }] });
  const got = await live;
  assert.equal(got.status, 200);
  assert.match(got.contentType, /^text\/event-stream/);
  assert.deepEqual(got.events.map((e) => JSON.parse(e.data!).data.i), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(got.events.map((e) => e.id), ['0', '1', '2', '3', '4', '5', '6', '7'], 'ids are revisions');
  assert.equal(got.events[0]!.event, 'Tick');
  // Resume after revision 3: exactly 4..7.
  const resumed = await sse(`/subscribe/streams/${stream}`, (es) => es.length >= 4, { 'last-event-id': '3' });
  assert.deepEqual(resumed.events.map((e) => e.id), ['4', '5', '6', '7']);

  // $all with a category filter; ids are positions; resume after the second.
  const all = await sse(`/subscribe/all?from=start&category=${stream.split('-')[0]}`, (es) => es.length >= 8);
  const positions = all.events.map((e) => Number(e.id));
  assert.deepEqual(positions, [...positions].sort((a, b) => a - b));
  assert.ok(all.events.every((e) => JSON.parse(e.data!).stream.startsWith('sse-')));
  const after = await sse(`/subscribe/all?category=sse`, (es) => es.length >= 6, { 'last-event-id': String(positions[1]) });
  assert.deepEqual(after.events.slice(0, 6).map((e) => Number(e.id)), positions.slice(2, 8));
  // From the end: the first id sent (with no event) is the head, so a reconnect misses nothing.
  const head = (await get('/info')).body.headPosition;
  const tail = await sse('/subscribe/all', (_es, id) => id !== undefined);
  assert.equal(tail.lastId, String(head));

  // Bad input gets a JSON error, as everywhere.
  const bad = await fetch(main.httpUrl + `/subscribe/streams/${stream}`, { headers: { 'last-event-id': 'x1' } });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { code: string }).code, 'INVALID_ARGUMENT');
  const badFrom = await fetch(main.httpUrl + '/subscribe/all?from=soon');
  assert.equal(badFrom.status, 400);
  await badFrom.text();
});

// ---------------------------------------------------------------------------------------------
// Queues (after the log check above: queues write records of their own to the log)

test('stream retention and deletion over HTTP', async () => {
  await post('/streams/http-ret-1', { events: [{ type: 'A' }, { type: 'B' }, { type: 'C' }] });
  const set = await call('main', 'PUT', '/streams/http-ret-1/metadata', { json: { truncateBefore: 1 } });
  assert.equal(set.status, 200);
  assert.deepEqual(set.body, { truncateBefore: 1 });
  assert.deepEqual((await get('/streams/http-ret-1/metadata')).body, { truncateBefore: 1 });
  assert.deepEqual(
    (await get('/streams/http-ret-1')).body.events.map((e: Json) => e.type),
    ['B', 'C'],
  );
  assert.equal((await call('main', 'PUT', '/streams/http-ret-1/metadata', { json: { maxCount: 0 } })).status, 400);
  assert.equal((await call('main', 'DELETE', '/streams/http-ret-1?expectedRevision=0')).status, 409);
  assert.equal((await call('main', 'DELETE', '/streams/http-ret-1?expectedRevision=2')).status, 200);
  assert.equal((await get('/streams/http-ret-1/info')).status, 404);
  assert.equal((await call('main', 'DELETE', '/streams/http-ret-1?hard=true')).status, 200);
  const gone = await post('/streams/http-ret-1', { events: [{ type: 'D' }] });
  assert.equal(gone.status, 410);
  assert.equal(gone.body.code, 'STREAM_DELETED');
});

test('consumer groups over HTTP: create, stats with lag, list, reset, delete, and typed errors', async () => {
  await post('/streams/grp-1', { events: [{ type: 'A' }, { type: 'B' }] });
  const created = await post('/groups/http-g', { filter: { category: 'grp' }, mode: 'partitioned', partitions: 3 });
  assert.equal(created.status, 201);
  assert.deepEqual(created.body.settings, { filter: { category: 'grp' }, mode: 'partitioned', partitions: 3 });
  assert.equal((await post('/groups/http-g', { filter: { category: 'grp' }, mode: 'partitioned', partitions: 3 })).status, 201, 'the same settings again: it is returned as it is');
  const conflict = await post('/groups/http-g', { mode: 'single' });
  assert.equal(conflict.status, 409);
  assert.equal(conflict.body.code, 'GROUP_CONFLICT');
  assert.equal(conflict.body.details.reason, 'settings');
  const stats = await get('/groups/http-g');
  assert.equal(stats.status, 200);
  assert.equal(stats.body.lagEvents, 2);
  assert.equal(stats.body.lagExact, true);
  assert.deepEqual(stats.body.members, []);
  assert.equal(stats.body.checkpoints.length, 3);
  assert.ok((await get('/groups')).body.groups.some((g: Json) => g.name === 'http-g'));
  const reset = await post('/groups/http-g/reset', { to: 'end' });
  assert.equal(reset.status, 200);
  assert.equal(reset.body.lagEvents, 0);
  assert.equal((await post('/groups/http-g/reset', { to: 0 })).status, 400);
  assert.equal((await post('/groups/bad name', {})).status, 400);
  assert.equal((await post('/groups/x', { mode: 'sideways' })).status, 400);
  assert.equal((await call('main', 'DELETE', '/groups/http-g')).status, 200);
  const gone = await get('/groups/http-g');
  assert.equal(gone.status, 404);
  assert.equal(gone.body.code, 'GROUP_NOT_FOUND');
});

test('queues over HTTP: create, send, long-poll receive, ack, nack to dead letters, redrive, stats, and typed errors', async () => {
  const settings = { leaseMs: 60_000, maxDeliveries: 3, deadLetterQueue: 'order-1-dlq', retryBackoff: { initialMs: 0, maxMs: 0 } };
  const created = await post('/queues/order-1', { settings });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.name, 'order-1');
  assert.equal(created.body.settings.deadLetterQueue, 'order-1-dlq');
  assertError(await post('/queues/order-1', {}), 409, 'QUEUE_EXISTS', /already exists/);
  assert.deepEqual(
    (await get('/queues')).body.queues.map((q: Json) => q.name),
    ['order-1', 'order-1-dlq'],
    'the dead-letter queue was created with it',
  );

  // A long poll waits for a message sent while it waits.
  const polling = post('/queues/order-1/receive', { max: 10, waitMs: 5000 });
  await new Promise((r) => setTimeout(r, 100));
  const id = randomUUID();
  const sent = await post('/queues/order-1/messages', { messages: [{ id, body: { n: 1 }, headers: { tenant: 't1' } }, { bodyBase64: 'AAEC', contentType: 'application/octet-stream' }] });
  assert.equal(sent.status, 201, JSON.stringify(sent.body));
  assert.equal(sent.body.ids[0], id);
  const polled = await polling;
  assert.equal(polled.status, 200);
  const all = [...polled.body.deliveries];
  if (all.length < 2) all.push(...(await post('/queues/order-1/receive', { max: 10, waitMs: 1000 })).body.deliveries);
  assert.equal(all.length, 2);
  const [first, second] = all.sort((a: Json, b: Json) => a.position - b.position);
  assert.deepEqual(first.body, { n: 1 });
  assert.deepEqual(first.headers, { tenant: 't1' });
  assert.equal(first.deliveryCount, 1);
  assert.equal(first.stream, '$queue-order-1');
  assert.equal(second.body, 'AAEC', 'binary bodies come back as base64');

  // The same id again within the dedup window is accepted once.
  const dup = await post('/queues/order-1/messages', { messages: [{ id, body: { n: 1 } }] });
  assert.equal(dup.body.duplicates, 1);
  assert.equal(dup.body.positions[0], sent.body.positions[0]);

  assert.equal((await post('/queues/order-1/extend', { receipts: [first.receipt], leaseMs: 120_000 })).status, 200);
  assert.equal((await post('/queues/order-1/ack', { receipts: first.receipt })).status, 200);
  assertError(await post('/queues/order-1/ack', { receipts: [first.receipt] }), 409, 'RECEIPT_INVALID', /no message in flight/, 'acking twice');
  assertError(await post('/queues/order-1/ack', { receipts: ['nonsense'] }), 409, 'RECEIPT_INVALID', /not a receipt/);
  assertError(await post('/queues/order-1/ack', { receipts: [second.receipt, 'zz.1.1'] }), 409, 'RECEIPT_INVALID', /./, 'one bad receipt');
  // ... changed nothing: the good one is still leased, and can go to dead letters now.
  assert.equal((await post('/queues/order-1/nack', { receipts: [second.receipt], deadLetter: true, reason: 'unparseable' })).status, 200);
  let dlq: Json;
  for (let i = 0; i < 50; i++) {
    dlq = (await get('/queues/order-1-dlq/stats')).body;
    if (dlq.depth === 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(dlq.depth, 1);
  const dead = (await post('/queues/order-1-dlq/receive', { max: 1 })).body.deliveries[0];
  assert.equal(dead.headers.$deadLetter.queue, 'order-1');
  assert.equal(dead.headers.$deadLetter.reason, 'unparseable');
  assert.equal((await post('/queues/order-1-dlq/nack', { receipts: dead.receipt, delayMs: 0 })).status, 200);
  for (let i = 0; i < 50 && (await get('/queues/order-1-dlq/stats')).body.ready !== 1; i++) await new Promise((r) => setTimeout(r, 20));
  const moved = await post('/queues/order-1-dlq/redrive', {});
  assert.deepEqual(moved.body, { moved: 1 });
  const back = (await post('/queues/order-1/receive', { max: 1, waitMs: 2000 })).body.deliveries;
  assert.equal(back.length, 1);
  assert.equal(back[0].body, 'AAEC', 'the redriven message is the same message');
  assert.equal((await post('/queues/order-1/ack', { receipts: back[0].receipt })).status, 200);

  const stats = (await get('/queues/order-1/stats')).body;
  assert.equal(stats.depth, 0);
  assert.equal(stats.totals.acked, 2);
  assert.equal(stats.deadLettered, 1);

  // Settings, scheduled messages, cancel, purge.
  const updated = await call('main', 'PUT', '/queues/order-1/settings', { json: { leaseMs: 5000 } });
  assert.equal(updated.body.settings.leaseMs, 5000);
  assertError(await call('main', 'PUT', '/queues/order-1/settings', { json: { ordering: 'fifo' } }), 400, 'INVALID_ARGUMENT', /ordering is fixed/);
  assertError(await call('main', 'PUT', '/queues/order-1/settings', { json: { leaseMs: -1 } }), 400, 'INVALID_ARGUMENT', /leaseMs/);
  const later = randomUUID();
  await post('/queues/order-1/messages', { messages: [{ id: later, body: 'later', delayMs: 3_600_000 }] });
  assert.equal((await post('/queues/order-1/receive', { max: 1 })).body.deliveries.length, 0, 'not before its time');
  assert.deepEqual((await call('main', 'DELETE', `/queues/order-1/messages/${later}`)).body, { cancelled: true });
  assert.deepEqual((await call('main', 'DELETE', `/queues/order-1/messages/${later}`)).body, { cancelled: false });
  await post('/queues/order-1/messages', { messages: [{ body: 1 }, { body: 2 }] });
  assert.deepEqual((await call('main', 'POST', '/queues/order-1/purge')).body, { purged: 2 });
  assert.deepEqual((await post('/queues/order-1/unpark', { groupKey: 'g' })).body, { unparked: false });

  // Bad input.
  assertError(await get('/queues/nope/stats'), 404, 'QUEUE_NOT_FOUND', /no queue named 'nope'/);
  assertError(await post('/queues/nope/messages', { messages: [{ body: 1 }] }), 404, 'QUEUE_NOT_FOUND', /nope/);
  assertError(await post('/queues/bad%20name', {}), 400, 'INVALID_ARGUMENT', /queue name/);
  assertError(await post('/queues/q2', { settings: { leaseMs: 'long' } }), 400, 'INVALID_ARGUMENT', /leaseMs/);
  assertError(await post('/queues/q2', { settings: { colour: 'red' } }), 400, 'INVALID_ARGUMENT', /colour/);
  assertError(await post('/queues/order-1/messages', { messages: [{ body: 1, groupKey: 'g' }] }), 400, 'INVALID_ARGUMENT', /fifo/);
  assertError(await post('/queues/order-1/messages', { messages: [{ body: 'x'.repeat(EVENT_BYTES_MAX) }] }), 413, 'LIMIT_EXCEEDED', /at most 1048576/);
  assertError(await post('/queues/order-1/receive', { max: 0 }), 400, 'INVALID_ARGUMENT', /max/);
  // Nothing above disturbed the queue: a good message still flows.
  await post('/queues/order-1/messages', { messages: [{ body: 'ok' }] });
  const ok = (await post('/queues/order-1/receive', { max: 5, waitMs: 2000 })).body.deliveries;
  assert.deepEqual(ok.map((d: Json) => d.body), ['ok']);
  await post('/queues/order-1/ack', { receipts: ok.map((d: Json) => d.receipt) });

  // Delete; a queue made again under the same name starts empty.
  await post('/queues/q3', {});
  await post('/queues/q3/messages', { messages: [{ body: 'old' }] });
  assert.deepEqual((await call('main', 'DELETE', '/queues/q3')).body, { ok: true });
  assertError(await get('/queues/q3'), 404, 'QUEUE_NOT_FOUND', /q3/);
  await post('/queues/q3', {});
  assert.equal((await get('/queues/q3/stats')).body.depth, 0);
  assert.equal((await get('/queues/order-1')).body.name, 'order-1');
});

// ---------------------------------------------------------------------------------------------
// OpenAPI

/**
 * The document's schemas are TypeBox schemas serialised to JSON, which drops TypeBox's `Kind`
 * symbols that `Value.Check` dispatches on. This rebuilds them with the TypeBox constructors,
 * keeping every constraint keyword; a keyword it does not know fails loudly rather than being
 * ignored (which would make the check vacuous).
 */
function fromJsonSchema(s: Json, doc: Json): TSchema {
  if (typeof s !== 'object' || s === null) throw new Error(`not a schema: ${JSON.stringify(s)}`);
  if (s.$ref !== undefined) {
    const m = /^#\/components\/schemas\/(.+)$/.exec(s.$ref);
    assert.ok(m && doc.components?.schemas?.[m[1]!], `unresolvable $ref ${s.$ref}`);
    return fromJsonSchema(doc.components.schemas[m[1]!], doc);
  }
  const { type, properties, required, additionalProperties, patternProperties, items, anyOf, const: constant, $id: _id, ...rest } = s;
  const known = new Set(['description', 'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'format', 'minItems', 'maxItems', 'default']);
  for (const k of Object.keys(rest)) assert.ok(known.has(k), `schema keyword '${k}' is not understood by this test: ${JSON.stringify(s)}`);
  const opts = rest as Record<string, unknown>;
  if (anyOf !== undefined) return Type.Union(anyOf.map((x: Json) => fromJsonSchema(x, doc)), opts);
  if (constant !== undefined) return Type.Literal(constant, opts);
  switch (type) {
    case 'object': {
      const extra = typeof additionalProperties === 'object' ? fromJsonSchema(additionalProperties, doc) : additionalProperties;
      if (patternProperties !== undefined) {
        const entries = Object.entries(patternProperties);
        assert.ok(entries.length === 1 && (entries[0]![0] === '^(.*)$' || entries[0]![0] === '^.*$'), `unsupported patternProperties ${JSON.stringify(patternProperties)}`);
        return Type.Record(Type.String(), fromJsonSchema(entries[0]![1], doc), { ...opts, ...(extra !== undefined ? { additionalProperties: extra } : {}) });
      }
      const req = new Set<string>(required ?? []);
      const props = Object.fromEntries(Object.entries(properties ?? {}).map(([k, v]) => [k, req.has(k) ? fromJsonSchema(v, doc) : Type.Optional(fromJsonSchema(v, doc))]));
      return Type.Object(props, { ...opts, ...(extra !== undefined ? { additionalProperties: extra } : {}) });
    }
    case 'array':
      return Type.Array(fromJsonSchema(items, doc), opts);
    case 'string':
      return Type.String(opts);
    case 'integer':
      return Type.Integer(opts);
    case 'number':
      return Type.Number(opts);
    case 'boolean':
      return Type.Boolean(opts);
    case 'null':
      return Type.Null(opts);
    case undefined:
      assert.equal(properties ?? items ?? required, undefined, `schema without a type: ${JSON.stringify(s)}`);
      return Type.Unknown(opts);
    default:
      throw new Error(`unsupported schema type ${JSON.stringify(type)}`);
  }
}

/** A GET whose answer is not JSON (metrics, the dashboard's files), with its content type checked. */
async function notJson(p: string, type: RegExp): Promise<Reply> {
  const res = await fetch(main.httpUrl + p, { signal: AbortSignal.timeout(15_000) });
  const body = await res.text();
  assert.match(res.headers.get('content-type') ?? '', type, p);
  return { status: res.status, body, headers: res.headers };
}

function checkAgainst(schema: TSchema, value: unknown, what: string): void {
  if (Value.Check(schema, value)) return;
  const errors = [...Value.Errors(schema, value)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
  assert.fail(`${what} does not match its documented schema:\n  ${errors.join('\n  ')}\n  value: ${JSON.stringify(value).slice(0, 500)}`);
}

test('OpenAPI: every route is documented and answers, and every response above matches its documented schema', async () => {
  if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (v) => isUuid(v));
  const r = await get('/openapi.json');
  assert.equal(r.status, 200);
  const doc = r.body;
  assert.equal(doc.openapi, '3.1.0');
  const ErrorSchema = fromJsonSchema({ $ref: '#/components/schemas/Error' }, doc);
  // The conversion is not vacuous: a wrong body fails.
  assert.equal(Value.Check(ErrorSchema, { code: 1, message: 'm', details: {} }), false);
  assert.equal(Value.Check(ErrorSchema, { code: 'X', message: 'm', details: {}, extra: 1 }), false);

  interface Op {
    method: string;
    template: string;
    match: RegExp;
    op: Json;
  }
  const ops: Op[] = [];
  const operationIds = new Set<string>();
  for (const [template, methods] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
    for (const [method, op] of Object.entries(methods)) {
      assert.ok(!operationIds.has(op.operationId), `operationId ${op.operationId} is unique`);
      operationIds.add(op.operationId);
      for (const [, name] of template.matchAll(/\{([^}]+)\}/g)) {
        assert.ok((op.parameters ?? []).some((p: Json) => p.in === 'path' && p.name === name && p.required === true), `${method} ${template} documents its path parameter ${name}`);
      }
      const match = new RegExp('^' + template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+') + '$');
      ops.push({ method: method.toUpperCase(), template, match, op });
    }
  }
  const find = (method: string, p: string) => ops.find((o) => o.method === method && o.match.test(p));

  // Every documented operation answers a valid request (not "no route").
  ensureDashboardBuilt();
  const probes: Record<string, () => Promise<Reply>> = {
    // Not JSON: fetched here, outside the exchanges whose JSON bodies are checked below.
    'GET /metrics': () => notJson('/metrics', /^text\/plain; version=0\.0\.4/),
    'GET /ui': () => notJson('/ui', /^text\/html/),
    'GET /ui/{file}': () => notJson('/ui/favicon.svg', /^image\/svg\+xml/),
    'POST /streams/{stream}': () => post('/streams/probe-1', { events: [{ type: 'Probe' }] }),
    'GET /subscribe/all': async () => ({ ...(await sse('/subscribe/all?from=start', () => true)), body: {}, headers: new Headers() }),
    'GET /subscribe/streams/{stream}': async () => ({ ...(await sse('/subscribe/streams/order-1?from=start', () => true)), body: {}, headers: new Headers() }),
    'POST /queues/{queue}': () => post('/queues/probe-q', {}),
    'PUT /queues/{queue}/settings': () => call('main', 'PUT', '/queues/probe-q/settings', { json: { leaseMs: 1000 } }),
    'POST /queues/{queue}/messages': () => post('/queues/probe-q/messages', { messages: [{ body: 1 }] }),
    'DELETE /queues/{queue}/messages/{id}': () => call('main', 'DELETE', `/queues/probe-q/messages/${randomUUID()}`),
    'POST /queues/{queue}/receive': () => post('/queues/probe-q/receive', { max: 1 }),
    'POST /queues/{queue}/ack': async () => {
      const d = (await post('/queues/probe-q/receive', { max: 1, waitMs: 1000 })).body.deliveries;
      if (d.length === 0) await post('/queues/probe-q/messages', { messages: [{ body: 1 }] });
      const r = d.length > 0 ? d : (await post('/queues/probe-q/receive', { max: 1, waitMs: 1000 })).body.deliveries;
      return post('/queues/probe-q/ack', { receipts: r[0].receipt });
    },
    'POST /queues/{queue}/nack': async () => {
      await post('/queues/probe-q/messages', { messages: [{ body: 2 }] });
      const r = (await post('/queues/probe-q/receive', { max: 1, waitMs: 1000 })).body.deliveries;
      return post('/queues/probe-q/nack', { receipts: r[0].receipt });
    },
    'POST /queues/{queue}/extend': async () => {
      await post('/queues/probe-q/messages', { messages: [{ body: 3 }] });
      const r = (await post('/queues/probe-q/receive', { max: 1, waitMs: 1000 })).body.deliveries;
      return post('/queues/probe-q/extend', { receipts: r[0].receipt });
    },
    'POST /queues/{queue}/redrive': () => post('/queues/probe-q/redrive', { to: 'probe-q', count: 1 }),
    'POST /queues/{queue}/unpark': () => post('/queues/probe-q/unpark', { groupKey: 'g' }),
    'POST /queues/{queue}/purge': () => call('main', 'POST', '/queues/probe-q/purge'),
    'PUT /streams/{stream}/metadata': () => call('main', 'PUT', '/streams/probe-meta/metadata', { json: { maxCount: 10 } }),
    'DELETE /streams/{stream}': async () => {
      await post('/streams/probe-del', { events: [{ type: 'Probe' }] });
      return call('main', 'DELETE', '/streams/probe-del');
    },
    'POST /groups/{group}': () => post('/groups/probe-g', { mode: 'partitioned', partitions: 4 }),
    'GET /groups/{group}': async () => {
      await post('/groups/probe-g', { mode: 'partitioned', partitions: 4 });
      return get('/groups/probe-g');
    },
    'POST /groups/{group}/reset': async () => {
      await post('/groups/probe-g', { mode: 'partitioned', partitions: 4 });
      return post('/groups/probe-g/reset', { to: 'end' });
    },
    'DELETE /groups/{group}': async () => {
      await post('/groups/probe-gd', {});
      return call('main', 'DELETE', '/groups/probe-gd');
    },
    'DELETE /queues/{queue}': async () => {
      await post('/queues/probe-d', {});
      return call('main', 'DELETE', '/queues/probe-d');
    },
  };
  // Every queue probe after the first finds its queue there.
  for (const [key, probe] of Object.entries(probes)) {
    if (!key.includes('{queue}') || key === 'POST /queues/{queue}') continue;
    probes[key] = async () => {
      await post('/queues/probe-q', {});
      return probe();
    };
  }
  for (const o of ops) {
    const key = `${o.method} ${o.template}`;
    let probe = probes[key];
    if (probe === undefined) {
      assert.equal(o.method, 'GET', `no probe for ${key}: add one to this test`);
      probe = () => get(o.template.replace(/\{[^}]+\}/g, 'order-1'));
    }
    const res = await probe();
    assert.ok(res.status >= 200 && res.status < 300, `${key} answers a valid request: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
  }

  // Every exchange of this file: the route is documented exactly when the server has it, the
  // body is JSON, and it matches the schema for its status (or the default Error schema).
  const failures: string[] = [];
  for (const x of exchanges) {
    const what = `${x.server}: ${x.method} ${x.path.slice(0, 80)} -> ${x.status}`;
    try {
      assert.match(x.contentType, /^application\/json/, `${what}: responses are JSON`);
      const o = find(x.method, x.path);
      const noRoute = x.status === 404 && x.body?.code === 'NOT_FOUND' && /^no route /.test(x.body.message);
      if (noRoute) {
        assert.equal(o, undefined, `${what}: the server has no such route, but the document has ${o?.method} ${o?.template}`);
        checkAgainst(ErrorSchema, x.body, what);
        continue;
      }
      assert.ok(o !== undefined, `${what}: the server answered a route that is not documented`);
      const documented = o.op.responses?.[String(x.status)];
      if (x.status < 300) assert.ok(documented !== undefined, `${what}: success status ${x.status} is not documented for ${o.method} ${o.template}`);
      const response = documented ?? o.op.responses?.default;
      assert.ok(response !== undefined, `${what}: no documented response (and no default)`);
      const schema = response.content?.['application/json']?.schema;
      if (schema !== undefined) checkAgainst(fromJsonSchema(schema, doc), x.body, what);
      else assert.equal(`${o.method} ${o.template}`, 'GET /openapi.json', `${what}: response without a schema`);
      // What the server accepted, the document accepts too.
      if (x.status < 300 && x.requestJson !== undefined) {
        const ct = (x.requestContentType ?? '').split(';')[0]!.trim();
        const bodySchema = o.op.requestBody?.content?.[ct]?.schema;
        assert.ok(bodySchema !== undefined, `${what}: request content type ${ct} is not documented`);
        checkAgainst(fromJsonSchema(bodySchema, doc), x.requestJson, `${what}: the accepted request body`);
      }
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  assert.ok(exchanges.length > 100, `${exchanges.length} exchanges checked`);
  assert.deepEqual(failures, [], failures.join('\n\n'));
});
