/**
 * Two tenants' lifecycle through the README's calls, on PostgreSQL and on SQLite: rows sealed by
 * the record API and by each adapter (Kysely, Drizzle, and Sequelize on PostgreSQL), one tenant
 * rotated and swept alone (the other reports nothing, counts are distinct rows, progress reaches its
 * total), every row of that tenant on the new version by its values' headers and its marker
 * (adapter rows and partial updates included), the old version retired (refused while a value
 * names it, done after), and every row still opening.
 */
import Database from 'better-sqlite3';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzleSqlite } from 'drizzle-orm/better-sqlite3';
import { customType as pgCustomType, pgTable, text as pgText } from 'drizzle-orm/pg-core';
import { customType as sqliteCustomType, sqliteTable, text as sqliteText } from 'drizzle-orm/sqlite-core';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { DataTypes, type Model, type ModelStatic, Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealedColumnConfig } from '../../src/adapters/drizzle.ts';
import { kyselyEncryption } from '../../src/adapters/kysely.ts';
import { sealModel } from '../../src/adapters/sequelize.ts';
import { createKeyHierarchy, type KeyStore, PostgresKeyStore, SqliteKeyStore, type VersionCensus } from '../../src/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import {
  censusPostgres,
  censusSqlite,
  createRecords,
  defineTable,
  type Records,
  rotationSweep,
  sealedKeyOf,
  type SweepEvent,
  type SweepSummary,
  sweepPostgres,
  sweepSqlite,
} from '../../src/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  keyVersionColumn: 'key_version',
  columns: { email: { type: 'string' }, phone: { type: 'string' } },
});
/** Drizzle's hooks see one value: a fixed partition, no primary key bound, no marker. */
const notes = defineTable({ name: 'notes', partition: 'acme', columns: { body: { type: 'string' } } });

type Row = Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the test needs of a database: raw SQL, its sweeps, its censuses, its adapters. */
interface Db {
  store: KeyStore;
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  sweep(table: string, plan: ReturnType<typeof rotationSweep>, onEvent: (e: SweepEvent) => void): Promise<SweepSummary>;
  census(table: string, declared: typeof customers | typeof notes): VersionCensus;
  kysely(records: Records, table: string): Kysely<any>;
  drizzleInsert(records: Records, table: string, rows: { id: string; body: string }[]): Promise<void>;
  drizzleRead(records: Records, table: string): Promise<Row[]>;
  sequelize?: (records: Records, table: string) => Promise<ModelStatic<Model>>;
}

let server: PostgresServer;
let pool: pg.Pool;
let sequelize: Sequelize;
const made: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 6 });
  sequelize = new Sequelize(server.url, { logging: false, pool: { max: 2 } });
});
afterAll(async () => {
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await sequelize.close();
  await pool.end();
  await server.stop();
});

function postgresDb(): Db {
  return {
    store: new PostgresKeyStore({ client: pool, table: uniqueTable('kmse_life_keys') }),
    query: async (sql, params = []) => (await pool.query(sql.replace(/\?/g, (() => { let i = 0; return () => `$${++i}`; })()), params)).rows as Row[],
    sweep: (table, plan, onEvent) => sweepPostgres(pool, { table, key: 'id', ...plan, workers: 2, batchSize: 2, onEvent }),
    census: (table, declared) => censusPostgres(pool, { table: declared, sqlTable: table, batchSize: 3 }),
    kysely: (records, table) => {
      const encryption = kyselyEncryption({ records, tables: { [table]: customers } });
      return new Kysely<any>({ dialect: encryption.dialect(new PostgresDialect({ pool })), plugins: [encryption] });
    },
    drizzleInsert: async (records, table, rows) => {
      const t = pgTable(table, { id: pgText('id').primaryKey(), body: pgCustomType(sealedColumnConfig(records, notes, 'body') as never)('body') });
      await drizzlePg(pool).insert(t).values(rows);
    },
    drizzleRead: async (records, table) => {
      const t = pgTable(table, { id: pgText('id').primaryKey(), body: pgCustomType(sealedColumnConfig(records, notes, 'body') as never)('body') });
      return (await drizzlePg(pool).select().from(t)) as Row[];
    },
    sequelize: async (records, table) => {
      const attributes = { id: { type: DataTypes.TEXT, primaryKey: true }, tenant: DataTypes.TEXT, email: DataTypes.TEXT, phone: DataTypes.TEXT, key_version: DataTypes.INTEGER };
      const model = sequelize.define(table, attributes, { tableName: table, timestamps: false });
      sealModel(model, { records, table: customers });
      return model;
    },
  };
}

function sqliteDb(): Db {
  const db = new Database(':memory:');
  return {
    store: new SqliteKeyStore({ database: db }),
    query: async (sql, params = []) => (/^\s*select/i.test(sql) ? (db.prepare(sql).all(...params) as Row[]) : (db.prepare(sql).run(...params), [])),
    sweep: (table, plan, onEvent) => sweepSqlite(db, { table, key: 'id', ...plan, batchSize: 2, onEvent }),
    census: (table, declared) => censusSqlite(db, { table: declared, sqlTable: table, batchSize: 3 }),
    kysely: (records, table) => {
      const encryption = kyselyEncryption({ records, tables: { [table]: customers } });
      return new Kysely<any>({ dialect: encryption.dialect(new SqliteDialect({ database: db })), plugins: [encryption] });
    },
    drizzleInsert: async (records, table, rows) => {
      const t = sqliteTable(table, { id: sqliteText('id').primaryKey(), body: sqliteCustomType(sealedColumnConfig(records, notes, 'body') as never)('body') });
      drizzleSqlite(db).insert(t).values(rows).run();
    },
    drizzleRead: async (records, table) => {
      const t = sqliteTable(table, { id: sqliteText('id').primaryKey(), body: sqliteCustomType(sealedColumnConfig(records, notes, 'body') as never)('body') });
      return drizzleSqlite(db).select().from(t).all() as Row[];
    },
  };
}

/** The versions a row's values name, from their headers. */
const namedVersions = (row: Row, columns: readonly string[]) => columns.map((c) => sealedKeyOf(row[c])?.version).filter((v) => v !== undefined);

describe.each([
  ['PostgreSQL', postgresDb],
  ['SQLite', sqliteDb],
])('two tenants on %s', (_, makeDb) => {
  it('seal through every front, rotate and sweep one tenant, retire its old version, every row still opens', async () => {
    const db = makeDb();
    const hierarchy = createKeyHierarchy({ store: db.store, kms: LocalKms.generate(), activeTtlMs: 200 });
    const records = createRecords({ hierarchy });
    const [people, viaKysely, viaSequelize, noteTable] = ['kmse_life_c', 'kmse_life_k', 'kmse_life_q', 'kmse_life_n'].map((p) => (db.sequelize ? uniqueTable(p) : p));
    const customerTables = [people!, viaKysely!, ...(db.sequelize ? [viaSequelize!] : [])];
    for (const t of customerTables) await db.query(`CREATE TABLE ${t} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, phone TEXT, key_version INTEGER)`);
    await db.query(`CREATE TABLE ${noteTable} (id TEXT PRIMARY KEY, body TEXT)`);
    if (db.sequelize) made.push(...customerTables, noteTable!);
    const person = (i: number, tenant: string) => ({ id: `${tenant}-${i}`, tenant, email: `u${i}@${tenant}.example`, phone: `+1-555-${i}` });
    const tenants = ['acme', 'globex'];

    // Version 1 everywhere: the record API, Kysely, Drizzle (acme), Sequelize (PostgreSQL).
    for (const tenant of tenants) {
      for (let i = 0; i < 3; i++) {
        const sealed = await records.seal(customers, person(i, tenant));
        await db.query(`INSERT INTO ${people} (id, tenant, email, phone, key_version) VALUES (?, ?, ?, ?, ?)`, [sealed.id, sealed.tenant, sealed.email, sealed.phone, sealed.key_version]);
      }
    }
    const kysely = db.kysely(records, viaKysely!);
    await kysely.insertInto(viaKysely!).values(tenants.flatMap((t) => [person(10, t), person(11, t)])).execute();
    await records.warm(['acme']); // Drizzle's hooks are synchronous: the key in memory, kept there
    await db.drizzleInsert(records, noteTable!, [{ id: 'n1', body: 'first note' }, { id: 'n2', body: 'second note' }]);
    const Customer = await db.sequelize?.(records, viaSequelize!);
    if (Customer) for (const t of tenants) await Customer.create(person(20, t));
    for (const t of customerTables) {
      for (const row of await db.query(`SELECT * FROM ${t}`)) expect([row.key_version, ...namedVersions(row, ['email', 'phone'])]).toEqual([1, 1, 1]);
    }

    // Rotate acme; then partial updates write the lowest version of the row's cells, not the new one.
    expect((await hierarchy.rotate('acme')).version).toBe(2);
    await kysely.updateTable(viaKysely!).set({ email: 'changed@acme.example' }).where('id', '=', 'acme-10').where('tenant', '=', 'acme').execute();
    await kysely.updateTable(viaKysely!).set({ email: 'both@acme.example', phone: '+1-555-0' }).where('id', '=', 'acme-11').where('tenant', '=', 'acme').execute();
    const [partial, full] = await db.query(`SELECT * FROM ${viaKysely} WHERE tenant = ? ORDER BY id`, ['acme']);
    expect([partial!.key_version, ...namedVersions(partial!, ['email', 'phone'])]).toEqual([1, 2, 1]);
    expect([full!.key_version, ...namedVersions(full!, ['email', 'phone'])]).toEqual([2, 2, 2]);
    if (Customer) {
      const found = (await Customer.findByPk('acme-20'))!;
      await found.update({ phone: '+1-555-99' });
      const [row] = await db.query(`SELECT * FROM ${viaSequelize} WHERE id = ?`, ['acme-20']);
      expect([row!.key_version, ...namedVersions(row!, ['email', 'phone'])]).toEqual([1, 1, 2]);
    }
    // A value copied onto another acme row: that row fails to open, once, and stays as it was.
    const [source] = await db.query(`SELECT email FROM ${people} WHERE id = ?`, ['acme-0']);
    await db.query(`UPDATE ${people} SET email = ? WHERE id = ?`, [source!.email, 'acme-1']);

    // Sweep only acme, in every table: globex is not read, counts are distinct, progress reaches its total.
    const census = [...customerTables.map((t) => db.census(t, customers)), db.census(noteTable!, notes)];
    for (const t of customerTables) {
      const events: SweepEvent[] = [];
      const summary = await db.sweep(t, rotationSweep(records, customers, { partitions: ['acme'] }), (e) => events.push(e));
      const failed = t === people ? 1 : 0;
      expect(summary).toMatchObject({ failed, stopped: false });
      expect(summary.seen).toBe(summary.pending);
      expect(summary.written + summary.current + summary.failed).toBe(summary.pending);
      expect(summary.failures.map((f) => f.key)).toEqual(failed ? [['acme-1']] : []);
      expect(events.filter((e) => e.type === 'row-failed')).toHaveLength(failed);
    }
    // Drizzle rows carry no marker: their rotation reads the versions the headers name.
    await sleep(250); // past activeTtlMs since the rotation: only the values can hold retire back now
    await expect(hierarchy.retire('acme', 1, { census, graceMs: 0 })).rejects.toMatchObject({ reason: 'in-use' });
    const noteSweep = await db.sweep(noteTable!, rotationSweep(records, notes, { partitions: ['acme'] }), () => {});
    expect(noteSweep).toMatchObject({ seen: 2, written: 2, failed: 0 });
    expect(await db.sweep(noteTable!, rotationSweep(records, notes, { partitions: ['acme'] }), () => {})).toMatchObject({ seen: 2, written: 0, current: 2 });

    for (const t of customerTables) {
      for (const row of await db.query(`SELECT * FROM ${t}`)) {
        const want = row.tenant === 'acme' && row.id !== 'acme-1' ? 2 : 1;
        expect([row.key_version, ...namedVersions(row, ['email', 'phone'])], `${t} ${row.id}`).toEqual([want, want, want]);
      }
    }
    for (const row of await db.query(`SELECT * FROM ${noteTable}`)) expect(namedVersions(row, ['body'])).toEqual([2]);

    // The copied value still names version 1: retire refuses until the row is dealt with.
    await expect(hierarchy.retire('acme', 1, { census, graceMs: 0 })).rejects.toMatchObject({ reason: 'in-use', valuesNaming: 2 });
    await db.query(`DELETE FROM ${people} WHERE id = ?`, ['acme-1']);
    await hierarchy.retire('acme', 1, { census, graceMs: 0 });
    await expect(hierarchy.retire('globex', 1, { census, graceMs: 0 })).rejects.toMatchObject({ reason: 'active' });

    // Every row still opens, through every front.
    for (const row of await db.query(`SELECT * FROM ${people}`)) expect((await records.open(customers, row)).email).toMatch(/@/);
    const read = await kysely.selectFrom(viaKysely!).selectAll().orderBy('id').execute();
    expect(read.map((r) => r.email)).toEqual(['changed@acme.example', 'both@acme.example', 'u10@globex.example', 'u11@globex.example']);
    expect((await db.drizzleRead(records, noteTable!)).map((r) => r.body).sort()).toEqual(['first note', 'second note']);
    if (Customer) expect((await Customer.findAll({ order: [['id', 'ASC']] })).map((m) => m.get('phone'))).toEqual(['+1-555-99', '+1-555-20']);
    records.stopWarm();
    await hierarchy.close();
  });
});
