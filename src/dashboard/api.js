// @ts-check
/**
 * The dashboard's only way to the server: its public HTTP API, with the token (when one was
 * given) as `Authorization: Bearer`. The token lives in sessionStorage: it is gone when the tab
 * closes, and never put in a URL.
 *
 * Server-Sent Events are read with fetch and a streaming body, not EventSource, because
 * EventSource cannot send an Authorization header.
 */

const TOKEN_KEY = 'eventful.token';

/** An error answer of the API: its HTTP status and stable code (docs/errors.md). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** @returns {string | undefined} */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

/** @param {string | undefined} token */
export function setToken(token) {
  if (token === undefined || token === '') sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

/** Fired on window when the server answers 401: the app asks for a token again. */
export const UNAUTHENTICATED_EVENT = 'eventful:unauthenticated';

/**
 * @param {Record<string, string>} [extra]
 * @param {string} [token]
 */
function headers(extra = {}, token = getToken()) {
  /** @type {Record<string, string>} */
  const h = { ...extra };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  return h;
}

/**
 * One API call. Resolves with the JSON body (or the text for non-JSON answers); rejects with an
 * ApiError for any status that is not 2xx.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {{ token?: string, signal?: AbortSignal }} [options]
 * @returns {Promise<any>}
 */
export async function api(method, path, body, options = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }, 'token' in options ? options.token : getToken()),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: options.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'UNREACHABLE', 'the server could not be reached');
  }
  const text = await res.text();
  const json = (res.headers.get('content-type') ?? '').startsWith('application/json') && text !== '' ? safeParse(text) : undefined;
  if (!res.ok) {
    if (res.status === 401 && !('token' in options)) window.dispatchEvent(new CustomEvent(UNAUTHENTICATED_EVENT));
    throw new ApiError(res.status, json?.code ?? `HTTP_${res.status}`, json?.message ?? (text.slice(0, 200) || res.statusText));
  }
  return json === undefined ? text : json;
}

/** @param {string} text */
function safeParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** @param {string} path */
export const get = (path) => api('GET', path);
/** @param {string} path @param {unknown} [body] */
export const post = (path, body) => api('POST', path, body);

/** Path segment, encoded (stream and queue names may hold any character but '/'). */
export const seg = encodeURIComponent;

/** A query string from the defined, non-empty values. @param {Record<string, string | number | undefined | null>} q */
export function qs(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s === '' ? '' : `?${s}`;
}

/**
 * @typedef {{ id?: string, event?: string, data: string }} SseMessage
 */

/**
 * Reads a Server-Sent Events stream with fetch. Calls `onMessage` for each message with data,
 * `onOpen` once the server answered 200, and `onError` once if it fails or ends. Returns a
 * function that stops it.
 * @param {string} path
 * @param {{ onMessage: (m: SseMessage) => void, onOpen?: () => void, onError?: (e: Error) => void }} handlers
 */
export function streamEvents(path, handlers) {
  const abort = new AbortController();
  (async () => {
    const res = await fetch(path, { headers: headers({ accept: 'text/event-stream' }), signal: abort.signal });
    if (!res.ok || res.body === null) {
      const text = await res.text();
      const json = safeParse(text);
      if (res.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHENTICATED_EVENT));
      throw new ApiError(res.status, json?.code ?? `HTTP_${res.status}`, json?.message ?? res.statusText);
    }
    handlers.onOpen?.();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        /** @type {SseMessage} */
        const m = { data: '' };
        let hasData = false;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') {
            m.data = hasData ? `${m.data}\n${val}` : val;
            hasData = true;
          } else if (field === 'id') m.id = val;
          else if (field === 'event') m.event = val;
        }
        if (hasData) handlers.onMessage(m);
      }
    }
    throw new ApiError(0, 'ENDED', 'the server ended the stream');
  })().catch((err) => {
    if (abort.signal.aborted) return;
    handlers.onError?.(err instanceof Error ? err : new Error(String(err)));
  });
  return () => abort.abort();
}
