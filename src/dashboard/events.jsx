// @ts-check
/** A table of events whose rows open to show the event's data and metadata. */
import { useState } from 'preact/hooks';
import { seg } from './api.js';
import { preview, time } from './format.js';
import { JsonView, Link } from './ui.jsx';

/**
 * @typedef {{
 *   position: number, stream: string, revision: number, id: string, type: string,
 *   contentType: string, timestamp: number, data?: unknown, dataBase64?: string,
 *   metadata: Record<string, unknown>
 * }} EventJson
 */

/** @param {{ events: EventJson[], showStream?: boolean, testid?: string, empty?: string }} props */
export function EventTable({ events, showStream = true, testid, empty = 'No events.' }) {
  const [open, setOpen] = useState(/** @type {string | undefined} */ (undefined));
  if (events.length === 0) return <p class="muted empty">{empty}</p>;
  return (
    <table class="events" data-testid={testid}>
      <thead>
        <tr>
          <th class="num">Position</th>
          {showStream ? <th>Stream</th> : null}
          <th class="num">Revision</th>
          <th>Type</th>
          <th>Time</th>
          <th>Data</th>
        </tr>
      </thead>
      <tbody>
        {events.map((e) => {
          const key = `${e.position}`;
          const isOpen = open === key;
          return [
            <tr key={key} class={`event-row ${isOpen ? 'open' : ''}`} onClick={() => setOpen(isOpen ? undefined : key)} data-position={e.position}>
              <td class="num mono">{e.position}</td>
              {showStream ? (
                <td class="mono">
                  <Link to={`/streams/${seg(e.stream)}`}>{e.stream}</Link>
                </td>
              ) : null}
              <td class="num mono">{e.revision}</td>
              <td>
                <span class="tag">{e.type}</span>
              </td>
              <td class="mono nowrap">{time(e.timestamp)}</td>
              <td class="mono preview">{e.data !== undefined ? preview(e.data) : `(${e.contentType}, base64)`}</td>
            </tr>,
            isOpen ? (
              <tr key={`${key}-detail`} class="event-detail">
                <td colSpan={showStream ? 6 : 5}>
                  <EventDetail event={e} />
                </td>
              </tr>
            ) : null,
          ];
        })}
      </tbody>
    </table>
  );
}

/** @param {{ event: EventJson }} props */
export function EventDetail({ event: e }) {
  return (
    <div class="event-detail-body" data-testid="event-detail">
      <dl class="facts">
        <dt>Id</dt>
        <dd class="mono">{e.id}</dd>
        <dt>Stream</dt>
        <dd class="mono">
          <Link to={`/streams/${seg(e.stream)}`}>{e.stream}</Link> at revision {e.revision}
        </dd>
        <dt>Position</dt>
        <dd class="mono">
          <Link to={`/log?from=${e.position}`}>{e.position}</Link>
        </dd>
        <dt>Content type</dt>
        <dd class="mono">{e.contentType}</dd>
        <dt>Committed</dt>
        <dd class="mono">{time(e.timestamp)}</dd>
      </dl>
      <div class="split">
        <JsonView label="data" value={e.data !== undefined ? e.data : { dataBase64: e.dataBase64 }} />
        <JsonView label="metadata" value={e.metadata} />
      </div>
    </div>
  );
}
