/**
 * The given / when / then helpers users test their projections with: whole read model,
 * one document, a handler's failure; with the projection's filter, '$' streams and upcasters
 * applied as in a real run; and failures that say what differs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProjectionFaultedError, Upcasters, defineProjection, givenProjectionEvents } from '../../src/index.js';

interface Cart {
  items: Record<string, number>;
  checkedOut: boolean;
}

/** The evolve form: one document per cart stream. */
const carts = defineProjection<Cart>({
  name: 'carts',
  filter: { category: 'cart' },
  collection: 'carts',
  documentId: (e) => e.stream,
  initialState: { items: {}, checkedOut: false },
  evolve(cart, e) {
    const d = e.data as { sku: string; qty: number };
    switch (e.type) {
      case 'ItemAdded':
        cart.items[d.sku] = (cart.items[d.sku] ?? 0) + d.qty;
        return;
      case 'ItemRemoved':
        if (cart.items[d.sku] === undefined) throw new RangeError(`no ${d.sku} in the cart`);
        delete cart.items[d.sku];
        return;
      case 'CheckedOut':
        return { ...cart, checkedOut: true };
      case 'Abandoned':
        return null; // deleted
      default:
        return;
    }
  },
});

/** The handlers form, with upcasting: 'Added' v1 had a `count` instead of `qty`. */
const bySku = defineProjection<{ skus: { qty: number } }>({
  name: 'skus',
  filter: { category: 'cart', types: ['Added', 'ItemAdded'] },
  upcasters: new Upcasters([{ type: 'Added', fromVersion: 1, newType: 'ItemAdded', upcast: (d) => ({ sku: (d as { item: string }).item, qty: (d as { count: number }).count }) }]),
  handlers: {
    ItemAdded: (e, m) => m.update('skus', (e.data as { sku: string }).sku, (s) => ({ qty: (s?.qty ?? 0) + (e.data as { qty: number }).qty })),
  },
});

test('given events, then the read model: whole, one document, after more events', async () => {
  const given = givenProjectionEvents(carts, [
    { stream: 'cart-1', type: 'ItemAdded', data: { sku: 'tea', qty: 2 } },
    { stream: 'cart-2', type: 'ItemAdded', data: { sku: 'cake', qty: 1 } },
    { stream: 'order-1', type: 'ItemAdded', data: { sku: 'other', qty: 9 } }, // another category: not seen
  ]);
  await given.then({ carts: { 'cart-1': { items: { tea: 2 }, checkedOut: false }, 'cart-2': { items: { cake: 1 }, checkedOut: false } } });
  await given.thenDocument('carts', 'cart-1', { items: { tea: 2 }, checkedOut: false });
  await given.thenDocument('carts', 'order-1', undefined);
  await given
    .when([
      { stream: 'cart-1', type: 'ItemAdded', data: { sku: 'tea', qty: 1 } },
      { stream: 'cart-1', type: 'CheckedOut' },
      { stream: 'cart-2', type: 'Abandoned' },
    ])
    .then({ carts: { 'cart-1': { items: { tea: 3 }, checkedOut: true } } });
  await givenProjectionEvents(carts, []).then({});
  assert.deepEqual(await given.state(), { carts: { 'cart-1': { items: { tea: 2 }, checkedOut: false }, 'cart-2': { items: { cake: 1 }, checkedOut: false } } });
});

test('given events, then a handler fails: by class (of the error or its cause), by message, by predicate', async () => {
  const bad = givenProjectionEvents(carts, [{ stream: 'cart-1', type: 'ItemRemoved', data: { sku: 'tea' } }]);
  await bad.thenThrows(RangeError);
  await bad.thenThrows(ProjectionFaultedError);
  await bad.thenThrows(/no tea in the cart/);
  await bad.thenThrows((e) => e instanceof ProjectionFaultedError && e.details.position === 1);
  await assert.rejects(bad.then({}), ProjectionFaultedError);
});

test('upcasters are applied before the handlers, as in a real run', async () => {
  await givenProjectionEvents(bySku, [
    { stream: 'cart-1', type: 'Added', data: { item: 'tea', count: 2 } },
    { stream: 'cart-2', type: 'ItemAdded', data: { sku: 'tea', qty: 1 } },
    { stream: 'cart-2', type: 'ItemRemoved', data: { sku: 'tea' } }, // not handled
  ]).then({ skus: { tea: { qty: 3 } } });
});

test('the helpers fail, with a diff, when the read model differs', async () => {
  const given = givenProjectionEvents(carts, [{ stream: 'cart-1', type: 'ItemAdded', data: { sku: 'tea', qty: 2 } }]);
  await assert.rejects(given.then({ carts: { 'cart-1': { items: { tea: 3 }, checkedOut: false } } }), assert.AssertionError);
  await assert.rejects(given.thenDocument('carts', 'cart-1', { items: {}, checkedOut: false }), assert.AssertionError);
  await assert.rejects(given.thenThrows(), /expected a handler to throw/);
  await assert.rejects(givenProjectionEvents(carts, [{ stream: 'cart-1', type: 'ItemRemoved', data: { sku: 'x' } }]).thenThrows(TypeError), /expected TypeError/);
  assert.throws(() => givenProjectionEvents(carts, [{ type: 'ItemAdded' } as never]).state(), /needs a stream and a type/);
});
