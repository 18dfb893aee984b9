/**
 * The server sends subscriptions to $all as the log's frames turned into wire records without
 * decoding them: the bytes must be exactly what encoding the decoded events gives.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openStore } from '../../src/index.js';
import { encodeEventRecords, decodeEventRecords } from '../../src/protocol/records.js';
import { framesToRecords } from '../../src/server/session.js';
import type { FrameRef } from '../../src/server/session.js';
import { tempDir } from '../helpers.js';

test('framesToRecords gives the bytes encodeEventRecords gives for the same events', async () => {
  const store = await openStore({ dir: tempDir() });
  try {
    await store.append('zürich-1', [{ type: 'Ünïcode', data: { s: 'ä€𝄞' }, metadata: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } }]);
    await store.append('bin-1', [{ type: 'Bytes', data: new Uint8Array([0, 255, 7]) }, { type: 'Empty' }]);
    await store.append('text-1', [{ type: 'T', data: new TextEncoder().encode('plain'), contentType: 'text/plain' }]);
    await store.append('big-1', [{ type: 'Big', data: { pad: 'x'.repeat(100_000) } }]);
    const events = await store.readAll().toArray();
    const state = { closed: false };
    const refs: FrameRef[] = [];
    for await (const page of store.followFrames(1, undefined, state)) {
      refs.push(...page);
      if (refs.length >= events.length) break;
    }
    state.closed = true;
    const fast = framesToRecords(refs);
    assert.deepEqual(Buffer.from(fast), Buffer.from(encodeEventRecords(events)));
    const back = decodeEventRecords(fast, refs.length);
    assert.deepEqual(
      back.map((e) => e.toJSON()),
      events.map((e) => e.toJSON()),
    );
    // Filtered like subscribeToAll.
    const filtered: FrameRef[] = [];
    const s2 = { closed: false };
    for await (const page of store.followFrames(1, { category: 'bin' }, s2)) {
      filtered.push(...page);
      break;
    }
    s2.closed = true;
    assert.deepEqual(
      decodeEventRecords(framesToRecords(filtered), filtered.length).map((e) => e.type),
      ['Bytes', 'Empty'],
    );
  } finally {
    await store.close();
  }
});
