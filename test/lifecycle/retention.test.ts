/**
 * Stream retention and deletion: truncate-before, max count and max age hide events from every
 * read at once (stream reads, $all, catch-up subscriptions); a soft delete makes a stream read as
 * empty and not exist, and appending again goes on from its next revision; a hard delete is for
 * good, across a restart; all of it through the client too.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { InvalidArgumentError, StreamDeletedError, WrongExpectedRevisionError, openStore } from '../../src/index.js';
import type { EventStore, FileEventStore } from '../../src/index.js';
import { connect } from '../../src/client/index.js';
import { startServerProcess } from '../e2e/server-process.js';
import { tempDir } from '../helpers.js';

async function revisions(store: EventStore, stream: string, backwards = false): Promise<number[]> {
  return (await store.readStream(stream, backwards ? { direction: 'backwards' } : {}).toArray()).map((e) => e.revision);
}

async function fill(store: EventStore, stream: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await store.append(stream, [{ type: 'E', data: { i } }]);
}

async function checkRetention(store: EventStore): Promise<void> {
  await fill(store, 'ret-1', 10);
  await store.append('other-1', [{ type: 'E' }]);
  await store.setStreamMetadata('ret-1', { truncateBefore: 4 });
  assert.deepEqual(await store.getStreamMetadata('ret-1'), { truncateBefore: 4 });
  assert.deepEqual(await revisions(store, 'ret-1'), [4, 5, 6, 7, 8, 9]);
  assert.deepEqual(await revisions(store, 'ret-1', true), [9, 8, 7, 6, 5, 4]);
  const all = (await store.readAll({ filter: { category: 'ret' } }).toArray()).map((e) => e.revision);
  assert.deepEqual(all, [4, 5, 6, 7, 8, 9]);
  const sub = store.subscribeToAll({ from: 'start', filter: { category: 'ret' } });
  const it = sub[Symbol.asyncIterator]();
  assert.equal((await it.next()).value!.revision, 4, 'a catch-up subscription skips what is truncated');
  await sub.close();
  const subStream = store.subscribeToStream('ret-1', { from: 'start' });
  assert.equal((await subStream[Symbol.asyncIterator]().next()).value!.revision, 4);
  await subStream.close();
  // Max count: only the last 3, moving as events are appended.
  await store.setStreamMetadata('ret-1', { maxCount: 3 });
  assert.deepEqual(await revisions(store, 'ret-1'), [7, 8, 9]);
  await store.append('ret-1', [{ type: 'E' }]);
  assert.deepEqual(await revisions(store, 'ret-1'), [8, 9, 10]);
  // Max age.
  await store.setStreamMetadata('ret-1', { maxAgeMs: 150 });
  await new Promise((r) => setTimeout(r, 250));
  await store.append('ret-1', [{ type: 'Fresh' }]);
  assert.deepEqual(await revisions(store, 'ret-1'), [11]);
  // Metadata replaced by {} shows everything again: hidden is not gone until a scavenge.
  await store.setStreamMetadata('ret-1', {});
  assert.equal((await revisions(store, 'ret-1')).length, 12);
  await assert.rejects(store.setStreamMetadata('ret-1', { maxCount: 0 }), InvalidArgumentError);
  await assert.rejects(store.setStreamMetadata('ret-1', { deleted: 'hard' } as never), InvalidArgumentError);
  await assert.rejects(store.setStreamMetadata('ret-1', { nope: 1 } as never), InvalidArgumentError);
}

async function checkDeletion(store: EventStore): Promise<void> {
  await fill(store, 'del-1', 3);
  await assert.rejects(store.deleteStream('del-1', { expectedRevision: 1 }), WrongExpectedRevisionError);
  await store.deleteStream('del-1', { expectedRevision: 2 });
  assert.deepEqual(await revisions(store, 'del-1'), []);
  assert.equal(await store.streamInfo('del-1'), undefined);
  assert.ok(!(await store.listStreams({ prefix: 'del-' })).some((s) => s.stream === 'del-1'));
  await assert.rejects(store.append('del-1', [{ type: 'E' }], { expectedRevision: 'stream_exists' }), WrongExpectedRevisionError);
  // It does not exist, so no_stream appends; revisions go on from where they were.
  const r = await store.append('del-1', [{ type: 'Again' }], { expectedRevision: 'no_stream' });
  assert.equal(r.revision, 3);
  assert.deepEqual(await revisions(store, 'del-1'), [3]);
  assert.equal((await store.streamInfo('del-1'))?.revision, 3);

  await fill(store, 'gone-1', 2);
  await store.deleteStream('gone-1', { hard: true });
  await assert.rejects(store.append('gone-1', [{ type: 'E' }]), StreamDeletedError);
  await assert.rejects(store.readStream('gone-1').toArray(), StreamDeletedError);
  await assert.rejects(store.setStreamMetadata('gone-1', { maxCount: 1 }), StreamDeletedError);
  await assert.rejects(store.deleteStream('gone-1'), StreamDeletedError);
  assert.equal(await store.streamInfo('gone-1'), undefined);
  assert.equal((await store.readAll({ filter: { category: 'gone' } }).toArray()).length, 0);
  // A stream that never existed: a soft delete does nothing, a hard one reserves the name.
  await store.deleteStream('never-1');
  await store.append('never-1', [{ type: 'E' }], { expectedRevision: 'no_stream' });
}

test('retention hides events from every read at once (embedded)', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await checkRetention(store);
  } finally {
    await store.close();
  }
});

test('soft and hard deletes (embedded), and both survive a restart', async () => {
  const dir = tempDir();
  let store: FileEventStore = await openStore({ dir });
  try {
    await checkDeletion(store);
    await store.setStreamMetadata('keep-1', { maxCount: 5 });
  } finally {
    await store.close();
  }
  store = await openStore({ dir });
  try {
    await assert.rejects(store.append('gone-1', [{ type: 'E' }]), StreamDeletedError);
    assert.deepEqual(await revisions(store, 'del-1'), [3]);
    assert.deepEqual(await store.getStreamMetadata('keep-1'), { maxCount: 5 });
  } finally {
    await store.close();
  }
});

test('retention and deletion through the client', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-retention-e2e-'));
  const server = await startServerProcess(dir);
  const client = await connect(server.tcpUrl);
  try {
    await checkRetention(client);
    await checkDeletion(client);
  } finally {
    await client.close();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
