/**
 * Crash test: kill -9 of a real process in the middle of concurrent appends, over and over
 * against one data directory, checking after each kill that recovery keeps every acknowledged
 * event and never shows part of an append.
 *
 * The child (appender-child.ts) says what it is about to append ('try', before append() is
 * called), what was acknowledged ('ack') and what was refused ('rej'). After each SIGKILL the
 * parent opens the store in-process and holds it to these rules:
 * - positions run 1, 2, 3, ... with no gap up to the head; no event id appears twice;
 * - each stream's revisions run 0, 1, 2, ... in position order, and readStream and streamInfo
 *   agree with readAll;
 * - every acknowledged append is there, whole: same ids, stream, revisions, positions, type, data;
 * - every append in the log was attempted by a child, and an append is all there or not at all
 *   (the ones in flight at the kill may go either way); a refused append is not there.
 * Then the next child opens the same directory and carries on from the revisions it finds.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../src/index.js';
import type { RecordedEvent } from '../../src/index.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHILD = 'test/crash/appender-child.ts';
// Must match appender-child.ts.
const STREAMS = 50;
const SEGMENT_BYTES = 64 * 1024;
const streamName = (i: number): string => `crash-${i}`;

const KILLS = 20;
const KILL_AFTER_MS_MIN = 100;
const KILL_AFTER_MS_MAX = 600;
const READY_TIMEOUT_MS = 20_000;

interface TriedEvent {
  id: string;
  type: string;
  data: unknown;
}

interface Attempt {
  run: number;
  k: number;
  stream: string;
  exp: 'any' | 'no_stream' | number;
  events: TriedEvent[];
  ack?: { rev: number; pos: number[] };
  rejected?: string;
}

type ChildMessage =
  | { t: 'ready'; revisions: Record<string, number> }
  | { t: 'try'; k: number; s: string; exp: Attempt['exp']; ev: TriedEvent[] }
  | { t: 'ack'; k: number; s: string; rev: number; pos: number[]; ids: string[] }
  | { t: 'rej'; k: number; s: string; code: string };

interface RunResult {
  ready: Record<string, number>;
  messages: ChildMessage[];
  killedAfterMs: number;
}

/** Runs one child until SIGKILL, `100-600 ms` after it said it is ready. */
function runChild(dir: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const messages: ChildMessage[] = [];
    let ready: Record<string, number> | undefined;
    let partial = '';
    let stderr = '';
    let killedAfterMs = -1;
    let killTimer: NodeJS.Timeout | undefined;
    const readyTimer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not report ready within ${READY_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, READY_TIMEOUT_MS);

    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      partial += chunk;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        const msg = JSON.parse(line) as ChildMessage;
        if (msg.t === 'ready') {
          ready = msg.revisions;
          clearTimeout(readyTimer);
          killedAfterMs = KILL_AFTER_MS_MIN + Math.floor(Math.random() * (KILL_AFTER_MS_MAX - KILL_AFTER_MS_MIN));
          killTimer = setTimeout(() => child.kill('SIGKILL'), killedAfterMs);
        } else {
          messages.push(msg);
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    // 'close': the process is gone (its lock with it) and its stdout is drained.
    child.on('close', (code, signal) => {
      clearTimeout(readyTimer);
      clearTimeout(killTimer);
      if (signal !== 'SIGKILL') {
        reject(new Error(`child ended by itself (code ${code}, signal ${signal}) instead of being killed; stderr:\n${stderr}`));
        return;
      }
      if (ready === undefined) return; // the ready timeout already rejected
      // A line cut off by the kill is ignored: it was never a whole message. (Pipe writes of a
      // line this size are atomic, so this should not happen; it is tolerated, not relied on.)
      resolve({ ready, messages, killedAfterMs });
    });
  });
}

/** Adds a run's messages to the record of every attempt made so far. */
function record(attempts: Map<string, Attempt>, byId: Map<string, Attempt>, run: number, messages: ChildMessage[]): void {
  for (const m of messages) {
    if (m.t === 'ready') continue;
    const key = `${run}:${m.k}`;
    if (m.t === 'try') {
      const a: Attempt = { run, k: m.k, stream: m.s, exp: m.exp, events: m.ev };
      attempts.set(key, a);
      for (const e of m.ev) {
        assert.ok(!byId.has(e.id), `event id ${e.id} tried twice`);
        byId.set(e.id, a);
      }
      continue;
    }
    const a = attempts.get(key);
    assert.ok(a !== undefined, `run ${run}: '${m.t}' for append ${m.k} that was never tried`);
    assert.equal(m.s, a.stream);
    if (m.t === 'ack') {
      assert.deepEqual(m.ids, a.events.map((e) => e.id));
      a.ack = { rev: m.rev, pos: m.pos };
    } else {
      a.rejected = m.code;
    }
  }
}

function describe(e: RecordedEvent): string {
  return `${e.stream}@${e.revision} position ${e.position} id ${e.id}`;
}

/** Opens the store after a kill and checks everything the header comment promises. */
async function verify(dir: string, run: number, attempts: Map<string, Attempt>, byId: Map<string, Attempt>): Promise<{ revisions: Record<string, number>; events: number; truncatedBytes: number; unackedKept: number }> {
  const store = await openStore({ dir, segmentBytes: SEGMENT_BYTES });
  try {
    const where = `after kill ${run}`;
    const all = await store.readAll().toArray();
    assert.equal(await store.headPosition(), all.length, `${where}: head position is the number of events`);

    // The log as a whole: gapless positions, unique ids, gapless revisions per stream.
    const seenIds = new Set<string>();
    const byStream = new Map<string, RecordedEvent[]>();
    for (let i = 0; i < all.length; i++) {
      const e = all[i]!;
      assert.equal(e.position, i + 1, `${where}: positions must increase by 1 (event ${i} is ${describe(e)})`);
      assert.ok(!seenIds.has(e.id), `${where}: id ${e.id} appears twice (${describe(e)})`);
      seenIds.add(e.id);
      let list = byStream.get(e.stream);
      if (list === undefined) byStream.set(e.stream, (list = []));
      assert.equal(e.revision, list.length, `${where}: stream ${e.stream} has a gap or a duplicate revision at ${describe(e)}`);
      list.push(e);

      // Every event in the log was attempted, and is what was attempted.
      const a = byId.get(e.id);
      assert.ok(a !== undefined, `${where}: ${describe(e)} was never appended by anyone`);
      const idx = a.events.findIndex((x) => x.id === e.id);
      const tried = a.events[idx]!;
      assert.equal(e.stream, a.stream, `${where}: ${describe(e)} is in the wrong stream`);
      assert.equal(e.type, tried.type, `${where}: ${describe(e)} has the wrong type`);
      // Byte for byte: the store keeps JSON data as JSON.stringify wrote it.
      if (Buffer.from(e.rawData).toString('utf8') !== JSON.stringify(tried.data)) {
        assert.fail(`${where}: ${describe(e)} has the wrong data: ${Buffer.from(e.rawData).toString('utf8')} instead of ${JSON.stringify(tried.data)}`);
      }
      const meta = e.metadata;
      if (Object.keys(meta).length !== 1 || meta['loop'] !== (tried.data as { l: number }).l) {
        assert.fail(`${where}: ${describe(e)} has the wrong metadata ${JSON.stringify(meta)}`);
      }
    }

    // Appends: all or nothing, contiguous, and acknowledged ones exactly as acknowledged.
    let unackedKept = 0; // this run's appends in flight at the kill that made it to disk
    const positionOf = new Map<string, RecordedEvent>();
    for (const e of all) positionOf.set(e.id, e);
    for (const a of attempts.values()) {
      const found = a.events.map((x) => positionOf.get(x.id));
      const present = found.filter((x) => x !== undefined).length;
      const label = `${where}: append ${a.run}:${a.k} to ${a.stream} (${a.events.length} events, expected ${a.exp})`;
      if (a.ack !== undefined) assert.equal(present, a.events.length, `${label} was acknowledged but ${a.events.length - present} of its events are missing`);
      if (a.rejected !== undefined) assert.equal(present, 0, `${label} was refused (${a.rejected}) but is in the log`);
      if (present === 0) continue;
      if (a.run === run && a.ack === undefined) unackedKept++;
      assert.equal(present, a.events.length, `${label}: only ${present} of its events survived (an append must be atomic)`);
      const first = found[0]!;
      for (let i = 0; i < found.length; i++) {
        assert.equal(found[i]!.position, first.position + i, `${label}: its events are not contiguous in the log`);
        assert.equal(found[i]!.revision, first.revision + i, `${label}: its revisions are not consecutive`);
      }
      if (a.exp === 'no_stream') assert.equal(first.revision, 0, `${label}: written although the stream existed`);
      else if (typeof a.exp === 'number') assert.equal(first.revision, a.exp + 1, `${label}: written at the wrong revision`);
      if (a.ack !== undefined) {
        assert.deepEqual(found.map((x) => x!.position), a.ack.pos, `${label}: positions differ from the acknowledged ones`);
        assert.equal(found[found.length - 1]!.revision, a.ack.rev, `${label}: revision differs from the acknowledged one`);
      }
    }

    // Per stream: readStream and streamInfo agree with readAll.
    const revisions: Record<string, number> = {};
    for (let i = 0; i < STREAMS; i++) {
      const s = streamName(i);
      const expected = byStream.get(s) ?? [];
      const read = await store.readStream(s).toArray();
      assert.deepEqual(
        read.map((e) => [e.position, e.revision, e.id, e.type, Buffer.from(e.rawData).toString('hex')]),
        expected.map((e) => [e.position, e.revision, e.id, e.type, Buffer.from(e.rawData).toString('hex')]),
        `${where}: readStream('${s}') disagrees with readAll`,
      );
      const info = await store.streamInfo(s);
      if (expected.length === 0) {
        assert.equal(info, undefined, `${where}: streamInfo('${s}') for a stream with no events`);
        revisions[s] = -1;
      } else {
        assert.ok(info !== undefined, `${where}: streamInfo('${s}') missing`);
        assert.equal(info.revision, expected.length - 1, `${where}: streamInfo('${s}').revision`);
        assert.equal(info.eventCount, expected.length, `${where}: streamInfo('${s}').eventCount`);
        assert.equal(info.firstPosition, expected[0]!.position, `${where}: streamInfo('${s}').firstPosition`);
        assert.equal(info.lastPosition, expected[expected.length - 1]!.position, `${where}: streamInfo('${s}').lastPosition`);
        revisions[s] = info.revision;
      }
    }
    assert.deepEqual(
      (await store.listStreams({ limit: 1000 })).map((x) => x.stream).sort(),
      [...byStream.keys()].sort(),
      `${where}: listStreams disagrees with readAll`,
    );
    return { revisions, events: all.length, truncatedBytes: store.recovery.truncatedBytes, unackedKept };
  } finally {
    await store.close();
  }
}

test('acknowledged appends survive kill -9 at random moments, and no append is ever half there', { timeout: 120_000 }, async (t) => {
  // Proves that durability 'always' plus recovery keep every acknowledged event, intact and in
  // place, and never expose part of an append, across repeated SIGKILLs of a busy writer.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-crash-'));
  try {
    const attempts = new Map<string, Attempt>();
    const byId = new Map<string, Attempt>();
    let revisions: Record<string, number> = Object.fromEntries(Array.from({ length: STREAMS }, (_, i) => [streamName(i), -1]));
    let acked = 0;
    let runsWithAcks = 0;
    let truncations = 0;
    let events = 0;
    let unackedKept = 0;
    for (let run = 1; run <= KILLS; run++) {
      const r = await runChild(dir);
      // The child carries on from exactly the state the last check found.
      assert.deepEqual(r.ready, revisions, `run ${run}: the child found other revisions than the last check`);
      record(attempts, byId, run, r.messages);
      const runAcks = r.messages.filter((m) => m.t === 'ack').length;
      acked += runAcks;
      if (runAcks > 0) runsWithAcks++;
      const v = await verify(dir, run, attempts, byId);
      assert.ok(v.events >= events, `run ${run}: the log shrank from ${events} to ${v.events} events`);
      events = v.events;
      revisions = v.revisions;
      if (v.truncatedBytes > 0) truncations++;
      unackedKept += v.unackedKept;
    }
    // Guard against a test that passes because nothing happened.
    assert.ok(runsWithAcks >= KILLS / 2, `only ${runsWithAcks} of ${KILLS} runs got an append acknowledged`);
    assert.ok(acked > 100, `only ${acked} appends were acknowledged in all`);
    t.diagnostic(`${KILLS} kills, ${acked} acknowledged appends, ${events} events in the log, ${unackedKept} unacknowledged appends kept, ${truncations} recoveries cut a torn tail`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
