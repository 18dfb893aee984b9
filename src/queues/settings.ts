/**
 * Queue names and settings: defaults, and the checks every way in (embedded, wire, HTTP, CLI)
 * goes through. Every message says what was expected.
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { QueueSettings, RetryBackoff } from '../core/queues.js';
import type { StoreLimits } from '../core/limits.js';
import { compileFilter } from '../streams/validate.js';
import { checkName } from '../core/names.js';

export const DEFAULT_BACKOFF: RetryBackoff = { initialMs: 1000, maxMs: 60_000, multiplier: 2, jitter: 0.2 };

export const DEFAULT_QUEUE_SETTINGS: QueueSettings = {
  leaseMs: 30_000,
  maxDeliveries: 5,
  deadLetterQueue: null,
  retryBackoff: DEFAULT_BACKOFF,
  deliveryDelayMs: 0,
  maxLength: null,
  overflow: 'reject',
  dedupWindowMs: 300_000,
  ordering: 'unordered',
  poison: 'park',
  binding: null,
};

const SETTING_KEYS = Object.keys(DEFAULT_QUEUE_SETTINGS);

/** The stream that holds a queue's sent messages. */
export const queueStream = (name: string): string => `$queue-${name}`;
/** The stream that holds a queue's delivery records (acks, retries, deliveries). */
export const opsStream = (name: string): string => `$qops-${name}`;
/** The stream of queue definitions (created, updated, purged, deleted). */
export const DEFINITIONS_STREAM = '$queues';

export function checkQueueName(name: unknown): string {
  return checkName('queue', name);
}

/**
 * Settings `patch` applied over `base` (defaults for a new queue), checked as a whole.
 * `existing` is set for an update: `ordering` cannot change then.
 */
export function resolveSettings(patch: unknown, base: QueueSettings, limits: StoreLimits, existing: boolean): QueueSettings {
  if (patch === undefined || patch === null) return base;
  if (typeof patch !== 'object' || Array.isArray(patch)) throw new InvalidArgumentError('queue settings must be an object');
  const p = patch as Record<string, unknown>;
  for (const k of Object.keys(p)) {
    if (!SETTING_KEYS.includes(k)) throw new InvalidArgumentError(`unknown queue setting '${k}'; known: ${SETTING_KEYS.join(', ')}`);
  }
  const s: QueueSettings = { ...base, retryBackoff: { ...base.retryBackoff } };
  if (p.leaseMs !== undefined) s.leaseMs = int(p.leaseMs, 'leaseMs', 1, limits.queueLeaseMsMax);
  if (p.maxDeliveries !== undefined) s.maxDeliveries = int(p.maxDeliveries, 'maxDeliveries', 1, limits.queueMaxDeliveriesMax);
  if (p.deadLetterQueue !== undefined) s.deadLetterQueue = p.deadLetterQueue === null ? null : checkQueueName(p.deadLetterQueue);
  if (p.retryBackoff !== undefined) {
    const b = p.retryBackoff;
    if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new InvalidArgumentError('retryBackoff must be an object { initialMs, maxMs, multiplier, jitter }');
    const r = b as Record<string, unknown>;
    for (const k of Object.keys(r)) {
      if (!(k in DEFAULT_BACKOFF)) throw new InvalidArgumentError(`unknown retryBackoff setting '${k}'; known: initialMs, maxMs, multiplier, jitter`);
    }
    if (r.initialMs !== undefined) s.retryBackoff.initialMs = int(r.initialMs, 'retryBackoff.initialMs', 0, limits.queueDelayMsMax);
    if (r.maxMs !== undefined) s.retryBackoff.maxMs = int(r.maxMs, 'retryBackoff.maxMs', 0, limits.queueDelayMsMax);
    if (r.multiplier !== undefined) s.retryBackoff.multiplier = num(r.multiplier, 'retryBackoff.multiplier', 1, 100);
    if (r.jitter !== undefined) s.retryBackoff.jitter = num(r.jitter, 'retryBackoff.jitter', 0, 1);
    if (s.retryBackoff.maxMs < s.retryBackoff.initialMs) throw new InvalidArgumentError('retryBackoff.maxMs must be at least retryBackoff.initialMs');
  }
  if (p.deliveryDelayMs !== undefined) s.deliveryDelayMs = int(p.deliveryDelayMs, 'deliveryDelayMs', 0, limits.queueDelayMsMax);
  if (p.maxLength !== undefined) s.maxLength = p.maxLength === null ? null : int(p.maxLength, 'maxLength', 1, Number.MAX_SAFE_INTEGER);
  if (p.overflow !== undefined) {
    if (p.overflow !== 'reject' && p.overflow !== 'drop-oldest') throw new InvalidArgumentError(`overflow must be 'reject' or 'drop-oldest', got ${describe(p.overflow)}`);
    s.overflow = p.overflow;
  }
  if (p.dedupWindowMs !== undefined) s.dedupWindowMs = int(p.dedupWindowMs, 'dedupWindowMs', 0, limits.queueDedupWindowMsMax);
  if (p.ordering !== undefined) {
    if (p.ordering !== 'unordered' && p.ordering !== 'fifo') throw new InvalidArgumentError(`ordering must be 'unordered' or 'fifo', got ${describe(p.ordering)}`);
    if (existing && p.ordering !== base.ordering) throw new InvalidArgumentError(`a queue's ordering is fixed when it is created (it is '${base.ordering}')`);
    s.ordering = p.ordering;
  }
  if (p.poison !== undefined) {
    if (p.poison !== 'park' && p.poison !== 'skip') throw new InvalidArgumentError(`poison must be 'park' or 'skip', got ${describe(p.poison)}`);
    s.poison = p.poison;
  }
  if (p.binding !== undefined) {
    if (p.binding === null) s.binding = null;
    else {
      const b = p.binding;
      if (typeof b !== 'object' || Array.isArray(b)) throw new InvalidArgumentError('binding must be an object { filter, from? }');
      const r = b as Record<string, unknown>;
      for (const k of Object.keys(r)) if (k !== 'filter' && k !== 'from') throw new InvalidArgumentError(`unknown binding setting '${k}'; known: filter, from`);
      if (typeof r.filter !== 'object' || r.filter === null) throw new InvalidArgumentError('binding needs a filter { streamPrefix?, category?, types? }');
      const compiled = compileFilter(r.filter as never);
      if (compiled === undefined) throw new InvalidArgumentError('a binding filter must name at least one stream prefix, category or event type');
      if (r.from !== undefined && r.from !== 'start' && !(typeof r.from === 'number' && Number.isSafeInteger(r.from) && r.from >= 1)) {
        throw new InvalidArgumentError(`binding.from must be a log position (>= 1) or 'start', got ${describe(r.from)}`);
      }
      s.binding = r.from === undefined ? { filter: r.filter as never } : { filter: r.filter as never, from: r.from as number | 'start' };
    }
  }
  return s;
}

function int(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${describe(v)}`);
  }
  return v;
}

function num(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  return typeof v === 'string' ? `'${v.slice(0, 40)}'` : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
}

/** Back-off before redelivery after the `deliveries`-th failed delivery, with jitter. */
export function backoffMs(b: RetryBackoff, deliveries: number, random: () => number): number {
  const exp = Math.min(b.maxMs, b.initialMs * Math.pow(b.multiplier, Math.max(0, deliveries - 1)));
  return Math.round(exp * (1 - b.jitter * random()));
}
