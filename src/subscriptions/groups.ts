/**
 * Consumer groups: named, durable readers of the log whose members share its events
 * (src/core/groups.ts has the public vocabulary).
 *
 * Where things live:
 *   $groups        group definitions: GroupCreated, GroupDeleted
 *   $group-<name>  its checkpoints: each GroupCheckpoint event holds one position per partition
 *
 * Each member reads the log itself (tailFrames), from the lowest checkpoint of its partitions,
 * and takes the events of the partitions it owns. What a member has been given and handled is
 * tracked with two positions:
 *   - `frontier`: every matching event of its partitions at or below it has been given out;
 *   - `handled`:  every event given out at or below it is handled (its commits, clamped to the
 *                 frontier).
 * A partition's checkpoint moves to `handled` (all its events up to there were given and
 * handled), which also carries it past stretches of the log with nothing for the group.
 *
 * Rebalancing: partitions are spread over members in join order, keeping each where it is when
 * its owner still has room (few moves). A partition that must move is first *revoked*: its owner
 * gets none of its events any more, and once it has handled those it was given (or after
 * `groupRebalanceTimeoutMs`) the partition is released and assigned to its new owner, who reads
 * it from its checkpoint. So a stream is never with two members at once, and its order holds.
 * A member that gains a partition restarts its read from the lowest checkpoint it now needs.
 *
 * Durability: checkpoints are written every `groupCheckpointIntervalMs` when they moved, when a
 * member leaves, and at once on an explicit commit (which resolves when it is durable).
 */
import { randomUUID } from 'node:crypto';
import { GroupConflictError, GroupNotFoundError, InvalidArgumentError, LimitExceededError, StoreClosedError } from '../core/errors.js';
import type { EventInput, ReadAllFilter, ReadAllOptions, ReadStreamOptions, RecordedEvent } from '../core/events.js';
import type { GroupInfo, GroupMember, GroupMemberInfo, GroupSettings, GroupSettingsInput, GroupStats, Groups, JoinOptions } from '../core/groups.js';
import type { StoreLimits } from '../core/limits.js';
import { frame } from '../log/record.js';
import { NAME_MAX, checkName } from '../core/names.js';
import { compileFilter, matchesStream } from '../streams/validate.js';
import type { CompiledFilter } from '../streams/validate.js';

export const GROUP_DEFINITIONS_STREAM = '$groups';
export const groupStream = (name: string): string => `$group-${name}`;

const DEFAULT_PARTITIONS = 16;
const DOLLAR = 0x24;

/** What consumer groups need of the store (FileEventStore provides it). */
export interface GroupHost {
  readonly limits: StoreLimits;
  readonly head: number;
  appendSystem(stream: string, events: EventInput[]): Promise<{ positions: number[]; revision: number }>;
  readStream(stream: string, options?: ReadStreamOptions): { toArray(): Promise<RecordedEvent[]> };
  readAll(options?: ReadAllOptions): { pages(): AsyncIterable<RecordedEvent[]> };
  tailFrames(from: number, sub: { closed: boolean }): AsyncGenerator<{ buf: Buffer; offsets: number[] }>;
  wakeFollowers(): void;
  decodeFrame(buf: Buffer, off: number): RecordedEvent;
}

export interface GroupOptions {
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}

/** The partition of a stream: FNV-1a (32 bits) of its name's UTF-16 code units, modulo the count. */
export function partitionOf(stream: string, partitions: number): number {
  if (partitions === 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < stream.length; i++) {
    h ^= stream.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

interface Group {
  info: GroupInfo;
  filter: CompiledFilter | undefined;
  checkpoints: number[];
  /** Who holds each partition now (receiving it or giving it up). */
  owner: Array<MemberImpl | undefined>;
  members: MemberImpl[];
  /** Checkpoints moved since the last write. */
  dirty: boolean;
  flush: Flusher;
  deleted: boolean;
}

/** One write at a time; callers during a write share the next one. */
class Flusher {
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  readonly #write: () => Promise<void>;

  constructor(write: () => Promise<void>) {
    this.#write = write;
  }

  run(): Promise<void> {
    if (this.#running === undefined) {
      this.#running = this.#write().finally(() => (this.#running = undefined));
      return this.#running;
    }
    this.#next ??= this.#running.then(
      () => {
        this.#next = undefined;
        return this.run();
      },
      () => {
        this.#next = undefined;
        return this.run();
      },
    );
    return this.#next;
  }
}

export class GroupManager implements Groups {
  readonly #host: GroupHost;
  readonly #limits: StoreLimits;
  readonly #groups = new Map<string, Group>();
  readonly #warn: (message: string, details: Record<string, unknown>) => void;
  #timer: NodeJS.Timeout;
  #closed = false;
  /** Definition changes run one at a time, so two creates of one name cannot race. */
  #defs: Promise<unknown> = Promise.resolve();

  private constructor(host: GroupHost, options: GroupOptions) {
    this.#host = host;
    this.#limits = host.limits;
    this.#warn = options.onWarning ?? (() => {});
    this.#timer = setInterval(() => this.#flushDirty(), this.#limits.groupCheckpointIntervalMs);
    this.#timer.unref();
  }

  static async open(host: GroupHost, options: GroupOptions = {}): Promise<GroupManager> {
    const m = new GroupManager(host, options);
    for (const e of await host.readStream(GROUP_DEFINITIONS_STREAM).toArray()) m.#applyDefinition(e);
    for (const g of m.#groups.values()) {
      const [last] = await host.readStream(groupStream(g.info.name), { direction: 'backwards', limit: 1 }).toArray();
      const d = last?.data as { createdPosition?: number; checkpoints?: number[] } | undefined;
      // Checkpoints of an earlier group of the same name (deleted since) do not apply.
      if (d?.createdPosition === g.info.createdPosition && Array.isArray(d.checkpoints) && d.checkpoints.length === g.checkpoints.length) {
        g.checkpoints = d.checkpoints.slice();
      }
    }
    return m;
  }

  #applyDefinition(e: RecordedEvent): void {
    const d = e.data as { name: string; settings: GroupSettings; startPosition: number };
    if (e.type === 'GroupCreated') {
      const info: GroupInfo = { name: d.name, settings: d.settings, startPosition: d.startPosition, createdPosition: e.position, createdAt: e.timestamp };
      this.#groups.set(d.name, this.#newGroup(info));
    } else if (e.type === 'GroupDeleted') {
      const g = this.#groups.get(d.name);
      if (g !== undefined) {
        g.deleted = true;
        this.#groups.delete(d.name);
      }
    }
  }

  #newGroup(info: GroupInfo): Group {
    const n = info.settings.partitions;
    const g: Group = {
      info,
      filter: compileFilter(info.settings.filter),
      checkpoints: new Array<number>(n).fill(info.startPosition - 1),
      owner: new Array<MemberImpl | undefined>(n).fill(undefined),
      members: [],
      dirty: false,
      flush: new Flusher(() => this.#writeCheckpoints(g)),
      deleted: false,
    };
    return g;
  }

  // ---------------------------------------------------------------------------------------------
  // Definitions

  create(name: string, settings?: GroupSettingsInput): Promise<GroupInfo> {
    this.#checkOpen();
    checkGroupName(name);
    const resolved = resolveGroupSettings(settings, this.#limits);
    return this.#serial(async () => (await this.#ensure(name, resolved, settings?.from)).info);
  }

  /** The group, created when missing; a conflict when `resolved` differs from what it has. */
  async #ensure(name: string, resolved: GroupSettings | undefined, from: GroupSettingsInput['from']): Promise<Group> {
    const existing = this.#groups.get(name);
    if (existing !== undefined) {
      if (resolved !== undefined && !sameSettings(existing.info.settings, resolved)) {
        throw new GroupConflictError(`consumer group '${name}' exists with other settings`, { reason: 'settings', group: name, settings: existing.info.settings });
      }
      return existing;
    }
    if (this.#groups.size >= this.#limits.groupsMax) throw new LimitExceededError('groupsMax', this.#limits.groupsMax, this.#groups.size + 1);
    const s = resolved ?? resolveGroupSettings(undefined, this.#limits);
    const startPosition = from === undefined || from === 'start' ? 1 : from === 'end' ? this.#host.head + 1 : from;
    await this.#host.appendSystem(GROUP_DEFINITIONS_STREAM, [{ type: 'GroupCreated', data: { name, settings: s, startPosition } }]);
    const r = await this.#host.readStream(GROUP_DEFINITIONS_STREAM, { direction: 'backwards', limit: 1 }).toArray();
    this.#applyDefinition(r[0]!);
    return this.#groups.get(name)!;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#defs.then(fn, fn);
    this.#defs = run.catch(() => {});
    return run;
  }

  async get(name: string): Promise<GroupInfo | undefined> {
    this.#checkOpen();
    checkGroupName(name);
    return this.#groups.get(name)?.info;
  }

  async list(): Promise<GroupInfo[]> {
    this.#checkOpen();
    return [...this.#groups.values()].map((g) => g.info).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  delete(name: string): Promise<void> {
    this.#checkOpen();
    checkGroupName(name);
    return this.#serial(async () => {
      const g = this.#group(name);
      await this.#host.appendSystem(GROUP_DEFINITIONS_STREAM, [{ type: 'GroupDeleted', data: { name } }]);
      g.deleted = true;
      this.#groups.delete(name);
      for (const m of g.members.slice()) m.end();
      g.members = [];
    });
  }

  async reset(name: string, to: number | 'start' | 'end'): Promise<GroupStats> {
    this.#checkOpen();
    checkGroupName(name);
    const g = this.#group(name);
    if (g.members.length > 0) throw new GroupConflictError(`consumer group '${name}' has ${g.members.length} member(s) joined: reset it while none is`, { reason: 'members', group: name });
    const first = to === 'start' ? 1 : to === 'end' ? this.#host.head + 1 : positiveInteger(to, 'reset position');
    g.checkpoints.fill(first - 1);
    g.dirty = true;
    await g.flush.run();
    return this.stats(name);
  }

  #group(name: string): Group {
    const g = this.#groups.get(name);
    if (g === undefined) throw new GroupNotFoundError(name);
    return g;
  }

  // ---------------------------------------------------------------------------------------------
  // Members

  join(name: string, options: JoinOptions = {}): GroupMember {
    this.#checkOpen();
    checkGroupName(name);
    const known = ['filter', 'mode', 'partitions', 'from', 'memberName', 'autoCommit'];
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('join options must be an object');
    for (const k of Object.keys(options)) if (!known.includes(k)) throw new InvalidArgumentError(`unknown join option '${k}'; known: ${known.join(', ')}`);
    const hasSettings = options.filter !== undefined || options.mode !== undefined || options.partitions !== undefined;
    const resolved = hasSettings ? resolveGroupSettings(options, this.#limits) : undefined;
    if (options.from !== undefined && options.from !== 'start' && options.from !== 'end') positiveInteger(options.from, 'from');
    if (options.memberName !== undefined && (typeof options.memberName !== 'string' || options.memberName.length > NAME_MAX)) {
      throw new InvalidArgumentError(`memberName must be a string of at most ${NAME_MAX} characters`);
    }
    const member = new MemberImpl(this, name, options.memberName, options.autoCommit !== false);
    member.ready = this.#serial(async () => {
      const g = await this.#ensure(name, resolved, options.from);
      if (member.closed) return;
      if (g.members.length >= this.#limits.groupMembersMax) throw new LimitExceededError('groupMembersMax', this.#limits.groupMembersMax, g.members.length + 1);
      member.attach(g);
      g.members.push(member);
      this.rebalance(g);
    });
    member.ready.catch(() => {});
    return member;
  }

  /** Gives every partition that has no owner to a member, and revokes those that must move. */
  rebalance(g: Group): void {
    if (g.deleted) return;
    const P = g.info.settings.partitions;
    const n = g.members.length;
    if (n === 0) return;
    const room = new Map<MemberImpl, number>();
    g.members.forEach((m, i) => room.set(m, Math.floor(P / n) + (i < P % n ? 1 : 0)));
    const desired = new Array<MemberImpl | undefined>(P).fill(undefined);
    // Keep partitions where they are while their owner has room (in single mode the first
    // member keeps the only partition for as long as it stays).
    for (let p = 0; p < P; p++) {
      const o = g.owner[p];
      if (o !== undefined && !o.isRevoking(p) && (room.get(o) ?? 0) > 0) {
        desired[p] = o;
        room.set(o, room.get(o)! - 1);
      }
    }
    let i = 0;
    for (let p = 0; p < P; p++) {
      if (desired[p] !== undefined) continue;
      while (i < n && room.get(g.members[i]!)! === 0) i++;
      if (i === n) break;
      const m = g.members[i]!;
      desired[p] = m;
      room.set(m, room.get(m)! - 1);
    }
    for (let p = 0; p < P; p++) {
      const o = g.owner[p];
      const d = desired[p];
      if (o === d) continue;
      if (o === undefined) {
        g.owner[p] = d;
        d!.gain(p);
      } else if (!o.isRevoking(p)) {
        o.revoke(p);
      }
    }
  }

  /** A member gave up a partition: it goes to its next owner. */
  released(g: Group, p: number, m: MemberImpl): void {
    if (g.owner[p] === m) g.owner[p] = undefined;
    this.rebalance(g);
  }

  left(g: Group, m: MemberImpl): void {
    const i = g.members.indexOf(m);
    if (i >= 0) g.members.splice(i, 1);
    for (let p = 0; p < g.owner.length; p++) if (g.owner[p] === m) g.owner[p] = undefined;
    this.rebalance(g);
  }

  get host(): GroupHost {
    return this.#host;
  }

  get limits(): StoreLimits {
    return this.#limits;
  }

  warn(message: string, details: Record<string, unknown>): void {
    this.#warn(message, details);
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoints

  /** Moves each partition's checkpoint to what its owner has handled. */
  #gather(g: Group): void {
    for (const m of g.members) m.moveCheckpoints();
  }

  async #writeCheckpoints(g: Group): Promise<void> {
    this.#gather(g);
    if (!g.dirty || g.deleted) return;
    g.dirty = false;
    try {
      await this.#host.appendSystem(groupStream(g.info.name), [{ type: 'GroupCheckpoint', data: { createdPosition: g.info.createdPosition, checkpoints: g.checkpoints.slice() } }]);
    } catch (err) {
      g.dirty = true;
      throw err;
    }
  }

  flushGroup(g: Group): Promise<void> {
    return g.flush.run();
  }

  #flushDirty(): void {
    for (const g of this.#groups.values()) {
      this.#gather(g);
      if (g.dirty) g.flush.run().catch((err) => this.#warn('writing a consumer group checkpoint failed', { group: g.info.name, error: String(err) }));
    }
  }

  async stats(name: string): Promise<GroupStats> {
    this.#checkOpen();
    checkGroupName(name);
    const g = this.#group(name);
    this.#gather(g);
    const cps = g.checkpoints.slice();
    const position = Math.min(...cps);
    const head = this.#host.head;
    let lagEvents = 0;
    let lagMs = 0;
    let scanned = 0;
    let exact = true;
    const P = g.info.settings.partitions;
    if (position < head) {
      const filter = g.info.settings.filter;
      outer: for await (const page of this.#host.readAll({ from: position + 1, filter: Object.keys(filter).length > 0 ? filter : undefined }).pages()) {
        for (const e of page) {
          if (e.position > head) break outer;
          if (++scanned > this.#limits.groupLagScanEventsMax) {
            exact = false;
            break outer;
          }
          const s = e.stream;
          if (s.charCodeAt(0) === DOLLAR) continue;
          if (e.position <= cps[partitionOf(s, P)]!) continue;
          if (lagEvents === 0) lagMs = Math.max(0, Date.now() - e.timestamp);
          lagEvents++;
        }
      }
    }
    const members: GroupMemberInfo[] = g.members.map((m) => m.info());
    return { ...g.info, checkpoints: cps, position, head, lagPositions: Math.max(0, head - position), lagEvents, lagExact: exact, lagMs, members };
  }

  // ---------------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new StoreClosedError();
  }

  /** Ends every member, writes the checkpoints that moved. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const g of this.#groups.values()) {
      for (const m of g.members.slice()) m.end();
      this.#gather(g);
      if (g.dirty) await g.flush.run().catch((err) => this.#warn('writing a consumer group checkpoint failed', { group: g.info.name, error: String(err) }));
    }
  }
}

// -----------------------------------------------------------------------------------------------

/** A page read for a member: its events (with their partitions), and how far the log was read. */
interface MemberPage {
  events: RecordedEvent[];
  parts: number[];
  through: number;
}

export class MemberImpl implements GroupMember {
  readonly group: string;
  readonly id = randomUUID();
  readonly name: string;
  readonly joinedAt = Date.now();
  readonly autoCommit: boolean;
  ready: Promise<void> = Promise.resolve();
  closed = false;
  readonly #mgr: GroupManager;
  #g: Group | undefined;
  /** Partitions it receives (revoking ones included until released). */
  readonly #owned = new Set<number>();
  /** Partitions being given up: the frontier when revoked, and the timer that forces it. */
  readonly #revoking = new Map<number, { at: number; timer: NodeJS.Timeout }>();
  /** Partitions assigned, taken when the read restarts. */
  readonly #gaining = new Set<number>();
  /** Per partition: the position of the last event given out. */
  #lastGiven: number[] = [];
  #frontier = 0;
  #handled = 0;
  /** The current read of the log (closing it ends the read). */
  #sub: { closed: boolean } | undefined;
  #wake: (() => void) | undefined;
  #pages: AsyncGenerator<MemberPage> | undefined;
  #onAssign: ((partitions: number[]) => void) | undefined;

  constructor(mgr: GroupManager, group: string, name: string | undefined, autoCommit: boolean) {
    this.#mgr = mgr;
    this.group = group;
    this.name = name ?? `member-${this.id.slice(0, 8)}`;
    this.autoCommit = autoCommit;
  }

  attach(g: Group): void {
    this.#g = g;
    this.#lastGiven = g.checkpoints.slice();
  }

  /** Partitions assigned to it (those it just gained included: it reads them from their checkpoints). */
  get partitions(): readonly number[] {
    const out = [...this.#gaining];
    for (const p of this.#owned) if (!this.#revoking.has(p)) out.push(p);
    return out.sort((a, b) => a - b);
  }

  /** Called with the partitions it receives whenever they change (the server tells the client). */
  onAssign(fn: (partitions: number[]) => void): void {
    this.#onAssign = fn;
  }

  isRevoking(p: number): boolean {
    return this.#revoking.has(p);
  }

  info(): GroupMemberInfo {
    return {
      id: this.id,
      name: this.name,
      joinedAt: this.joinedAt,
      partitions: this.partitions as number[],
      revoking: [...this.#revoking.keys()].sort((a, b) => a - b),
      committedPosition: this.#handled,
    };
  }

  gain(p: number): void {
    this.#gaining.add(p);
    this.#interrupt();
    this.#onAssign?.(this.partitions as number[]);
  }

  revoke(p: number): void {
    if (this.#gaining.delete(p)) {
      this.#mgr.released(this.#g!, p, this);
      return;
    }
    if (!this.#owned.has(p)) return;
    this.moveCheckpoints();
    const timer = setTimeout(() => this.#release(p, false), this.#mgr.limits.groupRebalanceTimeoutMs);
    timer.unref();
    this.#revoking.set(p, { at: this.#frontier, timer });
    this.#onAssign?.(this.partitions as number[]);
    this.#checkReleases();
  }

  #checkReleases(): void {
    const g = this.#g!;
    for (const p of this.#revoking.keys()) {
      const last = this.#lastGiven[p]!;
      if (last <= g.checkpoints[p]! || this.#handled >= last) this.#release(p, true);
    }
  }

  /** Gives a partition back; `done` when every event of it given out was handled. */
  #release(p: number, done: boolean): void {
    const r = this.#revoking.get(p);
    if (r === undefined) return;
    clearTimeout(r.timer);
    this.#revoking.delete(p);
    this.#owned.delete(p);
    const g = this.#g!;
    if (done && r.at > g.checkpoints[p]!) {
      g.checkpoints[p] = r.at;
      g.dirty = true;
    } else if (!done) {
      this.#mgr.warn('a consumer group member did not finish a revoked partition in time: its events go to the next owner again', { group: this.group, member: this.name, partition: p });
    }
    this.#mgr.released(g, p, this);
  }

  /** Moves the checkpoints of the partitions it receives to what it has handled. */
  moveCheckpoints(): void {
    const g = this.#g;
    if (g === undefined) return;
    const h = this.#handled;
    for (const p of this.#owned) {
      if (this.#revoking.has(p)) continue;
      if (h > g.checkpoints[p]!) {
        g.checkpoints[p] = h;
        g.dirty = true;
      }
    }
  }

  #interrupt(): void {
    if (this.#sub !== undefined) {
      this.#sub.closed = true;
      this.#mgr.host.wakeFollowers();
    }
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** The log, read for this member, in pages. */
  async *#read(): AsyncGenerator<MemberPage> {
    await this.ready;
    if (this.closed || this.#g === undefined) return;
    const g = this.#g;
    const host = this.#mgr.host;
    const P = g.info.settings.partitions;
    const filter = g.filter;
    while (!this.closed) {
      if (this.#gaining.size > 0) {
        this.moveCheckpoints();
        for (const p of this.#gaining) {
          this.#owned.add(p);
          this.#lastGiven[p] = g.checkpoints[p]!;
        }
        this.#gaining.clear();
      }
      if (this.#owned.size === 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      let start = Infinity;
      for (const p of this.#owned) if (!this.#revoking.has(p)) start = Math.min(start, this.#lastGiven[p]! + 1);
      if (start === Infinity) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      // Every event of its partitions below `start` was given out already.
      this.#frontier = start - 1;
      if (this.#handled > this.#frontier) this.#handled = this.#frontier;
      const sub = { closed: false };
      this.#sub = sub;
      try {
        for await (const { buf, offsets } of host.tailFrames(start, sub)) {
          const events: RecordedEvent[] = [];
          const parts: number[] = [];
          for (const off of offsets) {
            const stream = frame.stream(buf, off);
            if (stream.charCodeAt(0) === DOLLAR) continue;
            if (filter !== undefined) {
              if (filter.types !== undefined && !filter.types.has(frame.type(buf, off))) continue;
              if ((filter.prefixes !== undefined || filter.categories !== undefined) && !matchesStream(filter, stream)) continue;
            }
            const p = partitionOf(stream, P);
            if (!this.#owned.has(p) || this.#revoking.has(p)) continue;
            if (frame.position(buf, off) <= this.#lastGiven[p]!) continue;
            events.push(host.decodeFrame(buf, off));
            parts.push(p);
          }
          yield { events, parts, through: frame.position(buf, offsets[offsets.length - 1]!) };
          if (sub.closed || this.#gaining.size > 0 || this.closed) break;
        }
      } finally {
        sub.closed = true;
        if (this.#sub === sub) this.#sub = undefined;
      }
    }
  }

  /**
   * Gives out up to `max` events of a page from index `from` on, skipping those of partitions
   * revoked since the page was read, and moves the frontier past what it looked at.
   */
  giveSome(page: MemberPage, from: number, max: number): { events: RecordedEvent[]; next: number } {
    const events: RecordedEvent[] = [];
    let i = from;
    for (; i < page.events.length && events.length < max; i++) {
      const p = page.parts[i]!;
      if (!this.#owned.has(p) || this.#revoking.has(p)) continue;
      const e = page.events[i]!;
      this.#lastGiven[p] = e.position;
      events.push(e);
    }
    const to = i >= page.events.length ? page.through : page.events[i - 1]!.position;
    if (to > this.#frontier) this.#frontier = to;
    return { events, next: i };
  }

  /** Gives out one event of a page (the event iterator): false when it may not. */
  giveOne(page: MemberPage, i: number): boolean {
    const p = page.parts[i]!;
    if (!this.#owned.has(p) || this.#revoking.has(p)) return false;
    const pos = page.events[i]!.position;
    this.#lastGiven[p] = pos;
    this.#frontier = pos;
    return true;
  }

  /** The page is given out to its end. */
  passed(page: MemberPage): void {
    if (page.through > this.#frontier) this.#frontier = page.through;
  }

  /** Next page of the log for this member (empty pages too: they move the frontier). */
  nextPage(): Promise<IteratorResult<MemberPage>> {
    this.#pages ??= this.#read();
    return this.#pages.next();
  }

  /** Everything given out up to `position` is handled. Cheap: checkpoints move when gathered. */
  markHandled(position: number): void {
    const h = Math.min(position, this.#frontier);
    if (h <= this.#handled) return;
    this.#handled = h;
    if (this.#revoking.size > 0) this.#checkReleases();
  }

  /** Everything given out so far is handled. */
  markAllHandled(): void {
    this.markHandled(this.#frontier);
  }

  async commit(upTo?: RecordedEvent | number): Promise<void> {
    await this.ready;
    if (this.closed) throw new GroupConflictError(`member '${this.name}' has left consumer group '${this.group}'`, { reason: 'member', group: this.group });
    const position = upTo === undefined ? this.#frontier : typeof upTo === 'number' ? upTo : upTo.position;
    if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0) throw new InvalidArgumentError('commit needs an event or a position');
    this.markHandled(position);
    await this.#mgr.flushGroup(this.#g!);
  }

  [Symbol.asyncIterator](): AsyncIterator<RecordedEvent> {
    let page: MemberPage | undefined;
    let i = 0;
    let given = false;
    return {
      next: async (): Promise<IteratorResult<RecordedEvent>> => {
        // Asking for the next event means the one before was handled.
        if (given && this.autoCommit) this.markAllHandled();
        given = false;
        for (;;) {
          if (this.closed) return { done: true, value: undefined };
          if (page !== undefined) {
            while (i < page.events.length) {
              const k = i++;
              if (this.giveOne(page, k)) {
                given = true;
                return { done: false, value: page.events[k]! };
              }
            }
            this.passed(page);
            if (this.autoCommit) this.markAllHandled();
            page = undefined;
          }
          const r = await this.nextPage();
          if (r.done) return { done: true, value: undefined };
          page = r.value;
          i = 0;
        }
      },
      return: async (): Promise<IteratorResult<RecordedEvent>> => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  pages(): AsyncIterable<RecordedEvent[]> {
    let given = false;
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<RecordedEvent[]>> => {
          if (given && this.autoCommit) this.markAllHandled();
          given = false;
          for (;;) {
            if (this.closed) return { done: true, value: undefined };
            const r = await this.nextPage();
            if (r.done) return { done: true, value: undefined };
            const out = this.giveSome(r.value, 0, Infinity).events;
            if (out.length === 0) {
              if (this.autoCommit) this.markAllHandled();
              continue;
            }
            given = true;
            return { done: false, value: out };
          }
        },
        return: async (): Promise<IteratorResult<RecordedEvent[]>> => {
          await this.close();
          return { done: true, value: undefined };
        },
      }),
    };
  }

  /** Ends the member without a final commit (the group was deleted, the store closes). */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.#interrupt();
    this.#leave();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.ready;
    } catch {
      this.closed = true;
      return;
    }
    this.closed = true;
    this.#interrupt();
    const g = this.#leave();
    if (g !== undefined && !g.deleted) await this.#mgr.flushGroup(g).catch((err) => this.#mgr.warn('writing a consumer group checkpoint failed', { group: this.group, error: String(err) }));
  }

  #leave(): Group | undefined {
    const g = this.#g;
    if (g === undefined) return undefined;
    this.moveCheckpoints();
    for (const r of this.#revoking.values()) clearTimeout(r.timer);
    this.#revoking.clear();
    this.#owned.clear();
    this.#gaining.clear();
    this.#mgr.left(g, this);
    this.#g = undefined;
    return g;
  }
}

// -----------------------------------------------------------------------------------------------

export function checkGroupName(name: unknown): string {
  return checkName('group', name);
}

export function resolveGroupSettings(input: GroupSettingsInput | undefined, limits: StoreLimits): GroupSettings {
  if (input !== undefined && (typeof input !== 'object' || input === null || Array.isArray(input))) throw new InvalidArgumentError('group settings must be an object');
  const i = input ?? {};
  const mode = i.mode ?? 'single';
  if (mode !== 'single' && mode !== 'partitioned') throw new InvalidArgumentError(`group mode must be 'single' or 'partitioned', got ${JSON.stringify(mode)}`);
  let partitions = 1;
  if (mode === 'partitioned') {
    partitions = i.partitions ?? DEFAULT_PARTITIONS;
    if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > limits.groupPartitionsMax) {
      throw new InvalidArgumentError(`partitions must be an integer from 1 to ${limits.groupPartitionsMax}, got ${JSON.stringify(partitions)}`);
    }
  } else if (i.partitions !== undefined && i.partitions !== 1) {
    throw new InvalidArgumentError("a group in 'single' mode has 1 partition");
  }
  if (i.from !== undefined && i.from !== 'start' && i.from !== 'end') positiveInteger(i.from, 'from');
  const filter: ReadAllFilter = {};
  if (i.filter !== undefined) {
    compileFilter(i.filter); // checks it
    const f = i.filter;
    if (f.streamPrefix !== undefined) filter.streamPrefix = f.streamPrefix;
    if (f.category !== undefined) filter.category = f.category;
    if (f.types !== undefined) filter.types = f.types;
  }
  return { filter, mode, partitions };
}

function sameSettings(a: GroupSettings, b: GroupSettings): boolean {
  return a.mode === b.mode && a.partitions === b.partitions && canonical(a.filter) === canonical(b.filter);
}

function canonical(f: ReadAllFilter): string {
  const list = (v: string | string[] | undefined): string[] | undefined => (v === undefined ? undefined : (typeof v === 'string' ? [v] : v.slice()).sort());
  return JSON.stringify([list(f.streamPrefix), list(f.category), list(f.types)]);
}

function positiveInteger(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`${what} must be a positive integer, 'start' or 'end'; got ${JSON.stringify(v)}`);
  return v;
}
