/**
 * `eventful projection status|rebuild|drop <module>` in a real process: a TypeScript module
 * with named exports and a JavaScript module with a default factory, the embedded store
 * (`--data`) and a server (`--url`), JSON and text output, blue-green rebuild with --drop-old,
 * and exit codes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../src/index.js';
import { tempDir } from '../helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHILD = path.join(ROOT, 'test/projections/cli-child.ts');
const SRC = pathToUrl(path.join(ROOT, 'src/index.js'));

function pathToUrl(p: string): string {
  return new URL(`file://${p}`).href;
}

/** Runs the CLI in a child process (asynchronously: the server of the second test lives in this one). */
async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, 'projection', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env, EVENTFUL_URL: '', EVENTFUL_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

test('status, rebuild (blue-green, --drop-old) and drop, on a data directory, from a TypeScript module', async () => {
  const work = tempDir('eventful-cli-proj-');
  const data = path.join(work, 'data');
  const store = await openStore({ dir: data, durability: 'none' });
  for (let s = 0; s < 3; s++) await store.append(`tick-${s}`, Array.from({ length: 1000 }, () => ({ type: 'Tick' })));
  await store.append('other-1', [{ type: 'Tick' }]);
  await store.close();
  const mod = path.join(work, 'counts.ts');
  fs.writeFileSync(
    mod,
    `import { defineProjection, openLmdbReadModelStore } from '${SRC}';
export const projection = defineProjection({
  name: 'counts',
  version: Number(process.env.PROJ_VERSION ?? 1),
  filter: { category: 'tick' },
  handlers: { Tick: (e, m) => m.update('streams', e.stream, (d: { n: number } | undefined) => ({ n: (d?.n ?? 0) + 1 })) },
});
export const store = () => openLmdbReadModelStore({ dir: ${JSON.stringify(path.join(work, 'rm'))} });
`,
  );

  let r = await cli(['status', mod, '--data', data, '--json']);
  assert.equal(r.code, 1, `never built: exit 1\n${r.stderr}`);
  assert.equal(JSON.parse(r.stdout).active, undefined);

  r = await cli(['rebuild', mod, '--data', data, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const built = JSON.parse(r.stdout);
  assert.deepEqual([built.switched, built.slot, built.previous, built.eventsProcessed], [true, 'v1', undefined, 3000]);
  assert.ok(built.eventsPerSecond > 0);

  r = await cli(['status', mod, '--data', data, '--json']);
  assert.equal(r.code, 0, r.stderr);
  let st = JSON.parse(r.stdout);
  assert.equal(st.active, 'v1');
  assert.deepEqual(st.slots.map((s: { slot: string; position: number; lagPositions: number }) => [s.slot, s.position, s.lagPositions]), [['v1', 3001, 0]]);

  const again = await openStore({ dir: data, durability: 'none' });
  await again.append('tick-0', Array.from({ length: 10 }, () => ({ type: 'Tick' })));
  await again.close();
  r = await cli(['status', mod, '--data', data]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^lag +10 positions/m);
  assert.match(r.stdout, /^v1 \*/m);

  // Version 2: rebuilt beside v1, switched, v1 dropped; the final rate is printed.
  r = await cli(['rebuild', mod, '--data', data, '--drop-old'], { PROJ_VERSION: '2' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /rebuilt counts version 2 into slot v2: 3,010 events in [\d.]+ s \([\d,]+ events\/s\)/);
  assert.match(r.stdout, /previous slot v1 dropped/);
  r = await cli(['status', mod, '--data', data, '--json'], { PROJ_VERSION: '2' });
  st = JSON.parse(r.stdout);
  assert.deepEqual(st.slots.map((s: { slot: string }) => s.slot), ['v2']);

  // A same-version rebuild keeps the old slot unless asked; drop removes it.
  r = await cli(['rebuild', mod, '--data', data, '--keep-old'], { PROJ_VERSION: '2' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /slot v2_2 is active; previous slot v2 kept/);
  assert.equal((await cli(['drop', mod, 'v2_2', '--data', data], { PROJ_VERSION: '2' })).code, 2, 'the active slot cannot be dropped');
  assert.equal((await cli(['drop', mod, 'v9', '--data', data], { PROJ_VERSION: '2' })).code, 1);
  r = await cli(['drop', mod, 'v2', '--data', data], { PROJ_VERSION: '2' });
  assert.equal(r.code, 0, r.stderr);
  st = JSON.parse((await cli(['status', mod, '--data', data, '--json'], { PROJ_VERSION: '2' })).stdout);
  assert.deepEqual(st.slots.map((s: { slot: string }) => s.slot), ['v2_2']);

  // Usage errors.
  r = await cli(['status', path.join(work, 'missing.ts'), '--data', data]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no such module/);
  const empty = path.join(work, 'empty.mjs');
  fs.writeFileSync(empty, 'export const nothing = 1;\n');
  r = await cli(['status', empty, '--data', data]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /exports no projection/);
});

test('a JavaScript module with a default factory, against a server (--url)', async () => {
  const { startServer } = await import('../../src/server/server.js');
  const { loadConfig } = await import('../../src/server/config.js');
  const { connect } = await import('../../src/client/index.js');
  const server = await startServer(loadConfig({ flags: { dataDir: tempDir(), httpPort: 0, tcpPort: 0, durability: 'none', logLevel: 'error' } }), { log: () => {} });
  try {
    const client = await connect(server.tcpUrl);
    await client.append('tick-1', Array.from({ length: 50 }, () => ({ type: 'Tick' })));
    await client.close();
    const work = tempDir('eventful-cli-proj-');
    const mod = path.join(work, 'counts.mjs');
    fs.writeFileSync(
      mod,
      `import { defineProjection, memoryReadModelStore } from '${SRC}';
export default async () => ({
  projection: defineProjection({ name: 'counts', filter: { category: 'tick' }, handlers: { Tick: (e, m) => m.update('streams', e.stream, (d) => ({ n: (d?.n ?? 0) + 1 })) } }),
  store: memoryReadModelStore(),
});
`,
    );
    const r = await cli(['rebuild', mod, '--url', server.tcpUrl, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).eventsProcessed, 50);
    assert.equal((await cli(['status', mod, '--url', server.tcpUrl, '--data', work])).code, 2, '--url and --data together');
  } finally {
    await server.close();
  }
});
