/**
 * Regenerates the saved frames in test/protocol/fixtures/ from the definitions below:
 *
 *   node --import tsx test/protocol/make-fixtures.ts
 *
 * Each fixture is two files: `<name>.hex` (the exact bytes of one frame, as hex, 16 bytes a line)
 * and `<name>.json` (frame type, request id and body, with byte strings written as
 * `{ "$bytes": "<hex>" }`). test/protocol/codec.test.ts checks that encodeFrame still produces
 * exactly these bytes and that the decoder turns them back into the same frame.
 *
 * The fixtures ARE the wire format of protocol version 1. They must only change together with a
 * protocol version change (PROTOCOL_VERSION in src/protocol/codec.ts): a client or server
 * already deployed still sends and expects the old bytes. If codec.test.ts fails after a change
 * to src/protocol/ or to msgpackr, fix the code, do not re-run this script.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FRAME, FRAME_NAMES, encodeFrame } from '../../src/protocol/codec.js';
import type { FrameType } from '../../src/protocol/codec.js';

export const FIXTURES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** A JSON-safe description of a body: byte strings are `{ $bytes: hex }`. */
export type JsonBody = Record<string, unknown>;

export interface FixtureJson {
  /** What this frame shows. */
  about: string;
  type: number;
  typeName: string;
  requestId: number;
  body: JsonBody;
}

const hex = (h: string): { $bytes: string } => ({ $bytes: h.replace(/[\s-]/g, '').toLowerCase() });
const utf8Hex = (s: string): { $bytes: string } => ({ $bytes: Buffer.from(s, 'utf8').toString('hex') });

const ID_1 = '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f';
const ID_2 = '0b9d6c31-7e2a-4f18-9c55-d4e3f2a1b0c9';
const TS = 1_717_171_717_171; // 2024-05-31, ms since the epoch: more than 32 bits on purpose

/** The saved frames. Names are file names. */
export const FIXTURES: Record<string, FixtureJson> = {
  hello: {
    about: 'client HELLO: protocol version, token and client name',
    type: FRAME.HELLO,
    typeName: 'HELLO',
    requestId: 1,
    body: { version: 1, token: 'tok-0123456789abcdef', client: 'eventful-js' },
  },
  welcome: {
    about: "server WELCOME answering HELLO's request id, with the limits the client must respect",
    type: FRAME.WELCOME,
    typeName: 'WELCOME',
    requestId: 1,
    body: {
      version: 1,
      server: 'eventful/0.1.0',
      heartbeatMs: 10_000,
      limits: { frameBytesMax: 17 * 1024 * 1024, inFlightRequestsMax: 4096, readPageEventsMax: 512 },
    },
  },
  append: {
    about: 'APPEND of 2 events, both with metadata bytes: JSON data, and binary data (application/octet-stream) with bytes that are not UTF-8',
    type: FRAME.APPEND,
    typeName: 'APPEND',
    requestId: 2,
    body: {
      stream: 'order-42',
      events: [
        { id: ID_1, type: 'OrderPlaced', data: utf8Hex('{"total":12.5,"lines":2}'), contentType: 'application/json', metadata: utf8Hex('{"user":"ana"}') },
        { id: ID_2, type: 'InvoiceScanned', data: hex('00 01 02 7f 80 fe ff 00 c0 c1 de ad be ef'), contentType: 'application/octet-stream', metadata: utf8Hex('{"source":"scanner-7"}') },
      ],
      expectedRevision: 'no_stream',
    },
  },
  appended: {
    about: 'APPENDED: the positions of the events and the stream revision after the append',
    type: FRAME.APPENDED,
    typeName: 'APPENDED',
    requestId: 2,
    body: { positions: [41, 42], revision: 1 },
  },
  events: {
    about: 'EVENTS page of 2 wire events (arrays of 9 fields): one with metadata, one binary without',
    type: FRAME.EVENTS,
    typeName: 'EVENTS',
    requestId: 3,
    body: {
      events: [
        [41, 'order-42', 0, hex(ID_1), 'OrderPlaced', 'application/json', TS, utf8Hex('{"user":"ana"}'), utf8Hex('{"total":12.5,"lines":2}')],
        [42, 'order-42', 1, hex(ID_2), 'InvoiceScanned', 'application/octet-stream', TS + 1, null, hex('00 01 02 7f 80 fe ff')],
      ],
      done: false,
    },
  },
  error: {
    about: 'ERROR for a failed request: code, message, details',
    type: FRAME.ERROR,
    typeName: 'ERROR',
    requestId: 2,
    body: {
      code: 'WRONG_EXPECTED_REVISION',
      message: "append to 'order-42' expected revision no_stream but the stream is at 1",
      details: { stream: 'order-42', expectedRevision: 'no_stream', actualRevision: 1 },
    },
  },
  ping: {
    about: 'PING with an empty body (either side, request id 0)',
    type: FRAME.PING,
    typeName: 'PING',
    requestId: 0,
    body: {},
  },
  credit: {
    about: 'CREDIT topping up the read or subscription of the same request id',
    type: FRAME.CREDIT,
    typeName: 'CREDIT',
    requestId: 4,
    body: { credit: 2048 },
  },
  subscribe: {
    about: '$all SUBSCRIBE from a position with a filter and an initial credit',
    type: FRAME.SUBSCRIBE,
    typeName: 'SUBSCRIBE',
    requestId: 4,
    body: { from: 40, filter: { category: ['order', 'invoice'], types: ['OrderPlaced'] }, credit: 2048 },
  },
};

/** `{ $bytes }` to Buffer, recursively. */
export function fromJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromJson);
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o.$bytes === 'string' && Object.keys(o).length === 1) return Buffer.from(o.$bytes, 'hex');
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, fromJson(x)]));
  }
  return v;
}

export function toHexLines(bytes: Buffer): string {
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) lines.push(bytes.subarray(i, i + 16).toString('hex').replace(/(..)(?!$)/g, '$1 '));
  return lines.join('\n') + '\n';
}

export function parseHex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function main(): void {
  fs.mkdirSync(FIXTURES_DIR, { recursive: true });
  for (const [name, f] of Object.entries(FIXTURES)) {
    if (FRAME_NAMES[f.type] !== f.typeName) throw new Error(`${name}: type ${f.type} is not ${f.typeName}`);
    const bytes = encodeFrame(f.type as FrameType, f.requestId, fromJson(f.body) as Record<string, unknown>);
    fs.writeFileSync(path.join(FIXTURES_DIR, `${name}.hex`), toHexLines(bytes));
    fs.writeFileSync(path.join(FIXTURES_DIR, `${name}.json`), JSON.stringify(f, null, 2) + '\n');
    process.stdout.write(`${name}: ${bytes.length} bytes\n`);
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
