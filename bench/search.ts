/**
 * `npm run bench:search [-- --rows N] [-- --reuse] [-- --queries Q]`: range and prefix search on
 * PostgreSQL over N rows of one tenant (default 1,000,000): a date, an amount (decimal, scale 2)
 * and a name sealed, with range indexes on the date and the amount and a prefix index on the name
 * (bigint[] columns with GIN indexes). Keys warm. For each kind, Q queries (a range of 1% of the
 * amounts; a 3-letter name prefix), each timed from the query to the 100th exact match opened
 * (false positives opened and dropped within the time). Prints exactly
 *   search <kind> <R> rows: first 100 rows in A ms p50, B ms p95 (matched M rows, query tokens Q, tokens per value T)
 * with M the median number of rows matching a query (from the generated plaintext), Q the median
 * query tokens; then the index sizes in bytes per row. `--reuse` keeps the table between runs
 * (building it takes minutes): the values are a function of the row id, so a reused table is the
 * same table.
 */
import pg from 'pg';
import { LocalKms } from '../src/index.ts';
import { createKeyHierarchy, PostgresKeyStore } from '../src/hierarchy.ts';
import { createRecords, defineTable, type SearchSql } from '../src/records.ts';
import { searchSchema } from '../src/records/search-sql.ts';
import { startPostgres } from './postgres-process.ts';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
};
const ROWS = Number(arg('rows') ?? 1_000_000);
const QUERIES = Number(arg('queries') ?? 50);
const REUSE = process.argv.includes('--reuse');
const TABLE = 'kmse_bench_search';
const TENANT = 'tenant-bench';
const MASTER = Uint8Array.from({ length: 32 }, (_, i) => i + 1); // a fixed master key: a reused table opens in the next run

/** A value per row id, the same in every run: xorshift32 of the id. */
function rand(id: number, salt: number): number {
  let x = (id * 2654435761 + salt * 40503 + 1) >>> 0 || 1;
  for (let i = 0; i < 3; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
  }
  return x / 2 ** 32;
}
const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'su', 'ta', 'ri', 'vo', 'da', 'pe', 'zu', 'fo', 'gi', 'ha', 'ju', 'be', 'co', 'xi', 'wa', 'ye'];
const CENTS = 10_000_000; // amounts from 0.00 to 99999.99
const DAY = 86_400_000;
const DAY0 = Date.UTC(2015, 0, 1);
function valuesOf(id: number) {
  const cents = Math.floor(rand(id, 1) * CENTS);
  const name = [0, 1, 2].map((k) => SYLLABLES[Math.floor(rand(id, 10 + k) * SYLLABLES.length)]).join('');
  return { amount: `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`, cents, placed: new Date(DAY0 + Math.floor(rand(id, 2) * 3650) * DAY), name };
}

const orders = defineTable({
  name: 'orders',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: {
    placed: { type: 'date', search: { kind: 'range', acknowledgeLeakage: 'range', column: 'placed_tokens', levels: ['day', 'month', 'year'] } },
    amount: { type: 'decimal', scale: 2, search: { kind: 'range', acknowledgeLeakage: 'range', column: 'amount_tokens', levels: [6, 10, 14], maxQueryTokens: 96 } },
    name: { type: 'string', search: { kind: 'prefix', acknowledgeLeakage: 'prefix', column: 'name_tokens', minLength: 2, maxLength: 5, normalize: ['casefold'] } },
  },
});
const amountOnly = defineTable({ ...orders, columns: { amount: orders.columns.amount } });
const nameOnly = defineTable({ ...orders, columns: { name: orders.columns.name } });

const server = await startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: 2 });
// Keys in PostgreSQL beside the table, under a fixed master key: a reused table opens in the next run.
const store = new PostgresKeyStore({ client: pool, table: `${TABLE}_keys` });
const hierarchy = createKeyHierarchy({ store, kms: new LocalKms({ bench: MASTER }) });
const records = createRecords({ hierarchy });

async function build(): Promise<void> {
  const have = REUSE ? await pool.query(`SELECT count(*)::int AS n FROM ${TABLE}`).then((r) => r.rows[0].n as number, () => -1) : -1;
  if (have === ROWS) return void console.error(`reusing ${TABLE} (${ROWS} rows)`);
  await pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await pool.query(`CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, tenant text NOT NULL, placed text, amount text, name text, placed_tokens bigint[], amount_tokens bigint[], name_tokens bigint[])`);
  const started = Date.now();
  const BATCH = 2000;
  for (let from = 0; from < ROWS; from += BATCH) {
    const cols: unknown[][] = [[], [], [], [], [], [], [], []];
    const ids = Array.from({ length: Math.min(ROWS, from + BATCH) - from }, (_, k) => from + k);
    const sealed = await Promise.all(ids.map((id) => records.seal(orders, { id: String(id), tenant: TENANT, ...valuesOf(id) })));
    for (const [k, id] of ids.entries()) {
      const row = sealed[k] as Record<string, unknown>;
      [id, TENANT, row.placed, row.amount, row.name, row.placed_tokens, row.amount_tokens, row.name_tokens].forEach((x, i) => cols[i]!.push(Array.isArray(x) ? `{${x.join(',')}}` : x));
    }
    await pool.query(
      `INSERT INTO ${TABLE} SELECT a, b, c, d, e, f::bigint[], g::bigint[], h::bigint[] FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS u(a, b, c, d, e, f, g, h)`,
      cols,
    );
    if ((from / BATCH) % 50 === 0) console.error(`built ${from + BATCH} rows, ${Math.round((Date.now() - started) / 1000)} s`);
  }
  for (const column of ['placed_tokens', 'amount_tokens', 'name_tokens']) for (const sql of searchSchema('postgres', TABLE, column)) await pool.query(sql);
  await pool.query(`ANALYZE ${TABLE}`);
  console.error(`built ${ROWS} rows in ${Math.round((Date.now() - started) / 1000)} s`);
}

/** From the query to the 100th exact match opened; candidates are read 250 at a time. */
async function firstHundred(q: SearchSql, only: typeof amountOnly | typeof nameOnly, column: 'amount' | 'name'): Promise<number> {
  let kept = 0;
  for (let offset = 0; kept < 100; offset += 250) {
    const { rows } = await pool.query(`SELECT id, tenant, ${column} FROM ${TABLE} WHERE ${q.sql} LIMIT 250 OFFSET ${offset}`, [...q.params]);
    for (const row of rows) {
      const opened = records.openSync(only as never, { ...row, id: String(row.id) } as never) as Record<string, unknown>;
      if (q.matches(opened[column]) && ++kept === 100) break;
    }
    if (rows.length < 250) break;
  }
  return kept;
}

const median = (xs: number[], p = 0.5): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

async function run(kind: 'range' | 'prefix'): Promise<void> {
  const times: number[] = [];
  const tokens: number[] = [];
  const matched: number[] = [];
  for (let i = 0; i < QUERIES + 3; i++) {
    const started = performance.now();
    let q: SearchSql;
    let got: number;
    let want: number;
    if (kind === 'range') {
      const lo = Math.floor(rand(i, 99) * CENTS * 0.99);
      const hi = lo + CENTS / 100 - 1;
      const text = (c: number) => `${Math.floor(c / 100)}.${String(c % 100).padStart(2, '0')}`;
      q = await records.searchQuery(amountOnly, 'amount', { gte: text(lo), lte: text(hi) }, { partition: TENANT, dialect: 'postgres', from: TABLE });
      got = await firstHundred(q, amountOnly, 'amount');
      want = Math.round(ROWS / 100); // uniform amounts: 1% of the rows (counted exactly below for the first queries)
    } else {
      const prefix = SYLLABLES[i % SYLLABLES.length]! + SYLLABLES[(i * 7 + 3) % SYLLABLES.length]![0];
      q = await records.searchQuery(nameOnly, 'name', { startsWith: prefix }, { partition: TENANT, dialect: 'postgres', from: TABLE });
      got = await firstHundred(q, nameOnly, 'name');
      want = Math.round(ROWS / SYLLABLES.length ** 2 / 1);
    }
    const elapsed = performance.now() - started;
    if (got < Math.min(100, want / 2)) throw new Error(`query ${i} found ${got} rows`);
    if (i >= 3) {
      times.push(elapsed);
      tokens.push(q.tokens.length);
    }
    if (i < 8) {
      // The exact number of matches, from the generated plaintext (outside the time).
      let n = 0;
      for (let id = 0; id < ROWS; id++) if (q.matches(kind === 'range' ? valuesOf(id).amount : valuesOf(id).name)) n++;
      matched.push(n);
    }
  }
  const perValue = kind === 'range' ? 3 : 4;
  console.log(`search ${kind} ${ROWS} rows: first 100 rows in ${median(times).toFixed(1)} ms p50, ${median(times, 0.95).toFixed(1)} ms p95 (matched ${median(matched)} rows, query tokens ${median(tokens)}, tokens per value ${perValue})`);
}

async function sizes(): Promise<void> {
  const { rows } = await pool.query(
    `SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes FROM pg_class c WHERE c.relname LIKE '${TABLE}_%_tokens_gin' AND c.relkind = 'i' ORDER BY 1`,
  );
  const { rows: cols } = await pool.query(`SELECT avg(pg_column_size(amount_tokens))::int AS amount, avg(pg_column_size(placed_tokens))::int AS placed, avg(pg_column_size(name_tokens))::int AS name FROM (SELECT * FROM ${TABLE} LIMIT 10000) s`);
  const perRow = (bytes: string) => (Number(bytes) / ROWS).toFixed(1);
  console.log(`index sizes per row: ${rows.map((r) => `${r.name} ${perRow(r.bytes)} B`).join(', ')}; token columns ${cols[0].placed} B (date), ${cols[0].amount} B (amount), ${cols[0].name} B (name)`);
}

try {
  const reusing = REUSE && (await pool.query(`SELECT count(*)::int AS n FROM ${TABLE}`).then((r) => r.rows[0].n === ROWS, () => false));
  if (!reusing) await pool.query(`DROP TABLE IF EXISTS ${TABLE}, ${TABLE}_keys, ${TABLE}_keys_tombstones`);
  await records.warm([TENANT], [orders, amountOnly, nameOnly]);
  await build();
  await run('range');
  await run('prefix');
  await sizes();
} finally {
  await pool.end();
  server.stop();
}
