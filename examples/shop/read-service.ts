/**
 * The read service: projections follow the log and keep read models in an LMDB store on this
 * service's own disk, each checkpoint committed in the same transaction as the changes it
 * covers; HTTP queries read the models.
 *
 *   GET /orders/:id           one order
 *   GET /orders?status=paid   orders by status (placed, paid, cancelled, shipped)
 *   GET /sales                units and revenue per SKU
 *   GET /status               the projections' position, lag, events/s and errors
 *
 * A new `version` of a projection rebuilds beside the old one, which answers queries until the
 * new one has caught up (blue-green). Environment: EVENTFUL_URL, READ_PORT (default 8082),
 * READ_MODELS_DIR (default ./read-models).
 */
import { Projection, openLmdbReadModelStore } from '../../src/index.js';
import { connect } from '../../src/client/index.js';
import { HttpError, onStop, serve } from './http.js';
import { ordersProjection, salesProjection } from './domain.js';
import type { OrderView, SkuSales } from './domain.js';

const store = await connect(process.env.EVENTFUL_URL ?? 'tcp://127.0.0.1:7071', { token: process.env.EVENTFUL_TOKEN });
const models = openLmdbReadModelStore({ dir: process.env.READ_MODELS_DIR ?? './read-models' });

const projections = [new Projection(store, models, ordersProjection), new Projection(store, models, salesProjection)];
for (const p of projections) p.start();

const STATUSES = new Set(['placed', 'paid', 'cancelled', 'shipped']);
const port = Number(process.env.READ_PORT ?? 8082);
const { server, port: bound } = await serve(
  port,
  async (req, url) => {
    if (req.method !== 'GET') return undefined;
    const one = /^\/orders\/([A-Za-z0-9]{1,40})$/.exec(url.pathname);
    if (one) {
      const order = await models.get<OrderView>('orders', 'orders', one[1]!);
      if (order === undefined) throw new HttpError(404, 'NO_ORDER', `no order '${one[1]}' (yet: the read model follows the log within milliseconds)`);
      return { body: order };
    }
    if (url.pathname === '/orders') {
      const s = url.searchParams.get('status');
      if (s !== null && !STATUSES.has(s)) throw new HttpError(400, 'BAD_STATUS', `status must be one of ${[...STATUSES].join(', ')}`);
      const rows = s === null ? await models.list<OrderView>('orders', 'orders', { limit: 100 }) : await models.find<OrderView>('orders', 'orders', { status: s }, { limit: 100 });
      return { body: { orders: rows.map((r) => r.doc) } };
    }
    if (url.pathname === '/sales') {
      const rows = await models.list<SkuSales>('sales', 'sales');
      return { body: { sales: rows.map((r) => r.doc) } };
    }
    if (url.pathname === '/status') return { body: { projections: projections.map((p) => p.status()) } };
    return undefined;
  },
  () => undefined,
);
console.log(`read service on http://127.0.0.1:${bound}`);
onStop(async () => {
  server.close();
  for (const p of projections) await p.stop();
  await models.close();
  await store.close();
});
