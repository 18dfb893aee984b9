/**
 * given / when / then for deciders: state from past events, a command, and what must follow.
 *
 *   await givenEvents(orderDecider, [{ type: 'OrderPlaced', data: { id: 'o-1' } }])
 *     .when({ type: 'Ship' })
 *     .then([{ type: 'OrderShipped', data: { id: 'o-1' } }]);
 *
 * Comparisons are deep and strict on each event's type and data (and metadata when the
 * expectation gives it), with node:assert, so a failure shows the difference.
 *
 * With `upcasters`, the given events go through them before `evolve`, as stored events do in
 * `handleCommand`: a test can give events in their old shapes, as the log holds them (an
 * event's version is its `metadata.schemaVersion`). The views the transforms see have no
 * stream, id or log position (empty, 0).
 */
import assert from 'node:assert/strict';
import { CONTENT_TYPE_JSON } from '../core/events.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Upcasters } from '../core/upcast.js';
import type { Decider, DeciderEvent } from './index.js';

export interface GivenOptions {
  /** Applied to each given event before `evolve`, as `handleCommand` applies them to stored events. */
  upcasters?: Upcasters;
}

export interface When<State> {
  /** The command decides exactly these events (type and data; metadata when given). */
  then(expected: DeciderEvent[]): Promise<void>;
  /** The command is refused: decide throws an error matching `expected` (class, RegExp on the message, or predicate). */
  thenThrows(expected?: (new (...args: never[]) => Error) | RegExp | ((err: unknown) => boolean)): Promise<void>;
  /** The state after the decided events equals `expected`. */
  thenState(expected: unknown): Promise<void>;
}

export function givenEvents<Command, State>(decider: Decider<Command, State>, events: DeciderEvent[], options: GivenOptions = {}): { when(command: Command): When<State> } {
  for (const key of Object.keys(options)) if (key !== 'upcasters') throw new InvalidArgumentError(`unknown givenEvents option '${key}'; known: upcasters`);
  const { upcasters } = options;
  const current = (e: DeciderEvent, i: number): DeciderEvent => {
    if (upcasters === undefined) return { revision: i, ...e };
    const revision = e.revision ?? i;
    const v = upcasters.apply({ id: '', stream: '', revision, position: 0, timestamp: 0, contentType: CONTENT_TYPE_JSON, type: e.type, data: e.data, metadata: e.metadata ?? {} });
    return { type: v.type, data: v.data, metadata: v.metadata, revision };
  };
  const state = events.reduce((s, e, i) => decider.evolve(s, current(e, i)), decider.initialState);
  return {
    when(command: Command): When<State> {
      const decided = async (): Promise<DeciderEvent[]> => decider.decide(command, state);
      return {
        async then(expected) {
          const got = await decided();
          const shape = (es: DeciderEvent[], withMeta: boolean[]) => es.map((e, i) => (withMeta[i] ? { type: e.type, data: e.data, metadata: e.metadata } : { type: e.type, data: e.data }));
          const withMeta = expected.map((e) => e.metadata !== undefined);
          assert.deepStrictEqual(shape(got, withMeta), shape(expected, withMeta));
        },
        async thenThrows(expected) {
          let thrown: unknown;
          try {
            await decided();
          } catch (err) {
            thrown = err;
          }
          assert.ok(thrown !== undefined, 'expected the command to be refused, but decide returned events');
          if (expected === undefined) return;
          if (expected instanceof RegExp) assert.match(String((thrown as Error)?.message ?? thrown), expected);
          else if (expected.prototype instanceof Error || expected === Error) assert.ok(thrown instanceof (expected as new () => Error), `expected ${(expected as { name: string }).name}, got ${String(thrown)}`);
          else assert.ok((expected as (err: unknown) => boolean)(thrown), `the error did not match: ${String(thrown)}`);
        },
        async thenState(expected) {
          const got = await decided();
          const after = got.reduce((s, e, i) => decider.evolve(s, { revision: events.length + i, ...e }), state);
          assert.deepStrictEqual(after, expected);
        },
      };
    },
  };
}
