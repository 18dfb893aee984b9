/**
 * The stream index: from a stream name to where each of its events sits in the log, so reading
 * one stream never scans the log. It lives in LMDB at `<dir>/index/`, behind an in-memory
 * memtable of what was appended since the last flush.
 *
 * LMDB databases (integers big-endian in keys so they sort, little-endian in values):
 *
 *   streams    key: stream name (UTF-8)
 *              value: 56 bytes: id u64, revision u64, eventCount u64, firstPosition u64,
 *                     lastPosition u64, createdAt u64, updatedAt u64
 *   events     key: streamId u64 BE, revision u64 BE (16 bytes)
 *              value: position u64, offset u32 (in its segment), frameBytes u32 (16 bytes)
 *   positions  key: position u64 BE -> value: offset u32 in the segment holding it.
 *              Sparse (one entry every `SPARSE_EVERY_BYTES` of log) for seeking $all reads.
 *   meta       'checkpoint' -> { position, segmentBase, offset, logId, nextStreamId }
 *
 * The segment holding a position is found from the segment files' base positions, so entries
 * never name files.
 *
 * Durability and recovery: the log is the truth; the index is derived from it. Appends go to
 * the memtable as soon as they are durable in the log; a flush writes the memtable and a
 * checkpoint (the log position and file offset it covers) in one LMDB transaction. On open the
 * store replays only the log after the checkpoint. An index found ahead of the log, from
 * another log, or unreadable, is dropped and rebuilt from the whole log.
 *
 * LMDB commits without syncing (noSync): an fsync per index flush competed with the log's own
 * fdatasync and added milliseconds to append latency. That is safe because of the OPEN marker:
 * it holds the machine's boot id while the index is open and is removed after a clean close has
 * synced the index. A process crash leaves the OS page cache, so LMDB is intact and only the
 * log's tail is replayed; a marker from an earlier boot means the OS went down with unsynced
 * index pages, so the index is rebuilt from the log.
 *
 * Concurrency: one process (the lock holder). Reads merge the active memtable, the memtable
 * being flushed, and LMDB, all within one synchronous call, so a flush finishing between two
 * reads cannot hide an entry from either.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import type { Database, RootDatabase } from 'lmdb';
import { assert } from '../core/errors.js';

/** Event entries written per event-loop turn while flushing. */
const FLUSH_SLICE_ENTRIES = 500;

/** Write a positions entry at most every this many bytes of log. */
export const SPARSE_EVERY_BYTES = 64 * 1024;
const INDEX_FORMAT_VERSION = 1;

export interface StreamState {
  id: number;
  revision: number;
  eventCount: number;
  firstPosition: number;
  lastPosition: number;
  createdAt: number;
  updatedAt: number;
}

export interface IndexEntry {
  revision: number;
  position: number;
  offset: number;
  frameBytes: number;
}

export interface IndexCheckpoint {
  /** Last position the index covers (0: none). */
  position: number;
  /** Segment and file offset just after that position's record. */
  segmentBase: number;
  offset: number;
  logId: string;
  nextStreamId: number;
  formatVersion: number;
}

class Memtable {
  streams = new Map<string, StreamState>();
  entries = new Map<string, IndexEntry[]>();
  sparse: Array<[position: number, offset: number]> = [];
  eventCount = 0;
  checkpoint: IndexCheckpoint | undefined;
}

const TWO_32 = 0x1_0000_0000;

function u64be(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), offset);
  buf.writeUInt32BE(value % TWO_32, offset + 4);
}
function readU64be(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset) * TWO_32 + buf.readUInt32BE(offset + 4);
}
function u64le(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}
function readU64le(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * TWO_32;
}

function eventKey(streamId: number, revision: number): Buffer {
  const k = Buffer.allocUnsafe(16);
  u64be(k, streamId, 0);
  u64be(k, revision, 8);
  return k;
}

function encodeState(s: StreamState): Buffer {
  const b = Buffer.allocUnsafe(56);
  u64le(b, s.id, 0);
  u64le(b, s.revision, 8);
  u64le(b, s.eventCount, 16);
  u64le(b, s.firstPosition, 24);
  u64le(b, s.lastPosition, 32);
  u64le(b, s.createdAt, 40);
  u64le(b, s.updatedAt, 48);
  return b;
}

function decodeState(b: Buffer): StreamState {
  return {
    id: readU64le(b, 0),
    revision: readU64le(b, 8),
    eventCount: readU64le(b, 16),
    firstPosition: readU64le(b, 24),
    lastPosition: readU64le(b, 32),
    createdAt: readU64le(b, 40),
    updatedAt: readU64le(b, 48),
  };
}

export class StreamIndex {
  readonly dir: string;
  #env: RootDatabase;
  #streams: Database<Buffer, string>;
  #events: Database<Buffer, Buffer>;
  #positions: Database<Buffer, Buffer>;
  #meta: Database<unknown, string>;
  #active = new Memtable();
  #flushing: Memtable | undefined;
  #flushPromise: Promise<void> | undefined;
  #nextStreamId = 1;
  #lastSparseOffset = -Infinity;
  #lastSparseBase = -1;

  private constructor(dir: string, env: RootDatabase) {
    this.dir = dir;
    this.#env = env;
    this.#streams = env.openDB<Buffer, string>({ name: 'streams', encoding: 'binary' });
    this.#events = env.openDB<Buffer, Buffer>({ name: 'events', encoding: 'binary', keyEncoding: 'binary' });
    this.#positions = env.openDB<Buffer, Buffer>({ name: 'positions', encoding: 'binary', keyEncoding: 'binary' });
    this.#meta = env.openDB<unknown, string>({ name: 'meta' });
  }

  static open(dir: string): StreamIndex {
    fs.mkdirSync(dir, { recursive: true });
    const env = open({ path: dir, maxDbs: 8, noMemInit: true, noSync: true });
    const index = new StreamIndex(dir, env);
    const cp = index.checkpoint();
    if (cp !== undefined) index.#nextStreamId = cp.nextStreamId;
    return index;
  }

  /**
   * Whether an index left open by an earlier boot of the machine may hold torn pages. Call
   * before `open`. True means: rebuild it.
   */
  static openedInEarlierBoot(dir: string): boolean {
    const marker = path.join(dir, OPEN_MARKER);
    if (!fs.existsSync(marker)) return false;
    return fs.readFileSync(marker, 'utf8').trim() !== bootId();
  }

  /** Marks the index open in this boot (synced), before anything is written to it. */
  markOpen(): void {
    writeSynced(path.join(this.dir, OPEN_MARKER), bootId() + '\n');
    syncDir(this.dir);
  }

  /** After `close`: syncs the index files, then removes the open marker. */
  static markClosed(dir: string): void {
    for (const f of fs.readdirSync(dir)) {
      if (!f.endsWith('.mdb')) continue;
      const fd = fs.openSync(path.join(dir, f), 'r+');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    fs.rmSync(path.join(dir, OPEN_MARKER), { force: true });
    syncDir(dir);
  }

  /** Removes an index directory entirely (before a rebuild). */
  static destroy(dir: string): void {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  /** What the index in LMDB covers, or undefined for an empty index. */
  checkpoint(): IndexCheckpoint | undefined {
    const cp = this.#meta.get('checkpoint') as IndexCheckpoint | undefined;
    if (cp === undefined || cp.formatVersion !== INDEX_FORMAT_VERSION) return undefined;
    return cp;
  }

  /** The checkpoint the index will have once everything in memory is flushed. */
  latestCheckpoint(): IndexCheckpoint | undefined {
    return this.#active.checkpoint ?? this.#flushing?.checkpoint ?? this.checkpoint();
  }

  /** Events in memory, not yet written to LMDB. */
  get memtableEvents(): number {
    return this.#active.eventCount + (this.#flushing?.eventCount ?? 0);
  }

  get flushing(): Promise<void> | undefined {
    return this.#flushPromise;
  }

  allocateStreamId(): number {
    return this.#nextStreamId++;
  }

  getStream(name: string): StreamState | undefined {
    const s = this.#active.streams.get(name) ?? this.#flushing?.streams.get(name);
    if (s !== undefined) return s;
    const b = this.#streams.getBinary(name);
    return b === undefined ? undefined : decodeState(b);
  }

  /**
   * Records an append that is now durable in the log: the stream's new state, its events'
   * locations, and the checkpoint that covers them. Entries must arrive in log order.
   */
  add(name: string, state: StreamState, entries: IndexEntry[], segmentBase: number, endOffset: number): void {
    const m = this.#active;
    m.streams.set(name, state);
    let list = m.entries.get(name);
    if (list === undefined) m.entries.set(name, (list = []));
    for (const e of entries) {
      list.push(e);
      if (segmentBase !== this.#lastSparseBase || e.offset - this.#lastSparseOffset >= SPARSE_EVERY_BYTES) {
        m.sparse.push([e.position, e.offset]);
        this.#lastSparseBase = segmentBase;
        this.#lastSparseOffset = e.offset;
      }
    }
    m.eventCount += entries.length;
    const last = entries[entries.length - 1]!;
    m.checkpoint = {
      position: last.position,
      segmentBase,
      offset: endOffset,
      logId: '',
      nextStreamId: this.#nextStreamId,
      formatVersion: INDEX_FORMAT_VERSION,
    };
  }

  /**
   * Index entries of one stream, merged from memory and LMDB.
   * Forwards: revisions >= from, ascending. Backwards: revisions <= from, descending.
   */
  entries(name: string, streamId: number, from: number, backwards: boolean, limit: number): IndexEntry[] {
    const mem: IndexEntry[] = [];
    const f = this.#flushing?.entries.get(name);
    if (f !== undefined) mem.push(...f);
    const a = this.#active.entries.get(name);
    if (a !== undefined) mem.push(...a);
    const memMin = mem.length > 0 ? mem[0]!.revision : Infinity;
    const out: IndexEntry[] = [];
    if (!backwards) {
      if (from < memMin) {
        const end = Math.min(memMin, Number.MAX_SAFE_INTEGER);
        for (const { key, value } of this.#events.getRange({ start: eventKey(streamId, from), end: eventKey(streamId, end), limit })) {
          out.push(decodeEntry(key, value));
        }
      }
      for (let i = lowerBound(mem, from); i < mem.length && out.length < limit; i++) out.push(mem[i]!);
      return out;
    }
    for (let i = upperBound(mem, from) - 1; i >= 0 && out.length < limit; i--) out.push(mem[i]!);
    if (out.length < limit) {
      const top = Math.min(from, memMin - 1);
      if (top >= 0) {
        for (const { key, value } of this.#events.getRange({
          start: eventKey(streamId, top),
          end: eventKey(streamId, 0),
          inclusiveEnd: true,
          reverse: true,
          limit: limit - out.length,
        })) {
          out.push(decodeEntry(key, value));
        }
      }
    }
    return out;
  }

  /** The last sparse entry at or before `position`, if it is in segment `segmentBase`. */
  seek(position: number, segmentBase: number): number | undefined {
    let best: [number, number] | undefined;
    for (const m of [this.#active, this.#flushing]) {
      if (m === undefined) continue;
      for (let i = m.sparse.length - 1; i >= 0; i--) {
        const s = m.sparse[i]!;
        if (s[0] <= position) {
          if (best === undefined || s[0] > best[0]) best = s;
          break;
        }
      }
    }
    if (best === undefined) {
      const k = Buffer.allocUnsafe(8);
      u64be(k, position, 0);
      for (const { key, value } of this.#positions.getRange({ start: k, reverse: true, limit: 1 })) {
        best = [readU64be(key, 0), value.readUInt32LE(0)];
      }
    }
    if (best === undefined || best[0] < segmentBase) return undefined;
    return best[1];
  }

  /** Stream names in order, from `after` (exclusive), with an optional prefix. */
  listStreams(prefix: string, after: string | undefined, limit: number): Array<{ name: string; state: StreamState }> {
    const names = new Set<string>();
    for (const m of [this.#active, this.#flushing]) {
      if (m === undefined) continue;
      for (const n of m.streams.keys()) if (n.startsWith(prefix) && (after === undefined || n > after)) names.add(n);
    }
    const start = after !== undefined && after >= prefix ? after : prefix;
    for (const { key } of this.#streams.getRange({ start, exclusiveStart: after !== undefined && after >= prefix, limit: limit + names.size })) {
      if (!key.startsWith(prefix)) break;
      names.add(key);
    }
    return [...names]
      .sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))))
      .slice(0, limit)
      .map((name) => ({ name, state: this.getStream(name)! }));
  }

  /**
   * Writes the memtable to LMDB. Event entries go first, a slice per event-loop turn, so a large
   * flush never blocks appends and reads for long (one synchronous flush of 50,000 entries held
   * the loop for 100 ms). Stream states, sparse positions and the checkpoint go last, in one
   * transaction. A crash in between leaves extra event entries past the checkpoint: harmless,
   * since replaying the log from the checkpoint writes the same keys with the same values
   * (stream ids are allocated in log order from the checkpointed counter).
   */
  flush(logId: string): Promise<void> {
    if (this.#flushPromise !== undefined) return this.#flushPromise.then(() => this.flush(logId));
    const m = this.#active;
    if (m.checkpoint === undefined) return Promise.resolve();
    this.#active = new Memtable();
    this.#flushing = m;
    m.checkpoint.logId = logId;
    m.checkpoint.nextStreamId = this.#nextStreamId;
    this.#flushPromise = this.#write(m).then(
      () => {
        this.#env.resetReadTxn();
        this.#flushing = undefined;
        this.#flushPromise = undefined;
      },
      (err: unknown) => {
        // Keep the entries readable from memory; put them back in front of newer ones.
        this.#flushPromise = undefined;
        this.#flushing = undefined;
        mergeBack(m, this.#active);
        this.#active = m;
        throw err;
      },
    );
    return this.#flushPromise;
  }

  async #write(m: Memtable): Promise<void> {
    let inSlice = 0;
    for (const [name, state] of m.streams) {
      for (const e of m.entries.get(name)!) {
        const v = Buffer.allocUnsafe(16);
        u64le(v, e.position, 0);
        v.writeUInt32LE(e.offset, 8);
        v.writeUInt32LE(e.frameBytes, 12);
        void this.#events.put(eventKey(state.id, e.revision), v);
        if (++inSlice === FLUSH_SLICE_ENTRIES) {
          inSlice = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    }
    // The last transaction: everything that says how far the index goes.
    for (const [name, state] of m.streams) void this.#streams.put(name, encodeState(state));
    for (const [position, offset] of m.sparse) {
      const k = Buffer.allocUnsafe(8);
      u64be(k, position, 0);
      const v = Buffer.allocUnsafe(4);
      v.writeUInt32LE(offset, 0);
      void this.#positions.put(k, v);
    }
    // lmdb-js commits writes in the order they were made: when this one is done, all are.
    await this.#meta.put('checkpoint', m.checkpoint);
  }

  /** Size figures for docs and the benchmark. */
  stats(): { streams: number; events: number; sparse: number; fileBytes: number } {
    let fileBytes = 0;
    for (const f of fs.readdirSync(this.dir)) fileBytes += fs.statSync(path.join(this.dir, f)).size;
    return {
      streams: this.#streams.getCount(),
      events: this.#events.getCount(),
      sparse: this.#positions.getCount(),
      fileBytes,
    };
  }

  /** Every stream's state, for verify. */
  *allStreams(): Generator<{ name: string; state: StreamState }> {
    for (const { key, value } of this.#streams.getRange({})) yield { name: key, state: decodeState(value) };
  }

  /** Looks up one event's entry in LMDB only (for verify). */
  storedEntry(streamId: number, revision: number): IndexEntry | undefined {
    const v = this.#events.getBinary(eventKey(streamId, revision));
    return v === undefined ? undefined : decodeEntry(eventKey(streamId, revision), v);
  }

  async close(): Promise<void> {
    if (this.#flushPromise) await this.#flushPromise.catch(() => undefined);
    assert(this.#flushing === undefined, 'no flush is in flight at close');
    await this.#env.close();
  }
}

const OPEN_MARKER = 'OPEN';

/** Identifies this boot of the machine: Linux's boot id, else the boot time to the minute. */
function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return `boot-at-minute-${Math.round((Date.now() / 1000 - os.uptime()) / 60)}`;
  }
}

function writeSynced(file: string, text: string): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function decodeEntry(key: Buffer, value: Buffer): IndexEntry {
  return {
    revision: readU64be(key, 8),
    position: readU64le(value, 0),
    offset: value.readUInt32LE(8),
    frameBytes: value.readUInt32LE(12),
  };
}

/** Moves `newer`'s contents after `older`'s (used when a flush fails). */
function mergeBack(older: Memtable, newer: Memtable): void {
  for (const [name, state] of newer.streams) older.streams.set(name, state);
  for (const [name, list] of newer.entries) {
    const o = older.entries.get(name);
    if (o === undefined) older.entries.set(name, list);
    else o.push(...list);
  }
  older.sparse.push(...newer.sparse);
  older.eventCount += newer.eventCount;
  if (newer.checkpoint !== undefined) older.checkpoint = newer.checkpoint;
}

function lowerBound(list: IndexEntry[], revision: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.revision < revision) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upperBound(list: IndexEntry[], revision: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.revision <= revision) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
