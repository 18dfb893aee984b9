// @ts-check
/** Small shared pieces: polling, error boxes, stat cards, tables, a JSON viewer, links. */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';
import { json as toJson } from './format.js';

/**
 * Calls `load` now and every `intervalMs` (not while the tab is hidden), keeping the last value
 * and the last error. `deps` restart it.
 * @template T
 * @param {(signal: AbortSignal) => Promise<T>} load
 * @param {number} intervalMs 0: once
 * @param {unknown[]} deps
 * @returns {{ data: T | undefined, error: Error | undefined, loading: boolean, at: number | undefined, refresh: () => void }}
 */
export function usePoll(load, intervalMs, deps) {
  const [state, setState] = useState(/** @type {{ data: T | undefined, error: Error | undefined, loading: boolean, at: number | undefined }} */ ({ data: undefined, error: undefined, loading: true, at: undefined }));
  const [tick, setTick] = useState(0);
  const refresh = useCallback(() => setTick((t) => t + 1), []);
  const depsKey = JSON.stringify(deps);
  const lastKey = useRef(depsKey);
  useEffect(() => {
    // Other things asked for: forget what was shown for the last ones.
    if (lastKey.current !== depsKey) {
      lastKey.current = depsKey;
      setState({ data: undefined, error: undefined, loading: true, at: undefined });
    }
    const abort = new AbortController();
    let timer = /** @type {ReturnType<typeof setTimeout> | undefined} */ (undefined);
    let stopped = false;
    let first = true;
    const run = async () => {
      if (document.visibilityState !== 'hidden' || first) {
        first = false;
        try {
          const data = await load(abort.signal);
          if (!stopped) setState({ data, error: undefined, loading: false, at: Date.now() });
        } catch (err) {
          if (!stopped && !(err instanceof DOMException && err.name === 'AbortError')) setState((s) => ({ data: s.data, error: /** @type {Error} */ (err), loading: false, at: s.at }));
        }
      }
      if (!stopped && intervalMs > 0) timer = setTimeout(run, intervalMs);
    };
    void run();
    return () => {
      stopped = true;
      abort.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [depsKey, tick]);
  return { ...state, refresh };
}

/** An API error, said plainly; a 403 says the token may not see this. @param {{ error: Error | undefined, what?: string }} props */
export function ErrorBox({ error, what }) {
  if (error === undefined) return null;
  if (error instanceof ApiError && error.status === 403) {
    return (
      <div class="notice forbidden" role="alert" data-status="403">
        <strong>403 Forbidden</strong>
        {what ? ` — this token may not see ${what}.` : ''} <span class="muted">{error.message}</span>
      </div>
    );
  }
  const label = error instanceof ApiError ? (error.status > 0 ? `${error.status} ${error.code}` : error.code) : 'Error';
  return (
    <div class="notice error" role="alert" data-status={error instanceof ApiError ? String(error.status) : ''}>
      <strong>{label}</strong> {error.message}
    </div>
  );
}

/** @param {{ label: import('preact').ComponentChildren, value: import('preact').ComponentChildren, sub?: import('preact').ComponentChildren, testid?: string }} props */
export function Stat({ label, value, sub, testid }) {
  return (
    <div class="stat" data-testid={testid}>
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {sub !== undefined ? <div class="stat-sub">{sub}</div> : null}
    </div>
  );
}

/** @param {{ title?: import('preact').ComponentChildren, actions?: import('preact').ComponentChildren, children: import('preact').ComponentChildren, class?: string }} props */
export function Panel({ title, actions, children, class: cls }) {
  return (
    <section class={`panel ${cls ?? ''}`}>
      {title !== undefined || actions !== undefined ? (
        <header class="panel-head">
          <h2>{title}</h2>
          <div class="panel-actions">{actions}</div>
        </header>
      ) : null}
      {children}
    </section>
  );
}

/** Pretty JSON in a scrollable block. @param {{ value: unknown, label?: string }} props */
export function JsonView({ value, label }) {
  return (
    <div class="json">
      {label ? <div class="json-label">{label}</div> : null}
      <pre>{toJson(value)}</pre>
    </div>
  );
}

/** A link inside the app (hash routing). @param {{ to: string, children: import('preact').ComponentChildren, class?: string, title?: string }} props */
export function Link({ to, children, class: cls, title }) {
  return (
    <a href={`#${to}`} class={cls} title={title}>
      {children}
    </a>
  );
}

/** The current hash route: path segments (decoded) and query. */
export function useRoute() {
  const read = () => {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [p, q = ''] = raw.split('?');
    const parts = (p ?? '/').split('/').filter((x) => x !== '').map((x) => decodeURIComponent(x));
    return { parts, query: new URLSearchParams(q), raw };
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** @param {string} path @param {Record<string, string | number | undefined | null>} [query] */
export function navigate(path, query = {}) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const q = p.toString();
  location.hash = q === '' ? path : `${path}?${q}`;
}

/**
 * Keeps the last `max` samples of a value taken at each change of `at`.
 * @param {number | undefined} at when the value was read (ms); a new one adds a sample
 * @param {Record<string, number> | undefined} values
 * @param {number} [max]
 * @returns {Array<{ at: number } & Record<string, number>>}
 */
export function useHistory(at, values, max = 150) {
  const ref = useRef(/** @type {Array<{ at: number } & Record<string, number>>} */ ([]));
  const last = ref.current[ref.current.length - 1];
  if (at !== undefined && values !== undefined && (last === undefined || last.at !== at)) {
    ref.current = [...ref.current.slice(-(max - 1)), /** @type {{ at: number } & Record<string, number>} */ ({ ...values, at })];
  }
  return ref.current;
}

/**
 * A button that asks again before it acts: the first click shows the question with Confirm and
 * Cancel; only Confirm runs `onConfirm`.
 * @param {{ label: string, question: string, confirmLabel?: string, onConfirm: () => void | Promise<void>, danger?: boolean, disabled?: boolean, testid?: string }} props
 */
export function ConfirmButton({ label, question, confirmLabel, onConfirm, danger, disabled, testid }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  if (!asking) {
    return (
      <button class={danger ? 'danger' : ''} disabled={disabled} onClick={() => setAsking(true)} data-testid={testid}>
        {label}
      </button>
    );
  }
  return (
    <span class="confirm" role="group">
      <span class="confirm-question">{question}</span>
      <button
        class={danger ? 'danger' : 'primary'}
        disabled={busy}
        data-testid={testid ? `${testid}-confirm` : undefined}
        onClick={async () => {
          setBusy(true);
          try {
            await onConfirm();
          } finally {
            setBusy(false);
            setAsking(false);
          }
        }}
      >
        {confirmLabel ?? 'Confirm'}
      </button>
      <button onClick={() => setAsking(false)}>Cancel</button>
    </span>
  );
}
