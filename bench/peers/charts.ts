/**
 * Horizontal bar charts as standalone SVG text: no library, no fonts to load, nothing fetched.
 * Each bar is a median with a whisker from the minimum to the maximum run; bars may be grouped
 * (one system, several percentiles). A log scale is used where values span decades (latency).
 */

export interface Bar {
  /** Row label (the system); repeated labels in a row of one group are printed once. */
  group: string;
  /** Label of the bar inside its group (e.g. 'p99'), or '' for one bar per group. */
  label: string;
  value: number;
  min?: number;
  max?: number;
  color: string;
  /** Text after the bar, e.g. '52.1k/s'. */
  valueText: string;
}

export interface Chart {
  title: string;
  subtitle: string;
  /** Axis caption, e.g. 'messages per second'. */
  axis: string;
  bars: Bar[];
  log?: boolean;
  legend?: Array<{ color: string; label: string }>;
  /** A vertical reference line, e.g. the machine's limit. */
  reference?: { value: number; label: string };
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export const COLORS = {
  eventfulDurable: '#1a5fb4',
  eventfulNonDurable: '#62a0ea',
  peerDurable: '#5e5c64',
  peerNonDurable: '#c0bfbc',
} as const;

function niceStep(max: number): number {
  const raw = max / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

export function fmtNumber(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function barChartSvg(c: Chart): string {
  const W = 960;
  const left = 300;
  const right = 110;
  const plotW = W - left - right;
  const rowH = 20;
  const groupGap = 10;
  const legendY = 62; // baseline of the legend's row, under the title and subtitle
  const top = 70 + (c.legend !== undefined ? 22 : 0) + (c.reference !== undefined ? 18 : 0);
  // Rows: one per bar, groups separated by a gap.
  const rows: Array<{ bar: Bar; y: number; first: boolean }> = [];
  let y = top;
  let prev: string | undefined;
  for (const b of c.bars) {
    const first = b.group !== prev;
    if (first && prev !== undefined) y += groupGap;
    rows.push({ bar: b, y, first });
    y += rowH;
    prev = b.group;
  }
  const plotBottom = y + 4;
  const H = plotBottom + 50;
  const values = c.bars.flatMap((b) => [b.value, b.max ?? b.value]).filter((v) => Number.isFinite(v) && v > 0);
  if (c.reference !== undefined) values.push(c.reference.value);
  const vmax = values.length > 0 ? Math.max(...values) : 1;
  let x: (v: number) => number;
  let ticks: number[];
  if (c.log === true) {
    const vmin = values.length > 0 ? Math.min(...values) : 0.1;
    const lo = 10 ** Math.floor(Math.log10(vmin));
    const hi = 10 ** Math.ceil(Math.log10(vmax));
    x = (v) => left + (plotW * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
    ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
  } else {
    const step = niceStep(vmax * 1.05);
    const hi = Math.ceil((vmax * 1.05) / step) * step;
    x = (v) => left + (plotW * Math.max(0, v)) / hi;
    ticks = [];
    for (let t = 0; t <= hi * 1.0001; t += step) ticks.push(t);
  }
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Verdana, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="16" y="26" font-size="16" font-weight="bold">${esc(c.title)}</text>`);
  out.push(`<text x="16" y="46" fill="#444">${esc(c.subtitle)}</text>`);
  if (c.legend !== undefined) {
    let lx = 16;
    for (const l of c.legend) {
      out.push(`<rect x="${lx}" y="${legendY - 10}" width="12" height="12" fill="${l.color}"/>`);
      out.push(`<text x="${lx + 17}" y="${legendY}" fill="#222">${esc(l.label)}</text>`);
      lx += 30 + l.label.length * 6.6;
    }
  }
  for (const t of ticks) {
    const tx = x(t).toFixed(1);
    out.push(`<line x1="${tx}" y1="${top - 6}" x2="${tx}" y2="${plotBottom}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${tx}" y="${plotBottom + 16}" text-anchor="middle" fill="#555">${esc(fmtNumber(t))}</text>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${plotBottom + 36}" text-anchor="middle" fill="#333">${esc(c.axis)}</text>`);
  for (const r of rows) {
    const b = r.bar;
    const cy = r.y + rowH / 2;
    if (r.first) out.push(`<text x="${left - 10}" y="${(r.y + (b.label === '' ? rowH / 2 + 4 : 14)).toFixed(1)}" text-anchor="end" fill="#111">${esc(b.group)}</text>`);
    const barX = left; // bars start at the axis: 0 on a linear scale, the lowest decade on a log one
    const xv = Number.isFinite(b.value) ? x(b.value) : barX;
    out.push(`<rect x="${barX}" y="${r.y + 3}" width="${Math.max(1, xv - barX).toFixed(1)}" height="${rowH - 6}" fill="${b.color}"/>`);
    if (b.min !== undefined && b.max !== undefined && Number.isFinite(b.min) && Number.isFinite(b.max) && b.max > b.min) {
      const a = x(b.min).toFixed(1);
      const z = x(b.max).toFixed(1);
      out.push(`<line x1="${a}" y1="${cy}" x2="${z}" y2="${cy}" stroke="#000" stroke-width="1.2"/>`);
      out.push(`<line x1="${a}" y1="${cy - 4}" x2="${a}" y2="${cy + 4}" stroke="#000" stroke-width="1.2"/>`);
      out.push(`<line x1="${z}" y1="${cy - 4}" x2="${z}" y2="${cy + 4}" stroke="#000" stroke-width="1.2"/>`);
    }
    const label = b.label !== '' ? `${b.label} ${b.valueText}` : b.valueText;
    const tx = Math.max(xv, b.max !== undefined && Number.isFinite(b.max) ? x(b.max) : xv) + 6;
    out.push(`<text x="${tx.toFixed(1)}" y="${(cy + 4).toFixed(1)}" fill="#222">${esc(label)}</text>`);
  }
  if (c.reference !== undefined) {
    const rx = x(c.reference.value).toFixed(1);
    out.push(`<line x1="${rx}" y1="${top - 10}" x2="${rx}" y2="${plotBottom}" stroke="#c01c28" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${rx}" y="${top - 12}" text-anchor="start" fill="#c01c28">${esc(c.reference.label)}</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
