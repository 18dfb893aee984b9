/**
 * The fulfilment worker: a queue bound to the log hands it every OrderPaid event (no one sends it
 * anything: the write service only appends to order streams). For each, it books a parcel with
 * the carrier, a side effect that can fail, and records OrderShipped through the order decider.
 *
 * Failures are the queue's to handle: a nack brings the message back after the queue's back-off;
 * after `maxDeliveries` it goes to the dead-letter queue `fulfilment-dlq` for a person to look at
 * (and `eventful queue redrive fulfilment-dlq` sends it back once the cause is fixed).
 *
 * The carrier here is simulated: SKUs starting with `fragile` are always refused (they end in
 * dead letters), and an order's first booking attempt fails when its id starts with `retry`
 * (it succeeds on the next delivery, after the back-off).
 *
 * Environment: EVENTFUL_URL (the server).
 */
import { handleCommand } from '../../src/index.js';
import { connect } from '../../src/client/index.js';
import type { Delivery } from '../../src/client/index.js';
import { onStop } from './http.js';
import { Refused, orderDecider } from './domain.js';
import type { Item } from './domain.js';

const store = await connect(process.env.EVENTFUL_URL ?? 'tcp://127.0.0.1:7071', { token: process.env.EVENTFUL_TOKEN });

// Idempotent set-up: each worker that starts makes sure the queues exist with these settings.
const settings = {
  binding: { filter: { category: 'order', types: 'OrderPaid' }, from: 'start' as const },
  maxDeliveries: 3,
  deadLetterQueue: 'fulfilment-dlq',
  leaseMs: 30_000,
  retryBackoff: { initialMs: 500, maxMs: 5_000, multiplier: 2, jitter: 0.2 },
};
if ((await store.queues.get('fulfilment')) === undefined) {
  await store.queues.create('fulfilment', settings).catch(async (err) => {
    if ((err as { code?: string }).code !== 'QUEUE_EXISTS') throw err;
  });
}

async function bookParcel(orderId: string, items: Item[], attempt: number): Promise<string> {
  const fragile = items.find((i) => i.sku.startsWith('fragile'));
  if (fragile !== undefined) throw new Error(`the carrier refuses ${fragile.sku}`);
  if (orderId.startsWith('retry') && attempt === 1) throw new Error('the carrier timed out');
  return `TRK-${orderId.toUpperCase()}`;
}

async function handle(d: Delivery): Promise<void> {
  // The message is the OrderPaid event itself, in the order stream where the write service appended it.
  const stream = d.stream;
  const orderId = stream.slice('order-'.length);
  const placed = (await store.readStream(stream, { limit: 1 }).toArray())[0];
  const items = (placed?.data as { items: Item[] } | undefined)?.items ?? [];
  const trackingId = await bookParcel(orderId, items, d.deliveryCount);
  await handleCommand(store, stream, orderDecider, { type: 'Ship', carrier: 'parcel-co', trackingId }, { metadata: { causationId: d.id, service: 'worker' } });
}

const consumer = store.queues.consume('fulfilment', { prefetch: 16 });
console.log('fulfilment worker consuming queue fulfilment');
onStop(async () => {
  await consumer.close();
  await store.close();
});
for await (const d of consumer) {
  try {
    await handle(d);
    await d.ack();
    console.log(`shipped ${d.stream}`);
  } catch (err) {
    const permanent = err instanceof Refused; // e.g. cancelled after payment: nothing to ship
    console.log(`${d.stream}: ${(err as Error).message}${permanent ? ' (dropped)' : ` (delivery ${d.deliveryCount} of 3)`}`);
    if (permanent) await d.ack();
    else await d.nack({ reason: (err as Error).message });
  }
}
