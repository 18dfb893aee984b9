/** The dashboard built from the current sources, for the tests that serve it. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Builds dist/dashboard when it is missing or older than any of its sources. */
export function ensureDashboardBuilt(): void {
  const built = path.join(ROOT, 'dist/dashboard/index.html');
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...fs.readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).mtimeMs)),
    );
  const sources = Math.max(newest(path.join(ROOT, 'src/dashboard')), fs.statSync(path.join(ROOT, 'scripts/build-dashboard.mjs')).mtimeMs);
  if (fs.existsSync(built) && fs.statSync(built).mtimeMs >= sources) return;
  const r = spawnSync(process.execPath, ['scripts/build-dashboard.mjs'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the dashboard build failed:\n${r.stdout}\n${r.stderr}`);
}

