// @ts-check
/**
 * Queues: every queue's stats (GET /queues/{q}/stats, every 2 s), and one queue in detail: its
 * settings, its messages as they are kept in the log (the stream `$queue-<name>`), redrive of
 * dead letters and purge (both asked twice).
 */
import { useState } from 'preact/hooks';
import { get, post, qs, seg } from '../api.js';
import { LineChart } from '../charts.jsx';
import { EventDetail } from '../events.jsx';
import { duration, num, preview, rate, time } from '../format.js';
import { ConfirmButton, ErrorBox, JsonView, Link, Panel, Stat, useHistory, usePoll } from '../ui.jsx';

const POLL_MS = 2000;

/**
 * @typedef {{ name: string, depth: number, ready: number, inFlight: number, delayed: number, parkedGroups: number,
 *   deadLettered: number, oldestUnackedAgeMs: number, consumers: number,
 *   rates: { send: number, ack: number, nack: number, redelivery: number },
 *   totals: Record<string, number> }} QueueStats
 */

/** Each queue with its stats; a queue the token may not read is left out by the server. */
async function loadQueues() {
  /** @type {{ queues: any[] }} */
  const list = await get('/queues');
  const stats = await Promise.all(
    list.queues.map((q) =>
      get(`/queues/${seg(q.name)}/stats`).then(
        (s) => /** @type {{ info: any, stats: QueueStats | undefined, error?: Error }} */ ({ info: q, stats: s }),
        (error) => ({ info: q, stats: undefined, error }),
      ),
    ),
  );
  return stats;
}

export function QueueList() {
  const queues = usePoll(loadQueues, POLL_MS, []);
  const rows = queues.data ?? [];
  const dlqs = new Set(rows.map((r) => r.info.settings.deadLetterQueue).filter((x) => typeof x === 'string'));
  return (
    <div class="page" data-testid="page-queues">
      <h1>Queues</h1>
      <ErrorBox error={queues.error} what="queues" />
      <Panel>
        {rows.length === 0 && !queues.loading ? <p class="muted empty">No queues (or none this token may read).</p> : null}
        {rows.length > 0 ? (
          <table data-testid="queue-list">
            <thead>
              <tr>
                <th>Queue</th>
                <th class="num">Depth</th>
                <th class="num">Ready</th>
                <th class="num">In flight</th>
                <th class="num">Delayed</th>
                <th class="num">Dead-lettered</th>
                <th class="num">Oldest</th>
                <th class="num">Consumers</th>
                <th class="num">Send/s</th>
                <th class="num">Ack/s</th>
                <th class="num">Redeliveries/s</th>
              </tr>
            </thead>
            <tbody>
              {rows.map(({ info, stats: s, error }) => (
                <tr key={info.name} data-queue={info.name}>
                  <td class="mono">
                    <Link to={`/queues/${seg(info.name)}`}>{info.name}</Link>
                    {dlqs.has(info.name) ? <span class="tag warn">dead letters</span> : null}
                    {info.settings.binding ? <span class="tag">bound</span> : null}
                  </td>
                  {s ? (
                    <>
                      <td class="num" data-col="depth">{num(s.depth)}</td>
                      <td class="num">{num(s.ready)}</td>
                      <td class="num">{num(s.inFlight)}</td>
                      <td class="num">{num(s.delayed)}</td>
                      <td class="num">{num(s.deadLettered)}</td>
                      <td class="num">{s.oldestUnackedAgeMs > 0 ? duration(s.oldestUnackedAgeMs) : '–'}</td>
                      <td class="num">{num(s.consumers)}</td>
                      <td class="num">{rate(s.rates.send)}</td>
                      <td class="num">{rate(s.rates.ack)}</td>
                      <td class="num">{rate(s.rates.redelivery)}</td>
                    </>
                  ) : (
                    <td colSpan={10}>
                      <ErrorBox error={error} what="this queue's stats" />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </Panel>
    </div>
  );
}

/** @param {{ name: string }} props */
export function QueueView({ name }) {
  const info = usePoll(() => get(`/queues/${seg(name)}`), 0, [name]);
  const stats = usePoll(() => /** @type {Promise<QueueStats>} */ (get(`/queues/${seg(name)}/stats`)), POLL_MS, [name]);
  const [version, setVersion] = useState(0);
  const bound = info.data?.settings?.binding;
  const messages = usePoll(() => get(`/streams/${seg(`$queue-${name}`)}${qs({ from: 'end', direction: 'backwards', limit: 25 })}`), POLL_MS * 2, [name, version]);
  const [open, setOpen] = useState(/** @type {number | undefined} */ (undefined));
  const [outcome, setOutcome] = useState(/** @type {{ ok: boolean, text: string } | undefined} */ (undefined));
  const [redrive, setRedrive] = useState({ to: '', count: '' });
  const s = stats.data;
  const history = useHistory(stats.at, s ? { depth: s.depth, inFlight: s.inFlight, send: s.rates.send, ack: s.rates.ack, redelivery: s.rates.redelivery } : undefined);
  /** @type {any[]} */
  const events = messages.data?.events ?? [];
  const act = async (/** @type {() => Promise<string>} */ f) => {
    try {
      setOutcome({ ok: true, text: await f() });
    } catch (err) {
      setOutcome({ ok: false, text: `${/** @type {any} */ (err).status ?? ''} ${/** @type {any} */ (err).code ?? ''}: ${/** @type {Error} */ (err).message}` });
    }
    stats.refresh();
    setVersion((v) => v + 1);
  };
  return (
    <div class="page" data-testid="page-queue">
      <p class="crumbs">
        <Link to="/queues">Queues</Link> /
      </p>
      <h1 class="mono">{name}</h1>
      <ErrorBox error={info.error ?? stats.error} what="this queue" />
      {s ? (
        <div class="stats-grid" data-testid="queue-stats">
          <Stat label="Depth" value={num(s.depth)} sub={`${num(s.ready)} ready`} testid="queue-depth" />
          <Stat label="In flight" value={num(s.inFlight)} sub={`${num(s.consumers)} consumers`} />
          <Stat label="Delayed" value={num(s.delayed)} sub={s.parkedGroups > 0 ? `${s.parkedGroups} parked groups` : undefined} />
          <Stat label="Dead-lettered" value={num(s.deadLettered)} sub={info.data?.settings?.deadLetterQueue ? <Link to={`/queues/${seg(info.data.settings.deadLetterQueue)}`}>to {info.data.settings.deadLetterQueue}</Link> : 'no dead-letter queue'} testid="queue-dead-lettered" />
          <Stat label="Oldest unacked" value={s.oldestUnackedAgeMs > 0 ? duration(s.oldestUnackedAgeMs) : '–'} />
          <Stat label="Rates /s" value={`${rate(s.rates.send)} → ${rate(s.rates.ack)}`} sub={`nack ${rate(s.rates.nack)} · redelivery ${rate(s.rates.redelivery)}`} />
          <Stat label="Since start" value={num(s.totals.sent)} sub={`sent · ${num(s.totals.acked)} acked · ${num(s.totals.redelivered)} redelivered · ${num(s.totals.expired)} expired`} />
        </div>
      ) : null}
      <Panel title="Actions">
        {outcome ? (
          <div class={`notice ${outcome.ok ? 'ok' : 'error'}`} role="status" data-testid="queue-outcome">
            {outcome.text}
          </div>
        ) : null}
        <div class="actions">
          <form class="inline" onSubmit={(e) => e.preventDefault()}>
            <label>
              redrive to <input value={redrive.to} onInput={(e) => setRedrive({ ...redrive, to: /** @type {HTMLInputElement} */ (e.currentTarget).value })} placeholder="where each came from" data-testid="redrive-to" />
            </label>
            <label>
              count <input type="number" min="1" value={redrive.count} onInput={(e) => setRedrive({ ...redrive, count: /** @type {HTMLInputElement} */ (e.currentTarget).value })} placeholder="all" />
            </label>
            <ConfirmButton
              label="Redrive…"
              question={`Move ${redrive.count || 'every waiting'} message${redrive.count === '1' ? '' : 's'} out of ${name}${redrive.to ? ` to ${redrive.to}` : ' back to where each came from'}?`}
              confirmLabel="Redrive"
              testid="redrive"
              disabled={s !== undefined && s.ready + s.delayed === 0}
              onConfirm={() =>
                act(async () => {
                  /** @type {Record<string, unknown>} */
                  const body = {};
                  if (redrive.to) body.to = redrive.to;
                  if (redrive.count) body.count = Number(redrive.count);
                  const r = await post(`/queues/${seg(name)}/redrive`, body);
                  return `Moved ${r.moved} message${r.moved === 1 ? '' : 's'}.`;
                })
              }
            />
          </form>
          <ConfirmButton
            label="Purge…"
            question={`Drop every message of ${name} not yet acked (${s ? num(s.depth) : '?'}), leased ones included? This cannot be undone.`}
            confirmLabel="Purge"
            danger
            testid="purge"
            onConfirm={() =>
              act(async () => {
                const r = await post(`/queues/${seg(name)}/purge`);
                return `Purged ${r.purged} message${r.purged === 1 ? '' : 's'}.`;
              })
            }
          />
        </div>
        <p class="muted small">Redrive moves messages that are waiting (not leased): each dead letter back to the queue it came from, or all to the queue named. Both need the admin role.</p>
      </Panel>
      <Panel title={bound ? 'Messages' : `Messages in the log (stream $queue-${name}, newest first)`}>
        {bound ? (
          <p class="muted">
            This queue is bound to the log: its messages are the events that match its filter, where they already are.{' '}
            <Link to={`/log${qs({ category: join(bound.filter.category), streamPrefix: join(bound.filter.streamPrefix), types: join(bound.filter.types) })}`}>Read them in the log</Link>.
          </p>
        ) : null}
        {!bound ? (
          <>
            <ErrorBox error={messages.error} what={`the stream $queue-${name}`} />
            <p class="muted small">Every message sent here stays in the log after it is acked; the depth above is what is still waiting.</p>
            {events.length === 0 ? (
              <p class="muted empty">No messages.</p>
            ) : (
              <table data-testid="queue-messages">
                <thead>
                  <tr>
                    <th class="num">Position</th>
                    <th>Id</th>
                    <th>Sent</th>
                    <th>Body</th>
                    <th>Dead letter</th>
                  </tr>
                </thead>
                <tbody>
                  {events.map((e) => [
                    <tr key={e.position} class="event-row" onClick={() => setOpen(open === e.position ? undefined : e.position)}>
                      <td class="num mono">{e.position}</td>
                      <td class="mono small">{e.id}</td>
                      <td class="mono nowrap">{time(e.timestamp)}</td>
                      <td class="mono preview">{preview(e.data ?? e.dataBase64)}</td>
                      <td class="small">{e.metadata?.$deadLetter ? `from ${e.metadata.$deadLetter.queue}: ${e.metadata.$deadLetter.reason}` : ''}</td>
                    </tr>,
                    open === e.position ? (
                      <tr key={`${e.position}-d`} class="event-detail">
                        <td colSpan={5}>
                          <EventDetail event={e} />
                        </td>
                      </tr>
                    ) : null,
                  ])}
                </tbody>
              </table>
            )}
          </>
        ) : null}
      </Panel>
      <div class="charts">
        <Panel title="Depth">
          <LineChart
            series={[
              { label: 'depth', color: 'var(--c3)', values: history.map((h) => h.depth ?? 0) },
              { label: 'in flight', color: 'var(--c4)', values: history.map((h) => h.inFlight ?? 0) },
            ]}
            title="Messages"
          />
        </Panel>
        <Panel title="Rates">
          <LineChart
            series={[
              { label: 'send', color: 'var(--c1)', values: history.map((h) => h.send ?? 0) },
              { label: 'ack', color: 'var(--c2)', values: history.map((h) => h.ack ?? 0) },
              { label: 'redelivery', color: 'var(--c5)', values: history.map((h) => h.redelivery ?? 0) },
            ]}
            title="Per second"
          />
        </Panel>
      </div>
      {info.data ? (
        <Panel title="Settings">
          <JsonView value={info.data.settings} />
        </Panel>
      ) : null}
    </div>
  );
}

/** @param {string | string[] | undefined} v */
function join(v) {
  return Array.isArray(v) ? v.join(',') : v;
}
