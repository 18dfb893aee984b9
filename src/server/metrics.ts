/**
 * Prometheus metrics for `eventful serve`, served at GET /metrics in the text exposition format
 * (prom-client), and the same numbers as JSON at GET /stats for the dashboard.
 *
 * Where each number comes from, so that measuring costs the hot paths next to nothing:
 * - Appends and reads asked for by clients: the HTTP routes and binary-protocol sessions are given
 *   an instrumented view of the store (`instrumentStore`), one per transport, that times each
 *   append (request to durable acknowledgement) and each page of a read. Appends the queue
 *   engine and consumer groups make for themselves are not client appends: they show in the
 *   log's own numbers (bytes written, syncs, head position).
 * - Log writes and fdatasyncs: the log writer publishes them on node:diagnostics_channel
 *   (src/log/writer.ts); this module subscribes and keeps those of its own store's directory.
 * - Connections, HTTP requests and errors: counted by the server as they happen.
 * - Queues, consumer groups, the head position and the log's size: read at scrape time from
 *   `queues.stats`, `groups.stats` and the data directory, so they cost nothing between scrapes.
 *
 * The table of every metric, with its type, labels and meaning, is in docs/operations.md.
 */
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AppendOptions, EventInput, EventReader, EventStore, ReadAllOptions, ReadStreamOptions, RecordedEvent } from '../core/events.js';
import type { Groups } from '../core/groups.js';
import type { Queues } from '../core/queues.js';
import { LOG_SYNC_CHANNEL, LOG_WRITE_CHANNEL } from '../log/writer.js';
import type { LogIoEvent } from '../log/writer.js';

export type TransportName = 'http' | 'tcp' | 'ws';
export const TRANSPORTS: readonly TransportName[] = ['http', 'tcp', 'ws'];

/** Seconds; from 100 µs (a write to the page cache) to 2.5 s (a stalled disk). */
/** Readings of queues and groups younger than this are reused (see `#refresh`). */
const REFRESH_REUSE_MS = 500;

interface Refreshed {
  queues: Array<Awaited<ReturnType<Queues['stats']>>>;
  groups: Array<Awaited<ReturnType<Groups['stats']>>>;
  head: number;
  logBytes: number;
  segments: number;
}

const LATENCY_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface MetricsSources {
  /** The data directory (the log is in `<dir>/log`). */
  dir: string;
  headPosition(): Promise<number>;
  queues: Pick<Queues, 'list' | 'stats'>;
  groups: Pick<Groups, 'list' | 'stats'>;
}

/** What GET /stats answers: server-wide numbers, counters since start (the dashboard takes rates from two of them). */
export interface StatsSnapshot {
  version: string;
  /** When this was taken, ms since the epoch. */
  at: number;
  uptimeMs: number;
  headPosition: number;
  storage: { logBytes: number; segments: number };
  connections: Record<TransportName, number>;
  appends: { count: number; events: number; seconds: number };
  reads: { pages: number; events: number; seconds: number };
  log: { writes: number; bytesWritten: number; syncs: number; syncSeconds: number };
  httpRequests: number;
  errors: { total: number; byCode: Record<string, number> };
  queues: { count: number; depth: number; inFlight: number; delayed: number; deadLettered: number; sendPerSecond: number; ackPerSecond: number };
  groups: { count: number; lagEventsMax: number; lagMsMax: number };
}

export interface ServerMetricsOptions {
  version: string;
  startedAt: number;
  sources: MetricsSources;
  /** Node.js process metrics (CPU, memory, event-loop lag, GC). @default true */
  processMetrics?: boolean;
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #o: ServerMetricsOptions;
  readonly #logDir: string;
  readonly #unsubscribe: Array<() => void> = [];

  readonly #appendSeconds: Histogram<'transport'>;
  readonly #appendedEvents: Counter<'transport'>;
  readonly #readPageSeconds: Histogram<'transport' | 'kind'>;
  readonly #readEvents: Counter<'transport' | 'kind'>;
  readonly #logWriteBytes: Counter;
  readonly #logWriteSeconds: Histogram;
  readonly #fsyncSeconds: Histogram;
  readonly #httpSeconds: Histogram<'method' | 'route' | 'status'>;
  readonly #connections: Gauge<'transport'>;
  readonly #connectionsOpened: Counter<'transport'>;
  readonly #errors: Counter<'transport' | 'code'>;

  readonly #head: Gauge;
  readonly #logBytes: Gauge;
  readonly #segments: Gauge;
  readonly #queueGauges: Record<'depth' | 'ready' | 'inFlight' | 'delayed' | 'parkedGroups' | 'consumers' | 'oldestAge', Gauge<'queue'>>;
  readonly #queueTotals: Record<'sent' | 'acked' | 'nacked' | 'redelivered' | 'expired' | 'dropped' | 'rejected' | 'deadLettered', Counter<'queue'>>;
  readonly #groupGauges: Record<'position' | 'lagPositions' | 'lagEvents' | 'lagSeconds' | 'members', Gauge<'group'>>;

  /** Open connections per transport (a number the server keeps; mirrored in the gauge). */
  readonly #open: Record<TransportName, number> = { http: 0, tcp: 0, ws: 0 };

  constructor(options: ServerMetricsOptions) {
    this.#o = options;
    this.#logDir = path.join(path.resolve(options.sources.dir), 'log');
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> => new Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[] = []): Gauge<L> => new Gauge<L>({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, labelNames: L[] = []): Histogram<L> =>
      new Histogram<L>({ name, help, labelNames, buckets: LATENCY_BUCKETS_SECONDS, registers });

    new Gauge({ name: 'eventful_info', help: 'Always 1; the server version is in the label.', labelNames: ['version'], registers }).set({ version: options.version }, 1);
    this.#appendSeconds = histogram('eventful_append_duration_seconds', 'Client appends, from request to durable acknowledgement.', ['transport']);
    this.#appendedEvents = counter('eventful_appended_events_total', 'Events appended by clients.', ['transport']);
    this.#readPageSeconds = histogram('eventful_read_page_duration_seconds', 'Time the store took to produce one page of a client read (readStream or readAll).', ['transport', 'kind']);
    this.#readEvents = counter('eventful_read_events_total', 'Events read by clients with readStream (kind=stream) or readAll (kind=all).', ['transport', 'kind']);
    this.#logWriteBytes = counter('eventful_log_write_bytes_total', 'Bytes written to the log (every append, the queue engine and groups included).');
    this.#logWriteSeconds = histogram('eventful_log_write_duration_seconds', 'One write of a group-commit batch to a segment file.');
    this.#fsyncSeconds = histogram('eventful_log_fsync_duration_seconds', 'One fdatasync of the active segment.');
    this.#httpSeconds = histogram('eventful_http_request_duration_seconds', 'HTTP requests by route template and status (Server-Sent Events streams are not included).', ['method', 'route', 'status']);
    this.#connections = gauge('eventful_connections', 'Open connections: tcp and ws (binary protocol sessions), http (HTTP sockets, WebSocket upgrades excluded).', ['transport']);
    this.#connectionsOpened = counter('eventful_connections_opened_total', 'Connections accepted.', ['transport']);
    this.#errors = counter('eventful_errors_total', 'Errors answered to clients, by stable error code (docs/errors.md).', ['transport', 'code']);
    for (const t of TRANSPORTS) {
      this.#connections.set({ transport: t }, 0);
      this.#connectionsOpened.inc({ transport: t }, 0);
    }

    this.#head = gauge('eventful_log_head_position', 'Position of the last event in the log; its rate is the events appended per second, all streams included.');
    this.#logBytes = gauge('eventful_log_size_bytes', 'Bytes in the log segment files.');
    this.#segments = gauge('eventful_log_segments', 'Number of log segment files.');
    this.#queueGauges = {
      depth: gauge('eventful_queue_depth', 'Messages not yet settled: ready, in flight and delayed.', ['queue']),
      ready: gauge('eventful_queue_ready', 'Messages that may be delivered now.', ['queue']),
      inFlight: gauge('eventful_queue_in_flight', 'Messages under a lease.', ['queue']),
      delayed: gauge('eventful_queue_delayed', 'Messages not deliverable yet (delay, schedule or back-off).', ['queue']),
      parkedGroups: gauge('eventful_queue_parked_groups', 'FIFO groups parked behind a dead-lettered head.', ['queue']),
      consumers: gauge('eventful_queue_consumers', 'Push consumers attached.', ['queue']),
      oldestAge: gauge('eventful_queue_oldest_unacked_age_seconds', 'Age of the oldest message not yet settled (0 when empty).', ['queue']),
    };
    this.#queueTotals = {
      sent: counter('eventful_queue_sent_total', 'Messages sent to the queue since the server started.', ['queue']),
      acked: counter('eventful_queue_acked_total', 'Acks since the server started.', ['queue']),
      nacked: counter('eventful_queue_nacked_total', 'Nacked deliveries since the server started.', ['queue']),
      redelivered: counter('eventful_queue_redelivered_total', "Deliveries after a message's first since the server started.", ['queue']),
      expired: counter('eventful_queue_expired_total', 'Leases that ran out since the server started.', ['queue']),
      dropped: counter('eventful_queue_dropped_total', 'Messages dropped by overflow or for want of a dead-letter queue since the server started.', ['queue']),
      rejected: counter('eventful_queue_rejected_total', 'Messages refused by reject overflow since the server started.', ['queue']),
      deadLettered: counter('eventful_queue_dead_lettered_total', 'Messages this queue sent to its dead-letter queue since it was created.', ['queue']),
    };
    this.#groupGauges = {
      position: gauge('eventful_group_position', "The group's lowest checkpoint (a log position).", ['group']),
      lagPositions: gauge('eventful_group_lag_positions', 'Log positions between the lowest checkpoint and the head.', ['group']),
      lagEvents: gauge('eventful_group_lag_events', 'Matching events not yet handled (counted up to groupLagScanEventsMax).', ['group']),
      lagSeconds: gauge('eventful_group_lag_seconds', 'Age of the oldest event not yet handled (0 when none waits).', ['group']),
      members: gauge('eventful_group_members', 'Members joined.', ['group']),
    };

    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });

    const onWrite = (m: unknown): void => {
      const e = m as LogIoEvent;
      if (e.logDir !== this.#logDir) return;
      this.#logWriteBytes.inc(e.bytes);
      this.#logWriteSeconds.observe(e.durationMs / 1000);
    };
    const onSync = (m: unknown): void => {
      const e = m as LogIoEvent;
      if (e.logDir === this.#logDir) this.#fsyncSeconds.observe(e.durationMs / 1000);
    };
    diagnostics.subscribe(LOG_WRITE_CHANNEL, onWrite);
    diagnostics.subscribe(LOG_SYNC_CHANNEL, onSync);
    this.#unsubscribe.push(
      () => diagnostics.unsubscribe(LOG_WRITE_CHANNEL, onWrite),
      () => diagnostics.unsubscribe(LOG_SYNC_CHANNEL, onSync),
    );
  }

  /** Stops listening to the log writer. */
  close(): void {
    for (const u of this.#unsubscribe.splice(0)) u();
  }

  // -------------------------------------------------------------------------------------------
  // Counted as it happens

  connectionOpened(transport: TransportName): void {
    this.#open[transport]++;
    this.#connections.set({ transport }, this.#open[transport]);
    this.#connectionsOpened.inc({ transport });
  }

  connectionClosed(transport: TransportName): void {
    this.#open[transport] = Math.max(0, this.#open[transport] - 1);
    this.#connections.set({ transport }, this.#open[transport]);
  }

  error(transport: TransportName, code: string): void {
    this.#errors.inc({ transport, code });
  }

  httpRequest(method: string, route: string, status: number, seconds: number): void {
    this.#httpSeconds.observe({ method, route, status: String(status) }, seconds);
  }

  /**
   * The store as one transport's clients use it: appends and reads are timed and counted, the
   * rest is passed through.
   */
  instrumentStore(store: EventStore, transport: TransportName): EventStore {
    const appendSeconds = this.#appendSeconds.labels({ transport });
    const appended = this.#appendedEvents.labels({ transport });
    const readers = {
      stream: { seconds: this.#readPageSeconds.labels({ transport, kind: 'stream' }), events: this.#readEvents.labels({ transport, kind: 'stream' }) },
      all: { seconds: this.#readPageSeconds.labels({ transport, kind: 'all' }), events: this.#readEvents.labels({ transport, kind: 'all' }) },
    };
    const timed: Pick<EventStore, 'append' | 'readStream' | 'readAll'> = {
      async append(stream: string, events: EventInput[], options?: AppendOptions) {
        const started = performance.now();
        const r = await store.append(stream, events, options);
        appendSeconds.observe((performance.now() - started) / 1000);
        appended.inc(r.positions.length);
        return r;
      },
      readStream: (stream: string, options?: ReadStreamOptions) => timedReader(store.readStream(stream, options), readers.stream),
      readAll: (options?: ReadAllOptions) => timedReader(store.readAll(options), readers.all),
    };
    // Everything else goes to the store itself, bound to it (its methods use private fields), so
    // the view keeps up with the store's interface as it grows.
    return new Proxy(store, {
      get(target, prop) {
        if (prop === 'append' || prop === 'readStream' || prop === 'readAll') return timed[prop];
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  /**
   * The store's frame reads (the binary protocol's forward readAll sends the log's frames without
   * decoding them) timed and counted like readAll.
   */
  instrumentFrames<T extends object>(source: T, transport: TransportName): T {
    const seconds = this.#readPageSeconds.labels({ transport, kind: 'all' });
    const events = this.#readEvents.labels({ transport, kind: 'all' });
    return new Proxy(source, {
      get(target, prop) {
        const v: unknown = Reflect.get(target, prop, target);
        if (typeof v !== 'function') return v;
        const f = v as (...a: unknown[]) => unknown;
        if (prop !== 'readAllFrames') return f.bind(target);
        return (...args: unknown[]) => {
          const next = f.apply(target, args) as () => Promise<unknown[] | undefined>;
          return async () => {
            const started = performance.now();
            const page = await next();
            if (page !== undefined) {
              seconds.observe((performance.now() - started) / 1000);
              events.inc(page.length);
            }
            return page;
          };
        };
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Read at scrape time

  #lastRefresh: { at: number; result: Promise<Refreshed> } | undefined;

  /**
   * Reads queues, groups, the head and the log's size into the gauges. Scrapes and dashboards
   * within `REFRESH_REUSE_MS` of each other share one reading: a group's lag is counted by
   * scanning the log, which many open dashboards should not multiply.
   */
  #refresh(): Promise<Refreshed> {
    const now = Date.now();
    if (this.#lastRefresh !== undefined && now - this.#lastRefresh.at < REFRESH_REUSE_MS) return this.#lastRefresh.result;
    const result = this.#read();
    this.#lastRefresh = { at: now, result };
    result.catch(() => (this.#lastRefresh = undefined));
    return result;
  }

  async #read(): Promise<Refreshed> {
    const s = this.#o.sources;
    const head = await s.headPosition();
    this.#head.set(head);
    const { bytes, segments } = logSize(this.#logDir);
    this.#logBytes.set(bytes);
    this.#segments.set(segments);

    const queues = [];
    for (const q of await s.queues.list()) {
      try {
        queues.push(await s.queues.stats(q.name));
      } catch {
        // Deleted between list and stats.
      }
    }
    for (const g of Object.values(this.#queueGauges)) g.reset();
    for (const c of Object.values(this.#queueTotals)) c.reset();
    for (const q of queues) {
      const l = { queue: q.name };
      const g = this.#queueGauges;
      g.depth.set(l, q.depth);
      g.ready.set(l, q.ready);
      g.inFlight.set(l, q.inFlight);
      g.delayed.set(l, q.delayed);
      g.parkedGroups.set(l, q.parkedGroups);
      g.consumers.set(l, q.consumers);
      g.oldestAge.set(l, q.oldestUnackedAgeMs / 1000);
      const t = this.#queueTotals;
      t.sent.inc(l, q.totals.sent);
      t.acked.inc(l, q.totals.acked);
      t.nacked.inc(l, q.totals.nacked);
      t.redelivered.inc(l, q.totals.redelivered);
      t.expired.inc(l, q.totals.expired);
      t.dropped.inc(l, q.totals.dropped);
      t.rejected.inc(l, q.totals.rejected);
      t.deadLettered.inc(l, q.deadLettered);
    }

    const groups = [];
    for (const g of await s.groups.list()) {
      try {
        groups.push(await s.groups.stats(g.name));
      } catch {
        // Deleted between list and stats.
      }
    }
    for (const g of Object.values(this.#groupGauges)) g.reset();
    for (const g of groups) {
      const l = { group: g.name };
      this.#groupGauges.position.set(l, g.position);
      this.#groupGauges.lagPositions.set(l, g.lagPositions);
      this.#groupGauges.lagEvents.set(l, g.lagEvents);
      this.#groupGauges.lagSeconds.set(l, g.lagMs / 1000);
      this.#groupGauges.members.set(l, g.members.length);
    }
    return { queues, groups, head, logBytes: bytes, segments };
  }

  /** The text exposition format, every gauge read now. */
  async scrape(): Promise<string> {
    await this.#refresh();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The server-wide numbers as JSON, for the dashboard. */
  async snapshot(): Promise<StatsSnapshot> {
    const r = await this.#refresh();
    const sum = async (m: Counter<string> | Histogram<string>, suffix?: string): Promise<number> => {
      const v = await m.get();
      let total = 0;
      for (const x of v.values) if (suffix === undefined || (x as { metricName?: string }).metricName?.endsWith(suffix) === true) total += x.value;
      return total;
    };
    const byCode: Record<string, number> = {};
    let errors = 0;
    for (const x of (await this.#errors.get()).values) {
      const code = String(x.labels.code);
      byCode[code] = (byCode[code] ?? 0) + x.value;
      errors += x.value;
    }
    const now = Date.now();
    return {
      version: this.#o.version,
      at: now,
      uptimeMs: now - this.#o.startedAt,
      headPosition: r.head,
      storage: { logBytes: r.logBytes, segments: r.segments },
      connections: { ...this.#open },
      appends: { count: await sum(this.#appendSeconds, '_count'), events: await sum(this.#appendedEvents), seconds: await sum(this.#appendSeconds, '_sum') },
      reads: { pages: await sum(this.#readPageSeconds, '_count'), events: await sum(this.#readEvents), seconds: await sum(this.#readPageSeconds, '_sum') },
      log: {
        writes: await sum(this.#logWriteSeconds, '_count'),
        bytesWritten: await sum(this.#logWriteBytes),
        syncs: await sum(this.#fsyncSeconds, '_count'),
        syncSeconds: await sum(this.#fsyncSeconds, '_sum'),
      },
      httpRequests: await sum(this.#httpSeconds, '_count'),
      errors: { total: errors, byCode },
      queues: {
        count: r.queues.length,
        depth: total(r.queues, (q) => q.depth),
        inFlight: total(r.queues, (q) => q.inFlight),
        delayed: total(r.queues, (q) => q.delayed),
        deadLettered: total(r.queues, (q) => q.deadLettered),
        sendPerSecond: total(r.queues, (q) => q.rates.send),
        ackPerSecond: total(r.queues, (q) => q.rates.ack),
      },
      groups: {
        count: r.groups.length,
        lagEventsMax: Math.max(0, ...r.groups.map((g) => g.lagEvents)),
        lagMsMax: Math.max(0, ...r.groups.map((g) => g.lagMs)),
      },
    };
  }
}

function total<T>(items: T[], f: (x: T) => number): number {
  let n = 0;
  for (const x of items) n += f(x);
  return n;
}

/** Bytes and number of the segment files (`*.seg`, or whatever the log directory holds). */
function logSize(logDir: string): { bytes: number; segments: number } {
  let bytes = 0;
  let segments = 0;
  let names: string[];
  try {
    names = fs.readdirSync(logDir);
  } catch {
    return { bytes: 0, segments: 0 };
  }
  for (const name of names) {
    try {
      const st = fs.statSync(path.join(logDir, name));
      if (!st.isFile()) continue;
      bytes += st.size;
      segments++;
    } catch {
      // Removed while listing.
    }
  }
  return { bytes, segments };
}

interface ReadMeters {
  seconds: { observe(v: number): void };
  events: { inc(v: number): void };
}

/** A reader whose pages are timed as the store produces them; `toArray` and iteration go through the pages. */
function timedReader(reader: EventReader, m: ReadMeters): EventReader {
  async function* pages(): AsyncGenerator<RecordedEvent[]> {
    const it = reader.pages()[Symbol.asyncIterator]();
    try {
      for (;;) {
        const started = performance.now();
        const r = await it.next();
        if (r.done) return;
        m.seconds.observe((performance.now() - started) / 1000);
        m.events.inc(r.value.length);
        yield r.value;
      }
    } finally {
      await it.return?.();
    }
  }
  return {
    pages,
    async toArray() {
      const out: RecordedEvent[] = [];
      for await (const page of pages()) for (const e of page) out.push(e);
      return out;
    },
    async *[Symbol.asyncIterator]() {
      for await (const page of pages()) yield* page;
    },
  };
}
