/**
 * PostgreSQL through the `postgres` package (porsager), server at 127.0.0.1:5432, user postgres.
 *
 * Each system works in a database of its own, created by `start` and dropped by `stop`, with a
 * table per target. Every connection sets synchronous_commit = on, so a statement's commit
 * returns only after its WAL is flushed (fdatasync, shared by concurrent commits).
 *
 *  - `postgres-events`: an event table. Global order by `position bigserial`, per-stream
 *    `revision`, `unique (stream, revision)`: an append with the wrong expected revision is a
 *    unique violation (23505), which is how optimistic concurrency is done on PostgreSQL.
 *  - `postgres-queue`: a queue table consumed with `FOR UPDATE SKIP LOCKED`: a consumer takes a
 *    batch in a transaction, handles it, deletes it, and the commit is the ack (a consumer that
 *    dies rolls back and the rows come back). For latency the consumer polls every millisecond.
 */
import postgres from 'postgres';
import type { Sql } from 'postgres';
import { LatencyRecorder, makePayload, paced, publishInLanes, readPayload, sleep, waitUntil, withTimeout } from '../common.js';
import { pgrep } from '../procs.js';
import { UnreachableError } from '../types.js';
import type {
  ClientContext,
  ConsumeArgs,
  ConsumeResult,
  LatencyArgs,
  LatencyResult,
  OccArgs,
  OccResult,
  PeerSystem,
  PublishArgs,
  PublishResult,
  ReplayArgs,
  ReplayResult,
  SequentialPublishArgs,
  StartInfo,
  SystemFactory,
  SystemInfo,
  SystemOptions,
  Workload,
} from '../types.js';

const HOST = '127.0.0.1';
const PORT = 5432;
const USER = 'postgres';
const LANES = 16; // transactions in flight per client process, one connection each
const BATCH = 100; // rows per INSERT (one statement, one commit)
const CONSUMERS = 4; // consumer connections
const TAKE = 100; // rows taken per consumer transaction
const REPLAY_PAGE = 10_000;
const POLL_MS = 1; // latency consumer: wait between polls of an empty queue

type Kind = 'events' | 'queue';

function open(url: string, max: number): Sql {
  return postgres(url, {
    max,
    onnotice: () => undefined,
    connection: { synchronous_commit: 'on', application_name: 'eventful-bench-peers' },
  });
}

const table = (name: string): string => `t_${name}`.replace(/[^a-z0-9_]/gi, '_').toLowerCase();

/*
 * Event table
 *   position  global order, assigned at insert (bigserial: not gap-free, and a reader may see
 *             a later position commit before an earlier one; fine for a replay of a quiet table)
 *   stream, revision  unique together: the expected-revision check
 */
const EVENTS_DDL = (t: string): string => `create table ${t} (
  position bigserial primary key,
  stream text not null,
  revision bigint not null,
  type text not null,
  data bytea not null,
  created_at timestamptz not null default now(),
  unique (stream, revision)
)`;

/* Queue table: a row per message; consumers take the lowest ids with SKIP LOCKED and delete them. */
const QUEUE_DDL = (t: string): string => `create table ${t} (
  id bigserial primary key,
  payload bytea not null,
  enqueued_at timestamptz not null default now()
)`;

function infoFor(kind: Kind): SystemInfo {
  const common = ['synchronous_commit = on for every connection (fsync on, the server default wal_sync_method)', 'a database of its own, created for the run and dropped after it'];
  if (kind === 'events') {
    return {
      id: 'postgres-events',
      name: 'PostgreSQL event table',
      family: 'PostgreSQL',
      client: 'postgres 3.4.9',
      syncsBeforeAck: true,
      durability: 'synchronous_commit = on: the commit returns after the WAL flush (fdatasync), shared by concurrent commits',
      configuration: [...common, 'table (position bigserial primary key, stream text, revision bigint, type text, data bytea, created_at timestamptz, unique (stream, revision))'],
      method: {
        publish: `multi-row INSERT of ${BATCH} events (a new stream per batch, revisions 0-${BATCH - 1}), one statement and commit each, ${LANES} in flight per process on ${LANES} connections`,
        replay: `SELECT ... WHERE position > $last ORDER BY position LIMIT ${REPLAY_PAGE.toLocaleString('en-US')} (keyset pages), every payload read`,
        occ: 'INSERT of one event with revision = expected + 1, autocommit; a unique violation (23505) is a conflict: SELECT max(revision) for the stream and retry; 16 connections',
      },
    };
  }
  return {
    id: 'postgres-queue',
    name: 'PostgreSQL SKIP LOCKED queue',
    family: 'PostgreSQL',
    client: 'postgres 3.4.9',
    syncsBeforeAck: true,
    durability: 'synchronous_commit = on: the commit returns after the WAL flush (fdatasync), shared by concurrent commits',
    configuration: [...common, 'table (id bigserial primary key, payload bytea, enqueued_at timestamptz)'],
    method: {
      publish: `multi-row INSERT of ${BATCH} messages, one statement and commit each, ${LANES} in flight per process on ${LANES} connections`,
      consume: `${CONSUMERS} connections, each: BEGIN; DELETE the ${TAKE} lowest ids chosen FOR UPDATE SKIP LOCKED, RETURNING the payloads; handle them; COMMIT (the commit is the ack)`,
      latency: `INSERT of one message per statement (autocommit) on 16 connections; one consumer connection takes batches with the SKIP LOCKED transaction, polling every ${POLL_MS} ms while the queue is empty (LISTEN/NOTIFY could not keep up: see the docs)`,
    },
  };
}

/** What both tables share: the database, the targets and publishing. */
class PostgresSystem implements PeerSystem {
  readonly info: SystemInfo;
  readonly #kind: Kind;
  #admin: Sql | undefined;
  #sql: Sql | undefined;
  #database: string;

  constructor(o: SystemOptions, kind: Kind) {
    this.#kind = kind;
    this.info = infoFor(kind);
    this.#database = `eventful_bench_${o.runId}_${kind}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  }

  async start(): Promise<StartInfo> {
    const admin = open(`postgres://${USER}@${HOST}:${PORT}/postgres`, 1);
    let version: string;
    try {
      version = (await withTimeout(admin`show server_version`, 5000, 'PostgreSQL'))[0]!.server_version as string;
    } catch (err) {
      await admin.end({ timeout: 1 }).catch(() => undefined);
      throw new UnreachableError(`PostgreSQL not reachable at ${HOST}:${PORT} (${err instanceof Error ? err.message : String(err)})`);
    }
    this.#admin = admin;
    await admin.unsafe(`create database ${this.#database}`);
    const url = `postgres://${USER}@${HOST}:${PORT}/${this.#database}`;
    this.#sql = open(url, 2);
    const settings = await this.#sql`select name, setting from pg_settings where name in ('synchronous_commit', 'fsync', 'wal_sync_method', 'commit_delay', 'full_page_writes') order by name`;
    return { url, serverVersion: `PostgreSQL ${version}`, observed: [settings.map((r) => `${r.name as string} = ${r.setting as string}`).join(', ')] };
  }

  async stop(): Promise<void> {
    await this.#sql?.end({ timeout: 5 }).catch(() => undefined);
    this.#sql = undefined;
    if (this.#admin !== undefined) {
      await this.#admin.unsafe(`drop database if exists ${this.#database} with (force)`).catch(() => undefined);
      await this.#admin.end({ timeout: 5 }).catch(() => undefined);
      this.#admin = undefined;
    }
  }

  serverPids(): number[] {
    return pgrep('postgres');
  }

  async createTarget(name: string, _workload: Workload | 'fsync-check'): Promise<void> {
    const t = table(name);
    await this.#sql!.unsafe(`drop table if exists ${t}`);
    await this.#sql!.unsafe(this.#kind === 'events' ? EVENTS_DDL(t) : QUEUE_DDL(t));
  }

  async deleteTarget(name: string): Promise<void> {
    await this.#sql!.unsafe(`drop table if exists ${table(name)}`);
  }

  /** One INSERT of `n` rows, autocommit. */
  protected async insert(sql: Sql, t: string, processIndex: number, first: number, n: number): Promise<void> {
    if (this.#kind === 'events') {
      const stream = `p${processIndex}-${first}`;
      const rows = Array.from({ length: n }, (_, i) => ({ stream, revision: i, type: 'BenchEvent', data: makePayload(processIndex, first + i) }));
      await sql`insert into ${sql(t)} ${sql(rows, 'stream', 'revision', 'type', 'data')}`;
    } else {
      const rows = Array.from({ length: n }, (_, i) => ({ payload: makePayload(processIndex, first + i) }));
      await sql`insert into ${sql(t)} ${sql(rows, 'payload')}`;
    }
  }

  async publish(a: PublishArgs, ctx: ClientContext): Promise<PublishResult> {
    const sql = open(a.url, LANES);
    const t = table(a.target);
    try {
      // Open the pool's connections before the window starts.
      await Promise.all(Array.from({ length: LANES }, () => sql`select 1`));
      return await publishInLanes(a, LANES, BATCH, (_lane, first, n) => this.insert(sql, t, ctx.processIndex, first, n));
    } finally {
      await sql.end({ timeout: 5 });
    }
  }

  async publishSequential(a: SequentialPublishArgs): Promise<PublishResult> {
    const sql = open(a.url, 1);
    const t = table(a.target);
    try {
      let acked = 0;
      while (acked < a.count && Date.now() < a.deadline) {
        await this.insert(sql, t, 0, acked, 1);
        acked++;
      }
      return { acked, ackedInWindow: acked };
    } finally {
      await sql.end({ timeout: 5 });
    }
  }

  /**
   * Takes up to TAKE messages in a transaction and hands each payload to `handle` before the
   * commit; returns how many were taken (0: none left, or all locked by other consumers).
   */
  static async take(sql: Sql, t: string, handle: (payload: Buffer) => void): Promise<number> {
    return sql.begin(async (tx) => {
      const rows = await tx`
        with next as (select id from ${tx(t)} order by id limit ${TAKE} for update skip locked)
        delete from ${tx(t)} q using next where q.id = next.id
        returning q.payload`;
      for (const r of rows) handle(r.payload as Buffer);
      return rows.length;
    });
  }
}

/** The event table: replay by position and optimistic concurrency; it is not a queue. */
class PostgresEvents extends PostgresSystem {
  constructor(o: SystemOptions) {
    super(o, 'events');
  }

  async fillForReplay(a: { url: string; target: string; events: number }, ctx: ClientContext): Promise<number> {
    const sql = open(a.url, 8);
    const t = table(a.target);
    try {
      const r = await publishInLanes({ url: a.url, target: a.target, t0: 0, t1: Infinity, maxMessages: a.events }, 8, 1000, (_lane, first, n) => this.insert(sql, t, ctx.processIndex, first, n));
      return r.acked;
    } finally {
      await sql.end({ timeout: 5 });
    }
  }

  async replay(a: ReplayArgs, ctx: ClientContext): Promise<ReplayResult> {
    const sql = open(a.url, 1);
    const t = table(a.target);
    try {
      await sql`select 1`;
      let read = 0;
      let bytes = 0;
      let outOfOrder = 0;
      let last = 0;
      const t0 = performance.now();
      ctx.mark('start');
      while (read < a.events && Date.now() < a.deadline) {
        const rows = await sql`select position, stream, revision, data from ${sql(t)} where position > ${last} order by position limit ${REPLAY_PAGE}`;
        if (rows.length === 0) break;
        for (const r of rows) {
          const position = Number(r.position);
          const d = r.data as Buffer;
          bytes += d.byteLength;
          if (position <= last || readPayload(d) === undefined) outOfOrder++;
          last = position;
          read++;
        }
      }
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      return { read, bytes, elapsedMs, outOfOrder };
    } finally {
      await sql.end({ timeout: 5 });
    }
  }

  async occ(a: OccArgs, ctx: ClientContext): Promise<OccResult> {
    const sql = open(a.url, 16);
    const t = table(a.target);
    const revisions = new Float64Array(a.streams).fill(-1);
    const body = makePayload(ctx.processIndex, 0);
    let appended = 0;
    let conflicts = 0;
    let failure: unknown;
    try {
      await Promise.all(Array.from({ length: 16 }, () => sql`select 1`));
      await waitUntil(a.t0);
      const lane = async (): Promise<void> => {
        while (failure === undefined && Date.now() < a.t1) {
          const s = Math.floor(Math.random() * a.streams);
          const stream = `${a.target}-${s}`;
          const revision = revisions[s]! + 1;
          try {
            await sql`insert into ${sql(t)} (stream, revision, type, data) values (${stream}, ${revision}, 'BenchEvent', ${body})`;
            revisions[s] = Math.max(revisions[s]!, revision);
            if (Date.now() <= a.t1) appended++;
          } catch (err) {
            if ((err as { code?: string }).code !== '23505') {
              failure ??= err;
              return;
            }
            conflicts++;
            const [row] = await sql`select coalesce(max(revision), -1) as r from ${sql(t)} where stream = ${stream}`;
            revisions[s] = Number(row!.r);
          }
        }
      };
      await Promise.all(Array.from({ length: a.concurrency }, () => lane()));
      if (failure !== undefined) throw failure;
      return { appended, conflicts };
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
}

/** The SKIP LOCKED queue table: consume and latency; it keeps nothing to replay. */
class PostgresQueue extends PostgresSystem {
  constructor(o: SystemOptions) {
    super(o, 'queue');
  }

  async consume(a: ConsumeArgs, ctx: ClientContext): Promise<ConsumeResult> {
    const sql = open(a.url, CONSUMERS);
    const t = table(a.target);
    try {
      await Promise.all(Array.from({ length: CONSUMERS }, () => sql`select 1`));
      let consumed = 0;
      const t0 = performance.now();
      ctx.mark('start');
      const worker = async (): Promise<void> => {
        while (consumed < a.expected && Date.now() < a.deadline) {
          const n = await PostgresSystem.take(sql, t, () => undefined);
          consumed += n;
          if (n === 0) await sleep(1);
        }
      };
      await withTimeout(Promise.all(Array.from({ length: CONSUMERS }, worker)), Math.max(1000, a.deadline - Date.now() + 5000), `consume of ${a.expected} rows`);
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      return { consumed, elapsedMs };
    } finally {
      await sql.end({ timeout: 5 });
    }
  }

  async latency(a: LatencyArgs): Promise<LatencyResult> {
    const producer = open(a.url, 16);
    const consumer = open(a.url, 1);
    const t = table(a.target);
    const warmup = Math.round(a.ratePerS * a.warmupS);
    const total = warmup + Math.round(a.ratePerS * a.seconds);
    const rec = new LatencyRecorder(warmup, total);
    let failure: unknown;
    let stopped = false;
    try {
      await Promise.all([...Array.from({ length: 16 }, () => producer`select 1`), consumer`select 1`]);
      // Poll: take what is there; when nothing is, wait POLL_MS and look again. (LISTEN/NOTIFY
      // instead: a NOTIFY in every insert serializes the commits on the notify queue's lock, and
      // the inserts fell behind 5,000/s on this machine; see docs/benchmarks.md.)
      const loop = (async () => {
        while (!stopped) {
          const n = await PostgresSystem.take(consumer, t, (p) => rec.delivered(p));
          if (n === 0) await sleep(POLL_MS);
        }
      })().catch((e: unknown) => (failure ??= e));
      await waitUntil(a.t0);
      const achievedRatePerS = await paced(a.ratePerS, a.seconds + a.warmupS, (seq) => {
        const sentAt = performance.now();
        producer`insert into ${producer(t)} (payload) values (${makePayload(0, seq, sentAt)})`.then(
          () => rec.acked(seq, sentAt),
          (e: unknown) => (failure ??= e),
        );
      });
      await Promise.race([rec.all, sleep(15_000)]);
      stopped = true;
      await Promise.race([loop, sleep(2000)]);
      if (failure !== undefined) throw failure;
      return { ...rec.sorted(), sent: total, received: rec.received, achievedRatePerS };
    } finally {
      stopped = true;
      await Promise.allSettled([producer.end({ timeout: 5 }), consumer.end({ timeout: 5 })]);
    }
  }

}

export const postgresSystems: SystemFactory = (o) => [new PostgresEvents(o), new PostgresQueue(o)];
