/**
 * One logical connection to an Eventful server over the binary protocol, kept alive across
 * network failures.
 *
 * - Transports: `tcp://` and `tls://` (Node), `ws://` and `wss://` (browsers, and Node via `ws`).
 * - Requests are pipelined: each gets a request id; responses may come in any order. Frames
 *   queued in the same turn go out in one write, so many concurrent appends share packets.
 * - When the connection drops, it reconnects with exponential back-off and jitter, re-sends the
 *   unanswered requests (safe: event ids are fixed before the first send, so an append that
 *   did land is recognised as a retry), and resumes streams through their `resume` hook.
 * - Every request has a deadline (`timeoutMs`); a stalled server is detected by heartbeats.
 */
import { ConnectionLostError, EventfulError, OverloadedError, ProtocolError, TimeoutError, UnauthenticatedError, errorFromWire } from '../core/errors.js';
import { DEFAULT_CLIENT_LIMITS } from '../core/limits.js';
import { FRAME, FRAME_NAMES, FrameDecoder, PROTOCOL_VERSION, encodeFrame } from '../protocol/codec.js';
import type { Frame, FrameType } from '../protocol/codec.js';

export interface ConnectOptions {
  /** Bearer token, when the server has auth on. */
  token?: string;
  /** Deadline of each request, ms. @default 30,000 */
  timeoutMs?: number;
  /** Reconnect after a failure. @default true */
  reconnect?: boolean;
  /** First and longest pause between reconnect attempts, ms. @default 100 and 5,000 */
  reconnectDelayMs?: number;
  reconnectDelayMaxMs?: number;
  /** Requests waiting for an answer or a connection; more are refused with OVERLOADED. @default 10,000 */
  pendingRequestsMax?: number;
  /** TLS: extra CA certificates (PEM) and whether to check the server's certificate. */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
  /** Called on connection state changes, for logs. */
  onStateChange?: (state: 'connected' | 'disconnected' | 'reconnecting', detail?: string) => void;
}


interface ClientTransport {
  send(bytes: Uint8Array): void;
  close(): void;
}

interface Unary {
  type: FrameType;
  body: Record<string, unknown>;
  resolve: (f: Frame) => void;
  reject: (e: unknown) => void;
  deadline: number;
  sent: boolean;
}

/** A multi-frame exchange (a read or a subscription). */
export interface StreamHandler {
  /** A frame for this stream arrived. */
  onFrame(f: Frame): void;
  /**
   * The connection dropped. With `willResume` the handler's `resume` is called once it is back;
   * without, the exchange is over (the client closed, or reconnecting is off or hopeless).
   */
  onDisconnect(err: EventfulError, willResume: boolean): void;
  /** The request to send again under `requestId` (its new id), or undefined to give up. */
  resume(requestId: number): { type: FrameType; body: Record<string, unknown> } | undefined;
}

type Dialer = (url: URL, o: ConnectOptions, onData: (b: Uint8Array) => void, onClose: (err?: Error) => void) => Promise<ClientTransport>;

export class Connection {
  readonly url: URL;
  #o: Required<Pick<ConnectOptions, 'timeoutMs' | 'reconnect' | 'reconnectDelayMs' | 'reconnectDelayMaxMs' | 'pendingRequestsMax'>> & ConnectOptions;
  #transport: ClientTransport | undefined;
  #decoder = new FrameDecoder(DEFAULT_CLIENT_LIMITS.frameBytesMax);
  #nextId = 1;
  #unary = new Map<number, Unary>();
  #streams = new Map<number, StreamHandler>();
  #outbox: Uint8Array[] = [];
  #flushScheduled = false;
  #closed = false;
  #connecting: Promise<void> | undefined;
  #heartbeatMs = 10_000;
  #lastHeard = 0;
  #timer: ReturnType<typeof setInterval>;
  #helloId = 0;
  #helloWaiter: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  #dial: Dialer;

  constructor(url: URL, options: ConnectOptions, dial: Dialer) {
    this.url = url;
    this.#o = {
      timeoutMs: DEFAULT_CLIENT_LIMITS.timeoutMs,
      reconnect: true,
      reconnectDelayMs: DEFAULT_CLIENT_LIMITS.reconnectDelayMs,
      reconnectDelayMaxMs: DEFAULT_CLIENT_LIMITS.reconnectDelayMaxMs,
      pendingRequestsMax: DEFAULT_CLIENT_LIMITS.pendingRequestsMax,
      ...options,
    };
    this.#dial = dial;
    this.#timer = setInterval(() => this.#tick(), 250);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Opens the first connection; rejects if it fails (a wrong URL or token should be loud). */
  async open(): Promise<void> {
    await this.#connectOnce();
  }

  get connected(): boolean {
    return this.#transport !== undefined && this.#helloWaiter === undefined;
  }

  /** Sends a request and resolves with its single answer frame (ERROR frames reject). */
  request(type: FrameType, body: Record<string, unknown>): Promise<Frame> {
    if (this.#closed) return Promise.reject(new ConnectionLostError('the client is closed'));
    if (this.#unary.size >= this.#o.pendingRequestsMax) {
      return Promise.reject(new OverloadedError(`more than ${this.#o.pendingRequestsMax} requests are waiting for the server`));
    }
    return new Promise<Frame>((resolve, reject) => {
      const id = this.#newId();
      const u: Unary = { type, body, resolve, reject, deadline: Date.now() + this.#o.timeoutMs, sent: false };
      this.#unary.set(id, u);
      if (this.connected) {
        u.sent = true;
        this.#send(type, id, body);
      }
    });
  }

  /** Starts a multi-frame exchange; returns its request id (for CREDIT and CANCEL). */
  openStream(type: FrameType, body: Record<string, unknown>, handler: StreamHandler): number {
    if (this.#closed) throw new ConnectionLostError('the client is closed');
    const id = this.#newId();
    this.#streams.set(id, handler);
    if (this.connected) this.#send(type, id, body);
    return id;
  }

  /** Sends a frame that needs no answer (CREDIT, CANCEL, UNSUBSCRIBE). */
  notify(type: FrameType, requestId: number, body: Record<string, unknown>): void {
    if (this.connected) this.#send(type, requestId, body);
  }

  closeStream(requestId: number): void {
    this.#streams.delete(requestId);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#flush();
    const err = new ConnectionLostError('the client was closed');
    for (const u of this.#unary.values()) u.reject(err);
    this.#unary.clear();
    for (const s of this.#streams.values()) s.onDisconnect(err, false);
    this.#streams.clear();
    this.#transport?.close();
    this.#transport = undefined;
  }

  #newId(): number {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_fffe ? 1 : this.#nextId + 1;
    return id;
  }

  async #connectOnce(): Promise<void> {
    this.#decoder = new FrameDecoder(DEFAULT_CLIENT_LIMITS.frameBytesMax);
    let transport: ClientTransport | undefined;
    transport = await this.#dial(
      this.url,
      this.#o,
      (bytes) => this.#receive(bytes),
      (err) => {
        if (transport !== undefined) this.#lost(transport, err);
      },
    );
    this.#transport = transport;
    this.#lastHeard = Date.now();
    await new Promise<void>((resolve, reject) => {
      this.#helloWaiter = { resolve, reject };
      this.#helloId = this.#newId();
      const hello: Record<string, unknown> = { version: PROTOCOL_VERSION, client: 'eventful-js' };
      if (this.#o.token !== undefined) hello.token = this.#o.token;
      this.#send(FRAME.HELLO, this.#helloId, hello);
      this.#flush();
    });
    this.#o.onStateChange?.('connected');
    // Re-send what was waiting, then resume streams.
    for (const [id, u] of this.#unary) {
      u.sent = true;
      this.#send(u.type, id, u.body);
    }
    for (const [id, h] of [...this.#streams]) {
      this.#streams.delete(id);
      const newId = this.#newId();
      const again = h.resume(newId);
      if (again === undefined) continue;
      this.#streams.set(newId, h);
      this.#send(again.type, newId, again.body);
    }
  }

  #lost(transport: ClientTransport, err?: Error): void {
    if (this.#transport !== transport) return;
    this.#transport = undefined;
    const why = err?.message ?? 'connection closed';
    if (this.#helloWaiter) {
      const w = this.#helloWaiter;
      this.#helloWaiter = undefined;
      w.reject(err instanceof EventfulError ? err : new ConnectionLostError(`connection to ${this.url.href} failed: ${why}`));
    }
    if (this.#closed) return;
    this.#o.onStateChange?.('disconnected', why);
    const lostErr = new ConnectionLostError(`connection to ${this.url.href} lost: ${why}`);
    for (const u of this.#unary.values()) u.sent = false;
    for (const s of this.#streams.values()) s.onDisconnect(lostErr, this.#o.reconnect);
    if (!this.#o.reconnect) {
      for (const u of this.#unary.values()) u.reject(lostErr);
      this.#unary.clear();
      this.#streams.clear();
      return;
    }
    void this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    if (this.#connecting) return;
    this.#connecting = (async () => {
      let delay = this.#o.reconnectDelayMs;
      while (!this.#closed && this.#transport === undefined) {
        const pause = delay / 2 + Math.random() * (delay / 2);
        await new Promise((r) => setTimeout(r, pause));
        if (this.#closed) return;
        this.#o.onStateChange?.('reconnecting');
        try {
          await this.#connectOnce();
          return;
        } catch (err) {
          if (err instanceof UnauthenticatedError) {
            // The token stopped working: waiting will not fix it.
            for (const u of this.#unary.values()) u.reject(err);
            this.#unary.clear();
            for (const s of this.#streams.values()) s.onDisconnect(err, false);
            this.#streams.clear();
            return;
          }
          delay = Math.min(delay * 2, this.#o.reconnectDelayMaxMs);
        }
      }
    })().finally(() => (this.#connecting = undefined));
  }

  #receive(bytes: Uint8Array): void {
    this.#lastHeard = Date.now();
    let frames: Frame[];
    try {
      frames = this.#decoder.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (err) {
      this.#transport?.close();
      this.#lost(this.#transport!, err as Error);
      return;
    }
    for (const f of frames) this.#handle(f);
  }

  #handle(f: Frame): void {
    if (f.type === FRAME.PING) return this.#send(FRAME.PONG, f.requestId, {});
    if (f.type === FRAME.PONG) return;
    if (this.#helloWaiter !== undefined && f.requestId === this.#helloId) {
      const w = this.#helloWaiter;
      this.#helloWaiter = undefined;
      if (f.type === FRAME.WELCOME) {
        if (typeof f.body.heartbeatMs === 'number') this.#heartbeatMs = f.body.heartbeatMs;
        w.resolve();
      } else w.reject(f.type === FRAME.ERROR ? errorFromWire(f.body.code, f.body.message, f.body.details) : new ProtocolError(`expected WELCOME, got ${FRAME_NAMES[f.type]}`));
      return;
    }
    if (f.type === FRAME.ERROR && f.requestId === 0) {
      const err = errorFromWire(f.body.code, f.body.message, f.body.details);
      // The server is about to close: the close handler reconnects.
      this.#o.onStateChange?.('disconnected', err.message);
      return;
    }
    const u = this.#unary.get(f.requestId);
    if (u !== undefined) {
      this.#unary.delete(f.requestId);
      if (f.type === FRAME.ERROR) u.reject(errorFromWire(f.body.code, f.body.message, f.body.details));
      else u.resolve(f);
      return;
    }
    this.#streams.get(f.requestId)?.onFrame(f);
  }

  #send(type: FrameType, requestId: number, body: Record<string, unknown>): void {
    this.#outbox.push(encodeFrame(type, requestId, body));
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#outbox.length === 0 || this.#transport === undefined) return;
    const frames = this.#outbox;
    this.#outbox = [];
    this.#transport.send(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
  }

  #tick(): void {
    const now = Date.now();
    for (const [id, u] of this.#unary) {
      if (u.deadline <= now) {
        this.#unary.delete(id);
        u.reject(new TimeoutError(`no answer to ${FRAME_NAMES[u.type]} within ${this.#o.timeoutMs} ms${u.sent ? '' : ' (not connected)'}; whether it took effect is unknown`));
      }
    }
    if (this.#transport === undefined || this.#helloWaiter !== undefined) return;
    const quiet = now - this.#lastHeard;
    if (quiet > this.#heartbeatMs * 3) {
      const t = this.#transport;
      t.close();
      this.#lost(t, new Error(`no word from the server for ${quiet} ms`));
    } else if (quiet > this.#heartbeatMs) this.#send(FRAME.PING, 0, {});
  }
}
