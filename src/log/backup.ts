/**
 * `eventful backup <dir> <file>` and `eventful restore <file> <dir>`: a data directory in one
 * file, taken while a server may be writing to it.
 *
 * Why a copy of the files is a consistent backup: the log is append-only and every record is
 * framed with its length and CRC32C; sealed segments never change. The backup lists the segment
 * files and their sizes first, then copies exactly that many bytes of each, in position order:
 * what it holds is a prefix of the log that includes every append acknowledged before it
 * started. The last segment may end inside an append that was being written; a restore cuts it
 * back to the last whole append, as recovery after a crash does. Queue snapshots are copied
 * before the segments, so each describes a position the copied log reaches. The stream index is
 * not copied: a restore rebuilds it from the log.
 *
 * File format, version 1 (integers big-endian):
 *
 *   "EVFBAK01"                                           8 bytes, magic and version
 *   then per file:  u16 pathBytes | path (UTF-8, relative, '/') | u64 bytes | bytes | u32 CRC32C of bytes
 *   then:           u16 0 (end of files) | u32 summaryBytes | summary JSON | u32 CRC32C of the summary
 *
 * The summary holds the log id, when the backup was taken, and what the log part holds (events,
 * positions). A backup is verified as it is written: it is read back, every CRC checked, and
 * every record of the log walked.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { CorruptionError, InvalidArgumentError } from '../core/errors.js';
import { DEFAULT_LIMITS } from '../core/limits.js';
import { MANIFEST_FILE, readManifest } from './manifest.js';
import { FLAG_COMMIT, checkFrame, frame, frameBytesMaxFor } from './record.js';
import { HEADER_BYTES, fsyncDir, listSegments, segmentFileName } from './segments.js';

const MAGIC = Buffer.from('EVFBAK01', 'latin1');
const CHUNK = 1024 * 1024;

export interface BackupSummary {
  format: 1;
  logId: string;
  createdAt: string;
  files: number;
  bytes: number;
  segments: number;
  /** Whole appends in the backup's log (a torn last append is not counted). */
  events: number;
  firstPosition: number;
  lastPosition: number;
  /** Bytes after the last whole append (being written when the backup was taken): a restore drops them. */
  tornTailBytes: number;
}

export interface BackupReport extends BackupSummary {
  file: string;
  durationMs: number;
}

export interface BackupOptions {
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

interface Entry {
  rel: string;
  abs: string;
  bytes: number;
}

/** Writes a backup of the data directory `dirArg` to `fileArg` (which must not exist), and verifies it. */
export async function backupDir(dirArg: string, fileArg: string, options: BackupOptions = {}): Promise<BackupReport> {
  const started = Date.now();
  const dir = path.resolve(dirArg);
  const file = path.resolve(fileArg);
  const logId = readManifest(dir);
  if (logId === undefined) throw new InvalidArgumentError(`${dir} is not an Eventful data directory (it has no ${MANIFEST_FILE})`);
  if (fs.existsSync(file)) throw new InvalidArgumentError(`${file} exists already: a backup never overwrites a file`);
  // Snapshots first, then segments (see above); each size fixed now, before any copying.
  const entries: Entry[] = [{ rel: MANIFEST_FILE, abs: path.join(dir, MANIFEST_FILE), bytes: fs.statSync(path.join(dir, MANIFEST_FILE)).size }];
  const snapDir = path.join(dir, 'queues');
  if (fs.existsSync(snapDir)) {
    for (const name of fs.readdirSync(snapDir).sort()) {
      if (!name.endsWith('.snap')) continue;
      const abs = path.join(snapDir, name);
      entries.push({ rel: `queues/${name}`, abs, bytes: fs.statSync(abs).size });
    }
  }
  const logDir = path.join(dir, 'log');
  const bases = listSegments(logDir);
  for (const base of bases) {
    const abs = path.join(logDir, segmentFileName(base));
    entries.push({ rel: `log/${segmentFileName(base)}`, abs, bytes: fs.statSync(abs).size });
  }
  const total = entries.reduce((s, e) => s + e.bytes, 0);
  const tmp = `${file}.partial`;
  const out = fs.openSync(tmp, 'wx');
  let done = 0;
  try {
    writeAll(out, MAGIC);
    for (const e of entries) {
      const rel = Buffer.from(e.rel, 'utf8');
      const head = Buffer.alloc(2 + rel.length + 8);
      head.writeUInt16BE(rel.length, 0);
      rel.copy(head, 2);
      head.writeBigUInt64BE(BigInt(e.bytes), 2 + rel.length);
      writeAll(out, head);
      let crc = 0;
      const fd = fs.openSync(e.abs, 'r');
      try {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, e.bytes)));
        for (let at = 0; at < e.bytes; ) {
          const n = fs.readSync(fd, buf, 0, Math.min(buf.length, e.bytes - at), at);
          if (n === 0) throw new CorruptionError(e.abs, at, 'the file got shorter while it was being copied');
          crc = crc32c(buf.subarray(0, n), crc);
          writeAll(out, buf.subarray(0, n));
          at += n;
          done += n;
          options.onProgress?.(done, total);
        }
      } finally {
        fs.closeSync(fd);
      }
      const c = Buffer.alloc(4);
      c.writeUInt32BE(crc >>> 0, 0);
      writeAll(out, c);
    }
    const end = Buffer.alloc(2);
    writeAll(out, end);
    fs.fsyncSync(out);
  } catch (err) {
    fs.closeSync(out);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(out);
  // Read it back: every CRC, every record; the summary goes at the end.
  let summary: BackupSummary;
  try {
    const r = readBackup(tmp, undefined, false);
    summary = { format: 1, logId, createdAt: new Date(started).toISOString(), files: entries.length, bytes: total, segments: bases.length, ...r.log };
    const json = Buffer.from(JSON.stringify(summary), 'utf8');
    const tail = Buffer.alloc(4 + json.length + 4);
    tail.writeUInt32BE(json.length, 0);
    json.copy(tail, 4);
    tail.writeUInt32BE(crc32c(json) >>> 0, 4 + json.length);
    const fd = fs.openSync(tmp, 'a');
    try {
      writeAll(fd, tail);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    fsyncDir(path.dirname(file));
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return { ...summary, file, durationMs: Date.now() - started };
}

export interface RestoreReport extends BackupSummary {
  dir: string;
  durationMs: number;
}

/**
 * Restores a backup into `dirArg` (which must not exist or be empty), checking every CRC and
 * record as it goes. Open the directory with a store (or `eventful serve`) afterwards: its
 * index is rebuilt and a torn last append is cut, as after a crash.
 */
export async function restoreBackup(fileArg: string, dirArg: string, options: BackupOptions = {}): Promise<RestoreReport> {
  const started = Date.now();
  const file = path.resolve(fileArg);
  const dir = path.resolve(dirArg);
  if (!fs.existsSync(file)) throw new InvalidArgumentError(`${file}: no such file`);
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) throw new InvalidArgumentError(`${dir} is not empty: restore into a new directory`);
  fs.mkdirSync(dir, { recursive: true });
  try {
    const r = readBackup(file, dir, true, options.onProgress);
    for (const d of [dir, path.join(dir, 'log'), path.join(dir, 'queues')]) if (fs.existsSync(d)) fsyncDir(d);
    return { ...r.summary!, dir, durationMs: Date.now() - started };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Reads a backup's summary without restoring it (checks the summary's own CRC only). */
export function readBackupSummary(fileArg: string): BackupSummary {
  return readBackup(path.resolve(fileArg), undefined, true, undefined, true).summary!;
}

/**
 * Walks a backup file: checks each file's CRC and each log record; writes the files under
 * `into` when given. `withSummary`: the file ends with its summary (a finished backup).
 */
function readBackup(
  file: string,
  into: string | undefined,
  withSummary: boolean,
  onProgress?: (done: number, total: number) => void,
  summaryOnly = false,
): { log: Omit<BackupSummary, 'format' | 'logId' | 'createdAt' | 'files' | 'bytes' | 'segments'>; summary: BackupSummary | undefined } {
  const fd = fs.openSync(file, 'r');
  const size = fs.fstatSync(fd).size;
  let at = 0;
  const read = (n: number): Buffer => {
    if (at + n > size) throw new CorruptionError(file, at, 'the backup ends early');
    const b = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const k = fs.readSync(fd, b, got, n - got, at + got);
      if (k === 0) throw new CorruptionError(file, at, 'the backup ends early');
      got += k;
    }
    at += n;
    return b;
  };
  try {
    if (!read(8).equals(MAGIC)) throw new CorruptionError(file, 0, 'not an Eventful backup (or a newer format)');
    const walker = new LogWalker(frameBytesMaxFor(DEFAULT_LIMITS.eventBytesMax));
    let logId: string | undefined;
    for (;;) {
      const pathBytes = read(2).readUInt16BE(0);
      if (pathBytes === 0) break;
      const rel = read(pathBytes).toString('utf8');
      if (rel.startsWith('/') || rel.split('/').some((p) => p === '..' || p === '') || !/^(eventful\.json|queues\/[^/]+\.snap|log\/[^/]+)$/.test(rel)) {
        throw new CorruptionError(file, at, `unexpected path '${rel.slice(0, 80)}' in the backup`);
      }
      const bytes = Number(read(8).readBigUInt64BE(0));
      const isSegment = rel.startsWith('log/');
      if (summaryOnly) {
        at += bytes + 4;
        continue;
      }
      let out: number | undefined;
      if (into !== undefined) {
        fs.mkdirSync(path.dirname(path.join(into, rel)), { recursive: true });
        out = fs.openSync(path.join(into, rel), 'wx');
      }
      try {
        let crc = 0;
        if (isSegment) walker.startSegment(rel);
        let manifest = '';
        for (let left = bytes; left > 0; ) {
          const chunk = read(Math.min(CHUNK, left));
          crc = crc32c(chunk, crc);
          if (out !== undefined) writeAll(out, chunk);
          if (isSegment) walker.feed(chunk);
          if (rel === MANIFEST_FILE) manifest += chunk.toString('utf8');
          left -= chunk.length;
          onProgress?.(at, size);
        }
        if (read(4).readUInt32BE(0) !== crc >>> 0) throw new CorruptionError(file, at, `${rel}: CRC32C mismatch: the backup is damaged`);
        if (isSegment) walker.endSegment();
        if (rel === MANIFEST_FILE) logId = (JSON.parse(manifest) as { logId?: string }).logId;
        if (out !== undefined) fs.fsyncSync(out);
      } finally {
        if (out !== undefined) fs.closeSync(out);
      }
    }
    let summary: BackupSummary | undefined;
    if (withSummary) {
      const n = read(4).readUInt32BE(0);
      const json = read(n);
      if (read(4).readUInt32BE(0) !== crc32c(json) >>> 0) throw new CorruptionError(file, at, 'the backup summary is damaged');
      summary = JSON.parse(json.toString('utf8')) as BackupSummary;
      if (!summaryOnly && (summary.logId !== logId || summary.events !== walker.events)) {
        throw new CorruptionError(file, at, 'the backup summary does not match its contents');
      }
    }
    if (at !== size) throw new CorruptionError(file, at, 'the backup has trailing bytes');
    return { log: walker.result(), summary };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Walks the records of segments fed in chunks: checks each frame, that positions run on, and
 * counts whole appends. Only the last segment may end in a torn append.
 */
class LogWalker {
  events = 0;
  #pending = 0;
  #first = 0;
  #last = 0;
  #next = 0;
  #tornBytes = 0;
  #carry: Buffer = Buffer.alloc(0);
  #skipHeader = 0;
  #segment = '';
  #offset = 0;
  #problem: string | undefined;
  readonly #frameBytesMax: number;

  constructor(frameBytesMax: number) {
    this.#frameBytesMax = frameBytesMax;
  }

  startSegment(rel: string): void {
    if (this.#tornBytes > 0) throw new CorruptionError(this.#segment, this.#offset, 'a segment that is not the last ends inside an append');
    this.#segment = rel;
    this.#carry = Buffer.alloc(0);
    this.#skipHeader = HEADER_BYTES;
    this.#offset = 0;
    this.#problem = undefined;
  }

  feed(chunk: Buffer): void {
    if (this.#skipHeader > 0) {
      const k = Math.min(this.#skipHeader, chunk.length);
      this.#skipHeader -= k;
      this.#offset += k;
      chunk = chunk.subarray(k);
    }
    if (chunk.length === 0 || this.#problem !== undefined) {
      if (this.#problem !== undefined) this.#tornBytes += chunk.length;
      return;
    }
    const buf = this.#carry.length > 0 ? Buffer.concat([this.#carry, chunk]) : chunk;
    let off = 0;
    while (off < buf.length) {
      const c = checkFrame(buf, off, buf.length, this.#frameBytesMax);
      if (!c.ok) {
        if (c.incomplete) break;
        // Damage: only a torn tail is acceptable, which endSegment decides.
        this.#problem = c.reason;
        this.#tornBytes += buf.length - off;
        this.#carry = Buffer.alloc(0);
        return;
      }
      const pos = frame.position(buf, off);
      if (this.#next !== 0 && pos !== this.#next) throw new CorruptionError(this.#segment, this.#offset + off, `position ${pos} after ${this.#next - 1}`);
      this.#next = pos + 1;
      this.#pending++;
      this.#tornBytes += c.length;
      if ((frame.flags(buf, off) & FLAG_COMMIT) !== 0) {
        if (this.#first === 0) this.#first = pos - this.#pending + 1;
        this.events += this.#pending;
        this.#last = pos;
        this.#pending = 0;
        this.#tornBytes = 0;
      }
      off += c.length;
    }
    this.#offset += off;
    this.#carry = Buffer.from(buf.subarray(off));
  }

  endSegment(): void {
    this.#tornBytes += this.#carry.length;
  }

  result(): { events: number; firstPosition: number; lastPosition: number; tornTailBytes: number } {
    return { events: this.events, firstPosition: this.#first, lastPosition: this.#last, tornTailBytes: this.#tornBytes };
  }
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off, buf.length - off);
}
