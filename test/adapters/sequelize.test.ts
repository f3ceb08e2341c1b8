/**
 * kms-envelope/sequelize against a real PostgreSQL (test/fixtures/postgres.ts): a model's hooks
 * seal its declared attributes on create, update and bulkCreate, and open them after find. Each
 * test defines its own model over a table of its own, dropped after the file.
 */
import pg from 'pg';
import { DataTypes, type ModelStatic, type Model, Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealModel } from '../../src/adapters/sequelize.ts';
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
const orders = defineTable({ name: 'orders', primaryKey: 'id', partition: 'shop', columns: { note: { type: 'json' } } });

const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() }) });

let server: PostgresServer;
let sequelize: Sequelize;
let pool: pg.Pool;
const made: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  sequelize = new Sequelize(server.url, { logging: false, pool: { max: 4 } });
  pool = new pg.Pool({ connectionString: server.url, max: 2 });
});
afterAll(async () => {
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table} CASCADE`);
  await pool.end();
  await sequelize.close();
  await server.stop();
});

async function setup(): Promise<{ Customer: ModelStatic<Model>; table: string; raw: () => Promise<Record<string, unknown>[]> }> {
  const table = uniqueTable('kmse_sequelize');
  made.push(table);
  const Customer = sequelize.define(
    table,
    {
      id: { type: DataTypes.TEXT, primaryKey: true },
      tenant: { type: DataTypes.TEXT, allowNull: false },
      name: DataTypes.TEXT,
      email: DataTypes.TEXT,
      born: DataTypes.TEXT,
      photo: DataTypes.BLOB,
    },
    { tableName: table, timestamps: false },
  );
  sealModel(Customer, { records, table: customers });
  await Customer.sync();
  const raw = async () => (await pool.query(`SELECT * FROM ${table} ORDER BY id`)).rows as Record<string, unknown>[];
  return { Customer, table, raw };
}

const alice = { id: 'u1', tenant: 'acme', name: 'Alice', email: 'alice@example.com', born: new Date('1990-01-02T03:04:05.678Z'), photo: Uint8Array.of(1, 2, 3) };
const bob = { id: 'u2', tenant: 'acme', name: 'Bob', email: 'bob@example.com', born: new Date('1985-06-07T00:00:00.000Z'), photo: Uint8Array.of(4, 5) };
const plainOf = (m: Model) => {
  const v = m.get({ plain: true }) as Record<string, unknown>;
  return { ...v, photo: v.photo === null ? null : new Uint8Array(v.photo as Uint8Array) };
};

describe('kms-envelope/sequelize on PostgreSQL', () => {
  it('create and bulkCreate store sealed values; find opens them; the instances keep their plaintext', async () => {
    const { Customer, raw } = await setup();
    const created = await Customer.create(alice);
    expect(created.get('email')).toBe(alice.email);
    expect(created.changed()).toBe(false);
    const bulk = await Customer.bulkCreate([bob]);
    expect(bulk[0]!.get('email')).toBe(bob.email);

    const stored = await raw();
    expect(stored[0]!.name).toBe('Alice');
    expect(stored[0]!.email).toMatch(/^kme\.[A-Za-z0-9_-]+$/);
    expect(stored[1]!.born).toMatch(/^kme\./);
    expect(JSON.stringify(stored)).not.toMatch(/example\.com|1990/);

    const found = await Customer.findAll({ order: [['id', 'ASC']] });
    expect(found.map(plainOf)).toEqual([alice, bob]);
    expect(found[0]!.get('born')).toBeInstanceOf(Date);
    expect(found[0]!.changed()).toBe(false);
    expect((await Customer.findByPk('u2'))!.get('email')).toBe(bob.email);
    const rawRows = (await Customer.findAll({ raw: true, where: { id: 'u1' } })) as unknown as Record<string, unknown>[];
    expect(rawRows[0]!.email).toBe(alice.email);
  });

  it('NULLs pass through', async () => {
    const { Customer, raw } = await setup();
    await Customer.create({ id: 'n1', tenant: 'acme', email: null });
    expect(await raw()).toEqual([{ id: 'n1', tenant: 'acme', name: null, email: null, born: null, photo: null }]);
    expect((await Customer.findByPk('n1'))!.get({ plain: true })).toMatchObject({ email: null, born: null, photo: null });
  });

  it('save() and Model.update() seal for their row; upsert() is refused', async () => {
    const { Customer, raw } = await setup();
    await Customer.bulkCreate([alice, bob]);
    const a = (await Customer.findByPk('u1'))!;
    a.set('email', 'alice@new.example');
    await a.save();
    expect(a.get('email')).toBe('alice@new.example');
    await Customer.update({ email: 'both@example.com' }, { where: { tenant: 'acme' } });
    expect(JSON.stringify(await raw())).not.toContain('example');
    expect((await Customer.findAll({ order: [['id', 'ASC']] })).map((c) => c.get('email'))).toEqual(['both@example.com', 'both@example.com']);
    await expect(Customer.upsert({ ...alice, email: 'x@example.com' })).rejects.toThrow(/upsert\(\) cannot seal email/);
  });

  it('seals without validation too, and an instance whose write failed saves again sealed once', async () => {
    const { Customer, raw } = await setup();
    await Customer.create(alice, { validate: false });
    const again = Customer.build({ ...alice, email: 'second@example.com' });
    await expect(again.save()).rejects.toThrow(); // the key is taken
    await Customer.destroy({ where: { id: 'u1' } });
    await again.save();
    expect(again.get('email')).toBe('second@example.com');
    expect(JSON.stringify(await raw())).not.toContain('example.com');
    expect((await Customer.findByPk('u1'))!.get('email')).toBe('second@example.com');
  });

  it('a value copied to another row with an SQL UPDATE fails with RecordFieldError naming the column and the row', async () => {
    const { Customer, table } = await setup();
    await Customer.bulkCreate([alice, bob]);
    await pool.query(`UPDATE ${table} SET email = (SELECT email FROM ${table} WHERE id = 'u1') WHERE id = 'u2'`);
    const error = await Customer.findByPk('u2').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RecordFieldError);
    expect(error).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', table: 'customers', column: 'email', row: ['u2'] });
    expect((error as Error).message).not.toContain('example.com');
    expect((await Customer.findByPk('u1'))!.get('email')).toBe(alice.email);
  });

  it('a transaction rolled back leaves nothing', async () => {
    const { Customer, raw } = await setup();
    await expect(
      sequelize.transaction(async (transaction) => {
        await Customer.create(alice, { transaction });
        expect((await Customer.findByPk('u1', { transaction }))!.get('email')).toBe(alice.email);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await raw()).toEqual([]);
  });

  it('writes the blind index a sealed attribute declares, on create and update, so rows are found by value', async () => {
    const indexed = defineTable({
      name: 'customers',
      primaryKey: 'id',
      partition: { column: 'tenant' },
      columns: { email: { type: 'string', index: { column: 'emailIndex', bits: 32, normalize: ['trim', 'casefold'] } } },
    });
    const table = uniqueTable('kmse_sequelize_bi');
    made.push(table);
    const attributes = { id: { type: DataTypes.TEXT, primaryKey: true }, tenant: DataTypes.TEXT, email: DataTypes.TEXT };
    const Bare = sequelize.define(`${table}_bare`, attributes, { tableName: table, timestamps: false });
    expect(() => sealModel(Bare, { records, table: indexed })).toThrow(/no attribute emailIndex/);
    const Person = sequelize.define(table, { ...attributes, emailIndex: { type: DataTypes.TEXT, field: 'email_index' } }, { tableName: table, timestamps: false });
    sealModel(Person, { records, table: indexed });
    await Person.sync();
    const find = async (value: string) =>
      (await Person.findAll({ where: { tenant: 'acme', emailIndex: await records.indexOf(indexed, 'email', value, { partition: 'acme' }) } }))
        .filter((p) => (p.get('email') as string).toLowerCase() === value.trim().toLowerCase())
        .map((p) => p.get('id'));

    await Person.create({ id: 'u1', tenant: 'acme', email: 'alice@example.com' });
    await Person.bulkCreate([{ id: 'u2', tenant: 'acme', email: null }]);
    expect((await pool.query(`SELECT email_index FROM ${table} ORDER BY id`)).rows).toEqual([
      { email_index: await records.indexOf(indexed, 'email', 'alice@example.com', { partition: 'acme' }) },
      { email_index: null },
    ]);
    expect(await find(' ALICE@example.com')).toEqual(['u1']);
    const u2 = (await Person.findByPk('u2'))!;
    u2.set('email', 'bob@example.com');
    await u2.save();
    expect(await find('bob@example.com')).toEqual(['u2']);
    await Person.update({ email: null }, { where: { id: 'u2' } });
    expect((await pool.query(`SELECT email, email_index FROM ${table} WHERE id = 'u2'`)).rows[0]).toEqual({ email: null, email_index: null });
  });

  it('opens the included instances of another sealed model', async () => {
    const { Customer } = await setup();
    const table = uniqueTable('kmse_sequelize_orders');
    made.unshift(table);
    const Order = sequelize.define(table, { id: { type: DataTypes.TEXT, primaryKey: true }, note: DataTypes.TEXT }, { tableName: table, timestamps: false });
    sealModel(Order, { records, table: orders });
    Customer.hasMany(Order, { as: 'orders', foreignKey: 'customerId' });
    await Order.sync();
    await Customer.create(alice);
    await Order.bulkCreate([
      { id: 'o1', customerId: 'u1', note: { gift: true } },
      { id: 'o2', customerId: 'u1', note: ['fragile'] },
    ]);
    const found = (await Customer.findByPk('u1', { include: [{ model: Order, as: 'orders' }], order: [[{ model: Order, as: 'orders' }, 'id', 'ASC']] }))!;
    expect(found.get('email')).toBe(alice.email);
    expect((found.get('orders') as Model[]).map((o) => o.get('note'))).toEqual([{ gift: true }, ['fragile']]);
  });
});
