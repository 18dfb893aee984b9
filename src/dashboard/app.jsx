// @ts-check
/**
 * The Eventful dashboard: a single page served by `eventful serve` at /ui, built with preact and
 * esbuild (scripts/build-dashboard.mjs). It uses only the server's HTTP API. When auth is on it
 * asks for a token, keeps it in sessionStorage, and shows what that token may see: an answer of
 * 403 is shown as such where it happens.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, UNAUTHENTICATED_EVENT, api, getToken, setToken } from './api.js';
import { duration, num } from './format.js';
import { GroupList, GroupView } from './pages/groups.jsx';
import { Overview } from './pages/overview.jsx';
import { QueueList, QueueView } from './pages/queues.jsx';
import { LogView, StreamList, StreamView } from './pages/streams.jsx';
import { Tail } from './pages/tail.jsx';
import { ErrorBox, usePoll, useRoute } from './ui.jsx';

const NAV = [
  { path: '/', label: 'Overview', match: '' },
  { path: '/streams', label: 'Streams', match: 'streams' },
  { path: '/log', label: 'Log', match: 'log' },
  { path: '/tail', label: 'Live tail', match: 'tail' },
  { path: '/queues', label: 'Queues', match: 'queues' },
  { path: '/groups', label: 'Consumer groups', match: 'groups' },
];

function App() {
  const [phase, setPhase] = useState(/** @type {'checking' | 'login' | 'ready' | 'down'} */ ('checking'));
  const [problem, setProblem] = useState(/** @type {Error | undefined} */ (undefined));
  const [attempt, setAttempt] = useState(0);

  // Is the server there, and does it want a token we do not have?
  useEffect(() => {
    let gone = false;
    api('GET', '/info', undefined, { token: getToken() }).then(
      () => {
        if (!gone) setPhase('ready');
      },
      (err) => {
        if (gone) return;
        if (err instanceof ApiError && err.status === 401) {
          if (getToken() !== undefined) setProblem(new ApiError(401, err.code, `the saved token was refused: ${err.message}`));
          setToken(undefined);
          setPhase('login');
        } else {
          setProblem(err);
          setPhase('down');
        }
      },
    );
    return () => {
      gone = true;
    };
  }, [attempt]);

  useEffect(() => {
    const on = () => {
      setToken(undefined);
      setProblem(new ApiError(401, 'UNAUTHENTICATED', 'the server refused the token; give it again'));
      setPhase('login');
    };
    window.addEventListener(UNAUTHENTICATED_EVENT, on);
    return () => window.removeEventListener(UNAUTHENTICATED_EVENT, on);
  }, []);

  if (phase === 'checking') return <div class="center muted">Connecting…</div>;
  if (phase === 'down') {
    return (
      <div class="center">
        <ErrorBox error={problem} />
        <button onClick={() => setAttempt((a) => a + 1)}>Try again</button>
      </div>
    );
  }
  if (phase === 'login') {
    return (
      <Login
        problem={problem}
        onToken={() => {
          setProblem(undefined);
          setPhase('ready');
        }}
      />
    );
  }
  return <Shell />;
}

/** @param {{ problem: Error | undefined, onToken: () => void }} props */
function Login({ problem, onToken }) {
  const [token, setValue] = useState('');
  const [error, setError] = useState(problem);
  const [busy, setBusy] = useState(false);
  return (
    <div class="center">
      <form
        class="login"
        data-testid="login"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          try {
            await api('GET', '/info', undefined, { token });
            setToken(token);
            onToken();
          } catch (err) {
            setError(err instanceof ApiError && err.status === 401 ? new ApiError(401, err.code, `token refused: ${err.message}`) : /** @type {Error} */ (err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1>
          <Logo /> Eventful
        </h1>
        <p>This server requires a token. It is kept in this tab only (sessionStorage) and sent as a bearer token.</p>
        <label>
          Token
          <input type="password" autocomplete="off" value={token} onInput={(e) => setValue(/** @type {HTMLInputElement} */ (e.currentTarget).value)} data-testid="token-input" autofocus />
        </label>
        <button type="submit" class="primary" disabled={busy || token === ''} data-testid="token-submit">
          Sign in
        </button>
        <ErrorBox error={error} />
      </form>
    </div>
  );
}

function Shell() {
  const route = useRoute();
  const info = usePoll(() => api('GET', '/info'), 5000, []);
  const [first, second] = route.parts;
  const token = getToken();
  let page;
  if (first === undefined) page = <Overview info={info.data} />;
  else if (first === 'streams') page = second === undefined ? <StreamList query={route.query} /> : <StreamView stream={second} query={route.query} />;
  else if (first === 'log') page = <LogView query={route.query} />;
  else if (first === 'tail') page = <Tail query={route.query} />;
  else if (first === 'queues') page = second === undefined ? <QueueList /> : <QueueView name={second} />;
  else if (first === 'groups') page = second === undefined ? <GroupList /> : <GroupView name={second} />;
  else page = <p class="muted">No such page.</p>;
  return (
    <div class="shell">
      <aside class="side">
        <div class="brand">
          <Logo /> Eventful
        </div>
        <nav>
          {NAV.map((n) => (
            <a key={n.path} href={`#${n.path}`} class={(first ?? '') === n.match ? 'active' : ''} data-testid={`nav-${n.match || 'overview'}`}>
              {n.label}
            </a>
          ))}
        </nav>
        <div class="side-foot">
          {info.data ? (
            <dl class="facts small">
              <dt>Version</dt>
              <dd>{info.data.version}</dd>
              <dt>Head</dt>
              <dd class="mono" data-testid="side-head">
                {num(info.data.headPosition)}
              </dd>
              <dt>Durability</dt>
              <dd>{info.data.durability}</dd>
              <dt>Uptime</dt>
              <dd>{duration(info.data.uptimeMs)}</dd>
              <dt>Auth</dt>
              <dd>{info.data.auth ? 'on' : 'off'}</dd>
            </dl>
          ) : null}
          <p class="small">
            <a href="/metrics" target="_blank" rel="noreferrer">
              /metrics
            </a>{' '}
            ·{' '}
            <a href="/openapi.json" target="_blank" rel="noreferrer">
              /openapi.json
            </a>
          </p>
          {token !== undefined ? (
            <button
              class="small"
              onClick={() => {
                setToken(undefined);
                location.reload();
              }}
              data-testid="sign-out"
            >
              Forget token
            </button>
          ) : null}
        </div>
      </aside>
      <main class="main">{page}</main>
    </div>
  );
}

function Logo() {
  return (
    <svg class="logo" viewBox="0 0 24 24" aria-hidden="true">
      <rect x="2" y="4" width="4" height="16" rx="1" />
      <rect x="8" y="4" width="4" height="16" rx="1" opacity="0.8" />
      <rect x="14" y="4" width="4" height="16" rx="1" opacity="0.6" />
      <rect x="20" y="4" width="2" height="16" rx="1" opacity="0.4" />
    </svg>
  );
}

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
