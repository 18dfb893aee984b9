/**
 * From runs to figures: medians with min-max per system and measure, Eventful's ratio to each
 * peer at the same durability, the goal's verdict, the tables printed, and the SVG charts.
 *
 * Pairing: a peer that syncs before it acks (by the fsync check, or as configured when the
 * check could not run) is compared with Eventful in durability 'always'; a peer that does not
 * is compared with Eventful in durability 'interval'. Every ratio says which pair it is.
 * Ratios are "Eventful ahead" numbers: above 1 means Eventful is ahead (more per second, or a
 * lower p99 latency).
 */
import fs from 'node:fs';
import path from 'node:path';
import { COLORS, barChartSvg, fmtNumber } from './charts.js';
import type { Bar } from './charts.js';
import { median } from './common.js';
import type { Limits } from './limits.js';
import type { Measure, Outcome, Run, SystemState } from './harness.js';

export const MEASURES: readonly Measure[] = ['publish-1p', 'publish-2p', 'consume', 'latency', 'replay', 'occ'];

const TITLES: Record<Measure, string> = {
  'publish-1p': 'Durable publish, 1 client process',
  'publish-2p': 'Durable publish, 2 client processes',
  consume: 'Consume with acks (a backlog drained)',
  latency: 'End-to-end latency at 5,000 messages/s (publish to delivery)',
  replay: 'Replay of stored events',
  occ: 'Optimistic-concurrency appends to 10,000 streams',
};

const UNITS: Record<Measure, string> = {
  'publish-1p': 'messages/s acknowledged',
  'publish-2p': 'messages/s acknowledged',
  consume: 'messages/s consumed and acked',
  latency: 'ms',
  replay: 'events/s read',
  occ: 'appends/s that passed the check',
};

export interface Figure {
  median: number;
  min: number;
  max: number;
  n: number;
  failed: number;
  firstError?: string;
  clientCpuSPer100k: number;
  serverCpuSPer100k: number;
  /** Cores the whole machine kept busy during the measured span (median of runs), ours included. */
  machineCores: number;
  /** Of those, cores used by processes other than this run's client and server (others' load). */
  otherCores: number;
  /** Medians of the runs' details (latency percentiles, conflicts, ...). */
  detail: Record<string, number>;
  /** Latency only: min-max of p50 and p99.9 across runs. */
  spreads?: Record<string, { min: number; max: number }>;
}

export interface Comparison {
  measure: Measure;
  peer: string;
  eventful: string;
  ratio: number;
  overlap: boolean;
}

export type Summary = Partial<Record<Measure, Record<string, Figure>>>;

function figure(runs: Run[]): Figure | undefined {
  const ok = runs.filter((r) => r.error === undefined && Number.isFinite(r.value));
  const failed = runs.length - ok.length;
  const firstError = runs.find((r) => r.error !== undefined)?.error;
  if (ok.length === 0) return runs.length === 0 ? undefined : { median: NaN, min: NaN, max: NaN, n: 0, failed, ...(firstError !== undefined ? { firstError } : {}), clientCpuSPer100k: NaN, serverCpuSPer100k: NaN, machineCores: NaN, otherCores: NaN, detail: {} };
  const vals = ok.map((r) => r.value);
  const per100k = (f: (r: Run) => number): number => median(ok.map((r) => (f(r) / Math.max(1, r.messages)) * 100_000));
  const keys = new Set(ok.flatMap((r) => Object.keys(r.detail)));
  const detail: Record<string, number> = {};
  const spreads: Record<string, { min: number; max: number }> = {};
  for (const k of keys) {
    const xs = ok.map((r) => r.detail[k]).filter((x): x is number => typeof x === 'number');
    detail[k] = median(xs);
    spreads[k] = { min: Math.min(...xs), max: Math.max(...xs) };
  }
  return {
    median: median(vals),
    min: Math.min(...vals),
    max: Math.max(...vals),
    n: ok.length,
    failed,
    ...(firstError !== undefined ? { firstError } : {}),
    clientCpuSPer100k: per100k((r) => r.clientCpuS),
    serverCpuSPer100k: per100k((r) => r.serverCpuS),
    machineCores: median(ok.map((r) => r.machineBusyS / r.seconds)),
    otherCores: median(ok.map((r) => Math.max(0, r.machineBusyS - (Number.isFinite(r.clientCpuS) ? r.clientCpuS : 0) - r.serverCpuS) / r.seconds)),
    detail,
    spreads,
  };
}

export function summarize(o: Outcome): Summary {
  const s: Summary = {};
  for (const m of MEASURES) {
    const bySystem: Record<string, Figure> = {};
    for (const st of o.states) {
      const f = figure(o.runs.filter((r) => r.measure === m && r.system === st.system.info.id));
      if (f !== undefined) bySystem[st.system.info.id] = f;
    }
    if (Object.keys(bySystem).length > 0) s[m] = bySystem;
  }
  return s;
}

/** The Eventful system a state is compared with. */
export const counterpartOf = (st: SystemState): string => (st.durable ? 'eventful' : 'eventful-interval');

export function compare(o: Outcome, s: Summary): Comparison[] {
  const out: Comparison[] = [];
  for (const m of MEASURES) {
    const figs = s[m];
    if (figs === undefined) continue;
    for (const st of o.states) {
      if (st.system.info.isEventful === true) continue;
      const p = figs[st.system.info.id];
      const eid = counterpartOf(st);
      const e = figs[eid];
      if (p === undefined || e === undefined || !(p.n > 0) || !(e.n > 0)) continue;
      const lower = m === 'latency';
      const ratio = lower ? p.median / e.median : e.median / p.median;
      const overlap = e.min <= p.max && p.min <= e.max;
      out.push({ measure: m, peer: st.system.info.id, eventful: eid, ratio, overlap });
    }
  }
  return out;
}

export interface Goal {
  statement: string;
  met: boolean;
  behind: string[];
  notMeasured: string[];
}

/** "Eventful ahead of every peer on durable publish, consume-with-ack and replay, and lowest p99 latency." */
export function goal(o: Outcome, cmp: Comparison[]): Goal {
  const names = new Map(o.states.map((st) => [st.system.info.id, st.system.info.name]));
  const behind: string[] = [];
  const notMeasured: string[] = [];
  const gated: Measure[] = ['publish-1p', 'publish-2p', 'consume', 'replay', 'latency'];
  for (const m of gated) {
    const cs = cmp.filter((c) => c.measure === m);
    if (cs.length === 0) notMeasured.push(TITLES[m]);
    for (const c of cs) {
      if (c.ratio > 1) continue;
      const what = m === 'latency' ? `p99 ${(1 / c.ratio).toFixed(2)}x the peer's` : `${c.ratio.toFixed(2)}x the peer`;
      behind.push(`${TITLES[m]}: ${names.get(c.eventful)} vs ${names.get(c.peer)}: ${what}${c.overlap ? ' (run ranges overlap)' : ''}`);
    }
  }
  return {
    statement: 'Eventful ahead of every peer on durable publish, consume-with-ack and replay, and lowest p99 latency (each peer compared with Eventful at its own durability)',
    met: behind.length === 0 && notMeasured.length === 0,
    behind,
    notMeasured,
  };
}

// -------------------------------------------------------------------------------------------------
// Text

function table(header: string[], rows: string[][], rightAlignFrom = 1): string[] {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i >= rightAlignFrom ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(header), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)];
}

const f0 = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const f2 = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const pct = (v: number): string => (Number.isFinite(v) ? `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%` : 'n/a');

export function classLabel(st: SystemState): string {
  if (st.fsync !== undefined) return st.durable ? 'fsync before ack' : 'no fsync before ack';
  return st.durable ? 'fsync before ack (configured)' : 'no fsync before ack (configured)';
}

export function textReport(o: Outcome, s: Summary, cmp: Comparison[], g: Goal, limits: Limits | undefined): string[] {
  const L: string[] = [];
  const byId = new Map(o.states.map((st) => [st.system.info.id, st]));
  const ratioOf = (m: Measure, id: string): string => {
    const c = cmp.find((x) => x.measure === m && x.peer === id);
    if (c === undefined) return byId.get(id)?.system.info.isEventful === true ? '(Eventful)' : '';
    return `${c.ratio.toFixed(2)}x${c.overlap ? '~' : ''} vs ${c.eventful === 'eventful' ? 'fsync' : 'interval'}`;
  };
  for (const m of MEASURES) {
    const figs = s[m];
    if (figs === undefined) continue;
    L.push('');
    L.push(`${TITLES[m]} (${m === 'latency' ? 'ms' : UNITS[m]}; median of runs, min-max)`);
    const rows: string[][] = [];
    for (const st of o.states) {
      const f = figs[st.system.info.id];
      if (f === undefined) continue;
      const id = st.system.info.id;
      if (f.n === 0) {
        rows.push([st.system.info.name, classLabel(st), 'FAILED', (f.firstError ?? '').split('\n')[0]!.slice(0, 80)]);
        continue;
      }
      if (m === 'latency') {
        rows.push([
          st.system.info.name,
          classLabel(st),
          f2(f.detail.p50 ?? NaN),
          f2(f.detail.p90 ?? NaN),
          f2(f.median),
          `${f2(f.min)}-${f2(f.max)}`,
          f2(f.detail.p999 ?? NaN),
          f2(f.detail.ackP99 ?? NaN),
          f0(f.detail.achievedRatePerS ?? NaN),
          f2(f.serverCpuSPer100k),
          f2(f.machineCores),
          ratioOf(m, id),
        ]);
      } else {
        const ofDisk = limits !== undefined && st.durable && m !== 'replay' ? pct(f.median / limits.diskBatchedPayloadsPerS) : '-';
        const ofNet = limits !== undefined ? pct(f.median / limits.loopbackPayloadsPerS) : '-';
        rows.push([
          st.system.info.name,
          classLabel(st),
          f0(f.median),
          `${f0(f.min)}-${f0(f.max)}`,
          String(f.n),
          ofDisk,
          ofNet,
          f2(f.clientCpuSPer100k),
          f2(f.serverCpuSPer100k),
          f2(f.otherCores),
          ...(m === 'occ' ? [f0(f.detail.conflicts ?? NaN)] : []),
          ratioOf(m, id),
        ]);
      }
    }
    if (m === 'latency') {
      L.push(...table(['system', 'durability', 'p50', 'p90', 'p99', 'p99 min-max', 'p99.9', 'ack p99', 'sent/s', 'srv CPU s/100k', 'busy cores', 'Eventful ahead'], rows, 2));
    } else {
      L.push(
        ...table(
          ['system', 'durability', 'median/s', 'min-max', 'runs', 'of disk', 'of loopback', 'client CPU s/100k', 'server CPU s/100k', 'others (cores)', ...(m === 'occ' ? ['conflicts'] : []), 'Eventful ahead'],
          rows,
          2,
        ),
      );
    }
  }
  L.push('');
  L.push('"Eventful ahead": Eventful median / peer median (latency: peer p99 / Eventful p99), against Eventful at the peer\'s durability');
  L.push('("vs fsync": durability always; "vs interval": no fsync before ack). Above 1: Eventful ahead. "~": the min-max ranges of the runs overlap.');
  L.push('"others (cores)": CPU used during the measured span by processes other than the client and server measured (the machine is shared);');
  L.push('"busy cores" (latency): all CPU in use during the recorded seconds, the latency client included. CPU per 100k: user + system seconds.');
  if (limits !== undefined) {
    L.push(
      `"of disk": of ${f0(limits.diskBatchedPayloadsPerS)} payloads/s, raw appends with one fdatasync per 256 (durable systems only); "of loopback": of ${f0(limits.loopbackPayloadsPerS)} 256-byte payloads/s through loopback TCP.`,
    );
  }
  L.push('');
  L.push(`GOAL: ${g.statement}: ${g.met ? 'MET' : 'NOT MET'}`);
  for (const b of g.behind) L.push(`  behind: ${b}`);
  for (const n of g.notMeasured) L.push(`  not measured: ${n}`);
  return L;
}

export function headerReport(o: Outcome, machine: Record<string, unknown>): string[] {
  const L: string[] = [];
  L.push(`machine: ${String(machine.cpu)}, ${String(machine.cores)} cores, ${String(machine.memGiB)} GiB, ${String(machine.kernel)}, ${String(machine.disk)}; Node.js ${String(machine.node)}`);
  L.push('');
  L.push('systems (durability as configured; then what the fsync check measured):');
  for (const st of o.states) {
    const i = st.system.info;
    if (st.start === undefined) {
      L.push(`- ${i.name}: SKIPPED: ${st.skipped ?? 'not started'}`);
      continue;
    }
    L.push(`- ${i.name} [${i.id}]: ${st.start.serverVersion}, client ${i.client}`);
    for (const c of i.configuration) L.push(`    config: ${c}`);
    for (const c of st.start.observed ?? []) L.push(`    server: ${c}`);
    L.push(`    durability: ${i.durability}`);
    if (st.fsync !== undefined) L.push(`    fsync check: ${st.fsync.verdict}`);
    else if (st.fsyncError !== undefined) L.push(`    fsync check: FAILED (${st.fsyncError}); compared as configured`);
    L.push(`    compared with: ${st.system.info.isEventful === true ? '(Eventful itself)' : counterpartOf(st) === 'eventful' ? 'Eventful, durability always' : 'Eventful, durability interval'}`);
    for (const [w, m] of Object.entries(i.method)) L.push(`    ${w}: ${m}`);
  }
  return L;
}

export function limitsReport(limits: Limits): string[] {
  return [
    `machine limits (median of ${limits.runs}):`,
    `  disk, appends of 256 x 256 B + one fdatasync: ${f0(limits.diskBatchedPayloadsPerS)} payloads/s (${f0(limits.diskBatchedSyncUs)} us per fdatasync)`,
    `  disk, 256 B + one fdatasync each: ${f0(limits.diskSinglePayloadsPerS)} payloads/s (fdatasync p50 ${f0(limits.diskSingleSyncUsP50)} us, p99 ${f0(limits.diskSingleSyncUsP99)} us)`,
    `  loopback TCP, 64 KiB writes to another process: ${(limits.loopbackBytesPerS / 2 ** 20).toFixed(0)} MiB/s = ${f0(limits.loopbackPayloadsPerS)} 256-byte payloads/s; 1-byte round trip p50 ${f0(limits.loopbackRttUsP50)} us, p99 ${f0(limits.loopbackRttUsP99)} us`,
  ];
}

export function fsyncReport(o: Outcome): string[] {
  const L = ['fsync check (strace -f on the server processes, counting fsync and fdatasync, while one client publishes one message at a time, each awaited):'];
  for (const st of o.states) {
    if (st.start === undefined) continue;
    if (st.fsync !== undefined) L.push(`  ${st.fsync.verdict}`);
    else if (st.fsyncError !== undefined) L.push(`  ${st.system.info.name}: FAILED (${st.fsyncError}); compared as configured (${st.durable ? 'fsync before ack' : 'no fsync before ack'})`);
    else L.push(`  ${st.system.info.name}: not checked; compared as configured (${st.durable ? 'fsync before ack' : 'no fsync before ack'})`);
  }
  return L;
}

// -------------------------------------------------------------------------------------------------
// Charts

function colorOf(st: SystemState): string {
  if (st.system.info.isEventful === true) return st.durable ? COLORS.eventfulDurable : COLORS.eventfulNonDurable;
  return st.durable ? COLORS.peerDurable : COLORS.peerNonDurable;
}

function groupName(st: SystemState): string {
  const n = st.system.info.name;
  return st.system.info.isEventful === true || st.durable ? n : `${n} (no fsync before ack)`;
}

const LEGEND = [
  { color: COLORS.eventfulDurable, label: 'Eventful, fsync before ack' },
  { color: COLORS.eventfulNonDurable, label: 'Eventful, interval (no fsync before ack)' },
  { color: COLORS.peerDurable, label: 'peer, fsync before ack' },
  { color: COLORS.peerNonDurable, label: 'peer, no fsync before ack' },
];

export function writeCharts(dir: string, o: Outcome, s: Summary, limits: Limits | undefined, subtitle: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const write = (name: string, svg: string): void => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, svg);
    written.push(file);
  };
  const states = o.states.filter((st) => st.start !== undefined);
  const rate = (m: Measure, label: string, st: SystemState): Bar | undefined => {
    const f = s[m]?.[st.system.info.id];
    if (f === undefined || f.n === 0) return undefined;
    return { group: groupName(st), label, value: f.median, min: f.min, max: f.max, color: colorOf(st), valueText: `${fmtNumber(f.median)}/s` };
  };
  const pub: Bar[] = [];
  for (const st of states) {
    for (const [m, label] of [
      ['publish-1p', '1 proc'],
      ['publish-2p', '2 procs'],
    ] as const) {
      const b = rate(m, label, st);
      if (b !== undefined) pub.push(b);
    }
  }
  if (pub.length > 0) {
    write(
      'peers-publish.svg',
      barChartSvg({
        title: 'Durable publish throughput (256-byte messages)',
        subtitle: `${subtitle}; median, whiskers min-max; 1 and 2 client processes`,
        axis: 'messages per second, acknowledged',
        bars: pub,
        legend: LEGEND,
      }),
    );
  }
  for (const m of ['consume', 'replay', 'occ'] as const) {
    const bars = states.map((st) => rate(m, '', st)).filter((b): b is Bar => b !== undefined);
    if (bars.length === 0) continue;
    write(`peers-${m}.svg`, barChartSvg({ title: TITLES[m], subtitle: `${subtitle}; median, whiskers min-max`, axis: UNITS[m], bars, legend: LEGEND }));
  }
  const lat: Bar[] = [];
  for (const st of states) {
    const f = s.latency?.[st.system.info.id];
    if (f === undefined || f.n === 0) continue;
    for (const [k, label] of [
      ['p50', 'p50'],
      ['p99', 'p99'],
      ['p999', 'p99.9'],
    ] as const) {
      const v = f.detail[k] ?? NaN;
      const sp = f.spreads?.[k];
      lat.push({ group: groupName(st), label, value: v, ...(sp !== undefined ? { min: sp.min, max: sp.max } : {}), color: colorOf(st), valueText: `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms` });
    }
  }
  if (lat.length > 0) {
    write(
      'peers-latency.svg',
      barChartSvg({
        title: TITLES.latency,
        subtitle: `${subtitle}; median of runs, whiskers min-max; log scale`,
        axis: 'milliseconds (log scale)',
        bars: lat,
        log: true,
        legend: LEGEND,
        ...(limits !== undefined ? { reference: { value: limits.diskSingleSyncUsP50 / 1000, label: 'one fdatasync (p50)' } } : {}),
      }),
    );
  }
  const cpu: Bar[] = [];
  for (const st of states) {
    const f = s['publish-1p']?.[st.system.info.id];
    if (f === undefined || f.n === 0) continue;
    cpu.push({ group: groupName(st), label: 'server', value: f.serverCpuSPer100k, color: colorOf(st), valueText: `${f.serverCpuSPer100k.toFixed(2)} s` });
    cpu.push({ group: groupName(st), label: 'client', value: f.clientCpuSPer100k, color: colorOf(st), valueText: `${f.clientCpuSPer100k.toFixed(2)} s` });
  }
  if (cpu.length > 0) {
    write(
      'peers-cpu.svg',
      barChartSvg({ title: 'CPU seconds per 100,000 published messages (1 client process)', subtitle: `${subtitle}; median of runs`, axis: 'CPU seconds (user + system) per 100k messages', bars: cpu, legend: LEGEND }),
    );
  }
  return written;
}
