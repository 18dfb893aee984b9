/**
 * Snapshots of a decider's state, so that loading a long stream folds only its last events.
 *
 * A snapshot is a cache, never a fact: it is the state after the event at `revision`, kept
 * beside the log and never in the aggregate's stream. Deleting every snapshot changes no state
 * and no event; it only makes the next loads fold from the start again. Three checks keep a
 * snapshot from ever changing what a load returns:
 * - its `version` (chosen by the user) must equal the current one: changing `evolve` (or the
 *   upcasters it reads through) without changing the version is the one way to get a wrong
 *   state, so bump it with every such change;
 * - the stream must still have the event the snapshot covers, at the same revision and log
 *   position; a snapshot kept outside the log can outlive events the log lost (a restore from
 *   an older backup, a tail cut by crash recovery after `durability: 'interval'`);
 * - a snapshot that cannot be read or decoded is reported and skipped, never thrown.
 *
 * Two stores: `InMemorySnapshotStore` (per process, bounded), and `StreamSnapshotStore`, which
 * appends snapshots to a companion stream of the same EventStore (see there for its naming).
 */
import { isDeepStrictEqual } from 'node:util';
import { EventInvalidError, InvalidArgumentError } from '../core/errors.js';
import type { EventStore } from '../core/events.js';

/** Events between snapshots. @default 100 */
export const DEFAULT_SNAPSHOT_EVERY = 100;
/** Streams an `InMemorySnapshotStore` keeps a snapshot of; the least recently used go first. @default 10_000 */
export const DEFAULT_SNAPSHOT_STREAMS_MAX = 10_000;
/** Category of `StreamSnapshotStore`'s companion streams: `snapshots-order-123`. @default 'snapshots' */
export const DEFAULT_SNAPSHOT_PREFIX = 'snapshots';
/** Type of the events `StreamSnapshotStore` appends. */
export const SNAPSHOT_EVENT_TYPE = 'eventful.snapshot';

/** A stream's state after the event at `revision`, as a snapshot store keeps it. */
export interface Snapshot {
  /** The state, as `encode` gave it (the state itself without `encode`). */
  state: unknown;
  /** Revision of the last event the state covers. */
  revision: number;
  /** Log position of that event: a load checks the stream still holds it there. */
  position: number;
  /** The user's snapshot version; a snapshot of another version is ignored. */
  version: string;
}

/**
 * Where snapshots are kept. `load` gives the latest snapshot saved for the stream (of any
 * version), or undefined; it is called on every load, so it should be one cheap lookup.
 * `save` replaces it (the last saved wins). Either may throw: the decider reports the error
 * and carries on without the snapshot.
 */
export interface SnapshotStore {
  load(stream: string): Promise<Snapshot | undefined>;
  save(stream: string, snapshot: Snapshot): Promise<void>;
}

export interface SnapshotErrorContext {
  stream: string;
  /** 'load': the snapshot could not be read, decoded, or no longer matches the stream, and was skipped; 'save': a new one was not written. */
  operation: 'load' | 'save';
}

/** `snapshots` option of `loadState` and `handleCommand`. */
export interface SnapshotOptions<State = unknown> {
  store: SnapshotStore;
  /**
   * Names the shape of the state and the `evolve` that built it, e.g. 'cart-3'. Change it
   * whenever `evolve`, the state's shape or the upcasters change: older snapshots are then
   * ignored, and the next command writes one of the new version.
   */
  version: string;
  /** A snapshot is written after an append that leaves at least this many events past the one loaded. @default 100 */
  every?: number;
  /** The state as stored (e.g. a Map as an array of pairs for a JSON store). @default the state itself */
  encode?: (state: State) => unknown;
  /** The inverse of `encode`. @default the stored value itself */
  decode?: (stored: unknown) => State;
  /** Told of each snapshot skipped or not written; the command goes on either way. Log it. */
  onError?: (error: unknown, context: SnapshotErrorContext) => void;
}

const SNAPSHOT_OPTION_KEYS = ['store', 'version', 'every', 'encode', 'decode', 'onError'];

/** Checks `snapshots` options at the boundary; returns them with defaults filled in. */
export function checkSnapshotOptions<State>(o: unknown): SnapshotOptions<State> & { every: number } {
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError('snapshots must be an object { store, version, every?, encode?, decode?, onError? }');
  for (const key of Object.keys(o)) {
    if (!SNAPSHOT_OPTION_KEYS.includes(key)) throw new InvalidArgumentError(`unknown snapshots option '${key}'; known: ${SNAPSHOT_OPTION_KEYS.join(', ')}`);
  }
  const s = o as SnapshotOptions<State>;
  if (typeof s.store !== 'object' || s.store === null || typeof s.store.load !== 'function' || typeof s.store.save !== 'function') {
    throw new InvalidArgumentError('snapshots.store must be a SnapshotStore (an object with load and save)');
  }
  if (typeof s.version !== 'string' || s.version.length === 0) throw new InvalidArgumentError('snapshots.version must be a non-empty string');
  const every = s.every ?? DEFAULT_SNAPSHOT_EVERY;
  if (!Number.isSafeInteger(every) || every < 1) throw new InvalidArgumentError(`snapshots.every must be an integer >= 1, got ${String(s.every)}`);
  for (const fn of ['encode', 'decode', 'onError'] as const) {
    if (s[fn] !== undefined && typeof s[fn] !== 'function') throw new InvalidArgumentError(`snapshots.${fn} must be a function`);
  }
  return { ...s, every };
}

/** Whether a value read back from a store has a snapshot's shape. */
export function isSnapshot(s: unknown): s is Snapshot {
  if (typeof s !== 'object' || s === null) return false;
  const r = s as Record<string, unknown>;
  return (
    typeof r.version === 'string' &&
    typeof r.revision === 'number' && Number.isSafeInteger(r.revision) && r.revision >= 0 &&
    typeof r.position === 'number' && Number.isSafeInteger(r.position) && r.position >= 0
  );
}

/**
 * Snapshots in this process's memory: gone on restart, one latest snapshot per stream, at most
 * `streamsMax` streams (least recently used dropped first). Snapshots are stored and handed out
 * as structured clones, so an `evolve` that changes a state in place cannot change a snapshot.
 */
export class InMemorySnapshotStore implements SnapshotStore {
  readonly streamsMax: number;
  readonly #byStream = new Map<string, Snapshot>();

  constructor(options: { streamsMax?: number } = {}) {
    for (const key of Object.keys(options)) if (key !== 'streamsMax') throw new InvalidArgumentError(`unknown InMemorySnapshotStore option '${key}'; known: streamsMax`);
    const max = options.streamsMax ?? DEFAULT_SNAPSHOT_STREAMS_MAX;
    if (!Number.isSafeInteger(max) || max < 1) throw new InvalidArgumentError(`streamsMax must be an integer >= 1, got ${String(options.streamsMax)}`);
    this.streamsMax = max;
  }

  /** Streams with a snapshot. */
  get size(): number {
    return this.#byStream.size;
  }

  async load(stream: string): Promise<Snapshot | undefined> {
    const s = this.#byStream.get(stream);
    if (s === undefined) return undefined;
    // Re-inserting keeps the map in least-recently-used order.
    this.#byStream.delete(stream);
    this.#byStream.set(stream, s);
    return structuredClone(s);
  }

  async save(stream: string, snapshot: Snapshot): Promise<void> {
    const copy = structuredClone(snapshot); // throws (and saves nothing) for functions, symbols
    // A clone of a class instance is a plain object: loads would hand evolve another state.
    if (!isDeepStrictEqual(copy.state, snapshot.state)) throw new InvalidArgumentError(notSame('a structured clone', 'class instances'), { stream });
    this.#byStream.delete(stream);
    this.#byStream.set(stream, copy);
    if (this.#byStream.size > this.streamsMax) this.#byStream.delete(this.#byStream.keys().next().value!);
  }

  /** Drops a stream's snapshot (or all of them). Loads then fold from the start. */
  clear(stream?: string): void {
    if (stream === undefined) this.#byStream.clear();
    else this.#byStream.delete(stream);
  }
}

/**
 * Snapshots appended to a companion stream of the same EventStore: the snapshots of `order-123`
 * are events of type `eventful.snapshot` in `snapshots-order-123`. The latest is read backwards
 * with limit 1, one indexed read whatever the companion stream's length.
 *
 * Naming: `<prefix>-<stream>`. A name starting with '$' is reserved by the store, so the prefix
 * leads. The category of a stream is the part of its name before the first '-', so every
 * companion stream is in the one category `snapshots` (the prefix, which may hold no '-'), never
 * in the aggregate's: a projection or subscription filtered on category `order` never sees a
 * snapshot, and `readAll({ filter: { category: 'snapshots' } })` finds them all. Readers of the
 * unfiltered log do see them; skip the category or the event type. Do not give your own streams
 * the prefix as category, or they would share names with companion streams.
 *
 * The aggregate's own stream is never written, so its events and revisions stay exactly what
 * the commands decided. Each snapshot is one event (JSON: `{ version, revision, position,
 * state }`), so a state must be JSON (or be made so with `encode`/`decode`) and fit in one
 * event (`eventBytesMax`); a companion name is `prefix.length + 1` bytes longer than the
 * aggregate's and must fit `streamNameBytesMax`. A snapshot that does not fit is reported
 * through `onError` and not written.
 */
export class StreamSnapshotStore implements SnapshotStore {
  readonly prefix: string;
  readonly #store: EventStore;

  constructor(store: EventStore, options: { prefix?: string } = {}) {
    for (const key of Object.keys(options)) if (key !== 'prefix') throw new InvalidArgumentError(`unknown StreamSnapshotStore option '${key}'; known: prefix`);
    const prefix = options.prefix ?? DEFAULT_SNAPSHOT_PREFIX;
    if (typeof prefix !== 'string' || prefix.length === 0 || prefix.includes('-') || prefix.startsWith('$')) {
      throw new InvalidArgumentError(`prefix must be a non-empty string without '-' and not starting with '$' (it is the companion streams' category), got '${String(prefix)}'`);
    }
    this.prefix = prefix;
    this.#store = store;
  }

  /** The companion stream holding `stream`'s snapshots. */
  streamOf(stream: string): string {
    return `${this.prefix}-${stream}`;
  }

  async load(stream: string): Promise<Snapshot | undefined> {
    const name = this.streamOf(stream);
    const [e] = await this.#store.readStream(name, { direction: 'backwards', limit: 1 }).toArray();
    if (e === undefined) return undefined;
    const d = e.type === SNAPSHOT_EVENT_TYPE && e.isJson ? (e.data as Record<string, unknown> | null) : undefined;
    if (!isSnapshot(d) || !('state' in d)) {
      throw new EventInvalidError(`the last event of '${name}' (revision ${e.revision}) is not a snapshot: expected type '${SNAPSHOT_EVENT_TYPE}' with JSON { version, revision, position, state }`, { stream: name, revision: e.revision });
    }
    return { state: d.state, revision: d.revision, position: d.position, version: d.version };
  }

  async save(stream: string, snapshot: Snapshot): Promise<void> {
    const { version, revision, position, state } = snapshot;
    // JSON turns a Map into {}, a Date into a string, drops undefined fields: loads would hand
    // evolve another state than the events give. Refuse such a snapshot rather than store it.
    if (!isDeepStrictEqual(JSON.parse(JSON.stringify(state) ?? 'null'), state)) throw new InvalidArgumentError(notSame('JSON', 'Map, Set, Date, class instances, undefined fields, NaN'), { stream });
    await this.#store.append(this.streamOf(stream), [{ type: SNAPSHOT_EVENT_TYPE, data: { version, revision, position, state }, metadata: { snapshotOf: stream } }]);
  }
}

function notSame(how: string, what: string): string {
  return `the state does not come back the same from ${how} (${what}?): give snapshots encode and decode to store it in a form that does`;
}
