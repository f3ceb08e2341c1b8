/**
 * The README's records snippet, pasted into a file of a fresh project, run twice against the test
 * PostgreSQL from the built package (dist/): the second run is a restart, and it opens what the
 * first sealed (the key is in a file, not in memory) and drops no row as a false positive.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// Inside the package, so that 'kms-envelope/...' resolves to this package's dist/ (a self-reference).
const DIR = `${ROOT}.tmp-readme-${process.pid}`;
const schema = uniqueTable('kmse_readme');

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
  const pool = new pg.Pool({ connectionString: server.url, max: 1 });
  await pool.query(`CREATE SCHEMA ${schema}`);
  await pool.end();
  mkdirSync(DIR, { recursive: true });
});
afterAll(async () => {
  const pool = new pg.Pool({ connectionString: server.url, max: 1 });
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.end();
  await server.stop();
  rmSync(DIR, { recursive: true, force: true });
});

/** The fenced block that starts with `// records.mjs:` in README.md. */
function snippet(): string {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const match = /```js\n(\/\/ records\.mjs:[\s\S]*?)```/.exec(readme);
  if (!match) throw new Error('README.md has no records.mjs snippet');
  return match[1]!;
}

describe('the README records snippet', () => {
  it('survives a restart: run twice, the second run opens the first run\'s row too', async () => {
    writeFileSync(`${DIR}/records.mjs`, snippet());
    const url = new URL(server.url);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const run = async () =>
      (await promisify(execFile)(process.execPath, ['records.mjs'], { cwd: DIR, env: { ...process.env, DATABASE_URL: url.toString() }, encoding: 'utf8' }));
    const first = await run();
    expect(first.stdout).toContain('1 customer(s) named alice@example.com');
    const second = await run();
    expect(second.stdout).toContain('2 customer(s) named alice@example.com');
    expect(second.stderr).not.toMatch(/KMS_ENVELOPE_EPHEMERAL_KEY|Warning/);
  });
});
