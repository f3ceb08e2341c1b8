/**
 * `npm run bench:scatter`: scattered reads. 100,000 rows (id, name, three sealed text fields of
 * 20-200 bytes, one blind index) in PostgreSQL; each read fetches 50 random ids with
 * `WHERE id = ANY($1)` and opens them with the record API's openMany, keys warm (a key hierarchy,
 * LocalKms). The same query alone (nothing opened) takes turns with it in the same process, so the
 * line compares the two under the same load:
 *
 *   scatter 50 rows x 3 fields: p50 A ms, p95 B ms (query alone p50 C ms, p95 D ms), kms calls K
 *
 * K counts the KMS calls made by the reads (after the warm-up). Flags: --rows N (default 100000),
 * --reads N (default 1000), --pg URL (default KMS_ENVELOPE_PG_URL, else a throwaway cluster).
 */
import { loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import pg from 'pg';
import { createKeyHierarchy, MemoryKeyStore } from '../src/hierarchy.ts';
import { type KeyProvider, LocalKms } from '../src/index.node.ts';
import { createRecords, defineTable } from '../src/records.ts';
import { startPostgres } from './postgres-process.ts';
import { benchRows } from './records-db-run.ts';

const flag = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const ROWS = Number(flag('--rows') ?? 100_000);
const READS = Number(flag('--reads') ?? 1_000);
const PICK = 50;
const BATCH = 1_000;
const TABLE = 'bench_scatter';

const users = defineTable({
  name: 'users',
  primaryKey: 'id',
  partition: 'tenant-1',
  columns: { a: { type: 'string', index: { column: 'idx', bits: 128 } }, b: { type: 'string' }, c: { type: 'string' } },
});

const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
const percentile = (xs: readonly number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const ms = (x: number): string => x.toFixed(2);

const startLoad = load();
const given = flag('--pg');
const server = given ? { url: given, stop: () => {} } : await startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: 2 });
let kmsCalls = 0;
const kms = LocalKms.generate();
const counting: KeyProvider = {
  id: kms.id,
  generateDataKey: (r) => (kmsCalls++, kms.generateDataKey(r)),
  decryptDataKey: (r) => (kmsCalls++, kms.decryptDataKey(r)),
};
const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: counting }) });
try {
  let rows: ReturnType<typeof benchRows> | undefined = benchRows(ROWS);
  await pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await pool.query(`CREATE TABLE ${TABLE} (id TEXT PRIMARY KEY, name TEXT, a TEXT, b TEXT, c TEXT, idx TEXT)`);
  for (let i = 0; i < ROWS; i += BATCH) {
    const sealed = (await records.sealMany(users, rows!.slice(i, i + BATCH), { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    const values: unknown[] = [];
    const tuples = sealed.map((r, j) => {
      values.push(r.id, r.name, r.a, r.b, r.c, r.idx);
      return `($${j * 6 + 1}, $${j * 6 + 2}, $${j * 6 + 3}, $${j * 6 + 4}, $${j * 6 + 5}, $${j * 6 + 6})`;
    });
    await pool.query(`INSERT INTO ${TABLE} (id, name, a, b, c, idx) VALUES ${tuples.join(', ')}`, values);
  }
  await pool.query(`ANALYZE ${TABLE}`);
  await records.warm(['tenant-1'], [users]);
  // The reads need only the ids: the 100,000 plaintext rows and the loading's garbage are dropped
  // and collected before the reads, so that no collection owed to the loading lands in them.
  const ids = rows.map((r) => r.id);
  rows = undefined;
  (globalThis as { gc?: () => void }).gc?.();

  const pickIds = (): string[] => Array.from({ length: PICK }, () => ids[Math.floor(Math.random() * ROWS)]!);
  const query = (ids: string[]) => pool.query(`SELECT id, name, a, b, c, idx FROM ${TABLE} WHERE id = ANY($1)`, [ids]);
  // Where the collections land: each GC's start is matched to the timed read (or query alone) it fell in.
  const spans: { start: number; end: number; kind: 'read' | 'alone' }[] = [];
  const collections: { start: number; duration: number }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) collections.push({ start: e.startTime, duration: e.duration });
  });
  const read = async (): Promise<number> => {
    const ids = pickIds();
    const start = performance.now();
    const { rows: found } = await query(ids);
    const opened = await records.openMany(users, found, { failFast: true });
    const took = performance.now() - start;
    spans.push({ start, end: start + took, kind: 'read' });
    if (opened.length !== found.length || !opened.every((r) => r.ok && typeof r.value.c === 'string')) throw new Error('a scattered read did not open');
    return took;
  };
  const alone = async (): Promise<number> => {
    const ids = pickIds();
    const start = performance.now();
    await query(ids);
    const took = performance.now() - start;
    spans.push({ start, end: start + took, kind: 'alone' });
    return took;
  };
  // Warm-up (the JIT, the connections, the server's cache), then the reads taking turns with the query alone.
  for (let i = 0; i < 50; i++) {
    await read();
    await alone();
  }
  kmsCalls = 0;
  spans.length = 0;
  observer.observe({ entryTypes: ['gc'] });
  const withOpen: number[] = [];
  const queryOnly: number[] = [];
  for (let i = 0; i < READS; i++) {
    if (i % 2) {
      withOpen.push(await read());
      queryOnly.push(await alone());
    } else {
      queryOnly.push(await alone());
      withOpen.push(await read());
    }
  }
  console.log(`# ${ROWS} rows, ${READS} reads, Node ${process.version}; load average ${startLoad} at the start, ${load()} at the end`);
  console.log(
    `scatter ${PICK} rows x 3 fields: p50 ${ms(percentile(withOpen, 0.5))} ms, p95 ${ms(percentile(withOpen, 0.95))} ms ` +
      `(query alone p50 ${ms(percentile(queryOnly, 0.5))} ms, p95 ${ms(percentile(queryOnly, 0.95))} ms), kms calls ${kmsCalls}`,
  );
  for (const e of observer.takeRecords()) collections.push({ start: e.startTime, duration: e.duration });
  observer.disconnect();
  const inKind = (kind: 'read' | 'alone') => collections.filter((c) => spans.some((sp) => sp.kind === kind && c.start >= sp.start && c.start < sp.end));
  const gcLine = (list: { duration: number }[]) => `${list.length} (${ms(list.reduce((n, c) => n + c.duration, 0))} ms)`;
  console.log(`# collections during the reads: ${gcLine(collections)}; starting within a timed read ${gcLine(inKind('read'))}, within a query alone ${gcLine(inKind('alone'))}`);
  await pool.query(`DROP TABLE ${TABLE}`);
} finally {
  await pool.end();
  server.stop();
}
