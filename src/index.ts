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
export { handleCommand, loadState } from './decider/index.js';
export type { Decider, DeciderEvent, HandleOptions, HandleResult } from './decider/index.js';
export { givenEvents } from './decider/testing.js';
export type { When } from './decider/testing.js';
