/**
 * Range and prefix search on real databases (README "Range and prefix search", FORMAT.md §11a):
 * PostgreSQL (bigint[] with a GIN index, `&&`) and SQLite (a token table kept by triggers). Every
 * query returns exactly the rows a plaintext query returns (property test over random rows and
 * conditions, bounds included), never another tenant's; after a re-index to a new version; after
 * shredding a tenant. A database writer who copies or deletes tokens: the exact filter drops a
 * surfaced row; a hidden row is hidden (README: not protected).
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createRecords, defineTable } from '../../src/records/records.ts';
import type { SearchCondition } from '../../src/records/search-index.ts';
import { searchSchema, type SearchDialect } from '../../src/records/search-sql.ts';
import type { SearchSql } from '../../src/records/record-search.ts';
import { searchReindexSweep, type RecordSweepPlan, type SweepSummary } from '../../src/records/sweep.ts';
import { sweepPostgres } from '../../src/records/sql/postgres.ts';
import { sweepSqlite } from '../../src/records/sql/sqlite.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

function ordersTable(storage: 'array' | 'json', { version = 1, bits = 16 } = {}) {
  const common = { bits, version, storage } as const;
  return defineTable({
    name: 'orders',
    primaryKey: 'id',
    partition: { column: 'tenant' },
    columns: {
      amount: { type: 'bigint', search: { kind: 'range', acknowledgeLeakage: 'range', column: 'amount_tokens', levels: [0, 3, 6], bounds: { min: -100n, max: 100n }, ...common } },
      placed: { type: 'date', search: { kind: 'range', acknowledgeLeakage: 'range', column: 'placed_tokens', levels: ['day', 'month', 'year'], bounds: { min: new Date(BASE - 100 * DAY), max: new Date(BASE + 200 * DAY) }, ...common } },
      price: { type: 'decimal', scale: 2, search: { kind: 'range', acknowledgeLeakage: 'range', column: 'price_tokens', levels: [2, 6], ...common } },
      name: { type: 'string', search: { kind: 'prefix', acknowledgeLeakage: 'prefix', column: 'name_tokens', minLength: 1, maxLength: 4, normalize: ['casefold'], ...common } },
    },
  });
}
type Orders = ReturnType<typeof ordersTable>;
const COLUMNS = ['id', 'tenant', 'amount', 'placed', 'price', 'name', 'amount_tokens', 'placed_tokens', 'price_tokens', 'name_tokens'];

interface Db {
  dialect: SearchDialect;
  table: string;
  storage: 'array' | 'json';
  run(sql: string, params?: unknown[]): Promise<void>;
  all(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  sweep(plan: RecordSweepPlan): Promise<SweepSummary>;
  addTokens(column: string): Promise<void>;
}

let server: PostgresServer;
let pool: pg.Pool;
const dropped: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 2 });
});
afterAll(async () => {
  for (const t of dropped) await pool.query(`DROP TABLE IF EXISTS ${t}`);
  await pool.end();
  await server.stop();
});

async function postgresDb(): Promise<Db> {
  const table = uniqueTable('kmse_search');
  dropped.push(table);
  await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, amount TEXT, placed TEXT, price TEXT, name TEXT)`);
  for (const c of ['amount_tokens', 'placed_tokens', 'price_tokens', 'name_tokens']) for (const s of searchSchema('postgres', table, c)) await pool.query(s);
  return {
    dialect: 'postgres',
    table,
    storage: 'array',
    run: async (sql, params = []) => void (await pool.query(sql, params)),
    all: async (sql, params = []) => (await pool.query(sql, params)).rows,
    sweep: (plan) => sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 7 }),
    addTokens: async (c) => {
      for (const s of searchSchema('postgres', table, c)) await pool.query(s);
    },
  };
}

function sqliteDb(): Db {
  const db = new Database(':memory:');
  const table = 'orders_sql';
  db.exec(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, amount TEXT, placed TEXT, price TEXT, name TEXT)`);
  for (const c of ['amount_tokens', 'placed_tokens', 'price_tokens', 'name_tokens']) {
    db.exec(`ALTER TABLE ${table} ADD COLUMN ${c} TEXT`);
    for (const s of searchSchema('sqlite', table, c)) db.exec(s);
  }
  return {
    dialect: 'sqlite',
    table,
    storage: 'json',
    run: async (sql, params = []) => void db.prepare(sql).run(...params),
    all: async (sql, params = []) => db.prepare(sql).all(...params) as Record<string, unknown>[],
    sweep: (plan) => sweepSqlite(db, { table, key: 'id', ...plan, batchSize: 7 }),
    addTokens: async (c) => {
      db.exec(`ALTER TABLE ${table} ADD COLUMN ${c} TEXT`);
      for (const s of searchSchema('sqlite', table, c)) db.exec(s);
    },
  };
}

async function insert(db: Db, rows: Record<string, unknown>[]): Promise<void> {
  for (const r of rows) {
    const marks = COLUMNS.map((_, i) => (db.dialect === 'postgres' ? `$${i + 1}` : '?')).join(', ');
    await db.run(`INSERT INTO ${db.table} (${COLUMNS.join(', ')}) VALUES (${marks})`, COLUMNS.map((c) => r[c] ?? null));
  }
}

async function search(db: Db, records: ReturnType<typeof createRecords>, table: Orders, column: 'amount' | 'placed' | 'price' | 'name', condition: SearchCondition, partition = 'acme') {
  const query = await records.searchQuery(table, column, condition, { partition, dialect: db.dialect, from: db.table });
  const candidates = await db.all(`SELECT ${COLUMNS.join(', ')} FROM ${db.table} WHERE ${query.sql}`, [...query.params]);
  return { query, candidates, found: await records.openMatching(table, query, candidates as never) };
}

const DAY = 86_400_000;
const BASE = Date.UTC(2023, 11, 20);
const plainRow = (i: number, tenant: string, amount: number, day: number, cents: number, name: string) => ({
  id: `${tenant}-${String(i).padStart(4, '0')}`,
  tenant,
  amount: BigInt(amount),
  placed: new Date(BASE + day * DAY + (i % 5) * 3_600_000),
  price: `${cents < 0 ? '-' : ''}${Math.floor(Math.abs(cents) / 100)}.${String(Math.abs(cents) % 100).padStart(2, '0')}`,
  name,
});
const cents = (price: string): number => Math.round(Number(price) * 100);
const inRange = (x: number, c: { gte?: number; gt?: number; lte?: number; lt?: number }) =>
  (c.gte === undefined || x >= c.gte) && (c.gt === undefined || x > c.gt) && (c.lte === undefined || x <= c.lte) && (c.lt === undefined || x < c.lt);

const rowArb = fc.record({ amount: fc.integer({ min: -70, max: 70 }), day: fc.integer({ min: 0, max: 80 }), cents: fc.integer({ min: -3000, max: 3000 }), name: fc.string({ unit: fc.constantFrom('a', 'B', 'b', 'é', 'z'), maxLength: 6 }) });
// amount and placed declare bounds, so their queries may leave an end open; price's give both.
const boundsArb = fc.record({ lo: fc.integer({ min: -80, max: 80 }), span: fc.integer({ min: 0, max: 90 }), gt: fc.boolean(), lt: fc.boolean(), open: fc.constantFrom('none', 'low', 'high', 'none') });
const condition = (b: { lo: number; span: number; gt: boolean; lt: boolean; open: string }, scale = 1) => {
  const c: Record<string, number> = {};
  if (b.open !== 'low') c[b.gt ? 'gt' : 'gte'] = b.lo * scale;
  if (b.open !== 'high') c[b.lt ? 'lt' : 'lte'] = (b.lo + b.span) * scale;
  return c;
};

for (const kind of ['postgres', 'sqlite'] as const) {
  describe(`range and prefix search on ${kind}`, () => {
    const kms = LocalKms.generate();
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
    const records = createRecords({ hierarchy });
    const open = async () => (kind === 'postgres' ? postgresDb() : sqliteDb());

    it('a reader MUST open every candidate and keep only the rows whose value meets the condition: every query returns exactly what a plaintext query returns, boundaries included (property)', async () => {
      const db = await open();
      const table = ordersTable(db.storage);
      await fc.assert(
        fc.asyncProperty(fc.array(rowArb, { minLength: 3, maxLength: 24 }), boundsArb, boundsArb, fc.string({ unit: fc.constantFrom('a', 'b', 'B', 'é'), minLength: 1, maxLength: 5 }), async (rows, b1, b2, term) => {
          await db.run(`DELETE FROM ${db.table}`);
          const plain = rows.map((r, i) => plainRow(i, 'acme', r.amount, r.day, r.cents, r.name));
          await insert(db, await Promise.all(plain.map((r) => records.seal(table, r))));
          const ids = (found: Record<string, unknown>[]) => found.map((r) => r.id).sort();
          const want = (keep: (r: (typeof plain)[number]) => boolean) => plain.filter(keep).map((r) => r.id).sort();

          const amount = condition(b1);
          expect(ids((await search(db, records, table, 'amount', amount)).found), JSON.stringify(amount)).toEqual(want((r) => inRange(Number(r.amount), amount)));
          const days = condition(b2);
          const dates = Object.fromEntries(Object.entries(days).map(([k, d]) => [k, new Date(BASE + d * DAY)]));
          expect(ids((await search(db, records, table, 'placed', dates)).found)).toEqual(want((r) => inRange(r.placed.getTime(), Object.fromEntries(Object.entries(dates).map(([k, d]) => [k, d.getTime()])))));
          const price = Object.fromEntries(Object.entries(condition({ ...b1, open: 'none' }, 37)).map(([k, c]) => [k, (c / 100).toFixed(2)]));
          expect(ids((await search(db, records, table, 'price', price)).found)).toEqual(want((r) => inRange(cents(r.price), Object.fromEntries(Object.entries(price).map(([k, p]) => [k, cents(p)])))));
          expect(ids((await search(db, records, table, 'name', { startsWith: term })).found)).toEqual(want((r) => r.name.toLowerCase().startsWith(term.toLowerCase())));
        }),
        { numRuns: 8 },
      );
    });

    it("another tenant's rows with the same values share no token and are never returned", async () => {
      const db = await open();
      const table = ordersTable(db.storage, { bits: 32 });
      const values = Array.from({ length: 12 }, (_, i) => [i * 5, i, i * 100, `name${i}`] as const);
      for (const tenant of ['acme', 'globex']) await insert(db, await Promise.all(values.map(([a, d, c, n], i) => records.seal(table, plainRow(i, tenant, a, d, c, n)))));
      const { query, candidates, found } = await search(db, records, table, 'amount', { gte: 0, lte: 60 });
      expect(found.map((r) => r.tenant)).toEqual(Array(12).fill('acme'));
      expect(candidates.every((r) => r.tenant === 'acme')).toBe(true);
      // Without the partition clause the tokens alone select no globex row.
      const tokenOnly = query.sql.replace(/^"tenant" = (\$1|\?) AND /, '');
      const params = query.params.slice(1);
      const renumbered = db.dialect === 'postgres' ? tokenOnly.replaceAll('$2', '$1') : tokenOnly;
      const all = await db.all(`SELECT tenant FROM ${db.table} WHERE ${renumbered}`, [...params]);
      expect(all.length).toBe(12);
      expect(all.every((r) => r.tenant === 'acme')).toBe(true);
    });

    it('after a re-index to version 2 (tokens from the opened values, sealed values untouched) queries are exact, and no version-1 token is left', async () => {
      const db = await open();
      const v1 = ordersTable(db.storage, { bits: 32 });
      const v2 = ordersTable(db.storage, { bits: 32, version: 2 });
      const plain = Array.from({ length: 20 }, (_, i) => plainRow(i, 'acme', i * 3 - 30, i * 2, i * 50, `n${i % 3}x${i}`));
      await insert(db, await Promise.all(plain.map((r) => records.seal(v1, r))));
      await records.warm(['acme'], [v2]);
      const stored = await db.all(`SELECT ${COLUMNS.join(', ')} FROM ${db.table} ORDER BY id`);
      for (const row of stored) {
        const resealed = records.resealSync(v2, row as never) as Record<string, unknown>;
        const tokens = ['amount_tokens', 'placed_tokens', 'price_tokens', 'name_tokens'];
        const marks = tokens.map((c, i) => `${c} = ${db.dialect === 'postgres' ? `$${i + 1}` : '?'}`).join(', ');
        await db.run(`UPDATE ${db.table} SET ${marks} WHERE id = ${db.dialect === 'postgres' ? '$5' : '?'}`, [...tokens.map((c) => resealed[c]), row.id]);
      }
      const { found } = await search(db, records, v2, 'amount', { gt: -10, lte: 12 });
      expect(found.map((r) => r.id).sort()).toEqual(plain.filter((r) => r.amount > -10n && r.amount <= 12n).map((r) => r.id));
      const old = await search(db, records, v1, 'amount', { gt: -10, lte: 12 });
      expect(old.candidates).toEqual([]);
      expect((await search(db, records, v2, 'name', { startsWith: 'N1' })).found.map((r) => r.name).sort()).toEqual(plain.filter((r) => r.name.startsWith('n1')).map((r) => r.name).sort());
    });

    it('searchReindexSweep builds a new version into a new token column from the opened values; queries through it are exact', async () => {
      const db = await open();
      const v1 = ordersTable(db.storage, { bits: 32 });
      const plain = Array.from({ length: 25 }, (_, i) => plainRow(i, i % 4 ? 'acme' : 'globex', i * 3 - 30, i * 2, i * 50, `n${i}`));
      await insert(db, await Promise.all(plain.map((r) => records.seal(v1, r))));
      await db.addTokens('amount_tokens_v2');
      const amount = { type: 'bigint', search: { kind: 'range', acknowledgeLeakage: 'range', column: 'amount_tokens_v2', levels: [0, 4], bits: 32, version: 2, storage: db.storage } } as const;
      const v2 = defineTable({ ...v1, columns: { ...v1.columns, amount } });
      const summary = await db.sweep(searchReindexSweep(records, v2, 'amount', 'range'));
      expect(summary).toMatchObject({ written: 25, failed: 0 });
      expect(await db.sweep(searchReindexSweep(records, v2, 'amount', 'range'))).toMatchObject({ written: 0 }); // the marker: nothing left
      const { found } = await search(db, records, v2 as unknown as Orders, "amount", { gte: -12, lt: 20 });
      expect(found.map((r) => r.id).sort()).toEqual(plain.filter((r) => r.tenant === 'acme' && r.amount >= -12n && r.amount < 20n).map((r) => r.id));
    });

    it('a writer who copies tokens surfaces a row the exact filter drops; one who deletes tokens hides a row (not protected)', async () => {
      const db = await open();
      const table = ordersTable(db.storage, { bits: 32 });
      const plain = [plainRow(0, 'acme', 10, 1, 100, 'alice'), plainRow(1, 'acme', 50, 2, 200, 'bob')];
      await insert(db, await Promise.all(plain.map((r) => records.seal(table, r))));
      await db.run(`UPDATE ${db.table} SET amount_tokens = (SELECT amount_tokens FROM ${db.table} WHERE id = 'acme-0000') WHERE id = 'acme-0001'`);
      const copied = await search(db, records, table, 'amount', { gte: 10, lte: 10 });
      expect(copied.candidates.map((r) => r.id).sort()).toEqual(['acme-0000', 'acme-0001']);
      expect(copied.found.map((r) => r.id)).toEqual(['acme-0000']);
      await db.run(`UPDATE ${db.table} SET name_tokens = NULL WHERE id = 'acme-0000'`);
      expect((await search(db, records, table, 'name', { startsWith: 'ali' })).found).toEqual([]);
    });

    it('with a limit, the fragment finds at most that many candidates, each once: pages by offset cover every candidate once, even a row holding two of the query\'s tokens', async () => {
      const db = await open();
      const table = ordersTable(db.storage, { bits: 32 });
      const plain = [...Array.from({ length: 20 }, (_, i) => plainRow(i, 'acme', i - 5, i, i, `n${i}`)), plainRow(50, 'globex', 3, 1, 1, 'g')];
      await insert(db, await Promise.all(plain.map((r) => records.seal(table, r))));
      // A writer (or a truncation collision) gives acme-0019 (amount 14) the tokens of acme-0000 (amount -5) as well.
      const both = db.dialect === 'postgres' ? `amount_tokens || (SELECT amount_tokens FROM ${db.table} WHERE id = 'acme-0000')` : `(SELECT json_group_array(value) FROM (SELECT value FROM json_each(${db.table}.amount_tokens) UNION ALL SELECT value FROM json_each((SELECT amount_tokens FROM ${db.table} WHERE id = 'acme-0000'))))`;
      await db.run(`UPDATE ${db.table} SET amount_tokens = ${both} WHERE id = 'acme-0019'`);
      const condition = { gte: -5, lte: 14 };
      const all = await search(db, records, table, 'amount', condition);
      expect(all.candidates.map((r) => r.id).sort()).toEqual(plain.slice(0, 20).map((r) => r.id));
      const paged: string[] = [];
      for (let offset = 0; offset < 40; offset += 3) {
        const q = await records.searchQuery(table, 'amount', condition, { partition: 'acme', dialect: db.dialect, from: db.table, limit: 3, offset, firstParam: 1 });
        const page = await db.all(`SELECT id FROM ${db.table} WHERE ${q.sql}`, [...q.params]);
        expect(page.length).toBeLessThanOrEqual(3);
        paged.push(...page.map((r) => r.id as string));
      }
      expect(paged.length).toBe(20); // no row on two pages, none left out, none of globex
      expect([...paged].sort()).toEqual(plain.slice(0, 20).map((r) => r.id));
    });

    it("after shredding a tenant its tokens can no longer be computed and its rows are not found; the other tenant's are", async () => {
      const db = await open();
      const local = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
      const r2 = createRecords({ hierarchy: local });
      const table = ordersTable(db.storage, { bits: 32 });
      for (const tenant of ['acme', 'globex']) await insert(db, await Promise.all([0, 1, 2].map((i) => r2.seal(table, plainRow(i, tenant, i, i, i, `x${i}`)))));
      const report = await local.shred('acme');
      expect(report.partitions).toContain('acme#search');
      await expect(r2.searchQuery(table, 'amount', { gte: 0, lte: 5 }, { partition: 'acme', dialect: db.dialect })).rejects.toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
      const globex = await search(db, r2, table, 'amount', { gte: 0, lte: 5 }, 'globex');
      expect(globex.found.map((r) => r.id)).toEqual(['globex-0000', 'globex-0001', 'globex-0002']);
    });
  });
}

describe('search SQL', () => {
  it('PostgreSQL fragments number their placeholders from firstParam', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const records = createRecords({ hierarchy });
    const q: SearchSql = await records.searchQuery(ordersTable('array'), 'name', { startsWith: 'al' }, { partition: 'acme', dialect: 'postgres', firstParam: 3 });
    expect(q.sql).toBe('"tenant" = $3 AND "name_tokens" && $4::bigint[]');
    expect(q.params).toEqual(['acme', [...q.tokens]]);
  });

  it('a limit needs a positive integer, an offset a limit, and on PostgreSQL a one-column primary key', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const records = createRecords({ hierarchy });
    const base = { partition: 'acme', dialect: 'postgres' } as const;
    const condition = { gte: 0, lte: 9 };
    for (const limit of [0, -1, 1.5, '10', Number.NaN]) await expect(records.searchQuery(ordersTable('array'), 'amount', condition, { ...base, limit: limit as number })).rejects.toThrow(TypeError);
    await expect(records.searchQuery(ordersTable('array'), 'amount', condition, { ...base, offset: 5 })).rejects.toThrow('"offset" needs a "limit"');
    await expect(records.searchQuery(ordersTable('array'), 'amount', condition, { ...base, limit: 5, offset: -1 })).rejects.toThrow(TypeError);
    const twoKeys = defineTable({ ...ordersTable('array'), primaryKey: ['tenant', 'id'] });
    await expect(records.searchQuery(twoKeys, 'amount', condition, { ...base, limit: 5 })).rejects.toThrow('one-column primaryKey');
    await expect(records.searchQuery(twoKeys, 'amount', condition, { ...base, dialect: 'sqlite', limit: 5 })).resolves.toMatchObject({ kind: 'range' });
  });

  it('a PostgreSQL query with a limit reads its tokens widest bucket first and stops at the limit: the first bucket alone fills it (EXPLAIN ANALYZE)', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const records = createRecords({ hierarchy });
    const table = ordersTable('array', { bits: 32 });
    const db = await postgresDb();
    // amounts -1 and 64 are buckets of width 1 at the range's edges; 0 to 63 one bucket of width 64.
    const plain = [-1, 64, ...Array.from({ length: 12 }, (_, i) => i * 5)].map((a, i) => plainRow(i, 'acme', a, 0, 0, 'x'));
    await insert(db, await Promise.all(plain.map((r) => records.seal(table, r))));
    const q = await records.searchQuery(table, 'amount', { gte: -1, lte: 64 }, { partition: 'acme', dialect: 'postgres', from: db.table, limit: 5 });
    expect(q.tokens.length).toBe(3);
    expect(q.params).toEqual(['acme', [...q.widestFirst], 5, 0]);
    const widest = q.widestFirst[0];
    const { rows: holders } = await pool.query(`SELECT count(*)::int AS n FROM ${db.table} WHERE amount_tokens && ARRAY[$1::bigint]`, [widest]);
    expect(holders[0].n).toBe(12);
    const plan = (await pool.query(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT id FROM ${db.table} WHERE ${q.sql}`, [...q.params])).rows.map((r) => r['QUERY PLAN'] as string);
    expect(plan.find((l) => l.includes('Function Scan on unnest')), plan.join('\n')).toMatch(/actual rows=1 loops=1/);
    const found = await pool.query(`SELECT ${COLUMNS.join(', ')} FROM ${db.table} WHERE ${q.sql}`, [...q.params]);
    expect((await records.openMatching(table, q, found.rows as never)).map((r) => Number(r.amount)).every((a) => a >= 0 && a < 64)).toBe(true);
  });

  it('a PostgreSQL query of several tokens ORs one overlap per token, all reading the one array parameter', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const records = createRecords({ hierarchy });
    const q: SearchSql = await records.searchQuery(ordersTable('array'), 'amount', { gte: -100, lte: 100 }, { partition: 'acme', dialect: 'postgres', firstParam: 2 });
    expect(q.tokens.length).toBeGreaterThan(1);
    const overlaps = q.tokens.map((_, i) => `"amount_tokens" && ARRAY[($3::bigint[])[${i + 1}]]`);
    expect(q.sql).toBe(`"tenant" = $2 AND (${overlaps.join(' OR ')})`);
    expect(q.params).toEqual(['acme', [...q.tokens]]);
  });
});
