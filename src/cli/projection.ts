/**
 * `eventful projection status|rebuild|drop <module>`.
 *
 * <module> is a JavaScript or TypeScript file that exports a projection definition and its
 * read-model store, in any of these forms:
 *
 *   export default { projection, store };                 // an object
 *   export const projection = ...; export const store = ...;  // named exports
 *   export default async () => ({ projection, store });   // a function (may be async)
 *
 * `store` may itself be a function (sync or async) that opens the store, so loading the module
 * connects to nothing. An optional `options` export is passed to the Projection (batch sizes).
 *
 * The event store is a server (`--url`, as the other commands) or, with `--data <dir>`, a data
 * directory opened with the embedded store (no server may have it open).
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline/promises';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { Command, CommanderError } from 'commander';
import { Projection } from '../projections/projection.js';
import type { ProjectionOptions, RebuildProgress } from '../projections/projection.js';
import type { ProjectionDefinition } from '../projections/definition.js';
import type { ReadModelStore } from '../projections/read-model.js';
import { openTarget, storeOptions } from './target.js';

/** The exit codes of src/cli/main.ts that these commands use. */
const EXIT = { ok: 0, problems: 1, error: 2 } as const;

interface CommonOpts {
  url?: string;
  token?: string;
  data?: string;
  json?: boolean;
}

const usage = (message: string): CommanderError => new CommanderError(EXIT.error, 'eventful.usage', message);

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function duration(ms: number | undefined): string {
  if (ms === undefined) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

interface LoadedModule {
  definition: ProjectionDefinition;
  readModels: ReadModelStore;
  options: ProjectionOptions | undefined;
}

function isStore(x: unknown): x is ReadModelStore {
  return typeof x === 'object' && x !== null && typeof (x as ReadModelStore).commit === 'function' && typeof (x as ReadModelStore).catalog === 'function';
}

/** Imports the module (TypeScript through tsx when it is installed) and finds what it exports. */
export async function loadProjectionModule(file: string): Promise<LoadedModule> {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw usage(`no such module: ${file}`);
  const url = pathToFileURL(abs).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
    // A .ts file under plain node: load it through tsx, if the project has it.
    let api: { register: () => unknown };
    try {
      api = (await import('tsx/esm/api' as string)) as { register: () => unknown };
    } catch {
      throw usage(`${file} is TypeScript: install tsx (npm i -D tsx) or give the compiled .js file`);
    }
    api.register();
    mod = (await import(url)) as Record<string, unknown>;
  }
  let exp: unknown = mod.default ?? mod;
  if (typeof exp === 'function') exp = await (exp as () => unknown)();
  const e = (typeof exp === 'object' && exp !== null ? exp : {}) as Record<string, unknown>;
  const definition = (e.projection ?? mod.projection) as ProjectionDefinition | undefined;
  let store = e.store ?? e.readModels ?? mod.store ?? mod.readModels;
  if (typeof store === 'function') store = await (store as () => unknown)();
  if (typeof definition !== 'object' || definition === null) throw usage(`${file} exports no projection: export { projection, store } (as named exports, a default object, or a function returning one)`);
  if (!isStore(store)) throw usage(`${file} exports no read-model store: export store (a ReadModelStore, or a function returning one)`);
  const options = (e.options ?? mod.options) as ProjectionOptions | undefined;
  return { definition, readModels: store, options };
}

async function withProjection<T>(file: string, o: CommonOpts, cmd: Command, extra: ProjectionOptions, fn: (p: Projection) => Promise<T>): Promise<T> {
  const loaded = await loadProjectionModule(file);
  try {
    const store = await openTarget(o, cmd);
    try {
      return await fn(new Projection(store, loaded.readModels, loaded.definition, { ...loaded.options, ...extra }));
    } finally {
      await store.close();
    }
  } finally {
    await loaded.readModels.close();
  }
}

function commonOptions(cmd: Command): Command {
  return storeOptions(cmd.argument('<module>', 'JS/TS module exporting { projection, store } (see docs/projections.md)'));
}

/** Progress on stderr: a bar on a terminal, a line every few seconds otherwise. */
function rebuildReporter(name: string, quiet: boolean): { update(p: RebuildProgress): void; stop(): void } {
  if (quiet) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `rebuilding ${name} [{bar}] {percentage}% | {value}/{total} positions | {rate} events/s | eta {etaText}`,
        stream: process.stderr,
        hideCursor: true,
        formatValue: (v, _o, type) => (type === 'value' || type === 'total' ? fmt(v) : String(v)),
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        const payload = { rate: fmt(p.eventsPerSecond), etaText: duration(p.etaMs) };
        if (!started) {
          bar.start(Math.max(1, p.headPosition), p.position, payload);
          started = true;
        }
        bar.setTotal(Math.max(1, p.headPosition));
        bar.update(p.position, payload);
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let last = 0;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 5000) return;
      last = now;
      const pct = p.headPosition > 0 ? Math.floor((p.position * 100) / p.headPosition) : 100;
      process.stderr.write(`rebuilding ${name}: ${pct}% (${fmt(p.position)}/${fmt(p.headPosition)}), ${fmt(p.eventsPerSecond)} events/s, eta ${duration(p.etaMs)}\n`);
    },
    stop() {},
  };
}

async function confirm(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** Adds `projection status`, `projection rebuild` and `projection drop` to the program. */
export function registerProjectionCommands(program: Command): Command {
  const projection = program.command('projection').description('read models built from the log: status, rebuild (see docs/projections.md)');

  commonOptions(projection.command('status').description("a projection's slots, checkpoints and lag behind the head")).action(async (file: string, o: CommonOpts, cmd: Command) => {
    await withProjection(file, o, cmd, {}, async (p) => {
      const { status, catalog } = await p.describe();
      const slots = catalog.slots.map((s) => ({ ...s, active: s.slot === catalog.active, lagPositions: Math.max(0, status.headPosition - s.position) }));
      if (o.json) {
        process.stdout.write(JSON.stringify({ name: p.name, version: p.version, headPosition: status.headPosition, active: catalog.active, slots }) + '\n');
      } else {
        const active = slots.find((s) => s.active);
        const lines: Array<[string, string]> = [
          ['projection', `${p.name} (this code: version ${p.version})`],
          ['head', fmt(status.headPosition)],
          ['active', active === undefined ? 'none: never built (run it, or rebuild it)' : `${active.slot} (version ${active.version})${active.version !== p.version ? ` -- differs from this code's version ${p.version}: rebuild` : ''}`],
        ];
        if (active !== undefined) {
          lines.push(['checkpoint', fmt(active.position)]);
          lines.push(['lag', `${fmt(active.lagPositions)} positions${active.lagPositions > 0 && active.eventTimestamp > 0 ? `, last event applied ${duration(Date.now() - active.eventTimestamp)} ago` : ''}`]);
        }
        for (const [k, v] of lines) process.stdout.write(`${k.padEnd(10)}  ${v}\n`);
        if (slots.length > 0) {
          const head = ['slot', 'version', 'checkpoint', 'lag', 'updated'];
          const rows = slots.map((s) => [s.slot + (s.active ? ' *' : ''), String(s.version), fmt(s.position), fmt(s.lagPositions), new Date(s.updatedAt).toISOString()]);
          const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
          process.stdout.write('\n' + head.map((h, i) => (i === head.length - 1 ? h : h.padEnd(w[i]!))).join('  ') + '\n');
          for (const r of rows) process.stdout.write(r.map((v, i) => (i === 0 ? v.padEnd(w[i]!) : v.padStart(w[i]!))).join('  ') + '\n');
        }
      }
      if (catalog.active === undefined) process.exitCode = EXIT.problems;
    });
  });

  commonOptions(
    projection
      .command('rebuild')
      .description('replay the whole log into a new slot beside the active one, then switch to it (blue-green)')
      .option('--drop-old', 'drop the previously active slot after the switch')
      .option('--keep-old', 'keep the previously active slot (the default when not asked on a terminal)')
      .option('--batch <events>', 'events per read-model transaction'),
  ).action(async (file: string, o: CommonOpts & { dropOld?: boolean; keepOld?: boolean; batch?: string }, cmd: Command) => {
    if (o.dropOld && o.keepOld) throw usage('give --drop-old or --keep-old, not both');
    const extra: ProjectionOptions = {};
    if (o.batch !== undefined) {
      if (!/^\d+$/.test(o.batch)) throw usage(`--batch must be a number of events, got '${o.batch}'`);
      extra.batchEventsMax = Number(o.batch);
    }
    await withProjection(file, o, cmd, extra, async (p) => {
      const reporter = rebuildReporter(p.name, o.json === true);
      let result;
      try {
        result = await p.rebuild({ onProgress: (x) => reporter.update(x), dropOld: o.dropOld === true });
      } finally {
        reporter.stop();
      }
      let dropped = result.dropped;
      if (!dropped && result.previous !== undefined && !o.keepOld && !o.dropOld && !o.json && process.stdin.isTTY && process.stderr.isTTY) {
        if (await confirm(`drop the previous slot ${result.previous}? [y/N] `)) {
          await p.readModels.dropSlot(p.name, result.previous);
          dropped = true;
        }
      }
      if (o.json) {
        process.stdout.write(JSON.stringify({ ...result, dropped }) + '\n');
        return;
      }
      process.stdout.write(
        `rebuilt ${p.name} version ${result.version} into slot ${result.slot}: ${fmt(result.eventsProcessed)} events in ${(result.durationMs / 1000).toFixed(1)} s (${fmt(result.eventsPerSecond)} events/s)\n`,
      );
      if (result.previous === undefined) process.stdout.write(`slot ${result.slot} is active (first build)\n`);
      else process.stdout.write(`slot ${result.slot} is active; previous slot ${result.previous} ${dropped ? 'dropped' : `kept (eventful projection drop ${file} ${result.previous})`}\n`);
    });
  });

  commonOptions(projection.command('drop').description('drop a slot that is not active, with its documents')).argument('<slot>', 'the slot, as `status` lists it').action(
    async (file: string, slot: string, o: CommonOpts, cmd: Command) => {
      await withProjection(file, o, cmd, {}, async (p) => {
        const { catalog } = await p.describe();
        if (!catalog.slots.some((s) => s.slot === slot)) {
          process.stderr.write(`eventful: projection '${p.name}' has no slot '${slot}'\n`);
          process.exitCode = EXIT.problems;
          return;
        }
        await p.readModels.dropSlot(p.name, slot);
        process.stdout.write(o.json ? JSON.stringify({ dropped: slot }) + '\n' : `dropped slot ${slot} of ${p.name}\n`);
      });
    },
  );
  return projection;
}
