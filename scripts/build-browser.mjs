#!/usr/bin/env node
// Bundles the client for browsers: dist/browser/eventful-client.js (ESM), WebSocket only.
// Node's Buffer is provided by the `buffer` package; node:* modules and `ws` stay out (they are
// only imported for tcp:// and tls:// URLs, or when there is no global WebSocket).
import { build } from 'esbuild';
import fs from 'node:fs';

fs.mkdirSync('dist/browser', { recursive: true });
fs.writeFileSync('dist/browser/buffer-shim.js', "export { Buffer } from 'buffer';\n");
const result = await build({
  entryPoints: ['src/client/index.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  outfile: 'dist/browser/eventful-client.js',
  inject: ['dist/browser/buffer-shim.js'],
  external: ['node:*', 'ws'],
  define: { 'process.env.NODE_ENV': '"production"' },
  minify: true,
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
});
// The same as a classic script defining the global `Eventful`, for <script> tags.
await build({ ...options(), format: 'iife', globalName: 'Eventful', outfile: 'dist/browser/eventful-client.iife.js' });
for (const f of ['eventful-client.js', 'eventful-client.iife.js']) {
  console.log(`dist/browser/${f}: ${(fs.statSync(`dist/browser/${f}`).size / 1024).toFixed(1)} KiB`);
}
void result;

function options() {
  return {
    entryPoints: ['src/client/index.ts'],
    bundle: true,
    platform: 'browser',
    target: 'es2022',
    inject: ['dist/browser/buffer-shim.js'],
    external: ['node:*', 'ws'],
    minify: true,
    sourcemap: true,
    logLevel: 'warning',
  };
}
