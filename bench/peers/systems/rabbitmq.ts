/**
 * RabbitMQ through amqplib (AMQP 0-9-1), broker at 127.0.0.1:5672, guest/guest.
 *
 * Three durable queue types, each its own system:
 *  - classic: `x-queue-type: classic` (the broker's default classic queue version);
 *  - quorum: `x-queue-type: quorum` (Raft log; one node here, so the WAL on this disk);
 *  - stream: `x-queue-type: stream` (an append-only log, read from an offset; replayable).
 * Every publish is persistent (delivery mode 2) on a confirm channel, and a publish counts
 * once its publisher confirm has arrived. Consumers use manual acks with a prefetch.
 *
 * Whether the broker syncs to disk before it confirms differs by queue type (RabbitMQ streams
 * leave syncing to the OS, relying on replication): the fsync check measures it, and the
 * declared expectation below says what to compare with.
 */
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
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

const URL = 'amqp://guest:guest@127.0.0.1:5672';
const LANES = 16; // batches in flight per client process
const BATCH = 100; // publishes per batch, each with its own confirm callback
const PREFETCH = 1000;
const REPLAY_PREFETCH = 5000;

type QueueType = 'classic' | 'quorum' | 'stream';

function infoFor(type: QueueType): SystemInfo {
  const names: Record<QueueType, string> = { classic: 'RabbitMQ classic queue', quorum: 'RabbitMQ quorum queue', stream: 'RabbitMQ stream' };
  const durability: Record<QueueType, string> = {
    classic: 'durable classic queue, persistent messages: the publisher confirm follows the message store / queue index sync',
    quorum: 'quorum queue: the publisher confirm follows the fdatasync of the Raft write-ahead log',
    stream: 'stream: the publisher confirm follows the write to the segment file; the stream does not fsync (it relies on replication, and this broker has one node)',
  };
  return {
    id: `rabbitmq-${type}`,
    name: names[type],
    family: 'RabbitMQ',
    client: 'amqplib 2.3.1',
    syncsBeforeAck: type !== 'stream',
    durability: durability[type],
    configuration: [
      `queue declared durable with x-queue-type: ${type}${type === 'classic' ? ' (the broker default classic queue version)' : ''}`,
      'persistent messages (deliveryMode 2) on a confirm channel; manual acks',
    ],
    method: {
      publish: `sendToQueue with a confirm callback per message on one confirm channel; ${LANES} batches of ${BATCH} in flight per process (${LANES * BATCH} unconfirmed at most); waits for 'drain' when the socket buffer is full`,
      consume: `one channel, prefetch ${PREFETCH}${type === 'stream' ? ", x-stream-offset 'first'" : ''}; ack with multiple=true once per delivered batch (each event-loop turn); the run ends when a channel round trip after the last ack returns (AMQP 0-9-1 acks have no reply)`,
      latency: 'one persistent publish per message on a confirm channel (not awaited by the pacer); consumer on a second connection, prefetch 1,000, multiple acks per batch',
      ...(type === 'stream' ? { replay: `consume from x-stream-offset 'first', prefetch ${REPLAY_PREFETCH.toLocaleString('en-US')}, ack multiple per batch, every payload read` } : {}),
    },
  };
}

async function connectOrThrow(): Promise<ChannelModel> {
  try {
    return await amqp.connect(URL, { timeout: 5000 });
  } catch (err) {
    throw new UnreachableError(`RabbitMQ not reachable at 127.0.0.1:5672 (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** Publishes `n` persistent messages, resolving once every one of them is confirmed. */
function publishBatch(ch: ConfirmChannel, queue: string, payloads: Buffer[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let pending = payloads.length;
    let i = 0;
    const onConfirm = (err: unknown): void => {
      if (err) reject(err instanceof Error ? err : new Error(`publish nacked by the broker: ${String(err)}`));
      else if (--pending === 0) resolve();
    };
    const next = (): void => {
      while (i < payloads.length) {
        const ok = ch.sendToQueue(queue, payloads[i++]!, { persistent: true }, onConfirm);
        if (!ok) {
          ch.once('drain', next); // the socket buffer is full: go on when it drains
          return;
        }
      }
    };
    next();
  });
}

/**
 * Consumes with manual acks: `ack(msg, multiple=true)` once per event-loop turn for the
 * deliveries of that turn. Returns a handle to stop it and wait for the broker to have the acks.
 */
async function consumeWithAcks(ch: Channel, queue: string, prefetch: number, offset: 'first' | undefined, onMessage: (m: ConsumeMessage) => void) {
  await ch.prefetch(prefetch);
  let last: ConsumeMessage | undefined;
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (last !== undefined) ch.ack(last, true);
    last = undefined;
  };
  const { consumerTag } = await ch.consume(
    queue,
    (m) => {
      if (m === null) return;
      onMessage(m);
      last = m;
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    { noAck: false, ...(offset !== undefined ? { arguments: { 'x-stream-offset': offset } } : {}) },
  );
  return {
    /** Sends the pending ack, then a channel round trip: the broker has every ack by its answer. */
    async settle(): Promise<void> {
      flush();
      await ch.checkQueue(queue);
    },
    async cancel(): Promise<void> {
      await ch.cancel(consumerTag);
    },
  };
}

class RabbitQueue implements PeerSystem {
  readonly info: SystemInfo;
  readonly #o: SystemOptions;
  protected readonly type: QueueType;
  #admin: ChannelModel | undefined;

  constructor(o: SystemOptions, type: QueueType) {
    this.#o = o;
    this.type = type;
    this.info = infoFor(type);
  }

  protected queueName(name: string): string {
    return `eventful-bench.${this.#o.runId}.${name}`;
  }

  async start(): Promise<StartInfo> {
    this.#admin = await connectOrThrow();
    this.#admin.on('error', () => undefined);
    const props = this.#admin.connection.serverProperties;
    return { url: URL.replace('guest:guest@', ''), serverVersion: `${props.product ?? 'RabbitMQ'} ${props.version ?? '?'}` };
  }

  async stop(): Promise<void> {
    await this.#admin?.close().catch(() => undefined);
    this.#admin = undefined;
  }

  serverPids(): number[] {
    return pgrep('beam.smp', 'rabbit');
  }

  async #withChannel<T>(f: (ch: Channel) => Promise<T>): Promise<T> {
    const ch = await this.#admin!.createChannel();
    ch.on('error', () => undefined); // a failed operation rejects its promise too
    try {
      return await f(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async createTarget(name: string, _workload: Workload | 'fsync-check'): Promise<void> {
    await this.#withChannel((ch) => ch.assertQueue(this.queueName(name), { durable: true, arguments: { 'x-queue-type': this.type } }));
  }

  async deleteTarget(name: string): Promise<void> {
    await this.#withChannel((ch) => ch.deleteQueue(this.queueName(name)));
  }

  protected async open(): Promise<ChannelModel> {
    const c = await amqp.connect(URL, { timeout: 5000 });
    c.on('error', () => undefined); // surfaces as a rejected publish or a closed channel
    return c;
  }

  async publish(a: PublishArgs, ctx: ClientContext): Promise<PublishResult> {
    const conn = await this.open();
    try {
      const ch = await conn.createConfirmChannel();
      const q = this.queueName(a.target);
      return await publishInLanes(a, LANES, BATCH, (_lane, first, n) =>
        publishBatch(
          ch,
          q,
          Array.from({ length: n }, (_, i) => makePayload(ctx.processIndex, first + i)),
        ),
      );
    } finally {
      await conn.close().catch(() => undefined);
    }
  }

  async publishSequential(a: SequentialPublishArgs): Promise<PublishResult> {
    const conn = await this.open();
    try {
      const ch = await conn.createConfirmChannel();
      const q = this.queueName(a.target);
      let acked = 0;
      while (acked < a.count && Date.now() < a.deadline) {
        await publishBatch(ch, q, [makePayload(0, acked)]);
        acked++;
      }
      return { acked, ackedInWindow: acked };
    } finally {
      await conn.close().catch(() => undefined);
    }
  }

  async consume(a: ConsumeArgs, ctx: ClientContext): Promise<ConsumeResult> {
    const conn = await this.open();
    try {
      const ch = await conn.createChannel();
      let delivered = 0;
      let done!: () => void;
      const all = new Promise<void>((r) => (done = r));
      const t0 = performance.now();
      ctx.mark('start');
      const c = await consumeWithAcks(ch, this.queueName(a.target), PREFETCH, this.type === 'stream' ? 'first' : undefined, () => {
        if (++delivered === a.expected) done();
      });
      await withTimeout(all, Math.max(1000, a.deadline - Date.now()), `consume of ${a.expected} messages`);
      await c.settle();
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      await c.cancel();
      return { consumed: delivered, elapsedMs };
    } finally {
      await conn.close().catch(() => undefined);
    }
  }

  async latency(a: LatencyArgs): Promise<LatencyResult> {
    const pubConn = await this.open();
    const subConn = await this.open();
    const q = this.queueName(a.target);
    const warmup = Math.round(a.ratePerS * a.warmupS);
    const total = warmup + Math.round(a.ratePerS * a.seconds);
    const rec = new LatencyRecorder(warmup, total);
    let failure: unknown;
    try {
      const pub = await pubConn.createConfirmChannel();
      const sub = await subConn.createChannel();
      const c = await consumeWithAcks(sub, q, PREFETCH, this.type === 'stream' ? 'first' : undefined, (m) => rec.delivered(m.content));
      await waitUntil(a.t0);
      const achievedRatePerS = await paced(a.ratePerS, a.seconds + a.warmupS, (seq) => {
        const sentAt = performance.now();
        pub.sendToQueue(q, makePayload(0, seq, sentAt), { persistent: true }, (err: unknown) => {
          if (err) failure ??= err;
          else rec.acked(seq, sentAt);
        });
      });
      await Promise.race([rec.all, sleep(15_000)]);
      await c.settle().catch(() => undefined);
      if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
      return { ...rec.sorted(), sent: total, received: rec.received, achievedRatePerS };
    } finally {
      await Promise.allSettled([pubConn.close(), subConn.close()]);
    }
  }
}

/** A stream keeps what is acked and can be read again from any offset: it adds replay. */
class RabbitStream extends RabbitQueue {
  constructor(o: SystemOptions) {
    super(o, 'stream');
  }

  async fillForReplay(a: { url: string; target: string; events: number }, ctx: ClientContext): Promise<number> {
    const conn = await this.open();
    try {
      const ch = await conn.createConfirmChannel();
      const q = this.queueName(a.target);
      const r = await publishInLanes({ url: a.url, target: a.target, t0: 0, t1: Infinity, maxMessages: a.events }, LANES, BATCH, (_lane, first, n) =>
        publishBatch(
          ch,
          q,
          Array.from({ length: n }, (_, i) => makePayload(ctx.processIndex, first + i)),
        ),
      );
      return r.acked;
    } finally {
      await conn.close().catch(() => undefined);
    }
  }

  async replay(a: ReplayArgs, ctx: ClientContext): Promise<ReplayResult> {
    const conn = await this.open();
    try {
      const ch = await conn.createChannel();
      let read = 0;
      let bytes = 0;
      let outOfOrder = 0;
      let done!: () => void;
      const all = new Promise<void>((r) => (done = r));
      const t0 = performance.now();
      ctx.mark('start');
      const c = await consumeWithAcks(ch, this.queueName(a.target), REPLAY_PREFETCH, 'first', (m) => {
        bytes += m.content.byteLength;
        if (readPayload(m.content) === undefined) outOfOrder++;
        if (++read === a.events) done();
      });
      await withTimeout(all, Math.max(1000, a.deadline - Date.now()), `replay of ${a.events} messages`);
      const elapsedMs = performance.now() - t0;
      ctx.mark('end');
      await c.cancel();
      return { read, bytes, elapsedMs, outOfOrder };
    } finally {
      await conn.close().catch(() => undefined);
    }
  }
}

export const rabbitmqSystems: SystemFactory = (o) => [new RabbitQueue(o, 'classic'), new RabbitQueue(o, 'quorum'), new RabbitStream(o)];
