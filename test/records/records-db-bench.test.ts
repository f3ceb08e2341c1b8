/**
 * The small version of `npm run bench:records` (bench/records-db-run.ts): 1,000 rows, one pass, in
 * the real PostgreSQL, with LocalKms and with TencentKms against the emulator. It checks what the
 * benchmark claims besides speed (speed is measured by the benchmark, never asserted here): the
 * record API's KMS calls stay at the key hierarchy's two keys (the partition's and its blind-index
 * key), whatever the number of rows, every row opens to what was sealed, and the line has the
 * issue's exact shape.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatRecordsLine, recordsBench } from '../../bench/records-db-run.ts';
import { LocalKms, TencentKms } from '../../src/index.ts';
import { type EmulatorFixture, useEmulator } from '../fixtures/emulator.ts';
import { type PostgresServer, startPostgres } from '../fixtures/postgres.ts';

let server: PostgresServer;
let pool: pg.Pool;
let fixture: EmulatorFixture;
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  fixture = await useEmulator({ alias: 'records-bench' });
});
afterAll(async () => {
  await fixture.emulator.close();
  await pool.end();
  await server.stop();
});

describe('bench:records, small', () => {
  it('two KMS calls for all the rows, every row opened, one line per provider in the issue\'s shape', async () => {
    const results = await recordsBench({
      pool,
      rows: 1000,
      batch: 250,
      passes: 1,
      providers: [
        ['LocalKms', LocalKms.generate()],
        ['TencentKms (emulator)', new TencentKms({ keyId: fixture.keyId, region: 'ap-guangzhou', endpoint: fixture.url, credentials: fixture.credentials })],
      ],
    });
    expect(results.map((r) => r.provider)).toEqual(['LocalKms', 'TencentKms (emulator)']);
    for (const r of results) {
      expect(r.kmsCalls).toBe(2);
      expect(r.opened).toBe(1000);
      expect(formatRecordsLine(r)).toMatch(
        /^records [^:]+: insert \d+ rows\/s \(plain \d+, floor \d+\), select \d+ rows\/s \(plain \d+, floor \d+\), kms calls 2$/,
      );
    }
    expect(fixture.emulator.stats().calls).toEqual({ GenerateDataKey: 2 });
  });
});
