/**
 * Eventful: `eventful serve` as its own process (bin/eventful.js, built by `npm run build`),
 * through the client SDK over the binary protocol on 127.0.0.1.
 *
 * Two configurations:
 *  - `eventful` (durability 'always'): every acknowledged send, append and ack is fdatasync'ed
 *    first, with group commit. Compared with the peers that sync before they ack.
 *  - `eventful-interval` (durability 'interval', 100 ms): acknowledged before the sync, the log
 *    synced every 100 ms. Compared with the peers that do not sync before they ack, and labelled
 *    as such wherever it appears.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { OverloadedError, connect, WrongExpectedRevisionError } from '../../../src/client/index.js';
import type { Consumer, MessageInput, RemoteEventStore } from '../../../src/client/index.js';
import { LatencyRecorder, makePayload, paced, publishInLanes, readPayload, sleep, waitUntil, withTimeout } from '../common.js';
import { ownedProcesses } from '../procs.js';
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

const CONTENT_TYPE = 'application/octet-stream';
const CONNECTIONS = 4; // per client process
const LANES = 16; // sends in flight per client process (4 per connection)
const BATCH = 100; // messages per send
const PREFETCH = 1000;
const CONSUMERS = 4; // consumer connections
const REPLAY_FILL_BATCH = 1000;

type Mode = 'always' | 'interval';

const message = (body: Buffer): MessageInput => ({ body, contentType: CONTENT_TYPE });

function infoFor(mode: Mode): SystemInfo {
  const durable = mode === 'always';
  return {
    id: durable ? 'eventful' : 'eventful-interval',
    name: durable ? 'Eventful (fsync before ack)' : 'Eventful interval (no fsync before ack)',
    family: 'Eventful',
    client: 'eventful client SDK (this repository), TCP binary protocol',
    isEventful: true,
    syncsBeforeAck: durable,
    durability: durable
      ? "durability 'always': fdatasync of the log before every acknowledged send, append and ack (group commit)"
      : "durability 'interval': acknowledged before the sync; the log is fdatasync'ed every 100 ms (a power loss can lose the last 100 ms)",
    configuration: [
      `eventful serve --durability ${mode}${durable ? '' : ' --sync-interval-ms 100'}, its own process, data in a fresh temp directory`,
      'queues: unordered, default settings (30 s lease, 5 deliveries)',
    ],
    method: {
      publish: `queues.send of ${BATCH} messages per call, ${LANES} sends in flight per process over ${CONNECTIONS} connections (${LANES * BATCH} messages in flight)`,
      consume: `queues.consume on ${CONSUMERS} connections, prefetch ${PREFETCH}; acks pipelined: one consumer.ack(receipts[]) per delivered batch, not awaited before the next delivery (the fast path in docs/queues.md); the run ends when every ack has resolved (durable)`,
      latency: 'queues.send of one message per call, not awaited by the pacer; consumer prefetch 1,000 with pipelined batched acks, same process',
      replay: 'readAll from the first stored position, page by page (flow-controlled), every payload read',
      occ: 'append of one event with expectedRevision (the revision last seen; a conflict takes actualRevision from the error and retries), 4 connections',
    },
  };
}

interface Server {
  child: ChildProcess;
  url: string;
}

async function startServer(o: SystemOptions, mode: Mode): Promise<Server> {
  const dir = path.join(o.tmpDir, `eventful-${mode}`);
  fs.mkdirSync(dir, { recursive: true });
  // EVENTFUL_* variables of the caller's shell would change the set-up: not passed on.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('EVENTFUL_')) env[k] = v;
  const args = [
    ...o.serverNodeArgs,
    path.join(o.rootDir, 'bin/eventful.js'),
    'serve',
    '--data-dir',
    dir,
    '--host',
    '127.0.0.1',
    '--http-port',
    '0',
    '--tcp-port',
    '0',
    '--durability',
    mode,
    ...(mode === 'interval' ? ['--sync-interval-ms', '100'] : []),
    '--log-level',
    'error',
  ];
  const child = spawn(process.execPath, args, { cwd: o.rootDir, env, stdio: ['ignore', 'pipe', 'inherit'] });
  ownedProcesses.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 60_000;
  while (!/TLS\s+(on|off)/.test(out)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new UnreachableError(`eventful serve exited before listening: ${out.trim()}`);
    if (Date.now() > deadline) throw new UnreachableError(`eventful serve did not start within 60 s: ${out.trim()}`);
    await sleep(20);
  }
  const url = /binary protocol\s+(\S+)/.exec(out)?.[1];
  if (url === undefined || !url.includes('127.0.0.1')) throw new UnreachableError(`unexpected server address in: ${out}`);
  return { child, url };
}

async function connectAll(url: string, n: number): Promise<RemoteEventStore[]> {
  return Promise.all(Array.from({ length: n }, () => connect(url)));
}

async function closeAll(stores: RemoteEventStore[]): Promise<void> {
  await Promise.allSettled(stores.map((s) => s.close()));
}

/** Consumes with pipelined batched acks; calls `onAcked(n)` as acks resolve. */
function consumeLoop(c: Consumer, onDelivery: (body: Uint8Array) => void, onAcked: (n: number) => void, onError: (e: unknown) => void): Promise<void> {
  const receipts: string[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (receipts.length === 0) return;
    const rs = receipts.splice(0);
    c.ack(rs).then(() => onAcked(rs.length), onError);
  };
  return (async () => {
    try {
      for await (const d of c) {
        onDelivery(d.body as Uint8Array);
        receipts.push(d.receipt);
        if (receipts.length >= PREFETCH) flush();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      }
    } catch (err) {
      onError(err);
    }
    flush();
  })();
}

class EventfulSystem implements PeerSystem {
  readonly info: SystemInfo;
  readonly #o: SystemOptions;
  readonly #mode: Mode;
  #server: Server | undefined;
  #admin: RemoteEventStore | undefined;

  constructor(o: SystemOptions, mode: Mode) {
    this.#o = o;
    this.#mode = mode;
    this.info = infoFor(mode);
  }

  async start(): Promise<StartInfo> {
    if (!fs.existsSync(path.join(this.#o.rootDir, 'dist/cli/run.js'))) throw new UnreachableError('dist/ is missing: run `npm run build` first (npm run bench:peers does)');
    this.#server = await startServer(this.#o, this.#mode);
    this.#admin = await connect(this.#server.url);
    const version = JSON.parse(fs.readFileSync(path.join(this.#o.rootDir, 'package.json'), 'utf8')) as { version: string };
    return { url: this.#server.url, serverVersion: `Eventful ${version.version}`, observed: [`pid ${this.#server.child.pid}, ${this.#server.url}`] };
  }

  async stop(): Promise<void> {
    await this.#admin?.close().catch(() => undefined);
    const child = this.#server?.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  serverPids(): number[] {
    const pid = this.#server?.child.pid;
    return pid === undefined ? [] : [pid];
  }

  async createTarget(name: string, workload: Workload | 'fsync-check'): Promise<void> {
    if (workload === 'replay' || workload === 'occ') return; // streams come into being on their first append
    await this.#admin!.queues.create(name);
  }

  async deleteTarget(name: string): Promise<void> {
    if ((await this.#admin!.queues.get(name)) !== undefined) await this.#admin!.queues.delete(name);
  }

  async publish(a: PublishArgs, ctx: ClientContext): Promise<PublishResult> {
    const stores = await connectAll(a.url, CONNECTIONS);
    try {
      return await publishInLanes(a, LANES, BATCH, async (lane, first, n) => {
        const msgs: MessageInput[] = new Array(n);
        for (let i = 0; i < n; i++) msgs[i] = message(makePayload(ctx.processIndex, first + i));
        await stores[lane % CONNECTIONS]!.queues.send(a.target, msgs);
      });
    } finally {
      await closeAll(stores);
    }
  }

  async publishSequential(a: SequentialPublishArgs): Promise<PublishResult> {
    const store = await connect(a.url);
    try {
      let acked = 0;
      while (acked < a.count && Date.now() < a.deadline) {
        await store.queues.send(a.target, [message(makePayload(0, acked))]);
        acked++;
      }
      return { acked, ackedInWindow: acked };
    } finally {
      await store.close();
    }
  }

  async consume(a: ConsumeArgs, ctx: ClientContext): Promise<ConsumeResult> {
    const stores = await connectAll(a.url, CONSUMERS);
    let acked = 0;
    let failure: unknown;
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const t0 = performance.now();
    ctx.mark('start');
    const consumers = stores.map((s) => s.queues.consume(a.target, { prefetch: PREFETCH }));
    const loops = consumers.map((c) =>
      consumeLoop(
        c,
        () => undefined,
        (n) => {
          acked += n;
          if (acked >= a.expected) done();
        },
        (e) => {
          failure ??= e;
          done();
        },
      ),
    );
    try {
      await withTimeout(finished, Math.max(1000, a.deadline - Date.now()), `consume of ${a.expected} messages`);
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      if (failure !== undefined) throw failure;
      return { consumed: acked, elapsedMs };
    } finally {
      await Promise.allSettled(consumers.map((c) => c.close()));
      await Promise.race([Promise.allSettled(loops), sleep(5000)]);
      await closeAll(stores);
    }
  }

  async latency(a: LatencyArgs): Promise<LatencyResult> {
    const [producer, consumerStore] = await connectAll(a.url, 2);
    const warmup = Math.round(a.ratePerS * a.warmupS);
    const total = warmup + Math.round(a.ratePerS * a.seconds);
    const rec = new LatencyRecorder(warmup, total);
    let failure: unknown;
    const consumer = consumerStore!.queues.consume(a.target, { prefetch: PREFETCH });
    const loop = consumeLoop(consumer, (b) => rec.delivered(b), () => undefined, (e) => (failure ??= e));
    try {
      await consumerStore!.queues.stats(a.target); // the server has the consumer by this answer
      await waitUntil(a.t0);
      // A connection refuses more than 4,096 requests in flight (OverloadedError, retriable):
      // if the server stalls that long, the send is retried, and its latency still counts from
      // when it was first due.
      let retries = 0;
      const send = (seq: number, sentAt: number): void => {
        producer!.queues.send(a.target, [message(makePayload(0, seq, sentAt))]).then(
          () => rec.acked(seq, sentAt),
          (e: unknown) => {
            if (e instanceof OverloadedError && retries++ < 100_000) setTimeout(() => send(seq, sentAt), 5);
            else failure ??= e;
          },
        );
      };
      const achievedRatePerS = await paced(a.ratePerS, a.seconds + a.warmupS, (seq) => send(seq, performance.now()));
      await Promise.race([rec.all, sleep(15_000)]);
      if (failure !== undefined) throw failure;
      return { ...rec.sorted(), sent: total, received: rec.received, achievedRatePerS, retries };
    } finally {
      await consumer.close().catch(() => undefined);
      await Promise.race([loop, sleep(5000)]);
      await closeAll([producer!, consumerStore!]);
    }
  }

  async fillForReplay(a: { url: string; target: string; events: number }, ctx: ClientContext): Promise<number> {
    const stores = await connectAll(a.url, CONNECTIONS);
    try {
      let batchNo = 0;
      const r = await publishInLanes({ url: a.url, target: a.target, t0: 0, t1: Infinity, maxMessages: a.events }, 8, REPLAY_FILL_BATCH, async (lane, first, n) => {
        const events = Array.from({ length: n }, (_, i) => ({ type: 'BenchEvent', data: makePayload(ctx.processIndex, first + i), contentType: CONTENT_TYPE }));
        await stores[lane % CONNECTIONS]!.append(`${a.target}-${batchNo++ % 1000}`, events);
      });
      return r.acked;
    } finally {
      await closeAll(stores);
    }
  }

  async replay(a: ReplayArgs, ctx: ClientContext): Promise<ReplayResult> {
    const store = await connect(a.url);
    try {
      // Where the target's events begin: the lowest position of its streams' first events.
      let from = Infinity;
      for (let k = 0; k < Math.min(1000, Math.ceil(a.events / REPLAY_FILL_BATCH)); k++) {
        for await (const e of store.readStream(`${a.target}-${k}`, { limit: 1 })) from = Math.min(from, e.position);
      }
      if (!Number.isFinite(from)) throw new Error(`no events stored under ${a.target}`);
      const prefix = `${a.target}-`;
      let read = 0;
      let bytes = 0;
      let outOfOrder = 0;
      let last = 0;
      const t0 = performance.now();
      ctx.mark('start');
      for await (const page of store.readAll({ from, limit: a.events }).pages()) {
        for (const e of page) {
          if (e.position <= last || !e.stream.startsWith(prefix)) outOfOrder++;
          last = e.position;
          const d = e.data as Uint8Array;
          bytes += d.byteLength;
          if (readPayload(d) === undefined) outOfOrder++;
          read++;
        }
      }
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      return { read, bytes, elapsedMs, outOfOrder };
    } finally {
      await store.close();
    }
  }

  async occ(a: OccArgs, ctx: ClientContext): Promise<OccResult> {
    const stores = await connectAll(a.url, CONNECTIONS);
    const revisions = new Float64Array(a.streams).fill(-1); // -1: no stream yet
    let appended = 0;
    let conflicts = 0;
    let failure: unknown;
    try {
      await waitUntil(a.t0);
      const body = makePayload(ctx.processIndex, 0);
      const lane = async (k: number): Promise<void> => {
        const store = stores[k % CONNECTIONS]!;
        while (failure === undefined && Date.now() < a.t1) {
          const s = Math.floor(Math.random() * a.streams);
          const expected = revisions[s]!;
          try {
            const r = await store.append(`${a.target}-${s}`, [{ type: 'BenchEvent', data: body, contentType: CONTENT_TYPE }], {
              expectedRevision: expected < 0 ? 'no_stream' : expected,
            });
            revisions[s] = Math.max(revisions[s]!, r.revision);
            if (Date.now() <= a.t1) appended++;
          } catch (err) {
            if (!(err instanceof WrongExpectedRevisionError)) {
              failure ??= err;
              return;
            }
            conflicts++;
            revisions[s] = err.actualRevision;
          }
        }
      };
      await Promise.all(Array.from({ length: a.concurrency }, (_, k) => lane(k)));
      if (failure !== undefined) throw failure;
      return { appended, conflicts };
    } finally {
      await closeAll(stores);
    }
  }
}

export const eventfulSystems: SystemFactory = (o) => [new EventfulSystem(o, 'always'), new EventfulSystem(o, 'interval')];
