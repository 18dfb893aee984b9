/**
 * The Eventful client: `connect(url, { token })` gives an object with the embedded store's
 * interface (`EventStore`), talking to a server over the binary protocol.
 *
 *   import { connect } from 'eventful/client';
 *   const store = await connect('tcp://127.0.0.1:7071', { token });
 *
 * This module never loads the storage engine or a native module: the `ws` package is loaded
 * only for ws:// URLs in Node (with its optional native add-ons off), and browsers use their
 * own WebSocket.
 */
import { InvalidArgumentError, ProtocolError, errorFromWire } from '../core/errors.js';
import type { EventfulError } from '../core/errors.js';
import { eventReader } from '../core/events.js';
import type {
  AppendOptions,
  AppendResult,
  DeleteStreamOptions,
  StreamMetadata,
  EventInput,
  EventReader,
  EventStore,
  ListStreamsOptions,
  PageSource,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  StreamInfo,
  SubscribeToAllOptions,
  SubscribeToStreamOptions,
  Subscription,
} from '../core/events.js';
import { isUuid, newEventId } from '../core/ids.js';
import { DEFAULT_CLIENT_LIMITS } from '../core/limits.js';
import { FRAME } from '../protocol/codec.js';
import type { Frame, FrameType } from '../protocol/codec.js';
import { eventInputToWire, strip } from '../protocol/messages.js';
import { decodeEventRecords } from '../protocol/records.js';
import { Connection } from './connection.js';
import type { ConnectOptions, StreamHandler } from './connection.js';
import { dialer } from './transports.js';
import { RemoteQueues } from './queues.js';
import { RemoteGroups } from './groups.js';

export type { ConnectOptions } from './connection.js';
export * from '../core/events.js';
export * from '../core/errors.js';
export type * from '../core/queues.js';
export type * from '../core/groups.js';

export const DEFAULT_TCP_URL = 'tcp://127.0.0.1:7071';
const WINDOW_EVENTS = DEFAULT_CLIENT_LIMITS.readWindowEvents;

/** Connects to a server. Rejects if the first connection or its HELLO fails. */
export async function connect(url: string = DEFAULT_TCP_URL, options: ConnectOptions = {}): Promise<RemoteEventStore> {
  let u: URL;
  try {
    u = new URL(url.includes('://') ? url : `tcp://${url}`);
  } catch {
    throw new InvalidArgumentError(`not a server URL: '${url}' (expected tcp://host:port, tls://, ws:// or wss://)`);
  }
  if (!['tcp:', 'tls:', 'ws:', 'wss:', 'eventful:'].includes(u.protocol)) {
    throw new InvalidArgumentError(`unsupported URL scheme '${u.protocol}' (use tcp://, tls://, ws:// or wss://)`);
  }
  const conn = new Connection(u, options, dialer);
  await conn.open();
  return new RemoteEventStore(conn);
}

export class RemoteEventStore implements EventStore {
  #conn: Connection;
  /** Named queues on the server: the same interface as the embedded store's `queues`. */
  readonly queues: RemoteQueues;
  /** Consumer groups on the server: the same interface as the embedded store's `groups`. */
  readonly groups: RemoteGroups;

  constructor(conn: Connection) {
    this.#conn = conn;
    this.queues = new RemoteQueues(conn);
    this.groups = new RemoteGroups(conn);
  }

  get url(): string {
    return this.#conn.url.href;
  }

  async append(stream: string, events: EventInput[], options?: AppendOptions): Promise<AppendResult> {
    if (!Array.isArray(events)) throw new InvalidArgumentError('events must be an array of { type, data?, metadata?, id?, contentType? }');
    // Ids are fixed here, before the first send, so a re-send after a reconnect is recognised
    // by the server as the same append (idempotency) rather than written twice.
    const wire = events.map((e) => {
      if (typeof e !== 'object' || e === null) throw new InvalidArgumentError('each event must be an object with a type');
      return eventInputToWire(e.id === undefined ? { ...e, id: newEventId() } : e);
    });
    for (const w of wire) if (w.id !== undefined && !isUuid(w.id)) throw new InvalidArgumentError(`event id '${w.id}' is not a UUID`);
    const body: Record<string, unknown> = { stream, events: wire };
    if (options?.expectedRevision !== undefined) body.expectedRevision = options.expectedRevision;
    const f = await this.#conn.request(FRAME.APPEND, body);
    return { positions: f.body.positions as number[], revision: f.body.revision as number };
  }

  readStream(stream: string, options: ReadStreamOptions = {}): EventReader {
    const backwards = options.direction === 'backwards';
    return eventReader(() =>
      this.#feed((last, remaining) => {
        const from = last === undefined ? options.from : backwards ? last.revision - 1 : last.revision + 1;
        if (typeof from === 'number' && from < 0) return undefined;
        return { type: FRAME.READ_STREAM, body: strip({ stream, from, direction: options.direction, limit: remaining }) };
      }, options.limit).next,
    );
  }

  readAll(options: ReadAllOptions = {}): EventReader {
    const backwards = options.direction === 'backwards';
    return eventReader(() =>
      this.#feed((last, remaining) => {
        const from = last === undefined ? options.from : backwards ? last.position - 1 : last.position + 1;
        if (typeof from === 'number' && from < 1 && backwards) return undefined;
        return { type: FRAME.READ_ALL, body: strip({ from, direction: options.direction, limit: remaining, filter: options.filter }) };
      }, options.limit).next,
    );
  }

  subscribeToAll(options: SubscribeToAllOptions = {}): Subscription {
    // Resume right after the last event delivered, or at the start the server resolved
    // ('end' means the head when it subscribed): no gap, no duplicate.
    return this.#subscription((last, start) => {
      const from = last !== undefined ? last.position + 1 : (start ?? options.from);
      return { type: FRAME.SUBSCRIBE, body: strip({ from, filter: options.filter }) };
    });
  }

  subscribeToStream(stream: string, options: SubscribeToStreamOptions = {}): Subscription {
    return this.#subscription((last, start) => {
      const from = last !== undefined ? last.revision + 1 : (start ?? options.from);
      return { type: FRAME.SUBSCRIBE, body: strip({ stream, from }) };
    });
  }

  async streamInfo(stream: string): Promise<StreamInfo | undefined> {
    const f = await this.#conn.request(FRAME.STREAM_INFO, { stream });
    return (f.body.info as StreamInfo | null) ?? undefined;
  }

  async listStreams(options: ListStreamsOptions = {}): Promise<StreamInfo[]> {
    const f = await this.#conn.request(FRAME.LIST_STREAMS, strip({ ...options }));
    return f.body.streams as StreamInfo[];
  }

  async setStreamMetadata(stream: string, metadata: StreamMetadata): Promise<void> {
    await this.#conn.request(FRAME.STREAM_OP, { op: 'setMetadata', stream, metadata });
  }

  async getStreamMetadata(stream: string): Promise<StreamMetadata> {
    const f = await this.#conn.request(FRAME.STREAM_OP, { op: 'getMetadata', stream });
    return f.body.result as StreamMetadata;
  }

  async deleteStream(stream: string, options: DeleteStreamOptions = {}): Promise<void> {
    await this.#conn.request(FRAME.STREAM_OP, strip({ op: 'delete', stream, hard: options.hard, expectedRevision: options.expectedRevision }));
  }

  async headPosition(): Promise<number> {
    const f = await this.#conn.request(FRAME.HEAD, {});
    return f.body.position as number;
  }

  close(): Promise<void> {
    return this.#conn.close();
  }

  /**
   * A flow-controlled feed of EVENTS frames. `request` builds the request from the last event
   * received (undefined at first), so a feed resumes where it stopped after a reconnect.
   */
  #feed(
    request: (last: RecordedEvent | undefined, remaining: number | undefined, start: number | undefined) => { type: FrameType; body: Record<string, unknown> } | undefined,
    limit: number | undefined,
    isSubscription = false,
  ): { next: PageSource; close: () => void } {
    const conn = this.#conn;
    const pages: RecordedEvent[][] = [];
    let waiter: { resolve: () => void } | undefined;
    let failure: unknown;
    let done = false;
    let last: RecordedEvent | undefined;
    let received = 0;
    let requestId = 0;
    let start: number | undefined; // where the server said a subscription starts
    const wake = (): void => {
      const w = waiter;
      waiter = undefined;
      w?.resolve();
    };
    const handler: StreamHandler = {
      onFrame(f: Frame) {
        if (f.type === FRAME.EVENTS) {
          const events = eventsOf(f.body);
          if (events.length > 0) {
            pages.push(events);
            last = events[events.length - 1];
            received += events.length;
          }
          if (f.body.done === true) {
            done = true;
            conn.closeStream(requestId);
          }
        } else if (f.type === FRAME.ERROR) {
          failure = errorFromWire(f.body.code, f.body.message, f.body.details);
          conn.closeStream(requestId);
        } else if (f.type === FRAME.SUBSCRIBED) {
          if (typeof f.body.from === 'number' && last === undefined) start = f.body.from;
        } else if (f.type === FRAME.SUBSCRIPTION_ENDED) {
          // A server shutting down ends subscriptions; the reconnect resumes them.
          if (f.body.reason !== 'server shutting down') {
            done = true;
            conn.closeStream(requestId);
          }
        }
        wake();
      },
      onDisconnect(err: EventfulError, willResume: boolean) {
        if (willResume) return;
        failure = err;
        wake();
      },
      resume(newId: number) {
        if (done || failure !== undefined) return undefined;
        requestId = newId;
        const remaining = limit === undefined ? undefined : limit - received;
        if (remaining !== undefined && remaining <= 0) {
          done = true;
          return undefined;
        }
        const r = request(last, remaining, start);
        if (r === undefined) {
          done = true;
          wake();
          return undefined;
        }
        // Credit for what is not yet consumed is granted again on the new request.
        r.body.credit = WINDOW_EVENTS;
        buffered = 0;
        return r;
      },
    };
    let buffered = 0;
    const first = request(undefined, limit, undefined);
    if (first === undefined) done = true;
    else {
      first.body.credit = WINDOW_EVENTS;
      requestId = conn.openStream(first.type, first.body, handler);
    }
    const next: PageSource = async () => {
      for (;;) {
        const page = pages.shift();
        if (page !== undefined) {
          // Give back the credit this page used, so the window stays full.
          buffered += page.length;
          if (buffered >= WINDOW_EVENTS / 4 && !done) {
            conn.notify(FRAME.CREDIT, requestId, { credit: buffered });
            buffered = 0;
          }
          return page;
        }
        if (failure !== undefined) {
          const f = failure;
          failure = undefined;
          done = true;
          conn.closeStream(requestId);
          throw f;
        }
        if (done) return undefined;
        await new Promise<void>((resolve) => (waiter = { resolve }));
      }
    };
    const close = (): void => {
      if (!done) {
        done = true;
        conn.notify(isSubscription ? FRAME.UNSUBSCRIBE : FRAME.CANCEL, requestId, {});
        conn.closeStream(requestId);
      }
      wake();
    };
    return { next, close };
  }

  #subscription(request: (last: RecordedEvent | undefined, start: number | undefined) => { type: FrameType; body: Record<string, unknown> }): Subscription {
    const feed = this.#feed((last, _remaining, start) => request(last, start), undefined, true);
    let buffered: RecordedEvent[] = [];
    let i = 0;
    let lastPosition = 0;
    let closed = false;
    const iterator: AsyncIterator<RecordedEvent> = {
      async next() {
        while (i >= buffered.length) {
          if (closed) return { done: true, value: undefined };
          const p = await feed.next();
          if (p === undefined) return { done: true, value: undefined };
          buffered = p;
          i = 0;
        }
        const e = buffered[i++]!;
        lastPosition = e.position;
        return { done: false, value: e };
      },
      async return() {
        closed = true;
        feed.close();
        return { done: true, value: undefined };
      },
    };
    return {
      get lastPosition() {
        return lastPosition;
      },
      pages: () => ({
        [Symbol.asyncIterator]: () => ({
          async next(): Promise<IteratorResult<RecordedEvent[]>> {
            if (closed) return { done: true, value: undefined };
            const p = await feed.next();
            if (p === undefined) return { done: true, value: undefined };
            lastPosition = p[p.length - 1]!.position;
            return { done: false, value: p };
          },
          async return(): Promise<IteratorResult<RecordedEvent[]>> {
            closed = true;
            feed.close();
            return { done: true, value: undefined };
          },
        }),
      }),
      async close() {
        closed = true;
        feed.close();
      },
      [Symbol.asyncIterator]: () => iterator,
    };
  }
}

/** The events of an EVENTS frame (a records blob, src/protocol/records.ts). */
function eventsOf(body: Record<string, unknown>): RecordedEvent[] {
  if (body.records === undefined) return [];
  if (!(body.records instanceof Uint8Array) || typeof body.count !== 'number') throw new ProtocolError('EVENTS records must be bytes with a count');
  return decodeEventRecords(body.records, body.count);
}
