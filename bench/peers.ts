/**
 * npm run bench:peers [-- --quick] [--only=<id,...>] [--skip=<id,...>] [--workloads=<w,...>]
 *                        [--charts-dir=<dir>] [--profile-eventful=<dir>]
 *
 * Eventful side by side with the systems users would pick instead, on this machine, 127.0.0.1
 * only: RabbitMQ (classic, quorum, stream), NATS JetStream, Redis Streams, PostgreSQL (an event
 * table and a SKIP LOCKED queue), each through its standard Node.js client at its standard
 * port, and Eventful's server (`eventful serve`, its own process) with fsync before every ack
 * and, labelled, without. 256-byte payloads. Workloads: durable publish (1 and 2 client
 * processes), consume with acks, latency at 5,000 messages/s, replay of 1,000,000 events,
 * optimistic-concurrency appends to 10,000 streams; plus the fsync check (strace on each
 * server), the machine's limits and CPU per 100k messages. Every figure is the median of 3
 * runs interleaved across systems (--quick: 1 run, smaller counts, a few minutes).
 *
 * Prints the configuration, progress on stderr, a table per workload with Eventful's ratio to
 * each peer, the goal's verdict, and a final JSON line; saves the JSON under bench-results/
 * and bar charts as SVG in docs/bench/ (--quick: bench-results/peers-charts/). How it works and
 * how to add a peer: bench/peers/types.ts and registry.ts; results: docs/benchmarks.md.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clientMain } from './peers/client-process.js';
import { errText } from './peers/common.js';
import { formatProfile, summarizeProfile } from './peers/cpu-profile.js';
import { Harness, configFor, writeJson } from './peers/harness.js';
import type { Outcome } from './peers/harness.js';
import type { Limits } from './peers/limits.js';
import { killOwnedSync } from './peers/procs.js';
import { createSystems } from './peers/registry.js';
import { compare, fsyncReport, goal, headerReport, limitsReport, summarize, textReport, writeCharts } from './peers/report.js';
import { WORKLOADS } from './peers/types.js';
import type { SystemOptions, Workload } from './peers/types.js';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..');
const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const list = (name: string): string[] | undefined => flag(name)?.split(',').map((x) => x.trim()).filter(Boolean);
const quick = argv.includes('--quick');

// Options shared with the client processes (they rebuild the same systems from them).
const runIdArg = flag('run-id');
const tmpArg = flag('tmp-dir');
const profileDir = flag('profile-eventful');

function options(runId: string, tmpDir: string): SystemOptions {
  return {
    runId,
    quick,
    tmpDir,
    rootDir: ROOT,
    serverNodeArgs: profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profileDir)}`] : [],
  };
}

function machineInfo(dir: string): Record<string, unknown> {
  let disk = 'unknown filesystem';
  try {
    const line = execFileSync('df', ['-T', dir], { encoding: 'utf8' }).trim().split('\n')[1]?.split(/\s+/);
    if (line !== undefined) disk = `${line[1]} on ${line[0]}`;
  } catch {
    // df missing: say so in the output
  }
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown CPU',
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `Linux ${os.release()}`,
    disk,
    node: process.version,
  };
}

async function main(): Promise<void> {
  const runId = `r${Date.now().toString(36)}`;
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-bench-peers-'));
  const workloads = new Set<Workload>((list('workloads') ?? [...WORKLOADS]) as Workload[]);
  for (const w of workloads) if (!(WORKLOADS as readonly string[]).includes(w)) throw new Error(`unknown workload '${w}' (known: ${WORKLOADS.join(', ')})`);
  const cfg = configFor(quick, workloads);
  const only = list('only');
  const skip = list('skip') ?? [];
  const all = createSystems(options(runId, tmpDir));
  for (const id of [...(only ?? []), ...skip]) if (!all.some((s) => s.info.id === id)) throw new Error(`unknown system '${id}' (known: ${all.map((s) => s.info.id).join(', ')})`);
  const systems = all.filter((s) => (only === undefined || only.includes(s.info.id) || s.info.isEventful === true) && !skip.includes(s.info.id));
  const clientArgs = [`--run-id=${runId}`, `--tmp-dir=${tmpDir}`, ...(quick ? ['--quick'] : [])];
  const harness = new Harness(cfg, systems, tmpDir, SELF, clientArgs);
  const machine = machineInfo(tmpDir);
  const watchdogMs = quick ? 15 * 60_000 : 55 * 60_000;
  const started = Date.now();
  console.error(`bench:peers ${quick ? '(quick)' : '(full)'} on ${String(machine.cpu)}, ${String(machine.cores)} cores; run ${runId}; data in ${tmpDir}`);

  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await harness.stopClients().catch(() => undefined);
      await harness.stopSystems(); // undoes each system's set-up (Redis configuration, databases)
      killOwnedSync();
      fs.rmSync(tmpDir, { recursive: true, force: true });
    })());
  const bail = (why: string): void => {
    console.error(`bench:peers: ${why}; restoring the systems' settings and cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (++signals > 1) {
      killOwnedSync();
      process.exit(130);
    }
    bail(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', killOwnedSync);
  const watchdog = setTimeout(() => bail(`still running after ${watchdogMs / 60_000} min`), watchdogMs);
  watchdog.unref();

  let limits: Limits | undefined;
  try {
    await harness.startSystems();
    if (!harness.live.some((s) => s.system.info.id === 'eventful')) throw new Error('Eventful itself did not start: nothing to compare with');
    for (const l of headerReport({ states: harness.states, limits: undefined, runs: [], problems: [] }, machine)) console.log(l);
    await harness.startClients();
    limits = await harness.measure();
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }

  const outcome: Outcome = { states: harness.states, limits, runs: harness.runs, problems: harness.problems };
  const summary = summarize(outcome);
  const comparisons = compare(outcome, summary);
  const verdict = goal(outcome, comparisons);
  const date = new Date().toISOString().slice(0, 10);
  const chartsDir = path.resolve(ROOT, flag('charts-dir') ?? (quick ? 'bench-results/peers-charts' : 'docs/bench'));
  const charts = writeCharts(chartsDir, outcome, summary, limits, `${date}, ${String(machine.cores)} cores, ${quick ? 'quick run' : `${cfg.repeats} runs each`}`);

  const lines: string[] = [];
  lines.push('');
  lines.push(...fsyncReport(outcome));
  if (limits !== undefined) lines.push('', ...limitsReport(limits));
  lines.push(...textReport(outcome, summary, comparisons, verdict, limits));
  if (profileDir !== undefined) {
    for (const f of fs.readdirSync(profileDir).filter((x) => x.endsWith('.cpuprofile'))) lines.push('', ...formatProfile(summarizeProfile(path.join(profileDir, f))));
  }
  if (outcome.problems.length > 0) lines.push('', 'problems:', ...outcome.problems.map((p) => `  ${p}`));
  lines.push('', `charts: ${charts.map((c) => path.relative(ROOT, c)).join(', ')}`);
  lines.push(`took ${((Date.now() - started) / 60_000).toFixed(1)} min`);
  for (const l of lines) console.log(l);

  const result = {
    date,
    quick,
    machine,
    config: { ...cfg, workloads: [...cfg.workloads], payloadBytes: 256 },
    limits,
    systems: harness.states.map((st) => ({
      id: st.system.info.id,
      name: st.system.info.name,
      client: st.system.info.client,
      server: st.start?.serverVersion,
      skipped: st.skipped,
      configuration: st.system.info.configuration,
      observed: st.start?.observed,
      durability: st.system.info.durability,
      configuredToSyncBeforeAck: st.system.info.syncsBeforeAck,
      fsyncCheck: st.fsync,
      fsyncCheckError: st.fsyncError,
      comparedAsDurable: st.durable,
      method: st.system.info.method,
      replayFill: st.replayFill,
    })),
    summary,
    comparisons,
    goal: verdict,
    runs: harness.runs,
    problems: outcome.problems,
    charts: charts.map((c) => path.relative(ROOT, c)),
  };
  const file = path.join(ROOT, 'bench-results', `peers-${Date.now()}.json`);
  writeJson(file, result);
  console.error(`saved ${path.relative(ROOT, file)}`);
  console.log(JSON.stringify(result));
}

const clientIndex = flag('client');
if (clientIndex !== undefined) {
  await clientMain(options(runIdArg ?? 'r', tmpArg ?? os.tmpdir()), Number(clientIndex));
} else {
  try {
    await main();
  } catch (err) {
    console.error(`bench:peers failed: ${err instanceof Error ? (err.stack ?? err.message) : errText(err)}`);
    killOwnedSync();
    process.exitCode = 1;
  }
}
