/**
 * Read models: JSON documents by collection and id, written by projection handlers and read by
 * queries. Three stores hold them (memory, LMDB, PostgreSQL); handlers see one interface,
 * `ReadModel`, so the same projection runs on any of them.
 *
 * A projection writes into a *slot*: one copy of its read model, built by one version of its
 * code (`v1`, `v2`, and `v2_2` for a second build of version 2). One slot per projection is
 * *active*: queries read it. A rebuild fills a new slot beside the active one and then moves
 * the active pointer, in one transaction.
 *
 * Each slot has a *checkpoint*: the log position of the last event applied to it. A store
 * commits a batch's document changes and the new checkpoint in one transaction, so after any
 * crash the read model holds exactly the events up to its checkpoint: none lost, none applied
 * twice. That is the whole exactly-once argument; everything else follows from it.
 *
 * Writes go to a `Batch`: an overlay of the changes made by the events of one transaction, in
 * memory until the store commits it. Reads inside a handler see the overlay first, then the
 * committed documents, so a handler sees its own batch's writes.
 */
import { InvalidArgumentError, assert } from '../core/errors.js';
import { DEFAULT_PROJECTION_LIMITS } from '../core/limits.js';
import type { EventView } from '../core/upcast.js';

/** Document types by collection name, e.g. `{ orders: Order; totals: Totals }`. */
export type Collections = Record<string, unknown>;

/**
 * What an update function returns: the new document; `undefined` to keep the one it was given
 * (which it may have changed in place; when there was none, nothing is stored); `null` to
 * delete the document.
 */
export type UpdateResult<D> = D | null | undefined | void;

/** The read model as a handler sees it, inside the transaction of its batch. */
export interface ReadModel<S extends Collections = Record<string, any>> {
  /** The document, with this batch's changes; undefined when there is none. */
  get<C extends keyof S & string>(collection: C, id: string): Promise<S[C] | undefined>;
  /** Stores the document (a JSON value, not null). The store owns it from now on: do not change it later. */
  put<C extends keyof S & string>(collection: C, id: string, doc: S[C]): void;
  delete<C extends keyof S & string>(collection: C, id: string): void;
  /**
   * Changes a document with a function of its current state (undefined when there is none).
   * The function must be synchronous; PostgreSQL runs it when the batch commits, after loading
   * all documents the batch updates in one query, so prefer `update` to `get` + `put` there.
   */
  update<C extends keyof S & string>(collection: C, id: string, fn: (doc: S[C] | undefined) => UpdateResult<S[C]>): void;
}

/** A document and its id, as list and find return them. */
export interface DocumentEntry<D = unknown> {
  id: string;
  doc: D;
}

export interface ListOptions {
  /** Only ids that start with this. */
  prefix?: string;
  /** Continue after this id (exclusive), for paging. */
  after?: string;
  /** @default 100, at most `listLimitMax` (10,000) */
  limit?: number;
}

/** Which copy of the read model a query reads. */
export interface SlotOption {
  /** A slot id (see `catalog`). @default the active slot */
  slot?: string;
}

/** One copy of a projection's read model, and its checkpoint. */
export interface SlotInfo {
  projection: string;
  /** `v<version>`, or `v<version>_<n>` for the n-th build of that version. */
  slot: string;
  /** The projection version that built it. */
  version: number;
  /** Checkpoint: position of the last event applied (0: none yet). */
  position: number;
  /** Commit time of the last event applied, ms since the epoch (0: none yet). */
  eventTimestamp: number;
  createdAt: number;
  updatedAt: number;
}

export interface ProjectionCatalog {
  /** The slot queries read; undefined before the first build started. */
  active: string | undefined;
  slots: SlotInfo[];
}

export interface Checkpoint {
  position: number;
  eventTimestamp: number;
}

export interface CommitResult {
  /** The active slot, read in the same transaction. */
  active: string | undefined;
}

/**
 * A store of read models. Handlers only see `ReadModel`; this is the interface the projection
 * runner and queries use. Every write method is one transaction.
 */
export interface ReadModelStore {
  readonly kind: 'memory' | 'lmdb' | 'postgres' | (string & {});
  /** The projection's slots and which one is active. */
  catalog(projection: string): Promise<ProjectionCatalog>;
  /** Creates an empty slot at checkpoint 0. */
  createSlot(projection: string, slot: string, version: number): Promise<SlotInfo>;
  /** Makes the slot the one queries read, atomically. */
  activate(projection: string, slot: string): Promise<void>;
  /** Deletes a slot that is not active, with its documents. */
  dropSlot(projection: string, slot: string): Promise<void>;
  /** A new, empty batch over the slot. */
  batch(projection: string, slot: string): Batch;
  /**
   * Commits the batch's changes and moves the slot's checkpoint from `from` to `to`, in one
   * transaction. Throws ProjectionConflictError (and commits nothing) when the checkpoint is not
   * at `from` or the slot is gone; rethrows an update function's error as DeferredUpdateError.
   */
  commit(batch: Batch, from: number, to: Checkpoint): Promise<CommitResult>;
  get<D = any>(projection: string, collection: string, id: string, options?: SlotOption): Promise<D | undefined>;
  /** Documents of a collection in id order. */
  list<D = any>(projection: string, collection: string, options?: ListOptions & SlotOption): Promise<Array<DocumentEntry<D>>>;
  /**
   * Documents that contain `where` (PostgreSQL's jsonb `@>`: every field of `where` is in the
   * document with an equal value; arrays in `where` are subsets), in id order.
   */
  find<D = any>(projection: string, collection: string, where: Record<string, unknown>, options?: Omit<ListOptions, 'prefix'> & SlotOption): Promise<Array<DocumentEntry<D>>>;
  count(projection: string, collection: string, options?: SlotOption): Promise<number>;
  close(): Promise<void>;
}

// -------------------------------------------------------------------------------------------
// Names and keys

/**
 * Letters, digits and single '_' between them. No '__' and no trailing '_', so that
 * '<name>__<slot>' (a PostgreSQL table) names one projection and slot only, and never equals a
 * projection's name (its view).
 */
const NAME_RE = /^[A-Za-z](?:_?[A-Za-z0-9])*$/;
/** Projection names become table names in PostgreSQL (63 bytes at most, with the slot suffix). */
export const PROJECTION_NAME_LENGTH_MAX = 40;

export function checkProjectionName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name) || name.length > PROJECTION_NAME_LENGTH_MAX) {
    throw new InvalidArgumentError(
      `a projection name must be 1 to ${PROJECTION_NAME_LENGTH_MAX} letters, digits and single '_' between them, starting with a letter; got ${JSON.stringify(String(name).slice(0, 60))}`,
    );
  }
  return name;
}

const SLOT_RE = /^v[1-9][0-9]{0,8}(_[1-9][0-9]{0,8})?$/;

export function checkSlot(slot: unknown): string {
  if (typeof slot !== 'string' || !SLOT_RE.test(slot)) throw new InvalidArgumentError(`a slot is 'v<version>' or 'v<version>_<n>', got ${JSON.stringify(String(slot).slice(0, 40))}`);
  return slot;
}

export function checkVersion(version: unknown): number {
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1 || version > 999_999_999) {
    throw new InvalidArgumentError(`a projection version must be an integer from 1 to 999,999,999, got ${String(version)}`);
  }
  return version;
}

const COLLECTION_MAX = DEFAULT_PROJECTION_LIMITS.collectionNameLengthMax;
const ID_MAX = DEFAULT_PROJECTION_LIMITS.documentIdLengthMax;

export function checkCollection(collection: unknown): string {
  if (typeof collection !== 'string' || collection.length === 0 || collection.length > COLLECTION_MAX || collection.includes('\u0000')) {
    throw new InvalidArgumentError(`a collection name must be a string of 1 to ${COLLECTION_MAX} characters without NUL, got ${JSON.stringify(String(collection).slice(0, 80))}`);
  }
  return collection;
}

export function checkId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > ID_MAX) {
    throw new InvalidArgumentError(`a document id must be a string of 1 to ${ID_MAX} characters, got ${typeof id === 'string' ? `${id.length} characters` : typeof id}`);
  }
  return id;
}

export function checkListOptions(options: (ListOptions & SlotOption) | undefined, allowPrefix = true): { prefix: string; after: string | undefined; limit: number; slot: string | undefined } {
  const o = options ?? {};
  for (const k of Object.keys(o)) {
    if (k !== 'after' && k !== 'limit' && k !== 'slot' && !(allowPrefix && k === 'prefix')) {
      throw new InvalidArgumentError(`unknown option '${k}'; known: ${allowPrefix ? 'prefix, ' : ''}after, limit, slot`);
    }
  }
  const limit = o.limit ?? 100;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > DEFAULT_PROJECTION_LIMITS.listLimitMax) {
    throw new InvalidArgumentError(`limit must be an integer from 1 to ${DEFAULT_PROJECTION_LIMITS.listLimitMax}, got ${String(limit)}`);
  }
  if (o.after !== undefined && typeof o.after !== 'string') throw new InvalidArgumentError('after must be a string (a document id)');
  if (o.prefix !== undefined && typeof o.prefix !== 'string') throw new InvalidArgumentError('prefix must be a string');
  if (o.slot !== undefined) checkSlot(o.slot);
  return { prefix: o.prefix ?? '', after: o.after, limit, slot: o.slot };
}

export function checkWhere(where: unknown): Record<string, unknown> {
  if (typeof where !== 'object' || where === null || Array.isArray(where)) throw new InvalidArgumentError('find needs an object of fields to match, e.g. { status: "open" }');
  return where as Record<string, unknown>;
}

/** The slot id for a build of `version`: `v2` first, then `v2_2`, `v2_3`, ... */
export function nextSlotId(version: number, existing: Iterable<string>): string {
  const base = `v${version}`;
  let n = 0;
  for (const s of existing) {
    if (s === base) n = Math.max(n, 1);
    else if (s.startsWith(base + '_')) n = Math.max(n, Number(s.slice(base.length + 1)));
  }
  return n === 0 ? base : `${base}_${n + 1}`;
}

// -------------------------------------------------------------------------------------------
// Documents

/**
 * A deep copy of a JSON value. Plain objects and arrays are copied by hand (several times
 * faster than structuredClone for small documents); anything else goes to structuredClone.
 */
export function cloneJson<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    const out = new Array(value.length);
    for (let i = 0; i < value.length; i++) out[i] = cloneJson(value[i]);
    return out as T;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return structuredClone(value);
  const out: Record<string, unknown> = {};
  for (const k in value) out[k] = cloneJson((value as Record<string, unknown>)[k]);
  return out as T;
}

/** Whether `doc` contains `pattern`, as PostgreSQL's jsonb `@>` decides it. */
export function containsJson(doc: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    if (!Array.isArray(doc)) return false;
    return pattern.every((p) => doc.some((d) => containsJson(d, p)));
  }
  if (typeof pattern === 'object' && pattern !== null) {
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return false;
    for (const k of Object.keys(pattern)) {
      if (!Object.prototype.hasOwnProperty.call(doc, k)) return false;
      if (!containsJson((doc as Record<string, unknown>)[k], (pattern as Record<string, unknown>)[k])) return false;
    }
    return true;
  }
  return doc === pattern;
}

// -------------------------------------------------------------------------------------------
// Batches

/** A change that deletes the document. */
export const DELETED: unique symbol = Symbol('deleted');
/** What `readSync` returns when the document must be loaded asynchronously first. */
export const NOT_LOADED: unique symbol = Symbol('not loaded');

type UpdateFn = (doc: unknown) => unknown;

/** Updates of a document not loaded yet (PostgreSQL), applied in order once it is. */
export class PendingUpdates {
  readonly fns: UpdateFn[] = [];
  readonly events: Array<EventView | undefined> = [];
}

/** An update function threw, at commit time or on a later read: names the event that called it. */
export class DeferredUpdateError extends Error {
  readonly event: EventView | undefined;
  constructor(event: EventView | undefined, cause: unknown) {
    super(`an update function threw: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.event = event;
  }
}

/**
 * The changes of one transaction, and the handler-facing `ReadModel` over them. Stores extend
 * it with how to read committed documents.
 */
export abstract class Batch implements ReadModel {
  /** collection -> id -> the document after this batch, DELETED, or PendingUpdates. */
  readonly changes = new Map<string, Map<string, unknown>>();
  /** The event being applied (set by the runner), named when a deferred update fails. */
  event: EventView | undefined = undefined;
  /** Events processed into this batch (applied or skipped). */
  events = 0;
  /** Events a handler was called for. */
  applied = 0;
  /** Position and commit time of the last event processed. */
  lastPosition = 0;
  lastTimestamp = 0;
  /** When the batch's first event was processed (ms, performance.now()). */
  startedAt = 0;

  constructor(
    readonly projection: string,
    readonly slot: string,
  ) {}

  /**
   * The committed document, decoded afresh (a handler may change what it gets without
   * changing the store), undefined when there is none, or NOT_LOADED when it must be loaded
   * with `loadMany` first.
   */
  protected abstract readSync(collection: string, id: string): unknown;

  /** Loads committed documents that `readSync` could not give (PostgreSQL only). */
  protected loadMany(_keys: ReadonlyArray<readonly [string, string]>): Promise<unknown[]> {
    return Promise.reject(new Error('this store reads synchronously'));
  }

  #collection(collection: string): Map<string, unknown> {
    let m = this.changes.get(collection);
    if (m === undefined) {
      checkCollection(collection);
      m = new Map();
      this.changes.set(collection, m);
    }
    return m;
  }

  get(collection: string, id: string): Promise<any> {
    checkId(id);
    const m = this.changes.get(collection);
    const v = m?.get(id);
    if (v !== undefined) {
      if (v === DELETED) return Promise.resolve(undefined);
      if (v instanceof PendingUpdates) return this.#resolve([[collection, id]]).then(() => this.get(collection, id));
      return Promise.resolve(v);
    }
    if (m === undefined) checkCollection(collection);
    const base = this.readSync(collection, id);
    if (base !== NOT_LOADED) return Promise.resolve(base);
    return this.loadMany([[collection, id]]).then(([doc]) => doc);
  }

  put(collection: string, id: string, doc: unknown): void {
    checkId(id);
    if (doc === undefined || doc === null) throw new InvalidArgumentError(`put '${collection}' '${id}': a document must not be ${String(doc)}; use delete to remove one`);
    this.#collection(collection).set(id, doc);
  }

  delete(collection: string, id: string): void {
    checkId(id);
    this.#collection(collection).set(id, DELETED);
  }

  update(collection: string, id: string, fn: (doc: any) => unknown): void {
    checkId(id);
    if (typeof fn !== 'function') throw new InvalidArgumentError('update needs a function of the current document');
    const m = this.#collection(collection);
    let cur = m.get(id);
    if (cur instanceof PendingUpdates) {
      cur.fns.push(fn);
      cur.events.push(this.event);
      return;
    }
    if (cur === undefined) {
      cur = this.readSync(collection, id);
      if (cur === NOT_LOADED) {
        const p = new PendingUpdates();
        p.fns.push(fn);
        p.events.push(this.event);
        m.set(id, p);
        return;
      }
    } else if (cur === DELETED) cur = undefined;
    const next = applyUpdate(fn, cur);
    if (next === null) m.set(id, DELETED);
    else if (next !== undefined) m.set(id, next);
  }

  /** Loads the documents of pending updates (all of them when `keys` is not given) and applies them. */
  async #resolve(keys?: Array<[string, string]>): Promise<void> {
    if (keys === undefined) {
      keys = [];
      for (const [c, m] of this.changes) for (const [id, v] of m) if (v instanceof PendingUpdates) keys.push([c, id]);
    }
    if (keys.length === 0) return;
    const docs = await this.loadMany(keys);
    for (let i = 0; i < keys.length; i++) {
      const [c, id] = keys[i]!;
      const m = this.changes.get(c)!;
      const p = m.get(id);
      assert(p instanceof PendingUpdates, 'a loaded key has pending updates');
      let cur = docs[i];
      for (let j = 0; j < p.fns.length; j++) {
        let next: unknown;
        try {
          next = applyUpdate(p.fns[j]!, cur);
        } catch (err) {
          throw new DeferredUpdateError(p.events[j], err);
        }
        cur = next === null ? undefined : next;
      }
      if (cur === undefined) m.set(id, DELETED);
      else m.set(id, cur);
    }
  }

  /** Applies every pending update (stores call it before they write). */
  resolvePending(): Promise<void> {
    return this.#resolve();
  }

  /** Number of documents changed. */
  get size(): number {
    let n = 0;
    for (const m of this.changes.values()) n += m.size;
    return n;
  }
}

function applyUpdate(fn: (doc: unknown) => unknown, cur: unknown): unknown {
  const r = fn(cur);
  if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') {
    throw new InvalidArgumentError('an update function must be synchronous (it returned a promise)');
  }
  return r === undefined ? cur : r;
}
