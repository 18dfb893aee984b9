/**
 * One writer per data directory.
 *
 * On Linux the lock is a listening Unix socket in the abstract namespace, named after the data
 * directory's device and inode. The kernel releases it the moment the holding process dies, even
 * by SIGKILL, so a crash never leaves a stale lock and two openers can never both win.
 * Elsewhere a `LOCK` file created with O_EXCL holds the owner's pid; a lock whose pid is no longer
 * alive is taken over. Both ways write `LOCK` with the holder's pid, host and start time, so the
 * error a second opener gets says who holds the directory.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { StoreLockedError, StorageFailedError } from '../core/errors.js';

export interface DirLock {
  release(): Promise<void>;
}

export async function lockDir(dir: string): Promise<DirLock> {
  const lockFile = path.join(dir, 'LOCK');
  const holder = `pid ${process.pid} on ${os.hostname()} since ${new Date().toISOString()}`;
  if (process.platform === 'linux') {
    const st = fs.statSync(dir);
    const name = `\0eventful-lock-${st.dev}-${st.ino}`;
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE') reject(new StoreLockedError(dir, readHolder(lockFile)));
        else reject(new StorageFailedError(`cannot lock ${dir}: ${err.message}`, {}, err));
      });
      server.listen(name, () => resolve());
    });
    server.unref();
    fs.writeFileSync(lockFile, holder + '\n');
    return {
      release: () =>
        new Promise<void>((resolve) => {
          try {
            fs.rmSync(lockFile, { force: true });
          } finally {
            server.close(() => resolve());
          }
        }),
    };
  }
  return lockWithPidFile(dir, lockFile, holder);
}

function readHolder(lockFile: string): string {
  try {
    return fs.readFileSync(lockFile, 'utf8').trim() || 'unknown holder';
  } catch {
    return 'unknown holder';
  }
}

function lockWithPidFile(dir: string, lockFile: string, holder: string): DirLock {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockFile, `${process.pid}\n${holder}\n`, { flag: 'wx' });
      return { release: async () => fs.rmSync(lockFile, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StorageFailedError(`cannot lock ${dir}`, {}, err);
      const pid = Number(fs.readFileSync(lockFile, 'utf8').split('\n')[0]);
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) throw new StoreLockedError(dir, readHolder(lockFile));
      fs.rmSync(lockFile, { force: true }); // stale: its owner died
    }
  }
  throw new StoreLockedError(dir, readHolder(lockFile));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
