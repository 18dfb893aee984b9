// @ts-check
/**
 * Overview: the server's numbers from GET /stats every 2 s, rates taken from two readings, and
 * charts of the last five minutes (kept in the page: they start when the page opens).
 */
import { get } from '../api.js';
import { LineChart } from '../charts.jsx';
import { bytes, duration, num, rate } from '../format.js';
import { ErrorBox, Link, Panel, Stat, useHistory, usePoll } from '../ui.jsx';

const POLL_MS = 2000;

/**
 * @typedef {{
 *   version: string, at: number, uptimeMs: number, headPosition: number,
 *   storage: { logBytes: number, segments: number },
 *   connections: { http: number, tcp: number, ws: number },
 *   appends: { count: number, events: number, seconds: number },
 *   reads: { pages: number, events: number, seconds: number },
 *   log: { writes: number, bytesWritten: number, syncs: number, syncSeconds: number },
 *   httpRequests: number,
 *   errors: { total: number, byCode: Record<string, number> },
 *   queues: { count: number, depth: number, inFlight: number, delayed: number, deadLettered: number, sendPerSecond: number, ackPerSecond: number },
 *   groups: { count: number, lagEventsMax: number, lagMsMax: number },
 * }} Stats
 */

/** @param {{ info: any }} props */
export function Overview({ info }) {
  const stats = usePoll((signal) => /** @type {Promise<Stats>} */ (get('/stats')).then((s) => s), POLL_MS, []);
  /** @type {Stats | undefined} */
  const s = stats.data;
  const history = useHistory(
    s?.at,
    s === undefined
      ? undefined
      : {
          head: s.headPosition,
          appends: s.appends.count,
          appendSeconds: s.appends.seconds,
          appendedEvents: s.appends.events,
          readEvents: s.reads.events,
          bytesWritten: s.log.bytesWritten,
          syncs: s.log.syncs,
          syncSeconds: s.log.syncSeconds,
          errors: s.errors.total,
          depth: s.queues.depth,
          inFlight: s.queues.inFlight,
          send: s.queues.sendPerSecond,
          ack: s.queues.ackPerSecond,
        },
  );
  // Rates between consecutive readings.
  /** @type {Array<{ events: number, appends: number, appendMs: number, fsyncMs: number, writeBytes: number, reads: number, errors: number, send: number, ack: number, depth: number, inFlight: number }>} */
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const a = /** @type {Record<string, number>} */ (history[i - 1]);
    const b = /** @type {Record<string, number>} */ (history[i]);
    const dt = Math.max(0.001, ((b.at ?? 0) - (a.at ?? 0)) / 1000);
    const d = (/** @type {string} */ k) => Math.max(0, (b[k] ?? 0) - (a[k] ?? 0));
    rates.push({
      events: d('head') / dt,
      appends: d('appends') / dt,
      appendMs: d('appends') > 0 ? (d('appendSeconds') / d('appends')) * 1000 : 0,
      fsyncMs: d('syncs') > 0 ? (d('syncSeconds') / d('syncs')) * 1000 : 0,
      writeBytes: d('bytesWritten') / dt,
      reads: d('readEvents') / dt,
      errors: d('errors') / dt,
      send: b.send ?? 0,
      ack: b.ack ?? 0,
      depth: b.depth ?? 0,
      inFlight: b.inFlight ?? 0,
    });
  }
  const last = rates[rates.length - 1];
  const span = history.length > 1 ? ((history[history.length - 1]?.at ?? 0) - (history[0]?.at ?? 0)) / 1000 : undefined;
  const series = (/** @type {keyof (typeof rates)[number]} */ k) => rates.map((r) => r[k]);

  return (
    <div class="page" data-testid="page-overview">
      <h1>Overview</h1>
      {stats.error ? (
        <>
          <ErrorBox error={stats.error} what="server statistics (GET /stats needs the metrics or admin role)" />
          {info ? (
            <div class="stats-grid">
              <Stat label="Head position" value={num(info.headPosition)} testid="stat-head" />
              <Stat label="Uptime" value={duration(info.uptimeMs)} />
              <Stat label="Version" value={info.version} />
            </div>
          ) : null}
        </>
      ) : null}
      {s ? (
        <>
          <div class="stats-grid">
            <Stat label="Head position" value={num(s.headPosition)} sub={`${bytes(s.storage.logBytes)} in ${num(s.storage.segments)} segment${s.storage.segments === 1 ? '' : 's'}`} testid="stat-head" />
            <Stat label="Events / s" value={last ? rate(last.events) : '…'} sub={last ? `${rate(last.appends)} client appends/s` : 'measuring'} testid="stat-events-rate" />
            <Stat label="Append latency" value={last && last.appendMs > 0 ? duration(last.appendMs) : '–'} sub={last && last.fsyncMs > 0 ? `fsync ${duration(last.fsyncMs)}` : `${num(s.appends.count)} appends since start`} />
            <Stat label="Written" value={bytes(s.log.bytesWritten)} sub={last ? `${bytes(last.writeBytes)}/s` : undefined} />
            <Stat label="Storage" value={bytes(s.storage.logBytes)} sub={`${num(s.storage.segments)} segment${s.storage.segments === 1 ? '' : 's'}`} testid="stat-storage" />
            <Stat label="Uptime" value={duration(s.uptimeMs)} sub={`eventful ${s.version}`} testid="stat-uptime" />
            <Stat
              label="Connections"
              value={num(s.connections.http + s.connections.tcp + s.connections.ws)}
              sub={`TCP ${s.connections.tcp} · WS ${s.connections.ws} · HTTP ${s.connections.http}`}
              testid="stat-connections"
            />
            <Stat
              label="Errors"
              value={num(s.errors.total)}
              sub={
                Object.entries(s.errors.byCode)
                  .sort((a, b) => b[1] - a[1])
                  .slice(0, 3)
                  .map(([c, n]) => `${c} ${n}`)
                  .join(' · ') || 'none'
              }
              testid="stat-errors"
            />
          </div>
          <div class="stats-grid">
            <Stat label={<Link to="/queues">Queues</Link>} value={num(s.queues.count)} sub={`${num(s.queues.deadLettered)} dead-lettered`} testid="stat-queues" />
            <Stat label="Queue depth" value={num(s.queues.depth)} sub={`${num(s.queues.inFlight)} in flight · ${num(s.queues.delayed)} delayed`} testid="stat-queue-depth" />
            <Stat label="Send / ack per s" value={`${rate(s.queues.sendPerSecond)} / ${rate(s.queues.ackPerSecond)}`} sub="over the last 10 s" />
            <Stat label={<Link to="/groups">Consumer groups</Link>} value={num(s.groups.count)} sub={`max lag ${num(s.groups.lagEventsMax)} events, ${duration(s.groups.lagMsMax)}`} testid="stat-groups" />
          </div>
          <div class="charts">
            <Panel title="Log">
              <LineChart
                title="Events per second"
                series={[
                  { label: 'all', color: 'var(--c1)', values: series('events') },
                  { label: 'client reads', color: 'var(--c3)', values: series('reads') },
                ]}
                seconds={span}
                testid="chart-events"
              />
            </Panel>
            <Panel title="Latency">
              <LineChart
                title="Average ms"
                unit=" ms"
                series={[
                  { label: 'append', color: 'var(--c2)', values: series('appendMs') },
                  { label: 'fsync', color: 'var(--c4)', values: series('fsyncMs') },
                ]}
                seconds={span}
              />
            </Panel>
            <Panel title="Queues">
              <LineChart
                title="Messages per second"
                series={[
                  { label: 'send', color: 'var(--c1)', values: series('send') },
                  { label: 'ack', color: 'var(--c2)', values: series('ack') },
                ]}
                seconds={span}
              />
            </Panel>
            <Panel title="Queue depth">
              <LineChart
                title="Messages"
                series={[
                  { label: 'depth', color: 'var(--c3)', values: series('depth') },
                  { label: 'in flight', color: 'var(--c4)', values: series('inFlight') },
                ]}
                seconds={span}
              />
            </Panel>
          </div>
        </>
      ) : stats.loading ? (
        <p class="muted">Loading…</p>
      ) : null}
    </div>
  );
}
