/**
 * kms-envelope/drizzle against a real PostgreSQL (test/fixtures/postgres.ts): sealed columns as
 * Drizzle custom types (synchronous hooks through records.sealFieldSync/openFieldSync, keys
 * warm), and a blind-index column for lookups by value. Each test makes its own table; the file
 * drops them after.
 */
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { customType, pgTable, text } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blindIndexType, sealedColumnConfig, sealedColumns } from '../../src/adapters/drizzle.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createBlindIndex, createRecords, defineTable, RecordFieldError } from '../../src/records.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const profiles = defineTable({
  name: 'profiles',
  partition: 'acme',
  columns: {
    email: { type: 'string' },
    born: { type: 'date' },
    photo: { type: 'bytes', encoding: 'bytes' },
    nickname: { type: 'string' },
  },
});

const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
const records = createRecords({ hierarchy });

let server: PostgresServer;
let pool: pg.Pool;
const made: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  await records.warm(['acme']);
});
afterAll(async () => {
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.end();
  await server.stop();
});

async function setup() {
  const name = uniqueTable('kmse_drizzle');
  made.push(name);
  await pool.query(`CREATE TABLE ${name} (id TEXT PRIMARY KEY, name TEXT, email TEXT, born TEXT, photo BYTEA, nickname TEXT)`);
  const sealed = sealedColumns({ customType, records, table: profiles });
  const table = pgTable(name, { id: text().primaryKey(), name: text(), email: sealed.email(), born: sealed.born(), photo: sealed.photo(), nickname: sealed.nickname() });
  const db = drizzle(pool);
  const raw = async () => (await pool.query(`SELECT * FROM ${name} ORDER BY id`)).rows as Record<string, unknown>[];
  return { name, table, db, raw };
}

const alice = { id: 'p1', name: 'Alice', email: 'alice@example.com', born: new Date('1990-01-02T03:04:05.678Z'), photo: Uint8Array.of(1, 2, 3), nickname: 'al' };
const bob = { id: 'p2', name: 'Bob', email: 'bob@example.com', born: new Date('1985-06-07T00:00:00.000Z'), photo: Uint8Array.of(4, 5), nickname: 'bobby' };
const plain = (row: Record<string, unknown>) => ({ ...row, photo: row.photo === null ? null : new Uint8Array(row.photo as Uint8Array) });

describe('kms-envelope/drizzle on PostgreSQL', () => {
  it('inserts sealed values and reads them back opened, each as its type', async () => {
    const { table, db, raw } = await setup();
    await db.insert(table).values([alice, bob]);
    const stored = await raw();
    expect(stored[0]!.name).toBe('Alice');
    expect(stored[0]!.email).toMatch(/^kme\.[A-Za-z0-9_-]+$/);
    expect(stored[0]!.photo).toBeInstanceOf(Buffer);
    expect(JSON.stringify(stored)).not.toMatch(/example\.com|1990/);
    const rows = await db.select().from(table).orderBy(table.id);
    expect(rows.map(plain)).toEqual([alice, bob]);
    expect(rows[0]!.born).toBeInstanceOf(Date);
    await db.update(table).set({ email: 'alice@new.example' }).where(eq(table.id, 'p1'));
    expect((await db.select({ email: table.email }).from(table).where(eq(table.id, 'p1')))[0]!.email).toBe('alice@new.example');
  });

  it('NULLs pass through', async () => {
    const { table, db, raw } = await setup();
    await db.insert(table).values({ id: 'n1', email: null, born: null });
    expect(await raw()).toEqual([{ id: 'n1', name: null, email: null, born: null, photo: null, nickname: null }]);
    expect((await db.select().from(table))[0]).toMatchObject({ email: null, born: null, photo: null });
  });

  it('a value copied to another column fails with RecordFieldError naming the column; copied to another row of its column it opens (no row binding)', async () => {
    const { name, table, db } = await setup();
    await db.insert(table).values([alice, bob]);
    await pool.query(`UPDATE ${name} SET nickname = email WHERE id = 'p2'`);
    const error = await db.select().from(table).where(eq(table.id, 'p2')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RecordFieldError);
    expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', table: 'profiles', column: 'nickname', row: [] });
    expect((error as Error).message).not.toContain('example.com');
    // The documented limit: Drizzle's hooks cannot bind the row.
    await pool.query(`UPDATE ${name} SET email = (SELECT email FROM ${name} WHERE id = 'p1') WHERE id = 'p1' OR id = 'p2'`);
    expect((await db.select({ email: table.email }).from(table).where(eq(table.id, 'p1')))[0]!.email).toBe(alice.email);
  });

  it('a transaction rolled back leaves nothing', async () => {
    const { table, db, raw } = await setup();
    await expect(
      db.transaction(async (tx) => {
        await tx.insert(table).values(alice);
        expect((await tx.select().from(table))[0]!.email).toBe(alice.email);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await raw()).toEqual([]);
  });
});

describe('kms-envelope/drizzle: what the hooks cannot do', () => {
  it('refuses a table it cannot bind (a primary key, a partition from the row) and a records object without the synchronous calls', () => {
    const keyed = defineTable({ name: 't', primaryKey: 'id', partition: 'p', columns: { v: { type: 'string' } } });
    const byRow = defineTable({ name: 't', partition: { column: 'tenant' }, columns: { v: { type: 'string' } } });
    expect(() => sealedColumns({ customType, records, table: keyed })).toThrow(/declares a primaryKey/);
    expect(() => sealedColumns({ customType, records, table: byRow })).toThrow(/give a fixed partition/);
    expect(() => sealedColumnConfig({} as typeof records, profiles, 'email')).toThrow(/sealFieldSync/);
  });

  it('a partition whose key is not in memory fails the write at once (KeyNotWarmError), and works once warm', async () => {
    const cold = defineTable({ name: 'profiles', partition: 'cold-tenant', columns: { email: { type: 'string' } } });
    const config = sealedColumnConfig(records, cold, 'email');
    expect(() => config.toDriver('x@example.com')).toThrow(expect.objectContaining({ code: 'ERR_KEY_NOT_WARM' }));
    await records.warm(['cold-tenant']);
    expect(config.fromDriver(config.toDriver('x@example.com'))).toBe('x@example.com');
  });
});

describe('kms-envelope/drizzle: blind-index column on PostgreSQL', () => {
  it('computes the index a sealed column declares in defineTable (records.indexOfSync), for eq() lookups', async () => {
    const people = defineTable({ name: 'people', partition: 'acme', columns: { email: { type: 'string', index: { column: 'email_index', bits: 32, normalize: ['trim', 'casefold'] } } } });
    await records.warm(['acme'], [people]);
    const name = uniqueTable('kmse_drizzle_ri');
    made.push(name);
    await pool.query(`CREATE TABLE ${name} (id TEXT PRIMARY KEY, email TEXT, email_index TEXT)`);
    const sealed = sealedColumns({ customType, records, table: people });
    const emailIndex = blindIndexType({ customType, records, table: people, column: 'email' });
    const table = pgTable(name, { id: text().primaryKey(), email: sealed.email(), emailIndex: emailIndex('email_index') });
    const db = drizzle(pool);
    await db.insert(table).values([
      { id: 'p1', email: 'alice@example.com', emailIndex: 'alice@example.com' },
      { id: 'p2', email: 'bob@example.com', emailIndex: 'bob@example.com' },
    ]);
    const stored = (await pool.query(`SELECT email_index FROM ${name} WHERE id = 'p1'`)).rows[0] as { email_index: string };
    expect(stored.email_index).toBe(await records.indexOf(people, 'email', 'alice@example.com', { partition: 'acme' }));
    const found = await db.select({ id: table.id, email: table.email }).from(table).where(eq(table.emailIndex, ' Bob@EXAMPLE.com'));
    expect(found.filter((r) => r.email === 'bob@example.com')).toEqual([{ id: 'p2', email: 'bob@example.com' }]);
    expect(() => blindIndexType({ customType, records, table: profiles, column: 'email' })).toThrow(/declares no blind index/);
  });

  it('finds rows by value through eq() on the index column, and index.matches() drops false positives', async () => {
    const index = createBlindIndex({ hierarchy, table: 'profiles', column: 'email', bits: 16, normalize: ['trim', 'casefold'], partition: 'acme' });
    await index.warm(['acme']);
    const name = uniqueTable('kmse_drizzle_bi');
    made.push(name);
    await pool.query(`CREATE TABLE ${name} (id TEXT PRIMARY KEY, email TEXT, email_index TEXT)`);
    const sealed = sealedColumns({ customType, records, table: profiles });
    const emailIndex = blindIndexType({ customType, index });
    const table = pgTable(name, { id: text().primaryKey(), email: sealed.email(), emailIndex: emailIndex('email_index') });
    const db = drizzle(pool);
    const people = Array.from({ length: 50 }, (_, i) => ({ id: `p${i}`, email: `user${i}@example.com`, emailIndex: `user${i}@example.com` }));
    await db.insert(table).values(people);
    const stored = (await pool.query(`SELECT email_index FROM ${name} WHERE id = 'p7'`)).rows[0] as { email_index: string };
    expect(stored.email_index).toBe(index.computeSync('user7@example.com'));
    expect(stored.email_index).not.toContain('user7');

    const term = '  USER7@Example.com ';
    const found = await db.select({ id: table.id, email: table.email }).from(table).where(eq(table.emailIndex, term));
    const hits = found.filter((row) => index.matches(row.email!, term));
    expect(hits).toEqual([{ id: 'p7', email: 'user7@example.com' }]);
    expect(found.length).toBeGreaterThanOrEqual(1); // 16 bits over 50 rows: false positives are possible, and dropped above
    expect(await db.select({ n: sql<number>`count(*)::int` }).from(table).where(eq(table.emailIndex, 'nobody@example.com')).then((r) => r[0]!.n)).toBeLessThanOrEqual(1);
    await index.close();
  });
});
