/**
 * Row-version binding (FORMAT.md §12.4) through the ORM adapters: Kysely on PostgreSQL and SQLite,
 * Sequelize on PostgreSQL, Drizzle refused. A write that seals must seal every sealed column again
 * under a new version given as a value; partial updates, a version set by an SQL expression and
 * bulk updates are refused with RowVersionError (ERR_ROW_VERSION) before the query runs. A cell
 * rolled back by SQL fails to open through the adapter's reads.
 */
import Database from 'better-sqlite3';
import { customType } from 'drizzle-orm/pg-core';
import { Kysely, PostgresDialect, sql as ksql, SqliteDialect } from 'kysely';
import pg from 'pg';
import { DataTypes, type Model, type ModelStatic, Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealedColumns } from '../../src/adapters/drizzle.ts';
import { kyselyEncryption } from '../../src/adapters/kysely.ts';
import { sealModel } from '../../src/adapters/sequelize.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { createRecords, defineTable, RecordFieldError, RowVersionError } from '../../src/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';
import { postgresSql, type Sql, sqliteSql } from '../fixtures/sql.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const columns = { email: { type: 'string', index: { column: 'email_idx', bits: 32 } }, card: { type: 'string' } } as const;
const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, columns, rowVersion: { column: 'row_version' } });
const alice = { id: 'u1', tenant: 'acme', email: 'alice@example.com', card: '4111 1111' };

let server: PostgresServer;
let pool: pg.Pool;
let sequelize: Sequelize;
const made: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 2 });
  sequelize = new Sequelize(server.url, { logging: false, pool: { max: 2 } });
});
afterAll(async () => {
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await sequelize.close();
  await pool.end();
  await server.stop();
});

const records = () => createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: new InstrumentedProvider() }) });

async function table(sql: Sql, name: string): Promise<void> {
  await sql.run(`CREATE TABLE ${name} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, email_idx TEXT, card TEXT, note TEXT, row_version BIGINT)`);
}

/** The error a promise fails with. */
async function failure(work: () => Promise<unknown>): Promise<Error & { code?: string; problem?: string }> {
  try {
    await work();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure, and it succeeded');
}

for (const kind of ['postgres', 'sqlite'] as const) {
  describe(`row-version binding through Kysely (${kind})`, () => {
    async function front() {
      const sqlite = kind === 'sqlite' ? new Database(':memory:') : undefined;
      const sql = sqlite ? sqliteSql(sqlite) : postgresSql(pool);
      const name = sqlite ? 'customers' : uniqueTable('kmse_rowv_k');
      if (!sqlite) made.push(name);
      await table(sql, name);
      const encryption = kyselyEncryption({ records: records(), tables: { [name]: customers } });
      const db = new Kysely<any>({ dialect: encryption.dialect(sqlite ? new SqliteDialect({ database: sqlite }) : new PostgresDialect({ pool })), plugins: [encryption] });
      const read = () => db.selectFrom(name).selectAll().where('id', '=', 'u1').executeTakeFirstOrThrow();
      return { sql, name, db, read };
    }

    it('writes whole rows under the version given; one cell rolled back by SQL fails to open', async () => {
      const { sql, name, db, read } = await front();
      await db.insertInto(name).values({ ...alice, row_version: 1 }).execute();
      expect(await read()).toMatchObject({ email: alice.email, card: alice.card });
      const old = (await sql.all(`SELECT email FROM ${name} WHERE id = 'u1'`))[0]!;
      await db.updateTable(name).set({ email: 'alice@new.example', card: alice.card, row_version: 2 }).where('id', '=', 'u1').where('tenant', '=', 'acme').where('row_version', '=', 1).execute();
      expect(await read()).toMatchObject({ email: 'alice@new.example', row_version: kind === 'postgres' ? '2' : 2 });
      // A plain column alone leaves the sealed values as they are.
      await db.updateTable(name).set({ note: 'n' }).where('id', '=', 'u1').execute();
      expect(await read()).toMatchObject({ email: 'alice@new.example', note: 'n' });
      await sql.run(`UPDATE ${name} SET email = ? WHERE id = 'u1'`, [old.email]);
      const error = await failure(read);
      expect(error).toBeInstanceOf(RecordFieldError);
      expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', column: 'email' });
      // A read of sealed columns without the version column is refused.
      await expect(db.selectFrom(name).select(['id', 'tenant', 'card']).execute()).rejects.toThrow(/row_version/);
    });

    it('refuses partial updates, a version by SQL expression or NULL, and an upsert that is not whole, before the query runs', async () => {
      const { sql, name, db } = await front();
      await db.insertInto(name).values({ ...alice, row_version: 1 }).execute();
      const before = await sql.all(`SELECT * FROM ${name}`);
      const refused = async (query: { execute(): Promise<unknown> }, problem: string) => {
        const error = await failure(() => query.execute());
        expect(error).toBeInstanceOf(RowVersionError);
        expect(error).toMatchObject({ code: 'ERR_ROW_VERSION', problem });
      };
      const u1 = (set: Record<string, unknown>) => db.updateTable(name).set(set).where('id', '=', 'u1').where('tenant', '=', 'acme');
      await refused(u1({ email: 'x' }), 'partial-write');
      await refused(u1({ email: 'x', card: 'y' }), 'partial-write');
      await refused(u1({ row_version: 2 }), 'partial-write');
      await refused(u1({ email: 'x', card: 'y', row_version: ksql`row_version + 1` }), 'missing');
      await refused(u1({ email: 'x', card: 'y', row_version: null }), 'missing');
      await refused(u1({ email: 'x', card: 'y', row_version: ksql.lit(2) }), 'missing');
      await refused(db.insertInto(name).values({ ...alice, id: 'u2' }), 'partial-write');
      await refused(db.insertInto(name).values({ id: 'u2', tenant: 'acme', email: 'x', row_version: 1 }), 'partial-write');
      await refused(
        db
          .insertInto(name)
          .values({ ...alice, row_version: 2 })
          .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ email: eb.ref('excluded.email') }))),
        'partial-write',
      );
      await expect(
        db
          .insertInto(name)
          .values({ ...alice, row_version: 2 })
          .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ email: eb.ref('excluded.email'), card: eb.ref('excluded.card'), row_version: ksql`${ksql.ref(`${name}.row_version`)} + 1` })))
          .execute(),
      ).rejects.toThrow(/excluded\.row_version/);
      expect(await sql.all(`SELECT * FROM ${name}`)).toEqual(before);
      // The whole upsert goes through.
      await db
        .insertInto(name)
        .values({ ...alice, email: 'alice@up.example', row_version: 3 })
        .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ email: eb.ref('excluded.email'), card: eb.ref('excluded.card'), row_version: eb.ref('excluded.row_version') })))
        .execute();
      expect(await db.selectFrom(name).selectAll().executeTakeFirst()).toMatchObject({ email: 'alice@up.example' });
    });
  });
}

describe('row-version binding through Sequelize (postgres)', () => {
  async function front(locking: boolean) {
    const sql = postgresSql(pool);
    const name = uniqueTable('kmse_rowv_q');
    made.push(name);
    await table(sql, name);
    const attributes = {
      id: { type: DataTypes.TEXT, primaryKey: true },
      tenant: DataTypes.TEXT,
      email: DataTypes.TEXT,
      email_idx: DataTypes.TEXT,
      card: DataTypes.TEXT,
      note: DataTypes.TEXT,
      row_version: DataTypes.BIGINT,
    };
    const Customer: ModelStatic<Model> = sequelize.define(`${name}_m`, attributes, { tableName: name, timestamps: false, ...(locking ? { version: 'row_version' } : {}) });
    sealModel(Customer, { records: records(), table: customers });
    return { sql, name, Customer };
  }

  it('save() seals every sealed attribute again under the version the instance gives; one cell rolled back fails', async () => {
    const { sql, name, Customer } = await front(false);
    await Customer.create({ ...alice, row_version: 1 });
    const oldCard = (await sql.all(`SELECT card FROM ${name}`))[0]!.card;
    const found = (await Customer.findByPk('u1'))!;
    expect(found.get('card')).toBe(alice.card);
    await found.update({ email: 'alice@new.example', row_version: 2 });
    const stored = (await sql.all(`SELECT card, row_version FROM ${name}`))[0]!;
    expect(stored.card).not.toBe(oldCard); // sealed again, unchanged, under version 2
    expect(stored.row_version).toBe('2');
    expect((await Customer.findByPk('u1'))!.get({ plain: true })).toMatchObject({ email: 'alice@new.example', card: alice.card });
    // A plain attribute alone is written alone.
    await (await Customer.findByPk('u1'))!.update({ note: 'n' });
    await sql.run(`UPDATE ${name} SET card = ? WHERE id = 'u1'`, [oldCard]);
    expect(await failure(() => Customer.findByPk('u1'))).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', column: 'card' });
  });

  it('refuses an update without a new version, an instance missing a sealed attribute, and Model.update() of sealed attributes', async () => {
    const { sql, name, Customer } = await front(false);
    await Customer.create({ ...alice, row_version: 1 });
    const before = await sql.all(`SELECT * FROM ${name}`);
    const found = (await Customer.findByPk('u1'))!;
    expect(await failure(() => found.update({ email: 'x' }))).toMatchObject({ code: 'ERR_ROW_VERSION', problem: 'missing' });
    const partial = (await Customer.findByPk('u1', { attributes: ['id', 'tenant', 'email', 'row_version'] }))!;
    expect(await failure(() => partial.update({ email: 'x', row_version: 2 }))).toMatchObject({ code: 'ERR_ROW_VERSION', problem: 'partial-write' });
    expect(await failure(() => Customer.update({ email: 'x' }, { where: { id: 'u1' } }))).toMatchObject({ code: 'ERR_ROW_VERSION', problem: 'partial-write' });
    expect(await failure(() => Customer.update({ email: 'x', card: 'y', row_version: 2 }, { where: { id: 'u1' } }))).toBeInstanceOf(RowVersionError);
    expect(await failure(() => Customer.create({ ...alice, id: 'u2' }))).toMatchObject({ code: 'ERR_ROW_VERSION' });
    expect(await sql.all(`SELECT * FROM ${name}`)).toEqual(before);
    await Customer.update({ note: 'n' }, { where: { id: 'u1' } });
    expect((await Customer.findByPk('u1'))!.get({ plain: true })).toMatchObject({ email: alice.email, note: 'n' });
  });

  it("with Sequelize's optimistic locking on the column, each save binds the version it writes (old + 1)", async () => {
    const { sql, name, Customer } = await front(true);
    const created = await Customer.create({ ...alice });
    expect(String((await sql.all(`SELECT row_version FROM ${name}`))[0]!.row_version)).toBe('0');
    await created.update({ email: 'alice@new.example' });
    await (await Customer.findByPk('u1'))!.update({ note: 'n' }); // a plain attribute: the version moves, so the row is sealed again
    expect((await sql.all(`SELECT row_version FROM ${name}`))[0]!.row_version).toBe('2');
    expect((await Customer.findByPk('u1'))!.get({ plain: true })).toMatchObject({ email: 'alice@new.example', card: alice.card, note: 'n' });
  });
});

describe('row-version binding through Drizzle', () => {
  it('refuses a table with a row version: its column hooks seal one value at a time', () => {
    const make = () => sealedColumns({ customType, records: records(), table: customers });
    expect(make).toThrow(RowVersionError);
    expect(make).toThrow(expect.objectContaining({ code: 'ERR_ROW_VERSION', problem: 'partial-write' }));
  });
});
