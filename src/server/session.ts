/**
 * One binary-protocol connection, over TCP or WebSocket (the transport is abstract here).
 *
 * - The first frame must be HELLO; until then nothing else is served.
 * - Requests are handled concurrently (pipelining): each is answered under its request id, at
 *   most `inFlightRequestsMax` at a time.
 * - Reads and subscriptions are credit-based: the client grants `credit` events and tops it up
 *   with CREDIT frames; the server never sends more than granted, so a slow consumer costs the
 *   server at most one page per stream.
 * - Outgoing frames made in the same turn go out in one write. When the transport's queue passes
 *   `outputBufferBytesMax` the session stops reading requests until it drains, so a client that
 *   sends faster than it reads cannot make the server buffer without bound.
 * - PING every `heartbeatMs` of quiet; a peer silent for `idleTimeoutMs` is disconnected.
 */
import { EventfulError, GroupConflictError, InternalError, OverloadedError, ProtocolError, UnauthenticatedError } from '../core/errors.js';
import type { EventStore, PageSource, ReadAllFilter, RecordedEvent, Subscription } from '../core/events.js';
import type { ServerLimits } from '../core/limits.js';
import { FRAME, FRAME_NAMES, FrameDecoder, PROTOCOL_VERSION, encodeFrame } from '../protocol/codec.js';
import type { Frame, FrameType } from '../protocol/codec.js';
import { errorBody, eventInputFromWire, messageFromWire } from '../protocol/messages.js';
import type { QueueManager, ConsumerImpl } from '../queues/manager.js';
import type { QueueDelivery } from '../core/delivery.js';
import { LeaseGroup } from '../queues/manager.js';
import { queueStream } from '../queues/settings.js';
import type { GroupManager, MemberImpl } from '../subscriptions/groups.js';
import type { Role } from './auth.js';
import { encodeEventRecords } from '../protocol/records.js';
import { requireReadAll, requireRole } from './auth.js';
import type { Authenticator, Principal } from './auth.js';

export interface Transport {
  /** Queues bytes; false when the queue is over the transport's own high-water mark. */
  write(bytes: Buffer): void;
  readonly bufferedBytes: number;
  pauseReading(): void;
  resumeReading(): void;
  onDrain(cb: () => void): void;
  close(): void;
  readonly remote: string;
}

export interface SessionContext {
  store: EventStore;
  queues: QueueManager;
  groups: GroupManager;
  /** The embedded store's frames, for sending the log without decoding it (subscriptions to $all). */
  frames?: FrameSource;
  auth: Authenticator;
  limits: ServerLimits;
  serverName: string;
  log: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
  /** Called with the code of every ERROR frame sent (for metrics). */
  onError?: (code: string) => void;
}

interface Stream {
  credit: number;
  wake: (() => void) | undefined;
  cancelled: boolean;
  subscription?: Subscription;
  consumer?: ConsumerImpl;
  member?: MemberImpl;
}

export class Session {
  #t: Transport;
  #ctx: SessionContext;
  #decoder: FrameDecoder;
  #principal: Principal | undefined;
  #outbox: Buffer[] = [];
  #outboxBytes = 0;
  #flushScheduled = false;
  #inFlight = 0;
  #streams = new Map<number, Stream>();
  #subscriptions = 0;
  #lastHeard = Date.now();
  #timer: NodeJS.Timeout;
  #helloTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #paused = false;
  #onClose: () => void;
  /** Leases of this connection's pull receives, per queue: released when it goes. */
  #pullLeases = new Map<string, LeaseGroup>();
  /** Aborted when the connection goes: its long-polling receives stop waiting. */
  #gone = new AbortController();

  constructor(transport: Transport, ctx: SessionContext, onClose: () => void) {
    this.#t = transport;
    this.#ctx = ctx;
    this.#onClose = onClose;
    this.#decoder = new FrameDecoder(ctx.limits.frameBytesMax);
    this.#timer = setInterval(() => this.#tick(), Math.min(ctx.limits.heartbeatMs, 1000));
    this.#timer.unref();
    this.#helloTimer = setTimeout(() => this.#fatal(new ProtocolError('no HELLO in time')), ctx.limits.helloTimeoutMs);
    this.#helloTimer.unref();
    transport.onDrain(() => this.#drained());
  }

  /** Bytes from the transport. */
  receive(chunk: Buffer): void {
    if (this.#closed || this.#shuttingDown) return;
    this.#lastHeard = Date.now();
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      this.#fatal(err instanceof EventfulError ? err : new ProtocolError(String(err)));
      return;
    }
    for (const f of frames) {
      if (this.#closed) return;
      this.#handle(f);
    }
  }

  /** The transport closed: end every read and subscription of this connection. */
  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#helloTimer) clearTimeout(this.#helloTimer);
    for (const s of this.#streams.values()) this.#cancel(s);
    this.#streams.clear();
    this.#gone.abort();
    for (const [queue, g] of this.#pullLeases) this.#ctx.queues.release(queue, g.leases);
    this.#pullLeases.clear();
    for (const w of this.#idleWaiters.splice(0)) w();
    this.#onClose();
  }

  /**
   * Server shutdown: read no more requests, end reads and subscriptions, wait for the requests
   * in flight (appends are answered once durable), send what is queued, then close.
   */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    this.#t.pauseReading();
    for (const [id, s] of this.#streams) {
      this.#cancel(s);
      this.#send(FRAME.SUBSCRIPTION_ENDED, id, { reason: 'server shutting down' });
    }
    while (this.#inFlight > 0 && !this.#closed) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    this.#flush();
    this.#t.close();
  }

  #idleWaiters: Array<() => void> = [];
  #shuttingDown = false;

  #handle(f: Frame): void {
    if (this.#principal === undefined) {
      if (f.type !== FRAME.HELLO) return this.#fatal(new ProtocolError(`the first frame must be HELLO, got ${FRAME_NAMES[f.type]}`));
      return this.#hello(f);
    }
    switch (f.type) {
      case FRAME.PING:
        return this.#send(FRAME.PONG, f.requestId, {});
      case FRAME.PONG:
        return;
      case FRAME.CREDIT: {
        const s = this.#streams.get(f.requestId);
        const n = f.body.credit;
        // A group member's CREDIT may carry only its commit (everything it was given up to
        // `handled` is handled), with no credit.
        const handled = f.body.handled;
        if (handled !== undefined && (typeof handled !== 'number' || !Number.isSafeInteger(handled) || handled < 0)) {
          return this.#error(f.requestId, new ProtocolError('CREDIT handled must be a position'));
        }
        if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || (n === 0 && handled === undefined)) {
          return this.#error(f.requestId, new ProtocolError('CREDIT needs a positive integer credit'));
        }
        if (s) {
          if (handled !== undefined) s.member?.markHandled(handled);
          s.credit += n;
          s.wake?.();
        }
        return;
      }
      case FRAME.UNSUBSCRIBE:
      case FRAME.CANCEL: {
        const s = this.#streams.get(f.requestId);
        if (s) {
          this.#cancel(s);
          this.#streams.delete(f.requestId);
          this.#send(f.type === FRAME.UNSUBSCRIBE ? FRAME.SUBSCRIPTION_ENDED : FRAME.EVENTS, f.requestId, f.type === FRAME.UNSUBSCRIBE ? { reason: 'unsubscribed' } : { done: true });
        }
        return;
      }
      case FRAME.HELLO:
        return this.#error(f.requestId, new ProtocolError('HELLO was already sent'));
      default:
        break;
    }
    if (this.#inFlight >= this.#ctx.limits.inFlightRequestsMax) {
      return this.#error(f.requestId, new OverloadedError(`more than ${this.#ctx.limits.inFlightRequestsMax} requests in flight on this connection`));
    }
    this.#inFlight++;
    this.#request(f)
      .catch((err: unknown) => this.#error(f.requestId, toEventfulError(err, this.#ctx)))
      .finally(() => {
        if (--this.#inFlight === 0 && this.#idleWaiters.length > 0) {
          for (const w of this.#idleWaiters.splice(0)) w();
        }
      });
  }

  #hello(f: Frame): void {
    if (this.#helloTimer) clearTimeout(this.#helloTimer);
    this.#helloTimer = undefined;
    const version = f.body.version;
    if (version !== PROTOCOL_VERSION) {
      const said = typeof version === 'number' || typeof version === 'string' ? String(version) : typeof version;
      return this.#fatal(new ProtocolError(`protocol version ${said} is not supported; this server speaks ${PROTOCOL_VERSION}`, { supported: [PROTOCOL_VERSION] }), f.requestId);
    }
    if (f.body.token !== undefined && typeof f.body.token !== 'string') return this.#fatal(new ProtocolError('HELLO token must be a string'), f.requestId);
    try {
      this.#principal = this.#ctx.auth.authenticate(typeof f.body.token === 'string' ? f.body.token : undefined);
    } catch (err) {
      return this.#fatal(err instanceof EventfulError ? err : new UnauthenticatedError(), f.requestId);
    }
    const l = this.#ctx.limits;
    this.#send(FRAME.WELCOME, f.requestId, {
      version: PROTOCOL_VERSION,
      server: this.#ctx.serverName,
      heartbeatMs: l.heartbeatMs,
      limits: { frameBytesMax: l.frameBytesMax, inFlightRequestsMax: l.inFlightRequestsMax, readPageEventsMax: l.readPageEventsMax },
    });
  }

  async #request(f: Frame): Promise<void> {
    const b = f.body;
    const store = this.#ctx.store;
    const p = this.#principal!;
    switch (f.type) {
      case FRAME.APPEND: {
        const stream = streamField(b);
        if (!Array.isArray(b.events)) throw new ProtocolError('APPEND needs an events array');
        requireRole(p, 'write', stream);
        const events = b.events.map((e, i) => eventInputFromWire(e, i));
        const options = b.expectedRevision === undefined ? undefined : { expectedRevision: b.expectedRevision as never };
        const r = await store.append(stream, events, options);
        return this.#send(FRAME.APPENDED, f.requestId, r as unknown as Record<string, unknown>);
      }
      case FRAME.READ_STREAM: {
        const stream = streamField(b);
        requireRole(p, 'read', stream);
        const reader = store.readStream(stream, pick(b, ['from', 'direction', 'limit']));
        return this.#pump(f.requestId, b.credit, pagesOf(reader, this.#ctx.limits.readPageEventsMax));
      }
      case FRAME.READ_ALL: {
        requireReadAll(p, b.filter as ReadAllFilter | undefined);
        if (this.#ctx.frames !== undefined && b.direction !== 'backwards') {
          // Forwards, the log's frames go out as wire records without being decoded.
          const next = this.#ctx.frames.readAllFrames(pick(b, ['from', 'limit', 'filter']));
          return this.#pump(f.requestId, b.credit, next, undefined, framesToRecords);
        }
        const reader = store.readAll(pick(b, ['from', 'direction', 'limit', 'filter']));
        return this.#pump(f.requestId, b.credit, pagesOf(reader, this.#ctx.limits.readPageEventsMax));
      }
      case FRAME.SUBSCRIBE: {
        if (this.#subscriptions >= this.#ctx.limits.subscriptionsPerConnectionMax) {
          throw new OverloadedError(`at most ${this.#ctx.limits.subscriptionsPerConnectionMax} subscriptions per connection`);
        }
        // 'end' is resolved here and told to the client (SUBSCRIBED.from), so that a client that
        // reconnects before its first event resumes from the same place, not a later 'end'.
        let sub: Subscription;
        let from = b.from;
        if (b.stream !== undefined) {
          const stream = streamField(b);
          requireRole(p, 'read', stream);
          if (from === undefined || from === 'end') from = ((await store.streamInfo(stream))?.revision ?? -1) + 1;
          sub = store.subscribeToStream(stream, { from: from as number });
        } else {
          requireReadAll(p, b.filter as ReadAllFilter | undefined);
          if (from === undefined || from === 'end') from = (await store.headPosition()) + 1;
          const frames = this.#ctx.frames;
          if (frames !== undefined) {
            // The log's frames go out as wire records without being decoded into events: the
            // fields after a frame's header are laid out alike in both (see framesToRecords).
            if (typeof from !== 'number' && from !== 'start') throw new ProtocolError("'from' must be a position, 'start' or 'end'");
            const state = { closed: false };
            const gen = frames.followFrames(from === 'start' ? 1 : from, b.filter as ReadAllFilter | undefined, state);
            const close = async (): Promise<void> => {
              state.closed = true;
              frames.wakeFollowers();
              await gen.return(undefined);
            };
            this.#subscriptions++;
            try {
              const next = async (): Promise<FrameRef[] | undefined> => {
                const r = await gen.next();
                return r.done ? undefined : r.value;
              };
              return await this.#pump(f.requestId, b.credit, next, { sub: { close }, from: typeof from === 'number' ? from : undefined }, framesToRecords);
            } finally {
              this.#subscriptions--;
              await close();
            }
          }
          sub = store.subscribeToAll({ ...pick(b, ['filter']), from: from as number });
        }
        this.#subscriptions++;
        try {
          return await this.#pump(f.requestId, b.credit, pagesOf(sub, this.#ctx.limits.readPageEventsMax), { sub, from: typeof from === 'number' ? from : undefined });
        } finally {
          this.#subscriptions--;
          await sub.close();
        }
      }
      case FRAME.STREAM_INFO: {
        const stream = streamField(b);
        requireRole(p, 'read', stream);
        const info = await store.streamInfo(stream);
        return this.#send(FRAME.STREAM_INFO_RESULT, f.requestId, { info: info ?? null });
      }
      case FRAME.LIST_STREAMS: {
        const prefix = typeof b.prefix === 'string' ? b.prefix : '';
        requireRole(p, 'read', prefix);
        const streams = await store.listStreams(pick(b, ['prefix', 'after', 'limit']));
        return this.#send(FRAME.STREAMS, f.requestId, { streams });
      }
      case FRAME.STREAM_OP: {
        const stream = streamField(b);
        if (b.op === 'getMetadata') {
          requireRole(p, 'read', stream);
          return this.#send(FRAME.STREAM_OP_RESULT, f.requestId, { result: await store.getStreamMetadata(stream) });
        }
        requireRole(p, 'admin', stream);
        if (b.op === 'setMetadata') await store.setStreamMetadata(stream, (b.metadata ?? undefined) as never);
        else if (b.op === 'delete') await store.deleteStream(stream, pick(b, ['hard', 'expectedRevision']));
        else throw new ProtocolError(`unknown stream op ${typeof b.op === 'string' ? `'${b.op.slice(0, 32)}'` : typeof b.op}`);
        return this.#send(FRAME.STREAM_OP_RESULT, f.requestId, { result: null });
      }
      case FRAME.HEAD:
        return this.#send(FRAME.HEAD_RESULT, f.requestId, { position: await store.headPosition() });
      case FRAME.QUEUE:
        return this.#send(FRAME.QUEUE_RESULT, f.requestId, { result: await this.#queueOp(b) });
      case FRAME.CONSUME: {
        const queue = queueField(b);
        requireQueue(p, 'read', queue);
        if (this.#subscriptions >= this.#ctx.limits.subscriptionsPerConnectionMax) {
          throw new OverloadedError(`at most ${this.#ctx.limits.subscriptionsPerConnectionMax} subscriptions and consumers per connection`);
        }
        if (this.#streams.has(f.requestId)) throw new ProtocolError(`request id ${f.requestId} is already in use`);
        const consumer = this.#ctx.queues.consumeAs(queue, { prefetch: b.prefetch as number }, this);
        const s: Stream = { credit: 0, wake: undefined, cancelled: false, consumer };
        this.#streams.set(f.requestId, s);
        this.#subscriptions++;
        this.#send(FRAME.CONSUMING, f.requestId, {});
        try {
          // Flow control is the prefetch: the queue leases no more than that to this consumer.
          while (!s.cancelled && !this.#closed) {
            if (this.#t.bufferedBytes > this.#ctx.limits.outputBufferBytesMax) {
              await new Promise<void>((resolve) => (s.wake = resolve));
              s.wake = undefined;
              continue;
            }
            const batch = await consumer.takeBatch();
            if (batch === undefined || s.cancelled || this.#closed) break;
            for (let i = 0; i < batch.length; i += this.#ctx.limits.readPageEventsMax) this.#send(FRAME.DELIVERIES, f.requestId, deliveriesBody(batch.slice(i, i + this.#ctx.limits.readPageEventsMax)));
          }
        } finally {
          this.#subscriptions--;
          this.#streams.delete(f.requestId);
          await consumer.close();
        }
        if (!s.cancelled && !this.#closed) this.#send(FRAME.SUBSCRIPTION_ENDED, f.requestId, { reason: 'consumer ended' });
        return;
      }
      case FRAME.JOIN:
        return this.#join(f.requestId, b);
      case FRAME.GROUP:
        return this.#send(FRAME.GROUP_RESULT, f.requestId, { result: await this.#groupOp(b) });
      default:
        throw new ProtocolError(`frame ${FRAME_NAMES[f.type]} is not a request`);
    }
  }

  /**
   * A member of a consumer group on this connection: JOINED, then EVENTS within the credit
   * (each with `through`, how far the log was read for it), ASSIGNED when its partitions change.
   * It commits with CREDIT { handled } (auto-commit) or a GROUP commit (durable); it leaves
   * with UNSUBSCRIBE or when the connection goes.
   */
  async #join(requestId: number, b: Record<string, unknown>): Promise<void> {
    const p = this.#principal!;
    const name = groupField(b);
    const existing = await this.#ctx.groups.get(name);
    requireReadAll(p, (b.filter ?? existing?.settings.filter) as ReadAllFilter | undefined);
    if (existing === undefined) requireRole(p, 'admin', `$group-${name}`);
    if (typeof b.credit !== 'number' || !Number.isSafeInteger(b.credit) || b.credit <= 0) throw new ProtocolError('JOIN needs a positive integer credit');
    if (this.#subscriptions >= this.#ctx.limits.subscriptionsPerConnectionMax) {
      throw new OverloadedError(`at most ${this.#ctx.limits.subscriptionsPerConnectionMax} subscriptions, consumers and members per connection`);
    }
    if (this.#streams.has(requestId)) throw new ProtocolError(`request id ${requestId} is already in use`);
    const member = this.#ctx.groups.join(name, { ...pick(b, ['filter', 'mode', 'partitions', 'from', 'memberName']), autoCommit: false }) as MemberImpl;
    const s: Stream = { credit: b.credit, wake: undefined, cancelled: false, member };
    this.#streams.set(requestId, s);
    this.#subscriptions++;
    try {
      await member.ready;
      member.onAssign((partitions) => this.#send(FRAME.ASSIGNED, requestId, { partitions }));
      this.#send(FRAME.JOINED, requestId, { member: member.id, name: member.name, partitions: member.partitions as number[] });
      let page: Parameters<MemberImpl['giveSome']>[0] | undefined;
      let at = 0;
      let throughSentAt = 0;
      let throughSent = 0;
      while (!s.cancelled && !this.#closed) {
        if (s.credit <= 0 || this.#t.bufferedBytes > this.#ctx.limits.outputBufferBytesMax) {
          await new Promise<void>((resolve) => (s.wake = resolve));
          s.wake = undefined;
          continue;
        }
        if (page === undefined) {
          const r = await member.nextPage();
          if (r.done || s.cancelled || this.#closed) break;
          page = r.value;
          at = 0;
        }
        const { events, next } = member.giveSome(page, at, Math.min(s.credit, this.#ctx.limits.readPageEventsMax));
        at = next;
        const whole = at >= page.events.length;
        const through = whole ? page.through : (events[events.length - 1]?.position ?? 0);
        if (whole) page = undefined;
        if (events.length > 0) {
          s.credit -= events.length;
          this.#send(FRAME.EVENTS, requestId, { records: encodeEventRecords(events), count: events.length, through });
          throughSent = through;
        } else if (through > throughSent && Date.now() - throughSentAt >= 500) {
          // Nothing for this member in what was read: say how far, now and then, so that its
          // commits can carry its checkpoints past it.
          this.#send(FRAME.EVENTS, requestId, { count: 0, through });
          throughSent = through;
          throughSentAt = Date.now();
        }
      }
    } finally {
      this.#subscriptions--;
      this.#streams.delete(requestId);
      await member.close();
    }
    if (!s.cancelled && !this.#closed) this.#send(FRAME.SUBSCRIPTION_ENDED, requestId, { reason: 'member ended' });
  }

  /** One GROUP request: managing groups, and durable commits of this connection's members. */
  async #groupOp(b: Record<string, unknown>): Promise<unknown> {
    const groups = this.#ctx.groups;
    const p = this.#principal!;
    const op = b.op;
    if (op === 'list') {
      const all = await groups.list();
      return all.filter((i) => p.can('read', `$group-${i.name}`));
    }
    const name = groupField(b);
    switch (op) {
      case 'create':
        requireRole(p, 'admin', `$group-${name}`);
        return groups.create(name, (b.settings ?? undefined) as never);
      case 'get':
        requireRole(p, 'read', `$group-${name}`);
        return (await groups.get(name)) ?? null;
      case 'stats':
        requireRole(p, 'read', `$group-${name}`);
        return groups.stats(name);
      case 'reset':
        requireRole(p, 'admin', `$group-${name}`);
        return groups.reset(name, b.to as never);
      case 'delete':
        requireRole(p, 'admin', `$group-${name}`);
        await groups.delete(name);
        return null;
      case 'commit': {
        let member: MemberImpl | undefined;
        for (const s of this.#streams.values()) if (s.member !== undefined && s.member.id === b.member) member = s.member;
        if (member === undefined || member.group !== name) {
          throw new GroupConflictError(`no member '${String(b.member).slice(0, 64)}' of consumer group '${name}' on this connection`, { reason: 'member', group: name });
        }
        await member.commit(b.position as number);
        return null;
      }
      default:
        throw new ProtocolError(`unknown group op ${typeof op === 'string' ? `'${op.slice(0, 32)}'` : typeof op}`);
    }
  }

  /**
   * Sends pages from `next` under `requestId`, never more events than the client's credit.
   * A read ends with EVENTS { done: true }; a subscription runs until cancelled.
   */
  async #pump<T = RecordedEvent>(
    requestId: number,
    credit: unknown,
    next: () => Promise<T[] | undefined>,
    subscription?: { sub: Pick<Subscription, 'close'>; from: number | undefined },
    encode: (items: T[]) => Uint8Array = encodeEventRecords as unknown as (items: T[]) => Uint8Array,
  ): Promise<void> {
    const isSubscription = subscription !== undefined;
    if (typeof credit !== 'number' || !Number.isSafeInteger(credit) || credit <= 0) throw new ProtocolError('reads and subscriptions need a positive integer credit');
    if (this.#streams.has(requestId)) throw new ProtocolError(`request id ${requestId} is already in use`);
    const s: Stream = { credit, wake: undefined, cancelled: false, subscription: subscription?.sub as Subscription | undefined };
    this.#streams.set(requestId, s);
    if (subscription !== undefined) this.#send(FRAME.SUBSCRIBED, requestId, subscription.from === undefined ? {} : { from: subscription.from });
    let carry: T[] = [];
    const pageMax = this.#ctx.limits.readPageEventsMax;
    try {
      while (!s.cancelled && !this.#closed) {
        if (s.credit <= 0 || this.#t.bufferedBytes > this.#ctx.limits.outputBufferBytesMax) {
          await new Promise<void>((resolve) => (s.wake = resolve));
          s.wake = undefined;
          continue;
        }
        let page = carry;
        if (page.length === 0) {
          const p = await next();
          if (s.cancelled || this.#closed) return;
          if (p === undefined) break;
          page = p;
        }
        const n = Math.min(page.length, s.credit, pageMax);
        carry = n === page.length ? [] : page.slice(n);
        s.credit -= n;
        this.#send(FRAME.EVENTS, requestId, { records: encode(n === page.length ? page : page.slice(0, n)), count: n });
      }
      if (!s.cancelled && !this.#closed && !isSubscription) this.#send(FRAME.EVENTS, requestId, { done: true });
    } finally {
      this.#streams.delete(requestId);
    }
  }

  #cancel(s: Stream): void {
    s.cancelled = true;
    s.wake?.();
    void s.subscription?.close();
    void s.consumer?.close();
    void s.member?.close();
  }

  /** One QUEUE request: the queue API with this connection as the owner of its leases. */
  async #queueOp(b: Record<string, unknown>): Promise<unknown> {
    const q = this.#ctx.queues;
    const p = this.#principal!;
    const op = b.op;
    if (op === 'list') {
      const all = await q.list();
      return all.filter((i) => p.can('read', queueStream(i.name)));
    }
    const name = queueField(b);
    const receipts = b.receipts as string | string[];
    switch (op) {
      case 'create':
      case 'update': {
        requireQueue(p, 'admin', name);
        const settings = (b.settings ?? undefined) as Record<string, unknown> | undefined;
        if (typeof settings?.deadLetterQueue === 'string') requireQueue(p, 'admin', settings.deadLetterQueue);
        return op === 'create' ? q.create(name, settings as never) : q.update(name, (settings ?? {}) as never);
      }
      case 'get':
        requireQueue(p, 'read', name);
        return (await q.get(name)) ?? null;
      case 'delete':
        requireQueue(p, 'admin', name);
        await q.delete(name);
        return null;
      case 'purge':
        requireQueue(p, 'admin', name);
        return q.purge(name);
      case 'send': {
        requireQueue(p, 'write', name);
        if (!Array.isArray(b.messages)) throw new ProtocolError("send needs a 'messages' array");
        // The ids are the client's own (it fixes them before sending): not sent back.
        const r = await q.send(name, b.messages.map((m, i) => messageFromWire(m, i)));
        return { positions: r.positions, duplicates: r.duplicates };
      }
      case 'cancel':
        requireQueue(p, 'write', name);
        return q.cancel(name, b.id as string);
      case 'receive': {
        requireQueue(p, 'read', name);
        let g = this.#pullLeases.get(name);
        if (g === undefined) this.#pullLeases.set(name, (g = new LeaseGroup(this)));
        const got = await q.receiveAs(name, pick(b, ['max', 'waitMs']), b.detached === true ? undefined : g, this.#gone.signal);
        return deliveriesBody(got as QueueDelivery[]);
      }
      case 'ack':
        requireQueue(p, 'read', name);
        await q.ackAs(name, receipts, this);
        return null;
      case 'nack':
        requireQueue(p, 'read', name);
        await q.nackAs(name, receipts, (b.options ?? undefined) as never, this);
        return null;
      case 'extend':
        requireQueue(p, 'read', name);
        await q.extendAs(name, receipts, (b.leaseMs ?? undefined) as number | undefined, this);
        return null;
      case 'redrive': {
        requireQueue(p, 'admin', name);
        const options = (b.options ?? undefined) as { to?: unknown } | undefined;
        if (typeof options?.to === 'string') requireQueue(p, 'write', options.to);
        return q.redrive(name, options as never);
      }
      case 'unpark':
        requireQueue(p, 'admin', name);
        return q.unpark(name, b.groupKey as string);
      case 'stats':
        requireQueue(p, 'read', name);
        return q.stats(name);
      default:
        throw new ProtocolError(`unknown queue op ${typeof op === 'string' ? `'${op.slice(0, 32)}'` : typeof op}`);
    }
  }

  #error(requestId: number, err: EventfulError): void {
    this.#ctx.onError?.(err.code);
    this.#send(FRAME.ERROR, requestId, errorBody(err));
  }

  /** An error after which the byte stream cannot be trusted: say why, then close. */
  #fatal(err: EventfulError, requestId = 0): void {
    if (this.#closed) return;
    this.#ctx.log('warn', 'closing connection after a protocol error', { remote: this.#t.remote, code: err.code, message: err.message });
    this.#ctx.onError?.(err.code);
    this.#send(FRAME.ERROR, requestId, errorBody(err));
    this.#flush();
    this.#t.close();
    this.closed();
  }

  #send(type: FrameType, requestId: number, body: Record<string, unknown>): void {
    if (this.#closed) return;
    const bytes = encodeFrame(type, requestId, body);
    this.#outbox.push(bytes);
    this.#outboxBytes += bytes.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#outbox.length === 0 || this.#closed) return;
    const bytes = this.#outbox.length === 1 ? this.#outbox[0]! : Buffer.concat(this.#outbox, this.#outboxBytes);
    this.#outbox = [];
    this.#outboxBytes = 0;
    this.#t.write(bytes);
    if (!this.#paused && this.#t.bufferedBytes > this.#ctx.limits.outputBufferBytesMax) {
      this.#paused = true;
      this.#t.pauseReading();
    }
  }

  #drained(): void {
    if (this.#paused) {
      this.#paused = false;
      this.#t.resumeReading();
    }
    for (const s of this.#streams.values()) s.wake?.();
  }

  #tick(): void {
    const quiet = Date.now() - this.#lastHeard;
    if (quiet > this.#ctx.limits.idleTimeoutMs) {
      this.#ctx.log('info', 'closing idle connection', { remote: this.#t.remote, quietMs: quiet });
      this.#t.close();
      this.closed();
      return;
    }
    if (this.#principal !== undefined && quiet >= this.#ctx.limits.heartbeatMs) this.#send(FRAME.PING, 0, {});
  }
}

function streamField(b: Record<string, unknown>): string {
  if (typeof b.stream !== 'string') throw new ProtocolError(`'stream' must be a string, got ${b.stream === null ? 'nil' : typeof b.stream}`);
  return b.stream;
}

/** A frame of the log: the buffer it was read into and its offset there. */
export interface FrameRef {
  buf: Buffer;
  off: number;
}

export interface FrameSource {
  followFrames(from: number, filter: ReadAllFilter | undefined, sub: { closed: boolean }): AsyncGenerator<FrameRef[]>;
  readAllFrames(options: { from?: number | 'start' | 'end'; limit?: number; filter?: ReadAllFilter }): () => Promise<FrameRef[] | undefined>;
  wakeFollowers(): void;
}

/**
 * Log frames as the wire's event records (src/protocol/records.ts), without decoding them. A
 * log frame (src/log/record.ts) is `len | crc | kind | flags | position .. dataBytes | fields |
 * len`; a wire record is `len | position .. dataBytes | fields`: from the position on, both hold
 * the same fields, little-endian, in the same order. So a record is its length and one copy of
 * the frame's bytes from offset 10 to the trailer.
 */
export function framesToRecords(refs: FrameRef[]): Uint8Array {
  let total = 0;
  for (const r of refs) total += r.buf.readUInt32LE(r.off) - 10;
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (const { buf, off } of refs) {
    const frameBytes = buf.readUInt32LE(off);
    out.writeUInt32LE(frameBytes - 10, o);
    buf.copy(out, o + 4, off + 10, off + frameBytes - 4);
    o += frameBytes - 10;
  }
  return out;
}

function groupField(b: Record<string, unknown>): string {
  if (typeof b.group !== 'string') throw new ProtocolError(`'group' must be a string, got ${b.group === null ? 'nil' : typeof b.group}`);
  return b.group;
}

function queueField(b: Record<string, unknown>): string {
  if (typeof b.queue !== 'string') throw new ProtocolError(`'queue' must be a string, got ${b.queue === null ? 'nil' : typeof b.queue}`);
  return b.queue;
}

function requireQueue(p: Principal, role: Role, queue: string): void {
  requireRole(p, role, queueStream(queue));
}

/** Deliveries as they travel: the events as one records blob, the leases beside them. */
export function deliveriesBody(batch: QueueDelivery[]): Record<string, unknown> {
  return {
    records: encodeEventRecords(batch.map((d) => d.event)),
    count: batch.length,
    leases: batch.map((d) => [d.receipt, d.deliveryCount, d.firstDeliveredAt, d.leaseExpiresAt, d.groupKey ?? null]),
    queue: batch[0]?.queue ?? null,
  };
}

function pick(b: Record<string, unknown>, keys: string[]): Record<string, never> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (b[k] !== undefined && b[k] !== null) out[k] = b[k];
  return out as Record<string, never>;
}

/** Pages of at most `max` events from a reader's or subscription's pages. */
function pagesOf(source: { pages(): AsyncIterable<RecordedEvent[]> }, max: number): PageSource {
  const it = source.pages()[Symbol.asyncIterator]();
  let rest: RecordedEvent[] = [];
  return async () => {
    if (rest.length === 0) {
      const r = await it.next();
      if (r.done) return undefined;
      rest = r.value;
    }
    const page = rest.length <= max ? rest : rest.slice(0, max);
    rest = rest.length <= max ? [] : rest.slice(max);
    return page;
  };
}

function toEventfulError(err: unknown, ctx: SessionContext): EventfulError {
  if (err instanceof EventfulError) return err;
  ctx.log('error', 'request failed unexpectedly', { error: (err as Error)?.stack ?? String(err) });
  return new InternalError('the request failed inside the server');
}
