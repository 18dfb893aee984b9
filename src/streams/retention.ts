/**
 * Stream metadata: retention (max age, max count, truncate before a revision) and deletion, as
 * KurrentDB keeps them. A stream's metadata is the last event of its metadata stream `$$<stream>`
 * (type `$metadata`), so it is in the log like everything else; the store keeps every stream's
 * current metadata in memory, loaded at open.
 *
 * Reads honour it at once: an event of a stream is hidden when its revision is below the stream's
 * `truncateBefore`, or below `lastRevision + 1 - maxCount`, or when it is older than `maxAgeMs`.
 * A stream whose every event is truncated away (a soft delete) does not exist for reads, stream
 * info and `no_stream`; appending to it again goes on from the next revision. A hard-deleted
 * stream (a tombstone) can never be appended to again, and reading it is a STREAM_DELETED error.
 * Hidden events still take space until a scavenge removes them.
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { StreamMetadata } from '../core/events.js';

export type { StreamMetadata };

export const metadataStream = (stream: string): string => `$$${stream}`;
export const METADATA_EVENT_TYPE = '$metadata';

const KEYS = ['maxAgeMs', 'maxCount', 'truncateBefore'];

/** Checks metadata given to setStreamMetadata. */
export function checkStreamMetadata(m: unknown): StreamMetadata {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new InvalidArgumentError('stream metadata must be an object');
  const out: StreamMetadata = {};
  for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
    if (v === undefined || v === null) continue;
    if (!KEYS.includes(k)) throw new InvalidArgumentError(`unknown stream metadata '${k}'; known: ${KEYS.join(', ')}${k === 'deleted' ? ' (delete a stream with deleteStream)' : ''}`);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (k === 'truncateBefore' ? 0 : 1)) throw new InvalidArgumentError(`stream metadata ${k} must be an integer >= ${k === 'truncateBefore' ? 0 : 1}, got ${JSON.stringify(v)}`);
    (out as Record<string, number>)[k] = v;
  }
  return out;
}

export class Retention {
  readonly #byStream = new Map<string, StreamMetadata>();

  get size(): number {
    return this.#byStream.size;
  }

  get(stream: string): StreamMetadata | undefined {
    return this.#byStream.get(stream);
  }

  set(stream: string, m: StreamMetadata): void {
    if (Object.keys(m).length === 0) this.#byStream.delete(stream);
    else this.#byStream.set(stream, m);
  }

  /** The lowest revision visible, by truncation and count (age is per event). */
  static floor(m: StreamMetadata, lastRevision: number): number {
    let floor = m.truncateBefore ?? 0;
    if (m.maxCount !== undefined) floor = Math.max(floor, lastRevision + 1 - m.maxCount);
    return floor;
  }

  /** Whether an event is visible under the stream's metadata. */
  static visible(m: StreamMetadata, revision: number, timestamp: number, lastRevision: number, now: number): boolean {
    if (m.deleted === 'hard') return false;
    if (revision < Retention.floor(m, lastRevision)) return false;
    return m.maxAgeMs === undefined || timestamp >= now - m.maxAgeMs;
  }

  /** A soft-deleted stream: every event it has is truncated away. */
  static gone(m: StreamMetadata | undefined, lastRevision: number): boolean {
    return m !== undefined && (m.deleted === 'hard' || (m.truncateBefore !== undefined && m.truncateBefore > lastRevision));
  }
}
