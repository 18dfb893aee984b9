/**
 * What a projection is: a name, a version, a filter over the log, and either handlers per event
 * type (any number of collections) or an `evolve` function over one document per id. This
 * module checks definitions and turns them into what the runner needs; it never touches a
 * store.
 */
import { InvalidArgumentError, ProjectionFaultedError } from '../core/errors.js';
import type { ReadAllFilter, RecordedEvent } from '../core/events.js';
import { Upcasters } from '../core/upcast.js';
import type { EventView } from '../core/upcast.js';
import { DeferredUpdateError, checkCollection, checkProjectionName, checkVersion, cloneJson } from './read-model.js';
import type { Batch, Collections, ReadModel, UpdateResult } from './read-model.js';

/** Handles one event: reads and writes the read model. May be async. */
export type ProjectionHandler<S extends Collections = Record<string, any>> = (event: EventView, model: ReadModel<S>) => void | Promise<void>;

interface ProjectionCommon {
  /** 1 to 40 letters, digits and single '_' between them, starting with a letter; names tables in PostgreSQL. */
  name: string;
  /**
   * The version of the handlers' logic. Bump it when a change needs the whole log replayed:
   * the new version is built beside the old one, which serves queries until it is replaced.
   * @default 1
   */
  version?: number;
  /**
   * Which events the projection reads, filtered by the event store (on the server, for the
   * client). Streams starting with '$' (Eventful's own) are left out unless a `streamPrefix` or
   * `category` names them. @default all events; with `handlers` and no upcasters, `types` defaults to the handled types
   */
  filter?: ReadAllFilter;
  /** Applied to every event before a handler sees it: handlers only see current shapes. */
  upcasters?: Upcasters;
}

/** A projection with a handler per event type; events of other types are skipped. */
export interface HandlersProjection<S extends Collections = Record<string, any>> extends ProjectionCommon {
  handlers: { readonly [type: string]: ProjectionHandler<S> };
}

/**
 * A projection of one document per id in one collection, folded like a decider's state:
 * `evolve(doc, event)` gives the document after the event.
 */
export interface DocumentProjection<D = any> extends ProjectionCommon {
  collection: string;
  /** The id of the document an event changes; undefined to skip the event. Often `(e) => e.stream`. */
  documentId(event: EventView): string | undefined;
  /** The document before its first event (copied for each new document). */
  initialState: D;
  /**
   * The document after the event: a new one, `undefined` to keep the one given (changed in
   * place or not), or `null` to delete it. Synchronous and deterministic.
   */
  evolve(doc: D, event: EventView): UpdateResult<D>;
}

export type ProjectionDefinition<S extends Collections = Record<string, any>> = HandlersProjection<S> | DocumentProjection<any>;

/** Checks a definition and returns it frozen; gives the handlers' `model` its document types. */
export function defineProjection<S extends Collections = Record<string, any>>(definition: HandlersProjection<S>): HandlersProjection<S>;
export function defineProjection<D>(definition: DocumentProjection<D>): DocumentProjection<D>;
export function defineProjection(definition: ProjectionDefinition): ProjectionDefinition {
  compileProjection(definition);
  return Object.freeze({ ...definition });
}

/** A definition made ready to run. */
export interface CompiledProjection {
  readonly name: string;
  readonly version: number;
  readonly definition: ProjectionDefinition;
  /** The filter given to the event store. */
  readonly filter: ReadAllFilter | undefined;
  /** Whether events of '$' streams must be skipped here (the store's filter lets them through). */
  readonly skipSystem: boolean;
  readonly upcasters: Upcasters | undefined;
  /** A handler per type, or one for every type. */
  readonly handlers: Readonly<Record<string, ProjectionHandler>> | undefined;
  readonly handleAll: ProjectionHandler | undefined;
}

const COMMON_KEYS = ['name', 'version', 'filter', 'upcasters'];
const HANDLER_KEYS = [...COMMON_KEYS, 'handlers'];
const DOCUMENT_KEYS = [...COMMON_KEYS, 'collection', 'documentId', 'initialState', 'evolve'];
const FILTER_KEYS = ['streamPrefix', 'category', 'types'];

function list(v: unknown, what: string): string[] | undefined {
  if (v === undefined) return undefined;
  const arr = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(arr) || arr.length === 0 || arr.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new InvalidArgumentError(`filter.${what} must be a non-empty string or a non-empty array of them`);
  }
  return [...(arr as string[])];
}

export function compileProjection(definition: ProjectionDefinition): CompiledProjection {
  if (typeof definition !== 'object' || definition === null) throw new InvalidArgumentError('a projection definition must be an object');
  const d = definition as unknown as Record<string, unknown>;
  const isDocument = 'evolve' in d || 'documentId' in d || 'collection' in d;
  if (isDocument && 'handlers' in d) throw new InvalidArgumentError('a projection has either handlers, or collection + documentId + initialState + evolve, not both');
  const known = isDocument ? DOCUMENT_KEYS : HANDLER_KEYS;
  for (const k of Object.keys(d)) if (!known.includes(k)) throw new InvalidArgumentError(`unknown projection field '${k}'; known: ${known.join(', ')}`);
  const name = checkProjectionName(d.name);
  const version = checkVersion(d.version ?? 1);
  if (d.upcasters !== undefined && !(d.upcasters instanceof Upcasters)) throw new InvalidArgumentError('upcasters must be an Upcasters registry');
  const upcasters = d.upcasters !== undefined && (d.upcasters as Upcasters).size > 0 ? (d.upcasters as Upcasters) : undefined;

  let handlers: Record<string, ProjectionHandler> | undefined;
  let handleAll: ProjectionHandler | undefined;
  if (isDocument) {
    const def = definition as DocumentProjection;
    const collection = checkCollection(def.collection);
    if (typeof def.documentId !== 'function') throw new InvalidArgumentError('documentId must be a function of the event');
    if (typeof def.evolve !== 'function') throw new InvalidArgumentError('evolve must be a function (doc, event) => doc');
    if (!('initialState' in d) || def.initialState === undefined || def.initialState === null) throw new InvalidArgumentError('initialState is required: the document before its first event');
    const { documentId, evolve, initialState } = def;
    handleAll = (event, model) => {
      const id = documentId(event);
      if (id === undefined) return;
      model.update(collection, id, (doc: unknown) => {
        const cur = doc === undefined ? cloneJson(initialState) : doc;
        const next = evolve(cur, event);
        return next === undefined ? cur : next;
      });
    };
  } else {
    const h = d.handlers;
    if (typeof h !== 'object' || h === null || Array.isArray(h)) throw new InvalidArgumentError('handlers must be an object: event type -> (event, model) => void');
    handlers = Object.create(null) as Record<string, ProjectionHandler>;
    for (const [type, fn] of Object.entries(h)) {
      if (typeof fn !== 'function') throw new InvalidArgumentError(`handlers.${type} must be a function (event, model) => void`);
      handlers[type] = fn as ProjectionHandler;
    }
    if (Object.keys(handlers).length === 0) throw new InvalidArgumentError('a projection needs at least one handler');
  }

  let filter: ReadAllFilter | undefined;
  if (d.filter !== undefined) {
    const f = d.filter as Record<string, unknown>;
    if (typeof f !== 'object' || f === null) throw new InvalidArgumentError('filter must be an object { category?, streamPrefix?, types? }');
    for (const k of Object.keys(f)) if (!FILTER_KEYS.includes(k)) throw new InvalidArgumentError(`unknown filter field '${k}'; known: ${FILTER_KEYS.join(', ')}`);
    filter = {};
    const prefixes = list(f.streamPrefix, 'streamPrefix');
    const categories = list(f.category, 'category');
    const types = list(f.types, 'types');
    if (prefixes) filter.streamPrefix = prefixes;
    if (categories) filter.category = categories;
    if (types) filter.types = types;
  }
  // Without upcasters the handled types are the only ones that matter: let the store skip the
  // rest (over the network, they are then never sent). With upcasters an old type may become a
  // handled one, and only the user knows the old names.
  if (handlers !== undefined && upcasters === undefined && filter?.types === undefined) {
    filter = { ...filter, types: Object.keys(handlers) };
  }
  if (filter !== undefined && Object.keys(filter).length === 0) filter = undefined;
  // A stream filter never matches a '$' stream unless one of its prefixes or categories starts with '$'.
  const skipSystem = filter?.streamPrefix === undefined && filter?.category === undefined;
  return Object.freeze({ name, version, definition, filter, skipSystem, upcasters, handlers, handleAll });
}

/** Whether an event passes a filter, as the event store decides it (for events that did not come from a store). */
export function matchesFilter(filter: ReadAllFilter | undefined, stream: string, type: string): boolean {
  if (filter === undefined) return true;
  const asList = (v: string | string[] | undefined): string[] | undefined => (v === undefined ? undefined : typeof v === 'string' ? [v] : v);
  const prefixes = asList(filter.streamPrefix);
  if (prefixes !== undefined && !prefixes.some((p) => stream.startsWith(p))) return false;
  const categories = asList(filter.category);
  if (categories !== undefined) {
    const dash = stream.indexOf('-');
    if (!categories.includes(dash < 0 ? stream : stream.slice(0, dash))) return false;
  }
  const types = asList(filter.types);
  if (types !== undefined && !types.includes(type)) return false;
  return true;
}

/** The fault of a handler (or upcaster) on an event. */
export function handlerFault(p: CompiledProjection, slot: string, event: Pick<EventView, 'position' | 'stream' | 'type'> | undefined, err: unknown): ProjectionFaultedError {
  if (err instanceof ProjectionFaultedError) return err;
  const message = (err as Error)?.message ?? String(err);
  const where = event === undefined ? '' : ` on event ${event.position} (${event.type} in ${event.stream})`;
  return new ProjectionFaultedError(
    `projection '${p.name}' (slot ${slot}) failed${where}: ${message}`,
    { projection: p.name, version: p.version, slot, position: event?.position, stream: event?.stream, type: event?.type },
    err,
  );
}

/**
 * Applies events `from` to `to` (exclusive) of a page to a batch: skips '$' streams when
 * asked, upcasts, calls the handler. Synchronous handlers cost no promise; an async one is
 * awaited before the next event. Stops early once `deadline` (performance.now() ms) has passed,
 * checked after each awaited handler and every 256 events, and returns the index it reached.
 * A handler's error is thrown as a ProjectionFaultedError naming the event; the batch must then
 * be discarded.
 */
export async function applyEvents(p: CompiledProjection, page: readonly RecordedEvent[], from: number, to: number, batch: Batch, deadline = Infinity): Promise<number> {
  const { skipSystem, upcasters, handlers, handleAll } = p;
  let i = from;
  while (i < to) {
    const raw = page[i++]!;
    if (skipSystem && raw.stream.charCodeAt(0) === 36 /* '$' */) continue;
    let event: EventView = raw;
    try {
      if (upcasters !== undefined) event = upcasters.apply(raw);
      const h = handleAll ?? handlers![event.type];
      if (h === undefined) continue;
      batch.event = event;
      const r = h(event, batch);
      if (r !== undefined && typeof (r as Promise<void>).then === 'function') {
        await r;
        if (performance.now() >= deadline) {
          batch.applied++;
          break;
        }
      }
    } catch (err) {
      // A deferred update that failed when this handler read its document belongs to the event that made it.
      if (err instanceof DeferredUpdateError) throw handlerFault(p, batch.slot, err.event, err.cause);
      throw handlerFault(p, batch.slot, raw, err);
    }
    batch.applied++;
    if ((i & 255) === 0 && deadline !== Infinity && performance.now() >= deadline) break;
  }
  if (i > from) {
    const last = page[i - 1]!;
    batch.events += i - from;
    batch.lastPosition = last.position;
    batch.lastTimestamp = last.timestamp;
  }
  return i;
}
