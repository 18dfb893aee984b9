/**
 * Projections end to end on the embedded store, on every read-model store: a read model built
 * live equals the one rebuilt from scratch and the one computed by hand (each event applied
 * exactly once); a handler that throws mid-batch commits nothing of that batch, leaves the
 * projection faulted at that event, and a second run resumes from the checkpoint; blue-green
 * rebuilds keep serving the old slot until the new one has caught up, then switch atomically;
 * upcasters; '$' streams; status and its HTTP handler; and the network client.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { ProjectionConflictError, ProjectionFaultedError, Upcasters, openStore } from '../../src/index.js';
import type { EventInput, EventStore, FileEventStore } from '../../src/index.js';
import { Projection, defineProjection, memoryReadModelStore, statusHandler } from '../../src/projections/index.js';
import type { ProjectionDefinition, ReadModelStore } from '../../src/projections/index.js';
import { tempDir } from '../helpers.js';
import { storeKinds } from './stores.js';

const { kinds, skipped } = await storeKinds();
if (skipped !== undefined) test(`projections on PostgreSQL (skipped: ${skipped})`, { skip: skipped }, () => {});

interface Account {
  owner: string;
  balance: number;
  events: number;
}
interface Totals {
  deposited: number;
  withdrawn: number;
  accounts: number;
}
type Model = { accounts: Account; totals: Totals };

/**
 * Every handler style: put, update in place, update returning a new document, an async handler
 * with get + put, and delete.
 */
const accounts = defineProjection<Model>({
  name: 'accounts',
  filter: { category: 'account' },
  handlers: {
    Opened(e, m) {
      m.put('accounts', e.stream, { owner: (e.data as { owner: string }).owner, balance: 0, events: 1 });
      m.update('totals', 'all', (t) => ({ deposited: t?.deposited ?? 0, withdrawn: t?.withdrawn ?? 0, accounts: (t?.accounts ?? 0) + 1 }));
    },
    Deposited(e, m) {
      const { amount } = e.data as { amount: number };
      m.update('accounts', e.stream, (a) => {
        a!.balance += amount;
        a!.events++;
      });
      m.update('totals', 'all', (t) => ({ ...t!, deposited: t!.deposited + amount }));
    },
    async Withdrawn(e, m) {
      const { amount } = e.data as { amount: number };
      const a = await m.get('accounts', e.stream);
      m.put('accounts', e.stream, { ...a!, balance: a!.balance - amount, events: a!.events + 1 });
      m.update('totals', 'all', (t) => ({ ...t!, withdrawn: t!.withdrawn + amount }));
    },
    Closed(e, m) {
      m.delete('accounts', e.stream);
      m.update('totals', 'all', (t) => ({ ...t!, accounts: t!.accounts - 1 }));
    },
  },
});

/** A deterministic stream of account events, with other categories mixed in. */
function* accountEvents(seed: number, accountsN: number, perAccount: number): Generator<[string, EventInput[]]> {
  let x = seed;
  const rnd = (): number => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let a = 0; a < accountsN; a++) yield [`account-${seed}-${a}`, [{ type: 'Opened', data: { owner: `owner-${a}` } }]];
  for (let i = 0; i < perAccount; i++) {
    for (let a = 0; a < accountsN; a++) {
      const amount = 1 + Math.floor(rnd() * 50);
      yield [`account-${seed}-${a}`, [{ type: rnd() < 0.7 ? 'Deposited' : 'Withdrawn', data: { amount } }]];
    }
    yield [`order-${seed}-${i}`, [{ type: 'Deposited', data: { amount: 1000 } }]]; // another category: filtered out
  }
  yield [`account-${seed}-0`, [{ type: 'Closed' }]];
}

/** The read model computed by hand from the log. */
async function expected(store: EventStore, upTo = Infinity): Promise<Record<string, Record<string, unknown>>> {
  const acc: Record<string, Account> = {};
  const totals: Totals = { deposited: 0, withdrawn: 0, accounts: 0 };
  for await (const e of store.readAll({ filter: { category: 'account' } })) {
    if (e.position > upTo) break;
    const amount = (e.data as { amount?: number } | null)?.amount ?? 0;
    if (e.type === 'Opened') {
      acc[e.stream] = { owner: (e.data as { owner: string }).owner, balance: 0, events: 1 };
      totals.accounts++;
    } else if (e.type === 'Deposited') {
      acc[e.stream]!.balance += amount;
      acc[e.stream]!.events++;
      totals.deposited += amount;
    } else if (e.type === 'Withdrawn') {
      acc[e.stream]!.balance -= amount;
      acc[e.stream]!.events++;
      totals.withdrawn += amount;
    } else if (e.type === 'Closed') {
      delete acc[e.stream];
      totals.accounts--;
    }
  }
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(acc).sort()) sorted[k] = acc[k];
  return totals.accounts === 0 && Object.keys(acc).length === 0 ? {} : { accounts: sorted, totals: { all: totals } };
}

async function dump(rm: ReadModelStore, projection: string, collections: string[], slot?: string): Promise<Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const c of collections) {
    const docs = await rm.list(projection, c, { limit: 10_000, ...(slot ? { slot } : {}) });
    if (docs.length > 0) out[c] = Object.fromEntries(docs.map((d) => [d.id, d.doc]));
  }
  return out;
}

async function appendAll(store: EventStore, events: Iterable<[string, EventInput[]]>): Promise<number> {
  let last = 0;
  for (const [stream, evs] of events) last = (await store.append(stream, evs)).positions.at(-1)!;
  return last;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function withEventStore(fn: (store: FileEventStore) => Promise<void>): Promise<void> {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

for (const k of kinds) {
  test(`${k.kind}: built live equals rebuilt from scratch equals computed by hand`, async () => {
    const { store: rm, cleanup } = await k.fresh();
    try {
      await withEventStore(async (store) => {
        await appendAll(store, accountEvents(1, 8, 10));
        const p = new Projection(store, rm, accounts, { batchEventsMax: 37 });
        p.start();
        await until(() => p.status().state === 'live', 'live');
        // Appends while live, some from many writers at once.
        const more = [...accountEvents(2, 6, 8)];
        await appendAll(store, more.slice(0, 6));
        await Promise.all(more.slice(6).map(([s, e]) => store.append(s, e)));
        const lastAccount = (await store.readAll({ direction: 'backwards', limit: 1, filter: { category: 'account' } }).toArray())[0]!.position;
        await until(() => p.status().position >= lastAccount, 'the live projection to catch up');
        const live = await dump(rm, 'accounts', ['accounts', 'totals']);
        assert.deepEqual(live, await expected(store), 'live: every event applied exactly once');
        assert.equal(p.status().slot, 'v1');

        const r = await p.rebuild({ dropOld: true });
        assert.equal(r.switched, true);
        assert.equal(r.slot, 'v1_2');
        assert.equal(r.previous, 'v1');
        assert.equal(r.dropped, true);
        assert.deepEqual(await dump(rm, 'accounts', ['accounts', 'totals']), live, 'rebuilt equals live');
        // The running projection moved to the new slot and keeps it live.
        await until(() => p.status().slot === 'v1_2', 'the live runner to follow the switch');
        const tail = await appendAll(store, accountEvents(3, 2, 3));
        await until(() => p.status().position >= tail, 'the live projection on the new slot');
        assert.deepEqual(await dump(rm, 'accounts', ['accounts', 'totals']), await expected(store));
        assert.deepEqual((await rm.catalog('accounts')).slots.map((s) => s.slot), ['v1_2']);
        await p.stop();
        assert.equal(p.status().state, 'stopped');
      });
    } finally {
      await cleanup();
    }
  });

  test(`${k.kind}: a handler that throws mid-batch commits nothing of the batch; faulted at that event; a second run resumes`, async () => {
    const { store: rm, reopen, cleanup } = await k.fresh();
    try {
      await withEventStore(async (store) => {
        await appendAll(store, accountEvents(4, 5, 30));
        const positions = (await store.readAll({ filter: { category: 'account', types: 'Deposited' } }).toArray()).map((e) => e.position);
        const poison = positions[Math.floor(positions.length / 2)]!;
        let fixed = false;
        // The failure is inside an update function: PostgreSQL runs those at commit, and must
        // still name the event that called it.
        const fragile: ProjectionDefinition<Model> = {
          ...accounts,
          handlers: {
            ...accounts.handlers,
            Deposited(e, m) {
              if (e.position === poison && !fixed) m.update('accounts', e.stream, () => { throw new RangeError('bad amount'); });
              return accounts.handlers.Deposited!(e, m);
            },
          },
        };
        const errors: Error[] = [];
        const p = new Projection(store, rm, fragile, { batchEventsMax: 25, onError: (err) => errors.push(err) });
        const err = await p.run().then(
          () => assert.fail('run should fail'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof ProjectionFaultedError, String(err));
        assert.equal(err.details.position, poison);
        assert.equal(err.details.type, 'Deposited');
        assert.ok(err.cause instanceof RangeError);
        assert.equal(errors[0], err, 'onError saw it');
        const st = p.status();
        assert.equal(st.state, 'faulted');
        assert.equal(st.error?.position, poison);
        assert.equal(st.error?.code, 'PROJECTION_FAULTED');
        assert.match(st.error!.message, /bad amount/);
        // The checkpoint is before the failed batch, and the read model holds exactly the events up to it.
        const checkpoint = (await rm.catalog('accounts')).slots[0]!.position;
        assert.ok(checkpoint < poison, `checkpoint ${checkpoint} is before the poison event ${poison}`);
        assert.ok(checkpoint > 0, 'earlier batches were committed');
        assert.equal(st.position, checkpoint);
        assert.deepEqual(await dump(rm, 'accounts', ['accounts', 'totals']), await expected(store, checkpoint));

        fixed = true;
        let model = rm;
        if (reopen === undefined) {
          // The same Projection object runs again from its checkpoint.
          await p.restart();
          await until(() => p.status().state === 'live', 'restarted');
          assert.equal(p.status().error, undefined);
          await p.stop();
        } else {
          // What a crash would leave, read back from disk; a new runner resumes from it.
          await rm.close();
          model = await reopen();
          assert.deepEqual(await dump(model, 'accounts', ['accounts', 'totals']), await expected(store, checkpoint));
          const done = await new Projection(store, model, fragile, { batchEventsMax: 25 }).catchUp();
          assert.equal(done.error, undefined);
        }
        assert.deepEqual(await dump(model, 'accounts', ['accounts', 'totals']), await expected(store), 'resumed from the checkpoint: every event exactly once');
      });
    } finally {
      await cleanup();
    }
  });

  test(`${k.kind}: blue-green: a new version is built beside the old, which serves queries until the switch`, async () => {
    const { store: rm, cleanup } = await k.fresh();
    try {
      await withEventStore(async (store) => {
        await appendAll(store, accountEvents(5, 4, 20));
        const v1 = new Projection(store, rm, accounts);
        v1.start();
        await until(() => v1.status().state === 'live', 'v1 live');
        const before = await dump(rm, 'accounts', ['accounts', 'totals']);

        // Version 2 keeps balances in cents. While it is built, queries still read version 1.
        let seenDuringRebuild: unknown;
        const cents = defineProjection<{ balances: { cents: number } }>({
          name: 'accounts',
          version: 2,
          filter: { category: 'account' },
          handlers: {
            async Opened(e, m) {
              seenDuringRebuild ??= await rm.get('accounts', 'accounts', e.stream);
              m.put('balances', e.stream, { cents: 0 });
            },
            Deposited: (e, m) => m.update('balances', e.stream, (b) => ({ cents: b!.cents + (e.data as { amount: number }).amount * 100 })),
            Withdrawn: (e, m) => m.update('balances', e.stream, (b) => ({ cents: b!.cents - (e.data as { amount: number }).amount * 100 })),
            Closed: (e, m) => m.delete('balances', e.stream),
          },
        });
        const v2 = new Projection(store, rm, cents);
        const progress: number[] = [];
        const r = await v2.rebuild({ onProgress: (x) => progress.push(x.position), progressIntervalMs: 0 });
        assert.ok(seenDuringRebuild !== undefined && typeof (seenDuringRebuild as Account).owner === 'string', 'the old version served queries during the rebuild');
        assert.deepEqual([r.switched, r.slot, r.previous, r.dropped], [true, 'v2', 'v1', false]);
        assert.equal(progress.at(-1), await store.headPosition(), 'the last progress report is at the head');
        const cat = await rm.catalog('accounts');
        assert.equal(cat.active, 'v2');
        assert.deepEqual(cat.slots.map((s) => [s.slot, s.version]).sort(), [['v1', 1], ['v2', 2]]);
        for (const [id, a] of Object.entries(before.accounts!)) assert.deepEqual(await v2.get('balances', id), { cents: (a as Account).balance * 100 });
        assert.deepEqual(await rm.get('accounts', 'accounts', Object.keys(before.accounts!)[0]!, { slot: 'v1' }), Object.values(before.accounts!)[0], 'the old slot is still there');

        // The version-1 runner learns at its next commit that a newer version is active, and stops.
        await store.append('account-5-1', [{ type: 'Deposited', data: { amount: 1 } }]);
        await until(() => v1.status().state === 'stopped', 'v1 to stop');
        assert.equal(v1.status().error?.code, 'PROJECTION_CONFLICT');
        await assert.rejects(v1.run(), (e: unknown) => e instanceof ProjectionConflictError && e.details.reason === 'superseded');

        // Version 2 runs live from its checkpoint.
        v2.start();
        await until(async () => (await v2.get('balances', 'account-5-1'))?.cents === ((before.accounts!['account-5-1'] as Account).balance + 1) * 100, 'v2 live');
        await v2.stop();
      });
    } finally {
      await cleanup();
    }
  });
}

test('run() rebuilds when the version was bumped (resuming an interrupted build), and refuses older code', async () => {
  await withEventStore(async (store) => {
    const rm = memoryReadModelStore();
    await appendAll(store, accountEvents(6, 3, 200));
    await new Projection(store, rm, accounts).catchUp();
    const v2def = { ...accounts, version: 2 };
    // An interrupted build of version 2: stopped after its first commit.
    const first = new Projection(store, rm, v2def, { batchEventsMax: 50 });
    const r = await first.rebuild({ progressIntervalMs: 0, onProgress: (x) => void (x.position > 0 && first.stop()) });
    assert.equal(r.switched, false, 'a stopped rebuild does not switch');
    const partial = (await rm.catalog('accounts')).slots.find((s) => s.slot === 'v2')!;
    assert.ok(partial.position > 0 && partial.position < (await store.headPosition()), `partly built: ${partial.position}`);
    assert.equal((await rm.catalog('accounts')).active, 'v1');
    const p = new Projection(store, rm, v2def);
    const states: string[] = [];
    const poll = setInterval(() => states.push(p.status().state), 1);
    await p.catchUp();
    clearInterval(poll);
    const cat = await rm.catalog('accounts');
    assert.equal(cat.active, 'v2');
    assert.deepEqual(cat.slots.map((s) => s.slot).sort(), ['v1', 'v2'], 'the interrupted build was resumed, not duplicated');
    assert.deepEqual(await dump(rm, 'accounts', ['accounts', 'totals']), await expected(store));
    await assert.rejects(new Projection(store, rm, accounts).run(), (e: unknown) => e instanceof ProjectionConflictError && e.details.reason === 'superseded');
    await assert.rejects(new Projection(store, rm, { ...accounts, version: 3 }, { autoRebuild: false }).run(), (e: unknown) => e instanceof ProjectionConflictError && e.details.reason === 'version_mismatch');
  });
});

test('upcasters: handlers see only the current shape of an event', async () => {
  await withEventStore(async (store) => {
    await store.append('order-1', [{ type: 'OrderCreated', data: { amount: '12.50' } }]); // v1: a string amount, an old name
    await store.append('order-2', [{ type: 'OrderPlaced', data: { totalCents: 700 }, metadata: { schemaVersion: 2 } }]);
    await store.append('order-3', [{ type: 'OrderPlaced', data: { total: 3 } }]); // v1 of the new name: cents by another transform
    const upcasters = new Upcasters([
      { type: 'OrderCreated', fromVersion: 1, newType: 'OrderPlaced', upcast: (d) => ({ totalCents: Math.round(Number((d as { amount: string }).amount) * 100) }) },
      { type: 'OrderPlaced', fromVersion: 1, upcast: (d) => ({ totalCents: (d as { total: number }).total * 100 }) },
    ]);
    const seen: unknown[] = [];
    const orders = defineProjection<{ orders: { totalCents: number } }>({
      name: 'orders',
      filter: { category: 'order', types: ['OrderCreated', 'OrderPlaced'] },
      upcasters,
      handlers: {
        OrderPlaced(e, m) {
          seen.push([e.type, e.metadata.schemaVersion]);
          m.put('orders', e.stream, e.data as { totalCents: number });
        },
        OrderCreated() {
          throw new Error('never called: upcast to OrderPlaced first');
        },
      },
    });
    const rm = memoryReadModelStore();
    await new Projection(store, rm, orders).catchUp();
    assert.deepEqual(rm.snapshot('orders'), { orders: { 'order-1': { totalCents: 1250 }, 'order-2': { totalCents: 700 }, 'order-3': { totalCents: 300 } } });
    assert.deepEqual(seen, [
      ['OrderPlaced', 2],
      ['OrderPlaced', 2],
      ['OrderPlaced', 2],
    ]);
  });
});

test("'$' streams are skipped unless the filter names them; the handled types are the store's filter", async () => {
  await withEventStore(async (store) => {
    await store.queues.create('jobs');
    await store.queues.send('jobs', [{ type: 'Noted', body: { from: 'queue' } }]);
    await store.append('note-1', [{ type: 'Noted', data: { from: 'stream' } }, { type: 'Ignored' }]);
    const counter = (name: string, filter?: { streamPrefix: string }): ProjectionDefinition =>
      defineProjection({
        name,
        ...(filter ? { filter } : {}),
        handlers: { Noted: (e, m) => m.put('seen', e.stream, e.data as object) },
      });
    const rm = memoryReadModelStore();
    await new Projection(store, rm, counter('plain')).catchUp();
    assert.deepEqual(rm.snapshot('plain'), { seen: { 'note-1': { from: 'stream' } } });
    await new Projection(store, rm, counter('system', { streamPrefix: '$queue-' })).catchUp();
    assert.deepEqual(rm.snapshot('system'), { seen: { '$queue-jobs': { from: 'queue' } } });
    assert.deepEqual(new Projection(store, rm, counter('plain')).compiled.filter, { types: ['Noted'] });
  });
});

test('status: position, lag in positions and time, events/s, state; served over HTTP; batches capped by time', async () => {
  await withEventStore(async (store) => {
    const rm = memoryReadModelStore();
    await appendAll(store, accountEvents(7, 4, 10));
    let slow = false;
    const def = defineProjection<Model>({
      ...accounts,
      handlers: {
        ...accounts.handlers,
        async Noted() {
          if (slow) await new Promise((r) => setTimeout(r, 10));
        },
      },
    });
    const p = new Projection(store, rm, def, { batchMs: 40 });
    const server = http.createServer(statusHandler([p]));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const d = await p.describe();
      assert.equal(d.status.state, 'stopped');
      assert.equal(d.status.position, 0);
      p.start();
      const head = await store.headPosition();
      await until(() => p.status().state === 'live' && p.status().position >= head, 'live at the head');
      let st = p.status();
      assert.equal(st.lagPositions, 0);
      assert.equal(st.lagMs, 0);
      assert.ok(st.eventsPerSecond > 0, 'a rate right after catching up');
      assert.equal(st.eventsProcessed, (await store.readAll({ filter: { category: 'account' } }).toArray()).length, 'events the store delivered (other categories filtered out)');
      let res = await fetch(base);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { projections: Array<{ name: string; state: string; position: number }> };
      assert.deepEqual(body.projections.map((x) => [x.name, x.state, x.position]), [['accounts', 'live', head]]);
      assert.equal((await fetch(`${base}/?name=nope`)).status, 404);
      assert.equal((await fetch(base, { method: 'POST' })).status, 405);

      // Slow handlers: the batch commits on time (40 ms), long before it is full.
      slow = true;
      const commitsBefore = p.status().position;
      await store.append('account-7-1', Array.from({ length: 30 }, () => ({ type: 'Noted' })));
      // Watch the checkpoint (no fixed sleep: a loaded machine may be slow): it must stop part
      // way at least once before the 30 events are all committed.
      const seen = new Set<number>();
      await until(() => {
        seen.add(p.status().position);
        return p.status().position === commitsBefore + 30;
      }, 'the slow batch');
      const partial = [...seen].filter((x) => x > commitsBefore && x < commitsBefore + 30);
      assert.ok(partial.length > 0, `a partial batch was committed on time (saw ${[...seen].join(', ')})`);
      slow = false;

      // Stopped and behind: lag in positions and in time.
      await p.stop();
      await new Promise((r) => setTimeout(r, 20));
      await appendAll(store, accountEvents(8, 1, 2));
      st = (await p.describe()).status;
      assert.equal(st.state, 'stopped');
      assert.equal(st.lagPositions, 6);
      assert.ok(typeof st.lagMs === 'number' && st.lagMs >= 20, `lagMs ${st.lagMs}`);

      // A faulted projection makes the endpoint answer 503.
      const broken = new Projection(store, memoryReadModelStore(), { ...def, name: 'broken', handlers: { Opened: () => { throw new Error('boom'); } } });
      broken.start();
      await until(() => broken.status().state === 'faulted', 'faulted');
      const server2 = http.createServer(statusHandler(() => [p, broken]));
      await new Promise<void>((r) => server2.listen(0, '127.0.0.1', r));
      try {
        res = await fetch(`http://127.0.0.1:${(server2.address() as { port: number }).port}/?name=broken`);
        assert.equal(res.status, 503);
        const b = (await res.json()) as { state: string; error: { message: string; position: number } };
        assert.equal(b.state, 'faulted');
        assert.match(b.error.message, /boom/);
        assert.equal(typeof b.error.position, 'number');
      } finally {
        server2.close();
      }
    } finally {
      server.close();
      await p.stop();
    }
  });
});

test('the same projection runs through the network client and equals the embedded build', async () => {
  const { startServer } = await import('../../src/server/server.js');
  const { loadConfig } = await import('../../src/server/config.js');
  const { connect } = await import('../../src/client/index.js');
  const server = await startServer(loadConfig({ flags: { dataDir: tempDir(), httpPort: 0, tcpPort: 0, durability: 'none', logLevel: 'error' } }), { log: () => {} });
  try {
    const client = await connect(server.tcpUrl);
    try {
      await appendAll(client, accountEvents(9, 5, 12));
      const remote = memoryReadModelStore();
      const p = new Projection(client, remote, accounts, { batchEventsMax: 20 });
      p.start();
      await until(() => p.status().state === 'live', 'live over the network');
      const tail = await appendAll(client, accountEvents(10, 2, 4));
      await until(() => p.status().position >= tail, 'live events over the network');
      await p.stop();
      const local = memoryReadModelStore();
      await new Projection(server.store, local, accounts).catchUp();
      assert.deepEqual(remote.snapshot('accounts'), local.snapshot('accounts'));
      assert.deepEqual(remote.snapshot('accounts'), await expected(server.store));
    } finally {
      await client.close();
    }
  } finally {
    await server.close();
  }
});

test('definitions and options are checked at the boundary', () => {
  const rm = memoryReadModelStore();
  const store = {} as EventStore;
  assert.throws(() => defineProjection({ name: '1bad', handlers: { A() {} } }), /projection name/);
  assert.throws(() => defineProjection({ name: 'ok', handlers: {} }), /at least one handler/);
  assert.throws(() => defineProjection({ name: 'ok', handlers: { A() {} }, bogus: 1 } as never), /unknown projection field 'bogus'/);
  assert.throws(() => defineProjection({ name: 'ok', version: 0, handlers: { A() {} } }), /version/);
  assert.throws(() => defineProjection({ name: 'ok', filter: { category: [] }, handlers: { A() {} } }), /filter.category/);
  assert.throws(() => defineProjection({ name: 'ok', collection: 'c', documentId: (e: { stream: string }) => e.stream, evolve: () => undefined } as never), /initialState/);
  assert.throws(() => new Projection(store, rm, accounts), /needs an EventStore/);
});
