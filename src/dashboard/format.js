// @ts-check
/** Numbers, sizes, durations and times as people read them. */

const nf = new Intl.NumberFormat('en-US');
const nf1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/** @param {number | undefined | null} n */
export function num(n) {
  return n === undefined || n === null || Number.isNaN(n) ? '–' : nf.format(n);
}

/** A rate per second, with one decimal below 100. @param {number | undefined | null} n */
export function rate(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  return n < 100 ? nf1.format(n) : nf.format(Math.round(n));
}

/** @param {number | undefined | null} bytes */
export function bytes(bytes) {
  if (bytes === undefined || bytes === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : nf1.format(v)} ${units[u]}`;
}

/** A duration in ms: "850 ms", "4.2 s", "3 min 12 s", "2 h 5 min", "3 d 4 h". @param {number | undefined | null} ms */
export function duration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '–';
  if (ms < 1) return `${nf2.format(ms)} ms`;
  if (ms < 1000) return `${nf1.format(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${nf1.format(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** @param {number | undefined | null} ms since the epoch */
export function time(ms) {
  if (ms === undefined || ms === null) return '–';
  const d = new Date(ms);
  const pad = (/** @type {number} */ n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** How long ago, short. @param {number} ms since the epoch */
export function ago(ms) {
  return `${duration(Math.max(0, Date.now() - ms))} ago`;
}

/** JSON, indented, for a data or metadata viewer. @param {unknown} v */
export function json(v) {
  return JSON.stringify(v, null, 2) ?? 'undefined';
}

/** A one-line preview of a value, cut at `max` characters. @param {unknown} v @param {number} [max] */
export function preview(v, max = 120) {
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? '');
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
