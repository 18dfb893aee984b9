/** Event ids: RFC 9562 UUIDs, carried as canonical strings and stored as 16 bytes. */

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function isUuid(value: unknown): value is string {
  if (typeof value !== 'string' || value.length !== 36) return false;
  // A loop rather than a regular expression: ids are checked on every event and message.
  for (let i = 0; i < 36; i++) {
    const c = value.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45) return false;
    } else if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70))) return false;
  }
  return true;
}

export function newEventId(): string {
  return globalThis.crypto.randomUUID();
}

/** Writes the 16 bytes of a canonical UUID string into `out` at `offset`. */
export function uuidToBytes(uuid: string, out: Uint8Array, offset: number): void {
  let j = offset;
  for (let i = 0; i < 36; i++) {
    const c = uuid.charCodeAt(i);
    if (c === 45 /* - */) continue;
    out[j++] = (hexValue(c) << 4) | hexValue(uuid.charCodeAt(++i));
  }
}

/** Formats 16 bytes as a canonical lower-case UUID string. */
export function uuidFromBytes(bytes: Uint8Array, offset: number): string {
  const h = (k: number): string => HEX[bytes[offset + k]!]!;
  return (
    h(0) + h(1) + h(2) + h(3) + '-' + h(4) + h(5) + '-' + h(6) + h(7) + '-' + h(8) + h(9) + '-' +
    h(10) + h(11) + h(12) + h(13) + h(14) + h(15)
  );
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return c - 55; // A-F: the caller has checked the string with isUuid
}
