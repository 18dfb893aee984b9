/**
 * NATS JetStream through the `nats` client, server at 127.0.0.1:4222 (started with -js).
 *
 * One JetStream stream per target, file storage, one replica (the server is alone). A publish
 * counts once its PubAck has arrived (awaited). Queues are work-queue streams consumed by a
 * durable pull consumer with explicit acks; replay is an ordered consumer over a limits stream.
 * Optimistic concurrency: a subject per stream and the `Nats-Expected-Last-Subject-Sequence`
 * header (0: the subject must have no message yet), refused on a stale sequence.
 *
 * The server's file store writes each message to its block file before the PubAck and leaves
 * the sync to a periodic flush, so an acknowledged publish is not yet on disk: the fsync check
 * measures it, and its figures are compared with Eventful's interval mode.
 */
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, connect } from 'nats';
import type { JetStreamClient, JsMsg, NatsConnection } from 'nats';
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

const SERVER = '127.0.0.1:4222';
const LANES = 16; // batches in flight per client process
const BATCH = 100; // publishes per batch, each awaiting its PubAck
const PULL_BATCH = 1000; // max_messages of a pull consumer's consume()
const MAX_ACK_PENDING = 10_000;
const CONSUMER = 'bench';

const open = (url: string): Promise<NatsConnection> => connect({ servers: url, timeout: 5000, reconnect: false });

class NatsJetStream implements PeerSystem {
  readonly info: SystemInfo = {
    id: 'nats-jetstream',
    name: 'NATS JetStream',
    family: 'NATS',
    client: 'nats 2.29.3',
    syncsBeforeAck: false,
    durability: 'file storage, 1 replica: the PubAck follows the write to the block file; the file store syncs on a timer, not before the ack',
    configuration: [
      'one stream per target: storage file, num_replicas 1; work-queue retention for queues, limits retention for replay and optimistic concurrency',
      `durable pull consumer, ack_policy explicit, max_ack_pending ${MAX_ACK_PENDING.toLocaleString('en-US')}`,
    ],
    method: {
      publish: `js.publish awaited for its PubAck, ${LANES} batches of ${BATCH} in flight per process (${LANES * BATCH} PubAcks outstanding at most), one connection`,
      consume: `consumer.consume({ max_messages: ${PULL_BATCH} }) on a durable pull consumer; m.ack() per message (not awaited: JetStream's usual fast path); the run ends after a flush round trip following the last ack`,
      latency: 'js.publish of one message per call (not awaited by the pacer); pull consumer on a second connection in the same process, m.ack() per message',
      replay: 'an ordered consumer (js.consumers.get(stream)) from the first message, every payload read',
      occ: 'js.publish to the stream\'s subject with expect.lastSubjectSequence (the sequence last seen, 0 for none); a refusal re-reads the subject\'s last message and retries',
    },
  };
  readonly #o: SystemOptions;
  #admin: NatsConnection | undefined;

  constructor(o: SystemOptions) {
    this.#o = o;
  }

  #stream(name: string): string {
    return `EB_${this.#o.runId}_${name}`.replace(/[^A-Za-z0-9_-]/g, '_');
  }

  #subject(name: string): string {
    return `eventful-bench.${this.#o.runId}.${name}`.replace(/[^A-Za-z0-9_.-]/g, '_');
  }

  async start(): Promise<StartInfo> {
    try {
      this.#admin = await open(SERVER);
    } catch (err) {
      throw new UnreachableError(`NATS not reachable at ${SERVER} (${err instanceof Error ? err.message : String(err)})`);
    }
    const jsm = await this.#admin.jetstreamManager().catch((err: unknown) => {
      throw new UnreachableError(`NATS at ${SERVER} has no JetStream (${err instanceof Error ? err.message : String(err)})`);
    });
    const account = await jsm.getAccountInfo();
    return {
      url: SERVER,
      serverVersion: `nats-server ${this.#admin.info?.version ?? '?'}`,
      observed: [`JetStream account: ${account.streams} streams, store limit ${account.limits.max_storage < 0 ? 'none' : account.limits.max_storage}`],
    };
  }

  async stop(): Promise<void> {
    await this.#admin?.close().catch(() => undefined);
    this.#admin = undefined;
  }

  serverPids(): number[] {
    return pgrep('nats-server');
  }

  async createTarget(name: string, workload: Workload | 'fsync-check'): Promise<void> {
    const jsm = await this.#admin!.jetstreamManager();
    const queue = workload === 'consume' || workload === 'latency';
    await jsm.streams.add({
      name: this.#stream(name),
      subjects: [`${this.#subject(name)}.>`],
      storage: StorageType.File,
      num_replicas: 1,
      retention: queue ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
    });
    if (queue) {
      await jsm.consumers.add(this.#stream(name), {
        durable_name: CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        max_ack_pending: MAX_ACK_PENDING,
      });
    }
  }

  async deleteTarget(name: string): Promise<void> {
    const jsm = await this.#admin!.jetstreamManager();
    await jsm.streams.delete(this.#stream(name)).catch((err: unknown) => {
      if (!/not found/i.test(String(err))) throw err;
    });
  }

  async publish(a: PublishArgs, ctx: ClientContext): Promise<PublishResult> {
    const nc = await open(a.url);
    try {
      const js = nc.jetstream();
      const subject = `${this.#subject(a.target)}.m`;
      return await publishInLanes(a, LANES, BATCH, async (_lane, first, n) => {
        const acks: Array<Promise<unknown>> = new Array(n);
        for (let i = 0; i < n; i++) acks[i] = js.publish(subject, makePayload(ctx.processIndex, first + i));
        await Promise.all(acks);
      });
    } finally {
      await nc.close();
    }
  }

  async publishSequential(a: SequentialPublishArgs): Promise<PublishResult> {
    const nc = await open(a.url);
    try {
      const js = nc.jetstream();
      const subject = `${this.#subject(a.target)}.m`;
      let acked = 0;
      while (acked < a.count && Date.now() < a.deadline) {
        await js.publish(subject, makePayload(0, acked));
        acked++;
      }
      return { acked, ackedInWindow: acked };
    } finally {
      await nc.close();
    }
  }

  /** Runs a durable pull consumer until `stop()` says so; each message acked as it is handled. */
  async #pull(js: JetStreamClient, target: string, onMessage: (m: JsMsg) => boolean): Promise<void> {
    const c = await js.consumers.get(this.#stream(target), CONSUMER);
    const messages = await c.consume({ max_messages: PULL_BATCH });
    for await (const m of messages) {
      m.ack();
      if (onMessage(m)) break;
    }
    messages.stop();
  }

  async consume(a: ConsumeArgs, ctx: ClientContext): Promise<ConsumeResult> {
    const nc = await open(a.url);
    try {
      const js = nc.jetstream();
      let consumed = 0;
      const t0 = performance.now();
      ctx.mark('start');
      await withTimeout(
        this.#pull(js, a.target, () => ++consumed >= a.expected),
        Math.max(1000, a.deadline - Date.now()),
        `consume of ${a.expected} messages`,
      );
      await nc.flush(); // a round trip: the server has every ack by its answer
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      return { consumed, elapsedMs };
    } finally {
      await nc.close();
    }
  }

  async latency(a: LatencyArgs): Promise<LatencyResult> {
    const pub = await open(a.url);
    const sub = await open(a.url);
    const warmup = Math.round(a.ratePerS * a.warmupS);
    const total = warmup + Math.round(a.ratePerS * a.seconds);
    const rec = new LatencyRecorder(warmup, total);
    let failure: unknown;
    try {
      const js = pub.jetstream();
      const subject = `${this.#subject(a.target)}.m`;
      const loop = this.#pull(sub.jetstream(), a.target, (m) => {
        rec.delivered(m.data);
        return rec.received >= total;
      }).catch((e: unknown) => (failure ??= e));
      await waitUntil(a.t0);
      const achievedRatePerS = await paced(a.ratePerS, a.seconds + a.warmupS, (seq) => {
        const sentAt = performance.now();
        js.publish(subject, makePayload(0, seq, sentAt)).then(
          () => rec.acked(seq, sentAt),
          (e: unknown) => (failure ??= e),
        );
      });
      await Promise.race([rec.all, sleep(15_000)]);
      await Promise.race([loop, sleep(2000)]);
      if (failure !== undefined) throw failure;
      return { ...rec.sorted(), sent: total, received: rec.received, achievedRatePerS };
    } finally {
      await Promise.allSettled([pub.close(), sub.close()]);
    }
  }

  async fillForReplay(a: { url: string; target: string; events: number }, ctx: ClientContext): Promise<number> {
    const nc = await open(a.url);
    try {
      const js = nc.jetstream();
      const subject = `${this.#subject(a.target)}.m`;
      const r = await publishInLanes({ url: a.url, target: a.target, t0: 0, t1: Infinity, maxMessages: a.events }, LANES, BATCH, async (_lane, first, n) => {
        const acks: Array<Promise<unknown>> = new Array(n);
        for (let i = 0; i < n; i++) acks[i] = js.publish(subject, makePayload(ctx.processIndex, first + i));
        await Promise.all(acks);
      });
      return r.acked;
    } finally {
      await nc.close();
    }
  }

  async replay(a: ReplayArgs, ctx: ClientContext): Promise<ReplayResult> {
    const nc = await open(a.url);
    try {
      const js = nc.jetstream();
      let read = 0;
      let bytes = 0;
      let outOfOrder = 0;
      let lastSeq = 0;
      const t0 = performance.now();
      ctx.mark('start');
      const oc = await js.consumers.get(this.#stream(a.target)); // no name: an ordered consumer
      const messages = await oc.consume({ max_messages: PULL_BATCH * 5 });
      const loop = (async () => {
        for await (const m of messages) {
          bytes += m.data.byteLength;
          if (m.seq <= lastSeq || readPayload(m.data) === undefined) outOfOrder++;
          lastSeq = m.seq;
          if (++read >= a.events) break;
        }
      })();
      await withTimeout(loop, Math.max(1000, a.deadline - Date.now()), `replay of ${a.events} messages`);
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      messages.stop();
      return { read, bytes, elapsedMs, outOfOrder };
    } finally {
      await nc.close();
    }
  }

  async occ(a: OccArgs, ctx: ClientContext): Promise<OccResult> {
    const nc = await open(a.url);
    try {
      const js = nc.jetstream();
      const jsm = await nc.jetstreamManager();
      const base = this.#subject(a.target);
      const lastSeq = new Float64Array(a.streams); // 0: no message on the subject yet
      const body = makePayload(ctx.processIndex, 0);
      let appended = 0;
      let conflicts = 0;
      let failure: unknown;
      await waitUntil(a.t0);
      const lane = async (): Promise<void> => {
        while (failure === undefined && Date.now() < a.t1) {
          const s = Math.floor(Math.random() * a.streams);
          const subject = `${base}.${s}`;
          try {
            const ack = await js.publish(subject, body, { expect: { lastSubjectSequence: lastSeq[s]! } });
            lastSeq[s] = Math.max(lastSeq[s]!, ack.seq);
            if (Date.now() <= a.t1) appended++;
          } catch (err) {
            const text = String((err as { api_error?: { description?: string } }).api_error?.description ?? err);
            if (!/wrong last sequence/i.test(text)) {
              failure ??= err;
              return;
            }
            conflicts++;
            const m = /wrong last sequence: (\d+)/i.exec(text);
            if (m !== null) lastSeq[s] = Number(m[1]);
            else lastSeq[s] = (await jsm.streams.getMessage(this.#stream(a.target), { last_by_subj: subject })).seq;
          }
        }
      };
      await Promise.all(Array.from({ length: a.concurrency }, () => lane()));
      if (failure !== undefined) throw failure;
      return { appended, conflicts };
    } finally {
      await nc.close();
    }
  }
}

export const natsSystems: SystemFactory = (o) => [new NatsJetStream(o)];
