/**
 * The shop's domain: an order as a decider (commands in, events out), and the read models the
 * read service builds from the events. Shared by the three services; none of them shares
 * anything else: they talk only through Eventful.
 */
import { defineProjection } from '../../src/index.js';
import type { Decider, EventView } from '../../src/index.js';

export interface Item {
  sku: string;
  qty: number;
  /** Price of one, in cents. */
  price: number;
}

export type OrderCommand =
  | { type: 'Place'; customer: string; items: Item[] }
  | { type: 'Pay'; amount: number }
  | { type: 'Cancel'; reason: string }
  | { type: 'Ship'; carrier: string; trackingId: string };

export type OrderStatus = 'none' | 'placed' | 'paid' | 'cancelled' | 'shipped';

export interface OrderState {
  status: OrderStatus;
  total: number;
}

/** A command the order's state refuses: the write service answers 409 with its message. */
export class Refused extends Error {}

export const orderDecider: Decider<OrderCommand, OrderState> = {
  initialState: { status: 'none', total: 0 },
  decide(c, s) {
    switch (c.type) {
      case 'Place': {
        if (s.status !== 'none') throw new Refused('the order exists already');
        const total = c.items.reduce((sum, i) => sum + i.qty * i.price, 0);
        return [{ type: 'OrderPlaced', data: { customer: c.customer, items: c.items, total } }];
      }
      case 'Pay':
        if (s.status !== 'placed') throw new Refused(`an order that is ${s.status} cannot be paid`);
        if (c.amount !== s.total) throw new Refused(`the order's total is ${s.total}, not ${c.amount}`);
        return [{ type: 'OrderPaid', data: { amount: c.amount } }];
      case 'Cancel':
        if (s.status === 'cancelled') return [];
        if (s.status !== 'placed' && s.status !== 'paid') throw new Refused(`an order that is ${s.status} cannot be cancelled`);
        return [{ type: 'OrderCancelled', data: { reason: c.reason } }];
      case 'Ship':
        // Shipping twice (a worker retrying after a crash) decides nothing: idempotent.
        if (s.status === 'shipped') return [];
        if (s.status !== 'paid') throw new Refused(`an order that is ${s.status} cannot be shipped`);
        return [{ type: 'OrderShipped', data: { carrier: c.carrier, trackingId: c.trackingId } }];
    }
  },
  evolve(s, e) {
    switch (e.type) {
      case 'OrderPlaced':
        return { status: 'placed', total: (e.data as { total: number }).total };
      case 'OrderPaid':
        return { ...s, status: 'paid' };
      case 'OrderCancelled':
        return { ...s, status: 'cancelled' };
      case 'OrderShipped':
        return { ...s, status: 'shipped' };
      default:
        return s;
    }
  },
};

export const orderStream = (id: string): string => `order-${id}`;

/** The order view: one document per order, as the read service answers GET /orders/:id. */
export interface OrderView {
  id: string;
  customer: string;
  status: OrderStatus;
  items: Item[];
  total: number;
  placedAt: number;
  trackingId?: string;
}

export const ordersProjection = defineProjection<OrderView>({
  name: 'orders',
  filter: { category: 'order' },
  collection: 'orders',
  documentId: (e: EventView) => e.stream.slice('order-'.length),
  initialState: { id: '', customer: '', status: 'none', items: [], total: 0, placedAt: 0 },
  evolve(doc, e) {
    const d = e.data as Record<string, unknown>;
    switch (e.type) {
      case 'OrderPlaced':
        return { ...doc, id: e.stream.slice('order-'.length), customer: d.customer as string, items: d.items as Item[], total: d.total as number, status: 'placed', placedAt: e.timestamp };
      case 'OrderPaid':
        return { ...doc, status: 'paid' };
      case 'OrderCancelled':
        return { ...doc, status: 'cancelled' };
      case 'OrderShipped':
        return { ...doc, status: 'shipped', trackingId: d.trackingId as string };
      default:
        return undefined;
    }
  },
});

/** Units sold and revenue per SKU, counting paid orders (and taking back cancelled ones). */
export interface SkuSales {
  sku: string;
  units: number;
  revenue: number;
}

export const salesProjection = defineProjection<{ orders: { items: Item[]; paid: boolean }; sales: SkuSales }>({
  name: 'sales',
  filter: { category: 'order', types: ['OrderPlaced', 'OrderPaid', 'OrderCancelled'] },
  handlers: {
    OrderPlaced(e, model) {
      // The items are kept here, so this projection never needs another's documents.
      model.put('orders', e.stream, { items: (e.data as { items: Item[] }).items, paid: false });
    },
    async OrderPaid(e, model) {
      const o = await model.get('orders', e.stream);
      if (o === undefined) return;
      model.put('orders', e.stream, { ...o, paid: true });
      for (const i of o.items) add(model, i, 1);
    },
    async OrderCancelled(e, model) {
      const o = await model.get('orders', e.stream);
      if (o === undefined || !o.paid) return;
      model.put('orders', e.stream, { ...o, paid: false });
      for (const i of o.items) add(model, i, -1);
    },
  },
});

function add(model: { update(collection: 'sales', id: string, fn: (doc: SkuSales | undefined) => SkuSales): void }, i: Item, sign: 1 | -1): void {
  model.update('sales', i.sku, (s) => ({ sku: i.sku, units: (s?.units ?? 0) + sign * i.qty, revenue: (s?.revenue ?? 0) + sign * i.qty * i.price }));
}
