/**
 * Segment files: the log is a sequence of files in `<dir>/log/`, each holding consecutive
 * records, named by the position of its first record (20 decimal digits, so names sort in
 * log order): `00000000000000000001.seg`, `00000000000000052213.seg`, ...
 *
 * Segment header, format version 1 (64 bytes, little-endian):
 *
 *   0   8   magic        "EVFLSEG\0"
 *   8   2   version      u16, 1
 *   10  2   headerBytes  u16, 64
 *   12  4   flags        u32, 0
 *   16  8   basePosition u64, position of the first record this segment holds
 *   24  8   createdAt    u64, ms since the epoch
 *   32  4   segmentBytes u32, the maximum size in force when it was created
 *   36  16  logId        the log's id: a segment from another log is refused
 *   52  8   reserved     zero
 *   60  4   crc          CRC32C of bytes 0..60
 *
 * Records follow the header (src/log/record.ts). Only the last segment is written to; every
 * other segment is sealed: complete, synced, never changed again. A segment is rolled only at an
 * append boundary, so an append never spans two files.
 *
 * Concurrency: one writer (the store) appends to the last segment; any number of readers use the
 * read handles of `SegmentFiles`, reference-counted so that a file is never closed under a read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { CorruptionError, StorageFailedError, assert } from '../core/errors.js';
import { FORMAT } from '../core/limits.js';
import { readU64, writeU64 } from './record.js';

export const SEGMENT_MAGIC = Buffer.from('EVFLSEG\0', 'latin1');
export const SEGMENT_FORMAT_VERSION = 1;
export const HEADER_BYTES = FORMAT.segmentHeaderBytes;
const SEGMENT_NAME_RE = /^(\d{20})\.seg$/;

export interface SegmentHeader {
  basePosition: number;
  createdAt: number;
  segmentBytes: number;
  logId: Buffer;
}

export function segmentFileName(basePosition: number): string {
  return `${String(basePosition).padStart(20, '0')}.seg`;
}

export function encodeSegmentHeader(h: SegmentHeader): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  SEGMENT_MAGIC.copy(buf, 0);
  buf.writeUInt16LE(SEGMENT_FORMAT_VERSION, 8);
  buf.writeUInt16LE(HEADER_BYTES, 10);
  buf.writeUInt32LE(0, 12);
  writeU64(buf, h.basePosition, 16);
  writeU64(buf, h.createdAt, 24);
  buf.writeUInt32LE(h.segmentBytes, 32);
  h.logId.copy(buf, 36, 0, 16);
  buf.writeUInt32LE(crc32c(buf.subarray(0, 60)) >>> 0, 60);
  return buf;
}

/** Parses a header; returns a reason string when it is not a valid version-1 header. */
export function decodeSegmentHeader(buf: Buffer): SegmentHeader | string {
  if (buf.length < HEADER_BYTES) return `header is ${buf.length} bytes, expected ${HEADER_BYTES}`;
  if (!buf.subarray(0, 8).equals(SEGMENT_MAGIC)) return 'not an Eventful segment (bad magic)';
  if ((crc32c(buf.subarray(0, 60)) >>> 0) !== buf.readUInt32LE(60)) return 'header CRC32C mismatch';
  const version = buf.readUInt16LE(8);
  if (version !== SEGMENT_FORMAT_VERSION) return `unsupported segment format version ${version}`;
  return {
    basePosition: readU64(buf, 16),
    createdAt: readU64(buf, 24),
    segmentBytes: buf.readUInt32LE(32),
    logId: Buffer.from(buf.subarray(36, 52)),
  };
}

/** Base positions of the segment files in `logDir`, ascending. Other files are ignored. */
export function listSegments(logDir: string): number[] {
  const bases: number[] = [];
  for (const name of fs.readdirSync(logDir)) {
    const m = SEGMENT_NAME_RE.exec(name);
    if (m) bases.push(Number(m[1]));
  }
  return bases.sort((a, b) => a - b);
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates a segment holding only its header, synced, and syncs the directory entry. */
export function createSegment(logDir: string, header: SegmentHeader): string {
  const file = path.join(logDir, segmentFileName(header.basePosition));
  const fd = fs.openSync(file, 'wx');
  try {
    fs.writeSync(fd, encodeSegmentHeader(header), 0, HEADER_BYTES, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fsyncDir(logDir);
  return file;
}

/** Reads and checks a segment's header; a bad header is corruption at offset 0. */
export function readSegmentHeader(file: string, logId: Buffer | undefined): SegmentHeader {
  const buf = Buffer.alloc(HEADER_BYTES);
  const fd = fs.openSync(file, 'r');
  let n: number;
  try {
    n = fs.readSync(fd, buf, 0, HEADER_BYTES, 0);
  } finally {
    fs.closeSync(fd);
  }
  const h = decodeSegmentHeader(buf.subarray(0, n));
  if (typeof h === 'string') throw new CorruptionError(file, 0, h);
  if (logId !== undefined && !h.logId.equals(logId)) throw new CorruptionError(file, 0, 'segment belongs to another log (log id differs)');
  return h;
}

interface OpenFile {
  fd: number;
  refs: number;
  evicted: boolean;
}

/**
 * Read handles on segment files, at most `openMax` open at once (least recently used closed
 * first, but never while a read holds it). Also maps a position to the segment holding it.
 */
export class SegmentFiles {
  readonly logDir: string;
  /** Base positions, ascending. Replaced, never mutated, so a reader may hold on to a copy. */
  bases: number[];
  #open = new Map<number, OpenFile>();
  #openMax: number;

  constructor(logDir: string, bases: number[], openMax: number) {
    this.logDir = logDir;
    this.bases = bases;
    this.#openMax = openMax;
  }

  fileOf(base: number): string {
    return path.join(this.logDir, segmentFileName(base));
  }

  addSegment(base: number): void {
    assert(this.bases.length === 0 || base > this.bases[this.bases.length - 1]!, 'segments are added in order');
    this.bases = [...this.bases, base];
  }

  /** The base of the segment holding `position` (the last base <= position). */
  segmentFor(position: number): number | undefined {
    const b = this.bases;
    let lo = 0;
    let hi = b.length - 1;
    let found: number | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (b[mid]! <= position) {
        found = b[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** The base of the segment after `base`, if any. */
  next(base: number): number | undefined {
    const i = this.bases.indexOf(base);
    return i >= 0 ? this.bases[i + 1] : undefined;
  }

  previous(base: number): number | undefined {
    const i = this.bases.indexOf(base);
    return i > 0 ? this.bases[i - 1] : undefined;
  }

  acquire(base: number): number {
    let f = this.#open.get(base);
    if (f === undefined) {
      let fd: number;
      try {
        fd = fs.openSync(this.fileOf(base), 'r');
      } catch (err) {
        throw new StorageFailedError(`cannot open segment ${this.fileOf(base)}: ${(err as Error).message}`, {}, err);
      }
      f = { fd, refs: 0, evicted: false };
      this.#open.set(base, f);
      this.#evict();
    } else {
      // Refresh its place in the LRU order.
      this.#open.delete(base);
      this.#open.set(base, f);
    }
    f.refs++;
    return f.fd;
  }

  release(base: number, fd: number): void {
    const f = this.#open.get(base);
    if (f !== undefined && f.fd === fd) {
      f.refs--;
      return;
    }
    // Evicted while held: the last release closes it.
    const held = this.#evictedHeld.get(fd);
    if (held !== undefined && --held.refs === 0) {
      this.#evictedHeld.delete(fd);
      fs.closeSync(fd);
    }
  }

  #evictedHeld = new Map<number, OpenFile>();

  #evict(): void {
    for (const [base, f] of this.#open) {
      if (this.#open.size <= this.#openMax) break;
      this.#open.delete(base);
      if (f.refs === 0) fs.closeSync(f.fd);
      else this.#evictedHeld.set(f.fd, f);
    }
  }

  /** Synchronous positioned read; returns bytes read. */
  readSync(base: number, buf: Buffer, offset: number, length: number, filePosition: number): number {
    const fd = this.acquire(base);
    try {
      return fs.readSync(fd, buf, offset, length, filePosition);
    } catch (err) {
      throw new StorageFailedError(`read of ${this.fileOf(base)} failed: ${(err as Error).message}`, {}, err);
    } finally {
      this.release(base, fd);
    }
  }

  /** Asynchronous positioned read (for large sequential reads that should not block). */
  read(base: number, buf: Buffer, offset: number, length: number, filePosition: number): Promise<number> {
    const fd = this.acquire(base);
    return new Promise((resolve, reject) => {
      fs.read(fd, buf, offset, length, filePosition, (err, n) => {
        this.release(base, fd);
        if (err) reject(new StorageFailedError(`read of ${this.fileOf(base)} failed: ${err.message}`, {}, err));
        else resolve(n);
      });
    });
  }

  /** Closes every handle; called by the store after all reads ended. */
  closeAll(): void {
    for (const f of this.#open.values()) fs.closeSync(f.fd);
    for (const f of this.#evictedHeld.values()) fs.closeSync(f.fd);
    this.#open.clear();
    this.#evictedHeld.clear();
  }
}
