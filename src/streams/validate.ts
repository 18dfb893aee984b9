/**
 * Input checks at the event store's boundary. Every message says what was expected.
 *
 * Stream names: 1 to `streamNameBytesMax` UTF-8 bytes, no control characters, no whitespace, no
 * lone surrogates. Names starting with `$` are reserved for Eventful's own streams. A name is
 * only ever an index key: it never becomes part of a file path.
 */
import { CONTENT_TYPE_BINARY, CONTENT_TYPE_JSON } from '../core/events.js';
import type { AppendOptions, EventInput, ExpectedRevision, ReadAllFilter } from '../core/events.js';
import { EventInvalidError, InvalidArgumentError, LimitExceededError, StreamNameInvalidError } from '../core/errors.js';
import { isUuid, uuidToBytes } from '../core/ids.js';
import { randomFillSync } from 'node:crypto';
import type { StoreLimits } from '../core/limits.js';
import { frameBytesFor } from '../log/record.js';
import type { PreparedEvent } from '../log/record.js';

// Control characters, whitespace (incl. Unicode spaces), and lone surrogates.
const BAD_NAME_CHAR = /[\p{Cc}\p{Zs}\p{Zl}\p{Zp}\s]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/u;
const CONTENT_TYPE_RE = /^[\x21-\x7e][\x20-\x7e]*$/;

export function checkStreamName(stream: unknown, limits: StoreLimits, allowSystem = false): string {
  if (typeof stream !== 'string') throw new StreamNameInvalidError(`stream name must be a string, got ${typeof stream}`);
  if (stream.length === 0) throw new StreamNameInvalidError('stream name must not be empty');
  const bytes = Buffer.byteLength(stream, 'utf8');
  if (bytes > limits.streamNameBytesMax) {
    throw new StreamNameInvalidError(`stream name is ${bytes} bytes; at most ${limits.streamNameBytesMax} UTF-8 bytes are allowed`, { stream: stream.slice(0, 64) });
  }
  const bad = BAD_NAME_CHAR.exec(stream);
  if (bad) {
    throw new StreamNameInvalidError(
      `stream name must not contain control characters, whitespace or lone surrogates (found U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} at index ${bad.index})`,
      { stream },
    );
  }
  if (!allowSystem && stream.startsWith('$')) {
    throw new StreamNameInvalidError(`stream names starting with '$' are reserved for Eventful ('${stream}')`, { stream });
  }
  return stream;
}

export function checkExpectedRevision(value: unknown): ExpectedRevision {
  if (value === undefined) return 'any';
  if (value === 'any' || value === 'no_stream' || value === 'stream_exists') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= -1) return value === -1 ? 'no_stream' : value;
  if (typeof value === 'bigint' && value >= -1n && value <= BigInt(Number.MAX_SAFE_INTEGER)) return value === -1n ? 'no_stream' : Number(value);
  throw new InvalidArgumentError(
    `expectedRevision must be 'any', 'no_stream', 'stream_exists' or a revision (an integer >= 0), got ${describe(value)}`,
  );
}

export function checkAppendOptions(options: unknown): AppendOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('append options must be an object');
  for (const key of Object.keys(options)) {
    if (key !== 'expectedRevision') throw new InvalidArgumentError(`unknown append option '${key}'; known: expectedRevision`);
  }
  return options as AppendOptions;
}

const EVENT_KEYS = new Set(['type', 'data', 'metadata', 'id', 'contentType']);
const CT_JSON = Buffer.from(CONTENT_TYPE_JSON, 'latin1');
const CT_BINARY = Buffer.from(CONTENT_TYPE_BINARY, 'latin1');

/**
 * Checks and encodes an append's events. Throws before anything is queued, so an invalid event
 * rejects the whole append and writes nothing.
 */
export function prepareEvents(streamBytes: Buffer, events: unknown, limits: StoreLimits, segmentCapacity: number): { prepared: PreparedEvent[]; bytes: number } {
  if (!Array.isArray(events)) throw new InvalidArgumentError('events must be an array of { type, data?, metadata?, id?, contentType? }');
  if (events.length === 0) throw new InvalidArgumentError('an append needs at least one event');
  if (events.length > limits.eventsPerAppendMax) throw new LimitExceededError('eventsPerAppendMax', events.length, limits.eventsPerAppendMax);
  const prepared: PreparedEvent[] = new Array(events.length);
  let total = 0;
  let seen: Set<string> | undefined;
  for (let i = 0; i < events.length; i++) {
    const p = prepareEvent(streamBytes, events[i], i, limits);
    if (p.idString !== undefined) {
      seen ??= new Set<string>();
      if (seen.has(p.idString)) throw new EventInvalidError(`event ${i}: id ${p.idString} appears twice in one append`, { index: i });
      seen.add(p.idString);
    }
    prepared[i] = p;
    total += p.frameBytes;
  }
  const max = Math.min(limits.appendBytesMax, segmentCapacity);
  if (total > max) {
    throw new LimitExceededError(
      total > limits.appendBytesMax ? 'appendBytesMax' : 'segmentBytes',
      total,
      max,
      `append is ${total} bytes encoded; at most ${max} are allowed${total <= limits.appendBytesMax ? ' (an append must fit in one segment)' : ''}`,
    );
  }
  return { prepared, bytes: total };
}

function prepareEvent(streamBytes: Buffer, e: unknown, i: number, limits: StoreLimits): PreparedEvent {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new EventInvalidError(`event ${i} must be an object with a 'type'`, { index: i });
  const ev = e as EventInput;
  for (const key in ev) {
    if (!EVENT_KEYS.has(key)) throw new EventInvalidError(`event ${i}: unknown field '${key}'; known: type, data, metadata, id, contentType`, { index: i });
  }
  if (typeof ev.type !== 'string' || ev.type.length === 0) throw new EventInvalidError(`event ${i}: 'type' must be a non-empty string`, { index: i });
  const type = typeBytes(ev.type, i, limits);

  // A generated id needs no string form: nobody can retry with an id they never saw, so it is
  // neither checked nor remembered for idempotency.
  let idString: string | undefined;
  let id: Buffer;
  if (ev.id === undefined) id = randomEventIdBytes();
  else if (isUuid(ev.id)) {
    idString = ev.id.toLowerCase();
    id = Buffer.allocUnsafe(16);
    uuidToBytes(idString, id, 0);
  } else throw new EventInvalidError(`event ${i}: 'id' must be a UUID string like 3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f`, { index: i });

  let data: Uint8Array;
  let contentType: Buffer;
  const isBytes = ev.data instanceof Uint8Array;
  if (ev.contentType !== undefined) {
    if (typeof ev.contentType !== 'string' || !CONTENT_TYPE_RE.test(ev.contentType) || ev.contentType.length > limits.contentTypeBytesMax) {
      throw new EventInvalidError(`event ${i}: 'contentType' must be printable ASCII of at most ${limits.contentTypeBytesMax} bytes`, { index: i });
    }
  }
  if (isBytes) {
    data = ev.data as Uint8Array;
    const ct = ev.contentType ?? CONTENT_TYPE_BINARY;
    contentType = ct === CONTENT_TYPE_BINARY ? CT_BINARY : ct === CONTENT_TYPE_JSON ? CT_JSON : Buffer.from(ct, 'latin1');
    if (ct === CONTENT_TYPE_JSON) {
      try {
        JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
      } catch {
        throw new EventInvalidError(`event ${i}: data has content type ${CONTENT_TYPE_JSON} but is not valid JSON`, { index: i });
      }
    }
  } else {
    if (ev.contentType !== undefined && ev.contentType !== CONTENT_TYPE_JSON) {
      throw new EventInvalidError(`event ${i}: data that is not a Uint8Array is stored as JSON; contentType must be ${CONTENT_TYPE_JSON} or absent`, { index: i });
    }
    contentType = CT_JSON;
    data = jsonBytes(ev.data === undefined ? null : ev.data, `event ${i}: data`);
  }

  let metadata: Buffer | undefined;
  if (ev.metadata !== undefined && ev.metadata !== null) {
    if (typeof ev.metadata !== 'object' || Array.isArray(ev.metadata)) throw new EventInvalidError(`event ${i}: 'metadata' must be a JSON object`, { index: i });
    metadata = jsonBytes(ev.metadata, `event ${i}: metadata`);
    if (metadata.length > limits.metadataBytesMax) throw new LimitExceededError('metadataBytesMax', metadata.length, limits.metadataBytesMax, `event ${i}: metadata is ${metadata.length} bytes; at most ${limits.metadataBytesMax}`);
    if (metadata.length === 2) metadata = undefined; // {}
  }
  const eventBytes = streamBytes.length + type.length + contentType.length + (metadata?.length ?? 0) + data.length;
  if (eventBytes > limits.eventBytesMax) {
    throw new LimitExceededError('eventBytesMax', eventBytes, limits.eventBytesMax, `event ${i} is ${eventBytes} bytes; at most ${limits.eventBytesMax}`);
  }
  return {
    id,
    idString,
    idKey: id.toString('latin1'),
    stream: streamBytes,
    type,
    contentType,
    metadata,
    data,
    frameBytes: frameBytesFor(streamBytes.length, type.length, contentType.length, metadata?.length ?? 0, data.length),
  };
}

// Event types repeat: their encoded bytes are cached (bounded) once checked.
const typeCache = new Map<string, Buffer>();
const TYPE_CACHE_MAX = 4096;

function typeBytes(type: string, i: number, limits: StoreLimits): Buffer {
  const cached = typeCache.get(type);
  if (cached !== undefined && cached.length <= limits.eventTypeBytesMax) return cached;
  const bytes = Buffer.from(type, 'utf8');
  if (bytes.length > limits.eventTypeBytesMax) throw new LimitExceededError('eventTypeBytesMax', bytes.length, limits.eventTypeBytesMax, `event ${i}: type is ${bytes.length} bytes; at most ${limits.eventTypeBytesMax}`);
  if (/\p{Cc}/u.test(type)) throw new EventInvalidError(`event ${i}: 'type' must not contain control characters`, { index: i });
  if (typeCache.size >= TYPE_CACHE_MAX) typeCache.clear();
  typeCache.set(type, bytes);
  return bytes;
}

// Random (version 4) event ids, cut from a pool of random bytes refilled 4 KiB at a time.
let pool = Buffer.allocUnsafe(0);
let poolOffset = 0;

function randomEventIdBytes(): Buffer {
  if (poolOffset + 16 > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(4096));
    poolOffset = 0;
  }
  const id = pool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  id[6] = (id[6]! & 0x0f) | 0x40;
  id[8] = (id[8]! & 0x3f) | 0x80;
  return id;
}

function jsonBytes(value: unknown, what: string): Buffer {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new EventInvalidError(`${what} cannot be encoded as JSON: ${(err as Error).message}`);
  }
  if (text === undefined) throw new EventInvalidError(`${what} cannot be encoded as JSON (a function or symbol?)`);
  return Buffer.from(text, 'utf8');
}

export function checkFrom(value: unknown, what: string): number | 'start' | 'end' | undefined {
  if (value === undefined || value === 'start' || value === 'end') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'bigint' && value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(value);
  throw new InvalidArgumentError(`${what} must be 'start', 'end' or an integer >= 0, got ${describe(value)}`);
}

export function checkDirection(value: unknown): boolean {
  if (value === undefined || value === 'forwards') return false;
  if (value === 'backwards') return true;
  throw new InvalidArgumentError(`direction must be 'forwards' or 'backwards', got ${describe(value)}`);
}

export function checkLimit(value: unknown): number {
  if (value === undefined) return Infinity;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw new InvalidArgumentError(`limit must be an integer >= 0, got ${describe(value)}`);
}

export function checkOptionKeys(options: unknown, known: string[], what: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new InvalidArgumentError(`${what} options must be an object`);
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new InvalidArgumentError(`unknown ${what} option '${key}'; known: ${known.join(', ')}`);
  }
  return options as Record<string, unknown>;
}

/** A compiled $all filter: undefined means "everything". */
export interface CompiledFilter {
  prefixes: string[] | undefined;
  categories: Set<string> | undefined;
  types: Set<string> | undefined;
}

export function compileFilter(filter: ReadAllFilter | undefined): CompiledFilter | undefined {
  if (filter === undefined) return undefined;
  const f = checkOptionKeys(filter, ['streamPrefix', 'category', 'types'], 'filter');
  const list = (v: unknown, what: string): string[] | undefined => {
    if (v === undefined) return undefined;
    const arr = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(arr) || arr.length === 0 || arr.some((s) => typeof s !== 'string' || s.length === 0)) {
      throw new InvalidArgumentError(`filter.${what} must be a non-empty string or a non-empty array of them`);
    }
    return arr as string[];
  };
  const prefixes = list(f.streamPrefix, 'streamPrefix');
  const categories = list(f.category, 'category');
  const types = list(f.types, 'types');
  if (!prefixes && !categories && !types) return undefined;
  return { prefixes, categories: categories && new Set(categories), types: types && new Set(types) };
}

export function matchesStream(f: CompiledFilter, stream: string): boolean {
  if (f.prefixes !== undefined && !f.prefixes.some((p) => stream.startsWith(p))) return false;
  if (f.categories !== undefined) {
    const dash = stream.indexOf('-');
    if (!f.categories.has(dash < 0 ? stream : stream.slice(0, dash))) return false;
  }
  return true;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value.slice(0, 64)}'`;
  if (typeof value === 'bigint') return `${value}n`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return typeof value;
  }
}
