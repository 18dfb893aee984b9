// @ts-check
/**
 * Charts drawn as SVG: a line chart of a few series over time, and a bar chart. No library:
 * a chart here is a handful of polylines and rectangles scaled into a viewBox.
 */

const W = 600;
const H = 160;
const PAD = { left: 44, right: 8, top: 10, bottom: 18 };

/** A round upper bound for an axis: 1, 2 or 5 times a power of ten. @param {number} v */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** @param {number} v */
function shortNum(v) {
  if (v >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(+v.toFixed(2));
}

/**
 * @param {{
 *   series: Array<{ label: string, color: string, values: number[] }>,
 *   title?: string,
 *   unit?: string,
 *   seconds?: number,
 *   testid?: string,
 * }} props `values` are evenly spaced samples, oldest first; `seconds` is the span they cover
 */
export function LineChart({ series, title, unit = '', seconds, testid }) {
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)))));
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (/** @type {number} */ i, /** @type {number} */ len) => PAD.left + ((n - len + i) / (n - 1)) * iw;
  const y = (/** @type {number} */ v) => PAD.top + ih - (Math.max(0, v) / max) * ih;
  return (
    <figure class="chart" data-testid={testid}>
      {title ? (
        <figcaption>
          <span>{title}</span>
          <span class="legend">
            {series.map((s) => (
              <span key={s.label} class="legend-item">
                <i style={{ background: s.color }} />
                {s.label} <b>{s.values.length > 0 ? shortNum(s.values[s.values.length - 1] ?? 0) : '–'}</b>
                {unit}
              </span>
            ))}
          </span>
        </figcaption>
      ) : null}
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={title}>
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(max * f)} y2={y(max * f)} class="grid" />
            <text x={PAD.left - 6} y={y(max * f) + 4} class="axis" text-anchor="end">
              {shortNum(max * f)}
            </text>
          </g>
        ))}
        {seconds !== undefined ? (
          <text x={PAD.left} y={H - 4} class="axis">
            {`−${Math.round(seconds)} s`}
          </text>
        ) : null}
        <text x={W - PAD.right} y={H - 4} class="axis" text-anchor="end">
          now
        </text>
        {series.map((s) => {
          if (s.values.length === 0) return null;
          const pts = s.values.map((v, i) => `${x(i, s.values.length).toFixed(1)},${y(Number.isFinite(v) ? v : 0).toFixed(1)}`);
          const area = `${x(0, s.values.length).toFixed(1)},${y(0)} ${pts.join(' ')} ${x(s.values.length - 1, s.values.length).toFixed(1)},${y(0)}`;
          return (
            <g key={s.label}>
              <polygon points={area} fill={s.color} class="area" />
              <polyline points={pts.join(' ')} stroke={s.color} class="line" />
            </g>
          );
        })}
      </svg>
    </figure>
  );
}

/**
 * Vertical bars, one per item (e.g. a group's partitions by lag).
 * @param {{ items: Array<{ label: string, value: number, title?: string }>, color?: string, testid?: string }} props
 */
export function BarChart({ items, color = 'var(--accent)', testid }) {
  const max = niceMax(Math.max(0, ...items.map((i) => i.value)));
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const bw = items.length > 0 ? iw / items.length : iw;
  return (
    <figure class="chart" data-testid={testid}>
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img">
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={PAD.left} x2={W - PAD.right} y1={PAD.top + ih - f * ih} y2={PAD.top + ih - f * ih} class="grid" />
            <text x={PAD.left - 6} y={PAD.top + ih - f * ih + 4} class="axis" text-anchor="end">
              {shortNum(max * f)}
            </text>
          </g>
        ))}
        {items.map((it, i) => {
          const h = (it.value / max) * ih;
          return (
            <g key={it.label}>
              <rect x={PAD.left + i * bw + bw * 0.15} width={Math.max(1, bw * 0.7)} y={PAD.top + ih - h} height={Math.max(h, 0.5)} fill={color}>
                <title>{it.title ?? `${it.label}: ${it.value}`}</title>
              </rect>
              {items.length <= 32 ? (
                <text x={PAD.left + i * bw + bw / 2} y={H - 4} class="axis" text-anchor="middle">
                  {it.label}
                </text>
              ) : null}
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
