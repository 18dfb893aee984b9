import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import { uuidToBytes } from '../core/ids.js';
import { FLAG_COMMIT, RECORD_HEADER_BYTES, RECORD_MIN_BYTES, checkFrame, contentTypeAt, encodeRecord, frame, frameBytesFor } from './record.js';
import type { PreparedEvent } from './record.js';

function prepared(data: string, meta?: string): PreparedEvent {
  const id = Buffer.alloc(16);
  uuidToBytes('0f8fad5b-d9cb-469f-a165-70867728950e', id, 0);
  const stream = Buffer.from('order-1');
  const type = Buffer.from('OrderPlaced');
  const contentType = Buffer.from('application/json');
  const metadata = meta === undefined ? undefined : Buffer.from(meta);
  const d = Buffer.from(data);
  return {
    id,
    idString: '0f8fad5b-d9cb-469f-a165-70867728950e',
    idKey: id.toString('latin1'),
    stream,
    type,
    contentType,
    metadata,
    data: d,
    frameBytes: frameBytesFor(stream.length, type.length, contentType.length, metadata?.length ?? 0, d.length),
  };
}

test('CRC32C is the Castagnoli polynomial (check value of "123456789" is e3069283)', () => {
  assert.equal(crc32c(Buffer.from('123456789')) >>> 0, 0xe3069283);
});

test('a framed record decodes to the fields that were encoded', () => {
  const p = prepared('{"total":10}', '{"user":"ada"}');
  const buf = Buffer.alloc(p.frameBytes + 10);
  const end = encodeRecord(buf, 5, p, 123_456_789_012, 7, 1_700_000_000_000, FLAG_COMMIT);
  assert.equal(end, 5 + p.frameBytes);
  const c = checkFrame(buf, 5, end, 1 << 20);
  assert.deepEqual(c, { ok: true, length: p.frameBytes });
  assert.equal(frame.position(buf, 5), 123_456_789_012);
  assert.equal(frame.revision(buf, 5), 7);
  assert.equal(frame.timestamp(buf, 5), 1_700_000_000_000);
  assert.equal(frame.flags(buf, 5), FLAG_COMMIT);
  assert.equal(frame.stream(buf, 5), 'order-1');
  assert.equal(frame.type(buf, 5), 'OrderPlaced');
  // Variable fields follow the fixed header: stream, type, content type, metadata, data.
  let at = 5 + RECORD_HEADER_BYTES + 'order-1'.length + 'OrderPlaced'.length;
  assert.equal(contentTypeAt(buf, at, buf[5 + 54]!), 'application/json');
  at += 16;
  const metaLen = buf.readUInt32LE(5 + 55);
  assert.equal(buf.toString('utf8', at, at + metaLen), '{"user":"ada"}');
  at += metaLen;
  assert.equal(buf.toString('utf8', at, at + buf.readUInt32LE(5 + 59)), '{"total":10}');
  // The trailer repeats the length so the log can be walked backwards.
  assert.equal(buf.readUInt32LE(end - 4), p.frameBytes);
});

test('the CRC covers every byte of the frame: flipping any one byte is detected', () => {
  const p = prepared('{"a":1}');
  const buf = Buffer.alloc(p.frameBytes);
  encodeRecord(buf, 0, p, 1, 0, 1, FLAG_COMMIT);
  for (let i = 0; i < buf.length; i++) {
    const copy = Buffer.from(buf);
    copy[i] = copy[i]! ^ 0x01;
    const c = checkFrame(copy, 0, copy.length, 1 << 20);
    assert.equal(c.ok, false, `flip at byte ${i} went unnoticed`);
  }
});

test('a frame cut short is reported as incomplete, not as corrupt', () => {
  const p = prepared('{"a":1}');
  const buf = Buffer.alloc(p.frameBytes);
  encodeRecord(buf, 0, p, 1, 0, 1, FLAG_COMMIT);
  for (const cut of [0, 2, 4, 30, p.frameBytes - 1]) {
    const c = checkFrame(buf, 0, cut, 1 << 20);
    assert.equal(c.ok, false);
    assert.equal(!c.ok && c.incomplete, true, `cut at ${cut}`);
  }
});

test('lengths outside the allowed range are corrupt, whatever follows', () => {
  const buf = Buffer.alloc(64);
  buf.writeUInt32LE(RECORD_MIN_BYTES - 1, 0);
  const small = checkFrame(buf, 0, 64, 1 << 20);
  assert.equal(!small.ok && !small.incomplete, true);
  buf.writeUInt32LE(2 << 20, 0);
  const big = checkFrame(buf, 0, 64, 1 << 20);
  assert.equal(!big.ok && !big.incomplete, true);
  // Zeros (a preallocated or zero-filled tail) are corrupt too, never an empty record.
  const zeros = checkFrame(Buffer.alloc(64), 0, 64, 1 << 20);
  assert.equal(zeros.ok, false);
});
