/**
 * Row-version binding (FORMAT.md §12.4, README "Row versions"): a table's integer version column
 * bound into every sealed value of the row. The rules (a version given as a value, every sealed
 * column sealed at each write, a primary key, unversioned rows only in migration mode) and the
 * attacks of a database writer, as SQL statements on PostgreSQL and SQLite: one cell rolled back
 * fails; the cell and the version rolled back fail for the newer cells; the whole row rolled back
 * opens (not detected); a value without the binding opens only in an unversioned row in migration
 * mode; the rotation sweep seals unversioned rows again with the binding.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { createRecords, defineTable, RecordFieldError, RowVersionError, sweepPostgres, sweepSqlite } from '../../src/records.ts';
import { rowVersionText } from '../../src/records/row-version.ts';
import { rotationSweep } from '../../src/records/sweep.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';
import { postgresSql, type Sql, type SqlKind, sqliteSql } from '../fixtures/sql.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const columns = { email: { type: 'string' }, card: { type: 'string' } } as const;
const spec = { name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, keyVersionColumn: 'key_version', columns } as const;
const customers = defineTable({ ...spec, rowVersion: { column: 'row_version' } });
/** The same table during the migration: rows sealed before it had the column open without the binding. */
const migrating = defineTable({ ...spec, rowVersion: { column: 'row_version', legacyUnversioned: true } });
/** The same table before it had the column. */
const before = defineTable(spec);

function setup() {
  const kms = new InstrumentedProvider();
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
  return { kms, hierarchy, records: createRecords({ hierarchy }) };
}

const alice = { id: 'u1', tenant: 'acme', email: 'alice@example.com', card: '4111 1111' };

/** The error a call or promise fails with. */
async function failure(work: () => unknown): Promise<Error & { code?: string; problem?: string }> {
  try {
    await work();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure, and it succeeded');
}

describe('row-version binding: the rules (record API)', () => {
  it('A reader MUST read the version from the row and bind the pair to every value it opens: a value opens under its own version only, whatever spelling the driver reads it in', async () => {
    const { records } = setup();
    const sealed = await records.seal(customers, { ...alice, row_version: 7 });
    expect(sealed.row_version).toBe(7);
    for (const read of [7, 7n, '7']) expect(await records.open(customers, { ...sealed, row_version: read })).toMatchObject({ email: alice.email, card: alice.card });
    for (const other of [6, 8, '70', 0]) {
      const error = await failure(() => records.open(customers, { ...sealed, row_version: other }));
      expect(error, String(other)).toBeInstanceOf(RecordFieldError);
      expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', column: 'email' });
    }
    // The same row sealed by a table without the column does not open with it, nor the reverse.
    const unbound = await records.seal(before, alice);
    expect(await failure(() => records.open(customers, { ...unbound, row_version: 7 }))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    expect(await failure(() => records.open(before, sealed))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    // The synchronous paths bind it the same way.
    records.sealSync(customers, { ...alice, row_version: 8 });
    expect(records.openSync(customers, records.sealSync(customers, { ...alice, row_version: 2n ** 63n - 1n }))).toMatchObject({ email: alice.email });
    expect(records.openFieldSync(customers, 'card', sealed.card, { ...sealed, row_version: '7' })).toBe(alice.card);
    expect(() => records.openFieldSync(customers, 'card', sealed.card, { ...sealed, row_version: 6 })).toThrow(expect.objectContaining({ code: 'ERR_DECRYPTION_FAILED' }));
  });

  /** A seal refused with RowVersionError of this problem, on the async and the sync path. */
  const refusedBy = (records: ReturnType<typeof setup>['records']) => async (row: Record<string, unknown>, problem: string) => {
    const error = await failure(() => records.seal(customers, row));
    expect(error, JSON.stringify(row, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))).toBeInstanceOf(RowVersionError);
    expect(error).toMatchObject({ code: 'ERR_ROW_VERSION', problem, table: 'customers' });
    expect(() => records.sealSync(customers, row)).toThrow(RowVersionError);
  };

  it('The version MUST be a value the writer knows before sealing, never computed by the database: a write without it, or with a version out of range or spelled otherwise, is refused before any key is used', async () => {
    const { records, kms } = setup();
    const refused = refusedBy(records);
    await refused(alice, 'missing');
    await refused({ ...alice, row_version: null }, 'missing');
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53, '01', '+1', ' 1', '1e3', '', 2n ** 63n, -1n, true, {}, '9223372036854775808']) await refused({ ...alice, row_version: bad }, 'invalid');
    expect(kms.calls).toEqual({ generate: 0, decrypt: 0 });
  });

  it('A writer MUST seal every sealed column of the row at each write: a row that leaves one out is refused before any key is used; NULL is a value', async () => {
    const { records, kms } = setup();
    const refused = refusedBy(records);
    await refused({ id: 'u1', tenant: 'acme', email: 'x', row_version: 2 }, 'partial-write');
    await refused({ ...alice, card: undefined, row_version: 2 }, 'partial-write');
    expect(kms.calls).toEqual({ generate: 0, decrypt: 0 });
    // null is a value: the column is written empty, under the version.
    const sealed = await records.seal(customers, { ...alice, card: null, row_version: 2 });
    expect(await records.open(customers, sealed)).toMatchObject({ email: alice.email, card: null });
    // One field alone is never sealed (ORM column types), not even a null.
    for (const value of ['x', null]) expect(() => records.sealFieldSync(customers, 'email', value, { ...alice, row_version: 3 })).toThrow(expect.objectContaining({ code: 'ERR_ROW_VERSION', problem: 'partial-write' }));
  });

  it('A reader MUST refuse its values with ERR_ROW_VERSION unless the table is in migration mode: an unversioned row outside it, and a read without the version column', async () => {
    const { records } = setup();
    const sealed = await records.seal(customers, { ...alice, row_version: 1 });
    const { row_version: _, ...unread } = sealed;
    expect(await failure(() => records.open(customers, unread))).toMatchObject({ code: 'ERR_ROW_VERSION', problem: 'missing' });
    expect(() => records.openFieldSync(customers, 'email', sealed.email, { id: 'u1', tenant: 'acme' })).toThrow(expect.objectContaining({ code: 'ERR_ROW_VERSION', problem: 'missing' }));
    expect(await failure(() => records.open(customers, { ...sealed, row_version: '007' }))).toMatchObject({ code: 'ERR_ROW_VERSION', problem: 'invalid' });
    const old = await records.seal(before, alice);
    const error = await failure(() => records.open(customers, { ...old, row_version: null }));
    expect(error).toBeInstanceOf(RecordFieldError);
    expect(error).toMatchObject({ code: 'ERR_ROW_VERSION', column: 'email', row: ['u1'] });
    expect((error.cause as RowVersionError).problem).toBe('unversioned');
    expect(error.message).toContain('legacyUnversioned');
    expect(await records.open(migrating, { ...old, row_version: null })).toMatchObject({ email: alice.email, card: alice.card });
    // A row with nothing sealed opens whatever its version.
    expect(await records.open(customers, { id: 'u9', tenant: 'acme', email: null, card: null, row_version: null })).toMatchObject({ email: null });
  });

  it("resealSync (the sweeps' synchronous path) keeps a row's version, and gives an unversioned row 0 in migration mode", async () => {
    const { records, hierarchy } = setup();
    const sealed = await records.seal(customers, { ...alice, row_version: 41 });
    await hierarchy.rotate('acme');
    await records.warm(['acme']);
    const resealed = records.resealSync(customers, sealed);
    expect(resealed.row_version).toBe(41);
    expect(resealed.key_version).toBe(2);
    expect(resealed.email).not.toBe(sealed.email);
    expect(await records.open(customers, resealed)).toMatchObject({ email: alice.email, card: alice.card });
    expect(await failure(() => records.open(customers, { ...resealed, row_version: 0 }))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    const old = await records.seal(before, alice);
    expect(() => records.resealSync(customers, { ...old, row_version: null })).toThrow(expect.objectContaining({ code: 'ERR_ROW_VERSION' }));
    const bound = records.resealSync(migrating, { ...old, row_version: null });
    expect(bound.row_version).toBe(0);
    expect(await records.open(customers, bound)).toMatchObject({ email: alice.email, card: alice.card });
    expect(await failure(() => records.open(migrating, { ...bound, row_version: null }))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });

  it('A table with a row version MUST have a primary key: defineTable refuses one without (ERR_ROW_VERSION); the column is a plain one', () => {
    const noKey = () => defineTable({ name: 'logs', partition: 'p', columns, rowVersion: { column: 'row_version' } });
    expect(noKey).toThrow(RowVersionError);
    expect(noKey).toThrow(expect.objectContaining({ code: 'ERR_ROW_VERSION', problem: 'no-primary-key' }));
    for (const column of ['email', 'id', 'key_version', '', 5]) expect(() => defineTable({ ...spec, rowVersion: { column: column as string } }), String(column)).toThrow(TypeError);
    expect(() => defineTable({ ...spec, rowVersion: { column: 'v', legacyUnversioned: 'yes' as never } })).toThrow(TypeError);
    expect(customers.rowVersion).toEqual({ column: 'row_version', legacyUnversioned: false });
    expect(Object.isFrozen(customers.rowVersion)).toBe(true);
  });

  it('the version spelling: integers 0 to 2^63 - 1 as numbers, bigints or canonical decimal strings; nothing else', () => {
    const MAX = 2n ** 63n - 1n;
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: MAX }), (v) => {
        expect(rowVersionText(v)).toBe(v.toString());
        expect(rowVersionText(v.toString())).toBe(v.toString());
        if (v <= BigInt(Number.MAX_SAFE_INTEGER)) expect(rowVersionText(Number(v))).toBe(v.toString());
      }),
    );
    fc.assert(
      fc.property(fc.string(), (s) => {
        const text = rowVersionText(s);
        expect(text === undefined || (text === s && /^(0|[1-9]\d*)$/.test(s) && BigInt(s) <= MAX)).toBe(true);
      }),
    );
    fc.assert(fc.property(fc.oneof(fc.bigInt({ max: -1n }), fc.bigInt({ min: MAX + 1n })), (v) => {
      expect(rowVersionText(v)).toBeUndefined();
    }));
    fc.assert(fc.property(fc.double().filter((x) => !Number.isSafeInteger(x) || x < 0), (x) => {
      expect(rowVersionText(x)).toBeUndefined();
    }));
    expect(rowVersionText(-0)).toBe('0');
  });
});

// ------------------------------------------------------------------------------------------------
// A database writer's attacks, as SQL statements.

let server: PostgresServer;
let pool: pg.Pool;
const made: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 2 });
});
afterAll(async () => {
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.end();
  await server.stop();
});

const COLUMNS = 'id, tenant, email, card, key_version, row_version';

async function world(kind: SqlKind) {
  const db = kind === 'sqlite' ? new Database(':memory:') : undefined;
  const sql: Sql = db ? sqliteSql(db) : postgresSql(pool);
  const table = db ? 'customers' : uniqueTable('kmse_rowv');
  if (!db) made.push(table);
  await sql.run(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, card TEXT, key_version INTEGER, row_version BIGINT)`);
  const { records, hierarchy } = setup();
  const write = async (r: Record<string, unknown>) =>
    sql.run(`INSERT INTO ${table} (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET email = excluded.email, card = excluded.card, key_version = excluded.key_version, row_version = excluded.row_version`, [
      r.id,
      r.tenant,
      r.email,
      r.card,
      r.key_version,
      r.row_version ?? null,
    ]);
  const row = async (id = 'u1') => (await sql.all(`SELECT ${COLUMNS} FROM ${table} WHERE id = ?`, [id]))[0]!;
  const sweep = (plan: ReturnType<typeof rotationSweep>) => (db ? sweepSqlite(db, { table, key: 'id', ...plan }) : sweepPostgres(pool, { table, key: 'id', ...plan }));
  return { sql, table, records, hierarchy, write, row, sweep };
}

for (const kind of ['postgres', 'sqlite'] as const) {
  describe(`row-version binding: what a database writer can do (${kind})`, () => {
    it('roll back one cell to an older sealed value of the same cell, the version left at the new one: refused', async () => {
      const w = await world(kind);
      await w.write(await w.records.seal(customers, { ...alice, row_version: 1 }));
      const old = await w.row();
      await w.write(await w.records.seal(customers, { ...alice, email: 'alice@new.example', row_version: 2 }));
      await w.sql.run(`UPDATE ${w.table} SET email = ? WHERE id = 'u1'`, [old.email]);
      const error = await failure(async () => w.records.open(customers, await w.row()));
      expect(error).toBeInstanceOf(RecordFieldError);
      expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', table: 'customers', column: 'email', row: ['u1'] });
      expect(error.message).not.toContain('alice@');
    });

    it('roll back one cell and the version column with it: the newer cells are refused', async () => {
      const w = await world(kind);
      await w.write(await w.records.seal(customers, { ...alice, row_version: 1 }));
      const old = await w.row();
      await w.write(await w.records.seal(customers, { ...alice, email: 'alice@new.example', card: '5500 0000', row_version: 2 }));
      await w.sql.run(`UPDATE ${w.table} SET email = ?, row_version = ? WHERE id = 'u1'`, [old.email, old.row_version]);
      const rolled = await w.row();
      expect(await failure(() => w.records.open(customers, rolled))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', column: 'card' });
      expect(() => w.records.openSync(customers, rolled)).toThrow(expect.objectContaining({ code: 'ERR_DECRYPTION_FAILED', column: 'card' }));
    });

    it('roll back the whole row, every cell and the version: NOT detected, the old row opens', async () => {
      const w = await world(kind);
      await w.write(await w.records.seal(customers, { ...alice, row_version: 1 }));
      const old = await w.row();
      await w.write(await w.records.seal(customers, { ...alice, email: 'alice@new.example', row_version: 2 }));
      await w.sql.run(`UPDATE ${w.table} SET email = ?, card = ?, row_version = ? WHERE id = 'u1'`, [old.email, old.card, old.row_version]);
      expect(await w.records.open(customers, await w.row())).toMatchObject({ email: 'alice@example.com', card: alice.card });
    });

    it('a value without the binding opens only in an unversioned row (NULL) in migration mode; the rotation sweep seals such rows again with it', async () => {
      const w = await world(kind);
      // Rows sealed before the table had the column: row_version NULL.
      await w.write(await w.records.seal(before, alice));
      await w.write(await w.records.seal(before, { ...alice, id: 'u2', email: 'bob@example.com' }));
      const legacy = await w.row();
      expect(legacy.row_version).toBeNull();
      expect(await failure(() => w.records.open(customers, legacy))).toMatchObject({ code: 'ERR_ROW_VERSION' });
      expect(await w.records.open(migrating, legacy)).toMatchObject({ email: alice.email });
      // An unbound value in a versioned row: refused, in migration mode too.
      await w.write(await w.records.seal(migrating, { ...alice, id: 'u2', email: 'bob@new.example', row_version: 5 }));
      await w.sql.run(`UPDATE ${w.table} SET email = ? WHERE id = 'u2'`, [legacy.email]);
      expect(await failure(async () => w.records.open(migrating, await w.row('u2')))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', column: 'email' });
      await w.write(await w.records.seal(migrating, { ...alice, id: 'u2', email: 'bob@new.example', row_version: 5 }));

      // The sweep: the unversioned row gets version 0, its values the binding; the versioned row keeps its version.
      const plan = rotationSweep(w.records, migrating, { minVersion: 1 });
      expect(plan.columns).toContain('row_version');
      expect(plan.pending).toBe('"key_version" < 1 OR "row_version" IS NULL');
      expect(await w.sweep(plan)).toMatchObject({ written: 1, failed: 0 });
      const swept = await w.row();
      expect(Number(swept.row_version)).toBe(0);
      expect(await w.records.open(customers, swept)).toMatchObject({ email: alice.email, card: alice.card });
      expect(await w.records.open(customers, await w.row('u2'))).toMatchObject({ email: 'bob@new.example' });
      expect(await w.sweep(plan)).toMatchObject({ seen: 0 });
      // The old unbound value put back fails; so does it with the version put back to NULL (the other cell is bound now).
      await w.sql.run(`UPDATE ${w.table} SET email = ? WHERE id = 'u1'`, [legacy.email]);
      expect(await failure(async () => w.records.open(migrating, await w.row()))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', column: 'email' });
      await w.sql.run(`UPDATE ${w.table} SET row_version = NULL WHERE id = 'u1'`);
      expect(await failure(async () => w.records.open(migrating, await w.row()))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', column: 'card' });
    });

    it("A sweep that seals a stored row again (rotation, backfill, resealSync) MUST seal it under the row's own version: values sealed again under the new key version open under the same row version", async () => {
      const w = await world(kind);
      await w.write(await w.records.seal(customers, { ...alice, row_version: 41 }));
      await w.hierarchy.rotate('acme');
      const summary = await w.sweep(rotationSweep(w.records, customers, { minVersion: 2 }));
      expect(summary).toMatchObject({ written: 1, failed: 0 });
      const rotated = await w.row();
      expect(rotated.key_version).toBe(2);
      expect(String(rotated.row_version)).toBe('41');
      expect(await w.records.open(customers, rotated)).toMatchObject({ email: alice.email, card: alice.card });
      expect(await failure(() => w.records.open(customers, { ...rotated, row_version: 42 }))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    });
  });
}
