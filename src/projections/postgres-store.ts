/**
 * The PostgreSQL read-model store (with the `postgres` package): documents as jsonb rows, one
 * table per projection slot, in a schema of their own.
 *
 * Tables, in `<schema>` (default `eventful_projections`):
 *
 *   _slots    (projection, slot) primary key, version, position, event_timestamp, created_at,
 *             updated_at: one row per slot; `position` is its checkpoint.
 *   _active   projection primary key, slot: the slot queries read.
 *   "<projection>__<slot>"  (collection, id) primary key, doc jsonb: one slot's documents
 *             (e.g. "orders__v2").
 *             `collection` and `id` use the "C" collation, so id order is byte order, as in
 *             the other stores.
 *   "<projection>"          a view of the active slot's table, redefined in the transaction
 *             that moves `_active`: query it with SQL to read the live read model.
 *
 * Invariant: a batch's rows and its checkpoint are written in one SQL transaction, so the table
 * holds exactly the events up to the checkpoint, whatever crashes.
 *
 * Concurrency: a commit locks its `_slots` row (SELECT ... FOR UPDATE) before it writes, and
 * refuses to commit if the checkpoint is not where its runner left it; two runners of one slot
 * therefore never both apply a batch.
 *
 * Cost: a commit is two round trips (lock and check; then the writes, pipelined), whatever the
 * batch size. Documents changed with `update` are loaded for the whole batch in one query at
 * commit; a `get` inside a handler is a round trip (cached for the rest of the batch).
 */
import postgres from 'postgres';
import type { Sql, TransactionSql } from 'postgres';
import { InvalidArgumentError, ProjectionConflictError } from '../core/errors.js';
import {
  Batch,
  DELETED,
  NOT_LOADED,
  checkCollection,
  checkId,
  checkListOptions,
  checkProjectionName,
  checkSlot,
  checkVersion,
  checkWhere,
} from './read-model.js';
import type { Checkpoint, CommitResult, DocumentEntry, ListOptions, ProjectionCatalog, ReadModelStore, SlotInfo, SlotOption } from './read-model.js';

export const DEFAULT_PROJECTION_SCHEMA = 'eventful_projections';

export interface PostgresReadModelStoreOptions {
  /** A `postgres` instance to use; its owner closes it. Give this or `url`. */
  sql?: Sql;
  /** A connection URL (postgres://user@host:port/db); the store opens and closes its own pool. */
  url?: string;
  /** Options of the pool opened for `url` (see the `postgres` package). @default { max: 4 } */
  connection?: postgres.Options<Record<string, postgres.PostgresType>>;
  /** Schema of the tables; created when missing. @default 'eventful_projections' */
  schema?: string;
}

const OPTION_KEYS = ['sql', 'url', 'connection', 'schema'];
const SCHEMA_RE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

const UNDEFINED_TABLE = '42P01';

class PostgresBatch extends Batch {
  /** Committed documents read during this batch, as JSON text (parsed afresh on each read). */
  readonly cache = new Map<string, string | null>();

  constructor(
    projection: string,
    slot: string,
    readonly store: PostgresReadModelStore,
  ) {
    super(projection, slot);
  }

  protected readSync(collection: string, id: string): unknown {
    const t = this.cache.get(`${collection}\u0000${id}`);
    if (t === undefined) return NOT_LOADED;
    return t === null ? undefined : JSON.parse(t);
  }

  protected override async loadMany(keys: ReadonlyArray<readonly [string, string]>): Promise<unknown[]> {
    const found = await this.store.loadTexts(this.projection, this.slot, keys);
    return keys.map(([c, id]) => {
      const k = `${c}\u0000${id}`;
      const t = found.get(k) ?? null;
      this.cache.set(k, t);
      return t === null ? undefined : JSON.parse(t);
    });
  }
}

export class PostgresReadModelStore implements ReadModelStore {
  readonly kind = 'postgres';
  readonly schema: string;
  readonly sql: Sql;
  readonly #owned: boolean;
  #ready: Promise<void> | undefined;
  #closed = false;

  constructor(options: PostgresReadModelStoreOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('openPostgresReadModelStore needs { url } or { sql }');
    for (const k of Object.keys(options)) if (!OPTION_KEYS.includes(k)) throw new InvalidArgumentError(`unknown option '${k}'; known: ${OPTION_KEYS.join(', ')}`);
    const schema = options.schema ?? DEFAULT_PROJECTION_SCHEMA;
    if (typeof schema !== 'string' || !SCHEMA_RE.test(schema)) throw new InvalidArgumentError(`schema must be 1 to 63 letters, digits and '_', not starting with a digit; got ${JSON.stringify(schema)}`);
    this.schema = schema;
    if (options.sql !== undefined) {
      if (options.url !== undefined || options.connection !== undefined) throw new InvalidArgumentError('give sql, or url (with connection options), not both');
      this.sql = options.sql;
      this.#owned = false;
    } else {
      if (typeof options.url !== 'string') throw new InvalidArgumentError('give url (postgres://...) or a postgres instance as sql');
      this.sql = postgres(options.url, { max: 4, onnotice: () => {}, ...options.connection });
      this.#owned = true;
    }
  }

  /** Creates the schema and the catalog tables once. */
  #init(): Promise<void> {
    this.#check();
    return (this.#ready ??= this.#createCatalog().catch((err) => {
      this.#ready = undefined;
      throw err;
    }));
  }

  async #createCatalog(): Promise<void> {
    const s = this.sql(this.schema);
    // Inputs: none. Creates what is missing; NOTICEs of "already exists" are silenced.
    await this.sql.begin(async (tx) => {
      await tx`set local client_min_messages = warning`;
      await tx`create schema if not exists ${s}`;
      await tx`create table if not exists ${s}._slots (
        projection text not null,
        slot text not null,
        version integer not null,
        position bigint not null,
        event_timestamp bigint not null,
        created_at bigint not null,
        updated_at bigint not null,
        primary key (projection, slot))`;
      await tx`create table if not exists ${s}._active (projection text primary key, slot text not null)`;
    });
  }

  #check(): void {
    if (this.#closed) throw new InvalidArgumentError('the read-model store is closed');
  }

  #table(projection: string, slot: string): postgres.Helper<string> {
    return this.sql(`${projection}__${slot}`);
  }

  async catalog(projection: string): Promise<ProjectionCatalog> {
    checkProjectionName(projection);
    await this.#init();
    const s = this.sql(this.schema);
    // Inputs: projection. Outputs: its slots with their checkpoints, and the active slot. No locks.
    const [rows, active] = await Promise.all([
      this.sql<Array<{ slot: string; version: number; position: number; event_timestamp: number; created_at: number; updated_at: number }>>`
        select slot, version, position::float8 as position, event_timestamp::float8 as event_timestamp,
               created_at::float8 as created_at, updated_at::float8 as updated_at
        from ${s}._slots where projection = ${projection} order by slot`,
      this.sql<Array<{ slot: string }>>`select slot from ${s}._active where projection = ${projection}`,
    ]);
    return {
      active: active[0]?.slot,
      slots: rows.map((r) => ({ projection, slot: r.slot, version: r.version, position: r.position, eventTimestamp: r.event_timestamp, createdAt: r.created_at, updatedAt: r.updated_at })),
    };
  }

  async createSlot(projection: string, slot: string, version: number): Promise<SlotInfo> {
    checkProjectionName(projection);
    checkSlot(slot);
    checkVersion(version);
    await this.#init();
    const s = this.sql(this.schema);
    const now = Date.now();
    // Inputs: projection, slot, version. Creates the slot's table and its row at checkpoint 0,
    // in one transaction (DDL is transactional in PostgreSQL).
    await this.sql.begin(async (tx) => {
      await tx`set local client_min_messages = warning`;
      const [exists] = await tx`select 1 from ${s}._slots where projection = ${projection} and slot = ${slot}`;
      if (exists) throw new InvalidArgumentError(`projection '${projection}' already has a slot '${slot}'`);
      // A table left behind by an interrupted drop: start empty.
      await tx`drop table if exists ${s}.${this.#table(projection, slot)}`;
      await tx`create table ${s}.${this.#table(projection, slot)} (
        collection text collate "C" not null,
        id text collate "C" not null,
        doc jsonb not null,
        primary key (collection, id))`;
      await tx`insert into ${s}._slots (projection, slot, version, position, event_timestamp, created_at, updated_at)
               values (${projection}, ${slot}, ${version}, 0, 0, ${now}, ${now})`;
    });
    return { projection, slot, version, position: 0, eventTimestamp: 0, createdAt: now, updatedAt: now };
  }

  async activate(projection: string, slot: string): Promise<void> {
    checkProjectionName(projection);
    checkSlot(slot);
    await this.#init();
    const s = this.sql(this.schema);
    // The pointer and the view move together: a reader sees the old slot or the new, whole.
    await this.sql.begin(async (tx) => {
      await tx`set local client_min_messages = warning`;
      const [exists] = await tx`select 1 from ${s}._slots where projection = ${projection} and slot = ${slot} for update`;
      if (!exists) throw new InvalidArgumentError(`projection '${projection}' has no slot '${slot}'`);
      await tx`insert into ${s}._active (projection, slot) values (${projection}, ${slot})
               on conflict (projection) do update set slot = excluded.slot`;
      await tx`create or replace view ${s}.${this.sql(projection)} as select collection, id, doc from ${s}.${this.#table(projection, slot)}`;
    });
  }

  async dropSlot(projection: string, slot: string): Promise<void> {
    checkProjectionName(projection);
    checkSlot(slot);
    await this.#init();
    const s = this.sql(this.schema);
    // Inputs: projection, slot. Locks the projection's _active row so the slot cannot become
    // active meanwhile; deletes the slot's row and drops its table together.
    await this.sql.begin(async (tx) => {
      await tx`set local client_min_messages = warning`;
      const [active] = await tx`select slot from ${s}._active where projection = ${projection} for update`;
      if (active?.slot === slot) throw new InvalidArgumentError(`slot '${slot}' of projection '${projection}' is active; activate another before dropping it`);
      await tx`delete from ${s}._slots where projection = ${projection} and slot = ${slot}`;
      await tx`drop table if exists ${s}.${this.#table(projection, slot)}`;
    });
  }

  batch(projection: string, slot: string): Batch {
    this.#check();
    return new PostgresBatch(projection, slot, this);
  }

  /**
   * Committed documents as JSON text, by '<collection>\0<id>'.
   * Inputs: one jsonb array of [collection, id] pairs. Locking: none (a plain read).
   */
  async loadTexts(projection: string, slot: string, keys: ReadonlyArray<readonly [string, string]>, tx: Sql | TransactionSql = this.sql): Promise<Map<string, string>> {
    await this.#init();
    const s = this.sql(this.schema);
    const out = new Map<string, string>();
    if (keys.length === 0) return out;
    const rows = await tx<Array<{ c: string; id: string; doc: string }>>`
      select t.collection as c, t.id, t.doc::text as doc
      from jsonb_array_elements(${JSON.stringify(keys)}::text::jsonb) k
      join ${s}.${this.#table(projection, slot)} t on t.collection = k->>0 and t.id = k->>1`;
    for (const r of rows) out.set(`${r.c}\u0000${r.id}`, r.doc);
    return out;
  }

  async commit(batch: Batch, from: number, to: Checkpoint): Promise<CommitResult> {
    if (!(batch instanceof PostgresBatch) || batch.store !== this) throw new InvalidArgumentError('this batch belongs to another store');
    await this.#init();
    const { projection, slot } = batch;
    // Update functions run here, before the transaction: one query loads what they need.
    await batch.resolvePending();
    const upserts: Array<[string, string, unknown]> = [];
    const deletes: Array<[string, string]> = [];
    for (const [collection, changes] of batch.changes) {
      for (const [id, v] of changes) {
        if (v === DELETED) deletes.push([collection, id]);
        else upserts.push([collection, id, v]);
      }
    }
    // Serialised before the transaction: a document JSON cannot hold fails here, having written nothing.
    const upsertJson = upserts.length > 0 ? JSON.stringify(upserts) : undefined;
    const deleteJson = deletes.length > 0 ? JSON.stringify(deletes) : undefined;
    const s = this.sql(this.schema);
    const table = this.#table(projection, slot);
    const now = Date.now();
    return this.sql.begin(async (tx) => {
      // Inputs: projection, slot. Locks the slot's row until commit, so runners of the same slot
      // take turns; a moved checkpoint means another runner applied these events.
      const [row] = await tx<Array<{ position: number }>>`
        select position::float8 as position from ${s}._slots where projection = ${projection} and slot = ${slot} for update`;
      if (row === undefined) throw new ProjectionConflictError(`projection '${projection}' slot '${slot}' was dropped`, { projection, slot, reason: 'slot_dropped' });
      if (row.position !== from) {
        throw new ProjectionConflictError(`projection '${projection}' slot '${slot}' is at position ${row.position}, not ${from}: another runner committed`, {
          projection,
          slot,
          reason: 'checkpoint_moved',
          expected: from,
          actual: row.position,
        });
      }
      const writes: Array<Promise<unknown>> = [];
      // Inputs: a jsonb array of [collection, id, doc]. Writes every changed document in one statement.
      if (upsertJson !== undefined) {
        writes.push(tx`
          insert into ${s}.${table} (collection, id, doc)
          select d->>0, d->>1, d->2 from jsonb_array_elements(${upsertJson}::text::jsonb) d
          on conflict (collection, id) do update set doc = excluded.doc`);
      }
      // Inputs: a jsonb array of [collection, id].
      if (deleteJson !== undefined) {
        writes.push(tx`
          delete from ${s}.${table} t using jsonb_array_elements(${deleteJson}::text::jsonb) d
          where t.collection = d->>0 and t.id = d->>1`);
      }
      writes.push(tx`
        update ${s}._slots set position = ${to.position}, event_timestamp = ${to.eventTimestamp}, updated_at = ${now}
        where projection = ${projection} and slot = ${slot}`);
      const active = tx<Array<{ slot: string }>>`select slot from ${s}._active where projection = ${projection}`;
      writes.push(active);
      await Promise.all(writes);
      return { active: (await active)[0]?.slot };
    }) as Promise<CommitResult>;
  }

  /** The table a query reads: the slot's, or the view of the active one. */
  #source(projection: string, slot: string | undefined): postgres.Helper<string> {
    checkProjectionName(projection);
    return slot === undefined ? this.sql(projection) : this.#table(projection, checkSlot(slot));
  }

  async #query<T>(run: () => Promise<T>, empty: T): Promise<T> {
    await this.#init();
    try {
      return await run();
    } catch (err) {
      // No view yet (never activated) or no such slot: an empty read model.
      if ((err as { code?: string }).code === UNDEFINED_TABLE) return empty;
      throw err;
    }
  }

  async get<D = any>(projection: string, collection: string, id: string, options?: SlotOption): Promise<D | undefined> {
    checkCollection(collection);
    checkId(id);
    const s = this.sql(this.schema);
    const src = this.#source(projection, options?.slot);
    return this.#query(async () => {
      // Inputs: collection, id. Output: the document as JSON text (parsed here). Primary key lookup.
      const [row] = await this.sql<Array<{ doc: string }>>`select doc::text as doc from ${s}.${src} where collection = ${collection} and id = ${id}`;
      return row === undefined ? undefined : (JSON.parse(row.doc) as D);
    }, undefined);
  }

  async list<D = any>(projection: string, collection: string, options?: ListOptions & SlotOption): Promise<Array<DocumentEntry<D>>> {
    checkCollection(collection);
    const o = checkListOptions(options);
    const s = this.sql(this.schema);
    const src = this.#source(projection, o.slot);
    const after = o.after !== undefined && o.after >= o.prefix ? o.after : undefined;
    return this.#query(async () => {
      // Inputs: collection, prefix, after, limit. A range of the primary key, in id order ("C" collation).
      const rows = await this.sql<Array<{ id: string; doc: string }>>`
        select id, doc::text as doc from ${s}.${src}
        where collection = ${collection}
          ${o.prefix !== '' ? this.sql`and id >= ${o.prefix} and starts_with(id, ${o.prefix})` : this.sql``}
          ${after !== undefined ? this.sql`and id > ${after}` : this.sql``}
        order by id limit ${o.limit}`;
      return rows.map((r) => ({ id: r.id, doc: JSON.parse(r.doc) as D }));
    }, []);
  }

  async find<D = any>(projection: string, collection: string, where: Record<string, unknown>, options?: Omit<ListOptions, 'prefix'> & SlotOption): Promise<Array<DocumentEntry<D>>> {
    checkCollection(collection);
    checkWhere(where);
    const o = checkListOptions(options, false);
    const s = this.sql(this.schema);
    const src = this.#source(projection, o.slot);
    return this.#query(async () => {
      // Inputs: collection, a jsonb pattern, after, limit. Scans the collection in id order (add a
      // GIN index on doc to the slot's table for large collections).
      const rows = await this.sql<Array<{ id: string; doc: string }>>`
        select id, doc::text as doc from ${s}.${src}
        where collection = ${collection} and doc @> ${JSON.stringify(where)}::text::jsonb
          ${o.after !== undefined ? this.sql`and id > ${o.after}` : this.sql``}
        order by id limit ${o.limit}`;
      return rows.map((r) => ({ id: r.id, doc: JSON.parse(r.doc) as D }));
    }, []);
  }

  async count(projection: string, collection: string, options?: SlotOption): Promise<number> {
    checkCollection(collection);
    const s = this.sql(this.schema);
    const src = this.#source(projection, options?.slot);
    return this.#query(async () => {
      const [row] = await this.sql<Array<{ n: number }>>`select count(*)::float8 as n from ${s}.${src} where collection = ${collection}`;
      return row!.n;
    }, 0);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#owned) await this.sql.end({ timeout: 5 });
  }
}

/** A PostgreSQL read-model store. The schema and its tables are created on first use. */
export function openPostgresReadModelStore(options: PostgresReadModelStoreOptions): PostgresReadModelStore {
  return new PostgresReadModelStore(options);
}
