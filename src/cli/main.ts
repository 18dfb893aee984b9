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
import type { MessageInput, NackOptions, RedriveOptions } from '../core/queues.js';
import type { GroupSettingsInput } from '../core/groups.js';
import { registerProjectionCommands } from './projection.js';
import { clientOptions, withClient } from './target.js';
import type { ClientOpts } from './target.js';
import { registerTransferCommands } from './transfer.js';
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

/** --category, --type and --prefix: a filter of the log. */
function filterOpts(cmd: Command): Command {
  return cmd
    .option('--category <names>', 'only these categories (comma-separated)')
    .option('--type <types>', 'only these event types (comma-separated)')
    .option('--prefix <prefixes>', 'only streams starting with these (comma-separated)');
}

function filterOf(o: { category?: string; type?: string; prefix?: string }): ReadAllFilter | undefined {
  const f: ReadAllFilter = {};
  if (o.category) f.category = list(o.category)!;
  if (o.type) f.types = list(o.type)!;
  if (o.prefix) f.streamPrefix = list(o.prefix)!;
  return Object.keys(f).length > 0 ? f : undefined;
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
  clientOptions(
    program
      .command('delete')
      .description('delete a stream: soft (it reads as empty and can be appended to again), or --hard (for good)')
      .argument('<stream>', 'stream name')
      .option('--hard', 'a tombstone: the stream can never be read or appended to again')
      .option('--expected <revision>', 'any, no_stream, stream_exists or a revision: checked when the delete is made'),
  ).action(async (stream: string, o: ClientOpts & { hard?: boolean; expected?: string }) => {
    await withClient(o, async (store) => {
      await store.deleteStream(stream, { hard: o.hard === true, expectedRevision: parseExpected(o.expected) });
      process.stdout.write(o.json ? JSON.stringify({ deleted: stream, hard: o.hard === true }) + '\n' : `deleted ${stream}${o.hard ? ' for good' : ''}\n`);
    });
  });

  clientOptions(
    program
      .command('retention')
      .description("show a stream's retention, or set it (replacing what it had): reads hide what it excludes at once")
      .argument('<stream>', 'stream name')
      .option('--max-age <ms>', 'hide events older than this')
      .option('--max-count <n>', 'keep only the last n events visible')
      .option('--truncate-before <revision>', 'hide events before this revision')
      .option('--clear', 'remove every setting'),
  ).action(async (stream: string, o: ClientOpts & { maxAge?: string; maxCount?: string; truncateBefore?: string; clear?: boolean }) => {
    await withClient(o, async (store) => {
      const num = (v: string | undefined, what: string): number | undefined => {
        if (v === undefined) return undefined;
        if (!/^\d+$/.test(v)) throw new CommanderError(EXIT.error, 'eventful.usage', `${what} must be a whole number, got '${v}'`);
        return Number(v);
      };
      const changes = { maxAgeMs: num(o.maxAge, '--max-age'), maxCount: num(o.maxCount, '--max-count'), truncateBefore: num(o.truncateBefore, '--truncate-before') };
      if (o.clear || Object.values(changes).some((v) => v !== undefined)) await store.setStreamMetadata(stream, o.clear ? {} : changes);
      const m = await store.getStreamMetadata(stream);
      process.stdout.write(o.json ? JSON.stringify(m) + '\n' : Object.keys(m).length === 0 ? `${stream}: no retention (every event visible)\n` : `${stream}: ${JSON.stringify(m)}\n`);
    });
  });

  addQueueCommands(program);
  addGroupCommands(program);
  registerProjectionCommands(program);
  registerTransferCommands(program);
  return program;
}

/** `eventful group ...`: consumer groups on a server. */
function addGroupCommands(program: Command): void {
  const group = program.command('group').description('consumer groups on a server: create, list, stats, consume, reset, delete');
  const out = (o: ClientOpts, value: unknown, text: () => string): void => {
    process.stdout.write(o.json ? JSON.stringify(value) + '\n' : text() + '\n');
  };
  const settingsOpts = (cmd: Command): Command =>
    filterOpts(cmd)
      .option('--mode <mode>', 'single (one active member, the others stand by) or partitioned')
      .option('--partitions <n>', 'partitions of a partitioned group (default 16)')
      .option('--from <position>', 'where a new group starts: start (default), end or a position');
  type SettingsFlags = { mode?: string; partitions?: string; from?: string; category?: string; type?: string; prefix?: string };
  const settingsOf = (o: SettingsFlags): GroupSettingsInput => {
    const s: GroupSettingsInput = {};
    const filter = filterOf(o);
    if (filter !== undefined) s.filter = filter;
    if (o.mode !== undefined) s.mode = o.mode as GroupSettingsInput['mode'];
    if (o.partitions !== undefined) s.partitions = Number(o.partitions);
    if (o.from !== undefined) s.from = parseFrom(o.from);
    return s;
  };
  clientOptions(settingsOpts(group.command('create <group>').description('create a consumer group'))).action(async (name: string, o: ClientOpts & SettingsFlags) => {
    await withClient(o, async (store) => {
      const info = await store.groups.create(name, settingsOf(o));
      out(o, info, () => `group ${info.name}: ${info.settings.mode}, ${info.settings.partitions} partition(s), from position ${info.startPosition}`);
    });
  });
  clientOptions(group.command('list').description('list consumer groups')).action(async (o: ClientOpts) => {
    await withClient(o, async (store) => {
      const all = await store.groups.list();
      out(o, all, () => (all.length === 0 ? c.dim('(no groups)') : all.map((g) => `${g.name}  ${c.dim(`${g.settings.mode}, ${g.settings.partitions} partition(s), filter ${JSON.stringify(g.settings.filter)}`)}`).join('\n')));
    });
  });
  clientOptions(group.command('stats [group]').description('checkpoints, lag in events and time, members (all groups when none is named)')).action(async (name: string | undefined, o: ClientOpts) => {
    await withClient(o, async (store) => {
      const names = name !== undefined ? [name] : (await store.groups.list()).map((g) => g.name);
      const all = await Promise.all(names.map((n) => store.groups.stats(n)));
      if (o.json) {
        for (const st of all) process.stdout.write(JSON.stringify(st) + '\n');
        return;
      }
      const head = ['group', 'mode', 'members', 'position', 'head', 'lag events', 'lag'];
      const rows = all.map((st) => [st.name, st.settings.mode, st.members.length, st.position, st.head, `${st.lagEvents}${st.lagExact ? '' : '+'}`, `${(st.lagMs / 1000).toFixed(1)}s`].map(String));
      const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      process.stdout.write(c.bold(head.map((h, i) => h.padEnd(w[i]!)).join('  ')) + '\n');
      for (const r of rows) process.stdout.write(r.map((v, i) => (i < 2 ? v.padEnd(w[i]!) : v.padStart(w[i]!))).join('  ') + '\n');
      if (name !== undefined) {
        for (const m of all[0]!.members) process.stdout.write(c.dim(`  member ${m.name}: partitions [${m.partitions.join(', ')}]${m.revoking.length > 0 ? `, giving up [${m.revoking.join(', ')}]` : ''}, committed ${m.committedPosition}`) + '\n');
      }
    });
  });
  clientOptions(
    settingsOpts(
      group
        .command('consume <group>')
        .description('join the group and print its events as they come (Ctrl-C to leave); each printed event is committed')
        .option('--max <n>', 'leave after this many events')
        .option('--name <member>', 'member name shown in stats'),
    ),
  ).action(async (name: string, o: ClientOpts & SettingsFlags & { max?: string; name?: string }) => {
    const { connect } = await import('../client/index.js');
    const store = await connect(o.url, { token: o.token });
    const s = settingsOf(o);
    const member = store.groups.join(name, { ...s, memberName: o.name });
    const stop = (): void => void member.close().then(() => store.close());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const max = o.max === undefined ? Infinity : Number(o.max);
    let n = 0;
    try {
      for await (const e of member) {
        printEvent(e, o.json === true);
        if (++n >= max) {
          await member.commit(e);
          break;
        }
      }
    } finally {
      await member.close();
      await store.close();
    }
  });
  clientOptions(group.command('reset <group>').description('move every checkpoint so that the group reads from --to (only while no member is joined)').requiredOption('--to <position>', 'start, end or a position')).action(
    async (name: string, o: ClientOpts & { to: string }) => {
      await withClient(o, async (store) => {
        const st = await store.groups.reset(name, parseFrom(o.to)!);
        out(o, st, () => `group ${name} now reads after position ${st.position} (${st.lagEvents}${st.lagExact ? '' : '+'} events behind)`);
      });
    },
  );
  clientOptions(group.command('delete <group>').description('delete a consumer group (its members are ended)')).action(async (name: string, o: ClientOpts) => {
    await withClient(o, async (store) => {
      await store.groups.delete(name);
      out(o, { deleted: name }, () => `deleted group ${name}`);
    });
  });
}

/** `eventful queue ...`: the queue API against a server. */
function addQueueCommands(program: Command): void {
  const queue = program.command('queue').description('named queues on a server: create, send, receive, ack, stats, redrive, ...');
  const out = (o: ClientOpts, value: unknown, text: () => string): void => {
    process.stdout.write(o.json ? JSON.stringify(value) + '\n' : text() + '\n');
  };
  const settingsOf = (o: { settings?: string }): Record<string, unknown> | undefined => (o.settings === undefined ? undefined : (parseJsonArg(o.settings, '--settings') as Record<string, unknown>));
  clientOptions(
    queue
      .command('create <queue>')
      .description('create a queue')
      .option('--settings <json>', `settings as JSON (or @file), e.g. '{"leaseMs":30000,"maxDeliveries":5,"deadLetterQueue":"jobs-dlq"}'`),
  ).action(async (name: string, o: ClientOpts & { settings?: string }) => {
    await withClient(o, async (store) => {
      const info = await store.queues.create(name, settingsOf(o));
      out(o, info, () => `created queue ${info.name} at position ${info.createdPosition}`);
    });
  });
  clientOptions(queue.command('update <queue>').description('change settings').requiredOption('--settings <json>', 'settings to change, as JSON (or @file)')).action(
    async (name: string, o: ClientOpts & { settings: string }) => {
      await withClient(o, async (store) => {
        const info = await store.queues.update(name, settingsOf(o)!);
        out(o, info, () => JSON.stringify(info.settings, null, 2));
      });
    },
  );
  clientOptions(queue.command('list').description('list queues')).action(async (o: ClientOpts) => {
    await withClient(o, async (store) => {
      const all = await store.queues.list();
      out(o, all, () => (all.length === 0 ? c.dim('(no queues)') : all.map((q) => `${q.name}  ${c.dim(`${q.settings.ordering}${q.settings.binding ? ', bound' : ''}`)}`).join('\n')));
    });
  });
  clientOptions(queue.command('get <queue>').description("a queue's settings")).action(async (name: string, o: ClientOpts) => {
    await withClient(o, async (store) => {
      const info = await store.queues.get(name);
      if (info === undefined) {
        process.stderr.write(`eventful: no queue named '${name}'\n`);
        process.exitCode = EXIT.problems;
        return;
      }
      out(o, info, () => JSON.stringify(info, null, 2));
    });
  });
  clientOptions(queue.command('delete <queue>').description('delete a queue (its messages stay in the log)')).action(async (name: string, o: ClientOpts) => {
    await withClient(o, async (store) => {
      await store.queues.delete(name);
      out(o, { deleted: name }, () => `deleted queue ${name}`);
    });
  });
  clientOptions(queue.command('purge <queue>').description('drop every message not yet acked')).action(async (name: string, o: ClientOpts) => {
    await withClient(o, async (store) => {
      const n = await store.queues.purge(name);
      out(o, { purged: n }, () => `purged ${n} messages`);
    });
  });
  clientOptions(
    queue
      .command('send <queue>')
      .description('send one message (or NDJSON lines of { body, headers?, id?, groupKey?, delayMs? } from stdin with --stdin)')
      .option('--body <json>', 'the body as JSON (or @file)')
      .option('--header <key=value...>', 'a header (repeatable)')
      .option('--id <uuid>', 'message id (dedup)')
      .option('--group <key>', 'FIFO group key')
      .option('--delay <ms>', 'deliver after this many ms')
      .option('--stdin', 'read NDJSON messages from stdin, sent in batches of 1,000'),
  ).action(async (name: string, o: ClientOpts & { body?: string; header?: string[]; id?: string; group?: string; delay?: string; stdin?: boolean }) => {
    await withClient(o, async (store) => {
      if (o.stdin) {
        let batch: MessageInput[] = [];
        let sent = 0;
        const flush = async (): Promise<void> => {
          if (batch.length === 0) return;
          await store.queues.send(name, batch);
          sent += batch.length;
          batch = [];
        };
        for await (const line of readline.createInterface({ input: process.stdin })) {
          if (line.trim() === '') continue;
          batch.push(parseJsonArg(line, 'a message line') as MessageInput);
          if (batch.length >= 1000) await flush();
        }
        await flush();
        out(o, { sent }, () => `sent ${sent} messages`);
        return;
      }
      const m: MessageInput = { body: o.body === undefined ? null : parseJsonArg(o.body, '--body') };
      if (o.header) m.headers = Object.fromEntries(o.header.map((h) => [h.slice(0, h.indexOf('=')), h.slice(h.indexOf('=') + 1)]));
      if (o.id) m.id = o.id;
      if (o.group) m.groupKey = o.group;
      if (o.delay) m.delayMs = Number(o.delay);
      const r = await store.queues.send(name, [m]);
      out(o, r, () => `sent ${r.ids[0]} at position ${r.positions[0]}${r.duplicates > 0 ? ' (duplicate: already sent)' : ''}`);
    });
  });
  clientOptions(
    queue
      .command('receive <queue>')
      .description('lease messages and print them; with --ack they are acked once printed')
      .option('--max <n>', 'most messages', '1')
      .option('--wait <ms>', 'wait this long for the first (long polling)', '0')
      .option('--ack', 'ack what was received'),
  ).action(async (name: string, o: ClientOpts & { max: string; wait: string; ack?: boolean }) => {
    await withClient(o, async (store) => {
      // Detached: the leases outlive this command, so a later `eventful queue ack` can settle them.
      const got = await store.queues.receive(name, { max: Number(o.max), waitMs: Number(o.wait), detached: !o.ack });
      for (const d of got) {
        const view = { receipt: d.receipt, id: d.id, position: d.position, deliveryCount: d.deliveryCount, headers: d.headers, body: d.body instanceof Uint8Array ? `<${d.body.length} bytes>` : d.body };
        out(o, view, () => `${c.dim(String(d.position).padStart(8))}  ${c.cyan(d.receipt)}  ${c.dim(`#${d.deliveryCount}`)}  ${JSON.stringify(view.body)}`);
      }
      if (o.ack && got.length > 0) await store.queues.ack(name, got.map((d) => d.receipt));
      if (got.length === 0 && !o.json) process.stderr.write(c.dim('(no messages)') + '\n');
    });
  });
  clientOptions(queue.command('ack <queue> <receipts...>').description('ack leases by receipt (from `eventful queue receive`)')).action(async (name: string, receipts: string[], o: ClientOpts) => {
    await withClient(o, async (store) => {
      await store.queues.ack(name, receipts);
      out(o, { ok: true }, () => `acked ${receipts.length}`);
    });
  });
  clientOptions(
    queue
      .command('nack <queue> <receipts...>')
      .description('give leases back: after their back-off, after --delay, or to dead letters now')
      .option('--delay <ms>', 'deliverable again after this many ms')
      .option('--dead-letter', 'to the dead-letter queue now')
      .option('--reason <text>', 'why (kept in the dead-letter history)'),
  ).action(async (name: string, receipts: string[], o: ClientOpts & { delay?: string; deadLetter?: boolean; reason?: string }) => {
    await withClient(o, async (store) => {
      const options: NackOptions = {};
      if (o.delay !== undefined) options.delayMs = Number(o.delay);
      if (o.deadLetter) options.deadLetter = true;
      if (o.reason !== undefined) options.reason = o.reason;
      await store.queues.nack(name, receipts, options);
      out(o, { ok: true }, () => `nacked ${receipts.length}`);
    });
  });
  clientOptions(queue.command('extend <queue> <receipts...>').description('lengthen leases').option('--lease <ms>', 'new lease from now (default: the queue lease)')).action(
    async (name: string, receipts: string[], o: ClientOpts & { lease?: string }) => {
      await withClient(o, async (store) => {
        await store.queues.extend(name, receipts, o.lease === undefined ? undefined : Number(o.lease));
        out(o, { ok: true }, () => `extended ${receipts.length}`);
      });
    },
  );
  clientOptions(
    queue
      .command('redrive <queue>')
      .description('move messages out of a dead-letter queue, back to where they came from (or --to)')
      .option('--to <queue>', 'target queue')
      .option('--count <n>', 'move at most this many')
      .option('--ids <ids>', 'only these message ids (comma-separated)')
      .option('--rate <n>', 'most messages per second'),
  ).action(async (name: string, o: ClientOpts & { to?: string; count?: string; rate?: string; ids?: string }) => {
    await withClient(o, async (store) => {
      const options: RedriveOptions = {};
      if (o.ids) options.ids = list(o.ids);
      if (o.to) options.to = o.to;
      if (o.count) options.count = Number(o.count);
      if (o.rate) options.ratePerSec = Number(o.rate);
      const n = await store.queues.redrive(name, options);
      out(o, { moved: n }, () => `moved ${n} messages`);
    });
  });
  clientOptions(queue.command('unpark <queue> <groupKey>').description('FIFO: let a parked group flow again')).action(async (name: string, group: string, o: ClientOpts) => {
    await withClient(o, async (store) => {
      const r = await store.queues.unpark(name, group);
      out(o, { unparked: r }, () => (r ? `group ${group} flows again` : `group ${group} was not parked`));
    });
  });
  clientOptions(queue.command('cancel <queue> <messageId>').description('cancel a message not yet delivered')).action(async (name: string, id: string, o: ClientOpts) => {
    await withClient(o, async (store) => {
      const r = await store.queues.cancel(name, id);
      out(o, { cancelled: r }, () => (r ? 'cancelled' : 'not cancelled: already delivered, acked or unknown'));
      if (!r) process.exitCode = EXIT.problems;
    });
  });
  clientOptions(queue.command('stats [queue]').description("a queue's depth, in flight, delayed, dead letters, oldest age, rates, consumers (all queues when none is named)")).action(
    async (name: string | undefined, o: ClientOpts) => {
      await withClient(o, async (store) => {
        const names = name !== undefined ? [name] : (await store.queues.list()).map((q) => q.name);
        const all = await Promise.all(names.map((n) => store.queues.stats(n)));
        if (o.json) {
          for (const st of all) process.stdout.write(JSON.stringify(st) + '\n');
          return;
        }
        const head = ['queue', 'depth', 'ready', 'in flight', 'delayed', 'dead', 'oldest', 'consumers', 'send/s', 'ack/s'];
        const rows = all.map((st) => [st.name, st.depth, st.ready, st.inFlight, st.delayed, st.deadLettered, `${(st.oldestUnackedAgeMs / 1000).toFixed(1)}s`, st.consumers, st.rates.send, st.rates.ack].map(String));
        const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        process.stdout.write(c.bold(head.map((h, i) => h.padEnd(w[i]!)).join('  ')) + '\n');
        for (const r of rows) process.stdout.write(r.map((v, i) => (i === 0 ? v.padEnd(w[i]!) : v.padStart(w[i]!))).join('  ') + '\n');
      });
    },
  );
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
      if (err.code === 'QUEUE_NOT_FOUND' || err.code === 'GROUP_NOT_FOUND') return EXIT.problems;
      return EXIT.error;
    }
    process.stderr.write(`eventful: ${(err as Error).message}\n`);
    return EXIT.error;
  }
}
