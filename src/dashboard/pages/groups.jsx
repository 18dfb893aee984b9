// @ts-check
/**
 * Consumer groups: position, lag in events and time, members and partitions (GET /groups and
 * GET /groups/{g}, every 2 s). Projections are not on the server (they run inside applications),
 * so this page says where to see them instead.
 */
import { get, seg } from '../api.js';
import { BarChart, LineChart } from '../charts.jsx';
import { duration, num, time } from '../format.js';
import { ErrorBox, JsonView, Link, Panel, Stat, useHistory, usePoll } from '../ui.jsx';

const POLL_MS = 2000;

/**
 * @typedef {{ name: string, settings: { filter: Record<string, string | string[]>, mode: string, partitions: number },
 *   startPosition: number, createdPosition: number, createdAt: number, checkpoints: number[], position: number, head: number,
 *   lagPositions: number, lagEvents: number, lagExact: boolean, lagMs: number,
 *   members: Array<{ id: string, name: string, joinedAt: number, partitions: number[], revoking: number[], committedPosition: number }> }} GroupStats
 */

async function loadGroups() {
  /** @type {{ groups: any[] }} */
  const list = await get('/groups');
  return Promise.all(
    list.groups.map((g) =>
      get(`/groups/${seg(g.name)}`).then(
        (stats) => ({ info: g, stats, error: undefined }),
        (error) => ({ info: g, stats: undefined, error }),
      ),
    ),
  );
}

export function GroupList() {
  const groups = usePoll(loadGroups, POLL_MS, []);
  const rows = groups.data ?? [];
  return (
    <div class="page" data-testid="page-groups">
      <h1>Consumer groups</h1>
      <ErrorBox error={groups.error} what="consumer groups" />
      <Panel>
        {rows.length === 0 && !groups.loading ? <p class="muted empty">No consumer groups (or none this token may read).</p> : null}
        {rows.length > 0 ? (
          <table data-testid="group-list">
            <thead>
              <tr>
                <th>Group</th>
                <th>Mode</th>
                <th class="num">Position</th>
                <th class="num">Head</th>
                <th class="num">Lag (events)</th>
                <th class="num">Lag (time)</th>
                <th class="num">Members</th>
                <th>Filter</th>
              </tr>
            </thead>
            <tbody>
              {rows.map(({ info, stats: s, error }) => (
                <tr key={info.name} data-group={info.name}>
                  <td class="mono">
                    <Link to={`/groups/${seg(info.name)}`}>{info.name}</Link>
                  </td>
                  <td>
                    {info.settings.mode}
                    {info.settings.mode === 'partitioned' ? ` (${info.settings.partitions})` : ''}
                  </td>
                  {s ? (
                    <>
                      <td class="num mono">{num(s.position)}</td>
                      <td class="num mono">{num(s.head)}</td>
                      <td class="num" data-col="lag">
                        {num(s.lagEvents)}
                        {s.lagExact ? '' : '+'}
                      </td>
                      <td class="num">{s.lagMs > 0 ? duration(s.lagMs) : '–'}</td>
                      <td class="num">{num(s.members.length)}</td>
                    </>
                  ) : (
                    <td colSpan={5}>
                      <ErrorBox error={error} what="this group's stats" />
                    </td>
                  )}
                  <td class="mono small">{filterText(info.settings.filter)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </Panel>
      <ProjectionsNote />
    </div>
  );
}

/** @param {{ name: string }} props */
export function GroupView({ name }) {
  const stats = usePoll(() => /** @type {Promise<GroupStats>} */ (get(`/groups/${seg(name)}`)), POLL_MS, [name]);
  const s = stats.data;
  const history = useHistory(stats.at, s ? { lag: s.lagEvents, lagMs: s.lagMs } : undefined);
  return (
    <div class="page" data-testid="page-group">
      <p class="crumbs">
        <Link to="/groups">Consumer groups</Link> /
      </p>
      <h1 class="mono">{name}</h1>
      <ErrorBox error={stats.error} what="this group" />
      {s ? (
        <>
          <div class="stats-grid" data-testid="group-stats">
            <Stat label="Position" value={num(s.position)} sub={`head ${num(s.head)}`} testid="group-position" />
            <Stat label="Lag" value={`${num(s.lagEvents)}${s.lagExact ? '' : '+'} events`} sub={`${num(s.lagPositions)} positions`} testid="group-lag" />
            <Stat label="Lag in time" value={s.lagMs > 0 ? duration(s.lagMs) : '–'} sub="age of the oldest event not yet handled" />
            <Stat label="Members" value={num(s.members.length)} sub={`${s.settings.mode}${s.settings.mode === 'partitioned' ? `, ${s.settings.partitions} partitions` : ''}`} testid="group-members" />
            <Stat label="Created at position" value={num(s.createdPosition)} sub={`${time(s.createdAt)}, reading from ${s.startPosition}`} />
          </div>
          <div class="charts">
            <Panel title="Lag">
              <LineChart title="Events" series={[{ label: 'lag', color: 'var(--c3)', values: history.map((h) => h.lag ?? 0) }]} />
            </Panel>
            <Panel title="Partitions">
              <BarChart items={s.checkpoints.map((c, i) => ({ label: String(i), value: Math.max(0, s.head - c), title: `partition ${i}: checkpoint ${c}, ${s.head - c} positions behind` }))} testid="group-partitions" />
              <p class="muted small">Positions behind the head, per partition.</p>
            </Panel>
          </div>
          <Panel title="Members">
            {s.members.length === 0 ? (
              <p class="muted empty">No member is joined. Members join over the binary protocol (the client's groups.join, or eventful group consume).</p>
            ) : (
              <table data-testid="group-member-list">
                <thead>
                  <tr>
                    <th>Member</th>
                    <th>Id</th>
                    <th>Joined</th>
                    <th>Partitions</th>
                    <th class="num">Committed position</th>
                  </tr>
                </thead>
                <tbody>
                  {s.members.map((m) => (
                    <tr key={m.id}>
                      <td>{m.name}</td>
                      <td class="mono small">{m.id}</td>
                      <td class="mono nowrap">{time(m.joinedAt)}</td>
                      <td class="mono">
                        {m.partitions.join(', ') || '(standing by)'}
                        {m.revoking.length > 0 ? ` (handing over ${m.revoking.join(', ')})` : ''}
                      </td>
                      <td class="num mono">{num(m.committedPosition)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Panel>
          <Panel title="Settings">
            <JsonView value={s.settings} />
          </Panel>
        </>
      ) : null}
    </div>
  );
}

/** @param {Record<string, string | string[]> | undefined} f */
function filterText(f) {
  if (f === undefined || Object.keys(f).length === 0) return 'every application event';
  return Object.entries(f)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : v}`)
    .join('; ');
}

function ProjectionsNote() {
  return (
    <Panel title="Projections" class="note">
      <p>
        Projections run inside your applications (the <code>Projection</code> class of the <code>eventful</code> package), not in the server: each reads
        the log with its own checkpoint, kept in its read-model store, so the server does not know them and they are not listed here. To watch a
        projection, serve its status from your application with <code>statusHandler</code>:
      </p>
      <pre>{`import http from 'node:http';
import { statusHandler } from 'eventful';

http.createServer(statusHandler([orders, carts])).listen(9464);
// GET /            { projections: [{ state, position, lagPositions, lagMs, eventsPerSecond, ... }] }
// GET /?name=orders  one projection's status (503 when it is faulted)`}</pre>
      <p class="muted small">
        Or from a shell: <code>npx eventful projection status ./read-models.js</code> (the checkpoint, the lag and every slot). See docs/projections.md.
      </p>
    </Panel>
  );
}
