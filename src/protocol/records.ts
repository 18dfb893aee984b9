/**
 * Events in bulk on the wire: one binary blob per EVENTS frame (`{ records: bytes, count }`)
 * instead of a MessagePack array per event. Packing and unpacking nine-field arrays per event
 * cost more than everything else in a replay; this layout is copied in and read out in place,
 * and the client's RecordedEvents point into the received blob (no copy per field).
 *
 * Layout of each record (little-endian), back to back:
 *
 *   0   4   recordBytes  u32, the whole record
 *   4   8   position     u64
 *   12  8   revision     u64
 *   20  8   timestamp    u64, ms since the epoch
 *   28  16  id
 *   44  2   streamBytes  u16
 *   46  2   typeBytes    u16
 *   48  1   ctypeBytes   u8
 *   49  4   metaBytes    u32 (0: no metadata)
 *   53  4   dataBytes    u32
 *   57  ... stream, type, content type, metadata (JSON), data
 *
 * Pure: bytes in, events out.
 */
import { ProtocolError } from '../core/errors.js';
import { RecordedEvent } from '../core/events.js';

const HEADER = 57;
const TWO_32 = 0x1_0000_0000;
const utf8 = new TextEncoder();

function writeU64(dv: DataView, o: number, v: number): void {
  dv.setUint32(o, v % TWO_32, true);
  dv.setUint32(o + 4, Math.floor(v / TWO_32), true);
}

// Stream names, types and content types repeat: their UTF-8 bytes are cached (bounded).
const encoded = new Map<string, Uint8Array>();

function utf8Of(s: string): Uint8Array {
  let b = encoded.get(s);
  if (b === undefined) {
    b = utf8.encode(s);
    if (encoded.size >= 4096) encoded.clear();
    encoded.set(s, b);
  }
  return b;
}

export function encodeEventRecords(events: RecordedEvent[]): Uint8Array {
  const streams: Uint8Array[] = new Array(events.length);
  const types: Uint8Array[] = new Array(events.length);
  const ctypes: Uint8Array[] = new Array(events.length);
  let total = 0;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    streams[i] = utf8Of(e.stream);
    types[i] = utf8Of(e.type);
    ctypes[i] = utf8Of(e.contentType);
    total += HEADER + streams[i]!.length + types[i]!.length + ctypes[i]!.length + (e.rawMetadata?.length ?? 0) + e.rawData.length;
  }
  const buf = new Uint8Array(total);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 0;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const s = streams[i]!;
    const t = types[i]!;
    const c = ctypes[i]!;
    const m = e.rawMetadata;
    const d = e.rawData;
    const len = HEADER + s.length + t.length + c.length + (m?.length ?? 0) + d.length;
    dv.setUint32(o, len, true);
    writeU64(dv, o + 4, e.position);
    writeU64(dv, o + 12, e.revision);
    writeU64(dv, o + 20, e.timestamp);
    buf.set(e.idBytes, o + 28);
    dv.setUint16(o + 44, s.length, true);
    dv.setUint16(o + 46, t.length, true);
    buf[o + 48] = c.length;
    dv.setUint32(o + 49, m?.length ?? 0, true);
    dv.setUint32(o + 53, d.length, true);
    let p = o + HEADER;
    buf.set(s, p);
    p += s.length;
    buf.set(t, p);
    p += t.length;
    buf.set(c, p);
    p += c.length;
    if (m !== undefined) {
      buf.set(m, p);
      p += m.length;
    }
    buf.set(d, p);
    o += len;
  }
  return buf;
}

const textDecoder = new TextDecoder();

function u64(dv: DataView, at: number): number {
  return dv.getUint32(at, true) + dv.getUint32(at + 4, true) * TWO_32;
}

export function decodeEventRecords(buf: Uint8Array, count: number): RecordedEvent[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: RecordedEvent[] = new Array(count);
  let o = 0;
  let last: { bytes: Uint8Array; text: string }[] = [];
  const text = (start: number, len: number): string => {
    // Streams and types repeat within a page: reuse the last few decodings.
    for (const l of last) {
      if (l.bytes.length !== len) continue;
      let same = true;
      for (let i = 0; i < len; i++) {
        if (l.bytes[i] !== buf[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return l.text;
    }
    const bytes = buf.subarray(start, start + len);
    const t = textDecoder.decode(bytes);
    if (len <= 64) {
      last.unshift({ bytes, text: t });
      if (last.length > 8) last = last.slice(0, 8);
    }
    return t;
  };
  for (let i = 0; i < count; i++) {
    if (o + HEADER > buf.length) throw new ProtocolError('event records end early');
    const len = dv.getUint32(o, true);
    if (len < HEADER || o + len > buf.length) throw new ProtocolError('an event record has a bad length');
    const sLen = dv.getUint16(o + 44, true);
    const tLen = dv.getUint16(o + 46, true);
    const cLen = buf[o + 48]!;
    const mLen = dv.getUint32(o + 49, true);
    const dLen = dv.getUint32(o + 53, true);
    if (HEADER + sLen + tLen + cLen + mLen + dLen !== len) throw new ProtocolError('an event record has field lengths that do not add up');
    let p = o + HEADER;
    const stream = text(p, sLen);
    p += sLen;
    const type = text(p, tLen);
    p += tLen;
    const contentType = text(p, cLen);
    p += cLen;
    out[i] = new RecordedEvent(u64(dv, o + 4), stream, u64(dv, o + 12), type, contentType, u64(dv, o + 20), buf, o + 28, buf, p, mLen, buf, p + mLen, dLen);
    o += len;
  }
  if (o !== buf.length) throw new ProtocolError('event records have trailing bytes');
  return out;
}
