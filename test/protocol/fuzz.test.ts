/**
 * Fuzzing the binary protocol, first the pure decoder, then a live server process.
 *
 * FrameDecoder, fed random bytes or mutated valid frames (flipped and overwritten bytes, cuts,
 * splices, changed length and type fields) in random chunks, either returns frames or throws a
 * ProtocolError: never another exception, never a hang, and the same answer however the bytes
 * are chunked.
 *
 * A real `eventful serve` process, sent the same kinds of input on raw TCP connections (plus
 * HELLO followed by garbage, unknown types, request bodies with fields of the wrong type, huge
 * length prefixes), answers a broken stream with an ERROR frame and closes, answers a bad
 * request with an ERROR (never INTERNAL) and keeps serving, and never crashes; afterwards a
 * well-behaved client still appends and reads, and the events written before are unchanged.
 * Finally a client that pipelines 20,000 requests without reading its answers does not stop the
 * server from serving others, and gets every answer once it reads.
 *
 * Runs are random but reproducible: the seed is printed; rerun with FUZZ_SEED=<seed>.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { connect } from '../../src/client/index.js';
import type { RecordedEvent, RemoteEventStore } from '../../src/client/index.js';
import { ERROR_REGISTRY, EventfulError } from '../../src/core/errors.js';
import { DEFAULT_SERVER_LIMITS } from '../../src/core/limits.js';
import { FRAME, FRAME_NAMES, FrameDecoder, PROTOCOL_VERSION, encodeFrame } from '../../src/protocol/codec.js';
import { decodeEventRecords } from '../../src/protocol/records.js';
import type { Frame, FrameType } from '../../src/protocol/codec.js';
import { startServerProcess } from '../e2e/server-process.js';
import type { ServerProcess } from '../e2e/server-process.js';
import { tempDir } from '../helpers.js';

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 0x7fffffff);
const FRAME_BYTES_MAX = DEFAULT_SERVER_LIMITS.frameBytesMax;
const KNOWN_TYPES = new Set<number>(Object.values(FRAME));
const BAD_REQUEST_CODES = new Set(['PROTOCOL_ERROR', 'INVALID_ARGUMENT', 'STREAM_NAME_INVALID', 'EVENT_INVALID', 'LIMIT_EXCEEDED']);

// ---------------------------------------------------------------------------------------------
// Building frames

/** Packs msgpackr's extension types too (Date, Set, RegExp, Error, typed arrays), as a hostile peer might. */
const extPackr = new Packr({ useRecords: false, moreTypes: true });

function frameOf(type: number, requestId: number, body: Uint8Array | readonly number[]): Buffer {
  const b = Buffer.from(body instanceof Uint8Array ? body : Uint8Array.from(body));
  const out = Buffer.alloc(9 + b.length);
  out.writeUInt32BE(5 + b.length, 0);
  out[4] = type;
  out.writeUInt32BE(requestId >>> 0, 5);
  b.copy(out, 9);
  return out;
}

/** Like encodeFrame, but any type number and any value msgpackr can pack. */
function anyFrame(type: number, requestId: number, body: unknown): Buffer {
  return frameOf(type, requestId, extPackr.pack(body));
}

const hello = (requestId = 1, body: Record<string, unknown> = { version: PROTOCOL_VERSION, client: 'fuzz' }): Buffer => encodeFrame(FRAME.HELLO, requestId, body);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};
const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');
const okEvent = (type = 'Fuzzed'): Record<string, unknown> => ({ type, data: Buffer.from([1, 2, 3]), contentType: 'application/octet-stream' });

// ---------------------------------------------------------------------------------------------
// Mutations of a byte stream

type Mutation =
  | { op: 'flip'; at: number; xor: number }
  | { op: 'set'; at: number; byte: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; count: number }
  | { op: 'duplicate'; at: number; count: number }
  | { op: 'length'; frame: number; how: 'random' | 'delta' | 'tiny' | 'huge'; value: number }
  | { op: 'type'; frame: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 32 }) }),
  fc.record({
    op: fc.constant('length' as const),
    frame: fc.nat(),
    how: fc.constantFrom('random' as const, 'delta' as const, 'tiny' as const, 'huge' as const),
    value: fc.integer({ min: 0, max: 0xffffffff }),
  }),
  fc.record({ op: fc.constant('type' as const), frame: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
);

/** Offsets of the frames a stream claims to hold, following its length fields while they fit. */
function frameOffsets(b: Buffer): number[] {
  const out: number[] = [];
  let off = 0;
  while (off + 9 <= b.length) {
    out.push(off);
    off += b.readUInt32BE(off) + 4;
  }
  return out.length > 0 ? out : [0];
}

function mutate(input: Buffer, m: Mutation): Buffer {
  const b = Buffer.from(input);
  const at = (n: number, extra = 0): number => n % (b.length + extra || 1);
  switch (m.op) {
    case 'flip':
      if (b.length > 0) {
        const i = at(m.at);
        b[i] = b[i]! ^ m.xor;
      }
      return b;
    case 'set':
      if (b.length > 0) b[at(m.at)] = m.byte;
      return b;
    case 'truncate':
      return b.subarray(0, at(m.at));
    case 'insert': {
      const i = at(m.at, 1);
      return Buffer.concat([b.subarray(0, i), m.bytes, b.subarray(i)]);
    }
    case 'delete': {
      const i = at(m.at);
      return Buffer.concat([b.subarray(0, i), b.subarray(i + m.count)]);
    }
    case 'duplicate': {
      const i = at(m.at);
      return Buffer.concat([b.subarray(0, i + m.count), b.subarray(i)]);
    }
    case 'length': {
      const offs = frameOffsets(b);
      const o = offs[m.frame % offs.length]!;
      if (o + 4 > b.length) return b;
      const old = b.readUInt32BE(o);
      const v = m.how === 'random' ? m.value : m.how === 'delta' ? old + ((m.value % 17) - 8) : m.how === 'tiny' ? m.value % 5 : 0xffffffff - (m.value % 16);
      b.writeUInt32BE(Math.max(0, Math.min(0xffffffff, v)), o);
      return b;
    }
    case 'type': {
      const offs = frameOffsets(b);
      const o = offs[m.frame % offs.length]!;
      if (o + 4 < b.length) b[o + 4] = m.value;
      return b;
    }
  }
}

const applyAll = (b: Buffer, ms: Mutation[]): Buffer => ms.reduce(mutate, b);

/** Cuts a buffer at the given points (taken modulo its length). */
function chunk(b: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (b.length === 0 ? 0 : c % (b.length + 1))))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, b.length]) {
    out.push(b.subarray(prev, p));
    prev = p;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries: values, bodies, frames, sessions

const WEIRD_KEYS = ['toString', 'valueOf', 'constructor', '__proto__', 'hasOwnProperty', 'then', 'length', 'stream', 'events', 'credit', 'version'];

const leafArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.constantFrom(0, -1, 1, 2 ** 32, 2 ** 53, -(2 ** 53), 1.5, NaN, Infinity, -Infinity),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.constantFrom<unknown>(new Date(0), new Set([1, 'a']), /(a+)+$/, new Error('boom'), new Float32Array([1.5]), new Uint16Array([7])),
  fc.constantFrom('', 'fuzz-a', '$system', 'a b', 'x'.repeat(300), 'start', 'end', 'any', 'no_stream', 'backwards'),
);

const valueArb: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafArb,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom(...WEIRD_KEYS)), tie('value'), { maxKeys: 4 }),
  ),
})).value;

const uuidArb = fc.uuid({ version: 4 });
const streamArb = fc.oneof(fc.integer({ min: 0, max: 5 }).map((n) => `fuzz-${n}`), valueArb);

const eventArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.record(
    {
      id: fc.oneof(uuidArb, valueArb),
      type: fc.oneof(fc.constantFrom('Fuzzed', 'Other'), valueArb),
      data: fc.oneof(fc.uint8Array({ maxLength: 32 }).map((a) => Buffer.from(a)), fc.constant(bytes('{"a":1}')), valueArb),
      contentType: fc.oneof(fc.constantFrom('application/octet-stream', 'application/json', 'text/plain'), valueArb),
      metadata: fc.oneof(fc.constantFrom(bytes('{"k":"v"}'), bytes('[1]'), bytes('nope'), bytes('null')), valueArb),
      extra: valueArb,
    },
    { requiredKeys: [] },
  ),
  valueArb,
);

/** A body with the fields the request types use, each missing, plausible or of any type. */
const requestBodyArb: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    stream: streamArb,
    events: fc.oneof(fc.array(eventArb, { maxLength: 3 }), valueArb),
    expectedRevision: fc.oneof(fc.constantFrom('any', 'no_stream', 'stream_exists', -1, 0, 3), valueArb),
    from: fc.oneof(fc.constantFrom('start', 'end', 0, 1, 5), valueArb),
    direction: fc.oneof(fc.constantFrom('forwards', 'backwards'), valueArb),
    limit: fc.oneof(fc.constantFrom(0, 1, 10), valueArb),
    filter: fc.oneof(fc.record({ streamPrefix: fc.constant('fuzz'), category: fc.constant(['fuzz']), types: fc.constant(['Fuzzed']) }, { requiredKeys: [] }), valueArb),
    credit: fc.oneof(fc.constantFrom(1, 5, 100), valueArb),
    prefix: fc.oneof(fc.constant('fuzz'), valueArb),
    after: fc.oneof(fc.constant('fuzz-1'), valueArb),
    version: valueArb,
    token: valueArb,
  },
  { requiredKeys: [] },
);

const requestIdArb = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constant(0xffffffff));

/** A frame of a known type with a body of fields of any type. */
const badFieldFrameArb = fc
  .tuple(fc.constantFrom(...(Object.values(FRAME) as number[])), requestIdArb, requestBodyArb)
  .map(([type, id, body]) => anyFrame(type, id, body));

/** Frames a well-behaved client might send after HELLO. */
const validRequestArb: fc.Arbitrary<Buffer> = fc.tuple(fc.integer({ min: 2, max: 40 }), fc.integer({ min: 0, max: 5 })).chain(([id, s]) =>
  fc.constantFrom(
    encodeFrame(FRAME.APPEND, id, { stream: `fuzz-${s}`, events: [okEvent()] }),
    encodeFrame(FRAME.HEAD, id, {}),
    encodeFrame(FRAME.PING, id, {}),
    encodeFrame(FRAME.STREAM_INFO, id, { stream: `fuzz-${s}` }),
    encodeFrame(FRAME.LIST_STREAMS, id, { prefix: 'fuzz' }),
    encodeFrame(FRAME.READ_ALL, id, { credit: 10, limit: 5 }),
    encodeFrame(FRAME.READ_STREAM, id, { stream: `fuzz-${s}`, credit: 10 }),
    encodeFrame(FRAME.SUBSCRIBE, id, { stream: `fuzz-${s}`, from: 'start', credit: 5 }),
    encodeFrame(FRAME.CREDIT, id, { credit: 5 }),
    encodeFrame(FRAME.CANCEL, id, {}),
  ),
);

const validSessionArb = fc.tuple(fc.integer({ min: 0, max: 5 }), fc.array(validRequestArb, { maxLength: 6 })).map(([hid, reqs]) => Buffer.concat([hello(hid), ...reqs]));

/** A frame with a correct length field but any type and any body bytes. */
const randomFrameArb = fc
  .tuple(fc.integer({ min: 0, max: 255 }), requestIdArb, fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(new Uint8Array([0x80]))))
  .map(([type, id, body]) => frameOf(type, id, body));

interface LiveCase {
  kind: string;
  bytes: Buffer;
  cuts: number[];
}

const cutsArb = fc.array(fc.nat(), { maxLength: 3 });

const liveCaseArb: fc.Arbitrary<LiveCase> = fc.oneof(
  fc.record({ kind: fc.constant('random bytes'), bytes: fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a)), cuts: cutsArb }),
  fc.record({ kind: fc.constant('mutated session'), bytes: fc.tuple(validSessionArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 })).map(([b, ms]) => applyAll(b, ms)), cuts: cutsArb }),
  fc.record({ kind: fc.constant('truncated session'), bytes: fc.tuple(validSessionArb, fc.nat()).map(([b, n]) => b.subarray(0, n % b.length)), cuts: cutsArb }),
  fc.record({
    kind: fc.constant('HELLO then garbage'),
    bytes: fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 256 }), fc.oneof(fc.constant(undefined), fc.integer({ min: 0, max: 4096 }))).map(([g, len]) =>
      // Either raw garbage, or garbage behind a plausible length so that it reaches the type and body checks.
      Buffer.concat([hello(), len === undefined ? Buffer.from(g) : frameOf(g[0]!, len, g.subarray(1))]),
    ),
    cuts: cutsArb,
  }),
  fc.record({
    kind: fc.constant('unknown frame type'),
    bytes: fc
      .tuple(fc.boolean(), fc.integer({ min: 0, max: 255 }).filter((t) => !KNOWN_TYPES.has(t)), requestIdArb, fc.constantFrom([0x80], [], [0x81, 0xa1, 0x61, 0x01]))
      .map(([afterHello, t, id, body]) => Buffer.concat([afterHello ? hello() : Buffer.alloc(0), frameOf(t, id, body)])),
    cuts: cutsArb,
  }),
  fc.record({
    kind: fc.constant('request fields of the wrong type'),
    bytes: fc.array(badFieldFrameArb, { minLength: 1, maxLength: 4 }).map((fs) => Buffer.concat([hello(), ...fs])),
    cuts: cutsArb,
  }),
  fc.record({
    kind: fc.constant('APPEND of the wrong shape'),
    bytes: fc
      .tuple(requestIdArb, fc.record({ stream: streamArb, events: fc.oneof(fc.array(eventArb, { minLength: 1, maxLength: 3 }), valueArb), expectedRevision: valueArb }, { requiredKeys: [] }))
      .map(([id, body]) => Buffer.concat([hello(), anyFrame(FRAME.APPEND, id, body)])),
    cuts: cutsArb,
  }),
  fc.record({
    kind: fc.constant('HELLO of the wrong shape'),
    bytes: fc.tuple(requestIdArb, requestBodyArb).map(([id, body]) => anyFrame(FRAME.HELLO, id, body)),
    cuts: cutsArb,
  }),
  fc.record({
    kind: fc.constant('huge length prefix'),
    bytes: fc
      .tuple(fc.boolean(), fc.integer({ min: FRAME_BYTES_MAX - 3, max: 0xffffffff }), fc.uint8Array({ maxLength: 64 }))
      .map(([afterHello, len, tail]) => Buffer.concat([afterHello ? hello() : Buffer.alloc(0), u32(len), Buffer.from(tail)])),
    cuts: cutsArb,
  }),
  fc.record({ kind: fc.constant('random frames'), bytes: fc.array(randomFrameArb, { minLength: 1, maxLength: 4 }).map((fs) => Buffer.concat([hello(), ...fs])), cuts: cutsArb }),
);

// ---------------------------------------------------------------------------------------------
// The decoder's contract

interface Decoded {
  frames: Frame[];
  error: unknown;
}

function decodeChunks(chunks: Buffer[], max: number): Decoded {
  const d = new FrameDecoder(max);
  const frames: Frame[] = [];
  try {
    for (const c of chunks) frames.push(...d.push(c));
    assert.ok(d.buffered >= 0 && d.buffered <= chunks.reduce((n, c) => n + c.length, 0));
    return { frames, error: undefined };
  } catch (error) {
    return { frames, error };
  }
}

function checkFrames(frames: Frame[], where: string): void {
  for (const f of frames) {
    assert.ok(KNOWN_TYPES.has(f.type), `${where}: frame of unknown type ${f.type} returned`);
    assert.ok(Number.isInteger(f.requestId) && f.requestId >= 0 && f.requestId <= 0xffffffff, `${where}: request id ${f.requestId}`);
    assert.ok(typeof f.body === 'object' && f.body !== null && !Array.isArray(f.body) && !Buffer.isBuffer(f.body), `${where}: body is not an object`);
  }
}

/**
 * Fed `input` in the given chunks, a decoder returns frames or throws a ProtocolError, and in
 * the same way as when fed `input` whole.
 */
function checkDecoderContract(input: Buffer, cuts: number[], max: number): void {
  const where = `input ${input.toString('hex').slice(0, 400)} (${input.length} bytes), cuts ${JSON.stringify(cuts)}, frameBytesMax ${max}`;
  const started = performance.now();
  const whole = decodeChunks([input], max);
  const chunked = decodeChunks(chunk(input, cuts), max);
  assert.ok(performance.now() - started < 2000, `${where}: decoding took ${performance.now() - started} ms`);
  for (const r of [whole, chunked]) {
    if (r.error !== undefined) {
      assert.ok(r.error instanceof EventfulError && r.error.code === 'PROTOCOL_ERROR', `${where}: threw ${(r.error as Error)?.stack ?? String(r.error)} instead of a ProtocolError`);
    }
    checkFrames(r.frames, where);
  }
  assert.equal(chunked.error !== undefined, whole.error !== undefined, `${where}: chunking changed whether the stream is an error`);
  if (whole.error === undefined) assert.deepStrictEqual(chunked.frames, whole.frames, `${where}: chunking changed the frames`);
}

const maxArb = fc.constantFrom(16, 64, 1024, FRAME_BYTES_MAX);

test('FrameDecoder fed random bytes (property): frames or a ProtocolError, never another exception, never a hang', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)),
        // Mostly small length fields, so that random bytes get past the length checks.
        fc.array(fc.tuple(fc.integer({ min: 0, max: 80 }), fc.uint8Array({ maxLength: 90 })), { maxLength: 8 }).map((ps) => Buffer.concat(ps.flatMap(([n, b]) => [u32(n), Buffer.from(b)]))),
        fc.array(randomFrameArb, { maxLength: 8 }).map((fs) => Buffer.concat(fs)),
      ),
      fc.array(fc.nat(), { maxLength: 12 }),
      maxArb,
      (input, cuts, max) => checkDecoderContract(input, cuts, max),
    ),
    { numRuns: 2000, seed: SEED },
  );
});

test('FrameDecoder fed mutated valid frames (property): frames or a ProtocolError, never another exception, never a hang', () => {
  const validFrameArb = fc.oneof(
    validSessionArb,
    validRequestArb,
    fc.tuple(fc.constantFrom(...(Object.values(FRAME) as FrameType[])), requestIdArb, requestBodyArb).map(([t, id, body]) => anyFrame(t, id, body)),
  );
  fc.assert(
    fc.property(
      fc.array(validFrameArb, { minLength: 1, maxLength: 5 }).map((fs) => Buffer.concat(fs)),
      fc.array(mutationArb, { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      maxArb,
      (input, mutations, cuts, max) => checkDecoderContract(applyAll(input, mutations), cuts, max),
    ),
    { numRuns: 2000, seed: SEED },
  );
});

// ---------------------------------------------------------------------------------------------
// Talking to a live server over raw TCP

interface Conversation {
  frames: Frame[];
  /** The server closed (FIN or reset) before we ended our side. */
  closedByServer: boolean;
  /** Still open after we ended our side and waited. */
  stuckAfterEnd: boolean;
  /** The bytes received are not a clean sequence of frames. */
  receivedGarbage: string | undefined;
}

function addressOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Sends `chunks` on a fresh connection, then listens until the server closes or has been quiet
 * for `quietMs`; then ends our side and waits for the connection to close.
 */
async function converse(url: string, chunks: Buffer[], options: { quietMs?: number; maxMs?: number } = {}): Promise<Conversation> {
  // Generous: on a loaded CI machine the server can take a while to answer, and a wait cut
  // short would blame it for an answer that was merely late.
  const quietMs = options.quietMs ?? 750;
  const maxMs = options.maxMs ?? 8000;
  const socket = net.connect(addressOf(url));
  const received: Buffer[] = [];
  let lastActivity = Date.now();
  let closed = false;
  let weEnded = false;
  let closedByServer = false;
  socket.on('data', (d: Buffer) => {
    received.push(d);
    lastActivity = Date.now();
  });
  const onGone = (): void => {
    if (!weEnded && !closed) closedByServer = true;
  };
  socket.on('end', onGone);
  socket.on('error', onGone);
  const closedP = new Promise<void>((resolve) =>
    socket.on('close', () => {
      onGone();
      closed = true;
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  for (const c of chunks) {
    if (closed || socket.destroyed) break;
    if (c.length > 0) socket.write(c);
    await new Promise((r) => setImmediate(r));
  }
  lastActivity = Date.now();
  const started = Date.now();
  while (!closed && Date.now() - lastActivity < quietMs && Date.now() - started < maxMs) await sleep(10);
  let stuckAfterEnd = false;
  if (!closed) {
    weEnded = true;
    socket.end();
    await Promise.race([closedP, sleep(2000)]);
    stuckAfterEnd = !closed;
    socket.destroy();
  }
  const all = Buffer.concat(received);
  const d = new FrameDecoder(FRAME_BYTES_MAX);
  let frames: Frame[] = [];
  let receivedGarbage: string | undefined;
  try {
    frames = d.push(all);
    if (d.buffered > 0) receivedGarbage = `${d.buffered} bytes of an unfinished frame at the end`;
  } catch (err) {
    receivedGarbage = `the server sent bytes that are not frames: ${(err as Error).message}`;
  }
  return { frames, closedByServer, stuckAfterEnd, receivedGarbage };
}

const describeFrames = (frames: Frame[]): string =>
  frames
    .map((f) => `${FRAME_NAMES[f.type]}#${f.requestId}${f.type === FRAME.ERROR ? `(${String(f.body.code)}: ${String(f.body.message)})` : ''}`)
    .join(', ');

interface Expectation {
  /** The stream is broken: an ERROR (PROTOCOL_ERROR) then the server closes. */
  fatal: boolean;
  /** Request ids the fatal ERROR may carry. */
  fatalIds: number[];
  /** HELLO with version 1 first: WELCOME answers it (when not fatal). */
  helloId: number | undefined;
  why: string;
}

/** What the server must do with these bytes, worked out with the codec itself. */
function expectationOf(input: Buffer): Expectation {
  // Frame by frame, so that the frames before a bad one are known.
  const d = new FrameDecoder(FRAME_BYTES_MAX);
  const frames: Frame[] = [];
  let error: unknown;
  try {
    let off = 0;
    while (off < input.length) {
      const n = input.length - off >= 4 ? Math.min(input.length - off, input.readUInt32BE(off) + 4) : input.length - off;
      frames.push(...d.push(input.subarray(off, off + n)));
      off += n;
    }
  } catch (err) {
    error = err;
  }
  const first = frames[0];
  if (first !== undefined && first.type !== FRAME.HELLO) return { fatal: true, fatalIds: [0], helloId: undefined, why: 'the first frame is not HELLO' };
  if (first !== undefined && first.body.version !== PROTOCOL_VERSION) return { fatal: true, fatalIds: [0, first.requestId], helloId: undefined, why: 'HELLO with a wrong version' };
  if (error !== undefined) return { fatal: true, fatalIds: [0], helloId: undefined, why: `the decoder says: ${(error as Error).message}` };
  return { fatal: false, fatalIds: [], helloId: first?.requestId, why: first ? 'HELLO, then frames that decode' : 'no whole frame yet' };
}

/** Checks what every answer of the server must satisfy; returns problems, empty if none. */
function judge(c: LiveCase, conv: Conversation, exp: Expectation): string[] {
  const problems: string[] = [];
  if (conv.receivedGarbage !== undefined) problems.push(conv.receivedGarbage);
  for (const f of conv.frames) {
    if (f.type === FRAME.ERROR) {
      const code = f.body.code;
      if (typeof code !== 'string' || !(code in ERROR_REGISTRY)) problems.push(`ERROR with an unknown code ${String(code)}`);
      if (code === 'INTERNAL') problems.push(`ERROR INTERNAL for request ${f.requestId}: bad input must get a typed error (see the server's log)`);
    }
  }
  if (conv.stuckAfterEnd) problems.push('the connection did not close within 2 s after the client ended its side');
  if (exp.fatal) {
    const last = conv.frames.at(-1);
    if (!conv.closedByServer) problems.push(`expected the server to close the connection (${exp.why}), but it kept it open`);
    if (last === undefined || last.type !== FRAME.ERROR || last.body.code !== 'PROTOCOL_ERROR' || !exp.fatalIds.includes(last.requestId)) {
      problems.push(`expected a last ERROR PROTOCOL_ERROR with request id ${exp.fatalIds.join(' or ')} (${exp.why}), got [${describeFrames(conv.frames)}]`);
    }
  } else {
    if (conv.closedByServer) problems.push(`the server closed a connection that broke no rule (${exp.why}); got [${describeFrames(conv.frames)}]`);
    if (exp.helloId !== undefined) {
      const first = conv.frames[0];
      if (first === undefined || first.type !== FRAME.WELCOME || first.requestId !== exp.helloId) problems.push(`expected WELCOME#${exp.helloId} first, got [${describeFrames(conv.frames)}]`);
    }
  }
  return problems.map((p) => `${c.kind}: ${p}\n    sent ${c.bytes.length} bytes ${c.bytes.toString('hex').slice(0, 600)} in chunks cut at ${JSON.stringify(c.cuts)}`);
}

function alive(server: ServerProcess): boolean {
  return server.child.exitCode === null && server.child.signalCode === null;
}

async function exitedWithin(server: ServerProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (alive(server) && Date.now() < deadline) await sleep(10);
}

function deathReport(server: ServerProcess): string {
  return `the server process exited (code ${server.child.exitCode}, signal ${server.child.signalCode}); its stderr ends with:\n${server.stderr().slice(-3000)}`;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Events as comparable plain objects. */
const plain = (events: Array<{ toJSON(): Record<string, unknown> }>): Array<Record<string, unknown>> => events.map((e) => e.toJSON());

describe('a live server fed broken input', { timeout: 60_000 }, () => {
  let server: ServerProcess;
  let dataDir: string;
  let before_: Array<Record<string, unknown>> = [];
  /** Every time the server process died: the final test fails if this is not empty. */
  const deaths: string[] = [];

  /**
   * Runs a test against the live server. If the server died meanwhile, the death is recorded
   * and the test fails, and the server is restarted on the same data directory so that the
   * tests after it still say something (and the last one checks that no data was lost).
   */
  const liveTest = (name: string, fn: (t: TestContext) => Promise<void>): void => {
    test(name, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        // A crash shows first as a dropped connection; give the process a moment to exit.
        await exitedWithin(server, 500);
        throw err;
      } finally {
        if (!alive(server)) {
          const report = `${name}: ${deathReport(server)}`;
          deaths.push(report);
          server = await startServerProcess(dataDir);
          assert.fail(report);
        }
      }
    });
  };

  before(async () => {
    dataDir = tempDir('eventful-fuzz-');
    server = await startServerProcess(dataDir);
    const client = await connect(server.tcpUrl);
    try {
      await client.append('baseline-1', [
        { type: 'Opened', data: { owner: 'ana', n: 1 }, metadata: { traceId: 't-1' } },
        { type: 'Blob', data: new Uint8Array([0, 1, 2, 250, 255]), contentType: 'application/octet-stream' },
      ]);
      await client.append('baseline-2', [{ type: 'A', data: null }, { type: 'B', data: [1, 'two'] }, { type: 'C', data: 'three', metadata: { k: 'v' } }]);
      await client.append('baseline-1', [{ type: 'Closed', data: {} }], { expectedRevision: 1 });
      before_ = plain(await client.readAll().toArray());
      assert.equal(before_.length, 6);
    } finally {
      await client.close();
    }
  });

  after(async () => {
    await server?.stop();
  });

  // Hand-picked inputs, each with the exact answer expected.
  const fatalCases: Array<[string, Buffer, RegExp, number?]> = [
    ['a u32 max length prefix before HELLO', u32(0xffffffff), /exceeds the limit/],
    ['a length prefix one byte over frameBytesMax, after HELLO, no body sent', Buffer.concat([hello(), u32(FRAME_BYTES_MAX - 4 + 1)]), /exceeds the limit/],
    ['a 2 GiB length prefix after HELLO with a few body bytes', Buffer.concat([hello(), u32(0x7fffffff), Buffer.from([FRAME.APPEND, 0, 0, 0, 1, 0x80])]), /exceeds the limit/],
    ['an HTTP request instead of HELLO', bytes('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /exceeds the limit/],
    ['a valid HELLO followed by garbage behind a small length', Buffer.concat([hello(), Buffer.from([0, 0, 0, 7, 0xee, 1, 2, 3, 4, 5, 6])]), /unknown frame type/],
    ['a length field below 5', Buffer.concat([hello(), u32(3), Buffer.from([1, 2, 3])]), /shorter than a frame header/],
    ['an unknown frame type before HELLO', frameOf(99, 1, [0x80]), /unknown frame type/],
    ['an unknown frame type after HELLO', Buffer.concat([hello(), frameOf(0, 2, [0x80])]), /unknown frame type/],
    ['an APPEND body that is not MessagePack, after HELLO', Buffer.concat([hello(), frameOf(FRAME.APPEND, 2, [0x82, 0xa1])]), /not valid MessagePack/],
    ['an APPEND body that is an array, after HELLO', Buffer.concat([hello(), frameOf(FRAME.APPEND, 2, [0x92, 1, 2])]), /must be a MessagePack map/],
    ['a request before HELLO', encodeFrame(FRAME.HEAD, 1, {}), /first frame must be HELLO/],
    ['HELLO with version 2', hello(7, { version: 2 }), /not supported/, 7],
    ['HELLO with an empty body', frameOf(FRAME.HELLO, 7, []), /not supported/, 7],
    ['HELLO with version "1" (a string)', hello(7, { version: '1' }), /not supported/, 7],
    ['HELLO whose version is a map with a toString key', anyFrame(FRAME.HELLO, 7, { version: { toString: 1 } }), /not supported/, 7],
  ];
  for (const [name, input, message, requestId] of fatalCases) {
    liveTest(`broken stream, ERROR then close: ${name}`, async () => {
      const conv = await converse(server.tcpUrl, [input]);
      const last = conv.frames.at(-1);
      assert.equal(conv.receivedGarbage, undefined);
      assert.ok(last !== undefined && last.type === FRAME.ERROR, `expected an ERROR, got [${describeFrames(conv.frames)}]`);
      assert.equal(last.body.code, 'PROTOCOL_ERROR');
      assert.match(String(last.body.message), message);
      assert.equal(last.requestId, requestId ?? 0);
      assert.ok(conv.closedByServer, 'the server closes the connection after a broken stream');
      // A HELLO in the same TCP read as the bad bytes may go unanswered (the stream is dropped
      // as a whole); if it is answered, WELCOME comes first.
      assert.ok(conv.frames.length === 1 || conv.frames[0]?.type === FRAME.WELCOME, `got [${describeFrames(conv.frames)}]`);
    });
  }

  // Bad requests on a good stream: an ERROR for that request id, and the connection goes on.
  const badRequests: Array<[string, Buffer]> = [
    ...(
      [
        ['stream is a number', { stream: 42, events: [okEvent()] }],
        ['stream is nil', { stream: null, events: [okEvent()] }],
        ['stream is missing', { events: [okEvent()] }],
        ['stream is bytes', { stream: Buffer.from('fuzz-1'), events: [okEvent()] }],
        ['stream is an array', { stream: ['fuzz-1'], events: [okEvent()] }],
        ['stream is a map', { stream: { name: 'fuzz-1' }, events: [okEvent()] }],
        ['stream is a map with a toString key', { stream: { toString: 1 }, events: [okEvent()] }],
        ['stream is a Date (timestamp extension)', { stream: new Date(0), events: [okEvent()] }],
        ['stream is empty', { stream: '', events: [okEvent()] }],
        ['stream has a space', { stream: 'a b', events: [okEvent()] }],
        ['events is a string', { stream: 'fuzz-1', events: 'x' }],
        ['events is a map', { stream: 'fuzz-1', events: { 0: okEvent() } }],
        ['events is nil', { stream: 'fuzz-1', events: null }],
        ['events is empty', { stream: 'fuzz-1', events: [] }],
        ['an event is a number', { stream: 'fuzz-1', events: [42] }],
        ['an event is nil', { stream: 'fuzz-1', events: [null] }],
        ['an event is an array', { stream: 'fuzz-1', events: [['T', Buffer.from([1])]] }],
        ['event type is a number', { stream: 'fuzz-1', events: [{ ...okEvent(), type: 7 }] }],
        ['event type is a map with a toString key', { stream: 'fuzz-1', events: [{ ...okEvent(), type: { toString: 1 } }] }],
        ['event type is missing', { stream: 'fuzz-1', events: [{ data: Buffer.from([1]) }] }],
        ['event data is a string', { stream: 'fuzz-1', events: [{ ...okEvent(), data: 'text' }] }],
        ['event data is a number', { stream: 'fuzz-1', events: [{ ...okEvent(), data: 5 }] }],
        ['event data is missing', { stream: 'fuzz-1', events: [{ type: 'T' }] }],
        ['event data is a Float32Array (typed array extension)', { stream: 'fuzz-1', events: [{ ...okEvent(), data: new Float32Array([1]) }] }],
        ['event data is not JSON but says application/json', { stream: 'fuzz-1', events: [{ ...okEvent(), contentType: 'application/json' }] }],
        ['event metadata is a string', { stream: 'fuzz-1', events: [{ ...okEvent(), metadata: '{"a":1}' }] }],
        ['event metadata is a map', { stream: 'fuzz-1', events: [{ ...okEvent(), metadata: { a: 1 } }] }],
        ['event metadata bytes are not JSON', { stream: 'fuzz-1', events: [{ ...okEvent(), metadata: bytes('{nope') }] }],
        ['event metadata bytes are a JSON array', { stream: 'fuzz-1', events: [{ ...okEvent(), metadata: bytes('[1,2]') }] }],
        ['event metadata bytes are a JSON string', { stream: 'fuzz-1', events: [{ ...okEvent(), metadata: bytes('"s"') }] }],
        ['event id is a number', { stream: 'fuzz-1', events: [{ ...okEvent(), id: 5 }] }],
        ['event id is not a UUID', { stream: 'fuzz-1', events: [{ ...okEvent(), id: 'not-a-uuid' }] }],
        ['event id is 16 bytes', { stream: 'fuzz-1', events: [{ ...okEvent(), id: Buffer.alloc(16, 1) }] }],
        ['event contentType is a number', { stream: 'fuzz-1', events: [{ ...okEvent(), contentType: 3 }] }],
        ['event has an unknown field', { stream: 'fuzz-1', events: [{ ...okEvent(), extra: 1 }] }],
        ['expectedRevision is a made-up word', { stream: 'fuzz-1', events: [okEvent()], expectedRevision: 'bogus' }],
        ['expectedRevision is -5', { stream: 'fuzz-1', events: [okEvent()], expectedRevision: -5 }],
        ['expectedRevision is 1.5', { stream: 'fuzz-1', events: [okEvent()], expectedRevision: 1.5 }],
        ['expectedRevision is a map', { stream: 'fuzz-1', events: [okEvent()], expectedRevision: { r: 1 } }],
        ['expectedRevision is a map with a toString key', { stream: 'fuzz-1', events: [okEvent()], expectedRevision: { toString: 1 } }],
        ['expectedRevision is nil', { stream: 'fuzz-1', events: [okEvent()], expectedRevision: null }],
      ] as Array<[string, Record<string, unknown>]>
    ).map(([name, body]): [string, Buffer] => [`APPEND: ${name}`, anyFrame(FRAME.APPEND, 2, body)]),
    ['READ_STREAM: stream is a map with a toString key', anyFrame(FRAME.READ_STREAM, 2, { stream: { toString: 1 }, credit: 10 })],
    ['READ_STREAM: credit is a string', anyFrame(FRAME.READ_STREAM, 2, { stream: 'fuzz-1', credit: '10' })],
    ['READ_ALL: filter is a string', anyFrame(FRAME.READ_ALL, 2, { filter: 'fuzz', credit: 10 })],
    ['READ_ALL: from is a map', anyFrame(FRAME.READ_ALL, 2, { from: { p: 1 }, credit: 10 })],
    ['SUBSCRIBE: stream is a number', anyFrame(FRAME.SUBSCRIBE, 2, { stream: 5, credit: 10 })],
    ['SUBSCRIBE: stream is a map with a toString key', anyFrame(FRAME.SUBSCRIBE, 2, { stream: { toString: 1 }, credit: 10 })],
    ['STREAM_INFO: stream is a map with a toString key', anyFrame(FRAME.STREAM_INFO, 2, { stream: { toString: 1 } })],
    ['SUBSCRIBE: from is a map', anyFrame(FRAME.SUBSCRIBE, 2, { from: { p: 1 }, credit: 10 })],
    ['STREAM_INFO: stream is an array', anyFrame(FRAME.STREAM_INFO, 2, { stream: [1] })],
    ['LIST_STREAMS: limit is -1', anyFrame(FRAME.LIST_STREAMS, 2, { limit: -1 })],
    ['CREDIT: credit is a string', anyFrame(FRAME.CREDIT, 2, { credit: 'lots' })],
    ['HELLO a second time', hello(2)],
    ['a response type sent as a request (APPENDED)', encodeFrame(FRAME.APPENDED, 2, { positions: [1], revision: 0 })],
    ['a response type sent as a request (WELCOME)', encodeFrame(FRAME.WELCOME, 2, { version: 1 })],
  ];
  liveTest('bad requests on a good stream: an ERROR for that request (never INTERNAL), and the connection keeps serving', async () => {
    const problems: string[] = [];
    await Promise.all(
      badRequests.map(async ([name, frame]) => {
        const conv = await converse(server.tcpUrl, [Buffer.concat([hello(1), frame, encodeFrame(FRAME.HEAD, 3, {})])]);
        const seen = describeFrames(conv.frames);
        const err = conv.frames.find((f) => f.requestId === 2);
        const head = conv.frames.find((f) => f.requestId === 3);
        if (conv.receivedGarbage !== undefined) problems.push(`${name}: ${conv.receivedGarbage}`);
        if (conv.frames[0]?.type !== FRAME.WELCOME) problems.push(`${name}: expected WELCOME first, got [${seen}]`);
        if (err === undefined || err.type !== FRAME.ERROR) problems.push(`${name}: expected an ERROR for request 2, got [${seen}]`);
        else if (!BAD_REQUEST_CODES.has(String(err.body.code))) problems.push(`${name}: expected a bad-request code (${[...BAD_REQUEST_CODES].join(', ')}), got ${String(err.body.code)}: ${String(err.body.message)}`);
        if (head?.type !== FRAME.HEAD_RESULT) problems.push(`${name}: the HEAD after it was not answered; got [${seen}]`);
        if (conv.closedByServer) problems.push(`${name}: the server closed the connection`);
      }),
    );
    assert.deepStrictEqual(problems, []);
  });

  liveTest('200 connections of random, mutated, truncated and ill-typed input: ERROR or close as the protocol says, and the server never crashes', async (t) => {
    t.diagnostic(`seed ${SEED} (rerun with FUZZ_SEED=${SEED})`);
    const cases = fc.sample(liveCaseArb, { numRuns: 200, seed: SEED });
    const problems: string[] = [];
    const kinds = new Map<string, number>();
    const concurrency = 20;
    for (let i = 0; i < cases.length; i += concurrency) {
      const batch = cases.slice(i, i + concurrency);
      const batchProblems: string[] = [];
      await Promise.all(
        batch.map(async (c) => {
          kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
          const conv = await converse(server.tcpUrl, chunk(c.bytes, c.cuts));
          batchProblems.push(...judge(c, conv, expectationOf(c.bytes)));
        }),
      );
      await exitedWithin(server, 100);
      if (alive(server)) {
        problems.push(...batchProblems);
        continue;
      }
      // The server died: what the other connections of the batch saw says nothing. Restart it
      // and replay the batch one connection at a time to name the input that kills it.
      const report = deathReport(server);
      server = await startServerProcess(dataDir);
      let culprit = `one of the batch of cases ${i} to ${i + batch.length - 1}:\n${batch.map((c) => `    ${c.kind}: ${c.bytes.toString('hex').slice(0, 600)}`).join('\n')}`;
      for (const c of batch) {
        await converse(server.tcpUrl, chunk(c.bytes, c.cuts));
        await exitedWithin(server, 100);
        if (!alive(server)) {
          culprit = `${c.kind}: ${c.bytes.toString('hex').slice(0, 1200)} (chunks cut at ${JSON.stringify(c.cuts)})`;
          server = await startServerProcess(dataDir);
          break;
        }
      }
      const death = `${report}\n  killed by ${culprit}`;
      problems.unshift(death);
      deaths.push(death);
    }
    t.diagnostic(`cases by kind: ${JSON.stringify(Object.fromEntries(kinds))}`);
    if (process.env.FUZZ_REPORT !== undefined) fs.writeFileSync(process.env.FUZZ_REPORT, problems.join('\n\n'));
    assert.deepStrictEqual(problems.slice(0, 20), [], `${problems.length} problems (first 20 shown; FUZZ_REPORT=<file> writes all); seed ${SEED}`);
  });

  liveTest('after the fuzzing, a well-behaved client appends and reads back, and the events written before are unchanged', async () => {
    const client = await connect(server.tcpUrl);
    try {
      assert.deepStrictEqual(plain(await client.readAll({ limit: before_.length }).toArray()), before_);
      assert.deepStrictEqual(plain(await client.readStream('baseline-1').toArray()), before_.filter((e) => e.stream === 'baseline-1'));
      assert.deepStrictEqual(plain(await client.readStream('baseline-2').toArray()), before_.filter((e) => e.stream === 'baseline-2'));
      const r = await client.append('after-fuzz', [{ type: 'Still', data: { ok: true } }], { expectedRevision: 'no_stream' });
      const back = await client.readStream('after-fuzz').toArray();
      assert.equal(back.length, 1);
      assert.equal(back[0]!.position, r.positions[0]);
      assert.deepStrictEqual(back[0]!.data, { ok: true });
      assert.equal(await client.headPosition(), r.positions[0]);
    } finally {
      await client.close();
    }
    assert.deepStrictEqual(deaths, [], 'the server process never died during the fuzzing');
  });
});

describe('a client that sends faster than it reads', { timeout: 60_000 }, () => {
  let server: ServerProcess;
  // A small output buffer limit (but above the socket's 16 KiB high-water mark, under which
  // 'drain' is not emitted) so that the flood below passes it.
  const outputBufferBytesMax = 64 * 1024;
  const BIG_EVENTS = 64;
  const BIG_EVENT_BYTES = 16 * 1024;

  before(async () => {
    const dir = tempDir('eventful-flood-');
    const config = path.join(dir, 'config.json');
    fs.writeFileSync(config, JSON.stringify({ limits: { outputBufferBytesMax } }));
    server = await startServerProcess(path.join(dir, 'data'), ['--config', config]);
    const client = await connect(server.tcpUrl);
    try {
      const events = Array.from({ length: BIG_EVENTS }, (_, i) => ({ type: 'Big', data: new Uint8Array(BIG_EVENT_BYTES).fill(i), contentType: 'application/octet-stream' }));
      await client.append('big', events);
    } finally {
      await client.close();
    }
  });

  after(async () => {
    await server?.stop();
  });

  /** Opens a raw connection that reads nothing, and sends HELLO and `requests` at once. */
  async function flood(requests: Buffer[]): Promise<{ socket: net.Socket; bytes: number; gone: () => boolean }> {
    const socket = net.connect(addressOf(server.tcpUrl));
    socket.pause();
    let gone = false;
    socket.on('close', () => (gone = true));
    socket.on('error', () => (gone = true));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const all = Buffer.concat([hello(HELLO_ID), ...requests]);
    socket.write(all);
    return { socket, bytes: all.length, gone: () => gone };
  }

  const HELLO_ID = 0xfffffff0;

  /** While a flood sits unread, a well-behaved client connects, appends, reads and asks the head. */
  async function bystanderIsServed(tag: string): Promise<void> {
    const client: RemoteEventStore = await withTimeout(connect(server.tcpUrl), 5000, `${tag}: connect during the flood`);
    try {
      for (let i = 0; i < 3; i++) {
        const r = await withTimeout(client.append(`bystander-${tag}`, [{ type: 'Served', data: { i } }]), 5000, `${tag}: append during the flood`);
        const back: RecordedEvent[] = await withTimeout(client.readStream(`bystander-${tag}`, { from: r.revision }).toArray(), 5000, `${tag}: read during the flood`);
        assert.deepStrictEqual(back.map((e) => e.data), [{ i }]);
        assert.equal(await withTimeout(client.headPosition(), 5000, `${tag}: head during the flood`), r.positions[0]);
        await sleep(150);
      }
    } finally {
      await client.close();
    }
  }

  /**
   * Resumes reading a flood connection and hands every frame to `onFrame` until it says all
   * answers are in, the connection closes, or 20 s pass.
   */
  async function drain(socket: net.Socket, gone: () => boolean, onFrame: (f: Frame) => void, done: () => boolean): Promise<{ garbage: string | undefined; leftover: number; last: Frame | undefined }> {
    const decoder = new FrameDecoder(FRAME_BYTES_MAX);
    let garbage: string | undefined;
    let last: Frame | undefined;
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (done() || gone() || garbage !== undefined) resolve();
        };
        socket.on('data', (d: Buffer) => {
          try {
            for (const f of decoder.push(d)) {
              last = f;
              onFrame(f);
            }
          } catch (err) {
            garbage = (err as Error).message;
          }
          check();
        });
        socket.on('close', check);
        socket.resume();
        check();
      }),
      20_000,
      'reading the answers to the flood',
    );
    socket.destroy();
    return { garbage, leftover: decoder.buffered, last };
  }

  /** All answers arrived, or the server closed cleanly: on a frame boundary, after an ERROR saying why. */
  function allAnsweredOrClosedCleanly(t: TestContext, answered: number, expected: number, r: { garbage: string | undefined; leftover: number; last: Frame | undefined }, gone: boolean): void {
    assert.equal(r.garbage, undefined, 'the server sent bytes that are not frames');
    if (answered < expected) {
      assert.ok(gone, `only ${answered} of ${expected} answered and the connection is still open`);
      assert.equal(r.leftover, 0, 'the connection was cut in the middle of a frame');
      assert.ok(r.last?.type === FRAME.ERROR, `the server closed after ${answered} of ${expected} answers without an ERROR saying why`);
      t.diagnostic(`the server closed the connection after ${answered} of ${expected} answers: ${String(r.last.body.code)} ${String(r.last.body.message)}`);
    }
  }

  test('20,000 pipelined HEAD requests left unread: other clients are served meanwhile, and every request is answered once the client reads', async (t) => {
    const N = 20_000;
    const { socket, bytes: sent, gone } = await flood(Array.from({ length: N }, (_, i) => encodeFrame(FRAME.HEAD, i + 1, {})));
    await sleep(300);
    await bystanderIsServed('head');
    assert.ok(alive(server), deathReport(server));
    t.diagnostic(`request bytes still queued in the flooding client after 1 s: ${socket.writableLength} of ${sent}`);

    const answers = new Map<number, Frame>();
    const duplicates: number[] = [];
    const unexpected: string[] = [];
    let welcome = false;
    const r = await drain(
      socket,
      gone,
      (f) => {
        if (f.type === FRAME.WELCOME && f.requestId === HELLO_ID) welcome = true;
        else if ((f.type === FRAME.HEAD_RESULT || f.type === FRAME.ERROR) && f.requestId >= 1 && f.requestId <= N) {
          if (answers.has(f.requestId)) duplicates.push(f.requestId);
          answers.set(f.requestId, f);
        } else if (f.type !== FRAME.PING) unexpected.push(`${FRAME_NAMES[f.type]}#${f.requestId}`);
      },
      () => answers.size >= N,
    );
    const byKind = new Map<string, number>();
    for (const f of answers.values()) {
      const k = f.type === FRAME.ERROR ? `ERROR ${String(f.body.code)}` : FRAME_NAMES[f.type]!;
      byKind.set(k, (byKind.get(k) ?? 0) + 1);
    }
    t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries(byKind))}`);
    assert.ok(welcome, 'WELCOME answered the HELLO');
    assert.deepStrictEqual(duplicates, [], 'no request is answered twice');
    assert.deepStrictEqual(unexpected, []);
    allAnsweredOrClosedCleanly(t, answers.size, N, r, gone());
    for (const f of answers.values()) {
      if (f.type === FRAME.HEAD_RESULT) assert.equal(typeof f.body.position, 'number');
      // More than inFlightRequestsMax requests at once are refused with OVERLOADED, as documented.
      else assert.equal(f.body.code, 'OVERLOADED', `request ${f.requestId}: ${String(f.body.message)}`);
    }
    assert.ok(alive(server), deathReport(server));
  });

  // 20,000 small answers (about 1 MB) can fit in the kernel's loopback socket buffers, so the
  // server may never see its output buffer pass the limit. 40 reads of 1 MiB each cannot.
  test('40 pipelined reads of 1 MiB each left unread: the server holds back, others are served, and every read completes once the client reads', async (t) => {
    const N = 40;
    const { socket, gone } = await flood(Array.from({ length: N }, (_, i) => encodeFrame(FRAME.READ_STREAM, i + 1, { stream: 'big', credit: 10_000 })));
    await sleep(300);
    await bystanderIsServed('read');
    assert.ok(alive(server), deathReport(server));

    const seen = new Map<number, { events: number; done: boolean; bad: string | undefined }>();
    const unexpected: string[] = [];
    let completed = 0;
    const r = await drain(
      socket,
      gone,
      (f) => {
        if (f.type === FRAME.EVENTS && f.requestId >= 1 && f.requestId <= N) {
          const s = seen.get(f.requestId) ?? { events: 0, done: false, bad: undefined };
          seen.set(f.requestId, s);
          const events = f.body.records !== undefined ? decodeEventRecords(f.body.records as Uint8Array, f.body.count as number) : [];
          for (const e of events) {
            const data = e.rawData;
            if (e.stream !== 'big' || e.revision !== s.events || data.length !== BIG_EVENT_BYTES || data[0] !== s.events % 256) s.bad ??= `event ${s.events} of read ${f.requestId} is wrong`;
            s.events++;
          }
          if (f.body.done === true) {
            if (s.done) s.bad ??= `read ${f.requestId} ended twice`;
            s.done = true;
            completed++;
          }
        } else if (!(f.type === FRAME.WELCOME && f.requestId === HELLO_ID) && f.type !== FRAME.PING) {
          unexpected.push(`${FRAME_NAMES[f.type]}#${f.requestId}${f.type === FRAME.ERROR ? ` ${String(f.body.code)}: ${String(f.body.message)}` : ''}`);
        }
      },
      () => completed >= N,
    );
    t.diagnostic(`reads completed: ${completed} of ${N}`);
    assert.deepStrictEqual(unexpected, []);
    assert.deepStrictEqual([...seen.values()].map((s) => s.bad).filter((b) => b !== undefined), []);
    allAnsweredOrClosedCleanly(t, completed, N, r, gone());
    for (const [id, s] of seen) if (s.done) assert.equal(s.events, BIG_EVENTS, `read ${id} got ${s.events} events`);
    assert.ok(alive(server), deathReport(server));
  });
});
