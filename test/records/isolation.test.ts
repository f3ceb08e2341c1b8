/**
 * What a database writer can and cannot do to sealed rows (README "What a database writer can and
 * cannot do to sealed rows"), through the record API on a real PostgreSQL (test/fixtures/postgres.ts)
 * and on SQLite (better-sqlite3): one test per row of the README's table, each an SQL statement an
 * attacker with write access to the table could run. What is detected fails with a typed
 * RecordFieldError and never with plaintext; what is not (roll-backs, deletions) is shown to open.
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PartitionMismatchError } from '../../src/core/errors.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { sweepPostgres, sweepSqlite } from '../../src/records.ts';
import { createRecords, defineTable, RecordFieldError, type Records } from '../../src/records.ts';
import { rotationSweep } from '../../src/records/sweep.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';
import { postgresSql, type Sql, type SqlKind, sqliteSql } from '../fixtures/sql.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const columns = {
  email: { type: 'string', index: { column: 'email_idx', bits: 32 } },
  card: { type: 'string' },
} as const;
const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, keyVersionColumn: 'key_version', columns });
const suppliers = defineTable({ name: 'suppliers', primaryKey: 'id', partition: { column: 'tenant' }, keyVersionColumn: 'key_version', columns });

const people = [
  { id: 'u1', tenant: 'acme', email: 'alice@example.com', card: '4111 1111' },
  { id: 'u2', tenant: 'acme', email: 'bob@example.com', card: '5500 0000' },
  { id: 'u3', tenant: 'globex', email: 'carol@example.com', card: '3400 0000' },
];
const COLUMNS = 'id, tenant, email, email_idx, card, key_version';

let server: PostgresServer;
let pool: pg.Pool;
const made: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
});
afterAll(async () => {
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.end();
  await server.stop();
});

/** Two tables (customers, suppliers) holding the three people sealed, per-tenant KMS providers that count their calls. */
async function world(kind: SqlKind) {
  const db = kind === 'sqlite' ? new Database(':memory:') : undefined;
  const sql: Sql = db ? sqliteSql(db) : postgresSql(pool);
  const [table, other] = db ? ['customers', 'suppliers'] : [uniqueTable('kmse_iso_c'), uniqueTable('kmse_iso_s')];
  if (!db) made.push(table, other);
  for (const t of [table, other]) await sql.run(`CREATE TABLE ${t} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, email_idx TEXT, card TEXT, key_version INTEGER)`);
  const store = new MemoryKeyStore();
  const kms = { acme: new InstrumentedProvider(), globex: new InstrumentedProvider() };
  // The tenant's own provider for its partitions (acme, acme#blind-index).
  const kmsFor = (partition: string) => kms[partition.split('#')[0] as keyof typeof kms];
  const make = () => {
    const hierarchy = createKeyHierarchy({ store, kms: kmsFor });
    return { hierarchy, records: createRecords({ hierarchy }) };
  };
  const { hierarchy, records } = make();
  const insert = async (rows: readonly Record<string, unknown>[]) => {
    for (const r of rows) await sql.run(`INSERT INTO ${table} (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`, [r.id, r.tenant, r.email, r.email_idx, r.card, r.key_version]);
  };
  await insert(await Promise.all(people.map((p) => records.seal(customers, p))));
  const row = async (id: string, from = table) => (await sql.all(`SELECT ${COLUMNS} FROM ${from} WHERE id = ?`, [id]))[0]!;
  /** A lookup by e-mail as an application does it: the blind index, then open, then the match on the opened value. */
  const find = async (tenant: string, email: string, r: Records = records) => {
    const found = await sql.all(`SELECT ${COLUMNS} FROM ${table} WHERE tenant = ? AND email_idx = ? ORDER BY id`, [tenant, await r.indexOf(customers, 'email', email, { partition: tenant })]);
    const opened = (await r.openMany(customers, found, { failFast: true })).map((x) => (x.ok ? x.value : undefined)!);
    return { found: found.map((f) => f.id), matched: opened.filter((o) => o.email === email).map((o) => o.id) };
  };
  const sweep = (plan: ReturnType<typeof rotationSweep>) => (db ? sweepSqlite(db, { table, key: 'id', ...plan }) : sweepPostgres(pool, { table, key: 'id', ...plan }));
  return { sql, table, other, store, kms, hierarchy, records, restart: make, row, find, sweep };
}

/** The error of a promise or a call, for its fields. */
async function failure(work: () => unknown): Promise<RecordFieldError> {
  try {
    await work();
  } catch (error) {
    expect(error).toBeInstanceOf(RecordFieldError);
    return error as RecordFieldError;
  }
  throw new Error('expected a RecordFieldError, and it opened');
}

for (const kind of ['postgres', 'sqlite'] as const) {
  describe(`what a database writer can do to sealed rows: the record API on ${kind}`, () => {
    it('copy a value to another row: refused', async () => {
      const w = await world(kind);
      await w.sql.run(`UPDATE ${w.table} SET email = (SELECT email FROM ${w.table} WHERE id = 'u2') WHERE id = 'u1'`);
      const error = await failure(async () => w.records.open(customers, await w.row('u1')));
      expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', table: 'customers', column: 'email', row: ['u1'] });
      expect(error.message).not.toContain('bob');
      // From another tenant's row: refused by the partition, before any key is loaded.
      await w.sql.run(`UPDATE ${w.table} SET card = (SELECT card FROM ${w.table} WHERE id = 'u1') WHERE id = 'u3'`);
      expect(await failure(async () => w.records.open(customers, await w.row('u3')))).toMatchObject({ code: 'ERR_PARTITION_MISMATCH', column: 'card', row: ['u3'] });
    });

    it('swap values between columns: refused', async () => {
      const w = await world(kind);
      await w.sql.run(`UPDATE ${w.table} SET email = card, card = email WHERE id = 'u1'`);
      const results = await w.records.openMany(customers, [await w.row('u1'), await w.row('u2')]);
      expect(results.map((r) => r.ok)).toEqual([false, true]);
      expect(!results[0]!.ok && results[0]!.error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', row: ['u1'] });
      expect(String(!results[0]!.ok && results[0]!.error.message)).not.toMatch(/alice|4111/);
    });

    it('move a row to another table: refused', async () => {
      const w = await world(kind);
      await w.sql.run(`INSERT INTO ${w.other} (${COLUMNS}) SELECT ${COLUMNS} FROM ${w.table} WHERE id = 'u1'`);
      const error = await failure(async () => w.records.open(suppliers, await w.row('u1', w.other)));
      expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', table: 'suppliers', row: ['u1'] });
    });

    it('move a row to another tenant: refused on every open path, before any key of either tenant is loaded', async () => {
      const w = await world(kind);
      await w.sql.run(`UPDATE ${w.table} SET tenant = 'globex' WHERE id = 'u1'`);
      const moved = await w.row('u1');
      // A process started after the move: no key in memory, and none loaded for the moved row.
      const { hierarchy, records } = w.restart();
      const calls = () => [w.kms.acme.calls.generate, w.kms.acme.calls.decrypt, w.kms.globex.calls.generate, w.kms.globex.calls.decrypt];
      const before = calls();
      const expected = { code: 'ERR_PARTITION_MISMATCH', table: 'customers', column: 'email', row: ['u1'] };
      const error = await failure(() => records.open(customers, moved));
      expect(error).toMatchObject(expected);
      expect(error.cause).toBeInstanceOf(PartitionMismatchError);
      expect(error.cause).toMatchObject({ expected: 'globex', found: 'acme' });
      expect(error.message).toContain('customers.email of row ["u1"]');
      expect(error.message).toContain('"acme"');
      expect(error.message).toContain('"globex"');
      expect(error.message).not.toMatch(/alice|4111/);
      const [batch] = await records.openMany(customers, [moved]);
      expect(!batch!.ok && batch!.error).toMatchObject(expected);
      expect(await failure(() => records.openSync(customers, moved))).toMatchObject(expected);
      expect(await failure(() => records.openFieldSync(customers, 'email', moved.email, moved))).toMatchObject(expected);
      expect(await failure(() => records.resealSync(customers, moved))).toMatchObject(expected);
      expect(calls()).toEqual(before);
      expect(hierarchy.metrics()).toMatchObject({ misses: 0, loads: 0, versionsInUse: {}, kmsCalls: { GenerateDataKey: { ok: 0, failed: 0 }, Decrypt: { ok: 0, failed: 0 } } });

      // With both tenants' keys in memory (the common case), the same, synchronously too.
      await records.warm(['acme', 'globex'], [customers]);
      expect(await failure(() => records.open(customers, moved))).toMatchObject(expected);
      expect(await failure(() => records.openSync(customers, moved))).toMatchObject(expected);
      expect((await records.open(customers, await w.row('u2'))).email).toBe('bob@example.com');

      // A rotation sweep reports the row and leaves it: it is never sealed again under the other tenant.
      await hierarchy.rotate('acme');
      await hierarchy.rotate('globex');
      const summary = await w.sweep(rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' }));
      expect(summary).toMatchObject({ seen: 3, written: 2, failed: 1 });
      expect(summary.failures.map((f) => [f.key, f.code])).toEqual([[['u1'], 'ERR_PARTITION_MISMATCH']]);
      expect(await w.row('u1')).toEqual(moved);

      // A row read without its partition column fails closed, as one without its primary key does.
      const { tenant: _tenant, ...noTenant } = moved;
      await expect(records.open(customers, noTenant)).rejects.toThrow(/no partition/);
      expect(() => records.openFieldSync(customers, 'email', moved.email, noTenant)).toThrow(/no partition/);
      const { id: _id, ...noKey } = await w.row('u2');
      await expect(records.open(customers, noKey)).rejects.toThrow(/primary key column id is missing/);
    });

    it('change its primary key: refused', async () => {
      const w = await world(kind);
      await w.sql.run(`UPDATE ${w.table} SET id = 'u9' WHERE id = 'u1'`);
      expect(await failure(async () => w.records.open(customers, await w.row('u9')))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', row: ['u9'] });
    });

    it('roll back one cell to an older sealed value of the same cell: NOT detected, the old value opens', async () => {
      const w = await world(kind);
      const old = await w.row('u1');
      const updated = await w.records.seal(customers, { ...people[0]!, email: 'alice@new.example' });
      await w.sql.run(`UPDATE ${w.table} SET email = ?, email_idx = ? WHERE id = 'u1'`, [updated.email, updated.email_idx]);
      expect((await w.records.open(customers, await w.row('u1'))).email).toBe('alice@new.example');
      await w.sql.run(`UPDATE ${w.table} SET email = ?, email_idx = ? WHERE id = 'u1'`, [old.email, old.email_idx]);
      expect((await w.records.open(customers, await w.row('u1'))).email).toBe('alice@example.com');
    });

    it('roll back a whole row: NOT detected, the old row opens', async () => {
      const w = await world(kind);
      const old = await w.row('u1');
      const updated = await w.records.seal(customers, { ...people[0]!, email: 'alice@new.example', card: '4000 0000' });
      await w.sql.run(`UPDATE ${w.table} SET email = ?, email_idx = ?, card = ? WHERE id = 'u1'`, [updated.email, updated.email_idx, updated.card]);
      await w.sql.run(`UPDATE ${w.table} SET email = ?, email_idx = ?, card = ?, key_version = ? WHERE id = 'u1'`, [old.email, old.email_idx, old.card, old.key_version]);
      expect(await w.records.open(customers, await w.row('u1'))).toMatchObject({ email: 'alice@example.com', card: '4111 1111' });
    });

    it('delete rows: NOT detected, the rows left open as before', async () => {
      const w = await world(kind);
      await w.sql.run(`DELETE FROM ${w.table} WHERE id = 'u2'`);
      const left = await w.sql.all(`SELECT ${COLUMNS} FROM ${w.table} WHERE tenant = 'acme'`);
      const opened = await w.records.openMany(customers, left, { failFast: true });
      expect(opened.map((r) => r.ok && r.value.email)).toEqual(['alice@example.com']);
    });

    it('edit a blind-index column: can hide a row from search, or return another row, which the match after open drops', async () => {
      const w = await world(kind);
      expect(await w.find('acme', 'alice@example.com')).toEqual({ found: ['u1'], matched: ['u1'] });
      // u1 takes u2's index value: a search for Alice finds nobody, one for Bob finds both rows in SQL.
      await w.sql.run(`UPDATE ${w.table} SET email_idx = (SELECT email_idx FROM ${w.table} WHERE id = 'u2') WHERE id = 'u1'`);
      expect(await w.find('acme', 'alice@example.com')).toEqual({ found: [], matched: [] });
      expect(await w.find('acme', 'bob@example.com')).toEqual({ found: ['u1', 'u2'], matched: ['u2'] });
      // The sealed values themselves still open: the index is not bound to them.
      expect((await w.records.open(customers, await w.row('u1'))).email).toBe('alice@example.com');
    });
  });
}
