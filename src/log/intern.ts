/**
 * Decoding the same short strings (stream names, event types) again and again is a large part
 * of scanning the log. This table maps their bytes to the string decoded last time: a hash of
 * the bytes picks a slot, the bytes are compared, and only a miss decodes.
 */
const SLOTS = 4096; // power of two
const MAX_BYTES = 64;

export class StringInterner {
  #bytes: Array<Buffer | undefined> = new Array(SLOTS);
  #strings: Array<string | undefined> = new Array(SLOTS);

  /** The UTF-8 string of buf[start, end). */
  decode(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    if (len > MAX_BYTES) return buf.toString('utf8', start, end);
    let h = 0x811c9dc5 ^ len;
    for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
    const slot = (h >>> 0) & (SLOTS - 1);
    const known = this.#bytes[slot];
    if (known !== undefined && known.length === len) {
      let same = true;
      for (let i = 0; i < len; i++) {
        if (known[i] !== buf[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return this.#strings[slot]!;
    }
    const s = buf.toString('utf8', start, end);
    this.#bytes[slot] = Buffer.from(buf.subarray(start, end));
    this.#strings[slot] = s;
    return s;
  }
}
