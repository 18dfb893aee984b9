/**
 * Log benchmark: raw disk baseline, durable append throughput (group commit), $all scans,
 * readStream latency with many streams, and open/recovery time of a large log.
 *
 *   npm run bench:log                 full run (10M events, 1M streams; about 10-15 minutes)
 *   npm run bench:log -- --quick      small run (100k events, 100k streams; about a minute)
 *
 * Flags (each also as an environment variable, e.g. BENCH_EVENTS=2000000):
 *   --quick                  BENCH_QUICK=1      scaled-down run
 *   --duration-ms=N          BENCH_DURATION_MS  measured time of each append run (3000; quick 1000)
 *   --reps=N                 BENCH_REPS         repetitions of each append run (3)
 *   --streams=N              BENCH_STREAMS      1-event streams of the read store (1,000,000; quick 100,000)
 *   --reads=N                BENCH_READS        timed readStream calls (20,000; quick 5,000)
 *   --events=N               BENCH_EVENTS       events of the recovery store (10,000,000; quick 100,000)
 *   --keep                   BENCH_KEEP=1       keep the data directory
 *
 * Output: a table on stdout, progress on stderr, and as the last stdout line one JSON object with
 * every figure (also written to bench-results/log-<timestamp>.json).
 *
 * Counting syncs: the store's writer calls `fs.fdatasync` / `fs.write` on the `node:fs` default
 * export at call time, so this script wraps those two functions to count the syncs and writes the
 * store really issues (events per sync = events acknowledged / fdatasync calls in the window).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { openStore } from '../src/index.js';
import type { EventInput, FileEventStore } from '../src/index.js';
import { frameBytesFor } from '../src/log/record.js';
import { HEADER_BYTES } from '../src/log/segments.js';

// -------------------------------------------------------------------------------------------------
// Configuration

const argv = process.argv.slice(2);
function flagValue(name: string): string | undefined {
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  if (eq !== undefined) return eq.slice(name.length + 3);
  const envName = 'BENCH_' + name.toUpperCase().replace(/-/g, '_');
  return process.env[envName];
}
function flagBool(name: string): boolean {
  const v = flagValue(name);
  return argv.includes(`--${name}`) || v === '1' || v === 'true';
}
function flagInt(name: string, def: number): number {
  const v = flagValue(name);
  if (v === undefined || v === '') return def;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
}

const QUICK = flagBool('quick');
const CFG = {
  quick: QUICK,
  durationMs: flagInt('duration-ms', QUICK ? 1000 : 3000),
  reps: flagInt('reps', 3),
  singleStreams: flagInt('streams', QUICK ? 100_000 : 1_000_000),
  multiStreams: 0,
  multiEvents: 10,
  reads: flagInt('reads', QUICK ? 5_000 : 20_000),
  bigEvents: flagInt('events', QUICK ? 100_000 : 10_000_000),
  bigStreams: 10_000,
  bigAppendEvents: 100,
  bigAppenders: 64,
  fillInFlight: 512,
  reopens: 3,
  keep: flagBool('keep'),
};
CFG.multiStreams = Math.max(1, Math.round(CFG.singleStreams / 100));
CFG.bigStreams = Math.min(CFG.bigStreams, Math.max(1, Math.floor(CFG.bigEvents / CFG.bigAppendEvents)));
const WARMUP_MS = Math.min(500, Math.round(CFG.durationMs / 4));
const APPENDER_COUNTS = [1, 16, 256];
const BATCH_APPENDERS = 16;
const BATCH_EVENTS = 100;

// -------------------------------------------------------------------------------------------------
// The event: 256 bytes of JSON data

const EVENT_TYPE = 'BenchEvent';
const CONTENT_TYPE_JSON_BYTES = 'application/json'.length;
function makeData(): Record<string, unknown> {
  const base = { kind: 'bench', seq: 123456789, at: '2025-01-01T00:00:00.000Z', pad: '' };
  const len = JSON.stringify(base).length;
  base.pad = 'x'.repeat(256 - len);
  return base;
}
const DATA = makeData();
const DATA_BYTES = Buffer.byteLength(JSON.stringify(DATA));
const EVENT: EventInput = { type: EVENT_TYPE, data: DATA };
const ONE: EventInput[] = [EVENT];
const HUNDRED: EventInput[] = Array.from({ length: BATCH_EVENTS }, () => EVENT);
/** Durable-run stream names are all this long (`app-0000`), so every frame has the same size. */
const APPENDER_STREAM_BYTES = 8;
const appenderStream = (i: number): string => `app-${String(i).padStart(4, '0')}`;
const FRAME_BYTES = frameBytesFor(APPENDER_STREAM_BYTES, EVENT_TYPE.length, CONTENT_TYPE_JSON_BYTES, 0, DATA_BYTES);

// -------------------------------------------------------------------------------------------------
// Counting the store's writes and syncs

const counters = { fdatasync: 0, write: 0 };
const mfs = fs as unknown as Record<string, unknown>;
const origFdatasync = fs.fdatasync;
const origWrite = fs.write;
mfs.fdatasync = function (this: unknown, ...args: unknown[]) {
  counters.fdatasync++;
  return (origFdatasync as (...a: unknown[]) => unknown).apply(fs, args);
};
mfs.write = function (this: unknown, ...args: unknown[]) {
  counters.write++;
  return (origWrite as (...a: unknown[]) => unknown).apply(fs, args);
};

// -------------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.now();
const log = (msg: string): void => void process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}
function stats(xs: number[]): { median: number; min: number; max: number; runs: number[] } {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs };
}
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank]!;
}
function memory(): { rssMB: number; heapUsedMB: number; externalMB: number; arrayBuffersMB: number } {
  const m = process.memoryUsage();
  const mb = (b: number): number => round(b / 1024 / 1024, 1);
  return { rssMB: mb(m.rss), heapUsedMB: mb(m.heapUsed), externalMB: mb(m.external), arrayBuffersMB: mb(m.arrayBuffers) };
}
function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
function fmtInt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : String(x);
}
function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}
function fmtBytes(b: number): string {
  if (b >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(2)} GiB`;
  if (b >= 1024 ** 2) return `${(b / 1024 ** 2).toFixed(1)} MiB`;
  if (b >= 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${b} B`;
}
/** Deterministic PRNG (xorshift32) so runs pick the same streams. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

/** Apparent size and allocated size of every file under `dir`. */
function dirSize(dir: string): { bytes: number; allocated: number; files: number } {
  let bytes = 0;
  let allocated = 0;
  let files = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      const s = dirSize(p);
      bytes += s.bytes;
      allocated += s.allocated;
      files += s.files;
    } else if (e.isFile()) {
      const st = fs.statSync(p);
      bytes += st.size;
      allocated += st.blocks * 512;
      files++;
    }
  }
  return { bytes, allocated, files };
}
/** Bytes of records in a store's log (segment sizes minus their headers). */
function logRecordBytes(storeDir: string): { recordBytes: number; fileBytes: number; allocated: number; segments: number } {
  const logDir = path.join(storeDir, 'log');
  let recordBytes = 0;
  let fileBytes = 0;
  let allocated = 0;
  let segments = 0;
  for (const name of fs.readdirSync(logDir)) {
    if (!name.endsWith('.seg')) continue;
    const st = fs.statSync(path.join(logDir, name));
    recordBytes += st.size - HEADER_BYTES;
    fileBytes += st.size;
    allocated += st.blocks * 512;
    segments++;
  }
  return { recordBytes, fileBytes, allocated, segments };
}

let dropCachesNote: string | undefined;
/** Writes dirty pages and drops the page cache; false (with a note) when not permitted. */
function dropCaches(): boolean {
  if (dropCachesNote !== undefined) return false;
  try {
    execSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch (err) {
    dropCachesNote = `could not drop the page cache (${(err as Error).message.split('\n')[0]}); "cold" reads may be served from the page cache`;
    log(dropCachesNote);
    return false;
  }
}

// -------------------------------------------------------------------------------------------------
// Machine

function machine(dir: string): Record<string, unknown> {
  let fsType = 'unknown';
  let device = 'unknown';
  try {
    const out = execSync(`df -T ${JSON.stringify(dir)}`, { encoding: 'utf8' }).trim().split('\n');
    const cols = out[out.length - 1]!.split(/\s+/);
    device = cols[0] ?? device;
    fsType = cols[1] ?? fsType;
  } catch {
    // df missing: leave unknown
  }
  let mountOptions: string | undefined;
  try {
    const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' '));
    const m = mounts.filter((c) => c.length > 3 && dir.startsWith(c[1]!)).sort((a, b) => b[1]!.length - a[1]!.length)[0];
    if (m) mountOptions = m[3];
  } catch {
    // not Linux
  }
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    totalMemGiB: round(os.totalmem() / 1024 ** 3, 1),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    dataDir: dir,
    filesystem: fsType,
    device,
    mountOptions,
  };
}

// -------------------------------------------------------------------------------------------------
// 1. Raw baseline: write + fdatasync of batches of frames

interface RawResult {
  eventsPerSync: number;
  eventsPerSec: number;
  mbPerSec: number;
  syncsPerSec: number;
  usPerSync: number;
}

function fsWrite(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => origWrite(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}
function fsFdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => origFdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

async function rawRun(root: string, eventsPerSync: number, tag: string): Promise<RawResult> {
  const file = path.join(root, `raw-${eventsPerSync}-${tag}.dat`);
  const fd = fs.openSync(file, 'w+');
  const buf = randomBytes(FRAME_BYTES * eventsPerSync);
  let offset = 0;
  let batches = 0;
  try {
    // A header, as a segment has, then appends.
    fs.writeSync(fd, Buffer.alloc(HEADER_BYTES), 0, HEADER_BYTES, 0);
    fs.fsyncSync(fd);
    offset = HEADER_BYTES;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        let done = 0;
        while (done < buf.length) done += await fsWrite(fd, buf, done, buf.length - done, offset + done);
        offset += buf.length;
        await fsFdatasync(fd);
        batches++;
      }
    })();
    await sleep(WARMUP_MS);
    const b0 = batches;
    const t0 = now();
    await sleep(CFG.durationMs);
    const b1 = batches;
    const t1 = now();
    stop = true;
    await loop;
    const secs = (t1 - t0) / 1000;
    const events = (b1 - b0) * eventsPerSync;
    return {
      eventsPerSync,
      eventsPerSec: events / secs,
      mbPerSec: (events * FRAME_BYTES) / secs / 1e6,
      syncsPerSec: (b1 - b0) / secs,
      usPerSync: ((t1 - t0) * 1000) / Math.max(1, b1 - b0),
    };
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}

// -------------------------------------------------------------------------------------------------
// 2. Durable appends (durability 'always')

interface DurableResult {
  appenders: number;
  eventsPerAppend: number;
  eventsPerSec: number;
  appendsPerSec: number;
  mbPerSec: number;
  syncs: number;
  eventsPerSync: number;
  appendsPerSync: number;
  writesPerSync: number;
  frameBytes: number;
}

async function durableRun(root: string, appenders: number, eventsPerAppend: number, tag: string): Promise<DurableResult> {
  const dir = path.join(root, `durable-${appenders}x${eventsPerAppend}-${tag}`);
  const store = await openStore({ dir, durability: 'always' });
  const events = eventsPerAppend === 1 ? ONE : HUNDRED.slice(0, eventsPerAppend);
  let acked = 0;
  let appends = 0;
  let stop = false;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < appenders; i++) {
    const stream = appenderStream(i);
    loops.push(
      (async () => {
        while (!stop) {
          await store.append(stream, events);
          acked += eventsPerAppend;
          appends++;
        }
      })(),
    );
  }
  let m: { e: number; a: number; s: number; w: number; t: number }[];
  try {
    await sleep(WARMUP_MS);
    const m0 = { e: acked, a: appends, s: counters.fdatasync, w: counters.write, t: now() };
    await sleep(CFG.durationMs);
    const m1 = { e: acked, a: appends, s: counters.fdatasync, w: counters.write, t: now() };
    m = [m0, m1];
  } finally {
    stop = true;
    await Promise.all(loops);
    await store.close();
  }
  const [m0, m1] = m as [(typeof m)[0], (typeof m)[0]];
  const lb = logRecordBytes(dir);
  fs.rmSync(dir, { recursive: true, force: true });
  const frameBytes = lb.recordBytes / acked;
  const secs = (m1.t - m0.t) / 1000;
  const ev = m1.e - m0.e;
  const syncs = m1.s - m0.s;
  return {
    appenders,
    eventsPerAppend,
    eventsPerSec: ev / secs,
    appendsPerSec: (m1.a - m0.a) / secs,
    mbPerSec: (ev * frameBytes) / secs / 1e6,
    syncs,
    eventsPerSync: ev / Math.max(1, syncs),
    appendsPerSync: (m1.a - m0.a) / Math.max(1, syncs),
    writesPerSync: (m1.w - m0.w) / Math.max(1, syncs),
    frameBytes,
  };
}

// -------------------------------------------------------------------------------------------------
// Filling stores quickly (durability 'none')

async function runPool(total: number, workers: number, job: (i: number) => Promise<void>, progress?: (done: number) => void): Promise<void> {
  let next = 0;
  let done = 0;
  let lastReport = now();
  await Promise.all(
    Array.from({ length: Math.min(workers, total) }, async () => {
      while (next < total) {
        const i = next++;
        await job(i);
        done++;
        if (progress !== undefined && now() - lastReport > 5000) {
          lastReport = now();
          progress(done);
        }
      }
    }),
  );
}

// -------------------------------------------------------------------------------------------------
// Table output

function out(s = ''): void {
  process.stdout.write(s + '\n');
}
function table(headers: string[], rows: string[][], align?: ('l' | 'r')[]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const a = align ?? headers.map((_, i) => (i === 0 ? 'l' : 'r'));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (a[i] === 'l' ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  out('  ' + line(headers));
  out('  ' + widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) out('  ' + line(r));
}
const mark = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');

// -------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const started = now();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-bench-'));
  const cleanup = (): void => {
    if (!CFG.keep) fs.rmSync(root, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const results: Record<string, unknown> = { benchmark: 'log', startedAt: new Date().toISOString(), config: { ...CFG, warmupMs: WARMUP_MS } };
  try {
    const mach = machine(root);
    results.machine = mach;
    results.event = { dataBytes: DATA_BYTES, frameBytes: FRAME_BYTES, type: EVENT_TYPE, streamNameBytes: APPENDER_STREAM_BYTES };
    log(`data dir ${root} (${mach.filesystem}); ${QUICK ? 'QUICK run' : 'full run'}`);

    // ---------------------------------------------------------------------------------------------
    // 1-3. Raw baseline and durable appends, interleaved
    const rawSizes = [1, 16, 256, BATCH_EVENTS, BATCH_APPENDERS * BATCH_EVENTS];
    const durableConfigs: Array<{ appenders: number; eventsPerAppend: number; key: string; rawMatch: number }> = [
      ...APPENDER_COUNTS.map((n) => ({ appenders: n, eventsPerAppend: 1, key: `${n}x1`, rawMatch: n })),
      { appenders: BATCH_APPENDERS, eventsPerAppend: BATCH_EVENTS, key: `${BATCH_APPENDERS}x${BATCH_EVENTS}`, rawMatch: BATCH_APPENDERS * BATCH_EVENTS },
    ];
    const raw = new Map<number, RawResult[]>(rawSizes.map((s) => [s, []]));
    const durable = new Map<string, DurableResult[]>(durableConfigs.map((c) => [c.key, []]));
    const order: Array<{ kind: 'raw'; size: number } | { kind: 'durable'; cfg: (typeof durableConfigs)[number] }> = [
      { kind: 'raw', size: 1 },
      { kind: 'durable', cfg: durableConfigs[0]! },
      { kind: 'raw', size: 16 },
      { kind: 'durable', cfg: durableConfigs[1]! },
      { kind: 'raw', size: 256 },
      { kind: 'durable', cfg: durableConfigs[2]! },
      { kind: 'raw', size: BATCH_EVENTS },
      { kind: 'raw', size: BATCH_APPENDERS * BATCH_EVENTS },
      { kind: 'durable', cfg: durableConfigs[3]! },
    ];
    for (let rep = 1; rep <= CFG.reps; rep++) {
      for (const step of order) {
        if (step.kind === 'raw') {
          const r = await rawRun(root, step.size, `r${rep}`);
          raw.get(step.size)!.push(r);
          log(`rep ${rep} raw ${step.size}/sync: ${fmtInt(r.eventsPerSec)} ev/s, ${fmt(r.usPerSync, 0)} us/sync`);
        } else {
          const r = await durableRun(root, step.cfg.appenders, step.cfg.eventsPerAppend, `r${rep}`);
          durable.get(step.cfg.key)!.push(r);
          log(`rep ${rep} durable ${step.cfg.key}: ${fmtInt(r.eventsPerSec)} ev/s, ${fmt(r.eventsPerSync, 1)} ev/sync, ${fmt(r.writesPerSync, 2)} writes/sync`);
        }
      }
    }
    // Raw at the batch size the store actually achieved at 256 appenders (the fair comparison).
    const achieved256 = median(durable.get('256x1')!.map((r) => r.eventsPerSync));
    const matchedSize = Math.max(1, Math.round(achieved256));
    if (!raw.has(matchedSize)) {
      raw.set(matchedSize, []);
      for (let rep = 1; rep <= CFG.reps; rep++) {
        const r = await rawRun(root, matchedSize, `m${rep}`);
        raw.get(matchedSize)!.push(r);
        log(`rep ${rep} raw ${matchedSize}/sync (matched): ${fmtInt(r.eventsPerSec)} ev/s`);
      }
    }
    const rawStats = (size: number): ReturnType<typeof stats> => stats(raw.get(size)!.map((r) => r.eventsPerSec));
    const rawOut: Record<string, unknown> = {};
    for (const [size, rs] of [...raw.entries()].sort((a, b) => a[0] - b[0])) {
      rawOut[String(size)] = {
        eventsPerSync: size,
        eventsPerSec: stats(rs.map((r) => round(r.eventsPerSec))),
        mbPerSec: stats(rs.map((r) => round(r.mbPerSec, 2))),
        usPerSync: stats(rs.map((r) => round(r.usPerSync, 1))),
      };
    }
    const durableOut: Record<string, unknown> = {};
    for (const c of durableConfigs) {
      const rs = durable.get(c.key)!;
      durableOut[c.key] = {
        appenders: c.appenders,
        eventsPerAppend: c.eventsPerAppend,
        eventsPerSec: stats(rs.map((r) => round(r.eventsPerSec))),
        mbPerSec: stats(rs.map((r) => round(r.mbPerSec, 2))),
        eventsPerSync: stats(rs.map((r) => round(r.eventsPerSync, 2))),
        appendsPerSync: stats(rs.map((r) => round(r.appendsPerSync, 2))),
        writesPerSync: stats(rs.map((r) => round(r.writesPerSync, 3))),
        frameBytes: round(median(rs.map((r) => r.frameBytes)), 1),
        rawAtSameEventsPerSync: round(rawStats(c.rawMatch).median),
        ratioToRaw: round(median(rs.map((r) => r.eventsPerSec)) / rawStats(c.rawMatch).median, 3),
      };
    }
    const d256 = median(durable.get('256x1')!.map((r) => r.eventsPerSec));
    const durableToRawRatio = d256 / rawStats(256).median;
    const durableToMatchedRawRatio = d256 / rawStats(matchedSize).median;
    results.raw = rawOut;
    results.durable = durableOut;
    results.durableToRawRatio = round(durableToRawRatio, 3);
    results.durableToRawRatioNote = 'median durable events/s at 256 appenders x 1 event / median raw events/s at 256 events per fdatasync';
    results.achievedEventsPerSyncAt256 = round(achieved256, 2);
    results.durableToMatchedRawRatio = round(durableToMatchedRawRatio, 3);
    results.matchedRawEventsPerSync = matchedSize;

    // ---------------------------------------------------------------------------------------------
    // 4-5. Read store: many 1-event streams + some 10-event streams (interleaved in the log)
    const S = CFG.singleStreams;
    const M = CFG.multiStreams;
    const K = CFG.multiEvents;
    const readDir = path.join(root, 'streams');
    const totalReadEvents = S + M * K;
    log(`filling read store: ${fmtInt(S)} streams x 1 event + ${fmtInt(M)} streams x ${K} events = ${fmtInt(totalReadEvents)} events`);
    let store: FileEventStore = await openStore({ dir: readDir, durability: 'none' });
    // Round r: every multi stream gets its r-th event, spread evenly between 1/K of the singles.
    const perRoundSingles = Math.ceil(S / K);
    const names: string[] = [];
    for (let r = 0; r < K; r++) {
      const s0 = r * perRoundSingles;
      const s1 = Math.min(S, s0 + perRoundSingles);
      const every = Math.max(1, Math.floor((s1 - s0) / M));
      let m = 0;
      for (let s = s0; s < s1; s++) {
        if ((s - s0) % every === 0 && m < M) names.push(`multi-${String(m++).padStart(6, '0')}`);
        names.push(`single-${String(s).padStart(8, '0')}`);
      }
      while (m < M) names.push(`multi-${String(m++).padStart(6, '0')}`);
    }
    const fillStart = now();
    await runPool(names.length, CFG.fillInFlight, async (i) => void (await store.append(names[i]!, ONE)), (done) =>
      log(`  read store: ${fmtInt(done)} / ${fmtInt(names.length)} appends, ${fmtInt(done / ((now() - fillStart) / 1000))} ev/s, rss ${memory().rssMB} MB`),
    );
    const readFillSecs = (now() - fillStart) / 1000;
    names.length = 0;
    const memAfterReadFill = memory();
    log(`  filled in ${fmt(readFillSecs, 1)} s (${fmtInt(totalReadEvents / readFillSecs)} ev/s); closing`);
    await store.close();

    // readAll: cold (reopened, page cache dropped), then warm passes.
    store = await openStore({ dir: readDir, durability: 'none' });
    const readReopenMs = store.recovery.durationMs;
    const readIndexStats = store.indexStats();
    const readLog = logRecordBytes(readDir);
    const coldDropped = dropCaches();
    const readAllPass = async (touchData: boolean): Promise<{ events: number; eventsPerSec: number; ms: number }> => {
      let n = 0;
      let sum = 0;
      const t0 = now();
      for await (const e of store.readAll()) {
        sum += e.position;
        if (touchData) sum += (e.data as { seq: number }).seq;
        n++;
      }
      const ms = now() - t0;
      if (n !== totalReadEvents) throw new Error(`readAll returned ${n} events, expected ${totalReadEvents}`);
      if (sum === 0) throw new Error('unreachable');
      return { events: n, eventsPerSec: n / (ms / 1000), ms };
    };
    log('readAll cold pass');
    const cold = await readAllPass(false);
    const warm: number[] = [];
    const warmData: number[] = [];
    for (let i = 0; i < 3; i++) {
      warm.push((await readAllPass(false)).eventsPerSec);
      log(`readAll warm pass ${i + 1}: ${fmtInt(warm[warm.length - 1]!)} ev/s`);
    }
    for (let i = 0; i < 3; i++) {
      warmData.push((await readAllPass(true)).eventsPerSec);
      log(`readAll warm pass touching data ${i + 1}: ${fmtInt(warmData[warmData.length - 1]!)} ev/s`);
    }
    const memAfterReadAll = memory();
    results.readAll = {
      events: totalReadEvents,
      logBytes: readLog.recordBytes,
      coldEventsPerSec: round(cold.eventsPerSec),
      coldMBPerSec: round(readLog.recordBytes / (cold.ms / 1000) / 1e6, 1),
      coldPageCacheDropped: coldDropped,
      warmEventsPerSec: stats(warm.map((x) => round(x))),
      warmWithDataEventsPerSec: stats(warmData.map((x) => round(x))),
      note: 'warm = median of 3 full passes; "position" passes touch e.position only, "data" passes also parse e.data',
    };

    // readStream latency.
    const rnd = prng(12345);
    const timeReads = async (count: number, pick: () => string, expect: number): Promise<Float64Array> => {
      const lat = new Float64Array(count);
      for (let i = 0; i < count; i++) {
        const name = pick();
        const t0 = process.hrtime.bigint();
        const evs = await store.readStream(name).toArray();
        lat[i] = Number(process.hrtime.bigint() - t0) / 1000; // microseconds
        if (evs.length !== expect) throw new Error(`readStream(${name}) returned ${evs.length} events, expected ${expect}`);
      }
      return lat.sort();
    };
    const pickMulti = (): string => `multi-${String(Math.floor(rnd() * M)).padStart(6, '0')}`;
    const pickSingle = (): string => `single-${String(Math.floor(rnd() * S)).padStart(8, '0')}`;
    log(`readStream: warm-up, then ${fmtInt(CFG.reads)} timed reads of random ${K}-event streams`);
    await timeReads(Math.min(2000, CFG.reads), pickMulti, K);
    const latMulti = await timeReads(CFG.reads, pickMulti, K);
    const latSingle = await timeReads(CFG.reads, pickSingle, 1);
    const latSummary = (lat: Float64Array): Record<string, number> => ({
      reads: lat.length,
      p50us: round(percentile(lat, 0.5), 1),
      p90us: round(percentile(lat, 0.9), 1),
      p99us: round(percentile(lat, 0.99), 1),
      p999us: round(percentile(lat, 0.999), 1),
      maxUs: round(lat[lat.length - 1]!, 1),
      meanUs: round(lat.reduce((a, b) => a + b, 0) / lat.length, 1),
    });
    const memAfterReads = memory();
    results.readStream = {
      streams: S + M,
      events: totalReadEvents,
      tenEventStreams: { eventsPerStream: K, ...latSummary(latMulti) },
      oneEventStreams: latSummary(latSingle),
      note: `sequential reads, page cache warm; each ${K}-event stream's events are ~${fmtInt(totalReadEvents / K)} positions apart in the log`,
    };
    await store.close();
    results.readStore = {
      streams: S + M,
      events: totalReadEvents,
      fillSeconds: round(readFillSecs, 1),
      fillEventsPerSec: round(totalReadEvents / readFillSecs),
      reopenMs: readReopenMs,
      index: readIndexStats,
      logRecordBytes: readLog.recordBytes,
      logFileBytes: readLog.fileBytes,
    };
    fs.rmSync(readDir, { recursive: true, force: true });

    // ---------------------------------------------------------------------------------------------
    // 6. Big store: open/recovery time at N events
    const N = CFG.bigEvents;
    const bigDir = path.join(root, 'big');
    const appendsTotal = Math.ceil(N / CFG.bigAppendEvents);
    log(`filling recovery store: ${fmtInt(N)} events as ${fmtInt(appendsTotal)} appends of ${CFG.bigAppendEvents} to ${fmtInt(CFG.bigStreams)} rotating streams, ${CFG.bigAppenders} concurrent`);
    store = await openStore({ dir: bigDir, durability: 'none' });
    const bigStart = now();
    await runPool(
      appendsTotal,
      CFG.bigAppenders,
      async (i) => {
        const n = Math.min(CFG.bigAppendEvents, N - i * CFG.bigAppendEvents);
        await store.append(`stream-${String(i % CFG.bigStreams).padStart(6, '0')}`, n === BATCH_EVENTS ? HUNDRED : HUNDRED.slice(0, n));
      },
      (done) => {
        const ev = done * CFG.bigAppendEvents;
        const secs = (now() - bigStart) / 1000;
        const m = memory();
        log(`  recovery store: ${fmtInt(ev)} / ${fmtInt(N)} events (${fmt((100 * ev) / N, 1)}%), ${fmtInt(ev / secs)} ev/s, rss ${m.rssMB} MB, heap ${m.heapUsedMB} MB`);
      },
    );
    const bigFillSecs = (now() - bigStart) / 1000;
    const memAfterBigFill = memory();
    const head = await store.headPosition();
    if (head !== N) throw new Error(`head is ${head}, expected ${N}`);
    log(`  filled in ${fmt(bigFillSecs, 1)} s (${fmtInt(N / bigFillSecs)} ev/s); closing`);
    const closeStart = now();
    await store.close();
    const bigCloseMs = now() - closeStart;
    const bigLog = logRecordBytes(bigDir);
    const bigIndexDisk = dirSize(path.join(bigDir, 'index'));

    const reopenMs: number[] = [];
    const recoveries: unknown[] = [];
    let bigIndexStats: ReturnType<FileEventStore['indexStats']> | undefined;
    let memAfterReopen: ReturnType<typeof memory> | undefined;
    for (let i = 0; i < CFG.reopens; i++) {
      const t0 = now();
      const s = await openStore({ dir: bigDir, durability: 'none' });
      reopenMs.push(now() - t0);
      recoveries.push(s.recovery);
      if (i === 0) {
        bigIndexStats = s.indexStats();
        memAfterReopen = memory();
      }
      await s.close();
      log(`  reopen ${i + 1}: ${fmt(reopenMs[i]!, 1)} ms (replayed ${s.recovery.replayedEvents} events)`);
    }
    let coldReopenMs: number | undefined;
    if (dropCaches()) {
      const t0 = now();
      const s = await openStore({ dir: bigDir, durability: 'none' });
      coldReopenMs = now() - t0;
      await s.close();
      log(`  reopen after dropping the page cache: ${fmt(coldReopenMs, 1)} ms`);
    }
    const bigStats = bigIndexStats!;
    // Per event from the big store (its 10k streams are negligible); per stream from the read store
    // (1M+ streams) after subtracting its events at that per-event cost.
    const indexBytesPerEvent = bigStats.fileBytes / bigStats.events;
    const indexBytesPerStream = (readIndexStats.fileBytes - readIndexStats.events * indexBytesPerEvent) / readIndexStats.streams;
    results.recovery = {
      events: N,
      streams: CFG.bigStreams,
      fillSeconds: round(bigFillSecs, 1),
      fillEventsPerSec: round(N / bigFillSecs),
      closeMs: round(bigCloseMs, 1),
      reopenMs: stats(reopenMs.map((x) => round(x, 1))),
      coldReopenMs: coldReopenMs === undefined ? null : round(coldReopenMs, 1),
      recovery: recoveries,
      logRecordBytes: bigLog.recordBytes,
      logFileBytes: bigLog.fileBytes,
      logAllocatedBytes: bigLog.allocated,
      segments: bigLog.segments,
      index: { ...bigStats, allocatedBytes: bigIndexDisk.allocated },
      indexBytesPerEvent: round(indexBytesPerEvent, 1),
      indexBytesPerStream: round(indexBytesPerStream, 1),
      indexBytesNote: 'per event = big store index file bytes / events; per stream = (read store index bytes - its events x per-event bytes) / its streams',
    };
    fs.rmSync(bigDir, { recursive: true, force: true });

    results.memory = {
      afterReadStoreFill: memAfterReadFill,
      afterReadAll: memAfterReadAll,
      afterReadStream: memAfterReads,
      afterRecoveryStoreFill: memAfterBigFill,
      afterReopenAtNEvents: memAfterReopen,
    };
    if (dropCachesNote !== undefined) results.notes = [dropCachesNote];

    // ---------------------------------------------------------------------------------------------
    // Targets
    const readAllWarm = median(warm);
    const p99Multi = percentile(latMulti, 0.99);
    const reopenMedian = median(reopenMs);
    const targets = {
      durableAppendHalfOfRaw: { target: 'durable events/s at 256 appenders >= 50% of raw at 256 events/sync', value: round(durableToRawRatio, 3), pass: durableToRawRatio >= 0.5 },
      readAllWarm: { target: 'readAll warm >= 1,000,000 events/s', value: round(readAllWarm), pass: readAllWarm >= 1_000_000 },
      readStreamP99: { target: `readStream p99 < 1 ms (${K}-event streams, ${fmtInt(S + M)} streams)`, valueUs: round(p99Multi, 1), pass: p99Multi < 1000 },
      reopen: { target: `reopen after clean close < 2 s at ${fmtInt(N)} events`, valueMs: round(reopenMedian, 1), pass: reopenMedian < 2000 },
    };
    results.targets = targets;
    results.totalSeconds = round((now() - started) / 1000, 1);

    // ---------------------------------------------------------------------------------------------
    // Table
    out('');
    out(`Eventful log benchmark${QUICK ? ' (QUICK: scaled down)' : ''}  ${results.startedAt as string}`);
    out(`Machine: ${mach.cpu as string}, ${mach.cores as number} cores, ${mach.totalMemGiB as number} GiB RAM, Node ${mach.node as string}, ${mach.platform as string}`);
    out(`Data dir: ${root} on ${mach.filesystem as string} (${mach.device as string}${mach.mountOptions ? `, ${mach.mountOptions as string}` : ''})`);
    out(`Event: ${DATA_BYTES} B JSON data, ${FRAME_BYTES} B frame (stream '${appenderStream(0)}', type '${EVENT_TYPE}'); ${CFG.reps} reps x ${CFG.durationMs} ms (+${WARMUP_MS} ms warm-up), medians [min-max]`);
    out('');
    out('1. Raw baseline: fs.write + fs.fdatasync per batch (appending to one file)');
    table(
      ['events/sync', 'events/s', 'MB/s', 'us/sync'],
      [...raw.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([size, rs]) => {
          const e = stats(rs.map((r) => r.eventsPerSec));
          return [
            String(size) + (size === matchedSize ? ' (matched)' : ''),
            `${fmtInt(e.median)} [${fmtInt(e.min)}-${fmtInt(e.max)}]`,
            fmt(median(rs.map((r) => r.mbPerSec)), 1),
            fmt(median(rs.map((r) => r.usPerSync)), 0),
          ];
        }),
    );
    out('');
    out("2. Durable appends (durability 'always'), each appender awaiting its own stream's appends");
    table(
      ['appenders x events', 'events/s', 'MB/s', 'events/sync', 'writes/sync', 'raw same ev/sync', 'vs raw'],
      durableConfigs.map((c) => {
        const rs = durable.get(c.key)!;
        const e = stats(rs.map((r) => r.eventsPerSec));
        const rawMed = rawStats(c.rawMatch).median;
        return [
          `${c.appenders} x ${c.eventsPerAppend}`,
          `${fmtInt(e.median)} [${fmtInt(e.min)}-${fmtInt(e.max)}]`,
          fmt(median(rs.map((r) => r.mbPerSec)), 1),
          fmt(median(rs.map((r) => r.eventsPerSync)), 1),
          fmt(median(rs.map((r) => r.writesPerSync)), 2),
          `${fmtInt(rawMed)} (@${c.rawMatch})`,
          `${fmt((100 * e.median) / rawMed, 0)}%`,
        ];
      }),
    );
    out(`  durableToRawRatio (256 appenders / raw @256 events per sync) = ${fmt(durableToRawRatio, 3)}   target >= 0.5  ${mark(durableToRawRatio >= 0.5)}`);
    out(`  events per fdatasync actually achieved at 256 appenders (counted by wrapping fs.fdatasync): ${fmt(achieved256, 1)}`);
    out(`  vs raw at that batch size (${matchedSize} events/sync, ${fmtInt(rawStats(matchedSize).median)} ev/s): ${fmt(durableToMatchedRawRatio, 3)}`);
    out('');
    out(`3. readAll over ${fmtInt(totalReadEvents)} events (${fmtBytes(readLog.recordBytes)} of log)`);
    table(
      ['pass', 'events/s', 'target'],
      [
        [`cold (reopened${coldDropped ? ', page cache dropped' : ', page cache NOT dropped'}), e.position`, fmtInt(cold.eventsPerSec), ''],
        ['warm, e.position (median of 3)', `${fmtInt(readAllWarm)} [${fmtInt(Math.min(...warm))}-${fmtInt(Math.max(...warm))}]`, `>= 1,000,000  ${mark(readAllWarm >= 1_000_000)}`],
        ['warm, e.position + e.data (median of 3)', `${fmtInt(median(warmData))} [${fmtInt(Math.min(...warmData))}-${fmtInt(Math.max(...warmData))}]`, ''],
      ],
      ['l', 'r', 'l'],
    );
    out('');
    out(`4. readStream(name).toArray() latency, ${fmtInt(S + M)} streams, ${fmtInt(totalReadEvents)} events (page cache warm, reads one at a time)`);
    const latRow = (label: string, lat: Float64Array, target: string): string[] => [
      label,
      fmt(percentile(lat, 0.5) / 1000, 3),
      fmt(percentile(lat, 0.9) / 1000, 3),
      fmt(percentile(lat, 0.99) / 1000, 3),
      fmt(percentile(lat, 0.999) / 1000, 3),
      fmt(lat[lat.length - 1]! / 1000, 3),
      target,
    ];
    table(
      ['streams read', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'target'],
      [
        latRow(`${fmtInt(CFG.reads)} random ${K}-event streams`, latMulti, `p99 < 1 ms  ${mark(p99Multi < 1000)}`),
        latRow(`${fmtInt(CFG.reads)} random 1-event streams`, latSingle, ''),
      ],
      ['l', 'r', 'r', 'r', 'r', 'r', 'l'],
    );
    out('');
    out(`5. Open/recovery at ${fmtInt(N)} events (${fmtInt(CFG.bigStreams)} streams; filled at ${fmtInt(N / bigFillSecs)} ev/s with durability 'none' in ${fmt(bigFillSecs, 0)} s)`);
    const rec0 = recoveries[0] as { replayedEvents: number; indexRebuilt: boolean; truncatedBytes: number; durationMs: number };
    table(
      ['figure', 'value'],
      [
        ['close after fill', `${fmt(bigCloseMs, 0)} ms`],
        [`reopen after clean close (median of ${CFG.reopens})`, `${fmt(reopenMedian, 1)} ms [${fmt(Math.min(...reopenMs), 1)}-${fmt(Math.max(...reopenMs), 1)}]   target < 2 s  ${mark(reopenMedian < 2000)}`],
        ['reopen with page cache dropped', coldReopenMs === undefined ? 'skipped (cannot drop caches)' : `${fmt(coldReopenMs, 1)} ms`],
        ['store.recovery (1st reopen)', `replayed ${rec0.replayedEvents}, rebuilt ${rec0.indexRebuilt}, truncated ${rec0.truncatedBytes} B, durationMs ${rec0.durationMs}`],
        ['log on disk', `${fmtBytes(bigLog.fileBytes)} in ${bigLog.segments} segments (${fmt(bigLog.recordBytes / N, 1)} B/event)`],
        ['index (LMDB) on disk', `${fmtBytes(bigStats.fileBytes)} (allocated ${fmtBytes(bigIndexDisk.allocated)}); ${fmtInt(bigStats.streams)} streams, ${fmtInt(bigStats.events)} events, ${fmtInt(bigStats.sparse)} sparse`],
        ['index bytes per event', fmt(indexBytesPerEvent, 1)],
        [`index bytes per stream (from the ${fmtInt(S + M)}-stream store: ${fmtBytes(readIndexStats.fileBytes)})`, fmt(indexBytesPerStream, 1)],
      ],
      ['l', 'l'],
    );
    out('');
    out('6. Resident memory');
    const memRows: Array<[string, ReturnType<typeof memory> | undefined]> = [
      [`after filling the read store (${fmtInt(totalReadEvents)} events)`, memAfterReadFill],
      ['after readAll passes', memAfterReadAll],
      ['after readStream reads', memAfterReads],
      [`after filling the recovery store (${fmtInt(N)} events)`, memAfterBigFill],
      ['after reopening it (store open)', memAfterReopen],
    ];
    table(
      ['point', 'rss MB', 'heapUsed MB', 'external MB'],
      memRows.map(([label, m]) => [label, fmt(m?.rssMB ?? NaN, 1), fmt(m?.heapUsedMB ?? NaN, 1), fmt(m?.externalMB ?? NaN, 1)]),
    );
    if (dropCachesNote !== undefined) out(`Note: ${dropCachesNote}`);
    const passed = Object.values(targets).filter((t) => t.pass).length;
    out('');
    out(`Targets: ${passed}/${Object.keys(targets).length} pass. Total time ${fmt(results.totalSeconds as number, 0)} s.`);

    const json = JSON.stringify(results);
    const resultsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench-results');
    fs.mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `log-${(results.startedAt as string).replace(/[:.]/g, '-')}${QUICK ? '-quick' : ''}.json`);
    fs.writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
    log(`results written to ${file}`);
    process.stdout.write(json + '\n');
  } finally {
    cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
