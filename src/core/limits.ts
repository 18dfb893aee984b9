/**
 * Every bound Eventful enforces, in one place, with its unit, why it exists and what it costs.
 * docs/limits.md is the reference table for users; `checkLimitRelations` runs when a store opens
 * and refuses settings whose bounds contradict each other.
 *
 * Limits that a store's owner may tune are in `StoreLimits` (passed to `openStore({ limits })`);
 * the rest are format constants that the on-disk layout depends on.
 */
import { ConfigInvalidError } from './errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export const DEFAULT_LIMITS = {
  /**
   * Largest encoded event (stream name, type, content type, metadata and data together).
   * Bounds the memory one event can pin in a reader or writer.
   * @default 1 MiB
   */
  eventBytesMax: 1 * MiB,
  /** Largest metadata object, JSON-encoded. @default 64 KiB */
  metadataBytesMax: 64 * KiB,
  /** Events in one append. One append is one atomic unit in the log. @default 10,000 */
  eventsPerAppendMax: 10_000,
  /** Encoded bytes of one append; an append must also fit in one segment. @default 16 MiB */
  appendBytesMax: 16 * MiB,
  /** Stream name length in UTF-8 bytes. Names are index keys, never file paths. @default 256 */
  streamNameBytesMax: 256,
  /** Event type length in UTF-8 bytes. @default 256 */
  eventTypeBytesMax: 256,
  /** Content type length in bytes (printable ASCII). @default 128 */
  contentTypeBytesMax: 128,
  /**
   * Appends accepted but not yet written. When full, append rejects with OVERLOADED (retriable)
   * instead of queueing without bound. @default 100,000
   */
  pendingAppendsMax: 100_000,
  /** Bytes of appends accepted but not yet written. @default 256 MiB */
  pendingAppendBytesMax: 256 * MiB,
  /**
   * Bytes one group commit writes before it syncs. Larger batches amortise the sync further but
   * delay the first append of the batch. @default 8 MiB
   */
  groupCommitBytesMax: 8 * MiB,
  /**
   * Most recent event ids remembered (with their stream and revision; at least this many, at
   * most twice: two generations) so that a retried append
   * with expectedRevision `any` or `stream_exists` is recognised (about 100 bytes of memory
   * each; refilled from the log's tail on open). Retries with an exact revision or `no_stream`
   * are checked against the log itself and need no window. @default 100,000
   */
  idempotencyWindowEvents: 100_000,
  /** Bytes read from a segment per read call when scanning the log. @default 1 MiB */
  readChunkBytes: 1 * MiB,
  /** Segment files kept open for reading at once. @default 64 */
  openSegmentsMax: 64,
  /**
   * Index entries kept in memory before the index is written to its database. Appends wait when
   * twice this many are unwritten, so memory stays bounded under any load. @default 200,000
   */
  indexMemtableEventsMax: 200_000,
  /** Queues in one store (each holds its delivery state in memory). @default 1,000 */
  queuesMax: 1000,
  /**
   * Messages not yet acked across all queues. Their delivery state (about 150 bytes each) is
   * held in memory; sends are refused with OVERLOADED beyond it. @default 5,000,000
   */
  queueMessagesMax: 5_000_000,
  /**
   * Bytes of recently sent messages kept in memory so that delivering them needs no disk read;
   * older ones are read back from the log. @default 64 MiB
   */
  queueCacheBytesMax: 64 * MiB,
  /** Longest lease a queue or an extend may ask for. @default 12 h */
  queueLeaseMsMax: 12 * 3_600_000,
  /** Longest delivery delay, back-off or schedule ahead of now. @default 365 days */
  queueDelayMsMax: 365 * 86_400_000,
  /** Highest maxDeliveries setting. @default 1,000 */
  queueMaxDeliveriesMax: 1000,
  /** Longest dedup window. @default 7 days */
  queueDedupWindowMsMax: 7 * 86_400_000,
  /** Message ids one queue remembers for dedup; the oldest are forgotten first. @default 1,000,000 */
  queueDedupIdsMax: 1_000_000,
  /** Prefetch of one consumer (deliveries it may hold unacked). @default 10,000 */
  queuePrefetchMax: 10_000,
  /** Messages one receive may return, and receipts one ack, nack or extend may name. @default 10,000 */
  queueBatchMax: 10_000,
  /** Longest wait of a long-polling receive. @default 60,000 ms */
  queueReceiveWaitMsMax: 60_000,
  /**
   * Streams with retention or deletion metadata; each costs about 100 bytes of memory, loaded at
   * open. @default 1,000,000
   */
  streamMetadataMax: 1_000_000,
  /** Consumer groups in one store. @default 1,000 */
  groupsMax: 1000,
  /** Members joined to one group at once (standing-by ones included). @default 256 */
  groupMembersMax: 256,
  /** Partitions of a partitioned group: each has its own checkpoint. @default 256 */
  groupPartitionsMax: 256,
  /**
   * How long a member that loses a partition in a rebalance has to finish the events it holds
   * of it; after that the partition moves anyway and the member's later commits for it are
   * ignored (its events are delivered again to the new owner). @default 30,000 ms
   */
  groupRebalanceTimeoutMs: 30_000,
  /**
   * How often auto-committed checkpoints are written to the log. A crash can deliver again the
   * events handled in the last interval (at-least-once). @default 1,000 ms
   */
  groupCheckpointIntervalMs: 1000,
  /** Events scanned to count a group's lag exactly; beyond it the count is a lower bound. @default 100,000 */
  groupLagScanEventsMax: 100_000,
} as const;

export type StoreLimits = { -readonly [K in keyof typeof DEFAULT_LIMITS]: number };

/** Format constants: changing one changes the on-disk format. */
export const FORMAT = {
  /** Segment header size in bytes. */
  segmentHeaderBytes: 64,
  /** Smallest segment size accepted, so a segment always holds real work. */
  segmentBytesMinimum: 64 * KiB,
  /** Largest segment size: offsets within a segment are stored as u32. */
  segmentBytesMaximum: 4 * 1024 * MiB - 1,
  /** Default maximum segment size. @default 128 MiB */
  segmentBytesDefault: 128 * MiB,
  /** Record framing overhead: u32 length + u32 CRC32C before the body, u32 length after. */
  recordFrameBytes: 12,
  /** Fixed part of a record body (see src/log/record.ts). */
  recordFixedBodyBytes: 2 + 8 + 8 + 8 + 16 + 2 + 2 + 1 + 4 + 4,
  /** Positions are exposed as JS numbers: at 1M events/s this lasts 285 years. */
  positionMax: Number.MAX_SAFE_INTEGER,
} as const;

export function resolveLimits(overrides: Partial<StoreLimits> | undefined): StoreLimits {
  const limits: StoreLimits = { ...DEFAULT_LIMITS };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (!(key in DEFAULT_LIMITS)) {
      throw new ConfigInvalidError(`unknown limit '${key}'; known limits: ${Object.keys(DEFAULT_LIMITS).join(', ')}`);
    }
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new ConfigInvalidError(`limit '${key}' must be a positive integer, got ${String(value)}`);
    }
    limits[key as keyof StoreLimits] = value;
  }
  return Object.freeze(limits);
}

/** Refuses settings whose bounds contradict each other; called when a store opens. */
export function checkLimitRelations(limits: StoreLimits, segmentBytes: number): void {
  const fail = (message: string): never => {
    throw new ConfigInvalidError(message, { limits, segmentBytes });
  };
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes < FORMAT.segmentBytesMinimum || segmentBytes > FORMAT.segmentBytesMaximum) {
    fail(`segmentBytes must be an integer from ${FORMAT.segmentBytesMinimum} to ${FORMAT.segmentBytesMaximum}, got ${segmentBytes}`);
  }
  if (limits.metadataBytesMax > limits.eventBytesMax) fail('metadataBytesMax must not exceed eventBytesMax');
  if (limits.eventBytesMax > limits.appendBytesMax) fail('eventBytesMax must not exceed appendBytesMax');
  if (limits.eventBytesMax + FORMAT.recordFrameBytes + FORMAT.recordFixedBodyBytes > limits.readChunkBytes * 64) {
    fail('readChunkBytes is too small for eventBytesMax');
  }
  if (limits.streamNameBytesMax > 0xffff || limits.eventTypeBytesMax > 0xffff) fail('name limits must fit in u16');
  if (limits.contentTypeBytesMax > 0xff) fail('contentTypeBytesMax must fit in u8');
  if (limits.appendBytesMax > limits.pendingAppendBytesMax) fail('appendBytesMax must not exceed pendingAppendBytesMax');
}

/**
 * Bounds of the server and its connections (src/server/). Set in the server's config file
 * under `limits`, by flag or by EVENTFUL_* variable; documented in docs/limits.md.
 */
export const DEFAULT_SERVER_LIMITS = {
  /**
   * Largest binary protocol frame, header included. Must hold the largest append
   * (appendBytesMax) plus its framing. @default 17 MiB
   */
  frameBytesMax: 17 * MiB,
  /** Requests a connection may have unanswered at once; more get OVERLOADED. @default 4,096 */
  inFlightRequestsMax: 4096,
  /** Open connections (TCP and WebSocket together); more are refused. @default 10,000 */
  connectionsMax: 10_000,
  /**
   * Bytes queued for a connection's socket before the server stops reading its requests until
   * it drains: a client that sends faster than it reads cannot make the server buffer without
   * bound. @default 8 MiB
   */
  outputBufferBytesMax: 8 * MiB,
  /** Largest HTTP request body. @default 17 MiB */
  httpBodyBytesMax: 17 * MiB,
  /** Events per page of a read or subscription over the wire. @default 1,024 */
  readPageEventsMax: 1024,
  /** Events an HTTP read returns at most (the `limit` query parameter). @default 1,000 */
  httpReadEventsMax: 1000,
  /** Subscriptions one connection may hold. @default 256 */
  subscriptionsPerConnectionMax: 256,
  /** A connection that sends nothing (not even a PONG) for this long is closed. @default 30,000 ms */
  idleTimeoutMs: 30_000,
  /** How often the server sends PING on an idle connection. @default 10,000 ms */
  heartbeatMs: 10_000,
  /** Time a new connection has to send HELLO. @default 10,000 ms */
  helloTimeoutMs: 10_000,
} as const;

export type ServerLimits = { -readonly [K in keyof typeof DEFAULT_SERVER_LIMITS]: number };

export function checkServerLimitRelations(server: ServerLimits, store: StoreLimits): void {
  if (server.frameBytesMax < store.appendBytesMax + 64 * KiB) {
    throw new ConfigInvalidError('frameBytesMax must exceed appendBytesMax by at least 64 KiB (room for framing)', { server, store });
  }
  if (server.httpBodyBytesMax < store.eventBytesMax) throw new ConfigInvalidError('httpBodyBytesMax must be at least eventBytesMax');
  if (server.heartbeatMs * 2 > server.idleTimeoutMs) throw new ConfigInvalidError('idleTimeoutMs must be at least twice heartbeatMs');
  // A socket only reports 'drain' after its queue passed its own 16 KiB high-water mark; a
  // lower limit could pause a connection that is never woken.
  if (server.outputBufferBytesMax < 64 * KiB) throw new ConfigInvalidError('outputBufferBytesMax must be at least 64 KiB');
}

/** Bounds of the client (src/client/); the first four are options of `connect`. */
export const DEFAULT_CLIENT_LIMITS = {
  /** Deadline of one request. @default 30,000 ms */
  timeoutMs: 30_000,
  /** Requests waiting for an answer or a connection; more are refused with OVERLOADED. @default 10,000 */
  pendingRequestsMax: 10_000,
  /** First pause before reconnecting; doubles (with jitter) up to reconnectDelayMaxMs. @default 100 ms */
  reconnectDelayMs: 100,
  /** Longest pause between reconnect attempts. @default 5,000 ms */
  reconnectDelayMaxMs: 5_000,
  /**
   * Events a read or subscription lets the server send ahead of the reader (its credit), so at
   * most this many are buffered per read. @default 8,192
   */
  readWindowEvents: 8192,
  /** Largest frame the client accepts from a server. @default 64 MiB */
  frameBytesMax: 64 * MiB,
} as const;

/**
 * Bounds of projections (src/projections/). `batchEventsMax` and `batchMs` are the defaults of
 * the projection options of the same names (which accept up to 1,000,000 events and 60,000 ms);
 * the rest are fixed.
 */
export const DEFAULT_PROJECTION_LIMITS = {
  /**
   * Events applied in one read-model transaction, at most. Larger batches share a commit (a
   * sync, a PostgreSQL round trip) among more events; the changes of one batch are held in
   * memory until it commits, and a failed batch is applied again in full. @default 5,000
   */
  batchEventsMax: 5000,
  /**
   * Longest a batch stays open before it is committed, even when not full: bounds how stale the
   * read model is while catching up with slow handlers, and the work a crash throws away.
   * @default 200 ms
   */
  batchMs: 200,
  /** Length of a collection name (UTF-16 code units). Collection names are part of every key. @default 64 */
  collectionNameLengthMax: 64,
  /**
   * Length of a document id (UTF-16 code units). With the collection it must fit an LMDB key
   * (1,978 bytes) in UTF-8. @default 512
   */
  documentIdLengthMax: 512,
  /** Documents one `list` or `find` returns. @default 10,000 */
  listLimitMax: 10_000,
  /** How often a running projection asks for the head position, for its lag. @default 1,000 ms */
  statusRefreshMs: 1000,
} as const;
