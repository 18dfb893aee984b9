/**
 * The server's logger never writes a secret: fields named like credentials are redacted wherever
 * they sit (top level, one level down, under headers, the auth config), a `Bearer` token in a
 * message is cut, and what is left is one JSON object per line with a level name and an ISO time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger, logFnOf, scrubSecrets, scrubUrl } from './logging.js';

const SECRET = 's3cr3t-token-value-0123456789';

function capture(level: 'debug' | 'info' = 'debug'): { lines: () => Array<Record<string, unknown>>; text: () => string; logger: ReturnType<typeof createLogger> } {
  let out = '';
  const logger = createLogger(level, { write: (s: string) => void (out += s) });
  return { logger, text: () => out, lines: () => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('fields named like credentials are redacted wherever they are', () => {
  const c = capture();
  c.logger.info(
    {
      token: SECRET,
      authorization: `Bearer ${SECRET}`,
      client: { token: SECRET, name: 'billing' },
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      req: { headers: { authorization: `Bearer ${SECRET}`, cookie: `s=${SECRET}` } },
      auth: { tokens: [{ name: 'ops', token: SECRET }] },
      config: { auth: { tokens: [{ name: 'ops', token: SECRET }] }, password: SECRET },
    },
    'starting',
  );
  assert.doesNotMatch(c.text(), new RegExp(SECRET));
  const [line] = c.lines();
  assert.equal(line!.token, '[redacted]');
  assert.equal((line!.client as Record<string, unknown>).name, 'billing', 'what is not a secret stays');
  assert.equal((line!.headers as Record<string, unknown>)['content-type'], 'application/json');
  assert.equal((line!.auth as Record<string, unknown>).tokens, '[redacted]');
});

test('a bearer token in a message is cut; the record is JSON with a level name and an ISO time', () => {
  const c = capture();
  const log = logFnOf(c.logger);
  log('warn', `refused Authorization: Bearer ${SECRET} from 127.0.0.1`, { remote: '127.0.0.1:5000' });
  log('debug', 'detail');
  assert.doesNotMatch(c.text(), new RegExp(SECRET));
  const [warn, debug] = c.lines();
  assert.equal(warn!.level, 'warn');
  assert.match(String(warn!.msg), /Bearer \[redacted\] from 127\.0\.0\.1/);
  assert.equal(warn!.remote, '127.0.0.1:5000');
  assert.match(String(warn!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(debug!.level, 'debug');
  assert.equal(scrubSecrets(`bearer abc, Bearer "${SECRET}"; token=1`), 'bearer [redacted], Bearer [redacted]; token=1');
});

test('the level is respected', () => {
  const c = capture('info');
  c.logger.debug('hidden');
  c.logger.info('shown');
  assert.deepEqual(c.lines().map((l) => l.msg), ['shown']);
});

test('query parameters named like credentials are cut from logged URLs', () => {
  assert.equal(scrubUrl(`/streams/a?token=${SECRET}&limit=5`), '/streams/a?token=[redacted]&limit=5');
  assert.equal(scrubUrl(`/x?limit=5&access_token=${SECRET}`), '/x?limit=5&access_token=[redacted]');
  assert.equal(scrubUrl('/streams/token=1?from=2'), '/streams/token=1?from=2');
});
