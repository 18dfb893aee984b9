/**
 * `<dir>/eventful.json`: written once when a data directory is created, never changed.
 * `{ "format": 1, "logId": "<uuid>", "createdAt": "<iso time>" }`. The log id is also in every
 * segment header, so segments and indexes from another directory are refused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { CorruptionError } from '../core/errors.js';
import { fsyncDir, listSegments } from './segments.js';

export const MANIFEST_FILE = 'eventful.json';

/** The log id of an existing data directory, or undefined when it has no manifest. */
export function readManifest(dir: string): string | undefined {
  const file = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(file)) return undefined;
  let m: { format?: unknown; logId?: unknown };
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof m;
  } catch (err) {
    throw new CorruptionError(file, 0, `unreadable manifest: ${(err as Error).message}`);
  }
  if (m.format !== 1 || typeof m.logId !== 'string') throw new CorruptionError(file, 0, 'manifest has an unknown format or no logId');
  return m.logId;
}

export function readOrCreateManifest(dir: string): string {
  const existing = readManifest(dir);
  if (existing !== undefined) return existing;
  const file = path.join(dir, MANIFEST_FILE);
  if (listSegments(path.join(dir, 'log')).length > 0) throw new CorruptionError(file, 0, 'the manifest is missing but segment files exist');
  const logId = randomUUID();
  const tmp = file + '.tmp';
  fs.writeFileSync(tmp, JSON.stringify({ format: 1, logId, createdAt: new Date().toISOString() }, null, 2) + '\n');
  const fd = fs.openSync(tmp, 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  fsyncDir(dir);
  return logId;
}

export function logIdBytes(logId: string): Buffer {
  return Buffer.from(logId.replace(/-/g, ''), 'hex');
}
