/**
 * examples/records (npm run example:records) runs as a newcomer runs it, against the test
 * PostgreSQL, from the built package (dist/, which `npm test` builds first): it seals, finds a
 * row by blind index and shows a copied value refused.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresServer, startPostgres } from '../fixtures/postgres.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  // The example keeps its tables on a server it was given: drop them.
  const pool = new pg.Pool({ connectionString: server.url, max: 1 });
  await pool.query('DROP TABLE IF EXISTS kmse_example_customers, kmse_example_keys');
  await pool.end();
  await server.stop();
});

describe('examples/records', () => {
  it('seals rows into PostgreSQL, finds one by e-mail, and prints the stored and the opened values', async () => {
    expect(existsSync(`${ROOT}dist/index.js`), 'dist/ is built (npm run build)').toBe(true);
    const { stdout } = await promisify(execFile)(process.execPath, ['examples/records/main.mjs'], {
      cwd: ROOT,
      env: { ...process.env, KMS_ENVELOPE_PG_URL: server.url },
      encoding: 'utf8',
    });
    expect(stdout).toMatch(/'kme\.[A-Za-z0-9_-]+… \(\d+ chars\)'/); // what the database holds
    expect(stdout).toContain("'alice@example.com'"); // what the app sees
    expect(stdout).toContain('1 candidate row(s) by blind index, 1 match');
    expect(stdout).toMatch(/customers\.card of row \["[^"]+"\] does not open/);
  });
});
