/**
 * Consumer groups through the client against a real `eventful serve` process: a single active
 * member whose connection dies is replaced by a standby on another connection, from the last
 * checkpoint; partitioned members on two connections split the streams and keep their order;
 * durable commits, stats, reset and typed errors over the wire.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { GroupConflictError, GroupNotFoundError, InvalidArgumentError, connect } from '../../src/client/index.js';
import type { GroupMember, RecordedEvent, RemoteEventStore } from '../../src/client/index.js';
import { startServerProcess } from './server-process.js';
import type { ServerProcess } from './server-process.js';

let dataDir: string;
let server: ServerProcess;
const stores: RemoteEventStore[] = [];

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-groups-e2e-'));
  server = await startServerProcess(dataDir);
});

after(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function client(): Promise<RemoteEventStore> {
  const s = await connect(server.tcpUrl, { timeoutMs: 15_000 });
  stores.push(s);
  return s;
}

async function take(member: GroupMember, n: number, timeoutMs = 15_000): Promise<RecordedEvent[]> {
  const it = member[Symbol.asyncIterator]();
  const out: RecordedEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([it.next(), new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(1, deadline - Date.now()))))]);
    clearTimeout(timer);
    if (r === 'timeout') throw new Error(`took ${out.length} of ${n} events before the timeout`);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

async function until(cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('single active member: when its connection dies, the standby takes over from the checkpoint', async () => {
  const writer = await client();
  for (let i = 0; i < 20; i++) await writer.append(`pay-${i % 3}`, [{ type: 'Paid', data: { i } }]);
  const c1 = await connect(server.tcpUrl, { reconnect: false });
  const c2 = await client();
  const active = c1.groups.join('payments', { filter: { category: 'pay' }, autoCommit: false, memberName: 'one' });
  const first = await take(active, 10);
  await active.commit(first[6]!);
  const standby = c2.groups.join('payments', { memberName: 'two' });
  await until(async () => (await writer.groups.stats('payments')).members.length === 2);
  const stats = await writer.groups.stats('payments');
  assert.deepEqual(
    stats.members.map((m) => [m.name, m.partitions]),
    [
      ['one', [0]],
      ['two', []],
    ],
  );
  assert.equal(stats.position, first[6]!.position);
  // The connection dies without a goodbye: the server ends the member, the standby goes on.
  await c1.close();
  const rest = await take(standby, 13);
  assert.equal(rest[0]!.position, first[7]!.position);
  assert.deepEqual(
    rest.map((e) => e.data),
    Array.from({ length: 13 }, (_, k) => ({ i: k + 7 })),
  );
  await standby.close();
});

test('partitioned members on two connections split the streams, each stream in order', async () => {
  const writer = await client();
  const streams = Array.from({ length: 24 }, (_, i) => `cart-${i}`);
  for (let r = 0; r < 6; r++) await Promise.all(streams.map((s) => writer.append(s, [{ type: 'Item', data: { r } }])));
  const a = (await client()).groups.join('carts', { mode: 'partitioned', partitions: 6, filter: { category: 'cart' } });
  const b = (await client()).groups.join('carts', { mode: 'partitioned', partitions: 6, filter: { category: 'cart' } });
  // Both drain at once: `b` joins while `a` already holds events of every partition, so the
  // partitions `b` gets move only once `a` has handled what it was sent of them.
  const handled: Array<{ who: string; stream: string; revision: number }> = [];
  const distinct = (): number => new Set(handled.map((h) => `${h.stream}/${h.revision}`)).size;
  const drain = async (who: string, m: GroupMember): Promise<void> => {
    for await (const e of m) {
      handled.push({ who, stream: e.stream, revision: e.revision });
      if (distinct() === 288) break;
    }
  };
  const timeout = setTimeout(() => {
    void a.close();
    void b.close();
  }, 20_000);
  const da = drain('a', a);
  const db = drain('b', b);
  await until(async () => distinct() === 144, 20_000);
  // Once the rebalance is over, the partitions stay put: each stream goes to one member.
  await until(async () => (await writer.groups.stats('carts')).members.every((m) => m.partitions.length === 3 && m.revoking.length === 0));
  const phase2 = handled.length;
  for (let r = 6; r < 12; r++) await Promise.all(streams.map((s) => writer.append(s, [{ type: 'Item', data: { r } }])));
  await until(async () => distinct() === 288, 20_000);
  clearTimeout(timeout);
  await a.close();
  await b.close();
  await Promise.all([da, db]);

  // First deliveries only: a member that breaks out of its loop leaves its last event
  // unhandled, and that one comes again to whoever takes its partitions (at-least-once).
  const firstSeen = new Set<string>();
  const firsts = handled.filter((h) => !firstSeen.has(`${h.stream}/${h.revision}`) && firstSeen.add(`${h.stream}/${h.revision}`));
  const later = firsts.filter((h) => h.revision >= 6);
  assert.ok(handled.slice(phase2).every((h) => h.revision >= 6));
  assert.ok(later.some((h) => h.who === 'a') && later.some((h) => h.who === 'b'), 'both members received events');
  for (const stream of streams) assert.equal(new Set(later.filter((h) => h.stream === stream).map((h) => h.who)).size, 1, `${stream} went to both members: ${JSON.stringify(later.filter((h) => h.stream === stream))}`);
  for (const stream of streams) {
    const revs = handled.filter((h) => h.stream === stream).map((h) => h.revision);
    for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! <= revs[i - 1]! + 1, `${stream} skipped from ${revs[i - 1]} to ${revs[i]}`);
    assert.equal(new Set(revs).size, 12);
  }
});

test('over the wire: durable commit, stats, reset, and typed errors', async () => {
  const c = await client();
  await c.append('wire-1', [{ type: 'A' }, { type: 'B' }, { type: 'C' }]);
  const info = await c.groups.create('wired', { filter: { streamPrefix: 'wire-' }, from: 'start' });
  assert.equal(info.settings.mode, 'single');
  await assert.rejects(c.groups.create('wired', { mode: 'partitioned' }), GroupConflictError);
  await assert.rejects(c.groups.stats('nope'), GroupNotFoundError);
  await assert.rejects(c.groups.create('bad name'), InvalidArgumentError);
  const m = c.groups.join('wired', { autoCommit: false });
  const got = await take(m, 3);
  await m.commit(got[1]!);
  let s = await c.groups.stats('wired');
  assert.equal(s.position, got[1]!.position);
  assert.equal(s.lagEvents, 1);
  await assert.rejects(c.groups.reset('wired', 'start'), GroupConflictError);
  await m.close();
  await until(async () => (await c.groups.stats('wired')).members.length === 0);
  s = await c.groups.reset('wired', 'start');
  assert.equal(s.lagEvents, 3);
  assert.ok((await c.groups.list()).some((g) => g.name === 'wired'));
  await c.groups.delete('wired');
  assert.equal(await c.groups.get('wired'), undefined);
});
