/**
 * The server's configuration: one schema, three sources. A value comes from the first of:
 * a command-line flag, an `EVENTFUL_*` environment variable, the config file (`--config`, JSON),
 * the default. Unknown keys are refused in the file and in the environment (a typo should
 * fail loudly, not be ignored), values are checked against the schema, and the result is frozen.
 */
import fs from 'node:fs';
import { Type } from '@sinclair/typebox';
import type { Static, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ValueErrorType } from '@sinclair/typebox/errors';
import { ConfigInvalidError } from '../core/errors.js';
import { DEFAULT_LIMITS, DEFAULT_SERVER_LIMITS, checkLimitRelations, checkServerLimitRelations, FORMAT } from '../core/limits.js';
import type { ServerLimits, StoreLimits } from '../core/limits.js';

export const DEFAULT_HTTP_PORT = 7070;
export const DEFAULT_TCP_PORT = 7071;

const Role = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin'), Type.Literal('metrics')]);

/**
 * Who may read GET /metrics and GET /stats when auth is on. `auto`: anyone when the server
 * listens on a loopback address (like the health endpoints), a token otherwise.
 * @default 'auto'
 */
export const DEFAULT_METRICS_AUTH = 'auto';

const limitProps = Object.fromEntries(
  [...Object.keys(DEFAULT_LIMITS), ...Object.keys(DEFAULT_SERVER_LIMITS)].map((k) => [k, Type.Optional(Type.Integer({ minimum: 1 }))]),
) as Record<string, TSchema>;

export const ConfigSchema = Type.Object(
  {
    dataDir: Type.String({ minLength: 1, default: './data', description: 'Data directory of the embedded store.' }),
    host: Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address to listen on. Anything but loopback requires auth.' }),
    httpPort: Type.Integer({ minimum: 0, maximum: 65535, default: DEFAULT_HTTP_PORT, description: 'HTTP API and WebSocket port (0: any free port).' }),
    tcpPort: Type.Integer({ minimum: 0, maximum: 65535, default: DEFAULT_TCP_PORT, description: 'Binary protocol port (0: any free port).' }),
    durability: Type.Union([Type.Literal('always'), Type.Literal('interval'), Type.Literal('none')], { default: 'always', description: 'When appends are acknowledged.' }),
    syncIntervalMs: Type.Integer({ minimum: 1, default: 100, description: "Sync period for durability 'interval'." }),
    segmentBytes: Type.Integer({ minimum: FORMAT.segmentBytesMinimum, maximum: FORMAT.segmentBytesMaximum, default: FORMAT.segmentBytesDefault, description: 'Maximum segment file size.' }),
    insecureNoAuth: Type.Boolean({ default: false, description: 'Allow listening on a non-loopback address without auth.' }),
    queueAutoCreate: Type.Boolean({ default: false, description: 'Create a queue with default settings on its first send, consume or receive.' }),
    tlsKey: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key file: serve TLS on both ports.' })),
    tlsCert: Type.Optional(Type.String({ minLength: 1, description: 'PEM certificate file (with tlsKey).' })),
    logLevel: Type.Union([Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug')], { default: 'info', description: 'Log verbosity (logs go to stderr as JSON lines).' }),
    metricsAuth: Type.Union([Type.Literal('auto'), Type.Literal('token'), Type.Literal('open')], {
      default: DEFAULT_METRICS_AUTH,
      description: "Whether /metrics and /stats need a token (role metrics or admin) when auth is on: 'token', 'open', or 'auto' (open on a loopback address, a token otherwise).",
    }),
    auth: Type.Optional(
      Type.Object(
        {
          tokens: Type.Array(
            Type.Object(
              {
                name: Type.String({ minLength: 1 }),
                token: Type.Optional(Type.String({ minLength: 16 })),
                tokenSha256: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$' })),
                roles: Type.Array(Type.Object({ role: Role, streams: Type.Optional(Type.String()) }, { additionalProperties: false }), { minItems: 1 }),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false, description: 'Tokens and their roles (config file only).' },
      ),
    ),
    limits: Type.Optional(Type.Object(limitProps, { additionalProperties: false, description: 'Overrides of docs/limits.md.' })),
  },
  { additionalProperties: false },
);

export type ServerConfig = Static<typeof ConfigSchema> & {
  storeLimits: StoreLimits;
  serverLimits: ServerLimits;
};

/** Keys settable by flag and environment variable (auth and limits: config file only). */
export const SCALAR_KEYS = ['dataDir', 'host', 'httpPort', 'tcpPort', 'durability', 'syncIntervalMs', 'segmentBytes', 'insecureNoAuth', 'queueAutoCreate', 'tlsKey', 'tlsCert', 'logLevel', 'metricsAuth'] as const;

export function envName(key: string): string {
  return 'EVENTFUL_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

export interface ConfigSources {
  /** Values from flags (already named as config keys). */
  flags?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  configFile?: string;
}

/** Environment variables that the server reads but that are not config keys. */
const OTHER_ENV = new Set(['EVENTFUL_CONFIG', 'EVENTFUL_URL', 'EVENTFUL_TOKEN']);

export function loadConfig(sources: ConfigSources): Readonly<ServerConfig> {
  const env = sources.env ?? {};
  const merged: Record<string, unknown> = {};
  const configFile = sources.configFile ?? env.EVENTFUL_CONFIG;
  if (configFile !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(configFile, 'utf8');
    } catch (err) {
      throw new ConfigInvalidError(`cannot read config file ${configFile}: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new ConfigInvalidError(`config file ${configFile} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigInvalidError(`config file ${configFile} must hold a JSON object`);
    Object.assign(merged, parsed);
  }
  const known = new Map(SCALAR_KEYS.map((k) => [envName(k), k]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('EVENTFUL_') || OTHER_ENV.has(name) || value === undefined) continue;
    const key = known.get(name);
    if (key === undefined) {
      throw new ConfigInvalidError(`unknown environment variable ${name}; known: ${[...known.keys(), ...OTHER_ENV].join(', ')}`);
    }
    merged[key] = coerce(key, value);
  }
  for (const [key, value] of Object.entries(sources.flags ?? {})) if (value !== undefined) merged[key] = value;

  const withDefaults = Value.Default(ConfigSchema, Value.Clone(merged)) as Record<string, unknown>;
  const errors = [...Value.Errors(ConfigSchema, withDefaults)];
  if (errors.length > 0) {
    const e = errors[0]!;
    const where = e.path === '' ? '(root)' : e.path.slice(1).replace(/\//g, '.');
    const extra = e.type === ValueErrorType.ObjectAdditionalProperties ? `; known keys: ${Object.keys(ConfigSchema.properties).join(', ')}` : '';
    throw new ConfigInvalidError(`config ${where}: ${e.message}${extra}`, { path: e.path });
  }
  const cfg = withDefaults as Static<typeof ConfigSchema>;
  if ((cfg.tlsKey === undefined) !== (cfg.tlsCert === undefined)) throw new ConfigInvalidError('tlsKey and tlsCert go together');
  const storeLimits = { ...DEFAULT_LIMITS } as StoreLimits;
  const serverLimits = { ...DEFAULT_SERVER_LIMITS } as ServerLimits;
  for (const [k, v] of Object.entries(cfg.limits ?? {})) {
    if (k in DEFAULT_LIMITS) storeLimits[k as keyof StoreLimits] = v as number;
    else serverLimits[k as keyof ServerLimits] = v as number;
  }
  checkLimitRelations(storeLimits, cfg.segmentBytes);
  checkServerLimitRelations(serverLimits, storeLimits);
  return Object.freeze({ ...cfg, storeLimits: Object.freeze(storeLimits), serverLimits: Object.freeze(serverLimits) });
}

function coerce(key: string, value: string): unknown {
  const schema = (ConfigSchema.properties as Record<string, TSchema>)[key]!;
  const t = (schema as { type?: string }).type;
  if (t === 'integer') {
    const n = Number(value);
    if (!Number.isInteger(n)) throw new ConfigInvalidError(`${envName(key)} must be an integer, got '${value}'`);
    return n;
  }
  if (t === 'boolean') {
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0' || value === '') return false;
    throw new ConfigInvalidError(`${envName(key)} must be true or false, got '${value}'`);
  }
  return value;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** True when /metrics and /stats answer without a token (see `metricsAuth`). */
export function metricsOpen(config: Pick<ServerConfig, 'metricsAuth' | 'host'>, authEnabled: boolean): boolean {
  if (!authEnabled) return true;
  if (config.metricsAuth === 'open') return true;
  if (config.metricsAuth === 'token') return false;
  return isLoopback(config.host);
}

/** Help text for every config key, for `eventful serve --help`. */
export function describeConfig(): Array<{ key: string; env: string; defaultValue: unknown; description: string }> {
  return SCALAR_KEYS.map((key) => {
    const s = (ConfigSchema.properties as Record<string, TSchema & { default?: unknown; description?: string }>)[key]!;
    return { key, env: envName(key), defaultValue: s.default, description: s.description ?? '' };
  });
}
