/**
 * Command handling with the Decider pattern: state is a fold of a stream's events (`evolve`
 * from `initialState`); a command is decided against that state (`decide`), and the events it
 * yields are appended with the stream's revision as the expected revision. When another writer
 * got there first, the stream is read on from where it was, folded again, and the command
 * decided again, after a short back-off, up to `retries` times.
 *
 * Works with any EventStore: the embedded store and the client alike.
 */
import { InvalidArgumentError, WrongExpectedRevisionError } from '../core/errors.js';
import type { AppendResult, EventInput, EventStore } from '../core/events.js';

/** An event as a decider sees it: its type, data and metadata (and, once stored, its revision). */
export interface DeciderEvent {
  type: string;
  data?: unknown;
  metadata?: Record<string, unknown>;
  /** The event's revision in its stream; undefined for events just decided, not yet stored. */
  revision?: number;
}

export interface Decider<Command, State> {
  initialState: State;
  /** The events a command produces in a state; throw to refuse the command. May be async. */
  decide(command: Command, state: State): DeciderEvent[] | Promise<DeciderEvent[]>;
  /** The state after one event. Pure. */
  evolve(state: State, event: DeciderEvent): State;
}

export interface HandleOptions {
  /** Attempts after a concurrency conflict. @default 10 */
  retries?: number;
  /** First pause after a conflict; doubles each time, with jitter. @default 5 ms */
  backoffMs?: number;
  /** Metadata added to every event decided (correlation and causation ids, the actor). */
  metadata?: Record<string, unknown>;
}

export interface HandleResult<State> {
  /** The events appended (empty when the command decided nothing). */
  events: DeciderEvent[];
  /** The state after them. */
  state: State;
  /** The stream's revision after the command (-1: the stream still does not exist). */
  revision: number;
  /** Log positions of the appended events. */
  positions: number[];
  /** Attempts it took (1 without conflicts). */
  attempts: number;
}

/** The state of a stream: every event folded from `initialState`, with its revision. */
export async function loadState<State>(
  store: EventStore,
  stream: string,
  decider: Pick<Decider<unknown, State>, 'initialState' | 'evolve'>,
  from?: { state: State; revision: number },
): Promise<{ state: State; revision: number }> {
  let state = from?.state ?? decider.initialState;
  let revision = from?.revision ?? -1;
  for await (const page of store.readStream(stream, { from: revision + 1 }).pages()) {
    for (const e of page) {
      state = decider.evolve(state, { type: e.type, data: e.data, metadata: e.metadata, revision: e.revision });
      revision = e.revision;
    }
  }
  return { state, revision };
}

/**
 * Loads the stream, decides the command, appends what it decided with the expected revision,
 * and retries on a conflict. Errors from `decide` (a refused command) are thrown as they are.
 */
export async function handleCommand<Command, State>(
  store: EventStore,
  stream: string,
  decider: Decider<Command, State>,
  command: Command,
  options: HandleOptions = {},
): Promise<HandleResult<State>> {
  const retries = options.retries ?? 10;
  const backoff = options.backoffMs ?? 5;
  if (!Number.isSafeInteger(retries) || retries < 0) throw new InvalidArgumentError('retries must be an integer >= 0');
  let loaded = await loadState(store, stream, decider);
  for (let attempt = 1; ; attempt++) {
    const events = await decider.decide(command, loaded.state);
    if (!Array.isArray(events)) throw new InvalidArgumentError('decide must return an array of events');
    if (events.length === 0) return { events: [], state: loaded.state, revision: loaded.revision, positions: [], attempts: attempt };
    const inputs: EventInput[] = events.map((e) => ({
      type: e.type,
      data: e.data,
      ...(e.metadata !== undefined || options.metadata !== undefined ? { metadata: { ...options.metadata, ...e.metadata } } : {}),
    }));
    let result: AppendResult;
    try {
      result = await store.append(stream, inputs, { expectedRevision: loaded.revision < 0 ? 'no_stream' : loaded.revision });
    } catch (err) {
      if (!(err instanceof WrongExpectedRevisionError) || attempt > retries) throw err;
      // Someone else appended: read on from where we were, and decide again.
      await new Promise((r) => setTimeout(r, backoff * 2 ** (attempt - 1) * (0.5 + Math.random() / 2)));
      loaded = await loadState(store, stream, decider, loaded);
      continue;
    }
    let state = loaded.state;
    const stored = events.map((e, i) => ({ ...e, revision: result.revision - events.length + 1 + i }));
    for (const e of stored) state = decider.evolve(state, e);
    return { events: stored, state, revision: result.revision, positions: result.positions, attempts: attempt };
  }
}
