// Proves that for random sequences of appends (valid and invalid, with every kind of expected revision, idempotent and conflicting re-sends, concurrent group-committed batches), stream and $all reads with filters, stream queries and close/reopen cycles, the file store answers exactly like a simple in-memory event store model.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  EventInvalidError,
  IdempotencyConflictError,
  InvalidArgumentError,
  StoreClosedError,
  StreamNameInvalidError,
  WrongExpectedRevisionError,
} from '../../src/core/errors.js';
import { CONTENT_TYPE_BINARY, CONTENT_TYPE_JSON, categoryOf } from '../../src/core/events.js';
import type { AppendResult, EventInput, EventReader, ExpectedRevision, ReadAllFilter, RecordedEvent, StreamInfo } from '../../src/core/events.js';
import { openStore } from '../../src/streams/store.js';
import type { FileEventStore, OpenStoreOptions } from '../../src/streams/store.js';

// ---------------------------------------------------------------------------------------------
// Vocabulary of the generated commands

const STREAMS = ['order-1', 'order-2', 'orders-1', 'user-1', 'user-10', 'user-1-a', 'user', 'x', 'café-1'] as const;
const INVALID_STREAMS = ['', 'has space', '$system', 'tab\there'] as const;
const TYPES = ['OrderPlaced', 'OrderShipped', 'UserRegistered', 'Ping', 'Événement'] as const;
const PREFIXES = ['o', 'order', 'order-', 'orders', 'user', 'user-1', 'user-10', 'x', 'café', 'z'] as const;
const CATEGORIES = ['order', 'orders', 'user', 'x', 'café', 'nope'] as const;
const FILTER_TYPES = [...TYPES, 'Nope'] as const;

type DataSpec =
  | { kind: 'none' }
  | { kind: 'json'; value: unknown }
  /** `{ pad: 'x'.repeat(bytes), tag }`: a JSON payload of a chosen size, so segments roll. */
  | { kind: 'padded'; bytes: number; tag: number }
  | { kind: 'binary'; bytes: number; contentType: string | undefined };

interface EventSpec {
  type: string;
  data: DataSpec;
  metadata: Record<string, unknown> | undefined;
  /** 'auto': the store generates the id; otherwise a fresh explicit id in that letter case. */
  id: 'auto' | 'lower' | 'upper';
}

type ExpectSpec =
  | { kind: 'omit' | 'any' | 'no_stream' | 'stream_exists' | 'right' }
  /** A revision `delta` away from the stream's (never the right one). */
  | { kind: 'wrong'; delta: number };

interface AppendCmd {
  kind: 'append';
  stream: string;
  events: EventSpec[];
  expect: ExpectSpec;
  invalid: 'none' | 'emptyType' | 'dupId';
}

/**
 * Re-sends an earlier successful append (picked by `pick`): verbatim (a retry), with its last id
 * changed, or with one more event (both only partly a retry: a conflict).
 */
interface ResendCmd {
  kind: 'resend';
  pick: number;
  variant: 'verbatim' | 'changedLast' | 'extended';
}

type FromSpec = undefined | 'start' | 'end' | 'invalid' | { frac: number; delta: number };
type LimitSpec = undefined | number | 'invalid';

type Cmd =
  | AppendCmd
  | ResendCmd
  | { kind: 'group'; items: Array<AppendCmd | ResendCmd> }
  | { kind: 'readStream'; stream: string; from: FromSpec; direction: 'forwards' | 'backwards' | undefined; limit: LimitSpec; iterate: boolean }
  | {
      kind: 'readAll';
      from: FromSpec;
      direction: 'forwards' | 'backwards' | undefined;
      limit: LimitSpec;
      filter: ReadAllFilter | undefined;
      iterate: boolean;
    }
  | { kind: 'streamInfo'; stream: string }
  | { kind: 'head' }
  | { kind: 'listStreams'; prefix: string | undefined; after: string | undefined; limit: number | undefined }
  | { kind: 'reopen' };

interface RunConfig {
  indexMemtableEventsMax: number;
  readChunkBytes: number;
  openSegmentsMax: number;
  indexFlushIntervalMs: number;
}

// ---------------------------------------------------------------------------------------------
// Generators

const validStreamArb = fc.constantFrom(...STREAMS);
const streamArb = fc.oneof({ weight: 12, arbitrary: validStreamArb }, { weight: 1, arbitrary: fc.constantFrom(...INVALID_STREAMS) });

const dataArb: fc.Arbitrary<DataSpec> = fc.oneof(
  { weight: 1, arbitrary: fc.constant<DataSpec>({ kind: 'none' }) },
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2, stringUnit: 'grapheme' }).map((value): DataSpec => ({ kind: 'json', value })) },
  {
    weight: 4,
    arbitrary: fc
      .record({
        // Mostly a few KiB, so that a run's log rolls past its 64 KiB segment.
        bytes: fc.oneof({ weight: 1, arbitrary: fc.integer({ min: 0, max: 256 }) }, { weight: 2, arbitrary: fc.integer({ min: 2048, max: 8192 }) }),
        tag: fc.nat(9),
      })
      .map(({ bytes, tag }): DataSpec => ({ kind: 'padded', bytes, tag })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ bytes: fc.integer({ min: 0, max: 2048 }), contentType: fc.constantFrom(undefined, CONTENT_TYPE_BINARY, 'image/png') })
      .map(({ bytes, contentType }): DataSpec => ({ kind: 'binary', bytes, contentType })),
  },
);

const metadataArb = fc.option(
  fc.oneof(
    fc.constant({}),
    fc.dictionary(fc.constantFrom('correlationId', 'causationId', 'actor', 'n'), fc.jsonValue({ maxDepth: 1 }), { minKeys: 1, maxKeys: 3 }),
  ),
  { nil: undefined, freq: 2 },
);

const eventSpecArb: fc.Arbitrary<EventSpec> = fc.record({
  type: fc.constantFrom(...TYPES),
  data: dataArb,
  metadata: metadataArb,
  id: fc.constantFrom<EventSpec['id']>('auto', 'auto', 'lower', 'upper'),
});

const expectArb: fc.Arbitrary<ExpectSpec> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<ExpectSpec>({ kind: 'right' }) },
  { weight: 3, arbitrary: fc.constantFrom<ExpectSpec>({ kind: 'omit' }, { kind: 'any' }) },
  { weight: 2, arbitrary: fc.constantFrom<ExpectSpec>({ kind: 'no_stream' }, { kind: 'stream_exists' }) },
  { weight: 2, arbitrary: fc.integer({ min: -3, max: 3 }).filter((d) => d !== 0).map((delta): ExpectSpec => ({ kind: 'wrong', delta })) },
);

const appendArb: fc.Arbitrary<AppendCmd> = fc.record({
  kind: fc.constant('append' as const),
  stream: streamArb,
  events: fc.array(eventSpecArb, { minLength: 1, maxLength: 5 }),
  expect: expectArb,
  invalid: fc.oneof({ weight: 20, arbitrary: fc.constant('none' as const) }, { weight: 1, arbitrary: fc.constantFrom('emptyType' as const, 'dupId' as const) }),
});

const resendArb: fc.Arbitrary<ResendCmd> = fc.record({
  kind: fc.constant('resend' as const),
  pick: fc.nat(1000),
  variant: fc.constantFrom<ResendCmd['variant']>('verbatim', 'verbatim', 'changedLast', 'extended'),
});

const fromArb: fc.Arbitrary<FromSpec> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom<FromSpec>(undefined, 'start', 'end') },
  { weight: 4, arbitrary: fc.record({ frac: fc.integer({ min: 0, max: 100 }), delta: fc.integer({ min: -2, max: 2 }) }) },
  { weight: 1, arbitrary: fc.constant<FromSpec>('invalid') },
);
const limitArb: fc.Arbitrary<LimitSpec> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<LimitSpec>(undefined) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 12 }) },
  { weight: 1, arbitrary: fc.constant<LimitSpec>(10_000) },
  { weight: 1, arbitrary: fc.constant<LimitSpec>('invalid') },
);
const directionArb = fc.constantFrom(undefined, 'forwards' as const, 'backwards' as const);

function oneOrMany<T extends string>(values: readonly T[]): fc.Arbitrary<T | T[]> {
  return fc.oneof(fc.constantFrom(...values), fc.uniqueArray(fc.constantFrom(...values), { minLength: 1, maxLength: 3 }));
}

const filterArb: fc.Arbitrary<ReadAllFilter | undefined> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  {
    weight: 6,
    arbitrary: fc.record(
      { streamPrefix: oneOrMany(PREFIXES), category: oneOrMany(CATEGORIES), types: oneOrMany(FILTER_TYPES) },
      { requiredKeys: [] },
    ),
  },
  // Invalid filters: an empty string or an empty list.
  { weight: 1, arbitrary: fc.constantFrom<ReadAllFilter>({ streamPrefix: '' }, { category: [] }, { types: ['Ping', ''] }) },
);

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 30, arbitrary: appendArb },
  { weight: 8, arbitrary: resendArb },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('group' as const),
      items: fc.array(fc.oneof({ weight: 3, arbitrary: appendArb }, { weight: 1, arbitrary: resendArb }), { minLength: 2, maxLength: 4 }),
    }),
  },
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('readStream' as const),
      stream: fc.oneof({ weight: 8, arbitrary: validStreamArb }, { weight: 1, arbitrary: fc.constantFrom(...INVALID_STREAMS, 'nobody-1') }),
      from: fromArb,
      direction: directionArb,
      limit: limitArb,
      iterate: fc.boolean(),
    }),
  },
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('readAll' as const),
      from: fromArb,
      direction: directionArb,
      limit: limitArb,
      filter: filterArb,
      iterate: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('streamInfo' as const), stream: fc.oneof(validStreamArb, fc.constantFrom(...INVALID_STREAMS)) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'head' as const }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('listStreams' as const),
      prefix: fc.option(fc.constantFrom('', ...PREFIXES), { nil: undefined }),
      after: fc.option(fc.constantFrom(...STREAMS, 'a', 'user-'), { nil: undefined, freq: 3 }),
      limit: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined, freq: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

const configArb: fc.Arbitrary<RunConfig> = fc.record({
  indexMemtableEventsMax: fc.constantFrom(4, 64, 200_000),
  readChunkBytes: fc.constantFrom(2048, 8192, 1024 * 1024),
  openSegmentsMax: fc.constantFrom(1, 2, 64),
  indexFlushIntervalMs: fc.constantFrom(5, 3_600_000),
});

// ---------------------------------------------------------------------------------------------
// The model

interface MEvent {
  position: number;
  stream: string;
  revision: number;
  type: string;
  contentType: string;
  /** What `data` must decode to: a JSON value, or the bytes. */
  data: unknown;
  metadata: Record<string, unknown>;
  /** Lower-case id; for store-generated ids, learned on first sight. */
  id: string | undefined;
  /** Commit time; learned on first sight, must lie in [tsLo, tsHi]. */
  ts: number | undefined;
  tsLo: number;
  tsHi: number;
}

interface Written {
  stream: string;
  inputs: EventInput[];
  options: { expectedRevision: ExpectedRevision } | undefined;
  result: AppendResult;
}

type Outcome =
  | { kind: 'ok'; result: AppendResult; writes: boolean }
  | { kind: 'streamNameInvalid' }
  | { kind: 'eventInvalid' }
  | { kind: 'wrong'; expected: string | number; actual: number }
  | { kind: 'conflict' };

class Model {
  events: MEvent[] = [];
  streams = new Map<string, MEvent[]>();
  byId = new Map<string, MEvent>();
  written: Written[] = [];

  get head(): number {
    return this.events.length;
  }

  revision(stream: string): number {
    return (this.streams.get(stream)?.length ?? 0) - 1;
  }

  at(position: number): MEvent {
    const e = this.events[position - 1];
    assert.ok(e, `model has position ${position}`);
    return e;
  }

  learnId(e: MEvent, id: string, ctx: string): void {
    if (e.id !== undefined) {
      assert.equal(id, e.id, `${ctx}: id of position ${e.position}`);
      return;
    }
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, `${ctx}: generated id is a lower-case UUID`);
    assert.equal(this.byId.get(id), undefined, `${ctx}: generated id ${id} is unique`);
    e.id = id;
    this.byId.set(id, e);
  }

  learnTs(e: MEvent, ts: number, ctx: string): void {
    if (e.ts !== undefined) {
      assert.equal(ts, e.ts, `${ctx}: timestamp of position ${e.position}`);
      return;
    }
    assert.ok(ts >= e.tsLo && ts <= e.tsHi, `${ctx}: timestamp ${ts} of position ${e.position} lies in [${e.tsLo}, ${e.tsHi}]`);
    e.ts = ts;
  }

  /**
   * The outcome of appending `inputs` now. Ids the model does not know (store-generated ones not
   * yet read, or auto ids of the input) never equal anything: every id in a run is fresh except
   * those of re-sends, whose originals' ids are learned before the re-send is planned.
   */
  predict(stream: string, inputs: EventInput[], options: { expectedRevision: ExpectedRevision } | undefined): Outcome {
    if (!validWriteName(stream)) return { kind: 'streamNameInvalid' };
    const ids = inputs.map((e, i) => (e.id === undefined ? `auto#${i}` : e.id.toLowerCase()));
    if (inputs.some((e) => e.type === '') || new Set(ids).size !== ids.length) return { kind: 'eventInvalid' };
    const raw = options === undefined ? 'any' : options.expectedRevision;
    const exp = raw === -1 ? 'no_stream' : raw;
    const rev = this.revision(stream);
    const n = inputs.length;
    const idOf = (e: MEvent): string => e.id ?? `unknown@${e.position}`;
    // The original result when the stream holds these ids from revision `from` on.
    const idempotent = (from: number): Outcome | undefined => {
      const found = (this.streams.get(stream) ?? []).slice(from, from + n);
      if (found.length === 0 || idOf(found[0]!) !== ids[0]) return undefined;
      for (let i = 0; i < n; i++) if (i >= found.length || idOf(found[i]!) !== ids[i]) return { kind: 'conflict' };
      return { kind: 'ok', result: { positions: found.map((e) => e.position), revision: from + n - 1 }, writes: false };
    };
    const fresh: Outcome = {
      kind: 'ok',
      result: { positions: Array.from({ length: n }, (_, i) => this.head + 1 + i), revision: rev + n },
      writes: true,
    };
    if (typeof exp === 'number' || exp === 'no_stream') {
      const r = exp === 'no_stream' ? -1 : exp;
      if (rev === r) return fresh;
      if (rev > r) {
        const dup = idempotent(r + 1);
        if (dup !== undefined) return dup;
      }
      return { kind: 'wrong', expected: exp, actual: rev };
    }
    // 'any' / 'stream_exists': a retry is recognised by its first id (the window holds every id of a run).
    const seen = this.byId.get(ids[0]!);
    if (seen !== undefined && seen.stream === stream && seen.revision <= rev) {
      const dup = idempotent(seen.revision);
      if (dup !== undefined) return dup;
    }
    if (exp === 'stream_exists' && rev < 0) return { kind: 'wrong', expected: exp, actual: rev };
    return fresh;
  }

  apply(stream: string, inputs: EventInput[], expectations: Array<Pick<MEvent, 'contentType' | 'data' | 'metadata'>>, tsLo: number): MEvent[] {
    let list = this.streams.get(stream);
    if (list === undefined) this.streams.set(stream, (list = []));
    const added: MEvent[] = [];
    inputs.forEach((input, i) => {
      const x = expectations[i]!;
      const e: MEvent = {
        position: this.head + 1,
        stream,
        revision: list.length,
        type: input.type,
        contentType: x.contentType,
        data: x.data,
        metadata: x.metadata,
        id: input.id?.toLowerCase(),
        ts: undefined,
        tsLo,
        tsHi: Number.MAX_SAFE_INTEGER,
      };
      this.events.push(e);
      list.push(e);
      if (e.id !== undefined) this.byId.set(e.id, e);
      added.push(e);
    });
    return added;
  }

  streamNames(prefix: string, after: string | undefined): string[] {
    return [...this.streams.keys()]
      .filter((s) => s.startsWith(prefix) && (after === undefined || Buffer.compare(Buffer.from(s), Buffer.from(after)) > 0))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }
}

function validReadName(s: string): boolean {
  return s.length > 0 && !/[\s\p{Cc}]/u.test(s);
}
function validWriteName(s: string): boolean {
  return validReadName(s) && !s.startsWith('$');
}

/** A deterministic, fresh UUID for the `n`th explicit id of a run. */
function explicitId(n: number, upper: boolean): string {
  const h = createHash('sha256').update(`event-${n}`).digest('hex');
  const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
  return upper ? id.toUpperCase() : id;
}

function binaryData(bytes: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

const roundTrip = (v: unknown): unknown => JSON.parse(JSON.stringify(v)) as unknown;

// ---------------------------------------------------------------------------------------------
// Running one scenario

interface Stats {
  ok: number;
  idempotent: number;
  wrong: number;
  conflict: number;
  invalid: number;
  reopens: number;
  multiSegmentRuns: number;
  runs: number;
}
const stats: Stats = { ok: 0, idempotent: 0, wrong: 0, conflict: 0, invalid: 0, reopens: 0, multiSegmentRuns: 0, runs: 0 };

type Attempt<T> = { ok: true; value: T } | { ok: false; error: unknown };
async function attempt<T>(f: () => Promise<T> | T): Promise<Attempt<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (error) {
    return { ok: false, error };
  }
}

function expectError(r: Attempt<unknown>, cls: new (...args: never[]) => Error, ctx: string): void {
  assert.ok(!r.ok, `${ctx}: expected ${cls.name}, got success ${r.ok ? JSON.stringify(r.value)?.slice(0, 300) : ''}`);
  if (!(r.error instanceof cls)) assert.fail(`${ctx}: expected ${cls.name}, got ${String(r.error)}`);
}

async function collect(reader: EventReader, iterate: boolean): Promise<RecordedEvent[]> {
  if (!iterate) return reader.toArray();
  const out: RecordedEvent[] = [];
  for await (const e of reader) out.push(e);
  return out;
}

async function runScenario(config: RunConfig, cmds: Cmd[]): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eventful-prop-'));
  try {
    await runIn(dir, config, cmds);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function runIn(dir: string, config: RunConfig, cmds: Cmd[]): Promise<void> {
  const options: OpenStoreOptions = {
    dir,
    durability: 'none',
    segmentBytes: 64 * 1024,
    indexFlushIntervalMs: config.indexFlushIntervalMs,
    limits: {
      // Small enough that a 2 KiB read chunk is allowed; our events stay far below it.
      eventBytesMax: 64 * 1024,
      metadataBytesMax: 16 * 1024,
      readChunkBytes: config.readChunkBytes,
      openSegmentsMax: config.openSegmentsMax,
      indexMemtableEventsMax: config.indexMemtableEventsMax,
    },
  };
  const model = new Model();
  let idCounter = 0;
  let store: FileEventStore = await openStore(options);

  const checkEvents = (actual: RecordedEvent[], expected: MEvent[], ctx: string): void => {
    assert.deepEqual(
      actual.map((e) => e.position),
      expected.map((e) => e.position),
      `${ctx}: positions`,
    );
    actual.forEach((a, i) => {
      const e = expected[i]!;
      const c = `${ctx}: position ${e.position}`;
      assert.equal(a.stream, e.stream, `${c}: stream`);
      assert.equal(a.revision, e.revision, `${c}: revision`);
      assert.equal(a.type, e.type, `${c}: type`);
      assert.equal(a.contentType, e.contentType, `${c}: contentType`);
      if (e.data instanceof Uint8Array) {
        assert.ok(a.data instanceof Uint8Array, `${c}: binary data comes back as bytes`);
        assert.ok(Buffer.from(a.data).equals(Buffer.from(e.data)), `${c}: binary data`);
      } else {
        assert.deepStrictEqual(a.data, e.data, `${c}: data`);
      }
      assert.deepStrictEqual(a.metadata, e.metadata, `${c}: metadata`);
      model.learnId(e, a.id, c);
      model.learnTs(e, a.timestamp, c);
    });
  };

  const checkInfo = (actual: StreamInfo | undefined, stream: string, ctx: string): void => {
    const list = model.streams.get(stream);
    if (list === undefined) {
      assert.equal(actual, undefined, `${ctx}: no info for '${stream}'`);
      return;
    }
    assert.ok(actual, `${ctx}: info for '${stream}'`);
    const first = list[0]!;
    const last = list[list.length - 1]!;
    model.learnTs(first, actual.createdAt, `${ctx}: createdAt of '${stream}'`);
    model.learnTs(last, actual.updatedAt, `${ctx}: updatedAt of '${stream}'`);
    assert.deepStrictEqual(
      actual,
      {
        stream,
        revision: last.revision,
        eventCount: list.length,
        firstPosition: first.position,
        lastPosition: last.position,
        createdAt: first.ts,
        updatedAt: last.ts,
      },
      `${ctx}: info of '${stream}'`,
    );
  };

  /** Cheap comparison after every command: head and every stream's info. */
  const checkSummary = async (ctx: string): Promise<void> => {
    assert.equal(await store.headPosition(), model.head, `${ctx}: headPosition`);
    const infos = await store.listStreams({ limit: 1000 });
    assert.deepEqual(
      infos.map((i) => i.stream),
      model.streamNames('', undefined),
      `${ctx}: listStreams names`,
    );
    for (const info of infos) checkInfo(info, info.stream, ctx);
  };

  /** Everything: the whole log both ways, every stream, every info. */
  const checkAll = async (ctx: string): Promise<void> => {
    await checkSummary(ctx);
    checkEvents(await store.readAll().toArray(), model.events, `${ctx}: readAll`);
    checkEvents(await store.readAll({ direction: 'backwards' }).toArray(), [...model.events].reverse(), `${ctx}: readAll backwards`);
    for (const [stream, list] of model.streams) {
      checkEvents(await store.readStream(stream).toArray(), list, `${ctx}: readStream '${stream}'`);
      checkInfo(await store.streamInfo(stream), stream, ctx);
    }
  };

  /** Reads back the events of an append whose store-generated ids the model has not seen yet. */
  const learnIds = async (w: Written, ctx: string): Promise<void> => {
    const first = w.result.positions[0]!;
    if (w.result.positions.every((p) => model.at(p).id !== undefined)) return;
    const got = await store.readAll({ from: first, limit: w.result.positions.length }).toArray();
    checkEvents(got, w.result.positions.map((p) => model.at(p)), `${ctx}: learning ids`);
  };

  interface Planned {
    stream: string;
    inputs: EventInput[];
    options: { expectedRevision: ExpectedRevision } | undefined;
    outcome: Outcome;
    added: MEvent[];
    resendOf: Written | undefined;
    conflict: boolean;
  }

  /** Builds an append's input from its spec against the model's current state, predicts and applies it. */
  const planAppend = (cmd: AppendCmd, tsLo: number): Planned => {
    const inputs: EventInput[] = [];
    const expectations: Array<Pick<MEvent, 'contentType' | 'data' | 'metadata'>> = [];
    for (const spec of cmd.events) {
      const input: EventInput = { type: spec.type };
      let contentType = CONTENT_TYPE_JSON;
      let data: unknown = null;
      switch (spec.data.kind) {
        case 'none':
          break;
        case 'json':
          input.data = spec.data.value;
          data = roundTrip(spec.data.value);
          break;
        case 'padded':
          input.data = { pad: 'x'.repeat(spec.data.bytes), tag: spec.data.tag };
          data = roundTrip(input.data);
          break;
        case 'binary':
          input.data = binaryData(spec.data.bytes);
          if (spec.data.contentType !== undefined) input.contentType = spec.data.contentType;
          contentType = spec.data.contentType ?? CONTENT_TYPE_BINARY;
          data = binaryData(spec.data.bytes);
          break;
      }
      if (spec.metadata !== undefined) input.metadata = spec.metadata;
      if (spec.id !== 'auto') input.id = explicitId(idCounter++, spec.id === 'upper');
      inputs.push(input);
      expectations.push({ contentType, data, metadata: spec.metadata === undefined ? {} : (roundTrip(spec.metadata) as Record<string, unknown>) });
    }
    if (cmd.invalid === 'emptyType') inputs[inputs.length - 1]!.type = '';
    if (cmd.invalid === 'dupId') {
      const id = explicitId(idCounter++, false);
      inputs[0]!.id = id;
      // The same id in the other letter case: still the same id.
      inputs.push({ type: 'Ping', id: id.toUpperCase() });
      expectations.push({ contentType: CONTENT_TYPE_JSON, data: null, metadata: {} });
    }
    const rev = model.revision(cmd.stream);
    let options: { expectedRevision: ExpectedRevision } | undefined;
    switch (cmd.expect.kind) {
      case 'omit':
        options = undefined;
        break;
      case 'right':
        options = { expectedRevision: rev };
        break;
      case 'wrong': {
        let r = rev + cmd.expect.delta;
        if (r < 0) r = rev + Math.abs(cmd.expect.delta);
        options = { expectedRevision: r };
        break;
      }
      default:
        options = { expectedRevision: cmd.expect.kind };
    }
    const outcome = model.predict(cmd.stream, inputs, options);
    const added = outcome.kind === 'ok' && outcome.writes ? model.apply(cmd.stream, inputs, expectations, tsLo) : [];
    return { stream: cmd.stream, inputs, options, outcome, added, resendOf: undefined, conflict: false };
  };

  const planResend = async (cmd: ResendCmd, ctx: string): Promise<Planned | undefined> => {
    if (model.written.length === 0) return undefined;
    const w = model.written[cmd.pick % model.written.length]!;
    await learnIds(w, ctx);
    const inputs = w.inputs.map((input, i) => (input.id !== undefined ? input : { ...input, id: model.at(w.result.positions[i]!).id! }));
    const conflict = cmd.variant === 'extended' || (cmd.variant === 'changedLast' && inputs.length >= 2);
    if (cmd.variant === 'extended') inputs.push({ type: 'Ping', id: explicitId(idCounter++, false) });
    else if (conflict) inputs[inputs.length - 1] = { ...inputs[inputs.length - 1]!, id: explicitId(idCounter++, false) };
    const outcome = model.predict(w.stream, inputs, w.options);
    // The model itself must agree with the spec of a retry.
    if (conflict) assert.deepEqual(outcome, { kind: 'conflict' }, `${ctx}: model predicts a conflict for a changed re-send`);
    else assert.deepEqual(outcome, { kind: 'ok', result: w.result, writes: false }, `${ctx}: model predicts the original result for a re-send`);
    return { stream: w.stream, inputs, options: w.options, outcome, added: [], resendOf: w, conflict };
  };

  /** Sends the appends together (so they may share a group commit) and checks each outcome. */
  const runAppends = async (items: Array<AppendCmd | ResendCmd>, ctx: string): Promise<void> => {
    const tsLo = Date.now();
    const planned: Planned[] = [];
    for (const item of items) {
      const p = item.kind === 'append' ? planAppend(item, tsLo) : await planResend(item, ctx);
      if (p !== undefined) planned.push(p);
    }
    const results = await Promise.all(planned.map((p) => attempt(() => store.append(p.stream, p.inputs, p.options))));
    const tsHi = Date.now();
    planned.forEach((p, i) => {
      const r = results[i]!;
      const c = `${ctx}: append #${i} to '${p.stream}' (${p.resendOf ? (p.conflict ? 'changed or extended re-send' : 're-send') : 'fresh'}, expectedRevision ${JSON.stringify(p.options?.expectedRevision)})`;
      for (const e of p.added) e.tsHi = tsHi;
      const o = p.outcome;
      switch (o.kind) {
        case 'ok':
          if (!r.ok) assert.fail(`${c}: expected ${JSON.stringify(o.result)}, got ${String(r.error)}`);
          assert.deepStrictEqual(r.value, o.result, `${c}: result`);
          if (o.writes) {
            stats.ok++;
            model.written.push({ stream: p.stream, inputs: p.inputs, options: p.options, result: o.result });
          } else stats.idempotent++;
          break;
        case 'wrong':
          expectError(r, WrongExpectedRevisionError, c);
          if (!r.ok && r.error instanceof WrongExpectedRevisionError) {
            assert.equal(r.error.stream, p.stream, `${c}: error stream`);
            assert.equal(r.error.expectedRevision, o.expected, `${c}: error expectedRevision`);
            assert.equal(r.error.actualRevision, o.actual, `${c}: error actualRevision`);
          }
          stats.wrong++;
          break;
        case 'conflict':
          expectError(r, IdempotencyConflictError, c);
          stats.conflict++;
          break;
        case 'streamNameInvalid':
          expectError(r, StreamNameInvalidError, c);
          stats.invalid++;
          break;
        case 'eventInvalid':
          expectError(r, EventInvalidError, c);
          stats.invalid++;
          break;
      }
    });
  };

  const resolveFrom = (from: FromSpec, top: number): number | 'start' | 'end' | undefined => {
    if (from === 'invalid') return -1;
    if (from === undefined || typeof from === 'string') return from;
    return Math.max(0, Math.round((top * from.frac) / 100) + from.delta);
  };
  const resolveLimit = (limit: LimitSpec): number | undefined => (limit === 'invalid' ? -1 : limit);

  const reopen = async (ctx: string): Promise<void> => {
    await store.close();
    expectError(await attempt(() => store.headPosition()), StoreClosedError, `${ctx}: headPosition after close`);
    expectError(await attempt(() => store.append('x', [{ type: 'Ping' }])), StoreClosedError, `${ctx}: append after close`);
    store = await openStore(options);
    stats.reopens++;
    assert.equal(store.recovery.truncatedBytes, 0, `${ctx}: a clean close leaves no tail to cut`);
    assert.equal(store.recovery.indexRebuilt, false, `${ctx}: a clean close leaves an index to trust (${store.recovery.indexRebuildReason})`);
    assert.equal(store.recovery.replayedEvents, 0, `${ctx}: a clean close leaves nothing to replay`);
    await checkAll(`${ctx}: after reopen`);
  };

  try {
    for (let step = 0; step < cmds.length; step++) {
      const cmd = cmds[step]!;
      const ctx = `step ${step} (${cmd.kind})`;
      switch (cmd.kind) {
        case 'append':
        case 'resend':
          await runAppends([cmd], ctx);
          break;
        case 'group':
          await runAppends(cmd.items, ctx);
          break;
        case 'readStream': {
          const list = model.streams.get(cmd.stream) ?? [];
          const rev = list.length - 1;
          const from = resolveFrom(cmd.from, rev + 1);
          const limit = resolveLimit(cmd.limit);
          const opts = { from, direction: cmd.direction, limit };
          const c = `${ctx}: readStream('${cmd.stream}', ${JSON.stringify(opts)})`;
          const r = await attempt(() => collect(store.readStream(cmd.stream, opts), cmd.iterate));
          if (!validReadName(cmd.stream)) expectError(r, StreamNameInvalidError, c);
          else if (from === -1 || limit === -1) expectError(r, InvalidArgumentError, c);
          else {
            if (!r.ok) assert.fail(`${c}: ${String(r.error)}`);
            let expected: MEvent[];
            if (cmd.direction === 'backwards') {
              const top = from === undefined || from === 'end' ? rev : from === 'start' ? 0 : from;
              expected = list.filter((e) => e.revision <= top).reverse();
            } else {
              const start = from === undefined || from === 'start' ? 0 : from === 'end' ? rev + 1 : from;
              expected = list.filter((e) => e.revision >= start);
            }
            checkEvents(r.value, expected.slice(0, limit ?? Infinity), c);
          }
          break;
        }
        case 'readAll': {
          const head = model.head;
          const from = resolveFrom(cmd.from, head);
          const limit = resolveLimit(cmd.limit);
          const opts = { from, direction: cmd.direction, limit, filter: cmd.filter };
          const c = `${ctx}: readAll(${JSON.stringify(opts)})`;
          const r = await attempt(() => collect(store.readAll(opts), cmd.iterate));
          const list = (v: string | string[] | undefined): string[] | undefined => (v === undefined ? undefined : typeof v === 'string' ? [v] : v);
          const f = cmd.filter;
          const lists = [list(f?.streamPrefix), list(f?.category), list(f?.types)];
          const filterInvalid = lists.some((l) => l !== undefined && (l.length === 0 || l.some((s) => s.length === 0)));
          if (from === -1 || limit === -1 || filterInvalid) expectError(r, InvalidArgumentError, c);
          else {
            if (!r.ok) assert.fail(`${c}: ${String(r.error)}`);
            const [prefixes, categories, types] = lists;
            const match = (e: MEvent): boolean =>
              (prefixes === undefined || prefixes.some((p) => e.stream.startsWith(p))) &&
              (categories === undefined || categories.includes(categoryOf(e.stream))) &&
              (types === undefined || types.includes(e.type));
            let expected: MEvent[];
            if (cmd.direction === 'backwards') {
              const top = from === undefined || from === 'end' ? head : from === 'start' ? 1 : Math.min(from, head);
              expected = model.events.filter((e) => e.position <= top).reverse();
            } else {
              const start = from === undefined || from === 'start' ? 1 : from === 'end' ? head + 1 : from;
              expected = model.events.filter((e) => e.position >= start);
            }
            checkEvents(r.value, expected.filter(match).slice(0, limit ?? Infinity), c);
          }
          break;
        }
        case 'streamInfo': {
          const c = `${ctx}: streamInfo('${cmd.stream}')`;
          const r = await attempt(() => store.streamInfo(cmd.stream));
          if (!validReadName(cmd.stream)) expectError(r, StreamNameInvalidError, c);
          else {
            if (!r.ok) assert.fail(`${c}: ${String(r.error)}`);
            checkInfo(r.value, cmd.stream, c);
          }
          break;
        }
        case 'head':
          assert.equal(await store.headPosition(), model.head, ctx);
          break;
        case 'listStreams': {
          const opts = { prefix: cmd.prefix, after: cmd.after, limit: cmd.limit };
          const c = `${ctx}: listStreams(${JSON.stringify(opts)})`;
          const infos = await store.listStreams(opts);
          const names = model.streamNames(cmd.prefix ?? '', cmd.after).slice(0, cmd.limit ?? 100);
          assert.deepEqual(
            infos.map((i) => i.stream),
            names,
            c,
          );
          for (const info of infos) checkInfo(info, info.stream, c);
          break;
        }
        case 'reopen':
          await reopen(ctx);
          break;
      }
      await checkSummary(`${ctx}: after`);
    }
    await checkAll('end');
    await reopen('end');
    const segments = fs.readdirSync(path.join(dir, 'log')).filter((f) => f.endsWith('.seg')).length;
    if (segments > 1) stats.multiSegmentRuns++;
    stats.runs++;
  } finally {
    await store.close().catch(() => undefined);
  }
}

test('the file store behaves like an in-memory event store model under random commands', { timeout: 300_000 }, async (t) => {
  await fc.assert(
    fc.asyncProperty(configArb, fc.array(cmdArb, { minLength: 1, maxLength: 80, size: 'max' }), async (config, cmds) => {
      await runScenario(config, cmds);
    }),
    { numRuns: 100 },
  );
  t.diagnostic(JSON.stringify(stats));
  // Guard against a vacuous generator: every kind of outcome and the segment roll must occur.
  assert.ok(stats.ok > 500, `fresh appends: ${stats.ok}`);
  assert.ok(stats.idempotent > 20, `idempotent re-sends: ${stats.idempotent}`);
  assert.ok(stats.wrong > 50, `wrong expected revisions: ${stats.wrong}`);
  assert.ok(stats.conflict > 5, `idempotency conflicts: ${stats.conflict}`);
  assert.ok(stats.invalid > 20, `invalid appends: ${stats.invalid}`);
  assert.ok(stats.reopens > 100, `reopens: ${stats.reopens}`);
  assert.ok(stats.multiSegmentRuns > 10, `runs whose log rolled to a second segment: ${stats.multiSegmentRuns}`);
});
