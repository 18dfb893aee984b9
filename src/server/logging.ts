/**
 * The server's logs: JSON lines on stderr, written by pino.
 *
 * One line per record: `time` (ISO 8601), `level` (`error`, `warn`, `info`, `debug`), `msg`, and
 * fields. HTTP records carry `reqId`, the request's id (sent back in the `x-request-id` header,
 * taken from the request's own `x-request-id` when it sends a sane one), so a line can be matched
 * with the request that caused it.
 *
 * Secrets never reach the log: the server never logs tokens or request headers, and as a second
 * line of defence every field named like a credential (`token`, `authorization`, `password`,
 * `cookie`, `tokenSha256`, also one level down and under `headers`) is replaced by `[redacted]`,
 * and a `Bearer ...` in a message is cut. The test that proves it: test/e2e/observability.test.ts.
 */
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** The logging call the server's parts take (sessions, HTTP routes, the store's warnings). */
export type LogFn = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

export type { Logger } from 'pino';

const SECRET_KEYS = ['token', 'authorization', 'Authorization', 'password', 'cookie', 'tokenSha256', 'secret'];

/** Field paths replaced by `[redacted]`, whatever their value. */
export const REDACT_PATHS: readonly string[] = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.headers.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.headers.${k}`),
  'auth.tokens',
  '*.auth.tokens',
];

export const REDACTED = '[redacted]';

const BEARER_RE = /\b(Bearer)\s+["']?[^\s"',;]+["']?/gi;

/** Cuts credentials out of free text: `Bearer abc` becomes `Bearer [redacted]`. */
export function scrubSecrets(text: string): string {
  return text.replace(BEARER_RE, `$1 ${REDACTED}`);
}

const SECRET_PARAM_RE = /([?&](?:token|access_token|auth|authorization|password|secret|api_key|apikey)=)[^&#]*/gi;

/** A URL as logged: the values of query parameters named like credentials are cut. */
export function scrubUrl(url: string): string {
  return url.replace(SECRET_PARAM_RE, `$1${REDACTED}`);
}

/**
 * A pino logger that writes JSON lines to `destination` (stderr by default, synchronously, so
 * that nothing is lost when the process exits right after logging).
 */
export function createLogger(level: LogLevel | 'silent', destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...REDACT_PATHS], censor: REDACTED },
      hooks: {
        logMethod(args, method) {
          // The message is the first string argument (after an optional fields object).
          for (let i = 0; i < args.length; i++) {
            const a = args[i];
            if (typeof a === 'string') {
              args[i] = scrubSecrets(a);
              break;
            }
          }
          return method.apply(this, args as Parameters<typeof method>);
        },
      },
    },
    destination ?? pino.destination({ fd: 2, sync: true }),
  );
}

/** The server's `LogFn` over a pino logger. */
export function logFnOf(logger: Logger): LogFn {
  return (level, message, fields) => {
    if (fields === undefined) logger[level](message);
    else logger[level](fields, message);
  };
}
