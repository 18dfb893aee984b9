/**
 * Running a projection: from its checkpoint to the head of the log, then live, into one slot of
 * a read-model store; rebuilding it blue-green into a new slot; reporting its status.
 *
 * Reading: catch-up is done with `readAll` passes. A pass started after `headPosition()` said
 * H sees every event up to H, so when it ends the checkpoint can move to H even if the last
 * events were filtered out, and the lag is known exactly. Once close to the head the runner
 * subscribes (`subscribeToAll`) from its checkpoint + 1: no gap, no duplicate. Both come in
 * pages, and a page is applied in a loop with no promise per event (unless a handler is async).
 *
 * Writing: events go into a batch (the store's transaction overlay) which is committed with the
 * new checkpoint when it holds `batchEventsMax` events, when it has been open `batchMs`, when a
 * pass ends, or, live, when no further page comes at once. A handler that throws discards its
 * batch: nothing of it is committed, and the runner stops `faulted` with the event's position.
 * Running it again starts from the checkpoint, that is from the first event of that batch.
 *
 * Only the public EventStore API is used, so the embedded store and the client work alike.
 */
import { EventfulError, InvalidArgumentError, ProjectionConflictError, ProjectionFaultedError } from '../core/errors.js';
import type { EventStore, RecordedEvent, Subscription } from '../core/events.js';
import { DEFAULT_PROJECTION_LIMITS } from '../core/limits.js';
import { applyEvents, compileProjection, handlerFault } from './definition.js';
import type { CompiledProjection, ProjectionDefinition } from './definition.js';
import { DeferredUpdateError, nextSlotId } from './read-model.js';
import type { Batch, Collections, DocumentEntry, ListOptions, ProjectionCatalog, ReadModelStore, SlotInfo, SlotOption } from './read-model.js';

export type ProjectionState = 'catching-up' | 'live' | 'stopped' | 'faulted' | 'rebuilding';

/** The last failure of a projection. */
export interface ProjectionErrorInfo {
  message: string;
  /** The Eventful error code (PROJECTION_FAULTED for a handler's error). */
  code: string;
  /** Position of the event being applied, when an event was. */
  position: number | undefined;
  stream: string | undefined;
  type: string | undefined;
  /** When it happened, ms since the epoch. */
  at: number;
}

export interface RebuildProgress {
  projection: string;
  slot: string;
  version: number;
  /** The new slot's checkpoint. */
  position: number;
  /** The log's head, as last seen. */
  headPosition: number;
  /** Events read from the log (after the store's filter) since the rebuild started. */
  eventsProcessed: number;
  /** Average since the rebuild started. */
  eventsPerSecond: number;
  /** Estimated time to reach the head, from the average rate; undefined until known. */
  etaMs: number | undefined;
  elapsedMs: number;
}

export interface ProjectionStatus {
  name: string;
  version: number;
  state: ProjectionState;
  /** The slot being written (the active one, unless rebuilding). */
  slot: string | undefined;
  /** Checkpoint: position of the last event applied and committed. */
  position: number;
  /** Commit time of that event, ms since the epoch (0: none yet). */
  eventTimestamp: number;
  /** The log's head, as last seen (refreshed every second while running). */
  headPosition: number;
  /** Positions between the checkpoint and the head (0 when live and idle). */
  lagPositions: number;
  /** now - the last applied event's commit time, when behind; 0 when caught up; null when unknown. */
  lagMs: number | null;
  /** Events processed per second, over the last 5 seconds. */
  eventsPerSecond: number;
  /** Events processed since this runner started. */
  eventsProcessed: number;
  /** The last failure, until the projection runs again. */
  error: ProjectionErrorInfo | undefined;
  /** A rebuild in progress. */
  rebuild: RebuildProgress | undefined;
}

export interface ProjectionOptions {
  /** Most events per read-model transaction. @default 5,000 */
  batchEventsMax?: number;
  /** Longest a transaction stays open before it commits, in ms. @default 200 */
  batchMs?: number;
  /**
   * When the active read model was built by an older version, rebuild this version beside it
   * (blue-green) on `run()`. Without it, `run()` fails with PROJECTION_CONFLICT. @default true
   */
  autoRebuild?: boolean;
  /** Called when the projection stops on an error (useful with `start()`). */
  onError?: (error: Error, status: ProjectionStatus) => void;
}

export interface RebuildOptions {
  /** Called with progress about every `progressIntervalMs`, and once at the end. */
  onProgress?: (progress: RebuildProgress) => void;
  /** @default 250 ms */
  progressIntervalMs?: number;
  /** Drop the slot that was active before, once the new one is. @default false */
  dropOld?: boolean;
}

export interface RebuildResult {
  projection: string;
  version: number;
  /** The new slot, active now (unless `switched` is false: the rebuild was stopped). */
  slot: string;
  switched: boolean;
  /** The slot active before; undefined for a first build. */
  previous: string | undefined;
  /** Whether `previous` was dropped. */
  dropped: boolean;
  /** The new slot's checkpoint when it became active. */
  position: number;
  eventsProcessed: number;
  durationMs: number;
  eventsPerSecond: number;
}

const OPTION_KEYS = ['batchEventsMax', 'batchMs', 'autoRebuild', 'onError'];
const REBUILD_KEYS = ['onProgress', 'progressIntervalMs', 'dropOld'];
/** Hard ceilings of the batch options. */
const BATCH_EVENTS_CEILING = 1_000_000;
const BATCH_MS_CEILING = 60_000;
/** Live: wait this long for another page before committing what the batch holds. */
const LIVE_IDLE_MS = 2;
/** Window of the events/s figure. */
const RATE_WINDOW_MS = 5000;
/** Catch-up passes a rebuild makes before it switches even if appends keep coming. */
const REBUILD_PASSES_MAX = 10;

const TIMEOUT: unique symbol = Symbol('timeout');

function raceTimeout<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMEOUT> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<typeof TIMEOUT>((resolve) => {
    timer = setTimeout(resolve, ms, TIMEOUT);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

type Halt = { kind: 'stop' } | { kind: 'switch'; to: SlotInfo };

/** Applies the log to one slot. One per slot being written: the live one, and a rebuild's. */
class Runner {
  position: number;
  eventTimestamp: number;
  /** Highest position known to be seen, filtered-out events included (for the lag). */
  scanned: number;
  eventsProcessed = 0;
  eventsApplied = 0;
  readonly startedAt = performance.now();
  readonly startPosition: number;
  /** (time, eventsProcessed) at each commit, for the rate. */
  readonly samples: Array<[number, number]> = [];
  /** Waiting for the subscription with nothing uncommitted. */
  idle = false;
  halt: Halt | undefined;
  #haltWaiters: Array<() => void> = [];
  #ended = false;
  #sub: Subscription | undefined;
  onCommit: (() => void) | undefined;

  constructor(
    readonly owner: Projection,
    public slot: SlotInfo,
    readonly role: 'main' | 'rebuild',
  ) {
    this.position = slot.position;
    this.eventTimestamp = slot.eventTimestamp;
    this.scanned = slot.position;
    this.startPosition = slot.position;
  }

  get #p(): CompiledProjection {
    return this.owner.compiled;
  }

  /**
   * Asks the runner to stop (or to hand over to another slot) after committing its batch;
   * resolves once it has (at once if it already ended).
   */
  requestHalt(h: Halt): Promise<void> {
    if (this.#ended) return Promise.resolve();
    this.halt ??= h;
    void this.#sub?.close();
    return new Promise((resolve) => this.#haltWaiters.push(resolve));
  }

  /** The runner's loop is over: wakes whoever waits for it to halt. */
  halted(): void {
    this.#ended = true;
    for (const w of this.#haltWaiters.splice(0)) w();
  }

  #newBatch(): Batch {
    return this.owner.readModels.batch(this.#p.name, this.slot.slot);
  }

  /** Applies part of a page, starting the batch's clock on its first event; returns the index reached. */
  #apply(page: readonly RecordedEvent[], from: number, to: number, batch: Batch): Promise<number> {
    if (batch.events === 0) batch.startedAt = performance.now();
    return applyEvents(this.#p, page, from, to, batch, batch.startedAt + this.owner.batchMs);
  }

  async #commit(batch: Batch, position: number, lastTimestamp: number): Promise<void> {
    if (position <= this.position) return;
    // A batch with no events (a pass whose last events were filtered out) keeps the time of the last one applied.
    const eventTimestamp = lastTimestamp > 0 ? lastTimestamp : this.eventTimestamp;
    let active: string | undefined;
    try {
      ({ active } = await this.owner.readModels.commit(batch, this.position, { position, eventTimestamp }));
    } catch (err) {
      if (err instanceof DeferredUpdateError) throw handlerFault(this.#p, this.slot.slot, err.event, err.cause);
      if (err instanceof ProjectionConflictError && err.details.reason === 'slot_dropped' && this.role === 'main') {
        // The slot was replaced and dropped by a rebuild elsewhere: carry on in the active one,
        // from its own checkpoint (this batch is not needed there).
        if (this.halt === undefined) {
          const cat = await this.owner.readModels.catalog(this.#p.name);
          if (cat.active === undefined || cat.active === this.slot.slot) throw err;
          await this.#followSwitch(cat.active);
          if (this.halt === undefined) throw err;
        }
        return;
      }
      if (err instanceof EventfulError) throw err;
      throw new ProjectionFaultedError(
        `projection '${this.#p.name}' (slot ${this.slot.slot}) could not commit positions ${this.position + 1} to ${position}: ${(err as Error)?.message ?? String(err)}`,
        { projection: this.#p.name, version: this.#p.version, slot: this.slot.slot, position: this.position + 1, phase: 'commit' },
        err,
      );
    }
    this.position = position;
    this.scanned = Math.max(this.scanned, position);
    this.eventTimestamp = eventTimestamp;
    this.eventsProcessed += batch.events;
    this.eventsApplied += batch.applied;
    const now = performance.now();
    this.samples.push([now, this.eventsProcessed]);
    while (this.samples.length > 2 && this.samples[1]![0] < now - RATE_WINDOW_MS) this.samples.shift();
    this.onCommit?.();
    if (this.role === 'main' && active !== undefined && active !== this.slot.slot && this.halt === undefined) await this.#followSwitch(active);
  }

  /** Another runner activated another slot: carry on there if it is this version's. */
  async #followSwitch(active: string): Promise<void> {
    const cat = await this.owner.readModels.catalog(this.#p.name);
    const to = cat.slots.find((s) => s.slot === active);
    if (to === undefined) return;
    if (to.version !== this.#p.version) throw supersededError(this.#p, to);
    this.halt = { kind: 'switch', to };
  }

  rate(): number {
    const now = performance.now();
    const s = this.samples;
    if (s.length === 0) return 0;
    let base: [number, number] = [this.startedAt, 0];
    for (const x of s) if (x[0] <= now - RATE_WINDOW_MS) base = x;
    const dt = now - base[0];
    return dt <= 0 ? 0 : Math.round(((this.eventsProcessed - base[1]) * 1000) / dt);
  }

  /**
   * readAll passes until close to the head: `exact` (a rebuild) goes on until a pass finds
   * nothing new (or after REBUILD_PASSES_MAX passes); otherwise stop within one batch of it and
   * let the subscription do the rest.
   */
  async catchUp(exact: boolean): Promise<void> {
    for (let pass = 0; this.halt === undefined; pass++) {
      const head = this.owner.noteHead(await this.owner.store.headPosition());
      if (head <= this.position) return;
      if (pass > 0 && head - this.position < this.owner.batchEventsMax && (!exact || pass >= REBUILD_PASSES_MAX)) return;
      await this.#pass(head);
    }
  }

  /** Reads the log from the checkpoint to (at least) `head`, in batches. */
  async #pass(head: number): Promise<void> {
    const { batchEventsMax: max, batchMs } = this.owner;
    let batch = this.#newBatch();
    for await (const page of this.owner.store.readAll({ from: this.position + 1, filter: this.#p.filter }).pages()) {
      let i = 0;
      while (i < page.length && this.halt === undefined) {
        i = await this.#apply(page, i, Math.min(page.length, i + max - batch.events), batch);
        if (batch.events >= max || performance.now() - batch.startedAt >= batchMs) {
          await this.#commit(batch, batch.lastPosition, batch.lastTimestamp);
          batch = this.#newBatch();
        }
      }
      if (this.halt !== undefined) break;
    }
    // A pass that ran to its end saw every event up to `head`, filtered out or not.
    const to = this.halt === undefined ? Math.max(batch.lastPosition, head) : batch.lastPosition;
    await this.#commit(batch, to, batch.lastTimestamp);
  }

  /** Live: subscribes from the checkpoint and applies pages as they come, until halted. */
  async follow(): Promise<void> {
    const { batchEventsMax: max, batchMs } = this.owner;
    const sub = this.owner.store.subscribeToAll({ from: this.position + 1, filter: this.#p.filter });
    this.#sub = sub;
    if (this.halt !== undefined) await sub.close();
    const it = sub.pages()[Symbol.asyncIterator]();
    let batch = this.#newBatch();
    let next = it.next();
    try {
      for (;;) {
        let r: IteratorResult<RecordedEvent[]>;
        if (batch.events > 0) {
          // More pages coming at once join this batch; otherwise commit now.
          const waitMs = batch.lastPosition >= this.owner.headPosition ? 0 : Math.min(LIVE_IDLE_MS, batch.startedAt + batchMs - performance.now());
          const got = waitMs > 0 ? await raceTimeout(next, waitMs) : TIMEOUT;
          if (got === TIMEOUT) {
            await this.#commit(batch, batch.lastPosition, batch.lastTimestamp);
            batch = this.#newBatch();
            if (this.halt !== undefined) break;
            continue;
          }
          r = got;
        } else {
          this.idle = true;
          try {
            r = await next;
          } finally {
            this.idle = false;
          }
        }
        if (r.done) break;
        const page = r.value;
        next = it.next();
        const last = page[page.length - 1]!.position;
        if (last > this.owner.headPosition) this.owner.noteHead(last);
        let i = 0;
        while (i < page.length && this.halt === undefined) {
          i = await this.#apply(page, i, Math.min(page.length, i + max - batch.events), batch);
          if (batch.events >= max || performance.now() - batch.startedAt >= batchMs) {
            await this.#commit(batch, batch.lastPosition, batch.lastTimestamp);
            batch = this.#newBatch();
          }
        }
        if (this.halt !== undefined) break;
      }
      if (batch.events > 0) await this.#commit(batch, batch.lastPosition, batch.lastTimestamp);
    } finally {
      next.catch(() => {});
      await sub.close();
      this.#sub = undefined;
    }
  }
}

function supersededError(p: CompiledProjection, active: SlotInfo): ProjectionConflictError {
  return new ProjectionConflictError(
    `projection '${p.name}': the active read model (slot ${active.slot}) was built by version ${active.version}; this code is version ${p.version}${
      active.version > p.version ? ' (older): it stops rather than replace a newer read model' : ': call rebuild(), or run with autoRebuild'
    }`,
    { projection: p.name, version: p.version, activeSlot: active.slot, activeVersion: active.version, reason: active.version > p.version ? 'superseded' : 'version_mismatch' },
  );
}

function errorInfo(err: unknown): ProjectionErrorInfo {
  const d = (err instanceof EventfulError ? err.details : {}) as Record<string, unknown>;
  return {
    message: (err as Error)?.message ?? String(err),
    code: err instanceof EventfulError ? err.code : 'INTERNAL',
    position: typeof d.position === 'number' ? d.position : undefined,
    stream: typeof d.stream === 'string' ? d.stream : undefined,
    type: typeof d.type === 'string' ? d.type : undefined,
    at: Date.now(),
  };
}

/**
 * A projection bound to an event store and a read-model store.
 *
 *   const p = new Projection(store, readModels, definition);
 *   p.start();                       // catch up, then live, in the background
 *   await p.get('orders', 'o-1');    // query the active read model
 *   await p.stop();
 */
export class Projection<S extends Collections = Record<string, any>> {
  readonly store: EventStore;
  readonly readModels: ReadModelStore;
  readonly compiled: CompiledProjection;
  readonly batchEventsMax: number;
  readonly batchMs: number;
  readonly #options: ProjectionOptions;
  #head = 0;
  #main: Runner | undefined;
  #rebuild: Runner | undefined;
  #rebuildStartedAt = 0;
  #running: Promise<void> | undefined;
  #rebuilding: Promise<RebuildResult> | undefined;
  #state: ProjectionState = 'stopped';
  #stopping = false;
  #error: ProjectionErrorInfo | undefined;
  /** The slot last read from the store, shown while not running. */
  #known: SlotInfo | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #refreshing = false;

  constructor(store: EventStore, readModels: ReadModelStore, definition: ProjectionDefinition<S>, options: ProjectionOptions = {}) {
    if (typeof store?.subscribeToAll !== 'function' || typeof store.readAll !== 'function') throw new InvalidArgumentError('a Projection needs an EventStore (openStore or connect)');
    if (typeof readModels?.commit !== 'function') throw new InvalidArgumentError('a Projection needs a ReadModelStore');
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
    for (const k of Object.keys(options)) if (!OPTION_KEYS.includes(k)) throw new InvalidArgumentError(`unknown projection option '${k}'; known: ${OPTION_KEYS.join(', ')}`);
    const batchEventsMax = options.batchEventsMax ?? DEFAULT_PROJECTION_LIMITS.batchEventsMax;
    if (!Number.isSafeInteger(batchEventsMax) || batchEventsMax < 1 || batchEventsMax > BATCH_EVENTS_CEILING) throw new InvalidArgumentError(`batchEventsMax must be an integer from 1 to ${BATCH_EVENTS_CEILING}`);
    const batchMs = options.batchMs ?? DEFAULT_PROJECTION_LIMITS.batchMs;
    if (typeof batchMs !== 'number' || !(batchMs > 0) || batchMs > BATCH_MS_CEILING) throw new InvalidArgumentError(`batchMs must be a number above 0 and at most ${BATCH_MS_CEILING}`);
    if (options.onError !== undefined && typeof options.onError !== 'function') throw new InvalidArgumentError('onError must be a function');
    this.store = store;
    this.readModels = readModels;
    this.compiled = compileProjection(definition as ProjectionDefinition);
    this.batchEventsMax = batchEventsMax;
    this.batchMs = batchMs;
    this.#options = Object.freeze({ ...options });
  }

  get name(): string {
    return this.compiled.name;
  }

  get version(): number {
    return this.compiled.version;
  }

  /** The head position as last seen. */
  get headPosition(): number {
    return this.#head;
  }

  /** @internal */
  noteHead(head: number): number {
    if (head > this.#head) this.#head = head;
    return this.#head;
  }

  // -------------------------------------------------------------------------------------------
  // Running

  /**
   * Runs until `stop()` (resolves) or a failure (rejects; the state is then `faulted`, or
   * `stopped` for a PROJECTION_CONFLICT). Catches up from the checkpoint, then follows the log
   * live. Calling it again after it ended resumes from the checkpoint; while it runs, it returns
   * the same promise.
   */
  run(): Promise<void> {
    if (this.#running !== undefined) return this.#running;
    const running = this.#loop(false).finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    return running;
  }

  /** `run()` in the background: failures go to `status().error` and `onError`, never unhandled. */
  start(): this {
    this.run().catch(() => {});
    return this;
  }

  /** Stops (if running) and starts again from the checkpoint: what to do after fixing a fault. */
  async restart(): Promise<void> {
    await this.stop();
    this.start();
  }

  /**
   * Applies the log up to the head (as of the call) and returns; does not go live. Rebuilds
   * first when the active read model is another version (see `autoRebuild`).
   */
  async catchUp(): Promise<ProjectionStatus> {
    if (this.#running !== undefined) throw new InvalidArgumentError(`projection '${this.name}' is running; catchUp is for a projection that is not`);
    const running = this.#loop(true).finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    await running;
    return this.status();
  }

  /** Stops after committing what is applied; resolves when stopped (never rejects). */
  async stop(): Promise<void> {
    this.#stopping = true;
    void this.#main?.requestHalt({ kind: 'stop' });
    void this.#rebuild?.requestHalt({ kind: 'stop' });
    await this.#running?.catch(() => {});
    await this.#rebuilding?.catch(() => {});
  }

  async #loop(once: boolean): Promise<void> {
    this.#stopping = false;
    this.#error = undefined;
    this.#state = 'catching-up';
    this.#startRefresh();
    let runner: Runner | undefined;
    try {
      let slot: SlotInfo | undefined = await this.#mainSlot();
      while (slot !== undefined && !this.#stopping) {
        runner = new Runner(this, slot, 'main');
        this.#main = runner;
        this.#state = 'catching-up';
        await runner.catchUp(once);
        if (!once && runner.halt === undefined) {
          this.#state = 'live';
          await runner.follow();
        }
        this.#known = { ...runner.slot, position: runner.position, eventTimestamp: runner.eventTimestamp };
        const halt = runner.halt as Halt | undefined;
        runner.halted();
        slot = halt?.kind === 'switch' ? await this.#fresh(halt.to) : undefined;
      }
      this.#state = 'stopped';
    } catch (err) {
      if (runner !== undefined) {
        this.#known = { ...runner.slot, position: runner.position, eventTimestamp: runner.eventTimestamp };
        runner.halted();
      }
      this.#error = errorInfo(err);
      this.#state = err instanceof ProjectionConflictError ? 'stopped' : 'faulted';
      try {
        this.#options.onError?.(err as Error, this.status());
      } catch {
        // The callback's own failure must not hide the projection's.
      }
      throw err;
    } finally {
      this.#main = undefined;
    }
  }

  /** The slot's checkpoint as the store has it now. */
  async #fresh(slot: SlotInfo): Promise<SlotInfo> {
    const cat = await this.readModels.catalog(this.name);
    return cat.slots.find((s) => s.slot === slot.slot) ?? slot;
  }

  /** The slot the live runner writes: the active one, after building it when needed. */
  async #mainSlot(): Promise<SlotInfo | undefined> {
    const p = this.compiled;
    const cat = await this.readModels.catalog(p.name);
    const active = cat.slots.find((s) => s.slot === cat.active);
    if (active !== undefined && active.version === p.version) return active;
    if (active === undefined) {
      // First build: nothing is served yet, so the slot is active from the start. An earlier
      // first build that was interrupted is resumed.
      const resume = cat.slots.filter((s) => s.version === p.version).sort((a, b) => b.position - a.position)[0];
      const slot = resume ?? (await this.readModels.createSlot(p.name, nextSlotId(p.version, cat.slots.map((s) => s.slot)), p.version));
      await this.readModels.activate(p.name, slot.slot);
      return slot;
    }
    if (active.version > p.version || this.#options.autoRebuild === false) throw supersededError(p, active);
    this.#state = 'rebuilding';
    const r = await this.#rebuildInto(cat, true, {});
    if (!r.switched) return undefined;
    return this.#fresh({ ...active, slot: r.slot, version: p.version });
  }

  // -------------------------------------------------------------------------------------------
  // Rebuild

  /**
   * Replays the whole log into a new slot beside the active one (which keeps serving queries),
   * then makes it active, atomically, once it has caught up with the head. A projection running
   * in this process carries on in the new slot. The old slot is kept unless `dropOld`.
   */
  async rebuild(options: RebuildOptions = {}): Promise<RebuildResult> {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('rebuild options must be an object');
    for (const k of Object.keys(options)) if (!REBUILD_KEYS.includes(k)) throw new InvalidArgumentError(`unknown rebuild option '${k}'; known: ${REBUILD_KEYS.join(', ')}`);
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new InvalidArgumentError('onProgress must be a function');
    const interval = options.progressIntervalMs ?? 250;
    if (typeof interval !== 'number' || !(interval >= 0)) throw new InvalidArgumentError('progressIntervalMs must be a number >= 0');
    if (this.#rebuilding !== undefined) throw new InvalidArgumentError(`projection '${this.name}' is already rebuilding`);
    this.#stopping = false;
    return this.#rebuildInto(await this.readModels.catalog(this.name), false, options);
  }

  async #rebuildInto(cat: ProjectionCatalog, resume: boolean, options: RebuildOptions): Promise<RebuildResult> {
    if (this.#rebuilding !== undefined) throw new InvalidArgumentError(`projection '${this.name}' is already rebuilding`);
    const work = this.#doRebuild(cat, resume, options);
    this.#rebuilding = work;
    try {
      return await work;
    } finally {
      this.#rebuilding = undefined;
    }
  }

  async #doRebuild(cat: ProjectionCatalog, resume: boolean, options: RebuildOptions): Promise<RebuildResult> {
    const p = this.compiled;
    const rm = this.readModels;
    const t0 = performance.now();
    // Slots of this version that are not active are unfinished builds: resume the furthest
    // (when building on run()), or drop them all (an explicit rebuild starts from nothing).
    const stale = cat.slots.filter((s) => s.slot !== cat.active && s.version === p.version).sort((a, b) => b.position - a.position);
    let slot: SlotInfo;
    if (resume && stale.length > 0) slot = stale[0]!;
    else {
      for (const s of stale) await rm.dropSlot(p.name, s.slot);
      const left = cat.slots.filter((s) => !stale.includes(s)).map((s) => s.slot);
      slot = await rm.createSlot(p.name, nextSlotId(p.version, left), p.version);
    }
    const runner = new Runner(this, slot, 'rebuild');
    if (this.#stopping) runner.halt = { kind: 'stop' };
    this.#rebuild = runner;
    this.#rebuildStartedAt = t0;
    const interval = options.progressIntervalMs ?? 250;
    let lastReport = 0;
    const report = (force: boolean): void => {
      if (options.onProgress === undefined) return;
      const now = performance.now();
      if (!force && now - lastReport < interval) return;
      lastReport = now;
      options.onProgress(this.#rebuildProgress(runner));
    };
    runner.onCommit = () => report(false);
    this.#startRefresh();
    try {
      report(true);
      await runner.catchUp(true);
      const stopped = runner.halt !== undefined;
      report(true);
      const base = { projection: p.name, version: p.version, slot: slot.slot, position: runner.position, eventsProcessed: runner.eventsProcessed };
      const durationMs = Math.round(performance.now() - t0);
      const eventsPerSecond = durationMs > 0 ? Math.round((runner.eventsProcessed * 1000) / durationMs) : 0;
      if (stopped) return { ...base, switched: false, previous: undefined, dropped: false, durationMs, eventsPerSecond };
      const previous = (await rm.catalog(p.name)).active;
      await rm.activate(p.name, slot.slot);
      // A runner of this process on the old slot moves to the new one (after its last commit there).
      const main = this.#main;
      if (main !== undefined && main.slot.slot !== slot.slot) await main.requestHalt({ kind: 'switch', to: { ...slot, position: runner.position, eventTimestamp: runner.eventTimestamp } });
      let dropped = false;
      if (options.dropOld === true && previous !== undefined && previous !== slot.slot) {
        await rm.dropSlot(p.name, previous);
        dropped = true;
      }
      return { ...base, switched: true, previous, dropped, durationMs, eventsPerSecond };
    } finally {
      runner.halted();
      this.#rebuild = undefined;
    }
  }

  #rebuildProgress(r: Runner): RebuildProgress {
    const elapsedMs = Math.round(performance.now() - this.#rebuildStartedAt);
    const done = r.position - r.startPosition;
    const left = Math.max(0, this.#head - r.position);
    const perMs = elapsedMs > 0 ? done / elapsedMs : 0;
    return {
      projection: this.name,
      slot: r.slot.slot,
      version: r.slot.version,
      position: r.position,
      headPosition: Math.max(this.#head, r.position),
      eventsProcessed: r.eventsProcessed,
      eventsPerSecond: elapsedMs > 0 ? Math.round((r.eventsProcessed * 1000) / elapsedMs) : 0,
      etaMs: left === 0 ? 0 : perMs > 0 ? Math.round(left / perMs) : undefined,
      elapsedMs,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Status

  #startRefresh(): void {
    if (this.#refreshTimer !== undefined) return;
    this.#refreshTimer = setInterval(() => void this.#refresh(), DEFAULT_PROJECTION_LIMITS.statusRefreshMs);
    this.#refreshTimer.unref();
  }

  async #refresh(): Promise<void> {
    if (this.#main === undefined && this.#rebuild === undefined && this.#running === undefined) {
      clearInterval(this.#refreshTimer);
      this.#refreshTimer = undefined;
      return;
    }
    if (this.#refreshing) return;
    this.#refreshing = true;
    try {
      const main = this.#main;
      const idleBefore = main?.idle === true;
      const head = this.noteHead(await this.store.headPosition());
      // Idle before and after asking: every event up to that head was seen (the rest filtered out).
      if (main !== undefined && idleBefore && main.idle) main.scanned = Math.max(main.scanned, head);
    } catch {
      // The status shows the last head seen; the runner reports real failures itself.
    } finally {
      this.#refreshing = false;
    }
  }

  /** Where the projection is, now. Cheap: no I/O. */
  status(): ProjectionStatus {
    const r = this.#main;
    const rb = this.#rebuild;
    const position = r?.position ?? this.#known?.position ?? 0;
    const eventTimestamp = r?.eventTimestamp ?? this.#known?.eventTimestamp ?? 0;
    const head = Math.max(this.#head, position);
    const covered = Math.max(position, r?.scanned ?? 0);
    const lagPositions = Math.max(0, head - covered);
    let state = this.#state;
    if (this.#running === undefined && rb !== undefined) state = 'rebuilding';
    return {
      name: this.name,
      version: this.version,
      state,
      slot: r?.slot.slot ?? this.#known?.slot,
      position,
      eventTimestamp,
      headPosition: head,
      lagPositions,
      lagMs: lagPositions === 0 ? 0 : eventTimestamp > 0 ? Math.max(0, Date.now() - eventTimestamp) : null,
      eventsPerSecond: r?.rate() ?? 0,
      eventsProcessed: r?.eventsProcessed ?? 0,
      error: this.#error,
      rebuild: rb === undefined ? undefined : this.#rebuildProgress(rb),
    };
  }

  /** The status with the store's view: slots, checkpoints and the head, read now. */
  async describe(): Promise<{ status: ProjectionStatus; catalog: ProjectionCatalog }> {
    const [catalog, head] = await Promise.all([this.readModels.catalog(this.name), this.store.headPosition()]);
    this.noteHead(head);
    if (this.#main === undefined) this.#known = catalog.slots.find((s) => s.slot === catalog.active);
    return { status: this.status(), catalog };
  }

  // -------------------------------------------------------------------------------------------
  // Queries (the active slot unless `slot` is given)

  get<C extends keyof S & string>(collection: C, id: string, options?: SlotOption): Promise<S[C] | undefined> {
    return this.readModels.get(this.name, collection, id, options);
  }

  list<C extends keyof S & string>(collection: C, options?: ListOptions & SlotOption): Promise<Array<DocumentEntry<S[C]>>> {
    return this.readModels.list(this.name, collection, options);
  }

  find<C extends keyof S & string>(collection: C, where: Record<string, unknown>, options?: Omit<ListOptions, 'prefix'> & SlotOption): Promise<Array<DocumentEntry<S[C]>>> {
    return this.readModels.find(this.name, collection, where, options);
  }

  count<C extends keyof S & string>(collection: C, options?: SlotOption): Promise<number> {
    return this.readModels.count(this.name, collection, options);
  }
}
