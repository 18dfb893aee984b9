/** A few lines of node:http shared by the services: JSON in and out, and errors as JSON. */
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Route = (req: IncomingMessage, url: URL, body: unknown) => Promise<{ status?: number; body: unknown } | undefined>;

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1_000_000) throw new HttpError(413, 'TOO_LARGE', 'the body is over 1 MB');
    chunks.push(c as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'BAD_JSON', 'the body is not JSON');
  }
}

export function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Serves `route` on `port` (0: any free port); resolves with the port. */
export function serve(port: number, route: Route, onError: (err: unknown) => { status: number; body: unknown } | undefined): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        const url = new URL(req.url ?? '/', 'http://localhost');
        const body = req.method === 'POST' || req.method === 'PUT' ? await readJson(req) : undefined;
        const r = await route(req, url, body);
        if (r === undefined) send(res, 404, { code: 'NOT_FOUND', message: `no route ${req.method} ${url.pathname}` });
        else send(res, r.status ?? 200, r.body);
      } catch (err) {
        if (err instanceof HttpError) return send(res, err.status, { code: err.code, message: err.message });
        const mapped = onError(err);
        if (mapped !== undefined) return send(res, mapped.status, mapped.body);
        console.error(err);
        send(res, 500, { code: 'INTERNAL', message: 'the request failed' });
      }
    })();
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

/** Stops on SIGINT/SIGTERM: runs `close`, then exits. */
export function onStop(close: () => Promise<void>): void {
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    close().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
