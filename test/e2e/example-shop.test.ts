/**
 * The shop example end to end, as the README walks through it: `examples/shop/start.ts` starts a
 * server on the embedded store and three services that talk only through it. Commands go to the
 * write service; the read service's projections show them; the worker, on a queue bound to the
 * log, ships paid orders, retries a failed booking after its back-off, and dead-letters the
 * order it can never ship. Then the whole shop is restarted on the same data: the read models
 * are where they were (their checkpoints are in the same store), so nothing is applied twice.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const data = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-shop-'));
let shop: ChildProcess | undefined;
let output = '';

after(async () => {
  if (shop && shop.exitCode === null) {
    shop.kill('SIGTERM');
    await new Promise((r) => shop!.once('exit', r));
  }
  fs.rmSync(data, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not in time\n${output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function json(method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(url, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

function startShop(ports: number[]): ChildProcess {
  const [httpPort, tcpPort, writePort, readPort] = ports;
  output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/shop/start.ts'], {
    cwd: ROOT,
    env: { ...process.env, SHOP_DATA: data, EVENTFUL_HTTP_PORT: String(httpPort), EVENTFUL_TCP_PORT: String(tcpPort), WRITE_PORT: String(writePort), READ_PORT: String(readPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return child;
}

test('the shop: commands, read models, a worker on a bound queue with retries and dead letters', { timeout: 120_000 }, async () => {
  const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
  const [httpPort, , writePort, readPort] = ports;
  shop = startShop(ports);
  await until('the shop starts', async () => (output.includes('shop ready') ? true : undefined), 60_000);
  const W = `http://127.0.0.1:${writePort}`;
  const R = `http://127.0.0.1:${readPort}`;
  const E = `http://127.0.0.1:${httpPort}`;

  // Commands: place and pay three orders; one will fail once, one always.
  const placed = await json('POST', `${W}/orders`, { id: '1001', customer: 'ada', items: [{ sku: 'tea', qty: 2, price: 450 }] });
  assert.equal(placed.status, 201);
  assert.deepEqual(placed.body.total, 900);
  assert.equal((await json('POST', `${W}/orders/1001/pay`, { amount: 900 })).status, 200);
  await json('POST', `${W}/orders`, { id: 'retry7', customer: 'bob', items: [{ sku: 'mug', qty: 1, price: 1200 }] });
  await json('POST', `${W}/orders/retry7/pay`, { amount: 1200 });
  await json('POST', `${W}/orders`, { id: '1003', customer: 'cy', items: [{ sku: 'fragile-vase', qty: 1, price: 5000 }] });
  await json('POST', `${W}/orders/1003/pay`, { amount: 5000 });
  // The decider refuses what the state does not allow; bad input is a 400.
  const wrongAmount = await json('POST', `${W}/orders/1003/pay`, { amount: 1 });
  assert.equal(wrongAmount.status, 409);
  assert.equal((await json('POST', `${W}/orders`, { customer: 'x', items: [] })).status, 400);
  assert.equal((await json('POST', `${W}/orders`, { id: '1001', customer: 'again', items: [{ sku: 'tea', qty: 1, price: 1 }] })).status, 409);

  // The worker ships what it can: 1001 at once, retry7 after one failure and its back-off.
  const shipped = await until('two orders shipped', async () => {
    const r = await json('GET', `${R}/orders?status=shipped`);
    return r.body.orders.length === 2 ? r.body.orders : undefined;
  });
  assert.deepEqual(shipped.map((o: { id: string }) => o.id).sort(), ['1001', 'retry7']);
  assert.equal(shipped.find((o: { id: string }) => o.id === 'retry7').trackingId, 'TRK-RETRY7');
  // The one it never can goes to dead letters after three deliveries.
  await until('1003 dead-lettered', async () => ((await json('GET', `${E}/queues/fulfilment-dlq/stats`)).body.depth === 1 ? true : undefined));
  const order1003 = await json('GET', `${R}/orders/1003`);
  assert.equal(order1003.body.status, 'paid');
  // The log holds what happened, in order, with the worker's event last.
  const events = await json('GET', `${E}/streams/order-retry7`);
  assert.deepEqual(
    events.body.events.map((e: { type: string }) => e.type),
    ['OrderPlaced', 'OrderPaid', 'OrderShipped'],
  );
  const sales = (await json('GET', `${R}/sales`)).body.sales;
  assert.deepEqual(sales.find((s: { sku: string }) => s.sku === 'tea'), { sku: 'tea', units: 2, revenue: 900 });
  const status = (await json('GET', `${R}/status`)).body.projections;
  assert.deepEqual(
    status.map((p: { name: string; state: string }) => [p.name, p.state]),
    [
      ['orders', 'live'],
      ['sales', 'live'],
    ],
  );
  assert.equal((await json('GET', `${R}/orders/nope`)).status, 404);

  const positions = status.map((p: { position: number }) => p.position);

  // Everything stops cleanly on SIGTERM.
  shop.kill('SIGTERM');
  const code = await new Promise((r) => shop!.once('exit', r));
  assert.equal(code, 0, output.slice(-2000));

  // Started again on the same data, the read models answer at once, from where they were.
  shop = startShop(ports);
  await until('the shop starts again', async () => (output.includes('shop ready') ? true : undefined), 60_000);
  assert.equal((await json('GET', `${R}/orders/1001`)).body.status, 'shipped');
  const again = (await json('GET', `${R}/status`)).body.projections;
  again.forEach((p: { position: number }, i: number) => assert.ok(p.position >= positions[i], 'a checkpoint never goes back'));
  assert.deepEqual(
    again.map((p: { eventsProcessed: number }) => p.eventsProcessed),
    [0, 0],
    'nothing applied again',
  );
  assert.deepEqual((await json('GET', `${R}/sales`)).body.sales, sales);
});
