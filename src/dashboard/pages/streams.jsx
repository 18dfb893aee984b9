// @ts-check
/**
 * The stream browser: streams by name prefix or category, one stream page by page (forwards or
 * from the end), and the whole log from a position with filters.
 */
import { useState } from 'preact/hooks';
import { get, qs, seg } from '../api.js';
import { EventTable } from '../events.jsx';
import { num, time } from '../format.js';
import { ErrorBox, Link, Panel, navigate, usePoll } from '../ui.jsx';

const PAGE = 25;

/** @param {{ query: URLSearchParams }} props */
export function StreamList({ query }) {
  const prefix = query.get('prefix') ?? '';
  const category = query.get('category') ?? '';
  const after = query.get('after') ?? '';
  // A category is the part of a stream's name before its first '-'.
  const effectivePrefix = category !== '' ? `${category}-` : prefix;
  const list = usePoll(() => get(`/streams${qs({ prefix: effectivePrefix, after, limit: PAGE })}`), 0, [effectivePrefix, after]);
  const [form, setForm] = useState({ mode: category !== '' ? 'category' : 'prefix', text: category !== '' ? category : prefix });
  const [jump, setJump] = useState('');
  /** @type {Array<any>} */
  const streams = list.data?.streams ?? [];
  return (
    <div class="page" data-testid="page-streams">
      <h1>Streams</h1>
      <div class="toolbar">
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            navigate('/streams', form.mode === 'category' ? { category: form.text } : { prefix: form.text });
          }}
        >
          <select value={form.mode} onChange={(e) => setForm({ ...form, mode: /** @type {HTMLSelectElement} */ (e.currentTarget).value })} aria-label="search by">
            <option value="prefix">name starts with</option>
            <option value="category">category</option>
          </select>
          <input
            type="search"
            placeholder={form.mode === 'category' ? 'order' : 'order-10'}
            value={form.text}
            onInput={(e) => setForm({ ...form, text: /** @type {HTMLInputElement} */ (e.currentTarget).value })}
            aria-label="stream search"
            data-testid="stream-search"
          />
          <button type="submit" class="primary">
            Search
          </button>
        </form>
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            if (/^\d+$/.test(jump)) navigate('/log', { from: jump });
          }}
        >
          <input type="number" min="1" placeholder="position" value={jump} onInput={(e) => setJump(/** @type {HTMLInputElement} */ (e.currentTarget).value)} aria-label="jump to position" data-testid="jump-position" />
          <button type="submit">Go to position</button>
        </form>
      </div>
      <ErrorBox error={list.error} what="these streams" />
      <Panel title={category !== '' ? `Category “${category}”` : prefix !== '' ? `Streams starting with “${prefix}”` : 'All streams'}>
        {streams.length === 0 && !list.loading ? <p class="muted empty">No streams.</p> : null}
        {streams.length > 0 ? (
          <table data-testid="stream-list">
            <thead>
              <tr>
                <th>Stream</th>
                <th class="num">Events</th>
                <th class="num">Revision</th>
                <th class="num">Positions</th>
                <th>Updated</th>
              </tr>
            </thead>
            <tbody>
              {streams.map((s) => (
                <tr key={s.stream}>
                  <td class="mono">
                    <Link to={`/streams/${seg(s.stream)}`}>{s.stream}</Link>
                  </td>
                  <td class="num">{num(s.eventCount)}</td>
                  <td class="num">{num(s.revision)}</td>
                  <td class="num mono">
                    {s.firstPosition}–{s.lastPosition}
                  </td>
                  <td class="mono nowrap">{time(s.updatedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        <div class="pager">
          {after !== '' ? <button onClick={() => navigate('/streams', { prefix, category })}>First page</button> : null}
          {streams.length === PAGE ? (
            <button onClick={() => navigate('/streams', { prefix, category, after: streams[streams.length - 1].stream })} data-testid="streams-next">
              Next page
            </button>
          ) : null}
        </div>
      </Panel>
    </div>
  );
}

/** One stream, a page at a time. @param {{ stream: string, query: URLSearchParams }} props */
export function StreamView({ stream, query }) {
  const from = query.get('from') ?? 'start';
  const direction = query.get('direction') ?? 'forwards';
  const info = usePoll(() => get(`/streams/${seg(stream)}/info`), 0, [stream]);
  const page = usePoll(() => get(`/streams/${seg(stream)}${qs({ from, direction, limit: PAGE })}`), 0, [stream, from, direction]);
  const [jump, setJump] = useState('');
  /** @type {any[]} */
  const events = page.data?.events ?? [];
  const go = (/** @type {Record<string, string | number>} */ q) => navigate(`/streams/${seg(stream)}`, q);
  const last = info.data?.revision;
  return (
    <div class="page" data-testid="page-stream">
      <p class="crumbs">
        <Link to="/streams">Streams</Link> /
      </p>
      <h1 class="mono">{stream}</h1>
      <ErrorBox error={info.error} what="this stream" />
      {info.data ? (
        <dl class="facts inline-facts" data-testid="stream-info">
          <dt>Events</dt>
          <dd>{num(info.data.eventCount)}</dd>
          <dt>Revision</dt>
          <dd>{num(info.data.revision)}</dd>
          <dt>Positions</dt>
          <dd class="mono">
            {info.data.firstPosition}–{info.data.lastPosition}
          </dd>
          <dt>Created</dt>
          <dd class="mono">{time(info.data.createdAt)}</dd>
          <dt>Updated</dt>
          <dd class="mono">{time(info.data.updatedAt)}</dd>
        </dl>
      ) : null}
      <Panel
        title={direction === 'backwards' ? `Latest events${from !== 'end' ? ` from revision ${from}` : ''}` : `Events from revision ${from === 'start' ? 0 : from}`}
        actions={
          <>
            <button onClick={() => go({ from: 'start' })}>First</button>
            <button
              disabled={direction === 'forwards' ? from === 'start' || Number(from) === 0 : from === 'end' || (last !== undefined && Number(from) >= last)}
              onClick={() => {
                // Forwards: the page before this one. Backwards (newest first): the newer page.
                if (direction === 'forwards') go({ from: Math.max(0, Number(from) - PAGE) });
                else go({ from: Math.min(last ?? 0, Number(events[0]?.revision ?? 0) + PAGE), direction });
              }}
            >
              Previous
            </button>
            <button disabled={page.data?.next === null || page.data?.next === undefined} onClick={() => go({ from: page.data.next, direction })} data-testid="stream-next">
              Next
            </button>
            <button onClick={() => go({ from: 'end', direction: 'backwards' })}>Last</button>
            <form
              class="inline"
              onSubmit={(e) => {
                e.preventDefault();
                if (/^\d+$/.test(jump)) go({ from: jump });
              }}
            >
              <input type="number" min="0" max={last} placeholder="revision" value={jump} onInput={(e) => setJump(/** @type {HTMLInputElement} */ (e.currentTarget).value)} aria-label="jump to revision" />
              <button type="submit">Go</button>
            </form>
          </>
        }
      >
        <ErrorBox error={page.error} what="this stream's events" />
        <EventTable events={events} showStream={false} testid="stream-events" />
      </Panel>
    </div>
  );
}

/** The whole log ($all) from a position, with filters. @param {{ query: URLSearchParams }} props */
export function LogView({ query }) {
  const from = query.get('from') ?? 'start';
  const category = query.get('category') ?? '';
  const streamPrefix = query.get('streamPrefix') ?? '';
  const types = query.get('types') ?? '';
  const page = usePoll(() => get(`/all${qs({ from, category, streamPrefix, types, limit: PAGE })}`), 0, [from, category, streamPrefix, types]);
  const [form, setForm] = useState({ from: from === 'start' ? '' : from, category, streamPrefix, types });
  /** @type {any[]} */
  const events = page.data?.events ?? [];
  const set = (/** @type {string} */ k) => (/** @type {Event} */ e) => setForm({ ...form, [k]: /** @type {HTMLInputElement} */ (e.currentTarget).value });
  return (
    <div class="page" data-testid="page-log">
      <h1>Log ($all)</h1>
      <form
        class="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          navigate('/log', { from: form.from || 'start', category: form.category, streamPrefix: form.streamPrefix, types: form.types });
        }}
      >
        <label>
          from position <input type="number" min="1" value={form.from} onInput={set('from')} placeholder="start" data-testid="log-from" />
        </label>
        <label>
          category <input value={form.category} onInput={set('category')} placeholder="order,user" />
        </label>
        <label>
          stream prefix <input value={form.streamPrefix} onInput={set('streamPrefix')} placeholder="order-1" />
        </label>
        <label>
          types <input value={form.types} onInput={set('types')} placeholder="OrderPlaced" />
        </label>
        <button type="submit" class="primary">
          Read
        </button>
      </form>
      <ErrorBox error={page.error} what="the whole log with this filter (it needs read on every stream, or a stream prefix it may read)" />
      <Panel
        title={`From position ${from === 'start' ? 1 : from}`}
        actions={
          <button disabled={page.data?.next === null || page.data?.next === undefined} onClick={() => navigate('/log', { from: page.data.next, category, streamPrefix, types })} data-testid="log-next">
            Next page
          </button>
        }
      >
        <EventTable events={events} testid="log-events" empty="No events from here with this filter." />
      </Panel>
    </div>
  );
}
