/**
 * The one registry of Eventful's errors.
 *
 * Every error a caller can see has a stable string `code`, a numeric `wireCode` for the binary
 * protocol, an HTTP status, and a `retriable` flag (true when the same request may succeed later
 * without change). Codes never change meaning once released; new ones are added at the end.
 * docs/errors.md documents every row, and a test keeps the two in step.
 *
 * The embedded store throws these classes; the client turns wire and HTTP errors back into the
 * same classes, so `err instanceof WrongExpectedRevisionError` works the same embedded and remote.
 */

export const ERROR_REGISTRY = {
  INVALID_ARGUMENT: { wireCode: 1, httpStatus: 400, retriable: false },
  STREAM_NAME_INVALID: { wireCode: 2, httpStatus: 400, retriable: false },
  EVENT_INVALID: { wireCode: 3, httpStatus: 400, retriable: false },
  LIMIT_EXCEEDED: { wireCode: 4, httpStatus: 413, retriable: false },
  WRONG_EXPECTED_REVISION: { wireCode: 10, httpStatus: 409, retriable: false },
  IDEMPOTENCY_CONFLICT: { wireCode: 11, httpStatus: 409, retriable: false },
  STREAM_DELETED: { wireCode: 12, httpStatus: 410, retriable: false },
  OVERLOADED: { wireCode: 20, httpStatus: 503, retriable: true },
  STORE_CLOSED: { wireCode: 21, httpStatus: 503, retriable: true },
  STORE_LOCKED: { wireCode: 22, httpStatus: 503, retriable: true },
  STORAGE_FAILED: { wireCode: 30, httpStatus: 500, retriable: false },
  CORRUPTION: { wireCode: 31, httpStatus: 500, retriable: false },
  STORAGE_FULL: { wireCode: 32, httpStatus: 507, retriable: true },
  CONFIG_INVALID: { wireCode: 40, httpStatus: 500, retriable: false },
  PROTOCOL_ERROR: { wireCode: 50, httpStatus: 400, retriable: false },
  UNAUTHENTICATED: { wireCode: 51, httpStatus: 401, retriable: false },
  FORBIDDEN: { wireCode: 52, httpStatus: 403, retriable: false },
  NOT_FOUND: { wireCode: 53, httpStatus: 404, retriable: false },
  UNSUPPORTED_MEDIA_TYPE: { wireCode: 54, httpStatus: 415, retriable: false },
  TIMEOUT: { wireCode: 60, httpStatus: 504, retriable: true },
  CONNECTION_LOST: { wireCode: 61, httpStatus: 503, retriable: true },
  QUEUE_NOT_FOUND: { wireCode: 70, httpStatus: 404, retriable: false },
  QUEUE_EXISTS: { wireCode: 71, httpStatus: 409, retriable: false },
  QUEUE_FULL: { wireCode: 72, httpStatus: 429, retriable: true },
  RECEIPT_INVALID: { wireCode: 73, httpStatus: 409, retriable: false },
  LEASE_NOT_OWNED: { wireCode: 74, httpStatus: 403, retriable: false },
  GROUP_NOT_FOUND: { wireCode: 80, httpStatus: 404, retriable: false },
  GROUP_CONFLICT: { wireCode: 81, httpStatus: 409, retriable: false },
  PROJECTION_FAULTED: { wireCode: 90, httpStatus: 500, retriable: false },
  PROJECTION_CONFLICT: { wireCode: 91, httpStatus: 409, retriable: false },
  INTERNAL: { wireCode: 99, httpStatus: 500, retriable: false },
} as const;

export type ErrorCode = keyof typeof ERROR_REGISTRY;

export class EventfulError extends Error {
  readonly code: ErrorCode;
  readonly wireCode: number;
  readonly httpStatus: number;
  readonly retriable: boolean;
  /** Structured facts about the failure (never secrets), safe to serialise to clients. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message, options);
    const row = ERROR_REGISTRY[code];
    this.name = new.target.name;
    this.code = code;
    this.wireCode = row.wireCode;
    this.httpStatus = row.httpStatus;
    this.retriable = row.retriable;
    this.details = Object.freeze({ ...details });
  }

  toJSON(): { code: ErrorCode; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** Bad input from a caller: a wrong type, a missing field, an unknown option. */
export class InvalidArgumentError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('INVALID_ARGUMENT', message, details);
  }
}

export class StreamNameInvalidError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('STREAM_NAME_INVALID', message, details);
  }
}

export class EventInvalidError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('EVENT_INVALID', message, details);
  }
}

/** A size or count limit from src/core/limits.ts was exceeded; `details.limit` names it. */
export class LimitExceededError extends EventfulError {
  constructor(limit: string, actual: number, max: number, message?: string) {
    super('LIMIT_EXCEEDED', message ?? `${limit} exceeded: ${actual} > ${max}`, { limit, actual, max });
  }
}

/**
 * The stream's revision did not match the append's expectation. Nothing of the append was
 * written. `actualRevision` is -1 when the stream does not exist.
 */
export class WrongExpectedRevisionError extends EventfulError {
  readonly stream: string;
  readonly expectedRevision: string | number;
  readonly actualRevision: number;
  constructor(stream: string, expectedRevision: string | number, actualRevision: number) {
    super(
      'WRONG_EXPECTED_REVISION',
      `append to '${stream}' expected revision ${String(expectedRevision)} but the stream is at ${
        actualRevision < 0 ? 'no_stream' : actualRevision
      }`,
      { stream, expectedRevision, actualRevision },
    );
    this.stream = stream;
    this.expectedRevision = expectedRevision;
    this.actualRevision = actualRevision;
  }
}

/** Some but not all of an append's event ids were already written at those revisions. */
export class IdempotencyConflictError extends EventfulError {
  constructor(stream: string, message: string, details: Record<string, unknown> = {}) {
    super('IDEMPOTENCY_CONFLICT', message, { stream, ...details });
  }
}

export class OverloadedError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('OVERLOADED', message, details);
  }
}

export class StoreClosedError extends EventfulError {
  constructor(message = 'the store is closed') {
    super('STORE_CLOSED', message);
  }
}

export class StoreLockedError extends EventfulError {
  constructor(dir: string, holder: string) {
    super('STORE_LOCKED', `data directory ${dir} is in use by another process (${holder})`, { dir, holder });
  }
}

/**
 * A write, sync or read of the disk failed (disk full, I/O error). After a failed write or sync
 * the store stops accepting appends: the state of the page cache can no longer be trusted, and
 * reopening the store recovers from what is on disk.
 */
export class StorageFailedError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super('STORAGE_FAILED', message, details, cause === undefined ? undefined : { cause });
  }
}

/**
 * The disk (or the user's quota) is full. Nothing of the failed appends was written; the store
 * stays open, reads work, and appends succeed again once there is space: retry later.
 */
export class StorageFullError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super('STORAGE_FULL', message, details, cause === undefined ? undefined : { cause });
  }
}

/** Stored bytes do not match their checksum or format; `details` names the file and offset. */
export class CorruptionError extends EventfulError {
  readonly file: string;
  readonly offset: number;
  constructor(file: string, offset: number, reason: string) {
    super('CORRUPTION', `corrupt record in ${file} at offset ${offset}: ${reason}`, { file, offset, reason });
    this.file = file;
    this.offset = offset;
  }
}

export class ConfigInvalidError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('CONFIG_INVALID', message, details);
  }
}

/** No token, or a token the server does not know. */
export class UnauthenticatedError extends EventfulError {
  constructor(message = 'a valid token is required') {
    super('UNAUTHENTICATED', message);
  }
}

/** The token is known but its roles do not allow this operation on this stream. */
export class ForbiddenError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('FORBIDDEN', message, details);
  }
}

export class NotFoundError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('NOT_FOUND', message, details);
  }
}

export class UnsupportedMediaTypeError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('UNSUPPORTED_MEDIA_TYPE', message, details);
  }
}

/** A request to a server got no answer in time; whether it took effect is unknown. */
export class TimeoutError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('TIMEOUT', message, details);
  }
}

/** The connection to the server dropped before the request was answered. */
export class ConnectionLostError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('CONNECTION_LOST', message, details);
  }
}

/** The peer broke the binary protocol (bad frame, unknown type, oversized frame). */
export class ProtocolError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('PROTOCOL_ERROR', message, details);
  }
}

export class QueueNotFoundError extends EventfulError {
  constructor(queue: string) {
    super('QUEUE_NOT_FOUND', `no queue named '${queue}'`, { queue });
  }
}

export class QueueExistsError extends EventfulError {
  constructor(queue: string) {
    super('QUEUE_EXISTS', `a queue named '${queue}' already exists`, { queue });
  }
}

/** The queue holds `maxLength` messages and its overflow policy is 'reject'. Nothing was sent. */
export class QueueFullError extends EventfulError {
  constructor(queue: string, waiting: number, maxLength: number) {
    super('QUEUE_FULL', `queue '${queue}' is full (${waiting} messages waiting, maxLength ${maxLength}); nothing was sent`, { queue, waiting, maxLength });
  }
}

/**
 * A receipt that names no lease held now: malformed, for another queue, already acked, or its
 * lease ran out and the message went back to the queue. `details.reason` says which; nothing
 * was changed.
 */
export class ReceiptInvalidError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('RECEIPT_INVALID', message, details);
  }
}

/** The lease belongs to another consumer (or connection): only its holder may settle it. */
export class LeaseNotOwnedError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('LEASE_NOT_OWNED', message, details);
  }
}

export class GroupNotFoundError extends EventfulError {
  constructor(group: string) {
    super('GROUP_NOT_FOUND', `no consumer group named '${group}'`, { group });
  }
}

/**
 * A consumer group request that its state forbids: `details.reason` is `settings` (a join or
 * create names settings other than the group's), `members` (a reset while members are joined) or
 * `member` (a commit from a member that has left).
 */
export class GroupConflictError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> & { reason: 'settings' | 'members' | 'member' }) {
    super('GROUP_CONFLICT', message, details);
  }
}

/**
 * A projection stopped: one of its handlers threw (or its read-model store failed) while
 * applying the event at `details.position`. Nothing of the batch that held that event was
 * committed; the read model and its checkpoint are as they were after the previous batch.
 * The handler's error is the `cause`.
 */
export class ProjectionFaultedError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super('PROJECTION_FAULTED', message, details, cause === undefined ? undefined : { cause });
  }
}

/**
 * A projection's checkpoint was not where its runner left it: another runner of the same
 * projection committed in between (`details.reason` 'checkpoint_moved'), or the read-model
 * version was dropped ('slot_dropped'). Nothing of the batch was committed.
 */
export class ProjectionConflictError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('PROJECTION_CONFLICT', message, details);
  }
}

/** The stream was hard-deleted (a tombstone): it can never be read or appended to again. */
export class StreamDeletedError extends EventfulError {
  constructor(stream: string) {
    super('STREAM_DELETED', `stream '${stream}' was deleted for good (hard delete): it cannot be read or appended to again`, { stream });
  }
}

/** Something failed inside the server that is not the caller's doing. */
export class InternalError extends EventfulError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('INTERNAL', message, details);
  }
}

/**
 * Rebuilds a typed error from its wire form (code, message, details), so remote callers get the
 * same classes as embedded ones. Unknown codes become a plain EventfulError with code INTERNAL.
 */
export function errorFromWire(code: unknown, message: unknown, details: unknown): EventfulError {
  const known = typeof code === 'string' && code in ERROR_REGISTRY ? (code as ErrorCode) : 'INTERNAL';
  const cls = ERROR_CLASSES[known];
  const err = Object.create(cls.prototype) as EventfulError;
  const d = typeof details === 'object' && details !== null ? (details as Record<string, unknown>) : {};
  const row = ERROR_REGISTRY[known];
  Object.assign(err, {
    name: cls.name,
    message: typeof message === 'string' ? message : String(code),
    code: known,
    wireCode: row.wireCode,
    httpStatus: row.httpStatus,
    retriable: row.retriable,
    details: Object.freeze({ ...d }),
  });
  Object.defineProperty(err, 'stack', { value: `${cls.name}: ${err.message}\n    (from the server)`, configurable: true, writable: true });
  if (err instanceof WrongExpectedRevisionError) {
    Object.assign(err, { stream: d.stream, expectedRevision: d.expectedRevision, actualRevision: d.actualRevision });
  }
  if (err instanceof CorruptionError) Object.assign(err, { file: d.file, offset: d.offset });
  return err;
}

export function errorCodeOfWire(wireCode: number): ErrorCode {
  for (const [code, row] of Object.entries(ERROR_REGISTRY)) if (row.wireCode === wireCode) return code as ErrorCode;
  return 'INTERNAL';
}

/** A programmer's mistake inside Eventful: crash loudly rather than carry on with bad state. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

/** The class each code is rebuilt as on the client side. */
export const ERROR_CLASSES: Record<ErrorCode, new (...args: never[]) => EventfulError> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  STREAM_NAME_INVALID: StreamNameInvalidError,
  EVENT_INVALID: EventInvalidError,
  LIMIT_EXCEEDED: LimitExceededError,
  WRONG_EXPECTED_REVISION: WrongExpectedRevisionError,
  IDEMPOTENCY_CONFLICT: IdempotencyConflictError,
  OVERLOADED: OverloadedError,
  STORE_CLOSED: StoreClosedError,
  STORE_LOCKED: StoreLockedError,
  STORAGE_FAILED: StorageFailedError,
  CORRUPTION: CorruptionError,
  STORAGE_FULL: StorageFullError,
  CONFIG_INVALID: ConfigInvalidError,
  PROTOCOL_ERROR: ProtocolError,
  UNAUTHENTICATED: UnauthenticatedError,
  FORBIDDEN: ForbiddenError,
  NOT_FOUND: NotFoundError,
  UNSUPPORTED_MEDIA_TYPE: UnsupportedMediaTypeError,
  TIMEOUT: TimeoutError,
  CONNECTION_LOST: ConnectionLostError,
  QUEUE_NOT_FOUND: QueueNotFoundError,
  QUEUE_EXISTS: QueueExistsError,
  QUEUE_FULL: QueueFullError,
  RECEIPT_INVALID: ReceiptInvalidError,
  LEASE_NOT_OWNED: LeaseNotOwnedError,
  STREAM_DELETED: StreamDeletedError,
  GROUP_NOT_FOUND: GroupNotFoundError,
  GROUP_CONFLICT: GroupConflictError,
  PROJECTION_FAULTED: ProjectionFaultedError,
  PROJECTION_CONFLICT: ProjectionConflictError,
  INTERNAL: InternalError,
};
