import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { openStore } from '../../src/index.js';
import type { FileEventStore } from '../../src/index.js';
import { tempDir } from '../helpers.js';

/** 3 streams in 2 categories, interleaved, with ~300-byte events so 64 KiB segments roll often. */
async function fill(store: FileEventStore, n: number): Promise<void> {
  const names = ['order-1', 'order-2', 'user-1'];
  for (let i = 0; i < n; i++) {
    await store.append(names[i % 3]!, [{ type: i % 2 === 0 ? 'Even' : 'Odd', data: { i, pad: 'x'.repeat(200) } }]);
  }
}

test('readStream: forwards, backwards, from a revision, with a limit', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    await fill(store, 30);
    const revs = async (o: Parameters<FileEventStore['readStream']>[1]) => (await store.readStream('order-1', o).toArray()).map((e) => e.revision);
    assert.deepEqual(await revs(undefined), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(await revs({ from: 7 }), [7, 8, 9]);
    assert.deepEqual(await revs({ from: 2, limit: 3 }), [2, 3, 4]);
    assert.deepEqual(await revs({ direction: 'backwards', limit: 3 }), [9, 8, 7]);
    assert.deepEqual(await revs({ direction: 'backwards', from: 1 }), [1, 0]);
    assert.deepEqual(await revs({ from: 'end' }), []);
    assert.deepEqual(await revs({ from: 99 }), []);
    assert.deepEqual(await revs({ limit: 0 }), []);
    assert.deepEqual(await store.readStream('missing-1').toArray(), []);
    // Positions of a stream's events follow the interleaving in the log.
    assert.deepEqual((await store.readStream('user-1').toArray()).slice(0, 3).map((e) => e.position), [3, 6, 9]);
  } finally {
    await store.close();
  }
});

test('readAll: from a position, both directions, with filters by prefix, category and type', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    await fill(store, 30);
    const pos = async (o: Parameters<FileEventStore['readAll']>[0]) => (await store.readAll(o).toArray()).map((e) => e.position);
    assert.deepEqual(await pos(undefined), Array.from({ length: 30 }, (_, i) => i + 1));
    assert.deepEqual(await pos({ from: 28 }), [28, 29, 30]);
    assert.deepEqual(await pos({ from: 'end' }), []);
    assert.deepEqual(await pos({ direction: 'backwards', limit: 3 }), [30, 29, 28]);
    assert.deepEqual(await pos({ direction: 'backwards', from: 2 }), [2, 1]);
    assert.deepEqual(await pos({ filter: { category: 'user' }, limit: 3 }), [3, 6, 9]);
    assert.deepEqual(await pos({ filter: { streamPrefix: 'order-2' }, limit: 2 }), [2, 5]);
    assert.deepEqual(await pos({ filter: { types: ['Odd'], category: 'order' }, limit: 4 }), [2, 4, 8, 10]);
    assert.deepEqual(await pos({ filter: { category: 'nope' } }), []);
    // The category is the part before the first '-': 'ord' is not a category of 'order-1'.
    assert.deepEqual(await pos({ filter: { category: 'ord' } }), []);
  } finally {
    await store.close();
  }
});

test('reads cross segment boundaries in both directions, and seek to a position in a later segment', async () => {
  const dir = tempDir();
  const store = await openStore({ dir, durability: 'none', segmentBytes: 64 * 1024 });
  try {
    await fill(store, 1500);
    const segments = fs.readdirSync(path.join(dir, 'log')).filter((f) => f.endsWith('.seg'));
    assert.ok(segments.length >= 5, `expected several segments, got ${segments.length}`);
    const all = await store.readAll().toArray();
    assert.deepEqual(all.map((e) => e.position), Array.from({ length: 1500 }, (_, i) => i + 1));
    const back = await store.readAll({ direction: 'backwards' }).toArray();
    assert.deepEqual(back.map((e) => e.position), Array.from({ length: 1500 }, (_, i) => 1500 - i));
    assert.deepEqual((await store.readAll({ from: 1234, limit: 2 }).toArray()).map((e) => e.position), [1234, 1235]);
    assert.deepEqual((await store.readAll({ from: 1234, direction: 'backwards', limit: 2 }).toArray()).map((e) => e.position), [1234, 1233]);
    const stream = await store.readStream('order-2').toArray();
    assert.equal(stream.length, 500);
    assert.deepEqual(stream.map((e) => (e.data as { i: number }).i), Array.from({ length: 500 }, (_, k) => 3 * k + 1));
    const back2 = await store.readStream('order-2', { direction: 'backwards' }).toArray();
    assert.deepEqual(back2.map((e) => e.revision), Array.from({ length: 500 }, (_, k) => 499 - k));
  } finally {
    await store.close();
  }
});

test('the index survives a clean close: reopening replays nothing and reads agree', async () => {
  const dir = tempDir();
  let store = await openStore({ dir, durability: 'none', segmentBytes: 64 * 1024 });
  await fill(store, 600);
  const before = await store.readStream('user-1').toArray();
  await store.close();
  store = await openStore({ dir, durability: 'none', segmentBytes: 64 * 1024 });
  try {
    assert.equal(store.recovery.replayedEvents, 0);
    assert.equal(store.recovery.truncatedBytes, 0);
    assert.equal(store.recovery.indexRebuilt, false);
    const after = await store.readStream('user-1').toArray();
    assert.deepEqual(after.map((e) => [e.position, e.id]), before.map((e) => [e.position, e.id]));
    assert.deepEqual(await store.streamInfo('user-1'), {
      stream: 'user-1',
      revision: 199,
      eventCount: 200,
      firstPosition: 3,
      lastPosition: 600,
      createdAt: before[0]!.timestamp,
      updatedAt: before[199]!.timestamp,
    });
    assert.equal((await store.append('user-1', [{ type: 'Next' }], { expectedRevision: 199 })).revision, 200);
  } finally {
    await store.close();
  }
});

test('a read started before appends sees the log as it was when it started', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    await fill(store, 10);
    const it = store.readAll()[Symbol.asyncIterator]();
    const first = await it.next();
    await fill(store, 10);
    let n = first.done ? 0 : 1;
    for (let r = await it.next(); !r.done; r = await it.next()) n++;
    assert.equal(n, 10);
    assert.equal((await store.readAll().toArray()).length, 20);
  } finally {
    await store.close();
  }
});

test('listStreams pages through names by prefix', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    for (const s of ['a-1', 'a-2', 'a-3', 'b-1', 'ab-1']) await store.append(s, [{ type: 'T' }]);
    assert.deepEqual((await store.listStreams({ prefix: 'a-' })).map((s) => s.stream), ['a-1', 'a-2', 'a-3']);
    assert.deepEqual((await store.listStreams({ prefix: 'a-', after: 'a-1', limit: 1 })).map((s) => s.stream), ['a-2']);
    assert.deepEqual((await store.listStreams()).map((s) => s.stream), ['a-1', 'a-2', 'a-3', 'ab-1', 'b-1']);
  } finally {
    await store.close();
  }
});

test('durability modes interval and none keep every acknowledged append across a clean close', async () => {
  for (const durability of ['interval', 'none'] as const) {
    const dir = tempDir();
    let store = await openStore({ dir, durability, syncIntervalMs: 5 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => store.append(`s-${i % 3}`, [{ type: 'T', data: i }])));
    await store.close();
    store = await openStore({ dir, durability });
    assert.equal(await store.headPosition(), 100, durability);
    await store.close();
  }
});
