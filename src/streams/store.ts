/**
 * The embedded event store: event-store semantics (expected revisions, idempotency, reads,
 * categories) over the file log (src/log/).
 *
 * Layout of a data directory:
 *   <dir>/eventful.json   the log's id and format version, written once at creation
 *   <dir>/LOCK            who holds the directory (see src/log/lock.ts)
 *   <dir>/log/*.seg       segment files (src/log/segments.ts, src/log/record.ts)
 *   <dir>/index/          the stream index, LMDB (src/log/stream-index.ts)
 *
 * Write path (group commit): `append` checks its input and queues it. One loop takes every
 * queued append, decides each against the stream's state (including earlier appends of the same
 * batch), frames the accepted ones into one buffer, and has the writer write and sync it once.
 * Only then are the appends resolved, added to the index memtable, and made visible to readers.
 * While a batch syncs, the next one gathers: the sync cost is shared by everyone waiting.
 *
 * Readers see only what is acknowledged: the index and `#head` move after the sync.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  ConfigInvalidError,
  CorruptionError,
  IdempotencyConflictError,
  InvalidArgumentError,
  OverloadedError,
  StorageFailedError,
  StorageFullError,
  StreamDeletedError,
  LimitExceededError,
  StoreClosedError,
  WrongExpectedRevisionError,
  assert,
} from '../core/errors.js';
import { RecordedEvent, eventReader } from '../core/events.js';
import type {
  AppendOptions,
  AppendResult,
  EventInput,
  EventReader,
  EventStore,
  ExpectedRevision,
  ListStreamsOptions,
  PageSource,
  ReadAllOptions,
  ReadStreamOptions,
  StreamInfo,
  SubscribeToAllOptions,
  SubscribeToStreamOptions,
  Subscription,
} from '../core/events.js';
import { FORMAT, checkLimitRelations, resolveLimits } from '../core/limits.js';
import type { StoreLimits } from '../core/limits.js';
import { lockDir } from '../log/lock.js';
import type { DirLock } from '../log/lock.js';
import { FLAG_COMMIT, RECORD_HEADER_BYTES, checkFrame, contentTypeAt, encodeRecord, frame, frameBytesMaxFor, interner, u16, u32 } from '../log/record.js';
import type { PreparedEvent } from '../log/record.js';
import { scanBackward, scanForward } from '../log/scan.js';
import { HEADER_BYTES, SegmentFiles, createSegment, listSegments, readSegmentHeader, segmentFileName } from '../log/segments.js';
import { logIdBytes as toLogIdBytes, readOrCreateManifest } from '../log/manifest.js';
import { StreamIndex } from '../log/stream-index.js';
import type { IndexEntry, StreamState } from '../log/stream-index.js';
import { LogWriter } from '../log/writer.js';
import type { AppendSpan, DurabilityMode } from '../log/writer.js';
import {
  checkAppendOptions,
  checkDirection,
  checkExpectedRevision,
  checkFrom,
  checkLimit,
  checkOptionKeys,
  checkStreamName,
  compileFilter,
  matchesStream,
  prepareEvents,
} from './validate.js';
import type { CompiledFilter } from './validate.js';
import { IdWindow } from './id-window.js';
import { recover } from './recover.js';
import { QueueManager } from '../queues/manager.js';
import type { QueueOptions } from '../queues/manager.js';
import { GroupManager } from '../subscriptions/groups.js';
import { METADATA_EVENT_TYPE, Retention, checkStreamMetadata, metadataStream } from './retention.js';
import type { DeleteStreamOptions, ReadAllFilter, StreamMetadata } from '../core/events.js';
import type { RecoveryReport } from './recover.js';

export type { RecoveryReport } from './recover.js';

export interface OpenStoreOptions {
  /** Data directory; created when missing. */
  dir: string;
  /** When an append is acknowledged. @default 'always' */
  durability?: DurabilityMode;
  /** Sync period for durability 'interval'. @default 100 */
  syncIntervalMs?: number;
  /** Maximum segment file size. @default 128 MiB */
  segmentBytes?: number;
  /** How often the index memtable is written to LMDB. @default 1000 */
  indexFlushIntervalMs?: number;
  limits?: Partial<StoreLimits>;
  /** Called with recovery findings and other things an operator should know. */
  onWarning?: (message: string, details: Record<string, unknown>) => void;
  /** The queue engine's options (clock, auto-creation, snapshot period). */
  queues?: QueueOptions;
}


export const DEFAULT_SYNC_INTERVAL_MS = 100;
export const DEFAULT_INDEX_FLUSH_INTERVAL_MS = 1000;
const OPTION_KEYS = ['dir', 'durability', 'syncIntervalMs', 'segmentBytes', 'indexFlushIntervalMs', 'limits', 'onWarning', 'queues'];
const READ_PAGE_EVENTS = 512;

interface PendingAppend {
  stream: string;
  prepared: PreparedEvent[];
  bytes: number;
  expected: ExpectedRevision;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

/** An event of the batch being formed, for idempotency checks within the batch. */
interface BatchEvent {
  /** The id's bytes as a latin1 string (PreparedEvent.idKey). */
  id: string;
  position: number;
}

interface BatchStream {
  state: StreamState;
  /** Events this batch adds to the stream: revision r is at index r - (baseRevision + 1). */
  events: BatchEvent[];
  /** The stream's revision before this batch (-1: the batch creates it). */
  baseRevision: number;
}

export async function openStore(options: OpenStoreOptions): Promise<FileEventStore> {
  return FileEventStore.open(options);
}

export class FileEventStore implements EventStore {
  readonly dir: string;
  readonly limits: StoreLimits;
  readonly durability: DurabilityMode;
  readonly segmentBytes: number;
  /** What opening the store found and repaired. */
  readonly recovery: RecoveryReport;
  /** Named queues over this log (src/queues/). */
  queues!: QueueManager;
  /** Consumer groups over this log (src/subscriptions/groups.ts). */
  groups!: GroupManager;

  #logId: string;
  #lock: DirLock;
  #segments: SegmentFiles;
  #index: StreamIndex;
  #writer!: LogWriter;
  #head: number; // last acknowledged position
  #committedBase: number; // active segment and the end of its acknowledged bytes
  #committedEnd: number;
  #queue: PendingAppend[] = [];
  #queuedBytes = 0;
  #running: Promise<void> | undefined;
  #failed: Error | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Every stream's retention and deletion metadata (src/streams/retention.ts). */
  readonly #retention = new Retention();
  /** Set once closing has got past the queues: no more appends. */
  #stopping = false;
  #idWindow: IdWindow;
  /** Woken whenever the head moves (and at close): live subscriptions wait here. */
  #headWaiters: Array<() => void> = [];
  #flushTimer: NodeJS.Timeout | undefined;
  #onWarning: (message: string, details: Record<string, unknown>) => void;
  #scan: { chunkBytes: number; frameBytesMax: number };

  private constructor(init: {
    dir: string;
    limits: StoreLimits;
    durability: DurabilityMode;
    segmentBytes: number;
    logId: string;
    lock: DirLock;
    segments: SegmentFiles;
    index: StreamIndex;
    head: number;
    committedBase: number;
    committedEnd: number;
    recovery: RecoveryReport;
    onWarning: (message: string, details: Record<string, unknown>) => void;
  }) {
    this.dir = init.dir;
    this.limits = init.limits;
    this.durability = init.durability;
    this.segmentBytes = init.segmentBytes;
    this.#logId = init.logId;
    this.#lock = init.lock;
    this.#segments = init.segments;
    this.#index = init.index;
    this.#head = init.head;
    this.#committedBase = init.committedBase;
    this.#committedEnd = init.committedEnd;
    this.recovery = init.recovery;
    this.#onWarning = init.onWarning;
    this.#idWindow = new IdWindow(init.limits.idempotencyWindowEvents);
    this.#scan = { chunkBytes: init.limits.readChunkBytes, frameBytesMax: frameBytesMaxFor(init.limits.eventBytesMax) };
  }

  static async open(options: OpenStoreOptions): Promise<FileEventStore> {
    const started = Date.now();
    const o = checkOptionKeys(options, OPTION_KEYS, 'openStore') as unknown as OpenStoreOptions;
    if (typeof o.dir !== 'string' || o.dir.length === 0) throw new ConfigInvalidError("openStore needs 'dir', the data directory");
    const durability = o.durability ?? 'always';
    if (durability !== 'always' && durability !== 'interval' && durability !== 'none') {
      throw new ConfigInvalidError(`durability must be 'always', 'interval' or 'none', got '${String(durability)}'`);
    }
    const segmentBytes = o.segmentBytes ?? FORMAT.segmentBytesDefault;
    const syncIntervalMs = positiveInt(o.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS, 'syncIntervalMs');
    const indexFlushIntervalMs = positiveInt(o.indexFlushIntervalMs ?? DEFAULT_INDEX_FLUSH_INTERVAL_MS, 'indexFlushIntervalMs');
    const limits = resolveLimits(o.limits);
    checkLimitRelations(limits, segmentBytes);
    const onWarning = o.onWarning ?? (() => undefined);

    const dir = path.resolve(o.dir);
    const logDir = path.join(dir, 'log');
    const indexDir = path.join(dir, 'index');
    fs.mkdirSync(logDir, { recursive: true });
    const lock = await lockDir(dir);
    let index: StreamIndex | undefined;
    let segments: SegmentFiles | undefined;
    let writer: LogWriter | undefined;
    let opened: FileEventStore | undefined;
    try {
      const logId = readOrCreateManifest(dir);
      const logIdBytes = toLogIdBytes(logId);
      let bases = listSegments(logDir);
      if (bases.length === 0) {
        createSegment(logDir, { basePosition: 1, createdAt: Date.now(), segmentBytes, logId: logIdBytes });
        bases = [1];
      }
      // A crash while creating a segment can leave a last file without a whole header.
      const lastFile = path.join(logDir, segmentFileName(bases[bases.length - 1]!));
      if (bases.length > 1 && fs.statSync(lastFile).size < HEADER_BYTES) {
        onWarning('removed a segment file whose creation was interrupted', { file: lastFile });
        fs.rmSync(lastFile);
        bases = bases.slice(0, -1);
      }
      for (const base of bases) {
        const file = path.join(logDir, segmentFileName(base));
        const h = readSegmentHeader(file, logIdBytes);
        if (h.basePosition !== base) throw new CorruptionError(file, 16, `header says base position ${h.basePosition}, the name says ${base}`);
      }
      segments = new SegmentFiles(logDir, bases, limits.openSegmentsMax);
      const r = await recover({ dir, logDir, indexDir, logId, bases, limits, onWarning });
      index = r.index;
      const recovery: RecoveryReport = { ...r.report, durationMs: 0 };
      const store = new FileEventStore({
        dir,
        limits,
        durability,
        segmentBytes,
        logId,
        lock,
        segments,
        index: r.index,
        head: r.head,
        committedBase: r.activeBase,
        committedEnd: r.activeEnd,
        recovery,
        onWarning,
      });
      writer = store.#writer = new LogWriter(
        { logDir, logId: logIdBytes, segmentBytes, durability, syncIntervalMs, segments },
        r.activeBase,
        r.activeEnd,
      );
      await r.index.flush(logId);
      await store.#warmIdWindow();
      await store.#loadRetention();
      opened = store;
      store.queues = await QueueManager.open(store, { onWarning, ...o.queues });
      store.groups = await GroupManager.open(store, { onWarning });
      // Started only once the open has succeeded, so a failed open leaves no timer behind.
      store.#flushTimer = setInterval(() => void store.#flushIndex(), indexFlushIntervalMs);
      store.#flushTimer.unref();
      recovery.durationMs = Date.now() - started;
      return store;
    } catch (err) {
      // Leave nothing open behind a failed open (a retry in this process must find it free).
      if (opened !== undefined) opened.#closed = true;
      await writer?.close().catch(() => undefined);
      segments?.closeAll();
      await index?.close().catch(() => undefined);
      await lock.release();
      throw err;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Appending

  async append(stream: string, events: EventInput[], options?: AppendOptions): Promise<AppendResult> {
    return this.#append(stream, events, options, false);
  }

  /**
   * Appends to one of Eventful's own streams (names starting with '$'), for the queue engine.
   * Not for applications: their streams can never start with '$'.
   * @internal
   */
  appendSystem(stream: string, events: EventInput[], options?: AppendOptions): Promise<AppendResult> {
    return this.#append(stream, events, options, true);
  }

  async #append(stream: string, events: EventInput[], options: AppendOptions | undefined, system: boolean): Promise<AppendResult> {
    this.#checkOpen();
    checkStreamName(stream, this.limits, system);
    if (system && !stream.startsWith('$')) throw new InvalidArgumentError(`'${stream}' is not a system stream`);
    const expected = checkExpectedRevision(checkAppendOptions(options).expectedRevision);
    const { prepared, bytes } = prepareEvents(Buffer.from(stream, 'utf8'), events, this.limits, this.#writer.segmentCapacity);
    if (this.#queue.length >= this.limits.pendingAppendsMax || this.#queuedBytes + bytes > this.limits.pendingAppendBytesMax) {
      throw new OverloadedError(`too many appends waiting to be written (${this.#queue.length} appends, ${this.#queuedBytes} bytes); retry shortly`, {
        pendingAppends: this.#queue.length,
        pendingBytes: this.#queuedBytes,
      });
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.#queue.push({ stream, prepared, bytes, expected, resolve, reject });
      this.#queuedBytes += bytes;
      this.#running ??= this.#runWriter();
    });
  }

  async #runWriter(): Promise<void> {
    try {
      while (this.#queue.length > 0 && this.#failed === undefined) {
        // Bound memory: let the index catch up before producing more entries.
        if (this.#index.memtableEvents >= 2 * this.limits.indexMemtableEventsMax) {
          await this.#flushIndex();
        }
        const batch = this.#takeBatch();
        await this.#commitBatch(batch);
        // Let the appenders just acknowledged queue their next appends before the next batch
        // is cut; otherwise they miss it by a few microtasks and appenders split into two
        // cohorts that alternate, halving how many appends share each sync.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.#index.memtableEvents >= this.limits.indexMemtableEventsMax && this.#index.flushing === undefined) {
          void this.#flushIndex();
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  #takeBatch(): PendingAppend[] {
    let bytes = 0;
    let n = 0;
    while (n < this.#queue.length) {
      const b = this.#queue[n]!.bytes;
      if (n > 0 && bytes + b > this.limits.groupCommitBytesMax) break;
      bytes += b;
      n++;
    }
    const batch = this.#queue.splice(0, n);
    this.#queuedBytes -= bytes;
    return batch;
  }

  async #commitBatch(batch: PendingAppend[]): Promise<void> {
    const now = Date.now();
    const streams = new Map<string, BatchStream>();
    const accepted: Array<{ req: PendingAppend; first: number; firstRevision: number; state: StreamState }> = [];
    const duplicates: Array<{ req: PendingAppend; result: AppendResult }> = [];
    let next = this.#head + 1;
    let bytes = 0;
    for (const req of batch) {
      let s = streams.get(req.stream);
      if (s === undefined) {
        const state = this.#index.getStream(req.stream);
        s = state
          ? { state: { ...state }, events: [], baseRevision: state.revision }
          : { state: { id: 0, revision: -1, eventCount: 0, firstPosition: 0, lastPosition: 0, createdAt: now, updatedAt: now }, events: [], baseRevision: -1 };
        streams.set(req.stream, s);
      }
      let outcome: AppendResult | 'append';
      try {
        outcome = this.#decide(req, s);
      } catch (err) {
        req.reject(err);
        continue;
      }
      if (outcome !== 'append') {
        duplicates.push({ req, result: outcome });
        continue;
      }
      const n = req.prepared.length;
      const st = s.state;
      if (st.id === 0) st.id = this.#index.allocateStreamId();
      if (st.revision < 0) {
        st.firstPosition = next;
        st.createdAt = now;
      }
      const firstRevision = st.revision + 1;
      for (let i = 0; i < n; i++) s.events.push({ id: req.prepared[i]!.idKey, position: next + i });
      st.revision += n;
      st.eventCount += n;
      st.lastPosition = next + n - 1;
      st.updatedAt = now;
      accepted.push({ req, first: next, firstRevision, state: { ...st } });
      next += n;
      bytes += req.bytes;
    }

    if (accepted.length > 0) {
      const buf = Buffer.allocUnsafe(bytes);
      const spans: AppendSpan[] = new Array(accepted.length);
      let off = 0;
      for (let a = 0; a < accepted.length; a++) {
        const { req, first, firstRevision } = accepted[a]!;
        const start = off;
        const last = req.prepared.length - 1;
        for (let i = 0; i <= last; i++) {
          off = encodeRecord(buf, off, req.prepared[i]!, first + i, firstRevision + i, now, i === last ? FLAG_COMMIT : 0);
        }
        spans[a] = { start, end: off, firstPosition: first };
      }
      let locations;
      try {
        locations = await this.#writer.write(buf, spans);
      } catch (err) {
        // Disk full before any of the batch was written: nothing changed, so only this batch
        // fails and the store goes on (the next batch finds space, or fails the same way).
        if (!(err instanceof StorageFullError)) this.#fail(err as Error);
        for (const { req } of accepted) req.reject(err);
        for (const { req } of duplicates) req.reject(err);
        return;
      }
      // Durable: publish to the index, the id window and readers, then acknowledge.
      for (let a = 0; a < accepted.length; a++) {
        const { req, first, firstRevision, state } = accepted[a]!;
        const loc = locations[a]!;
        const entries: IndexEntry[] = new Array(req.prepared.length);
        let fileOffset = loc.offset;
        for (let i = 0; i < req.prepared.length; i++) {
          const p = req.prepared[i]!;
          entries[i] = { revision: firstRevision + i, position: first + i, offset: fileOffset, frameBytes: p.frameBytes };
          fileOffset += p.frameBytes;
          this.#idWindow.add(p.idKey, req.stream, firstRevision + i);
        }
        this.#index.add(req.stream, state, entries, loc.segmentBase, fileOffset);
        this.#head = first + req.prepared.length - 1;
        this.#committedBase = loc.segmentBase;
        this.#committedEnd = fileOffset;
      }
      this.#wakeHeadWaiters();
      for (const { req, first, firstRevision } of accepted) {
        const n = req.prepared.length;
        const positions = new Array<number>(n);
        for (let i = 0; i < n; i++) positions[i] = first + i;
        req.resolve({ positions, revision: firstRevision + n - 1 });
      }
    }
    for (const { req, result } of duplicates) req.resolve(result);
  }

  /**
   * Decides one append against its stream's state (which includes earlier appends of this
   * batch): 'append', the original result of an idempotent retry, or a thrown error.
   */
  #decide(req: PendingAppend, s: BatchStream): AppendResult | 'append' {
    const rev = s.state.revision;
    let exp = req.expected;
    if (this.#retention.size > 0) {
      const m = this.#retention.get(req.stream);
      if (m?.deleted === 'hard') throw new StreamDeletedError(req.stream);
      // A soft-deleted stream does not exist: `no_stream` appends after its last revision.
      if (rev >= 0 && Retention.gone(m, rev)) {
        if (exp === 'no_stream') exp = rev;
        else if (exp === 'stream_exists') throw new WrongExpectedRevisionError(req.stream, exp, -1);
      }
    }
    const ids = req.prepared;
    if (typeof exp === 'number' || exp === 'no_stream') {
      const r = exp === 'no_stream' ? -1 : exp;
      if (rev === r) return 'append';
      if (rev > r) {
        const dup = this.#idempotentResult(req, s, r + 1);
        if (dup !== undefined) return dup;
      }
      throw new WrongExpectedRevisionError(req.stream, exp, rev);
    }
    // Only an id the caller gave can make an append a retry.
    const seen = ids[0]!.idString === undefined ? undefined : this.#idWindow.get(ids[0]!.idKey);
    if (seen !== undefined && seen.stream === req.stream && seen.revision <= rev) {
      const dup = this.#idempotentResult(req, s, seen.revision);
      if (dup !== undefined) return dup;
    }
    if (exp === 'stream_exists' && rev < 0) throw new WrongExpectedRevisionError(req.stream, exp, rev);
    return 'append';
  }

  /**
   * If the stream holds the append's event ids from revision `from` on, the original result.
   * Undefined when the first id is not there (not a retry). Throws when only some match.
   */
  #idempotentResult(req: PendingAppend, s: BatchStream, from: number): AppendResult | undefined {
    const n = req.prepared.length;
    if (req.prepared[0]!.idString === undefined) return undefined; // a generated id is never a retry
    const found = this.#idsAt(req.stream, s, from, n);
    if (found.length === 0 || found[0]!.id !== req.prepared[0]!.idKey) return undefined;
    for (let i = 0; i < n; i++) {
      if (i >= found.length || found[i]!.id !== req.prepared[i]!.idKey) {
        throw new IdempotencyConflictError(
          req.stream,
          `append to '${req.stream}' repeats event ${req.prepared[0]!.idString} at revision ${from} but its other events differ from the ones written then`,
          { revision: from, matching: i },
        );
      }
    }
    return { positions: found.map((f) => f.position), revision: from + n - 1 };
  }

  /** Ids and positions of the stream's events at revisions from..from+count-1 that exist. */
  #idsAt(stream: string, s: BatchStream, from: number, count: number): BatchEvent[] {
    const out: BatchEvent[] = [];
    const last = Math.min(s.state.revision, from + count - 1);
    let rev = from;
    if (rev <= s.baseRevision) {
      // Events written before this batch: from the index and the log, in one coalesced read.
      const entries = this.#index.entries(stream, s.state.id, rev, false, Math.min(last, s.baseRevision) - rev + 1);
      for (const ev of this.#readEntries(entries)) out.push({ id: idKeyOf(ev), position: ev.position });
      rev += entries.length;
    }
    for (; rev <= last; rev++) {
      const be = s.events[rev - (s.baseRevision + 1)];
      if (be === undefined) break;
      out.push(be);
    }
    return out;
  }

  async #warmIdWindow(): Promise<void> {
    const max = this.limits.idempotencyWindowEvents;
    if (max === 0 || this.#head === 0) return;
    // The log's last `max` frames, newest first, read straight from the frames (no event
    // objects): this runs on every open.
    const ids: string[] = [];
    const streams: string[] = [];
    const revisions: number[] = [];
    let base: number | undefined = this.#committedBase;
    outer: while (base !== undefined) {
      const to = base === this.#committedBase ? this.#committedEnd : fs.statSync(this.#segments.fileOf(base)).size;
      for await (const { buf, offsets } of scanBackward(this.#segments, base, HEADER_BYTES, to, this.#scan)) {
        for (const off of offsets) {
          ids.push(buf.toString('latin1', off + 34, off + 50));
          streams.push(frame.stream(buf, off));
          revisions.push(frame.revision(buf, off));
          if (ids.length >= max) break outer;
        }
      }
      base = this.#segments.previous(base);
    }
    for (let i = ids.length - 1; i >= 0; i--) this.#idWindow.add(ids[i]!, streams[i]!, revisions[i]!);
  }

  #fail(err: Error): void {
    if (this.#failed !== undefined) return;
    this.#failed = err;
    this.#onWarning('the store stopped accepting appends after a storage failure; reopen it to recover', { error: err.message });
    for (const req of this.#queue.splice(0)) req.reject(err);
    this.#queuedBytes = 0;
  }

  #checkOpen(): void {
    if (this.#closed || this.#stopping) throw new StoreClosedError();
    if (this.#failed !== undefined) throw new StorageFailedError(`the store failed earlier and accepts no appends: ${this.#failed.message}`);
  }

  async #flushIndex(): Promise<void> {
    try {
      await this.#index.flush(this.#logId);
    } catch (err) {
      this.#onWarning('writing the stream index failed; will retry', { error: (err as Error).message });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Reading

  readStream(stream: string, options?: ReadStreamOptions): EventReader {
    if (this.#closed) throw new StoreClosedError();
    checkStreamName(stream, this.limits, true);
    const o = checkOptionKeys(options, ['from', 'direction', 'limit'], 'readStream');
    const from = checkFrom(o.from, 'from');
    const backwards = checkDirection(o.direction);
    const limit = checkLimit(o.limit);
    return eventReader(() => this.#streamPages(stream, from, backwards, limit));
  }

  #streamPages(stream: string, from: number | 'start' | 'end' | undefined, backwards: boolean, limit: number): PageSource {
    let remaining = limit;
    let next: number | undefined;
    let streamId: number | undefined;
    let meta: StreamMetadata | undefined;
    let floor = 0;
    let lastRevision = -1;
    return async () => {
      for (;;) {
        if (remaining <= 0) return undefined;
        this.#checkReadable();
        if (streamId === undefined) {
          const st = this.#index.getStream(stream);
          meta = this.#retention.size > 0 ? this.#retention.get(stream) : undefined;
          if (meta?.deleted === 'hard') throw new StreamDeletedError(stream);
          if (st === undefined) return undefined;
          streamId = st.id;
          lastRevision = st.revision;
          if (meta !== undefined) floor = Retention.floor(meta, st.revision);
          if (backwards) next = from === undefined || from === 'end' ? st.revision : from === 'start' ? 0 : from;
          else next = Math.max(floor, from === undefined || from === 'start' ? 0 : from === 'end' ? st.revision + 1 : from);
        }
        if (next! < floor) return undefined;
        const entries = this.#index.entries(stream, streamId, next!, backwards, Math.min(remaining, READ_PAGE_EVENTS));
        if (backwards) while (entries.length > 0 && entries[entries.length - 1]!.revision < floor) entries.pop();
        if (entries.length === 0) return undefined;
        next = entries[entries.length - 1]!.revision + (backwards ? -1 : 1);
        let events = this.#readEntries(entries);
        if (meta?.maxAgeMs !== undefined) {
          const now = Date.now();
          events = events.filter((e) => Retention.visible(meta!, e.revision, e.timestamp, lastRevision, now));
          if (events.length === 0) continue;
        }
        remaining -= events.length;
        return events;
      }
    };
  }

  /** Reads the records of index entries, coalescing neighbours in a file into one read. */
  #readEntries(entries: IndexEntry[]): RecordedEvent[] {
    const out: RecordedEvent[] = new Array(entries.length);
    let i = 0;
    while (i < entries.length) {
      const base = this.#segments.segmentFor(entries[i]!.position);
      assert(base !== undefined, 'an indexed position has a segment');
      // A run: consecutive entries that sit back to back in the same file.
      let j = i + 1;
      let lo = entries[i]!.offset;
      let hi = lo + entries[i]!.frameBytes;
      while (j < entries.length && hi - lo < this.limits.readChunkBytes) {
        const e = entries[j]!;
        if (this.#segments.segmentFor(e.position) !== base) break;
        if (e.offset === hi) hi += e.frameBytes;
        else if (e.offset + e.frameBytes === lo) lo = e.offset;
        else break;
        j++;
      }
      const buf = Buffer.allocUnsafe(hi - lo);
      const n = this.#segments.readSync(base, buf, 0, hi - lo, lo);
      for (let k = i; k < j; k++) {
        const e = entries[k]!;
        const off = e.offset - lo;
        const c = checkFrame(buf, off, n, this.#scan.frameBytesMax);
        if (!c.ok || frame.position(buf, off) !== e.position) {
          throw new CorruptionError(this.#segments.fileOf(base), e.offset, c.ok ? `index points at position ${e.position} but the record holds ${frame.position(buf, off)}` : c.incomplete ? 'record cut short' : c.reason);
        }
        out[k] = decodeEvent(buf, off);
      }
      i = j;
    }
    return out;
  }

  readAll(options?: ReadAllOptions): EventReader {
    if (this.#closed) throw new StoreClosedError();
    const o = checkOptionKeys(options, ['from', 'direction', 'limit', 'filter'], 'readAll');
    const from = checkFrom(o.from, 'from');
    const backwards = checkDirection(o.direction);
    const limit = checkLimit(o.limit);
    const filter = compileFilter(o.filter as ReadAllOptions['filter']);
    return eventReader(() => (backwards ? this.#allBackwardPages(from, limit, filter) : this.#allForwardPages(from, limit, filter)));
  }

  /**
   * The frames readAll (forwards) would decode, as references into the chunks read: for the
   * server, which sends them on without decoding them. @internal
   */
  readAllFrames(options: { from?: number | 'start' | 'end'; limit?: number; filter?: ReadAllFilter } = {}): () => Promise<Array<{ buf: Buffer; off: number }> | undefined> {
    if (this.#closed) throw new StoreClosedError();
    const o = checkOptionKeys(options, ['from', 'limit', 'filter'], 'readAll');
    return this.#allForwardPages(checkFrom(o.from, 'from'), checkLimit(o.limit), compileFilter(o.filter as ReadAllFilter | undefined), (buf, off) => ({ buf, off }));
  }

  #allForwardPages(from: number | 'start' | 'end' | undefined, limit: number, filter: CompiledFilter | undefined): PageSource;
  #allForwardPages<T>(from: number | 'start' | 'end' | undefined, limit: number, filter: CompiledFilter | undefined, make: (buf: Buffer, off: number) => T): () => Promise<T[] | undefined>;
  #allForwardPages<T>(
    from: number | 'start' | 'end' | undefined,
    limit: number,
    filter: CompiledFilter | undefined,
    make: (buf: Buffer, off: number) => T = decodeEvent as unknown as (buf: Buffer, off: number) => T,
  ): () => Promise<T[] | undefined> {
    // A read sees the log as it was when it started.
    const head = this.#head;
    const endBase = this.#committedBase;
    const endOffset = this.#committedEnd;
    const first = this.#segments.bases[0]!;
    const start = from === undefined || from === 'start' ? first : from === 'end' ? head + 1 : Math.max(from, first);
    let remaining = limit;
    let chunks: AsyncGenerator<{ buf: Buffer; offsets: number[] }> | undefined;
    let base: number | undefined = start <= head ? this.#segments.segmentFor(start) : undefined;
    const segments = this.#segments;
    const scan = this.#scan;
    return async () => {
      while (remaining > 0 && base !== undefined) {
        this.#checkReadable();
        if (chunks === undefined) {
          const from = base === this.#segments.segmentFor(start) ? (this.#index.seek(start, base) ?? HEADER_BYTES) : HEADER_BYTES;
          const to = base === endBase ? endOffset : fs.statSync(segments.fileOf(base)).size;
          chunks = scanForward(segments, base, from, to, scan);
        }
        const r = await chunks.next();
        if (r.done) {
          chunks = undefined;
          base = base === endBase ? undefined : segments.next(base);
          continue;
        }
        const { buf, offsets } = r.value;
        const page: T[] = [];
        for (const off of offsets) {
          const pos = frame.position(buf, off);
          if (pos < start) continue;
          if (pos > head || remaining <= 0) {
            base = undefined;
            break;
          }
          if (filter !== undefined && !matches(filter, buf, off)) continue;
          if (this.#retention.size > 0 && this.#hidden(buf, off)) continue;
          page.push(make(buf, off));
          remaining--;
        }
        if (page.length > 0) return page;
      }
      if (chunks !== undefined) await chunks.return(undefined);
      return undefined;
    };
  }

  #allBackwardPages(from: number | 'start' | 'end' | undefined, limit: number, filter: CompiledFilter | undefined): PageSource {
    const head = this.#head;
    const endBase = this.#committedBase;
    const endOffset = this.#committedEnd;
    const first = this.#segments.bases[0]!;
    const top = from === undefined || from === 'end' ? head : from === 'start' ? first : Math.min(from, head);
    let remaining = limit;
    let chunks: AsyncGenerator<{ buf: Buffer; offsets: number[] }> | undefined;
    let base: number | undefined = top >= first && head > 0 ? this.#segments.segmentFor(top) : undefined;
    const topBase = base;
    const segments = this.#segments;
    const scan = this.#scan;
    return async () => {
      while (remaining > 0 && base !== undefined) {
        this.#checkReadable();
        if (chunks === undefined) {
          let to = base === endBase ? endOffset : fs.statSync(segments.fileOf(base)).size;
          // Start right after `top` rather than walking back over the segment's later records.
          if (top < head && base === topBase) to = this.#recordEnd(top, base, to);
          chunks = scanBackward(segments, base, HEADER_BYTES, to, scan);
        }
        const r = await chunks.next();
        if (r.done) {
          chunks = undefined;
          base = segments.previous(base);
          continue;
        }
        const { buf, offsets } = r.value;
        const page: RecordedEvent[] = [];
        for (const off of offsets) {
          const pos = frame.position(buf, off);
          if (pos > top) continue;
          if (remaining <= 0) break;
          if (filter !== undefined && !matches(filter, buf, off)) continue;
          if (this.#retention.size > 0 && this.#hidden(buf, off)) continue;
          page.push(decodeEvent(buf, off));
          remaining--;
        }
        if (page.length > 0) return page;
      }
      if (chunks !== undefined) await chunks.return(undefined);
      return undefined;
    };
  }

  /**
   * File offset just after the record at `position` in segment `base`, found from the nearest
   * sparse index entry (at most about 64 KiB of records to walk). `limit` is the segment's end.
   */
  #recordEnd(position: number, base: number, limit: number): number {
    let off = this.#index.seek(position, base) ?? HEADER_BYTES;
    const buf = Buffer.allocUnsafe(this.#scan.frameBytesMax);
    while (off < limit) {
      const n = this.#segments.readSync(base, buf, 0, Math.min(buf.length, limit - off), off);
      let p = 0;
      while (p < n) {
        const c = checkFrame(buf, p, n, this.#scan.frameBytesMax);
        if (!c.ok) {
          if (c.incomplete && p > 0) break; // read on from this frame
          throw new CorruptionError(this.#segments.fileOf(base), off + p, c.incomplete ? 'record cut short' : c.reason);
        }
        if (frame.position(buf, p) >= position) return off + p + c.length;
        p += c.length;
      }
      off += p;
    }
    return limit;
  }

  async streamInfo(stream: string): Promise<StreamInfo | undefined> {
    this.#checkReadable();
    checkStreamName(stream, this.limits, true);
    const st = this.#index.getStream(stream);
    if (st === undefined || (this.#retention.size > 0 && Retention.gone(this.#retention.get(stream), st.revision))) return undefined;
    return toInfo(stream, st);
  }

  // ---------------------------------------------------------------------------------------------
  // Stream metadata: retention and deletion (src/streams/retention.ts)

  /** Sets a stream's retention (replacing what it had); reads honour it at once. */
  async setStreamMetadata(stream: string, metadata: StreamMetadata): Promise<void> {
    this.#checkOpen();
    checkStreamName(stream, this.limits, false);
    const m = checkStreamMetadata(metadata);
    if (this.#retention.get(stream)?.deleted === 'hard') throw new StreamDeletedError(stream);
    await this.#writeMetadata(stream, m);
  }

  /** A stream's retention metadata (`{}` when it has none). */
  async getStreamMetadata(stream: string): Promise<StreamMetadata> {
    this.#checkReadable();
    checkStreamName(stream, this.limits, false);
    return { ...(this.#retention.get(stream) ?? {}) };
  }

  /**
   * Deletes a stream. Soft (the default): its events are truncated away, it reads as empty and
   * does not exist for `no_stream`, and appending to it again goes on from the next revision.
   * Hard: a tombstone; it can never be read or appended to again. `expectedRevision` is checked
   * against the stream's revision when the delete is made.
   */
  async deleteStream(stream: string, options: DeleteStreamOptions = {}): Promise<void> {
    this.#checkOpen();
    checkStreamName(stream, this.limits, false);
    const o = checkOptionKeys(options, ['hard', 'expectedRevision'], 'deleteStream');
    const current = this.#retention.get(stream);
    if (current?.deleted === 'hard') throw new StreamDeletedError(stream);
    const st = this.#index.getStream(stream);
    const rev = st === undefined || Retention.gone(current, st.revision) ? -1 : st.revision;
    const exp = o.expectedRevision as ExpectedRevision | undefined;
    if (exp !== undefined && exp !== 'any') {
      const ok = exp === 'no_stream' ? rev === -1 : exp === 'stream_exists' ? rev >= 0 : exp === rev;
      if (!ok) throw new WrongExpectedRevisionError(stream, exp, rev);
    }
    if (o.hard === true) await this.#writeMetadata(stream, { deleted: 'hard' });
    else if (st !== undefined) await this.#writeMetadata(stream, { ...current, truncateBefore: st.revision + 1 });
  }

  async #writeMetadata(stream: string, m: StreamMetadata): Promise<void> {
    if (this.#retention.get(stream) === undefined && this.#retention.size >= this.limits.streamMetadataMax) {
      throw new LimitExceededError('streamMetadataMax', this.limits.streamMetadataMax, this.#retention.size + 1);
    }
    await this.#append(metadataStream(stream), [{ type: METADATA_EVENT_TYPE, data: m }], undefined, true);
    this.#retention.set(stream, m);
  }

  /** Loads every stream's metadata: the last event of each `$$<stream>`. */
  async #loadRetention(): Promise<void> {
    let after: string | undefined;
    for (;;) {
      const page = await this.listStreams({ prefix: '$$', after, limit: 1000 });
      for (const info of page) {
        const [last] = await this.readStream(info.stream, { direction: 'backwards', limit: 1 }).toArray();
        if (last?.type === METADATA_EVENT_TYPE) this.#retention.set(info.stream.slice(2), last.data as StreamMetadata);
      }
      if (page.length < 1000) return;
      after = page[page.length - 1]!.stream;
    }
  }

  /** Whether the event in this frame is hidden by its stream's retention or deletion. */
  #hidden(buf: Buffer, off: number): boolean {
    const stream = frame.stream(buf, off);
    const m = this.#retention.get(stream);
    if (m === undefined) return false;
    const last = m.maxCount !== undefined ? (this.#index.getStream(stream)?.revision ?? -1) : -1;
    return !Retention.visible(m, frame.revision(buf, off), frame.timestamp(buf, off), last, Date.now());
  }

  async listStreams(options?: ListStreamsOptions): Promise<StreamInfo[]> {
    this.#checkReadable();
    const o = checkOptionKeys(options, ['prefix', 'after', 'limit'], 'listStreams');
    const prefix = o.prefix ?? '';
    if (typeof prefix !== 'string') throw new InvalidArgumentError('prefix must be a string');
    if (o.after !== undefined && typeof o.after !== 'string') throw new InvalidArgumentError('after must be a string');
    const limit = o.limit === undefined ? 100 : checkLimit(o.limit);
    let found = this.#index.listStreams(prefix, o.after as string | undefined, Math.min(limit, 10_000));
    // Deleted streams are left out (a page may then be shorter than the limit).
    if (this.#retention.size > 0) found = found.filter(({ name, state }) => !Retention.gone(this.#retention.get(name), state.revision));
    return found.map(({ name, state }) => toInfo(name, state));
  }

  async headPosition(): Promise<number> {
    this.#checkReadable();
    return this.#head;
  }

  // ---------------------------------------------------------------------------------------------
  // Subscriptions

  subscribeToAll(options?: SubscribeToAllOptions): Subscription {
    this.#checkReadable();
    const o = checkOptionKeys(options, ['from', 'filter'], 'subscribeToAll');
    const from = checkFrom(o.from, 'from');
    const filter = compileFilter(o.filter as SubscribeToAllOptions['filter']);
    const start = from === undefined || from === 'end' ? this.#head + 1 : from === 'start' ? 1 : from;
    return this.#subscription((sub) => this.#follow(start, filter, sub));
  }

  subscribeToStream(stream: string, options?: SubscribeToStreamOptions): Subscription {
    this.#checkReadable();
    checkStreamName(stream, this.limits, true);
    const o = checkOptionKeys(options, ['from'], 'subscribeToStream');
    const from = checkFrom(o.from, 'from');
    const self = this;
    return this.#subscription(async function* (sub) {
      // History from the stream index up to now; then the log after the head seen before it,
      // skipping revisions already delivered: no gap and no duplicate at the switch-over.
      const head = self.#head;
      let nextRevision: number;
      if (from === undefined || from === 'end') nextRevision = (self.#index.getStream(stream)?.revision ?? -1) + 1;
      else nextRevision = from === 'start' ? 0 : from;
      const history = self.#streamPages(stream, nextRevision, false, Infinity);
      for (let page = await history(); page !== undefined && !sub.closed; page = await history()) {
        nextRevision = page[page.length - 1]!.revision + 1;
        yield page;
      }
      for await (const page of self.#follow(head + 1, { prefixes: undefined, categories: undefined, types: undefined, stream }, sub)) {
        const fresh = page.filter((e) => e.revision >= nextRevision);
        if (fresh.length === 0) continue;
        nextRevision = fresh[fresh.length - 1]!.revision + 1;
        yield fresh;
      }
    });
  }

  #subscription(pages: (sub: { closed: boolean }) => AsyncGenerator<RecordedEvent[]>): Subscription {
    const state = { closed: false, lastPosition: 0 };
    const gen = pages(state);
    let buffered: RecordedEvent[] = [];
    let i = 0;
    const iterator: AsyncIterator<RecordedEvent> = {
      next: async () => {
        while (i >= buffered.length) {
          if (state.closed) return { done: true, value: undefined };
          const r = await gen.next();
          if (r.done || state.closed) {
            state.closed = true;
            return { done: true, value: undefined };
          }
          buffered = r.value;
          i = 0;
        }
        const e = buffered[i++]!;
        state.lastPosition = e.position;
        return { done: false, value: e };
      },
      return: async () => {
        await close();
        return { done: true, value: undefined };
      },
    };
    const close = async (): Promise<void> => {
      if (state.closed) return;
      state.closed = true;
      this.#wakeHeadWaiters();
      buffered = [];
    };
    const pageIterator: AsyncIterator<RecordedEvent[]> = {
      next: async () => {
        if (state.closed) return { done: true, value: undefined };
        const r = await gen.next();
        if (r.done || state.closed) {
          state.closed = true;
          return { done: true, value: undefined };
        }
        state.lastPosition = r.value[r.value.length - 1]!.position;
        return { done: false, value: r.value };
      },
      return: async () => {
        await close();
        return { done: true, value: undefined };
      },
    };
    return {
      get lastPosition() {
        return state.lastPosition;
      },
      close,
      pages: () => ({ [Symbol.asyncIterator]: () => pageIterator }),
      [Symbol.asyncIterator]: () => iterator,
    };
  }

  /**
   * Pages of the log from position `next` on, forever: what is there, then each new batch as it
   * is acknowledged.
   */
  async *#follow(
    next: number,
    filter: (CompiledFilter & { stream?: string }) | undefined,
    sub: { closed: boolean },
  ): AsyncGenerator<RecordedEvent[]> {
    for await (const { buf, offsets } of this.tailFrames(next, sub)) {
      const page: RecordedEvent[] = [];
      for (const off of offsets) {
        if (filter !== undefined) {
          if (filter.stream !== undefined && frame.stream(buf, off) !== filter.stream) continue;
          if (!matches(filter, buf, off)) continue;
        }
        if (this.#retention.size > 0 && this.#hidden(buf, off)) continue;
        page.push(decodeEvent(buf, off));
      }
      if (page.length > 0) yield page;
    }
  }

  /**
   * The log's frames from position `next` on, forever, as chunks of checked frames with their
   * segment and file offset: what is there, then each new batch as it is acknowledged. Keeps its
   * place as a file offset, so following the tail costs one read of the new bytes per wake-up,
   * not a seek. Ends when `sub.closed` is set (wake it with `wakeFollowers`).
   * @internal (the queue engine follows the log with it)
   */
  async *tailFrames(next: number, sub: { closed: boolean }): AsyncGenerator<{ buf: Buffer; offsets: number[]; base: number; fileOffset: number }> {
    let cursor: { base: number; offset: number } | undefined;
    while (!sub.closed) {
      this.#checkReadable();
      const head = this.#head;
      const endBase = this.#committedBase;
      const endOffset = this.#committedEnd;
      if (next > head) {
        await this.#waitForHead(head, sub);
        continue;
      }
      if (cursor === undefined) {
        const first = this.#segments.bases[0]!;
        if (next < first) next = first;
        const base = this.#segments.segmentFor(next)!;
        cursor = { base, offset: this.#index.seek(next, base) ?? HEADER_BYTES };
      }
      let base: number | undefined = cursor.base;
      let from = cursor.offset;
      while (base !== undefined && !sub.closed) {
        const to = base === endBase ? endOffset : fs.statSync(this.#segments.fileOf(base)).size;
        for await (const chunk of scanForward(this.#segments, base, from, to, this.#scan)) {
          let offsets = chunk.offsets;
          if (frame.position(chunk.buf, offsets[0]!) < next) offsets = offsets.filter((off) => frame.position(chunk.buf, off) >= next);
          if (offsets.length > 0) yield { buf: chunk.buf, offsets, base, fileOffset: chunk.fileOffset };
          if (sub.closed) return;
        }
        if (base === endBase) {
          cursor = { base, offset: to };
          base = undefined;
        } else {
          base = this.#segments.next(base);
          from = HEADER_BYTES;
          if (base === undefined) throw new CorruptionError(this.#segments.fileOf(cursor.base), to, 'segment list ended before the committed end');
        }
      }
      next = head + 1;
    }
  }

  /**
   * The frames of the log from position `from` on, forever, filtered as subscribeToAll filters
   * events (and hiding what retention hides), as references into the chunks read. For the
   * server, which sends them on without decoding them. @internal
   */
  async *followFrames(from: number, filter: ReadAllFilter | undefined, sub: { closed: boolean }): AsyncGenerator<Array<{ buf: Buffer; off: number }>> {
    const f = compileFilter(filter);
    for await (const { buf, offsets } of this.tailFrames(from, sub)) {
      const page: Array<{ buf: Buffer; off: number }> = [];
      for (const off of offsets) {
        if (f !== undefined && !matches(f, buf, off)) continue;
        if (this.#retention.size > 0 && this.#hidden(buf, off)) continue;
        page.push({ buf, off });
      }
      if (page.length > 0) yield page;
    }
  }

  /** The event in a checked frame (one read by tailFrames, or a copy of one). @internal */
  decodeFrame(buf: Buffer, off: number): RecordedEvent {
    return decodeEvent(buf, off);
  }

  /** Wakes every follower waiting for the head (a closed one then ends). @internal */
  wakeFollowers(): void {
    this.#wakeHeadWaiters();
  }

  /** Position of the last acknowledged event. @internal */
  get head(): number {
    return this.#head;
  }

  /** The log's id (from eventful.json). @internal */
  get logId(): string {
    return this.#logId;
  }

  /**
   * The events whose frames are at these places (segment base, file offset, frame bytes), in
   * the order given. Neighbours in a file are read together.
   * @internal (the queue engine re-reads messages it no longer holds in memory)
   */
  readFramesAt(locations: ReadonlyArray<{ base: number; offset: number; bytes: number }>): RecordedEvent[] {
    this.#checkReadable();
    const out: RecordedEvent[] = new Array(locations.length);
    const order = locations.map((_, i) => i).sort((a, b) => locations[a]!.base - locations[b]!.base || locations[a]!.offset - locations[b]!.offset);
    let i = 0;
    while (i < order.length) {
      const first = locations[order[i]!]!;
      let j = i + 1;
      let hi = first.offset + first.bytes;
      // Read across small gaps (other records between messages) rather than one read each.
      while (j < order.length) {
        const l = locations[order[j]!]!;
        if (l.base !== first.base || l.offset - hi > 16 * 1024 || l.offset + l.bytes - first.offset > this.limits.readChunkBytes) break;
        hi = Math.max(hi, l.offset + l.bytes);
        j++;
      }
      const buf = Buffer.allocUnsafe(hi - first.offset);
      const n = this.#segments.readSync(first.base, buf, 0, buf.length, first.offset);
      for (let k = i; k < j; k++) {
        const l = locations[order[k]!]!;
        const off = l.offset - first.offset;
        const c = checkFrame(buf, off, n, this.#scan.frameBytesMax);
        if (!c.ok || c.length !== l.bytes) throw new CorruptionError(this.#segments.fileOf(l.base), l.offset, c.ok ? 'frame length differs from the one recorded' : c.incomplete ? 'record cut short' : c.reason);
        out[order[k]!] = decodeEvent(buf, off);
      }
      i = j;
    }
    return out;
  }

  #waitForHead(head: number, sub: { closed: boolean }): Promise<void> {
    if (this.#head > head || sub.closed || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#headWaiters.push(resolve));
  }

  #wakeHeadWaiters(): void {
    const waiters = this.#headWaiters;
    if (waiters.length === 0) return;
    this.#headWaiters = [];
    for (const w of waiters) w();
  }

  #checkReadable(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  /** Index size figures (for the benchmark and docs). */
  indexStats(): ReturnType<StreamIndex['stats']> {
    return this.#index.stats();
  }

  // ---------------------------------------------------------------------------------------------
  // Closing

  /** Finishes queued appends durably, writes the index, releases the directory. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Queues first: their last delivery records go through the writer.
    await this.groups?.close();
    await this.queues?.close();
    this.#stopping = true;
    while (this.#running) await this.#running;
    clearInterval(this.#flushTimer);
    try {
      await this.#writer.close();
      if (this.#failed === undefined) await this.#index.flush(this.#logId);
    } finally {
      this.#closed = true;
      this.#wakeHeadWaiters();
      await this.#index.close();
      if (this.#failed === undefined) StreamIndex.markClosed(path.join(this.dir, 'index'));
      this.#segments.closeAll();
      await this.#lock.release();
    }
  }
}

function matches(filter: CompiledFilter, buf: Buffer, off: number): boolean {
  if (filter.types !== undefined && !filter.types.has(frame.type(buf, off))) return false;
  if (filter.prefixes === undefined && filter.categories === undefined) return true;
  return matchesStream(filter, frame.stream(buf, off));
}

/** The event in the checked frame at `off` of `buf`. */
export function decodeEvent(buf: Buffer, off: number): RecordedEvent {
  const sLen = u16(buf, off + 50);
  const tLen = u16(buf, off + 52);
  const cLen = buf[off + 54]!;
  const mLen = u32(buf, off + 55);
  const dLen = u32(buf, off + 59);
  const s = off + RECORD_HEADER_BYTES;
  const t = s + sLen;
  const c = t + tLen;
  const m = c + cLen;
  // Stream and type are decoded when first read (RecordedEvent.decodeText, set below).
  return new RecordedEvent(frame.position(buf, off), undefined, frame.revision(buf, off), undefined, contentTypeAt(buf, c, cLen), frame.timestamp(buf, off), buf, off + 34, buf, m, mLen, buf, m + mLen, dLen, s, sLen, t, tLen);
}

// Events read from the log decode their stream and type through the interner (log/intern.ts).
const plainDecode = RecordedEvent.decodeText;
RecordedEvent.decodeText = (src, start, end) => (Buffer.isBuffer(src) ? interner.decode(src, start, end) : plainDecode(src, start, end));

/** The same key as PreparedEvent.idKey, for an event read back. */
function idKeyOf(e: RecordedEvent): string {
  const b = e.idBytes;
  return Buffer.from(b.buffer, b.byteOffset, 16).toString('latin1');
}

function toInfo(stream: string, st: StreamState): StreamInfo {
  return {
    stream,
    revision: st.revision,
    eventCount: st.eventCount,
    firstPosition: st.firstPosition,
    lastPosition: st.lastPosition,
    createdAt: st.createdAt,
    updatedAt: st.updatedAt,
  };
}


function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new ConfigInvalidError(`${name} must be a positive integer, got ${String(v)}`);
  return v;
}
