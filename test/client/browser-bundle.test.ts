/**
 * The browser bundle works without Node: it is run in a bare V8 context that has only what a
 * browser gives a page (WebSocket, TextEncoder, crypto, timers, URL), no Buffer, process or
 * require, and talks to a real server over WebSocket.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { tempDir } from '../helpers.js';
import { startServerProcess } from '../e2e/server-process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('the browser bundle appends, reads and subscribes over WebSocket with browser globals only', async () => {
  const built = spawnSync(process.execPath, ['scripts/build-browser.mjs'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  const code = fs.readFileSync(path.join(ROOT, 'dist/browser/eventful-client.iife.js'), 'utf8');
  const server = await startServerProcess(tempDir());
  const outerEncoder = new TextEncoder();
  const sandbox: Record<string, unknown> = {
    WebSocket,
    __encode: (s: string) => outerEncoder.encode(s),
    __decoder: (label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean }) => new TextDecoder(label, options),
    URL,
    crypto: globalThis.crypto,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    queueMicrotask,
    console,
  };
  sandbox.globalThis = sandbox;
  sandbox.self = sandbox;
  const context = vm.createContext(sandbox);
  try {
    // A page has one realm: its TextEncoder returns the page's own Uint8Array. Build those here,
    // inside the context, rather than lending Node's (whose arrays belong to another realm).
    vm.runInContext(
      `globalThis.TextEncoder = class TextEncoder { encode(s) { return new Uint8Array(__encode(s)); } };
       globalThis.TextDecoder = class TextDecoder { constructor(l, o) { this.d = __decoder(l, o); } decode(b) { return this.d.decode(b); } };`,
      context,
    );
    vm.runInContext(code, context, { filename: 'eventful-client.iife.js' });
    const run = vm.runInContext(
      `(async (url) => {
        const store = await Eventful.connect(url);
        const sub = store.subscribeToStream('web-1', { from: 'start' });
        await store.append('web-1', [{ type: 'Clicked', data: { x: 1 } }], { expectedRevision: 'no_stream' });
        let conflict = '';
        try { await store.append('web-1', [{ type: 'Clicked' }], { expectedRevision: 'no_stream' }); }
        catch (e) { conflict = (e instanceof Eventful.WrongExpectedRevisionError) + ':' + e.code; }
        const events = await store.readStream('web-1').toArray();
        let live;
        for await (const e of sub) { live = e.type; break; }
        await store.close();
        return { types: events.map((e) => e.type), data: events[0].data, conflict, live, noBuffer: typeof Buffer, noProcess: typeof process };
      })`,
      context,
    ) as (url: string) => Promise<Record<string, unknown>>;
    const result = JSON.parse(JSON.stringify(await run(server.wsUrl))) as unknown; // out of the other realm
    assert.deepEqual(result, { types: ['Clicked'], data: { x: 1 }, conflict: 'true:WRONG_EXPECTED_REVISION', live: 'Clicked', noBuffer: 'undefined', noProcess: 'undefined' });
  } finally {
    await server.stop();
  }
});
