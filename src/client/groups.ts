/**
 * Consumer groups through a server: the same `Groups` interface as the embedded store's, over
 * the binary protocol (GROUP requests; JOIN with EVENTS and ASSIGNED pushed).
 *
 * A member lives on its connection. When the connection drops, the server ends the member (its
 * partitions go to others, from their checkpoints); the client joins again on the new
 * connection, as a new member, and drops the events it had buffered but not handed out (they
 * come again). Auto-commits ride on the CREDIT frames that return flow-control credit.
 */
import { GroupConflictError, InvalidArgumentError, ProtocolError, errorFromWire } from '../core/errors.js';
import type { EventfulError } from '../core/errors.js';
import type { RecordedEvent } from '../core/events.js';
import type { GroupInfo, GroupMember, GroupSettingsInput, GroupStats, Groups, JoinOptions } from '../core/groups.js';
import { DEFAULT_CLIENT_LIMITS } from '../core/limits.js';
import { FRAME } from '../protocol/codec.js';
import type { Frame } from '../protocol/codec.js';
import { strip } from '../protocol/messages.js';
import { decodeEventRecords } from '../protocol/records.js';
import type { Connection, StreamHandler } from './connection.js';

const WINDOW_EVENTS = DEFAULT_CLIENT_LIMITS.readWindowEvents;
/** Longest an auto-commit waits before it is sent on its own. */
const COMMIT_DELAY_MS = 100;

export class RemoteGroups implements Groups {
  #conn: Connection;

  constructor(conn: Connection) {
    this.#conn = conn;
  }

  async #op(op: string, body: Record<string, unknown>): Promise<unknown> {
    const f = await this.#conn.request(FRAME.GROUP, { op, ...strip(body) });
    return f.body.result;
  }

  async create(name: string, settings?: GroupSettingsInput): Promise<GroupInfo> {
    return (await this.#op('create', { group: name, settings })) as GroupInfo;
  }
  async get(name: string): Promise<GroupInfo | undefined> {
    return ((await this.#op('get', { group: name })) as GroupInfo | null) ?? undefined;
  }
  async list(): Promise<GroupInfo[]> {
    return (await this.#op('list', {})) as GroupInfo[];
  }
  async stats(name: string): Promise<GroupStats> {
    return (await this.#op('stats', { group: name })) as GroupStats;
  }
  async reset(name: string, to: number | 'start' | 'end'): Promise<GroupStats> {
    return (await this.#op('reset', { group: name, to })) as GroupStats;
  }
  async delete(name: string): Promise<void> {
    await this.#op('delete', { group: name });
  }

  join(name: string, options: JoinOptions = {}): GroupMember {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('join options must be an object');
    return new RemoteMember(this.#conn, name, options, (member, position) => this.#op('commit', { group: name, member, position }).then(() => undefined));
  }
}

interface Page {
  events: RecordedEvent[];
  through: number;
}

class RemoteMember implements GroupMember {
  readonly group: string;
  #id = '';
  #partitions: number[] = [];
  #conn: Connection;
  #commitOp: (member: string, position: number) => Promise<void>;
  #autoCommit: boolean;
  #pages: Page[] = [];
  #waiter: (() => void) | undefined;
  #failure: EventfulError | undefined;
  #done = false;
  #requestId: number;
  #joined: Promise<void>;
  #joinedOk!: () => void;
  #joinedFail!: (err: unknown) => void;
  /** Events handed out and not yet given back as credit. */
  #consumed = 0;
  /** Every event handed out up to here is handled (auto-commit), and sent up to `#sent`. */
  #handled = 0;
  #sent = 0;
  /** How far the log was read for the events handed out so far. */
  #frontier = 0;
  #commitTimer: NodeJS.Timeout | undefined;

  constructor(conn: Connection, group: string, options: JoinOptions, commitOp: (member: string, position: number) => Promise<void>) {
    this.group = group;
    this.#conn = conn;
    this.#commitOp = commitOp;
    this.#autoCommit = options.autoCommit !== false;
    this.#joined = new Promise((resolve, reject) => {
      this.#joinedOk = resolve;
      this.#joinedFail = reject;
    });
    this.#joined.catch(() => {});
    const body = (): Record<string, unknown> => strip({ group, filter: options.filter, mode: options.mode, partitions: options.partitions, from: options.from, memberName: options.memberName, credit: WINDOW_EVENTS });
    const self = this;
    const handler: StreamHandler = {
      onFrame(f: Frame) {
        try {
          self.#onFrame(f);
        } catch (err) {
          self.#failure = err as EventfulError;
        }
        self.#wake();
      },
      onDisconnect(err: EventfulError, willResume: boolean) {
        // The server has ended this member: what is buffered goes to whoever gets its partitions.
        self.#pages = [];
        self.#partitions = [];
        self.#consumed = 0;
        self.#handled = self.#sent = self.#frontier = 0;
        if (!willResume) {
          self.#failure = err;
          self.#joinedFail(err);
        }
        self.#wake();
      },
      resume(newId: number) {
        if (self.#done) return undefined;
        self.#requestId = newId;
        return { type: FRAME.JOIN, body: body() };
      },
    };
    this.#requestId = conn.openStream(FRAME.JOIN, body(), handler);
  }

  #onFrame(f: Frame): void {
    switch (f.type) {
      case FRAME.JOINED:
        this.#id = String(f.body.member);
        this.#partitions = (f.body.partitions as number[]) ?? [];
        this.#joinedOk();
        return;
      case FRAME.ASSIGNED:
        this.#partitions = (f.body.partitions as number[]) ?? [];
        return;
      case FRAME.EVENTS: {
        const through = f.body.through;
        if (typeof through !== 'number') throw new ProtocolError('group EVENTS need a through position');
        const count = f.body.count;
        if (count === 0 || f.body.records === undefined) {
          this.#pages.push({ events: [], through });
          return;
        }
        if (!(f.body.records instanceof Uint8Array) || typeof count !== 'number') throw new ProtocolError('EVENTS records must be bytes with a count');
        this.#pages.push({ events: decodeEventRecords(f.body.records, count), through });
        return;
      }
      case FRAME.ERROR: {
        const err = errorFromWire(f.body.code, f.body.message, f.body.details);
        this.#failure = err;
        this.#joinedFail(err);
        this.#finish();
        return;
      }
      case FRAME.SUBSCRIPTION_ENDED:
        if (f.body.reason !== 'server shutting down') this.#finish();
        return;
      default:
        return;
    }
  }

  get id(): string {
    return this.#id;
  }

  get partitions(): readonly number[] {
    return this.#partitions;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#commitTimer);
    this.#conn.closeStream(this.#requestId);
  }

  /** Marks what was handed out as handled (auto-commit) and sends it with credit, soon. */
  #handledAll(): void {
    if (this.#frontier > this.#handled) this.#handled = this.#frontier;
    if (this.#consumed >= WINDOW_EVENTS / 4) this.#sendCredit();
    else if (this.#handled > this.#sent && this.#commitTimer === undefined) {
      this.#commitTimer = setTimeout(() => {
        this.#commitTimer = undefined;
        this.#sendCredit();
      }, COMMIT_DELAY_MS);
      this.#commitTimer.unref?.();
    }
  }

  #sendCredit(): void {
    if (this.#done) return;
    const body: Record<string, unknown> = { credit: this.#consumed };
    if (this.#autoCommit && this.#handled > this.#sent) {
      body.handled = this.#handled;
      this.#sent = this.#handled;
    }
    if (this.#consumed === 0 && body.handled === undefined) return;
    this.#consumed = 0;
    this.#conn.notify(FRAME.CREDIT, this.#requestId, body);
  }

  /** Next page from the server (empty ones move the frontier). */
  async #nextPage(): Promise<Page | undefined> {
    for (;;) {
      const p = this.#pages.shift();
      if (p !== undefined) return p;
      if (this.#failure !== undefined) {
        const f = this.#failure;
        this.#failure = undefined;
        this.#finish();
        throw f;
      }
      if (this.#done) return undefined;
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<RecordedEvent> {
    let page: Page | undefined;
    let i = 0;
    let given = false;
    return {
      next: async (): Promise<IteratorResult<RecordedEvent>> => {
        if (given) this.#handledAll();
        given = false;
        for (;;) {
          if (page !== undefined && i < page.events.length) {
            const e = page.events[i++]!;
            this.#consumed++;
            this.#frontier = i === page.events.length ? page.through : e.position;
            given = true;
            return { done: false, value: e };
          }
          if (page !== undefined) {
            if (page.through > this.#frontier) this.#frontier = page.through;
            this.#handledAll();
            page = undefined;
          }
          page = await this.#nextPage();
          if (page === undefined) return { done: true, value: undefined };
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
          if (given) this.#handledAll();
          given = false;
          for (;;) {
            const page = await this.#nextPage();
            if (page === undefined) return { done: true, value: undefined };
            this.#consumed += page.events.length;
            if (page.through > this.#frontier) this.#frontier = page.through;
            if (page.events.length === 0) {
              this.#handledAll();
              continue;
            }
            given = true;
            return { done: false, value: page.events };
          }
        },
        return: async (): Promise<IteratorResult<RecordedEvent[]>> => {
          await this.close();
          return { done: true, value: undefined };
        },
      }),
    };
  }

  async commit(upTo?: RecordedEvent | number): Promise<void> {
    await this.#joined;
    if (this.#done) throw new GroupConflictError(`this member has left consumer group '${this.group}'`, { reason: 'member', group: this.group });
    const position = upTo === undefined ? this.#frontier : typeof upTo === 'number' ? upTo : upTo.position;
    if (!Number.isSafeInteger(position) || position < 0) throw new InvalidArgumentError('commit needs an event or a position');
    await this.#commitOp(this.#id, position);
  }

  async close(): Promise<void> {
    if (!this.#done) {
      this.#sendCredit();
      this.#conn.notify(FRAME.UNSUBSCRIBE, this.#requestId, {});
      this.#finish();
    }
    this.#pages = [];
    this.#wake();
  }
}
