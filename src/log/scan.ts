/**
 * Sequential scans of one segment's records, forwards or backwards, in large reads.
 *
 * Scans yield a chunk at a time (a buffer and the offsets of the whole, checked frames in it)
 * rather than a record at a time: one await per megabyte instead of one per event is what lets
 * a reader decode over a million events a second. A frame that fails its checks throws a
 * CorruptionError naming the file and offset: a reader never skips bad bytes.
 */
import { CorruptionError } from '../core/errors.js';
import { checkFrame } from './record.js';
import type { SegmentFiles } from './segments.js';

export interface FrameChunk {
  buf: Buffer;
  /** Offsets in `buf` of whole, checked frames, in scan order. */
  offsets: number[];
  /** File offset of buf[0]. */
  fileOffset: number;
}

export interface ScanOptions {
  chunkBytes: number;
  frameBytesMax: number;
}

/** Frames of segment `base` from file offset `from` up to `to` (exclusive), in log order. */
export async function* scanForward(segments: SegmentFiles, base: number, from: number, to: number, o: ScanOptions): AsyncGenerator<FrameChunk> {
  let pos = from;
  let carry: Buffer | undefined;
  while (pos < to) {
    const carried = carry === undefined ? 0 : carry.length;
    let size = Math.max(o.chunkBytes, carried * 2);
    size = Math.min(size, to - pos + carried);
    const buf = Buffer.allocUnsafe(size);
    if (carry !== undefined) carry.copy(buf, 0);
    const n = await segments.read(base, buf, carried, size - carried, pos);
    if (n === 0) throw new CorruptionError(segments.fileOf(base), pos, 'segment ends before its committed end');
    const end = carried + n;
    const bufStart = pos - carried;
    const offsets: number[] = [];
    let off = 0;
    while (off < end) {
      const c = checkFrame(buf, off, end, o.frameBytesMax);
      if (c.ok) {
        offsets.push(off);
        off += c.length;
      } else if (c.incomplete && bufStart + off + c.needBytes <= to && pos + n < to) {
        break; // the rest of the frame is in the next read
      } else {
        throw new CorruptionError(segments.fileOf(base), bufStart + off, c.incomplete ? 'record cut short' : c.reason);
      }
    }
    carry = off < end ? Buffer.from(buf.subarray(off, end)) : undefined;
    pos += n;
    if (offsets.length > 0) yield { buf, offsets, fileOffset: bufStart };
  }
}

/**
 * Frames of segment `base` ending at or before file offset `to`, and starting at or after
 * `lowest` (the end of the header), newest first.
 */
export async function* scanBackward(segments: SegmentFiles, base: number, lowest: number, to: number, o: ScanOptions): AsyncGenerator<FrameChunk> {
  let end = to; // file offset: everything before it is unscanned
  let want = o.chunkBytes;
  while (end > lowest) {
    const start = Math.max(lowest, end - want);
    const size = end - start;
    const buf = Buffer.allocUnsafe(size);
    const n = await segments.read(base, buf, 0, size, start);
    if (n !== size) throw new CorruptionError(segments.fileOf(base), start + n, 'segment ends before its committed end');
    const offsets: number[] = [];
    let tail = size; // end of unscanned bytes within buf
    while (tail > 0) {
      if (tail < 4) break;
      const len = buf.readUInt32LE(tail - 4);
      const frameStart = tail - len;
      if (len < 12 || len > o.frameBytesMax) {
        throw new CorruptionError(segments.fileOf(base), start + tail - 4, `trailing frame length ${len} out of range`);
      }
      if (frameStart < 0) break; // starts before this read
      const c = checkFrame(buf, frameStart, tail, o.frameBytesMax);
      if (!c.ok || c.length !== len) {
        throw new CorruptionError(segments.fileOf(base), start + frameStart, c.ok ? 'frame lengths disagree' : c.incomplete ? 'record cut short' : c.reason);
      }
      offsets.push(frameStart);
      tail = frameStart;
    }
    if (offsets.length === 0) {
      if (start === lowest) throw new CorruptionError(segments.fileOf(base), start, 'unframed bytes at the start of the segment');
      want *= 2; // one frame larger than the read: read more
      continue;
    }
    want = o.chunkBytes;
    end = start + tail;
    yield { buf, offsets, fileOffset: start };
  }
}
