/**
 * The Eventful server: one embedded store shared by many clients, through the binary protocol
 * over TCP (and the same frames over WebSocket at /ws) and the HTTP JSON API.
 *
 * Shutdown (SIGTERM/SIGINT, or `close()`): stop accepting connections, let requests in flight
 * finish (appends become durable and are answered), end subscriptions, close connections, then
 * close the store. A second signal exits at once; recovery on the next start makes that safe.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { ConfigInvalidError } from '../core/errors.js';
import { openStore } from '../streams/store.js';
import type { FileEventStore } from '../streams/store.js';
import { Authenticator } from './auth.js';
import { isLoopback, metricsOpen } from './config.js';
import type { ServerConfig } from './config.js';
import { buildHttp } from './http.js';
import { createLogger, logFnOf } from './logging.js';
import type { LogFn, Logger } from './logging.js';
import { ServerMetrics } from './metrics.js';
import { Session } from './session.js';
import type { SessionContext, Transport } from './session.js';

export type { LogFn } from './logging.js';

export interface RunningServer {
  readonly store: FileEventStore;
  /** The Prometheus registry behind GET /metrics. */
  readonly metrics: ServerMetrics;
  readonly httpUrl: string;
  readonly tcpUrl: string;
  readonly wsUrl: string;
  readonly authEnabled: boolean;
  readonly tls: boolean;
  /** Graceful shutdown; resolves when the store is closed. */
  close(): Promise<void>;
}

export interface StartServerOptions {
  /** Where the server's own records go. @default JSON lines on stderr through `logger` */
  log?: LogFn;
  /** The pino logger (HTTP request logs with request ids, and `log` when that is not given). @default stderr at config.logLevel; silent when only `log` is given */
  logger?: Logger;
  version?: string;
}

export async function startServer(config: Readonly<ServerConfig>, options: StartServerOptions = {}): Promise<RunningServer> {
  const startedAt = Date.now();
  const logger = options.logger ?? createLogger(options.log !== undefined ? 'silent' : config.logLevel);
  const log = options.log ?? logFnOf(logger);
  const version = options.version ?? '0.0.0';
  const auth = new Authenticator(config.auth?.tokens);
  if (!isLoopback(config.host) && !auth.enabled && !config.insecureNoAuth) {
    throw new ConfigInvalidError(`refusing to listen on ${config.host} without auth: configure auth.tokens, or pass --insecure-no-auth`);
  }
  const tlsOptions = config.tlsKey !== undefined && config.tlsCert !== undefined ? { key: fs.readFileSync(config.tlsKey), cert: fs.readFileSync(config.tlsCert) } : undefined;

  const store = await openStore({
    dir: config.dataDir,
    durability: config.durability,
    syncIntervalMs: config.syncIntervalMs,
    segmentBytes: config.segmentBytes,
    limits: config.storeLimits,
    onWarning: (message, details) => log('warn', message, details),
    queues: { autoCreate: config.queueAutoCreate },
  });
  if (store.recovery.truncatedBytes > 0 || store.recovery.indexRebuilt) log('warn', 'recovered the data directory', { ...store.recovery });

  const metrics = new ServerMetrics({
    version,
    startedAt,
    sources: { dir: store.dir, headPosition: () => store.headPosition(), queues: store.queues, groups: store.groups },
  });

  let ready = false;
  const sessions = new Set<Session>();
  // One context per transport, so that appends, reads and errors are counted by transport.
  const sessionContext = (transport: 'tcp' | 'ws'): SessionContext => ({
    store: metrics.instrumentStore(store, transport),
    queues: store.queues,
    groups: store.groups,
    frames: metrics.instrumentFrames(store, transport),
    auth,
    limits: config.serverLimits,
    serverName: `eventful/${version}`,
    log,
    onError: (code) => metrics.error(transport, code),
  });
  const contexts = { tcp: sessionContext('tcp'), ws: sessionContext('ws') };
  const admit = (transport: Transport, kind: 'tcp' | 'ws'): Session | undefined => {
    if (sessions.size >= config.serverLimits.connectionsMax) {
      log('warn', 'refusing a connection: connectionsMax reached', { remote: transport.remote });
      metrics.error(kind, 'OVERLOADED');
      transport.close();
      return undefined;
    }
    metrics.connectionOpened(kind);
    const s: Session = new Session(transport, contexts[kind], () => {
      sessions.delete(s);
      metrics.connectionClosed(kind);
    });
    sessions.add(s);
    return s;
  };

  // Binary protocol over TCP (or TLS).
  const onSocket = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    const transport: Transport = {
      write: (b) => void socket.write(b),
      get bufferedBytes() {
        return socket.writableLength;
      },
      pauseReading: () => socket.pause(),
      resumeReading: () => socket.resume(),
      onDrain: (cb) => socket.on('drain', cb),
      close: () => socket.end(() => socket.destroy()),
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
    };
    const session = admit(transport, 'tcp');
    if (!session) return;
    socket.on('data', (chunk: Buffer) => session.receive(chunk));
    socket.on('close', () => session.closed());
    socket.on('error', () => session.closed());
  };
  const tcp = tlsOptions ? tls.createServer(tlsOptions, onSocket) : net.createServer(onSocket);

  // HTTP API, and the binary protocol over WebSocket at /ws.
  const http = await buildHttp(
    {
      store: metrics.instrumentStore(store, 'http'),
      queues: store.queues,
      auth,
      limits: config.serverLimits,
      version,
      startedAt,
      durability: config.durability,
      isReady: () => ready,
      log,
      logger,
      metrics,
      metricsOpen: metricsOpen(config, auth.enabled),
    },
    { https: tlsOptions },
  );
  // HTTP connections, counted until they close or become a WebSocket (then counted as ws). With
  // TLS the socket a request sees is the TLS one, hence 'secureConnection'.
  const httpSockets = new Set<object>();
  http.server.on(tlsOptions ? 'secureConnection' : 'connection', (socket: net.Socket) => {
    httpSockets.add(socket);
    metrics.connectionOpened('http');
    socket.once('close', () => {
      if (httpSockets.delete(socket)) metrics.connectionClosed('http');
    });
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.serverLimits.frameBytesMax });
  http.server.on('upgrade', (req, socket, head) => {
    if ((req.url ?? '').split('?')[0] !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    if (httpSockets.delete(req.socket)) metrics.connectionClosed('http');
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const drainWaiters: Array<() => void> = [];
      const transport: Transport = {
        write: (b) =>
          ws.send(b, { binary: true }, () => {
            if (ws.bufferedAmount === 0) for (const w of drainWaiters) w();
          }),
        get bufferedBytes() {
          return ws.bufferedAmount;
        },
        pauseReading: () => ws.pause(),
        resumeReading: () => ws.resume(),
        onDrain: (cb) => drainWaiters.push(cb),
        close: () => {
          // The closing handshake reads the peer's reply: reading must be on (a shutdown pauses
          // it), and a peer that never answers is cut off after a second.
          ws.resume();
          ws.close();
          setTimeout(() => ws.terminate(), 1000).unref();
        },
        remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      };
      const session = admit(transport, 'ws');
      if (!session) return;
      ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => session.receive(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)));
      ws.on('close', () => session.closed());
      ws.on('error', () => session.closed());
    });
  });

  try {
    await http.listen({ host: config.host, port: config.httpPort });
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(config.tcpPort, config.host, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await http.close().catch(() => undefined);
    tcp.close();
    await store.close();
    metrics.close();
    throw err;
  }
  ready = true;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const httpPort = (http.server.address() as AddressInfo).port;
  const tcpPort = (tcp.address() as AddressInfo).port;
  const secure = tlsOptions !== undefined;
  const urls = {
    httpUrl: `${secure ? 'https' : 'http'}://${host}:${httpPort}`,
    wsUrl: `${secure ? 'wss' : 'ws'}://${host}:${httpPort}/ws`,
    tcpUrl: `${secure ? 'tls' : 'tcp'}://${host}:${tcpPort}`,
  };
  log('info', 'serving', { ...urls, dataDir: store.dir, durability: config.durability, auth: auth.enabled, tls: secure, headPosition: store.head });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      ready = false;
      log('info', 'shutting down: no new connections; finishing requests in flight');
      tcp.close();
      const httpClosed = http.close();
      await Promise.all([...sessions].map((s) => s.shutdown()));
      wss.close();
      await httpClosed.catch(() => undefined);
      await store.close();
      metrics.close();
      log('info', 'stopped; the store is closed');
    })());

  return {
    store,
    metrics,
    ...urls,
    authEnabled: auth.enabled,
    tls: secure,
    close,
  };
}
