/**
 * The HTTP/1.1 JSON API, for curl, webhooks and languages without an SDK.
 *
 * Every route is declared once in `routes()` with its schemas; the same table registers the
 * route with fastify (which validates requests against the schemas) and produces the OpenAPI
 * document served at /openapi.json, so the document cannot drift from the server. Errors are
 * `{ code, message, details }` with the status from src/core/errors.ts.
 */
import { randomUUID } from 'node:crypto';
import { base64, fromCloudEvent } from '../protocol/cloudevents.js';
import type { CloudEventIn } from '../protocol/cloudevents.js';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { LogController } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FormatRegistry, Type } from '@sinclair/typebox';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import {
  EventfulError,
  ForbiddenError,
  InternalError,
  InvalidArgumentError,
  LimitExceededError,
  NotFoundError,
  QueueNotFoundError,
  UnsupportedMediaTypeError,
} from '../core/errors.js';
import { CONTENT_TYPE_JSON } from '../core/events.js';
import type { EventInput, EventStore, ExpectedRevision, ReadAllFilter, RecordedEvent, StreamMetadata, Subscription } from '../core/events.js';
import { isUuid } from '../core/ids.js';
import type { ServerLimits } from '../core/limits.js';
import { requireReadAll, requireRole } from './auth.js';
import type { Authenticator, Principal, Role } from './auth.js';
import type { QueueManager } from '../queues/manager.js';
import type { QueueDelivery } from '../core/delivery.js';
import { queueStream } from '../queues/settings.js';
import type { MessageInput, NackOptions, QueueSettingsInput, RedriveOptions } from '../core/queues.js';
import type { GroupSettingsInput } from '../core/groups.js';
import { scrubUrl } from './logging.js';
import type { Logger } from './logging.js';
import type { ServerMetrics } from './metrics.js';
import { traceContextOf, withTraceContext } from './trace.js';

export interface HttpContext {
  store: EventStore;
  queues: QueueManager;
  auth: Authenticator;
  limits: ServerLimits;
  version: string;
  startedAt: number;
  durability: string;
  isReady: () => boolean;
  log: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
  /** Request logs (with request ids) go here; none when absent. */
  logger?: Logger;
  /** Served at /metrics and /stats; those answer 404 when absent. */
  metrics?: ServerMetrics;
  /** /metrics and /stats answer without a token (config `metricsAuth`). */
  metricsOpen?: boolean;
  /** The built dashboard's files. @default dist/dashboard of this package */
  dashboardDir?: string;
}

// ---------------------------------------------------------------------------------------------
// Schemas

if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', isUuid);

const ErrorBody = Type.Object(
  { code: Type.String(), message: Type.String(), details: Type.Record(Type.String(), Type.Unknown()) },
  { $id: 'Error', additionalProperties: false },
);

const ExpectedRevisionSchema = Type.Union([Type.Literal('any'), Type.Literal('no_stream'), Type.Literal('stream_exists'), Type.Integer({ minimum: -1 })], {
  description: "What the stream must be at: 'any', 'no_stream', 'stream_exists', or the revision of its last event.",
});

const EventIn = Type.Object(
  {
    id: Type.Optional(Type.String({ format: 'uuid', description: 'Event id; re-sending the same ids makes an append idempotent. Generated when absent.' })),
    type: Type.String({ minLength: 1 }),
    data: Type.Optional(Type.Unknown({ description: 'Any JSON value.' })),
    dataBase64: Type.Optional(Type.String({ description: 'Binary data, base64; use with contentType.' })),
    contentType: Type.Optional(Type.String()),
    metadata: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);

const AppendBody = Type.Object(
  { expectedRevision: Type.Optional(ExpectedRevisionSchema), events: Type.Array(EventIn, { minItems: 1 }) },
  { additionalProperties: false },
);

const AppendResultSchema = Type.Object({ positions: Type.Array(Type.Integer()), revision: Type.Integer() }, { additionalProperties: false });

const EventOut = Type.Object(
  {
    position: Type.Integer(),
    stream: Type.String(),
    revision: Type.Integer(),
    id: Type.String(),
    type: Type.String(),
    contentType: Type.String(),
    timestamp: Type.Integer({ description: 'Commit time, ms since the epoch.' }),
    data: Type.Optional(Type.Unknown()),
    dataBase64: Type.Optional(Type.String()),
    metadata: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: false },
);

const StreamInfoSchema = Type.Object(
  {
    stream: Type.String(),
    revision: Type.Integer(),
    eventCount: Type.Integer(),
    firstPosition: Type.Integer(),
    lastPosition: Type.Integer(),
    createdAt: Type.Integer(),
    updatedAt: Type.Integer(),
  },
  { additionalProperties: false },
);

const From = Type.Union([Type.Literal('start'), Type.Literal('end'), Type.Integer({ minimum: 0 })]);
const Direction = Type.Union([Type.Literal('forwards'), Type.Literal('backwards')]);
const StreamParams = Type.Object({ stream: Type.String({ minLength: 1 }) }, { additionalProperties: false });

// Queues

const QueueParams = Type.Object({ queue: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
const Filter = Type.Object(
  {
    streamPrefix: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
    category: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
    types: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })])),
  },
  { additionalProperties: false },
);
const SettingsFields = {
  leaseMs: Type.Integer({ minimum: 1, description: 'Visibility timeout: how long a delivery is leased.' }),
  maxDeliveries: Type.Integer({ minimum: 1 }),
  deadLetterQueue: Type.Union([Type.String(), Type.Null()]),
  retryBackoff: Type.Object(
    { initialMs: Type.Integer({ minimum: 0 }), maxMs: Type.Integer({ minimum: 0 }), multiplier: Type.Number({ minimum: 1 }), jitter: Type.Number({ minimum: 0, maximum: 1 }) },
    { additionalProperties: false },
  ),
  deliveryDelayMs: Type.Integer({ minimum: 0 }),
  maxLength: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
  overflow: Type.Union([Type.Literal('reject'), Type.Literal('drop-oldest')]),
  dedupWindowMs: Type.Integer({ minimum: 0 }),
  ordering: Type.Union([Type.Literal('unordered'), Type.Literal('fifo')]),
  poison: Type.Union([Type.Literal('park'), Type.Literal('skip')]),
  binding: Type.Union([
    Type.Object({ filter: Filter, from: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('start')])) }, { additionalProperties: false }),
    Type.Null(),
  ]),
};
const SettingsIn = Type.Object(
  Object.fromEntries(
    Object.entries(SettingsFields).map(([k, v]) => [k, Type.Optional(k === 'retryBackoff' ? Type.Partial(v as never) : v)]),
  ) as Record<string, TSchema>,
  { additionalProperties: false },
);
const SettingsOut = Type.Object(SettingsFields, { additionalProperties: false });
const StreamMetadataSchema = Type.Object(
  {
    maxAgeMs: Type.Optional(Type.Integer()),
    maxCount: Type.Optional(Type.Integer()),
    truncateBefore: Type.Optional(Type.Integer()),
    deleted: Type.Optional(Type.Literal('hard')),
  },
  { additionalProperties: false },
);
const GroupParams = Type.Object({ group: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
const GroupSettingsOut = Type.Object(
  { filter: Filter, mode: Type.Union([Type.Literal('single'), Type.Literal('partitioned')]), partitions: Type.Integer() },
  { additionalProperties: false },
);
const GroupInfoSchema = Type.Object(
  { name: Type.String(), settings: GroupSettingsOut, startPosition: Type.Integer(), createdPosition: Type.Integer(), createdAt: Type.Integer() },
  { additionalProperties: false },
);
const GroupStatsSchema = Type.Object(
  {
    ...GroupInfoSchema.properties,
    checkpoints: Type.Array(Type.Integer()),
    position: Type.Integer(),
    head: Type.Integer(),
    lagPositions: Type.Integer(),
    lagEvents: Type.Integer(),
    lagExact: Type.Boolean(),
    lagMs: Type.Integer(),
    members: Type.Array(
      Type.Object(
        {
          id: Type.String(),
          name: Type.String(),
          joinedAt: Type.Integer(),
          partitions: Type.Array(Type.Integer()),
          revoking: Type.Array(Type.Integer()),
          committedPosition: Type.Integer(),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
const QueueInfoSchema = Type.Object(
  { name: Type.String(), settings: SettingsOut, createdPosition: Type.Integer(), createdAt: Type.Integer(), stream: Type.String() },
  { additionalProperties: false },
);
const MessageIn = Type.Object(
  {
    body: Type.Optional(Type.Unknown({ description: 'Any JSON value.' })),
    bodyBase64: Type.Optional(Type.String({ description: 'Binary body, base64; use with contentType.' })),
    contentType: Type.Optional(Type.String()),
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    id: Type.Optional(Type.String({ format: 'uuid', description: 'Message id; a repeat within the dedup window is accepted once.' })),
    type: Type.Optional(Type.String({ minLength: 1 })),
    groupKey: Type.Optional(Type.String()),
    delayMs: Type.Optional(Type.Integer({ minimum: 0 })),
    deliverAt: Type.Optional(Type.Integer({ minimum: 0, description: 'ms since the epoch' })),
  },
  { additionalProperties: false },
);
const DeliveryOut = Type.Object(
  {
    queue: Type.String(),
    receipt: Type.String(),
    deliveryCount: Type.Integer(),
    firstDeliveredAt: Type.Integer(),
    leaseExpiresAt: Type.Integer(),
    position: Type.Integer(),
    id: Type.String(),
    stream: Type.String(),
    type: Type.String(),
    contentType: Type.String(),
    body: Type.Unknown({ description: 'JSON, or base64 for other content types.' }),
    headers: Type.Record(Type.String(), Type.Unknown()),
    groupKey: Type.Optional(Type.String()),
    sentAt: Type.Integer(),
  },
  { additionalProperties: false },
);
const Receipts = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })]);
const Ok = Type.Object({ ok: Type.Literal(true) }, { additionalProperties: false });
const QueueStatsSchema = Type.Object(
  {
    name: Type.String(),
    depth: Type.Integer(),
    ready: Type.Integer(),
    inFlight: Type.Integer(),
    delayed: Type.Integer(),
    parkedGroups: Type.Integer(),
    deadLettered: Type.Integer(),
    oldestUnackedAgeMs: Type.Integer(),
    consumers: Type.Integer(),
    rates: Type.Object({ send: Type.Number(), ack: Type.Number(), nack: Type.Number(), redelivery: Type.Number() }, { additionalProperties: false }),
    totals: Type.Object(
      { sent: Type.Integer(), acked: Type.Integer(), nacked: Type.Integer(), redelivered: Type.Integer(), expired: Type.Integer(), dropped: Type.Integer(), rejected: Type.Integer() },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

// ---------------------------------------------------------------------------------------------
// Routes

interface RouteDef {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  operationId: string;
  summary: string;
  auth: boolean;
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
  /** The body may be left out (every field is optional): it is taken as `{}`. */
  bodyOptional?: boolean;
  /** The success response is a `text/event-stream` (Server-Sent Events) that the handler writes itself. */
  eventStream?: boolean;
  /** Extra request content types (besides application/json) with their body schema. */
  bodyTypes?: Record<string, TSchema>;
  /** The success response is not JSON but one of these content types (its schema: a string). */
  produces?: string[];
  /** A token is needed only in some configurations (the handler checks): documented as optional. */
  tokenOptional?: boolean;
  responses: Record<number, TSchema>;
  handler: (req: FastifyRequest, reply: FastifyReply, principal: Principal) => Promise<unknown>;
}

function routes(ctx: HttpContext): RouteDef[] {
  return [...streamRoutes(ctx), ...queueRoutes(ctx), ...groupRoutes(ctx), ...observabilityRoutes(ctx)];
}

function streamRoutes(ctx: HttpContext): RouteDef[] {
  const { store, limits } = ctx;
  const readLimit = (q: { limit?: number }): number => {
    const limit = q.limit ?? 100;
    if (limit > limits.httpReadEventsMax) throw new LimitExceededError('httpReadEventsMax', limit, limits.httpReadEventsMax);
    return limit;
  };
  return [
    {
      method: 'POST',
      url: '/streams/:stream',
      operationId: 'appendToStream',
      summary: 'Append events to a stream, atomically, with an optional expected revision. Also accepts CloudEvents.',
      auth: true,
      params: StreamParams,
      body: AppendBody,
      bodyTypes: { 'application/cloudevents+json': CloudEvent, 'application/cloudevents-batch+json': Type.Array(CloudEvent, { minItems: 1 }) },
      responses: { 201: AppendResultSchema },
      handler: async (req, reply, p) => {
        const { stream } = req.params as { stream: string };
        requireRole(p, 'write', stream);
        const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        let events: EventInput[];
        let expectedRevision: ExpectedRevision | undefined;
        if (ct === 'application/cloudevents+json' || ct === 'application/cloudevents-batch+json') {
          const body = req.body as CloudEventIn | CloudEventIn[];
          events = (Array.isArray(body) ? body : [body]).map(fromCloudEvent);
          expectedRevision = parseExpectedHeader(req.headers['eventful-expected-revision']);
        } else {
          const body = req.body as { expectedRevision?: ExpectedRevision; events: EventInJson[] };
          events = body.events.map(fromJsonEvent);
          expectedRevision = body.expectedRevision;
        }
        // W3C trace context: an event without a traceparent of its own takes the request's.
        const trace = traceContextOf(req.headers);
        if (trace !== undefined) for (const e of events) e.metadata = withTraceContext(e.metadata, trace);
        const result = await store.append(stream, events, expectedRevision === undefined ? undefined : { expectedRevision });
        reply.code(201);
        return result;
      },
    },
    {
      method: 'GET',
      url: '/streams/:stream',
      operationId: 'readStream',
      summary: "Read a stream's events from a revision, forwards or backwards. `next` is where to continue (null at the end).",
      auth: true,
      params: StreamParams,
      querystring: Type.Object(
        { from: Type.Optional(From), direction: Type.Optional(Direction), limit: Type.Optional(Type.Integer({ minimum: 1 })) },
        { additionalProperties: false },
      ),
      responses: { 200: Type.Object({ events: Type.Array(EventOut), next: Type.Union([Type.Integer(), Type.Null()]) }, { additionalProperties: false }) },
      handler: async (req, _reply, p) => {
        const { stream } = req.params as { stream: string };
        requireRole(p, 'read', stream);
        const q = req.query as { from?: number | 'start' | 'end'; direction?: 'forwards' | 'backwards'; limit?: number };
        const limit = readLimit(q);
        const events = await store.readStream(stream, { from: q.from, direction: q.direction, limit: limit + 1 }).toArray();
        return pageOf(events, limit, (e) => e.revision);
      },
    },
    {
      method: 'GET',
      url: '/streams/:stream/metadata',
      operationId: 'getStreamMetadata',
      summary: "A stream's retention metadata (maxAgeMs, maxCount, truncateBefore; deleted for a tombstone).",
      auth: true,
      params: StreamParams,
      responses: { 200: StreamMetadataSchema },
      handler: async (req, _reply, p) => {
        const { stream } = req.params as { stream: string };
        requireRole(p, 'read', stream);
        return store.getStreamMetadata(stream);
      },
    },
    {
      method: 'PUT',
      url: '/streams/:stream/metadata',
      operationId: 'setStreamMetadata',
      summary: "Set a stream's retention (replacing what it had); reads honour it at once.",
      auth: true,
      params: StreamParams,
      body: Type.Object(
        { maxAgeMs: Type.Optional(Type.Integer({ minimum: 1 })), maxCount: Type.Optional(Type.Integer({ minimum: 1 })), truncateBefore: Type.Optional(Type.Integer({ minimum: 0 })) },
        { additionalProperties: false },
      ),
      responses: { 200: StreamMetadataSchema },
      handler: async (req, _reply, p) => {
        const { stream } = req.params as { stream: string };
        requireRole(p, 'admin', stream);
        await store.setStreamMetadata(stream, req.body as StreamMetadata);
        return store.getStreamMetadata(stream);
      },
    },
    {
      method: 'DELETE',
      url: '/streams/:stream',
      operationId: 'deleteStream',
      summary: 'Delete a stream: soft (it reads as empty and can be appended to again) or, with hard=true, for good.',
      auth: true,
      params: StreamParams,
      querystring: Type.Object(
        { hard: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])), expectedRevision: Type.Optional(Type.String({ pattern: '^(any|no_stream|stream_exists|\\d+)$' })) },
        { additionalProperties: false },
      ),
      responses: { 200: Ok },
      handler: async (req, _reply, p) => {
        const { stream } = req.params as { stream: string };
        const q = req.query as { hard?: string; expectedRevision?: string };
        requireRole(p, 'admin', stream);
        const exp = q.expectedRevision === undefined ? undefined : /^\d+$/.test(q.expectedRevision) ? Number(q.expectedRevision) : (q.expectedRevision as ExpectedRevision);
        await store.deleteStream(stream, { hard: q.hard === 'true', expectedRevision: exp });
        return { ok: true };
      },
    },
    {
      method: 'GET',
      url: '/streams/:stream/info',
      operationId: 'streamInfo',
      summary: "A stream's revision, event count, first and last positions, and times.",
      auth: true,
      params: StreamParams,
      responses: { 200: StreamInfoSchema },
      handler: async (req, _reply, p) => {
        const { stream } = req.params as { stream: string };
        requireRole(p, 'read', stream);
        const info = await store.streamInfo(stream);
        if (info === undefined) throw new NotFoundError(`stream '${stream}' has no events`, { stream });
        return info;
      },
    },
    {
      method: 'GET',
      url: '/streams',
      operationId: 'listStreams',
      summary: 'List streams by name prefix, in order, paged with `after`.',
      auth: true,
      querystring: Type.Object(
        { prefix: Type.Optional(Type.String()), after: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
        { additionalProperties: false },
      ),
      responses: { 200: Type.Object({ streams: Type.Array(StreamInfoSchema) }, { additionalProperties: false }) },
      handler: async (req, _reply, p) => {
        const q = req.query as { prefix?: string; after?: string; limit?: number };
        requireRole(p, 'read', q.prefix ?? '');
        return { streams: await store.listStreams({ prefix: q.prefix, after: q.after, limit: q.limit ?? 100 }) };
      },
    },
    {
      method: 'GET',
      url: '/all',
      operationId: 'readAll',
      summary: 'Read the whole log ($all) from a position, with filters. `next` is the position to continue from (null at the end).',
      auth: true,
      querystring: Type.Object(
        {
          from: Type.Optional(From),
          direction: Type.Optional(Direction),
          limit: Type.Optional(Type.Integer({ minimum: 1 })),
          streamPrefix: Type.Optional(Type.String({ minLength: 1, description: 'Comma-separated prefixes.' })),
          category: Type.Optional(Type.String({ minLength: 1, description: 'Comma-separated categories.' })),
          types: Type.Optional(Type.String({ minLength: 1, description: 'Comma-separated event types.' })),
        },
        { additionalProperties: false },
      ),
      responses: { 200: Type.Object({ events: Type.Array(EventOut), next: Type.Union([Type.Integer(), Type.Null()]) }, { additionalProperties: false }) },
      handler: async (req, _reply, p) => {
        const q = req.query as { from?: number | 'start' | 'end'; direction?: 'forwards' | 'backwards'; limit?: number; streamPrefix?: string; category?: string; types?: string };
        const f = filterOf(q);
        requireReadAll(p, f);
        const limit = readLimit(q);
        const events = await store.readAll({ from: q.from, direction: q.direction, limit: limit + 1, filter: f }).toArray();
        return pageOf(events, limit, (e) => e.position);
      },
    },
    {
      method: 'GET',
      url: '/info',
      operationId: 'serverInfo',
      summary: "The server's version, head position, durability mode and whether auth is on.",
      auth: true,
      responses: {
        200: Type.Object(
          {
            name: Type.String(),
            version: Type.String(),
            headPosition: Type.Integer(),
            durability: Type.String(),
            auth: Type.Boolean(),
            uptimeMs: Type.Integer(),
          },
          { additionalProperties: false },
        ),
      },
      handler: async () => ({
        name: 'eventful',
        version: ctx.version,
        headPosition: await store.headPosition(),
        durability: ctx.durability,
        auth: ctx.auth.enabled,
        uptimeMs: Date.now() - ctx.startedAt,
      }),
    },
    {
      method: 'GET',
      url: '/health/live',
      operationId: 'liveness',
      summary: 'Liveness: 200 while the process serves requests.',
      auth: false,
      responses: { 200: Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false }) },
      handler: async () => ({ status: 'ok' }),
    },
    {
      method: 'GET',
      url: '/health/ready',
      operationId: 'readiness',
      summary: 'Readiness: 200 when the store is open and accepting work, 503 while starting or shutting down.',
      auth: false,
      responses: { 200: Type.Object({ status: Type.Literal('ready') }, { additionalProperties: false }), 503: ErrorBody },
      handler: async (_req, reply) => {
        if (!ctx.isReady()) {
          reply.code(503);
          return { code: 'STORE_CLOSED', message: 'not ready', details: {} };
        }
        return { status: 'ready' };
      },
    },
    {
      method: 'GET',
      url: '/subscribe/all',
      operationId: 'subscribeToAll',
      summary:
        'Server-Sent Events: the log from a position (history, then live events as they are appended), with the filters of /all. Each event has `id:` its position; a reconnect with `Last-Event-ID` resumes right after it.',
      auth: true,
      eventStream: true,
      querystring: SubscribeQuery,
      responses: { 200: EventOut },
      handler: async (req, reply, p) => {
        const q = req.query as { from?: number | 'start' | 'end'; streamPrefix?: string; category?: string; types?: string };
        const f = filterOf(q);
        requireReadAll(p, f);
        const resume = lastEventId(req);
        // 'end' is resolved now and sent as the first id, so a reconnect before any event
        // resumes from here, not from a later end.
        let from = resume !== undefined ? resume + 1 : (q.from ?? 'end');
        if (from === 'end') from = (await store.headPosition()) + 1;
        if (from === 'start') from = 1;
        const sub = store.subscribeToAll({ from, filter: f });
        await streamEvents(reply, sub, (e) => e.position, limits, from - 1);
      },
    },
    {
      method: 'GET',
      url: '/subscribe/streams/:stream',
      operationId: 'subscribeToStream',
      summary: 'Server-Sent Events: one stream from a revision, then live. Each event has `id:` its revision; `Last-Event-ID` resumes after it.',
      auth: true,
      eventStream: true,
      params: StreamParams,
      querystring: Type.Object({ from: Type.Optional(From) }, { additionalProperties: false }),
      responses: { 200: EventOut },
      handler: async (req, reply, p) => {
        const { stream } = req.params as { stream: string };
        requireRole(p, 'read', stream);
        const q = req.query as { from?: number | 'start' | 'end' };
        const resume = lastEventId(req);
        let from = resume !== undefined ? resume + 1 : (q.from ?? 'end');
        if (from === 'end') from = ((await store.streamInfo(stream))?.revision ?? -1) + 1;
        if (from === 'start') from = 0;
        const sub = store.subscribeToStream(stream, { from });
        await streamEvents(reply, sub, (e) => e.revision, limits, from - 1);
      },
    },
  ];
}

const SubscribeQuery = Type.Object(
  {
    from: Type.Optional(From),
    streamPrefix: Type.Optional(Type.String({ minLength: 1, description: 'Comma-separated prefixes.' })),
    category: Type.Optional(Type.String({ minLength: 1, description: 'Comma-separated categories.' })),
    types: Type.Optional(Type.String({ minLength: 1, description: 'Comma-separated event types.' })),
  },
  { additionalProperties: false },
);

/** The $all filter of a query string's comma-separated lists, or undefined when none is given. */
function filterOf(q: { streamPrefix?: string; category?: string; types?: string }): ReadAllFilter | undefined {
  const filter: ReadAllFilter = {};
  if (q.streamPrefix) filter.streamPrefix = q.streamPrefix.split(',');
  if (q.category) filter.category = q.category.split(',');
  if (q.types) filter.types = q.types.split(',');
  return Object.keys(filter).length > 0 ? filter : undefined;
}

/** The position or revision in a `Last-Event-ID` header, if any. */
function lastEventId(req: FastifyRequest): number | undefined {
  const h = req.headers['last-event-id'];
  if (h === undefined) return undefined;
  const v = Array.isArray(h) ? h[0]! : h;
  if (!/^\d{1,15}$/.test(v)) throw new InvalidArgumentError(`Last-Event-ID must be the id of an event this server sent (a number), got '${v.slice(0, 40)}'`);
  return Number(v);
}

/** Per app: the Server-Sent Events streams open now, each with the function that ends it. */
const openStreams = new WeakMap<object, Set<() => void>>();

/**
 * Writes a subscription as Server-Sent Events until the client goes away: `id:` (position or
 * revision), `event:` (the type), `data:` (the event as JSON), and a comment every 15 s so
 * proxies keep the connection. Waits for the socket to drain rather than buffering without bound.
 */
async function streamEvents(reply: FastifyReply, sub: Subscription, idOf: (e: RecordedEvent) => number, limits: ServerLimits, startId: number): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', 'x-request-id': String(reply.request.id) });
  // An id with no data sets the client's Last-Event-ID without an event: where it starts.
  res.write(startId >= 0 ? `: subscribed\nid: ${startId}\n\n` : ': subscribed\n\n');
  let gone = false;
  const wakeDrain: Array<() => void> = [];
  res.on('close', () => {
    gone = true;
    void sub.close();
    for (const w of wakeDrain.splice(0)) w();
  });
  // Shutdown ends the stream (the client resumes with Last-Event-ID); without this the server
  // would wait for the client to hang up before it could close.
  const open = openStreams.get(reply.server);
  const end = (): void => {
    void sub.close();
    res.end();
  };
  open?.add(end);
  res.once('close', () => open?.delete(end));
  res.on('drain', () => {
    for (const w of wakeDrain.splice(0)) w();
  });
  const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
  ping.unref();
  try {
    for await (const page of sub.pages()) {
      if (gone) break;
      let chunk = '';
      for (const e of page) chunk += `id: ${idOf(e)}\nevent: ${e.type}\ndata: ${JSON.stringify(eventToJson(e))}\n\n`;
      if (!res.write(chunk) || res.writableLength > limits.outputBufferBytesMax) {
        await new Promise<void>((resolve) => wakeDrain.push(resolve));
      }
    }
  } catch (err) {
    if (!gone) res.write(`event: error\ndata: ${JSON.stringify(err instanceof EventfulError ? err.toJSON() : { code: 'INTERNAL', message: 'the subscription failed' })}\n\n`);
  } finally {
    clearInterval(ping);
    await sub.close();
    if (!gone) res.end();
  }
}

/** A route maker for one resource: auth on, and its path parameter's schema when the URL has it. */
function authedRoute(param: string, params: TSchema) {
  return (method: RouteDef['method'], url: string, operationId: string, summary: string, rest: Partial<RouteDef> & Pick<RouteDef, 'responses' | 'handler'>): RouteDef => ({
    method,
    url,
    operationId,
    summary,
    auth: true,
    params: url.includes(param) ? params : undefined,
    ...rest,
  });
}

function queueRoutes(ctx: HttpContext): RouteDef[] {
  const queues = ctx.queues;
  const name = (req: FastifyRequest, p: Principal, role: Role): string => {
    const { queue } = req.params as { queue: string };
    requireRole(p, role, queueStream(queue));
    return queue;
  };
  const route = authedRoute(':queue', QueueParams);
  return [
    route('POST', '/queues/:queue', 'createQueue', 'Create a queue with settings (all optional).', {
      body: Type.Object({ settings: Type.Optional(SettingsIn) }, { additionalProperties: false }),
      bodyOptional: true,
      responses: { 201: QueueInfoSchema },
      handler: async (req, reply, p) => {
        const settings = (req.body as { settings?: QueueSettingsInput }).settings;
        if (typeof settings?.deadLetterQueue === 'string') requireRole(p, 'admin', queueStream(settings.deadLetterQueue));
        const info = await queues.create(name(req, p, 'admin'), settings);
        reply.code(201);
        return info;
      },
    }),
    route('GET', '/queues', 'listQueues', 'The queues, by name.', {
      responses: { 200: Type.Object({ queues: Type.Array(QueueInfoSchema) }, { additionalProperties: false }) },
      handler: async (_req, _reply, p) => ({ queues: (await queues.list()).filter((q) => p.can('read', queueStream(q.name))) }),
    }),
    route('GET', '/queues/:queue', 'getQueue', "A queue's settings.", {
      responses: { 200: QueueInfoSchema },
      handler: async (req, _reply, p) => {
        const q = name(req, p, 'read');
        const info = await queues.get(q);
        if (info === undefined) throw new QueueNotFoundError(q);
        return info;
      },
    }),
    route('PUT', '/queues/:queue/settings', 'updateQueue', "Change a queue's settings (not its ordering).", {
      body: SettingsIn,
      responses: { 200: QueueInfoSchema },
      handler: async (req, _reply, p) => {
        const settings = req.body as QueueSettingsInput;
        if (typeof settings.deadLetterQueue === 'string') requireRole(p, 'admin', queueStream(settings.deadLetterQueue));
        return queues.update(name(req, p, 'admin'), settings);
      },
    }),
    route('DELETE', '/queues/:queue', 'deleteQueue', 'Delete a queue and its delivery state (its messages stay in the log).', {
      responses: { 200: Ok },
      handler: async (req, _reply, p) => {
        await queues.delete(name(req, p, 'admin'));
        return { ok: true };
      },
    }),
    route('POST', '/queues/:queue/purge', 'purgeQueue', 'Drop every message not yet acked.', {
      responses: { 200: Type.Object({ purged: Type.Integer() }, { additionalProperties: false }) },
      handler: async (req, _reply, p) => ({ purged: await queues.purge(name(req, p, 'admin')) }),
    }),
    route('POST', '/queues/:queue/messages', 'sendMessages', 'Send messages; resolves once they are durable.', {
      body: Type.Object({ messages: Type.Array(MessageIn, { minItems: 1 }) }, { additionalProperties: false }),
      responses: { 201: Type.Object({ ids: Type.Array(Type.String()), positions: Type.Array(Type.Integer()), duplicates: Type.Integer() }, { additionalProperties: false }) },
      handler: async (req, reply, p) => {
        const q = name(req, p, 'write');
        const body = req.body as { messages: Array<MessageInput & { bodyBase64?: string }> };
        const trace = traceContextOf(req.headers);
        const messages = body.messages.map((m, i) => {
          const { bodyBase64, ...rest } = m;
          if (trace !== undefined) rest.headers = withTraceContext(rest.headers, trace);
          if (bodyBase64 === undefined) return rest;
          if (m.body !== undefined) throw new InvalidArgumentError(`messages[${i}]: give body or bodyBase64, not both`);
          return { ...rest, body: base64(bodyBase64, `messages[${i}].bodyBase64`), contentType: m.contentType ?? 'application/octet-stream' };
        });
        const r = await queues.send(q, messages);
        reply.code(201);
        return r;
      },
    }),
    route('DELETE', '/queues/:queue/messages/:id', 'cancelMessage', 'Cancel a message not yet delivered (a delayed one).', {
      params: Type.Object({ queue: Type.String({ minLength: 1, maxLength: 200 }), id: Type.String({ format: 'uuid' }) }, { additionalProperties: false }),
      responses: { 200: Type.Object({ cancelled: Type.Boolean() }, { additionalProperties: false }) },
      handler: async (req, _reply, p) => ({ cancelled: await queues.cancel(name(req, p, 'write'), (req.params as { id: string }).id) }),
    }),
    route('POST', '/queues/:queue/receive', 'receiveMessages', 'Lease up to `max` messages, waiting up to `waitMs` for the first (long polling).', {
      body: Type.Object({ max: Type.Optional(Type.Integer({ minimum: 1 })), waitMs: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false }),
      responses: { 200: Type.Object({ deliveries: Type.Array(DeliveryOut) }, { additionalProperties: false }) },
      bodyOptional: true,
      handler: async (req, reply, p) => {
        // A client that hangs up during a long poll gets nothing leased in its name.
        const gone = new AbortController();
        reply.raw.once('close', () => gone.abort());
        const got = await queues.receiveAs(name(req, p, 'read'), req.body as { max?: number; waitMs?: number }, undefined, gone.signal);
        return { deliveries: got.map((d) => (d as QueueDelivery).toJSON()) };
      },
    }),
    route('POST', '/queues/:queue/ack', 'ackMessages', 'Ack leases by receipt; resolves once durable. One bad receipt changes nothing.', {
      body: Type.Object({ receipts: Receipts }, { additionalProperties: false }),
      responses: { 200: Ok },
      handler: async (req, _reply, p) => {
        await queues.ack(name(req, p, 'read'), (req.body as { receipts: string | string[] }).receipts);
        return { ok: true };
      },
    }),
    route('POST', '/queues/:queue/nack', 'nackMessages', 'Give leases back: after their back-off, after `delayMs`, or to dead letters now.', {
      body: Type.Object(
        { receipts: Receipts, delayMs: Type.Optional(Type.Integer({ minimum: 0 })), deadLetter: Type.Optional(Type.Boolean()), reason: Type.Optional(Type.String()) },
        { additionalProperties: false },
      ),
      responses: { 200: Ok },
      handler: async (req, _reply, p) => {
        const { receipts, ...options } = req.body as { receipts: string | string[] } & NackOptions;
        await queues.nack(name(req, p, 'read'), receipts, options);
        return { ok: true };
      },
    }),
    route('POST', '/queues/:queue/extend', 'extendLeases', 'Lengthen leases to `leaseMs` from now (default: the queue lease).', {
      body: Type.Object({ receipts: Receipts, leaseMs: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false }),
      responses: { 200: Ok },
      handler: async (req, _reply, p) => {
        const b = req.body as { receipts: string | string[]; leaseMs?: number };
        await queues.extend(name(req, p, 'read'), b.receipts, b.leaseMs);
        return { ok: true };
      },
    }),
    route('POST', '/queues/:queue/redrive', 'redriveMessages', 'Move messages out of a (dead-letter) queue: all, a count or chosen ids, at a rate.', {
      body: Type.Object(
        {
          to: Type.Optional(Type.String()),
          count: Type.Optional(Type.Integer({ minimum: 1 })),
          ids: Type.Optional(Type.Array(Type.String({ format: 'uuid' }))),
          ratePerSec: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
      bodyOptional: true,
      responses: { 200: Type.Object({ moved: Type.Integer() }, { additionalProperties: false }) },
      handler: async (req, _reply, p) => {
        const o = req.body as RedriveOptions;
        if (o.to !== undefined) requireRole(p, 'write', queueStream(o.to));
        return { moved: await queues.redrive(name(req, p, 'admin'), o) };
      },
    }),
    route('POST', '/queues/:queue/unpark', 'unparkGroup', 'FIFO: let a parked group flow again.', {
      body: Type.Object({ groupKey: Type.String() }, { additionalProperties: false }),
      responses: { 200: Type.Object({ unparked: Type.Boolean() }, { additionalProperties: false }) },
      handler: async (req, _reply, p) => ({ unparked: await queues.unpark(name(req, p, 'admin'), (req.body as { groupKey: string }).groupKey) }),
    }),
    route('GET', '/queues/:queue/stats', 'queueStats', 'Depth, in flight, delayed, dead-lettered, oldest age, rates and consumers.', {
      responses: { 200: QueueStatsSchema },
      handler: async (req, _reply, p) => queues.stats(name(req, p, 'read')),
    }),
  ];
}

/** Consumer groups: managed and watched over HTTP; members join over the binary protocol. */
function groupRoutes(ctx: HttpContext): RouteDef[] {
  const groups = ctx.store.groups;
  const name = (req: FastifyRequest, p: Principal, role: Role): string => {
    const { group } = req.params as { group: string };
    requireRole(p, role, `$group-${group}`);
    return group;
  };
  const route = authedRoute(':group', GroupParams);
  return [
    route('POST', '/groups/:group', 'createGroup', 'Create a consumer group (the same settings again return it as it is).', {
      body: Type.Object(
        {
          filter: Type.Optional(Filter),
          mode: Type.Optional(Type.Union([Type.Literal('single'), Type.Literal('partitioned')])),
          partitions: Type.Optional(Type.Integer({ minimum: 1 })),
          from: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('start'), Type.Literal('end')])),
        },
        { additionalProperties: false },
      ),
      bodyOptional: true,
      responses: { 201: GroupInfoSchema },
      handler: async (req, reply, p) => {
        const g = name(req, p, 'admin');
        const settings = req.body as GroupSettingsInput;
        if (settings.filter !== undefined) requireReadAll(p, settings.filter);
        const info = await groups.create(g, settings);
        reply.code(201);
        return info;
      },
    }),
    route('GET', '/groups', 'listGroups', 'The consumer groups, by name.', {
      responses: { 200: Type.Object({ groups: Type.Array(GroupInfoSchema) }, { additionalProperties: false }) },
      handler: async (_req, _reply, p) => ({ groups: (await groups.list()).filter((g) => p.can('read', `$group-${g.name}`)) }),
    }),
    route('GET', '/groups/:group', 'getGroup', "A consumer group's stats: checkpoints, lag in events and time, members and their partitions.", {
      responses: { 200: GroupStatsSchema },
      handler: async (req, _reply, p) => groups.stats(name(req, p, 'read')),
    }),
    route('POST', '/groups/:group/reset', 'resetGroup', 'Move every checkpoint so that the group reads from `to` (only while no member is joined).', {
      body: Type.Object({ to: Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('start'), Type.Literal('end')]) }, { additionalProperties: false }),
      responses: { 200: GroupStatsSchema },
      handler: async (req, _reply, p) => groups.reset(name(req, p, 'admin'), (req.body as { to: number | 'start' | 'end' }).to),
    }),
    route('DELETE', '/groups/:group', 'deleteGroup', 'Delete a consumer group; its joined members are ended.', {
      responses: { 200: Ok },
      handler: async (req, _reply, p) => {
        await groups.delete(name(req, p, 'admin'));
        return { ok: true };
      },
    }),
  ];
}

const StatsSchema = Type.Object(
  {
    version: Type.String(),
    at: Type.Integer({ description: 'When these numbers were read, ms since the epoch.' }),
    uptimeMs: Type.Integer(),
    headPosition: Type.Integer(),
    storage: Type.Object({ logBytes: Type.Integer(), segments: Type.Integer() }, { additionalProperties: false }),
    connections: Type.Object({ http: Type.Integer(), tcp: Type.Integer(), ws: Type.Integer() }, { additionalProperties: false }),
    appends: Type.Object(
      { count: Type.Integer(), events: Type.Integer(), seconds: Type.Number({ description: 'Total time of those appends.' }) },
      { additionalProperties: false, description: 'Client appends since start.' },
    ),
    reads: Type.Object({ pages: Type.Integer(), events: Type.Integer(), seconds: Type.Number() }, { additionalProperties: false, description: 'Client reads since start.' }),
    log: Type.Object({ writes: Type.Integer(), bytesWritten: Type.Integer(), syncs: Type.Integer(), syncSeconds: Type.Number() }, { additionalProperties: false }),
    httpRequests: Type.Integer(),
    errors: Type.Object({ total: Type.Integer(), byCode: Type.Record(Type.String(), Type.Integer()) }, { additionalProperties: false }),
    queues: Type.Object(
      {
        count: Type.Integer(),
        depth: Type.Integer(),
        inFlight: Type.Integer(),
        delayed: Type.Integer(),
        deadLettered: Type.Integer(),
        sendPerSecond: Type.Number(),
        ackPerSecond: Type.Number(),
      },
      { additionalProperties: false, description: 'Sums over every queue.' },
    ),
    groups: Type.Object({ count: Type.Integer(), lagEventsMax: Type.Integer(), lagMsMax: Type.Integer() }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);

/** Metrics, server stats and the dashboard's files. */
function observabilityRoutes(ctx: HttpContext): RouteDef[] {
  const metrics = ctx.metrics;
  // The same rule for both: open (config metricsAuth), or a token with the metrics or admin role.
  const checkMetricsAccess = (req: FastifyRequest): ServerMetrics => {
    if (metrics === undefined) throw new NotFoundError('metrics are not enabled on this server');
    if (ctx.metricsOpen === true) return metrics;
    const p = ctx.auth.authenticate(bearer(req));
    if (!p.can('metrics', '')) throw new ForbiddenError(`'${p.name}' may not read metrics; that needs the metrics or admin role`, { role: 'metrics' });
    return metrics;
  };
  const dashboard = new DashboardFiles(ctx.dashboardDir ?? DEFAULT_DASHBOARD_DIR);
  const serveDashboard = async (name: string, reply: FastifyReply): Promise<Buffer | string> => {
    const f = dashboard.get(name);
    if (f === undefined) {
      if (!dashboard.built()) throw new NotFoundError('the dashboard was not built: run `npm run build` in the eventful package');
      throw new NotFoundError(`no dashboard file '${name}'`);
    }
    for (const [k, v] of Object.entries(f.headers)) void reply.header(k, v);
    return f.body;
  };
  return [
    {
      method: 'GET',
      url: '/metrics',
      operationId: 'metrics',
      summary:
        'Prometheus metrics (text exposition format): appends, reads, log writes and fsyncs, HTTP requests, connections, errors by code, queues and consumer groups. Needs a token with the metrics or admin role unless the server is configured to serve it openly (metricsAuth).',
      auth: false,
      tokenOptional: true,
      produces: ['text/plain'],
      responses: { 200: Type.String({ description: 'Prometheus text format 0.0.4.' }) },
      handler: async (req, reply) => {
        const m = checkMetricsAccess(req);
        const text = await m.scrape();
        void reply.header('content-type', m.contentType).header('cache-control', 'no-store');
        return text;
      },
    },
    {
      method: 'GET',
      url: '/stats',
      operationId: 'serverStats',
      summary:
        "Server-wide numbers as JSON, for the dashboard: counters since start (take rates from two readings), connections, storage, and sums over queues and groups. The same access as /metrics.",
      auth: false,
      tokenOptional: true,
      responses: { 200: StatsSchema },
      handler: async (req, reply) => {
        const m = checkMetricsAccess(req);
        void reply.header('cache-control', 'no-store');
        return m.snapshot();
      },
    },
    {
      method: 'GET',
      url: '/ui',
      operationId: 'dashboard',
      summary: 'The web dashboard (a page that uses this API; it asks for a token when auth is on).',
      auth: false,
      produces: ['text/html'],
      responses: { 200: Type.String() },
      handler: async (_req, reply) => serveDashboard('index.html', reply),
    },
    {
      method: 'GET',
      url: '/ui/:file',
      operationId: 'dashboardFile',
      summary: "One of the dashboard's static files (scripts, styles, images).",
      auth: false,
      params: Type.Object({ file: Type.String({ maxLength: 200 }) }, { additionalProperties: false }),
      produces: ['text/html', 'text/javascript', 'text/css', 'image/svg+xml', 'application/json'],
      responses: { 200: Type.String() },
      handler: async (req, reply) => serveDashboard((req.params as { file: string }).file || 'index.html', reply),
    },
  ];
}

/** Where `npm run build` puts the dashboard: dist/dashboard of this package (from src/server or dist/server alike). */
const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../../dist/dashboard/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
};

/**
 * The page may load only its own scripts and styles and talk only to this server: what an
 * injected event payload could try (inline scripts, remote fetches, framing) is refused.
 */
const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The dashboard's files, read once into memory (they are small). Only names found in the
 * directory are served, so no request path reaches the file system. File names with a content
 * hash (`app-3f2a9c1b.js`) are cached for good; the page itself is revalidated every time.
 */
class DashboardFiles {
  #dir: string;
  #files: Map<string, { body: Buffer; headers: Record<string, string> }> | undefined;

  constructor(dir: string) {
    this.#dir = dir;
  }

  built(): boolean {
    return this.#load().size > 0;
  }

  get(name: string): { body: Buffer; headers: Record<string, string> } | undefined {
    return this.#load().get(name);
  }

  #load(): Map<string, { body: Buffer; headers: Record<string, string> }> {
    if (this.#files !== undefined) return this.#files;
    const files = new Map<string, { body: Buffer; headers: Record<string, string> }>();
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.#dir);
    } catch {
      // Not built: answered with a 404 that says so; looked for again on the next request.
      return files;
    }
    let complete = true;
    for (const name of names) {
      const type = CONTENT_TYPES[path.extname(name)];
      if (type === undefined) continue;
      const headers: Record<string, string> = {
        'content-type': type,
        'cache-control': /-[0-9A-Z]{8}\.(js|css)$/i.test(name) ? 'public, max-age=31536000, immutable' : 'no-cache',
        'x-content-type-options': 'nosniff',
      };
      if (name.endsWith('.html')) {
        headers['content-security-policy'] = DASHBOARD_CSP;
        headers['referrer-policy'] = 'no-referrer';
      }
      try {
        files.set(name, { body: fs.readFileSync(path.join(this.#dir, name)), headers });
      } catch {
        // Removed by a build running now: not kept, so the next request reads the directory again.
        complete = false;
      }
    }
    if (complete && files.has('index.html')) this.#files = files;
    return files;
  }
}

// ---------------------------------------------------------------------------------------------
// Events in and out of JSON

/** One page of a read that asked for limit + 1 events: `next` is where the following page starts. */
function pageOf(events: RecordedEvent[], limit: number, cursor: (e: RecordedEvent) => number): { events: unknown[]; next: number | null } {
  const more = events.length > limit;
  return { events: (more ? events.slice(0, limit) : events).map(eventToJson), next: more ? cursor(events[limit]!) : null };
}

interface EventInJson {
  id?: string;
  type: string;
  data?: unknown;
  dataBase64?: string;
  contentType?: string;
  metadata?: Record<string, unknown>;
}

function fromJsonEvent(e: EventInJson, i: number): EventInput {
  const out: EventInput = { type: e.type };
  if (e.id !== undefined) out.id = e.id;
  if (e.metadata !== undefined) out.metadata = e.metadata;
  if (e.dataBase64 !== undefined) {
    if (e.data !== undefined) throw new InvalidArgumentError(`events[${i}]: give data or dataBase64, not both`);
    out.data = base64(e.dataBase64, `events[${i}].dataBase64`);
    if (e.contentType !== undefined) out.contentType = e.contentType;
  } else {
    out.data = e.data;
    if (e.contentType !== undefined) out.contentType = e.contentType;
  }
  return out;
}

export function eventToJson(e: RecordedEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    position: e.position,
    stream: e.stream,
    revision: e.revision,
    id: e.id,
    type: e.type,
    contentType: e.contentType,
    timestamp: e.timestamp,
  };
  if (e.contentType === CONTENT_TYPE_JSON) out.data = e.data;
  else out.dataBase64 = Buffer.from(e.rawData).toString('base64');
  out.metadata = e.metadata;
  return out;
}

// CloudEvents 1.0, structured content mode (JSON) and batches.
const CloudEvent = Type.Object(
  {
    specversion: Type.Literal('1.0'),
    id: Type.String({ minLength: 1 }),
    source: Type.String({ minLength: 1 }),
    type: Type.String({ minLength: 1 }),
    datacontenttype: Type.Optional(Type.String()),
    dataschema: Type.Optional(Type.String()),
    subject: Type.Optional(Type.String()),
    time: Type.Optional(Type.String()),
    data: Type.Optional(Type.Unknown()),
    data_base64: Type.Optional(Type.String()),
  },
  { additionalProperties: Type.Union([Type.String(), Type.Number(), Type.Boolean()]), description: 'A CloudEvent (structured JSON). Extension attributes are kept in metadata.' },
);

function parseExpectedHeader(v: string | string[] | undefined): ExpectedRevision | undefined {
  if (v === undefined) return undefined;
  const s = Array.isArray(v) ? v[0]! : v;
  if (s === 'any' || s === 'no_stream' || s === 'stream_exists') return s;
  if (/^-?\d+$/.test(s)) return Number(s);
  throw new InvalidArgumentError(`eventful-expected-revision must be any, no_stream, stream_exists or a revision, got '${s}'`);
}

// ---------------------------------------------------------------------------------------------
// The app

export async function buildHttp(ctx: HttpContext, options: { https?: { key: Buffer; cert: Buffer } }): Promise<FastifyInstance> {
  const app = Fastify({
    ...(ctx.logger !== undefined ? { loggerInstance: ctx.logger } : { logger: false }),
    // One line per request at debug level (the onResponse hook below), not fastify's two at info.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    requestIdHeader: false,
    genReqId: requestId,
    bodyLimit: ctx.limits.httpBodyBytesMax,
    ...(options.https ? { https: options.https } : {}),
    routerOptions: { maxParamLength: 4 * 1024 },
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  // Requests are checked with TypeBox against the route table's schemas. Query strings and path
  // parameters are text, so they are converted first ('5' to 5); bodies are JSON and must have
  // the right types as sent. Errors name the field and say what was expected.
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const checker = TypeCompiler.Compile(schema as TSchema);
    const convert = httpPart === 'querystring' || httpPart === 'params';
    return (data: unknown) => {
      const value = convert ? Value.Convert(schema as TSchema, data) : data;
      if (checker.Check(value)) return { value };
      const e = checker.Errors(value).First()!;
      const field = e.path === '' ? '' : ` field '${e.path.slice(1).replace(/\//g, '.')}'`;
      return { error: new InvalidArgumentError(`${httpPart ?? 'request'}${field}: ${e.message}`, { where: httpPart, path: e.path }) };
    };
  });
  // Only JSON bodies (and the CloudEvents types below) are accepted.
  app.removeContentTypeParser('text/plain');

  for (const ct of ['application/cloudevents+json', 'application/cloudevents-batch+json']) {
    app.addContentTypeParser(ct, { parseAs: 'string' }, (_req, body, done) => {
      try {
        done(null, JSON.parse(body as string));
      } catch (err) {
        done(new InvalidArgumentError(`malformed JSON body: ${(err as Error).message}`), undefined);
      }
    });
  }
  app.addSchema(ErrorBody);

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number; validation?: unknown; validationContext?: string }, req, reply) => {
    const e = toHttpError(err, ctx.limits);
    ctx.metrics?.error('http', e.code);
    if (e instanceof InternalError) {
      if (ctx.logger !== undefined) req.log.error({ error: err.stack ?? String(err) }, 'HTTP request failed unexpectedly');
      else ctx.log('error', 'HTTP request failed unexpectedly', { error: err.stack ?? String(err) });
    }
    void reply.code(e.httpStatus).send({ code: e.code, message: e.message, details: e.details });
  });
  app.setNotFoundHandler((req, reply) => {
    ctx.metrics?.error('http', 'NOT_FOUND');
    void reply.code(404).send({ code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}`, details: {} });
  });
  const streams = new Set<() => void>();
  openStreams.set(app, streams);
  app.addHook('preClose', (done) => {
    for (const end of [...streams]) end();
    done();
  });
  // The request id goes back to the client, so a report can be matched with the server's log.
  app.addHook('onRequest', (req, reply, done) => {
    void reply.header('x-request-id', req.id);
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? '(no route)';
    const seconds = reply.elapsedTime / 1000;
    ctx.metrics?.httpRequest(req.method, route, reply.statusCode, seconds);
    if (ctx.logger?.isLevelEnabled('debug') === true) req.log.debug({ method: req.method, url: scrubUrl(req.url), route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100 }, 'request');
    done();
  });

  const defs = routes(ctx);
  for (const r of defs) {
    const bodySchema = r.body === undefined ? undefined : r.bodyTypes === undefined ? r.body : { content: { 'application/json': { schema: r.body }, ...Object.fromEntries(Object.entries(r.bodyTypes).map(([k, v]) => [k, { schema: v }])) } };
    app.route({
      method: r.method,
      url: r.url,
      schema: {
        ...(r.params ? { params: r.params } : {}),
        ...(r.querystring ? { querystring: r.querystring } : {}),
        ...(bodySchema ? { body: bodySchema } : {}),
      },
      ...(r.bodyOptional
        ? {
            preValidation: (req: FastifyRequest, _reply: FastifyReply, done: () => void) => {
              if (req.body === undefined || req.body === null) req.body = {};
              done();
            },
          }
        : {}),
      handler: async (req, reply) => {
        const principal = r.auth ? ctx.auth.authenticate(bearer(req)) : undefined;
        return r.handler(req, reply, principal!);
      },
    });
  }
  const doc = openApiDocument(defs, ctx.version);
  app.get('/openapi.json', async () => doc);
  return app;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;

/** The caller's `x-request-id` when it is a plain token of up to 64 characters, else a new UUID. */
function requestId(req: { headers: Record<string, string | string[] | undefined> }): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID_RE.test(h) ? h : randomUUID();
}

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(h);
  return m ? m[1]!.trim() : undefined;
}

function toHttpError(err: Error & { code?: string; statusCode?: number; validation?: unknown; validationContext?: string }, limits: ServerLimits): EventfulError {
  if (err instanceof EventfulError) return err;
  if (err.validation !== undefined) {
    return new InvalidArgumentError(`${err.validationContext ?? 'request'}: ${err.message.replace(/^(body|querystring|params)\/?/, '')}`, { where: err.validationContext });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new LimitExceededError('httpBodyBytesMax', -1, limits.httpBodyBytesMax, `request body is larger than httpBodyBytesMax (${limits.httpBodyBytesMax} bytes)`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new UnsupportedMediaTypeError('unsupported content type; send application/json (or application/cloudevents+json where documented)');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new InvalidArgumentError('the JSON body is empty');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new InvalidArgumentError('Content-Length does not match the body');
    default:
      break;
  }
  if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') return new InvalidArgumentError(`malformed JSON body: ${err.message}`);
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) return new InvalidArgumentError(err.message);
  return new InternalError('the request failed inside the server');
}

/** The OpenAPI 3.1 document for the route table. */
export function openApiDocument(defs: RouteDef[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of defs) {
    const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [where, schema] of [['path', r.params], ['query', r.querystring]] as const) {
      if (!schema) continue;
      const props = (schema as unknown as { properties: Record<string, TSchema> }).properties;
      const required = new Set((schema as unknown as { required?: string[] }).required ?? []);
      for (const [name, s] of Object.entries(props)) parameters.push({ name, in: where, required: where === 'path' || required.has(name), schema: s });
    }
    const responses: Record<string, unknown> = {};
    for (const [status, schema] of Object.entries(r.responses)) {
      const ok = Number(status) < 300;
      const types = ok && r.produces !== undefined ? r.produces : [r.eventStream === true && ok ? 'text/event-stream' : 'application/json'];
      responses[status] = { description: ok ? 'OK' : 'Error', content: Object.fromEntries(types.map((t) => [t, { schema }])) };
    }
    responses.default = { description: 'Error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    const op: Record<string, unknown> = { operationId: r.operationId, summary: r.summary, parameters, responses };
    if (r.auth) op.security = [{ bearer: [] }];
    else if (r.tokenOptional === true) op.security = [{}, { bearer: [] }];
    if (r.body) {
      op.requestBody = {
        required: r.bodyOptional !== true,
        content: { 'application/json': { schema: r.body }, ...Object.fromEntries(Object.entries(r.bodyTypes ?? {}).map(([k, v]) => [k, { schema: v }])) },
      };
    }
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  paths['/openapi.json'] = { get: { operationId: 'openApi', summary: 'This document.', responses: { 200: { description: 'OK' } } } };
  return {
    openapi: '3.1.0',
    info: { title: 'Eventful HTTP API', version },
    paths,
    components: { schemas: { Error: ErrorBody }, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
  };
}
