/**
 * A full disk: appends fail with STORAGE_FULL (retriable, nothing of them written), the store
 * stays open and readable, and appends resume on their own once there is space, with no gap,
 * duplicate or half-written append, across a reopen too. The fault is injected by making the
 * log's writes (and a new segment's creation) fail with ENOSPC, as a full filesystem does.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { StorageFullError, openStore } from '../../src/index.js';
import { tempDir } from '../helpers.js';

function enospc(): NodeJS.ErrnoException {
  const e = new Error('ENOSPC: no space left on device, write') as NodeJS.ErrnoException;
  e.code = 'ENOSPC';
  e.errno = -28;
  return e;
}

/** Makes fs.write fail with ENOSPC until the returned function is called. */
function fillDisk(): () => void {
  const original = fs.write;
  (fs as { write: unknown }).write = (...args: unknown[]) => {
    const cb = args[args.length - 1] as (err: Error | null, n?: number) => void;
    process.nextTick(() => cb(enospc()));
  };
  return () => {
    (fs as { write: unknown }).write = original;
  };
}

test('appends fail with STORAGE_FULL while the disk is full, reads go on, and appends resume without a restart', async () => {
  const dir = tempDir();
  let store = await openStore({ dir });
  try {
    await store.append('acct-1', [{ type: 'Opened' }]);
    const sub = store.subscribeToAll({ from: 'start', filter: { category: 'acct' } });
    const seen: number[] = [];
    const following = (async () => {
      for await (const e of sub) seen.push(e.revision);
    })();
    const free = fillDisk();
    const failed = await Promise.allSettled([store.append('acct-1', [{ type: 'Deposited', data: { n: 1 } }]), store.append('acct-2', [{ type: 'Opened' }])]);
    for (const r of failed) {
      assert.equal(r.status, 'rejected');
      assert.ok((r as PromiseRejectedResult).reason instanceof StorageFullError);
      assert.equal(((r as PromiseRejectedResult).reason as StorageFullError).retriable, true);
    }
    // Still readable, and nothing of the failed appends is visible.
    assert.equal((await store.readStream('acct-1').toArray()).length, 1);
    assert.equal(await store.headPosition(), 1);
    assert.equal(await store.streamInfo('acct-2'), undefined);
    free();
    // Space again: the same appends succeed, at the positions the failed ones did not take.
    assert.deepEqual((await store.append('acct-1', [{ type: 'Deposited', data: { n: 1 } }], { expectedRevision: 0 })).positions, [2]);
    assert.deepEqual((await store.append('acct-2', [{ type: 'Opened' }])).positions, [3]);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, [0, 1, 0]);
    await sub.close();
    await following;
  } finally {
    await store.close();
  }
  store = await openStore({ dir });
  try {
    const all = await store.readAll().toArray();
    assert.deepEqual(
      all.map((e) => [e.position, e.stream, e.revision]),
      [
        [1, 'acct-1', 0],
        [2, 'acct-1', 1],
        [3, 'acct-2', 0],
      ],
    );
  } finally {
    await store.close();
  }
});

test('no room for a new segment: STORAGE_FULL, the half-made segment is removed, and the roll succeeds later', async () => {
  const dir = tempDir();
  const store = await openStore({ dir, segmentBytes: 64 * 1024 });
  try {
    const pad = 'x'.repeat(20_000);
    await store.append('big-1', [{ type: 'A', data: { pad } }]);
    await store.append('big-1', [{ type: 'A', data: { pad } }]);
    const segmentsBefore = fs.readdirSync(`${dir}/log`).length;
    // The next append needs a new segment; writing its header hits a full disk.
    const original = fs.writeSync;
    (fs as { writeSync: unknown }).writeSync = (...args: unknown[]) => {
      if (typeof args[0] === 'number' && (args[1] as Buffer).length === 64) throw enospc();
      return (original as (...a: unknown[]) => number)(...args);
    };
    try {
      await store.append('big-1', [{ type: 'A', data: { pad } }]);
      await store.append('big-1', [{ type: 'A', data: { pad } }]);
      assert.fail('an append needing a new segment should have failed');
    } catch (err) {
      assert.ok(err instanceof StorageFullError, String(err));
    } finally {
      (fs as { writeSync: unknown }).writeSync = original;
    }
    assert.equal(fs.readdirSync(`${dir}/log`).length, segmentsBefore, 'no half-made segment is left');
    const r = await store.append('big-1', [{ type: 'A', data: { pad } }, { type: 'A', data: { pad } }]);
    assert.equal(r.revision, (await store.streamInfo('big-1'))!.revision);
    const revisions = (await store.readStream('big-1').toArray()).map((e) => e.revision);
    assert.deepEqual(revisions, Array.from({ length: revisions.length }, (_, i) => i));
  } finally {
    await store.close();
  }
});
