/**
 * End to end through real server processes: the client over TCP, WebSocket and TLS, auth,
 * reconnect and resume across a restart, graceful shutdown with appends in flight, and the CLI.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import { ForbiddenError, UnauthenticatedError, WrongExpectedRevisionError, connect } from '../../src/client/index.js';
import type { RecordedEvent } from '../../src/client/index.js';
import { tempDir } from '../helpers.js';
import { cliArgs, startServerProcess, writeJson } from './server-process.js';

function portOf(url: string): number {
  return Number(new URL(url).port);
}

test('the client has the embedded store interface over TCP and WebSocket: append, read, expected revision, idempotency, info', async () => {
  const server = await startServerProcess(tempDir());
  try {
    for (const url of [server.tcpUrl, server.wsUrl]) {
      const store = await connect(url);
      const s = `order-${url.startsWith('ws') ? 'ws' : 'tcp'}`;
      try {
        const id = '0b7e7c1e-8f4e-4f55-9d0c-3f5a3b1f2a10';
        const first = await store.append(s, [{ id, type: 'OrderPlaced', data: { total: 10 }, metadata: { by: 'ada' } }], { expectedRevision: 'no_stream' });
        assert.equal(first.revision, 0);
        // Idempotent retry: same ids, same answer, nothing written.
        assert.deepEqual(await store.append(s, [{ id, type: 'OrderPlaced', data: { total: 10 } }], { expectedRevision: 'no_stream' }), first);
        await assert.rejects(store.append(s, [{ type: 'X' }], { expectedRevision: 5 }), (e: unknown) => e instanceof WrongExpectedRevisionError && e.actualRevision === 0);
        await store.append(s, [{ type: 'Bin', data: new Uint8Array([1, 2, 3]), contentType: 'application/x-test' }], { expectedRevision: 0 });
        const events = await store.readStream(s).toArray();
        assert.deepEqual(events.map((e) => e.type), ['OrderPlaced', 'Bin']);
        assert.deepEqual(events[0]!.data, { total: 10 });
        assert.deepEqual(events[0]!.metadata, { by: 'ada' });
        assert.equal(events[0]!.id, id);
        assert.deepEqual([...(events[1]!.data as Uint8Array)], [1, 2, 3]);
        assert.equal(events[1]!.contentType, 'application/x-test');
        assert.deepEqual((await store.readStream(s, { direction: 'backwards', limit: 1 }).toArray()).map((e) => e.revision), [1]);
        const info = await store.streamInfo(s);
        assert.equal(info?.revision, 1);
        assert.equal(await store.streamInfo('missing-1'), undefined);
        assert.ok((await store.listStreams({ prefix: 'order-' })).some((x) => x.stream === s));
        assert.equal((await store.readAll({ filter: { streamPrefix: s } }).toArray()).length, 2);
        assert.ok((await store.headPosition()) >= 2);
      } finally {
        await store.close();
      }
    }
  } finally {
    await server.stop();
  }
});

test('many concurrent appends from one client are pipelined, and a long read streams with flow control', async () => {
  const server = await startServerProcess(tempDir(), ['--durability', 'none']);
  const store = await connect(server.tcpUrl);
  try {
    const results = await Promise.all(Array.from({ length: 3000 }, (_, i) => store.append(`s-${i % 50}`, [{ type: 'T', data: { i } }])));
    assert.equal(new Set(results.map((r) => r.positions[0])).size, 3000);
    const all = await store.readAll().toArray();
    assert.deepEqual(all.map((e) => e.position), Array.from({ length: 3000 }, (_, i) => i + 1));
    // A reader that stops early (break) cancels the read on the server.
    let n = 0;
    for await (const _ of store.readAll()) if (++n === 10) break;
    assert.equal(await store.headPosition(), 3000);
  } finally {
    await store.close();
    await server.stop();
  }
});

test('a subscription resumes after the server restarts, with no gap and no duplicate, and unacknowledged-then-retried appends are not doubled', async () => {
  const dir = tempDir();
  let server = await startServerProcess(dir);
  const tcpPort = portOf(server.tcpUrl);
  const httpPort = portOf(server.httpUrl);
  const store = await connect(server.tcpUrl, { reconnectDelayMs: 50, reconnectDelayMaxMs: 200, timeoutMs: 20_000 });
  try {
    const sub = store.subscribeToAll({ from: 'start' });
    const seen: RecordedEvent[] = [];
    const consumer = (async () => {
      for await (const e of sub) {
        seen.push(e);
        if (seen.length === 200) break;
      }
    })();
    for (let i = 0; i < 100; i++) await store.append(`r-${i % 3}`, [{ type: 'Before', data: i }]);
    await server.stop('SIGTERM');
    // While the server is down, appends wait (and are sent once it is back).
    const pending = Array.from({ length: 100 }, (_, i) => store.append(`r-${i % 3}`, [{ type: 'After', data: i }]));
    server = await startServerProcess(dir, [], { tcpPort, httpPort });
    await Promise.all(pending);
    await consumer;
    assert.deepEqual(seen.map((e) => e.position), Array.from({ length: 200 }, (_, i) => i + 1));
    assert.equal(await store.headPosition(), 200);
  } finally {
    await store.close();
    await server.stop();
  }
});

test('graceful shutdown: appends in flight are finished durably, every acknowledged one is there after restart', async () => {
  const dir = tempDir();
  let server = await startServerProcess(dir);
  const store = await connect(server.tcpUrl, { reconnect: false });
  const acked: Array<{ stream: string; position: number; data: number }> = [];
  const appends = Array.from({ length: 2000 }, (_, i) =>
    store.append(`g-${i % 20}`, [{ type: 'T', data: i }]).then(
      (r) => acked.push({ stream: `g-${i % 20}`, position: r.positions[0]!, data: i }),
      () => undefined,
    ),
  );
  await new Promise((r) => setTimeout(r, 30));
  const code = await server.stop('SIGTERM');
  await Promise.all(appends);
  await store.close();
  assert.equal(code, 0, server.stderr());
  assert.ok(acked.length > 0);
  server = await startServerProcess(dir);
  const again = await connect(server.tcpUrl);
  try {
    const all = new Map((await again.readAll().toArray()).map((e) => [e.position, e]));
    for (const a of acked) {
      const e = all.get(a.position);
      assert.ok(e, `acknowledged position ${a.position} is missing`);
      assert.equal(e.stream, a.stream);
      assert.equal(e.data, a.data);
    }
  } finally {
    await again.close();
    await server.stop();
  }
});

test('auth: tokens with roles scoped by stream prefix, through the client', async () => {
  const dir = tempDir();
  const admin = randomBytes(24).toString('hex');
  const writer = randomBytes(24).toString('hex');
  const config = writeJson(path.join(dir, 'config.json'), {
    auth: {
      tokens: [
        { name: 'admin', token: admin, roles: [{ role: 'admin' }] },
        { name: 'orders', token: writer, roles: [{ role: 'write', streams: 'order-' }, { role: 'read', streams: 'order-' }] },
      ],
    },
  });
  const server = await startServerProcess(path.join(dir, 'data'), ['--config', config]);
  try {
    assert.match(server.stdout(), /auth\s+on/);
    await assert.rejects(connect(server.tcpUrl, { reconnect: false }), UnauthenticatedError);
    await assert.rejects(connect(server.tcpUrl, { token: 'x'.repeat(32), reconnect: false }), UnauthenticatedError);
    const w = await connect(server.tcpUrl, { token: writer });
    try {
      assert.equal((await w.append('order-1', [{ type: 'T' }])).revision, 0);
      await assert.rejects(w.append('user-1', [{ type: 'T' }]), ForbiddenError);
      await assert.rejects(w.readAll().toArray(), ForbiddenError);
      assert.equal((await w.readAll({ filter: { streamPrefix: 'order-' } }).toArray()).length, 1);
    } finally {
      await w.close();
    }
    const a = await connect(server.wsUrl, { token: admin });
    try {
      assert.equal((await a.append('user-1', [{ type: 'T' }])).revision, 0);
      assert.equal((await a.readAll().toArray()).length, 2);
    } finally {
      await a.close();
    }
    // Tokens are never logged.
    assert.ok(!server.stderr().includes(writer) && !server.stdout().includes(writer));
  } finally {
    await server.stop();
  }
});

test('TLS on both ports with a given key and certificate', async () => {
  const dir = tempDir();
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const server = await startServerProcess(path.join(dir, 'data'), ['--tls-key', key, '--tls-cert', cert]);
  try {
    assert.match(server.tcpUrl, /^tls:/);
    const ca = fs.readFileSync(cert);
    const store = await connect(server.tcpUrl, { ca });
    try {
      assert.equal((await store.append('tls-1', [{ type: 'T' }])).revision, 0);
    } finally {
      await store.close();
    }
    await assert.rejects(connect(server.tcpUrl, { reconnect: false }));
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(`${server.httpUrl}/streams/tls-1`, { ca }, (res) => {
          let s = '';
          res.on('data', (d: Buffer) => (s += d.toString()));
          res.on('end', () => resolve(s));
        })
        .on('error', reject);
    });
    assert.equal(JSON.parse(body).events[0].stream, 'tls-1');
  } finally {
    await server.stop();
  }
});

test('the CLI: append, NDJSON bulk append, read, read-all, streams, info, exit codes', async () => {
  const server = await startServerProcess(tempDir());
  const run = (args: string[], input?: string) => spawnSync(process.execPath, cliArgs([...args, '--url', server.tcpUrl]), { input, encoding: 'utf8', timeout: 20_000 });
  try {
    let r = run(['append', 'cli-1', '--type', 'Hello', '--data', '{"n":1}', '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { positions: [1], revision: 0 });
    r = run(['append', 'cli-1', '--type', 'Hello', '--expected-revision', '5']);
    assert.equal(r.status, 3);
    assert.match(r.stderr, /WRONG_EXPECTED_REVISION/);
    // --id makes a retried append idempotent: the same answer, nothing written twice.
    const idArgs = ['append', 'cli-3', '--type', 'Once', '--id', '5d6c8a8e-2b1f-4c3e-9a7d-1e2f3a4b5c6d', '--expected-revision', 'no_stream', '--json'];
    const once = run(idArgs);
    assert.equal(once.status, 0, once.stderr);
    const again = run(idArgs);
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout), JSON.parse(once.stdout));
    r = run(['append', 'cli-2', '--json'], '{"type":"A","data":1}\n{"type":"B","data":2}\n\n{"type":"C"}\n');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { appended: 3 });
    r = run(['read', 'cli-2', '--json']);
    assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l).type), ['A', 'B', 'C']);
    r = run(['read', 'nope-1']);
    assert.equal(r.status, 1);
    r = run(['read-all', '--json', '--type', 'Hello']);
    assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l).stream), ['cli-1']);
    r = run(['streams', '--json']);
    assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l).stream), ['cli-1', 'cli-2', 'cli-3']);
    r = run(['info', '--json']);
    assert.equal(JSON.parse(r.stdout).headPosition, 5);
    r = run(['append', 'cli-1', '--type', 'X', '--data', '{not json']);
    assert.equal(r.status, 2);
    const down = spawnSync(process.execPath, cliArgs(['info', '--url', 'tcp://127.0.0.1:1']), { encoding: 'utf8', timeout: 20_000 });
    assert.equal(down.status, 4, down.stderr);
  } finally {
    await server.stop();
  }
});

test('serve refuses unknown config keys and EVENTFUL_* variables, and documents every option in --help', () => {
  const dir = tempDir();
  const bad = writeJson(path.join(dir, 'bad.json'), { dataDir: dir, portt: 1 });
  let r = spawnSync(process.execPath, cliArgs(['serve', '--config', bad]), { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /CONFIG_INVALID.*portt|portt.*known keys/s);
  r = spawnSync(process.execPath, cliArgs(['serve', '--data-dir', dir]), { encoding: 'utf8', timeout: 20_000, env: { ...process.env, EVENTFUL_HTTP_PROT: '1' } });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /EVENTFUL_HTTP_PROT/);
  r = spawnSync(process.execPath, cliArgs(['serve', '--help']), { encoding: 'utf8', timeout: 20_000 });
  for (const flag of ['--data-dir', '--host', '--http-port', '--tcp-port', '--durability', '--tls-key', '--insecure-no-auth', 'EVENTFUL_DATA_DIR']) {
    assert.ok(r.stdout.includes(flag), `${flag} missing from serve --help`);
  }
});
