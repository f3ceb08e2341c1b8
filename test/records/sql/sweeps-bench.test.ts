/**
 * The small version of `npm run bench:sweep` (bench/sweep-run.ts): 1,000 rows in 4 partitions
 * under the key hierarchy in PostgreSQL, TencentKms against the emulator with Tencent's quotas.
 * It checks what the benchmark claims besides speed (speed is measured by the benchmark, never
 * asserted here): the sweep's KMS calls, counted by the emulator, are one Decrypt per
 * intermediate key (old and new version of each partition), not one per row; every row written,
 * none failed, no call throttled.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepBench } from '../../../bench/sweep-run.ts';
import { TencentKms } from '../../../src/index.ts';
import { type EmulatorFixture, useEmulator } from '../../fixtures/emulator.ts';
import { type PostgresServer, startPostgres } from '../../fixtures/postgres.ts';

let server: PostgresServer;
let pool: pg.Pool;
let fixture: EmulatorFixture;
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  fixture = await useEmulator({ alias: 'sweep', faults: { qpsLimit: { GenerateDataKey: 100, Decrypt: 300, ReEncrypt: 100 } } });
});
afterAll(async () => {
  await fixture.emulator.close();
  await pool.end();
  await server.stop();
});

describe('bench:sweep, small', () => {
  it('KMS calls of the rotation sweep = the intermediate keys (2 per partition), for 1,000 rows, with one worker and two', async () => {
    const result = await sweepBench({
      pool,
      rows: 1000,
      partitions: 4,
      batchSize: 100,
      kms: () => new TencentKms({ keyId: fixture.keyId, region: 'ap-guangzhou', endpoint: fixture.url, credentials: fixture.credentials }),
      kmsCalls: async () => fixture.emulator.stats().calls,
    });
    expect(result.intermediateKeys).toBe(8);
    expect(result.rotateCalls).toEqual({ GenerateDataKey: 4 });
    expect(result.sweeps.map((s) => s.workers)).toEqual([1, 2]);
    for (const s of result.sweeps) {
      expect(s).toMatchObject({ written: 1000, failed: 0 });
      expect(s.kmsCalls).toEqual({ Decrypt: 8 });
    }
    expect(result.floorRowsPerSecond).toBeGreaterThan(0);
    expect(fixture.emulator.stats().faults).toEqual({});
  });
});
