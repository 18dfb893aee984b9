/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) for HTTP appends and sends.
 *
 * Eventful keeps an event's metadata as it was appended, and hands it on: subscribers and group
 * members read it with the event, a bound queue delivers it as the delivery's headers, and a
 * sent message's headers are its metadata. So a `traceparent` put in the metadata travels from
 * the producer to every consumer without Eventful taking part in tracing.
 *
 * What this module adds: an HTTP append (or send) that carries a `traceparent` request header
 * (and optionally `tracestate`) gets it copied into the metadata of each event (or the headers of
 * each message) that has no `traceparent` of its own. A malformed header is ignored, as the
 * specification asks of a receiver, rather than failing the request.
 */

/** `version-traceid-parentid-flags`, lowercase hex; versions after 00 may add fields. */
const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$/;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_PARENT_ID = '0'.repeat(16);

/** The longest `tracestate` kept (the specification's minimum a system must propagate). */
export const TRACESTATE_BYTES_MAX = 512;

export interface TraceContext {
  traceparent: string;
  tracestate?: string;
}

/** The valid trace context of a request's headers, or undefined. */
export function traceContextOf(headers: Record<string, string | string[] | undefined>): TraceContext | undefined {
  const tp = single(headers.traceparent);
  if (tp === undefined || !isTraceparent(tp.trim())) return undefined;
  const out: TraceContext = { traceparent: tp.trim() };
  const ts = headers.tracestate === undefined ? undefined : Array.isArray(headers.tracestate) ? headers.tracestate.join(',') : headers.tracestate;
  if (ts !== undefined && ts.trim() !== '' && Buffer.byteLength(ts) <= TRACESTATE_BYTES_MAX) out.tracestate = ts.trim();
  return out;
}

export function isTraceparent(v: string): boolean {
  const m = TRACEPARENT_RE.exec(v);
  if (m === null) return false;
  const [, version, traceId, parentId, , rest] = m;
  if (version === 'ff') return false;
  if (version === '00' && rest !== undefined) return false;
  return traceId !== ZERO_TRACE_ID && parentId !== ZERO_PARENT_ID;
}

/**
 * `metadata` with the trace context added when it has no `traceparent` of its own (returned as
 * is otherwise, or when there is no context).
 */
export function withTraceContext<T extends Record<string, unknown>>(metadata: T | undefined, ctx: TraceContext | undefined): T | undefined {
  if (ctx === undefined || (metadata !== undefined && metadata.traceparent !== undefined)) return metadata;
  return { ...(metadata ?? ({} as T)), ...ctx };
}

function single(v: string | string[] | undefined): string | undefined {
  if (Array.isArray(v)) return v.length === 1 ? v[0] : undefined;
  return v;
}
