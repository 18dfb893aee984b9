// @ts-check
/**
 * Live tail of $all: GET /subscribe/all as Server-Sent Events (read with fetch so that the token
 * goes along), newest first, with the filters of the API. Keeps the last 500 events.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { qs, streamEvents } from '../api.js';
import { EventTable } from '../events.jsx';
import { num, rate } from '../format.js';
import { ErrorBox, Panel, navigate } from '../ui.jsx';

const KEEP = 500;

/** @param {{ query: URLSearchParams }} props */
export function Tail({ query }) {
  const category = query.get('category') ?? '';
  const streamPrefix = query.get('streamPrefix') ?? '';
  const types = query.get('types') ?? '';
  const from = query.get('from') ?? 'end';
  const [form, setForm] = useState({ category, streamPrefix, types, from });
  const [events, setEvents] = useState(/** @type {import('../events.jsx').EventJson[]} */ ([]));
  const [status, setStatus] = useState(/** @type {'connecting' | 'live' | 'paused' | 'failed'} */ ('connecting'));
  const [error, setError] = useState(/** @type {Error | undefined} */ (undefined));
  const [paused, setPaused] = useState(false);
  const [count, setCount] = useState(0);
  const arrivals = useRef(/** @type {number[]} */ ([]));
  const [perSecond, setPerSecond] = useState(0);

  useEffect(() => {
    if (paused) {
      setStatus('paused');
      return undefined;
    }
    setEvents([]);
    setCount(0);
    setError(undefined);
    setStatus('connecting');
    // Batch what arrives within a frame into one render.
    /** @type {import('../events.jsx').EventJson[]} */
    let pending = [];
    let frame = 0;
    const flush = () => {
      frame = 0;
      const batch = pending;
      pending = [];
      setEvents((old) => [...batch.reverse(), ...old].slice(0, KEEP));
      setCount((c) => c + batch.length);
    };
    const stop = streamEvents(`/subscribe/all${qs({ from, category, streamPrefix, types })}`, {
      onOpen: () => setStatus('live'),
      onMessage: (m) => {
        if (m.event === 'error') {
          setError(new Error(m.data));
          return;
        }
        try {
          pending.push(JSON.parse(m.data));
        } catch {
          return;
        }
        arrivals.current.push(Date.now());
        if (frame === 0) frame = requestAnimationFrame(flush);
      },
      onError: (err) => {
        setError(err);
        setStatus('failed');
      },
    });
    const timer = setInterval(() => {
      const cut = Date.now() - 5000;
      arrivals.current = arrivals.current.filter((t) => t > cut);
      setPerSecond(arrivals.current.length / 5);
    }, 1000);
    return () => {
      stop();
      clearInterval(timer);
      if (frame !== 0) cancelAnimationFrame(frame);
    };
  }, [category, streamPrefix, types, from, paused]);

  const set = (/** @type {string} */ k) => (/** @type {Event} */ e) => setForm({ ...form, [k]: /** @type {HTMLInputElement} */ (e.currentTarget).value });
  return (
    <div class="page" data-testid="page-tail">
      <h1>Live tail</h1>
      <form
        class="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setPaused(false);
          navigate('/tail', form);
        }}
      >
        <label>
          category <input value={form.category} onInput={set('category')} placeholder="order,user" data-testid="tail-category" />
        </label>
        <label>
          stream prefix <input value={form.streamPrefix} onInput={set('streamPrefix')} placeholder="order-1" />
        </label>
        <label>
          types <input value={form.types} onInput={set('types')} placeholder="OrderPlaced,OrderPaid" />
        </label>
        <label>
          from
          <select value={form.from} onChange={set('from')}>
            <option value="end">now</option>
            <option value="start">the beginning</option>
          </select>
        </label>
        <button type="submit" class="primary" data-testid="tail-apply">
          Apply
        </button>
        <button type="button" onClick={() => setPaused(!paused)}>
          {paused ? 'Resume' : 'Pause'}
        </button>
      </form>
      <p class="tail-status">
        <span class={`dot ${status}`} data-testid="tail-status" data-status={status} /> {status} · {num(count)} events received · {rate(perSecond)}/s
        {events.length === KEEP ? ` · showing the last ${KEEP}` : ''}
      </p>
      <ErrorBox error={error} what="the whole log with this filter (it needs read on every stream, or a stream prefix it may read)" />
      <Panel>
        <EventTable events={events} testid="tail-events" empty={status === 'live' ? 'Waiting for events…' : 'No events.'} />
      </Panel>
    </div>
  );
}
