/**
 * A queue's delivery records, as they are kept in the log.
 *
 * Each queue `q` has a stream `$qops-q`. Its events (type `$ops`, MessagePack data) each carry a
 * batch of ops, written together with whatever else the group commit holds:
 *
 *   [op, position, a, b]        DELIVER  a = delivery count (absolute), b = time
 *                               RETRY    a = visible again at (ms), b = OUTCOME of the delivery
 *                               SETTLE   a = OUTCOME (acked, dead-lettered, dropped, ...)
 *   [op, 0, 0, 0, group]        PARK / UNPARK a FIFO group
 *
 * Every op states a result rather than a change (a count, a time), so replaying ops that a
 * snapshot already reflects leaves the state as it was.
 */
import { Packr } from 'msgpackr/pack';
import { Unpackr } from 'msgpackr/unpack';

export const OP = { DELIVER: 1, RETRY: 2, SETTLE: 3, PARK: 4, UNPARK: 5 } as const;

/** How a delivery, or a message, ended. */
export const OUTCOME = {
  pending: 0,
  acked: 1,
  nacked: 2,
  expired: 3,
  released: 4,
  cancelled: 5,
  dropped: 6,
  deadLettered: 7,
  redriven: 8,
  rejected: 9,
  purged: 10,
  restarted: 11,
} as const;

export const OUTCOME_NAMES: Record<number, string> = Object.fromEntries(Object.entries(OUTCOME).map(([k, v]) => [v, k]));

export interface Op {
  op: number;
  position: number;
  a: number;
  b: number;
  group?: string;
}

export const OPS_EVENT_TYPE = '$ops';
const packr = new Packr({ useRecords: false, int64AsType: 'number' });
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'number' });

export function encodeOps(ops: Op[]): Buffer {
  return packr.pack(ops.map((o) => (o.group === undefined ? [o.op, o.position, o.a, o.b] : [o.op, o.position, o.a, o.b, o.group])));
}

export function decodeOps(bytes: Uint8Array): Op[] {
  const rows = unpackr.unpack(bytes) as unknown[];
  if (!Array.isArray(rows)) return [];
  const out: Op[] = [];
  for (const r of rows) {
    if (!Array.isArray(r) || r.length < 4) continue;
    const op: Op = { op: r[0] as number, position: r[1] as number, a: r[2] as number, b: r[3] as number };
    if (typeof r[4] === 'string') op.group = r[4];
    out.push(op);
  }
  return out;
}
