/**
 * The `eventful` command line. Exit codes: 0 success, 1 the command ran and found problems,
 * 2 bad usage or an error (the message says which).
 */
import fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EventfulError } from '../core/errors.js';
import { verifyDir } from '../log/verify.js';
import type { VerifyReport } from '../log/verify.js';
import { progressBar } from './progress.js';

export const EXIT = { ok: 0, problems: 1, error: 2 } as const;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('eventful')
    .description('Eventful: one durable log, two ways to read it (event store and message broker)')
    .version(version(), '-v, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('verify')
    .description('check every record and the stream index of a data directory (the store must not be open)')
    .argument('<dir>', 'data directory')
    .option('--json', 'print the report as JSON')
    .action(async (dir: string, opts: { json?: boolean }) => {
      const bar = opts.json ? undefined : progressBar('verifying');
      const report = await verifyDir(dir, { onProgress: (done, total) => bar?.update(done, total) });
      bar?.stop();
      if (opts.json) process.stdout.write(JSON.stringify(report) + '\n');
      else printVerify(report);
      process.exitCode = report.problems.length > 0 ? EXIT.problems : EXIT.ok;
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
  for (const p of r.problems) process.stdout.write(`problem: ${p.file} at offset ${p.offset}: ${p.message}\n`);
  process.stdout.write(r.problems.length === 0 ? 'OK\n' : 'PROBLEMS FOUND\n');
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with code 0.
      return err.exitCode === 0 ? EXIT.ok : EXIT.error;
    }
    const message = err instanceof EventfulError ? `${err.code}: ${err.message}` : (err as Error).message;
    process.stderr.write(`eventful: ${message}\n`);
    return EXIT.error;
  }
}
