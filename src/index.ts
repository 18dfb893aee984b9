/** Eventful: one durable log, two ways to read it. The embedded store's public API. */
export { openStore, FileEventStore } from './streams/store.js';
export type { OpenStoreOptions, RecoveryReport } from './streams/store.js';
export * from './core/events.js';
export * from './core/errors.js';
export { DEFAULT_LIMITS, FORMAT } from './core/limits.js';
export type { StoreLimits } from './core/limits.js';
export type { DurabilityMode } from './log/writer.js';
export type * from './core/queues.js';
export type * from './core/groups.js';
export { partitionOf } from './subscriptions/groups.js';
export { ManualClock, systemClock } from './queues/clock.js';
export type { Clock } from './queues/clock.js';
export type { QueueOptions } from './queues/manager.js';
export { DEFAULT_QUEUE_SETTINGS } from './queues/settings.js';
export {
  handleCommand,
  loadState,
  DEFAULT_COMMAND_RETRIES,
  DEFAULT_COMMAND_BACKOFF_MS,
  InMemorySnapshotStore,
  StreamSnapshotStore,
  DEFAULT_SNAPSHOT_EVERY,
  DEFAULT_SNAPSHOT_PREFIX,
  DEFAULT_SNAPSHOT_STREAMS_MAX,
  SNAPSHOT_EVENT_TYPE,
} from './decider/index.js';
export type { Decider, DeciderEvent, HandleOptions, HandleResult, LoadOptions, Snapshot, SnapshotErrorContext, SnapshotOptions, SnapshotStore } from './decider/index.js';
export { givenEvents } from './decider/testing.js';
export type { GivenOptions, When } from './decider/testing.js';
export { Upcasters, schemaVersionOf } from './core/upcast.js';
export type { EventView, Upcaster } from './core/upcast.js';
export { DEFAULT_PROJECTION_LIMITS } from './core/limits.js';
export {
  Projection,
  defineProjection,
  memoryReadModelStore,
  MemoryReadModelStore,
  openLmdbReadModelStore,
  LmdbReadModelStore,
  openPostgresReadModelStore,
  PostgresReadModelStore,
  DEFAULT_PROJECTION_SCHEMA,
  statusHandler,
  givenProjectionEvents,
} from './projections/index.js';
export type {
  DocumentProjection,
  HandlersProjection,
  ProjectionDefinition,
  ProjectionHandler,
  ProjectionErrorInfo,
  ProjectionOptions,
  ProjectionState,
  ProjectionStatus,
  RebuildOptions,
  RebuildProgress,
  RebuildResult,
  Collections,
  DocumentEntry,
  ListOptions,
  ProjectionCatalog,
  ReadModel,
  ReadModelStore,
  ReadModelSnapshot,
  SlotInfo,
  SlotOption,
  UpdateResult,
  LmdbReadModelStoreOptions,
  PostgresReadModelStoreOptions,
  GivenEvent,
  ProjectionSpec,
} from './projections/index.js';
