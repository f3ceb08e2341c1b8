/**
 * Range, prefix and contains tokens through the ORM adapters on a real PostgreSQL: Kysely and Sequelize
 * write the token columns a table declares (`search` in defineTable) with the sealed value, on
 * insert and on update, and records.searchQuery + openMatching find exactly the matching rows.
 */
import { drizzle } from 'drizzle-orm/node-postgres';
import { customType, pgTable, text } from 'drizzle-orm/pg-core';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { DataTypes, Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealedColumns, searchTokensType } from '../../src/adapters/drizzle.ts';
import { kyselyEncryption } from '../../src/adapters/kysely.ts';
import { sealModel } from '../../src/adapters/sequelize.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createRecords, defineTable } from '../../src/records/records.ts';
import { searchSchema } from '../../src/records/search-sql.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const people = defineTable({
  name: 'people',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: {
    name: {
      type: 'string',
      search: [
        { kind: 'prefix', acknowledgeLeakage: 'prefix', column: 'name_tokens', minLength: 1, maxLength: 4, normalize: 'casefold' },
        { kind: 'contains', acknowledgeLeakage: 'contains', column: 'name_grams', minLength: 2, maxLength: 12, normalize: 'casefold' },
      ],
    },
    born: { type: 'date', index: { column: 'born_idx', bits: 32 }, search: { kind: 'range', acknowledgeLeakage: 'range', column: 'born_tokens', levels: ['day', 'month', 'year'] } },
  },
});
const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() }) });

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
  for (const t of made) await pool.query(`DROP TABLE IF EXISTS ${t}`);
  await pool.end();
  await sequelize.close();
  await server.stop();
});

async function table(): Promise<string> {
  const t = uniqueTable('kmse_search_orm');
  made.push(t);
  await pool.query(`CREATE TABLE ${t} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT, born TEXT, born_idx TEXT)`);
  for (const c of ['name_tokens', 'name_grams', 'born_tokens']) for (const s of searchSchema('postgres', t, c)) await pool.query(s);
  return t;
}

const rows = [
  { id: 'p1', tenant: 'acme', name: 'Alice', born: new Date(Date.UTC(1990, 0, 2)) },
  { id: 'p2', tenant: 'acme', name: 'alfred', born: new Date(Date.UTC(1990, 1, 2)) },
  { id: 'p3', tenant: 'acme', name: 'Bob', born: new Date(Date.UTC(1991, 0, 2)) },
];

async function found(t: string, column: 'name' | 'born', condition: object): Promise<string[]> {
  const q = await records.searchQuery(people, column, condition as never, { partition: 'acme', dialect: 'postgres', from: t });
  const candidates = (await pool.query(`SELECT * FROM ${t} WHERE ${q.sql}`, [...q.params])).rows;
  return (await records.openMatching(people, q, candidates)).map((r) => r.id as string).sort();
}

describe('range and prefix tokens through the adapters (PostgreSQL)', () => {
  it('Kysely writes the token columns on insert and update', async () => {
    const t = await table();
    const encryption = kyselyEncryption({ records, tables: { [t]: people } });
    const db = new Kysely<any>({ dialect: encryption.dialect(new PostgresDialect({ pool })), plugins: [encryption] });
    await db.insertInto(t).values(rows).execute();
    const raw = (await pool.query(`SELECT name_tokens, born_tokens, born_idx FROM ${t} ORDER BY id`)).rows;
    expect(raw.every((r) => r.name_tokens.length === 4 && r.born_tokens.length === 3 && typeof r.born_idx === 'string')).toBe(true);
    expect(await found(t, 'name', { startsWith: 'AL' })).toEqual(['p1', 'p2']);
    expect(await found(t, 'name', { contains: 'LIC' })).toEqual(['p1']);
    expect(await found(t, 'born', { gte: new Date(Date.UTC(1990, 0, 1)), lt: new Date(Date.UTC(1990, 11, 31)) })).toEqual(['p1', 'p2']);
    await db.updateTable(t).set({ name: 'Bobby', born: new Date(Date.UTC(1990, 5, 5)) }).where('id', '=', 'p3').where('tenant', '=', 'acme').execute();
    expect(await found(t, 'name', { startsWith: 'bobb' })).toEqual(['p3']);
    expect(await found(t, 'name', { contains: 'obb' })).toEqual(['p3']);
    expect(await found(t, 'born', { gte: new Date(Date.UTC(1990, 0, 1)), lt: new Date(Date.UTC(1990, 11, 31)) })).toEqual(['p1', 'p2', 'p3']);
  });

  it('Sequelize writes the token columns on create and save', async () => {
    const t = await table();
    const Person = sequelize.define(
      t,
      { id: { type: DataTypes.TEXT, primaryKey: true }, tenant: DataTypes.TEXT, name: DataTypes.TEXT, born: DataTypes.TEXT, born_idx: DataTypes.TEXT, name_tokens: DataTypes.ARRAY(DataTypes.BIGINT), name_grams: DataTypes.ARRAY(DataTypes.BIGINT), born_tokens: DataTypes.ARRAY(DataTypes.BIGINT) },
      { tableName: t, timestamps: false },
    );
    sealModel(Person, { records, table: people });
    await Person.bulkCreate(rows as never[]);
    expect(await found(t, 'name', { startsWith: 'ali' })).toEqual(['p1']);
    const bob = (await Person.findByPk('p3'))!;
    bob.set('name', 'Alina');
    await bob.save();
    expect(await found(t, 'name', { startsWith: 'ali' })).toEqual(['p1', 'p3']);
    expect(await found(t, 'name', { contains: 'lin' })).toEqual(['p3']);
    expect(await found(t, 'born', { gte: new Date(Date.UTC(1991, 0, 1)), lte: new Date(Date.UTC(1991, 0, 2)) })).toEqual(['p3']);
  });

  it('Drizzle writes the tokens through searchTokensType', async () => {
    const shop = defineTable({ name: 'shop_people', partition: 'acme', columns: { name: people.columns.name } });
    await records.warm(['acme'], [shop]);
    const t = uniqueTable('kmse_search_drizzle');
    made.push(t);
    await pool.query(`CREATE TABLE ${t} (id TEXT PRIMARY KEY, name TEXT, name_tokens bigint[])`);
    const sealed = sealedColumns({ customType, records, table: shop });
    const nameTokens = searchTokensType({ customType, records, table: shop, column: 'name', kind: 'prefix' });
    const table = pgTable(t, { id: text().primaryKey(), name: sealed.name(), nameTokens: nameTokens('name_tokens') });
    await drizzle(pool).insert(table).values(rows.map((r) => ({ id: r.id, name: r.name, nameTokens: r.name })));
    const q = await records.searchQuery(shop, 'name', { startsWith: 'Al' }, { partition: 'acme', dialect: 'postgres', from: t });
    const candidates = (await pool.query(`SELECT id, name FROM ${t} WHERE ${q.sql}`, [...q.params])).rows;
    expect((await records.openMatching(shop, q, candidates)).map((r) => r.id).sort()).toEqual(['p1', 'p2']);
    expect(() => searchTokensType({ customType, records, table: shop, column: 'name', kind: 'range' })).toThrow(/declares no range index/);
  });
});
