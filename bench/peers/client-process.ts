/**
 * Client processes: children of the orchestrator that run the systems' workload methods, so
 * the clients' CPU is apart from the orchestrator's and two processes can load a server at once.
 *
 * One request at a time over IPC (structured clone, so Infinity and typed arrays pass):
 *   parent -> child  { id, systemId, method, args }
 *   child  -> parent { id, mark: 'start' | 'end' }              the measured span's bounds
 *                    { id, ok: true, result, clientCpuS }       or { id, ok: false, error }
 * `clientCpuS` is the child's user + system CPU between the two marks. A windowed workload
 * (its args have t0 and t1) is marked at t0 and t1 by timers here; a count-based one marks
 * itself through `ctx.mark`; without marks the whole call counts.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { errText, sleep } from './common.js';
import { ownedProcesses } from './procs.js';
import { createSystems } from './registry.js';
import type { ClientContext, PeerSystem, SystemOptions } from './types.js';

interface Request {
  id: number;
  systemId: string;
  method: string;
  args: Record<string, unknown>;
}

type Reply = { id: number; mark: 'start' | 'end' } | { id: number; ok: true; result: unknown; clientCpuS: number } | { id: number; ok: false; error: string };

/** The child's side: answers requests until the parent goes away. */
export async function clientMain(o: SystemOptions, processIndex: number): Promise<void> {
  process.on('disconnect', () => process.exit(1)); // the parent is gone, even if killed
  const systems = new Map<string, PeerSystem>(createSystems(o).map((s) => [s.info.id, s]));
  const send = (r: Reply): void => void process.send!(r);
  const handle = async (req: Request): Promise<void> => {
    const sys = systems.get(req.systemId);
    const fn = sys?.[req.method as keyof PeerSystem];
    if (sys === undefined || typeof fn !== 'function') throw new Error(`no method ${req.method} on system ${req.systemId}`);
    let started: NodeJS.CpuUsage | undefined;
    let ended: NodeJS.CpuUsage | undefined;
    const mark = (what: 'start' | 'end'): void => {
      if (what === 'start') started ??= process.cpuUsage();
      else ended ??= process.cpuUsage();
      send({ id: req.id, mark: what });
    };
    const timers: NodeJS.Timeout[] = [];
    const { t0, t1 } = req.args as { t0?: number; t1?: number };
    if (typeof t0 === 'number' && t0 > 0) timers.push(setTimeout(() => mark('start'), Math.max(0, t0 - Date.now())));
    if (typeof t1 === 'number' && Number.isFinite(t1)) timers.push(setTimeout(() => mark('end'), Math.max(0, t1 - Date.now())));
    const ctx: ClientContext = {
      mark,
      log: (m) => process.stderr.write(`[${req.systemId}] ${m}\n`),
      quick: o.quick,
      processIndex,
    };
    const whole = process.cpuUsage();
    try {
      const result = await (fn as (a: unknown, c: ClientContext) => Promise<unknown>).call(sys, req.args, ctx);
      ended ??= process.cpuUsage();
      const from = started ?? whole;
      const clientCpuS = (ended.user - from.user + ended.system - from.system) / 1e6;
      send({ id: req.id, ok: true, result, clientCpuS });
    } finally {
      for (const t of timers) clearTimeout(t);
    }
  };
  process.on('message', (req: Request) => {
    handle(req).catch((err: unknown) => send({ id: req.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
  });
  process.on('unhandledRejection', (err) => process.stderr.write(`client process ${processIndex}: unhandled rejection: ${errText(err)}\n`));
  send({ id: 0, ok: true, result: 'ready', clientCpuS: 0 });
}

/** The parent's handle on one client process. */
export class ClientProcess {
  readonly child: ChildProcess;
  readonly index: number;
  #pending = new Map<number, { resolve: (v: { result: unknown; clientCpuS: number }) => void; reject: (e: unknown) => void; onMark?: (m: 'start' | 'end') => void; timer: NodeJS.Timeout }>();
  #nextId = 1;
  #ready: Promise<void>;
  #exited: string | undefined;

  constructor(entry: string, childArgs: string[], index: number) {
    this.index = index;
    this.child = fork(entry, [...childArgs, `--client=${index}`], { stdio: ['ignore', 2, 2, 'ipc'], serialization: 'advanced' });
    ownedProcesses.add(this.child);
    let readyResolve!: () => void;
    let readyReject!: (e: unknown) => void;
    this.#ready = new Promise<void>((res, rej) => ((readyResolve = res), (readyReject = rej)));
    const readyTimer = setTimeout(() => readyReject(new Error(`client process ${index} did not start within 60 s`)), 60_000);
    this.child.on('message', (m: Reply) => {
      if (m.id === 0) {
        clearTimeout(readyTimer);
        readyResolve();
        return;
      }
      const p = this.#pending.get(m.id);
      if (p === undefined) return;
      if ('mark' in m) {
        p.onMark?.(m.mark);
        return;
      }
      this.#pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve({ result: m.result, clientCpuS: m.clientCpuS });
      else p.reject(new Error(m.error));
    });
    this.child.on('exit', (code, signal) => {
      this.#exited = `client process ${index} exited (${signal ?? `code ${code}`})`;
      clearTimeout(readyTimer);
      readyReject(new Error(this.#exited));
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(this.#exited));
      }
      this.#pending.clear();
    });
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  /** Runs `method` of system `systemId` in this process; rejects after `timeoutMs`. */
  call<T>(systemId: string, method: string, args: object, timeoutMs: number, onMark?: (m: 'start' | 'end') => void): Promise<{ result: T; clientCpuS: number }> {
    if (this.#exited !== undefined) return Promise.reject(new Error(this.#exited));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${systemId}.${method} in client process ${this.index}: no answer within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: { result: unknown; clientCpuS: number }) => void, reject, ...(onMark ? { onMark } : {}), timer });
      this.child.send({ id, systemId, method, args: args as Record<string, unknown> } satisfies Request);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.disconnect();
    await Promise.race([exited, sleep(3000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
