/**
 * `npm run bench:search [-- --rows N] [-- --reuse] [-- --queries Q] [-- --explain]`: range and
 * prefix search on PostgreSQL over N rows of one tenant (default 1,000,000): a date, an amount
 * (decimal, scale 2) and a name sealed, with range indexes on the date and the amount and a prefix
 * index on the name (bigint[] columns with GIN indexes). Keys warm. For each kind, Q queries (a
 * range of 1% of the amounts; a 3-letter name prefix), each timed from the query to the 100th exact
 * match opened (false positives opened and dropped within the time). Prints exactly
 *   search <kind> <R> rows: first 100 rows in A ms p50, B ms p95 (matched M rows, query tokens Q, tokens per value T)
 * with M the median number of rows matching a query (from the generated plaintext), Q the median
 * query tokens; then the CPU time of this process per query, and the index sizes in bytes per row.
 * `--explain` prints EXPLAIN (ANALYZE, BUFFERS) of each kind's first query. `--reuse` keeps the
 * table between runs (building it takes minutes): the values are a function of the row id, so a
 * reused table is the same table.
 *
 * A query reads as an application would: `SELECT id, tenant, <column> … WHERE <searchQuery's sql>`
 * with searchQuery's `limit: 100` (the database stops at the 100th candidate), then
 * records.openMatching on the rows; when fewer than 100 of them match (false positives from
 * truncated tokens or buckets at the range's edges), the next page (`offset`), twice as long.
 *
 * The build: `--build-processes P` (default the number of CPUs) processes seal and insert a share
 * of the rows each (multi-row INSERTs of 5,000 rows from unnest() of one array per column), into
 * the table without indexes; then the GIN indexes are built once over the loaded rows (with
 * maintenance_work_mem at 256 MB, so the build sorts in memory), and the table is analysed.
 */
import { fork } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import pg from 'pg';
import type { SearchSql } from '../src/records.ts';
import { searchSchema } from '../src/records/search-sql.ts';
import { startPostgres } from './postgres-process.ts';
import { amountOnly, amountText, benchRecords, CENTS, insertRows, nameOnly, orders, rand, SYLLABLES, TABLE, TENANT, valuesOf } from './search-data.ts';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
};
const ROWS = Number(arg('rows') ?? 1_000_000);
const QUERIES = Number(arg('queries') ?? 50);
const REUSE = process.argv.includes('--reuse');
const EXPLAIN = process.argv.includes('--explain');
const PROCESSES = Number(arg('build-processes') ?? cpus().length);
/** A build process: `--build-part FROM:TO` seals and inserts those rows, then exits. */
const PART = arg('build-part');
const WANT = 100;

async function buildPart(part: string): Promise<void> {
  const [from, to] = part.split(':').map(Number) as [number, number];
  const pool = new pg.Pool({ connectionString: process.env.KMS_ENVELOPE_PG_URL, max: 1 });
  const records = benchRecords(pool);
  try {
    // Kept warm: sealSync needs the partition's active version in memory, which a one-off warm
    // remembers for the hierarchy's activeTtlMs (60 s), shorter than a load on a busy machine.
    await records.warm([TENANT], [orders]);
    await insertRows(pool, records, from, to, (rows) => process.send!({ rows }));
  } finally {
    records.stopWarm();
    await records.hierarchy.close();
    await pool.end();
  }
}

/** Loads the rows with PROCESSES processes, then builds the GIN indexes over them. */
async function build(pool: pg.Pool, url: string): Promise<void> {
  await pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await pool.query(`CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, tenant text NOT NULL, placed text, amount text, name text, placed_tokens bigint[], amount_tokens bigint[], name_tokens bigint[])`);
  const started = Date.now();
  let done = 0;
  let reported = 0;
  const share = Math.ceil(ROWS / PROCESSES);
  const parts = Array.from({ length: PROCESSES }, (_, k) => [k * share, Math.min(ROWS, (k + 1) * share)] as const).filter(([a, z]) => a < z);
  await Promise.all(
    parts.map(
      ([from, to]) =>
        new Promise<void>((resolve, reject) => {
          const child = fork(process.argv[1]!, ['--build-part', `${from}:${to}`], { env: { ...process.env, KMS_ENVELOPE_PG_URL: url } });
          child.on('message', (m: { rows: number }) => {
            done += m.rows;
            if (done - reported >= 100_000) console.error(`loaded ${(reported = done)} rows, ${Math.round((Date.now() - started) / 1000)} s`);
          });
          child.on('error', reject);
          child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`build process ${from}:${to} exited with ${code}`))));
        }),
    ),
  );
  const loaded = Date.now();
  await pool.query(`SET maintenance_work_mem = '256MB'`);
  for (const column of ['placed_tokens', 'amount_tokens', 'name_tokens']) for (const sql of searchSchema('postgres', TABLE, column)) await pool.query(sql);
  await pool.query(`RESET maintenance_work_mem`);
  await pool.query(`VACUUM ANALYZE ${TABLE}`);
  console.error(`built ${ROWS} rows in ${Math.round((Date.now() - started) / 1000)} s (${PROCESSES} processes loading: ${Math.round((loaded - started) / 1000)} s; GIN indexes and VACUUM ANALYZE: ${Math.round((Date.now() - loaded) / 1000)} s)`);
}

type Records = ReturnType<typeof benchRecords>;
type ReadTable = typeof amountOnly | typeof nameOnly;

type Page = { limit: number; offset: number };

/**
 * From the query to the 100th exact match opened, as an application reads: pages of candidates
 * (the first of 100 rows, then each twice as long: searchQuery's `limit` and `offset`), each
 * opened with openMatching.
 */
async function firstMatches(pool: pg.Pool, records: Records, query: (page: Page) => Promise<SearchSql>, table: ReadTable, column: 'amount' | 'name'): Promise<{ q: SearchSql; got: number }> {
  let kept = 0;
  let first: SearchSql | undefined;
  for (let offset = 0, limit = WANT; kept < WANT; offset += limit, limit *= 2) {
    const q = await query({ limit, offset });
    first ??= q;
    const { rows } = await pool.query(`SELECT id, tenant, ${column} FROM ${TABLE} WHERE ${q.sql}`, [...q.params]);
    const matching = await records.openMatching(table as never, q, rows.map((row) => ({ ...row, id: String(row.id) })) as never);
    kept += matching.length;
    if (rows.length < limit) break;
  }
  return { q: first!, got: Math.min(kept, WANT) };
}

async function explain(pool: pg.Pool, q: SearchSql, column: string): Promise<void> {
  const { rows } = await pool.query(`EXPLAIN (ANALYZE, BUFFERS) SELECT id, tenant, ${column} FROM ${TABLE} WHERE ${q.sql}`, [...q.params]);
  console.error(rows.map((r) => r['QUERY PLAN']).join('\n'));
}

const quantile = (xs: number[], p = 0.5): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

/** Query i of a kind: a range of 1% of the amounts, or a 3-letter name prefix. */
function queryOf(records: Records, kind: 'range' | 'prefix', i: number, page: Page): Promise<SearchSql> {
  const options = { partition: TENANT, dialect: 'postgres', from: TABLE, ...page } as const;
  if (kind === 'range') {
    const lo = Math.floor(rand(i, 99) * CENTS * 0.99);
    return records.searchQuery(amountOnly, 'amount', { gte: amountText(lo), lte: amountText(lo + CENTS / 100 - 1) }, options);
  }
  const prefix = SYLLABLES[i % SYLLABLES.length]! + SYLLABLES[(i * 7 + 3) % SYLLABLES.length]![0];
  return records.searchQuery(nameOnly, 'name', { startsWith: prefix }, options);
}

const plaintexts = new Map<string, string[]>();
/** A column's plaintext values, generated once. */
function plaintext(column: 'amount' | 'name'): string[] {
  let values = plaintexts.get(column);
  if (!values) plaintexts.set(column, (values = Array.from({ length: ROWS }, (_, id) => valuesOf(id)[column])));
  return values;
}

async function run(pool: pg.Pool, records: Records, kind: 'range' | 'prefix'): Promise<void> {
  const times: number[] = [];
  const cpu: number[] = [];
  const tokens: number[] = [];
  const matched: number[] = [];
  const [table, column] = kind === 'range' ? ([amountOnly, 'amount'] as const) : ([nameOnly, 'name'] as const);
  const checks: { i: number; q: SearchSql; got: number }[] = [];
  for (let i = 0; i < QUERIES + 3; i++) {
    const cpuStarted = process.cpuUsage();
    const started = performance.now();
    const { q, got } = await firstMatches(pool, records, (page) => queryOf(records, kind, i, page), table, column);
    const elapsed = performance.now() - started;
    const used = process.cpuUsage(cpuStarted);
    if (EXPLAIN && i === 0) await explain(pool, q, column);
    if (i < 8) checks.push({ i, q, got });
    if (i < 3) continue; // warm-up
    times.push(elapsed);
    cpu.push((used.user + used.system) / 1000);
    tokens.push(q.tokens.length);
  }
  // The exact number of matches of the first 8 queries, from the generated plaintext: after the
  // timed loop, so the garbage of a filter over every row never lands in a timed query.
  for (const { i, q, got } of checks) {
    const n = plaintext(column).filter((value) => q.matches(value)).length;
    matched.push(n);
    if (got < Math.min(WANT, n)) throw new Error(`query ${i} found ${got} rows of ${n}`);
  }
  const perValue = kind === 'range' ? 3 : 4;
  console.log(`search ${kind} ${ROWS} rows: first 100 rows in ${quantile(times).toFixed(1)} ms p50, ${quantile(times, 0.95).toFixed(1)} ms p95 (matched ${quantile(matched)} rows, query tokens ${quantile(tokens)}, tokens per value ${perValue})`);
  console.log(`  CPU time of this process per ${kind} query: ${quantile(cpu).toFixed(1)} ms p50, ${quantile(cpu, 0.95).toFixed(1)} ms p95`);
}

async function sizes(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query(
    `SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes FROM pg_class c WHERE c.relname LIKE '${TABLE}_%_tokens_gin' AND c.relkind = 'i' ORDER BY 1`,
  );
  const { rows: cols } = await pool.query(`SELECT avg(pg_column_size(amount_tokens))::int AS amount, avg(pg_column_size(placed_tokens))::int AS placed, avg(pg_column_size(name_tokens))::int AS name FROM (SELECT * FROM ${TABLE} LIMIT 10000) s`);
  const { rows: heap } = await pool.query(`SELECT pg_relation_size('${TABLE}') AS bytes`);
  const perRow = (bytes: string) => (Number(bytes) / ROWS).toFixed(1);
  console.log(`index sizes per row: ${rows.map((r) => `${r.name} ${perRow(r.bytes)} B`).join(', ')}; token columns ${cols[0].placed} B (date), ${cols[0].amount} B (amount), ${cols[0].name} B (name); the table ${perRow(heap[0].bytes)} B`);
}

async function main(): Promise<void> {
  const server = await startPostgres();
  const pool = new pg.Pool({ connectionString: server.url, max: 2 });
  const records = benchRecords(pool);
  try {
    const have = REUSE ? await pool.query(`SELECT count(*)::int AS n FROM ${TABLE}`).then((r) => r.rows[0].n as number, () => -1) : -1;
    if (have !== ROWS) await pool.query(`DROP TABLE IF EXISTS ${TABLE}, ${TABLE}_keys, ${TABLE}_keys_tombstones`);
    await records.warm([TENANT], [orders, amountOnly, nameOnly]);
    if (have === ROWS) console.error(`reusing ${TABLE} (${ROWS} rows)`);
    else await build(pool, server.url);
    await run(pool, records, 'range');
    await run(pool, records, 'prefix');
    await sizes(pool);
    console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    await records.hierarchy.close();
    await pool.end();
    server.stop();
  }
}

await (PART ? buildPart(PART) : main());
