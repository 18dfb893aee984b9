/**
 * Redis Streams through ioredis, Redis at 127.0.0.1:6379.
 *
 * Durability: for the run, the AOF is switched on with `appendfsync always` (CONFIG SET): Redis
 * then writes and fdatasyncs the AOF in its event loop before it sends the replies of the
 * commands that loop iteration ran, so a pipeline of XADDs shares one sync (group commit). The
 * previous `appendonly` and `appendfsync` are read first and set back in `stop`, which the
 * harness calls on success, failure and interrupt alike. Before AOF is switched back off, the
 * run's keys are deleted and the AOF rewritten, so it does not keep the benchmark's data; an
 * AOF directory that did not exist before the run is removed once AOF is off again.
 *
 * A queue is a stream with a consumer group (XREADGROUP, XACK); replay is XRANGE in pages.
 * Redis Streams cannot check an expected revision, so there is no `occ`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { LatencyRecorder, makePayload, paced, publishInLanes, readPayload, sleep, waitUntil, withTimeout } from '../common.js';
import { pgrep } from '../procs.js';
import { UnreachableError } from '../types.js';
import type {
  ClientContext,
  ConsumeArgs,
  ConsumeResult,
  LatencyArgs,
  LatencyResult,
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
const PORT = 6379;
const LANES = 16; // pipelines in flight per client process
const BATCH = 100; // XADDs per pipeline
const READ_COUNT = 1000; // entries per XREADGROUP
const REPLAY_PAGE = 10_000; // entries per XRANGE
const GROUP = 'bench';

type Entries = Array<[Buffer, Buffer[]]>;

/**
 * The entries of a one-stream XREADGROUP reply. RESP2 answers [[key, entries]]; RESP3 (which
 * ioredis 6 speaks when the server has it) answers a map, which ioredis hands over as
 * [key, entries].
 */
function entriesOf(reply: unknown): Entries {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  if (Buffer.isBuffer(reply[0])) return (reply[1] as Entries | undefined) ?? [];
  return ((reply[0] as [Buffer, Entries])[1] as Entries | undefined) ?? [];
}

const open = (url: string): Redis => new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 5000, lazyConnect: false });

async function waitForAofIdle(r: Redis): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const info = await r.info('persistence');
    if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return;
    if (Date.now() > deadline) throw new Error('Redis AOF rewrite still running after 120 s');
    await sleep(100);
  }
}

/** Consumes from the group with one XREADGROUP in flight; each batch acked with one XACK, not awaited before the next read. */
async function readGroup(
  r: Redis,
  key: string,
  consumer: string,
  blockMs: number,
  stop: () => boolean,
  onEntry: (payload: Buffer) => void,
  onAcked: (n: number) => void,
): Promise<void> {
  const acks: Array<Promise<unknown>> = [];
  let ackError: unknown;
  while (!stop() && ackError === undefined) {
    const entries = entriesOf(await r.callBuffer('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', READ_COUNT, 'BLOCK', blockMs, 'STREAMS', key, '>'));
    if (entries.length === 0) continue;
    const ids: Buffer[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const [id, fields] = entries[i]!;
      ids[i] = id;
      const payload = fields[1];
      if (payload !== undefined) onEntry(payload);
    }
    const n = ids.length;
    const ack = r.xack(key, GROUP, ...ids).then(
      () => onAcked(n),
      (e: unknown) => (ackError ??= e),
    );
    acks.push(ack);
    if (acks.length > 64) await acks.shift();
  }
  await Promise.all(acks);
  if (ackError !== undefined) throw ackError;
}

class RedisStreams implements PeerSystem {
  readonly info: SystemInfo = {
    id: 'redis-streams',
    name: 'Redis Streams',
    family: 'Redis',
    client: 'ioredis 6.0.0',
    syncsBeforeAck: true,
    durability: 'appendonly yes, appendfsync always (set for the run): the AOF is fdatasynced before replies are sent, shared by the commands of one event-loop iteration',
    configuration: ['CONFIG SET appendonly yes, appendfsync always for the run (the previous values are restored after it)', 'one stream per target (XADD * with one 256-byte field), a consumer group for consumption'],
    method: {
      publish: `pipelines of ${BATCH} XADD, ${LANES} pipelines in flight per process, one connection`,
      consume: `XREADGROUP COUNT ${READ_COUNT} (one read in flight), one XACK of the batch's ids per read, pipelined behind the next read; the run ends when every XACK has replied`,
      latency: 'XADD of one entry per call (not awaited by the pacer); XREADGROUP BLOCK on a second connection in the same process, XACK per batch',
      replay: `XRANGE in pages of ${REPLAY_PAGE.toLocaleString('en-US')} (exclusive start id), every payload read`,
    },
  };
  readonly #o: SystemOptions;
  #admin: Redis | undefined;
  #previous: { appendonly: string; appendfsync: string } | undefined;
  /** The AOF directory, when the run created it (removed again once AOF is off). */
  #createdAofDir: string | undefined;

  constructor(o: SystemOptions) {
    this.#o = o;
  }

  #key(name: string): string {
    return `eventful-bench:${this.#o.runId}:${name}`;
  }

  async start(): Promise<StartInfo> {
    const url = `redis://${HOST}:${PORT}`;
    const r = new Redis(url, { maxRetriesPerRequest: 0, connectTimeout: 3000, lazyConnect: true, retryStrategy: () => null });
    r.on('error', () => undefined); // reported through connect()'s rejection
    try {
      await r.connect();
    } catch (err) {
      r.disconnect();
      throw new UnreachableError(`Redis not reachable at ${HOST}:${PORT} (${err instanceof Error ? err.message : String(err)})`);
    }
    this.#admin = r;
    const version = /redis_version:(\S+)/.exec(await r.info('server'))?.[1] ?? '?';
    const get = async (k: string): Promise<string> => ((await r.config('GET', k)) as string[])[1] ?? '';
    this.#previous = { appendonly: await get('appendonly'), appendfsync: await get('appendfsync') };
    // The server is on this machine (127.0.0.1): its AOF directory is a local path.
    const aofDir = path.join(await get('dir'), await get('appenddirname'));
    if (this.#previous.appendonly !== 'yes' && !fs.existsSync(aofDir)) this.#createdAofDir = aofDir;
    await r.config('SET', 'appendfsync', 'always');
    await r.config('SET', 'appendonly', 'yes');
    await waitForAofIdle(r);
    return {
      url,
      serverVersion: `Redis ${version}`,
      observed: [
        `before the run: appendonly ${this.#previous.appendonly}, appendfsync ${this.#previous.appendfsync}`,
        `for the run: appendonly ${await get('appendonly')}, appendfsync ${await get('appendfsync')}`,
      ],
    };
  }

  async stop(): Promise<void> {
    const r = this.#admin;
    if (r === undefined) return;
    this.#admin = undefined;
    try {
      // The run's keys go first, then (AOF still on) a rewrite leaves an AOF without them.
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `eventful-bench:${this.#o.runId}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await r.unlink(...keys);
      } while (cursor !== '0');
      if (this.#previous !== undefined && this.#previous.appendonly !== 'yes') {
        await waitForAofIdle(r);
        await r.bgrewriteaof();
        await waitForAofIdle(r);
      }
    } finally {
      if (this.#previous !== undefined) {
        await r.config('SET', 'appendfsync', this.#previous.appendfsync);
        await r.config('SET', 'appendonly', this.#previous.appendonly);
        // AOF is off again: a directory this run created goes too, so the set-up is as it was.
        if (this.#createdAofDir !== undefined && (await r.config('GET', 'appendonly'))[1] === 'no') fs.rmSync(this.#createdAofDir, { recursive: true, force: true });
      }
      r.disconnect();
    }
  }

  serverPids(): number[] {
    return pgrep('redis-server');
  }

  async createTarget(name: string, workload: Workload | 'fsync-check'): Promise<void> {
    const key = this.#key(name);
    await this.#admin!.unlink(key);
    if (workload === 'consume' || workload === 'latency') await this.#admin!.xgroup('CREATE', key, GROUP, '0', 'MKSTREAM');
  }

  async deleteTarget(name: string): Promise<void> {
    await this.#admin!.unlink(this.#key(name));
  }

  async publish(a: PublishArgs, ctx: ClientContext): Promise<PublishResult> {
    const r = open(a.url);
    const key = this.#key(a.target);
    try {
      await r.ping();
      return await publishInLanes(a, LANES, BATCH, async (_lane, first, n) => {
        const p = r.pipeline();
        for (let i = 0; i < n; i++) p.xadd(key, '*', 'p', makePayload(ctx.processIndex, first + i));
        const results = await p.exec();
        for (const [err] of results ?? []) if (err) throw err;
      });
    } finally {
      r.disconnect();
    }
  }

  async publishSequential(a: SequentialPublishArgs): Promise<PublishResult> {
    const r = open(a.url);
    const key = this.#key(a.target);
    try {
      let acked = 0;
      while (acked < a.count && Date.now() < a.deadline) {
        await r.xadd(key, '*', 'p', makePayload(0, acked));
        acked++;
      }
      return { acked, ackedInWindow: acked };
    } finally {
      r.disconnect();
    }
  }

  async consume(a: ConsumeArgs, ctx: ClientContext): Promise<ConsumeResult> {
    const r = open(a.url);
    const key = this.#key(a.target);
    try {
      await r.ping();
      let delivered = 0;
      let acked = 0;
      const t0 = performance.now();
      ctx.mark('start');
      await withTimeout(
        readGroup(r, key, 'c1', 1000, () => delivered >= a.expected || Date.now() > a.deadline, () => delivered++, (n) => (acked += n)),
        Math.max(1000, a.deadline - Date.now() + 5000),
        `consume of ${a.expected} entries`,
      );
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      return { consumed: acked, elapsedMs };
    } finally {
      r.disconnect();
    }
  }

  async latency(a: LatencyArgs): Promise<LatencyResult> {
    const producer = open(a.url);
    const consumer = open(a.url);
    const key = this.#key(a.target);
    const warmup = Math.round(a.ratePerS * a.warmupS);
    const total = warmup + Math.round(a.ratePerS * a.seconds);
    const rec = new LatencyRecorder(warmup, total);
    let stopped = false;
    let failure: unknown;
    try {
      await Promise.all([producer.ping(), consumer.ping()]);
      const loop = readGroup(consumer, key, 'c1', 100, () => stopped, (p) => rec.delivered(p), () => undefined).catch((e: unknown) => (failure ??= e));
      await waitUntil(a.t0);
      const achievedRatePerS = await paced(a.ratePerS, a.seconds + a.warmupS, (seq) => {
        const sentAt = performance.now();
        producer.xadd(key, '*', 'p', makePayload(0, seq, sentAt)).then(
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
      producer.disconnect();
      consumer.disconnect();
    }
  }

  async fillForReplay(a: { url: string; target: string; events: number }, ctx: ClientContext): Promise<number> {
    const r = open(a.url);
    const key = this.#key(a.target);
    try {
      const res = await publishInLanes({ url: a.url, target: a.target, t0: 0, t1: Infinity, maxMessages: a.events }, 8, 1000, async (_lane, first, n) => {
        const p = r.pipeline();
        for (let i = 0; i < n; i++) p.xadd(key, '*', 'p', makePayload(ctx.processIndex, first + i));
        const results = await p.exec();
        for (const [err] of results ?? []) if (err) throw err;
      });
      return res.acked;
    } finally {
      r.disconnect();
    }
  }

  async replay(a: ReplayArgs, ctx: ClientContext): Promise<ReplayResult> {
    const r = open(a.url);
    const key = this.#key(a.target);
    try {
      await r.ping();
      let read = 0;
      let bytes = 0;
      let outOfOrder = 0;
      let start = '-';
      const t0 = performance.now();
      ctx.mark('start');
      while (read < a.events && Date.now() < a.deadline) {
        const page = await r.xrangeBuffer(key, start, '+', 'COUNT', REPLAY_PAGE);
        if (page.length === 0) break;
        for (const [, fields] of page) {
          const p = fields[1];
          if (p === undefined) {
            outOfOrder++;
            continue;
          }
          bytes += p.byteLength;
          if (readPayload(p) === undefined) outOfOrder++; // XRANGE returns ids in order: only foreign payloads count
          read++;
        }
        start = `(${page[page.length - 1]![0].toString()}`;
      }
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      return { read, bytes, elapsedMs, outOfOrder };
    } finally {
      r.disconnect();
    }
  }
}

export const redisSystems: SystemFactory = (o) => [new RedisStreams(o)];
