/**
 * The log writer: puts framed appends at the end of the last segment, rolls to a new segment
 * when the next append would not fit, and makes writes durable according to the mode.
 *
 * Durability modes:
 * - `always` (default): every `write` returns only after fdatasync: the bytes survive power loss.
 * - `interval`: `write` returns once the OS has the bytes; a timer syncs every `syncIntervalMs`.
 *   A process crash loses nothing; power loss can lose the last interval's acknowledged appends.
 * - `none`: never syncs until close. For tests and benchmarks only.
 *
 * Group commit happens one level up (src/streams/store.ts): the store hands this writer every
 * append that arrived while the previous write was syncing, as one buffer, so one write and one
 * sync cover them all. The writer does one thing at a time; callers never overlap `write` calls.
 */
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { StorageFailedError, StorageFullError, assert } from '../core/errors.js';
import { HEADER_BYTES, createSegment, fsyncDir, segmentFileName } from './segments.js';
import type { SegmentFiles } from './segments.js';
import path from 'node:path';

export type DurabilityMode = 'always' | 'interval' | 'none';

/**
 * Instrumentation: each write and each sync is published on these channels (node:diagnostics_channel)
 * as a `LogIoEvent`. Nothing is measured while no one subscribes, so an embedded store pays one
 * boolean check per batch; the server's metrics subscribe (src/server/metrics.ts).
 */
export const LOG_WRITE_CHANNEL = 'eventful:log.write';
export const LOG_SYNC_CHANNEL = 'eventful:log.sync';

/** One write (bytes put in a segment) or one fdatasync of a log directory, and how long it took. */
export interface LogIoEvent {
  logDir: string;
  bytes: number;
  durationMs: number;
}

const writeChannel = diagnostics.channel(LOG_WRITE_CHANNEL);
const syncChannel = diagnostics.channel(LOG_SYNC_CHANNEL);

/** One append's bytes within a batch buffer. */
export interface AppendSpan {
  start: number;
  end: number;
  firstPosition: number;
}

/** Where an append landed. */
export interface AppendLocation {
  segmentBase: number;
  offset: number;
}

export interface LogWriterOptions {
  logDir: string;
  logId: Buffer;
  segmentBytes: number;
  durability: DurabilityMode;
  syncIntervalMs: number;
  segments: SegmentFiles;
  /** Called after a new segment becomes the active one. */
  onRoll?: (base: number) => void;
}

export class LogWriter {
  #o: LogWriterOptions;
  #fd: number;
  #base: number;
  #size: number;
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;

  constructor(options: LogWriterOptions, activeBase: number, activeSize: number) {
    this.#o = options;
    this.#base = activeBase;
    this.#size = activeSize;
    this.#fd = this.#openForWrite(activeBase);
    if (options.durability === 'interval') {
      this.#timer = setInterval(() => void this.#backgroundSync(), options.syncIntervalMs);
      this.#timer.unref();
    }
  }

  get activeBase(): number {
    return this.#base;
  }

  /** Bytes in the active segment, header included. */
  get activeSize(): number {
    return this.#size;
  }

  /** Bytes an append may take so that it fits in an empty segment. */
  get segmentCapacity(): number {
    return this.#o.segmentBytes - HEADER_BYTES;
  }

  /**
   * Writes the appends in `buf` (spans in log order) and syncs per the durability mode.
   * Returns each append's location. On failure the batch's bytes are cut back off the file where
   * possible and a StorageFailedError is thrown; the caller must then stop writing.
   */
  async write(buf: Buffer, spans: AppendSpan[]): Promise<AppendLocation[]> {
    const locations: AppendLocation[] = new Array(spans.length);
    let runStart = 0; // index into spans of the first append not yet written
    while (runStart < spans.length) {
      try {
        if (this.#size + (spans[runStart]!.end - spans[runStart]!.start) > this.#o.segmentBytes) {
          await this.#roll(spans[runStart]!.firstPosition);
        }
      } catch (err) {
        throw runStart === 0 ? err : partOfBatchWritten(err);
      }
      let runEnd = runStart;
      let bytes = 0;
      const offset = this.#size;
      while (runEnd < spans.length) {
        const len = spans[runEnd]!.end - spans[runEnd]!.start;
        if (this.#size + bytes + len > this.#o.segmentBytes) break;
        locations[runEnd] = { segmentBase: this.#base, offset: offset + bytes };
        bytes += len;
        runEnd++;
      }
      assert(runEnd > runStart, 'an append larger than a segment was let through');
      try {
        await this.#writeAt(buf.subarray(spans[runStart]!.start, spans[runEnd - 1]!.end), offset);
      } catch (err) {
        throw runStart === 0 ? err : partOfBatchWritten(err);
      }
      runStart = runEnd;
    }
    if (this.#o.durability === 'always') await this.#sync();
    else this.#dirty = true;
    return locations;
  }

  async #writeAt(bytes: Buffer, offset: number): Promise<void> {
    const started = writeChannel.hasSubscribers ? performance.now() : -1;
    let done = 0;
    try {
      while (done < bytes.length) {
        done += await new Promise<number>((resolve, reject) =>
          fs.write(this.#fd, bytes, done, bytes.length - done, offset + done, (err, n) => (err ? reject(err) : resolve(n))),
        );
      }
    } catch (err) {
      // A full disk is not damage: once the batch's bytes are cut back off, the file is as it
      // was, and the next batch may try again (STORAGE_FULL). Anything else stops the writer.
      if (this.#cutBack(offset) && isFull(err)) throw new StorageFullError(`no space left to write ${segmentFileName(this.#base)}: ${(err as Error).message}`, { offset }, err);
      throw new StorageFailedError(`write to ${segmentFileName(this.#base)} failed: ${(err as Error).message}`, { offset }, err);
    }
    this.#size = offset + bytes.length;
    if (started >= 0) writeChannel.publish({ logDir: this.#o.logDir, bytes: bytes.length, durationMs: performance.now() - started } satisfies LogIoEvent);
  }

  /** Best effort: remove a failed batch's bytes so a reopen does not find half of it. True when it did. */
  #cutBack(offset: number): boolean {
    this.#size = offset;
    try {
      fs.ftruncateSync(this.#fd, offset);
      return true;
    } catch {
      // Recovery on reopen cuts a torn tail by CRC anyway.
      return false;
    }
  }

  async #sync(): Promise<void> {
    const started = syncChannel.hasSubscribers ? performance.now() : -1;
    try {
      await new Promise<void>((resolve, reject) => fs.fdatasync(this.#fd, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      throw new StorageFailedError(`fdatasync of ${segmentFileName(this.#base)} failed: ${(err as Error).message}`, {}, err);
    }
    this.#dirty = false;
    if (started >= 0) syncChannel.publish({ logDir: this.#o.logDir, bytes: 0, durationMs: performance.now() - started } satisfies LogIoEvent);
  }

  async #backgroundSync(): Promise<void> {
    if (!this.#dirty || this.#syncing !== undefined) return;
    this.#syncing = this.#sync()
      .catch(() => {
        // The next write's sync or close reports the failure.
        this.#dirty = true;
      })
      .finally(() => (this.#syncing = undefined));
  }

  /** Seals the active segment (synced whatever the mode) and starts a new one at `base`. */
  async #roll(base: number): Promise<void> {
    if (this.#syncing) await this.#syncing;
    await this.#sync();
    const old = this.#fd;
    try {
      createSegment(this.#o.logDir, {
        basePosition: base,
        createdAt: Date.now(),
        segmentBytes: this.#o.segmentBytes,
        logId: this.#o.logId,
      });
      this.#fd = this.#openForWrite(base);
    } catch (err) {
      if (err instanceof StorageFailedError) throw err;
      // No room for the new segment: remove what was made of it, and stay on the old one.
      if (isFull(err) && removeIfPresent(path.join(this.#o.logDir, segmentFileName(base)))) {
        throw new StorageFullError(`no space left to create segment ${segmentFileName(base)}: ${(err as Error).message}`, {}, err);
      }
      throw new StorageFailedError(`cannot create segment ${segmentFileName(base)}: ${(err as Error).message}`, {}, err);
    }
    fs.closeSync(old);
    this.#base = base;
    this.#size = HEADER_BYTES;
    this.#o.segments.addSegment(base);
    this.#o.onRoll?.(base);
  }

  #openForWrite(base: number): number {
    return fs.openSync(path.join(this.#o.logDir, segmentFileName(base)), 'r+');
  }

  /** Syncs whatever is unsynced (all modes) and closes the active segment. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#syncing) await this.#syncing;
    try {
      await this.#sync();
      fsyncDir(this.#o.logDir);
    } finally {
      fs.closeSync(this.#fd);
    }
  }
}

/** ENOSPC or EDQUOT: the disk or the quota is full. */
function isFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** A batch failed after some of its appends were written: the writer must stop (see write). */
function partOfBatchWritten(err: unknown): unknown {
  if (!(err instanceof StorageFullError)) return err;
  return new StorageFailedError(`${err.message} (after part of the batch was written)`, err.details as Record<string, unknown>, err);
}

function removeIfPresent(file: string): boolean {
  try {
    fs.rmSync(file, { force: true });
    return true;
  } catch {
    return false;
  }
}
