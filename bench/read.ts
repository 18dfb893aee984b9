/**
 * npm run bench:read [-- --quick]
 *
 * The read side, 256-byte events:
 *  1. catch-up throughput over the network: a client subscription from the start of a log of
 *     1,000,000 events until it has them all (then it would go live);
 *  2. projection rebuild rate into each read-model store (in memory, LMDB on disk, PostgreSQL),
 *     on the embedded store, with a projection that keeps one document per stream;
 *  3. lag of a live subscription (over the network) at a fixed 5,000 appends/s for 10 s: the
 *     time from the append call to the event arriving at the subscriber, p50/p99/p99.9.
 * Throughput figures are medians of 3 runs (1 with --quick) with min-max. Prints a table, then
 * one JSON line, saved under bench-results/. PostgreSQL is skipped, with a line saying so, when
 * it is not reachable on 127.0.0.1:5432.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { Projection, defineProjection, memoryReadModelStore, openLmdbReadModelStore, openPostgresReadModelStore, openStore } from '../src/index.js';
import type { FileEventStore, ReadModelStore } from '../src/index.js';
import { connect } from '../src/client/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const REPEATS = quick ? 1 : 3;
const CATCHUP_EVENTS = quick ? 200_000 : 1_000_000;
const REBUILD_EVENTS = quick ? 200_000 : 1_000_000;
const PG_REBUILD_EVENTS = quick ? 50_000 : 200_000;
const LAG_RATE = 5000;
const LAG_S = quick ? 3 : 10;
const STREAMS = 10_000;
const payload = { pad: 'x'.repeat(244) }; // ~256 bytes of JSON data
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-bench-read-'));

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const stat = (xs: number[]): { median: number; min: number; max: number } => ({ median: Math.round(median(xs)), min: Math.round(Math.min(...xs)), max: Math.round(Math.max(...xs)) });

interface ServerProc {
  child: ChildProcess;
  tcpUrl: string;
  stop(): Promise<void>;
}

async function startServer(dir: string): Promise<ServerProc> {
  // The compiled server, as `npx eventful serve` runs it (npm run bench:read builds first).
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/eventful.js'), 'serve', '--data-dir', dir, '--http-port', '0', '--tcp-port', '0', '--log-level', 'error'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  while (!/TLS\s+(on|off)/.test(out)) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child,
    tcpUrl: /binary protocol\s+(\S+)/.exec(out)![1]!,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Appends `events` events of ~256 bytes over `STREAMS` streams, in batches of 100. */
async function fill(store: { append: FileEventStore['append'] }, events: number): Promise<void> {
  const inFlight: Array<Promise<unknown>> = [];
  for (let i = 0; i < events; i += 100) {
    const n = Math.min(100, events - i);
    inFlight.push(store.append(`acct-${(i / 100) % STREAMS}`, Array.from({ length: n }, () => ({ type: 'Deposited', data: payload }))));
    if (inFlight.length >= 64) await inFlight.shift();
  }
  await Promise.all(inFlight);
}

// ---------------------------------------------------------------------------------------------
// 1. Catch-up over the network

async function catchUpRun(url: string, events: number): Promise<number> {
  const client = await connect(url);
  try {
    const sub = client.subscribeToAll({ from: 'start' });
    const t0 = performance.now();
    let n = 0;
    for await (const page of sub.pages()) {
      n += page.length;
      if (n >= events) break;
    }
    const s = (performance.now() - t0) / 1000;
    await sub.close();
    return n / s;
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Rebuild into each read-model store

/** One document per stream: a count and a sum, the shape of a typical balance read model. */
const balances = defineProjection<{ balance: number; deposits: number }>({
  name: 'balances',
  filter: { category: 'acct' },
  collection: 'accounts',
  documentId: (e) => e.stream,
  initialState: { balance: 0, deposits: 0 },
  evolve(doc) {
    doc.balance += 1;
    doc.deposits += 1;
    return undefined; // changed in place
  },
});

async function rebuildRun(store: FileEventStore, models: ReadModelStore, expected: number): Promise<number> {
  const p = new Projection(store, models, balances);
  const r = await p.rebuild({ dropOld: true });
  if (r.eventsProcessed !== expected) throw new Error(`rebuild applied ${r.eventsProcessed} events, expected ${expected}`);
  const one = await models.get<{ deposits: number }>('balances', 'accounts', 'acct-0');
  const perStream = 100 * Math.ceil(expected / 100 / STREAMS); // fill's batches of 100 go round the streams
  if (one === undefined || one.deposits !== perStream) throw new Error(`acct-0 has ${one?.deposits} deposits, expected ${perStream}`);
  return r.eventsPerSecond;
}

async function pgReachable(): Promise<boolean> {
  const sql = postgres({ host: '127.0.0.1', port: 5432, database: 'postgres', username: process.env.PGUSER ?? 'postgres', connect_timeout: 3, max: 1, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Live subscription lag at a fixed rate

async function lagRun(url: string): Promise<{ p50: number; p99: number; p999: number; samples: number }> {
  const writer = await connect(url);
  const reader = await connect(url);
  const sent = new Map<number, number>();
  const lags: number[] = [];
  const sub = reader.subscribeToAll({ filter: { streamPrefix: 'lag-' } });
  const total = LAG_RATE * LAG_S;
  const done = (async () => {
    for await (const e of sub) {
      const t = sent.get((e.data as { i: number }).i);
      if (t !== undefined) lags.push(performance.now() - t);
      if (lags.length >= total) break;
    }
  })();
  await new Promise((r) => setTimeout(r, 200));
  // Appends paced against the clock (not by sleeping a fixed interval), each awaited for durability.
  const t0 = performance.now();
  const pending: Array<Promise<unknown>> = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / LAG_RATE;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    sent.set(i, performance.now());
    pending.push(writer.append(`lag-${i % 100}`, [{ type: 'Tick', data: { i, pad: payload.pad.slice(0, 230) } }]));
    if (pending.length > 1000) await pending.shift();
  }
  await Promise.all(pending);
  await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
  await sub.close();
  await writer.close();
  await reader.close();
  const sorted = lags.sort((a, b) => a - b);
  return { p50: pct(sorted, 50), p99: pct(sorted, 99), p999: pct(sorted, 99.9), samples: sorted.length };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  try {
    // 1. Catch-up
    const dir = path.join(tmp, 'catchup');
    const server = await startServer(dir);
    const filler = await connect(server.tcpUrl);
    await fill(filler, CATCHUP_EVENTS);
    await filler.close();
    await catchUpRun(server.tcpUrl, CATCHUP_EVENTS); // warm the page cache
    const catchUps: number[] = [];
    for (let r = 0; r < REPEATS; r++) catchUps.push(await catchUpRun(server.tcpUrl, CATCHUP_EVENTS));
    // 3. Lag, on the same server (its log now holds the catch-up events too)
    const lag = await lagRun(server.tcpUrl);
    await server.stop();

    // 2. Rebuilds, on the embedded store
    const store = await openStore({ dir: path.join(tmp, 'rebuild') });
    await fill(store, REBUILD_EVENTS);
    const memory: number[] = [];
    const lmdb: number[] = [];
    const lmdbModels = openLmdbReadModelStore({ dir: path.join(tmp, 'lmdb') });
    for (let r = 0; r < REPEATS; r++) {
      // Interleaved, so that a noisy moment hits both.
      memory.push(await rebuildRun(store, memoryReadModelStore(), REBUILD_EVENTS));
      lmdb.push(await rebuildRun(store, lmdbModels, REBUILD_EVENTS));
    }
    await lmdbModels.close();
    await store.close();
    let pg: number[] | undefined;
    let pgNote = '';
    if (await pgReachable()) {
      const pgStore = await openStore({ dir: path.join(tmp, 'rebuild-pg') });
      await fill(pgStore, PG_REBUILD_EVENTS);
      const schema = `bench_read_${process.pid}`;
      const models = openPostgresReadModelStore({ url: `postgres://${process.env.PGUSER ?? 'postgres'}@127.0.0.1:5432/postgres`, schema });
      pg = [];
      try {
        for (let r = 0; r < REPEATS; r++) pg.push(await rebuildRun(pgStore, models, PG_REBUILD_EVENTS));
      } finally {
        await models.close();
        const sql = postgres({ host: '127.0.0.1', port: 5432, database: 'postgres', username: process.env.PGUSER ?? 'postgres', max: 1, onnotice: () => {} });
        await sql.unsafe(`drop schema if exists ${schema} cascade`);
        await sql.end();
        await pgStore.close();
      }
    } else {
      pgNote = 'PostgreSQL not reachable on 127.0.0.1:5432: skipped';
    }

    const result = {
      bench: 'read',
      quick,
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
      catchUp: { events: CATCHUP_EVENTS, eventsPerS: stat(catchUps) },
      rebuild: {
        memory: { events: REBUILD_EVENTS, eventsPerS: stat(memory) },
        lmdb: { events: REBUILD_EVENTS, eventsPerS: stat(lmdb) },
        postgres: pg ? { events: PG_REBUILD_EVENTS, eventsPerS: stat(pg) } : { skipped: pgNote },
      },
      liveLagMs: { ratePerS: LAG_RATE, seconds: LAG_S, ...lag },
      targets: {
        catchUpAtLeast500k: median(catchUps) >= 500_000,
        memoryRebuildAtLeast300k: median(memory) >= 300_000,
      },
    };
    const row = (name: string, v: { median: number; min: number; max: number }, note = ''): string => `${name.padEnd(44)} ${String(v.median).padStart(9)} ${`${v.min}-${v.max}`.padStart(17)}  ${note}`;
    console.log(`\n${'workload'.padEnd(44)} ${'events/s'.padStart(9)} ${'min-max'.padStart(17)}`);
    console.log(row(`catch-up over TCP, ${CATCHUP_EVENTS} events`, result.catchUp.eventsPerS, 'target >= 500,000'));
    console.log(row(`rebuild into memory, ${REBUILD_EVENTS} events`, result.rebuild.memory.eventsPerS, 'target >= 300,000'));
    console.log(row(`rebuild into LMDB (synced), ${REBUILD_EVENTS}`, result.rebuild.lmdb.eventsPerS));
    if (pg) console.log(row(`rebuild into PostgreSQL, ${PG_REBUILD_EVENTS} events`, stat(pg)));
    else console.log(pgNote);
    console.log(`live subscription lag at ${LAG_RATE}/s for ${LAG_S} s: p50 ${lag.p50.toFixed(2)} ms, p99 ${lag.p99.toFixed(2)} ms, p99.9 ${lag.p999.toFixed(2)} ms (${lag.samples} samples; from the append call, through a durable group commit, to the subscriber)`);
    console.log(`targets: catch-up >= 500k/s ${result.targets.catchUpAtLeast500k ? 'PASS' : 'MISS'}; rebuild into memory >= 300k/s ${result.targets.memoryRebuildAtLeast300k ? 'PASS' : 'MISS'}`);
    fs.mkdirSync(path.join(ROOT, 'bench-results'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'bench-results', `read-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(result, null, 2));
    console.log(JSON.stringify(result));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
