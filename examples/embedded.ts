/**
 * The embedded event store in one file: append to streams, read a stream back, replay the whole
 * log to build a read model, and see optimistic concurrency refuse a stale write.
 * Run with `npm run example` (it writes to a temporary directory and removes it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WrongExpectedRevisionError, openStore } from '../src/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-example-'));
const store = await openStore({ dir });

// A write service appends events; `no_stream` makes the first append create the stream.
await store.append('order-1001', [{ type: 'OrderPlaced', data: { customer: 'ada', total: 42 } }], { expectedRevision: 'no_stream' });
await store.append('order-1001', [{ type: 'ItemAdded', data: { sku: 'tea', qty: 2 } }], { expectedRevision: 0 });
await store.append('order-1002', [
  { type: 'OrderPlaced', data: { customer: 'grace', total: 7 } },
  { type: 'OrderShipped', data: { carrier: 'post' }, metadata: { actor: 'warehouse-3' } },
]);

// Read one stream back, in order.
console.log('order-1001:');
for await (const e of store.readStream('order-1001')) {
  console.log(`  r${e.revision} @${e.position} ${e.type} ${JSON.stringify(e.data)}`);
}

// Optimistic concurrency: a writer that read revision 0 cannot append after someone else did.
try {
  await store.append('order-1001', [{ type: 'OrderCancelled' }], { expectedRevision: 0 });
} catch (err) {
  if (err instanceof WrongExpectedRevisionError) console.log(`stale write refused: stream is at revision ${err.actualRevision}`);
  else throw err;
}

// Replay the whole log ($all) in order to build a read model: revenue per customer.
const revenue = new Map<string, number>();
for await (const e of store.readAll({ filter: { category: 'order', types: ['OrderPlaced'] } })) {
  const { customer, total } = e.data as { customer: string; total: number };
  revenue.set(customer, (revenue.get(customer) ?? 0) + total);
}
console.log('revenue by customer:', Object.fromEntries(revenue));
console.log('stream info:', await store.streamInfo('order-1002'));

await store.close();
fs.rmSync(dir, { recursive: true, force: true });
