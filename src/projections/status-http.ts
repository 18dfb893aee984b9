/**
 * Projection status over HTTP, for a health check or a dashboard: a request listener for
 * node:http that answers with every projection's `status()` as JSON.
 *
 *   http.createServer(statusHandler([orders, totals])).listen(9464);
 *
 * GET /            -> 200 { projections: [status, ...] }; 503 when one is faulted
 * GET /?name=x     -> 200 the status of projection x; 404 when there is none; 503 when faulted
 * other methods    -> 405
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Projection, ProjectionStatus } from './projection.js';

type Projections = Iterable<Pick<Projection, 'name' | 'status'>> | (() => Iterable<Pick<Projection, 'name' | 'status'>>);

export function statusHandler(projections: Projections): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const send = (code: number, body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(405, { error: { code: 'METHOD_NOT_ALLOWED', message: 'use GET' } });
      return;
    }
    const all = [...(typeof projections === 'function' ? projections() : projections)];
    const name = new URL(req.url ?? '/', 'http://localhost').searchParams.get('name');
    if (name !== null) {
      const p = all.find((x) => x.name === name);
      if (p === undefined) {
        send(404, { error: { code: 'NOT_FOUND', message: `no projection named '${name}'` } });
        return;
      }
      const st = p.status();
      send(st.state === 'faulted' ? 503 : 200, st);
      return;
    }
    const statuses: ProjectionStatus[] = all.map((p) => p.status());
    send(statuses.some((s) => s.state === 'faulted') ? 503 : 200, { projections: statuses });
  };
}
