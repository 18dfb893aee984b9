/**
 * Recovery scans: walk a segment from an offset, hand back whole appends (runs of records ending
 * with a COMMIT record), and say where the valid bytes end.
 *
 * In the last segment, the first bad or incomplete record, and any records after the last COMMIT,
 * are a torn tail from a crash mid-write: the caller cuts the file back to `validEnd` and reports
 * `cutBytes`. In a sealed segment the same finding is corruption, reported with file and offset:
 * a sealed segment was synced before the next one began, so a crash cannot explain it.
 */
import fs from 'node:fs';
import { CorruptionError } from '../core/errors.js';
import { FLAG_COMMIT, checkFrame, frame } from './record.js';

export interface AppendFrames {
  buf: Buffer;
  /** Offsets in `buf` of the append's frames. */
  offsets: number[];
  /** File offset just after the append's last frame. */
  endOffset: number;
}

export interface SegmentScan {
  /** File offset after the last whole append. */
  validEnd: number;
  fileBytes: number;
  /** Bytes after validEnd (0 when the segment is clean). */
  cutBytes: number;
  /** Why the tail was cut, when it was. */
  cutReason: string | undefined;
  /** File offset of the first bad record, when there is one. */
  problemOffset: number | undefined;
}

export function scanSegmentSync(
  file: string,
  from: number,
  isLast: boolean,
  chunkBytes: number,
  frameBytesMax: number,
  onAppend: (append: AppendFrames) => void,
): SegmentScan {
  const fd = fs.openSync(file, 'r');
  try {
    const fileBytes = fs.fstatSync(fd).size;
    let pos = from; // file offset of the first byte not yet consumed into a whole append
    let carry: Buffer | undefined;
    let carryStart = from;
    let pendingOffsets: number[] = [];
    let problem: { offset: number; reason: string } | undefined;
    let readPos = from;
    while (readPos < fileBytes && problem === undefined) {
      const carried = carry?.length ?? 0;
      const size = Math.min(Math.max(chunkBytes, carried * 2), fileBytes - readPos + carried);
      const buf = Buffer.allocUnsafe(size);
      if (carry) carry.copy(buf, 0);
      const n = fs.readSync(fd, buf, carried, size - carried, readPos);
      const end = carried + n;
      const bufStart = carryStart;
      let off = 0;
      pendingOffsets = [];
      let appendStartOff = 0;
      while (off < end) {
        const c = checkFrame(buf, off, end, frameBytesMax);
        if (!c.ok) {
          if (c.incomplete && readPos + n < fileBytes) break; // continue in the next read
          problem = { offset: bufStart + off, reason: c.incomplete ? 'record cut short' : c.reason };
          break;
        }
        pendingOffsets.push(off);
        off += c.length;
        if (frame.flags(buf, pendingOffsets[pendingOffsets.length - 1]!) & FLAG_COMMIT) {
          onAppend({ buf, offsets: pendingOffsets, endOffset: bufStart + off });
          pendingOffsets = [];
          appendStartOff = off;
          pos = bufStart + off;
        }
      }
      // Re-read an unfinished append (and any partial frame) together with the next chunk.
      carry = appendStartOff < end ? Buffer.from(buf.subarray(appendStartOff, end)) : undefined;
      carryStart = bufStart + appendStartOff;
      readPos += n;
    }
    if (problem === undefined && pos < fileBytes) {
      problem = { offset: pos, reason: 'append without its COMMIT record' };
    }
    if (problem !== undefined && !isLast) throw new CorruptionError(file, problem.offset, problem.reason);
    return { validEnd: pos, fileBytes, cutBytes: fileBytes - pos, cutReason: problem?.reason, problemOffset: problem?.offset };
  } finally {
    fs.closeSync(fd);
  }
}
