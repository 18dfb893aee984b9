/**
 * `eventful verify <dir>`: reads every record of every segment, checks its CRC32C and framing,
 * that positions run on without a gap, that each stream's revisions run on from 0, and that the
 * stream index agrees with the log. It changes nothing (a torn tail is reported, not cut), and
 * holds the directory's lock while it runs, so no writer changes the log under it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { DEFAULT_LIMITS } from '../core/limits.js';
import { lockDir } from './lock.js';
import { logIdBytes, readManifest } from './manifest.js';
import { frame, frameBytesMaxFor } from './record.js';
import { scanSegmentSync } from './recovery.js';
import { listSegments, readSegmentHeader, segmentFileName } from './segments.js';
import { StreamIndex } from './stream-index.js';

export interface VerifyProblem {
  file: string;
  offset: number;
  message: string;
}

export interface VerifyReport {
  dir: string;
  segments: number;
  bytes: number;
  events: number;
  streams: number;
  firstPosition: number;
  lastPosition: number;
  /** Events after the index checkpoint: not a problem, the next open replays them. */
  eventsNotYetIndexed: number;
  indexCheckedEvents: number;
  problems: VerifyProblem[];
  durationMs: number;
}

export interface VerifyOptions {
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Stop collecting after this many problems. @default 100 */
  problemsMax?: number;
}

interface StreamTally {
  revision: number;
  count: number;
  first: number;
  last: number;
}

export async function verifyDir(dirArg: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const dir = path.resolve(dirArg);
  const problemsMax = options.problemsMax ?? 100;
  if (!fs.existsSync(dir)) throw new InvalidArgumentError(`${dir}: no such directory`);
  const logId = readManifest(dir);
  if (logId === undefined) throw new InvalidArgumentError(`${dir} is not an Eventful data directory (it has no eventful.json)`);
  const lock = await lockDir(dir);
  const problems: VerifyProblem[] = [];
  const problem = (file: string, offset: number, message: string): void => {
    if (problems.length < problemsMax) problems.push({ file, offset, message });
  };
  let index: StreamIndex | undefined;
  try {
    const logDir = path.join(dir, 'log');
    const bases = listSegments(logDir);
    const total = bases.reduce((sum, b) => sum + fs.statSync(path.join(logDir, segmentFileName(b))).size, 0);
    const indexDir = path.join(dir, 'index');
    if (!fs.existsSync(indexDir)) problem(indexDir, 0, 'the stream index is missing (the next open rebuilds it)');
    else if (StreamIndex.openedInEarlierBoot(indexDir)) problem(indexDir, 0, 'the machine restarted while the store was open: the index is not trusted (the next open rebuilds it)');
    else index = StreamIndex.open(indexDir);
    const cp = index?.checkpoint();
    if (index !== undefined && cp === undefined && bases.length > 0) problem(indexDir, 0, 'the stream index has no checkpoint (the next open rebuilds it)');
    if (cp !== undefined && cp.logId !== logId) problem(indexDir, 0, 'the stream index belongs to another log');
    const indexedUpTo = cp !== undefined && cp.logId === logId ? cp.position : 0;

    const streams = new Map<string, StreamTally>();
    let expected = bases[0] ?? 1;
    let events = 0;
    let done = 0;
    let indexChecked = 0;
    let notIndexed = 0;
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i]!;
      const file = path.join(logDir, segmentFileName(base));
      try {
        const h = readSegmentHeader(file, logIdBytes(logId));
        if (h.basePosition !== base) problem(file, 16, `header says base position ${h.basePosition}, the name says ${base}`);
      } catch (err) {
        problem(file, 0, (err as Error).message);
        continue;
      }
      if (base !== expected) problem(file, 0, `segment starts at position ${base}, expected ${expected}`);
      expected = base;
      const isLast = i === bases.length - 1;
      const scan = scanSegmentSync(file, 64, true, DEFAULT_LIMITS.readChunkBytes, frameBytesMaxFor(DEFAULT_LIMITS.eventBytesMax), (ap) => {
        let fo = ap.endOffset;
        for (let k = ap.offsets.length - 1; k >= 0; k--) fo -= ap.buf.readUInt32LE(ap.offsets[k]!);
        for (const off of ap.offsets) {
          const frameBytes = ap.buf.readUInt32LE(off);
          const pos = frame.position(ap.buf, off);
          const rev = frame.revision(ap.buf, off);
          const name = frame.stream(ap.buf, off);
          if (pos !== expected) problem(file, fo, `position ${pos} where ${expected} was expected`);
          expected = pos + 1;
          let t = streams.get(name);
          if (t === undefined) streams.set(name, (t = { revision: -1, count: 0, first: pos, last: 0 }));
          if (rev !== t.revision + 1) problem(file, fo, `stream '${name}' goes from revision ${t.revision} to ${rev}`);
          t.revision = rev;
          t.count++;
          t.last = pos;
          if (index !== undefined && pos <= indexedUpTo) {
            const st = index.getStream(name);
            const e = st === undefined ? undefined : index.storedEntry(st.id, rev);
            if (e === undefined) problem(file, fo, `index has no entry for '${name}' revision ${rev}`);
            else if (e.position !== pos || e.offset !== fo || e.frameBytes !== frameBytes) {
              problem(file, fo, `index entry for '${name}' revision ${rev} points at position ${e.position} offset ${e.offset}, the log has ${pos} at ${fo}`);
            }
            indexChecked++;
          } else notIndexed++;
          fo += frameBytes;
          events++;
        }
        options.onProgress?.(done + ap.endOffset, total);
      });
      if (scan.cutBytes > 0) {
        const where = scan.problemOffset ?? scan.validEnd;
        problem(
          file,
          where,
          isLast
            ? `torn tail: ${scan.cutBytes} bytes after offset ${scan.validEnd} (${scan.cutReason}); the next open cuts them`
            : `corrupt record in a sealed segment: ${scan.cutReason}`,
        );
      }
      done += scan.fileBytes;
      options.onProgress?.(done, total);
    }
    if (index !== undefined) {
      for (const [name, t] of streams) {
        if (t.last > indexedUpTo) continue;
        const st = index.getStream(name);
        if (st === undefined) problem(indexDir, 0, `stream '${name}' is missing from the index`);
        else if (st.revision !== t.revision || st.eventCount !== t.count || st.firstPosition !== t.first || st.lastPosition !== t.last) {
          problem(indexDir, 0, `stream '${name}': index says revision ${st.revision}, ${st.eventCount} events, positions ${st.firstPosition}-${st.lastPosition}; the log says ${t.revision}, ${t.count}, ${t.first}-${t.last}`);
        }
      }
    }
    return {
      dir,
      segments: bases.length,
      bytes: total,
      events,
      streams: streams.size,
      firstPosition: bases[0] ?? 1,
      lastPosition: expected - 1,
      eventsNotYetIndexed: notIndexed,
      indexCheckedEvents: indexChecked,
      problems,
      durationMs: Date.now() - started,
    };
  } finally {
    await index?.close();
    await lock.release();
  }
}
