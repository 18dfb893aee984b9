/**
 * Server processes seen from outside: their pids (pgrep), their CPU time (/proc/<pid>/stat) and
 * the sync calls they make (strace).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { sleep } from './common.js';

/** Pids of processes whose name is exactly `name` (and whose command line contains `argPart`, if given). */
export function pgrep(name: string, argPart?: string): number[] {
  let out: string;
  try {
    out = execFileSync('pgrep', ['-x', name], { encoding: 'utf8' });
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  const pids = out.split('\n').filter(Boolean).map(Number);
  if (argPart === undefined) return pids;
  return pids.filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(argPart);
    } catch {
      return false;
    }
  });
}

const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU seconds of each pid: utime + stime of all its threads, plus cutime + cstime (children it
 * has reaped: PostgreSQL's postmaster collects its backends' time this way when they exit).
 */
export function cpuOf(pids: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The name (field 2) is in parentheses and may hold spaces: split after its closing one.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
      const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      m.set(pid, ticks / CLOCK_TICKS_PER_S);
    } catch {
      // gone
    }
  }
  return m;
}

/** CPU seconds used between two samples; pids born in between count from zero. */
export function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let s = 0;
  for (const [pid, t] of after) s += t - (before.get(pid) ?? 0);
  return Math.max(0, s);
}

export function straceAvailable(): boolean {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface SyncCounts {
  fsync: number;
  fdatasync: number;
  /** sync_file_range, msync, syncfs, sync: counted, reported apart. */
  other: Record<string, number>;
}

/**
 * Attaches strace to every thread of `pids` (and children they fork, such as PostgreSQL
 * backends), counting only sync calls. `stop()` detaches and returns the counts.
 * Attaching to a running process cannot use seccomp filtering, so every syscall of the traced
 * server stops in strace: the server runs slower while traced, which is why the check uses a
 * short, sequential load of its own and is never part of a throughput figure.
 */
export async function traceSyncs(pids: readonly number[], outFile: string): Promise<{ stop(): Promise<SyncCounts> }> {
  const threads = pids.reduce((n, p) => {
    try {
      return n + fs.readdirSync(`/proc/${p}/task`).length;
    } catch {
      return n;
    }
  }, 0);
  const args = ['-f', '-c', '-o', outFile, '-e', 'trace=fsync,fdatasync,sync_file_range,msync,syncfs,sync', ...pids.flatMap((p) => ['-p', String(p)])];
  const child = spawn('strace', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  let attached = 0;
  child.stderr!.on('data', (d: Buffer) => {
    const s = d.toString();
    err += s;
    // "Process N attached with K threads" for a multi-threaded process, "Process N attached" otherwise.
    for (const m of s.matchAll(/attached(?: with (\d+) threads)?/g)) attached += m[1] !== undefined ? Number(m[1]) : 1;
  });
  const deadline = Date.now() + 15_000;
  while (attached < threads && Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`strace exited: ${err.trim()}`);
    await sleep(20);
  }
  if (attached === 0) {
    child.kill('SIGKILL');
    throw new Error(`strace attached to nothing: ${err.trim()}`);
  }
  await sleep(200);
  return {
    stop: async () => {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGINT');
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      const counts: SyncCounts = { fsync: 0, fdatasync: 0, other: {} };
      let text = '';
      try {
        text = fs.readFileSync(outFile, 'utf8');
      } catch {
        throw new Error(`strace wrote no summary: ${err.trim()}`);
      }
      // Summary rows: "% time  seconds  usecs/call  calls  [errors]  syscall".
      for (const line of text.split('\n')) {
        const cols = line.trim().split(/\s+/);
        const name = cols[cols.length - 1];
        if (cols.length < 5 || name === undefined || !/^[a-z_]+$/.test(name) || name === 'syscall' || name === 'total') continue;
        const calls = Number(cols[3]);
        if (!Number.isFinite(calls)) continue;
        if (name === 'fsync') counts.fsync += calls;
        else if (name === 'fdatasync') counts.fdatasync += calls;
        else counts.other[name] = (counts.other[name] ?? 0) + calls;
      }
      return counts;
    },
  };
}

// -------------------------------------------------------------------------------------------------
// Processes the harness starts (servers, client processes): killed on any exit, whatever happens.

import type { ChildProcess } from 'node:child_process';

export const ownedProcesses = new Set<ChildProcess>();

export function killOwnedSync(): void {
  for (const c of ownedProcesses) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** CPU seconds the whole machine has been busy (all cores, /proc/stat), for the load of others. */
export function machineBusyS(): number {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return busy / CLOCK_TICKS_PER_S;
  } catch {
    return NaN;
  }
}
