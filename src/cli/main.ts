/**
 * The `eventful` command line.
 *
 * Exit codes (scripts may rely on them):
 *   0  success
 *   1  the command ran and found problems (verify), or what was asked for does not exist
 *   2  bad usage, or an error (the message says which, with its code)
 *   3  WRONG_EXPECTED_REVISION or IDEMPOTENCY_CONFLICT: an append was refused by a concurrency check
 *   4  the server could not be reached
 */
import fs from 'node:fs';
import readline from 'node:readline';
import { Command, CommanderError, Option } from 'commander';
import { EventfulError } from '../core/errors.js';
import type { EventInput, ExpectedRevision, ReadAllFilter, RecordedEvent } from '../core/events.js';
import type { VerifyReport } from '../log/verify.js';
import { progressBar } from './progress.js';
import { describeConfig } from '../server/config.js';

export const EXIT = { ok: 0, problems: 1, error: 2, conflict: 3, unreachable: 4 } as const;

export function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const useColor = process.stdout.isTTY === true && process.env.NO_COLOR === undefined;
const c = {
  dim: (s: string) => (useColor ? `\x1b[2m${s}\x1b[0m` : s),
  bold: (s: string) => (useColor ? `\x1b[1m${s}\x1b[0m` : s),
  cyan: (s: string) => (useColor ? `\x1b[36m${s}\x1b[0m` : s),
  green: (s: string) => (useColor ? `\x1b[32m${s}\x1b[0m` : s),
  red: (s: string) => (useColor ? `\x1b[31m${s}\x1b[0m` : s),
};

interface ClientOpts {
  url?: string;
  token?: string;
  json?: boolean;
}

function clientOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--url <url>', 'server address (tcp://, tls://, ws://, wss://)').env('EVENTFUL_URL').default('tcp://127.0.0.1:7071'))
    .addOption(new Option('--token <token>', 'auth token').env('EVENTFUL_TOKEN'))
    .option('--json', 'machine-readable output (one JSON document per line)');
}

async function withClient<T>(o: ClientOpts, fn: (store: import('../client/index.js').RemoteEventStore) => Promise<T>): Promise<T> {
  const { connect } = await import('../client/index.js');
  const store = await connect(o.url, { token: o.token, reconnect: false });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function parseFrom(v: string | undefined): number | 'start' | 'end' | undefined {
  if (v === undefined || v === 'start' || v === 'end') return v;
  if (!/^\d+$/.test(v)) throw new CommanderError(EXIT.error, 'eventful.usage', `--from must be start, end or a number, got '${v}'`);
  return Number(v);
}

function parseExpected(v: string | undefined): ExpectedRevision | undefined {
  if (v === undefined) return undefined;
  if (v === 'any' || v === 'no_stream' || v === 'stream_exists') return v;
  if (/^-?\d+$/.test(v)) return Number(v);
  throw new CommanderError(EXIT.error, 'eventful.usage', `--expected-revision must be any, no_stream, stream_exists or a number, got '${v}'`);
}

function parseJsonArg(v: string, what: string): unknown {
  const text = v.startsWith('@') ? fs.readFileSync(v.slice(1), 'utf8') : v;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CommanderError(EXIT.error, 'eventful.usage', `${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function list(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').filter((s) => s.length > 0);
}

function printEvent(e: RecordedEvent, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(e) + '\n');
    return;
  }
  const data = e.isJson ? JSON.stringify(e.data) : `<${e.rawData.length} bytes ${e.contentType}>`;
  process.stdout.write(
    `${c.dim(String(e.position).padStart(8))}  ${c.cyan(e.stream)}${c.dim('@' + e.revision)}  ${c.bold(e.type)}  ${c.dim(new Date(e.timestamp).toISOString())}  ${data}\n`,
  );
}

export function buildProgram(): Command {
  const program = new Command('eventful')
    .description('Eventful: one durable log, two ways to read it (event store and message broker)')
    .version(version(), '-v, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', '\nExit codes: 0 ok, 1 problems found or not found, 2 usage or error, 3 concurrency conflict, 4 server unreachable.');

  const serve = program
    .command('serve')
    .description('run the server on the embedded store (binary protocol, WebSocket and HTTP API)')
    .option('--config <file>', 'JSON config file (env EVENTFUL_CONFIG); flags and EVENTFUL_* variables override it');
  for (const d of describeConfig()) {
    const flag = '--' + d.key.replace(/[A-Z]/g, (ch) => '-' + ch.toLowerCase());
    const isBool = d.defaultValue === false;
    const opt = new Option(isBool ? flag : `${flag} <value>`, `${d.description} [env ${d.env}${d.defaultValue !== undefined && !isBool ? `, default ${String(d.defaultValue)}` : ''}]`);
    serve.addOption(opt);
  }
  serve.addHelpText('after', '\nAuth tokens and limits are set in the config file (see docs/server.md). Signals: SIGTERM or SIGINT shut down gracefully; a second one exits at once.');
  serve.action(async (opts: Record<string, string | boolean | undefined>) => {
    const { runServe } = await import('./serve.js');
    await runServe(opts);
  });

  program
    .command('verify')
    .description('check every record and the stream index of a data directory (the store must not be open)')
    .argument('<dir>', 'data directory')
    .option('--json', 'print the report as JSON')
    .action(async (dir: string, opts: { json?: boolean }) => {
      const { verifyDir } = await import('../log/verify.js');
      const bar = opts.json ? undefined : progressBar('verifying');
      const report = await verifyDir(dir, { onProgress: (done, total) => bar?.update(done, total) });
      bar?.stop();
      if (opts.json) process.stdout.write(JSON.stringify(report) + '\n');
      else printVerify(report);
      process.exitCode = report.problems.length > 0 ? EXIT.problems : EXIT.ok;
    });

  clientOptions(
    program
      .command('append')
      .description('append an event (or, with no --type, NDJSON events from stdin: one {type, data, metadata?, id?} per line)')
      .argument('<stream>', 'stream name')
      .option('--type <type>', 'event type')
      .option('--data <json>', 'event data: JSON, or @file', '{}')
      .option('--metadata <json>', 'event metadata: a JSON object, or @file')
      .option('--id <uuid>', 'event id (makes retries idempotent)')
      .option('--expected-revision <r>', 'any, no_stream, stream_exists or a revision')
      .option('--batch <n>', 'events per append when reading stdin', '100'),
  ).action(async (stream: string, o: ClientOpts & { type?: string; data: string; metadata?: string; id?: string; expectedRevision?: string; batch: string }) => {
    const expectedRevision = parseExpected(o.expectedRevision);
    await withClient(o, async (store) => {
      if (o.type !== undefined) {
        const e: EventInput = { type: o.type, data: parseJsonArg(o.data, '--data') };
        if (o.metadata !== undefined) e.metadata = parseJsonArg(o.metadata, '--metadata') as Record<string, unknown>;
        if (o.id !== undefined) e.id = o.id;
        const r = await store.append(stream, [e], expectedRevision === undefined ? undefined : { expectedRevision });
        process.stdout.write(o.json ? JSON.stringify(r) + '\n' : `appended ${c.cyan(stream)}${c.dim('@' + r.revision)} at position ${r.positions[0]}\n`);
        return;
      }
      if (process.stdin.isTTY) throw new CommanderError(EXIT.error, 'eventful.usage', 'give --type (and --data), or pipe NDJSON events to stdin');
      const batchSize = Math.max(1, Number(o.batch) || 100);
      const bar = o.json ? undefined : progressBar('appending');
      let batch: EventInput[] = [];
      let count = 0;
      let lineNo = 0;
      const inflight: Promise<unknown>[] = [];
      const flush = (): void => {
        if (batch.length === 0) return;
        const events = batch;
        batch = [];
        inflight.push(store.append(stream, events).then(() => (count += events.length)));
      };
      for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
        lineNo++;
        if (line.trim() === '') continue;
        let e: unknown;
        try {
          e = JSON.parse(line);
        } catch (err) {
          throw new CommanderError(EXIT.error, 'eventful.usage', `stdin line ${lineNo} is not JSON: ${(err as Error).message}`);
        }
        batch.push(e as EventInput);
        if (batch.length >= batchSize) flush();
        if (inflight.length >= 64) await inflight.shift();
        bar?.update(count, Math.max(count, lineNo));
      }
      flush();
      await Promise.all(inflight);
      bar?.stop();
      process.stdout.write(o.json ? JSON.stringify({ appended: count }) + '\n' : `appended ${count} events to ${stream}\n`);
    });
  });

  clientOptions(
    program
      .command('read')
      .description("read a stream's events")
      .argument('<stream>', 'stream name')
      .option('--from <revision>', 'start, end or a revision')
      .option('--backwards', 'newest first')
      .option('--limit <n>', 'most events to print'),
  ).action(async (stream: string, o: ClientOpts & { from?: string; backwards?: boolean; limit?: string }) => {
    await withClient(o, async (store) => {
      let n = 0;
      for await (const e of store.readStream(stream, { from: parseFrom(o.from), direction: o.backwards ? 'backwards' : 'forwards', limit: o.limit ? Number(o.limit) : undefined })) {
        printEvent(e, o.json === true);
        n++;
      }
      if (n === 0 && (await store.streamInfo(stream)) === undefined) {
        process.stderr.write(`stream '${stream}' has no events\n`);
        process.exitCode = EXIT.problems;
      }
    });
  });

  const filterOpts = (cmd: Command): Command =>
    cmd
      .option('--category <names>', 'only these categories (comma-separated)')
      .option('--type <types>', 'only these event types (comma-separated)')
      .option('--prefix <prefixes>', 'only streams starting with these (comma-separated)');
  const filterOf = (o: { category?: string; type?: string; prefix?: string }): ReadAllFilter | undefined => {
    const f: ReadAllFilter = {};
    if (o.category) f.category = list(o.category)!;
    if (o.type) f.types = list(o.type)!;
    if (o.prefix) f.streamPrefix = list(o.prefix)!;
    return Object.keys(f).length > 0 ? f : undefined;
  };

  clientOptions(
    filterOpts(
      program
        .command('read-all')
        .description('read the whole log ($all), filtered')
        .option('--from <position>', 'start, end or a position')
        .option('--backwards', 'newest first')
        .option('--limit <n>', 'most events to print'),
    ),
  ).action(async (o: ClientOpts & { from?: string; backwards?: boolean; limit?: string; category?: string; type?: string; prefix?: string }) => {
    await withClient(o, async (store) => {
      for await (const e of store.readAll({ from: parseFrom(o.from), direction: o.backwards ? 'backwards' : 'forwards', limit: o.limit ? Number(o.limit) : undefined, filter: filterOf(o) })) {
        printEvent(e, o.json === true);
      }
    });
  });

  clientOptions(
    filterOpts(
      program
        .command('tail')
        .description('follow the log live (Ctrl-C to stop)')
        .option('--from <position>', 'start, end (default) or a position')
        .option('--stream <name>', 'follow one stream only'),
    ),
  ).action(async (o: ClientOpts & { from?: string; stream?: string; category?: string; type?: string; prefix?: string }) => {
    const { connect } = await import('../client/index.js');
    const store = await connect(o.url, { token: o.token });
    const sub = o.stream !== undefined ? store.subscribeToStream(o.stream, { from: parseFrom(o.from) }) : store.subscribeToAll({ from: parseFrom(o.from), filter: filterOf(o) });
    const stop = (): void => void sub.close().then(() => store.close());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      for await (const e of sub) printEvent(e, o.json === true);
    } finally {
      await store.close();
    }
  });

  clientOptions(
    program
      .command('streams')
      .description('list streams by name prefix')
      .option('--prefix <prefix>', 'only names starting with this', '')
      .option('--after <name>', 'continue after this name')
      .option('--limit <n>', 'most streams to list', '100'),
  ).action(async (o: ClientOpts & { prefix: string; after?: string; limit: string }) => {
    await withClient(o, async (store) => {
      const streams = await store.listStreams({ prefix: o.prefix, after: o.after, limit: Number(o.limit) });
      if (o.json) {
        for (const s of streams) process.stdout.write(JSON.stringify(s) + '\n');
        return;
      }
      const w = Math.max(6, ...streams.map((s) => s.stream.length));
      process.stdout.write(c.bold(`${'stream'.padEnd(w)}  ${'revision'.padStart(8)}  ${'events'.padStart(8)}  updated`) + '\n');
      for (const s of streams) {
        process.stdout.write(`${c.cyan(s.stream.padEnd(w))}  ${String(s.revision).padStart(8)}  ${String(s.eventCount).padStart(8)}  ${c.dim(new Date(s.updatedAt).toISOString())}\n`);
      }
    });
  });

  clientOptions(
    program
      .command('info')
      .description("the server's head position, or one stream's facts")
      .argument('[stream]', 'stream name'),
  ).action(async (stream: string | undefined, o: ClientOpts) => {
    await withClient(o, async (store) => {
      const info: Record<string, unknown> | undefined = stream === undefined ? { url: store.url, headPosition: await store.headPosition() } : ((await store.streamInfo(stream)) as Record<string, unknown> | undefined);
      if (info === undefined) {
        process.stderr.write(`stream '${stream}' has no events\n`);
        process.exitCode = EXIT.problems;
        return;
      }
      if (o.json) process.stdout.write(JSON.stringify(info) + '\n');
      else for (const [k, v] of Object.entries(info)) process.stdout.write(`${k.padEnd(14)}  ${k.endsWith('At') ? new Date(v as number).toISOString() : String(v)}\n`);
    });
  });
  return program;
}

function printVerify(r: VerifyReport): void {
  const rows: Array<[string, string]> = [
    ['data directory', r.dir],
    ['segments', String(r.segments)],
    ['bytes', `${r.bytes} (${(r.bytes / 1048576).toFixed(1)} MiB)`],
    ['events', String(r.events)],
    ['positions', r.events > 0 ? `${r.firstPosition}..${r.lastPosition}` : '-'],
    ['streams', String(r.streams)],
    ['index checked', `${r.indexCheckedEvents} events`],
    ['not yet indexed', `${r.eventsNotYetIndexed} events (replayed on next open)`],
    ['problems', String(r.problems.length)],
    ['took', `${r.durationMs} ms`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`);
  for (const p of r.problems) process.stdout.write(c.red(`problem: ${p.file} at offset ${p.offset}: ${p.message}`) + '\n');
  process.stdout.write(r.problems.length === 0 ? c.green('OK') + '\n' : c.red('PROBLEMS FOUND') + '\n');
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return EXIT.ok; // --help, --version
      if (err.code.startsWith('eventful.')) process.stderr.write(`eventful: ${err.message}\n`);
      return EXIT.error;
    }
    if (err instanceof EventfulError) {
      process.stderr.write(`eventful: ${err.code}: ${err.message}\n`);
      if (err.code === 'WRONG_EXPECTED_REVISION' || err.code === 'IDEMPOTENCY_CONFLICT') return EXIT.conflict;
      if (err.code === 'CONNECTION_LOST') return EXIT.unreachable;
      return EXIT.error;
    }
    process.stderr.write(`eventful: ${(err as Error).message}\n`);
    return EXIT.error;
  }
}
