/**
 * The frame codec against saved bytes (test/protocol/fixtures/, written once by
 * make-fixtures.ts): encodeFrame must still produce exactly those bytes and the decoders must
 * turn them back into the same frames, so a change to the codec or to msgpackr that alters the
 * wire format of protocol version 1 fails here instead of breaking deployed clients. The
 * fixtures must only change together with a protocol version change.
 *
 * Also: FrameDecoder gives the same frames however the byte stream is cut into chunks, and
 * rejects bad streams (oversized or undersized length, unknown type, body that is not a
 * MessagePack map) with a ProtocolError, the oversized case before buffering the body.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { EventfulError, ProtocolError } from '../../src/core/errors.js';
import { FRAME, FRAME_HEADER_BYTES, FRAME_NAMES, FrameDecoder, decodeFrame, encodeFrame } from '../../src/protocol/codec.js';
import type { Frame, FrameType } from '../../src/protocol/codec.js';
import { FIXTURES_DIR, fromJson, parseHex } from './make-fixtures.js';
import type { FixtureJson } from './make-fixtures.js';

interface Fixture {
  name: string;
  bytes: Buffer;
  frame: Frame;
}

/** Read from disk, not from make-fixtures.ts: the saved files are the reference. */
function loadFixtures(): Fixture[] {
  const names = fs
    .readdirSync(FIXTURES_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
  return names.map((name) => {
    const json = JSON.parse(fs.readFileSync(path.join(FIXTURES_DIR, `${name}.json`), 'utf8')) as FixtureJson;
    const bytes = parseHex(fs.readFileSync(path.join(FIXTURES_DIR, `${name}.hex`), 'utf8'));
    assert.equal(FRAME_NAMES[json.type], json.typeName, `${name}.json: type ${json.type} is not ${json.typeName}`);
    return { name, bytes, frame: { type: json.type as FrameType, requestId: json.requestId, body: fromJson(json.body) as Record<string, unknown> } };
  });
}

const FIXTURES = loadFixtures();
const ALL_BYTES = Buffer.concat(FIXTURES.map((f) => f.bytes));
const ALL_FRAMES = FIXTURES.map((f) => f.frame);
const BIG = 17 * 1024 * 1024;

const isProtocolError =
  (pattern?: RegExp) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${String(e)}`);
    assert.ok(e instanceof EventfulError);
    assert.equal(e.code, 'PROTOCOL_ERROR');
    if (pattern) assert.match(e.message, pattern);
    return true;
  };

/** A frame with a hand-made body (bytes after the 9-byte header). */
function rawFrame(type: number, requestId: number, body: Buffer | number[]): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const out = Buffer.alloc(FRAME_HEADER_BYTES + b.length);
  out.writeUInt32BE(5 + b.length, 0);
  out[4] = type;
  out.writeUInt32BE(requestId, 5);
  b.copy(out, FRAME_HEADER_BYTES);
  return out;
}

function feed(decoder: FrameDecoder, chunks: Buffer[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) out.push(...decoder.push(c));
  return out;
}

test('the fixtures cover every frame the protocol tests rely on', () => {
  const types = new Set(FIXTURES.map((f) => FRAME_NAMES[f.frame.type]));
  for (const t of ['HELLO', 'WELCOME', 'APPEND', 'APPENDED', 'EVENTS', 'ERROR', 'PING', 'CREDIT', 'SUBSCRIBE']) assert.ok(types.has(t), `no fixture for ${t}`);
  const append = FIXTURES.find((f) => f.frame.type === FRAME.APPEND)!.frame.body;
  const events = append.events as Array<Record<string, unknown>>;
  assert.equal(events.length, 2);
  assert.ok(events.every((e) => Buffer.isBuffer(e.data) && Buffer.isBuffer(e.metadata)));
  assert.ok(events.some((e) => e.contentType === 'application/octet-stream'), 'the APPEND fixture has binary data');
  assert.equal((FIXTURES.find((f) => f.frame.type === FRAME.EVENTS)!.frame.body.events as unknown[]).length, 2);
  assert.ok(FIXTURES.find((f) => f.frame.type === FRAME.SUBSCRIBE)!.frame.body.filter !== undefined);
});

for (const f of FIXTURES) {
  test(`fixture ${f.name}: encodeFrame gives exactly the saved bytes, and they decode back to the frame`, () => {
    const encoded = encodeFrame(f.frame.type, f.frame.requestId, f.frame.body);
    assert.equal(encoded.toString('hex'), f.bytes.toString('hex'), `${f.name}: the wire format of protocol version 1 changed`);
    assert.deepStrictEqual(decodeFrame(f.bytes), f.frame);
    const d = new FrameDecoder(BIG);
    assert.deepStrictEqual(d.push(f.bytes), [f.frame]);
    assert.equal(d.buffered, 0);
  });
}

test('byte data encodes the same from a Uint8Array as from a Buffer (the client passes Uint8Array)', () => {
  const f = FIXTURES.find((x) => x.frame.type === FRAME.APPEND)!;
  const body = structuredClone(f.frame.body) as { events: Array<Record<string, unknown>> };
  for (const e of body.events) {
    e.data = new Uint8Array(e.data as Buffer);
    e.metadata = new Uint8Array(e.metadata as Buffer);
  }
  assert.equal(encodeFrame(f.frame.type, f.frame.requestId, body).toString('hex'), f.bytes.toString('hex'));
});

test('FrameDecoder: all fixtures back to back, split at every possible boundary, give the same frames', () => {
  const whole = new FrameDecoder(BIG);
  assert.deepStrictEqual(whole.push(ALL_BYTES), ALL_FRAMES);
  for (let i = 0; i <= ALL_BYTES.length; i++) {
    const d = new FrameDecoder(BIG);
    assert.deepStrictEqual(feed(d, [ALL_BYTES.subarray(0, i), ALL_BYTES.subarray(i)]), ALL_FRAMES, `split at ${i}`);
    assert.equal(d.buffered, 0);
  }
});

test('FrameDecoder: one byte at a time gives the same frames, and holds exactly the bytes of the unfinished frame', () => {
  const d = new FrameDecoder(BIG);
  const out: Frame[] = [];
  let frameStart = 0;
  const ends = FIXTURES.reduce<number[]>((acc, f) => [...acc, (acc.at(-1) ?? 0) + f.bytes.length], []);
  for (let i = 0; i < ALL_BYTES.length; i++) {
    const got = d.push(ALL_BYTES.subarray(i, i + 1));
    out.push(...got);
    if (got.length > 0) {
      assert.equal(got.length, 1);
      assert.equal(i + 1, ends[out.length - 1], 'a frame is returned as soon as its last byte arrives');
      frameStart = i + 1;
    }
    assert.equal(d.buffered, i + 1 - frameStart);
  }
  assert.deepStrictEqual(out, ALL_FRAMES);
});

test('FrameDecoder: random chunkings (property) give the same frames', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: ALL_BYTES.length }), { maxLength: 40 }), fc.boolean(), (cuts, emptyChunks) => {
      const points = [0, ...cuts.sort((a, b) => a - b), ALL_BYTES.length];
      const chunks: Buffer[] = [];
      for (let i = 1; i < points.length; i++) {
        chunks.push(ALL_BYTES.subarray(points[i - 1]!, points[i]!));
        if (emptyChunks) chunks.push(Buffer.alloc(0));
      }
      const d = new FrameDecoder(BIG);
      assert.deepStrictEqual(feed(d, chunks), ALL_FRAMES);
      assert.equal(d.buffered, 0);
    }),
    { numRuns: 300 },
  );
});

test('FrameDecoder: a length over frameBytesMax is a ProtocolError as soon as the 4 length bytes arrive, before any body', () => {
  const max = 1024;
  for (const length of [max - 4 + 1, 10_000, 0x7fffffff, 0xffffffff]) {
    const d = new FrameDecoder(max);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(length >>> 0, 0);
    // Only the first 3 bytes: nothing to judge yet.
    assert.deepStrictEqual(d.push(prefix.subarray(0, 3)), []);
    assert.equal(d.buffered, 3);
    assert.throws(
      () => d.push(prefix.subarray(3)),
      (e: unknown) => isProtocolError(/exceeds the limit/)(e) && (e as ProtocolError).details.limit === 'frameBytesMax',
    );
    assert.equal(d.buffered, 0, 'nothing of the oversized frame is kept');
  }
  // Exactly at the limit is fine.
  const atLimit = rawFrame(FRAME.PING, 7, [0x80]);
  const d = new FrameDecoder(atLimit.length);
  assert.deepStrictEqual(d.push(atLimit), [{ type: FRAME.PING, requestId: 7, body: {} }]);
  assert.throws(() => new FrameDecoder(atLimit.length - 1).push(atLimit), isProtocolError(/exceeds the limit/));
});

test('FrameDecoder: an oversized frame after good frames in the same chunk is still rejected before its body', () => {
  const d = new FrameDecoder(256);
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(1_000_000, 0);
  assert.throws(() => d.push(Buffer.concat([rawFrame(FRAME.PING, 1, [0x80]), huge])), isProtocolError(/exceeds the limit/));
  assert.equal(d.buffered, 0);
});

test('FrameDecoder: a length below 5 (shorter than type + request id) is a ProtocolError', () => {
  for (let length = 0; length < 5; length++) {
    const bytes = Buffer.alloc(4 + length);
    bytes.writeUInt32BE(length, 0);
    bytes.fill(FRAME.PING, 4);
    assert.throws(() => new FrameDecoder(BIG).push(bytes), isProtocolError(/shorter than a frame header/), `length ${length}`);
    // Judged from the length alone: the rest of the frame is not awaited.
    assert.throws(() => new FrameDecoder(BIG).push(bytes.subarray(0, 4)), isProtocolError(), `length ${length}, prefix only`);
  }
});

test('a frame with no body bytes (length 5) decodes with an empty body', () => {
  const bytes = rawFrame(FRAME.PING, 9, []);
  assert.deepStrictEqual(decodeFrame(bytes), { type: FRAME.PING, requestId: 9, body: {} });
  assert.deepStrictEqual(new FrameDecoder(BIG).push(bytes), [{ type: FRAME.PING, requestId: 9, body: {} }]);
});

test('an unknown frame type is a ProtocolError (decodeFrame and FrameDecoder)', () => {
  const known = new Set<number>(Object.values(FRAME));
  for (let type = 0; type < 256; type++) {
    if (known.has(type)) continue;
    const bytes = rawFrame(type, 3, [0x80]);
    const check = (e: unknown): boolean => isProtocolError(/unknown frame type/)(e) && (e as ProtocolError).details.type === type;
    assert.throws(() => decodeFrame(bytes), check, `type ${type}`);
    assert.throws(() => new FrameDecoder(BIG).push(bytes), check, `type ${type}`);
  }
});

test('a body that is not MessagePack, or not a map, is a ProtocolError', () => {
  const notMsgpack: Array<[string, number[]]> = [
    ['a map cut short', [0x82, 0xa1, 0x61, 0x01]],
    ['a map16 header alone', [0xde, 0x00, 0x05]],
    ['a str8 longer than the body', [0x81, 0xa1, 0x61, 0xd9, 0x20, 0x61]],
    ['a map followed by trailing bytes', [0x80, 0x00]],
    ['two maps', [0x80, 0x80]],
    ['an unknown extension type', [0xd4, 0x13, 0x00]],
  ];
  for (const [what, body] of notMsgpack) {
    const bytes = rawFrame(FRAME.APPEND, 5, body);
    assert.throws(() => decodeFrame(bytes), isProtocolError(/not valid MessagePack/), what);
    assert.throws(() => new FrameDecoder(BIG).push(bytes), isProtocolError(/not valid MessagePack/), what);
  }
  const notAMap: Array<[string, number[]]> = [
    ['nil', [0xc0]],
    ['true', [0xc3]],
    ['an integer', [0x2a]],
    ['a float', [0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18]],
    ['a string', [0xa3, 0x61, 0x62, 0x63]],
    ['an array', [0x92, 0x01, 0x02]],
    ['an empty array', [0x90]],
    ['bytes', [0xc4, 0x02, 0x01, 0x02]],
  ];
  for (const [what, body] of notAMap) {
    const bytes = rawFrame(FRAME.APPEND, 5, body);
    assert.throws(() => decodeFrame(bytes), isProtocolError(/must be a MessagePack map/), what);
    assert.throws(() => new FrameDecoder(BIG).push(bytes), isProtocolError(/must be a MessagePack map/), what);
  }
});

test('a body in MessagePack that only msgpackr extensions give meaning to is not a map: ProtocolError', () => {
  // The protocol is standard MessagePack without extensions (codec.ts). msgpackr decodes the
  // never-used byte 0xc1 and its own extension types to objects (Date, Set, RegExp, Error, typed
  // arrays); `typeof body === 'object'` alone would take any of them for a map.
  const cases: Array<[string, number[]]> = [
    ['the never-used byte 0xc1', [0xc1]],
    ['a timestamp extension (Date)', [0xd6, 0xff, 0x00, 0x00, 0x00, 0x00]],
    ['a Set extension', [0xd4, 0x73, 0x00, 0x91, 0x01]],
    ['a RegExp extension', [0xd4, 0x78, 0x00, 0x92, 0xa2, 0x61, 0x2b, 0xa1, 0x67]],
    ['an Error extension', [0xd4, 0x65, 0x00, 0x93, 0xa5, 0x45, 0x72, 0x72, 0x6f, 0x72, 0xa1, 0x78, 0xc0]],
    ['a typed array extension (Float32Array)', [0xc7, 0x05, 0x74, 0x07, 0x00, 0x00, 0x80, 0x3f]],
  ];
  const failures: string[] = [];
  for (const [what, body] of cases) {
    const bytes = rawFrame(FRAME.APPEND, 5, body);
    for (const [how, run] of [
      ['decodeFrame', () => decodeFrame(bytes)],
      ['FrameDecoder', () => new FrameDecoder(BIG).push(bytes)],
    ] as const) {
      try {
        const got = run();
        failures.push(`${what} (${how}): decoded to ${Object.prototype.toString.call('body' in got ? got.body : got[0]!.body)} instead of a ProtocolError`);
      } catch (e) {
        if (!(e instanceof ProtocolError)) failures.push(`${what} (${how}): threw ${String(e)}`);
      }
    }
  }
  assert.deepStrictEqual(failures, []);
});

test('decodeFrame: fewer bytes than a header, or a length field that disagrees with the bytes, is a ProtocolError', () => {
  const good = FIXTURES[0]!.bytes;
  for (let n = 0; n < FRAME_HEADER_BYTES; n++) assert.throws(() => decodeFrame(good.subarray(0, n)), isProtocolError(/shorter than its header/));
  assert.throws(() => decodeFrame(good.subarray(0, good.length - 1)), isProtocolError(/frame says/));
  assert.throws(() => decodeFrame(Buffer.concat([good, Buffer.from([0])])), isProtocolError(/frame says/));
});
