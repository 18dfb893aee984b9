/**
 * given / when / then for projections: past events, (more events,) and the read model that
 * must follow. Runs the projection's real pipeline (filter, '$' streams, upcasters, handlers,
 * one transaction) on an in-memory store, with no event store.
 *
 *   await givenProjectionEvents(orderTotals, [
 *     { stream: 'order-1', type: 'OrderPlaced', data: { total: 10 } },
 *   ])
 *     .when([{ stream: 'order-1', type: 'OrderShipped' }])
 *     .then({ orders: { 'order-1': { total: 10, shipped: true } } });
 *
 * Comparisons are deep and strict, with node:assert, so a failure shows the difference.
 */
import assert from 'node:assert/strict';
import { CONTENT_TYPE_BINARY, CONTENT_TYPE_JSON, RecordedEvent } from '../core/events.js';
import { newEventId, uuidToBytes } from '../core/ids.js';
import { InvalidArgumentError } from '../core/errors.js';
import { applyEvents, compileProjection, matchesFilter } from './definition.js';
import type { ProjectionDefinition } from './definition.js';
import { MemoryReadModelStore } from './memory-store.js';
import type { ReadModelSnapshot } from './memory-store.js';
import type { Collections } from './read-model.js';

/** An event for a test: the stream matters (filters, document ids); the rest is optional. */
export interface GivenEvent {
  stream: string;
  type: string;
  data?: unknown;
  metadata?: Record<string, unknown>;
  /** Commit time, ms since the epoch. @default now */
  timestamp?: number;
  id?: string;
}

export interface ProjectionSpec {
  /** More events, after the given ones (for readability: they are applied the same way). */
  when(events: GivenEvent[]): ProjectionSpec;
  /** The whole read model equals this: collection -> id -> document (collections without documents left out). */
  then(expected: ReadModelSnapshot): Promise<void>;
  /** One document equals this (undefined: there is none). */
  thenDocument(collection: string, id: string, expected: unknown): Promise<void>;
  /** A handler fails: the error (a ProjectionFaultedError, its `cause` the handler's) matches a class, a RegExp on the message, or a predicate. */
  thenThrows(expected?: (new (...args: never[]) => Error) | RegExp | ((err: unknown) => boolean)): Promise<void>;
  /** The read model after the events. */
  state(): Promise<ReadModelSnapshot>;
}

const encoder = new TextEncoder();

/** Turns test events into stored events: positions from 1, revisions per stream. */
export function recordedEvents(events: GivenEvent[]): RecordedEvent[] {
  if (!Array.isArray(events)) throw new InvalidArgumentError('events must be an array of { stream, type, data?, metadata? }');
  const revisions = new Map<string, number>();
  return events.map((e, i) => {
    if (typeof e?.stream !== 'string' || e.stream.length === 0 || typeof e.type !== 'string' || e.type.length === 0) {
      throw new InvalidArgumentError(`event ${i}: a test event needs a stream and a type`);
    }
    const revision = (revisions.get(e.stream) ?? -1) + 1;
    revisions.set(e.stream, revision);
    const id = new Uint8Array(16);
    uuidToBytes(e.id ?? newEventId(), id, 0);
    const binary = e.data instanceof Uint8Array;
    const data = binary ? (e.data as Uint8Array) : e.data === undefined ? new Uint8Array(0) : encoder.encode(JSON.stringify(e.data));
    const metadata = e.metadata === undefined ? undefined : encoder.encode(JSON.stringify(e.metadata));
    return RecordedEvent.fromParts(i + 1, e.stream, revision, id, e.type, binary ? CONTENT_TYPE_BINARY : CONTENT_TYPE_JSON, e.timestamp ?? Date.now(), metadata, data);
  });
}

export function givenProjectionEvents<S extends Collections = Record<string, any>>(definition: ProjectionDefinition<S>, events: GivenEvent[]): ProjectionSpec {
  const compiled = compileProjection(definition as ProjectionDefinition);
  const spec = (all: GivenEvent[]): ProjectionSpec => {
    recordedEvents(all); // bad test events fail here, at the call
    const run = async (): Promise<ReadModelSnapshot> => {
      // Made afresh for each run: a handler that changes an event's data cannot change the next run.
      const recorded = recordedEvents(all).filter((e) => matchesFilter(compiled.filter, e.stream, e.type));
      const store = new MemoryReadModelStore();
      const slot = await store.createSlot(compiled.name, `v${compiled.version}`, compiled.version);
      await store.activate(compiled.name, slot.slot);
      const batch = store.batch(compiled.name, slot.slot);
      await applyEvents(compiled, recorded, 0, recorded.length, batch);
      await store.commit(batch, 0, { position: all.length, eventTimestamp: batch.lastTimestamp });
      return store.snapshot(compiled.name);
    };
    return {
      when: (more) => spec([...all, ...more]),
      async then(expected) {
        assert.deepStrictEqual(await run(), expected);
      },
      async thenDocument(collection, id, expected) {
        const state = await run();
        assert.deepStrictEqual(state[collection]?.[id], expected);
      },
      async thenThrows(expected) {
        let thrown: unknown;
        try {
          await run();
        } catch (err) {
          thrown = err;
        }
        assert.ok(thrown !== undefined, 'expected a handler to throw, but the projection applied every event');
        if (expected === undefined) return;
        const cause = (thrown as Error).cause;
        if (expected instanceof RegExp) assert.match(String((thrown as Error)?.message ?? thrown), expected);
        else if (expected.prototype instanceof Error || expected === Error) {
          const cls = expected as new () => Error;
          assert.ok(thrown instanceof cls || cause instanceof cls, `expected ${cls.name}, got ${String(thrown)}`);
        } else assert.ok((expected as (err: unknown) => boolean)(thrown), `the error did not match: ${String(thrown)}`);
      },
      state: run,
    };
  };
  return spec([...events]);
}
