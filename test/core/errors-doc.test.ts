import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import * as api from '../../src/index.js';
import { ERROR_REGISTRY } from '../../src/core/errors.js';
import { DEFAULT_LIMITS, DEFAULT_SERVER_LIMITS } from '../../src/core/limits.js';

test('every error code is documented in docs/errors.md with its wire code, HTTP status and retriable flag', () => {
  const doc = fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  for (const [code, row] of Object.entries(ERROR_REGISTRY)) {
    const line = doc.split('\n').find((l) => l.startsWith(`| \`${code}\``));
    assert.ok(line, `${code} is missing from docs/errors.md`);
    const cells = line.split('|').map((c) => c.trim());
    assert.equal(cells[3], String(row.wireCode), `${code} wire code`);
    assert.equal(cells[4], String(row.httpStatus), `${code} HTTP status`);
    assert.equal(cells[5], row.retriable ? 'yes' : 'no', `${code} retriable`);
    const cls = cells[2]!.replace(/`/g, '');
    assert.equal(typeof (api as Record<string, unknown>)[cls], 'function', `${cls} is exported`);
  }
});

test('wire codes are unique', () => {
  const codes = Object.values(ERROR_REGISTRY).map((r) => r.wireCode);
  assert.equal(new Set(codes).size, codes.length);
});

test('every limit is documented in docs/limits.md with its default', () => {
  const doc = fs.readFileSync(new URL('../../docs/limits.md', import.meta.url), 'utf8');
  for (const key of [...Object.keys(DEFAULT_LIMITS), ...Object.keys(DEFAULT_SERVER_LIMITS)]) {
    assert.ok(doc.includes(`\`${key}\``), `${key} is missing from docs/limits.md`);
  }
});
