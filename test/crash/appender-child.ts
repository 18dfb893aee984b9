/**
 * The process that test/crash/crash.test.ts kills with SIGKILL.
 *
 * Usage: node --import tsx test/crash/appender-child.ts <dir>
 *
 * Opens the store in <dir> with durability 'always', reads every stream's revision with
 * streamInfo (so a run carries on from what the previous, killed, run left), then runs
 * APPENDERS concurrent loops that append batches of 1-5 events until the process is killed.
 *
 * Protocol: one JSON object per stdout line. Writes to a pipe are synchronous on Linux and a
 * line is far below PIPE_BUF, so a line is either out whole before the next statement runs or
 * not out at all.
 *   { t: 'ready', revisions }                        store open, loops about to start
 *   { t: 'try', k, s, exp, ev: [{ id, type, data }] } written BEFORE append() is called
 *   { t: 'ack', k, s, rev, pos, ids }                 written after append() resolved (durable)
 *   { t: 'rej', k, s, code }                          append() rejected with a definite "nothing written"
 * Anything else going wrong is printed to stderr and exits with code 1, which the parent treats
 * as a failure (only SIGKILL is an expected end).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { WrongExpectedRevisionError, openStore } from '../../src/index.js';
import type { ExpectedRevision } from '../../src/index.js';

const STREAMS = 50;
const APPENDERS = 32;
const SEGMENT_BYTES = 64 * 1024;
const streamName = (i: number): string => `crash-${i}`;
const PAUSE_MS_MAX = 40;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function send(msg: unknown): void {
  process.stdout.write(JSON.stringify(msg) + '\n');
}

async function main(dir: string): Promise<void> {
  const store = await openStore({ dir, durability: 'always', segmentBytes: SEGMENT_BYTES });
  // The last revision this process knows of, per stream (-1: no events).
  const known = new Map<string, number>();
  for (let i = 0; i < STREAMS; i++) {
    const info = await store.streamInfo(streamName(i));
    known.set(streamName(i), info === undefined ? -1 : info.revision);
  }
  send({ t: 'ready', revisions: Object.fromEntries(known) });

  // Streams an exact-revision append is in flight on: two exact appends to one stream would
  // just make one of them fail. 'any' appends ignore this, so exact ones do sometimes fail.
  const busy = new Set<string>();
  let seq = 0;

  const loop = async (loopNo: number): Promise<never> => {
    for (;;) {
      // A short random pause keeps the log small enough for the parent to reopen and check it
      // 20+ times within its time budget; with 32 loops the write queue still never runs dry.
      await sleep(Math.random() * PAUSE_MS_MAX);
      let stream = streamName(Math.floor(Math.random() * STREAMS));
      const useAny = Math.random() < 0.2;
      if (!useAny) {
        let tries = 0;
        while (busy.has(stream) && tries++ < STREAMS) stream = streamName(Math.floor(Math.random() * STREAMS));
        if (busy.has(stream)) {
          await new Promise((r) => setImmediate(r));
          continue;
        }
      }
      const rev = known.get(stream)!;
      const exp: ExpectedRevision = useAny ? 'any' : rev < 0 ? 'no_stream' : rev;
      const n = 1 + Math.floor(Math.random() * 5);
      const ev = Array.from({ length: n }, (_, i) => ({
        id: randomUUID(),
        type: `Crashed${i}`,
        data: { s: stream, l: loopNo, i, pad: randomBytes(Math.floor(Math.random() * 60)).toString('hex') },
      }));
      const k = ++seq;
      if (!useAny) busy.add(stream);
      send({ t: 'try', k, s: stream, exp, ev });
      try {
        const r = await store.append(stream, ev.map((e) => ({ ...e, metadata: { loop: loopNo } })), { expectedRevision: exp });
        send({ t: 'ack', k, s: stream, rev: r.revision, pos: r.positions, ids: ev.map((e) => e.id) });
        if (r.revision > known.get(stream)!) known.set(stream, r.revision);
      } catch (err) {
        if (!(err instanceof WrongExpectedRevisionError)) throw err;
        send({ t: 'rej', k, s: stream, code: err.code });
        if (err.actualRevision > known.get(stream)!) known.set(stream, err.actualRevision);
      } finally {
        if (!useAny) busy.delete(stream);
      }
    }
  };
  await Promise.all(Array.from({ length: APPENDERS }, (_, i) => loop(i)));
}

const dir = process.argv[2];
if (dir === undefined) {
  process.stderr.write('usage: appender-child.ts <dir>\n');
  process.exit(2);
}
main(dir).catch((err: unknown) => {
  process.stderr.write(`appender-child failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
