import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openStore } from '../../src/index.js';
import type { RecordedEvent, Subscription } from '../../src/index.js';
import { tempDir } from '../helpers.js';

async function take(sub: Subscription, n: number): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  if (n === 0) return out;
  for await (const e of sub) {
    out.push(e);
    if (out.length === n) break;
  }
  return out;
}

test('subscribeToAll from the start delivers history then live events, with no gap and no duplicate while appends race', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none', segmentBytes: 64 * 1024 });
  try {
    for (let i = 0; i < 300; i++) await store.append(`s-${i % 7}`, [{ type: 'T', data: { i, pad: 'x'.repeat(200) } }]);
    const sub = store.subscribeToAll({ from: 'start' });
    const writer = (async () => {
      for (let i = 300; i < 1300; i++) {
        await store.append(`s-${i % 7}`, [{ type: 'T', data: { i, pad: 'x'.repeat(200) } }]);
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }
    })();
    const got = await take(sub, 1300);
    await writer;
    assert.deepEqual(got.map((e) => e.position), Array.from({ length: 1300 }, (_, i) => i + 1));
    assert.equal(sub.lastPosition, 1300);
    await sub.close();
  } finally {
    await store.close();
  }
});

test('subscribeToAll from the end sees only new events, filtered', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'always' });
  try {
    await store.append('order-1', [{ type: 'Old' }]);
    const sub = store.subscribeToAll({ filter: { category: 'order' } });
    const pending = take(sub, 2);
    await store.append('user-1', [{ type: 'Skip' }]);
    await store.append('order-2', [{ type: 'New1' }]);
    await store.append('order-1', [{ type: 'New2' }]);
    assert.deepEqual((await pending).map((e) => e.type), ['New1', 'New2']);
  } finally {
    await store.close();
  }
});

test('subscribeToStream catches up from a revision and then follows that stream only', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    for (let i = 0; i < 10; i++) await store.append(i % 2 ? 'a-1' : 'b-1', [{ type: 'T', data: i }]);
    const sub = store.subscribeToStream('a-1', { from: 2 });
    const pending = take(sub, 6);
    for (let i = 10; i < 16; i++) await store.append(i % 2 ? 'a-1' : 'b-1', [{ type: 'T', data: i }]);
    const got = await pending;
    assert.deepEqual(got.map((e) => e.revision), [2, 3, 4, 5, 6, 7]);
    assert.ok(got.every((e) => e.stream === 'a-1'));
  } finally {
    await store.close();
  }
});

test('closing a subscription ends its iteration', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    const sub = store.subscribeToAll();
    const done = (async () => {
      let n = 0;
      for await (const _ of sub) n++;
      return n;
    })();
    await store.append('s', [{ type: 'T' }]);
    await new Promise((r) => setTimeout(r, 20));
    await sub.close();
    assert.equal(await done, 1);
  } finally {
    await store.close();
  }
});
