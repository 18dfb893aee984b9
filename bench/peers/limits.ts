/**
 * The machine's own limits, measured in the same run, so each figure can be read as a fraction
 * of what the hardware allows:
 *  - raw disk: appends to a file with one fdatasync per batch of 256 payloads (the most a
 *    durable log could do with perfect group commit), and with one fdatasync per payload (the
 *    most a lone writer that waits for each sync could do);
 *  - loopback TCP: bytes per second from this process to a sink in another process, written
 *    64 KiB at a time (divided by 256 bytes for a messages-per-second ceiling), and the round
 *    trip of a 1-byte ping-pong (the floor under any request's latency).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { median, percentile, sleep } from './common.js';
import { ownedProcesses } from './procs.js';
import { PAYLOAD_BYTES } from './types.js';

export interface Limits {
  diskBatchedPayloadsPerS: number;
  diskBatchedSyncUs: number;
  diskSinglePayloadsPerS: number;
  diskSingleSyncUsP50: number;
  diskSingleSyncUsP99: number;
  loopbackBytesPerS: number;
  loopbackPayloadsPerS: number;
  loopbackRttUsP50: number;
  loopbackRttUsP99: number;
  /** What each figure is a median of. */
  runs: number;
  dir: string;
}

function diskRun(file: string, payloadsPerSync: number, ms: number): { payloadsPerS: number; syncUs: number[] } {
  const fd = fs.openSync(file, 'w');
  const buf = Buffer.alloc(PAYLOAD_BYTES * payloadsPerSync, 0x78);
  const syncUs: number[] = [];
  let payloads = 0;
  const t0 = performance.now();
  try {
    while (performance.now() - t0 < ms) {
      fs.writeSync(fd, buf);
      const s = performance.now();
      fs.fdatasyncSync(fd);
      syncUs.push((performance.now() - s) * 1000);
      payloads += payloadsPerSync;
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  return { payloadsPerS: payloads / ((performance.now() - t0) / 1000), syncUs: syncUs.sort((a, b) => a - b) };
}

/** A sink in another process: discards what it reads; echoes when told to with a first byte 'e'. */
const SINK = `
const net = require('node:net');
const s = net.createServer((c) => {
  c.once('data', (d) => {
    if (d[0] === 0x65) { c.on('data', (x) => c.write(x)); if (d.length > 1) c.write(d.subarray(1)); }
    else c.on('data', () => {});
  });
  c.on('error', () => {});
});
s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(0), 120000).unref();
`;

async function startSink(): Promise<{ port: number; stop(): void }> {
  const child = spawn(process.execPath, ['-e', SINK], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  ownedProcesses.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 10_000;
  while (!out.includes('\n')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('loopback sink did not start');
    await sleep(10);
  }
  return { port: Number(out.trim()), stop: () => child.kill('SIGKILL') };
}

async function throughputRun(port: number, ms: number): Promise<number> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  sock.write(Buffer.from('s')); // anything but 'e': a plain sink
  const chunk = Buffer.alloc(64 * 1024, 0x78);
  let bytes = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (performance.now() - t0 < ms) {
        bytes += chunk.length;
        if (!sock.write(chunk)) {
          sock.once('drain', pump);
          return;
        }
      }
      resolve();
    };
    pump();
  });
  const s = (performance.now() - t0) / 1000;
  sock.destroy();
  return bytes / s;
}

async function rttRun(port: number, ms: number): Promise<number[]> {
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  sock.write(Buffer.from('e'));
  await sleep(20);
  const rtts: number[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const s = performance.now();
    await new Promise<void>((r) => {
      sock.once('data', () => r());
      sock.write(Buffer.from('p'));
    });
    rtts.push((performance.now() - s) * 1000);
  }
  sock.destroy();
  return rtts.sort((a, b) => a - b);
}

export async function measureLimits(dir: string, runs: number, ms: number): Promise<Limits> {
  const batched: number[] = [];
  const batchedSync: number[] = [];
  const single: number[] = [];
  const singleP50: number[] = [];
  const singleP99: number[] = [];
  const tput: number[] = [];
  const rttP50: number[] = [];
  const rttP99: number[] = [];
  const sink = await startSink();
  try {
    for (let r = 0; r < runs; r++) {
      const b = diskRun(path.join(dir, `limits-batched-${r}`), 256, ms);
      batched.push(b.payloadsPerS);
      batchedSync.push(median(b.syncUs));
      const s = diskRun(path.join(dir, `limits-single-${r}`), 1, ms);
      single.push(s.payloadsPerS);
      singleP50.push(percentile(s.syncUs, 50));
      singleP99.push(percentile(s.syncUs, 99));
      tput.push(await throughputRun(sink.port, ms));
      const rtt = await rttRun(sink.port, Math.min(ms, 1000));
      rttP50.push(percentile(rtt, 50));
      rttP99.push(percentile(rtt, 99));
    }
  } finally {
    sink.stop();
  }
  const loopbackBytesPerS = median(tput);
  return {
    diskBatchedPayloadsPerS: median(batched),
    diskBatchedSyncUs: median(batchedSync),
    diskSinglePayloadsPerS: median(single),
    diskSingleSyncUsP50: median(singleP50),
    diskSingleSyncUsP99: median(singleP99),
    loopbackBytesPerS,
    loopbackPayloadsPerS: loopbackBytesPerS / PAYLOAD_BYTES,
    loopbackRttUsP50: median(rttP50),
    loopbackRttUsP99: median(rttP99),
    runs,
    dir,
  };
}
