/**
 * Crash test: a projection process killed with SIGKILL, on LMDB and on PostgreSQL, once while
 * a batch is half applied (its handler blocks) and then at random moments. After each kill the
 * read model is opened again and must agree with its checkpoint: every stream's counter equals
 * the number of its events up to the checkpoint, no more (applied twice) and no fewer (lost).
 * The child's own handler also refuses any event that is not the next of its stream. Finally a
 * last run finishes from the checkpoint and the counters equal the whole log's.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { openStore } from '../../src/index.js';
import { openLmdbReadModelStore, openPostgresReadModelStore } from '../../src/projections/index.js';
import type { ReadModelStore } from '../../src/projections/index.js';
import { tempDir } from '../helpers.js';
import { postgresUrl } from './stores.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHILD = path.join(ROOT, 'test/projections/crash-child.ts');
const STREAMS = 20;
const EVENTS = 20_000;

interface Child {
  lines: string[];
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

function startChild(args: string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    lines,
    exited,
    async waitFor(pattern, ms = 20_000) {
      const t0 = Date.now();
      for (;;) {
        const hit = lines.find((l) => pattern.test(l));
        if (hit !== undefined) return hit;
        if (child.exitCode !== null || Date.now() - t0 > ms) throw new Error(`child did not print ${pattern} (exit ${child.exitCode}):\n${lines.join('\n')}\n${err}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Checks the read model against the log up to its checkpoint; returns the checkpoint. */
async function checkConsistent(eventsDir: string, rm: ReadModelStore): Promise<number> {
  const cat = await rm.catalog('counts');
  const slot = cat.slots.find((s) => s.slot === cat.active);
  if (slot === undefined) return 0;
  const store = await openStore({ dir: eventsDir });
  try {
    const want = new Map<string, { n: number; last: number }>();
    let total = 0;
    for await (const page of store.readAll({ filter: { category: 'tick' } }).pages()) {
      for (const e of page) {
        if (e.position > slot.position) break;
        want.set(e.stream, { n: (want.get(e.stream)?.n ?? 0) + 1, last: e.revision });
        total++;
      }
    }
    const got = new Map((await rm.list('counts', 'streams', { limit: 1000 })).map((d) => [d.id, d.doc as { n: number; last: number }]));
    assert.deepEqual(got, want, `counters at checkpoint ${slot.position}`);
    assert.deepEqual(await rm.get('counts', 'totals', 'all'), total === 0 ? undefined : { n: total });
    return slot.position;
  } finally {
    await store.close();
  }
}

async function crashScenario(open: () => Promise<ReadModelStore>, target: string, schema: string, kind: 'lmdb' | 'postgres', note: (s: string) => void): Promise<void> {
  const eventsDir = tempDir('eventful-crash-proj-');
  const store = await openStore({ dir: eventsDir, durability: 'none' });
  const per = EVENTS / STREAMS / 10;
  for (let round = 0; round < 10; round++) {
    await Promise.all(Array.from({ length: STREAMS }, (_, s) => store.append(`tick-${s}`, Array.from({ length: per }, (_, i) => ({ type: 'Tick', data: { i } })))));
    await store.append(`other-${round}`, [{ type: 'Tick' }]); // another category: not counted
  }
  const blockAt = (await store.readAll({ from: Math.floor(EVENTS * 0.6), limit: 1, filter: { category: 'tick' } }).toArray())[0]!.position;
  await store.close();

  // 1. Killed while a batch is half applied: nothing of it is there, everything before it is.
  const child = startChild([eventsDir, kind, target, schema, String(blockAt), '1000', '0']);
  await child.waitFor(/^blocked$/);
  await child.kill();
  let rm = await open();
  const checkpoint = await checkConsistent(eventsDir, rm);
  assert.ok(checkpoint < blockAt && checkpoint >= blockAt - 1100, `checkpoint ${checkpoint} is the batch before ${blockAt}`);
  await rm.close();

  // 2. Killed at random moments (mid-apply, mid-commit, between commits).
  const seen = [checkpoint];
  for (let i = 0; i < 3; i++) {
    const c = startChild([eventsDir, kind, target, schema, '0', String(50 + Math.floor(Math.random() * 300)), '20']);
    await c.waitFor(/^ready$/);
    // Once it has applied some more events, kill it wherever it is then.
    const goal = seen.at(-1)! + 250 + Math.floor(Math.random() * 2500);
    for (let t0 = Date.now(); Date.now() - t0 < 30_000; await new Promise((r) => setTimeout(r, 1))) {
      if (c.lines.includes('done') || c.lines.some((l) => l.startsWith('at ') && Number(l.slice(3)) >= goal)) break;
    }
    await new Promise((r) => setTimeout(r, Math.random() * 5));
    await c.kill();
    rm = await open();
    seen.push(await checkConsistent(eventsDir, rm));
    await rm.close();
  }
  note(`checkpoints after each kill: ${seen.join(', ')} (of ${EVENTS + 10} positions)`);

  // 3. A last run finishes from the checkpoint: every event exactly once.
  const last = startChild([eventsDir, kind, target, schema, '0', '700', '0']);
  await last.waitFor(/^done$/, 30_000);
  assert.equal(await last.exited, 0);
  rm = await open();
  const end = await checkConsistent(eventsDir, rm);
  assert.deepEqual(await rm.get('counts', 'totals', 'all'), { n: EVENTS });
  assert.ok(end >= EVENTS);
  await rm.close();
}

test('lmdb: SIGKILL mid-batch and at random moments leaves documents and checkpoint consistent; every event applied exactly once', async (t) => {
  const dir = tempDir('eventful-crash-rm-');
  await crashScenario(async () => openLmdbReadModelStore({ dir }), dir, '-', 'lmdb', (s) => t.diagnostic(s));
});

const pg = await postgresUrl();
test('postgres: SIGKILL mid-batch and at random moments leaves documents and checkpoint consistent; every event applied exactly once', { skip: 'reason' in pg ? pg.reason : false }, async (t) => {
  if (!('url' in pg)) return;
  const schema = `crash_${process.pid}_${randomBytes(3).toString('hex')}`;
  try {
    await crashScenario(async () => openPostgresReadModelStore({ url: pg.url, schema }), pg.url, schema, 'postgres', (s) => t.diagnostic(s));
  } finally {
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    await sql`drop schema if exists ${sql(schema)} cascade`;
    await sql.end();
  }
});
