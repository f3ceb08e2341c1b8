/**
 * What a database writer can and cannot do to sealed rows (README), through each ORM adapter: Kysely
 * on a real PostgreSQL (test/fixtures/postgres.ts) and on SQLite, Sequelize and Drizzle on
 * PostgreSQL. The rows are written and read through the adapter; the attacks are SQL statements on
 * the table. Every adapter refuses a row moved to another tenant on each of its read paths, before
 * any key is loaded for it. Drizzle's column types see one value and not its row: its values are
 * bound to table and column only, so a value copied to another row, or a changed primary key, opens
 * there (the documented limit; its tenants are per-tenant table declarations with a fixed partition).
 */
import Database from 'better-sqlite3';
import { and, eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { customType, pgTable, text } from 'drizzle-orm/pg-core';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { DataTypes, type Model, type ModelStatic, Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blindIndexType, sealedColumns } from '../../src/adapters/drizzle.ts';
import { kyselyEncryption } from '../../src/adapters/kysely.ts';
import { sealModel } from '../../src/adapters/sequelize.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { createRecords, defineTable, RecordFieldError, type Records } from '../../src/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';
import { postgresSql, type Sql, sqliteSql } from '../fixtures/sql.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const columns = {
  email: { type: 'string', index: { column: 'email_idx', bits: 32 } },
  card: { type: 'string' },
} as const;
const tableOf = (name: string) => defineTable({ name, primaryKey: 'id', partition: { column: 'tenant' }, columns });
const [customers, suppliers] = [tableOf('customers'), tableOf('suppliers')];

type Row = Record<string, unknown>;
const people = [
  { id: 'u1', tenant: 'acme', email: 'alice@example.com', card: '4111 1111' },
  { id: 'u2', tenant: 'acme', email: 'bob@example.com', card: '5500 0000' },
  { id: 'u3', tenant: 'globex', email: 'carol@example.com', card: '3400 0000' },
];

let server: PostgresServer;
let pool: pg.Pool;
let sequelize: Sequelize;
const made: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  sequelize = new Sequelize(server.url, { logging: false, pool: { max: 4 } });
});
afterAll(async () => {
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await sequelize.close();
  await pool.end();
  await server.stop();
});

/** Per-tenant KMS providers counting their calls, a key store, and record APIs over them (a new one is a process started later). */
function keys() {
  const store = new MemoryKeyStore();
  const kms = { acme: new InstrumentedProvider(), globex: new InstrumentedProvider() };
  const kmsFor = (partition: string) => kms[partition.split('#')[0] as keyof typeof kms];
  const calls = () => JSON.stringify([kms.acme.calls, kms.globex.calls]);
  return { calls, records: () => createRecords({ hierarchy: createKeyHierarchy({ store, kms: kmsFor }) }) };
}

/** What the attacks use of an adapter: writes and reads through it, and the table's SQL. */
interface Front {
  sql: Sql;
  table: string;
  other: string;
  insert(rows: readonly Row[]): Promise<void>;
  updateEmail(id: string, tenant: string, email: string): Promise<void>;
  /** One row read through the adapter, for the tenant that reads it, from the table or the other one (undefined: none). */
  read(id: string, tenant: string, from?: 'other'): Promise<Row | undefined>;
  /** The rows a blind-index lookup returns (`found`) and those left after the match on the opened value. */
  find(tenant: string, email: string): Promise<{ found: unknown[]; matched: unknown[] }>;
  /** Every read path of the adapter over one row (and that row only), each to fail for a moved row. */
  readPaths(id: string, tenant: string): Record<string, () => Promise<unknown>>;
  /** A read that leaves out the partition column (undefined where the adapter cannot). */
  readWithoutTenant?(id: string): Promise<unknown>;
  /** The same tables through another record API (a process started later). */
  withRecords(records: Records): Promise<Front>;
}

const matchOf = (rows: Row[], email: string) => ({ found: rows.map((r) => r.id), matched: rows.filter((r) => r.email === email).map((r) => r.id) });

async function sqlTables(sql: Sql, names: readonly string[]): Promise<void> {
  for (const t of names) await sql.run(`CREATE TABLE ${t} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, email_idx TEXT, card TEXT, note TEXT)`);
}

async function kyselyFront(kind: 'postgres' | 'sqlite', records: Records, shared?: { db: Database.Database | undefined; table: string; other: string }): Promise<Front> {
  const sqlite = shared ? shared.db : kind === 'sqlite' ? new Database(':memory:') : undefined;
  const sql = sqlite ? sqliteSql(sqlite) : postgresSql(pool);
  const table = shared?.table ?? (sqlite ? 'customers' : uniqueTable('kmse_iso_k'));
  const other = shared?.other ?? (sqlite ? 'suppliers' : uniqueTable('kmse_iso_ks'));
  if (!shared) {
    if (!sqlite) made.push(table, other);
    await sqlTables(sql, [table, other]);
  }
  const encryption = kyselyEncryption({ records, tables: { [table]: customers, [other]: suppliers } });
  const dialect = sqlite ? new SqliteDialect({ database: sqlite }) : new PostgresDialect({ pool });
  const db = new Kysely<any>({ dialect: encryption.dialect(dialect), plugins: [encryption] });
  return {
    sql,
    table,
    other,
    insert: async (rows) => void (await db.insertInto(table).values(rows.map((r) => ({ ...r }))).execute()),
    updateEmail: async (id, tenant, email) => void (await db.updateTable(table).set({ email }).where('id', '=', id).where('tenant', '=', tenant).execute()),
    read: async (id, tenant, from) => db.selectFrom(from ? other : table).selectAll().where('id', '=', id).where('tenant', '=', tenant).executeTakeFirst(),
    find: async (tenant, email) => {
      const index = await records.indexOf(customers, 'email', email, { partition: tenant });
      return matchOf(await db.selectFrom(table).selectAll().where('tenant', '=', tenant).where('email_idx', '=', index).orderBy('id').execute(), email);
    },
    readPaths: (id, tenant) => ({
      selectAll: () => db.selectFrom(table).selectAll().where('tenant', '=', tenant).where('id', '=', id).execute(),
      'select columns': () => db.selectFrom(`${table} as c`).select(['c.id', 'c.tenant', 'c.email as address']).where('c.id', '=', id).execute(),
      'update returning': () => db.updateTable(table).set({ note: 'touched' }).where('id', '=', id).returning(['id', 'tenant', 'card']).execute(),
    }),
    readWithoutTenant: (id) => db.selectFrom(table).select(['id', 'email']).where('id', '=', id).execute(),
    withRecords: (r) => kyselyFront(kind, r, { db: sqlite, table, other }),
  };
}

async function sequelizeFront(records: Records, shared?: { table: string; other: string }): Promise<Front> {
  const sql = postgresSql(pool);
  const table = shared?.table ?? uniqueTable('kmse_iso_q');
  const other = shared?.other ?? uniqueTable('kmse_iso_qs');
  if (!shared) {
    made.push(table, other);
    await sqlTables(sql, [table, other]);
  }
  const model = (name: string, declared: typeof customers): ModelStatic<Model> => {
    const attributes = { id: { type: DataTypes.TEXT, primaryKey: true }, tenant: DataTypes.TEXT, email: DataTypes.TEXT, email_idx: DataTypes.TEXT, card: DataTypes.TEXT, note: DataTypes.TEXT };
    const m = sequelize.define(`${name}_${Math.random().toString(36).slice(2)}`, attributes, { tableName: name, timestamps: false });
    sealModel(m, { records, table: declared });
    return m;
  };
  const [Customer, Supplier] = [model(table, customers), model(other, suppliers)];
  const plain = (m: Model | null) => (m ? (m.get({ plain: true }) as Row) : undefined);
  return {
    sql,
    table,
    other,
    insert: async (rows) => void (await Customer.bulkCreate(rows.map((r) => ({ ...r })))),
    updateEmail: async (id, _tenant, email) => {
      const found = await Customer.findByPk(id);
      await found!.update({ email });
    },
    read: async (id, _tenant, from) => plain(await (from ? Supplier : Customer).findByPk(id)),
    find: async (tenant, email) => {
      const index = await records.indexOf(customers, 'email', email, { partition: tenant });
      return matchOf((await Customer.findAll({ where: { tenant, email_idx: index }, order: [['id', 'ASC']] })).map((m) => plain(m)!), email);
    },
    readPaths: (id, tenant) => ({
      findByPk: () => Customer.findByPk(id),
      findOne: () => Customer.findOne({ where: { id } }),
      findAll: () => Customer.findAll({ where: { tenant, id } }),
      'findAll raw': () => Customer.findAll({ where: { tenant, id }, raw: true }),
    }),
    readWithoutTenant: (id) => Customer.findAll({ where: { id }, attributes: ['id', 'email'] }),
    withRecords: (r) => sequelizeFront(r, { table, other }),
  };
}

/** Drizzle: a table declaration per tenant (a fixed partition), each over the same SQL tables. */
async function drizzleFront(records: Records, shared?: { table: string; other: string }): Promise<Front> {
  const sql = postgresSql(pool);
  const table = shared?.table ?? uniqueTable('kmse_iso_d');
  const other = shared?.other ?? uniqueTable('kmse_iso_ds');
  if (!shared) {
    made.push(table, other);
    await sqlTables(sql, [table, other]);
  }
  const declare = (sqlName: string, name: string, tenant: string) => {
    const declared = defineTable({ name, partition: tenant, columns });
    const sealed = sealedColumns({ customType, records, table: declared });
    const emailIdx = blindIndexType({ customType, records, table: declared, column: 'email' });
    return pgTable(sqlName, { id: text().primaryKey(), tenant: text().notNull(), email: sealed.email(), email_idx: emailIdx(), card: sealed.card(), note: text() });
  };
  const tenants = ['acme', 'globex'];
  const of = Object.fromEntries(tenants.map((t) => [t, { table: declare(table, 'customers', t), other: declare(other, 'suppliers', t) }]));
  await records.warm(tenants, [customers]);
  const db = drizzle(pool);
  const t = (tenant: string) => of[tenant]!.table;
  return {
    sql,
    table,
    other,
    insert: async (rows) => {
      for (const r of rows) await db.insert(t(r.tenant as string)).values({ ...r, email_idx: r.email } as never);
    },
    updateEmail: async (id, tenant, email) => void (await db.update(t(tenant)).set({ email, email_idx: email }).where(eq(t(tenant).id, id))),
    read: async (id, tenant, from) => {
      const declared = from ? of[tenant]!.other : t(tenant);
      return (await db.select().from(declared).where(and(eq(declared.id, id), eq(declared.tenant, tenant))))[0];
    },
    find: async (tenant, email) => matchOf(await db.select().from(t(tenant)).where(and(eq(t(tenant).tenant, tenant), eq(t(tenant).email_idx, email))).orderBy(t(tenant).id), email),
    readPaths: (id, tenant) => ({
      select: () => db.select().from(t(tenant)).where(and(eq(t(tenant).tenant, tenant), eq(t(tenant).id, id))),
      'select columns': () => db.select({ id: t(tenant).id, email: t(tenant).email }).from(t(tenant)).where(eq(t(tenant).id, id)),
      'update returning': () => db.update(t(tenant)).set({ note: 'touched' }).where(eq(t(tenant).id, id)).returning({ card: t(tenant).card }),
    }),
    withRecords: (r) => drizzleFront(r, { table, other }),
  };
}

async function rejected(work: () => unknown): Promise<RecordFieldError> {
  try {
    await work();
  } catch (error) {
    expect(error).toBeInstanceOf(RecordFieldError);
    return error as RecordFieldError;
  }
  throw new Error('expected a RecordFieldError, and it opened');
}

const FRONTS: Array<[string, (records: Records) => Promise<Front>, { rowBound: boolean }]> = [
  ['Kysely on PostgreSQL', (r) => kyselyFront('postgres', r), { rowBound: true }],
  ['Kysely on SQLite', (r) => kyselyFront('sqlite', r), { rowBound: true }],
  ['Sequelize on PostgreSQL', (r) => sequelizeFront(r), { rowBound: true }],
  ['Drizzle on PostgreSQL', (r) => drizzleFront(r), { rowBound: false }],
];

describe.each(FRONTS)('what a database writer can do to sealed rows: %s', (_name, make, { rowBound }) => {
  async function world() {
    const k = keys();
    const front = await make(k.records());
    await front.insert(people);
    return { ...k, front, sql: front.sql, t: front.table };
  }
  const row = { code: 'ERR_DECRYPTION_FAILED' };

  it(`copy a value to another row: ${rowBound ? 'refused' : 'opens (values bound to table and column only)'}`, async () => {
    const { front, sql, t } = await world();
    await sql.run(`UPDATE ${t} SET email = (SELECT email FROM ${t} WHERE id = 'u2') WHERE id = 'u1'`);
    if (!rowBound) return void expect((await front.read('u1', 'acme'))?.email).toBe('bob@example.com');
    const error = await rejected(() => front.read('u1', 'acme'));
    expect(error).toMatchObject({ ...row, column: 'email', row: ['u1'] });
    expect(error.message).not.toContain('bob');
  });

  it('swap values between columns: refused', async () => {
    const { front, sql, t } = await world();
    await sql.run(`UPDATE ${t} SET email = card, card = email WHERE id = 'u1'`);
    expect(await rejected(() => front.read('u1', 'acme'))).toMatchObject(row);
  });

  it('move a row to another table: refused', async () => {
    const { front, sql, t } = await world();
    await sql.run(`INSERT INTO ${front.other} SELECT * FROM ${t} WHERE id = 'u1'`);
    expect(await rejected(() => front.read('u1', 'acme', 'other'))).toMatchObject({ ...row, table: 'suppliers' });
  });

  it('move a row to another tenant: refused on every read path, before any key is loaded for it', async () => {
    const { front, sql, t, records, calls } = await world();
    await sql.run(`UPDATE ${t} SET tenant = 'globex' WHERE id = 'u1'`);
    const later = await front.withRecords(records());
    const before = calls();
    const paths = Object.entries(later.readPaths('u1', 'globex'));
    for (const [path, read] of paths) {
      const error = await rejected(read);
      expect([path, error.code]).toEqual([path, 'ERR_PARTITION_MISMATCH']);
      expect(error.message).toMatch(/partition "acme", not for the row's partition "globex"/);
      expect(error.message).not.toMatch(/alice|4111/);
    }
    expect(paths.length).toBeGreaterThanOrEqual(3);
    expect(calls()).toBe(before);
    if (later.readWithoutTenant) await expect(later.readWithoutTenant('u1')).rejects.toThrow(/tenant|partition/);
    expect((await later.read('u2', 'acme'))?.email).toBe('bob@example.com');
  });

  it(`change its primary key: ${rowBound ? 'refused' : 'opens (values bound to table and column only)'}`, async () => {
    const { front, sql, t } = await world();
    await sql.run(`UPDATE ${t} SET id = 'u9' WHERE id = 'u1'`);
    if (!rowBound) return void expect((await front.read('u9', 'acme'))?.email).toBe('alice@example.com');
    expect(await rejected(() => front.read('u9', 'acme'))).toMatchObject({ ...row, row: ['u9'] });
  });

  it('roll back one cell to an older sealed value of the same cell: NOT detected', async () => {
    const { front, sql, t } = await world();
    const [old] = await sql.all(`SELECT email, email_idx FROM ${t} WHERE id = 'u1'`);
    await front.updateEmail('u1', 'acme', 'alice@new.example');
    expect((await front.read('u1', 'acme'))?.email).toBe('alice@new.example');
    await sql.run(`UPDATE ${t} SET email = ?, email_idx = ? WHERE id = 'u1'`, [old!.email, old!.email_idx]);
    expect((await front.read('u1', 'acme'))?.email).toBe('alice@example.com');
  });

  it('roll back a whole row: NOT detected', async () => {
    const { front, sql, t } = await world();
    const [old] = await sql.all(`SELECT * FROM ${t} WHERE id = 'u1'`);
    await front.updateEmail('u1', 'acme', 'alice@new.example');
    await sql.run(`DELETE FROM ${t} WHERE id = 'u1'`);
    await sql.run(`INSERT INTO ${t} (id, tenant, email, email_idx, card) VALUES (?, ?, ?, ?, ?)`, [old!.id, old!.tenant, old!.email, old!.email_idx, old!.card]);
    expect(await front.read('u1', 'acme')).toMatchObject({ email: 'alice@example.com', card: '4111 1111' });
  });

  it('delete rows: NOT detected', async () => {
    const { front, sql, t } = await world();
    await sql.run(`DELETE FROM ${t} WHERE id = 'u2'`);
    expect((await front.read('u1', 'acme'))?.email).toBe('alice@example.com');
    expect(await front.read('u2', 'acme')).toBeUndefined(); // simply gone: nothing tells a deletion from a row never written
  });

  it('edit a blind-index column: can hide a row from search, or return another row, which the match after open drops', async () => {
    const { front, sql, t } = await world();
    expect(await front.find('acme', 'alice@example.com')).toEqual({ found: ['u1'], matched: ['u1'] });
    await sql.run(`UPDATE ${t} SET email_idx = (SELECT email_idx FROM ${t} WHERE id = 'u2') WHERE id = 'u1'`);
    expect(await front.find('acme', 'alice@example.com')).toEqual({ found: [], matched: [] });
    expect(await front.find('acme', 'bob@example.com')).toEqual({ found: ['u1', 'u2'], matched: ['u2'] });
  });
});
