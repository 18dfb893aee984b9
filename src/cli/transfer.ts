/**
 * Moving data in and out: `eventful backup`, `eventful restore`, `eventful export` and
 * `eventful import`.
 *
 * - backup/restore copy a data directory whole (every stream, queue state included), through a
 *   single verified file, while a server may be running (src/log/backup.ts).
 * - export/import move the application's events as lines of JSON (Eventful's own shape, or
 *   CloudEvents), through a server (`--url`) or a data directory no server holds (`--data`):
 *   to move between stores and engines, or to keep a readable copy. Streams starting with '$'
 *   (queue state, group checkpoints) are Eventful's own and are not exported.
 */
import fs from 'node:fs';
import readline from 'node:readline';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import { CONTENT_TYPE_JSON, bytesToBase64 } from '../core/events.js';
import type { EventInput, RecordedEvent } from '../core/events.js';
import { backupDir, restoreBackup } from '../log/backup.js';
import { openTarget, storeOptions } from './target.js';
import type { StoreOpts } from './target.js';
import { base64, fromCloudEvent, toCloudEvent } from '../protocol/cloudevents.js';
import type { CloudEventIn } from '../protocol/cloudevents.js';

type TargetOpts = StoreOpts;

function bar(label: string, unit: string): cliProgress.SingleBar | undefined {
  if (!process.stderr.isTTY) return undefined;
  const b = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  return b;
}

/** A bar over bytes (on a terminal) that starts on its first update, when the total is known. */
function byteProgress(label: string): { update: (done: number, total: number) => void; stop: () => void } {
  const b = bar(label, 'bytes');
  let started = false;
  return {
    update: (done, total) => {
      if (!started) b?.start(total, 0);
      started = true;
      b?.update(done);
    },
    stop: () => b?.stop(),
  };
}

/** An exported line in Eventful's own shape. */
export function eventToLine(e: RecordedEvent): Record<string, unknown> {
  const line: Record<string, unknown> = { position: e.position, stream: e.stream, revision: e.revision, id: e.id, type: e.type, timestamp: e.timestamp, contentType: e.contentType };
  if (e.isJson) line.data = e.data;
  else line.dataBase64 = bytesToBase64(e.rawData);
  if (e.rawMetadata !== undefined) line.metadata = e.metadata;
  return line;
}

/** One imported line: its stream, revision (when known) and the event to append. */
export function lineToEvent(raw: unknown, lineNo: number): { stream: string; revision: number | undefined; event: EventInput } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError(`line ${lineNo}: not a JSON object`);
  const l = raw as Record<string, unknown>;
  if (l.specversion !== undefined) {
    const stream = typeof l.subject === 'string' ? l.subject : undefined;
    if (stream === undefined) throw new InvalidArgumentError(`line ${lineNo}: a CloudEvent needs a subject (the stream to append it to)`);
    if (typeof l.id !== 'string' || typeof l.source !== 'string' || typeof l.type !== 'string') throw new InvalidArgumentError(`line ${lineNo}: a CloudEvent needs id, source and type`);
    const revision = typeof l.eventfulrevision === 'number' ? l.eventfulrevision : undefined;
    return { stream, revision, event: fromCloudEvent(l as CloudEventIn) };
  }
  if (typeof l.stream !== 'string' || typeof l.type !== 'string') throw new InvalidArgumentError(`line ${lineNo}: needs at least a stream and a type`);
  const event: EventInput = { type: l.type };
  if (typeof l.id === 'string') event.id = l.id;
  if (l.metadata !== undefined) event.metadata = l.metadata as Record<string, unknown>;
  if (typeof l.dataBase64 === 'string') {
    event.data = base64(l.dataBase64, `line ${lineNo}: dataBase64`);
    event.contentType = typeof l.contentType === 'string' ? l.contentType : 'application/octet-stream';
  } else {
    event.data = l.data ?? null;
    if (typeof l.contentType === 'string' && l.contentType !== CONTENT_TYPE_JSON) event.contentType = l.contentType;
  }
  if (event.contentType !== undefined && !(event.data instanceof Uint8Array)) event.data = Buffer.from(typeof event.data === 'string' ? event.data : JSON.stringify(event.data), 'utf8');
  return { stream: l.stream, revision: typeof l.revision === 'number' ? l.revision : undefined, event };
}

export function registerTransferCommands(program: Command): void {
  program
    .command('backup')
    .description('copy a data directory into one verified file, while a server may be running on it')
    .argument('<dir>', 'the data directory')
    .argument('<file>', 'the backup file to write (must not exist)')
    .option('--json', 'print the result as JSON')
    .action(async (dir: string, file: string, o: { json?: boolean }) => {
      const progress = byteProgress('backup');
      const r = await backupDir(dir, file, { onProgress: progress.update });
      progress.stop();
      process.stdout.write(
        o.json
          ? JSON.stringify(r) + '\n'
          : `backed up ${r.events} events (positions ${r.firstPosition}..${r.lastPosition}), ${r.files} files, ${(r.bytes / 1048576).toFixed(1)} MiB to ${r.file} in ${r.durationMs} ms; verified${r.tornTailBytes > 0 ? ` (${r.tornTailBytes} bytes of an append in progress left out)` : ''}\n`,
      );
    });

  program
    .command('restore')
    .description('restore a backup into a new data directory (checked as it is written)')
    .argument('<file>', 'the backup file')
    .argument('<dir>', 'the data directory to create (must not exist, or be empty)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, dir: string, o: { json?: boolean }) => {
      const progress = byteProgress('restore');
      const r = await restoreBackup(file, dir, { onProgress: progress.update });
      progress.stop();
      // Opening it once rebuilds the index and cuts a torn last append, so it is ready to serve.
      const { openStore } = await import('../streams/store.js');
      const store = await openStore({ dir });
      const head = await store.headPosition();
      await store.close();
      process.stdout.write(o.json ? JSON.stringify({ ...r, head }) + '\n' : `restored ${r.events} events (head position ${head}) from a backup of ${r.createdAt} into ${r.dir}\n`);
    });

  storeOptions(
    program
      .command('export')
      .description("write the application's events as NDJSON (one event per line) to stdout or a file")
      .option('--out <file>', 'write here instead of stdout')
      .option('--format <format>', 'eventful (default) or cloudevents', 'eventful')
      .option('--from <position>', 'first position', '1')
      .option('--category <names>', 'only these categories (comma-separated)')
      .option('--prefix <prefixes>', 'only streams starting with these (comma-separated)'),
  ).action(async (o: TargetOpts & { out?: string; format: string; from: string; category?: string; prefix?: string }, cmd: Command) => {
    if (o.format !== 'eventful' && o.format !== 'cloudevents') throw new InvalidArgumentError(`--format must be eventful or cloudevents, got '${o.format}'`);
    const store = await openTarget(o, cmd);
    const out: NodeJS.WritableStream = o.out !== undefined ? fs.createWriteStream(o.out, { flags: 'wx' }) : process.stdout;
    try {
      const head = await store.headPosition();
      const from = Number(o.from);
      const b = o.out !== undefined ? bar('export', 'positions') : undefined;
      b?.start(Math.max(0, head - from + 1), 0);
      const filter: Record<string, string[]> = {};
      if (o.category) filter.category = o.category.split(',');
      if (o.prefix) filter.streamPrefix = o.prefix.split(',');
      let n = 0;
      for await (const page of store.readAll({ from, filter: Object.keys(filter).length > 0 ? filter : undefined }).pages()) {
        let text = '';
        for (const e of page) {
          if (e.position > head) break;
          if (e.stream.startsWith('$')) continue;
          text += JSON.stringify(o.format === 'cloudevents' ? toCloudEvent(e) : eventToLine(e)) + '\n';
          n++;
        }
        if (!out.write(text)) await new Promise<void>((r) => out.once('drain', () => r()));
        b?.update(page[page.length - 1]!.position - from + 1);
        if (page[page.length - 1]!.position >= head) break;
      }
      b?.stop();
      if (o.out !== undefined) {
        await new Promise<void>((resolve, reject) => (out as fs.WriteStream).end((err?: Error | null) => (err ? reject(err) : resolve())));
        process.stderr.write(o.json ? JSON.stringify({ exported: n, head }) + '\n' : `exported ${n} events up to position ${head} to ${o.out}\n`);
      }
    } finally {
      await store.close();
    }
  });

  storeOptions(
    program
      .command('import')
      .description('append events from NDJSON (an export, or CloudEvents with the stream as subject), in order')
      .argument('[file]', 'the NDJSON file (default: stdin)')
      .option('--any', 'append at the end of each stream instead of at the revision each line names'),
  ).action(async (file: string | undefined, o: TargetOpts & { any?: boolean }, cmd: Command) => {
    const store = await openTarget(o, cmd);
    try {
      const total = file !== undefined ? fs.statSync(file).size : 0;
      const input = file !== undefined ? fs.createReadStream(file) : process.stdin;
      const b = file !== undefined ? bar('import', 'bytes') : undefined;
      b?.start(total, 0);
      let read = 0;
      let imported = 0;
      let lineNo = 0;
      // Consecutive lines of one stream go in one append, with the revision the first names as
      // the expected one (so revisions are kept, and a second import of the same file fails
      // rather than doubling every stream).
      let batch: { stream: string; first: number | undefined; events: EventInput[] } | undefined;
      // Appends are pipelined (a window of 64): the store applies them in the order they were
      // made, so each stream's events keep their order and revisions.
      const inFlight: Array<Promise<void>> = [];
      let failure: unknown;
      const flush = async (): Promise<void> => {
        if (batch === undefined) return;
        const expectedRevision = o.any || batch.first === undefined ? 'any' : batch.first === 0 ? 'no_stream' : batch.first - 1;
        const n = batch.events.length;
        inFlight.push(
          store.append(batch.stream, batch.events, { expectedRevision }).then(
            () => void (imported += n),
            (err) => void (failure ??= err),
          ),
        );
        batch = undefined;
        if (inFlight.length >= 64) await inFlight.shift();
        if (failure !== undefined) throw failure;
      };
      for await (const line of readline.createInterface({ input, crlfDelay: Infinity })) {
        lineNo++;
        read += Buffer.byteLength(line) + 1;
        if (line.trim() === '') continue;
        let raw: unknown;
        try {
          raw = JSON.parse(line);
        } catch {
          throw new InvalidArgumentError(`line ${lineNo}: not JSON`);
        }
        const { stream, revision, event } = lineToEvent(raw, lineNo);
        const follows = batch !== undefined && batch.stream === stream && batch.events.length < 500 && (revision === undefined || batch.first === undefined || revision === batch.first + batch.events.length);
        if (!follows) {
          await flush();
          batch = { stream, first: revision, events: [] };
        }
        batch!.events.push(event);
        if (lineNo % 1000 === 0) b?.update(Math.min(read, total));
      }
      await flush();
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;
      b?.update(total);
      b?.stop();
      process.stdout.write(o.json ? JSON.stringify({ imported }) + '\n' : `imported ${imported} events\n`);
    } finally {
      await store.close();
    }
  });
}
