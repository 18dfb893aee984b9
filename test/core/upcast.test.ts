/**
 * Upcasters: the registry that turns old shapes of events into the current one at read time.
 * Each test names the property it proves; every transform registered in a test is exercised.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONTENT_TYPE_JSON, InvalidArgumentError, Upcasters, openStore, schemaVersionOf } from '../../src/index.js';
import type { EventView, Upcaster } from '../../src/index.js';
import { tempDir } from '../helpers.js';

function view(type: string, data: unknown, metadata: Record<string, unknown> = {}): EventView {
  return { id: '00000000-0000-4000-8000-000000000001', stream: 'order-1', revision: 3, position: 42, type, data, metadata, timestamp: 1_700_000_000_000, contentType: CONTENT_TYPE_JSON };
}

/** A transform that records every call it gets: the data and the view it was handed. */
function recording(u: Upcaster): Upcaster & { calls: { data: unknown; type: string; version: number }[] } {
  const calls: { data: unknown; type: string; version: number }[] = [];
  return {
    ...u,
    calls,
    upcast(data, event) {
      calls.push({ data, type: event.type, version: schemaVersionOf(event.metadata) });
      return u.upcast(data, event);
    },
  };
}

test('no transform applies: the very same object comes back, no copy', () => {
  const e = view('OrderPlaced', { total: 1 }, { actor: 'a' });
  assert.equal(new Upcasters().apply(e), e, 'empty registry');
  const reg = new Upcasters([{ type: 'OrderShipped', fromVersion: 1, upcast: (d) => d }]);
  assert.equal(reg.apply(e), e, 'no transform for this type');
  const placed = new Upcasters([{ type: 'OrderPlaced', fromVersion: 1, upcast: (d) => d }]);
  const current = view('OrderPlaced', { total: 1 }, { schemaVersion: 2 });
  assert.equal(placed.apply(current), current, 'already at the current version');
  assert.deepEqual(current.metadata, { schemaVersion: 2 });
});

test('a chain v1 -> v2 -> v3 applies each transform once, in order, each seeing the shape it reads', () => {
  const v1to2 = recording({ type: 'OrderPlaced', fromVersion: 1, upcast: (d) => ({ totalCents: (d as { total: number }).total * 100 }) });
  const v2to3 = recording({ type: 'OrderPlaced', fromVersion: 2, upcast: (d) => ({ amount: { cents: (d as { totalCents: number }).totalCents, currency: 'EUR' } }) });
  // Registered out of order on purpose: the order of application comes from the versions.
  const reg = new Upcasters([v2to3, v1to2]);
  const out = reg.apply(view('OrderPlaced', { total: 5 }));
  assert.deepEqual(out.data, { amount: { cents: 500, currency: 'EUR' } });
  assert.equal(out.type, 'OrderPlaced');
  assert.deepEqual(v1to2.calls, [{ data: { total: 5 }, type: 'OrderPlaced', version: 1 }]);
  assert.deepEqual(v2to3.calls, [{ data: { totalCents: 500 }, type: 'OrderPlaced', version: 2 }]);

  // An event stored at v2 starts the chain at v2: only the second transform runs.
  const fromV2 = reg.apply(view('OrderPlaced', { totalCents: 700 }, { schemaVersion: 2 }));
  assert.deepEqual(fromV2.data, { amount: { cents: 700, currency: 'EUR' } });
  assert.equal(v1to2.calls.length, 1);
  assert.equal(v2to3.calls.length, 2);
});

test('newType renames the event, and the chain goes on under the new name', () => {
  const rename = recording({ type: 'OrderCreated', fromVersion: 1, newType: 'OrderPlaced', upcast: (d) => ({ ...(d as object), renamed: true }) });
  const next = recording({ type: 'OrderPlaced', fromVersion: 2, upcast: (d) => ({ ...(d as object), v3: true }) });
  const reg = new Upcasters([rename, next]);
  const out = reg.apply(view('OrderCreated', { id: 'o-1' }));
  assert.equal(out.type, 'OrderPlaced');
  assert.deepEqual(out.data, { id: 'o-1', renamed: true, v3: true });
  assert.equal(schemaVersionOf(out.metadata), 3);
  assert.deepEqual(rename.calls, [{ data: { id: 'o-1' }, type: 'OrderCreated', version: 1 }]);
  assert.deepEqual(next.calls, [{ data: { id: 'o-1', renamed: true }, type: 'OrderPlaced', version: 2 }], 'the second transform sees the renamed event');
  // An OrderPlaced v1 (written before the rename existed) is not touched by the v2 transform.
  const old = view('OrderPlaced', { id: 'o-2' });
  assert.equal(reg.apply(old), old);
});

test('schemaVersion is read from metadata: absent or not a positive integer means 1', () => {
  assert.equal(schemaVersionOf({}), 1);
  assert.equal(schemaVersionOf({ schemaVersion: 4 }), 4);
  for (const bad of [0, -1, 1.5, '2', null, Number.NaN, 2 ** 60]) assert.equal(schemaVersionOf({ schemaVersion: bad }), 1, String(bad));
  const reg = new Upcasters([
    { type: 'T', fromVersion: 1, upcast: () => 'from 1' },
    { type: 'T', fromVersion: 4, upcast: () => 'from 4' },
  ]);
  assert.equal(reg.apply(view('T', null)).data, 'from 1');
  assert.equal(reg.apply(view('T', null, { schemaVersion: 4 })).data, 'from 4');
  assert.equal(reg.apply(view('T', null, { schemaVersion: '4' })).data, 'from 1', 'a string version reads as 1');
});

test('the result carries the new schemaVersion and the rest of the metadata and fields; the input is not changed', () => {
  const reg = new Upcasters([{ type: 'A', fromVersion: 1, newType: 'B', upcast: (d) => ({ wrapped: d }) }]);
  const e = view('A', { x: 1 }, { actor: 'ann', correlationId: 'c-1', schemaVersion: 1 });
  const out = reg.apply(e);
  assert.notEqual(out, e);
  assert.deepEqual(out, {
    id: e.id,
    stream: 'order-1',
    revision: 3,
    position: 42,
    type: 'B',
    data: { wrapped: { x: 1 } },
    metadata: { actor: 'ann', correlationId: 'c-1', schemaVersion: 2 },
    timestamp: e.timestamp,
    contentType: CONTENT_TYPE_JSON,
  });
  assert.deepEqual(e.metadata, { actor: 'ann', correlationId: 'c-1', schemaVersion: 1 }, 'the stored event is left as it is');
  assert.equal(e.type, 'A');
});

test('registration errors: duplicates, bad versions, missing parts; a refused registration adds nothing', () => {
  const ok: Upcaster = { type: 'T', fromVersion: 1, upcast: (d) => d };
  const reg = new Upcasters([ok]);
  assert.throws(() => reg.register({ ...ok, upcast: (d) => d }), (e: unknown) => e instanceof InvalidArgumentError && /already registered/.test(e.message));
  assert.throws(() => new Upcasters([ok, ok]), InvalidArgumentError);
  for (const fromVersion of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1' as unknown as number, undefined as unknown as number]) {
    assert.throws(() => reg.register({ type: 'U', fromVersion, upcast: (d) => d }), /fromVersion must be an integer >= 1/, String(fromVersion));
  }
  assert.throws(() => reg.register({ type: '', fromVersion: 1, upcast: (d) => d }), /needs the event type/);
  assert.throws(() => reg.register({ type: 'U', fromVersion: 1, upcast: 'no' as unknown as Upcaster['upcast'] }), /upcast must be a function/);
  assert.throws(() => reg.register({ type: 'U', fromVersion: 1, newType: '', upcast: (d) => d }), /newType must be a non-empty string/);
  assert.equal(reg.size, 1, 'nothing was added by the refused registrations');
  // The same version of two different types is no conflict; register chains.
  assert.equal(reg.register({ type: 'U', fromVersion: 1, upcast: (d) => d }).register({ type: 'U', fromVersion: 2, upcast: (d) => d }), reg);
  assert.equal(reg.size, 3);
});

test('renames that go round cannot loop: every step raises the version, the chain ends at the last one registered', () => {
  const ab = recording({ type: 'A', fromVersion: 1, newType: 'B', upcast: (d) => [...(d as string[]), 'A1->B2'] });
  const ba = recording({ type: 'B', fromVersion: 2, newType: 'A', upcast: (d) => [...(d as string[]), 'B2->A3'] });
  const ab3 = recording({ type: 'A', fromVersion: 3, newType: 'B', upcast: (d) => [...(d as string[]), 'A3->B4'] });
  const reg = new Upcasters([ab, ba, ab3]);
  const out = reg.apply(view('A', []));
  assert.equal(out.type, 'B');
  assert.equal(schemaVersionOf(out.metadata), 4);
  assert.deepEqual(out.data, ['A1->B2', 'B2->A3', 'A3->B4']);
  for (const u of [ab, ba, ab3]) assert.equal(u.calls.length, 1);
  // A B at v1 was never renamed: nothing applies. An A stored at v3 takes only the last step.
  assert.deepEqual(reg.apply(view('B', [])).data, []);
  assert.deepEqual(reg.apply(view('A', [], { schemaVersion: 3 })).data, ['A3->B4']);
});

test('a long chain (200 versions) is applied in full: no step limit mistakes it for a cycle', () => {
  const reg = new Upcasters(Array.from({ length: 200 }, (_, i): Upcaster => ({ type: 'Counter', fromVersion: i + 1, upcast: (d) => (d as number) + 1 })));
  const out = reg.apply(view('Counter', 0));
  assert.equal(out.data, 200);
  assert.equal(out.metadata.schemaVersion, 201);
});

test('a transform that throws: the error reaches the reader unchanged', () => {
  const boom = new Error('bad v1 data');
  const reg = new Upcasters([{ type: 'T', fromVersion: 1, upcast: () => { throw boom; } }]);
  assert.throws(() => reg.apply(view('T', {})), (e) => e === boom);
});

test('currentVersion: the version writers stamp, following renames', () => {
  const reg = new Upcasters([
    { type: 'OrderCreated', fromVersion: 1, newType: 'OrderPlaced', upcast: (d) => d },
    { type: 'OrderPlaced', fromVersion: 2, upcast: (d) => d },
    { type: 'OrderShipped', fromVersion: 1, upcast: (d) => d },
  ]);
  assert.equal(reg.currentVersion('OrderPlaced'), 3);
  assert.equal(reg.currentVersion('OrderShipped'), 2);
  assert.equal(reg.currentVersion('OrderCancelled'), 1, 'no transform: version 1');
  // An event written at the current version is left alone.
  const e = view('OrderPlaced', { id: 1 }, { schemaVersion: reg.currentVersion('OrderPlaced') });
  assert.equal(reg.apply(e), e);
});

test('stored events: a RecordedEvent read from the store upcasts like any view, and comes back as is when current', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await store.append('order-7', [
      { type: 'OrderPlaced', data: { total: 3 }, metadata: { actor: 'x' } },
      { type: 'OrderPlaced', data: { totalCents: 400 }, metadata: { schemaVersion: 2 } },
    ]);
    const [v1, v2] = await store.readStream('order-7').toArray();
    const reg = new Upcasters([{ type: 'OrderPlaced', fromVersion: 1, upcast: (d) => ({ totalCents: (d as { total: number }).total * 100 }) }]);
    const out = reg.apply(v1!);
    assert.deepEqual(out.data, { totalCents: 300 });
    assert.deepEqual(out.metadata, { actor: 'x', schemaVersion: 2 });
    assert.equal(out.stream, 'order-7');
    assert.equal(out.position, v1!.position);
    assert.equal(out.id, v1!.id);
    assert.equal(reg.apply(v2!), v2);
  } finally {
    await store.close();
  }
});
