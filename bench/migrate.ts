/**
 * `npm run bench:migrate`: a live plaintext column encrypted on PostgreSQL under application
 * writes, with migration workers SIGKILLed at random (bench/migrate-run.ts). Prints exactly:
 *   migrate <R> rows under <W> writes/s: <N> rows/s per worker (<K> workers), plaintext left 0,
 *   lost updates 0, double-encrypted 0, strongest lock <LockMode>, kills <S>
 * Options: BENCH_MIGRATE_ROWS (1000000), BENCH_MIGRATE_WRITES (1000), BENCH_MIGRATE_WORKERS (2),
 * BENCH_MIGRATE_KILLS (20); KMS_ENVELOPE_PG_URL, else a throwaway cluster.
 */
import { cpus, loadavg } from 'node:os';
import { runMigrate } from './migrate-run.ts';
import { startPostgres } from './postgres-process.ts';

const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const server = await startPostgres();
try {
  console.log(`node ${process.version}, ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const result = await runMigrate({
    kind: 'postgres',
    url: server.url,
    rows: num('BENCH_MIGRATE_ROWS', 1_000_000),
    writesPerSecond: num('BENCH_MIGRATE_WRITES', 1000),
    workers: num('BENCH_MIGRATE_WORKERS', 2),
    kills: num('BENCH_MIGRATE_KILLS', 20),
    dist: new URL('../../dist/', import.meta.url).href,
    log: (line) => console.log(line),
  });
  console.log(result.line);
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  server.stop();
}
