/**
 * Decoding the same short strings (stream names, event types) again and again is a large part
 * of scanning the log. This table maps their bytes to the string decoded last time: a hash of
 * the bytes picks a slot, the bytes are compared, and only a miss decodes.
 *
 * Misses must stay cheap, because a log of a million one-event streams misses almost always:
 * slots keep their bytes in one preallocated slab (no allocation per miss), and when few
 * lookups hit, the table steps aside for a while and plain decoding is used.
 */
const SLOTS = 4096; // power of two
const MAX_BYTES = 64;
const WINDOW = 1024; // lookups per hit-rate check
const BYPASS = 8192; // decodes done plainly after a poor window

export class StringInterner {
  #slab = new Uint8Array(SLOTS * MAX_BYTES);
  #lengths = new Int32Array(SLOTS).fill(-1);
  #strings: Array<string | undefined> = new Array(SLOTS);
  #lookups = 0;
  #hits = 0;
  #bypass = 0;

  /** The UTF-8 string of buf[start, end). */
  decode(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    if (len > MAX_BYTES) return buf.toString('utf8', start, end);
    if (this.#bypass > 0) {
      this.#bypass--;
      return buf.toString('utf8', start, end);
    }
    let h = 0x811c9dc5 ^ len;
    for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
    const slot = (h >>> 0) & (SLOTS - 1);
    const base = slot * MAX_BYTES;
    if (++this.#lookups === WINDOW) {
      if (this.#hits < WINDOW / 8) this.#bypass = BYPASS;
      this.#lookups = 0;
      this.#hits = 0;
    }
    if (this.#lengths[slot] === len) {
      let same = true;
      for (let i = 0; i < len; i++) {
        if (this.#slab[base + i] !== buf[start + i]) {
          same = false;
          break;
        }
      }
      if (same) {
        this.#hits++;
        return this.#strings[slot]!;
      }
    }
    const s = buf.toString('utf8', start, end);
    for (let i = 0; i < len; i++) this.#slab[base + i] = buf[start + i]!;
    this.#lengths[slot] = len;
    this.#strings[slot] = s;
    return s;
  }
}
