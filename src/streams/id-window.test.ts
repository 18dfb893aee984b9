import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdWindow } from './id-window.js';

test('the id window keeps at least the last `capacity` ids (at most twice that), and a re-added id counts as new', () => {
  const w = new IdWindow(3);
  for (const id of ['a', 'b', 'c', 'd']) w.add(id, 's', id.charCodeAt(0));
  // a, b, c are the old generation, d the young one: all remembered.
  assert.deepEqual(w.get('a'), { stream: 's', revision: 97 });
  assert.deepEqual(w.get('d'), { stream: 's', revision: 100 });
  assert.equal(w.size, 4);
  w.add('b', 't', 1); // b again: the newest value wins
  assert.equal(w.get('b')?.stream, 't');
  w.add('e', 's', 2); // young (d, b, e) is full at the next add
  w.add('f', 's', 3); // a, c dropped with the old generation
  assert.equal(w.get('a'), undefined);
  assert.equal(w.get('c'), undefined);
  for (const id of ['d', 'b', 'e', 'f']) assert.notEqual(w.get(id), undefined, id);
  assert.equal(w.get('b')?.stream, 't');
  // However many are added, the last `capacity` are always there.
  for (let i = 0; i < 100; i++) {
    w.add(`x${i}`, 's', i);
    for (let k = Math.max(0, i - 2); k <= i; k++) assert.equal(w.get(`x${k}`)?.revision, k);
    assert.ok(w.size <= 6);
  }
});

test('a window of capacity 0 remembers nothing', () => {
  const w = new IdWindow(0);
  w.add('a', 's', 0);
  assert.equal(w.get('a'), undefined);
});
