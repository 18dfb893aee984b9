/**
 * One queue's delivery state, in memory: which of its messages are ready, delayed, leased or on
 * their way to dead letters, and in which order they go out. No I/O here: every change that
 * must survive a restart is handed to `emit` as an op (src/queues/ops.ts), which the manager
 * writes to the log; replaying those ops over the messages rebuilds this state.
 *
 * Message states:
 *   DELAYED   not deliverable before `visibleAt` (a delay, a schedule, a back-off); on a timer
 *   READY     deliverable; in the ready heap when it may go out now (FIFO: the head of a
 *             group that is neither leased nor parked)
 *   LEASED    held by a consumer until acked, nacked, released or its lease runs out
 *   SETTLING  on its way to the dead-letter queue
 *
 * Unordered queues hand out the lowest position first, so a redelivered message goes out before
 * newer ones (as a requeued message does in RabbitMQ). FIFO queues keep a list per group key
 * and only the head of a group may be leased.
 */
import { Heap } from './heap.js';
import type { Clock } from './clock.js';
import type { QueueSettings } from '../core/queues.js';
import { backoffMs } from './settings.js';
import type { Op } from './ops.js';
import { OP, OUTCOME } from './ops.js';

/** Where a queue hands its ops (written to the log by the manager). */
export interface OpSink {
  op(op: number, position: number, a: number, b: number): void;
  group(op: number, group: string): void;
}

export const DELAYED = 0;
export const READY = 1;
export const LEASED = 2;
export const SETTLING = 3;

/** Who holds leases: a consumer, a connection's pull receives, or nobody in particular. */
export interface Holder {
  /** Settling a lease needs the same owner (a connection, a consumer); undefined: anyone may. */
  readonly owner: object | undefined;
  readonly leases: Set<Msg>;
  /** A lease of this holder ended (acked, nacked, expired): it may take more. */
  freed(): void;
}

export class Msg {
  readonly position: number;
  /** The id's 16 bytes as latin1: a compact map key. */
  readonly idKey: string;
  readonly group: string | undefined;
  /** Where the frame is: segment base, file offset, frame bytes. */
  readonly base: number;
  readonly offset: number;
  readonly bytes: number;
  readonly sentAt: number;
  visibleAt: number;
  deliveries = 0;
  firstDeliveredAt = 0;
  /** Failed deliveries (the last 32): when each began and how it ended (OUTCOME), for the dead-letter history. */
  attempts: Array<[number, number]> | undefined;
  state = DELAYED;
  lease: { receipt: string; holder: Holder | undefined; expiresAt: number; ms: number } | undefined;
  /** Bumped whenever the message is rescheduled: heap entries of older generations are stale. */
  seq = 0;
  /** `seq` when the message last entered the ready heap. */
  readySeq = -1;
  /** The frame's bytes, while the manager's cache budget allows. */
  cached: Buffer | undefined;

  constructor(position: number, idKey: string, group: string | undefined, base: number, offset: number, bytes: number, sentAt: number, visibleAt: number) {
    this.position = position;
    this.idKey = idKey;
    this.group = group;
    this.base = base;
    this.offset = offset;
    this.bytes = bytes;
    this.sentAt = sentAt;
    this.visibleAt = visibleAt;
  }
}

interface Group {
  msgs: Msg[];
  head: number; // index of the head in msgs
  parked: boolean;
}

interface Timed {
  at: number;
  msg: Msg;
  seq: number;
}

export interface QueueCounters {
  sent: number;
  acked: number;
  nacked: number;
  redelivered: number;
  expired: number;
  dropped: number;
  rejected: number;
  deadLettered: number;
}

export class QueueState {
  readonly name: string;
  settings: QueueSettings;
  readonly msgs = new Map<number, Msg>();
  /** Messages by id, built on first use (cancel is rare; a map entry per message is not). */
  #byId: Map<string, Msg> | undefined;
  readonly groups = new Map<string, Group>();
  readonly counters: QueueCounters = { sent: 0, acked: 0, nacked: 0, redelivered: 0, expired: 0, dropped: 0, rejected: 0, deadLettered: 0 };
  /** Counts by state. */
  readonly count = [0, 0, 0, 0];
  /** Ready messages in position order as they arrive (the common case: O(1)). */
  #fresh: Msg[] = [];
  #freshHead = 0;
  /** Ready messages that came back (retries, redeliveries), lowest position first. */
  #ready = new Heap<Msg>((a, b) => a.position < b.position);
  /**
   * Leased messages by lease length, each set in lease order, which (the clock never going back)
   * is expiry order: the first of each set is the next to run out. Cheaper than a heap entry
   * per delivery, and exact.
   */
  #leased = new Map<number, Set<Msg>>();
  #timed = new Heap<Timed>((a, b) => a.at < b.at);
  #timer: unknown;
  #timerAt = Infinity;
  #clock: Clock;
  #random: () => number;
  #emit: OpSink;
  /** Called when messages may be dispatched (became ready). */
  #onReady: () => void;
  /** Called with a message that must go to dead letters (state SETTLING). */
  #onDead: (m: Msg, reason: string, park: boolean) => void;
  /** False while the log is replayed: no timers, no ops, no dispatch. */
  live = false;

  constructor(
    name: string,
    settings: QueueSettings,
    hooks: { clock: Clock; random: () => number; emit: OpSink; onReady: () => void; onDead: (m: Msg, reason: string, park: boolean) => void },
  ) {
    this.name = name;
    this.settings = settings;
    this.#clock = hooks.clock;
    this.#random = hooks.random;
    this.#emit = hooks.emit;
    this.#onReady = hooks.onReady;
    this.#onDead = hooks.onDead;
  }

  /** The message not yet settled with this id (the id's 16 bytes as latin1). */
  byId(idKey: string): Msg | undefined {
    if (this.#byId === undefined) {
      this.#byId = new Map();
      for (const m of this.msgs.values()) this.#byId.set(m.idKey, m);
    }
    return this.#byId.get(idKey);
  }

  get fifo(): boolean {
    return this.settings.ordering === 'fifo';
  }

  /** Ready and delayed messages (what maxLength bounds). */
  get waiting(): number {
    return this.count[READY]! + this.count[DELAYED]!;
  }

  // -------------------------------------------------------------------------------------------
  // Messages in

  /** A message read from the log joins the queue. */
  enqueue(m: Msg): void {
    this.msgs.set(m.position, m);
    this.#byId?.set(m.idKey, m);
    m.state = DELAYED;
    this.count[DELAYED]!++;
    if (m.group !== undefined && this.fifo) {
      let g = this.groups.get(m.group);
      if (g === undefined) this.groups.set(m.group, (g = { msgs: [], head: 0, parked: false }));
      g.msgs.push(m);
    }
    if (this.live) this.#schedule(m);
  }

  /** After replay: every message gets its place (ready or on a timer), leases start fresh. */
  goLive(): void {
    this.live = true;
    for (const m of this.msgs.values()) if (m.state === DELAYED) this.#schedule(m);
    this.#armTimer();
  }

  #schedule(m: Msg): void {
    if (m.visibleAt > this.#clock.now()) {
      this.#setState(m, DELAYED);
      m.seq++;
      this.#timed.push({ at: m.visibleAt, msg: m, seq: m.seq });
      if (m.visibleAt < this.#timerAt) this.#armTimer();
    } else {
      this.#setState(m, READY);
      this.#offer(m);
    }
  }

  #setState(m: Msg, s: number): void {
    this.count[m.state]!--;
    m.state = s;
    this.count[s]!++;
  }

  /** Puts a READY message in the ready heap if it may go out now. */
  #offer(m: Msg): void {
    if (m.state !== READY) return;
    if (m.group !== undefined && this.fifo) {
      const g = this.groups.get(m.group)!;
      if (g.parked || g.msgs[g.head] !== m) return;
    }
    m.seq++;
    m.readySeq = m.seq;
    const last = this.#fresh.length > this.#freshHead ? this.#fresh[this.#fresh.length - 1]! : undefined;
    if (m.deliveries === 0 && (last === undefined || m.position > last.position)) this.#fresh.push(m);
    else this.#ready.push(m);
    if (this.live) this.#onReady();
  }

  // -------------------------------------------------------------------------------------------
  // Leasing

  /** The next message that may go out now, or undefined. */
  takeReady(): Msg | undefined {
    for (;;) {
      // Drop stale entries at the fronts, then take the lower position of the two.
      let f = this.#fresh[this.#freshHead];
      while (f !== undefined && (f.readySeq !== f.seq || f.state !== READY)) f = this.#fresh[++this.#freshHead];
      let h = this.#ready.peek();
      while (h !== undefined && (h.readySeq !== h.seq || h.state !== READY)) {
        this.#ready.pop();
        h = this.#ready.peek();
      }
      if (f === undefined && h === undefined) {
        this.#fresh = [];
        this.#freshHead = 0;
        return undefined;
      }
      let m: Msg;
      if (h === undefined || (f !== undefined && f.position < h.position)) {
        m = f!;
        this.#freshHead++;
        if (this.#freshHead > 1024 && this.#freshHead * 2 > this.#fresh.length) {
          this.#fresh = this.#fresh.slice(this.#freshHead);
          this.#freshHead = 0;
        }
      } else m = this.#ready.pop()!;
      m.readySeq = -1;
      return m;
    }
  }

  get hasReady(): boolean {
    return this.#fresh.length > this.#freshHead || this.#ready.size > 0;
  }

  lease(m: Msg, holder: Holder | undefined, receipt: string, leaseMs: number): void {
    const now = this.#clock.now();
    this.#setState(m, LEASED);
    m.deliveries++;
    if (m.deliveries > 1) this.counters.redelivered++;
    if (m.firstDeliveredAt === 0) m.firstDeliveredAt = now;
    m.lease = { receipt, holder, expiresAt: now + leaseMs, ms: leaseMs };
    holder?.leases.add(m);
    m.seq++;
    this.#leasedOf(leaseMs).add(m);
    if (m.lease.expiresAt < this.#timerAt) this.#armTimer();
    this.#emit.op(OP.DELIVER, m.position, m.deliveries, now);
  }

  /** Takes back a lease nobody received (its caller went away): not a delivery. */
  unlease(m: Msg): void {
    this.#endLease(m, OUTCOME.released);
    m.attempts?.pop();
    if (m.deliveries > 1) this.counters.redelivered--;
    m.deliveries--;
    if (m.deliveries === 0) m.firstDeliveredAt = 0;
    this.#emit.op(OP.DELIVER, m.position, m.deliveries, m.firstDeliveredAt);
    m.visibleAt = 0;
    this.#schedule(m);
  }

  #leasedOf(ms: number): Set<Msg> {
    let set = this.#leased.get(ms);
    if (set === undefined) this.#leased.set(ms, (set = new Set()));
    return set;
  }

  extend(m: Msg, leaseMs: number): void {
    const l = m.lease!;
    this.#leased.get(l.ms)?.delete(m);
    l.expiresAt = this.#clock.now() + leaseMs;
    l.ms = leaseMs;
    this.#leasedOf(leaseMs).add(m);
    if (m.lease!.expiresAt < this.#timerAt) this.#armTimer();
  }

  #endLease(m: Msg, outcome: number): void {
    const l = m.lease;
    const h = l?.holder;
    m.lease = undefined;
    if (l !== undefined) {
      const set = this.#leased.get(l.ms);
      if (set !== undefined) {
        set.delete(m);
        if (set.size === 0 && this.#leased.size > 1) this.#leased.delete(l.ms);
      }
    }
    if (l !== undefined && outcome !== OUTCOME.acked && outcome !== OUTCOME.deadLettered) {
      (m.attempts ??= []).push([l.expiresAt - l.ms, outcome]);
      if (m.attempts.length > 32) m.attempts.shift();
    }
    if (h !== undefined) {
      h.leases.delete(m);
      h.freed();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Settling

  /** Removes a message for good (acked, cancelled, dropped, dead-lettered, purged). */
  settle(m: Msg, outcome: number): void {
    if (m.state < 0) return;
    if (m.state === LEASED) this.#endLease(m, outcome);
    this.count[m.state]!--;
    m.state = -1;
    m.seq++;
    this.msgs.delete(m.position);
    if (this.#byId?.get(m.idKey) === m) this.#byId.delete(m.idKey);
    m.cached = undefined;
    if (outcome === OUTCOME.acked && this.live) this.counters.acked++;
    if (m.group !== undefined && this.fifo) {
      const g = this.groups.get(m.group)!;
      const wasHead = g.msgs[g.head] === m;
      if (wasHead) g.head++;
      else {
        const i = g.msgs.indexOf(m, g.head);
        if (i >= 0) g.msgs.splice(i, 1);
      }
      if (g.head >= g.msgs.length) {
        if (!g.parked) this.groups.delete(m.group);
        else {
          g.msgs = [];
          g.head = 0;
        }
      } else {
        if (g.head > 64 && g.head * 2 > g.msgs.length) {
          g.msgs = g.msgs.slice(g.head);
          g.head = 0;
        }
        if (wasHead && this.live) this.#offer(g.msgs[g.head]!);
      }
    }
    if (this.live) this.#emit.op(OP.SETTLE, m.position, outcome, 0);
  }

  /**
   * A delivery failed (nacked, lease ran out, consumer gone): back to the queue after its
   * back-off (or `delayMs`), or to dead letters when its deliveries are used up.
   */
  fail(m: Msg, outcome: number, delayMs?: number, deadLetter = false, reason?: string): void {
    this.#endLease(m, outcome);
    if (outcome === OUTCOME.expired) this.counters.expired++;
    if (outcome === OUTCOME.nacked) this.counters.nacked++;
    if (deadLetter || m.deliveries >= this.settings.maxDeliveries) {
      this.toDeadLetters(m, reason ?? (deadLetter ? 'nacked to dead letters' : `delivered ${m.deliveries} times (maxDeliveries ${this.settings.maxDeliveries})`));
      return;
    }
    const now = this.#clock.now();
    m.visibleAt = now + (delayMs ?? backoffMs(this.settings.retryBackoff, m.deliveries, this.#random));
    this.#emit.op(OP.RETRY, m.position, m.visibleAt, outcome);
    this.#schedule(m);
  }

  /**
   * Hands the message to the manager to be copied to dead letters, then settled. `park`: it
   * failed (FIFO: its group parks under the 'park' policy); not for overflow drops.
   */
  toDeadLetters(m: Msg, reason: string, park = true): void {
    if (m.state === LEASED) this.#endLease(m, OUTCOME.nacked);
    this.#setState(m, SETTLING);
    m.seq++;
    this.#onDead(m, reason, park);
  }

  /** FIFO park policy: the group waits until unparked (or its head is redriven). */
  park(group: string): void {
    const g = this.groups.get(group) ?? { msgs: [], head: 0, parked: false };
    this.groups.set(group, g);
    if (g.parked) return;
    g.parked = true;
    if (this.live) this.#emit.group(OP.PARK, group);
  }

  unpark(group: string): boolean {
    const g = this.groups.get(group);
    if (g === undefined || !g.parked) return false;
    g.parked = false;
    if (g.head >= g.msgs.length) this.groups.delete(group);
    else if (this.live) this.#offer(g.msgs[g.head]!);
    if (this.live) this.#emit.group(OP.UNPARK, group);
    return true;
  }

  /** A redriven message goes back to the front of its parked group, which flows again. */
  restoreHead(m: Msg): void {
    const g = this.groups.get(m.group!);
    if (g === undefined) return;
    const i = g.msgs.indexOf(m, g.head);
    if (i > g.head) {
      g.msgs.splice(i, 1);
      g.msgs.splice(g.head, 0, m);
    }
    this.unpark(m.group!);
  }

  isParked(group: string): boolean {
    return this.groups.get(group)?.parked === true;
  }

  get parkedGroups(): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.parked) n++;
    return n;
  }

  // -------------------------------------------------------------------------------------------
  // Replay: ops read back from the log

  applyOp(op: Op): void {
    if (op.op === OP.PARK) {
      const g = this.groups.get(op.group!) ?? { msgs: [], head: 0, parked: false };
      g.parked = true;
      this.groups.set(op.group!, g);
      return;
    }
    if (op.op === OP.UNPARK) {
      const g = this.groups.get(op.group!);
      if (g !== undefined) g.parked = false;
      return;
    }
    const m = this.msgs.get(op.position);
    if (m === undefined) return; // settled before (a snapshot already holds the outcome)
    switch (op.op) {
      case OP.DELIVER:
        if (op.a > m.deliveries) m.deliveries = op.a;
        if (m.firstDeliveredAt === 0) m.firstDeliveredAt = op.b;
        (m.attempts ??= []).push([op.b, OUTCOME.restarted]);
        break;
      case OP.RETRY:
        m.visibleAt = op.a;
        if (m.attempts !== undefined && m.attempts.length > 0) m.attempts[m.attempts.length - 1]![1] = op.b;
        break;
      case OP.SETTLE:
        this.settle(m, op.a);
        break;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Time

  #armTimer(): void {
    if (!this.live || this.#stopped) return;
    let at = this.#timed.peek()?.at ?? Infinity;
    for (const set of this.#leased.values()) {
      for (const m of set) {
        at = Math.min(at, m.lease!.expiresAt);
        break;
      }
    }
    if (at === this.#timerAt && this.#timer !== undefined) return;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    if (at === Infinity) return;
    this.#timerAt = at;
    this.#timer = this.#clock.setTimer(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.onTime();
    }, at - this.#clock.now());
  }

  /** Runs what fell due: delayed messages become ready, leases that ran out end. */
  onTime(): void {
    const now = this.#clock.now();
    for (;;) {
      const t = this.#timed.peek();
      if (t === undefined || t.at > now) break;
      this.#timed.pop();
      const m = t.msg;
      if (t.seq !== m.seq) continue;
      if (m.state === DELAYED) {
        this.#setState(m, READY);
        this.#offer(m);
      }
    }
    const expired: Msg[] = [];
    for (const set of this.#leased.values()) {
      for (const m of set) {
        if (m.lease!.expiresAt > now) break;
        expired.push(m);
      }
    }
    for (const m of expired) if (m.state === LEASED) this.fail(m, OUTCOME.expired);
    this.#armTimer();
  }

  /** Oldest message not yet acked, by send time. */
  oldestSentAt(): number | undefined {
    let oldest: number | undefined;
    // Messages enter in log order, so the first one the map yields is the oldest.
    for (const m of this.msgs.values()) {
      oldest = m.sentAt;
      break;
    }
    return oldest;
  }

  /** Stops timers for good (the queue is deleted or the store closes). */
  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#stopped = true;
  }

  #stopped = false;

  /** Drops every message (purge, delete). Leases end; their receipts stop working. */
  clear(): number {
    const n = this.msgs.size;
    for (const m of [...this.msgs.values()]) {
      if (m.state === LEASED) this.#endLease(m, OUTCOME.purged);
      m.seq++;
      m.state = -1;
      m.cached = undefined;
    }
    this.msgs.clear();
    this.#byId = undefined;
    this.groups.clear();
    this.#ready.clear();
    this.#fresh = [];
    this.#freshHead = 0;
    this.#leased.clear();
    this.#timed.clear();
    this.count.fill(0);
    return n;
  }
}
