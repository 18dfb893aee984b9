/**
 * The orchestrator: starts (or finds) every system, checks whether each syncs before it acks,
 * measures the machine's limits, runs the workloads interleaved across systems, and hands the
 * runs to the report. Client work happens in two client processes (client-process.ts).
 *
 * Order of a run:
 *  1. start every system (a peer that cannot be reached is skipped, with the reason);
 *  2. the machine's limits (disk, loopback);
 *  3. the fsync check: strace on each server while it takes sequential acknowledged publishes;
 *  4. one unmeasured publish warm-up per system;
 *  5. rounds: in each, every system (in a rotated order) runs publish with 1 and with 2 client
 *     processes, consume, latency and optimistic concurrency;
 *  6. replay: each system is filled once, then read in rounds;
 *  7. stop every system (undoing its set-up), also on failure or interrupt.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ClientProcess } from './client-process.js';
import { errText, percentile, sleep } from './common.js';
import { measureLimits } from './limits.js';
import type { Limits } from './limits.js';
import { cpuBetween, cpuOf, machineBusyS, straceAvailable, traceSyncs } from './procs.js';
import type { SyncCounts } from './procs.js';
import { supports } from './registry.js';
import type { ConsumeResult, LatencyResult, OccResult, PeerSystem, PublishResult, ReplayResult, StartInfo, Workload } from './types.js';
import { UnreachableError } from './types.js';

export interface Config {
  quick: boolean;
  repeats: number;
  publishWindowMs: number;
  warmupMs: number;
  consumeMessages: number;
  latencyRatePerS: number;
  latencySeconds: number;
  latencyWarmupS: number;
  replayEvents: number;
  occStreams: number;
  occConcurrency: number;
  occWindowMs: number;
  fsyncCheckPublishes: number;
  fsyncCheckMaxMs: number;
  limitsRuns: number;
  limitsMs: number;
  workloads: ReadonlySet<Workload>;
}

export function configFor(quick: boolean, workloads: ReadonlySet<Workload>): Config {
  return {
    quick,
    repeats: quick ? 1 : 3,
    publishWindowMs: quick ? 2000 : 5000,
    warmupMs: quick ? 1000 : 2000,
    consumeMessages: quick ? 20_000 : 100_000,
    latencyRatePerS: 5000,
    latencySeconds: quick ? 3 : 10,
    latencyWarmupS: quick ? 1 : 2,
    replayEvents: quick ? 100_000 : 1_000_000,
    occStreams: 10_000,
    occConcurrency: 64,
    occWindowMs: quick ? 2000 : 5000,
    fsyncCheckPublishes: quick ? 1000 : 5000,
    fsyncCheckMaxMs: quick ? 15_000 : 30_000,
    limitsRuns: quick ? 1 : 3,
    limitsMs: quick ? 1000 : 2000,
    workloads,
  };
}

/** A measured figure's key: the workload, and for publish the number of client processes. */
export type Measure = 'publish-1p' | 'publish-2p' | 'consume' | 'latency' | 'replay' | 'occ';

export interface Run {
  measure: Measure;
  system: string;
  round: number;
  /** Throughput per second, or for latency the p99 delivery latency in ms. */
  value: number;
  messages: number;
  seconds: number;
  clientCpuS: number;
  serverCpuS: number;
  /** CPU seconds the whole machine was busy in the measured span (all processes, ours included). */
  machineBusyS: number;
  detail: Record<string, number>;
  error?: string;
}

export interface FsyncCheck {
  acked: number;
  seconds: number;
  counts: SyncCounts;
  syncs: number;
  syncsPerAck: number;
  syncsBeforeAck: boolean;
  verdict: string;
}

export interface SystemState {
  system: PeerSystem;
  start?: StartInfo;
  skipped?: string;
  fsync?: FsyncCheck;
  fsyncError?: string;
  /** Durability class the comparison uses: the fsync check's if there is one, else the declared one. */
  durable: boolean;
  replayFill?: { events: number; seconds: number };
}

export interface Outcome {
  states: SystemState[];
  limits: Limits | undefined;
  runs: Run[];
  problems: string[];
}

const log = (m: string): void => void process.stderr.write(`${m}\n`);

function rotate<T>(xs: readonly T[], k: number): T[] {
  if (xs.length === 0) return [];
  const s = k % xs.length;
  return [...xs.slice(s), ...xs.slice(0, s)];
}

const at = (t: number): Promise<void> => sleep(Math.max(0, t - Date.now()));

const QUIET_CORES = 0.3; // CPU in use (of all cores) below which the machine counts as quiet
const QUIET_WAIT_MS = 5000; // longest wait for quiet before a measurement

export class Harness {
  readonly cfg: Config;
  readonly states: SystemState[];
  readonly runs: Run[] = [];
  readonly problems: string[] = [];
  readonly #tmpDir: string;
  readonly #clientEntry: string;
  readonly #clientArgs: string[];
  #clients: ClientProcess[] = [];
  #targetSeq = 0;

  constructor(cfg: Config, systems: PeerSystem[], tmpDir: string, clientEntry: string, clientArgs: string[]) {
    this.cfg = cfg;
    this.states = systems.map((system) => ({ system, durable: system.info.syncsBeforeAck }));
    this.#tmpDir = tmpDir;
    this.#clientEntry = clientEntry;
    this.#clientArgs = clientArgs;
  }

  get live(): SystemState[] {
    return this.states.filter((s) => s.start !== undefined);
  }

  async startSystems(): Promise<void> {
    for (const st of this.states) {
      const { info } = st.system;
      try {
        st.start = await st.system.start();
        log(`started ${info.name}: ${st.start.serverVersion} at ${st.start.url}`);
      } catch (err) {
        st.skipped = err instanceof UnreachableError ? err.message : `start failed: ${errText(err)}`;
        log(`SKIPPED ${info.name}: ${st.skipped}`);
        await st.system.stop().catch(() => undefined);
      }
    }
  }

  async stopSystems(): Promise<void> {
    for (const st of [...this.states].reverse()) {
      if (st.start === undefined) continue;
      try {
        await Promise.race([st.system.stop(), sleep(180_000)]);
      } catch (err) {
        const m = `stopping ${st.system.info.name} failed: ${errText(err)}`;
        this.problems.push(m);
        log(m);
      }
    }
  }

  async startClients(): Promise<void> {
    this.#clients = [0, 1].map((i) => new ClientProcess(this.#clientEntry, this.#clientArgs, i));
    await Promise.all(this.#clients.map((c) => c.ready()));
  }

  async stopClients(): Promise<void> {
    await Promise.all(this.#clients.map((c) => c.stop()));
  }

  /** A client process that timed out may still be busy: it is replaced by a fresh one. */
  async #renewClient(i: number): Promise<void> {
    await this.#clients[i]!.stop();
    this.#clients[i] = new ClientProcess(this.#clientEntry, this.#clientArgs, i);
    await this.#clients[i]!.ready();
  }

  #target(kind: string): string {
    return `${kind}${++this.#targetSeq}`;
  }

  async limits(): Promise<Limits> {
    log(`measuring the machine's limits (${this.cfg.limitsRuns} x ${this.cfg.limitsMs} ms each)`);
    return measureLimits(this.#tmpDir, this.cfg.limitsRuns, this.cfg.limitsMs);
  }

  // ---------------------------------------------------------------------------------------------
  // The fsync check

  async fsyncChecks(): Promise<void> {
    if (!straceAvailable()) {
      const m = 'strace is not installed: the fsync check is skipped (apt-get install -y strace)';
      this.problems.push(m);
      log(m);
      return;
    }
    for (const st of this.live) {
      const sys = st.system;
      if (typeof sys.publishSequential !== 'function') continue;
      const target = this.#target('fsync');
      try {
        await sys.createTarget(target, 'fsync-check');
        const pids = sys.serverPids();
        if (pids.length === 0) throw new Error('no server process found with pgrep');
        const tracer = await traceSyncs(pids, path.join(this.#tmpDir, `strace-${sys.info.id}.txt`));
        const t0 = performance.now();
        let r: PublishResult | undefined;
        let failure: unknown;
        try {
          ({ result: r } = await this.#clients[0]!.call<PublishResult>(
            sys.info.id,
            'publishSequential',
            { url: st.start!.url, target, count: this.cfg.fsyncCheckPublishes, deadline: Date.now() + this.cfg.fsyncCheckMaxMs },
            this.cfg.fsyncCheckMaxMs + 60_000,
          ));
        } catch (err) {
          failure = err;
        }
        const counts = await tracer.stop(); // detach whatever happened
        if (r === undefined) throw failure;
        const seconds = (performance.now() - t0) / 1000;
        const syncs = counts.fsync + counts.fdatasync;
        const perAck = r.acked > 0 ? syncs / r.acked : 0;
        // Publishing one message at a time, each awaited: a server that syncs before every ack
        // makes at least one sync per publish; fewer means some acks went out before a sync.
        const before = r.acked > 0 && perAck >= 0.9;
        const others = Object.entries(counts.other).map(([k, v]) => `${v.toLocaleString('en-US')} ${k}`);
        const verdict =
          `${sys.info.name}: ${syncs.toLocaleString('en-US')} fsync/fdatasync calls (${counts.fsync} fsync, ${counts.fdatasync} fdatasync${others.length > 0 ? `; also ${others.join(', ')}` : ''}) ` +
          `for ${r.acked.toLocaleString('en-US')} acked publishes, one at a time (${perAck.toFixed(2)} per publish, ${seconds.toFixed(1)} s under strace): ` +
          (before ? 'syncs before it acks' : syncs === 0 ? 'does not sync before it acks (no sync at all in the window)' : 'does not sync before every ack (syncs in the background)');
        st.fsync = { acked: r.acked, seconds, counts, syncs, syncsPerAck: perAck, syncsBeforeAck: before, verdict };
        st.durable = before;
        log(`fsync check: ${verdict}`);
        if (before !== sys.info.syncsBeforeAck) {
          const m = `${sys.info.name}: configured to ${sys.info.syncsBeforeAck ? '' : 'not '}sync before acks, but the fsync check found it ${before ? 'does' : 'does not'}; compared as measured`;
          this.problems.push(m);
          log(m);
        }
      } catch (err) {
        st.fsyncError = errText(err);
        log(`fsync check of ${sys.info.name} failed: ${st.fsyncError}`);
      } finally {
        await sys.deleteTarget(target).catch(() => undefined);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Workloads

  async #record(run: Run): Promise<void> {
    this.runs.push(run);
    const v = run.measure === 'latency' ? `p99 ${run.value.toFixed(2)} ms (p50 ${run.detail.p50?.toFixed(2)} ms)` : `${Math.round(run.value).toLocaleString('en-US')}/s`;
    log(`  ${run.measure.padEnd(10)} ${run.system.padEnd(18)} round ${run.round}: ${run.error !== undefined ? `FAILED: ${run.error.split('\n')[0]}` : v}`);
  }

  /**
   * The machine is shared: before a measurement, wait (at most QUIET_WAIT_MS) until other
   * processes use less than QUIET_CORES of CPU. What others still used is recorded per run.
   */
  async #quiet(): Promise<void> {
    const until = Date.now() + QUIET_WAIT_MS;
    for (;;) {
      const m = machineBusyS();
      await sleep(500);
      const cores = (machineBusyS() - m) / 0.5;
      if (!(cores > QUIET_CORES) || Date.now() >= until) return;
    }
  }

  async #safely(measure: Measure, st: SystemState, round: number, f: () => Promise<Run>): Promise<void> {
    await this.#quiet();
    try {
      await this.#record(await f());
    } catch (err) {
      const error = errText(err);
      await this.#record({ measure, system: st.system.info.id, round, value: NaN, messages: 0, seconds: 0, clientCpuS: 0, serverCpuS: 0, machineBusyS: NaN, detail: {}, error });
      if (/no answer within/.test(error)) {
        await this.#renewClient(0).catch(() => undefined);
        await this.#renewClient(1).catch(() => undefined);
      }
    }
  }

  /** Server and whole-machine CPU seconds between two times (ms since the epoch), sampled by timers here. */
  #cpuWindow(sys: PeerSystem, t0: number, t1: number): Promise<{ server: number; machine: number }> {
    return (async () => {
      await at(t0);
      const a = cpuOf(sys.serverPids());
      const m = machineBusyS();
      await at(t1);
      return { server: cpuBetween(a, cpuOf(sys.serverPids())), machine: machineBusyS() - m };
    })();
  }

  /** Server and whole-machine CPU between the client's marks. */
  #cpuMarks(sys: PeerSystem): { onMark: (m: 'start' | 'end') => void; server: () => number; machine: () => number } {
    let a: Map<number, number> | undefined;
    let m0 = NaN;
    let s = 0;
    let m = NaN;
    return {
      onMark: (what) => {
        if (what === 'start') {
          a = cpuOf(sys.serverPids());
          m0 = machineBusyS();
        } else if (a !== undefined) {
          s = cpuBetween(a, cpuOf(sys.serverPids()));
          m = machineBusyS() - m0;
        }
      },
      server: () => s,
      machine: () => m,
    };
  }

  async publishRun(st: SystemState, processes: 1 | 2, round: number, windowMs: number, record = true): Promise<void> {
    const sys = st.system;
    const measure: Measure = processes === 1 ? 'publish-1p' : 'publish-2p';
    const work = async (): Promise<Run> => {
      const target = this.#target('pub');
      await sys.createTarget(target, 'publish');
      try {
        const t0 = Date.now() + 1500;
        const t1 = t0 + windowMs;
        const cpu = this.#cpuWindow(sys, t0, t1);
        const results = await Promise.all(
          this.#clients.slice(0, processes).map((c) => c.call<PublishResult>(sys.info.id, 'publish', { url: st.start!.url, target, t0, t1, maxMessages: Infinity }, windowMs + 120_000)),
        );
        const messages = results.reduce((n, r) => n + r.result.ackedInWindow, 0);
        return {
          measure,
          system: sys.info.id,
          round,
          value: messages / (windowMs / 1000),
          messages,
          seconds: windowMs / 1000,
          clientCpuS: results.reduce((n, r) => n + r.clientCpuS, 0),
          ...(await cpu.then((c) => ({ serverCpuS: c.server, machineBusyS: c.machine }))),
          detail: { ackedAfterWindow: results.reduce((n, r) => n + r.result.acked - r.result.ackedInWindow, 0) },
        };
      } finally {
        await sys.deleteTarget(target).catch((e: unknown) => log(`  (deleting ${target} of ${sys.info.id}: ${errText(e)})`));
      }
    };
    if (!record) {
      try {
        await work();
      } catch (err) {
        log(`  warm-up of ${sys.info.id} failed: ${errText(err)}`);
      }
      return;
    }
    await this.#safely(measure, st, round, work);
  }

  async consumeRun(st: SystemState, round: number): Promise<void> {
    const sys = st.system;
    await this.#safely('consume', st, round, async () => {
      const target = this.#target('con');
      await sys.createTarget(target, 'consume');
      try {
        const n = this.cfg.consumeMessages;
        const fillT0 = Date.now();
        const { result: filled } = await this.#clients[1]!.call<PublishResult>(sys.info.id, 'publish', { url: st.start!.url, target, t0: 0, t1: Infinity, maxMessages: n }, 300_000);
        if (filled.acked !== n) throw new Error(`filled ${filled.acked} of ${n} messages`);
        const fillS = (Date.now() - fillT0) / 1000;
        const cpu = this.#cpuMarks(sys);
        const { result, clientCpuS } = await this.#clients[0]!.call<ConsumeResult>(sys.info.id, 'consume', { url: st.start!.url, target, expected: n, deadline: Date.now() + 240_000 }, 300_000, cpu.onMark);
        if (result.consumed < n) throw new Error(`consumed ${result.consumed} of ${n}`);
        return {
          measure: 'consume',
          system: sys.info.id,
          round,
          value: result.consumed / (result.elapsedMs / 1000),
          messages: result.consumed,
          seconds: result.elapsedMs / 1000,
          clientCpuS,
          serverCpuS: cpu.server(),
          machineBusyS: cpu.machine(),
          detail: { fillPerS: n / fillS },
        };
      } finally {
        await sys.deleteTarget(target).catch((e: unknown) => log(`  (deleting ${target} of ${sys.info.id}: ${errText(e)})`));
      }
    });
  }

  async latencyRun(st: SystemState, round: number): Promise<void> {
    const sys = st.system;
    await this.#safely('latency', st, round, async () => {
      const target = this.#target('lat');
      await sys.createTarget(target, 'latency');
      try {
        const c = this.cfg;
        const t0 = Date.now() + 1000;
        const recordFrom = t0 + c.latencyWarmupS * 1000;
        const cpu = this.#cpuWindow(sys, recordFrom, recordFrom + c.latencySeconds * 1000);
        const { result: r } = await this.#clients[0]!.call<LatencyResult>(
          sys.info.id,
          'latency',
          { url: st.start!.url, target, ratePerS: c.latencyRatePerS, seconds: c.latencySeconds, warmupS: c.latencyWarmupS, t0 },
          (c.latencySeconds + c.latencyWarmupS) * 1000 + 90_000,
        );
        const { server: serverCpuS, machine: machineBusy } = await cpu;
        const d = r.deliveryMs;
        if (d.length === 0) throw new Error(`no message delivered (${r.received} of ${r.sent})`);
        if (r.received < r.sent) this.problems.push(`${sys.info.id} latency round ${round}: ${r.sent - r.received} of ${r.sent} messages not delivered within 15 s of the last send`);
        // Client CPU of this run is not apart from the pacing loop's: only the server's is kept.
        return {
          measure: 'latency',
          system: sys.info.id,
          round,
          value: percentile(d, 99),
          messages: d.length,
          seconds: c.latencySeconds,
          clientCpuS: NaN,
          serverCpuS,
          machineBusyS: machineBusy,
          detail: {
            p50: percentile(d, 50),
            p90: percentile(d, 90),
            p99: percentile(d, 99),
            p999: percentile(d, 99.9),
            max: d[d.length - 1]!,
            ackP50: percentile(r.ackMs, 50),
            ackP99: percentile(r.ackMs, 99),
            sent: r.sent,
            received: r.received,
            achievedRatePerS: r.achievedRatePerS,
            retries: r.retries ?? 0,
          },
        };
      } finally {
        await sys.deleteTarget(target).catch((e: unknown) => log(`  (deleting ${target} of ${sys.info.id}: ${errText(e)})`));
      }
    });
  }

  async occRun(st: SystemState, round: number): Promise<void> {
    const sys = st.system;
    await this.#safely('occ', st, round, async () => {
      const target = this.#target('occ');
      await sys.createTarget(target, 'occ');
      try {
        const c = this.cfg;
        const t0 = Date.now() + 1500;
        const t1 = t0 + c.occWindowMs;
        const cpu = this.#cpuWindow(sys, t0, t1);
        const { result, clientCpuS } = await this.#clients[0]!.call<OccResult>(
          sys.info.id,
          'occ',
          { url: st.start!.url, target, streams: c.occStreams, concurrency: c.occConcurrency, t0, t1 },
          c.occWindowMs + 90_000,
        );
        return {
          measure: 'occ',
          system: sys.info.id,
          round,
          value: result.appended / (c.occWindowMs / 1000),
          messages: result.appended,
          seconds: c.occWindowMs / 1000,
          clientCpuS,
          ...(await cpu.then((c) => ({ serverCpuS: c.server, machineBusyS: c.machine }))),
          detail: { conflicts: result.conflicts },
        };
      } finally {
        await sys.deleteTarget(target).catch((e: unknown) => log(`  (deleting ${target} of ${sys.info.id}: ${errText(e)})`));
      }
    });
  }

  async replayPhase(): Promise<void> {
    const systems = this.live.filter((s) => supports(s.system, 'replay'));
    const targets = new Map<SystemState, string>();
    try {
      for (const st of systems) {
        const target = this.#target('rep');
        try {
          await st.system.createTarget(target, 'replay');
          targets.set(st, target);
          const t0 = Date.now();
          log(`filling ${st.system.info.id} with ${this.cfg.replayEvents.toLocaleString('en-US')} events for replay`);
          const { result: n } = await this.#clients[1]!.call<number>(st.system.info.id, 'fillForReplay', { url: st.start!.url, target, events: this.cfg.replayEvents }, 900_000);
          if (n !== this.cfg.replayEvents) throw new Error(`stored ${n} of ${this.cfg.replayEvents} events`);
          st.replayFill = { events: n, seconds: (Date.now() - t0) / 1000 };
        } catch (err) {
          await this.#record({ measure: 'replay', system: st.system.info.id, round: 0, value: NaN, messages: 0, seconds: 0, clientCpuS: 0, serverCpuS: 0, machineBusyS: NaN, detail: {}, error: `fill: ${errText(err)}` });
          targets.delete(st);
        }
      }
      for (let round = 1; round <= this.cfg.repeats; round++) {
        for (const st of rotate([...targets.keys()], round - 1)) {
          const sys = st.system;
          const target = targets.get(st)!;
          await this.#safely('replay', st, round, async () => {
            const cpu = this.#cpuMarks(sys);
            const { result: r, clientCpuS } = await this.#clients[0]!.call<ReplayResult>(
              sys.info.id,
              'replay',
              { url: st.start!.url, target, events: this.cfg.replayEvents, deadline: Date.now() + 300_000 },
              360_000,
              cpu.onMark,
            );
            if (r.read < this.cfg.replayEvents) throw new Error(`read ${r.read} of ${this.cfg.replayEvents}`);
            if (r.outOfOrder > 0) this.problems.push(`${sys.info.id} replay round ${round}: ${r.outOfOrder} events out of order or not ours`);
            return {
              measure: 'replay',
              system: sys.info.id,
              round,
              value: r.read / (r.elapsedMs / 1000),
              messages: r.read,
              seconds: r.elapsedMs / 1000,
              clientCpuS,
              serverCpuS: cpu.server(),
              machineBusyS: cpu.machine(),
              detail: { bytes: r.bytes, outOfOrder: r.outOfOrder },
            };
          });
        }
      }
    } finally {
      for (const [st, target] of targets) await st.system.deleteTarget(target).catch((e: unknown) => log(`  (deleting ${target} of ${st.system.info.id}: ${errText(e)})`));
    }
  }

  /** Everything after the systems are started and the clients are ready. */
  async measure(): Promise<Limits> {
    const limits = await this.limits();
    await this.fsyncChecks();
    const w = this.cfg.workloads;
    const live = this.live;
    if (w.has('publish') || w.has('consume')) {
      log('warm-up: one unmeasured publish run per system');
      for (const st of live) if (supports(st.system, 'publish')) await this.publishRun(st, 1, 0, this.cfg.warmupMs, false);
    }
    for (let round = 1; round <= this.cfg.repeats; round++) {
      log(`round ${round} of ${this.cfg.repeats}`);
      const order = rotate(live, round - 1);
      if (w.has('publish')) {
        for (const st of order) if (supports(st.system, 'publish')) await this.publishRun(st, 1, round, this.cfg.publishWindowMs);
        for (const st of order) if (supports(st.system, 'publish')) await this.publishRun(st, 2, round, this.cfg.publishWindowMs);
      }
      if (w.has('consume')) for (const st of order) if (supports(st.system, 'consume')) await this.consumeRun(st, round);
      if (w.has('latency')) for (const st of order) if (supports(st.system, 'latency')) await this.latencyRun(st, round);
      if (w.has('occ')) for (const st of order) if (supports(st.system, 'occ')) await this.occRun(st, round);
    }
    if (w.has('replay')) await this.replayPhase();
    return limits;
  }
}

export function writeJson(file: string, data: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
}
