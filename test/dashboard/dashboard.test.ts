/**
 * The web dashboard end to end: a real `eventful serve` process with real data (streams, a queue
 * with dead letters, a bound queue, a consumer group with a member), driven in headless Chromium.
 * Each page shows what the server holds; the live tail shows an event appended after it opened;
 * a redrive from the page moves the dead letters back; a purge asks before it drops anything;
 * and on a server with auth, a wrong token is refused and a narrow token sees 403s where it may
 * not look.
 *
 * With DASHBOARD_SCREENSHOTS set (`npm run docs:screenshots`) it also saves a PNG of each page
 * for docs/dashboard.md.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { connect } from '../../src/client/index.js';
import type { GroupMember, RemoteEventStore } from '../../src/client/index.js';
import { tempDir } from '../helpers.js';
import { startServerProcess, writeJson } from '../e2e/server-process.js';
import type { ServerProcess } from '../e2e/server-process.js';
import { NO_BROWSER, ensureDashboardBuilt, launchBrowser, screenshotDir } from './browser.js';

// Response bodies are arbitrary JSON taken apart field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const skip = NO_BROWSER;
const shots = screenshotDir();
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

let server: ServerProcess;
let browser: Browser;
let client: RemoteEventStore;
let member: GroupMember;

async function api(method: string, p: string, body?: unknown, base = server.httpUrl, token?: string): Promise<Json> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text === '' ? undefined : JSON.parse(text);
}

async function newPage(base = server.httpUrl): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, baseURL: base });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) problems.push(m.text());
  });
  (page as Page & { problems: string[] }).problems = problems;
  return page;
}

/** No script errors on the page (a refused request's console line aside). */
function assertNoErrors(page: Page): void {
  assert.deepEqual((page as Page & { problems: string[] }).problems, []);
}

async function shot(page: Page, name: string): Promise<void> {
  if (shots === undefined) return;
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: false });
}

before(async () => {
  if (skip) return;
  ensureDashboardBuilt();
  // Durable appends when taking pictures, so that the latency chart shows real syncs.
  server = await startServerProcess(tempDir(), ['--durability', shots === undefined ? 'none' : 'always']);
  browser = await launchBrowser();

  // Streams: three orders and a user.
  for (const [i, total] of [
    [1, 42],
    [2, 7],
    [3, 99],
  ] as const) {
    await api('POST', `/streams/order-${i}`, {
      events: [
        { type: 'OrderPlaced', data: { customer: `c${i}`, total }, metadata: i === 1 ? { traceparent: TRACEPARENT, tenant: 't1' } : {} },
        { type: 'OrderPaid', data: { amount: total } },
      ],
    });
  }
  await api('POST', '/streams/user-1', { events: [{ type: 'UserRegistered', data: { name: 'Ada' } }] });

  // A queue whose failures go to dead letters at the first nack, and a queue bound to the log.
  await api('POST', '/queues/emails', { settings: { maxDeliveries: 1, deadLetterQueue: 'emails-dlq' } });
  await api('POST', '/queues/emails/messages', { messages: [1, 2, 3].map((n) => ({ body: { to: `user${n}@example.com` }, headers: { n: String(n) } })) });
  const got = await api('POST', '/queues/emails/receive', { max: 2, waitMs: 2000 });
  assert.equal(got.deliveries.length, 2);
  await api('POST', '/queues/emails/nack', { receipts: got.deliveries.map((d: Json) => d.receipt), deadLetter: true, reason: 'mailbox full' });
  await api('POST', '/queues/billing', { settings: { binding: { filter: { category: 'order', types: 'OrderPaid' }, from: 'start' } } });

  // A consumer group with one member that has not handled anything: it lags by every event.
  await api('POST', '/groups/audit', { mode: 'partitioned', partitions: 4, filter: { category: 'order' }, from: 'start' });
  client = await connect(server.tcpUrl, { timeoutMs: 10_000 });
  member = client.groups.join('audit', { memberName: 'worker-1', autoCommit: false });
  for (let i = 0; i < 100; i++) {
    if ((await api('GET', '/groups/audit')).members.length === 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  await member?.close().catch(() => undefined);
  await client?.close().catch(() => undefined);
  await browser?.close();
  await server?.stop();
});

test('overview: the head position, storage, connections and queue totals the server reports', { skip }, async () => {
  const info = await api('GET', '/info');
  const page = await newPage();
  await page.goto('/ui');
  await page.getByTestId('page-overview').waitFor();
  await page.getByTestId('stat-head').getByText(String(info.headPosition), { exact: true }).waitFor();
  const stats = await api('GET', '/stats');
  assert.equal(stats.queues.count, 3);
  await page.getByTestId('stat-queues').getByText('3', { exact: true }).waitFor();
  assert.match(await page.getByTestId('stat-connections').innerText(), /TCP 1/, 'the group member is connected over TCP');
  assert.match(await page.getByTestId('stat-storage').innerText(), /KiB|B/);
  // Two readings give a rate, and the chart starts.
  await page.getByTestId('stat-events-rate').getByText(/client appends\/s/).waitFor({ timeout: 8000 });
  await page.locator('[data-testid="chart-events"] polyline').first().waitFor({ state: 'attached' });
  if (shots !== undefined) {
    // Some traffic while the picture is taken, so that the charts have something to show.
    let i = 0;
    const started = Date.now();
    while (Date.now() - started < 16_000) {
      await api('POST', `/streams/load-${i % 3}`, { events: Array.from({ length: 1 + (i % 20) }, () => ({ type: 'Tick' })) });
      if (i % 3 === 0) await api('POST', '/queues/emails/messages', { messages: [{ body: { tick: i } }] });
      i++;
      await new Promise((r) => setTimeout(r, 40));
    }
    await shot(page, 'overview');
  }
  assertNoErrors(page);
  await page.context().close();
});

test('streams: search by prefix and category, page through a stream, open an event, jump to a position', { skip }, async () => {
  const page = await newPage();
  await page.goto('/ui#/streams');
  const list = page.getByTestId('stream-list');
  for (const s of ['order-1', 'order-2', 'order-3', 'user-1']) await list.getByRole('link', { name: s, exact: true }).waitFor();

  // By category: only the orders.
  await page.locator('select[aria-label="search by"]').selectOption('category');
  await page.getByTestId('stream-search').fill('order');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/category=order/);
  await list.getByRole('link', { name: 'order-3', exact: true }).waitFor();
  assert.equal(await list.getByRole('link', { name: 'user-1' }).count(), 0);

  // One stream: its events, and an event's data and metadata.
  await list.getByRole('link', { name: 'order-1', exact: true }).click();
  await page.getByTestId('page-stream').waitFor();
  const rows = page.getByTestId('stream-events').locator('tr.event-row');
  await rows.first().waitFor();
  assert.equal(await rows.count(), 2);
  assert.match(await page.getByTestId('stream-info').innerText(), /Events\s*2/);
  await rows.first().click();
  const detail = page.getByTestId('event-detail');
  await detail.waitFor();
  const text = await detail.innerText();
  assert.match(text, /"customer": "c1"/);
  assert.match(text, new RegExp(TRACEPARENT));
  assert.match(text, /"tenant": "t1"/);
  await shot(page, 'stream');

  // Jump to a position: the log read from there.
  await page.goto('/ui#/streams');
  await page.getByTestId('jump-position').fill('4');
  await page.getByRole('button', { name: 'Go to position' }).click();
  await page.getByTestId('page-log').waitFor();
  const first = page.getByTestId('log-events').locator('tr.event-row').first();
  await first.waitFor();
  assert.equal(await first.getAttribute('data-position'), '4');
  await shot(page, 'log');
  assertNoErrors(page);
  await page.context().close();
});

test('live tail: an event appended after the page opened shows up, and the filter applies', { skip }, async () => {
  const page = await newPage();
  await page.goto('/ui#/tail?category=order');
  await page.locator('[data-testid="tail-status"][data-status="live"]').waitFor();
  await api('POST', '/streams/user-2', { events: [{ type: 'UserRegistered', data: { name: 'Bob' } }] });
  await api('POST', '/streams/order-77', { events: [{ type: 'OrderPlaced', data: { customer: 'tail', total: 5 } }] });
  const rows = page.getByTestId('tail-events').locator('tr.event-row');
  await rows.filter({ hasText: 'order-77' }).waitFor();
  assert.equal(await rows.filter({ hasText: 'user-2' }).count(), 0, 'the category filter keeps other streams out');
  if (shots !== undefined) {
    for (let i = 0; i < 6; i++) await api('POST', `/streams/order-${80 + i}`, { events: [{ type: i % 2 ? 'OrderPaid' : 'OrderPlaced', data: { amount: i * 10 } }] });
    await rows.nth(6).waitFor();
  }
  await shot(page, 'tail');
  assertNoErrors(page);
  await page.context().close();
});

test('queues: stats as the server has them; redrive moves the dead letters back; purge asks first', { skip }, async () => {
  const page = await newPage();
  await page.goto('/ui#/queues');
  const list = page.getByTestId('queue-list');
  const dlqRow = list.locator('tr[data-queue="emails-dlq"]');
  await dlqRow.locator('[data-col="depth"]').getByText('2', { exact: true }).waitFor();
  const emailsDepth = (await api('GET', '/queues/emails/stats')).depth;
  await list.locator('tr[data-queue="emails"] [data-col="depth"]').getByText(String(emailsDepth), { exact: true }).waitFor();
  assert.match(await dlqRow.innerText(), /dead letters/);
  assert.match(await list.locator('tr[data-queue="billing"]').innerText(), /bound/);
  await shot(page, 'queues');

  // The dead-letter queue: its messages say why they are there.
  await dlqRow.getByRole('link', { name: 'emails-dlq' }).click();
  await page.getByTestId('page-queue').waitFor();
  const messages = page.getByTestId('queue-messages');
  await messages.getByText('mailbox full').first().waitFor();
  await shot(page, 'queue');
  await messages.locator('tr.event-row').first().click();
  assert.match(await page.getByTestId('event-detail').innerText(), /\$deadLetter/);

  // Redrive: asked, confirmed, done.
  await page.getByTestId('redrive').click();
  await page.getByTestId('redrive-confirm').click();
  await page.getByTestId('queue-outcome').getByText('Moved 2 messages.').waitFor();
  assert.equal((await api('GET', '/queues/emails-dlq/stats')).depth, 0);
  assert.equal((await api('GET', '/queues/emails/stats')).depth, emailsDepth + 2);
  await page.getByTestId('queue-depth').getByText('0', { exact: true }).waitFor();

  // Purge on the main queue: Cancel drops nothing, Purge drops what waits.
  await page.goto('/ui#/queues/emails');
  await page.getByTestId('queue-depth').getByText(String(emailsDepth + 2), { exact: true }).waitFor();
  await page.getByTestId('purge').click();
  await page.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await api('GET', '/queues/emails/stats')).depth, emailsDepth + 2, 'cancel purges nothing');
  await page.getByTestId('purge').click();
  await page.getByTestId('purge-confirm').click();
  await page.getByTestId('queue-outcome').getByText(`Purged ${emailsDepth + 2} messages.`).waitFor();
  assert.equal((await api('GET', '/queues/emails/stats')).depth, 0);
  assertNoErrors(page);
  await page.context().close();
});

test('consumer groups: position, lag, members and partitions; and where projections are', { skip }, async () => {
  const stats = await api('GET', '/groups/audit');
  assert.ok(stats.lagEvents >= 6, `lag ${stats.lagEvents}`);
  const page = await newPage();
  await page.goto('/ui#/groups');
  const row = page.getByTestId('group-list').locator('tr[data-group="audit"]');
  await row.locator('[data-col="lag"]').waitFor();
  assert.match(await row.locator('[data-col="lag"]').innerText(), /^\d+\+?$/);
  assert.ok(Number((await row.locator('[data-col="lag"]').innerText()).replace('+', '')) >= stats.lagEvents);
  assert.match(await page.getByText('statusHandler').first().innerText(), /statusHandler/);
  await shot(page, 'groups');
  await row.getByRole('link', { name: 'audit' }).click();
  await page.getByTestId('page-group').waitFor();
  const members = page.getByTestId('group-member-list');
  await members.getByText('worker-1').waitFor();
  assert.match(await members.innerText(), /0, 1, 2, 3/);
  assert.equal(await page.locator('[data-testid="group-partitions"] rect').count(), 4);
  await shot(page, 'group');
  assertNoErrors(page);
  await page.context().close();
});

test('auth: a wrong token is refused, the right one is kept for the tab, and a narrow token sees 403s', { skip }, async () => {
  const ADMIN = 'admin-token-0123456789';
  const READER = 'orders-reader-0123456789';
  const dir = tempDir();
  const config = writeJson(path.join(dir, 'config.json'), {
    auth: {
      tokens: [
        { name: 'ops', token: ADMIN, roles: [{ role: 'admin' }] },
        { name: 'orders-reader', token: READER, roles: [{ role: 'read', streams: 'order-' }] },
      ],
    },
    metricsAuth: 'token',
  });
  const secured = await startServerProcess(path.join(dir, 'data'), ['--config', config, '--durability', 'none']);
  try {
    await api('POST', '/streams/order-1', { events: [{ type: 'OrderPlaced' }] }, secured.httpUrl, ADMIN);
    const page = await newPage(secured.httpUrl);
    await page.goto('/ui');
    await page.getByTestId('login').waitFor();
    await page.getByTestId('token-input').fill('not-the-right-token-at-all');
    await page.getByTestId('token-submit').click();
    const refusal = page.getByRole('alert');
    await refusal.waitFor();
    assert.match(await refusal.innerText(), /401 UNAUTHENTICATED.*token refused/s);
    await shot(page, 'login');
    assert.equal(await page.evaluate(`sessionStorage.getItem('eventful.token')`), null, 'a refused token is not kept');

    // A token that may read order-* only: no server stats, no listing of every stream.
    await page.getByTestId('token-input').fill(READER);
    await page.getByTestId('token-submit').click();
    await page.getByTestId('page-overview').waitFor();
    assert.equal(await page.evaluate(`sessionStorage.getItem('eventful.token')`), READER);
    await page.locator('.notice.forbidden').getByText('403 Forbidden').waitFor();
    await shot(page, 'forbidden');
    await page.goto('/ui#/streams');
    await page.locator('.notice.forbidden').waitFor();
    await page.goto('/ui#/streams?prefix=order-');
    await page.getByTestId('stream-list').getByRole('link', { name: 'order-1' }).waitFor();
    await page.goto('/ui#/tail');
    await page.locator('.notice.forbidden').waitFor();

    // A reload keeps the token (sessionStorage); forgetting it asks again.
    await page.reload();
    await page.getByTestId('page-tail').waitFor();
    await page.getByTestId('sign-out').click();
    await page.getByTestId('login').waitFor();

    // The admin token sees the numbers.
    await page.getByTestId('token-input').fill(ADMIN);
    await page.getByTestId('token-submit').click();
    await page.getByTestId('nav-overview').click();
    await page.getByTestId('stat-head').getByText('1', { exact: true }).waitFor();
    assertNoErrors(page);
  } finally {
    await browser.contexts().at(-1)?.close();
    await secured.stop();
  }
});
