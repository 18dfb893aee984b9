/** `eventful serve`: start the server, print where it listens, shut down gracefully on signals. */
import path from 'node:path';
import { loadConfig, metricsOpen, SCALAR_KEYS } from '../server/config.js';
import { startServer } from '../server/server.js';
import { version } from './main.js';

export async function runServe(opts: Record<string, string | boolean | undefined>): Promise<void> {
  const flags: Record<string, unknown> = {};
  for (const key of SCALAR_KEYS) {
    const v = opts[key];
    if (v === undefined) continue;
    flags[key] = typeof v === 'string' && /Port$|Ms$|Bytes$/.test(key) ? Number(v) : v;
  }
  const config = loadConfig({ flags, env: process.env, configFile: opts.config as string | undefined });
  const server = await startServer(config, { version: version() });
  const out = process.stdout;
  out.write(`eventful ${version()} serving ${path.resolve(config.dataDir)} (durability ${config.durability}, head position ${await server.store.headPosition()})\n`);
  out.write(`  binary protocol  ${server.tcpUrl}\n`);
  out.write(`  HTTP API         ${server.httpUrl}  (OpenAPI at /openapi.json)\n`);
  out.write(`  WebSocket        ${server.wsUrl}\n`);
  out.write(`  dashboard        ${server.httpUrl}/ui\n`);
  out.write(`  metrics          ${server.httpUrl}/metrics  (${metricsOpen(config, server.authEnabled) ? 'no token needed' : 'token with the metrics or admin role'})\n`);
  out.write(`  auth             ${server.authEnabled ? 'on (tokens required)' : 'off: anyone who can reach these ports may read and write'}\n`);
  out.write(`  TLS              ${server.tls ? 'on' : 'off'}\n`);

  let signals = 0;
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        process.stderr.write(`${sig} again: exiting now (the next start recovers)\n`);
        process.exit(130);
      }
      process.stderr.write(`${sig}: shutting down gracefully (send it again to exit at once)\n`);
      server.close().then(resolve, (err: unknown) => {
        process.stderr.write(`shutdown failed: ${(err as Error).message}\n`);
        process.exitCode = 2;
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
