/**
 * Crash test of the queues: a real `eventful serve` process (durability 'always') is killed
 * with SIGKILL at random moments, several times, while producers send and consumers take and
 * ack messages through the client over TCP; each time it restarts on the same data directory
 * and the same ports, and the clients reconnect on their own. A kill comes at a random moment;
 * some kills are then held back until the next ack (or send) resolves and happen in that very
 * turn, the moment an answer given before its record reached the log would be caught (a kill -9
 * loses what the process had not yet written, so the window of such a bug is short).
 *
 * Producers and consumers run in this (the test) process, so what they saw survives every
 * kill of the server. Everything is stamped with one counter (`tick()`), which orders the facts
 * of all connections:
 * - a producer records a message id before send() is called, and as an acknowledged send only
 *   once send() resolved (a rejected send, e.g. a timeout, leaves the message's fate unknown);
 * - a consumer records every delivery (push consumers and a pull receive loop), and an ack as
 *   done only once ack() resolved; a rejected ack (its receipt died with the server, or the
 *   lease ran out) leaves the ack's fate unknown.
 *
 * At the end, with the server running normally, the consumers drain the queue until its depth is
 * 0, and the test holds the queue to its guarantees (src/queues/manager.ts):
 * 1. at least once: every acknowledged send was delivered and its ack is known to have taken
 *    effect: an ack() resolved, or (for an ack whose answer was lost with the server) the
 *    queue's own delivery records ($qops-<queue>) hold a durable 'acked' settlement for it;
 * 2. an ack resolves only once durable: no message is delivered again after an ack() of it
 *    resolved;
 * and every delivered message is one a producer sent (nothing made up, no duplicate of a send).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { connect } from '../../src/client/index.js';
import type { Delivery, QueueStats, RemoteEventStore } from '../../src/client/index.js';
import { OP, OUTCOME, decodeOps } from '../../src/queues/ops.js';
import { startServerProcess } from '../e2e/server-process.js';
import type { ServerProcess } from '../e2e/server-process.js';

const QUEUE = 'crash-q';
const LEASE_MS = 2_000;
const KILLS = 5;
/** Time the server runs between (re)start and the next kill. */
const RUN_MS_MIN = 1_500;
const RUN_MS_MAX = 3_500;
/** Time the server stays dead after a kill before the restart begins. */
const DOWN_MS_MAX = 400;
/** Time the server runs after the last restart before producers stop. */
const TAIL_MS = 1_500;
const DRAIN_TIMEOUT_MS = 45_000;

const PRODUCER_CONNECTIONS = 2;
const PRODUCER_LOOPS = 3;
const PRODUCER_PAUSE_MS_MAX = 40;
const CONSUMER_CONNECTIONS = 3;
const CONSUMERS_PER_CONNECTION = 2;
const PREFETCH = 16;

type KillMode = 'blind' | 'after-ack' | 'after-send';
const KILL_MODES: KillMode[] = ['after-ack', 'blind', 'after-send'];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const between = (a: number, b: number): number => a + Math.floor(Math.random() * (b - a));
const codeOf = (err: unknown): string => (typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : (err as Error)?.name ?? String(err));

/** What happened to one message, as the clients saw it. */
interface Facts {
  id: string;
  triedSeq: number;
  /** send() resolved, with this position. */
  sentSeq?: number;
  sentPosition?: number;
  /** send() rejected: the message may or may not be in the queue. */
  sendError?: string;
  deliveries: Array<{ seq: number; count: number; position: number; by: string }>;
  /** Positions of deliveries an ack was tried for. */
  ackTriedAt: Set<number>;
  /** The first ack() that resolved. */
  ackedSeq?: number;
  ackResolved: number;
  ackErrors: string[];
  /** Short history for failure messages: `seq:event`. */
  timeline: string[];
}

test('queues: every acknowledged send is delivered and acked, and nothing acked comes back, across kill -9 of the server', { timeout: 240_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-queue-crash-'));
  let seq = 0;
  const tick = (): number => ++seq;
  const facts = new Map<string, Facts>();
  const kills: Array<{ k: number; seq: number; upMs: number; mode: KillMode }> = [];
  const restarts: Array<{ seq: number; startMs: number }> = [];
  const serverLogs: string[] = [];
  const unknownDeliveries: string[] = [];
  const sendErrors = new Map<string, number>();
  const ackErrors = new Map<string, number>();
  const otherErrors: string[] = [];
  const count = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);
  let duplicatesReported = 0;
  let nacks = 0;
  let slowAcks = 0;
  let pendingAcks = 0;
  let pendingSends = 0;
  let stopProducers = false;
  let stopConsumers = false;
  let passed = false;
  /** When set, the next ack (or send) to resolve kills the server at once, in the same turn. */
  let killArmed: { on: 'ack' | 'send'; fire: () => void } | undefined;
  const onResolved = (what: 'ack' | 'send'): void => {
    if (killArmed?.on === what) {
      const k = killArmed;
      killArmed = undefined;
      k.fire();
    }
  };

  let server: ServerProcess | undefined;
  const clients: RemoteEventStore[] = [];
  const consumers: Array<{ close(): Promise<void> }> = [];

  const fact = (id: string): Facts | undefined => facts.get(id);
  const describe = (f: Facts): string => {
    const k = kills.map((x) => `kill ${x.k} (${x.mode}) at ${x.seq}`).join(', ');
    return `message ${f.id}: ${f.timeline.join(' ')}  [${k}; restarts at ${restarts.map((r) => r.seq).join(', ')}]`;
  };

  try {
    // ---------------------------------------------------------------------------------------
    // The server: first start on free ports, then always the same ones.
    const start = async (ports?: { tcpPort: number; httpPort: number }): Promise<ServerProcess> => {
      const t0 = Date.now();
      let lastErr: unknown;
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          const s = await startServerProcess(dir, ['--durability', 'always'], ports ?? {});
          restarts.push({ seq: tick(), startMs: Date.now() - t0 });
          return s;
        } catch (err) {
          lastErr = err;
          await sleep(500);
        }
      }
      throw lastErr;
    };
    server = await start();
    const tcpUrl = server.tcpUrl;
    const ports = { tcpPort: Number(new URL(server.tcpUrl).port), httpPort: Number(new URL(server.httpUrl).port) };
    const open = (): Promise<RemoteEventStore> =>
      connect(tcpUrl, { reconnectDelayMs: 50, reconnectDelayMaxMs: 250, timeoutMs: 30_000 }).then((c) => (clients.push(c), c));

    const admin = await open();
    await admin.queues.create(QUEUE, {
      leaseMs: LEASE_MS,
      maxDeliveries: 1_000, // nothing may go to dead letters (there is no dead-letter queue: it would be dropped)
      retryBackoff: { initialMs: 50, maxMs: 500, multiplier: 2, jitter: 0.2 },
    });

    // ---------------------------------------------------------------------------------------
    // Producers: send batches of 1-4 messages with fresh ids.
    const producer = async (store: RemoteEventStore, label: string): Promise<void> => {
      let n = 0;
      while (!stopProducers) {
        await sleep(Math.random() * PRODUCER_PAUSE_MS_MAX);
        if (stopProducers) break;
        const batch = Array.from({ length: between(1, 5) }, () => ({ id: randomUUID(), body: { by: label, n: ++n } }));
        const s0 = tick();
        for (const m of batch) {
          facts.set(m.id, { id: m.id, triedSeq: s0, deliveries: [], ackTriedAt: new Set(), ackResolved: 0, ackErrors: [], timeline: [`${s0}:try`] });
        }
        pendingSends++;
        try {
          const r = await store.queues.send(QUEUE, batch);
          const s = tick();
          onResolved('send');
          duplicatesReported += r.duplicates;
          for (let i = 0; i < batch.length; i++) {
            const f = facts.get(batch[i]!.id)!;
            f.sentSeq = s;
            f.sentPosition = r.positions[i];
            f.timeline.push(`${s}:sent@${r.positions[i]}`);
          }
        } catch (err) {
          const s = tick();
          const code = codeOf(err);
          count(sendErrors, code);
          for (const m of batch) {
            const f = facts.get(m.id)!;
            f.sendError = code;
            f.timeline.push(`${s}:send-failed(${code})`);
          }
        } finally {
          pendingSends--;
        }
      }
    };

    // ---------------------------------------------------------------------------------------
    // Consumers: record each delivery, then (mostly) ack it at once; a few are nacked, a few
    // are acked only after their lease ran out (that ack must fail; the message comes back).
    const ack = (d: Delivery, f: Facts): void => {
      f.ackTriedAt.add(d.position);
      pendingAcks++;
      d.ack().then(
        () => {
          onResolved('ack');
          const s = tick();
          f.ackResolved++;
          if (f.ackedSeq === undefined) f.ackedSeq = s;
          f.timeline.push(`${s}:acked`);
        },
        (err: unknown) => {
          const s = tick();
          const code = codeOf(err);
          count(ackErrors, code);
          f.ackErrors.push(code);
          f.timeline.push(`${s}:ack-failed(${code})`);
        },
      ).finally(() => pendingAcks--);
    };
    const handle = (d: Delivery, by: string): void => {
      const s = tick();
      const f = fact(d.id);
      if (f === undefined) {
        unknownDeliveries.push(`${d.id} at position ${d.position} to ${by}`);
        return;
      }
      f.deliveries.push({ seq: s, count: d.deliveryCount, position: d.position, by });
      f.timeline.push(`${s}:delivered#${d.deliveryCount}@${d.position}->${by}`);
      const r = Math.random();
      if (stopConsumers || r < 0.9) ack(d, f);
      else if (r < 0.95) {
        // A short think before the ack.
        pendingAcks++;
        void sleep(Math.random() * 300).then(() => ack(d, f)).finally(() => pendingAcks--);
      } else if (r < 0.98) {
        nacks++;
        pendingAcks++;
        d.nack({ delayMs: between(0, 200) }).then(
          () => void f.timeline.push(`${tick()}:nacked`),
          (err: unknown) => void f.timeline.push(`${tick()}:nack-failed(${codeOf(err)})`),
        ).finally(() => pendingAcks--);
      } else {
        // Too slow: the lease runs out first.
        slowAcks++;
        pendingAcks++;
        void sleep(LEASE_MS + 500).then(() => ack(d, f)).finally(() => pendingAcks--);
      }
    };
    const pushConsumer = async (store: RemoteEventStore, label: string): Promise<void> => {
      const c = store.queues.consume(QUEUE, { prefetch: PREFETCH });
      consumers.push(c);
      try {
        for await (const d of c) handle(d, label);
      } catch (err) {
        if (!stopConsumers) otherErrors.push(`consumer ${label} ended: ${codeOf(err)} ${(err as Error).message}`);
      }
    };
    const pullConsumer = async (store: RemoteEventStore, label: string): Promise<void> => {
      while (!stopConsumers) {
        let got: Delivery[];
        try {
          got = await store.queues.receive(QUEUE, { max: 8, waitMs: 300 });
        } catch (err) {
          // A receive that timed out while the server was down: its leases (if any) run out.
          if (!stopConsumers) otherErrors.push(`receive ${label}: ${codeOf(err)}`);
          await sleep(50);
          continue;
        }
        for (const d of got) handle(d, label);
      }
    };

    const loops: Array<Promise<void>> = [];
    const producers: Array<Promise<void>> = [];
    for (let c = 0; c < PRODUCER_CONNECTIONS; c++) {
      const store = await open();
      for (let l = 0; l < PRODUCER_LOOPS; l++) producers.push(producer(store, `p${c}.${l}`));
    }
    for (let c = 0; c < CONSUMER_CONNECTIONS; c++) {
      const store = await open();
      for (let l = 0; l < CONSUMERS_PER_CONNECTION; l++) loops.push(pushConsumer(store, `c${c}.${l}`));
    }
    const pullStore = await open();
    loops.push(pullConsumer(pullStore, 'pull'));

    // ---------------------------------------------------------------------------------------
    // The kills.
    const t0 = Date.now();
    const windows: Array<{ sent: number; acked: number }> = [];
    const snapshotCounts = (): { sent: number; acked: number } => {
      let sent = 0;
      let acked = 0;
      for (const f of facts.values()) {
        if (f.sentSeq !== undefined) sent++;
        if (f.ackedSeq !== undefined) acked++;
      }
      return { sent, acked };
    };
    let before = snapshotCounts();
    // Each kill comes at a random time; some wait from there for the next ack or send to
    // resolve and kill in that same turn: an answer that went out before its record was written
    // would then be caught much more often than by a kill at a blind moment.
    const modes: KillMode[] = Array.from({ length: KILLS }, (_, i) => KILL_MODES[i % KILL_MODES.length]!);
    for (let i = modes.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [modes[i], modes[j]] = [modes[j]!, modes[i]!];
    }
    for (let k = 1; k <= KILLS; k++) {
      const upMs = between(RUN_MS_MIN, RUN_MS_MAX);
      await sleep(upMs);
      const after = snapshotCounts();
      windows.push({ sent: after.sent - before.sent, acked: after.acked - before.acked });
      before = after;
      const victim = server;
      serverLogs.push(`--- server before kill ${k}: stdout:\n${victim.stdout()}\nstderr:\n${victim.stderr()}`);
      let mode = modes[k - 1]!;
      const fire = (): void => {
        kills.push({ k, seq: tick(), upMs, mode });
        victim.child.kill('SIGKILL');
      };
      if (mode === 'blind') fire();
      else {
        const fired = new Promise<void>((resolve) => (killArmed = { on: mode === 'after-ack' ? 'ack' : 'send', fire: () => (fire(), resolve()) }));
        // Should nothing resolve for a while, kill anyway.
        const late = sleep(3_000).then(() => 'late' as const);
        if ((await Promise.race([fired, late])) === 'late' && killArmed !== undefined) {
          killArmed = undefined;
          mode = 'blind';
          fire();
        }
      }
      await victim.stop('SIGKILL');
      await sleep(Math.random() * DOWN_MS_MAX);
      server = await start(ports);
    }
    await sleep(TAIL_MS);
    const after = snapshotCounts();
    windows.push({ sent: after.sent - before.sent, acked: after.acked - before.acked });
    const chaosMs = Date.now() - t0;

    // ---------------------------------------------------------------------------------------
    // The end: producers stop, consumers drain the queue.
    stopProducers = true;
    await Promise.all(producers);
    const drainStart = Date.now();
    let stats: QueueStats;
    let quietSince = 0;
    for (;;) {
      stats = await admin.queues.stats(QUEUE);
      const idle = stats.depth === 0 && pendingAcks === 0 && pendingSends === 0;
      if (idle && quietSince === 0) quietSince = Date.now();
      if (!idle) quietSince = 0;
      // Empty, nothing in flight, and still so a little later.
      if (idle && Date.now() - quietSince >= 500) break;
      if (Date.now() - drainStart > DRAIN_TIMEOUT_MS) {
        assert.fail(`the queue did not drain within ${DRAIN_TIMEOUT_MS} ms: ${JSON.stringify(stats)}, ${pendingAcks} acks and ${pendingSends} sends in flight`);
      }
      await sleep(100);
    }
    const drainMs = Date.now() - drainStart;
    stopConsumers = true;
    for (const c of consumers) await c.close();

    // The queue's own durable settlements, to decide acks whose answer was lost.
    const ackedInLog = new Set<number>();
    for await (const e of admin.readStream(`$qops-${QUEUE}`)) {
      for (const op of decodeOps(e.rawData)) if (op.op === OP.SETTLE && op.a === OUTCOME.acked) ackedInLog.add(op.position);
    }

    // ---------------------------------------------------------------------------------------
    // The checks.
    assert.deepEqual(unknownDeliveries, [], 'deliveries of messages no producer sent');
    assert.deepEqual(otherErrors.filter((e) => e.startsWith('consumer')), [], 'a consumer ended with an error');

    let sent = 0;
    let sendUnknown = 0;
    let sendUnknownDelivered = 0;
    let acked = 0;
    let ackedByLog = 0;
    let deliveries = 0;
    let redelivered = 0;
    let multiDelivered = 0;
    // Messages a kill took from a consumer: delivered before a kill, and again after it.
    let acrossKills = 0;
    const lost: Facts[] = [];
    const neverDelivered: Facts[] = [];
    const backAfterAck: Array<{ f: Facts; seq: number }> = [];
    const twoCopies: Facts[] = [];
    for (const f of facts.values()) {
      deliveries += f.deliveries.length;
      if (f.deliveries.length > 1) {
        redelivered += f.deliveries.length - 1;
        multiDelivered++;
        const first = f.deliveries[0]!.seq;
        const last = f.deliveries[f.deliveries.length - 1]!.seq;
        if (kills.some((k) => first < k.seq && k.seq < last)) acrossKills++;
      }
      // One message, one place in the log: a re-sent id is recognised, not enqueued again.
      const places = new Set(f.deliveries.map((d) => d.position));
      if (f.sentPosition !== undefined) places.add(f.sentPosition);
      if (places.size > 1) twoCopies.push(f);
      if (f.sentSeq === undefined) {
        sendUnknown++;
        if (f.deliveries.length > 0) sendUnknownDelivered++;
      } else sent++;
      // (2) No delivery after an ack that resolved.
      if (f.ackedSeq !== undefined) {
        const late = f.deliveries.find((d) => d.seq > f.ackedSeq!);
        if (late !== undefined) backAfterAck.push({ f, seq: late.seq });
      }
      if (f.ackedSeq !== undefined) acked++;
      // (1) Every acknowledged send delivered, and acked (or its lost-answer ack is durable).
      if (f.sentSeq !== undefined) {
        if (f.deliveries.length === 0) neverDelivered.push(f);
        else if (f.ackedSeq === undefined) {
          if ([...f.ackTriedAt].some((p) => ackedInLog.has(p))) ackedByLog++;
          else lost.push(f);
        }
      } else if (f.deliveries.length > 0 && f.ackedSeq === undefined && ![...f.ackTriedAt].some((p) => ackedInLog.has(p))) {
        // A send of unknown outcome that did arrive is held to the same rule once delivered.
        lost.push(f);
      }
    }
    const summary =
      `${KILLS} kills (${kills.map((x) => x.mode).join(', ')}) over ${chaosMs} ms (restarts took ${restarts.map((r) => r.startMs).join('/')} ms), ` +
      `${sent} acknowledged sends (${sendUnknown} sends of unknown outcome, ${sendUnknownDelivered} of them delivered; ${duplicatesReported} reported duplicates), ` +
      `${deliveries} deliveries, ${redelivered} redeliveries (${multiDelivered} messages delivered more than once, ${acrossKills} of them before and after a kill), ` +
      `${acked} acked (ack resolved), ${ackedByLog} acked by a durable ack whose answer was lost, ${nacks} nacks, ${slowAcks} acks after the lease ran out, ` +
      `drained in ${drainMs} ms; send errors ${JSON.stringify(Object.fromEntries(sendErrors))}, ack errors ${JSON.stringify(Object.fromEntries(ackErrors))}, ` +
      `windows ${windows.map((w) => `${w.sent}/${w.acked}`).join(' ')}`;
    t.diagnostic(summary);

    const show = (list: Facts[]): string => list.slice(0, 5).map(describe).join('\n');
    assert.equal(
      neverDelivered.length,
      0,
      `${neverDelivered.length} acknowledged sends were never delivered (lost), e.g.:\n${show(neverDelivered)}\n${summary}`,
    );
    assert.equal(
      lost.length,
      0,
      `${lost.length} delivered messages were never acked and are gone from the queue (lost), e.g.:\n${show(lost)}\n${summary}`,
    );
    assert.equal(
      backAfterAck.length,
      0,
      `${backAfterAck.length} messages were delivered again after an ack of theirs had resolved, e.g.:\n${show(backAfterAck.map((x) => x.f))}\n${summary}`,
    );
    assert.equal(twoCopies.length, 0, `${twoCopies.length} messages were enqueued more than once (at different positions), e.g.:\n${show(twoCopies)}\n${summary}`);
    assert.equal(stats.depth, 0);
    assert.equal(stats.inFlight, 0);

    // Guard against a test that passes because nothing happened.
    assert.ok(sent >= 300, `only ${sent} sends were acknowledged`);
    assert.ok(windows.filter((w) => w.sent > 0 && w.acked > 0).length >= Math.ceil((KILLS + 1) / 2), `too few server runs made progress: ${JSON.stringify(windows)}`);
    assert.ok(acrossKills > 0, 'no message was delivered both before and after a kill: the kills hit nothing');
    passed = true;
  } finally {
    stopProducers = true;
    stopConsumers = true;
    for (const c of consumers) await c.close().catch(() => undefined);
    for (const c of clients) await c.close().catch(() => undefined);
    if (server !== undefined) {
      serverLogs.push(`--- last server: stdout:\n${server.stdout()}\nstderr:\n${server.stderr()}`);
      await server.stop('SIGTERM');
    }
    if (passed) fs.rmSync(dir, { recursive: true, force: true });
    else {
      t.diagnostic(`data directory kept for inspection: ${dir}`);
      const logs = serverLogs.join('\n');
      t.diagnostic(`server output:\n${logs.length > 20_000 ? logs.slice(-20_000) : logs}`);
    }
  }
});
