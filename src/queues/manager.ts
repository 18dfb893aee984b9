/**
 * The queue engine: named queues as a way of reading the log.
 *
 * Where things live:
 *   $queues        queue definitions: QueueCreated, QueueUpdated, QueuePurged, QueueDeleted
 *   $queue-<name>  messages sent to the queue (its history; readable like any stream)
 *   $qops-<name>   its delivery records (src/queues/ops.ts): deliveries, retries, settlements
 *   <dir>/queues/  one snapshot per queue: its unsettled messages and where in the log it was
 *
 * One follower reads the log in order and hands each message to its queue: a sent message by
 * its stream, an event of any stream to every queue bound to it by a filter. A queue keeps, per
 * message, only its delivery state and where its frame is in the log (src/queues/queue.ts);
 * the bytes are read back (or taken from a bounded cache of recent ones) when delivered.
 *
 * Durability: a send resolves once its messages are durable in the log (the store's group
 * commit). Acks, nacks and dead-lettering change the state at once and resolve once their op
 * record is durable, sharing group commits with everything else. Deliveries and lease expiries
 * are recorded without waiting (a crash can forget the deliveries of the last group commit: such
 * a message comes back with a delivery count one lower).
 *
 * Restart: definitions are read from $queues, each queue's snapshot is loaded, and the log after
 * the oldest snapshot is replayed (messages and ops) before the store opens. Leases do not
 * survive a restart: every message not acked is delivered again.
 */
import { createHash, randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Packr } from 'msgpackr/pack';
import {
  InvalidArgumentError,
  LeaseNotOwnedError,
  LimitExceededError,
  OverloadedError,
  QueueExistsError,
  QueueFullError,
  QueueNotFoundError,
  ReceiptInvalidError,
  StoreClosedError,
} from '../core/errors.js';
import { CONTENT_TYPE_JSON, RecordedEvent } from '../core/events.js';
import type { EventInput } from '../core/events.js';
import { isUuid, newEventId, uuidFromBytes, uuidToBytes } from '../core/ids.js';
import type { StoreLimits } from '../core/limits.js';
import type {
  ConsumeOptions,
  Consumer,
  Delivery,
  MessageInput,
  NackOptions,
  QueueInfo,
  QueueSettings,
  QueueSettingsInput,
  QueueStats,
  Queues,
  ReceiveOptions,
  RedriveOptions,
  SendResult,
} from '../core/queues.js';
import { RECORD_HEADER_BYTES, frame, u16, u32 } from '../log/record.js';
import { compileFilter, matchesStream } from '../streams/validate.js';
import type { CompiledFilter } from '../streams/validate.js';
import { systemClock } from './clock.js';
import type { Clock } from './clock.js';
import { OP, OPS_EVENT_TYPE, OUTCOME, OUTCOME_NAMES, OpBuffer, decodeOps } from './ops.js';
import { DELAYED, LEASED, Msg, QueueState, READY, SETTLING } from './queue.js';
import { QueueDelivery } from '../core/delivery.js';
import type { SettleLease } from '../core/delivery.js';
import type { Holder } from './queue.js';
import { DEFAULT_QUEUE_SETTINGS, DEFINITIONS_STREAM, checkQueueName, opsStream, queueStream, resolveSettings } from './settings.js';

/** What the queue engine needs of the store (FileEventStore provides it). */
export interface QueueHost {
  readonly dir: string;
  readonly limits: StoreLimits;
  readonly head: number;
  readonly logId: string;
  appendSystem(stream: string, events: EventInput[]): Promise<{ positions: number[]; revision: number }>;
  readStream(stream: string): { toArray(): Promise<RecordedEvent[]> };
  tailFrames(from: number, sub: { closed: boolean }): AsyncGenerator<{ buf: Buffer; offsets: number[]; base: number; fileOffset: number }>;
  wakeFollowers(): void;
  readFramesAt(locations: ReadonlyArray<{ base: number; offset: number; bytes: number }>): RecordedEvent[];
  decodeFrame(buf: Buffer, off: number): RecordedEvent;
}

export interface QueueOptions {
  /** Time source for leases, delays and back-offs. @default the system clock */
  clock?: Clock;
  /** Random numbers in [0, 1) for back-off jitter. @default Math.random */
  random?: () => number;
  /** Create a queue with default settings on its first send, consume or receive. @default false */
  autoCreate?: boolean;
  /** How often changed queues write their snapshot. @default 10,000 ms */
  snapshotIntervalMs?: number;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}

interface Def {
  info: QueueInfo;
  state: QueueState;
  /** Sent messages before this position are gone (created, purged). */
  floor: number;
  /** Bound events before this position are gone (purged). */
  purgedBefore: number;
  /** A bound queue takes events from this position on. */
  bindFrom: number;
  filter: CompiledFilter | undefined;
  /** Log position the snapshot reflects; replay skips what it already holds. */
  snapshotAt: number;
  consumers: ConsumerImpl[];
  pulls: PullWaiter[];
  rr: number;
  ops: OpBuffer;
  opWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }>;
  flushing: boolean;
  /** Settled in memory, their SETTLE op not yet durable: a snapshot still holds them. */
  settling: Msg[];
  dedup: DedupIds;
  pendingSends: number;
  /** Sent (durable) but not yet read back by the follower: still counted against maxLength. */
  unapplied: number;
  dirty: boolean;
  /** SETTLE ops being written: a snapshot still holds these messages until the write is durable. */
  flushingSettled: Msg[];
  dispatchScheduled: boolean;
  samples: Array<{ at: number; sent: number; acked: number; nacked: number; redelivered: number }>;
}

/** A send still writing a message id: its positions, when they are known, at `index`. */
interface PendingId {
  pending: Promise<number[]>;
  index: number;
}

class IdGeneration {
  readonly slots = new Map<string, number>();
  readonly positions: number[] = [];
  readonly ats: number[] = [];
  constructor(readonly since: number) {}
}

/**
 * Message ids seen within a queue's dedup window, with the position and time each was sent.
 * Two generations: the young one takes new ids; once it is a window old (or holds half of
 * queueDedupIdsMax) it becomes the old one and the previous old one is dropped whole. No entry
 * is deleted one by one (a Map with deletions among a million entries rehashes them all from
 * time to time, a long pause of the event loop), and an id maps to a slot in plain arrays, not
 * to an object (a million objects are a million things for every full garbage collection to
 * trace). Ids of sends still being written are kept apart, with the send's promise.
 */
class DedupIds {
  #young = new IdGeneration(0);
  #old = new IdGeneration(0);
  #pending = new Map<string, PendingId>();

  /** The position of `id` if it was sent at or after `since`, or the send still writing it. */
  lookup(id: string, since: number): number | PendingId | undefined {
    const p = this.#pending.get(id);
    if (p !== undefined) return p;
    for (const g of [this.#young, this.#old]) {
      const slot = g.slots.get(id);
      if (slot !== undefined) return g.ats[slot]! >= since ? g.positions[slot]! : undefined;
    }
    return undefined;
  }

  has(id: string): boolean {
    return this.#pending.has(id) || this.#young.slots.has(id) || this.#old.slots.has(id);
  }

  claim(id: string, pending: PendingId): void {
    this.#pending.set(id, pending);
  }

  /** A claimed id was written (at `position`), or its send failed (undefined). */
  release(id: string, position: number | undefined, at: number): void {
    this.#pending.delete(id);
    if (position !== undefined) this.remember(id, position, at);
  }

  remember(id: string, position: number, at: number): void {
    const g = this.#young;
    g.slots.set(id, g.positions.length);
    g.positions.push(position);
    g.ats.push(at);
  }

  rotate(now: number, windowMs: number, max: number): void {
    if (this.#young.since === 0 && this.#young.slots.size === 0) this.#young = new IdGeneration(now);
    if (now - this.#young.since >= windowMs || this.#young.slots.size >= max / 2) {
      this.#old = this.#young;
      this.#young = new IdGeneration(now);
    }
  }

  /** Every remembered id as [id, position, at], for a snapshot. */
  *entries(): IterableIterator<[string, number, number]> {
    for (const g of [this.#old, this.#young]) {
      for (const [id, slot] of g.slots) {
        if (g === this.#old && this.#young.slots.has(id)) continue;
        yield [id, g.positions[slot]!, g.ats[slot]!];
      }
    }
  }
}

interface PullWaiter {
  /** Holds the leases (released with it), or undefined: the leases expire on their own. */
  group: LeaseGroup | undefined;
  max: number;
  taken: Msg[];
  done: () => void;
}

const SNAPSHOT_VERSION = 2;
/** Bytes of ops per `$ops` record (well under eventBytesMax). */
const OPS_RECORD_BYTES_MAX = 256 * 1024;
/** An idle queue's snapshot is rewritten once the log has moved this far past it. */
const SNAPSHOT_LAG_MAX = 100_000;
const packr = new Packr({ useRecords: false, int64AsType: 'number' });

export class QueueManager implements Queues {
  #host: QueueHost;
  #limits: StoreLimits;
  #clock: Clock;
  #random: () => number;
  #autoCreate: boolean;
  #warn: (message: string, details: Record<string, unknown>) => void;
  #defs = new Map<string, Def>();
  #snapDir: string;
  /** Last log position the follower has handed to the queues. */
  #applied: number;
  /** Ops read back at positions up to here are replayed; later ones were made by this process. */
  #replayEnd: number;
  #sub = { closed: false };
  #follower: Promise<void> | undefined;
  #appliedWaiters: Array<{ at: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  #followerError: unknown;
  /** Held while definitions change, so the follower never applies the log half-way. */
  #gate: Promise<void> | undefined;
  #defChain: Promise<unknown> = Promise.resolve();
  #cacheBytes = 0;
  #leaseSeq = randomInt(0, 2 ** 40);
  #totalMsgs = 0;
  #closed = false;
  #snapshotTimer: NodeJS.Timeout;
  #sampleTimer: NodeJS.Timeout;

  private constructor(host: QueueHost, o: QueueOptions) {
    this.#host = host;
    this.#limits = host.limits;
    this.#clock = o.clock ?? systemClock;
    this.#random = o.random ?? Math.random;
    this.#autoCreate = o.autoCreate ?? false;
    this.#warn = o.onWarning ?? (() => undefined);
    this.#snapDir = path.join(host.dir, 'queues');
    this.#applied = host.head;
    this.#replayEnd = host.head;
    this.#snapshotTimer = setInterval(() => void this.#snapshotAll(false), o.snapshotIntervalMs ?? 10_000);
    this.#snapshotTimer.unref();
    this.#sampleTimer = setInterval(() => this.#sample(), 1000);
    this.#sampleTimer.unref();
  }

  /** Loads definitions and snapshots and replays the log since them. */
  static async open(host: QueueHost, options: QueueOptions = {}): Promise<QueueManager> {
    const m = new QueueManager(host, options);
    try {
      await m.#recover();
    } catch (err) {
      m.#stopTimers();
      m.#sub.closed = true;
      throw err;
    }
    return m;
  }

  async #recover(): Promise<void> {
    const defs = await this.#host.readStream(DEFINITIONS_STREAM).toArray();
    for (const e of defs) this.#applyDefinition(e);
    if (this.#defs.size === 0) return;
    let start = this.#host.head + 1;
    for (const d of this.#defs.values()) {
      this.#loadSnapshot(d);
      start = Math.min(start, d.snapshotAt + 1);
    }
    this.#replayEnd = this.#host.head;
    this.#applied = start - 1;
    this.#startFollower(start);
    await this.#waitApplied(this.#replayEnd);
    for (const d of this.#defs.values()) this.#goLive(d);
  }

  #goLive(d: Def): void {
    const q = d.state;
    q.goLive();
    // A message whose deliveries were used up before a crash goes to dead letters now.
    for (const msg of q.msgs.values()) {
      if ((msg.state === READY || msg.state === DELAYED) && msg.deliveries >= q.settings.maxDeliveries) q.toDeadLetters(msg, `delivered ${msg.deliveries} times (maxDeliveries ${q.settings.maxDeliveries})`);
    }
    this.#scheduleDispatch(d);
  }

  // ---------------------------------------------------------------------------------------------
  // Definitions

  #newDef(info: QueueInfo, floor: number, bindFrom: number): Def {
    const d: Def = {
      info,
      floor,
      purgedBefore: 0,
      bindFrom,
      filter: info.settings.binding ? compileFilter(info.settings.binding.filter) : undefined,
      snapshotAt: Math.min(floor, bindFrom) - 1,
      consumers: [],
      pulls: [],
      rr: 0,
      ops: new OpBuffer(),
      opWaiters: [],
      flushing: false,
      settling: [],
      dedup: new DedupIds(),
      pendingSends: 0,
      unapplied: 0,
      dirty: true,
      flushingSettled: [],
      dispatchScheduled: false,
      samples: [],
      state: undefined as unknown as QueueState,
    };
    d.state = new QueueState(info.name, info.settings, {
      clock: this.#clock,
      random: this.#random,
      emit: {
        op: (op, position, a, b) => {
          d.ops.push(op, position, a, b);
          this.#opsAdded(d);
        },
        group: (op, group) => {
          d.ops.pushGroup(op, group);
          this.#opsAdded(d);
        },
      },
      onReady: () => this.#scheduleDispatch(d),
      onDead: (msg, reason, park) => void this.#deadLetter(d, msg, reason, park),
    });
    return d;
  }

  /** Applies one event of $queues (on open, and after each definition change is durable). */
  #applyDefinition(e: RecordedEvent): Def | undefined {
    const data = e.data as { name: string; settings?: QueueSettings };
    const name = data.name;
    const existing = this.#defs.get(name);
    switch (e.type) {
      case 'QueueCreated': {
        if (existing) this.#dropDef(existing);
        const settings = data.settings!;
        const info: QueueInfo = { name, settings, createdPosition: e.position, createdAt: e.timestamp, stream: queueStream(name) };
        const d = this.#newDef(info, e.position + 1, bindFromOf(settings, e.position));
        this.#defs.set(name, d);
        return d;
      }
      case 'QueueUpdated': {
        if (!existing) return undefined;
        const before = JSON.stringify(existing.info.settings.binding);
        existing.info = { ...existing.info, settings: data.settings! };
        existing.state.settings = data.settings!;
        if (JSON.stringify(data.settings!.binding) !== before) {
          existing.bindFrom = bindFromOf(data.settings!, e.position);
          existing.filter = data.settings!.binding ? compileFilter(data.settings!.binding.filter) : undefined;
        }
        return existing;
      }
      case 'QueuePurged': {
        if (!existing) return undefined;
        existing.floor = e.position + 1;
        existing.purgedBefore = e.position + 1;
        existing.state.clear();
        existing.settling = [];
        existing.dirty = true;
        return existing;
      }
      case 'QueueDeleted':
        if (existing) this.#dropDef(existing);
        return undefined;
      default:
        return undefined;
    }
  }

  #dropDef(d: Def): void {
    d.state.stop();
    d.state.clear();
    for (const c of [...d.consumers]) c.end(new QueueNotFoundError(d.info.name));
    for (const p of d.pulls.splice(0)) p.done();
    this.#defs.delete(d.info.name);
    fs.rmSync(this.#snapshotFile(d.info.name), { force: true });
  }

  /** Serialises definition changes and holds the follower while one is applied. */
  async #changeDefinition<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#defChain.then(async () => {
      let release!: () => void;
      this.#gate = new Promise<void>((r) => (release = r));
      try {
        return await fn();
      } finally {
        this.#gate = undefined;
        release();
      }
    });
    this.#defChain = run.catch(() => undefined);
    return run;
  }

  async #writeDefinition(type: string, data: Record<string, unknown>): Promise<RecordedEvent> {
    const r = await this.#host.appendSystem(DEFINITIONS_STREAM, [{ type, data }]);
    const position = r.positions[0]!;
    // The event as it will read back: definitions apply the same way live and on replay.
    const bytes = Buffer.from(JSON.stringify(data));
    return RecordedEvent.fromParts(position, DEFINITIONS_STREAM, r.revision, new Uint8Array(16), type, CONTENT_TYPE_JSON, this.#clock.now(), undefined, bytes);
  }

  async create(name: string, settings?: QueueSettingsInput): Promise<QueueInfo> {
    this.#checkOpen();
    checkQueueName(name);
    const s = resolveSettings(settings, DEFAULT_QUEUE_SETTINGS, this.#limits, false);
    return this.#changeDefinition(async () => {
      if (this.#defs.has(name)) throw new QueueExistsError(name);
      if (this.#defs.size >= this.#limits.queuesMax) throw new LimitExceededError('queuesMax', this.#defs.size + 1, this.#limits.queuesMax);
      if (s.deadLetterQueue === name) throw new InvalidArgumentError('a queue cannot be its own dead-letter queue');
      const e = await this.#writeDefinition('QueueCreated', { name, settings: s });
      const d = this.#applyDefinition(e)!;
      await this.#catchUp(d, e.position);
      if (s.deadLetterQueue !== null && !this.#defs.has(s.deadLetterQueue)) await this.#createDeadLetterQueue(s.deadLetterQueue);
      return d.info;
    });
  }

  async #createDeadLetterQueue(name: string): Promise<void> {
    checkQueueName(name);
    const e = await this.#writeDefinition('QueueCreated', { name, settings: DEFAULT_QUEUE_SETTINGS });
    const d = this.#applyDefinition(e)!;
    await this.#catchUp(d, e.position);
  }

  /**
   * A queue that is new (or newly bound) takes what the follower already passed: its part of
   * the log from where it starts up to the follower's place, then goes live.
   */
  async #catchUp(d: Def, definedAt: number): Promise<void> {
    const from = Math.min(d.floor, d.bindFrom);
    if (this.#follower === undefined) {
      // The first queue: the follower starts where this queue does.
      this.#applied = Math.min(this.#host.head, from - 1);
      this.#replayEnd = this.#applied;
      this.#goLive(d);
      this.#startFollower(this.#applied + 1);
      return;
    }
    await this.#readRange(from, Math.max(this.#applied, definedAt), (buf, off, base, fileOffset, pos) => this.#route(buf, off, base, fileOffset, pos, d));
    if (!d.state.live) this.#goLive(d);
  }

  /** Hands every frame of the log from `from` to `to` (inclusive) to `visit`, then stops. */
  async #readRange(from: number, to: number, visit: (buf: Buffer, off: number, base: number, fileOffset: number, pos: number) => void): Promise<void> {
    if (from > to) return;
    const sub = { closed: false };
    try {
      for await (const chunk of this.#host.tailFrames(from, sub)) {
        for (const off of chunk.offsets) {
          const pos = frame.position(chunk.buf, off);
          if (pos > to) return;
          visit(chunk.buf, off, chunk.base, chunk.fileOffset, pos);
          if (pos === to) return;
        }
      }
    } finally {
      sub.closed = true;
    }
  }

  async update(name: string, settings: QueueSettingsInput): Promise<QueueInfo> {
    this.#checkOpen();
    checkQueueName(name);
    return this.#changeDefinition(async () => {
      const d = this.#def(name);
      const s = resolveSettings(settings, d.info.settings, this.#limits, true);
      if (s.deadLetterQueue === name) throw new InvalidArgumentError('a queue cannot be its own dead-letter queue');
      const e = await this.#writeDefinition('QueueUpdated', { name, settings: s });
      const bindBefore = d.bindFrom;
      this.#applyDefinition(e);
      if (d.bindFrom !== bindBefore && d.bindFrom <= this.#applied) await this.#catchUpBinding(d);
      if (s.deadLetterQueue !== null && !this.#defs.has(s.deadLetterQueue)) await this.#createDeadLetterQueue(s.deadLetterQueue);
      d.dirty = true;
      this.#scheduleDispatch(d);
      return d.info;
    });
  }

  /** A binding added to a live queue, starting before the follower's place: events only. */
  async #catchUpBinding(d: Def): Promise<void> {
    await this.#readRange(d.bindFrom, this.#applied, (buf, off, base, fileOffset, pos) => {
      const stream = frame.stream(buf, off);
      if (stream.charCodeAt(0) !== 36 && d.filter !== undefined && matchesFrame(d.filter, buf, off, stream)) this.#enqueue(d, buf, off, base, fileOffset, pos, stream, false);
    });
  }

  async get(name: string): Promise<QueueInfo | undefined> {
    this.#checkOpen();
    checkQueueName(name);
    return this.#defs.get(name)?.info;
  }

  async list(): Promise<QueueInfo[]> {
    this.#checkOpen();
    return [...this.#defs.values()].map((d) => d.info).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(name: string): Promise<void> {
    this.#checkOpen();
    checkQueueName(name);
    await this.#changeDefinition(async () => {
      const d = this.#def(name);
      await this.#flushOps(d);
      const e = await this.#writeDefinition('QueueDeleted', { name });
      this.#applyDefinition(e);
    });
  }

  async purge(name: string): Promise<number> {
    this.#checkOpen();
    checkQueueName(name);
    // Messages already sent but not yet read by the follower are purged too: count them. (Not
    // inside the definition change: that holds the follower still.)
    await this.#waitApplied(this.#host.head);
    return this.#changeDefinition(async () => {
      const d = this.#def(name);
      const n = d.state.msgs.size;
      await this.#flushOps(d);
      const e = await this.#writeDefinition('QueuePurged', { name });
      this.#applyDefinition(e);
      for (const c of d.consumers) c.freed();
      return n;
    });
  }

  #def(name: string): Def {
    const d = this.#defs.get(name);
    if (d === undefined) throw new QueueNotFoundError(name);
    return d;
  }

  async #defOrCreate(name: string): Promise<Def> {
    checkQueueName(name);
    const d = this.#defs.get(name);
    if (d !== undefined) return d;
    if (!this.#autoCreate) throw new QueueNotFoundError(name);
    try {
      await this.create(name);
    } catch (err) {
      if (!(err instanceof QueueExistsError)) throw err;
    }
    return this.#def(name);
  }

  // ---------------------------------------------------------------------------------------------
  // The follower: the log, in order, to the queues

  #startFollower(from: number): void {
    this.#follower = (async () => {
      try {
        for await (const chunk of this.#host.tailFrames(from, this.#sub)) {
          if (this.#gate !== undefined) await this.#gate;
          if (this.#sub.closed) break;
          const { buf, offsets, base, fileOffset } = chunk;
          for (const off of offsets) this.#route(buf, off, base, fileOffset, frame.position(buf, off), undefined);
          this.#applied = frame.position(buf, offsets[offsets.length - 1]!);
          this.#wakeApplied();
        }
      } catch (err) {
        if (this.#sub.closed) return;
        this.#followerError = err;
        this.#warn('the queue engine stopped following the log', { error: (err as Error).message });
        for (const w of this.#appliedWaiters.splice(0)) w.reject(err);
      }
    })();
  }

  /** Hands one frame to the queue(s) it belongs to; `only` limits it to one queue (catch-up). */
  #route(buf: Buffer, off: number, base: number, fileOffset: number, pos: number, only: Def | undefined): void {
    const stream = frame.stream(buf, off);
    if (stream.charCodeAt(0) === 36 /* $ */) {
      if (stream.startsWith('$queue-')) {
        const d = this.#defs.get(stream.slice(7));
        if (d !== undefined && (only === undefined || only === d) && pos >= d.floor && pos > d.snapshotAt) this.#enqueue(d, buf, off, base, fileOffset, pos, stream, true);
      } else if (stream.startsWith('$qops-') && pos <= this.#replayEnd) {
        const d = this.#defs.get(stream.slice(6));
        if (d !== undefined && (only === undefined || only === d) && pos > d.snapshotAt && pos > d.info.createdPosition) {
          for (const op of decodeOps(this.#host.decodeFrame(buf, off).rawData)) d.state.applyOp(op);
        }
      }
      return;
    }
    if (only !== undefined) {
      if (only.filter !== undefined && pos >= only.bindFrom && pos >= only.purgedBefore && pos > only.snapshotAt && matchesFrame(only.filter, buf, off, stream)) this.#enqueue(only, buf, off, base, fileOffset, pos, stream, false);
      return;
    }
    for (const d of this.#defs.values()) {
      if (d.filter !== undefined && pos >= d.bindFrom && pos >= d.purgedBefore && pos > d.snapshotAt && matchesFrame(d.filter, buf, off, stream)) this.#enqueue(d, buf, off, base, fileOffset, pos, stream, false);
    }
  }

  #enqueue(d: Def, buf: Buffer, off: number, base: number, fileOffset: number, pos: number, stream: string, sent: boolean): void {
    const q = d.state;
    if (q.msgs.has(pos)) return;
    const bytes = u32(buf, off);
    const sentAt = frame.timestamp(buf, off);
    let group: string | undefined;
    // Visible at once unless delayed (0, not the commit time: the clock may be another one).
    let visibleAt = 0;
    let redriveOf: number | undefined;
    if (sent) {
      const meta = metadataOf(buf, off);
      if (meta !== undefined) {
        if (typeof meta.$group === 'string') group = meta.$group;
        if (typeof meta.$deliverAt === 'number') visibleAt = meta.$deliverAt;
        if (typeof meta.$redrive === 'object' && meta.$redrive !== null) redriveOf = (meta.$redrive as { position?: number }).position;
      }
      if (q.fifo && group === undefined) group = '';
    } else {
      if (q.settings.deliveryDelayMs > 0) visibleAt = sentAt + q.settings.deliveryDelayMs;
      if (q.fifo) group = stream;
    }
    const idKey = buf.toString('latin1', off + 34, off + 50);
    const msg = new Msg(pos, idKey, q.fifo ? group : undefined, base, fileOffset + off, bytes, sentAt, visibleAt);
    if (q.live && this.#cacheBytes + bytes <= this.#limits.queueCacheBytesMax) {
      msg.cached = Buffer.from(buf.subarray(off, off + bytes));
      this.#cacheBytes += bytes;
    }
    if (sent && q.settings.dedupWindowMs > 0 && !d.dedup.has(idKey)) this.#remember(d, idKey, pos, sentAt);
    q.enqueue(msg);
    this.#totalMsgs++;
    d.dirty = true;
    if (!q.live) return;
    if (redriveOf !== undefined && msg.group !== undefined && q.isParked(msg.group)) q.restoreHead(msg);
    if (sent && d.unapplied > 0) d.unapplied--;
    const max = q.settings.maxLength;
    if (max !== null && q.waiting > max) {
      if (q.settings.overflow === 'drop-oldest') {
        const oldest = this.#oldestWaiting(q);
        if (oldest !== undefined) {
          if (q.settings.deadLetterQueue !== null) {
            q.counters.dropped++;
            q.toDeadLetters(oldest, `dropped by overflow (maxLength ${max})`, false);
          }
          else this.#settle(d, oldest, OUTCOME.dropped);
        }
      } else if (!sent) {
        // A bound queue cannot refuse an append: the event is recorded as rejected. (A sent
        // message was counted against maxLength before it was written, so it stays.)
        q.counters.rejected++;
        this.#settle(d, msg, OUTCOME.rejected);
      }
    }
  }

  #oldestWaiting(q: QueueState): Msg | undefined {
    for (const m of q.msgs.values()) if (m.state === READY || m.state === DELAYED) return m;
    return undefined;
  }

  #waitApplied(at: number): Promise<void> {
    if (this.#applied >= at) return Promise.resolve();
    if (this.#followerError !== undefined) return Promise.reject(this.#followerError);
    return new Promise((resolve, reject) => this.#appliedWaiters.push({ at, resolve, reject }));
  }

  #wakeApplied(): void {
    if (this.#appliedWaiters.length === 0) return;
    const keep: Array<{ at: number; resolve: () => void; reject: (e: unknown) => void }> = [];
    for (const w of this.#appliedWaiters) {
      if (this.#applied >= w.at) w.resolve();
      else keep.push(w);
    }
    this.#appliedWaiters = keep;
  }

  // ---------------------------------------------------------------------------------------------
  // Sending

  async send(name: string, messages: MessageInput[]): Promise<SendResult> {
    this.#checkOpen();
    const d = await this.#defOrCreate(name);
    if (!Array.isArray(messages)) throw new InvalidArgumentError('messages must be an array of { body?, headers?, id?, type?, groupKey?, delayMs?, deliverAt?, contentType? }');
    if (messages.length === 0) throw new InvalidArgumentError('a send needs at least one message');
    if (messages.length > this.#limits.eventsPerAppendMax) throw new LimitExceededError('eventsPerAppendMax', messages.length, this.#limits.eventsPerAppendMax);
    const q = d.state;
    const now = this.#clock.now();
    const ids: string[] = new Array(messages.length);
    const positions: number[] = new Array(messages.length);
    const events: EventInput[] = [];
    const fresh: number[] = [];
    const dupWaits: Array<Promise<void>> = [];
    const keys: string[] = [];
    const keySet = new Set<string>();
    const dedup = q.settings.dedupWindowMs > 0;
    if (dedup) d.dedup.rotate(now, q.settings.dedupWindowMs, this.#limits.queueDedupIdsMax);
    for (let i = 0; i < messages.length; i++) {
      const m = checkMessage(messages[i], i, q.fifo, now, this.#limits);
      const id = m.id ?? newEventId();
      ids[i] = id;
      const idKey = idKeyOf(id);
      const seen = dedup && m.id !== undefined ? d.dedup.lookup(idKey, now - q.settings.dedupWindowMs) : undefined;
      if (seen !== undefined) {
        if (typeof seen === 'number') positions[i] = seen;
        else {
          const index = seen.index;
          dupWaits.push(seen.pending.then((p) => void (positions[i] = p[index]!)));
        }
        continue;
      }
      if (keySet.has(idKey)) throw new InvalidArgumentError(`message ${i}: id ${id} appears twice in one send`);
      keySet.add(idKey);
      keys.push(idKey);
      // Metadata only when there is some: most messages have none, and an empty object costs a
      // JSON encoding per message for nothing.
      let metadata: Record<string, unknown> | undefined = m.headers === undefined ? undefined : { ...m.headers };
      if (m.groupKey !== undefined) (metadata ??= {}).$group = m.groupKey;
      const deliverAt = Math.max(m.deliverAt ?? 0, q.settings.deliveryDelayMs > 0 ? now + q.settings.deliveryDelayMs : 0);
      if (deliverAt > now) (metadata ??= {}).$deliverAt = deliverAt;
      const e: EventInput = { id, type: m.type ?? 'message', data: m.body };
      if (metadata !== undefined) e.metadata = metadata;
      if (m.contentType !== undefined) e.contentType = m.contentType;
      events.push(e);
      fresh.push(i);
    }
    if (events.length > 0) {
      const max = q.settings.maxLength;
      const waiting = q.waiting + d.pendingSends + d.unapplied;
      if (max !== null && q.settings.overflow === 'reject' && waiting + events.length > max) {
        q.counters.rejected += events.length;
        throw new QueueFullError(name, waiting, max);
      }
      if (this.#totalMsgs + events.length > this.#limits.queueMessagesMax) {
        throw new OverloadedError(`the queues hold ${this.#totalMsgs} messages not yet acked (queueMessagesMax ${this.#limits.queueMessagesMax}); retry when consumers catch up`);
      }
      // Claim the ids first, so a concurrent send of the same id waits for this one.
      let settle!: (p: number[]) => void;
      let fail!: (e: unknown) => void;
      const pending = new Promise<number[]>((res, rej) => ((settle = res), (fail = rej)));
      pending.catch(() => undefined);
      const claimed: Array<[string, number]> = []; // id key, message index
      if (dedup) {
        for (let k = 0; k < fresh.length; k++) {
          if (messages[fresh[k]!]!.id === undefined) continue;
          const key = keys[k]!;
          const at = fresh[k]!;
          d.dedup.claim(key, { pending, index: at });
          claimed.push([key, at]);
        }
      }
      d.pendingSends += events.length;
      try {
        const r = await this.#host.appendSystem(queueStream(name), events);
        for (let k = 0; k < fresh.length; k++) positions[fresh[k]!] = r.positions[k]!;
        for (const [key, at] of claimed) d.dedup.release(key, positions[at]!, now);
        settle(positions);
        q.counters.sent += events.length;
        // Until the follower reads them back they are in no count of the queue's own.
        if (r.positions[r.positions.length - 1]! > this.#applied) d.unapplied += events.length;
      } catch (err) {
        for (const [key] of claimed) d.dedup.release(key, undefined, now);
        fail(err);
        throw err;
      } finally {
        d.pendingSends -= events.length;
      }
    }
    await Promise.all(dupWaits);
    return { ids, positions, duplicates: messages.length - events.length };
  }

  #remember(d: Def, idKey: string, position: number, at: number): void {
    if (at < this.#clock.now() - d.state.settings.dedupWindowMs) return;
    d.dedup.remember(idKey, position, at);
  }

  async cancel(name: string, messageId: string): Promise<boolean> {
    this.#checkOpen();
    checkQueueName(name);
    if (!isUuid(messageId)) throw new InvalidArgumentError(`message id must be a UUID, got '${String(messageId).slice(0, 40)}'`);
    const d = this.#def(name);
    // The message may be durable but not yet read by the follower.
    await this.#waitApplied(this.#host.head);
    const m = d.state.byId(idKeyOf(messageId));
    if (m === undefined || (m.state !== READY && m.state !== DELAYED)) return false;
    this.#settle(d, m, OUTCOME.cancelled);
    await this.#flushOps(d);
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Delivering

  consume(name: string, options?: ConsumeOptions): Consumer {
    return this.consumeAs(name, options, undefined);
  }

  /** A consumer whose leases belong to `owner` (a connection), or to itself when undefined. */
  consumeAs(name: string, options: ConsumeOptions | undefined, owner: object | undefined): ConsumerImpl {
    this.#checkOpen();
    checkQueueName(name);
    if (options !== undefined && (typeof options !== 'object' || options === null)) throw new InvalidArgumentError('consume options must be an object { prefetch? }');
    for (const k of Object.keys(options ?? {})) if (k !== 'prefetch') throw new InvalidArgumentError(`unknown consume option '${k}'; known: prefetch`);
    const prefetch = options?.prefetch ?? 100;
    if (!Number.isSafeInteger(prefetch) || prefetch < 1 || prefetch > this.#limits.queuePrefetchMax) {
      throw new InvalidArgumentError(`prefetch must be an integer from 1 to ${this.#limits.queuePrefetchMax}, got ${String(prefetch)}`);
    }
    const c = new ConsumerImpl(this, name, prefetch, owner);
    const attach = (d: Def): void => {
      if (c.closed) return;
      c.attach(d);
      d.consumers.push(c);
      this.#scheduleDispatch(d);
    };
    const d = this.#defs.get(name);
    if (d !== undefined) attach(d);
    else if (!this.#autoCreate) throw new QueueNotFoundError(name);
    else this.#defOrCreate(name).then(attach, (err: unknown) => c.end(err));
    return c;
  }

  async receive(name: string, options?: ReceiveOptions): Promise<Delivery[]> {
    return this.receiveAs(name, options, undefined);
  }

  /** Pull receive; leases belong to `holder` (released when it goes) or to nobody. */
  async receiveAs(name: string, options: ReceiveOptions | undefined, holder: LeaseGroup | undefined, signal?: AbortSignal): Promise<Delivery[]> {
    this.#checkOpen();
    if (options !== undefined && (typeof options !== 'object' || options === null)) throw new InvalidArgumentError('receive options must be an object { max?, waitMs? }');
    for (const k of Object.keys(options ?? {})) if (k !== 'max' && k !== 'waitMs' && k !== 'detached') throw new InvalidArgumentError(`unknown receive option '${k}'; known: max, waitMs, detached`);
    const max = options?.max ?? 1;
    const waitMs = options?.waitMs ?? 0;
    if (!Number.isSafeInteger(max) || max < 1 || max > this.#limits.queueBatchMax) throw new InvalidArgumentError(`max must be an integer from 1 to ${this.#limits.queueBatchMax}, got ${String(max)}`);
    if (!Number.isSafeInteger(waitMs) || waitMs < 0 || waitMs > this.#limits.queueReceiveWaitMsMax) {
      throw new InvalidArgumentError(`waitMs must be an integer from 0 to ${this.#limits.queueReceiveWaitMsMax}, got ${String(waitMs)}`);
    }
    const d = await this.#defOrCreate(name);
    // What was sent before this call is in the queue by now (read your own sends).
    if (this.#follower !== undefined) await this.#waitApplied(this.#host.head);
    const taken: Msg[] = [];
    const group = holder;
    let resolveWait!: () => void;
    const waited = new Promise<void>((r) => (resolveWait = r));
    const w: PullWaiter = { group, max, taken, done: resolveWait };
    this.#fill(d, w);
    if (taken.length === 0 && waitMs > 0 && signal?.aborted !== true) {
      d.pulls.push(w);
      const timer = this.#clock.setTimer(resolveWait, waitMs);
      // A caller that goes away (an HTTP client, a connection) stops waiting: nothing is leased to it.
      signal?.addEventListener('abort', resolveWait, { once: true });
      await waited;
      signal?.removeEventListener('abort', resolveWait);
      this.#clock.clearTimer(timer);
      const i = d.pulls.indexOf(w);
      if (i >= 0) d.pulls.splice(i, 1);
    }
    if (signal?.aborted === true && taken.length > 0) {
      // Leased after the caller left: give them back without counting a delivery.
      for (const m of taken) if (m.state === LEASED) d.state.unlease(m);
      return [];
    }
    if (taken.length === 0) return [];
    return this.#materialize(d, taken, group?.owner);
  }

  /** Leases ready messages to a pull waiter, up to its max. */
  #fill(d: Def, w: PullWaiter): void {
    const q = d.state;
    while (w.taken.length < w.max) {
      const m = q.takeReady();
      if (m === undefined) break;
      q.lease(m, w.group, this.#receipt(m), q.settings.leaseMs);
      w.taken.push(m);
    }
  }

  #receipt(m: Msg): string {
    return `${m.position.toString(36)}.${(m.deliveries + 1).toString(36)}.${(this.#leaseSeq++).toString(36)}`;
  }

  #scheduleDispatch(d: Def): void {
    if (d.dispatchScheduled || !d.state.live) return;
    d.dispatchScheduled = true;
    queueMicrotask(() => {
      d.dispatchScheduled = false;
      this.#dispatch(d);
    });
  }

  /** Hands ready messages to waiting pulls first, then to consumers with room, round-robin. */
  #dispatch(d: Def): void {
    if (this.#closed || this.#defs.get(d.info.name) !== d) return;
    const q = d.state;
    while (d.pulls.length > 0 && q.hasReady) {
      const w = d.pulls.shift()!;
      this.#fill(d, w);
      if (w.taken.length > 0) w.done();
      else d.pulls.unshift(w);
    }
    const cs = d.consumers;
    if (cs.length === 0 || !q.hasReady) return;
    const batches = new Map<ConsumerImpl, Msg[]>();
    let idle = 0;
    while (idle < cs.length) {
      const c = cs[d.rr++ % cs.length]!;
      if (c.capacity <= 0) {
        idle++;
        continue;
      }
      const m = q.takeReady();
      if (m === undefined) break;
      idle = 0;
      q.lease(m, c, this.#receipt(m), q.settings.leaseMs);
      let b = batches.get(c);
      if (b === undefined) batches.set(c, (b = []));
      b.push(m);
    }
    for (const [c, msgs] of batches) c.push(this.#materialize(d, msgs, c.owner));
  }

  /** Deliveries for leased messages: their bytes from the cache or the log. */
  #materialize(d: Def, msgs: Msg[], owner: object | undefined): QueueDelivery[] {
    const events: Array<RecordedEvent | undefined> = new Array(msgs.length);
    const missing: number[] = [];
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i]!;
      if (m.cached !== undefined) events[i] = this.#host.decodeFrame(m.cached, 0);
      else missing.push(i);
    }
    if (missing.length > 0) {
      const read = this.#host.readFramesAt(missing.map((i) => msgs[i]!));
      for (let k = 0; k < missing.length; k++) events[missing[k]!] = read[k];
    }
    const name = d.info.name;
    const settle: SettleLease = (receipt, kind, arg) =>
      kind === 'ack' ? this.ackAs(name, receipt, owner) : kind === 'nack' ? this.nackAs(name, receipt, arg as NackOptions | undefined, owner) : this.extendAs(name, receipt, arg as number | undefined, owner);
    const out: QueueDelivery[] = new Array(msgs.length);
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i]!;
      out[i] = new QueueDelivery(name, events[i]!, { receipt: m.lease!.receipt, deliveryCount: m.deliveries, firstDeliveredAt: m.firstDeliveredAt, leaseExpiresAt: m.lease!.expiresAt, groupKey: m.group }, settle);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Settling

  async ack(name: string, receipts: string | string[]): Promise<void> {
    return this.ackAs(name, receipts, undefined);
  }

  async ackAs(name: string, receipts: string | string[], owner: object | undefined): Promise<void> {
    this.#checkOpen();
    checkQueueName(name);
    const d = this.#def(name);
    const msgs = this.#leased(d, receipts, owner);
    for (const m of msgs) this.#settle(d, m, OUTCOME.acked);
    await this.#flushOps(d);
  }

  async nack(name: string, receipts: string | string[], options?: NackOptions): Promise<void> {
    return this.nackAs(name, receipts, options, undefined);
  }

  async nackAs(name: string, receipts: string | string[], options: NackOptions | undefined, owner: object | undefined): Promise<void> {
    this.#checkOpen();
    checkQueueName(name);
    const o = checkNackOptions(options, this.#limits);
    const d = this.#def(name);
    const msgs = this.#leased(d, receipts, owner);
    for (const m of msgs) d.state.fail(m, OUTCOME.nacked, o.delayMs, o.deadLetter === true, o.reason);
    await this.#flushOps(d);
  }

  async extend(name: string, receipts: string | string[], leaseMs?: number): Promise<void> {
    return this.extendAs(name, receipts, leaseMs, undefined);
  }

  async extendAs(name: string, receipts: string | string[], leaseMs: number | undefined, owner: object | undefined): Promise<void> {
    this.#checkOpen();
    checkQueueName(name);
    const d = this.#def(name);
    const ms = leaseMs ?? d.state.settings.leaseMs;
    if (!Number.isSafeInteger(ms) || ms < 1 || ms > this.#limits.queueLeaseMsMax) throw new InvalidArgumentError(`leaseMs must be an integer from 1 to ${this.#limits.queueLeaseMsMax}, got ${String(ms)}`);
    for (const m of this.#leased(d, receipts, owner)) d.state.extend(m, ms);
  }

  /** The leased messages the receipts name; throws (changing nothing) if any is not valid. */
  #leased(d: Def, receipts: string | string[], owner: object | undefined): Msg[] {
    const list = typeof receipts === 'string' ? [receipts] : receipts;
    if (!Array.isArray(list) || list.length === 0) throw new InvalidArgumentError('receipts must be a receipt string or a non-empty array of them');
    if (list.length > this.#limits.queueBatchMax) throw new LimitExceededError('queueBatchMax', list.length, this.#limits.queueBatchMax);
    const out: Msg[] = [];
    const seen = new Set<string>();
    for (const r of list) {
      if (typeof r !== 'string' || r.length > 64) throw new ReceiptInvalidError('a receipt must be a string as given with a delivery', { reason: 'malformed' });
      const parts = r.split('.');
      const position = parts.length === 3 ? parseInt(parts[0]!, 36) : NaN;
      if (!Number.isSafeInteger(position) || position <= 0) throw new ReceiptInvalidError(`'${r.slice(0, 64)}' is not a receipt`, { receipt: r.slice(0, 64), reason: 'malformed' });
      if (seen.has(r)) throw new ReceiptInvalidError(`receipt ${r} appears twice`, { receipt: r, reason: 'repeated' });
      seen.add(r);
      const m = d.state.msgs.get(position);
      if (m === undefined) throw new ReceiptInvalidError(`receipt ${r} names no message in flight on queue '${d.info.name}' (already acked, purged, or never delivered)`, { receipt: r, queue: d.info.name, reason: 'unknown' });
      if (m.state !== LEASED || m.lease?.receipt !== r) {
        throw new ReceiptInvalidError(`the lease of receipt ${r} ran out or was released; the message went back to queue '${d.info.name}'`, { receipt: r, queue: d.info.name, reason: 'expired' });
      }
      const holderOwner = m.lease.holder?.owner;
      if (holderOwner !== undefined && holderOwner !== owner) {
        throw new LeaseNotOwnedError(`receipt ${r} is held by another consumer; only it may settle the lease`, { receipt: r, queue: d.info.name });
      }
      out.push(m);
    }
    return out;
  }

  #settle(d: Def, m: Msg, outcome: number): void {
    if (m.cached !== undefined) this.#cacheBytes -= m.bytes;
    if (outcome === OUTCOME.dropped) d.state.counters.dropped++;
    d.settling.push(m);
    d.state.settle(m, outcome);
    this.#totalMsgs--;
    d.dirty = true;
  }

  /** Sends a message to the queue's dead-letter queue, with why and its history; then settles it. */
  async #deadLetter(d: Def, m: Msg, reason: string, park: boolean): Promise<void> {
    const q = d.state;
    const dlq = q.settings.deadLetterQueue;
    const group = m.group;
    try {
      const target = dlq === null ? undefined : this.#defs.get(dlq);
      if (target !== undefined) {
        const e = m.cached !== undefined ? this.#host.decodeFrame(m.cached, 0) : this.#host.readFramesAt([m])[0]!;
        const metadata: Record<string, unknown> = { ...e.metadata };
        delete metadata.$deliverAt;
        delete metadata.$redrive;
        if (group !== undefined) metadata.$group = group;
        metadata.$deadLetter = {
          queue: d.info.name,
          position: m.position,
          messageId: e.id,
          stream: e.stream,
          reason,
          deliveries: m.deliveries,
          firstDeliveredAt: m.firstDeliveredAt,
          at: this.#clock.now(),
          attempts: (m.attempts ?? []).map(([at, outcome]) => ({ at, outcome: OUTCOME_NAMES[outcome] })),
        };
        // A fixed id: if a crash repeats this step, the store recognises the append as a retry.
        const input: EventInput = { id: derivedId(`dead:${d.info.createdPosition}:${m.position}`), type: e.type, data: e.rawData, contentType: e.contentType, metadata };
        await this.#host.appendSystem(queueStream(dlq!), [input]);
        q.counters.deadLettered++;
      } else if (dlq !== null) {
        this.#warn('dead-letter queue missing; message dropped', { queue: d.info.name, deadLetterQueue: dlq, position: m.position });
      }
      if (this.#defs.get(d.info.name) !== d || m.state !== SETTLING) return;
      if (park && group !== undefined && q.fifo && q.settings.poison === 'park') q.park(group);
      this.#settle(d, m, target !== undefined ? OUTCOME.deadLettered : OUTCOME.dropped);
      await this.#flushOps(d);
    } catch (err) {
      if (this.#closed) return;
      this.#warn('dead-lettering failed; the message stays in its queue', { queue: d.info.name, position: m.position, error: (err as Error).message });
    }
  }

  async redrive(name: string, options?: RedriveOptions): Promise<number> {
    this.#checkOpen();
    checkQueueName(name);
    const o = checkRedriveOptions(options, this.#limits);
    const d = this.#def(name);
    if (o.to !== undefined) this.#def(o.to);
    const ids = o.ids === undefined ? undefined : new Set(o.ids.map(idKeyOf));
    let moved = 0;
    const limit = o.count ?? Infinity;
    const batch = Math.min(1000, o.ratePerSec ?? 1000);
    while (moved < limit) {
      const started = this.#clock.now();
      const picked: Msg[] = [];
      for (const m of d.state.msgs.values()) {
        if (picked.length >= Math.min(batch, limit - moved)) break;
        if (m.state !== READY && m.state !== DELAYED) continue;
        if (ids !== undefined && !ids.has(m.idKey)) continue;
        picked.push(m);
      }
      if (picked.length === 0) break;
      const events = this.#host.readFramesAt(picked);
      const byTarget = new Map<string, Array<{ m: Msg; input: EventInput }>>();
      for (let i = 0; i < picked.length; i++) {
        const e = events[i]!;
        const m = picked[i]!;
        const meta: Record<string, unknown> = { ...e.metadata };
        const origin = meta.$deadLetter as { queue?: string; position?: number } | undefined;
        const target = o.to ?? origin?.queue;
        if (target === undefined || !this.#defs.has(target)) {
          throw new InvalidArgumentError(`message ${e.id} has no queue to go back to${target === undefined ? '' : ` ('${target}' does not exist)`}; name one with 'to'`, { messageId: e.id });
        }
        delete meta.$deadLetter;
        delete meta.$deliverAt;
        meta.$redrive = { from: name, position: origin?.position ?? m.position };
        const input: EventInput = { id: derivedId(`redrive:${d.info.createdPosition}:${m.position}`), type: e.type, data: e.rawData, contentType: e.contentType, metadata: meta };
        let list = byTarget.get(target);
        if (list === undefined) byTarget.set(target, (list = []));
        list.push({ m, input });
      }
      for (const [target, list] of byTarget) {
        await this.#host.appendSystem(queueStream(target), list.map((x) => x.input));
        for (const { m } of list) if (m.state === READY || m.state === DELAYED) this.#settle(d, m, OUTCOME.redriven);
        moved += list.length;
      }
      await this.#flushOps(d);
      if (o.ratePerSec !== undefined && moved < limit) {
        const wait = started + 1000 * (picked.length / o.ratePerSec) - this.#clock.now();
        if (wait > 0) await new Promise<void>((r) => this.#clock.setTimer(r, wait));
      }
    }
    return moved;
  }

  async unpark(name: string, groupKey: string): Promise<boolean> {
    this.#checkOpen();
    checkQueueName(name);
    if (typeof groupKey !== 'string') throw new InvalidArgumentError('groupKey must be a string');
    const d = this.#def(name);
    const r = d.state.unpark(groupKey);
    await this.#flushOps(d);
    return r;
  }

  /** Releases leases (a consumer closed, a connection dropped): back to the queue after back-off. */
  release(queue: string, msgs: Iterable<Msg>): void {
    const d = this.#defs.get(queue);
    if (d === undefined) return;
    for (const m of [...msgs]) if (m.state === LEASED) d.state.fail(m, OUTCOME.released);
  }

  removeConsumer(c: ConsumerImpl, d: Def | undefined): void {
    if (d === undefined) return;
    const i = d.consumers.indexOf(c);
    if (i >= 0) d.consumers.splice(i, 1);
    this.release(d.info.name, c.leases);
  }

  scheduleDispatchFor(d: Def | undefined): void {
    if (d !== undefined) this.#scheduleDispatch(d);
  }

  // ---------------------------------------------------------------------------------------------
  // Ops: delivery records to the log

  #opsAdded(d: Def): void {
    d.dirty = true;
    if (!d.flushing && d.ops.count === 1) setImmediate(() => void this.#flushOps(d).catch(() => undefined));
  }

  /** Resolves once every op recorded so far is durable. */
  #flushOps(d: Def): Promise<void> {
    if (d.ops.count === 0 && !d.flushing) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => d.opWaiters.push({ resolve, reject }));
    if (!d.flushing) void this.#runFlush(d);
    return p;
  }

  async #runFlush(d: Def): Promise<void> {
    d.flushing = true;
    try {
      while (d.ops.count > 0 || d.opWaiters.length > 0) {
        const ops = d.ops.take(OPS_RECORD_BYTES_MAX);
        const waiters = d.opWaiters.splice(0);
        const settled = d.settling.splice(0);
        d.flushingSettled = settled;
        try {
          if (ops.length > 0) {
            const events: EventInput[] = ops.map((data) => ({ type: OPS_EVENT_TYPE, data, contentType: 'application/octet-stream' }));
            for (let i = 0; i < events.length; i += 1000) await this.#host.appendSystem(opsStream(d.info.name), events.slice(i, i + 1000));
          }
          d.flushingSettled = [];
          for (const w of waiters) w.resolve();
        } catch (err) {
          d.flushingSettled = [];
          d.settling.unshift(...settled);
          d.ops.unshift(ops);
          d.dirty = true;
          for (const w of waiters) w.reject(err);
          if (this.#closed || err instanceof StoreClosedError) return;
          this.#warn('writing queue delivery records failed', { queue: d.info.name, error: (err as Error).message });
          return;
        }
      }
    } finally {
      d.flushing = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Snapshots

  #snapshotFile(name: string): string {
    return path.join(this.#snapDir, `${createHash('sha256').update(name).digest('hex').slice(0, 32)}.snap`);
  }

  #loadSnapshot(d: Def): void {
    const file = this.#snapshotFile(d.info.name);
    let snap: Snapshot;
    try {
      snap = packr.unpack(fs.readFileSync(file)) as Snapshot;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#warn('queue snapshot unreadable; rebuilding the queue from the log', { queue: d.info.name, file, error: (err as Error).message });
      return;
    }
    if (snap.v !== SNAPSHOT_VERSION || snap.logId !== this.#host.logId || snap.name !== d.info.name || snap.createdPosition !== d.info.createdPosition || snap.floor !== d.floor || snap.applied > this.#host.head) {
      this.#warn('queue snapshot does not match the log; rebuilding the queue from the log', { queue: d.info.name, file });
      return;
    }
    const q = d.state;
    // Columns (see #writeSnapshot): 8 numbers and a 16-byte id per message. Checked before any
    // is used, so a damaged file changes nothing (the queue is then rebuilt from the log).
    const n = snap.count;
    let num: Float64Array;
    let dnum: Float64Array;
    let attempts: Map<number, Array<[number, number]>>;
    const ids = snap.ids;
    try {
      if (!Number.isSafeInteger(n) || !(ids instanceof Uint8Array) || ids.length < n * 16) throw new Error('message ids are missing');
      if (!(snap.dedupIds instanceof Uint8Array) || snap.dedupIds.length < snap.dedupCount * 16) throw new Error('dedup ids are missing');
      if (snap.groups !== null && (!Array.isArray(snap.groups) || snap.groups.length !== n)) throw new Error('groups do not match the messages');
      num = f64s(snap.numbers, n * SNAPSHOT_NUMBERS);
      dnum = f64s(snap.dedupNumbers, snap.dedupCount * 2);
      attempts = new Map<number, Array<[number, number]>>(snap.attempts.map(([i, a]) => [i, a]));
    } catch (err) {
      this.#warn('queue snapshot damaged; rebuilding the queue from the log', { queue: d.info.name, file, error: (err as Error).message });
      return;
    }
    for (let i = 0, o = 0; i < n; i++, o += SNAPSHOT_NUMBERS) {
      const m = new Msg(num[o]!, ids.toString('latin1', i * 16, i * 16 + 16), snap.groups?.[i] ?? undefined, num[o + 1]!, num[o + 2]!, num[o + 3]!, num[o + 4]!, num[o + 5]!);
      m.deliveries = num[o + 6]!;
      m.firstDeliveredAt = num[o + 7]!;
      m.attempts = attempts.get(i);
      q.enqueue(m);
    }
    this.#totalMsgs += n;
    for (const g of snap.parked) q.applyOp({ op: OP.PARK, position: 0, a: 0, b: 0, group: g });
    const dn = snap.dedupCount;
    for (let i = 0; i < dn; i++) d.dedup.remember(snap.dedupIds.toString('latin1', i * 16, i * 16 + 16), dnum[2 * i]!, dnum[2 * i + 1]!);
    q.counters.deadLettered = snap.deadLettered;
    d.snapshotAt = snap.applied;
    d.dirty = false;
  }

  /**
   * Writes the snapshot of every queue that changed, and of every idle one whose snapshot lags
   * the log by more than SNAPSHOT_LAG_MAX positions (so a restart never replays far for it).
   */
  async #snapshotAll(force: boolean): Promise<void> {
    if (this.#follower === undefined || this.#closed !== force) return;
    while (this.#snapshotting !== undefined) await this.#snapshotting;
    const run = (async () => {
      fs.mkdirSync(this.#snapDir, { recursive: true });
      for (const d of [...this.#defs.values()]) {
        if (!d.state.live || this.#defs.get(d.info.name) !== d) continue;
        if (!d.dirty && this.#applied - d.snapshotAt < SNAPSHOT_LAG_MAX) continue;
        try {
          await this.#writeSnapshot(d);
        } catch (err) {
          d.dirty = true;
          this.#warn('writing a queue snapshot failed; will retry', { queue: d.info.name, error: (err as Error).message });
        }
      }
    })();
    this.#snapshotting = run;
    try {
      await run;
    } finally {
      this.#snapshotting = undefined;
    }
  }

  #snapshotting: Promise<void> | undefined;

  async #writeSnapshot(d: Def): Promise<void> {
    d.dirty = false;
    const q = d.state;
    const all = [...q.msgs.values(), ...d.settling, ...d.flushingSettled].sort((a, b) => a.position - b.position);
    const n = all.length;
    const numbers = new Float64Array(n * SNAPSHOT_NUMBERS);
    const ids = Buffer.allocUnsafe(n * 16);
    let groups: Array<string | null> | null = null;
    const attempts: Array<[number, Array<[number, number]>]> = [];
    for (let i = 0, o = 0; i < n; i++, o += SNAPSHOT_NUMBERS) {
      const m = all[i]!;
      numbers[o] = m.position;
      numbers[o + 1] = m.base;
      numbers[o + 2] = m.offset;
      numbers[o + 3] = m.bytes;
      numbers[o + 4] = m.sentAt;
      numbers[o + 5] = m.visibleAt;
      numbers[o + 6] = m.deliveries;
      numbers[o + 7] = m.firstDeliveredAt;
      ids.write(m.idKey, i * 16, 16, 'latin1');
      if (m.group !== undefined) (groups ??= new Array<string | null>(n).fill(null))[i] = m.group;
      if (m.attempts !== undefined) attempts.push([i, m.attempts]);
    }
    const dedupKeys: string[] = [];
    const dedupNums: number[] = [];
    for (const [k, position, at] of d.dedup.entries()) {
      dedupKeys.push(k);
      dedupNums.push(position, at);
    }
    const dedupIds = Buffer.allocUnsafe(dedupKeys.length * 16);
    for (let i = 0; i < dedupKeys.length; i++) dedupIds.write(dedupKeys[i]!, i * 16, 16, 'latin1');
    const parked: string[] = [];
    for (const [g, grp] of q.groups) if (grp.parked) parked.push(g);
    const snap: Snapshot = {
      v: SNAPSHOT_VERSION,
      logId: this.#host.logId,
      name: d.info.name,
      createdPosition: d.info.createdPosition,
      floor: d.floor,
      applied: this.#applied,
      deadLettered: q.counters.deadLettered,
      parked,
      count: n,
      numbers: Buffer.from(numbers.buffer, numbers.byteOffset, numbers.byteLength),
      ids,
      groups,
      attempts,
      dedupCount: dedupKeys.length,
      dedupIds,
      dedupNumbers: Buffer.from(new Float64Array(dedupNums).buffer),
    };
    const file = this.#snapshotFile(d.info.name);
    const tmp = `${file}.tmp`;
    const fh = await fs.promises.open(tmp, 'w');
    try {
      await fh.writeFile(packr.pack(snap));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
    d.snapshotAt = snap.applied;
  }

  // ---------------------------------------------------------------------------------------------
  // Stats

  async stats(name: string): Promise<QueueStats> {
    this.#checkOpen();
    checkQueueName(name);
    const d = this.#def(name);
    const q = d.state;
    const c = q.counters;
    const now = this.#clock.now();
    const oldest = q.oldestSentAt();
    const first = d.samples[0];
    const span = first === undefined ? 0 : (Date.now() - first.at) / 1000;
    const rate = (k: 'sent' | 'acked' | 'nacked' | 'redelivered'): number => (first === undefined || span <= 0 ? 0 : Math.round(((c[k] - first[k]) / span) * 10) / 10);
    return {
      name,
      depth: q.msgs.size,
      ready: q.count[READY]!,
      inFlight: q.count[LEASED]!,
      delayed: q.count[DELAYED]!,
      parkedGroups: q.parkedGroups,
      deadLettered: c.deadLettered,
      oldestUnackedAgeMs: oldest === undefined ? 0 : Math.max(0, now - oldest),
      consumers: d.consumers.length,
      rates: { send: rate('sent'), ack: rate('acked'), nack: rate('nacked'), redelivery: rate('redelivered') },
      totals: { sent: c.sent, acked: c.acked, nacked: c.nacked, redelivered: c.redelivered, expired: c.expired, dropped: c.dropped, rejected: c.rejected },
    };
  }

  #sample(): void {
    const at = Date.now();
    for (const d of this.#defs.values()) {
      const c = d.state.counters;
      d.samples.push({ at, sent: c.sent, acked: c.acked, nacked: c.nacked, redelivered: c.redelivered });
      if (d.samples.length > 11) d.samples.shift();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Closing

  #checkOpen(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  #stopTimers(): void {
    clearInterval(this.#snapshotTimer);
    clearInterval(this.#sampleTimer);
  }

  /** Ends consumers, writes pending delivery records and snapshots. The store closes after. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#stopTimers();
    for (const d of this.#defs.values()) {
      for (const c of [...d.consumers]) c.end(new StoreClosedError());
      for (const p of d.pulls.splice(0)) p.done();
      d.state.stop();
    }
    await Promise.all([...this.#defs.values()].map((d) => this.#flushOps(d).catch(() => undefined)));
    this.#closed = true;
    this.#sub.closed = true;
    this.#host.wakeFollowers();
    await this.#follower;
    await this.#snapshotAll(true);
  }
}

interface Snapshot {
  v: number;
  logId: string;
  name: string;
  createdPosition: number;
  floor: number;
  applied: number;
  deadLettered: number;
  parked: string[];
  /** Messages not yet settled, by position: SNAPSHOT_NUMBERS float64s each (position, segment, offset, frame bytes, sent at, visible at, deliveries, first delivered at). */
  count: number;
  numbers: Buffer;
  /** Their ids, 16 bytes each. */
  ids: Buffer;
  /** FIFO: each message's group (null: none); null when no message has one. */
  groups: Array<string | null> | null;
  /** [message index, failed deliveries] for the messages that have some. */
  attempts: Array<[number, Array<[number, number]>]>;
  /** Dedup ids (16 bytes each) with their position and send time (two float64s each). */
  dedupCount: number;
  dedupIds: Buffer;
  dedupNumbers: Buffer;
}

const SNAPSHOT_NUMBERS = 8;

/** `count` float64s from bytes that may not be 8-byte aligned. */
function f64s(bytes: Uint8Array, count: number): Float64Array {
  if (bytes.byteLength < count * 8) throw new Error('snapshot columns are shorter than their count');
  const aligned = new Uint8Array(count * 8);
  aligned.set(bytes.subarray(0, count * 8));
  return new Float64Array(aligned.buffer);
}

/** Leases of one connection's pull receives: released together when it goes. */
export class LeaseGroup implements Holder {
  readonly owner: object;
  readonly leases = new Set<Msg>();
  constructor(owner: object) {
    this.owner = owner;
  }
  freed(): void {}
}

/** A push consumer: deliveries buffered up to its prefetch, leases released when it closes. */
export class ConsumerImpl implements Consumer, Holder {
  readonly queue: string;
  readonly owner: object;
  readonly leases = new Set<Msg>();
  readonly prefetch: number;
  closed = false;
  #manager: QueueManager;
  #def: Def | undefined;
  #buffer: QueueDelivery[] = [];
  #waiter: (() => void) | undefined;
  #error: unknown;

  constructor(manager: QueueManager, queue: string, prefetch: number, owner: object | undefined) {
    this.#manager = manager;
    this.queue = queue;
    this.prefetch = prefetch;
    this.owner = owner ?? this;
  }

  attach(d: Def): void {
    this.#def = d;
  }

  get capacity(): number {
    return this.closed ? 0 : this.prefetch - this.leases.size;
  }

  freed(): void {
    if (!this.closed) this.#manager.scheduleDispatchFor(this.#def);
  }

  push(deliveries: QueueDelivery[]): void {
    for (const d of deliveries) this.#buffer.push(d);
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** Everything buffered, waiting for at least one; undefined once closed. */
  async takeBatch(): Promise<QueueDelivery[] | undefined> {
    for (;;) {
      if (this.#buffer.length > 0) return this.#buffer.splice(0);
      if (this.#error !== undefined) {
        const e = this.#error;
        this.#error = undefined;
        throw e;
      }
      if (this.closed) return undefined;
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return {
      next: async () => {
        for (;;) {
          const d = this.#buffer.shift();
          if (d !== undefined) return { done: false, value: d };
          if (this.#error !== undefined) {
            const e = this.#error;
            this.#error = undefined;
            throw e;
          }
          if (this.closed) return { done: true, value: undefined };
          await new Promise<void>((r) => (this.#waiter = r));
        }
      },
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  ack(receipts: string | string[]): Promise<void> {
    return this.#manager.ackAs(this.queue, receipts, this.owner);
  }
  nack(receipts: string | string[], options?: NackOptions): Promise<void> {
    return this.#manager.nackAs(this.queue, receipts, options, this.owner);
  }
  extend(receipts: string | string[], leaseMs?: number): Promise<void> {
    return this.#manager.extendAs(this.queue, receipts, leaseMs, this.owner);
  }

  /** Ends with an error (queue deleted, store closing): leases go back. */
  end(err: unknown): void {
    if (this.closed) return;
    if (!(err instanceof StoreClosedError)) this.#error = err;
    this.#shut();
  }

  async close(): Promise<void> {
    this.#shut();
  }

  #shut(): void {
    if (this.closed) return;
    this.closed = true;
    this.#buffer = [];
    this.#manager.removeConsumer(this, this.#def);
    this.#wake();
  }
}

// -----------------------------------------------------------------------------------------------

function bindFromOf(s: QueueSettings, recordPosition: number): number {
  if (s.binding === null) return Infinity;
  const f = s.binding.from;
  return f === 'start' ? 1 : f === undefined ? recordPosition + 1 : f;
}

function matchesFrame(f: CompiledFilter, buf: Buffer, off: number, stream: string): boolean {
  if (f.types !== undefined && !f.types.has(frame.type(buf, off))) return false;
  if (f.prefixes === undefined && f.categories === undefined) return true;
  return matchesStream(f, stream);
}

const utf8 = new TextDecoder();

/** The metadata JSON of the frame at `off`, or undefined when it has none. */
function metadataOf(buf: Buffer, off: number): Record<string, unknown> | undefined {
  const mLen = u32(buf, off + 55);
  if (mLen === 0) return undefined;
  const m = off + RECORD_HEADER_BYTES + u16(buf, off + 50) + u16(buf, off + 52) + buf[off + 54]!;
  try {
    return JSON.parse(utf8.decode(buf.subarray(m, m + mLen))) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function idKeyOf(uuid: string): string {
  const b = Buffer.allocUnsafe(16);
  uuidToBytes(uuid.toLowerCase(), b, 0);
  return b.toString('latin1');
}

/** A UUID (v8 layout) derived from a string: the same step always gets the same id. */
function derivedId(s: string): string {
  const h = createHash('sha256').update(s).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  return uuidFromBytes(h, 0);
}

const MESSAGE_KEYS = new Set(['body', 'contentType', 'headers', 'id', 'type', 'groupKey', 'delayMs', 'deliverAt']);

function checkMessage(raw: unknown, i: number, fifo: boolean, now: number, limits: StoreLimits): MessageInput {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError(`message ${i} must be an object { body?, headers?, id?, ... }`, { index: i });
  const m = raw as MessageInput;
  for (const k of Object.keys(m)) if (!MESSAGE_KEYS.has(k)) throw new InvalidArgumentError(`message ${i}: unknown field '${k}'; known: ${[...MESSAGE_KEYS].join(', ')}`, { index: i });
  if (m.id !== undefined && !isUuid(m.id)) throw new InvalidArgumentError(`message ${i}: id must be a UUID`, { index: i });
  if (m.type !== undefined && (typeof m.type !== 'string' || m.type.length === 0)) throw new InvalidArgumentError(`message ${i}: type must be a non-empty string`, { index: i });
  if (m.headers !== undefined) {
    if (typeof m.headers !== 'object' || m.headers === null || Array.isArray(m.headers)) throw new InvalidArgumentError(`message ${i}: headers must be an object of strings`, { index: i });
    for (const [k, v] of Object.entries(m.headers)) {
      if (typeof v !== 'string') throw new InvalidArgumentError(`message ${i}: header '${k}' must be a string`, { index: i });
      if (k.startsWith('$')) throw new InvalidArgumentError(`message ${i}: header names starting with '$' are reserved ('${k}')`, { index: i });
    }
  }
  if (m.groupKey !== undefined) {
    if (typeof m.groupKey !== 'string' || m.groupKey.length > 256) throw new InvalidArgumentError(`message ${i}: groupKey must be a string of at most 256 characters`, { index: i });
    if (!fifo) throw new InvalidArgumentError(`message ${i}: groupKey needs a queue with ordering 'fifo'`, { index: i });
  }
  if (m.delayMs !== undefined && m.deliverAt !== undefined) throw new InvalidArgumentError(`message ${i}: give delayMs or deliverAt, not both`, { index: i });
  if (m.delayMs !== undefined && (!Number.isSafeInteger(m.delayMs) || m.delayMs < 0 || m.delayMs > limits.queueDelayMsMax)) {
    throw new InvalidArgumentError(`message ${i}: delayMs must be an integer from 0 to ${limits.queueDelayMsMax}`, { index: i });
  }
  if (m.deliverAt !== undefined && (!Number.isSafeInteger(m.deliverAt) || m.deliverAt < 0 || m.deliverAt > now + limits.queueDelayMsMax)) {
    throw new InvalidArgumentError(`message ${i}: deliverAt must be a time (ms since the epoch) at most ${limits.queueDelayMsMax} ms from now`, { index: i });
  }
  if (m.delayMs === undefined) return m;
  const out: MessageInput = { ...m, deliverAt: now + m.delayMs };
  delete out.delayMs;
  return out;
}

function checkNackOptions(o: unknown, limits: StoreLimits): NackOptions {
  if (o === undefined) return {};
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError('nack options must be an object { delayMs?, deadLetter?, reason? }');
  const r = o as Record<string, unknown>;
  for (const k of Object.keys(r)) if (k !== 'delayMs' && k !== 'deadLetter' && k !== 'reason') throw new InvalidArgumentError(`unknown nack option '${k}'; known: delayMs, deadLetter, reason`);
  if (r.delayMs !== undefined && (!Number.isSafeInteger(r.delayMs) || (r.delayMs as number) < 0 || (r.delayMs as number) > limits.queueDelayMsMax)) {
    throw new InvalidArgumentError(`delayMs must be an integer from 0 to ${limits.queueDelayMsMax}`);
  }
  if (r.deadLetter !== undefined && typeof r.deadLetter !== 'boolean') throw new InvalidArgumentError('deadLetter must be a boolean');
  if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length > 1024)) throw new InvalidArgumentError('reason must be a string of at most 1,024 characters');
  return r as NackOptions;
}

function checkRedriveOptions(o: unknown, limits: StoreLimits): RedriveOptions {
  if (o === undefined) return {};
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError('redrive options must be an object { to?, count?, ids?, ratePerSec? }');
  const r = o as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!['to', 'count', 'ids', 'ratePerSec'].includes(k)) throw new InvalidArgumentError(`unknown redrive option '${k}'; known: to, count, ids, ratePerSec`);
  if (r.to !== undefined) checkQueueName(r.to);
  if (r.count !== undefined && (!Number.isSafeInteger(r.count) || (r.count as number) < 1)) throw new InvalidArgumentError('count must be a positive integer');
  if (r.ratePerSec !== undefined && (!Number.isSafeInteger(r.ratePerSec) || (r.ratePerSec as number) < 1)) throw new InvalidArgumentError('ratePerSec must be a positive integer');
  if (r.ids !== undefined) {
    if (!Array.isArray(r.ids) || r.ids.length > limits.queueBatchMax || r.ids.some((x) => !isUuid(x))) throw new InvalidArgumentError(`ids must be an array of at most ${limits.queueBatchMax} message ids (UUIDs)`);
  }
  return r as RedriveOptions;
}
