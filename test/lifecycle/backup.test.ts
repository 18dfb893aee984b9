/**
 * Backup and restore, export and import: a backup taken while appends run holds every event
 * acknowledged before it started (and queue state), restores into a store that opens and
 * serves, refuses damage, and never overwrites; export/import round-trips events exactly, in
 * Eventful's shape and as CloudEvents, and a second import of the same file is refused rather
 * than doubling streams (the same ids are recognised). One test takes the backup with the CLI from a running server's data
 * directory.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CorruptionError, InvalidArgumentError, openStore } from '../../src/index.js';
import type { RecordedEvent } from '../../src/index.js';
import { backupDir, readBackupSummary, restoreBackup } from '../../src/log/backup.js';
import { main } from '../../src/cli/main.js';
import { connect } from '../../src/client/index.js';
import { startServerProcess } from '../e2e/server-process.js';
import { tempDir } from '../helpers.js';

const view = (e: RecordedEvent) => ({ stream: e.stream, revision: e.revision, id: e.id, type: e.type, contentType: e.contentType, data: e.isJson ? e.data : Buffer.from(e.rawData).toString('hex'), metadata: e.metadata });

test('a backup taken during appends restores every event acknowledged before it, and queue state', async () => {
  const dir = tempDir();
  const store = await openStore({ dir, segmentBytes: 64 * 1024 });
  await store.queues.create('jobs');
  await store.queues.send('jobs', [{ body: { n: 1 } }, { body: { n: 2 } }]);
  for (let i = 0; i < 300; i++) await store.append(`acct-${i % 7}`, [{ type: 'Deposited', data: { i, pad: 'x'.repeat(500) } }, { type: 'Noted', metadata: { i } }]);
  const before = await store.headPosition();
  let stop = false;
  const writer = (async () => {
    let i = 0;
    while (!stop) await store.append(`live-${i++ % 3}`, [{ type: 'Tick', data: { i } }]);
  })();
  const file = path.join(tempDir(), 'b.evbak');
  const report = await backupDir(dir, file);
  stop = true;
  await writer;
  assert.ok(report.segments > 1, 'the log spans several segments');
  assert.ok(report.lastPosition >= before, 'everything acknowledged before the backup is in it');
  assert.equal(report.events, report.lastPosition);
  assert.deepEqual(readBackupSummary(file).events, report.events);
  const expected = (await store.readAll({ limit: report.lastPosition }).toArray()).map(view);
  await store.close();

  const restored = tempDir();
  const r = await restoreBackup(file, restored);
  assert.equal(r.events, report.events);
  const again = await openStore({ dir: restored });
  try {
    assert.equal(await again.headPosition(), report.lastPosition);
    assert.deepEqual((await again.readAll().toArray()).map(view), expected);
    assert.equal((await again.streamInfo('acct-0'))?.eventCount, 43 * 2);
    const got = await again.queues.receive('jobs', { max: 10 });
    assert.deepEqual(
      got.map((d) => d.body),
      [{ n: 1 }, { n: 2 }],
    );
    await again.append('acct-0', [{ type: 'AfterRestore' }], { expectedRevision: 85 });
  } finally {
    await again.close();
  }
});

test('a damaged backup is refused and leaves nothing behind; nothing is ever overwritten', async () => {
  const dir = tempDir();
  const store = await openStore({ dir });
  for (let i = 0; i < 50; i++) await store.append('s-1', [{ type: 'E', data: { i } }]);
  await store.close();
  const file = path.join(tempDir(), 'b.evbak');
  await backupDir(dir, file);
  await assert.rejects(backupDir(dir, file), InvalidArgumentError);
  const bytes = fs.readFileSync(file);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  const damaged = path.join(tempDir(), 'damaged.evbak');
  fs.writeFileSync(damaged, bytes);
  const target = path.join(tempDir(), 'restored');
  await assert.rejects(restoreBackup(damaged, target), CorruptionError);
  assert.equal(fs.existsSync(target), false);
  const full = tempDir();
  fs.writeFileSync(path.join(full, 'x'), 'x');
  await assert.rejects(restoreBackup(file, full), InvalidArgumentError);
  await assert.rejects(backupDir(tempDir(), path.join(tempDir(), 'x.evbak')), InvalidArgumentError);
});

async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  const writes: string[] = [];
  const orig = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    writes.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    writes.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    process.exitCode = undefined;
    const code = await main(['node', 'eventful', ...args]);
    return { code, out: writes.join('') };
  } finally {
    process.stdout.write = orig;
    process.stderr.write = origErr;
    process.exitCode = undefined;
  }
}

test('export and import round-trip events exactly, as Eventful lines and as CloudEvents', async () => {
  const src = tempDir();
  const store = await openStore({ dir: src });
  await store.append('order-1', [
    { type: 'Placed', data: { total: 42, items: ['tea'] }, metadata: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } },
    { type: 'Note', data: new Uint8Array([0, 1, 2, 255]) },
    { type: 'Text', data: new TextEncoder().encode('plain text'), contentType: 'text/plain' },
  ]);
  await store.append('order-2', [{ type: 'Placed', data: null }]);
  await store.append('order-1', [{ type: 'Paid' }]);
  await store.queues.create('q');
  await store.queues.send('q', [{ body: 1 }]);
  const expected = (await store.readAll().toArray()).filter((e) => !e.stream.startsWith('$')).map(view);
  await store.close();
  for (const format of ['eventful', 'cloudevents']) {
    const file = path.join(tempDir(), `export-${format}.ndjson`);
    const ex = await cli('export', '--data', src, '--out', file, '--format', format);
    assert.equal(ex.code, 0, ex.out);
    assert.equal(fs.readFileSync(file, 'utf8').trim().split('\n').length, 5, 'system streams are not exported');
    const dst = tempDir();
    const im = await cli('import', file, '--data', dst);
    assert.equal(im.code, 0, im.out);
    assert.match(im.out, /imported 5 events/);
    const copy = await openStore({ dir: dst });
    try {
      assert.deepEqual((await copy.readAll().toArray()).map(view), expected, format);
    } finally {
      await copy.close();
    }
    // Again: the same ids at the same revisions are recognised (or refused), never doubled.
    await cli('import', file, '--data', dst);
    const after = await openStore({ dir: dst });
    try {
      assert.equal((await after.readAll().toArray()).filter((e) => !e.stream.startsWith('$')).length, 5);
    } finally {
      await after.close();
    }
  }
  const bad = path.join(tempDir(), 'bad.ndjson');
  fs.writeFileSync(bad, '{"stream":"s-1","type":"A"}\nnot json\n');
  const r = await cli('import', bad, '--data', tempDir());
  assert.notEqual(r.code, 0);
  assert.match(r.out, /line 2: not JSON/);
});

test('eventful backup copies a running server\'s data directory, and the copy serves', async () => {
  const dir = tempDir();
  const server = await startServerProcess(dir);
  const file = path.join(tempDir(), 'live.evbak');
  let acked = 0;
  try {
    const c = await connect(server.tcpUrl);
    for (let i = 0; i < 200; i++) await c.append(`acct-${i % 5}`, [{ type: 'Deposited', data: { i } }]);
    acked = await c.headPosition();
    let stop = false;
    const writer = (async () => {
      let i = 0;
      while (!stop) await c.append(`busy-${i++ % 5}`, [{ type: 'Tick' }]);
    })();
    const r = await cli('backup', dir, file, '--json');
    stop = true;
    await writer;
    await c.close();
    assert.equal(r.code, 0, r.out);
    const report = JSON.parse(r.out.trim().split('\n').pop()!);
    assert.ok(report.lastPosition >= acked);
  } finally {
    await server.stop();
  }
  const restored = path.join(tempDir(), 'r');
  const r = await cli('restore', file, restored);
  assert.equal(r.code, 0, r.out);
  const store = await openStore({ dir: restored });
  try {
    const events = await store.readAll({ filter: { category: 'acct' } }).toArray();
    assert.equal(events.length, 200);
  } finally {
    await store.close();
  }
});
