/**
 * The contract between the peers benchmark and the systems it measures.
 *
 * A system is one configuration of one product (RabbitMQ quorum queue, PostgreSQL SKIP LOCKED
 * queue, Eventful with fsync before every ack, ...). It lives in one file under `systems/` and
 * is listed in `registry.ts`; nothing else needs to change to add one. A system implements only
 * the workloads it can do (a RabbitMQ quorum queue cannot replay, a Redis stream cannot check an
 * expected revision); the harness skips the rest and says so.
 *
 * Two sides run a system's code:
 *  - the orchestrator (the `npm run bench:peers` process) calls `start`, `stop`, `serverPids`,
 *    `createTarget` and `deleteTarget`: everything that sets up or checks the server;
 *  - client processes (children of the orchestrator) call the workload methods (`publish`,
 *    `consume`, `latency`, `replay`, `occ`). Each call opens its own connections and closes them
 *    before it returns, so no state crosses the process boundary except the arguments: the
 *    server's address (`url`, from `start`) and the target's name.
 *
 * Units and qualifiers go last in names (`latencyMsP99`, `windowMs`). Times are `Date.now()`
 * milliseconds when they cross processes (`t0`, `t1`), `performance.now()` inside one process.
 */

export const WORKLOADS = ['publish', 'consume', 'latency', 'replay', 'occ'] as const;
export type Workload = (typeof WORKLOADS)[number];

/** Payload size of every message and event, bytes. */
export const PAYLOAD_BYTES = 256;

/** What a system is, as printed in the output and the docs. */
export interface SystemInfo {
  /** Stable kebab-case id, used in flags (`--only=`), file names and the JSON. */
  readonly id: string;
  /** Human name, e.g. 'RabbitMQ quorum queue'. */
  readonly name: string;
  /** The product family, e.g. 'RabbitMQ': systems of one family share a server. */
  readonly family: string;
  /** The Node.js client and its version, e.g. 'amqplib 2.3.1'. */
  readonly client: string;
  /** Configuration lines, printed before the run. */
  readonly configuration: readonly string[];
  /**
   * Whether the system is configured to sync to disk before it acknowledges a write. The fsync
   * check (strace) measures it; the output shows both, and a disagreement is flagged.
   */
  readonly syncsBeforeAck: boolean;
  /** The durability in words, e.g. 'fdatasync of the Raft WAL before the publisher confirm'. */
  readonly durability: string;
  /** How each workload is driven (batching, windows, acks), in words. */
  readonly method: Partial<Record<Workload, string>>;
  /** Eventful's own systems: the figures every peer is compared with. */
  readonly isEventful?: boolean;
}

/** What `start` learned about the server. */
export interface StartInfo {
  /** Where clients connect; passed to every workload call. */
  url: string;
  /** The server's version as it reports it, e.g. 'RabbitMQ 3.10.8'. */
  serverVersion: string;
  /** Settings read back from the server, printed with the configuration. */
  observed?: string[];
}

/** Options every system is constructed with, in the orchestrator and in client processes. */
export interface SystemOptions {
  /** Unique per benchmark run: names of targets, databases and keys start with it. */
  readonly runId: string;
  readonly quick: boolean;
  /** Directory for data the harness owns (Eventful's data directories). */
  readonly tmpDir: string;
  /** Where the repository is (for `bin/eventful.js`). */
  readonly rootDir: string;
  /** Extra arguments for Node.js processes the harness starts (e.g. --cpu-prof). */
  readonly serverNodeArgs: readonly string[];
}

/** Handed to workload methods in client processes. */
export interface ClientContext {
  /**
   * Marks the start and the end of what is measured, for count-based workloads (consume,
   * replay): CPU time of the client and the server is taken between the two marks. Windowed
   * workloads (publish, latency, occ) are marked at `t0` and `t1` by the harness.
   */
  mark(what: 'start' | 'end'): void;
  /** A line on stderr, prefixed with the system's id. */
  log(message: string): void;
  readonly quick: boolean;
  /** Which client process this is (0 or 1): tells the payloads of two processes apart. */
  readonly processIndex: number;
}

export interface PublishArgs {
  url: string;
  target: string;
  /** Start publishing at this time (ms since the epoch); connect before it. */
  t0: number;
  /** Stop starting new publishes at this time. */
  t1: number;
  /** Stop after this many messages have been acknowledged (fills use it; windows use Infinity). */
  maxMessages: number;
}

export interface PublishResult {
  /** Messages acknowledged by the server (durable as the system's configuration makes them). */
  acked: number;
  /** Of those, acknowledged by `t1`. */
  ackedInWindow: number;
}

/** One message at a time, each awaited: the fsync check's load. */
export interface SequentialPublishArgs {
  url: string;
  target: string;
  count: number;
  /** Stop early at this time (ms since the epoch): strace may slow a server down a lot. */
  deadline: number;
}

export interface ConsumeArgs {
  url: string;
  target: string;
  /** Messages in the target (filled before); consume and ack all of them. */
  expected: number;
  /** Give up at this time (ms since the epoch). */
  deadline: number;
}

export interface ConsumeResult {
  consumed: number;
  /** From the first delivery requested to the last ack the server confirmed (or accepted). */
  elapsedMs: number;
}

export interface LatencyArgs {
  url: string;
  target: string;
  ratePerS: number;
  /** Recorded seconds, after `warmupS` seconds sent at the same rate and not recorded. */
  seconds: number;
  warmupS: number;
  t0: number;
}

export interface LatencyResult {
  /** Publish to delivery, ms, of the recorded messages, sorted. */
  deliveryMs: number[];
  /** Publish to the server's acknowledgement of the publish, ms, sorted. */
  ackMs: number[];
  sent: number;
  received: number;
  /** Messages sent per second, as achieved. */
  achievedRatePerS: number;
  /** Publishes the client refused for being over its in-flight bound and that were sent again. */
  retries?: number;
}

export interface ReplayArgs {
  url: string;
  target: string;
  /** Events stored in the target; read them all, in order. */
  events: number;
  deadline: number;
}

export interface ReplayResult {
  read: number;
  /** Payload bytes touched (every event's payload is read, so no client skips decoding). */
  bytes: number;
  elapsedMs: number;
  /** Events that came back out of order, or not ours: must be 0. */
  outOfOrder: number;
}

export interface OccArgs {
  url: string;
  target: string;
  streams: number;
  /** Appends in flight at once. */
  concurrency: number;
  t0: number;
  t1: number;
}

export interface OccResult {
  /** Appends that passed their expected-revision check, by `t1`. */
  appended: number;
  /** Appends refused because the expected revision was stale (then retried after a re-read). */
  conflicts: number;
}

/** Thrown by `start` when a system's server cannot be used: the system is skipped, with the reason. */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError';
}

/**
 * One system. Implement `info`, `start`, `stop`, `serverPids`, `createTarget`, `deleteTarget`
 * and the workloads it can do; see `systems/redis-streams.ts` for a short example.
 */
export interface PeerSystem {
  readonly info: SystemInfo;

  // ---- orchestrator side

  /**
   * Checks that the server can be reached (throws `UnreachableError` with a reason if not) and
   * makes the run's set-up (a configuration change, a database). Whatever it changes, `stop`
   * must undo, and `stop` is called even when the run fails or is interrupted.
   */
  start(): Promise<StartInfo>;
  stop(): Promise<void>;
  /** Pids of the server's processes now (pgrep), for CPU time and the fsync check. */
  serverPids(): number[];
  /** Makes an empty target (queue, stream, table) for one measurement of `workload`. */
  createTarget(name: string, workload: Workload | 'fsync-check'): Promise<void>;
  deleteTarget(name: string): Promise<void>;

  // ---- client side (in client processes)

  /** Durable publishes as fast as the client's idiomatic batching and windowing allow. */
  publish?(a: PublishArgs, ctx: ClientContext): Promise<PublishResult>;
  /** One message per publish, each awaited before the next (for the fsync check). */
  publishSequential?(a: SequentialPublishArgs, ctx: ClientContext): Promise<PublishResult>;
  /** Consumes `expected` messages with acks. */
  consume?(a: ConsumeArgs, ctx: ClientContext): Promise<ConsumeResult>;
  /** Publishes at a fixed rate, one message per publish, and consumes them in the same process. */
  latency?(a: LatencyArgs, ctx: ClientContext): Promise<LatencyResult>;
  /** Stores `n` events in the target for the replay workload (not measured). */
  fillForReplay?(a: { url: string; target: string; events: number }, ctx: ClientContext): Promise<number>;
  /** Reads every stored event of the target in order. */
  replay?(a: ReplayArgs, ctx: ClientContext): Promise<ReplayResult>;
  /** Appends with an expected revision to `streams` streams. */
  occ?(a: OccArgs, ctx: ClientContext): Promise<OccResult>;
}

/** How systems are made: one factory per file, returning one or more configurations. */
export type SystemFactory = (o: SystemOptions) => PeerSystem[];
