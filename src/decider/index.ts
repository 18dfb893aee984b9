/**
 * Command handling with the Decider pattern: state is a fold of a stream's events (`evolve`
 * from `initialState`); a command is decided against that state (`decide`), and the events it
 * yields are appended with the stream's revision as the expected revision. When another writer
 * got there first, the stream is read on from where it was, folded again, and the command
 * decided again, after a short back-off, up to `retries` times.
 *
 * Stored events go through `upcasters` (when given) before `evolve` sees them, so a decider only
 * handles the current shape of each event; events it decides are stamped with their type's
 * current `schemaVersion`. With `snapshots`, a load starts from the latest valid snapshot and
 * folds only the events after it, and a command writes a new snapshot every `every` events
 * (src/decider/snapshots.ts: a snapshot never changes what a load returns).
 *
 * Works with any EventStore: the embedded store and the client alike.
 */
import { InvalidArgumentError, WrongExpectedRevisionError } from '../core/errors.js';
import type { AppendResult, EventInput, EventStore } from '../core/events.js';
import type { Upcasters } from '../core/upcast.js';
import { checkSnapshotOptions, isSnapshot } from './snapshots.js';
import type { SnapshotErrorContext, SnapshotOptions } from './snapshots.js';

export { DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_PREFIX, DEFAULT_SNAPSHOT_STREAMS_MAX, InMemorySnapshotStore, SNAPSHOT_EVENT_TYPE, StreamSnapshotStore } from './snapshots.js';
export type { Snapshot, SnapshotErrorContext, SnapshotOptions, SnapshotStore } from './snapshots.js';

/** An event as a decider sees it: its type, data and metadata (and, once stored, its revision). */
export interface DeciderEvent {
  type: string;
  data?: unknown;
  metadata?: Record<string, unknown>;
  /** The event's revision in its stream; undefined for events just decided, not yet stored. */
  revision?: number;
}

export interface Decider<Command, State> {
  initialState: State;
  /** The events a command produces in a state; throw to refuse the command. May be async. */
  decide(command: Command, state: State): DeciderEvent[] | Promise<DeciderEvent[]>;
  /** The state after one event. Pure. */
  evolve(state: State, event: DeciderEvent): State;
}

/** @default 10 */
export const DEFAULT_COMMAND_RETRIES = 10;
/** @default 5 */
export const DEFAULT_COMMAND_BACKOFF_MS = 5;

export interface LoadOptions<State = unknown> {
  /** Fold on from this state and revision instead of from the start (or a snapshot). */
  from?: { state: State; revision: number };
  /** Applied to every stored event before `evolve` sees it. */
  upcasters?: Upcasters;
  /** Start from the latest valid snapshot; see SnapshotOptions. Ignored when `from` is given. */
  snapshots?: SnapshotOptions<State>;
}

export interface HandleOptions<State = unknown> {
  /** Attempts after a concurrency conflict. @default 10 */
  retries?: number;
  /** First pause after a conflict; doubles each time, with jitter. @default 5 ms */
  backoffMs?: number;
  /** Metadata added to every event decided (correlation and causation ids, the actor). */
  metadata?: Record<string, unknown>;
  /** Applied to every stored event before `evolve` sees it; decided events get `metadata.schemaVersion`. */
  upcasters?: Upcasters;
  /** Load from snapshots, and write one every `every` events. */
  snapshots?: SnapshotOptions<State>;
}

export interface HandleResult<State> {
  /** The events appended (empty when the command decided nothing), with their metadata as stored. */
  events: DeciderEvent[];
  /** The state after them. */
  state: State;
  /** The stream's revision after the command (-1: the stream still does not exist). */
  revision: number;
  /** Log positions of the appended events. */
  positions: number[];
  /** Attempts it took (1 without conflicts). */
  attempts: number;
}

const LOAD_OPTION_KEYS = ['from', 'upcasters', 'snapshots'];
const HANDLE_OPTION_KEYS = ['retries', 'backoffMs', 'metadata', 'upcasters', 'snapshots'];

type Evolver<State> = Pick<Decider<unknown, State>, 'initialState' | 'evolve'>;
type Snapshots<State> = SnapshotOptions<State> & { every: number };

interface Loaded<State> {
  state: State;
  revision: number;
  /** Revision of the snapshot the load started from; -1 when it folded from the start. */
  snapshotRevision: number;
}

/**
 * The state of a stream: its events folded from `initialState` (or on from `options.from`, or
 * from the latest valid snapshot), with the revision of the last one.
 */
export async function loadState<State>(
  store: EventStore,
  stream: string,
  decider: Evolver<State>,
  options: LoadOptions<State> = {},
): Promise<{ state: State; revision: number }> {
  const o = checkOptions(options, LOAD_OPTION_KEYS, 'loadState');
  if (o.from !== undefined) {
    const { state, revision } = o.from;
    if (!Number.isSafeInteger(revision) || revision < -1) throw new InvalidArgumentError('from.revision must be an integer >= -1');
    return (await fold(store, stream, decider, o.upcasters, state, revision))!;
  }
  const { state, revision } = await load(store, stream, decider, o.upcasters, o.snapshots === undefined ? undefined : checkSnapshotOptions<State>(o.snapshots));
  return { state, revision };
}

/**
 * Loads the stream, decides the command, appends what it decided with the expected revision,
 * and retries on a conflict. Errors from `decide` (a refused command) are thrown as they are.
 * With `snapshots`, a snapshot is written after the append once `every` events lie past the
 * one loaded; that write is awaited, but its failure only goes to `snapshots.onError`.
 */
export async function handleCommand<Command, State>(
  store: EventStore,
  stream: string,
  decider: Decider<Command, State>,
  command: Command,
  options: HandleOptions<State> = {},
): Promise<HandleResult<State>> {
  const o = checkOptions(options, HANDLE_OPTION_KEYS, 'handleCommand');
  const retries = o.retries ?? DEFAULT_COMMAND_RETRIES;
  const backoff = o.backoffMs ?? DEFAULT_COMMAND_BACKOFF_MS;
  if (!Number.isSafeInteger(retries) || retries < 0) throw new InvalidArgumentError('retries must be an integer >= 0');
  if (typeof backoff !== 'number' || !Number.isFinite(backoff) || backoff < 0) throw new InvalidArgumentError('backoffMs must be a number >= 0');
  if (o.metadata !== undefined && (typeof o.metadata !== 'object' || o.metadata === null || Array.isArray(o.metadata))) throw new InvalidArgumentError('metadata must be an object');
  const snapshots = o.snapshots === undefined ? undefined : checkSnapshotOptions<State>(o.snapshots);
  const upcasters = o.upcasters;
  let loaded = await load(store, stream, decider, upcasters, snapshots);
  for (let attempt = 1; ; attempt++) {
    const events = await decider.decide(command, loaded.state);
    if (!Array.isArray(events)) throw new InvalidArgumentError('decide must return an array of events');
    if (events.length === 0) return { events: [], state: loaded.state, revision: loaded.revision, positions: [], attempts: attempt };
    const inputs: EventInput[] = events.map((e) => {
      // Written in the current shape, so stamped with the current version: without it the event
      // would read as version 1 and be upcast a second time.
      const version = upcasters?.currentVersion(e.type) ?? 1;
      const stamp = version > 1 ? { schemaVersion: version } : undefined;
      const hasMeta = stamp !== undefined || e.metadata !== undefined || o.metadata !== undefined;
      return { type: e.type, data: e.data, ...(hasMeta ? { metadata: { ...stamp, ...o.metadata, ...e.metadata } } : {}) };
    });
    let result: AppendResult;
    try {
      result = await store.append(stream, inputs, { expectedRevision: loaded.revision < 0 ? 'no_stream' : loaded.revision });
    } catch (err) {
      if (!(err instanceof WrongExpectedRevisionError) || attempt > retries) throw err;
      // Someone else appended: read on from where we were, and decide again.
      await new Promise((r) => setTimeout(r, backoff * 2 ** (attempt - 1) * (0.5 + Math.random() / 2)));
      const on = (await fold(store, stream, decider, upcasters, loaded.state, loaded.revision))!;
      loaded = { ...on, snapshotRevision: loaded.snapshotRevision };
      continue;
    }
    let state = loaded.state;
    const stored = events.map((e, i) => ({ ...e, ...(inputs[i]!.metadata !== undefined ? { metadata: inputs[i]!.metadata } : {}), revision: result.revision - events.length + 1 + i }));
    for (const e of stored) state = decider.evolve(state, e);
    if (snapshots !== undefined && result.revision - loaded.snapshotRevision >= snapshots.every) {
      await saveSnapshot(snapshots, stream, state, result.revision, result.positions[result.positions.length - 1]!);
    }
    return { events: stored, state, revision: result.revision, positions: result.positions, attempts: attempt };
  }
}

/** Rejects unknown option keys (a typo such as `snapshot:` would otherwise be ignored silently). */
function checkOptions<T extends object>(options: T, known: string[], fn: string): T {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`${fn} options must be an object`);
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new InvalidArgumentError(`unknown ${fn} option '${key}'; known: ${known.join(', ')}`);
  }
  const u = (options as { upcasters?: unknown }).upcasters;
  if (u !== undefined && (typeof u !== 'object' || u === null || typeof (u as Upcasters).apply !== 'function')) throw new InvalidArgumentError('upcasters must be an Upcasters registry');
  return options;
}

/** From the latest valid snapshot when there is one, else from the start. */
async function load<State>(store: EventStore, stream: string, decider: Evolver<State>, upcasters: Upcasters | undefined, snapshots: Snapshots<State> | undefined): Promise<Loaded<State>> {
  if (snapshots !== undefined) {
    const snap = await loadSnapshot(snapshots, stream);
    if (snap !== undefined) {
      const folded = await fold(store, stream, decider, upcasters, snap.state, snap.revision, snap.position);
      if (folded !== undefined) return { ...folded, snapshotRevision: snap.revision };
      report(snapshots.onError, new InvalidArgumentError(`the snapshot of '${stream}' covers revision ${snap.revision} at position ${snap.position}, but the stream no longer holds that event: ignored`, { stream, revision: snap.revision, position: snap.position }), { stream, operation: 'load' });
    }
  }
  const folded = (await fold(store, stream, decider, upcasters, decider.initialState, -1))!;
  return { ...folded, snapshotRevision: -1 };
}

/**
 * Folds the stream's events after `revision` into `state`. With `position`, the read starts at
 * `revision` itself, and the event there must be the one at that log position, else the fold is
 * abandoned (undefined): the snapshot it started from covers events the stream no longer has.
 */
async function fold<State>(
  store: EventStore,
  stream: string,
  decider: Evolver<State>,
  upcasters: Upcasters | undefined,
  state: State,
  revision: number,
  position?: number,
): Promise<{ state: State; revision: number } | undefined> {
  let check = position !== undefined;
  for await (const page of store.readStream(stream, { from: check ? revision : revision + 1 }).pages()) {
    for (const e of page) {
      if (check) {
        if (e.revision !== revision || e.position !== position) return undefined;
        check = false;
        continue;
      }
      const v = upcasters === undefined ? e : upcasters.apply(e);
      state = decider.evolve(state, { type: v.type, data: v.data, metadata: v.metadata, revision: e.revision });
      revision = e.revision;
    }
  }
  return check ? undefined : { state, revision };
}

/** The latest snapshot of the current version, decoded; undefined (and reported) when unusable. */
async function loadSnapshot<State>(o: Snapshots<State>, stream: string): Promise<{ state: State; revision: number; position: number } | undefined> {
  try {
    const s = await o.store.load(stream);
    if (s === undefined || s === null) return undefined;
    if (!isSnapshot(s)) throw new InvalidArgumentError(`the snapshot store returned something that is not a snapshot { state, revision, position, version } for '${stream}'`, { stream });
    if (s.version !== o.version) return undefined; // written by another evolve: expected after a change, not an error
    return { state: o.decode === undefined ? (s.state as State) : o.decode(s.state), revision: s.revision, position: s.position };
  } catch (err) {
    report(o.onError, err, { stream, operation: 'load' });
    return undefined;
  }
}

async function saveSnapshot<State>(o: Snapshots<State>, stream: string, state: State, revision: number, position: number): Promise<void> {
  try {
    await o.store.save(stream, { state: o.encode === undefined ? state : o.encode(state), revision, position, version: o.version });
  } catch (err) {
    report(o.onError, err, { stream, operation: 'save' });
  }
}

/** Hands an error to `onError`; a throwing callback must not fail the command either. */
function report(onError: SnapshotOptions['onError'], err: unknown, context: SnapshotErrorContext): void {
  try {
    onError?.(err, context);
  } catch {
    // The command's outcome does not depend on the snapshot, nor on its logging.
  }
}
