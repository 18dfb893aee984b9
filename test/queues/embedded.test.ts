/**
 * The embedded queue engine (store.queues), end to end through the public API: delivery,
 * leases, back-off, dead letters, FIFO groups, delays, dedup, overflow, bindings, restarts and
 * bad input. Time is a ManualClock (moved with clock.advance, never slept on); jitter is fixed
 * with `random: () => 0.5`. Small real waits only let the log follower deliver.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import {
  InvalidArgumentError,
  LeaseNotOwnedError,
  LimitExceededError,
  ManualClock,
  QueueExistsError,
  QueueFullError,
  QueueNotFoundError,
  ReceiptInvalidError,
  DEFAULT_QUEUE_SETTINGS,
  openStore,
} from '../../src/index.js';
import type { Delivery, FileEventStore, QueueSettings } from '../../src/index.js';
import { tempDir } from '../helpers.js';

type Store = FileEventStore;

/** Every warning the stores reported (snapshot mismatches, failed dead-lettering, ...). */
const warnings: Array<{ dir: string; message: string; details: Record<string, unknown> }> = [];

function open(dir: string, clock: ManualClock, snapshotIntervalMs?: number): Promise<Store> {
  return openStore({ dir, durability: 'none', onWarning: (message, details) => void warnings.push({ dir, message, details }), queues: { clock, random: () => 0.5, snapshotIntervalMs } });
}

/** The queue snapshot files in a store's directory (`<dir>/queues/*.snap`). */
function snapshotFiles(dir: string): string[] {
  const d = path.join(dir, 'queues');
  return fs.existsSync(d) ? fs.readdirSync(d).filter((f) => f.endsWith('.snap')).map((f) => path.join(d, f)) : [];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);
const NO_JITTER = (initialMs: number, multiplier = 2, maxMs = 60_000) => ({ initialMs, multiplier, maxMs, jitter: 0 });

/** Polls `cond` every millisecond until it holds; fails after `timeoutMs`. */
async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

/** Pulls until exactly `n` deliveries are held (fails on timeout). */
async function receiveN(store: Store, queue: string, n: number, timeoutMs = 3000): Promise<Delivery[]> {
  const out: Delivery[] = [];
  const end = Date.now() + timeoutMs;
  while (out.length < n) {
    const got = await store.queues.receive(queue, { max: Math.min(1000, n - out.length) });
    out.push(...got);
    if (got.length === 0) {
      if (Date.now() > end) assert.fail(`timed out receiving from '${queue}': got ${out.length} of ${n}`);
      await sleep(1);
    }
  }
  return out;
}

/** Lets the follower and dispatch run, then asserts that nothing can be received now. */
async function assertNothing(store: Store, queue: string, why = ''): Promise<void> {
  await sleep(15);
  const got = await store.queues.receive(queue, { max: 100 });
  assert.deepEqual(
    got.map((d) => d.body),
    [],
    `expected nothing receivable from '${queue}' ${why}`,
  );
}

const bodyOf = (d: Delivery): unknown => d.body;
const numOf = (d: Delivery): number => (d.body as { i: number }).i;
const sortedNums = (ds: Delivery[]): number[] => ds.map(numOf).sort((a, b) => a - b);

async function depth(store: Store, queue: string): Promise<number> {
  return (await store.queues.stats(queue)).depth;
}

/** Runs a consumer in the background, calling `handle` for each delivery. */
function run(c: AsyncIterable<Delivery>, handle: (d: Delivery) => Promise<void> | void): Promise<unknown> {
  return (async () => {
    for await (const d of c) await handle(d);
  })().then(
    () => undefined,
    (e: unknown) => e,
  );
}

// -------------------------------------------------------------------------------------------------

test('competing consumers receive every message exactly once; acked messages never come back', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('work', { leaseMs: 5000, retryBackoff: NO_JITTER(100) });
    const consumers = range(3).map(() => q.consume('work', { prefetch: 2 }));
    const seen: Array<{ c: number; i: number; count: number; id: string }> = [];
    const loops = consumers.map((c, k) =>
      run(c, async (d) => {
        seen.push({ c: k, i: numOf(d), count: d.deliveryCount, id: d.id });
        await new Promise<void>((r) => setImmediate(r));
        await d.ack();
      }),
    );
    const N = 60;
    for (let s = 0; s < 6; s++) await q.send('work', range(10, s * 10).map((i) => ({ body: { i } })));
    await waitFor(async () => (await q.stats('work')).totals.acked === N, 'all messages acked');

    // Far past every lease and back-off: nothing is delivered again.
    clock.advance(120_000);
    await sleep(20);
    assert.equal(seen.length, N);
    assert.deepEqual(seen.map((s) => s.i).sort((a, b) => a - b), range(N));
    assert.equal(new Set(seen.map((s) => s.id)).size, N);
    assert.ok(seen.every((s) => s.count === 1), 'no message was redelivered');
    for (let k = 0; k < 3; k++) assert.ok(seen.some((s) => s.c === k), `consumer ${k} got a share of the messages`);
    const st = await q.stats('work');
    assert.equal(st.depth, 0);
    assert.equal(st.ready, 0);
    assert.equal(st.inFlight, 0);
    assert.equal(st.delayed, 0);
    assert.equal(st.consumers, 3);
    assert.equal(st.totals.sent, N);
    assert.equal(st.totals.redelivered, 0);
    assert.equal(st.totals.expired, 0);

    for (const c of consumers) await c.close();
    assert.deepEqual(await Promise.all(loops), [undefined, undefined, undefined]);
    assert.equal((await q.stats('work')).consumers, 0);

    // Prefetch bounds what one consumer holds unacked.
    await q.create('hold');
    const holder = q.consume('hold', { prefetch: 3 });
    const held: Delivery[] = [];
    const holdLoop = run(holder, (d) => void held.push(d));
    await q.send('hold', range(10).map((i) => ({ body: { i } })));
    await waitFor(() => held.length === 3, 'three deliveries');
    await sleep(20);
    assert.equal(held.length, 3, 'never more than prefetch unacked');
    let st2 = await q.stats('hold');
    assert.equal(st2.inFlight, 3);
    assert.equal(st2.ready, 7);
    await held[0]!.ack();
    await waitFor(() => held.length === 4, 'one more after an ack');
    await sleep(10);
    assert.equal(held.length, 4);
    st2 = await q.stats('hold');
    assert.equal(st2.inFlight, 3);
    assert.equal(st2.depth, 9);
    await holder.close();
    await holdLoop;
  } finally {
    await store.close();
  }
});

test('lease expiry: the message is delivered again and the old receipt is refused as expired', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('lease', { leaseMs: 5000, retryBackoff: NO_JITTER(1000) });
    const sent = await q.send('lease', [{ body: { i: 1 } }]);
    const [d1] = await receiveN(store, 'lease', 1);
    assert.equal(d1!.deliveryCount, 1);
    assert.equal(d1!.id, sent.ids[0]);
    assert.equal(d1!.position, sent.positions[0]);
    assert.equal(d1!.leaseExpiresAt, clock.now() + 5000);
    assert.equal(d1!.firstDeliveredAt, clock.now());
    const firstAt = clock.now();

    clock.advance(4999);
    assert.deepEqual(await q.receive('lease'), [], 'still leased just before the lease runs out');
    clock.advance(1); // the lease runs out; back-off 1,000 ms starts
    let st = await q.stats('lease');
    assert.equal(st.inFlight, 0);
    assert.equal(st.delayed, 1);
    assert.equal(st.totals.expired, 1);
    clock.advance(999);
    assert.deepEqual(await q.receive('lease'), [], 'not before the back-off');
    clock.advance(1);
    const [d2] = await q.receive('lease');
    assert.ok(d2);
    assert.equal(d2.id, d1!.id);
    assert.equal(d2.deliveryCount, 2);
    assert.equal(d2.firstDeliveredAt, firstAt);
    assert.notEqual(d2.receipt, d1!.receipt);

    await assert.rejects(q.ack('lease', d1!.receipt), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'expired');
    await assert.rejects(d1!.ack(), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'expired');
    await assert.rejects(d1!.nack(), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'expired');
    // The failed acks changed nothing: the current lease is intact.
    st = await q.stats('lease');
    assert.equal(st.inFlight, 1);
    await d2.ack();
    st = await q.stats('lease');
    assert.equal(st.depth, 0);
    assert.equal(st.totals.redelivered, 1);
    clock.advance(60_000);
    await assertNothing(store, 'lease', 'after the redelivery was acked');

    // extend moves the expiry: the message stays leased past the original lease.
    await q.send('lease', [{ body: { i: 2 } }]);
    const [e1] = await receiveN(store, 'lease', 1);
    clock.advance(4000);
    await e1!.extend(10_000);
    clock.advance(9999);
    assert.equal((await q.stats('lease')).inFlight, 1, 'still leased after the extension');
    clock.advance(1);
    assert.equal((await q.stats('lease')).inFlight, 0, 'expired at the extended time');
    await assert.rejects(e1!.ack(), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'expired');
  } finally {
    await store.close();
  }
});

test('closing a consumer releases its leases: another consumer gets them after the back-off', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('rel', { leaseMs: 60_000, retryBackoff: NO_JITTER(1000) });
    const a = q.consume('rel', { prefetch: 5 });
    const gotA: Delivery[] = [];
    const loopA = run(a, (d) => void gotA.push(d));
    await q.send('rel', range(3).map((i) => ({ body: { i } })));
    await waitFor(() => gotA.length === 3, 'consumer A holds three');

    const b = q.consume('rel', { prefetch: 5 });
    const gotB: Delivery[] = [];
    const loopB = run(b, (d) => void gotB.push(d));
    await sleep(15);
    assert.equal(gotB.length, 0, 'B gets nothing while A holds the leases');
    assert.equal((await q.stats('rel')).consumers, 2);

    await a.close();
    assert.equal(await loopA, undefined, "A's iteration ends cleanly");
    let st = await q.stats('rel');
    assert.equal(st.consumers, 1);
    assert.equal(st.inFlight, 0);
    assert.equal(st.delayed, 3, 'released messages wait out their back-off');
    await sleep(15);
    assert.equal(gotB.length, 0, 'not before the back-off');
    clock.advance(1000);
    await waitFor(() => gotB.length === 3, 'B gets the released messages');
    assert.deepEqual(sortedNums(gotB), [0, 1, 2]);
    assert.ok(gotB.every((d) => d.deliveryCount === 2));
    // A's receipts no longer name a lease.
    await assert.rejects(gotA[0]!.ack(), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'expired');
    for (const d of gotB) await d.ack();
    st = await q.stats('rel');
    assert.equal(st.depth, 0);
    await b.close();
    await loopB;
  } finally {
    await store.close();
  }
});

test('back-off: initialMs * multiplier^(n-1), capped at maxMs; nack delayMs overrides it', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('bo', { maxDeliveries: 50, leaseMs: 600_000, retryBackoff: NO_JITTER(100, 3, 1000) });
    await q.send('bo', [{ body: { i: 0 } }]);
    let [d] = await receiveN(store, 'bo', 1);
    const expected = [100, 300, 900, 1000, 1000];
    for (let n = 1; n <= expected.length; n++) {
      assert.equal(d!.deliveryCount, n);
      await d!.nack();
      const wait = expected[n - 1]!;
      clock.advance(wait - 1);
      assert.deepEqual(await q.receive('bo'), [], `not redelivered before ${wait} ms (failure ${n})`);
      assert.equal((await q.stats('bo')).delayed, 1);
      clock.advance(1);
      [d] = await q.receive('bo');
      assert.ok(d, `redelivered at ${wait} ms (failure ${n})`);
    }
    assert.equal(d!.deliveryCount, expected.length + 1);

    // An explicit delay replaces the back-off, longer or shorter.
    await d!.nack({ delayMs: 5000 });
    clock.advance(4999);
    assert.deepEqual(await q.receive('bo'), []);
    clock.advance(1);
    [d] = await q.receive('bo');
    assert.ok(d);
    await d.nack({ delayMs: 0 });
    [d] = await q.receive('bo');
    assert.ok(d, 'nack with delayMs 0 makes it ready at once');
    await d.ack();
    const st = await q.stats('bo');
    assert.equal(st.depth, 0);
    assert.equal(st.totals.nacked, expected.length + 2);

    // Jitter takes a fraction: 100 * (1 - 0.5 * random()) with random() = 0.5 is 75.
    await q.create('jit', { leaseMs: 600_000, retryBackoff: { initialMs: 100, maxMs: 1000, multiplier: 2, jitter: 0.5 } });
    await q.send('jit', [{ body: { i: 0 } }]);
    [d] = await receiveN(store, 'jit', 1);
    await d!.nack();
    clock.advance(74);
    assert.deepEqual(await q.receive('jit'), []);
    clock.advance(1);
    assert.equal((await q.receive('jit')).length, 1);
  } finally {
    await store.close();
  }
});

test('maxDeliveries and nack(deadLetter) go to the dead-letter queue; redrive moves them back', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('jobs', { maxDeliveries: 2, deadLetterQueue: 'jobs-dlq', leaseMs: 60_000, retryBackoff: NO_JITTER(10) });
    const dlqInfo = await q.get('jobs-dlq');
    assert.ok(dlqInfo, 'the dead-letter queue named in settings is created');
    assert.deepEqual(dlqInfo.settings, DEFAULT_QUEUE_SETTINGS);
    await q.create('other');

    const sentA = await q.send('jobs', [{ body: { i: 1 }, headers: { k: 'v' } }]);
    let [d] = await receiveN(store, 'jobs', 1);
    await d!.nack();
    clock.advance(10);
    [d] = await q.receive('jobs');
    assert.equal(d!.deliveryCount, 2);
    await d!.nack(); // deliveries used up
    await waitFor(async () => (await depth(store, 'jobs-dlq')) === 1, 'the message in the dead-letter queue');
    let st = await q.stats('jobs');
    assert.equal(st.depth, 0);
    assert.equal(st.deadLettered, 1);
    clock.advance(60_000);
    await assertNothing(store, 'jobs', 'after dead-lettering');

    let [dl] = await receiveN(store, 'jobs-dlq', 1);
    assert.deepEqual(dl!.body, { i: 1 });
    assert.equal(dl!.headers.k, 'v');
    const meta = dl!.headers.$deadLetter as Record<string, unknown>;
    assert.equal(meta.queue, 'jobs');
    assert.equal(meta.messageId, sentA.ids[0]);
    assert.equal(meta.position, sentA.positions[0]);
    assert.equal(meta.deliveries, 2);
    assert.match(String(meta.reason), /maxDeliveries/);
    assert.ok(Array.isArray(meta.attempts));
    assert.deepEqual((meta.attempts as Array<{ outcome: string }>).map((a) => a.outcome), ['nacked', 'nacked']);
    await dl!.nack({ delayMs: 0 }); // back to ready in the DLQ, for the redrive below

    // nack with deadLetter: at once, with the reason given.
    await q.send('jobs', [{ body: { i: 2 } }]);
    [d] = await receiveN(store, 'jobs', 1);
    await d!.nack({ deadLetter: true, reason: 'bad payload' });
    await waitFor(async () => (await depth(store, 'jobs-dlq')) === 2, 'second dead letter');
    const dls = await receiveN(store, 'jobs-dlq', 2);
    assert.deepEqual(sortedNums(dls), [1, 2]);
    const dl2 = dls.find((x) => numOf(x) === 2)!;
    const meta2 = dl2.headers.$deadLetter as Record<string, unknown>;
    assert.equal(meta2.reason, 'bad payload');
    assert.equal(meta2.deliveries, 1);
    assert.deepEqual((meta2.attempts as Array<{ outcome: string }>).map((a) => a.outcome), ['nacked']);
    for (const x of dls) await x.nack({ delayMs: 0 });
    assert.equal((await q.stats('jobs')).deadLettered, 2);

    // Redrive everything back where it came from: delivered again there, as new messages.
    assert.equal(await q.redrive('jobs-dlq'), 2);
    assert.equal(await depth(store, 'jobs-dlq'), 0);
    const back = await receiveN(store, 'jobs', 2);
    assert.deepEqual(sortedNums(back), [1, 2]);
    for (const b of back) {
      assert.equal(b.deliveryCount, 1);
      assert.equal(b.headers.$deadLetter, undefined);
      assert.equal(b.stream, '$queue-jobs');
    }
    assert.equal(back.find((b) => numOf(b) === 1)!.headers.k, 'v');
    for (const b of back) await b.ack();

    // Three more dead letters, for count, ids and `to`.
    await q.send('jobs', range(3, 10).map((i) => ({ body: { i } })));
    for (const x of await receiveN(store, 'jobs', 3)) await x.nack({ deadLetter: true });
    await waitFor(async () => (await depth(store, 'jobs-dlq')) === 3, 'three dead letters');
    const inDlq = await receiveN(store, 'jobs-dlq', 3);
    const idOf = new Map(inDlq.map((x) => [numOf(x), x.id]));
    for (const x of inDlq) await x.nack({ delayMs: 0 });

    assert.equal(await q.redrive('jobs-dlq', { ids: [idOf.get(11)!] }), 1);
    [dl] = await receiveN(store, 'jobs', 1);
    assert.equal(numOf(dl!), 11);
    await dl!.ack();
    assert.equal(await depth(store, 'jobs-dlq'), 2);

    assert.equal(await q.redrive('jobs-dlq', { count: 1 }), 1);
    assert.equal(await depth(store, 'jobs-dlq'), 1);
    [dl] = await receiveN(store, 'jobs', 1);
    assert.equal(numOf(dl!), 10, 'count takes the oldest first');
    await dl!.ack();

    assert.equal(await q.redrive('jobs-dlq', { to: 'other' }), 1);
    assert.equal(await depth(store, 'jobs-dlq'), 0);
    [dl] = await receiveN(store, 'other', 1);
    assert.equal(numOf(dl!), 12);
    await assertNothing(store, 'jobs', 'a redrive to another queue does not touch the original');
    assert.equal(await q.redrive('jobs-dlq'), 0, 'nothing left to redrive');
  } finally {
    await store.close();
  }
});

test('FIFO: per group in send order, one in flight per group, groups in parallel', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('fifo', { ordering: 'fifo', leaseMs: 600_000 });

    // Pull: a receive takes only the heads of the groups, and nothing of a group while its head is held.
    await q.send('fifo', [
      { groupKey: 'a', body: { g: 'a', n: 0 } },
      { groupKey: 'b', body: { g: 'b', n: 0 } },
      { groupKey: 'a', body: { g: 'a', n: 1 } },
      { groupKey: 'c', body: { g: 'c', n: 0 } },
      { groupKey: 'b', body: { g: 'b', n: 1 } },
    ]);
    await waitFor(async () => (await depth(store, 'fifo')) === 5, 'five messages');
    const heads = await q.receive('fifo', { max: 10 });
    assert.deepEqual(heads.map(bodyOf), [{ g: 'a', n: 0 }, { g: 'b', n: 0 }, { g: 'c', n: 0 }]);
    assert.deepEqual(heads.map((h) => h.groupKey), ['a', 'b', 'c']);
    assert.deepEqual(await q.receive('fifo', { max: 10 }), [], 'nothing while every head is held');
    await heads[0]!.ack();
    const next = await q.receive('fifo', { max: 10 });
    assert.deepEqual(next.map(bodyOf), [{ g: 'a', n: 1 }]);
    for (const d of [...heads.slice(1), ...next]) await d.ack();
    const [b1] = await q.receive('fifo', { max: 10 });
    assert.deepEqual(b1!.body, { g: 'b', n: 1 });
    await b1!.ack();
    assert.equal(await depth(store, 'fifo'), 0);

    // Push: several consumers, many groups.
    const G = 8;
    const PER = 12;
    const order = new Map<string, number[]>();
    const held = new Set<string>();
    const violations: string[] = [];
    let maxHeld = 0;
    let done = 0;
    const consumers = range(4).map(() => q.consume('fifo', { prefetch: 3 }));
    const loops = consumers.map((c, k) =>
      run(c, async (d) => {
        const { g, n } = d.body as { g: string; n: number };
        if (d.groupKey !== g) violations.push(`group key ${d.groupKey} for a message of ${g}`);
        if (held.has(g)) violations.push(`two of group ${g} in flight (consumer ${k}, #${n})`);
        held.add(g);
        maxHeld = Math.max(maxHeld, held.size);
        const list = order.get(g) ?? [];
        list.push(n);
        order.set(g, list);
        for (let i = 0; i < 1 + ((n + k) % 3); i++) await new Promise<void>((r) => setImmediate(r));
        held.delete(g);
        await d.ack();
        done++;
      }),
    );
    for (let n = 0; n < PER; n++) {
      const groups = range(G).map((g) => `g${g}`);
      if (n % 2 === 1) groups.reverse();
      await q.send('fifo', groups.map((g) => ({ groupKey: g, body: { g, n } })));
    }
    await waitFor(() => done === G * PER, 'every FIFO message acked', 8000);
    assert.deepEqual(violations, []);
    for (let g = 0; g < G; g++) assert.deepEqual(order.get(`g${g}`), range(PER), `group g${g} in send order`);
    assert.ok(maxHeld >= 2, `different groups are in flight at once (at most ${maxHeld} were)`);
    for (const c of consumers) await c.close();
    await Promise.all(loops);
    assert.equal(await depth(store, 'fifo'), 0);
  } finally {
    await store.close();
  }
});

test('FIFO poison: park holds the group, others flow; unpark and redrive release it; skip moves on', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('fq', { ordering: 'fifo', maxDeliveries: 2, deadLetterQueue: 'fq-dlq', leaseMs: 600_000, retryBackoff: NO_JITTER(10) });
    assert.equal((await q.get('fq'))!.settings.poison, 'park');
    await q.send('fq', [
      { groupKey: 'bad', body: { g: 'bad', n: 0 } },
      { groupKey: 'good', body: { g: 'good', n: 0 } },
      { groupKey: 'bad', body: { g: 'bad', n: 1 } },
      { groupKey: 'good', body: { g: 'good', n: 1 } },
      { groupKey: 'bad', body: { g: 'bad', n: 2 } },
      { groupKey: 'good', body: { g: 'good', n: 2 } },
      { groupKey: 'good', body: { g: 'good', n: 3 } },
    ]);
    await waitFor(async () => (await depth(store, 'fq')) === 7, 'seven messages');
    let r = await q.receive('fq', { max: 10 });
    assert.deepEqual(r.map(bodyOf), [{ g: 'bad', n: 0 }, { g: 'good', n: 0 }]);
    await r[0]!.nack();
    await r[1]!.ack();
    clock.advance(10);
    r = await q.receive('fq', { max: 10 });
    assert.deepEqual(r.map(bodyOf), [{ g: 'bad', n: 0 }, { g: 'good', n: 1 }]);
    assert.equal(r[0]!.deliveryCount, 2);
    await r[0]!.nack(); // second failure: dead letters, group parked
    await r[1]!.ack();
    await waitFor(async () => (await q.stats('fq')).parkedGroups === 1 && (await depth(store, 'fq-dlq')) === 1, 'group parked, head dead-lettered');

    // The good group keeps flowing; the bad one does not.
    for (const n of [2, 3]) {
      r = await q.receive('fq', { max: 10 });
      assert.deepEqual(r.map(bodyOf), [{ g: 'good', n }]);
      await r[0]!.ack();
    }
    clock.advance(600_000);
    await assertNothing(store, 'fq', 'while the group is parked');
    let st = await q.stats('fq');
    assert.equal(st.parkedGroups, 1);
    assert.equal(st.depth, 2);
    assert.equal(st.deadLettered, 1);

    const [dl] = await receiveN(store, 'fq-dlq', 1);
    assert.deepEqual(dl!.body, { g: 'bad', n: 0 });
    assert.equal((dl!.headers.$deadLetter as { queue: string }).queue, 'fq');
    await dl!.nack({ delayMs: 0 });

    // Redriving the parked head puts it back at the front of its group, which flows again.
    assert.equal(await q.redrive('fq-dlq'), 1);
    await waitFor(async () => (await q.stats('fq')).parkedGroups === 0, 'the group unparked by the redrive');
    for (const n of [0, 1, 2]) {
      r = await receiveN(store, 'fq', 1);
      assert.deepEqual(r.map(bodyOf), [{ g: 'bad', n }], `bad #${n} next`);
      assert.equal(r[0]!.groupKey, 'bad');
      assert.equal(r[0]!.deliveryCount, 1);
      assert.deepEqual(await q.receive('fq', { max: 10 }), [], 'one of the group at a time');
      await r[0]!.ack();
    }
    assert.equal(await depth(store, 'fq'), 0);

    // unpark: the next message of the group flows (its head stays in dead letters).
    await q.send('fq', [
      { groupKey: 'ugly', body: { g: 'ugly', n: 0 } },
      { groupKey: 'ugly', body: { g: 'ugly', n: 1 } },
    ]);
    r = await receiveN(store, 'fq', 1);
    await r[0]!.nack();
    clock.advance(10);
    r = await receiveN(store, 'fq', 1);
    assert.deepEqual(r[0]!.body, { g: 'ugly', n: 0 });
    await r[0]!.nack();
    await waitFor(async () => (await q.stats('fq')).parkedGroups === 1, 'ugly parked');
    await assertNothing(store, 'fq', 'ugly is parked');
    assert.equal(await q.unpark('fq', 'ugly'), true);
    r = await receiveN(store, 'fq', 1);
    assert.deepEqual(r[0]!.body, { g: 'ugly', n: 1 });
    await r[0]!.ack();
    st = await q.stats('fq');
    assert.equal(st.parkedGroups, 0);
    assert.equal(st.depth, 0);
    assert.equal(await q.unpark('fq', 'ugly'), false, 'not parked any more');
    assert.equal(await q.unpark('fq', 'never-seen'), false);

    // poison 'skip': the group moves on to its next message by itself.
    await q.create('fs', { ordering: 'fifo', poison: 'skip', maxDeliveries: 1, deadLetterQueue: 'fs-dlq', leaseMs: 600_000 });
    await q.send('fs', [
      { groupKey: 's', body: { n: 0 } },
      { groupKey: 's', body: { n: 1 } },
    ]);
    r = await receiveN(store, 'fs', 1);
    assert.deepEqual(r[0]!.body, { n: 0 });
    await r[0]!.nack();
    r = await receiveN(store, 'fs', 1);
    assert.deepEqual(r[0]!.body, { n: 1 });
    await r[0]!.ack();
    await waitFor(async () => (await depth(store, 'fs-dlq')) === 1, 'skipped head in dead letters');
    st = await q.stats('fs');
    assert.equal(st.parkedGroups, 0);
    assert.equal(st.depth, 0);
  } finally {
    await store.close();
  }
});

test('delayed and scheduled messages: not early, on time, cancellable, and kept across a reopen', async () => {
  const clock = new ManualClock();
  const dir = tempDir();
  let store = await open(dir, clock);
  try {
    let q = store.queues;
    await q.create('later', { leaseMs: 600_000 });
    const t0 = clock.now();
    const sent = await q.send('later', [
      { body: { i: 1 }, delayMs: 5000 },
      { body: { i: 2 }, deliverAt: t0 + 10_000 },
      { body: { i: 3 }, delayMs: 3000 },
      { body: { i: 4 } },
    ]);
    await waitFor(async () => (await depth(store, 'later')) === 4, 'four messages');
    let st = await q.stats('later');
    assert.equal(st.delayed, 3);
    assert.equal(st.ready, 1);
    let r = await q.receive('later', { max: 10 });
    assert.deepEqual(r.map(numOf), [4]);
    await r[0]!.ack();

    assert.equal(await q.cancel('later', sent.ids[2]!), true, 'a delayed message can be cancelled');
    assert.equal(await q.cancel('later', sent.ids[2]!), false, 'not twice');
    assert.equal(await q.cancel('later', randomUUID()), false, 'an unknown id');
    assert.equal(await q.cancel('later', sent.ids[3]!), false, 'an acked message');

    clock.advance(4999);
    assert.deepEqual(await q.receive('later', { max: 10 }), []);
    clock.advance(1);
    r = await q.receive('later', { max: 10 });
    assert.deepEqual(r.map(numOf), [1]);
    assert.equal(await q.cancel('later', sent.ids[0]!), false, 'a leased message cannot be cancelled');
    await r[0]!.ack();
    clock.advance(4999);
    assert.deepEqual(await q.receive('later', { max: 10 }), []);
    clock.advance(1);
    r = await q.receive('later', { max: 10 });
    assert.deepEqual(r.map(numOf), [2], 'the scheduled one, and never the cancelled one');
    await r[0]!.ack();
    clock.advance(60_000);
    await assertNothing(store, 'later', 'after the cancelled message was due');

    // Delays survive a close and reopen (the same clock).
    const s2 = await q.send('later', [
      { body: { i: 5 }, delayMs: 60_000 },
      { body: { i: 6 }, delayMs: 30_000 },
    ]);
    await waitFor(async () => (await depth(store, 'later')) === 2, 'two delayed');
    assert.equal(await q.cancel('later', s2.ids[1]!), true);
    await store.close();
    store = await open(dir, clock);
    q = store.queues;
    st = await q.stats('later');
    assert.equal(st.depth, 1);
    assert.equal(st.delayed, 1);
    assert.deepEqual(await q.receive('later'), []);
    clock.advance(59_999);
    assert.deepEqual(await q.receive('later', { max: 10 }), []);
    clock.advance(1);
    r = await q.receive('later', { max: 10 });
    assert.deepEqual(r.map(numOf), [5]);
    await r[0]!.ack();
    clock.advance(60_000);
    await assertNothing(store, 'later', 'the cancelled message stays cancelled after a reopen');

    // A queue-wide delivery delay applies to every message.
    await q.create('slow', { deliveryDelayMs: 2000 });
    await q.send('slow', [{ body: { i: 7 } }]);
    await waitFor(async () => (await q.stats('slow')).delayed === 1, 'delayed by the queue');
    clock.advance(1999);
    assert.deepEqual(await q.receive('slow'), []);
    clock.advance(1);
    assert.deepEqual((await q.receive('slow')).map(numOf), [7]);
  } finally {
    await store.close();
  }
});

test('dedup: one id within the window is enqueued once, also when sent concurrently', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('dd', { dedupWindowMs: 10_000, leaseMs: 600_000 });
    const id = randomUUID();
    const first = await q.send('dd', [{ id, body: { i: 1 } }]);
    assert.deepEqual(first.ids, [id]);
    assert.equal(first.duplicates, 0);
    const again = await q.send('dd', [{ id, body: { i: 1 } }]);
    assert.deepEqual(again, { ids: [id], positions: first.positions, duplicates: 1 });

    // Concurrent sends of one new id: exactly one enqueues, all report its position.
    const id2 = randomUUID();
    const results = await Promise.all(range(4).map(() => q.send('dd', [{ id: id2, body: { i: 2 } }])));
    assert.equal(results.reduce((n, r) => n + r.duplicates, 0), 3);
    assert.equal(new Set(results.map((r) => r.positions[0])).size, 1);
    assert.ok(results.every((r) => r.ids[0] === id2));

    // A batch mixing a duplicate and a new message: only the new one is enqueued.
    const mixed = await q.send('dd', [{ id, body: { i: 1 } }, { body: { i: 3 } }]);
    assert.equal(mixed.duplicates, 1);
    assert.equal(mixed.positions[0], first.positions[0]);

    await waitFor(async () => (await depth(store, 'dd')) === 3, 'three distinct messages');
    await sleep(15);
    assert.equal(await depth(store, 'dd'), 3);
    const got = await q.receive('dd', { max: 10 });
    assert.deepEqual(sortedNums(got), [1, 2, 3]);
    for (const d of got) await d.ack();

    // Still within the window after an ack: not enqueued again.
    clock.advance(5000);
    const late = await q.send('dd', [{ id, body: { i: 1 } }]);
    assert.equal(late.duplicates, 1);
    assert.equal(late.positions[0], first.positions[0]);
    await assertNothing(store, 'dd', 'a duplicate of an acked message');

    // Past the window the queue no longer reports it as a duplicate.
    clock.advance(5001);
    const after = await q.send('dd', [{ id, body: { i: 1 } }]);
    assert.equal(after.duplicates, 0);
    assert.deepEqual(after.ids, [id]);

    // One id twice in one send is an error; nothing of that send is enqueued.
    const id3 = randomUUID();
    await assert.rejects(q.send('dd', [{ id: id3 }, { id: id3 }]), InvalidArgumentError);
    assert.equal(await q.cancel('dd', id3), false);
  } finally {
    await store.close();
  }
});

test("overflow 'reject': a send beyond maxLength throws QueueFullError and sends nothing", async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('bounded', { maxLength: 3, leaseMs: 600_000 });
    await q.send('bounded', range(3).map((i) => ({ body: { i } })));
    await waitFor(async () => (await depth(store, 'bounded')) === 3, 'three waiting');
    await assert.rejects(q.send('bounded', [{ body: { i: 3 } }]), (e: unknown) => e instanceof QueueFullError && e.details.maxLength === 3);
    await sleep(15);
    let st = await q.stats('bounded');
    assert.equal(st.depth, 3);
    assert.equal(st.totals.rejected, 1);
    assert.equal(st.totals.dropped, 0);
    assert.equal((await store.streamInfo('$queue-bounded'))!.eventCount, 3, 'nothing of the rejected send is in the log');
    let r = await q.receive('bounded', { max: 10 });
    assert.deepEqual(sortedNums(r), [0, 1, 2], 'the first three, none dropped');

    // Leased messages do not count towards maxLength; a batch that does not fit is refused whole.
    await q.send('bounded', [{ body: { i: 4 } }, { body: { i: 5 } }]);
    await waitFor(async () => (await q.stats('bounded')).ready === 2, 'two waiting');
    await assert.rejects(q.send('bounded', [{ body: { i: 6 } }, { body: { i: 7 } }]), QueueFullError);
    await q.send('bounded', [{ body: { i: 8 } }]);
    await waitFor(async () => (await q.stats('bounded')).ready === 3, 'three waiting');
    await assert.rejects(q.send('bounded', [{ body: { i: 9 } }]), QueueFullError);
    for (const d of r) await d.ack();
    await sleep(15);
    r = await q.receive('bounded', { max: 10 });
    assert.deepEqual(sortedNums(r), [4, 5, 8]);
    for (const d of r) await d.ack();
    st = await q.stats('bounded');
    assert.equal(st.depth, 0);
    assert.equal(st.totals.rejected, 4);
    assert.equal(st.totals.dropped, 0);
  } finally {
    await store.close();
  }
});

test(
  "overflow 'reject' holds for back-to-back sends (not yet applied by the follower)",
  async () => {
    const clock = new ManualClock();
    const store = await open(tempDir(), clock);
    try {
      const q = store.queues;
      await q.create('bounded', { maxLength: 3, leaseMs: 600_000 });
      // Sent one after another without waiting for delivery: the bound must hold all the same.
      for (let i = 0; i < 3; i++) await q.send('bounded', [{ body: { i } }]);
      await assert.rejects(q.send('bounded', [{ body: { i: 3 } }]), QueueFullError);
      await sleep(15);
      const st = await q.stats('bounded');
      assert.equal(st.depth, 3);
      assert.equal(st.totals.dropped, 0, "'reject' never drops a message");
      const r = await q.receive('bounded', { max: 10 });
      assert.deepEqual(sortedNums(r), [0, 1, 2]);
    } finally {
      await store.close();
    }
  },
);

test("overflow 'drop-oldest' drops the oldest waiting message, to the dead-letter queue when there is one", async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('ring', { maxLength: 2, overflow: 'drop-oldest', deadLetterQueue: 'ring-dlq', leaseMs: 600_000 });
    for (let i = 0; i < 4; i++) await q.send('ring', [{ body: { i } }]);
    await waitFor(async () => (await depth(store, 'ring-dlq')) === 2, 'two dropped to dead letters');
    let st = await q.stats('ring');
    assert.equal(st.depth, 2);
    assert.equal(st.totals.dropped, 2);
    assert.equal(st.deadLettered, 2);
    let r = await q.receive('ring', { max: 10 });
    assert.deepEqual(sortedNums(r), [2, 3], 'the newest two stay');
    // Leased messages are not waiting: a send now drops nothing.
    await q.send('ring', [{ body: { i: 4 } }]);
    await waitFor(async () => (await q.stats('ring')).ready === 1, 'one waiting');
    st = await q.stats('ring');
    assert.equal(st.totals.dropped, 2);
    assert.equal(st.depth, 3);
    const dl = await receiveN(store, 'ring-dlq', 2);
    assert.deepEqual(sortedNums(dl), [0, 1]);
    assert.match(String((dl[0]!.headers.$deadLetter as { reason: string }).reason), /overflow/);
    assert.equal((dl[0]!.headers.$deadLetter as { queue: string }).queue, 'ring');

    // drop-oldest without one: simply dropped.
    await q.create('ring2', { maxLength: 1, overflow: 'drop-oldest' });
    await q.send('ring2', [{ body: { i: 0 } }]);
    await q.send('ring2', [{ body: { i: 1 } }]);
    await waitFor(async () => (await q.stats('ring2')).totals.dropped === 1, 'one dropped');
    r = await receiveN(store, 'ring2', 1);
    assert.deepEqual(r.map(numOf), [1]);
    assert.equal(await depth(store, 'ring2'), 1);
    await assertNothing(store, 'ring2', 'the dropped one is gone');
  } finally {
    await store.close();
  }
});

test(
  "overflow 'drop-oldest' in a FIFO queue does not park the group of the dropped message",
  async () => {
    const clock = new ManualClock();
    const store = await open(tempDir(), clock);
    try {
      const q = store.queues;
      await q.create('fring', { ordering: 'fifo', maxLength: 2, overflow: 'drop-oldest', deadLetterQueue: 'fring-dlq', leaseMs: 600_000 });
      for (let i = 0; i < 3; i++) await q.send('fring', [{ groupKey: 'g', body: { i } }]);
      await waitFor(async () => (await depth(store, 'fring-dlq')) === 1, 'the oldest dropped to dead letters');
      const st = await q.stats('fring');
      assert.equal(st.totals.dropped, 1);
      assert.equal(st.parkedGroups, 0, 'an overflow drop is not a poison message');
      const r = await receiveN(store, 'fring', 1, 500);
      assert.deepEqual(r.map(numOf), [1], 'the group continues with its next message');
    } finally {
      await store.close();
    }
  },
);

test('bound queues receive matching log events in place: fan-out, from, and never $-streams', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    const pre1 = await store.append('order-0', [{ type: 'OrderPlaced', data: { pre: 1 } }]);
    const pre2 = await store.append('order-0', [{ type: 'OrderPlaced', data: { pre: 2 } }]);
    await q.create('plain');
    await q.create('by-cat', { binding: { filter: { category: 'order' } } });
    await q.create('by-type', { binding: { filter: { types: ['OrderPlaced'] } } });
    await q.create('by-prefix', { binding: { filter: { streamPrefix: 'ord' } } });
    await q.create('from-start', { binding: { filter: { category: 'order' }, from: 'start' } });
    await q.create('from-pos', { binding: { filter: { category: 'order' }, from: pre2.positions[0]! } });
    await q.create('dollar', { binding: { filter: { streamPrefix: '$' } } });
    await q.create('msg-type', { binding: { filter: { types: ['message', '$ops', 'QueueCreated'] } } });

    const r = await store.append('order-1', [{ type: 'OrderPlaced', data: { id: 1 }, metadata: { m: 'x' } }]);
    const rc = await store.append('customer-1', [{ type: 'OrderPlaced', data: { c: 1 } }]);
    const ro = await store.append('orders-1', [{ type: 'Other', data: { o: 1 } }]);
    await q.send('plain', [{ body: { i: 1 } }]);
    const [event] = await store.readStream('order-1').toArray();

    const expect: Record<string, number[]> = {
      'by-cat': [r.positions[0]!],
      'by-type': [r.positions[0]!, rc.positions[0]!],
      'by-prefix': [r.positions[0]!, ro.positions[0]!],
      'from-start': [pre1.positions[0]!, pre2.positions[0]!, r.positions[0]!],
      'from-pos': [pre2.positions[0]!, r.positions[0]!],
    };
    for (const [name, positions] of Object.entries(expect)) {
      const got = await receiveN(store, name, positions.length);
      assert.deepEqual(got.map((d) => d.position), positions, `queue ${name}`);
      const d = got.find((x) => x.position === r.positions[0])!;
      assert.equal(d.stream, 'order-1');
      assert.equal(d.id, event!.id);
      assert.equal(d.type, 'OrderPlaced');
      assert.deepEqual(d.body, { id: 1 });
      assert.equal(d.headers.m, 'x');
      for (const x of got) await x.ack();
      // Not copied: the queue's own stream holds nothing.
      assert.equal(await store.streamInfo(`$queue-${name}`), undefined, `${name} copied nothing`);
    }
    await assertNothing(store, 'dollar', "('$' streams never match)");
    await assertNothing(store, 'msg-type', "(events of '$' streams never match)");
    for (const name of Object.keys(expect)) await assertNothing(store, name, 'after acking');
    assert.deepEqual((await receiveN(store, 'plain', 1)).map(numOf), [1]);
  } finally {
    await store.close();
  }
});

test('restart: exactly the un-acked messages come back, from a snapshot plus replay and from the log alone', async () => {
  const clock = new ManualClock();
  const dir = tempDir();
  // Snapshots every 100 ms (real time) in the first session, so one exists to restart from.
  let store = await open(dir, clock, 100);
  try {
    await store.queues.create('durable', { leaseMs: 600_000 });
    const N = 40;
    await store.queues.send('durable', range(N).map((i) => ({ body: { i } })));
    let got = await receiveN(store, 'durable', N);
    assert.deepEqual(sortedNums(got), range(N));
    for (const d of got) if (numOf(d) % 4 === 0) await d.ack();
    await waitFor(() => snapshotFiles(dir).length === 1, 'a snapshot of the queue');
    const [snapFile] = snapshotFiles(dir);
    const snapshot = fs.readFileSync(snapFile!);
    // More acks after the snapshot: on restart they come from replaying the log past it.
    for (const d of got) if (numOf(d) % 4 === 2) await d.ack();
    await store.close();
    fs.writeFileSync(snapFile!, snapshot); // restart from that snapshot, whatever close wrote

    // First reopen: leases do not survive, every un-acked message is ready again.
    store = await open(dir, clock);
    let st = await store.queues.stats('durable');
    assert.equal(st.depth, N / 2);
    assert.equal(st.ready, N / 2);
    assert.equal(st.inFlight, 0);
    got = await receiveN(store, 'durable', N / 2);
    assert.deepEqual(sortedNums(got), range(N).filter((i) => i % 2 === 1));
    assert.ok(got.every((d) => d.deliveryCount === 2), 'the earlier delivery is remembered');
    await assertNothing(store, 'durable', '(acked messages never come back)');
    for (const d of got) if (numOf(d) % 4 === 1) await d.ack();
    await store.close();

    // Second reopen, after more acks.
    const left = range(N).filter((i) => i % 4 === 3);
    store = await open(dir, clock);
    st = await store.queues.stats('durable');
    assert.equal(st.depth, left.length);
    assert.equal(st.ready, left.length);
    got = await receiveN(store, 'durable', left.length);
    assert.deepEqual(sortedNums(got), left);
    assert.ok(got.every((d) => d.deliveryCount === 3));
    await assertNothing(store, 'durable', 'after the second reopen');
    await got[0]!.ack();
    await store.close();

    // Third reopen without snapshots: the state is rebuilt from the log alone.
    fs.rmSync(path.join(dir, 'queues'), { recursive: true, force: true });
    store = await open(dir, clock);
    st = await store.queues.stats('durable');
    assert.equal(st.depth, left.length - 1);
    got = await receiveN(store, 'durable', left.length - 1);
    assert.deepEqual(sortedNums(got), left.slice(1));
    assert.ok(got.every((d) => d.deliveryCount === 4));
    await assertNothing(store, 'durable', 'after a replay from the log');
    for (const d of got) await d.ack();
    await store.close();

    store = await open(dir, clock);
    st = await store.queues.stats('durable');
    assert.equal(st.depth, 0);
    await assertNothing(store, 'durable', 'once everything was acked');
    const rebuilt = warnings.filter((w) => w.dir === dir && /rebuilding/.test(w.message));
    assert.deepEqual(rebuilt.map((w) => w.message), [], 'the restored snapshot was used as it was (no rebuild)');
  } finally {
    await store.close();
  }
});

test(
  'close writes a snapshot of every queue',
  async () => {
    const clock = new ManualClock();
    const dir = tempDir();
    const store = await open(dir, clock); // periodic snapshots every 10 s: never within this test
    try {
      await store.queues.create('snap', { leaseMs: 600_000 });
      await store.queues.send('snap', range(5).map((i) => ({ body: { i } })));
      const got = await receiveN(store, 'snap', 5);
      await got[0]!.ack();
    } finally {
      await store.close();
    }
    assert.equal(snapshotFiles(dir).length, 1, 'one snapshot file for the queue after close');
  },
);

test(
  'periodic snapshots do not fail when a write takes longer than the interval',
  async () => {
    const clock = new ManualClock();
    const dir = tempDir();
    const store = await open(dir, clock, 1);
    try {
      await store.queues.create('busy', { leaseMs: 600_000 });
      await store.queues.send('busy', range(1000).map((i) => ({ body: { i } })));
      // Keep the queue changing (so every tick writes) for a short while, or until a write fails.
      const end = Date.now() + 300;
      while (Date.now() < end && !warnings.some((w) => w.dir === dir)) {
        for (const d of await store.queues.receive('busy', { max: 5 })) await d.ack();
        await sleep(1);
      }
    } finally {
      await store.close();
    }
    const failed = warnings.filter((w) => w.dir === dir && /snapshot failed/.test(w.message));
    assert.deepEqual(failed.map((w) => String(w.details.error)), []);
  },
);

test('bad input is refused with the right error and leaves other messages unaffected', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('ok', { leaseMs: 600_000 });
    await q.send('ok', [{ body: { i: 0 } }]);

    await assert.rejects(q.send('missing', [{ body: 1 }]), QueueNotFoundError);
    await assert.rejects(q.receive('missing'), QueueNotFoundError);
    await assert.rejects(q.stats('missing'), QueueNotFoundError);
    await assert.rejects(q.update('missing', { leaseMs: 10 }), QueueNotFoundError);
    await assert.rejects(q.purge('missing'), QueueNotFoundError);
    await assert.rejects(q.delete('missing'), QueueNotFoundError);
    assert.throws(() => q.consume('missing'), QueueNotFoundError);
    await assert.rejects(q.create('ok'), QueueExistsError);

    await assert.rejects(q.create('s1', { bogus: 1 } as unknown as Partial<QueueSettings>), InvalidArgumentError);
    await assert.rejects(q.create('s2', { leaseMs: -1 }), InvalidArgumentError);
    await assert.rejects(q.create('s3', { retryBackoff: { initialMs: 100, maxMs: 10, multiplier: 2, jitter: 0 } }), InvalidArgumentError);
    await assert.rejects(q.create('s4', { deadLetterQueue: 's4' }), InvalidArgumentError);
    await assert.rejects(q.update('ok', { ordering: 'fifo' }), InvalidArgumentError);
    for (const bad of ['', 'has space', '-leading', '$queue', 'a/b', 'x'.repeat(201)]) {
      await assert.rejects(q.create(bad), InvalidArgumentError, `name '${bad.slice(0, 20)}'`);
    }
    for (const name of ['s1', 's2', 's3', 's4']) assert.equal(await q.get(name), undefined, `${name} was not created`);
    assert.equal((await q.get('ok'))!.settings.ordering, 'unordered');
    await assert.rejects(q.send('ok', [{ body: 1, groupKey: 'g' }]), InvalidArgumentError);
    await assert.rejects(q.send('ok', [{ body: 1, headers: { $x: 'y' } }]), InvalidArgumentError);
    await assert.rejects(q.send('ok', [{ id: 'not-a-uuid' }]), InvalidArgumentError);
    await assert.rejects(q.send('ok', []), InvalidArgumentError);

    // Receipts.
    await assert.rejects(q.ack('ok', 'garbage'), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'malformed');
    await assert.rejects(q.ack('ok', 'zz.1.1'), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'unknown');
    const [d] = await receiveN(store, 'ok', 1);
    await assert.rejects(q.ack('ok', [d!.receipt, 'garbage']), ReceiptInvalidError);
    await assert.rejects(q.ack('ok', [d!.receipt, d!.receipt]), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'repeated');
    assert.equal((await q.stats('ok')).inFlight, 1, 'a batch with a bad receipt changes nothing');
    await assert.rejects(d!.nack({ bogus: true } as never), InvalidArgumentError);
    await d!.ack();
    await assert.rejects(d!.ack(), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'unknown');
    await assert.rejects(q.nack('ok', d!.receipt), ReceiptInvalidError);

    // A lease held by one consumer cannot be settled through another, nor through the queue.
    const a = q.consume('ok', { prefetch: 1 });
    const b = q.consume('ok', { prefetch: 1 });
    const gotA: Delivery[] = [];
    const gotB: Delivery[] = [];
    const loopA = run(a, (x) => void gotA.push(x));
    const loopB = run(b, (x) => void gotB.push(x));
    await q.send('ok', [{ body: { i: 1 } }]);
    await waitFor(() => gotA.length + gotB.length === 1, 'one consumer gets it');
    const [holder, other] = gotA.length === 1 ? [a, b] : [b, a];
    const lease = (gotA[0] ?? gotB[0])!;
    await assert.rejects(other.ack(lease.receipt), LeaseNotOwnedError);
    await assert.rejects(other.nack(lease.receipt), LeaseNotOwnedError);
    await assert.rejects(q.ack('ok', lease.receipt), LeaseNotOwnedError);
    assert.equal((await q.stats('ok')).inFlight, 1);
    await holder.ack(lease.receipt);
    await a.close();
    await b.close();
    await Promise.all([loopA, loopB]);

    // Too big for the log.
    await assert.rejects(q.send('ok', [{ body: { big: 'x'.repeat(1_100_000) } }]), LimitExceededError);
    await sleep(10);
    assert.equal(await depth(store, 'ok'), 0);

    // After all that, a good message still flows.
    await q.send('ok', [{ body: { i: 2 } }]);
    const r = await receiveN(store, 'ok', 1);
    assert.deepEqual(r.map(numOf), [2]);
    await r[0]!.ack();
    assert.equal(await depth(store, 'ok'), 0);
  } finally {
    await store.close();
  }
});

test('purge drops waiting messages; delete ends consumers and a recreated queue starts empty', async () => {
  const clock = new ManualClock();
  const dir = tempDir();
  let store = await open(dir, clock);
  try {
    let q = store.queues;
    await q.create('p', { leaseMs: 600_000 });
    await q.send('p', range(5).map((i) => ({ body: { i } })));
    await waitFor(async () => (await depth(store, 'p')) === 5, 'five messages');
    const leased = await q.receive('p', { max: 2 });
    assert.equal(await q.purge('p'), 5);
    let st = await q.stats('p');
    assert.equal(st.depth, 0);
    assert.equal(st.inFlight, 0);
    await assert.rejects(leased[0]!.ack(), ReceiptInvalidError);
    await assertNothing(store, 'p', 'after a purge');
    await q.send('p', [{ body: { i: 10 } }]);
    assert.deepEqual((await receiveN(store, 'p', 1)).map(numOf), [10]);
    await store.close();
    store = await open(dir, clock);
    q = store.queues;
    st = await q.stats('p');
    assert.equal(st.depth, 1, 'purged messages stay purged after a reopen');
    let r = await receiveN(store, 'p', 1);
    assert.deepEqual(r.map(numOf), [10]);
    await r[0]!.ack();

    // Delete: a consumer ends with QueueNotFoundError.
    await q.send('p', range(3, 20).map((i) => ({ body: { i } })));
    const c = q.consume('p', { prefetch: 1 });
    const got: Delivery[] = [];
    const loop = run(c, (x) => void got.push(x));
    await waitFor(() => got.length === 1, 'the consumer got one');
    await q.delete('p');
    assert.ok((await loop) instanceof QueueNotFoundError, 'the consumer ends with QueueNotFoundError');
    assert.equal(await q.get('p'), undefined);
    assert.ok(!(await q.list()).some((i) => i.name === 'p'));
    await assert.rejects(q.stats('p'), QueueNotFoundError);
    await assert.rejects(q.send('p', [{ body: 1 }]), QueueNotFoundError);

    await q.create('p', { leaseMs: 600_000 });
    assert.equal(await depth(store, 'p'), 0, 'a recreated queue starts empty');
    await assertNothing(store, 'p', 'in the recreated queue');
    await q.send('p', [{ body: { i: 100 } }]);
    await waitFor(async () => (await depth(store, 'p')) === 1, 'the new message');
    await store.close();
    store = await open(dir, clock);
    q = store.queues;
    assert.equal(await depth(store, 'p'), 1, 'old messages do not return after a reopen');
    r = await receiveN(store, 'p', 1);
    assert.deepEqual(r.map(numOf), [100]);
    await assertNothing(store, 'p', 'after a reopen of the recreated queue');
  } finally {
    await store.close();
  }
});

test('list, get and update: settings round-trip and a new leaseMs applies to new deliveries', async () => {
  const clock = new ManualClock();
  const dir = tempDir();
  let store = await open(dir, clock);
  try {
    let q = store.queues;
    const settings: Partial<QueueSettings> = {
      leaseMs: 30_000,
      maxDeliveries: 7,
      retryBackoff: { initialMs: 50, maxMs: 500, multiplier: 1.5, jitter: 0 },
      dedupWindowMs: 1000,
      maxLength: 100,
      overflow: 'drop-oldest',
    };
    const info = await q.create('zeta', settings);
    assert.equal(info.name, 'zeta');
    assert.equal(info.stream, '$queue-zeta');
    assert.ok(Number.isSafeInteger(info.createdPosition) && info.createdPosition > 0);
    const full: QueueSettings = { ...DEFAULT_QUEUE_SETTINGS, ...settings } as QueueSettings;
    assert.deepEqual(info.settings, full);
    assert.deepEqual((await q.get('zeta'))!.settings, full);
    await q.create('alpha');
    assert.deepEqual((await q.list()).map((i) => i.name), ['alpha', 'zeta']);
    assert.equal(await q.get('nope'), undefined);

    await q.send('zeta', [{ body: { i: 1 } }, { body: { i: 2 } }]);
    const [d1] = await receiveN(store, 'zeta', 1);
    assert.equal(d1!.leaseExpiresAt, clock.now() + 30_000);

    const updated = await q.update('zeta', { leaseMs: 1000, retryBackoff: { initialMs: 10, maxMs: 10, multiplier: 1, jitter: 0 } });
    assert.equal(updated.settings.leaseMs, 1000);
    assert.equal(updated.settings.maxDeliveries, 7, 'other settings stay');
    assert.equal(updated.createdPosition, info.createdPosition);
    assert.equal((await q.get('zeta'))!.settings.leaseMs, 1000);

    const [d2] = await q.receive('zeta');
    assert.ok(d2);
    assert.equal(d2.leaseExpiresAt, clock.now() + 1000, 'the new lease length');
    clock.advance(1000);
    await assert.rejects(d2.ack(), (e: unknown) => e instanceof ReceiptInvalidError && e.details.reason === 'expired');
    clock.advance(10);
    const [d3] = await q.receive('zeta');
    assert.equal(d3!.id, d2.id);
    assert.equal(d3!.deliveryCount, 2);
    await d1!.ack(); // the first delivery kept its 30 s lease
    await d3!.ack();

    await store.close();
    store = await open(dir, clock);
    q = store.queues;
    const reopened = await q.get('zeta');
    assert.deepEqual(reopened!.settings, { ...full, leaseMs: 1000, retryBackoff: { initialMs: 10, maxMs: 10, multiplier: 1, jitter: 0 } });
    assert.equal(reopened!.createdPosition, info.createdPosition);
    assert.deepEqual((await q.list()).map((i) => i.name), ['alpha', 'zeta']);
  } finally {
    await store.close();
  }
});

test('update adds a binding from the start to a live queue: the events before it are taken, each once, beside the sent messages', async () => {
  const clock = new ManualClock();
  const store = await open(tempDir(), clock);
  try {
    const q = store.queues;
    await q.create('later');
    const a = await store.append('invoice-1', [{ type: 'Issued', data: { n: 1 } }]);
    const b = await store.append('invoice-2', [{ type: 'Issued', data: { n: 2 } }]);
    await q.send('later', [{ body: 'sent' }]);
    await waitFor(async () => (await depth(store, 'later')) === 1, 'the sent message is in');
    const updated = await q.update('later', { binding: { filter: { category: 'invoice' }, from: 'start' } });
    assert.equal(updated.settings.binding?.from, 'start');
    const got = await receiveN(store, 'later', 3);
    assert.deepEqual(
      got.map((d) => d.position).sort((x, y) => x - y),
      [a.positions[0]!, b.positions[0]!, got.find((d) => d.stream === '$queue-later')!.position].sort((x, y) => x - y),
    );
    await assertNothing(store, 'later', 'each event once');
  } finally {
    await store.close();
  }
});
