/**
 * Starts the whole shop on the embedded store: `eventful serve`, then the write service, the
 * read service and the fulfilment worker, each its own process talking only to the server.
 *
 *   npm run example:shop                 # data in ./examples/shop/.data (kept between runs)
 *   SHOP_DATA=/tmp/shop npm run example:shop
 *
 * Ports (environment): EVENTFUL_HTTP_PORT 7070, EVENTFUL_TCP_PORT 7071, WRITE_PORT 8081,
 * READ_PORT 8082. Ctrl-C stops everything.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const data = path.resolve(process.env.SHOP_DATA ?? path.join(here, '.data'));
fs.mkdirSync(data, { recursive: true });
const httpPort = process.env.EVENTFUL_HTTP_PORT ?? '7070';
const tcpPort = process.env.EVENTFUL_TCP_PORT ?? '7071';
const children: ChildProcess[] = [];

function start(name: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = `[${name}]`.padEnd(8);
  for (const s of [child.stdout!, child.stderr!]) {
    let rest = '';
    s.on('data', (d: Buffer) => {
      const lines = (rest + d.toString()).split('\n');
      rest = lines.pop()!;
      for (const l of lines) console.log(`${prefix} ${l}`);
    });
  }
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.log(`${prefix} exited (${signal ?? code}); stopping the example`);
      stop();
    }
  });
  children.push(child);
  return child;
}

async function waitFor(url: string, child: ChildProcess): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  // The services first, the server last, so they leave cleanly.
  const services = children.slice(1);
  for (const c of services) c.kill('SIGTERM');
  void Promise.all(services.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r))))).then(() => {
    children[0]?.kill('SIGTERM');
    children[0]?.once('exit', () => process.exit(0));
  });
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const server = start('server', ['src/cli/run.ts', 'serve', '--data-dir', path.join(data, 'eventful'), '--http-port', httpPort, '--tcp-port', tcpPort, '--log-level', 'warn']);
await waitFor(`http://127.0.0.1:${httpPort}/health/ready`, server);
const env = { EVENTFUL_URL: `tcp://127.0.0.1:${tcpPort}` };
const write = start('write', ['examples/shop/write-service.ts'], env);
const read = start('read', ['examples/shop/read-service.ts'], { ...env, READ_MODELS_DIR: path.join(data, 'read-models') });
start('worker', ['examples/shop/worker.ts'], env);
await waitFor(`http://127.0.0.1:${process.env.WRITE_PORT ?? 8081}/health`, write);
await waitFor(`http://127.0.0.1:${process.env.READ_PORT ?? 8082}/status`, read);
console.log(`shop ready: write http://127.0.0.1:${process.env.WRITE_PORT ?? 8081}, read http://127.0.0.1:${process.env.READ_PORT ?? 8082}, eventful http://127.0.0.1:${httpPort} (data in ${data})`);
