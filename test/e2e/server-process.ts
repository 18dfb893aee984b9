/**
 * Starts a real `eventful serve` process for end-to-end tests, on free ports, and stops it.
 * The server prints its addresses on stdout; they are parsed from there.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ServerProcess {
  child: ChildProcess;
  tcpUrl: string;
  httpUrl: string;
  wsUrl: string;
  stdout: () => string;
  stderr: () => string;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs the CLI from source (no build needed): `node --import tsx src/cli/run.ts ...args`. */
export function cliArgs(args: string[]): string[] {
  return ['--import', 'tsx', path.join(ROOT, 'src/cli/run.ts'), ...args];
}

export async function startServerProcess(
  dataDir: string,
  extraArgs: string[] = [],
  options: { env?: NodeJS.ProcessEnv; httpPort?: number; tcpPort?: number } = {},
): Promise<ServerProcess> {
  const args = cliArgs(['serve', '--data-dir', dataDir, '--http-port', String(options.httpPort ?? 0), '--tcp-port', String(options.tcpPort ?? 0), '--log-level', 'warn', ...extraArgs]);
  const env = { ...process.env, ...options.env };
  for (const k of Object.keys(env)) if (k.startsWith('EVENTFUL_') && !(options.env && k in options.env)) delete env[k];
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  while (!/TLS\s+(on|off)/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not start (exit ${child.exitCode}):\n${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const grab = (label: string): string => new RegExp(`${label}\\s+(\\S+)`).exec(out)![1]!;
  return {
    child,
    tcpUrl: grab('binary protocol'),
    httpUrl: grab('HTTP API'),
    wsUrl: grab('WebSocket'),
    stdout: () => out,
    stderr: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

export function writeJson(file: string, value: unknown): string {
  fs.writeFileSync(file, JSON.stringify(value, null, 2));
  return file;
}
