/**
 * The bodies of protocol frames: how events and requests are laid out inside a frame's
 * MessagePack map. Pure, shared by server and client.
 *
 * Events read or pushed travel as one binary blob per EVENTS frame (src/protocol/records.ts).
 * An event to append is a map: { id?: string, type, data: bytes, contentType, metadata?: JSON bytes }.
 *
 * Request bodies (field names are part of the protocol):
 *   HELLO        { version, token?, client? }             -> WELCOME { version, server, heartbeatMs, limits }
 *   APPEND       { stream, events, expectedRevision? }     -> APPENDED { positions, revision }
 *   READ_STREAM  { stream, from?, direction?, limit?, credit } -> EVENTS { records, count, done? }...
 *                (records: the page's events as one blob, src/protocol/records.ts)
 *   READ_ALL     { from?, direction?, limit?, filter?, credit } -> EVENTS...
 *   SUBSCRIBE    { stream?, from?, filter?, credit }       -> SUBSCRIBED {}, then EVENTS { events } pushed
 *   CREDIT       { credit }  (same requestId as the read or subscription it feeds)
 *   UNSUBSCRIBE / CANCEL {}  (same requestId)           -> SUBSCRIPTION_ENDED {} (or EVENTS { done })
 *   STREAM_INFO  { stream }                              -> STREAM_INFO_RESULT { info (or nil) }
 *   LIST_STREAMS { prefix?, after?, limit? }              -> STREAMS { streams }
 *   HEAD         {}                                      -> HEAD_RESULT { position }
 *   QUEUE        { op, queue?, ... }                     -> QUEUE_RESULT { result }
 *                ops: create, update, get, list, delete, purge, send, cancel, receive, ack, nack,
 *                extend, redrive, unpark, stats (arguments as in src/core/queues.ts; messages as
 *                { id?, type?, body: bytes, contentType, headers?, groupKey?, delayMs?, deliverAt? };
 *                send answers { positions, duplicates }: the client knows the ids it sent)
 *   CONSUME      { queue, prefetch }                     -> CONSUMING {}, then DELIVERIES pushed
 *   DELIVERIES   { records, count, leases: [[receipt, deliveryCount, firstDeliveredAt, leaseExpiresAt, groupKey|nil], ...] }
 *                (also the result of a `receive`); UNSUBSCRIBE ends a CONSUME
 *   PING / PONG  {}   either side, any time
 *   ERROR        { code, message, details }  (requestId of the failed request; 0: the connection)
 */
import { CONTENT_TYPE_BINARY, CONTENT_TYPE_JSON } from '../core/events.js';
import type { EventInput } from '../core/events.js';
import type { MessageInput } from '../core/queues.js';
import { ProtocolError } from '../core/errors.js';
import type { EventfulError } from '../core/errors.js';

export interface WireEventInput {
  id?: string;
  type: string;
  data: Uint8Array;
  contentType: string;
  metadata?: Uint8Array;
}

const encoder = new TextEncoder();

/** Client side: an EventInput as it travels. JSON is encoded here, once. */
export function eventInputToWire(e: EventInput): WireEventInput {
  const out: WireEventInput = { type: e.type, data: EMPTY, contentType: CONTENT_TYPE_JSON };
  if (e.id !== undefined) out.id = e.id;
  if (e.data instanceof Uint8Array) {
    out.data = e.data;
    out.contentType = e.contentType ?? CONTENT_TYPE_BINARY;
  } else {
    out.data = encoder.encode(JSON.stringify(e.data === undefined ? null : e.data) ?? 'null');
    if (e.contentType !== undefined) out.contentType = e.contentType;
  }
  if (e.metadata !== undefined) out.metadata = encoder.encode(JSON.stringify(e.metadata));
  return out;
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();

/**
 * Server side: a wire event back to an EventInput for the store. Shapes are checked here; the
 * store checks everything else (sizes, names, JSON validity) exactly as for embedded callers.
 */
export function eventInputFromWire(w: unknown, index: number): EventInput {
  if (typeof w !== 'object' || w === null || Array.isArray(w)) throw new ProtocolError(`event ${index} must be a map`);
  const m = w as Record<string, unknown>;
  for (const k of Object.keys(m)) {
    if (k !== 'id' && k !== 'type' && k !== 'data' && k !== 'contentType' && k !== 'metadata') {
      throw new ProtocolError(`event ${index}: unknown field '${k}'`);
    }
  }
  if (!(m.data instanceof Uint8Array)) throw new ProtocolError(`event ${index}: data must be bytes`);
  const input: EventInput = { type: m.type as string, data: m.data, contentType: (m.contentType as string | undefined) ?? CONTENT_TYPE_BINARY };
  if (m.id !== undefined) input.id = m.id as string;
  if (m.metadata !== undefined && m.metadata !== null) {
    if (!(m.metadata instanceof Uint8Array)) throw new ProtocolError(`event ${index}: metadata must be JSON bytes`);
    let meta: unknown;
    try {
      meta = JSON.parse(utf8.decode(m.metadata));
    } catch {
      throw new ProtocolError(`event ${index}: metadata is not valid JSON`);
    }
    input.metadata = meta as Record<string, unknown>;
  }
  return input;
}

export function errorBody(err: EventfulError): Record<string, unknown> {
  return { code: err.code, message: err.message, details: err.details };
}

/** Client side: a message as it travels (the body encoded once, like an event's data). */
export function messageToWire(m: MessageInput): Record<string, unknown> {
  if (typeof m !== 'object' || m === null) return m as never;
  const out: Record<string, unknown> = { ...m };
  const body = m.body;
  if (body instanceof Uint8Array) {
    out.body = body;
    out.contentType = m.contentType ?? CONTENT_TYPE_BINARY;
  } else {
    out.body = encoder.encode(JSON.stringify(body === undefined ? null : body) ?? 'null');
    if (m.contentType === undefined) out.contentType = CONTENT_TYPE_JSON;
  }
  return out;
}

/** Server side: a wire message back to a MessageInput; the queue engine checks the rest. */
export function messageFromWire(w: unknown, index: number): MessageInput {
  if (typeof w !== 'object' || w === null || Array.isArray(w)) throw new ProtocolError(`message ${index} must be a map`);
  const m = w as Record<string, unknown>;
  if (!(m.body instanceof Uint8Array)) throw new ProtocolError(`message ${index}: body must be bytes`);
  return { ...(m as MessageInput), contentType: typeof m.contentType === 'string' ? m.contentType : CONTENT_TYPE_BINARY };
}

/** A request body without its undefined fields (MessagePack would send them as nil). */
export function strip(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}
