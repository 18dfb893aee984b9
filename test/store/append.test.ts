import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  EventInvalidError,
  IdempotencyConflictError,
  InvalidArgumentError,
  LimitExceededError,
  OverloadedError,
  StoreClosedError,
  StreamNameInvalidError,
  WrongExpectedRevisionError,
  openStore,
} from '../../src/index.js';
import { tempDir } from '../helpers.js';

const ev = (type: string, data: unknown = {}) => ({ type, data });

test('expected revision rules: any, no_stream, stream_exists and exact revisions', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    await assert.rejects(store.append('s-1', [ev('A')], { expectedRevision: 'stream_exists' }), (e: unknown) => e instanceof WrongExpectedRevisionError && e.actualRevision === -1);
    await assert.rejects(store.append('s-1', [ev('A')], { expectedRevision: 0 }), WrongExpectedRevisionError);
    assert.deepEqual(await store.append('s-1', [ev('A'), ev('B')], { expectedRevision: 'no_stream' }), { positions: [1, 2], revision: 1 });
    await assert.rejects(store.append('s-1', [ev('C')], { expectedRevision: 'no_stream' }), (e: unknown) => e instanceof WrongExpectedRevisionError && e.actualRevision === 1 && e.code === 'WRONG_EXPECTED_REVISION');
    await assert.rejects(store.append('s-1', [ev('C')], { expectedRevision: 0 }), (e: unknown) => e instanceof WrongExpectedRevisionError && e.actualRevision === 1);
    await assert.rejects(store.append('s-1', [ev('C')], { expectedRevision: 2 }), WrongExpectedRevisionError);
    assert.deepEqual(await store.append('s-1', [ev('C')], { expectedRevision: 1 }), { positions: [3], revision: 2 });
    assert.deepEqual(await store.append('s-1', [ev('D')], { expectedRevision: 'stream_exists' }), { positions: [4], revision: 3 });
    assert.deepEqual(await store.append('s-1', [ev('E')], { expectedRevision: 'any' }), { positions: [5], revision: 4 });
    assert.deepEqual(await store.append('s-2', [ev('A')]), { positions: [6], revision: 0 });
    // -1 is accepted as a synonym for no_stream, as in KurrentDB clients.
    assert.deepEqual(await store.append('s-3', [ev('A')], { expectedRevision: -1 }), { positions: [7], revision: 0 });
  } finally {
    await store.close();
  }
});

test('a rejected append writes nothing of its batch', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    await store.append('s', [ev('A')]);
    await assert.rejects(store.append('s', [ev('B'), ev('C'), ev('D')], { expectedRevision: 5 }), WrongExpectedRevisionError);
    await assert.rejects(store.append('s', [ev('B'), { type: '' }]), EventInvalidError);
    assert.equal(await store.headPosition(), 1);
    assert.deepEqual((await store.readStream('s').toArray()).map((e) => e.type), ['A']);
    assert.equal((await store.readAll().toArray()).length, 1);
  } finally {
    await store.close();
  }
});

test('the events of one append are contiguous in the log even when appends race', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.append(`s-${i % 5}`, Array.from({ length: 1 + (i % 4) }, () => ev('E', { i })))),
    );
    for (const r of results) {
      for (let k = 1; k < r.positions.length; k++) assert.equal(r.positions[k], r.positions[k - 1]! + 1);
    }
    const all = await store.readAll().toArray();
    assert.deepEqual(all.map((e) => e.position), all.map((_, i) => i + 1));
  } finally {
    await store.close();
  }
});

test('concurrent writers with the same expected revision: exactly one wins each revision', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    await store.append('contended', [ev('Init')]);
    const attempts = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.append('contended', [ev('Try', { i })], { expectedRevision: 0 })));
    assert.equal(attempts.filter((a) => a.status === 'fulfilled').length, 1);
    for (const a of attempts) if (a.status === 'rejected') assert.ok(a.reason instanceof WrongExpectedRevisionError);
    assert.equal((await store.streamInfo('contended'))!.revision, 1);
  } finally {
    await store.close();
  }
});

test('idempotency: re-sending an append with the same ids returns the original result and writes nothing', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    const ids = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222'];
    const events = ids.map((id, i) => ({ id, type: 'T', data: { i } }));
    const first = await store.append('idem', events, { expectedRevision: 'no_stream' });
    await store.append('other', [ev('X')]);
    // Exact revision (no_stream) retry: checked against the log.
    assert.deepEqual(await store.append('idem', events, { expectedRevision: 'no_stream' }), first);
    // 'any' retry: found through the window of recent ids.
    assert.deepEqual(await store.append('idem', events), first);
    assert.deepEqual(await store.append('idem', events, { expectedRevision: 'stream_exists' }), first);
    assert.equal(await store.headPosition(), 3);
    // A partial overlap (same first id, different rest) is an error, not a silent append.
    await assert.rejects(
      store.append('idem', [events[0]!, { id: '33333333-3333-4333-8333-333333333333', type: 'T' }], { expectedRevision: 'no_stream' }),
      IdempotencyConflictError,
    );
    // A prefix of the original append is already written at those revisions: nothing to do.
    assert.deepEqual(await store.append('idem', [events[0]!]), { positions: [1], revision: 0 });
    // Longer than what was written: also a partial overlap.
    await assert.rejects(store.append('idem', [...events, { id: '44444444-4444-4444-8444-444444444444', type: 'T' }], { expectedRevision: 'no_stream' }), IdempotencyConflictError);
    // Later appends to the stream do not change the answer for the original revision.
    await store.append('idem', [ev('Later')], { expectedRevision: 1 });
    assert.deepEqual(await store.append('idem', events, { expectedRevision: 'no_stream' }), first);
    assert.equal(await store.headPosition(), 4);
  } finally {
    await store.close();
  }
});

test('idempotency survives a restart, for exact revisions and for any', async () => {
  const dir = tempDir();
  const events = [{ id: '55555555-5555-4555-8555-555555555555', type: 'T', data: 1 }];
  let store = await openStore({ dir, durability: 'none' });
  const first = await store.append('restart', events);
  await store.close();
  store = await openStore({ dir, durability: 'none' });
  try {
    assert.deepEqual(await store.append('restart', events), first);
    assert.deepEqual(await store.append('restart', events, { expectedRevision: 'no_stream' }), first);
    assert.equal(await store.headPosition(), 1);
  } finally {
    await store.close();
  }
});

test('duplicate appends racing in one group commit resolve to the same result', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'always' });
  try {
    const events = [{ id: '66666666-6666-4666-8666-666666666666', type: 'T' }];
    const results = await Promise.all([
      store.append('race', events, { expectedRevision: 'no_stream' }),
      store.append('race', events, { expectedRevision: 'no_stream' }),
      store.append('race', events),
    ]);
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual(results[2], results[0]);
    assert.equal(await store.headPosition(), 1);
  } finally {
    await store.close();
  }
});

test('limits are enforced with typed errors before anything is written', async () => {
  const store = await openStore({
    dir: tempDir(),
    durability: 'none',
    limits: { eventBytesMax: 4096, metadataBytesMax: 512, eventsPerAppendMax: 10, appendBytesMax: 16384, streamNameBytesMax: 32, eventTypeBytesMax: 16 },
  });
  try {
    await assert.rejects(store.append('s', [ev('T', 'x'.repeat(5000))]), (e: unknown) => e instanceof LimitExceededError && e.details.limit === 'eventBytesMax');
    await assert.rejects(store.append('s', [{ type: 'T', metadata: { m: 'x'.repeat(600) } }]), (e: unknown) => e instanceof LimitExceededError && e.details.limit === 'metadataBytesMax');
    await assert.rejects(store.append('s', Array.from({ length: 11 }, () => ev('T'))), (e: unknown) => e instanceof LimitExceededError && e.details.limit === 'eventsPerAppendMax');
    await assert.rejects(store.append('s', Array.from({ length: 10 }, () => ev('T', 'x'.repeat(3000)))), (e: unknown) => e instanceof LimitExceededError && e.details.limit === 'appendBytesMax');
    await assert.rejects(store.append('s'.repeat(33), [ev('T')]), StreamNameInvalidError);
    await assert.rejects(store.append('s', [ev('T'.repeat(17))]), LimitExceededError);
    assert.equal(await store.headPosition(), 0);
    assert.equal((await store.append('s', [ev('T', 'x'.repeat(3000))])).revision, 0);
  } finally {
    await store.close();
  }
});

test('bad input gets a clear typed error and the store carries on', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    const bad: Array<[unknown, unknown, unknown, new (...a: never[]) => Error]> = [
      ['', [ev('T')], undefined, StreamNameInvalidError],
      ['has space', [ev('T')], undefined, StreamNameInvalidError],
      ['tab\there', [ev('T')], undefined, StreamNameInvalidError],
      ['$system', [ev('T')], undefined, StreamNameInvalidError],
      [42, [ev('T')], undefined, StreamNameInvalidError],
      ['s', [], undefined, InvalidArgumentError],
      ['s', 'nope', undefined, InvalidArgumentError],
      ['s', [{ type: 'T', extra: 1 }], undefined, EventInvalidError],
      ['s', [{ type: 'T', id: 'not-a-uuid' }], undefined, EventInvalidError],
      ['s', [{ type: 'T', data: new Uint8Array([1, 2]), contentType: 'application/json' }], undefined, EventInvalidError],
      ['s', [{ type: 'T', data: 1n }], undefined, EventInvalidError],
      ['s', [{ type: 'T', metadata: [1] }], undefined, EventInvalidError],
      ['s', [ev('T')], { expectedRevision: 'sometimes' }, InvalidArgumentError],
      ['s', [ev('T')], { expectedRevision: -2 }, InvalidArgumentError],
      ['s', [ev('T')], { expectedRevision: 1.5 }, InvalidArgumentError],
      ['s', [ev('T')], { expected: 1 }, InvalidArgumentError],
      ['s', [{ id: '77777777-7777-4777-8777-777777777777', type: 'T' }, { id: '77777777-7777-4777-8777-777777777777', type: 'T' }], undefined, EventInvalidError],
    ];
    for (const [stream, events, options, cls] of bad) {
      await assert.rejects(store.append(stream as string, events as never, options as never), cls, `${JSON.stringify([stream, options])}`);
    }
    assert.throws(() => store.readStream('s', { direction: 'sideways' as never }), InvalidArgumentError);
    assert.throws(() => store.readAll({ filter: { category: [] } }), InvalidArgumentError);
    assert.throws(() => store.readAll({ from: -1 }), InvalidArgumentError);
    assert.equal(await store.headPosition(), 0);
    assert.equal((await store.append('s', [ev('T')])).revision, 0);
  } finally {
    await store.close();
  }
});

test('binary data keeps its bytes and content type; JSON data round-trips', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  try {
    const bytes = new Uint8Array([0, 1, 2, 255]);
    await store.append('bin', [
      { type: 'Blob', data: bytes, contentType: 'image/png' },
      { type: 'Raw', data: bytes },
      { type: 'Json', data: { nested: [1, 'two', null], unicode: 'é✓' }, metadata: { trace: 'abc' } },
      { type: 'JsonBytes', data: Buffer.from('{"pre":"encoded"}'), contentType: 'application/json' },
      { type: 'NoData' },
    ]);
    const [blob, raw, json, jsonBytes, noData] = await store.readStream('bin').toArray();
    assert.equal(blob!.contentType, 'image/png');
    assert.deepEqual([...(blob!.data as Uint8Array)], [0, 1, 2, 255]);
    assert.equal(raw!.contentType, 'application/octet-stream');
    assert.deepEqual(json!.data, { nested: [1, 'two', null], unicode: 'é✓' });
    assert.deepEqual(json!.metadata, { trace: 'abc' });
    assert.deepEqual(jsonBytes!.data, { pre: 'encoded' });
    assert.equal(noData!.data, null);
    assert.deepEqual(noData!.metadata, {});
    assert.equal(JSON.parse(JSON.stringify(json)).data.unicode, 'é✓');
  } finally {
    await store.close();
  }
});

test('a closed store refuses work with StoreClosedError, and close is idempotent', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'none' });
  await store.append('s', [ev('T')]);
  await store.close();
  await store.close();
  await assert.rejects(store.append('s', [ev('T')]), StoreClosedError);
  assert.throws(() => store.readStream('s'), StoreClosedError);
});

test('close waits for appends in flight: every acknowledged append is there after reopen', async () => {
  const dir = tempDir();
  const store = await openStore({ dir });
  const pending = Array.from({ length: 200 }, (_, i) => store.append(`s-${i % 7}`, [ev('T', { i })]));
  const closing = store.close();
  const results = await Promise.allSettled(pending);
  await closing;
  const acked = results.filter((r) => r.status === 'fulfilled').length;
  assert.equal(acked, 200);
  const again = await openStore({ dir });
  try {
    assert.equal(await again.headPosition(), 200);
  } finally {
    await again.close();
  }
});

test('a full append queue rejects with OVERLOADED (retriable) instead of growing without bound', async () => {
  const store = await openStore({ dir: tempDir(), durability: 'always', limits: { pendingAppendsMax: 5 } });
  try {
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => store.append('s', [ev('T')])));
    const overloaded = results.filter((r) => r.status === 'rejected' && r.reason instanceof OverloadedError);
    assert.ok(overloaded.length > 0);
    assert.equal((overloaded[0] as PromiseRejectedResult).reason.retriable, true);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    assert.equal(await store.headPosition(), ok);
  } finally {
    await store.close();
  }
});
