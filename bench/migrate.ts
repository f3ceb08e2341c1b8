/**
 * `npm run bench:migrate`: a live plaintext column encrypted on PostgreSQL under application
 * writes, with migration workers SIGKILLed at random (bench/migrate-run.ts). Prints exactly:
 *   migrate <R> rows under <W> writes/s: <N> rows/s per worker (<K> workers), plaintext left 0,
 *   lost updates 0, double-encrypted 0, strongest lock <LockMode>, kills <S>
 * Options: BENCH_MIGRATE_ROWS (1000000), BENCH_MIGRATE_WRITES (1000), BENCH_MIGRATE_WORKERS (one
 * per two cores, at least one: a worker is bound by its own CPU, sealing, and it needs a core of its
 * own beside PostgreSQL and the application's writes; more workers than that share the cores, so
 * the total rises but each worker's rate falls: on this 2-core machine, idle, 6,107 rows/s with 1
 * worker, 2 x 4,146 with 2), BENCH_MIGRATE_KILLS (20); KMS_ENVELOPE_PG_URL, else a throwaway cluster. To compare a worker's
 * restart with session 9's: BENCH_MIGRATE_BUNDLE=0 (children load dist/ module by module),
 * BENCH_MIGRATE_COUNT=1 (workers count the pending rows as they start), BENCH_MIGRATE_WARM=0 (no
 * key warming at start); BENCH_MIGRATE_ESTIMATE (6000): the rate per worker the kills are spread
 * for (lower it on a loaded machine so that they land over the whole run).
 * It also prints where the CPU went during the backfill (bench/migrate-cpu.ts: /proc, PostgreSQL on
 * this machine), by role and per backfilled row. To see how much of it is the harness's: the
 * application's writes as named statements, BENCH_MIGRATE_APP_NAMED (default 1, as an application
 * writing 1,000 rows a second would send them; 0: text, parsed and planned for each write, about
 * 40% more of its sessions' CPU); the lock sampler's period, BENCH_MIGRATE_LOCK_SAMPLE_MS (default 5).
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
    workers: num('BENCH_MIGRATE_WORKERS', Math.max(1, Math.floor(cpus().length / 2))),
    kills: num('BENCH_MIGRATE_KILLS', 20),
    bundle: num('BENCH_MIGRATE_BUNDLE', 1) === 1,
    countAtStart: num('BENCH_MIGRATE_COUNT', 0) === 1,
    warmAtStart: num('BENCH_MIGRATE_WARM', 1) === 1,
    estimatedRowsPerSecond: num('BENCH_MIGRATE_ESTIMATE', 6000),
    appNamedStatements: num('BENCH_MIGRATE_APP_NAMED', 1) === 1,
    lockSampleMs: num('BENCH_MIGRATE_LOCK_SAMPLE_MS', 5),
    dist: new URL('../../dist/', import.meta.url).href,
    log: (line) => console.log(line),
  });
  console.log(result.line);
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  server.stop();
}
