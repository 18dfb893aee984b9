/**
 * Consumer groups on the embedded store: single active consumer with failover from the last
 * checkpoint, partitioned mode spreading streams with their order kept, rebalancing while
 * appends race, checkpoints that survive a restart, and the typed errors of bad requests.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GroupConflictError, GroupNotFoundError, InvalidArgumentError, openStore, partitionOf } from '../../src/index.js';
import type { FileEventStore, GroupMember, RecordedEvent } from '../../src/index.js';
import { tempDir } from '../helpers.js';

async function appendMany(store: FileEventStore, streams: string[], perStream: number): Promise<void> {
  for (let r = 0; r < perStream; r++) {
    await Promise.all(streams.map((s) => store.append(s, [{ type: 'Tick', data: { r } }])));
  }
}

/** Takes `n` events from a member (its iterator stays usable: the loop does not close it). */
async function take(member: GroupMember, n: number, timeoutMs = 10_000): Promise<RecordedEvent[]> {
  const it = member[Symbol.asyncIterator]();
  const out: RecordedEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([it.next(), new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(1, deadline - Date.now()))))]);
    clearTimeout(timer);
    if (r === 'timeout') throw new Error(`took ${out.length} of ${n} events before the timeout`);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('single mode: one member receives, a standby takes over from the last checkpoint', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await appendMany(store, ['order-1', 'order-2'], 10);
    await store.append('other-1', [{ type: 'Tick' }]);
    const a = store.groups.join('billing', { filter: { category: 'order' }, autoCommit: false });
    const b = store.groups.join('billing');
    const got = await take(a, 8);
    assert.deepEqual(
      got.map((e) => e.position),
      got.map((e) => e.position).sort((x, y) => x - y),
    );
    assert.ok(got.every((e) => e.category === 'order'));
    assert.deepEqual(a.partitions, [0]);
    assert.deepEqual(b.partitions, []);
    await a.commit(got[5]!); // the first six are handled
    await a.close();
    const rest = await take(b, 14);
    assert.equal(rest[0]!.position, got[6]!.position, 'the standby goes on right after the checkpoint');
    assert.deepEqual(b.partitions, [0]);
    const stats = await store.groups.stats('billing');
    assert.equal(stats.members.length, 1);
    assert.equal(stats.settings.mode, 'single');
    await b.close();
  } finally {
    await store.close();
  }
});

test('auto-commit: asking for the next event commits the one before; close keeps the last one unhandled', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await appendMany(store, ['a-1'], 5);
    const m = store.groups.join('g');
    const got = await take(m, 3);
    await m.close();
    const s = await store.groups.stats('g');
    assert.equal(s.position, got[1]!.position, 'events 1 and 2 were handled, the third was being handled');
    assert.equal(s.lagEvents, 3);
    assert.equal(s.lagExact, true);
    assert.ok(s.lagMs >= 0);
    const again = store.groups.join('g');
    assert.equal((await take(again, 1))[0]!.position, got[2]!.position);
    await again.close();
  } finally {
    await store.close();
  }
});

test('partitioned mode: every event to exactly one member, each stream whole and in order', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const streams = Array.from({ length: 40 }, (_, i) => `acct-${i}`);
    await appendMany(store, streams, 5);
    const members = [0, 1, 2].map((i) => store.groups.join('proj', { mode: 'partitioned', partitions: 8, memberName: `m${i}` }));
    await until(async () => (await store.groups.stats('proj').catch(() => undefined))?.members.filter((m) => m.partitions.length > 0).length === 3);
    const parts = members.map((m) => m.partitions);
    assert.deepEqual(parts.flat().sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(parts.map((p) => p.length).sort(), [2, 3, 3]);
    const seen = new Map<string, { member: number; revisions: number[] }>();
    const counts = members.map((m) => streams.filter((s) => m.partitions.includes(partitionOf(s, 8))).length * 5);
    const got = await Promise.all(members.map((m, i) => take(m, counts[i]!)));
    got.forEach((events, i) => {
      for (const e of events) {
        const s = seen.get(e.stream) ?? { member: i, revisions: [] };
        assert.equal(s.member, i, `${e.stream} went to two members`);
        s.revisions.push(e.revision);
        seen.set(e.stream, s);
        assert.ok(members[i]!.partitions.includes(partitionOf(e.stream, 8)));
      }
    });
    assert.equal(seen.size, 40);
    for (const s of seen.values()) assert.deepEqual(s.revisions, [0, 1, 2, 3, 4]);
    for (const m of members) await m.close();
  } finally {
    await store.close();
  }
});

test('partitioned mode: members joining and leaving under load lose nothing and keep each stream in order', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const streams = Array.from({ length: 30 }, (_, i) => `dev-${i}`);
    const perStream = 150;
    const handled: Array<{ stream: string; revision: number }> = [];
    let stop = false;
    const run = (m: GroupMember): Promise<void> =>
      (async () => {
        for await (const e of m) {
          handled.push({ stream: e.stream, revision: e.revision });
          if (Math.random() < 0.2) await new Promise((r) => setImmediate(r));
          if (stop) break;
        }
      })();
    const producer = appendMany(store, streams, perStream);
    const live: Array<{ m: GroupMember; done: Promise<void> }> = [];
    const add = (): void => {
      const m = store.groups.join('rebal', { mode: 'partitioned', partitions: 12 });
      live.push({ m, done: run(m) });
    };
    add();
    add();
    for (let round = 0; round < 6; round++) {
      await new Promise((r) => setTimeout(r, 30));
      if (round % 2 === 0) add();
      else {
        const x = live.shift()!;
        await x.m.close();
        await x.done;
      }
    }
    await producer;
    const total = streams.length * perStream;
    await until(() => new Set(handled.map((h) => `${h.stream}/${h.revision}`)).size === total, 20_000);
    stop = true;
    for (const x of live) await x.m.close();
    const byStream = new Map<string, number[]>();
    for (const h of handled) {
      const list = byStream.get(h.stream) ?? [];
      list.push(h.revision);
      byStream.set(h.stream, list);
    }
    for (const [stream, revs] of byStream) {
      // At-least-once: a stream may go back to its checkpoint when it moves, but never skips ahead.
      for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! <= revs[i - 1]! + 1, `${stream} skipped from ${revs[i - 1]} to ${revs[i]}`);
      assert.equal(new Set(revs).size, perStream, `${stream} lost events`);
    }
    const duplicates = handled.length - total;
    assert.ok(duplicates < total, `${duplicates} redeliveries for ${total} events`);
  } finally {
    await store.close();
  }
});

test('checkpoints survive a restart; settings are fixed; reset and delete', async () => {
  const dir = tempDir();
  let store = await openStore({ dir });
  await appendMany(store, ['inv-1', 'inv-2', 'inv-3'], 4);
  let m = store.groups.join('audit', { mode: 'partitioned', partitions: 4, filter: { category: 'inv' } });
  const first = await take(m, 6);
  await m.commit();
  await m.close();
  await store.close();

  store = await openStore({ dir });
  try {
    const info = await store.groups.get('audit');
    assert.equal(info?.settings.partitions, 4);
    const conflicting = store.groups.join('audit', { mode: 'single' });
    await assert.rejects(conflicting[Symbol.asyncIterator]().next(), GroupConflictError);
    await conflicting.close();
    await assert.rejects(store.groups.create('audit', { mode: 'single' }), GroupConflictError);
    m = store.groups.join('audit');
    const rest = await take(m, 6);
    const firstIds = new Set(first.map((e) => e.id));
    assert.ok(rest.every((e) => !firstIds.has(e.id)), 'nothing committed comes again');
    assert.equal(first.length + rest.length, 12);
    await assert.rejects(store.groups.reset('audit', 'start'), GroupConflictError);
    await m.close();
    const s = await store.groups.reset('audit', 'start');
    assert.equal(s.position, 0);
    assert.equal(s.lagEvents, 12);
    const again = store.groups.join('audit');
    assert.equal((await take(again, 12)).length, 12);
    const ended = (async () => {
      for await (const _ of again) void _;
    })();
    await store.groups.delete('audit');
    await ended;
    assert.equal(await store.groups.get('audit'), undefined);
    await assert.rejects(store.groups.stats('audit'), GroupNotFoundError);
    // A new group of the same name starts afresh, not from the old checkpoints.
    const fresh = store.groups.join('audit', { from: 'start' });
    assert.equal((await take(fresh, 1))[0]!.position, 1);
    await fresh.close();
  } finally {
    await store.close();
  }
});

test('system streams never match; from end reads only new events; bad input is a typed error', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await store.queues.create('jobs');
    await store.queues.send('jobs', [{ body: { x: 1 } }]);
    await store.append('ship-1', [{ type: 'Old' }]);
    const m = store.groups.join('late', { from: 'end' });
    await store.append('ship-1', [{ type: 'New' }]);
    const got = await take(m, 1);
    assert.equal(got[0]!.type, 'New');
    await m.close();
    const all = store.groups.join('everything');
    const events = await take(all, 2);
    assert.deepEqual(
      events.map((e) => e.stream),
      ['ship-1', 'ship-1'],
    );
    await all.close();
    assert.throws(() => store.groups.join('bad name'), InvalidArgumentError);
    assert.throws(() => store.groups.join('g', { mode: 'weird' as never }), InvalidArgumentError);
    assert.throws(() => store.groups.join('g', { mode: 'partitioned', partitions: 0 }), InvalidArgumentError);
    assert.throws(() => store.groups.join('g', { nope: 1 } as never), InvalidArgumentError);
    await assert.rejects(store.groups.stats('missing'), GroupNotFoundError);
    const list = await store.groups.list();
    assert.deepEqual(
      list.map((g) => g.name),
      ['everything', 'late'],
    );
  } finally {
    await store.close();
  }
});
