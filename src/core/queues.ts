/**
 * Queues' public vocabulary, shared by the embedded store and the client.
 *
 * A queue is a way of reading the log, not a copy of it. A message sent to queue `q` is an
 * event appended to the stream `$queue-q` (so the queue keeps its history and can be read like
 * any stream); a queue *bound* to the log receives the events that match its filter where they
 * already are. What the queue adds is delivery state: which messages are leased, acked,
 * delayed or dead, kept as records of its own in the log (`$qops-q`) and in snapshots.
 */
import type { ReadAllFilter } from './events.js';

/** How a queue hands out its messages. */
export type QueueOrdering = 'unordered' | 'fifo';

/** What happens to a send when the queue already holds `maxLength` messages. */
export type OverflowPolicy = 'reject' | 'drop-oldest';

/** In a FIFO queue, what happens to a group whose head message used up its deliveries. */
export type PoisonPolicy = 'park' | 'skip';

export interface RetryBackoff {
  /** Delay before the first redelivery. @default 1,000 ms */
  initialMs: number;
  /** Longest delay. @default 60,000 ms */
  maxMs: number;
  /** Each further failure multiplies the delay by this. @default 2 */
  multiplier: number;
  /** Fraction of the delay that is random (0: none, 1: anywhere from 0 to the delay). @default 0.2 */
  jitter: number;
}

export interface QueueBinding {
  /** Which events of the log the queue receives (streams starting with '$' never match). */
  filter: ReadAllFilter;
  /**
   * First log position the binding takes. @default the position right after the queue was
   * created or bound (only events appended from then on)
   */
  from?: number | 'start';
}

export interface QueueSettings {
  /** How long a delivery is leased before it can go to another consumer. @default 30,000 ms */
  leaseMs: number;
  /** Deliveries before a message goes to the dead-letter queue (or is dropped). @default 5 */
  maxDeliveries: number;
  /** Queue that receives messages past `maxDeliveries`, nacked to dead letters, or dropped by overflow. @default none */
  deadLetterQueue: string | null;
  retryBackoff: RetryBackoff;
  /** Delay applied to every message: a sent message is delivered no earlier than the later of this and its own delay. @default 0 */
  deliveryDelayMs: number;
  /** Most messages waiting (ready or delayed); null for no bound. @default null */
  maxLength: number | null;
  /** @default 'reject' */
  overflow: OverflowPolicy;
  /** A message id seen within this window is accepted but not enqueued twice. 0 turns dedup off. @default 300,000 ms */
  dedupWindowMs: number;
  /** @default 'unordered' (fixed when the queue is created) */
  ordering: QueueOrdering;
  /** FIFO only. @default 'park' */
  poison: PoisonPolicy;
  /** Receive events from the log; null for a queue fed only by `send`. @default null */
  binding: QueueBinding | null;
}

/** Settings as given to `create` and `update`: any subset, the back-off too. */
export type QueueSettingsInput = Partial<Omit<QueueSettings, 'retryBackoff'>> & { retryBackoff?: Partial<RetryBackoff> };

export interface QueueInfo {
  name: string;
  settings: QueueSettings;
  /** Log position of the record that created the queue. */
  createdPosition: number;
  createdAt: number;
  /** The stream that holds the queue's sent messages. */
  stream: string;
}

/** A message as given to `send`. */
export interface MessageInput {
  /** Any JSON value, or bytes (with `contentType`). */
  body?: unknown;
  contentType?: string;
  /** String headers, kept with the message. Keys starting with '$' are reserved. */
  headers?: Record<string, string>;
  /** A UUID. Re-sending the same id within the queue's dedup window is accepted once. */
  id?: string;
  /** The message's type as stored in the log. @default 'message' */
  type?: string;
  /** FIFO queues: messages of one group are delivered one at a time, in order. */
  groupKey?: string;
  /** Deliver no earlier than this many ms from now. */
  delayMs?: number;
  /** Deliver no earlier than this time (ms since the epoch). */
  deliverAt?: number;
}

export interface SendResult {
  /** Each message's id, in order. */
  ids: string[];
  /** Each message's log position (a duplicate gets its first copy's position). */
  positions: number[];
  /** How many of the messages were duplicates within the dedup window, not enqueued again. */
  duplicates: number;
}

/** A message handed to a consumer, under a lease. */
export interface DeliveryInfo {
  queue: string;
  /** Names this delivery's lease: ack, nack and extend take it. */
  receipt: string;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** When the message was first delivered (ms since the epoch). */
  firstDeliveredAt: number;
  /** When the lease runs out unless extended. */
  leaseExpiresAt: number;
  /** The message's log position. */
  position: number;
  /** The message (event) id. */
  id: string;
  /** Where the message is in the log: `$queue-<name>` for sent messages, the event's stream when bound. */
  stream: string;
  type: string;
  contentType: string;
  /** Parsed JSON, or bytes. */
  body: unknown;
  /** The message's headers (for a bound event: its metadata). */
  headers: Record<string, unknown>;
  groupKey?: string;
  /** When the message entered the log. */
  sentAt: number;
}

export interface NackOptions {
  /** Make the message deliverable again after this delay instead of its back-off. */
  delayMs?: number;
  /** Send it to the dead-letter queue now (or drop it when the queue has none). */
  deadLetter?: boolean;
  /** Why, kept in the dead-letter history. */
  reason?: string;
}

/** A delivery with its lease's actions bound to the consumer that holds it. */
export interface Delivery extends DeliveryInfo {
  ack(): Promise<void>;
  nack(options?: NackOptions): Promise<void>;
  /** Lengthens the lease to `leaseMs` from now (default: the queue's lease). */
  extend(leaseMs?: number): Promise<void>;
}

export interface ConsumeOptions {
  /** Most deliveries this consumer holds unacked at once. @default 100 */
  prefetch?: number;
}

/** A push consumer: iterate its deliveries; closing it releases its leases. */
export interface Consumer extends AsyncIterable<Delivery> {
  readonly queue: string;
  ack(receipts: string | string[]): Promise<void>;
  nack(receipts: string | string[], options?: NackOptions): Promise<void>;
  extend(receipts: string | string[], leaseMs?: number): Promise<void>;
  /** Stops deliveries; every lease still held goes back to the queue (after its back-off). */
  close(): Promise<void>;
}

export interface ReceiveOptions {
  /** Most messages to take. @default 1 */
  max?: number;
  /** Wait this long for the first message when none is ready (long polling). @default 0 */
  waitMs?: number;
  /**
   * Through a server, leases belong to the connection that received them and go back to the
   * queue when it closes. Detached leases outlive it (they end only by ack, nack or running
   * out), so another connection (a CLI call, an HTTP request) can settle them. Embedded and
   * over HTTP, receives are always detached. @default false
   */
  detached?: boolean;
}

export interface RedriveOptions {
  /** Queue to move messages to. @default each message's original queue */
  to?: string;
  /** Move at most this many. @default all */
  count?: number;
  /** Move only these message ids. */
  ids?: string[];
  /** Most messages moved per second. @default no limit */
  ratePerSec?: number;
}

export interface QueueStats {
  name: string;
  /** Messages not yet acked: ready + delayed + in flight. */
  depth: number;
  ready: number;
  inFlight: number;
  delayed: number;
  /** FIFO: groups parked behind a poison message. */
  parkedGroups: number;
  /** Messages this queue sent to its dead-letter queue since it was created. */
  deadLettered: number;
  /** Age of the oldest message not yet acked, ms (0 when empty). */
  oldestUnackedAgeMs: number;
  consumers: number;
  /** Per second, over the last 10 seconds. */
  rates: { send: number; ack: number; nack: number; redelivery: number };
  /** Totals since the server started. */
  totals: { sent: number; acked: number; nacked: number; redelivered: number; expired: number; dropped: number; rejected: number };
}

/** Queues, embedded or remote: the same interface. */
export interface Queues {
  create(name: string, settings?: QueueSettingsInput): Promise<QueueInfo>;
  /** Changes settings of an existing queue (not `ordering`). */
  update(name: string, settings: QueueSettingsInput): Promise<QueueInfo>;
  get(name: string): Promise<QueueInfo | undefined>;
  list(): Promise<QueueInfo[]>;
  /** Deletes the queue and its delivery state; its messages stay in the log as history. */
  delete(name: string): Promise<void>;
  /** Drops every message not yet acked; returns how many. */
  purge(name: string): Promise<number>;
  send(name: string, messages: MessageInput[]): Promise<SendResult>;
  /** Cancels a message that has not been delivered yet (a delayed one, typically); false when it is gone or leased. */
  cancel(name: string, messageId: string): Promise<boolean>;
  /** Push: deliveries as they become ready, at most `prefetch` unacked. */
  consume(name: string, options?: ConsumeOptions): Consumer;
  /** Pull: up to `max` deliveries, waiting up to `waitMs` for the first. */
  receive(name: string, options?: ReceiveOptions): Promise<Delivery[]>;
  ack(name: string, receipts: string | string[]): Promise<void>;
  nack(name: string, receipts: string | string[], options?: NackOptions): Promise<void>;
  extend(name: string, receipts: string | string[], leaseMs?: number): Promise<void>;
  /** Moves messages out of a (dead-letter) queue, back to where they came from or to `to`. */
  redrive(name: string, options?: RedriveOptions): Promise<number>;
  /** FIFO: releases a parked group (its head was dead-lettered) so its next message flows. */
  unpark(name: string, groupKey: string): Promise<boolean>;
  stats(name: string): Promise<QueueStats>;
}
