/**
 * The read-model stores the projection tests run on: memory, LMDB on a temp dir, and
 * PostgreSQL 15 on 127.0.0.1:5432 (database `test`, trust auth) in a schema of its own, dropped
 * after the test. When PostgreSQL is not reachable it is started with pg_ctlcluster; if it still
 * is not, its cases are skipped with a message that says so.
 */
import { execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import postgres from 'postgres';
import { memoryReadModelStore, openLmdbReadModelStore, openPostgresReadModelStore } from '../../src/projections/index.js';
import type { ReadModelStore } from '../../src/projections/index.js';
import { tempDir } from '../helpers.js';

export const PG_HOST = '127.0.0.1';
export const PG_PORT = 5432;
export const PG_DATABASE = 'test';

async function tryConnect(user: string): Promise<string | undefined> {
  const url = `postgres://${user}@${PG_HOST}:${PG_PORT}/${PG_DATABASE}`;
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
    return url;
  } catch {
    return undefined;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

let probe: Promise<{ url: string } | { reason: string }> | undefined;

/** A URL PostgreSQL answers on, or why there is none. Starts the local cluster once if needed. */
export function postgresUrl(): Promise<{ url: string } | { reason: string }> {
  return (probe ??= (async () => {
    for (const user of ['postgres', 'root']) {
      const url = await tryConnect(user);
      if (url) return { url };
    }
    try {
      const versions = fs.existsSync('/etc/postgresql') ? fs.readdirSync('/etc/postgresql') : [];
      if (versions.length === 0) return { reason: 'PostgreSQL is not reachable on 127.0.0.1:5432 and no cluster is installed (/etc/postgresql is empty)' };
      execSync(`pg_ctlcluster --skip-systemctl-redirect ${versions[0]} main start`, { stdio: 'ignore', timeout: 30_000 });
    } catch (err) {
      return { reason: `PostgreSQL is not reachable on 127.0.0.1:5432 and pg_ctlcluster could not start it: ${(err as Error).message}` };
    }
    for (let i = 0; i < 20; i++) {
      for (const user of ['postgres', 'root']) {
        const url = await tryConnect(user);
        if (url) return { url };
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return { reason: 'PostgreSQL was started with pg_ctlcluster but still refuses connections on 127.0.0.1:5432' };
  })());
}

export interface OpenedStore {
  store: ReadModelStore;
  /** Opens the same data again (after `store.close()`); undefined for memory, which keeps nothing. */
  reopen: (() => Promise<ReadModelStore>) | undefined;
  /** Closes the store and drops what it created (PostgreSQL: its schema). */
  cleanup(): Promise<void>;
}

export interface StoreKind {
  kind: 'memory' | 'lmdb' | 'postgres';
  /** A new, empty store of this kind. */
  fresh(): Promise<OpenedStore>;
}

/** The three kinds, PostgreSQL only when it answers (`skipped` says why not). */
export async function storeKinds(): Promise<{ kinds: StoreKind[]; skipped: string | undefined }> {
  const kinds: StoreKind[] = [
    {
      kind: 'memory',
      fresh: async () => {
        const store = memoryReadModelStore();
        return { store, reopen: undefined, cleanup: () => store.close() };
      },
    },
    {
      kind: 'lmdb',
      fresh: async () => {
        const dir = tempDir('eventful-rm-');
        const opened: ReadModelStore[] = [openLmdbReadModelStore({ dir })];
        return {
          store: opened[0]!,
          reopen: async () => {
            const s = openLmdbReadModelStore({ dir });
            opened.push(s);
            return s;
          },
          cleanup: async () => {
            for (const s of opened) await s.close();
          },
        };
      },
    },
  ];
  const pg = await postgresUrl();
  if ('url' in pg) {
    kinds.push({
      kind: 'postgres',
      fresh: async () => {
        const schema = `t_${process.pid}_${randomBytes(4).toString('hex')}`;
        const opened: ReadModelStore[] = [openPostgresReadModelStore({ url: pg.url, schema })];
        return {
          store: opened[0]!,
          reopen: async () => {
            const s = openPostgresReadModelStore({ url: pg.url, schema });
            opened.push(s);
            return s;
          },
          cleanup: async () => {
            for (const s of opened) await s.close();
            const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
            try {
              await sql`drop schema if exists ${sql(schema)} cascade`;
            } finally {
              await sql.end();
            }
          },
        };
      },
    });
  }
  return { kinds, skipped: 'reason' in pg ? pg.reason : undefined };
}
