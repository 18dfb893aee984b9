/**
 * Projections: read models built from the log, with the checkpoint committed in the same
 * transaction as the read model's changes (exactly once into the model), blue-green rebuilds,
 * status, and stores in memory, in LMDB and in PostgreSQL. See docs/projections.md.
 */
export { defineProjection, compileProjection, matchesFilter } from './definition.js';
export type { DocumentProjection, HandlersProjection, ProjectionDefinition, ProjectionHandler, CompiledProjection } from './definition.js';
export { Projection } from './projection.js';
export type { ProjectionErrorInfo, ProjectionOptions, ProjectionState, ProjectionStatus, RebuildOptions, RebuildProgress, RebuildResult } from './projection.js';
export { Batch, cloneJson, containsJson } from './read-model.js';
export type {
  Checkpoint,
  Collections,
  CommitResult,
  DocumentEntry,
  ListOptions,
  ProjectionCatalog,
  ReadModel,
  ReadModelStore,
  SlotInfo,
  SlotOption,
  UpdateResult,
} from './read-model.js';
export { MemoryReadModelStore, memoryReadModelStore } from './memory-store.js';
export type { ReadModelSnapshot } from './memory-store.js';
export { LmdbReadModelStore, openLmdbReadModelStore } from './lmdb-store.js';
export type { LmdbReadModelStoreOptions } from './lmdb-store.js';
export { PostgresReadModelStore, openPostgresReadModelStore, DEFAULT_PROJECTION_SCHEMA } from './postgres-store.js';
export type { PostgresReadModelStoreOptions } from './postgres-store.js';
export { statusHandler } from './status-http.js';
export { givenProjectionEvents, recordedEvents } from './testing.js';
export type { GivenEvent, ProjectionSpec } from './testing.js';
