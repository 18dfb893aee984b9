/**
 * The binary protocol's codec: bytes in, frames out, and back. Pure: no sockets, no timers, so
 * it can be fuzzed and tested against saved bytes (test/protocol/fixtures/).
 *
 * Wire format, protocol version 1. Every frame:
 *
 *   offset  size  field
 *   0       4     length      u32 BE, bytes after this field (type + requestId + body)
 *   4       1     type        frame type (FRAME below)
 *   5       4     requestId   u32 BE: ties a response, or a pushed frame, to its request
 *   9       ...   body        MessagePack map (standard MessagePack, no extensions)
 *
 * The first frame on a connection is the client's HELLO, naming the protocol version it speaks;
 * the server answers WELCOME or ERROR and closes. Frames of one connection may interleave in any
 * order across request ids (pipelining); frames of one request id arrive in order.
 *
 * A decoder error means the stream of frames can no longer be trusted: the peer sends an ERROR
 * frame (requestId 0) with the code and closes the connection.
 */
import { Packr } from 'msgpackr/pack';
import { ProtocolError } from '../core/errors.js';

export const PROTOCOL_VERSION = 1;

export const FRAME = {
  HELLO: 1,
  WELCOME: 2,
  PING: 3,
  PONG: 4,
  ERROR: 5,
  APPEND: 10,
  APPENDED: 11,
  READ_STREAM: 12,
  READ_ALL: 13,
  EVENTS: 14,
  STREAM_INFO: 15,
  STREAM_INFO_RESULT: 16,
  LIST_STREAMS: 17,
  STREAMS: 18,
  HEAD: 19,
  HEAD_RESULT: 20,
  STREAM_OP: 21,
  STREAM_OP_RESULT: 22,
  SUBSCRIBE: 30,
  SUBSCRIBED: 31,
  CREDIT: 32,
  UNSUBSCRIBE: 33,
  SUBSCRIPTION_ENDED: 34,
  CANCEL: 35,
  QUEUE: 40,
  QUEUE_RESULT: 41,
  CONSUME: 42,
  CONSUMING: 43,
  DELIVERIES: 44,
  JOIN: 45,
  JOINED: 46,
  ASSIGNED: 47,
  GROUP: 48,
  GROUP_RESULT: 49,
} as const;

export type FrameType = (typeof FRAME)[keyof typeof FRAME];
const FRAME_TYPES = new Set<number>(Object.values(FRAME));
export const FRAME_NAMES: Record<number, string> = Object.fromEntries(Object.entries(FRAME).map(([k, v]) => [v, k]));

export const FRAME_HEADER_BYTES = 9;

export interface Frame {
  type: FrameType;
  requestId: number;
  body: Record<string, unknown>;
}


const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeFrame(type: FrameType, requestId: number, body: Record<string, unknown>): Buffer {
  const payload = packr.pack(body);
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  buf.writeUInt32BE(5 + payload.length, 0);
  buf[4] = type;
  buf.writeUInt32BE(requestId >>> 0, 5);
  payload.copy(buf, FRAME_HEADER_BYTES);
  return buf;
}

/** Decodes one frame's body from exactly the bytes of one frame (header included). */
export function decodeFrame(bytes: Buffer): Frame {
  if (bytes.length < FRAME_HEADER_BYTES) throw new ProtocolError(`frame of ${bytes.length} bytes is shorter than its header`);
  const length = bytes.readUInt32BE(0);
  if (length + 4 !== bytes.length) throw new ProtocolError(`frame says ${length + 4} bytes but has ${bytes.length}`);
  const type = bytes[4]!;
  if (!FRAME_TYPES.has(type)) throw new ProtocolError(`unknown frame type ${type}`, { type });
  const requestId = bytes.readUInt32BE(5);
  let body: unknown;
  if (bytes.length === FRAME_HEADER_BYTES) body = {};
  else {
    try {
      body = packr.unpack(bytes.subarray(FRAME_HEADER_BYTES));
    } catch (err) {
      throw new ProtocolError(`frame ${FRAME_NAMES[type]} has a body that is not valid MessagePack: ${(err as Error).message}`, { type });
    }
  }
  // A plain map only: msgpackr also decodes its own extensions (Date, Set, RegExp, Error, typed
  // arrays), which are not standard MessagePack and not part of this protocol.
  const proto = typeof body === 'object' && body !== null ? Object.getPrototypeOf(body) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    throw new ProtocolError(`frame ${FRAME_NAMES[type]} body must be a MessagePack map`, { type });
  }
  return { type: type as FrameType, requestId, body: body as Record<string, unknown> };
}

/**
 * Splits a byte stream into frames. Feed it chunks as they arrive; it returns every whole frame
 * and keeps the rest. Bounded: a frame longer than `frameBytesMax` is an error before any of its
 * body is buffered.
 */
export class FrameDecoder {
  #frameBytesMax: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(frameBytesMax: number) {
    this.#frameBytesMax = frameBytesMax;
  }

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const frames: Frame[] = [];
    let buf = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#buffered);
    let off = 0;
    while (buf.length - off >= 4) {
      const length = buf.readUInt32BE(off);
      if (length + 4 > this.#frameBytesMax) {
        this.#reset();
        throw new ProtocolError(`frame of ${length + 4} bytes exceeds the limit of ${this.#frameBytesMax}`, { limit: 'frameBytesMax' });
      }
      if (length < 5) {
        this.#reset();
        throw new ProtocolError(`frame length ${length} is shorter than a frame header`);
      }
      if (buf.length - off < length + 4) break;
      frames.push(decodeFrame(buf.subarray(off, off + length + 4)));
      off += length + 4;
    }
    buf = buf.subarray(off);
    this.#chunks = buf.length > 0 ? [buf] : [];
    this.#buffered = buf.length;
    return frames;
  }

  #reset(): void {
    this.#chunks = [];
    this.#buffered = 0;
  }
}
