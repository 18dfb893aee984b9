/**
 * Token authentication with roles scoped by stream prefix.
 *
 * Config (in the server's config file):
 *   auth:
 *     tokens:
 *       - name: billing-service        # shown in logs instead of the token
 *         tokenSha256: "<hex>"         # or `token: "<secret>"`; the hash keeps secrets out of files
 *         roles:
 *           - { role: write, streams: "invoice-" }   # prefix; "" or absent = every stream
 *           - { role: read }
 *
 * Roles: `read` (read streams, $all, subscribe), `write` (append), `admin` (everything, on every
 * stream), `metrics` (GET /metrics and /stats only: for a Prometheus scraper). A token is
 * compared by its SHA-256 digest with `timingSafeEqual`, so neither its content nor its length
 * leaks through timing; tokens are never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigInvalidError, ForbiddenError, UnauthenticatedError } from '../core/errors.js';
import type { ReadAllFilter } from '../core/events.js';

/** `metrics`: read server-wide numbers (GET /metrics and /stats), and nothing else. */
export type Role = 'read' | 'write' | 'admin' | 'metrics';

export interface TokenConfig {
  name: string;
  token?: string;
  tokenSha256?: string;
  roles: Array<{ role: Role; streams?: string }>;
}

export interface Principal {
  name: string;
  /** True when the principal may do `role` on `stream`. */
  can(role: Role, stream: string): boolean;
  /** True when every stream a $all read with this filter could return is readable. */
  canReadAll(filter: ReadAllFilter | undefined): boolean;
}

/** Everything allowed: used when auth is off. */
export const ANONYMOUS_ADMIN: Principal = { name: 'anonymous', can: () => true, canReadAll: () => true };

interface Entry {
  name: string;
  digest: Buffer;
  grants: Array<{ role: Role; prefix: string }>;
}

export class Authenticator {
  readonly enabled: boolean;
  #entries: Entry[];

  constructor(tokens: TokenConfig[] | undefined) {
    this.enabled = tokens !== undefined && tokens.length > 0;
    this.#entries = (tokens ?? []).map((t, i) => {
      let digest: Buffer;
      if (t.tokenSha256 !== undefined) {
        if (!/^[0-9a-f]{64}$/i.test(t.tokenSha256)) throw new ConfigInvalidError(`auth.tokens[${i}].tokenSha256 must be 64 hex digits`);
        digest = Buffer.from(t.tokenSha256, 'hex');
      } else if (typeof t.token === 'string' && t.token.length >= 16) {
        digest = sha256(t.token);
      } else {
        throw new ConfigInvalidError(`auth.tokens[${i}] needs 'token' (at least 16 characters) or 'tokenSha256'`);
      }
      return { name: t.name, digest, grants: t.roles.map((r) => ({ role: r.role, prefix: r.streams ?? '' })) };
    });
  }

  /** The principal a token stands for. Throws UNAUTHENTICATED for a missing or unknown token. */
  authenticate(token: string | undefined): Principal {
    if (!this.enabled) return ANONYMOUS_ADMIN;
    if (typeof token !== 'string' || token.length === 0) throw new UnauthenticatedError('this server requires a token');
    const digest = sha256(token);
    let found: Entry | undefined;
    // Compare against every entry, so the time taken does not say which one matched.
    for (const e of this.#entries) if (timingSafeEqual(e.digest, digest)) found = e;
    if (found === undefined) throw new UnauthenticatedError('unknown token');
    const grants = found.grants;
    const can = (role: Role, stream: string): boolean =>
      grants.some((g) => (g.role === role || g.role === 'admin') && stream.startsWith(g.prefix));
    return {
      name: found.name,
      can,
      canReadAll(filter) {
        if (can('read', '')) return true;
        const prefixes = filter?.streamPrefix === undefined ? [] : Array.isArray(filter.streamPrefix) ? filter.streamPrefix : [filter.streamPrefix];
        return prefixes.length > 0 && prefixes.every((p) => can('read', p));
      },
    };
  }
}

export function requireRole(p: Principal, role: Role, stream: string): void {
  if (!p.can(role, stream)) throw new ForbiddenError(`'${p.name}' may not ${role} stream '${stream}'`, { role, stream });
}

export function requireReadAll(p: Principal, filter: ReadAllFilter | undefined): void {
  if (!p.canReadAll(filter)) {
    throw new ForbiddenError(`'${p.name}' may not read all streams; narrow the read with a streamPrefix filter it may read`, { role: 'read' });
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
