/** W3C traceparent parsing: valid headers are taken, malformed ones ignored, and an event's own traceparent wins. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTraceparent, traceContextOf, withTraceContext } from './trace.js';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

test('traceparent: the W3C format, lowercase hex, no all-zero ids, no version ff', () => {
  assert.equal(isTraceparent(TP), true);
  assert.equal(isTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'), true, 'a later version may add fields');
  for (const bad of [
    '',
    TP.toUpperCase(),
    TP + '-x',
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01',
  ]) {
    assert.equal(isTraceparent(bad), false, bad);
  }
});

test('traceContextOf: takes traceparent and a bounded tracestate; ignores what is malformed', () => {
  assert.deepEqual(traceContextOf({ traceparent: TP }), { traceparent: TP });
  assert.deepEqual(traceContextOf({ traceparent: ` ${TP} `, tracestate: 'a=1' }), { traceparent: TP, tracestate: 'a=1' });
  assert.deepEqual(traceContextOf({ traceparent: TP, tracestate: ['a=1', 'b=2'] }), { traceparent: TP, tracestate: 'a=1,b=2' });
  assert.deepEqual(traceContextOf({ traceparent: TP, tracestate: 'x'.repeat(600) }), { traceparent: TP });
  assert.equal(traceContextOf({ traceparent: 'nope', tracestate: 'a=1' }), undefined);
  assert.equal(traceContextOf({ traceparent: [TP, TP] }), undefined, 'two traceparent headers are ambiguous');
  assert.equal(traceContextOf({}), undefined);
});

test("withTraceContext: fills in metadata without a traceparent, never overrides an event's own", () => {
  const ctx = { traceparent: TP };
  assert.deepEqual(withTraceContext(undefined, ctx), { traceparent: TP });
  assert.deepEqual(withTraceContext({ a: 1 }, ctx), { a: 1, traceparent: TP });
  const own = { traceparent: '00-11111111111111111111111111111111-2222222222222222-00' };
  assert.equal(withTraceContext(own, ctx), own);
  const m = { a: 1 };
  assert.equal(withTraceContext(m, undefined), m);
});
