/**
 * `npm run bench:sweep`: a rotation sweep over 100,000 sealed rows in PostgreSQL under the key
 * hierarchy (10 partitions), TencentKms against the emulator in its own process enforcing
 * Tencent's quotas, against a client-side batched UPDATE of same-size values in the same run
 * (bench/sweep-run.ts). KMS calls are the emulator's own counts. One line per measurement.
 * BENCH_SWEEP_ROWS and BENCH_SWEEP_WORKERS (default 1,2) change the rows and the worker counts.
 */
import pg from 'pg';
import { TencentKms } from '../src/index.node.ts';
import { spawnEmulator } from './emulator-process.ts';
import { startPostgres } from './postgres-process.ts';
import { sweepBench } from './sweep-run.ts';

const ROWS = Number(process.env.BENCH_SWEEP_ROWS ?? 100_000);
const PARTITIONS = 10;
const BATCH = 500;
const WORKERS = (process.env.BENCH_SWEEP_WORKERS ?? '1,2').split(',').map(Number);
const QUOTAS = { GenerateDataKey: 100, Decrypt: 300, ReEncrypt: 100 };

const server = await startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: Math.max(4, ...WORKERS.map((w) => w + 2)) });
const emulator = await spawnEmulator();
const control = async (what: 'stats' | 'faults', body?: unknown): Promise<unknown> => {
  const response = await fetch(`${emulator.url}/__emulator/${what}`, {
    method: body ? 'POST' : 'GET',
    headers: { Authorization: `Bearer ${emulator.credentials.secretKey}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (!response.ok) throw new Error(`emulator ${what}: HTTP ${response.status}`);
  return response.json();
};
try {
  await control('faults', { qpsLimit: QUOTAS });
  const result = await sweepBench({
    pool,
    rows: ROWS,
    partitions: PARTITIONS,
    batchSize: BATCH,
    workers: WORKERS,
    kms: () => new TencentKms({ keyId: emulator.keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials }),
    kmsCalls: async () => ((await control('stats')) as { calls: Record<string, number> }).calls,
    log: (line) => console.error(line),
  });
  const stats = (await control('stats')) as { faults: Record<string, number> };
  const n = (x: number) => Math.round(x).toString();
  console.log(`sweep setup: ${result.rows} rows in ${result.partitions} partitions (${result.valueLength}-character values), KMS calls ${JSON.stringify(result.setupCalls)}; rotation of every partition ${JSON.stringify(result.rotateCalls)}`);
  console.log(`sweep floor (client-side batched UPDATE, same-size values, ${result.batchSize} rows a transaction): ${n(result.floorRowsPerSecond)} rows/s; client CPU ${result.floorCpuMicrosPerRow.toFixed(1)} us a row`);
  for (const s of result.sweeps) {
    const total = Object.values(s.kmsCalls).reduce((a, b) => a + b, 0);
    console.log(
      `sweep rotation, ${s.workers} worker(s): ${n(s.rowsPerSecond)} rows/s = ${s.ratioToFloor.toFixed(2)}x the floor; client CPU ${s.cpuMicrosPerRow.toFixed(1)} us a row; rows written ${s.written}, failed ${s.failed}; KMS calls ${total} ${JSON.stringify(s.kmsCalls)} for ${result.intermediateKeys} intermediate keys`,
    );
  }
  console.log(`emulator faults (throttled answers etc.): ${JSON.stringify(stats.faults)}`);
} finally {
  emulator.stop();
  await pool.end();
  server.stop();
}
