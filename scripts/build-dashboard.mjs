#!/usr/bin/env node
// Builds the web dashboard that `eventful serve` serves at /ui: src/dashboard (preact, JSX) is
// bundled and minified by esbuild into dist/dashboard, with content hashes in the script and
// style names (cached for good by browsers) and an index.html that names them. No network, no
// CDN: everything the page needs is in these files.
//
// The old hashed files are removed after the new index.html is in place (written whole, then
// renamed), so a server reading the directory never finds a page whose files are missing.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(ROOT, 'src/dashboard');
const OUT = path.join(ROOT, 'dist/dashboard');

const started = Date.now();
fs.mkdirSync(OUT, { recursive: true });
const result = await build({
  absWorkingDir: ROOT,
  entryPoints: { app: path.join(SRC, 'app.jsx'), styles: path.join(SRC, 'styles.css') },
  outdir: OUT,
  entryNames: '[name]-[hash]',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  define: { 'process.env.NODE_ENV': '"production"' },
  minify: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
const js = outputs.find((f) => /^app-.*\.js$/.test(f));
const css = outputs.find((f) => /^styles-.*\.css$/.test(f));
if (js === undefined || css === undefined) throw new Error(`esbuild did not produce the expected files: ${outputs.join(', ')}`);

fs.copyFileSync(path.join(SRC, 'favicon.svg'), path.join(OUT, 'favicon.svg'));
const html = fs.readFileSync(path.join(SRC, 'index.html'), 'utf8').replace('{{js}}', js).replace('{{css}}', css);
const tmp = path.join(OUT, `.index.html.${process.pid}`);
fs.writeFileSync(tmp, html);
fs.renameSync(tmp, path.join(OUT, 'index.html'));

const keep = new Set([js, css, 'favicon.svg', 'index.html']);
for (const f of fs.readdirSync(OUT)) if (!keep.has(f) && !f.startsWith('.index.html.')) fs.rmSync(path.join(OUT, f), { force: true });

const size = (f) => `${(fs.statSync(path.join(OUT, f)).size / 1024).toFixed(1)} KiB`;
console.log(`dist/dashboard: ${js} ${size(js)}, ${css} ${size(css)} (${Date.now() - started} ms)`);
