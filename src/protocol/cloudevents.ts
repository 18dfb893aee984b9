/**
 * CloudEvents 1.0 (structured JSON) to and from Eventful events: for the HTTP API's CloudEvents
 * appends, and for `eventful export --format cloudevents` / `eventful import`.
 *
 * In: the CloudEvent's `type` becomes the event type and `data` (or `data_base64`) its data;
 * the other attributes are kept in `metadata.cloudevents`. CloudEvents ids need not be UUIDs:
 * the event id is derived from `source` and `id`, so a re-delivered CloudEvent is an idempotent
 * append.
 *
 * Out: `id` is the event id, `source` `eventful:<stream>`, `subject` the stream, `time` the commit
 * time; extension attributes carry what CloudEvents has no field for: `eventfulposition`,
 * `eventfulrevision`, and `eventfulmetadata` (the metadata as JSON text). Reading such a
 * CloudEvent back gives the same event (same id, type, data and metadata).
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { CONTENT_TYPE_JSON, bytesToBase64 } from '../core/events.js';
import type { EventInput, RecordedEvent } from '../core/events.js';
import { isUuid } from '../core/ids.js';

export type CloudEventIn = Record<string, unknown> & { id: string; source: string; type: string; data?: unknown; data_base64?: string; datacontenttype?: string };

export function fromCloudEvent(ce: CloudEventIn): EventInput {
  const { data, data_base64, ...attributes } = ce;
  const datacontenttype = ce.datacontenttype;
  const id = isUuid(ce.id) ? ce.id : uuidFromName(`${ce.source}\u0000${ce.id}`);
  let metadata: Record<string, unknown> | undefined = { cloudevents: attributes };
  // An Eventful export: its metadata comes back as it was (none when it had none).
  if (typeof attributes.eventfulposition === 'number' && attributes.eventfulmetadata === undefined) metadata = undefined;
  else if (typeof attributes.eventfulmetadata === 'string') {
    try {
      metadata = JSON.parse(attributes.eventfulmetadata) as Record<string, unknown>;
    } catch {
      throw new InvalidArgumentError('eventfulmetadata must be JSON text');
    }
  }
  const e: EventInput = { id, type: ce.type };
  if (metadata !== undefined) e.metadata = metadata;
  if (data_base64 !== undefined) {
    if (data !== undefined) throw new InvalidArgumentError('a CloudEvent has data or data_base64, not both');
    e.data = base64(data_base64, 'data_base64');
    e.contentType = datacontenttype ?? 'application/octet-stream';
  } else {
    const ct = datacontenttype ?? CONTENT_TYPE_JSON;
    if (ct !== CONTENT_TYPE_JSON && !/[/+]json$/.test(ct)) {
      if (typeof data !== 'string') throw new InvalidArgumentError(`a CloudEvent with datacontenttype ${ct} needs string data or data_base64`);
      e.data = Buffer.from(data, 'utf8');
      e.contentType = ct;
    } else e.data = data === undefined ? null : data;
  }
  return e;
}

export function toCloudEvent(e: RecordedEvent): Record<string, unknown> {
  const ce: Record<string, unknown> = {
    specversion: '1.0',
    id: e.id,
    source: `eventful:${e.stream}`,
    type: e.type,
    subject: e.stream,
    time: new Date(e.timestamp).toISOString(),
    datacontenttype: e.contentType,
    eventfulposition: e.position,
    eventfulrevision: e.revision,
  };
  if (e.rawMetadata !== undefined) ce.eventfulmetadata = JSON.stringify(e.metadata);
  if (e.isJson) ce.data = e.data;
  else ce.data_base64 = bytesToBase64(e.rawData);
  return ce;
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decodes standard base64, refusing anything else (Buffer.from would skip bad characters). */
export function base64(s: string, what: string): Buffer {
  if (!BASE64_RE.test(s)) throw new InvalidArgumentError(`${what} is not valid base64 (standard alphabet, with padding)`);
  return Buffer.from(s, 'base64');
}

/** A name-based UUID (version 5 layout, SHA-1), stable for the same name. */
export function uuidFromName(name: string): string {
  const h = createHash('sha1').update('eventful-cloudevents').update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
