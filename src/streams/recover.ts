/**
 * Opening a data directory: bring the stream index up to the end of the log, find where the log
 * really ends, and cut what a crash left half-written. See docs/storage.md#recovery.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CorruptionError } from '../core/errors.js';
import type { StoreLimits } from '../core/limits.js';
import { frame, frameBytesMaxFor } from '../log/record.js';
import { scanSegmentSync } from '../log/recovery.js';
import { HEADER_BYTES, segmentFileName } from '../log/segments.js';
import { StreamIndex } from '../log/stream-index.js';
import type { IndexEntry, StreamState } from '../log/stream-index.js';

export interface RecoveryReport {
  /** Bytes cut off the end of the last segment (a torn or uncommitted tail). */
  truncatedBytes: number;
  truncatedFile: string | undefined;
  truncatedReason: string | undefined;
  /** Events read from the log to bring the index up to date. */
  replayedEvents: number;
  /** True when the index was dropped and rebuilt from the whole log. */
  indexRebuilt: boolean;
  indexRebuildReason: string | undefined;
  durationMs: number;
}

/**
 * Brings the index up to the end of the log and finds where the log really ends: replays the
 * records after the index checkpoint, cuts a torn tail of the last segment, and rebuilds the
 * index from scratch when it cannot be trusted (missing, from another log, or ahead of the log).
 */
export async function recover(a: {
  dir: string;
  logDir: string;
  indexDir: string;
  logId: string;
  bases: number[];
  limits: StoreLimits;
  onWarning: (message: string, details: Record<string, unknown>) => void;
}): Promise<{ index: StreamIndex; head: number; activeBase: number; activeEnd: number; report: Omit<RecoveryReport, 'durationMs'> }> {
  const lastBase = a.bases[a.bases.length - 1]!;
  const fileOf = (base: number): string => path.join(a.logDir, segmentFileName(base));
  let index: StreamIndex;
  let rebuildReason: string | undefined;
  if (StreamIndex.openedInEarlierBoot(a.indexDir)) {
    rebuildReason = 'the machine restarted while the store was open (the index is written without syncs)';
    StreamIndex.destroy(a.indexDir);
  }
  try {
    index = StreamIndex.open(a.indexDir);
  } catch (err) {
    rebuildReason = `index unreadable: ${(err as Error).message}`;
    StreamIndex.destroy(a.indexDir);
    index = StreamIndex.open(a.indexDir);
  }
  const cp = index.checkpoint();
  let startBase = a.bases[0]!;
  let startOffset: number = HEADER_BYTES;
  let expected = startBase;
  if (cp !== undefined && rebuildReason === undefined) {
    if (cp.logId !== a.logId) rebuildReason = 'index belongs to another log';
    else if (!a.bases.includes(cp.segmentBase)) rebuildReason = `index checkpoint names a missing segment (${cp.segmentBase})`;
    else if (cp.offset > fs.statSync(fileOf(cp.segmentBase)).size) rebuildReason = 'index is ahead of the log (the log lost its tail)';
    else {
      startBase = cp.segmentBase;
      startOffset = cp.offset;
      expected = cp.position + 1;
    }
  } else if (cp === undefined && rebuildReason === undefined && (a.bases.length > 1 || fs.statSync(fileOf(lastBase)).size > HEADER_BYTES)) {
    rebuildReason = 'index missing';
  }
  if (rebuildReason !== undefined) {
    a.onWarning('rebuilding the stream index from the log', { reason: rebuildReason });
    await index.close();
    StreamIndex.destroy(a.indexDir);
    index = StreamIndex.open(a.indexDir);
    startBase = a.bases[0]!;
    startOffset = HEADER_BYTES;
    expected = startBase;
  }

  try {
    index.markOpen();
    let replayed = 0;
    let activeEnd: number = HEADER_BYTES;
    let truncated = { bytes: 0, file: undefined as string | undefined, reason: undefined as string | undefined };
    for (const base of a.bases) {
      if (base < startBase) continue;
      const file = fileOf(base);
      const isLast = base === lastBase;
      if (expected !== base && !(base === startBase && startOffset > HEADER_BYTES)) {
        throw new CorruptionError(file, 0, `segment starts at position ${base} but the previous one ended at ${expected - 1}`);
      }
      const scan = scanSegmentSync(file, base === startBase ? startOffset : HEADER_BYTES, isLast, a.limits.readChunkBytes, frameBytesMaxFor(a.limits.eventBytesMax), (ap) => {
        const entries: IndexEntry[] = [];
        let name: string | undefined;
        let state: StreamState | undefined;
        let ts = 0;
        for (const off of ap.offsets) {
          const pos = frame.position(ap.buf, off);
          if (pos !== expected) throw new CorruptionError(file, -1, `expected position ${expected}, found ${pos}`);
          if (name === undefined) {
            name = frame.stream(ap.buf, off);
            state = index.getStream(name);
            state = state
              ? { ...state }
              : { id: index.allocateStreamId(), revision: -1, eventCount: 0, firstPosition: pos, lastPosition: 0, createdAt: frame.timestamp(ap.buf, off), updatedAt: 0 };
          }
          const rev = frame.revision(ap.buf, off);
          if (rev !== state!.revision + 1) throw new CorruptionError(file, -1, `stream '${name}' jumps from revision ${state!.revision} to ${rev} at position ${pos}`);
          state!.revision = rev;
          state!.eventCount++;
          state!.lastPosition = pos;
          ts = frame.timestamp(ap.buf, off);
          entries.push({ revision: rev, position: pos, offset: 0, frameBytes: ap.buf.readUInt32LE(off) });
          expected++;
        }
        // File offsets: the append's frames are contiguous and end at ap.endOffset.
        let fo = ap.endOffset;
        for (let i = entries.length - 1; i >= 0; i--) {
          fo -= entries[i]!.frameBytes;
          entries[i]!.offset = fo;
        }
        state!.updatedAt = ts;
        index.add(name!, state!, entries, base, ap.endOffset);
        replayed += entries.length;
      });
      if (scan.cutBytes > 0) {
        const fd = fs.openSync(file, 'r+');
        try {
          fs.ftruncateSync(fd, scan.validEnd);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        truncated = { bytes: scan.cutBytes, file, reason: scan.cutReason };
        a.onWarning(`cut ${scan.cutBytes} bytes off the end of the log (torn or unfinished write)`, { file, offset: scan.validEnd, reason: scan.cutReason });
      }
      if (isLast) activeEnd = scan.validEnd;
      // Bound memory while rebuilding a large index: write each segment's entries as we go.
      if (index.memtableEvents > 0) await index.flush(a.logId);
    }
    return {
      index,
      head: expected - 1,
      activeBase: lastBase,
      activeEnd,
      report: {
        truncatedBytes: truncated.bytes,
        truncatedFile: truncated.file,
        truncatedReason: truncated.reason,
        replayedEvents: replayed,
        indexRebuilt: rebuildReason !== undefined,
        indexRebuildReason: rebuildReason,
      },
    };
  } catch (err) {
    // A damaged log: leave the index closed so the caller can release the directory.
    await index.close().catch(() => undefined);
    throw err;
  }
}
