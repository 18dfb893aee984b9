import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdWindow } from './id-window.js';

test('the id window keeps exactly the last `capacity` ids, and a re-added id counts as new', () => {
  const w = new IdWindow(3);
  for (const id of ['a', 'b', 'c', 'd']) w.add(id, 's', id.charCodeAt(0));
  assert.equal(w.get('a'), undefined);
  assert.deepEqual(w.get('d'), { stream: 's', revision: 100 });
  assert.equal(w.size, 3);
  w.add('b', 't', 1); // b again: now the newest
  w.add('e', 's', 2);
  w.add('f', 's', 3);
  assert.equal(w.get('c'), undefined);
  assert.equal(w.get('d'), undefined);
  assert.equal(w.get('b')?.stream, 't');
  assert.equal(w.size, 3);
});

test('a window of capacity 0 remembers nothing', () => {
  const w = new IdWindow(0);
  w.add('a', 's', 0);
  assert.equal(w.get('a'), undefined);
});
