/**
 * A live plaintext column encrypted under application writes while the migration workers are
 * SIGKILLed at random, as real OS processes on the built package (dist/; `npm run build` first),
 * on PostgreSQL (two workers sharing the table through SKIP LOCKED) and SQLite (one worker), by
 * the harness of `npm run bench:migrate` at 100,000 rows on both (the slow-suite size): every
 * row ends sealed once, with the last value the application wrote (a verifier against a plaintext
 * shadow), and the workers never held a lock above RowExclusiveLock. In the slow list.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrate } from '../../../bench/migrate-run.ts';
import { type PostgresServer, startPostgres } from '../../fixtures/postgres.ts';

const dist = new URL('../../../dist/', import.meta.url).href;
let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server.stop();
});

describe('a live column migration with workers killed', () => {
  it('on PostgreSQL: nothing left in plaintext, no lost update, nothing sealed twice, at most RowExclusiveLock', async () => {
    const result = await runMigrate({ kind: 'postgres', url: server.url, rows: 100_000, writesPerSecond: 200, workers: 2, kills: 4, dist });
    expect(result.kills).toBeGreaterThanOrEqual(1);
    expect({ plaintext: result.plaintextLeft, lost: result.lostUpdates, double: result.doubleEncrypted }).toEqual({ plaintext: 0, lost: 0, double: 0 });
    expect(['AccessShareLock', 'RowShareLock', 'RowExclusiveLock']).toContain(result.strongestLock);
  }, 600_000);

  it('on SQLite: the same with one worker', async () => {
    const result = await runMigrate({ kind: 'sqlite', rows: 100_000, writesPerSecond: 100, workers: 1, kills: 2, dist });
    expect(result.kills).toBeGreaterThanOrEqual(1);
    expect({ plaintext: result.plaintextLeft, lost: result.lostUpdates, double: result.doubleEncrypted }).toEqual({ plaintext: 0, lost: 0, double: 0 });
  }, 600_000);
});
