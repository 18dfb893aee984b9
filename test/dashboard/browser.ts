/**
 * What the dashboard tests share: the dashboard built from the current sources, and a headless
 * Chromium (Debian's, driven by playwright-core; nothing is downloaded).
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { ROOT } from './build.js';

export { ensureDashboardBuilt } from './build.js';

/** Chromium to drive: CHROMIUM_PATH, else Debian's package (`apt-get install -y chromium`). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined when they can. */
export const NO_BROWSER: string | undefined = fs.existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`;

/**
 * Flags that keep a headless Chromium quiet on a closed network: without the background ones it
 * opens connections that are refused. (Playwright adds --headless itself.)
 */
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30_000 });
}

/** Where screenshots go when DASHBOARD_SCREENSHOTS is set (`npm run docs:screenshots`), else undefined. */
export function screenshotDir(): string | undefined {
  const d = process.env.DASHBOARD_SCREENSHOTS;
  if (d === undefined || d === '') return undefined;
  const dir = path.resolve(ROOT, d === '1' ? 'docs/dashboard' : d);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}
