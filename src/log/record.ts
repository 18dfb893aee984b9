/**
 * Record framing: how one event is laid out in a segment file.
 *
 * On-disk format, version 1 (all integers little-endian):
 *
 *   offset  size  field
 *   0       4     frameBytes   u32, length of the whole frame, these 4 bytes and the trailer included
 *   4       4     crc          CRC32C (Castagnoli) of bytes 8..end, the trailing length included;
 *                              the leading length is checked against the trailing one
 *   8       1     kind         1 = event
 *   9       1     flags        bit 0 COMMIT: last record of an append (an append is atomic)
 *   10      8     position     u64, global position in the log (1, 2, 3, ...)
 *   18      8     revision     u64, revision within the stream (0, 1, 2, ...)
 *   26      8     timestamp    u64, commit time in ms since the epoch
 *   34      16    id           event id, the UUID's 16 bytes
 *   50      2     streamBytes  u16
 *   52      2     typeBytes    u16
 *   54      1     ctypeBytes   u8, content type length
 *   55      4     metaBytes    u32, metadata length (0 = none)
 *   59      4     dataBytes    u32
 *   63      ...   stream, type, content type, metadata (JSON), data, in that order
 *   end-4   4     frameBytes   u32 again, so the log can be walked backwards
 *
 * Invariants: positions in a segment are consecutive; the records of one append are contiguous
 * and only the last carries COMMIT. Recovery cuts a torn tail back to the last COMMIT record,
 * so a crash never leaves half an append visible.
 *
 * This module is pure: buffers in, values out. It never touches files.
 */
import { crc32c } from '@node-rs/crc32';
import { FORMAT } from '../core/limits.js';
import { StringInterner } from './intern.js';

export const RECORD_KIND_EVENT = 1;
export const FLAG_COMMIT = 1;

export const FRAME_OVERHEAD = FORMAT.recordFrameBytes; // 12
const FIXED_BODY = FORMAT.recordFixedBodyBytes; // 55
export const RECORD_HEADER_BYTES = 8 + FIXED_BODY; // bytes before the variable fields
export const RECORD_MIN_BYTES = FRAME_OVERHEAD + FIXED_BODY;

const TWO_32 = 0x1_0000_0000;

/** An event ready to be framed: every variable field already encoded to bytes. */
export interface PreparedEvent {
  id: Uint8Array; // 16 bytes
  stream: Buffer;
  type: Buffer;
  contentType: Buffer;
  metadata: Buffer | undefined;
  data: Uint8Array;
  /** The event's id as given; undefined when the store generated it. */
  idString: string | undefined;
  /** The id's 16 bytes as a latin1 string: a short, cheap key for idempotency checks. */
  idKey: string;
  /** Frame size in bytes. */
  frameBytes: number;
}

/** The largest frame a log with this event size limit can hold (what scanners accept). */
export function frameBytesMaxFor(eventBytesMax: number): number {
  return eventBytesMax + FRAME_OVERHEAD + RECORD_HEADER_BYTES;
}

export function frameBytesFor(stream: number, type: number, ctype: number, meta: number, data: number): number {
  return FRAME_OVERHEAD + FIXED_BODY + stream + type + ctype + meta + data;
}

export function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

/** Unchecked little-endian reads, for offsets already known to be inside `buf`. */
export function u32(buf: Buffer, o: number): number {
  return (buf[o]! | (buf[o + 1]! << 8) | (buf[o + 2]! << 16)) + buf[o + 3]! * 0x100_0000;
}
export function u16(buf: Buffer, o: number): number {
  return buf[o]! | (buf[o + 1]! << 8);
}

/** Reads a u64 (below 2^53) without Buffer's bounds checks: callers read checked frames. */
export function readU64(buf: Buffer, o: number): number {
  const lo = (buf[o]! | (buf[o + 1]! << 8) | (buf[o + 2]! << 16)) + buf[o + 3]! * 0x100_0000;
  const hi = (buf[o + 4]! | (buf[o + 5]! << 8) | (buf[o + 6]! << 16)) + buf[o + 7]! * 0x100_0000;
  return lo + hi * TWO_32;
}

/** Frames `event` into `buf` at `offset`; returns the offset after the frame. */
export function encodeRecord(
  buf: Buffer,
  offset: number,
  event: PreparedEvent,
  position: number,
  revision: number,
  timestampMs: number,
  flags: number,
): number {
  const n = event.frameBytes;
  const o = offset;
  buf.writeUInt32LE(n, o);
  buf[o + 8] = RECORD_KIND_EVENT;
  buf[o + 9] = flags;
  writeU64(buf, position, o + 10);
  writeU64(buf, revision, o + 18);
  writeU64(buf, timestampMs, o + 26);
  buf.set(event.id, o + 34);
  buf.writeUInt16LE(event.stream.length, o + 50);
  buf.writeUInt16LE(event.type.length, o + 52);
  buf[o + 54] = event.contentType.length;
  const metaLen = event.metadata === undefined ? 0 : event.metadata.length;
  buf.writeUInt32LE(metaLen, o + 55);
  buf.writeUInt32LE(event.data.length, o + 59);
  let p = o + RECORD_HEADER_BYTES;
  p += event.stream.copy(buf, p);
  p += event.type.copy(buf, p);
  p += event.contentType.copy(buf, p);
  if (event.metadata !== undefined) p += event.metadata.copy(buf, p);
  buf.set(event.data, p);
  p += event.data.length;
  buf.writeUInt32LE(n, p);
  buf.writeUInt32LE(frameCrc(buf, o, n), o + 4);
  return p + 4;
}

/**
 * CRC32C of the frame at `offset` of `length` bytes: everything after the CRC field. The leading
 * length is covered through the trailing copy, which is under the CRC and must equal it.
 */
export function frameCrc(buf: Buffer, offset: number, length: number): number {
  return crc32c(buf.subarray(offset + 8, offset + length)) >>> 0;
}

/** What a scanner found at an offset. */
export type FrameCheck =
  | { ok: true; length: number }
  | { ok: false; incomplete: true; needBytes: number }
  | { ok: false; incomplete: false; reason: string };

/**
 * Checks the frame starting at `offset`, with `end` the end of valid bytes in `buf`.
 * `incomplete` means the bytes end before the frame does (a torn tail, or a read boundary).
 */
export function checkFrame(buf: Buffer, offset: number, end: number, frameBytesMax: number): FrameCheck {
  if (end - offset < 4) return { ok: false, incomplete: true, needBytes: 4 };
  const length = u32(buf, offset);
  if (length < RECORD_MIN_BYTES || length > frameBytesMax) {
    return { ok: false, incomplete: false, reason: `frame length ${length} out of range` };
  }
  if (end - offset < length) return { ok: false, incomplete: true, needBytes: length };
  if (u32(buf, offset + length - 4) !== length) {
    return { ok: false, incomplete: false, reason: 'trailing length does not match' };
  }
  if (frameCrc(buf, offset, length) !== u32(buf, offset + 4)) {
    return { ok: false, incomplete: false, reason: 'CRC32C mismatch' };
  }
  if (buf[offset + 8] !== RECORD_KIND_EVENT) {
    return { ok: false, incomplete: false, reason: `unknown record kind ${buf[offset + 8]}` };
  }
  const varBytes = u16(buf, offset + 50) + u16(buf, offset + 52) + buf[offset + 54]! + u32(buf, offset + 55) + u32(buf, offset + 59);
  if (RECORD_MIN_BYTES + varBytes !== length) {
    return { ok: false, incomplete: false, reason: 'field lengths do not add up to the frame length' };
  }
  return okFrame(length);
}

// Most frames are small and the same few sizes: reuse their results instead of allocating.
const OK_FRAMES: Array<{ ok: true; length: number } | undefined> = [];
function okFrame(length: number): { ok: true; length: number } {
  if (length >= 4096) return { ok: true, length };
  return (OK_FRAMES[length] ??= Object.freeze({ ok: true as const, length }));
}

/** Stream names and event types repeat: decode each distinct one once (src/log/intern.ts). */
export const interner = new StringInterner();

/** Cheap field reads of a checked frame, for scanners that filter before decoding. */
export const frame = {
  flags: (buf: Buffer, o: number): number => buf[o + 9]!,
  position: (buf: Buffer, o: number): number => readU64(buf, o + 10),
  revision: (buf: Buffer, o: number): number => readU64(buf, o + 18),
  timestamp: (buf: Buffer, o: number): number => readU64(buf, o + 26),
  streamBytes: (buf: Buffer, o: number): number => buf.readUInt16LE(o + 50),
  stream: (buf: Buffer, o: number): string => interner.decode(buf, o + RECORD_HEADER_BYTES, o + RECORD_HEADER_BYTES + u16(buf, o + 50)),
  type: (buf: Buffer, o: number): string => {
    const start = o + RECORD_HEADER_BYTES + u16(buf, o + 50);
    return interner.decode(buf, start, start + u16(buf, o + 52));
  },
  idBytes: (buf: Buffer, o: number): Buffer => buf.subarray(o + 34, o + 50),
};

const CT_JSON_BYTES = Buffer.from('application/json', 'latin1');

/** Decodes a content type, without allocating for the usual `application/json`. */
export function contentTypeAt(buf: Buffer, p: number, len: number): string {
  if (len === 16) {
    let same = true;
    for (let i = 0; i < 16; i++) {
      if (buf[p + i] !== CT_JSON_BYTES[i]) {
        same = false;
        break;
      }
    }
    if (same) return 'application/json';
  }
  return buf.toString('latin1', p, p + len);
}
