import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecordedEvent } from '../core/events.js';
import { decodeEventRecords, encodeEventRecords } from './records.js';

const id = (n: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (n * 31 + i) & 0xff);

test('event records round-trip every field, with and without metadata, JSON and bytes', () => {
  const events = [
    RecordedEvent.fromParts(1, 'order-1', 0, id(1), 'OrderPlaced', 'application/json', 1_700_000_000_000, new TextEncoder().encode('{"by":"ada"}'), new TextEncoder().encode('{"total":42}')),
    RecordedEvent.fromParts(2 ** 40 + 3, 'café-☕', 2 ** 33, id(2), 'Blob', 'image/png', 5, undefined, Uint8Array.from([0, 255, 7])),
    RecordedEvent.fromParts(9, 'order-1', 1, id(3), 'OrderPlaced', 'application/json', 6, undefined, new Uint8Array(0)),
  ];
  const back = decodeEventRecords(encodeEventRecords(events), events.length);
  assert.equal(back.length, 3);
  for (let i = 0; i < 3; i++) {
    const a = events[i]!;
    const b = back[i]!;
    assert.deepEqual(
      [b.position, b.stream, b.revision, b.id, b.type, b.contentType, b.timestamp, [...b.rawData], b.rawMetadata && [...b.rawMetadata]],
      [a.position, a.stream, a.revision, a.id, a.type, a.contentType, a.timestamp, [...a.rawData], a.rawMetadata && [...a.rawMetadata]],
    );
  }
  assert.deepEqual(back[0]!.metadata, { by: 'ada' });
  assert.equal(back[2]!.data, null);
});

test('malformed records are a ProtocolError, never a wrong event', () => {
  const good = encodeEventRecords([RecordedEvent.fromParts(1, 's', 0, id(1), 'T', 'application/json', 1, undefined, new TextEncoder().encode('1'))]);
  assert.throws(() => decodeEventRecords(good.subarray(0, good.length - 1), 1), { code: 'PROTOCOL_ERROR' });
  assert.throws(() => decodeEventRecords(good, 2), { code: 'PROTOCOL_ERROR' });
  const bad = Uint8Array.from(good);
  bad[44] = 200; // stream length no longer adds up
  assert.throws(() => decodeEventRecords(bad, 1), { code: 'PROTOCOL_ERROR' });
  const extra = new Uint8Array(good.length + 1);
  extra.set(good);
  assert.throws(() => decodeEventRecords(extra, 1), { code: 'PROTOCOL_ERROR' });
});
