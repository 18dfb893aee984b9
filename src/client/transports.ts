/**
 * How the client reaches a server: TCP or TLS sockets in Node, WebSocket everywhere.
 * Node modules are imported lazily so a browser bundle (which only dials WebSocket) never
 * pulls them in.
 */
import { ConnectionLostError } from '../core/errors.js';
import type { ConnectOptions } from './connection.js';

export interface ClientTransport {
  send(bytes: Uint8Array): void;
  close(): void;
}

type OnData = (b: Uint8Array) => void;
type OnClose = (err?: Error) => void;

export async function dialer(url: URL, o: ConnectOptions, onData: OnData, onClose: OnClose): Promise<ClientTransport> {
  if (url.protocol === 'ws:' || url.protocol === 'wss:') return dialWebSocket(url, onData, onClose);
  return dialSocket(url, o, onData, onClose);
}

async function dialSocket(url: URL, o: ConnectOptions, onData: OnData, onClose: OnClose): Promise<ClientTransport> {
  const secure = url.protocol === 'tls:';
  const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(url.port || 7071);
  const net = await import('node:net');
  const tls = await import('node:tls');
  return new Promise((resolve, reject) => {
    let settled = false;
    let connected = false;
    const socket = secure
      ? tls.connect({ host, port, ca: o.ca, rejectUnauthorized: o.rejectUnauthorized ?? true, servername: net.isIP(host) ? undefined : host })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      settled = true;
      connected = true;
      resolve({
        send: (b) => void socket.write(b),
        close: () => socket.destroy(),
      });
    });
    socket.on('data', (chunk: Buffer) => onData(chunk));
    socket.on('error', (err) => {
      if (!settled) {
        settled = true;
        reject(new ConnectionLostError(`cannot connect to ${url.href}: ${err.message}`));
      }
    });
    socket.on('close', () => {
      if (connected) onClose(new Error('socket closed'));
    });
  });
}

interface WsLike {
  binaryType: string;
  send(data: Uint8Array): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
}

async function dialWebSocket(url: URL, onData: OnData, onClose: OnClose): Promise<ClientTransport> {
  let Ctor = (globalThis as { WebSocket?: new (u: string) => WsLike }).WebSocket;
  if (Ctor === undefined) {
    // Node 20 has no WebSocket of its own. The `ws` package's optional native add-ons stay off:
    // the client loads no native module.
    if (typeof process !== 'undefined' && process.env.WS_NO_BUFFER_UTIL === undefined) process.env.WS_NO_BUFFER_UTIL = '1';
    const mod = await import('ws');
    Ctor = mod.WebSocket as unknown as new (u: string) => WsLike;
  }
  const ws = new Ctor(url.href);
  ws.binaryType = 'arraybuffer';
  return new Promise((resolve, reject) => {
    let open = false;
    ws.onopen = () => {
      open = true;
      resolve({ send: (b) => ws.send(b), close: () => ws.close() });
    };
    ws.onmessage = (ev) => {
      const d = ev.data;
      // ArrayBuffer.isView checks internal slots, so it also works across realms (iframes, vm).
      onData(ArrayBuffer.isView(d) ? (d as Uint8Array) : new Uint8Array(d as ArrayBuffer));
    };
    ws.onerror = () => {
      if (!open) reject(new ConnectionLostError(`cannot connect to ${url.href}`));
    };
    ws.onclose = () => {
      if (open) onClose(new Error('WebSocket closed'));
      else reject(new ConnectionLostError(`cannot connect to ${url.href}`));
    };
  });
}
