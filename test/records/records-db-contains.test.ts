/**
 * Contains search on real databases (FORMAT.md §11a.7): PostgreSQL (`@>` on a bigint[] with a GIN
 * index) and SQLite (the token table, every gram required). A query returns exactly the rows a
 * plaintext `includes` returns (property), never another tenant's, after a re-index to a new
 * version, and after shredding a tenant.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createRecords, defineTable } from '../../src/records/records.ts';
import { searchSchema } from '../../src/records/search-sql.ts';
import { searchReindexSweep, type RecordSweepPlan, type SweepSummary } from '../../src/records/sweep.ts';
import { sweepPostgres } from '../../src/records/sql/postgres.ts';
import { sweepSqlite } from '../../src/records/sql/sqlite.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const notesTable = (storage: 'array' | 'json', { version = 1, bits = 16, column = 'note_tokens' } = {}) =>
  defineTable({
    name: 'notes',
    primaryKey: 'id',
    partition: { column: 'tenant' },
    columns: { note: { type: 'string', search: { kind: 'contains', acknowledgeLeakage: 'contains', column, minLength: 2, maxLength: 10, normalize: ['casefold'], bits, version, storage } } },
  });
type Notes = ReturnType<typeof notesTable>;

interface Db {
  dialect: 'postgres' | 'sqlite';
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
  const table = uniqueTable('kmse_contains');
  dropped.push(table);
  await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, note TEXT)`);
  const addTokens = async (c: string) => {
    for (const s of searchSchema('postgres', table, c)) await pool.query(s);
  };
  await addTokens('note_tokens');
  const run = async (sql: string, params: unknown[] = []) => void (await pool.query(sql, params));
  return { dialect: 'postgres', table, storage: 'array', run, all: async (sql, params = []) => (await pool.query(sql, params)).rows, sweep: (plan) => sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 7 }), addTokens };
}

function sqliteDb(): Db {
  const db = new Database(':memory:');
  const table = 'notes_sql';
  db.exec(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, note TEXT)`);
  const addTokens = async (c: string) => {
    db.exec(`ALTER TABLE ${table} ADD COLUMN ${c} TEXT`);
    for (const s of searchSchema('sqlite', table, c)) db.exec(s);
  };
  void addTokens('note_tokens');
  const run = async (sql: string, params: unknown[] = []) => void db.prepare(sql).run(...params);
  return { dialect: 'sqlite', table, storage: 'json', run, all: async (sql, params = []) => db.prepare(sql).all(...params) as Record<string, unknown>[], sweep: (plan) => sweepSqlite(db, { table, key: 'id', ...plan, batchSize: 7 }), addTokens };
}

async function insert(db: Db, rows: readonly Record<string, unknown>[]): Promise<void> {
  for (const r of rows) await db.run(`INSERT INTO ${db.table} (id, tenant, note, note_tokens) VALUES (${db.dialect === 'postgres' ? '$1, $2, $3, $4' : '?, ?, ?, ?'})`, [r.id, r.tenant, r.note, r.note_tokens]);
}

async function search(db: Db, records: ReturnType<typeof createRecords>, table: Notes, term: string, partition = 'acme', page: { limit?: number } = {}) {
  const query = await records.searchQuery(table, 'note', { contains: term }, { partition, dialect: db.dialect, from: db.table, ...page });
  const candidates = await db.all(`SELECT * FROM ${db.table} WHERE ${query.sql}`, [...query.params]);
  const found = await records.openMatching(table, query, candidates as never);
  return { candidates, ids: found.map((r) => r.id as string).sort() };
}

const text = (min: number, max: number) => fc.string({ unit: fc.constantFrom('a', 'b', 'B', 'é'), minLength: min, maxLength: max });
const want = (rows: readonly { id: string; tenant: string; note: string }[], term: string, tenant = 'acme') => rows.filter((r) => r.tenant === tenant && r.note.toLowerCase().includes(term.toLowerCase())).map((r) => r.id).sort();

for (const kind of ['postgres', 'sqlite'] as const) {
  describe(`contains search on ${kind}`, () => {
    const kms = LocalKms.generate();
    const open = async () => (kind === 'postgres' ? postgresDb() : sqliteDb());

    it('returns exactly the rows a plaintext includes returns, of its tenant only (property)', async () => {
      const db = await open();
      const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });
      const table = notesTable(db.storage);
      await fc.assert(
        fc.asyncProperty(fc.array(fc.record({ note: text(0, 10), acme: fc.boolean() }), { minLength: 2, maxLength: 16 }), text(2, 5), async (rows, term) => {
          await db.run(`DELETE FROM ${db.table}`);
          const plain = rows.map((r, i) => ({ id: `r${String(i).padStart(3, '0')}`, tenant: r.acme ? 'acme' : 'globex', note: r.note }));
          await insert(db, await Promise.all(plain.map((r) => records.seal(table, r))));
          const { ids, candidates } = await search(db, records, table, term);
          expect(ids, term).toEqual(want(plain, term));
          expect(candidates.every((r) => r.tenant === 'acme')).toBe(true);
          // With a limit: the same candidates, at most that many.
          const first = await search(db, records, table, term, 'acme', { limit: 2 });
          expect(first.candidates.length).toBe(Math.min(2, candidates.length));
          expect(first.candidates.every((r) => candidates.some((c) => c.id === r.id))).toBe(true);
          expect((await search(db, records, table, term, 'globex')).ids).toEqual(want(plain, term, 'globex'));
        }),
        { numRuns: 8 },
      );
    });

    it('after a re-index to version 2 (a new token column from the opened values) and after shredding a tenant', async () => {
      const db = await open();
      const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
      const records = createRecords({ hierarchy });
      const v1 = notesTable(db.storage, { bits: 32 });
      const notes = ['banana', 'Bandana', 'cabana', 'nab', 'ananas', 'canal', 'panama', ''];
      const plain = ['acme', 'globex'].flatMap((tenant) => notes.map((note, i) => ({ id: `${tenant}-${i}`, tenant, note })));
      await insert(db, await Promise.all(plain.map((r) => records.seal(v1, r))));
      await db.addTokens('note_tokens_v2');
      const v2 = notesTable(db.storage, { bits: 32, version: 2, column: 'note_tokens_v2' });
      expect(await db.sweep(searchReindexSweep(records, v2, 'note', 'contains'))).toMatchObject({ written: plain.length, failed: 0 }); // '' too: dummies only
      for (const term of ['ana', 'BAN', 'nab', 'an', 'zz']) expect((await search(db, records, v2, term)).ids, term).toEqual(want(plain, term));
      const v1Tokens = new Set((await db.all(`SELECT note_tokens FROM ${db.table}`)).flatMap((r) => (db.storage === 'json' ? JSON.parse(r.note_tokens as string) : r.note_tokens).map(Number)));
      const v2Tokens = (await db.all(`SELECT note_tokens_v2 FROM ${db.table}`)).flatMap((r) => (db.storage === 'json' ? JSON.parse(r.note_tokens_v2 as string) : r.note_tokens_v2).map(Number));
      expect(v2Tokens.filter((t) => v1Tokens.has(t))).toEqual([]);

      expect((await hierarchy.shred('acme')).partitions).toContain('acme#search');
      await expect(records.searchQuery(v2, 'note', { contains: 'ana' }, { partition: 'acme', dialect: db.dialect })).rejects.toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
      expect((await search(db, records, v2, 'ana', 'globex')).ids).toEqual(want(plain, 'ana', 'globex'));
    });
  });
}
