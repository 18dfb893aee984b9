/**
 * The event store's public vocabulary, shared by the embedded store and (later) the client.
 *
 * Glossary: a *position* is an event's place in the whole log (global, starts at 1, strictly
 * increasing, never reused); a *revision* is an event's place within its stream (starts at 0).
 * A stream's *category* is the part of its name before the first '-': `order-123` is in `order`.
 */
import { uuidFromBytes } from './ids.js';
import type { Groups } from './groups.js';
import type { Queues } from './queues.js';

export const CONTENT_TYPE_JSON = 'application/json';
export const CONTENT_TYPE_BINARY = 'application/octet-stream';

/** An event as given to `append`. */
export interface EventInput {
  /** The event's type, e.g. `OrderPlaced`. */
  type: string;
  /**
   * The payload. Any JSON value is stored as JSON. A `Uint8Array` is stored as is, with
   * `contentType` (default `application/octet-stream`; with `application/json` the bytes must be
   * valid JSON, and are checked).
   */
  data?: unknown;
  /** JSON object stored beside the data: correlation ids, causation, the actor. */
  metadata?: Record<string, unknown>;
  /** A UUID. Generated when absent. Re-sending the same ids makes an append idempotent. */
  id?: string;
  contentType?: string;
}

/**
 * What an append expects of the stream before it writes:
 * - `any`: no check;
 * - `no_stream`: the stream has no events yet;
 * - `stream_exists`: the stream has at least one event;
 * - a number: the revision of the stream's last event (the stream is at exactly this revision).
 */
export type ExpectedRevision = 'any' | 'no_stream' | 'stream_exists' | number;

export interface AppendOptions {
  /** @default 'any' */
  expectedRevision?: ExpectedRevision;
}

export interface AppendResult {
  /** The log position of each appended event, in order. */
  positions: number[];
  /** The stream's revision after the append: the revision of the last event appended. */
  revision: number;
}

export type Direction = 'forwards' | 'backwards';

export interface ReadStreamOptions {
  /** First revision to read (inclusive), or 'start' / 'end'. @default 'start' forwards, 'end' backwards */
  from?: number | 'start' | 'end';
  /** @default 'forwards' */
  direction?: Direction;
  /** Most events to return. @default no limit */
  limit?: number;
}

export interface ReadAllFilter {
  /** Only streams whose name starts with one of these prefixes. */
  streamPrefix?: string | string[];
  /** Only streams in one of these categories (`order` matches `order-1`, not `orders-1`). */
  category?: string | string[];
  /** Only events of one of these types. */
  types?: string | string[];
}

export interface ReadAllOptions {
  /** First position to read (inclusive), or 'start' / 'end'. @default 'start' forwards, 'end' backwards */
  from?: number | 'start' | 'end';
  /** @default 'forwards' */
  direction?: Direction;
  /** Most events to return (after filtering). @default no limit */
  limit?: number;
  filter?: ReadAllFilter;
}

export interface StreamInfo {
  stream: string;
  /** Revision of the last event. */
  revision: number;
  /** Events in the stream. */
  eventCount: number;
  firstPosition: number;
  lastPosition: number;
  /** Commit time of the first event, ms since the epoch. */
  createdAt: number;
  /** Commit time of the last event, ms since the epoch. */
  updatedAt: number;
}

/**
 * A stream's retention, as stream metadata (KurrentDB's `$maxAge`, `$maxCount`, `$tb`). Reads
 * hide what it excludes at once; absent fields impose nothing.
 */
export interface StreamMetadata {
  /** Events older than this (from their commit time) are hidden. */
  maxAgeMs?: number;
  /** Only the stream's last `maxCount` events are visible. */
  maxCount?: number;
  /** Events before this revision are hidden (a soft delete sets it past the last one). */
  truncateBefore?: number;
  /** Set by a hard delete: a tombstone. Read-only: use `deleteStream`. */
  deleted?: 'hard';
}

export interface DeleteStreamOptions {
  /** A tombstone: the stream can never be read or appended to again. @default false (soft) */
  hard?: boolean;
  /** Checked against the stream's revision when the delete is made. @default 'any' */
  expectedRevision?: ExpectedRevision;
}

/** A read's results: iterate with `for await`, collect with `toArray()`, or take `pages()`. */
export interface EventReader extends AsyncIterable<RecordedEvent> {
  toArray(): Promise<RecordedEvent[]>;
  /** The same events in pages (arrays), as they come off the log or the wire. */
  pages(): AsyncIterable<RecordedEvent[]>;
}

/** Produces the next page of a read, or undefined when the read is done. */
export type PageSource = () => Promise<RecordedEvent[] | undefined>;

/**
 * Wraps a paged read as an EventReader. Pages keep the per-event cost of `for await` to one
 * resolved promise; each iteration starts the read afresh.
 */
export function eventReader(open: () => PageSource): EventReader {
  return {
    [Symbol.asyncIterator](): AsyncIterator<RecordedEvent> {
      const next = open();
      let page: RecordedEvent[] = [];
      let i = 0;
      let done = false;
      const refill = async (): Promise<IteratorResult<RecordedEvent>> => {
        while (i >= page.length) {
          if (done) return { done: true, value: undefined };
          const p = await next();
          if (p === undefined) {
            done = true;
            page = [];
            i = 0;
            return { done: true, value: undefined };
          }
          page = p;
          i = 0;
        }
        return { done: false, value: page[i++]! };
      };
      return {
        // Not an async function: while a page lasts, each event costs one resolved promise
        // and no async-function frame (a third faster per event when scanning the log).
        next(): Promise<IteratorResult<RecordedEvent>> {
          if (i < page.length) return Promise.resolve({ done: false, value: page[i++]! });
          return refill();
        },
        async return(): Promise<IteratorResult<RecordedEvent>> {
          done = true;
          page = [];
          return { done: true, value: undefined };
        },
      };
    },
    pages: () => pagesIterable(open),
    async toArray() {
      const next = open();
      const out: RecordedEvent[] = [];
      for (let p = await next(); p !== undefined; p = await next()) for (const e of p) out.push(e);
      return out;
    },
  };
}

/** An async iterable of pages over a page source factory. */
export function pagesIterable(open: () => PageSource): AsyncIterable<RecordedEvent[]> {
  return {
    [Symbol.asyncIterator]() {
      const next = open();
      let done = false;
      return {
        async next(): Promise<IteratorResult<RecordedEvent[]>> {
          if (done) return { done: true, value: undefined };
          const p = await next();
          if (p === undefined) {
            done = true;
            return { done: true, value: undefined };
          }
          return { done: false, value: p };
        },
        async return(): Promise<IteratorResult<RecordedEvent[]>> {
          done = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/**
 * An event as stored. `data`, `metadata` and `id` are decoded on first access, so scanning the
 * log does not pay for fields a reader never looks at. `toJSON()` gives a plain object.
 */
export class RecordedEvent {
  /**
   * Decodes stream names and types read lazily from a buffer. The store sets one that reuses
   * recent decodings; the default works everywhere (browsers included).
   */
  static decodeText: (src: Uint8Array, start: number, end: number) => string = (src, start, end) => utf8.decode(src.subarray(start, end));

  readonly position: number;
  readonly revision: number;
  readonly contentType: string;
  /** Commit time, ms since the epoch. */
  readonly timestamp: number;
  // The id, metadata and data stay where they were read (a log chunk, a wire frame); views and
  // decoded values are made on first access, so a scan that looks at positions makes none.
  #idSrc: Uint8Array;
  #idOffset: number;
  #metadataSrc: Uint8Array | undefined;
  #metadataOffset: number;
  #metadataLength: number;
  #dataSrc: Uint8Array;
  #dataOffset: number;
  #dataLength: number;
  #id: string | undefined;
  #stream: string | undefined;
  #type: string | undefined;
  #streamOffset: number;
  #streamLength: number;
  #typeOffset: number;
  #typeLength: number;
  #dataView: Uint8Array | undefined;
  #data: unknown;
  #dataDecoded: boolean;
  #metadata: Record<string, unknown> | undefined;

  /**
   * `stream` and `type` may be undefined: they are then decoded on first access from `idSrc` at
   * the given offsets (a scan that never looks at them does not pay for them).
   */
  constructor(
    position: number,
    stream: string | undefined,
    revision: number,
    type: string | undefined,
    contentType: string,
    timestamp: number,
    idSrc: Uint8Array,
    idOffset: number,
    metadataSrc: Uint8Array | undefined,
    metadataOffset: number,
    metadataLength: number,
    dataSrc: Uint8Array,
    dataOffset: number,
    dataLength: number,
    streamOffset = 0,
    streamLength = 0,
    typeOffset = 0,
    typeLength = 0,
  ) {
    this.position = position;
    this.#stream = stream;
    this.revision = revision;
    this.#type = type;
    this.#streamOffset = streamOffset;
    this.#streamLength = streamLength;
    this.#typeOffset = typeOffset;
    this.#typeLength = typeLength;
    this.contentType = contentType;
    this.timestamp = timestamp;
    this.#idSrc = idSrc;
    this.#idOffset = idOffset;
    this.#metadataSrc = metadataLength > 0 ? metadataSrc : undefined;
    this.#metadataOffset = metadataOffset;
    this.#metadataLength = metadataLength;
    this.#dataSrc = dataSrc;
    this.#dataOffset = dataOffset;
    this.#dataLength = dataLength;
    this.#id = undefined;
    this.#dataView = undefined;
    this.#data = undefined;
    this.#dataDecoded = false;
    this.#metadata = undefined;
  }

  /** An event from separate parts: the 16 id bytes, the metadata's JSON bytes, the data bytes. */
  static fromParts(
    position: number,
    stream: string,
    revision: number,
    id: Uint8Array,
    type: string,
    contentType: string,
    timestamp: number,
    metadata: Uint8Array | undefined,
    data: Uint8Array,
  ): RecordedEvent {
    return new RecordedEvent(position, stream, revision, type, contentType, timestamp, id, 0, metadata, 0, metadata?.length ?? 0, data, 0, data.length);
  }

  get stream(): string {
    return (this.#stream ??= RecordedEvent.decodeText(this.#idSrc, this.#streamOffset, this.#streamOffset + this.#streamLength));
  }

  get type(): string {
    return (this.#type ??= RecordedEvent.decodeText(this.#idSrc, this.#typeOffset, this.#typeOffset + this.#typeLength));
  }

  get id(): string {
    return (this.#id ??= uuidFromBytes(this.#idSrc, this.#idOffset));
  }

  /** The id's 16 bytes. */
  get idBytes(): Uint8Array {
    return this.#idSrc.subarray(this.#idOffset, this.#idOffset + 16);
  }

  /** The payload: parsed JSON for JSON content, the bytes otherwise. */
  get data(): unknown {
    if (!this.#dataDecoded) {
      const bytes = this.rawData;
      this.#data = this.isJson ? (bytes.length === 0 ? null : JSON.parse(utf8.decode(bytes))) : bytes;
      this.#dataDecoded = true;
    }
    return this.#data;
  }

  /** The payload exactly as stored (the JSON text's UTF-8 bytes for JSON content). */
  get rawData(): Uint8Array {
    return (this.#dataView ??= this.#dataSrc.subarray(this.#dataOffset, this.#dataOffset + this.#dataLength));
  }

  get metadata(): Record<string, unknown> {
    if (this.#metadata === undefined) {
      const bytes = this.rawMetadata;
      this.#metadata = bytes === undefined ? {} : (JSON.parse(utf8.decode(bytes)) as Record<string, unknown>);
    }
    return this.#metadata;
  }

  /** The metadata's JSON bytes as stored, or undefined when there is none. */
  get rawMetadata(): Uint8Array | undefined {
    return this.#metadataSrc?.subarray(this.#metadataOffset, this.#metadataOffset + this.#metadataLength);
  }

  get isJson(): boolean {
    return this.contentType === CONTENT_TYPE_JSON;
  }

  /** The stream's category: the part of its name before the first '-'. */
  get category(): string {
    return categoryOf(this.stream);
  }

  toJSON(): Record<string, unknown> {
    return {
      position: this.position,
      stream: this.stream,
      revision: this.revision,
      id: this.id,
      type: this.type,
      contentType: this.contentType,
      timestamp: this.timestamp,
      data: this.isJson ? this.data : bytesToBase64(this.rawData),
      metadata: this.metadata,
    };
  }
}

export function bytesToBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return btoa(s);
}

export function categoryOf(stream: string): string {
  const dash = stream.indexOf('-');
  return dash < 0 ? stream : stream.slice(0, dash);
}

export interface ListStreamsOptions {
  /** Only streams whose name starts with this. @default '' */
  prefix?: string;
  /** Continue after this stream name (exclusive), for paging. */
  after?: string;
  /** @default 100 */
  limit?: number;
}

export interface SubscribeToAllOptions {
  /** First position to deliver (inclusive), 'start' or 'end' (only events appended from now). @default 'end' */
  from?: number | 'start' | 'end';
  filter?: ReadAllFilter;
}

export interface SubscribeToStreamOptions {
  /** First revision to deliver (inclusive), 'start' or 'end'. @default 'end' */
  from?: number | 'start' | 'end';
}

/**
 * A catch-up subscription: history first, then live events as they are appended, with no gap
 * and no duplicate at the switch-over. Iterate with `for await`; `close()` ends the iteration.
 * Events are delivered as fast as the consumer pulls them, never buffered without bound.
 */
export interface Subscription extends AsyncIterable<RecordedEvent> {
  /** Position of the last event delivered (0 before the first). */
  readonly lastPosition: number;
  /** The same events in pages, as they arrive. Use either this or the event iterator. */
  pages(): AsyncIterable<RecordedEvent[]>;
  close(): Promise<void>;
}

/**
 * The event store interface. The embedded store (`openStore`) implements it; the client of the
 * server implements the same, so an application switches between them by changing one line.
 */
export interface EventStore {
  append(stream: string, events: EventInput[], options?: AppendOptions): Promise<AppendResult>;
  readStream(stream: string, options?: ReadStreamOptions): EventReader;
  readAll(options?: ReadAllOptions): EventReader;
  /** The stream's facts, or undefined when it has no events. */
  streamInfo(stream: string): Promise<StreamInfo | undefined>;
  listStreams(options?: ListStreamsOptions): Promise<StreamInfo[]>;
  /** Position of the last event in the log (0 when the log is empty). */
  headPosition(): Promise<number>;
  /** Sets a stream's retention (replacing what it had); reads honour it at once. */
  setStreamMetadata(stream: string, metadata: StreamMetadata): Promise<void>;
  /** A stream's retention metadata (`{}` when it has none). */
  getStreamMetadata(stream: string): Promise<StreamMetadata>;
  /**
   * Deletes a stream: soft by default (it reads as empty and can be appended to again, from its
   * next revision), or hard (a tombstone: never again).
   */
  deleteStream(stream: string, options?: DeleteStreamOptions): Promise<void>;
  subscribeToAll(options?: SubscribeToAllOptions): Subscription;
  subscribeToStream(stream: string, options?: SubscribeToStreamOptions): Subscription;
  /** Named queues over the same log (src/core/queues.ts). */
  readonly queues: Queues;
  /** Consumer groups: durable, shared readers of the log with server-side checkpoints (src/core/groups.ts). */
  readonly groups: Groups;
  close(): Promise<void>;
}
