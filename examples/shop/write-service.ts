/**
 * The write service: HTTP commands -> the order decider -> appends to the order's stream, with the
 * stream's revision as the expected revision (a concurrent writer makes it decide again).
 *
 *   POST /orders              { "customer": "ada", "items": [{ "sku": "tea", "qty": 2, "price": 450 }] }
 *   POST /orders/:id/pay      { "amount": 900 }
 *   POST /orders/:id/cancel   { "reason": "changed my mind" }
 *
 * Environment: EVENTFUL_URL (the server), WRITE_PORT (default 8081).
 */
import { randomUUID } from 'node:crypto';
import { EventfulError, handleCommand } from '../../src/index.js';
import { connect } from '../../src/client/index.js';
import { HttpError, onStop, serve } from './http.js';
import { Refused, orderDecider, orderStream } from './domain.js';
import type { Item, OrderCommand } from './domain.js';

const store = await connect(process.env.EVENTFUL_URL ?? 'tcp://127.0.0.1:7071', { token: process.env.EVENTFUL_TOKEN });

function items(v: unknown): Item[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > 100) throw new HttpError(400, 'BAD_ORDER', 'items must be a list of 1 to 100 { sku, qty, price }');
  return v.map((i, k) => {
    const { sku, qty, price } = (i ?? {}) as Record<string, unknown>;
    if (typeof sku !== 'string' || !/^[A-Za-z0-9-]{1,40}$/.test(sku)) throw new HttpError(400, 'BAD_ORDER', `items[${k}].sku must be 1 to 40 letters, digits or '-'`);
    if (!Number.isSafeInteger(qty) || (qty as number) < 1) throw new HttpError(400, 'BAD_ORDER', `items[${k}].qty must be a positive integer`);
    if (!Number.isSafeInteger(price) || (price as number) < 0) throw new HttpError(400, 'BAD_ORDER', `items[${k}].price must be a whole number of cents`);
    return { sku, qty: qty as number, price: price as number };
  });
}

async function run(id: string, command: OrderCommand, correlationId: string): Promise<{ status: number; body: unknown }> {
  const r = await handleCommand(store, orderStream(id), orderDecider, command, { metadata: { correlationId, service: 'write' } });
  return { status: command.type === 'Place' ? 201 : 200, body: { id, status: r.state.status, total: r.state.total, revision: r.revision, positions: r.positions } };
}

const port = Number(process.env.WRITE_PORT ?? 8081);
const { server, port: bound } = await serve(
  port,
  async (req, url, body) => {
    const b = (body ?? {}) as Record<string, unknown>;
    const correlationId = (req.headers['x-correlation-id'] as string | undefined) ?? randomUUID();
    if (req.method === 'POST' && url.pathname === '/orders') {
      if (typeof b.customer !== 'string' || b.customer.length === 0) throw new HttpError(400, 'BAD_ORDER', 'customer must be a non-empty string');
      const id = typeof b.id === 'string' && /^[A-Za-z0-9]{1,40}$/.test(b.id) ? b.id : randomUUID().slice(0, 8);
      return run(id, { type: 'Place', customer: b.customer, items: items(b.items) }, correlationId);
    }
    const m = /^\/orders\/([A-Za-z0-9]{1,40})\/(pay|cancel)$/.exec(url.pathname);
    if (req.method === 'POST' && m) {
      const id = m[1]!;
      if (m[2] === 'pay') {
        if (!Number.isSafeInteger(b.amount)) throw new HttpError(400, 'BAD_PAYMENT', 'amount must be a whole number of cents');
        return run(id, { type: 'Pay', amount: b.amount as number }, correlationId);
      }
      return run(id, { type: 'Cancel', reason: typeof b.reason === 'string' ? b.reason : 'no reason given' }, correlationId);
    }
    if (req.method === 'GET' && url.pathname === '/health') return { body: { ok: true } };
    return undefined;
  },
  (err) => {
    if (err instanceof Refused) return { status: 409, body: { code: 'REFUSED', message: err.message } };
    if (err instanceof EventfulError) return { status: err.httpStatus, body: { code: err.code, message: err.message } };
    return undefined;
  },
);
console.log(`write service on http://127.0.0.1:${bound}`);
onStop(async () => {
  server.close();
  await store.close();
});
