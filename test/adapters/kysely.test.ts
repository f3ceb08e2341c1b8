/**
 * kms-envelope/kysely against a real PostgreSQL (test/fixtures/postgres.ts): the plugin marks
 * sealed columns in INSERTs and UPDATEs, the wrapped dialect seals them through the record API,
 * SELECTs and RETURNING open them. Each test makes its own table and the file drops them after.
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kyselyEncryption } from '../../src/adapters/kysely.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createRecords, defineTable, RecordFieldError } from '../../src/records/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: {
    email: { type: 'string' },
    born: { type: 'date' },
    photo: { type: 'bytes', encoding: 'bytes' },
  },
});

const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() }) });

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

/** A table of its own, and a Kysely over it with the plugin and the wrapped dialect. */
async function setup() {
  const table = uniqueTable('kmse_kysely');
  made.push(table);
  await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT, email TEXT, born TEXT, photo BYTEA)`);
  const encryption = kyselyEncryption({ records, tables: { [table]: customers } });
  // The pool is the test's: Kysely's destroy() would end it, so no destroy() here.
  const db = new Kysely<any>({ dialect: encryption.dialect(new PostgresDialect({ pool })), plugins: [encryption] });
  const raw = async (where = '') => (await pool.query(`SELECT * FROM ${table} ${where} ORDER BY id`)).rows as Record<string, unknown>[];
  return { table, encryption, db, raw };
}

const alice = { id: 'u1', tenant: 'acme', name: 'Alice', email: 'alice@example.com', born: new Date('1990-01-02T03:04:05.678Z'), photo: Uint8Array.of(1, 2, 3) };
const bob = { id: 'u2', tenant: 'acme', name: 'Bob', email: 'bob@example.com', born: new Date('1985-06-07T00:00:00.000Z'), photo: Uint8Array.of(4, 5) };

describe('kms-envelope/kysely on PostgreSQL', () => {
  it('inserts sealed rows and reads them back opened (selectAll, columns, aliases, RETURNING)', async () => {
    const { table, db, raw } = await setup();
    const returned = await db.insertInto(table).values([alice, bob]).returning(['id', 'tenant', 'email']).execute();
    expect(returned).toEqual([
      { id: 'u1', tenant: 'acme', email: alice.email },
      { id: 'u2', tenant: 'acme', email: bob.email },
    ]);

    const stored = await raw();
    expect(stored[0]!.name).toBe('Alice'); // undeclared columns stay as they are
    expect(stored[0]!.email).toMatch(/^kme\.[A-Za-z0-9_-]+$/);
    expect(stored[0]!.born).toMatch(/^kme\./);
    expect(stored[0]!.photo).toBeInstanceOf(Buffer);
    expect(JSON.stringify(stored)).not.toMatch(/example\.com|1990/);

    const all = await db.selectFrom(table).selectAll().orderBy('id').execute();
    expect(all.map((r) => ({ ...r, photo: new Uint8Array(r.photo as Uint8Array) }))).toEqual([alice, bob]);
    expect(all[0]!.born).toBeInstanceOf(Date);

    const aliased = await db.selectFrom(`${table} as c`).select(['c.id', 'c.tenant', 'c.email as address']).where('c.id', '=', 'u2').executeTakeFirstOrThrow();
    expect(aliased).toEqual({ id: 'u2', tenant: 'acme', address: bob.email });
  });

  it('NULLs pass through, on insert, update and read', async () => {
    const { table, db, raw } = await setup();
    await db.insertInto(table).values({ id: 'n1', tenant: 'acme', email: null, born: null }).execute();
    expect(await raw()).toEqual([{ id: 'n1', tenant: 'acme', name: null, email: null, born: null, photo: null }]);
    expect(await db.selectFrom(table).selectAll().executeTakeFirst()).toMatchObject({ email: null, born: null, photo: null });
    await db.updateTable(table).set({ email: 'later@example.com' }).where('id', '=', 'n1').where('tenant', '=', 'acme').execute();
    await db.updateTable(table).set({ email: null }).where('id', '=', 'n1').execute();
    expect((await raw())[0]!.email).toBeNull();
  });

  it('an UPDATE seals for the row its WHERE pins; one that does not pin the key is refused before it runs', async () => {
    const { table, db, raw } = await setup();
    await db.insertInto(table).values([alice, bob]).execute();
    await db.updateTable(table).set({ email: 'alice@new.example' }).where('id', '=', 'u1').where('tenant', '=', 'acme').execute();
    expect((await raw())[0]!.email).toMatch(/^kme\./);
    const row = await db.selectFrom(table).select(['id', 'tenant', 'email']).where('id', '=', 'u1').executeTakeFirstOrThrow();
    expect(row.email).toBe('alice@new.example');

    await expect(db.updateTable(table).set({ email: 'x@example.com' }).where('tenant', '=', 'acme').execute()).rejects.toThrow(/must give id/);
    await expect(db.updateTable(table).set({ email: 'x@example.com' }).where('id', 'in', ['u1', 'u2']).execute()).rejects.toThrow(/must give id, tenant/);
    // An SQL expression or an inlined literal would store plaintext: refused.
    await expect(db.updateTable(table).set({ email: sql`lower(${'X@example.com'})` }).where('id', '=', 'u1').where('tenant', '=', 'acme').execute()).rejects.toThrow(
      /email is sealed: it takes a value, not an SQL expression/,
    );
    await expect(db.updateTable(table).set({ email: sql.lit('x@example.com') }).where('id', '=', 'u1').where('tenant', '=', 'acme').execute()).rejects.toThrow(/not an SQL expression/);
    await expect(db.updateTable(table).set((eb) => ({ email: eb.lit(42) })).where('id', '=', 'u1').where('tenant', '=', 'acme').execute()).rejects.toThrow(/inlined in the SQL/);
    expect(JSON.stringify(await raw())).not.toContain('example.com');
  });

  it('a value copied to another row with an SQL UPDATE fails with RecordFieldError naming the column and the row', async () => {
    const { table, db } = await setup();
    await db.insertInto(table).values([alice, bob]).execute();
    await pool.query(`UPDATE ${table} SET email = (SELECT email FROM ${table} WHERE id = 'u1') WHERE id = 'u2'`);
    const error = await db.selectFrom(table).selectAll().orderBy('id').execute().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RecordFieldError);
    expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', table: 'customers', column: 'email', row: ['u2'] });
    expect((error as Error).message).toMatch(/customers\.email of row \["u2"\] does not open/);
    expect((error as Error).message).not.toContain('example.com');
    // The row it came from still opens.
    expect((await db.selectFrom(table).selectAll().where('id', '=', 'u1').executeTakeFirstOrThrow()).email).toBe(alice.email);
  });

  it('a transaction rolled back leaves nothing', async () => {
    const { table, db, raw } = await setup();
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto(table).values(alice).execute();
        expect((await trx.selectFrom(table).selectAll().executeTakeFirstOrThrow()).email).toBe(alice.email);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await raw()).toEqual([]);
    // A committed one stays, sealed.
    await db.transaction().execute((trx) => trx.insertInto(table).values(bob).execute());
    expect((await raw()).map((r) => r.id)).toEqual(['u2']);
  });

  it('writes the blind index a sealed column declares, on insert, update and upsert, so rows are found by value', async () => {
    const indexed = defineTable({
      name: 'customers',
      primaryKey: 'id',
      partition: { column: 'tenant' },
      columns: { email: { type: 'string', index: { column: 'email_index', bits: 32, normalize: ['trim', 'casefold'] } } },
    });
    const table = uniqueTable('kmse_kysely_bi');
    made.push(table);
    await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, email_index TEXT)`);
    const encryption = kyselyEncryption({ records, tables: { [table]: indexed } });
    const db = new Kysely<any>({ dialect: encryption.dialect(new PostgresDialect({ pool })), plugins: [encryption] });
    const term = (value: string) => records.indexOf(indexed, 'email', value, { partition: 'acme' });
    const find = async (value: string) =>
      (await db.selectFrom(table).select(['id', 'tenant', 'email']).where('tenant', '=', 'acme').where('email_index', '=', await term(value)).execute()).filter(
        (row) => row.email.toLowerCase() === value.trim().toLowerCase(),
      );

    await db.insertInto(table).values([{ id: 'u1', tenant: 'acme', email: 'alice@example.com' }, { id: 'u2', tenant: 'acme', email: null }]).execute();
    const stored = (await pool.query(`SELECT * FROM ${table} ORDER BY id`)).rows as Record<string, unknown>[];
    expect(stored.map((r) => r.email_index)).toEqual([await term('alice@example.com'), null]);
    expect(await find('  ALICE@example.com ')).toEqual([{ id: 'u1', tenant: 'acme', email: 'alice@example.com' }]);

    await db.updateTable(table).set({ email: 'bob@example.com' }).where('id', '=', 'u2').where('tenant', '=', 'acme').execute();
    expect((await find('Bob@Example.com')).map((r) => r.id)).toEqual(['u2']);
    await db.updateTable(table).set({ email: null }).where('id', '=', 'u2').where('tenant', '=', 'acme').execute();
    expect((await pool.query(`SELECT email_index FROM ${table} WHERE id = 'u2'`)).rows[0]).toEqual({ email_index: null });

    await db
      .insertInto(table)
      .values({ id: 'u1', tenant: 'acme', email: 'carol@example.com' })
      .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ email: eb.ref('excluded.email') })))
      .execute();
    expect(await find('alice@example.com')).toEqual([]);
    expect((await find('carol@example.com')).map((r) => r.id)).toEqual(['u1']);
  });

  it('fails closed: the plugin without the wrapped dialect, a read without the key, an INSERT ... SELECT', async () => {
    const { table, encryption, db, raw } = await setup();
    const bare = new Kysely<any>({ dialect: new PostgresDialect({ pool }), plugins: [encryption] });
    await expect(bare.insertInto(table).values(alice).execute()).rejects.toThrow(/reached the database unsealed/);
    expect(await raw()).toEqual([]);

    await db.insertInto(table).values(alice).execute();
    expect(() => db.selectFrom(table).select(['email']).compile()).toThrow(/must select id, tenant too/);
    expect(() => db.insertInto(table).columns(['id', 'tenant', 'email']).expression(db.selectFrom(table).select(['id', 'tenant', 'email'])).compile()).toThrow(/INSERT \.\.\. SELECT/);
    expect(() => db.insertInto(table).values({ tenant: 'acme', email: 'x@example.com' }).compile()).toThrow(/must give id/);
    // An upsert may only keep the row's own value (excluded.email on a conflict over the key).
    await db
      .insertInto(table)
      .values({ ...alice, email: 'upserted@example.com' })
      .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ email: eb.ref('excluded.email') })))
      .execute();
    expect((await db.selectFrom(table).selectAll().executeTakeFirstOrThrow()).email).toBe('upserted@example.com');
    expect(() =>
      db
        .insertInto(table)
        .values(alice)
        .onConflict((oc) => oc.column('id').doUpdateSet({ email: 'other@example.com' }))
        .compile(),
    ).toThrow(/an upsert may set it only to excluded\.email/);
  });
});
