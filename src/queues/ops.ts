/**
 * A queue's delivery records, as they are kept in the log.
 *
 * Each queue `q` has a stream `$qops-q`. Its events (type `$ops`, binary data) each carry a
 * batch of ops, written together with whatever else the group commit holds. Each op, in order
 * (little-endian):
 *
 *   u8 op, f64 position, f64 a, f64 b     DELIVER  a = delivery count (absolute), b = time
 *                                         RETRY    a = visible again at (ms), b = OUTCOME of the delivery
 *                                         SETTLE   a = OUTCOME (acked, dead-lettered, dropped, ...)
 *   u8 op, u16 n, n bytes (UTF-8)         PARK / UNPARK a FIFO group
 *
 * Every op states a result rather than a change (a count, a time), so replaying ops that a
 * snapshot already reflects leaves the state as it was.
 */

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
const OP_BYTES = 25;

/** Ops appended as they happen, into one growing buffer (no object per op). */
export class OpBuffer {
  #buf = Buffer.allocUnsafe(4096);
  #len = 0;
  count = 0;

  get bytes(): number {
    return this.#len;
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  push(op: number, position: number, a: number, b: number): void {
    this.#room(OP_BYTES);
    const buf = this.#buf;
    let o = this.#len;
    buf[o] = op;
    buf.writeDoubleLE(position, o + 1);
    buf.writeDoubleLE(a, o + 9);
    buf.writeDoubleLE(b, o + 17);
    o += OP_BYTES;
    this.#len = o;
    this.count++;
  }

  pushGroup(op: number, group: string): void {
    const n = Buffer.byteLength(group, 'utf8');
    this.#room(3 + n);
    this.#buf[this.#len] = op;
    this.#buf.writeUInt16LE(n, this.#len + 1);
    this.#buf.write(group, this.#len + 3, 'utf8');
    this.#len += 3 + n;
    this.count++;
  }

  /** Everything pushed so far, in records of at most `maxBytes`; the buffer starts empty again. */
  take(maxBytes: number): Buffer[] {
    const out: Buffer[] = [];
    let start = 0;
    let o = 0;
    while (o < this.#len) {
      const size = this.#buf[o] === OP.PARK || this.#buf[o] === OP.UNPARK ? 3 + this.#buf.readUInt16LE(o + 1) : OP_BYTES;
      if (o + size - start > maxBytes && o > start) {
        out.push(Buffer.from(this.#buf.subarray(start, o)));
        start = o;
      }
      o += size;
    }
    if (o > start) out.push(Buffer.from(this.#buf.subarray(start, o)));
    this.#len = 0;
    this.count = 0;
    if (this.#buf.length > 1 << 20) this.#buf = Buffer.allocUnsafe(4096);
    return out;
  }

  /** Puts ops that failed to be written back in front. */
  unshift(records: Buffer[]): void {
    const rest = Buffer.from(this.#buf.subarray(0, this.#len));
    const all = Buffer.concat([...records, rest]);
    this.#buf = Buffer.allocUnsafe(Math.max(4096, all.length));
    all.copy(this.#buf);
    this.#len = all.length;
  }
}

/** The ops of one `$ops` record. */
export function decodeOps(bytes: Uint8Array): Op[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Op[] = [];
  let o = 0;
  while (o < buf.length) {
    const op = buf[o]!;
    if (op === OP.PARK || op === OP.UNPARK) {
      if (o + 3 > buf.length) break;
      const n = buf.readUInt16LE(o + 1);
      out.push({ op, position: 0, a: 0, b: 0, group: buf.toString('utf8', o + 3, o + 3 + n) });
      o += 3 + n;
    } else {
      if (o + OP_BYTES > buf.length) break;
      out.push({ op, position: buf.readDoubleLE(o + 1), a: buf.readDoubleLE(o + 9), b: buf.readDoubleLE(o + 17) });
      o += OP_BYTES;
    }
  }
  return out;
}
