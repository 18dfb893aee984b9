/**
 * Snapshots in command handling: a load starts from the latest valid snapshot and folds only the
 * events after it, with the same state as a fold from the start; snapshots of another version,
 * or covering events the stream no longer holds, are ignored; a failing snapshot store never
 * fails a command; conflicts are still retried. The behaviour tests run on both snapshot stores.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InMemorySnapshotStore, InvalidArgumentError, SNAPSHOT_EVENT_TYPE, StreamSnapshotStore, handleCommand, loadState, openStore } from '../../src/index.js';
import type { Decider, EventStore, FileEventStore, HandleOptions, Snapshot, SnapshotErrorContext, SnapshotOptions, SnapshotStore } from '../../src/index.js';
import { tempDir } from '../helpers.js';
import { account } from './account.js';
import type { Account, Command } from './account.js';

/** The account decider, counting the events it folds. */
function counting(): Decider<Command, Account> & { evolved: number } {
  const d = {
    ...account,
    evolved: 0,
    evolve(s: Account, e: Parameters<typeof account.evolve>[1]) {
      d.evolved++;
      return account.evolve(s, e);
    },
  };
  return d;
}

/** Opens the account and pays in 1, 2, ... : `events` events in all, through handleCommand. */
async function seed(store: EventStore, stream: string, events: number, options: HandleOptions<Account> = {}): Promise<void> {
  await handleCommand(store, stream, account, { type: 'Open' }, options);
  for (let i = 1; i < events; i++) await handleCommand(store, stream, account, { type: 'Deposit', amount: i }, options);
}

const sumTo = (n: number) => (n * (n + 1)) / 2;

/** Collects what onError is told. */
function errors(): { onError: NonNullable<SnapshotOptions['onError']>; seen: { error: unknown; context: SnapshotErrorContext }[] } {
  const seen: { error: unknown; context: SnapshotErrorContext }[] = [];
  return { seen, onError: (error, context) => void seen.push({ error, context }) };
}

const KINDS: { name: string; make(store: EventStore): SnapshotStore }[] = [
  { name: 'in memory', make: () => new InMemorySnapshotStore() },
  { name: 'companion stream', make: (store) => new StreamSnapshotStore(store) },
];

for (const kind of KINDS) {
  test(`${kind.name}: a load folds only the events after the snapshot, to the same state as a fold from the start`, async () => {
    const store = await openStore({ dir: tempDir() });
    try {
      const snaps = kind.make(store);
      const { onError, seen } = errors();
      const snapshots: SnapshotOptions<Account> = { store: snaps, version: 'account-1', every: 10, onError };
      await seed(store, 'account-1', 25, { snapshots }); // revisions 0..24
      const latest = await snaps.load('account-1');
      assert.equal(latest?.revision, 19, 'snapshots were written at revisions 9 and 19');
      assert.equal(latest?.version, 'account-1');

      const withSnap = counting();
      const a = await loadState(store, 'account-1', withSnap, { snapshots });
      const full = counting();
      const b = await loadState(store, 'account-1', full);
      assert.deepEqual(a, b);
      assert.deepEqual(a, { state: { open: true, balance: sumTo(24) }, revision: 24 });
      assert.equal(withSnap.evolved, 5, 'only revisions 20..24 were folded');
      assert.equal(full.evolved, 25);

      // A command loads from the snapshot too, and its result is the same as without snapshots.
      const cmd = counting();
      const r = await handleCommand(store, 'account-1', cmd, { type: 'Withdraw', amount: 1 }, { snapshots });
      assert.equal(cmd.evolved, 5 + 1, 'five events after the snapshot, then the one decided');
      assert.deepEqual(r.state, { open: true, balance: sumTo(24) - 1 });

      // The snapshots never went into the aggregate's stream: it holds what the commands decided.
      const types = (await store.readStream('account-1').toArray()).map((e) => e.type);
      assert.deepEqual(types, ['Opened', ...Array<string>(24).fill('Deposited'), 'Withdrawn']);
      assert.deepEqual(seen, []);
    } finally {
      await store.close();
    }
  });

  test(`${kind.name}: a snapshot of another version is ignored, and the next command writes one of the new version`, async () => {
    const store = await openStore({ dir: tempDir() });
    try {
      const snaps = kind.make(store);
      const { onError, seen } = errors();
      await seed(store, 'account-2', 12, { snapshots: { store: snaps, version: 'v1', every: 10, onError } });
      assert.equal((await snaps.load('account-2'))?.version, 'v1');

      const v2: SnapshotOptions<Account> = { store: snaps, version: 'v2', every: 10, onError };
      const d = counting();
      const loaded = await loadState(store, 'account-2', d, { snapshots: v2 });
      assert.equal(d.evolved, 12, 'a v1 snapshot is not used by v2');
      assert.deepEqual(loaded, await loadState(store, 'account-2', account));
      // Not an error: a changed version is how snapshots are meant to be invalidated.
      assert.deepEqual(seen, []);

      // 13 events past no snapshot >= every: the command writes a v2 snapshot at once.
      await handleCommand(store, 'account-2', account, { type: 'Deposit', amount: 100 }, { snapshots: v2 });
      assert.deepEqual(await snaps.load('account-2').then((s) => s && { revision: s.revision, version: s.version }), { revision: 12, version: 'v2' });
      const again = counting();
      assert.deepEqual(await loadState(store, 'account-2', again, { snapshots: v2 }), { state: { open: true, balance: sumTo(11) + 100 }, revision: 12 });
      assert.equal(again.evolved, 0);
    } finally {
      await store.close();
    }
  });

  test(`${kind.name}: a snapshot covering events the stream does not hold is ignored and reported`, async () => {
    const store = await openStore({ dir: tempDir() });
    try {
      const snaps = kind.make(store);
      const { onError, seen } = errors();
      await seed(store, 'account-3', 5); // revisions 0..4, no snapshots
      const [third] = await store.readStream('account-3', { from: 2, limit: 1 }).toArray();
      const snapshots: SnapshotOptions<Account> = { store: snaps, version: 'v1', onError };
      const bogus = { open: true, balance: 1_000_000 };
      // Beyond the stream's revision: as when the log lost its tail and the snapshot did not.
      await snaps.save('account-3', { state: bogus, revision: 50, position: third!.position + 100, version: 'v1' });
      const expected = { state: { open: true, balance: sumTo(4) }, revision: 4 };
      assert.deepEqual(await loadState(store, 'account-3', account, { snapshots }), expected);
      // At a revision the stream has, but another event is there now (another position).
      await snaps.save('account-3', { state: bogus, revision: 2, position: third!.position + 1, version: 'v1' });
      assert.deepEqual(await loadState(store, 'account-3', account, { snapshots }), expected);
      // The stream is gone altogether (a snapshot of a stream with no events).
      await snaps.save('account-none', { state: bogus, revision: 0, position: 1, version: 'v1' });
      assert.deepEqual(await loadState(store, 'account-none', account, { snapshots }), { state: account.initialState, revision: -1 });
      assert.equal(seen.length, 3);
      for (const s of seen) {
        assert.equal(s.context.operation, 'load');
        assert.match(String((s.error as Error).message), /no longer holds that event: ignored/);
      }
      // The same snapshot at the right position is used.
      await snaps.save('account-3', { state: { open: true, balance: 3 }, revision: 2, position: third!.position, version: 'v1' });
      const d = counting();
      assert.deepEqual(await loadState(store, 'account-3', d, { snapshots }), expected);
      assert.equal(d.evolved, 2);
    } finally {
      await store.close();
    }
  });

  test(`${kind.name}: racing writers with snapshots: conflicts are retried, every command lands once`, async () => {
    const store = await openStore({ dir: tempDir() });
    try {
      const snaps = kind.make(store);
      const { onError, seen } = errors();
      const snapshots: SnapshotOptions<Account> = { store: snaps, version: 'v1', every: 3, onError };
      await handleCommand(store, 'account-4', account, { type: 'Open' }, { snapshots });
      const writers = 20;
      const results = await Promise.all(Array.from({ length: writers }, () => handleCommand(store, 'account-4', account, { type: 'Deposit', amount: 1 }, { retries: 100, backoffMs: 1, snapshots })));
      assert.ok(results.some((r) => r.attempts > 1), 'some writers met a conflict and retried');
      assert.deepEqual(results.map((r) => r.revision).sort((x, y) => x - y), Array.from({ length: writers }, (_, i) => i + 1));
      const expected = { state: { open: true, balance: writers }, revision: writers };
      assert.deepEqual(await loadState(store, 'account-4', account), expected);
      const d = counting();
      assert.deepEqual(await loadState(store, 'account-4', d, { snapshots }), expected);
      assert.ok(d.evolved < writers, `a snapshot was used (${d.evolved} events folded)`);
      assert.deepEqual(seen, []);
    } finally {
      await store.close();
    }
  });
}

/** A snapshot store that fails on demand. */
class FailingSnapshotStore implements SnapshotStore {
  failLoad = false;
  failSave = true;
  saved = 0;
  readonly inner = new InMemorySnapshotStore();
  async load(stream: string): Promise<Snapshot | undefined> {
    if (this.failLoad) throw new Error('snapshot store unreachable');
    return this.inner.load(stream);
  }
  async save(stream: string, snapshot: Snapshot): Promise<void> {
    if (this.failSave) throw new Error('snapshot store full');
    this.saved++;
    return this.inner.save(stream, snapshot);
  }
}

test('a snapshot store that fails never fails a command: saves and loads are reported, loads fold from the start', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const snaps = new FailingSnapshotStore();
    const { onError, seen } = errors();
    const snapshots: SnapshotOptions<Account> = { store: snaps, version: 'v1', every: 2, onError };
    await seed(store, 'account-5', 4, { snapshots });
    assert.deepEqual((await loadState(store, 'account-5', account)).state, { open: true, balance: sumTo(3) });
    assert.ok(seen.length >= 2);
    for (const s of seen) {
      assert.deepEqual(s.context, { stream: 'account-5', operation: 'save' });
      assert.match(String((s.error as Error).message), /snapshot store full/);
    }
    // A throwing onError does not fail the command either.
    const r = await handleCommand(store, 'account-5', account, { type: 'Deposit', amount: 10 }, { snapshots: { ...snapshots, onError: () => { throw new Error('logger down'); } } });
    assert.equal(r.state.balance, sumTo(3) + 10);

    // Once saves work, a snapshot is written; when loads fail, the fold starts from the start.
    snaps.failSave = false;
    await handleCommand(store, 'account-5', account, { type: 'Deposit', amount: 1 }, { snapshots });
    assert.equal(snaps.saved, 1);
    snaps.failLoad = true;
    seen.length = 0;
    const d = counting();
    const loaded = await loadState(store, 'account-5', d, { snapshots });
    assert.deepEqual(loaded, await loadState(store, 'account-5', account));
    assert.equal(d.evolved, 6);
    assert.deepEqual(seen.map((s) => s.context), [{ stream: 'account-5', operation: 'load' }]);
    // A snapshot store that hands back something else than a snapshot is reported the same way.
    const odd: SnapshotStore = { load: async () => ({ state: {}, revision: 'x' }) as never, save: async () => {} };
    seen.length = 0;
    assert.deepEqual(await loadState(store, 'account-5', account, { snapshots: { store: odd, version: 'v1', onError } }), loaded);
    assert.match(String((seen[0]?.error as Error).message), /not a snapshot/);
  } finally {
    await store.close();
  }
});

test('companion stream: named <prefix>-<stream>, in its own category, read backwards with limit 1', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const reads: { stream: string; options: unknown }[] = [];
    // The same store, recording its stream reads.
    const watched = new Proxy(store, {
      get(target, prop) {
        if (prop === 'readStream') return (stream: string, options?: unknown) => (reads.push({ stream, options }), target.readStream(stream, options as never));
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as FileEventStore;
    const snaps = new StreamSnapshotStore(watched);
    assert.equal(snaps.streamOf('order-123'), 'snapshots-order-123');
    assert.equal(snaps.streamOf('inventory'), 'snapshots-inventory');
    const snapshots: SnapshotOptions<Account> = { store: snaps, version: 'v1', every: 2 };
    await seed(store, 'account-6', 7, { snapshots });
    const companion = await store.readStream('snapshots-account-6').toArray();
    assert.deepEqual(companion.map((e) => [e.type, (e.data as Snapshot).revision]), [[SNAPSHOT_EVENT_TYPE, 1], [SNAPSHOT_EVENT_TYPE, 3], [SNAPSHOT_EVENT_TYPE, 5]]);
    assert.deepEqual(companion[2]!.data, { version: 'v1', revision: 5, position: (await store.readStream('account-6', { from: 5, limit: 1 }).toArray())[0]!.position, state: { open: true, balance: sumTo(5) } });
    assert.deepEqual(companion[2]!.metadata, { snapshotOf: 'account-6' });

    reads.length = 0;
    await snaps.load('account-6');
    assert.deepEqual(reads, [{ stream: 'snapshots-account-6', options: { direction: 'backwards', limit: 1 } }]);

    // Category readers of the aggregate never see a snapshot; the snapshots have a category of their own.
    const accountEvents = await store.readAll({ filter: { category: 'account' } }).toArray();
    assert.equal(accountEvents.length, 7);
    assert.ok(accountEvents.every((e) => e.type !== SNAPSHOT_EVENT_TYPE));
    assert.equal((await store.readAll({ filter: { category: 'snapshots' } }).toArray()).length, 3);

    const custom = new StreamSnapshotStore(store, { prefix: 'accountsnap' });
    assert.equal(custom.streamOf('account-6'), 'accountsnap-account-6');
    for (const prefix of ['', 'snap-shots', '$snapshots']) assert.throws(() => new StreamSnapshotStore(store, { prefix }), InvalidArgumentError, prefix);
    assert.throws(() => new StreamSnapshotStore(store, { perfix: 'x' } as never), /unknown StreamSnapshotStore option 'perfix'/);
  } finally {
    await store.close();
  }
});

test('companion stream: a last event that is not a snapshot is reported and ignored', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const { onError, seen } = errors();
    const snaps = new StreamSnapshotStore(store);
    await seed(store, 'account-7', 3);
    await store.append('snapshots-account-7', [{ type: 'SomethingElse', data: { revision: 1 } }]);
    await assert.rejects(snaps.load('account-7'), /is not a snapshot/);
    const d = counting();
    assert.deepEqual(await loadState(store, 'account-7', d, { snapshots: { store: snaps, version: 'v1', onError } }), { state: { open: true, balance: 3 }, revision: 2 });
    assert.equal(d.evolved, 3);
    assert.equal(seen.length, 1);
  } finally {
    await store.close();
  }
});

interface Cart {
  items: Map<string, number>;
}
const cart: Decider<{ sku: string }, Cart> = {
  initialState: { items: new Map() },
  decide: (c) => [{ type: 'Added', data: { sku: c.sku } }],
  evolve: (s, e) => {
    const sku = (e.data as { sku: string }).sku;
    return { items: new Map(s.items).set(sku, (s.items.get(sku) ?? 0) + 1) };
  },
};

test('a state that JSON would change is not stored as it is: refused without encode/decode, stored with them', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const { onError, seen } = errors();
    const snaps = new StreamSnapshotStore(store);
    const plain: SnapshotOptions<Cart> = { store: snaps, version: 'v1', every: 2, onError };
    for (const sku of ['tea', 'tea', 'jam']) await handleCommand(store, 'cart-1', cart, { sku }, { snapshots: plain });
    assert.equal(await store.streamInfo('snapshots-cart-1'), undefined, 'a Map would have been stored as {}');
    assert.equal(seen[0]?.context.operation, 'save');
    assert.match(String((seen[0]?.error as Error).message), /does not come back the same from JSON/);

    const encoded: SnapshotOptions<Cart> = { ...plain, encode: (s) => [...s.items], decode: (d) => ({ items: new Map(d as [string, number][]) }) };
    await handleCommand(store, 'cart-1', cart, { sku: 'tea' }, { snapshots: encoded });
    assert.equal((await snaps.load('cart-1'))?.revision, 3);
    const loaded = await loadState(store, 'cart-1', cart, { snapshots: encoded });
    assert.deepEqual(loaded, await loadState(store, 'cart-1', cart));
    assert.deepEqual([...loaded.state.items], [['tea', 3], ['jam', 1]]);
  } finally {
    await store.close();
  }
});

test('in memory: snapshots are copies, bounded by streamsMax (least recently used dropped)', async () => {
  const snaps = new InMemorySnapshotStore({ streamsMax: 2 });
  const state = { open: true, balance: 5, log: [1] };
  await snaps.save('a-1', { state, revision: 0, position: 1, version: 'v' });
  state.log.push(2); // an evolve that changes a state in place
  const back = (await snaps.load('a-1'))!;
  assert.deepEqual(back.state, { open: true, balance: 5, log: [1] });
  (back.state as typeof state).log.push(3);
  assert.deepEqual((await snaps.load('a-1'))!.state, { open: true, balance: 5, log: [1] });

  await snaps.save('a-2', { state: 2, revision: 0, position: 2, version: 'v' });
  await snaps.load('a-1'); // a-1 is now more recently used than a-2
  await snaps.save('a-3', { state: 3, revision: 0, position: 3, version: 'v' });
  assert.equal(snaps.size, 2);
  assert.equal(await snaps.load('a-2'), undefined);
  assert.ok(await snaps.load('a-1'));

  class Point {
    constructor(readonly x: number) {}
  }
  await assert.rejects(snaps.save('a-4', { state: new Point(1), revision: 0, position: 4, version: 'v' }), /does not come back the same from a structured clone/);
  assert.throws(() => new InMemorySnapshotStore({ streamsMax: 0 }), InvalidArgumentError);
});

test('snapshot options are checked before anything is read', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    const snaps = new InMemorySnapshotStore();
    const bad: [unknown, RegExp][] = [
      [{ store: snaps }, /version must be a non-empty string/],
      [{ store: snaps, version: '' }, /version must be a non-empty string/],
      [{ store: {}, version: 'v' }, /must be a SnapshotStore/],
      [{ store: snaps, version: 'v', every: 0 }, /every must be an integer >= 1/],
      [{ store: snaps, version: 'v', every: 1.5 }, /every must be an integer >= 1/],
      [{ store: snaps, version: 'v', evry: 5 }, /unknown snapshots option 'evry'/],
      [{ store: snaps, version: 'v', onError: 'log' }, /onError must be a function/],
    ];
    for (const [snapshots, message] of bad) {
      await assert.rejects(handleCommand(store, 'account-8', account, { type: 'Open' }, { snapshots: snapshots as never }), (e: unknown) => e instanceof InvalidArgumentError && message.test(e.message), String(message));
      await assert.rejects(loadState(store, 'account-8', account, { snapshots: snapshots as never }), message);
    }
    assert.equal(await store.streamInfo('account-8'), undefined);
  } finally {
    await store.close();
  }
});
