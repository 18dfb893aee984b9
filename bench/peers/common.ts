/**
 * Helpers shared by the systems and the harness: payloads, pacing, publish lanes, percentiles.
 */
import { PAYLOAD_BYTES } from './types.js';
import type { PublishArgs, PublishResult } from './types.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const waitUntil = (t: number): Promise<void> => sleep(Math.max(0, t - Date.now()));
export const errText = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** Rejects after `ms` with a message naming what took too long: every cross-process await is bounded. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// -------------------------------------------------------------------------------------------------
// Payloads: 256 bytes. Magic, client process, sequence number, send time (performance.now() of
// the sending process, for latency measured in that same process), then padding.

const MAGIC = 0x45564250;

export function makePayload(processIndex: number, seq: number, sentAtMs = 0): Buffer {
  const b = Buffer.allocUnsafe(PAYLOAD_BYTES);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt32BE(processIndex, 4);
  b.writeDoubleBE(seq, 8);
  b.writeDoubleBE(sentAtMs, 16);
  b.fill(0x78, 24);
  return b;
}

export interface PayloadFields {
  processIndex: number;
  seq: number;
  sentAtMs: number;
}

/** The fields of one of our payloads, or undefined for anything else (wrong size or magic). */
export function readPayload(x: Uint8Array): PayloadFields | undefined {
  if (x.byteLength !== PAYLOAD_BYTES) return undefined;
  const v = new DataView(x.buffer, x.byteOffset, x.byteLength);
  if (v.getUint32(0) !== MAGIC) return undefined;
  return { processIndex: v.getUint32(4), seq: v.getFloat64(8), sentAtMs: v.getFloat64(16) };
}

// -------------------------------------------------------------------------------------------------
// Publishing in lanes: `lanes` loops, each with one batch in flight, so `lanes x batch` messages
// are in flight at most. A lane stops starting batches at t1 or when maxMessages are issued.

export async function publishInLanes(
  a: PublishArgs,
  lanes: number,
  batch: number,
  send: (lane: number, firstSeq: number, n: number) => Promise<void>,
): Promise<PublishResult> {
  let issued = 0;
  let acked = 0;
  let ackedInWindow = 0;
  let failure: unknown;
  await waitUntil(a.t0);
  const lane = async (k: number): Promise<void> => {
    while (failure === undefined && Date.now() < a.t1 && issued < a.maxMessages) {
      const n = Math.min(batch, a.maxMessages - issued);
      const first = issued;
      issued += n;
      try {
        await send(k, first, n);
      } catch (err) {
        failure ??= err;
        return;
      }
      acked += n;
      if (Date.now() <= a.t1) ackedInWindow += n;
    }
  };
  await Promise.all(Array.from({ length: lanes }, (_, k) => lane(k)));
  if (failure !== undefined) throw failure;
  return { acked, ackedInWindow };
}

/**
 * Sends one message at a time, `perSecond`, paced against the clock (a late tick catches up
 * with a burst rather than lowering the rate), for `seconds`. `send(seq, sentAtMs)` must not
 * be awaited by the pacer: it starts a publish and returns.
 */
export async function paced(perSecond: number, seconds: number, send: (seq: number) => void): Promise<number> {
  const total = Math.round(perSecond * seconds);
  const t0 = performance.now();
  let n = 0;
  while (n < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * perSecond));
    while (n < due) send(n++);
    await sleep(1);
  }
  return total / ((performance.now() - t0) / 1000);
}

/** Collects latencies of the messages after the warm-up, and tells when all have arrived. */
export class LatencyRecorder {
  readonly delivery: number[] = [];
  readonly ack: number[] = [];
  received = 0;
  readonly #warmup: number;
  readonly #total: number;
  #done!: () => void;
  readonly all: Promise<void>;
  constructor(warmup: number, total: number) {
    this.#warmup = warmup;
    this.#total = total;
    this.all = new Promise<void>((r) => (this.#done = r));
  }
  /** A delivery of payload `bytes`, now. */
  delivered(bytes: Uint8Array): void {
    const now = performance.now();
    const p = readPayload(bytes);
    if (p === undefined) return;
    if (p.seq >= this.#warmup) this.delivery.push(now - p.sentAtMs);
    if (++this.received >= this.#total) this.#done();
  }
  /** The server acknowledged the publish of message `seq`, sent at `sentAtMs`. */
  acked(seq: number, sentAtMs: number): void {
    if (seq >= this.#warmup) this.ack.push(performance.now() - sentAtMs);
  }
  sorted(): { deliveryMs: number[]; ackMs: number[] } {
    return { deliveryMs: this.delivery.sort((x, y) => x - y), ackMs: this.ack.sort((x, y) => x - y) };
  }
}

// -------------------------------------------------------------------------------------------------
// Statistics

export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The p-th percentile (0-100) of sorted values, nearest rank. */
export const percentile = (sorted: readonly number[], p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export const spread = (xs: readonly number[]): Spread => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length });
