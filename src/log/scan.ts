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

/** Reads at least this large keep room in front for a cut frame. */
const SMALL_READ_BYTES = 256 * 1024;
/** That room: frames up to this size are stitched without copying the read. */
const RESERVE_BYTES = 64 * 1024;

export interface ScanOptions {
  chunkBytes: number;
  frameBytesMax: number;
}

/**
 * Frames of segment `base` from file offset `from` up to `to` (exclusive), in log order.
 *
 * Reads are double-buffered: the next read is issued before the current chunk is handed out, so
 * the disk (or page cache copy) works while the caller decodes. A large read keeps 64 KiB free
 * in front, where the unfinished frame from the previous chunk is copied: a frame that
 * straddles two reads is stitched without copying the new chunk (larger frames are stitched by
 * copying).
 */
export async function* scanForward(segments: SegmentFiles, base: number, from: number, to: number, o: ScanOptions): AsyncGenerator<FrameChunk> {
  const startRead = (at: number): { at: number; buf: Buffer; reserve: number; done: Promise<number> } => {
    const len = Math.min(o.chunkBytes, to - at);
    // Room in front for a frame cut by the previous read, but only for large reads: following
    // the log's tail reads a few KiB at a time, ending on frame boundaries, and a megabyte of
    // reserve per read would be garbage-collector work for nothing.
    const reserve = len >= SMALL_READ_BYTES ? Math.min(o.frameBytesMax, RESERVE_BYTES) : 0;
    const buf = Buffer.allocUnsafe(reserve + len);
    return { at, buf, reserve, done: segments.read(base, buf, reserve, len, at) };
  };
  let carry: Buffer | undefined;
  let next = from < to ? startRead(from) : undefined;
  while (next !== undefined) {
    const cur = next;
    const n = await cur.done;
    if (n === 0) throw new CorruptionError(segments.fileOf(base), cur.at, 'segment ends before its committed end');
    const readEnd = cur.at + n;
    next = readEnd < to ? startRead(readEnd) : undefined;
    const carried = carry?.length ?? 0;
    if (carried > cur.reserve) {
      // A frame larger than the reserve straddles the reads: stitch by copying.
      const joined = Buffer.allocUnsafe(carried + n);
      carry!.copy(joined, 0);
      cur.buf.copy(joined, carried, cur.reserve, cur.reserve + n);
      cur.buf = joined;
      cur.reserve = carried;
    }
    const reserve = cur.reserve;
    const start = reserve - carried;
    if (carry !== undefined) carry.copy(cur.buf, start);
    const end = reserve + n;
    const fileOffsetOfBuf = cur.at - reserve; // file offset of cur.buf[0]
    const offsets: number[] = [];
    let off = start;
    while (off < end) {
      const c = checkFrame(cur.buf, off, end, o.frameBytesMax);
      if (c.ok) {
        offsets.push(off);
        off += c.length;
      } else if (c.incomplete && fileOffsetOfBuf + off + c.needBytes <= to && readEnd < to) {
        break; // the rest of the frame is in the next read
      } else {
        throw new CorruptionError(segments.fileOf(base), fileOffsetOfBuf + off, c.incomplete ? 'record cut short' : c.reason);
      }
    }
    carry = off < end ? Buffer.from(cur.buf.subarray(off, end)) : undefined;
    if (offsets.length > 0) yield { buf: cur.buf, offsets, fileOffset: fileOffsetOfBuf };
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
