/**
 * The rotation-sweep measurement, shared by `npm run bench:sweep` (bench/sweep.ts: 100,000 rows,
 * the emulator in its own process with Tencent's quotas) and its small version in the tests
 * (test/bench-sweep.test.ts).
 *
 * Rows (id, tenant, email sealed under the key hierarchy, key_version) are written under version
 * 1 of each tenant's intermediate key, every tenant is rotated, and then, in the same run, over
 * identical copies of the table, in rounds over slices of the rows (floor, then each sweep):
 * - the floor: a client-side batched UPDATE walking the table in key order, `batchSize` rows per
 *   transaction (SELECT … FOR UPDATE, then one UPDATE … FROM (VALUES …)), writing into the sealed
 *   column random text of the same length as each value and into key_version a new number;
 * - the sweep: sweepPostgres() with rotationSweep(), one worker and then two, each with a fresh
 *   key hierarchy (a new process would have one), its KMS calls counted at the KMS.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { createKeyHierarchy } from '../src/hierarchy.ts';
import { createRecords, defineTable, rotationSweep } from '../src/records.ts';
import { type KeyProvider } from '../src/index.node.ts';
import { PostgresKeyStore } from '../src/hierarchy.ts';
import { sweepPostgres } from '../src/records.ts';

export interface SweepBenchOptions {
  pool: pg.Pool;
  rows: number;
  partitions: number;
  batchSize: number;
  /** A key provider: one per phase (its own connection pool and counters). */
  kms: () => KeyProvider;
  /** KMS calls by action, as the KMS counts them (the emulator's stats), cumulative. */
  kmsCalls: () => Promise<Record<string, number>>;
  /** Worker counts to run the sweep with; default [1, 2]. */
  workers?: number[];
  /** Rounds, each over its own slice of the rows (floor, then each sweep); default 10. */
  rounds?: number;
  log?: (line: string) => void;
}

export interface SweepBenchResult {
  rows: number;
  partitions: number;
  batchSize: number;
  valueLength: number;
  /** KMS calls to write the rows and to rotate every partition. */
  setupCalls: Record<string, number>;
  rotateCalls: Record<string, number>;
  /** Intermediate keys the sweep needs: the old and the new version of every partition. */
  intermediateKeys: number;
  /** Rows over the total time of the rounds. */
  floorRowsPerSecond: number;
  /** This process's CPU time (all its threads) per row of the floor. */
  floorCpuMicrosPerRow: number;
  /** ratioToFloor: the median over the rounds of (floor time / sweep time) for the round's slice. */
  sweeps: { workers: number; rowsPerSecond: number; ratioToFloor: number; cpuMicrosPerRow: number; kmsCalls: Record<string, number>; written: number; failed: number }[];
}

const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' } } });

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [action, n] of Object.entries(after)) if (n - (before[action] ?? 0) > 0) out[action] = n - (before[action] ?? 0);
  return out;
}

/** The floor: the same walk in key order and the same batched UPDATE, with values made client-side at no crypto cost. */
async function floor(pool: pg.Pool, table: string, batchSize: number, from: string, below: string): Promise<void> {
  const client = await pool.connect();
  try {
    let last: string | undefined;
    for (;;) {
      await client.query('BEGIN');
      const { rows } = await client.query(`SELECT id, email FROM ${table} WHERE id ${last === undefined ? '>=' : '>'} $2 AND id < $3 ORDER BY id LIMIT $1 FOR UPDATE`, [
        batchSize,
        last ?? from,
        below,
      ]);
      if (rows.length === 0) {
        await client.query('COMMIT');
        break;
      }
      const values: unknown[] = [];
      const tuples = (rows as { id: string; email: string }[]).map((r, i) => {
        const text = randomBytes(Math.ceil((r.email.length * 3) / 4)).toString('base64url').slice(0, r.email.length);
        values.push(r.id, text, 2);
        return i === 0 ? `($1::text, $2::text, $3::integer)` : `($${i * 3 + 1}, $${i * 3 + 2}, $${i * 3 + 3})`;
      });
      await client.query(`UPDATE ${table} AS t SET email = v.c1, key_version = v.c2 FROM (VALUES ${tuples.join(', ')}) AS v(c0, c1, c2) WHERE t.id = v.c0`, values);
      await client.query('COMMIT');
      last = (rows.at(-1) as { id: string }).id;
    }
  } finally {
    client.release();
  }
}

export async function sweepBench(options: SweepBenchOptions): Promise<SweepBenchResult> {
  const { pool, rows, partitions, batchSize } = options;
  const log = options.log ?? (() => {});
  const suffix = randomBytes(4).toString('hex');
  const keys = `bench_sweep_keys_${suffix}`;
  const source = `bench_sweep_${suffix}`;
  const store = () => new PostgresKeyStore({ client: pool, table: keys });
  const workerCounts = options.workers ?? [1, 2];
  const rounds = options.rounds ?? 10;
  const copies = [`${source}_floor`, ...workerCounts.map((w) => `${source}_w${w}`)];
  try {
    // Rows sealed under version 1 of each tenant's key.
    let calls = await options.kmsCalls();
    const writer = createKeyHierarchy({ store: store(), kms: options.kms() });
    const records = createRecords({ hierarchy: writer });
    await pool.query(`CREATE TABLE ${source} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, key_version INTEGER)`);
    let valueLength = 0;
    for (let i = 0; i < rows; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, rows - i) }, (_, j) => ({
        id: `0190a1b2-${String(i + j).padStart(8, '0')}`,
        tenant: `tenant-${(i + j) % partitions}`,
        email: `person.${String(i + j).padStart(8, '0')}@example.com`,
      }));
      const sealed = (await records.sealMany(customers, batch, { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
      valueLength = (sealed[0]!.email as string).length;
      const values = sealed.flatMap((r) => [r.id, r.tenant, r.email]);
      await pool.query(`INSERT INTO ${source} VALUES ${sealed.map((_, j) => `($${j * 3 + 1}, $${j * 3 + 2}, $${j * 3 + 3}, 1)`).join(', ')}`, values);
    }
    const setupCalls = delta(await options.kmsCalls(), calls);
    calls = await options.kmsCalls();
    for (let p = 0; p < partitions; p++) await writer.rotate(`tenant-${p}`);
    const rotateCalls = delta(await options.kmsCalls(), calls);
    await writer.close();
    for (const copy of copies) {
      await pool.query(`CREATE TABLE ${copy} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, key_version INTEGER)`);
      await pool.query(`INSERT INTO ${copy} SELECT * FROM ${source} ORDER BY id`);
      await pool.query(`CREATE INDEX ON ${copy} (key_version)`);
      await pool.query(`VACUUM ANALYZE ${copy}`);
    }
    log(`${rows} rows in ${partitions} partitions written (${valueLength} characters a value) and rotated`);

    // Rounds: in each, the floor and then each sweep over the next slice of the rows, so a change
    // in the machine's load hits them alike; ratios are per round, their median reported.
    const idOf = (i: number) => `0190a1b2-${String(i).padStart(8, '0')}`;
    const sliceRows = Math.ceil(rows / rounds);
    const floorSeconds: number[] = [];
    let floorCpuMicros = 0;
    const cpuMicros = (since: NodeJS.CpuUsage): number => {
      const used = process.cpuUsage(since);
      return used.user + used.system;
    };
    const sweepers = workerCounts.map((workers) => {
      const hierarchy = createKeyHierarchy({ store: store(), kms: options.kms() });
      return { workers, hierarchy, records: createRecords({ hierarchy }), seconds: [] as number[], cpuMicros: 0, kmsCalls: {} as Record<string, number>, written: 0, failed: 0 };
    });
    for (let r = 0; r < rounds; r++) {
      const from = idOf(r * sliceRows);
      const below = idOf(Math.min(rows, (r + 1) * sliceRows));
      let start = performance.now();
      let cpu = process.cpuUsage();
      await floor(pool, copies[0]!, batchSize, from, below);
      floorSeconds.push((performance.now() - start) / 1000);
      floorCpuMicros += cpuMicros(cpu);
      for (const [i, s] of sweepers.entries()) {
        const plan = rotationSweep(s.records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
        const before = await options.kmsCalls();
        start = performance.now();
        cpu = process.cpuUsage();
        const summary = await sweepPostgres(pool, { table: copies[i + 1]!, key: 'id', ...plan, pending: `${plan.pending} AND id >= '${from}' AND id < '${below}'`, batchSize, workers: s.workers });
        s.seconds.push((performance.now() - start) / 1000);
        s.cpuMicros += cpuMicros(cpu);
        for (const [action, n] of Object.entries(delta(await options.kmsCalls(), before))) s.kmsCalls[action] = (s.kmsCalls[action] ?? 0) + n;
        s.written += summary.written;
        s.failed += summary.failed;
      }
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const floorRowsPerSecond = rows / sum(floorSeconds);
    log(`floor: ${Math.round(floorRowsPerSecond)} rows/s, this process's CPU ${(floorCpuMicros / rows).toFixed(1)} us a row`);
    const sweeps: SweepBenchResult['sweeps'] = [];
    for (const s of sweepers) {
      await s.hierarchy.close();
      const rowsPerSecond = rows / sum(s.seconds);
      const ratioToFloor = median(s.seconds.map((t, r) => floorSeconds[r]! / t));
      sweeps.push({ workers: s.workers, rowsPerSecond, ratioToFloor, cpuMicrosPerRow: s.cpuMicros / rows, kmsCalls: s.kmsCalls, written: s.written, failed: s.failed });
      log(`sweep, ${s.workers} worker(s): ${Math.round(rowsPerSecond)} rows/s, ${ratioToFloor.toFixed(2)}x the floor (median of ${rounds} rounds), this process's CPU ${(s.cpuMicros / rows).toFixed(1)} us a row, KMS calls ${JSON.stringify(s.kmsCalls)}`);
    }
    return { rows, partitions, batchSize, valueLength, setupCalls, rotateCalls, intermediateKeys: 2 * partitions, floorRowsPerSecond, floorCpuMicrosPerRow: floorCpuMicros / rows, sweeps };
  } finally {
    for (const t of [source, ...copies, keys]) await pool.query(`DROP TABLE IF EXISTS ${t}`);
  }
}
