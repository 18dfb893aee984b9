/**
 * The LMDB read-model store: documents in a directory on local disk, read synchronously
 * (hundreds of thousands of gets a second), written one transaction per batch.
 *
 * On-disk layout (one LMDB environment in `dir`):
 *
 *   projections          key 'slot\0<projection>\0<slot>' -> { version, position, eventTimestamp,
 *                                                            createdAt, updatedAt }
 *                        key 'active\0<projection>'       -> slot id
 *   p:<projection>:<slot>  one database per slot: key '<collection>\0<id>' -> document (msgpack)
 *
 * Collection names hold no NUL, so a collection's documents are the keys from '<collection>\0'
 * (inclusive) to '<collection>\x01' (exclusive), in id order.
 *
 * Invariant: a slot's documents and its checkpoint (the `position` in its `projections` entry)
 * change in the same LMDB transaction (`transactionSync`, which aborts on any throw), so after
 * a crash of the process or the machine they agree: the documents hold exactly the events up to
 * the checkpoint. A machine crash may lose the last commits, together with their checkpoint;
 * they are applied again from the log. (With `sync: false`, see the option.)
 *
 * Concurrency: LMDB allows one writer at a time, across processes too; each commit re-reads the
 * checkpoint inside its write transaction and refuses to commit when another runner moved it.
 * Reads never block and see the last committed state.
 */
import fs from 'node:fs';
import { open } from 'lmdb';
import type { Database, RootDatabase } from 'lmdb';
import { InvalidArgumentError, ProjectionConflictError } from '../core/errors.js';
import {
  Batch,
  DELETED,
  checkCollection,
  checkId,
  checkListOptions,
  checkProjectionName,
  checkSlot,
  checkVersion,
  checkWhere,
  containsJson,
} from './read-model.js';
import type { Checkpoint, CommitResult, DocumentEntry, ListOptions, ProjectionCatalog, ReadModelStore, SlotInfo, SlotOption } from './read-model.js';

export interface LmdbReadModelStoreOptions {
  /** Directory of the LMDB environment; created when missing. */
  dir: string;
  /**
   * Sync commits to disk (LMDB's overlapping sync: the flush runs after the commit, off the
   * write lock). A power loss can then take the last commits, never half of one: documents and
   * checkpoint go together, and the lost events are applied again. `false` skips syncing (LMDB
   * `noSync`): faster, safe against a crash of the process, but after a crash of the machine
   * the directory may be lost or corrupt and the read model must be rebuilt. @default true
   */
  sync?: boolean;
  /** Slots that can exist at once, across all projections (LMDB named databases). @default 254 */
  slotsMax?: number;
  /** Largest size the data file may grow to, in bytes. @default LMDB's default (grows as needed) */
  mapSize?: number;
}

interface SlotRecord {
  version: number;
  position: number;
  eventTimestamp: number;
  createdAt: number;
  updatedAt: number;
}

const OPTION_KEYS = ['dir', 'sync', 'slotsMax', 'mapSize'];

const slotKey = (projection: string, slot: string): string => `slot\u0000${projection}\u0000${slot}`;
const activeKey = (projection: string): string => `active\u0000${projection}`;
const docKey = (collection: string, id: string): string => `${collection}\u0000${id}`;

class LmdbBatch extends Batch {
  constructor(
    projection: string,
    slot: string,
    readonly db: Database<unknown, string>,
  ) {
    super(projection, slot);
  }

  protected readSync(collection: string, id: string): unknown {
    return this.db.get(docKey(collection, id));
  }
}

export class LmdbReadModelStore implements ReadModelStore {
  readonly kind = 'lmdb';
  readonly dir: string;
  readonly #env: RootDatabase;
  readonly #meta: Database<SlotRecord | string, string>;
  readonly #dbs = new Map<string, Database<unknown, string>>();
  #closed = false;

  private constructor(dir: string, env: RootDatabase) {
    this.dir = dir;
    this.#env = env;
    this.#meta = env.openDB<SlotRecord | string, string>({ name: 'projections', encoding: 'msgpack' });
  }

  static open(options: LmdbReadModelStoreOptions): LmdbReadModelStore {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('openLmdbReadModelStore needs { dir }');
    for (const k of Object.keys(options)) if (!OPTION_KEYS.includes(k)) throw new InvalidArgumentError(`unknown option '${k}'; known: ${OPTION_KEYS.join(', ')}`);
    if (typeof options.dir !== 'string' || options.dir.length === 0) throw new InvalidArgumentError('dir must be a directory path');
    const slotsMax = options.slotsMax ?? 254;
    if (!Number.isSafeInteger(slotsMax) || slotsMax < 1 || slotsMax > 10_000) throw new InvalidArgumentError('slotsMax must be an integer from 1 to 10,000');
    fs.mkdirSync(options.dir, { recursive: true });
    const env = open({
      path: options.dir,
      maxDbs: slotsMax + 2,
      noSync: options.sync === false,
      ...(options.mapSize !== undefined ? { mapSize: options.mapSize } : {}),
    });
    return new LmdbReadModelStore(options.dir, env);
  }

  #check(): void {
    if (this.#closed) throw new InvalidArgumentError('the read-model store is closed');
  }

  #db(projection: string, slot: string): Database<unknown, string> {
    const name = `p:${projection}:${slot}`;
    let db = this.#dbs.get(name);
    if (db === undefined) {
      db = this.#env.openDB<unknown, string>({ name, encoding: 'msgpack' });
      this.#dbs.set(name, db);
    }
    return db;
  }

  #record(projection: string, slot: string): SlotRecord | undefined {
    return this.#meta.get(slotKey(projection, slot)) as SlotRecord | undefined;
  }

  async catalog(projection: string): Promise<ProjectionCatalog> {
    this.#check();
    checkProjectionName(projection);
    const prefix = slotKey(projection, '');
    const slots: SlotInfo[] = [];
    for (const { key, value } of this.#meta.getRange({ start: prefix, end: `slot\u0000${projection}\u0001` })) {
      const r = value as SlotRecord;
      slots.push({ projection, slot: key.slice(prefix.length), ...r });
    }
    const active = this.#meta.get(activeKey(projection));
    return { active: typeof active === 'string' ? active : undefined, slots };
  }

  async createSlot(projection: string, slot: string, version: number): Promise<SlotInfo> {
    this.#check();
    checkProjectionName(projection);
    checkSlot(slot);
    checkVersion(version);
    const now = Date.now();
    const record: SlotRecord = { version, position: 0, eventTimestamp: 0, createdAt: now, updatedAt: now };
    const db = this.#db(projection, slot);
    this.#env.transactionSync(() => {
      if (this.#record(projection, slot) !== undefined) throw new InvalidArgumentError(`projection '${projection}' already has a slot '${slot}'`);
      // A database left behind by a drop that did not finish: start empty.
      db.clearSync();
      this.#meta.putSync(slotKey(projection, slot), record);
    });
    return { projection, slot, ...record };
  }

  async activate(projection: string, slot: string): Promise<void> {
    this.#check();
    checkProjectionName(projection);
    this.#env.transactionSync(() => {
      if (this.#record(projection, slot) === undefined) throw new InvalidArgumentError(`projection '${projection}' has no slot '${slot}'`);
      this.#meta.putSync(activeKey(projection), slot);
    });
  }

  async dropSlot(projection: string, slot: string): Promise<void> {
    this.#check();
    checkProjectionName(projection);
    const db = this.#db(projection, slot);
    this.#env.transactionSync(() => {
      if (this.#meta.get(activeKey(projection)) === slot) throw new InvalidArgumentError(`slot '${slot}' of projection '${projection}' is active; activate another before dropping it`);
      this.#meta.removeSync(slotKey(projection, slot));
      db.dropSync();
    });
    this.#dbs.delete(`p:${projection}:${slot}`);
  }

  batch(projection: string, slot: string): Batch {
    this.#check();
    return new LmdbBatch(projection, slot, this.#db(projection, slot));
  }

  async commit(batch: Batch, from: number, to: Checkpoint): Promise<CommitResult> {
    this.#check();
    if (!(batch instanceof LmdbBatch)) throw new InvalidArgumentError('this batch belongs to another store');
    const { projection, slot, db } = batch;
    let active: string | undefined;
    this.#env.transactionSync(() => {
      // Read inside the write transaction: no other writer can move it until we commit.
      const r = this.#record(projection, slot);
      if (r === undefined) throw new ProjectionConflictError(`projection '${projection}' slot '${slot}' was dropped`, { projection, slot, reason: 'slot_dropped' });
      if (r.position !== from) {
        throw new ProjectionConflictError(`projection '${projection}' slot '${slot}' is at position ${r.position}, not ${from}: another runner committed`, {
          projection,
          slot,
          reason: 'checkpoint_moved',
          expected: from,
          actual: r.position,
        });
      }
      for (const [collection, changes] of batch.changes) {
        for (const [id, v] of changes) {
          if (v === DELETED) db.removeSync(docKey(collection, id));
          else db.putSync(docKey(collection, id), v);
        }
      }
      this.#meta.putSync(slotKey(projection, slot), { ...r, position: to.position, eventTimestamp: to.eventTimestamp, updatedAt: Date.now() });
      const a = this.#meta.get(activeKey(projection));
      active = typeof a === 'string' ? a : undefined;
    });
    return { active };
  }

  #readDb(projection: string, slot: string | undefined): Database<unknown, string> | undefined {
    this.#check();
    checkProjectionName(projection);
    const id = slot ?? this.#meta.get(activeKey(projection));
    if (typeof id !== 'string' || this.#record(projection, id) === undefined) return undefined;
    return this.#db(projection, id);
  }

  async get<D = any>(projection: string, collection: string, id: string, options?: SlotOption): Promise<D | undefined> {
    checkCollection(collection);
    checkId(id);
    return this.#readDb(projection, options?.slot)?.get(docKey(collection, id)) as D | undefined;
  }

  async list<D = any>(projection: string, collection: string, options?: ListOptions & SlotOption): Promise<Array<DocumentEntry<D>>> {
    checkCollection(collection);
    const o = checkListOptions(options);
    return this.#scan<D>(projection, collection, o, o.prefix, undefined);
  }

  async find<D = any>(projection: string, collection: string, where: Record<string, unknown>, options?: Omit<ListOptions, 'prefix'> & SlotOption): Promise<Array<DocumentEntry<D>>> {
    checkCollection(collection);
    checkWhere(where);
    const o = checkListOptions(options, false);
    return this.#scan<D>(projection, collection, o, '', where);
  }

  #scan<D>(projection: string, collection: string, o: { after: string | undefined; limit: number; slot: string | undefined }, prefix: string, where: Record<string, unknown> | undefined): Array<DocumentEntry<D>> {
    const db = this.#readDb(projection, o.slot);
    if (db === undefined) return [];
    const head = `${collection}\u0000`;
    // The smallest key after `after` is `after` + NUL.
    const start = o.after !== undefined && o.after >= prefix ? head + o.after + '\u0000' : head + prefix;
    const out: Array<DocumentEntry<D>> = [];
    for (const { key, value } of db.getRange({ start, end: `${collection}\u0001` })) {
      const id = key.slice(head.length);
      if (!id.startsWith(prefix)) break;
      if (where !== undefined && !containsJson(value, where)) continue;
      out.push({ id, doc: value as D });
      if (out.length >= o.limit) break;
    }
    return out;
  }

  async count(projection: string, collection: string, options?: SlotOption): Promise<number> {
    checkCollection(collection);
    const db = this.#readDb(projection, options?.slot);
    return db === undefined ? 0 : db.getKeysCount({ start: `${collection}\u0000`, end: `${collection}\u0001` });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#env.close();
  }
}

/** Opens (or creates) an LMDB read-model store in a directory. */
export function openLmdbReadModelStore(options: LmdbReadModelStoreOptions): LmdbReadModelStore {
  return LmdbReadModelStore.open(options);
}
