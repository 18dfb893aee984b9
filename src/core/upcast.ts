/**
 * Upcasting: old shapes of an event turned into the current shape at read time. The log is never
 * rewritten; readers that go through an `Upcasters` registry (projections, deciders) only ever
 * see current shapes, so their code handles one version of each event.
 *
 * An event's schema version is `metadata.schemaVersion` (a positive integer; absent means 1).
 * A transform is registered for one event type and one version and returns the next version's
 * type and data. Transforms chain: v1 -> v2 -> v3 is two transforms, applied in order.
 *
 * Every transform raises the version by one, so a chain cannot loop, even when renames go round
 * (A v1 -> B v2 -> A v3 ends at the last version registered): each (version, type) pair is met
 * at most once, and a chain is at most as long as the registry is large.
 *
 * Writers put the current version in `metadata.schemaVersion` (see `currentVersion`). An event
 * of a type with transforms written without it reads as version 1, and would be upcast again.
 */
import { InvalidArgumentError, assert } from './errors.js';

/** An event as readers see it: a RecordedEvent, or the result of upcasting one. */
export interface EventView {
  readonly id: string;
  readonly stream: string;
  readonly revision: number;
  readonly position: number;
  readonly type: string;
  readonly data: unknown;
  readonly metadata: Record<string, unknown>;
  readonly timestamp: number;
  readonly contentType: string;
}

export interface Upcaster {
  /** The type of the events this transform reads. */
  type: string;
  /** The version it reads (`metadata.schemaVersion`, 1 when absent). It writes `fromVersion + 1`. */
  fromVersion: number;
  /** The next version's data (and, to rename the type, `newType`). Pure; must not throw for valid input. */
  upcast(data: unknown, event: EventView): unknown;
  /** The type the result has, when the transform renames the event. @default type */
  newType?: string;
}

export function schemaVersionOf(metadata: Record<string, unknown>): number {
  const v = metadata.schemaVersion;
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 ? v : 1;
}

/** A registry of transforms. An empty registry returns every event as it is. */
export class Upcasters {
  readonly #byKey = new Map<string, Upcaster>();
  /** The version each type reaches through the transforms registered (absent: 1). */
  readonly #current = new Map<string, number>();

  constructor(upcasters: Iterable<Upcaster> = []) {
    for (const u of upcasters) this.register(u);
  }

  register(u: Upcaster): this {
    if (typeof u.type !== 'string' || u.type.length === 0) throw new InvalidArgumentError('an upcaster needs the event type it reads');
    if (!Number.isSafeInteger(u.fromVersion) || u.fromVersion < 1) throw new InvalidArgumentError(`upcaster for '${u.type}': fromVersion must be an integer >= 1`);
    if (typeof u.upcast !== 'function') throw new InvalidArgumentError(`upcaster for '${u.type}' v${u.fromVersion}: upcast must be a function`);
    // An empty newType would otherwise rename the event to '' (an event no store accepts).
    if (u.newType !== undefined && (typeof u.newType !== 'string' || u.newType.length === 0)) {
      throw new InvalidArgumentError(`upcaster for '${u.type}' v${u.fromVersion}: newType must be a non-empty string when given`);
    }
    const key = `${u.fromVersion}:${u.type}`;
    if (this.#byKey.has(key)) throw new InvalidArgumentError(`an upcaster for '${u.type}' v${u.fromVersion} is already registered`);
    this.#byKey.set(key, u);
    const to = u.fromVersion + 1;
    for (const t of u.newType === undefined ? [u.type] : [u.type, u.newType]) {
      if (to > (this.#current.get(t) ?? 1)) this.#current.set(t, to);
    }
    return this;
  }

  /**
   * The version a writer stamps on a new event of this type in `metadata.schemaVersion`: one
   * past the highest version a transform reads or writes for it, 1 when none does.
   */
  currentVersion(type: string): number {
    return this.#current.get(type) ?? 1;
  }

  get size(): number {
    return this.#byKey.size;
  }

  /** The event in its current shape: itself when no transform applies (no copy is made). */
  apply<E extends EventView>(event: E): E | EventView {
    if (this.#byKey.size === 0) return event;
    let type = event.type;
    let version = schemaVersionOf(event.metadata);
    let u = this.#byKey.get(`${version}:${type}`);
    if (u === undefined) return event;
    let data = event.data;
    let view: EventView = event;
    // No step limit is needed (see the header): the version rises each step. A fixed limit would
    // refuse long legitimate chains as if they were cycles.
    for (let step = 0; u !== undefined; step++) {
      assert(step < this.#byKey.size, 'an upcasting chain meets each transform at most once');
      data = u.upcast(data, view);
      type = u.newType ?? type;
      version++;
      view = upcastView(event, type, data, version);
      u = this.#byKey.get(`${version}:${type}`);
    }
    return view;
  }
}

function upcastView(e: EventView, type: string, data: unknown, version: number): EventView {
  return {
    id: e.id,
    stream: e.stream,
    revision: e.revision,
    position: e.position,
    type,
    data,
    metadata: { ...e.metadata, schemaVersion: version },
    timestamp: e.timestamp,
    contentType: e.contentType,
  };
}
