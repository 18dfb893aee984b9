/**
 * Queues through a server: the same `Queues` interface as the embedded store's, over the
 * binary protocol (QUEUE requests, CONSUME with DELIVERIES pushed; src/protocol/messages.ts).
 *
 * A consumer's leases belong to its connection. When the connection drops, the server gives
 * them back to the queue; the consumer resumes on the new connection and the deliveries it had
 * buffered but not handed out are dropped (they will come again).
 */
import { InvalidArgumentError, ProtocolError, errorFromWire } from '../core/errors.js';
import type { EventfulError } from '../core/errors.js';
import type {
  ConsumeOptions,
  Consumer,
  Delivery,
  MessageInput,
  NackOptions,
  QueueInfo,
  QueueSettingsInput,
  QueueStats,
  Queues,
  ReceiveOptions,
  RedriveOptions,
  SendResult,
} from '../core/queues.js';
import { FRAME } from '../protocol/codec.js';
import type { Frame } from '../protocol/codec.js';
import { messageToWire, strip } from '../protocol/messages.js';
import { decodeEventRecords } from '../protocol/records.js';
import { QueueDelivery } from '../core/delivery.js';
import type { Connection, StreamHandler } from './connection.js';

export class RemoteQueues implements Queues {
  #conn: Connection;

  constructor(conn: Connection) {
    this.#conn = conn;
  }

  async #op(op: string, body: Record<string, unknown>): Promise<unknown> {
    const f = await this.#conn.request(FRAME.QUEUE, { op, ...strip(body) });
    return f.body.result;
  }

  async create(name: string, settings?: QueueSettingsInput): Promise<QueueInfo> {
    return (await this.#op('create', { queue: name, settings })) as QueueInfo;
  }
  async update(name: string, settings: QueueSettingsInput): Promise<QueueInfo> {
    return (await this.#op('update', { queue: name, settings })) as QueueInfo;
  }
  async get(name: string): Promise<QueueInfo | undefined> {
    return ((await this.#op('get', { queue: name })) as QueueInfo | null) ?? undefined;
  }
  async list(): Promise<QueueInfo[]> {
    return (await this.#op('list', {})) as QueueInfo[];
  }
  async delete(name: string): Promise<void> {
    await this.#op('delete', { queue: name });
  }
  async purge(name: string): Promise<number> {
    return (await this.#op('purge', { queue: name })) as number;
  }
  async send(name: string, messages: MessageInput[]): Promise<SendResult> {
    if (!Array.isArray(messages)) throw new InvalidArgumentError('messages must be an array of { body?, headers?, id?, ... }');
    // Ids are fixed here, before the first send, so a re-send after a reconnect is recognised
    // as the same message (the queue's dedup window and the log's idempotency).
    const wire = messages.map((m) => messageToWire(typeof m === 'object' && m !== null && m.id === undefined ? { ...m, id: globalThis.crypto.randomUUID() } : m));
    const r = (await this.#op('send', { queue: name, messages: wire })) as Omit<SendResult, 'ids'>;
    return { ids: wire.map((w) => w.id as string), positions: r.positions, duplicates: r.duplicates };
  }
  async cancel(name: string, messageId: string): Promise<boolean> {
    return (await this.#op('cancel', { queue: name, id: messageId })) as boolean;
  }
  async receive(name: string, options?: ReceiveOptions): Promise<Delivery[]> {
    const r = (await this.#op('receive', { queue: name, ...options })) as Record<string, unknown>;
    return deliveriesOf(r, (receipts, kind, arg) => this.#settle(name, receipts, kind, arg));
  }
  async ack(name: string, receipts: string | string[]): Promise<void> {
    await this.#op('ack', { queue: name, receipts });
  }
  async nack(name: string, receipts: string | string[], options?: NackOptions): Promise<void> {
    await this.#op('nack', { queue: name, receipts, options });
  }
  async extend(name: string, receipts: string | string[], leaseMs?: number): Promise<void> {
    await this.#op('extend', { queue: name, receipts, leaseMs });
  }
  async redrive(name: string, options?: RedriveOptions): Promise<number> {
    return (await this.#op('redrive', { queue: name, options })) as number;
  }
  async unpark(name: string, groupKey: string): Promise<boolean> {
    return (await this.#op('unpark', { queue: name, groupKey })) as boolean;
  }
  async stats(name: string): Promise<QueueStats> {
    return (await this.#op('stats', { queue: name })) as QueueStats;
  }

  #settle(name: string, receipts: string | string[], kind: 'ack' | 'nack' | 'extend', arg: unknown): Promise<void> {
    if (kind === 'ack') return this.ack(name, receipts);
    if (kind === 'nack') return this.nack(name, receipts, arg as NackOptions | undefined);
    return this.extend(name, receipts, arg as number | undefined);
  }

  consume(name: string, options: ConsumeOptions = {}): Consumer {
    return new RemoteConsumer(this.#conn, name, options.prefetch ?? 100, (receipts, kind, arg) => this.#settle(name, receipts, kind, arg));
  }
}

type Settle = (receipts: string | string[], kind: 'ack' | 'nack' | 'extend', arg: unknown) => Promise<void>;


function deliveriesOf(body: Record<string, unknown>, settle: Settle): QueueDelivery[] {
  if (body.count === 0 || body.records === undefined) return [];
  if (!(body.records instanceof Uint8Array) || typeof body.count !== 'number' || !Array.isArray(body.leases) || body.leases.length !== body.count) {
    throw new ProtocolError('DELIVERIES needs records, a count and one lease per record');
  }
  const events = decodeEventRecords(body.records, body.count);
  const queue = body.queue as string;
  const leases = body.leases as unknown[][];
  return events.map((e, i) => {
    const l = leases[i]!;
    const lease = { receipt: l[0] as string, deliveryCount: l[1] as number, firstDeliveredAt: l[2] as number, leaseExpiresAt: l[3] as number, groupKey: (l[4] as string | null) ?? undefined };
    return new QueueDelivery(queue, e, lease, settle);
  });
}

class RemoteConsumer implements Consumer {
  readonly queue: string;
  #conn: Connection;
  #settle: Settle;
  #buffer: QueueDelivery[] = [];
  #waiter: (() => void) | undefined;
  #failure: EventfulError | undefined;
  #done = false;
  #requestId: number;

  constructor(conn: Connection, queue: string, prefetch: number, settle: Settle) {
    this.queue = queue;
    this.#conn = conn;
    this.#settle = settle;
    const self = this;
    const handler: StreamHandler = {
      onFrame(f: Frame) {
        if (f.type === FRAME.DELIVERIES) {
          try {
            for (const d of deliveriesOf(f.body, settle)) self.#buffer.push(d);
          } catch (err) {
            self.#failure = err as EventfulError;
          }
        } else if (f.type === FRAME.ERROR) {
          self.#failure = errorFromWire(f.body.code, f.body.message, f.body.details);
          self.#finish();
        } else if (f.type === FRAME.SUBSCRIPTION_ENDED && f.body.reason !== 'server shutting down') {
          self.#finish();
        }
        self.#wake();
      },
      onDisconnect(err: EventfulError, willResume: boolean) {
        // The server gives this connection's leases back to the queue: what is buffered here
        // can no longer be acked and will be delivered again.
        self.#buffer = [];
        if (!willResume) self.#failure = err;
        self.#wake();
      },
      resume(newId: number) {
        if (self.#done) return undefined;
        self.#requestId = newId;
        return { type: FRAME.CONSUME, body: { queue, prefetch } };
      },
    };
    this.#requestId = conn.openStream(FRAME.CONSUME, { queue, prefetch }, handler);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#conn.closeStream(this.#requestId);
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return {
      next: async () => {
        for (;;) {
          const d = this.#buffer.shift();
          if (d !== undefined) return { done: false, value: d };
          if (this.#failure !== undefined) {
            const f = this.#failure;
            this.#failure = undefined;
            this.#finish();
            throw f;
          }
          if (this.#done) return { done: true, value: undefined };
          await new Promise<void>((r) => (this.#waiter = r));
        }
      },
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  ack(receipts: string | string[]): Promise<void> {
    return this.#settle(receipts, 'ack', undefined);
  }
  nack(receipts: string | string[], options?: NackOptions): Promise<void> {
    return this.#settle(receipts, 'nack', options);
  }
  extend(receipts: string | string[], leaseMs?: number): Promise<void> {
    return this.#settle(receipts, 'extend', leaseMs);
  }

  async close(): Promise<void> {
    if (!this.#done) {
      this.#conn.notify(FRAME.UNSUBSCRIBE, this.#requestId, {});
      this.#finish();
    }
    this.#buffer = [];
    this.#wake();
  }
}
