/**
 * npm run bench:server [-- --quick]
 *
 * Measures the server against the embedded store in the same run, 256-byte events:
 *  1. embedded durable append throughput (256 concurrent appenders, durability always);
 *  2. the same through the client over TCP with 1, 4 and 16 connections, many appends in flight;
 *  3. the same over WebSocket (4 connections);
 *  4. HTTP append throughput (64 concurrent keep-alive requests);
 *  5. append-to-subscriber latency p50/p99/p99.9 at a fixed 5,000 events/s (fsync on every ack);
 *  6. replay of 1,000,000 events through the client (readAll).
 * Each throughput figure is the median of 3 interleaved runs. Prints a table, then one JSON line.
 * The server runs as its own process (`eventful serve`), as users run it.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../src/index.js';
import { connect } from '../src/client/index.js';
import type { RemoteEventStore } from '../src/client/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const RUN_MS = quick ? 1500 : 4000;
const REPEATS = quick ? 1 : 3;
const REPLAY_EVENTS = quick ? 100_000 : 1_000_000;
const LATENCY_S = quick ? 3 : 10;
const payload = { pad: 'x'.repeat(244) }; // ~256 bytes of JSON data
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-bench-server-'));

interface ServerProc {
  child: ChildProcess;
  tcpUrl: string;
  wsUrl: string;
  httpUrl: string;
  stop(): Promise<void>;
}

async function startServer(dir: string, durability: string): Promise<ServerProc> {
  // The compiled server, as `npx eventful serve` runs it (npm run bench:server builds first).
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/eventful.js'), 'serve', '--data-dir', dir, '--http-port', '0', '--tcp-port', '0', '--durability', durability, '--log-level', 'error'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  while (!/TLS\s+(on|off)/.test(out)) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const grab = (label: string): string => new RegExp(`${label}\\s+(\\S+)`).exec(out)![1]!;
  return {
    child,
    tcpUrl: grab('binary protocol'),
    wsUrl: grab('WebSocket'),
    httpUrl: grab('HTTP API'),
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Runs `appenders` loops for RUN_MS, each awaiting one append at a time; returns events/s. */
async function appendLoad(append: (i: number) => Promise<unknown>, appenders: number): Promise<number> {
  let count = 0;
  let stop = false;
  const t0 = performance.now();
  const timer = setTimeout(() => (stop = true), RUN_MS);
  await Promise.all(
    Array.from({ length: appenders }, async (_, k) => {
      let i = k;
      while (!stop) {
        await append(i);
        i += appenders;
        count++;
      }
    }),
  );
  clearTimeout(timer);
  return count / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function embeddedRun(): Promise<number> {
  const dir = fs.mkdtempSync(path.join(tmp, 'emb-'));
  const store = await openStore({ dir });
  try {
    return await appendLoad((i) => store.append(`s-${i % 1000}`, [{ type: 'T', data: payload }]), 256);
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function clientRun(url: string, connections: number, inFlight: number): Promise<number> {
  const clients: RemoteEventStore[] = [];
  for (let i = 0; i < connections; i++) clients.push(await connect(url));
  try {
    return await appendLoad((i) => clients[i % connections]!.append(`s-${i % 1000}`, [{ type: 'T', data: payload }]), inFlight);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

async function httpRun(httpUrl: string, concurrency: number): Promise<number> {
  // node:http with a keep-alive agent: fetch (undici) tops out near 4k requests/s here and would
  // measure the client rather than the server.
  const u = new URL(httpUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const body = JSON.stringify({ events: [{ type: 'T', data: payload }] });
  const post = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        { agent, host: u.hostname, port: u.port, path: `/streams/h-${i % 1000}`, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          if (res.statusCode !== 201) reject(new Error(`HTTP ${res.statusCode}`));
          res.resume();
          res.on('end', () => resolve());
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  try {
    return await appendLoad(post, concurrency);
  } finally {
    agent.destroy();
  }
}

async function latencyRun(url: string): Promise<{ p50: number; p99: number; p999: number; samples: number }> {
  const producer = await connect(url);
  const consumer = await connect(url);
  const sent = new Map<number, number>();
  const latencies: number[] = [];
  const sub = consumer.subscribeToAll({ filter: { streamPrefix: 'lat-' } });
  // The first 2 s warm up (JIT, buffers) and are not recorded.
  const warmup = 5000 * 2;
  const total = 5000 * LATENCY_S + warmup;
  const done = (async () => {
    for await (const e of sub) {
      const k = (e.data as { n: number }).n;
      const at = sent.get(k);
      if (at !== undefined && k >= warmup) latencies.push(performance.now() - at);
      sent.delete(k); // keep the bench's own heap flat: its GC pauses would count as latency
      if (k >= total - 1) break;
    }
  })();
  await new Promise((r) => setTimeout(r, 200));
  // 5 events per millisecond tick, each its own append, paced against the wall clock.
  const t0 = performance.now();
  let n = 0;
  while (n < total) {
    const due = Math.floor(((performance.now() - t0) / 1000) * 5000);
    while (n < Math.min(due, total)) {
      const k = n++;
      sent.set(k, performance.now());
      void producer.append(`lat-${k % 100}`, [{ type: 'T', data: { n: k, pad: 'x'.repeat(230) } }]);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
  await sub.close();
  await producer.close();
  await consumer.close();
  const sorted = latencies.sort((a, b) => a - b);
  return { p50: pct(sorted, 50), p99: pct(sorted, 99), p999: pct(sorted, 99.9), samples: sorted.length };
}

/**
 * The disk's own latency at the same cadence: every millisecond, write 5 events' bytes to a file
 * and fdatasync it. Appends are acknowledged only after such a sync, so this is the floor under
 * the append-to-subscriber latency.
 */
async function rawSyncLatency(): Promise<{ p50: number; p99: number; p999: number }> {
  const file = path.join(tmp, 'raw-latency.bin');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(5 * 357, 7);
  const lat: number[] = [];
  const end = performance.now() + LATENCY_S * 1000;
  let offset = 0;
  while (performance.now() < end) {
    const t = performance.now();
    await new Promise<void>((resolve, reject) => fs.write(fd, chunk, 0, chunk.length, offset, (err) => (err ? reject(err) : resolve())));
    await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    offset += chunk.length;
    lat.push(performance.now() - t);
    const pause = 1 - (performance.now() - t);
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
  }
  fs.closeSync(fd);
  fs.rmSync(file);
  const sorted = lat.sort((a, b) => a - b);
  return { p50: pct(sorted, 50), p99: pct(sorted, 99), p999: pct(sorted, 99.9) };
}

async function replayRun(url: string): Promise<{ events: number; eventsPerS: number }> {
  const client = await connect(url);
  try {
    const t0 = performance.now();
    let events = 0;
    for await (const page of client.readAll().pages()) events += page.length;
    return { events, eventsPerS: events / ((performance.now() - t0) / 1000) };
  } finally {
    await client.close();
  }
}

async function fill(url: string, events: number): Promise<void> {
  const client = await connect(url);
  try {
    const batch = Array.from({ length: 100 }, () => ({ type: 'T', data: payload }));
    let done = 0;
    await Promise.all(
      Array.from({ length: 16 }, async (_, k) => {
        while (done < events) {
          done += 100;
          await client.append(`r-${k}-${done % 997}`, batch);
        }
      }),
    );
  } finally {
    await client.close();
  }
}

async function main(): Promise<void> {
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };
  console.error(`bench:server on ${machine.cpu}, ${machine.cores} cores, ${quick ? 'quick' : 'full'} run`);
  const server = await startServer(path.join(tmp, 'durable'), 'always');
  const runs: Record<string, number[]> = { embedded: [], tcp1: [], tcp4: [], tcp16: [], ws4: [], http64: [] };
  try {
    for (let r = 0; r < REPEATS; r++) {
      runs.embedded!.push(await embeddedRun());
      runs.tcp1!.push(await clientRun(server.tcpUrl, 1, 256));
      runs.tcp4!.push(await clientRun(server.tcpUrl, 4, 512));
      runs.tcp16!.push(await clientRun(server.tcpUrl, 16, 1024));
      runs.ws4!.push(await clientRun(server.wsUrl, 4, 512));
      runs.http64!.push(await httpRun(server.httpUrl, 64));
      console.error(`round ${r + 1}/${REPEATS}: ${Object.entries(runs).map(([k, v]) => `${k} ${Math.round(v[v.length - 1]!)}`).join(', ')}`);
    }
    const latency = await latencyRun(server.tcpUrl);
    await server.stop();
    const rawLatency = await rawSyncLatency();

    const replayServer = await startServer(path.join(tmp, 'replay'), 'none');
    await fill(replayServer.tcpUrl, REPLAY_EVENTS);
    await replayRun(replayServer.tcpUrl); // warm the page cache
    const replays = [];
    for (let r = 0; r < REPEATS; r++) replays.push(await replayRun(replayServer.tcpUrl));
    await replayServer.stop();

    const m = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, { median: Math.round(median(v)), min: Math.round(Math.min(...v)), max: Math.round(Math.max(...v)) }]));
    const best = Math.max(m.tcp1!.median, m.tcp4!.median, m.tcp16!.median);
    const replayMedian = Math.round(median(replays.map((x) => x.eventsPerS)));
    const result = {
      machine,
      quick,
      eventBytes: 256,
      durability: 'always (fdatasync before every ack)',
      appendEventsPerS: m,
      tcpToEmbeddedRatio: +(best / m.embedded!.median).toFixed(3),
      latencyMsAt5000PerS: { p50: +latency.p50.toFixed(3), p99: +latency.p99.toFixed(3), p999: +latency.p999.toFixed(3), samples: latency.samples },
      rawWriteSyncLatencyMs: { p50: +rawLatency.p50.toFixed(3), p99: +rawLatency.p99.toFixed(3), p999: +rawLatency.p999.toFixed(3) },
      replay: { events: replays[0]!.events, eventsPerS: replayMedian },
      targets: {
        tcpAtLeastHalfOfEmbedded: best >= 0.5 * m.embedded!.median,
        latencyP99Under2Ms: latency.p99 < 2,
        replayAtLeast500k: replayMedian >= 500_000,
      },
    };
    const row = (name: string, v: { median: number; min: number; max: number }, note = ''): string =>
      `${name.padEnd(34)} ${String(v.median).padStart(9)} ${`${v.min}-${v.max}`.padStart(15)}  ${note}`;
    console.log(`${'append, 256-byte events, fsync on'.padEnd(34)} ${'events/s'.padStart(9)} ${'min-max'.padStart(15)}`);
    console.log(row('embedded, 256 appenders', m.embedded!));
    console.log(row('TCP, 1 connection, 256 in flight', m.tcp1!, `${((m.tcp1!.median / m.embedded!.median) * 100).toFixed(0)}% of embedded`));
    console.log(row('TCP, 4 connections, 512 in flight', m.tcp4!, `${((m.tcp4!.median / m.embedded!.median) * 100).toFixed(0)}% of embedded`));
    console.log(row('TCP, 16 connections, 1024 in flight', m.tcp16!, `${((m.tcp16!.median / m.embedded!.median) * 100).toFixed(0)}% of embedded`));
    console.log(row('WebSocket, 4 connections, 512', m.ws4!, `${((m.ws4!.median / m.embedded!.median) * 100).toFixed(0)}% of embedded`));
    console.log(row('HTTP, 64 concurrent requests', m.http64!));
    console.log(`append-to-subscriber latency at 5,000/s: p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms, p99.9 ${latency.p999.toFixed(2)} ms (${latency.samples} samples)`);
    console.log(`the disk alone (write + fdatasync every ms): p50 ${rawLatency.p50.toFixed(2)} ms, p99 ${rawLatency.p99.toFixed(2)} ms, p99.9 ${rawLatency.p999.toFixed(2)} ms`);
    console.log(`replay of ${replays[0]!.events} events through the client: ${replayMedian} events/s (median of ${REPEATS})`);
    console.log(`targets: TCP >= 50% of embedded ${result.targets.tcpAtLeastHalfOfEmbedded ? 'PASS' : 'MISS'}; p99 < 2 ms ${result.targets.latencyP99Under2Ms ? 'PASS' : 'MISS'}; replay >= 500k/s ${result.targets.replayAtLeast500k ? 'PASS' : 'MISS'}`);
    fs.mkdirSync(path.join(ROOT, 'bench-results'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'bench-results', `server-${Date.now()}.json`), JSON.stringify(result, null, 2));
    console.log(JSON.stringify(result));
  } finally {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
