import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StringInterner } from './intern.js';

test('the interner returns the same text as a plain decode, for hits, misses, collisions and long strings', () => {
  const t = new StringInterner();
  const words = ['order-1', 'order-2', 'café-☕', '', 'x'.repeat(64), 'y'.repeat(65)];
  for (let round = 0; round < 3; round++) {
    for (const w of words) {
      const buf = Buffer.concat([Buffer.from('ab'), Buffer.from(w), Buffer.from('cd')]);
      assert.equal(t.decode(buf, 2, buf.length - 2), w);
    }
  }
  // Many distinct strings force slot reuse; every answer must still be exact.
  for (let i = 0; i < 20_000; i++) {
    const w = `stream-${i}`;
    const buf = Buffer.from(w);
    assert.equal(t.decode(buf, 0, buf.length), w);
  }
});
