/**
 * A delivery as both sides hold it: the message's event (as stored in the log) and its lease.
 * Settling goes through a function given by whoever made it: the queue engine embedded, the
 * connection in the client. Pure (no Node.js modules): the browser bundle uses it too.
 */
import { bytesToBase64 } from './events.js';
import type { RecordedEvent } from './events.js';
import type { Delivery, NackOptions } from './queues.js';

export interface LeaseFacts {
  receipt: string;
  deliveryCount: number;
  firstDeliveredAt: number;
  leaseExpiresAt: number;
  groupKey: string | undefined;
}

/** Settles one receipt of a queue: ack, nack (with its options) or extend (with a lease length). */
export type SettleLease = (receipt: string, kind: 'ack' | 'nack' | 'extend', arg: NackOptions | number | undefined) => Promise<void>;

export class QueueDelivery implements Delivery {
  readonly queue: string;
  readonly receipt: string;
  readonly deliveryCount: number;
  readonly firstDeliveredAt: number;
  readonly leaseExpiresAt: number;
  readonly groupKey: string | undefined;
  /** The message as stored in the log. */
  readonly event: RecordedEvent;
  #settle: SettleLease;
  #headers: Record<string, unknown> | undefined;

  constructor(queue: string, event: RecordedEvent, lease: LeaseFacts, settle: SettleLease) {
    this.queue = queue;
    this.event = event;
    this.receipt = lease.receipt;
    this.deliveryCount = lease.deliveryCount;
    this.firstDeliveredAt = lease.firstDeliveredAt;
    this.leaseExpiresAt = lease.leaseExpiresAt;
    this.groupKey = lease.groupKey;
    this.#settle = settle;
  }

  get position(): number {
    return this.event.position;
  }
  get id(): string {
    return this.event.id;
  }
  get stream(): string {
    return this.event.stream;
  }
  get type(): string {
    return this.event.type;
  }
  get contentType(): string {
    return this.event.contentType;
  }
  get body(): unknown {
    return this.event.data;
  }
  /** When the message entered the log. */
  get sentAt(): number {
    return this.event.timestamp;
  }
  /** The metadata without Eventful's own `$` keys (but with `$deadLetter`, the history of a dead letter). */
  get headers(): Record<string, unknown> {
    if (this.#headers === undefined) {
      const h: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(this.event.metadata)) if (!k.startsWith('$') || k === '$deadLetter') h[k] = v;
      this.#headers = h;
    }
    return this.#headers;
  }

  ack(): Promise<void> {
    return this.#settle(this.receipt, 'ack', undefined);
  }
  nack(options?: NackOptions): Promise<void> {
    return this.#settle(this.receipt, 'nack', options);
  }
  extend(leaseMs?: number): Promise<void> {
    return this.#settle(this.receipt, 'extend', leaseMs);
  }

  /** The delivery as JSON: the body as JSON, or base64 for other content types. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {
      queue: this.queue,
      receipt: this.receipt,
      deliveryCount: this.deliveryCount,
      firstDeliveredAt: this.firstDeliveredAt,
      leaseExpiresAt: this.leaseExpiresAt,
      position: this.position,
      id: this.id,
      stream: this.stream,
      type: this.type,
      contentType: this.contentType,
      body: this.event.isJson ? this.body : bytesToBase64(this.event.rawData),
      headers: this.headers,
      sentAt: this.sentAt,
    };
    if (this.groupKey !== undefined) out.groupKey = this.groupKey;
    return out;
  }
}
