/**
 * One conformance suite, run on every read-model store (memory, LMDB, PostgreSQL): a batch's
 * documents and its checkpoint commit together or not at all; a stale checkpoint or a dropped
 * slot refuses the commit and changes nothing; handlers see their own batch's writes and cannot
 * change committed documents by mutating what they read; slots are activated and dropped
 * atomically; queries (get, list with paging and prefix, find by containment, count) agree
 * across stores; and what was committed is there after the store is opened again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError, ProjectionConflictError } from '../../src/core/errors.js';
import type { ReadModelStore } from '../../src/projections/index.js';
import { storeKinds } from './stores.js';

const { kinds, skipped } = await storeKinds();
if (skipped !== undefined) test(`PostgreSQL read-model store (skipped: ${skipped})`, { skip: skipped }, () => {});

async function setUp(store: ReadModelStore): Promise<void> {
  await store.createSlot('shop', 'v1', 1);
  await store.activate('shop', 'v1');
}

for (const k of kinds) {
  test(`${k.kind}: documents and checkpoint commit together; a stale checkpoint commits nothing`, async () => {
    const { store, reopen, cleanup } = await k.fresh();
    try {
      await setUp(store);
      const b = store.batch('shop', 'v1');
      b.put('orders', 'o-1', { status: 'open', total: 10, lines: [{ sku: 'a' }] });
      b.put('orders', 'o-2', { status: 'open', total: 20, lines: [{ sku: 'b' }] });
      b.put('orders', 'o-3', { status: 'shipped', total: 5, lines: [] });
      b.update('counters', 'all', (d: { n: number } | undefined) => ({ n: (d?.n ?? 0) + 3 }));
      await store.commit(b, 0, { position: 10, eventTimestamp: 1000 });

      let cat = await store.catalog('shop');
      assert.equal(cat.active, 'v1');
      assert.deepEqual(
        cat.slots.map((s) => [s.slot, s.version, s.position, s.eventTimestamp]),
        [['v1', 1, 10, 1000]],
      );
      assert.deepEqual(await store.get('shop', 'orders', 'o-1'), { status: 'open', total: 10, lines: [{ sku: 'a' }] });
      assert.deepEqual(await store.get('shop', 'counters', 'all'), { n: 3 });
      assert.equal(await store.get('shop', 'orders', 'nope'), undefined);

      // A batch from a checkpoint that is not the slot's: refused, and nothing of it is written.
      const stale = store.batch('shop', 'v1');
      stale.put('orders', 'o-9', { status: 'ghost' });
      stale.update('counters', 'all', (d: { n: number }) => ({ n: d.n + 100 }));
      await assert.rejects(store.commit(stale, 0, { position: 11, eventTimestamp: 1001 }), (e: unknown) => e instanceof ProjectionConflictError && e.details.reason === 'checkpoint_moved');
      assert.equal(await store.get('shop', 'orders', 'o-9'), undefined);
      assert.deepEqual(await store.get('shop', 'counters', 'all'), { n: 3 });
      cat = await store.catalog('shop');
      assert.equal(cat.slots[0]!.position, 10);

      // A second batch: update, delete, update through null (a delete).
      const b2 = store.batch('shop', 'v1');
      b2.update('orders', 'o-1', (d: { status: string }) => {
        d.status = 'paid'; // changed in place, nothing returned: kept
      });
      b2.delete('orders', 'o-2');
      b2.update('orders', 'o-3', () => null);
      b2.update('counters', 'all', (d: { n: number } | undefined) => ({ n: (d?.n ?? 0) + 1 }));
      b2.update('counters', 'none', () => undefined); // nothing there, nothing returned: nothing stored
      await store.commit(b2, 10, { position: 20, eventTimestamp: 2000 });
      assert.deepEqual(await store.get('shop', 'orders', 'o-1'), { status: 'paid', total: 10, lines: [{ sku: 'a' }] });
      assert.equal(await store.get('shop', 'orders', 'o-2'), undefined);
      assert.equal(await store.get('shop', 'orders', 'o-3'), undefined);
      assert.deepEqual(await store.get('shop', 'counters', 'all'), { n: 4 });
      assert.equal(await store.get('shop', 'counters', 'none'), undefined);
      assert.equal(await store.count('shop', 'orders'), 1);

      if (reopen !== undefined) {
        await store.close();
        const again = await reopen();
        assert.deepEqual((await again.catalog('shop')).slots.map((s) => [s.slot, s.position, s.eventTimestamp]), [['v1', 20, 2000]]);
        assert.deepEqual(await again.get('shop', 'orders', 'o-1'), { status: 'paid', total: 10, lines: [{ sku: 'a' }] });
        assert.deepEqual(await again.get('shop', 'counters', 'all'), { n: 4 });
      }
    } finally {
      await cleanup();
    }
  });

  test(`${k.kind}: a handler sees its batch's writes; what it reads is a copy; queries page, filter and count`, async () => {
    const { store, cleanup } = await k.fresh();
    try {
      await setUp(store);
      const seed = store.batch('shop', 'v1');
      for (let i = 0; i < 25; i++) seed.put('items', `item-${String(i).padStart(2, '0')}`, { n: i, tags: i % 2 === 0 ? ['even'] : ['odd'], kind: i < 10 ? 'small' : 'big' });
      seed.put('other', 'x', { n: -1 });
      await store.commit(seed, 0, { position: 1, eventTimestamp: 1 });

      const b = store.batch('shop', 'v1');
      const got = (await b.get('items', 'item-03')) as { n: number };
      got.n = 999; // a read is a copy: changing it changes nothing unless it is written back
      assert.deepEqual(await b.get('items', 'item-03'), { n: 3, tags: ['odd'], kind: 'small' });
      b.put('items', 'item-99', { n: 99, tags: [], kind: 'big' });
      assert.deepEqual(await b.get('items', 'item-99'), { n: 99, tags: [], kind: 'big' }, 'a handler reads its own batch');
      b.update('items', 'item-04', (d: { n: number }) => ({ ...d, n: d.n * 10 }));
      assert.equal(((await b.get('items', 'item-04')) as { n: number }).n, 40, 'an update is visible to later reads of the batch');
      b.delete('items', 'item-05');
      assert.equal(await b.get('items', 'item-05'), undefined);
      b.update('items', 'item-05', (d) => {
        assert.equal(d, undefined, 'an update after a delete starts from nothing');
        return { n: 5, tags: ['again'], kind: 'small' };
      });
      assert.throws(() => b.put('items', 'bad', null as never), InvalidArgumentError);
      assert.throws(() => b.put('items', '', { n: 1 }), InvalidArgumentError);
      assert.throws(() => b.put('', 'x', { n: 1 }), InvalidArgumentError);
      assert.throws(() => b.put('a\u0000b', 'x', { n: 1 }), InvalidArgumentError);
      await store.commit(b, 1, { position: 2, eventTimestamp: 2 });
      assert.deepEqual(await store.get('shop', 'items', 'item-03'), { n: 3, tags: ['odd'], kind: 'small' });

      // A query's result is a copy too.
      const q = (await store.get('shop', 'items', 'item-03')) as { n: number };
      q.n = -5;
      assert.equal(((await store.get('shop', 'items', 'item-03')) as { n: number }).n, 3);

      const page1 = await store.list('shop', 'items', { limit: 10 });
      assert.deepEqual(page1.map((e) => e.id), Array.from({ length: 10 }, (_, i) => `item-${String(i).padStart(2, '0')}`));
      const page2 = await store.list('shop', 'items', { limit: 10, after: page1.at(-1)!.id });
      assert.equal(page2[0]!.id, 'item-10');
      const rest = await store.list('shop', 'items', { after: 'item-19' });
      assert.deepEqual(rest.map((e) => e.id), ['item-20', 'item-21', 'item-22', 'item-23', 'item-24', 'item-99']);
      assert.deepEqual((await store.list('shop', 'items', { prefix: 'item-1' })).map((e) => e.id), ['item-10', 'item-11', 'item-12', 'item-13', 'item-14', 'item-15', 'item-16', 'item-17', 'item-18', 'item-19']);
      assert.deepEqual((await store.list('shop', 'items', { prefix: 'item-1', after: 'item-17' })).map((e) => e.id), ['item-18', 'item-19']);
      assert.deepEqual(await store.list('shop', 'nothing'), []);
      const smallEven = await store.find('shop', 'items', { kind: 'small', tags: ['even'] });
      assert.deepEqual(smallEven.map((e) => e.id), ['item-00', 'item-02', 'item-04', 'item-06', 'item-08']);
      assert.deepEqual((await store.find('shop', 'items', { kind: 'small', tags: ['even'] }, { after: 'item-04', limit: 2 })).map((e) => e.id), ['item-06', 'item-08']);
      assert.equal((await store.find('shop', 'items', { n: 40 }))[0]!.id, 'item-04');
      assert.equal(await store.count('shop', 'items'), 26);
      assert.equal(await store.count('shop', 'other'), 1);
      await assert.rejects(store.list('shop', 'items', { limit: 0 }), InvalidArgumentError);
      await assert.rejects(store.list('shop', 'items', { bogus: 1 } as never), /unknown option 'bogus'/);
    } finally {
      await cleanup();
    }
  });

  test(`${k.kind}: slots are built beside the active one, switched atomically, and dropped`, async () => {
    const { store, cleanup } = await k.fresh();
    try {
      await setUp(store);
      const b1 = store.batch('shop', 'v1');
      b1.put('orders', 'o-1', { built: 'v1' });
      await store.commit(b1, 0, { position: 5, eventTimestamp: 5 });

      await store.createSlot('shop', 'v2', 2);
      await assert.rejects(store.createSlot('shop', 'v2', 2), /already has a slot/);
      const b2 = store.batch('shop', 'v2');
      b2.put('orders', 'o-1', { built: 'v2' });
      const r = await store.commit(b2, 0, { position: 5, eventTimestamp: 5 });
      assert.equal(r.active, 'v1', 'a commit reports the active slot');
      assert.deepEqual(await store.get('shop', 'orders', 'o-1'), { built: 'v1' }, 'queries read the active slot while v2 is built');
      assert.deepEqual(await store.get('shop', 'orders', 'o-1', { slot: 'v2' }), { built: 'v2' });

      await store.activate('shop', 'v2');
      assert.deepEqual(await store.get('shop', 'orders', 'o-1'), { built: 'v2' });
      assert.deepEqual((await store.list('shop', 'orders')).map((e) => e.doc), [{ built: 'v2' }]);
      await assert.rejects(store.activate('shop', 'v7'), /has no slot 'v7'/);
      await assert.rejects(store.dropSlot('shop', 'v2'), /is active/);

      // A runner still writing v1 commits there (harmlessly) and learns that v2 is active.
      const late = store.batch('shop', 'v1');
      late.put('orders', 'o-2', { built: 'v1' });
      assert.equal((await store.commit(late, 5, { position: 6, eventTimestamp: 6 })).active, 'v2');

      await store.dropSlot('shop', 'v1');
      const cat = await store.catalog('shop');
      assert.deepEqual(cat.slots.map((s) => s.slot), ['v2']);
      assert.equal(await store.get('shop', 'orders', 'o-1', { slot: 'v1' }), undefined);
      const orphan = store.batch('shop', 'v1');
      orphan.put('orders', 'o-3', { built: 'v1' });
      await assert.rejects(store.commit(orphan, 6, { position: 7, eventTimestamp: 7 }), (e: unknown) => e instanceof ProjectionConflictError && e.details.reason === 'slot_dropped');

      // A slot id can be used again after a drop, and starts empty.
      await store.createSlot('shop', 'v1', 1);
      assert.equal(await store.count('shop', 'orders', { slot: 'v1' }), 0);
      assert.deepEqual((await store.catalog('shop')).slots.find((s) => s.slot === 'v1')?.position, 0);
      // Another projection is separate.
      assert.deepEqual(await store.catalog('other'), { active: undefined, slots: [] });
      assert.equal(await store.get('other', 'orders', 'o-1'), undefined);
    } finally {
      await cleanup();
    }
  });

  test(`${k.kind}: two commits racing from the same checkpoint: exactly one lands`, async () => {
    const { store, cleanup } = await k.fresh();
    try {
      await setUp(store);
      const a = store.batch('shop', 'v1');
      const b = store.batch('shop', 'v1');
      a.update('c', 'x', (d: { n: number } | undefined) => ({ n: (d?.n ?? 0) + 1 }));
      b.update('c', 'x', (d: { n: number } | undefined) => ({ n: (d?.n ?? 0) + 1 }));
      const results = await Promise.allSettled([store.commit(a, 0, { position: 1, eventTimestamp: 1 }), store.commit(b, 0, { position: 1, eventTimestamp: 1 })]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(failed.reason instanceof ProjectionConflictError, String(failed.reason));
      assert.deepEqual(await store.get('shop', 'c', 'x'), { n: 1 });
    } finally {
      await cleanup();
    }
  });
}
