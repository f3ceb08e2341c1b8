/**
 * The conformance suite of kms-envelope/prisma, run for each Prisma fixture (test/prisma/v6, v7:
 * their own package.json and generated client, made by test/prisma/generate.sh) against the real
 * PostgreSQL: each run makes a PostgreSQL schema of its own with test/prisma/tables.sql.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withEncryption } from '../../src/adapters/prisma.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { createRecords, defineTable, type Records } from '../../src/records/records.ts';
import { UnsupportedQueryError } from '../../src/records/unsupported-query.ts';
import { InstrumentedProvider } from '../instrumented.ts';
import { startPostgres, type PostgresServer, uniqueTable } from '../fixtures/postgres.ts';

const FIXTURES = fileURLToPath(new URL('../prisma/', import.meta.url));

export const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  keyVersionColumn: 'keyVersion',
  columns: {
    email: {
      type: 'string',
      index: { column: 'emailIdx', bits: 16, normalize: 'casefold' },
      search: { kind: 'prefix', acknowledgeLeakage: 'prefix', column: 'emailTokens', minLength: 1, maxLength: 4, normalize: 'casefold' },
    },
    age: { type: 'number' },
    balance: { type: 'bigint' },
    score: { type: 'number' },
    vip: { type: 'boolean' },
    born: { type: 'date', search: { kind: 'range', acknowledgeLeakage: 'range', column: 'bornTokens', levels: ['day', 'month', 'year'] } },
    prefs: { type: 'json' },
    photo: { type: 'bytes', encoding: 'bytes' },
    credit: { type: 'decimal', scale: 2, search: { kind: 'range', acknowledgeLeakage: 'range', column: 'creditTokens', levels: [4, 8, 16] } },
  },
});

export const orders = defineTable({
  name: 'orders',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  keyVersionColumn: 'keyVersion',
  columns: { note: { type: 'string', index: { column: 'noteIdx', bits: 16 }, search: { kind: 'contains', acknowledgeLeakage: 'contains', column: 'noteGrams', minLength: 3, maxLength: 24 } } },
});

/** A table with row-version binding (FORMAT.md §12.4). */
export const accounts = defineTable({ name: 'accounts', primaryKey: 'id', partition: { column: 'tenant' }, keyVersionColumn: 'keyVersion', rowVersion: { column: 'rowVersion' }, columns: { iban: { type: 'string' }, holder: { type: 'string' } } });

type Client = any;

/** The fixture's client module, its generated client made first if it is missing. */
async function loadFixture(version: string): Promise<{ makeClient(url: string, schema: string): Client; Decimal: new (value: string) => { toFixed(): string } }> {
  if (!existsSync(`${FIXTURES}${version}/generated/client.ts`)) execFileSync('bash', [`${FIXTURES}generate.sh`], { stdio: 'inherit' });
  const module = `${FIXTURES}${version}/client.mjs`;
  return import(/* @vite-ignore */ module);
}

const newRecords = (kms = LocalKms.generate()) => createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });

/** Two strings of the same blind index (a false positive of a lookup), found by trying. */
async function collision(records: Records, tenant: string): Promise<[string, string]> {
  const seen = new Map<string, string>();
  for (let i = 0; ; i++) {
    const value = `user${i}@example.com`;
    const index = await records.indexOf(customers, 'email', value, { partition: tenant });
    const other = seen.get(index);
    if (other !== undefined) return [other, value];
    seen.set(index, value);
  }
}

const alice = {
  id: 'c1',
  tenant: 'acme',
  name: 'Alice',
  email: 'Alice@Example.com',
  age: 36,
  balance: 12345678901234567890n,
  score: 0.5,
  vip: true,
  born: new Date('1990-01-02T03:04:05.678Z'),
  prefs: { theme: 'dark', tags: ['a', 'b'] },
  photo: Uint8Array.of(1, 2, 3),
};

export function conformance(version: 'v6' | 'v7'): void {
  describe(`kms-envelope/prisma on Prisma ${version} and PostgreSQL`, () => {
    let server: PostgresServer;
    let pool: pg.Pool;
    let schema: string;
    let fixture: Awaited<ReturnType<typeof loadFixture>>;
    const clients: Client[] = [];
    let records: Records;
    let base: Client;
    let db: Client;
    const encrypted = (client: Client, r = records) => withEncryption(client, { records: r, tables: { Customer: customers, Order: orders, Account: accounts } });
    const rows = async (table: string) => ((await pool.query({ text: `SELECT * FROM ${schema}.${table} ORDER BY id` })).rows as Record<string, unknown>[]);
    const client = () => {
      const c = fixture.makeClient(server.url, schema);
      clients.push(c);
      return c;
    };

    beforeAll(async () => {
      server = await startPostgres();
      pool = new pg.Pool({ connectionString: server.url, max: 2 });
      fixture = await loadFixture(version);
      schema = uniqueTable(`kmse_prisma_${version}`);
      await pool.query(`CREATE SCHEMA ${schema}`);
      const client0 = await pool.connect();
      try {
        await client0.query(`SET search_path TO ${schema}`);
        await client0.query(readFileSync(`${FIXTURES}tables.sql`, 'utf8'));
      } finally {
        client0.release();
      }
      records = newRecords();
      base = client();
      db = encrypted(base);
    });
    afterAll(async () => {
      for (const c of clients) await c.$disconnect();
      await pool?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await pool?.end();
      await server?.stop();
    });

    it('creates a row of every type sealed, with its blind index and key-version marker, and reads it back opened', async () => {
      const created = await db.customer.create({ data: alice });
      expect({ ...created, photo: new Uint8Array(created.photo) }).toMatchObject({ ...alice, emailIdx: expect.any(String), keyVersion: 1 });
      const [stored] = await rows('customers');
      for (const column of ['email', 'age', 'balance', 'score', 'vip', 'born', 'prefs']) expect(stored![column]).toMatch(/^kme\./);
      expect(stored!.photo).toBeInstanceOf(Uint8Array);
      expect(JSON.stringify(stored)).not.toMatch(/example|dark|1990/i);
      expect(stored!.email_idx).toBe(await records.indexOf(customers, 'email', 'alice@example.com', { partition: 'acme' }));
      expect(stored!.key_version).toBe(1);
      const found = await db.customer.findUnique({ where: { id: 'c1' } });
      expect(found.balance).toBe(alice.balance);
      expect(found.born).toEqual(alice.born);
      expect(found.prefs).toEqual(alice.prefs);
      expect(new Uint8Array(found.photo)).toEqual(alice.photo);
      // Without the extension, Prisma returns the sealed text.
      expect((await base.customer.findUnique({ where: { id: 'c1' } })).email).toMatch(/^kme\./);
    });

    it('adds the primary key and partition to a select that leaves them out, and strips them after', async () => {
      const picked = await db.customer.findUnique({ where: { id: 'c1' }, select: { email: true, age: true } });
      expect(picked).toEqual({ email: alice.email, age: 36 });
      const omitted = await db.customer.findFirst({ where: { id: 'c1' }, omit: { tenant: true, photo: true } });
      expect(omitted).not.toHaveProperty('tenant');
      expect(omitted.email).toBe(alice.email);
    });

    it('seals nested creates and opens include and nested select of relations', async () => {
      await db.customer.create({
        data: {
          id: 'c2',
          tenant: 'acme',
          email: 'bob@example.com',
          orders: { create: [{ id: 'o1', tenant: 'acme', note: 'first', total: 5 }], createMany: { data: [{ id: 'o2', tenant: 'acme', note: 'second', total: 7 }] } },
        },
      });
      await db.order.create({ data: { id: 'o3', tenant: 'acme', note: 'third', total: 1, customer: { connectOrCreate: { where: { id: 'c3' }, create: { id: 'c3', tenant: 'acme', email: 'carol@example.com' } } } } });
      const stored = await rows('orders');
      expect(stored.map((o) => o.note)).toEqual([expect.stringMatching(/^kme\./), expect.stringMatching(/^kme\./), expect.stringMatching(/^kme\./)]);
      expect(stored.every((o) => o.key_version === 1)).toBe(true);
      const bob = await db.customer.findUnique({ where: { id: 'c2' }, include: { orders: { orderBy: { id: 'asc' } } } });
      expect(bob.email).toBe('bob@example.com');
      expect(bob.orders.map((o: { note: string }) => o.note)).toEqual(['first', 'second']);
      const notes = await db.order.findMany({ where: { tenant: 'acme' }, orderBy: { id: 'asc' }, select: { note: true, customer: { select: { email: true } } } });
      expect(notes).toEqual([
        { note: 'first', customer: { email: 'bob@example.com' } },
        { note: 'second', customer: { email: 'bob@example.com' } },
        { note: 'third', customer: { email: 'carol@example.com' } },
      ]);
    });

    it('updates one sealed field bound to its row, keeping the marker at the lowest version of the row', async () => {
      const updated = await db.customer.update({ where: { id: 'c1', tenant: 'acme' }, data: { age: 37, name: 'Alice B' } });
      expect(updated.age).toBe(37);
      expect(updated.email).toBe(alice.email);
      const [stored] = await rows('customers');
      expect(stored!.age).toMatch(/^kme\./);
      expect(stored!.key_version).toBe(1);
      // The marker is the minimum: a row marked at an older version keeps it when one field is resealed.
      await pool.query(`UPDATE ${schema}.customers SET key_version = 0 WHERE id = 'c1'`);
      await db.customer.update({ where: { id: 'c1', tenant: 'acme' }, data: { score: 1.5 } });
      expect((await rows('customers'))[0]!.key_version).toBe(0);
      await pool.query(`UPDATE ${schema}.customers SET key_version = 1 WHERE id = 'c1'`);
    });

    it('upserts: the create and the update branch both sealed', async () => {
      await db.customer.upsert({ where: { id: 'c4', tenant: 'acme' }, create: { id: 'c4', tenant: 'acme', email: 'dan@example.com', vip: false }, update: { vip: true } });
      expect((await db.customer.findUnique({ where: { id: 'c4' } })).vip).toBe(false);
      await db.customer.upsert({ where: { id: 'c4', tenant: 'acme' }, create: { id: 'c4', tenant: 'acme' }, update: { vip: true, email: 'Dan@example.com' } });
      const dan = await db.customer.findUnique({ where: { id: 'c4' } });
      expect([dan.vip, dan.email]).toEqual([true, 'Dan@example.com']);
      expect((await rows('customers')).find((r) => r.id === 'c4')!.vip).toMatch(/^kme\./);
    });

    it('createMany and findMany go through the batch paths: one key load per partition', async () => {
      const kms = new InstrumentedProvider();
      const store = new MemoryKeyStore();
      const fresh = createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
      const many = encrypted(base, fresh);
      const data = Array.from({ length: 40 }, (_, i) => ({ id: `m${i}`, tenant: i % 2 ? 'm-one' : 'm-two', email: `m${i}@example.com`, age: i }));
      expect(await many.customer.createMany({ data })).toEqual({ count: 40 });
      // Per partition a data key, a blind-index key and a search key (email's prefix index): not one per row.
      expect(kms.calls.generate).toBe(6);
      const reader = encrypted(base, createRecords({ hierarchy: createKeyHierarchy({ store, kms }) }));
      kms.calls.decrypt = 0;
      const read = await reader.customer.findMany({ where: { id: { startsWith: 'm' } }, orderBy: { id: 'asc' } });
      expect(read.map((r: { age: number }) => r.age).sort((a: number, b: number) => a - b)).toEqual(data.map((d) => d.age));
      expect(kms.calls.decrypt).toBe(2);
      const stored = await pool.query(`SELECT key_version FROM ${schema}.customers WHERE id LIKE 'm%'`);
      expect(stored.rows.every((r: { key_version: number }) => r.key_version === 1)).toBe(true);
      await db.customer.deleteMany({ where: { id: { startsWith: 'm' } } });
    });

    it('finds rows by equals, in and notIn through the blind index, dropping its false positives', async () => {
      const [a, b] = await collision(records, 'fp');
      await db.customer.createMany({ data: [{ id: 'f1', tenant: 'fp', email: a }, { id: 'f2', tenant: 'fp', email: b }, { id: 'f3', tenant: 'fp', email: 'other@example.com' }, { id: 'f4', tenant: 'fp' }] });
      const ids = (found: { id: string }[]) => found.map((r) => r.id).sort();
      // The database finds both rows of the colliding index; only the right one comes back.
      expect(await base.customer.count({ where: { tenant: 'fp', emailIdx: await records.indexOf(customers, 'email', a, { partition: 'fp' }) } })).toBe(2);
      expect(ids(await db.customer.findMany({ where: { tenant: 'fp', email: a } }))).toEqual(['f1']);
      expect(ids(await db.customer.findMany({ where: { tenant: 'fp', email: { equals: b.toUpperCase() } } }))).toEqual(['f2']);
      expect(ids(await db.customer.findMany({ where: { tenant: 'fp', email: { in: [b, 'OTHER@example.com'] } } }))).toEqual(['f2', 'f3']);
      expect(ids(await db.customer.findMany({ where: { tenant: 'fp', email: { notIn: [a] } } }))).toEqual(['f2', 'f3']);
      expect(ids(await db.customer.findMany({ where: { tenant: 'fp', email: null } }))).toEqual(['f4']);
      expect((await db.customer.findFirst({ where: { tenant: 'fp', email: b }, orderBy: { id: 'asc' } })).id).toBe('f2');
      expect(await db.customer.findFirst({ where: { tenant: 'fp', email: 'nobody@example.com' } })).toBeNull();
      expect(ids(await db.customer.findMany({ where: { tenant: 'fp', email: { notIn: ['x@example.com'] } }, orderBy: { id: 'desc' }, skip: 1, take: 1 }))).toEqual(['f2']);
      // Writes by a search touch the matching rows only, never the false positive.
      expect(await db.customer.updateMany({ where: { tenant: 'fp', email: a }, data: { name: 'matched' } })).toEqual({ count: 1 });
      expect((await rows('customers')).filter((r) => r.name === 'matched').map((r) => r.id)).toEqual(['f1']);
      expect(await db.customer.deleteMany({ where: { tenant: 'fp', email: b } })).toEqual({ count: 1 });
      expect(ids(await db.customer.findMany({ where: { tenant: 'fp' } }))).toEqual(['f1', 'f3', 'f4']);
    });

    it('updateMany that seals: each row gets its own value, bound to it', async () => {
      expect(await db.customer.updateMany({ where: { tenant: 'fp' }, data: { prefs: { n: 1 } } })).toEqual({ count: 3 });
      const stored = (await rows('customers')).filter((r) => r.tenant === 'fp');
      expect(new Set(stored.map((r) => r.prefs)).size).toBe(3);
      const read = await db.customer.findMany({ where: { tenant: 'fp' } });
      expect(read.map((r: { prefs: unknown }) => r.prefs)).toEqual([{ n: 1 }, { n: 1 }, { n: 1 }]);
    });

    it('opens the rows that writes return, in batch and in an interactive transaction', async () => {
      const made = await db.customer.createManyAndReturn({ data: [{ id: 'r1', tenant: 'ret', email: 'r1@example.com', age: 1 }, { id: 'r2', tenant: 'ret', email: 'r2@example.com', age: 2 }], select: { email: true, age: true } });
      expect(made).toEqual([{ email: 'r1@example.com', age: 1 }, { email: 'r2@example.com', age: 2 }]);
      const changed = await db.customer.updateManyAndReturn({ where: { tenant: 'ret' }, data: { age: 9 }, select: { id: true, age: true } });
      expect(changed.sort((x: { id: string }, y: { id: string }) => x.id.localeCompare(y.id))).toEqual([{ id: 'r1', age: 9 }, { id: 'r2', age: 9 }]);
      const inTransaction = await db.$transaction(async (tx: Client) => {
        await tx.customer.update({ where: { id: 'r1', tenant: 'ret' }, data: { email: 'r1-new@example.com' } });
        return tx.customer.findFirst({ where: { tenant: 'ret', email: 'R1-NEW@example.com' }, select: { id: true, email: true } });
      });
      expect(inTransaction).toEqual({ id: 'r1', email: 'r1-new@example.com' });
      // A batch transaction: the extension's own reads (a search's candidates, the marker of a partial update) join it.
      const [searched, updated] = await db.$transaction([db.customer.findMany({ where: { tenant: 'ret', email: 'r2@example.com' }, select: { id: true } }), db.customer.update({ where: { id: 'r2', tenant: 'ret' }, data: { age: 3 } })]);
      expect([searched, updated.age]).toEqual([[{ id: 'r2' }], 3]);
      expect((await db.customer.delete({ where: { id: 'r2' } })).email).toBe('r2@example.com');
      expect(await db.customer.deleteMany({ where: { tenant: 'ret' } })).toEqual({ count: 1 });
    });

    it('row-version tables: whole-row writes seal under the new version; partial writes are refused with RowVersionError', async () => {
      const holder = { id: 'a1', tenant: 'acme', iban: 'DE02 1001', holder: 'Alice', rowVersion: 1n, customerId: 'c1' };
      expect(await db.account.create({ data: holder })).toMatchObject({ iban: 'DE02 1001', rowVersion: 1n, keyVersion: 1 });
      const v1 = (await rows('accounts'))[0]!;
      await db.account.update({ where: { id: 'a1', tenant: 'acme' }, data: { iban: 'DE02 2002', holder: 'Alice B', rowVersion: { set: 2n } } });
      // A select that leaves out the version gets it added for the open, and stripped.
      expect(await db.account.findUnique({ where: { id: 'a1' }, select: { iban: true } })).toEqual({ iban: 'DE02 2002' });
      const partial: [string, () => Promise<unknown>, string][] = [
        ['create without every sealed column', () => db.account.create({ data: { id: 'a2', tenant: 'acme', iban: 'x', rowVersion: 1 } }), 'partial-write'],
        ['update of one sealed column', () => db.account.update({ where: { id: 'a1', tenant: 'acme' }, data: { iban: 'x', rowVersion: 3 } }), 'partial-write'],
        ['update of the version alone', () => db.account.update({ where: { id: 'a1', tenant: 'acme' }, data: { rowVersion: 3 } }), 'partial-write'],
        ['update without the version', () => db.account.update({ where: { id: 'a1', tenant: 'acme' }, data: { iban: 'x', holder: 'y' } }), 'partial-write'],
        ['the version as an SQL expression', () => db.account.update({ where: { id: 'a1', tenant: 'acme' }, data: { iban: 'x', holder: 'y', rowVersion: { increment: 1 } } }), 'invalid'],
        ['updateMany', () => db.account.updateMany({ where: { tenant: 'acme' }, data: { iban: 'x', holder: 'y', rowVersion: 3 } }), 'partial-write'],
        ['upsert with a partial update', () => db.account.upsert({ where: { id: 'a1', tenant: 'acme' }, create: { ...holder, id: 'a1' }, update: { holder: 'x' } }), 'partial-write'],
        ['nested update', () => db.customer.update({ where: { id: 'c1', tenant: 'acme' }, data: { accounts: { update: { where: { id: 'a1' }, data: { iban: 'x' } } } } }), 'partial-write'],
        ['nested updateMany of the version', () => db.customer.update({ where: { id: 'c1', tenant: 'acme' }, data: { accounts: { updateMany: { where: { tenant: 'acme' }, data: { rowVersion: 9 } } } } }), 'partial-write'],
      ];
      for (const [what, run, problem] of partial) {
        const error = await run().then(() => undefined, (e: unknown) => e);
        expect({ what, name: (error as Error)?.name, code: (error as { code?: string })?.code, problem: (error as { problem?: string })?.problem }).toEqual({ what, name: 'RowVersionError', code: 'ERR_ROW_VERSION', problem });
      }
      // What writes no sealed column and no version runs; the row is as the last whole write left it.
      await db.account.update({ where: { id: 'a1' }, data: { customerId: null } });
      expect(await db.account.findUnique({ where: { id: 'a1' } })).toMatchObject({ iban: 'DE02 2002', holder: 'Alice B', rowVersion: 2n });
      // One cell rolled back to its version-1 value fails to open while the row is at version 2.
      await pool.query(`UPDATE ${schema}.accounts SET iban = $1 WHERE id = 'a1'`, [v1.iban]);
      const rolledBack = await db.account.findUnique({ where: { id: 'a1' } }).catch((e: unknown) => e);
      expect(rolledBack).toMatchObject({ name: 'RecordFieldError', code: 'ERR_DECRYPTION_FAILED' });
      await db.account.deleteMany({ where: { id: 'a1' } });
    });

    it('range and prefix operators through the search indexes, dropping their false positives', async () => {
      const day = (d: string) => new Date(`${d}Z`);
      await db.customer.createMany({
        data: [
          { id: 's1', tenant: 'rng', email: 'Alice@example.com', born: day('1990-01-02T03:00:00'), credit: '10.50' },
          { id: 's2', tenant: 'rng', email: 'alicia@example.com', born: day('1990-01-02T20:00:00'), credit: new fixture.Decimal('250.00') },
          { id: 's3', tenant: 'rng', email: 'bob@example.com', born: day('1991-06-01T00:00:00'), credit: '-3.25' },
          { id: 's4', tenant: 'rng' },
        ],
      });
      const ids = async (where: object) => ((await db.customer.findMany({ where: { tenant: 'rng', ...where }, select: { id: true } })) as { id: string }[]).map((r) => r.id).sort();
      expect(await ids({ email: { startsWith: 'ALI' } })).toEqual(['s1', 's2']);
      // Longer than the index's 4 characters: alicia shares the token of "alic" and is dropped after the open.
      expect(await ids({ email: { startsWith: 'alice' } })).toEqual(['s1']);
      const prefix = await records.searchQuery(customers, 'email', { startsWith: 'alice' }, { partition: 'rng', dialect: 'postgres' });
      expect(await base.customer.count({ where: { tenant: 'rng', emailTokens: { hasSome: prefix.tokens.map(BigInt) } } })).toBe(2);
      // The day bucket holds both of 2 January: the one born before noon is dropped after the open.
      expect(await ids({ born: { gte: day('1990-01-02T12:00:00'), lt: day('1991-01-01T00:00:00') } })).toEqual(['s2']);
      expect(await ids({ born: { gt: day('1985-01-01T00:00:00'), lte: day('1990-12-31T00:00:00') } })).toEqual(['s1', 's2']);
      expect(await ids({ credit: { gt: new fixture.Decimal('10.5'), lt: '1000' } })).toEqual(['s2']);
      expect(await ids({ credit: { gte: '-5', lt: '11' }, email: { startsWith: 'a' } })).toEqual(['s1']);
      expect((await db.customer.findUnique({ where: { id: 's2' } })).credit).toBe('250.00');
      // Writes by a range touch the rows it meets; a value set to null leaves no tokens.
      expect(await db.customer.updateMany({ where: { tenant: 'rng', born: { gt: day('1991-01-01T00:00:00'), lt: day('1999-01-01T00:00:00') } }, data: { name: 'late' } })).toEqual({ count: 1 });
      await db.customer.update({ where: { id: 's1', tenant: 'rng' }, data: { born: null } });
      expect((await rows('customers')).find((r) => r.id === 's1')!.born_tokens).toEqual([]);
      expect(await ids({ born: { gte: day('1980-01-01T00:00:00'), lt: day('2000-01-01T00:00:00') } })).toEqual(['s2', 's3']);
    });

    it('contains through a contains index: every gram of the term, false positives dropped, the grams written and emptied', async () => {
      await db.customer.create({ data: { id: 'g0', tenant: 'grm', email: 'g@example.com' } });
      await db.order.createMany({
        data: [
          { id: 'g1', tenant: 'grm', customerId: 'g0', note: 'paid by card', total: 1 },
          { id: 'g2', tenant: 'grm', customerId: 'g0', note: 'card declined', total: 2 },
          // Holds every gram of "card" ("car", "ard") but not the term: found by the tokens, dropped after the open.
          { id: 'g3', tenant: 'grm', customerId: 'g0', note: 'car yard', total: 3 },
          { id: 'g4', tenant: 'grm', customerId: 'g0', total: 4 },
        ],
      });
      const ids = async (where: object) => ((await db.order.findMany({ where: { tenant: 'grm', ...where }, select: { id: true } })) as { id: string }[]).map((r) => r.id).sort();
      expect(await ids({ note: { contains: 'card' } })).toEqual(['g1', 'g2']);
      const query = await records.searchQuery(orders, 'note', { contains: 'card' }, { partition: 'grm', dialect: 'postgres' });
      expect(query.match).toBe('all');
      expect(await base.order.count({ where: { tenant: 'grm', noteGrams: { hasEvery: query.tokens.map(BigInt) } } })).toBe(3);
      expect(await ids({ note: { contains: 'declined' }, total: { gte: 2 } })).toEqual(['g2']);
      // Another tenant's grams never match.
      expect(await ids({ tenant: 'other', note: { contains: 'card' } })).toEqual([]);
      await db.order.update({ where: { id: 'g1', tenant: 'grm' }, data: { note: 'paid in cash' } });
      expect(await ids({ note: { contains: 'card' } })).toEqual(['g2']);
      await db.order.update({ where: { id: 'g2', tenant: 'grm' }, data: { note: null } });
      expect((await rows('orders')).find((r) => r.id === 'g2')!.note_grams).toEqual([]);
      expect(await ids({ note: { contains: 'card' } })).toEqual([]);
      await expect(db.order.findMany({ where: { tenant: 'grm', note: { contains: 'ca' } } })).rejects.toThrow(/at least 3|shorter|minLength|3 characters/);
    });

    it('searches inside nested reads and relation filters, exactly (some, every, none, to-one, include where, _count)', async () => {
      const [a, b] = await collision(records, 'rel');
      await db.customer.create({ data: { id: 'n1', tenant: 'rel', email: a, orders: { create: [{ id: 'no1', tenant: 'rel', note: 'paid', total: 1 }, { id: 'no2', tenant: 'rel', note: 'open', total: 2 }] } } });
      await db.customer.create({ data: { id: 'n2', tenant: 'rel', email: b, orders: { create: [{ id: 'no3', tenant: 'rel', note: 'paid', total: 3 }] } } });
      await db.customer.create({ data: { id: 'n3', tenant: 'rel', email: 'none@example.com' } });
      const ids = (found: { id: string }[]) => found.map((r) => r.id).sort();
      const customersWhere = async (orders: object) => ids(await db.customer.findMany({ where: { tenant: 'rel', orders }, select: { id: true } }));
      expect(await customersWhere({ some: { tenant: 'rel', note: 'open' } })).toEqual(['n1']);
      expect(await customersWhere({ every: { tenant: 'rel', note: 'paid' } })).toEqual(['n2', 'n3']);
      expect(await customersWhere({ none: { tenant: 'rel', note: 'paid' } })).toEqual(['n3']);
      // A to-one filter on an email whose blind index collides: only the orders of the right customer.
      expect(ids(await db.order.findMany({ where: { customer: { tenant: 'rel', email: b } } }))).toEqual(['no3']);
      expect(ids(await db.order.findMany({ where: { customer: { is: { tenant: 'rel', email: { in: [a] } } } } }))).toEqual(['no1', 'no2']);
      const n1 = await db.customer.findUnique({ where: { id: 'n1' }, include: { orders: { where: { tenant: 'rel', note: { in: ['open', 'lost'] } } }, _count: { select: { orders: { where: { tenant: 'rel', note: 'paid' } } } } } });
      expect([n1.orders.map((o: { note: string }) => o.note), n1._count.orders]).toEqual([['open'], 1]);
      const picked = await db.order.findMany({ where: { tenant: 'rel', customer: { tenant: 'rel', email: a } }, orderBy: { id: 'asc' }, select: { note: true, customer: { select: { email: true } } } });
      expect(picked).toEqual([{ note: 'paid', customer: { email: a } }, { note: 'open', customer: { email: a } }]);
      await db.order.deleteMany({ where: { tenant: 'rel' } });
      await db.customer.deleteMany({ where: { tenant: 'rel' } });
    });

    it('refuses every other operator, ordering, aggregate and raw SQL on a sealed field, naming it', async () => {
      const refusals: [string, () => Promise<unknown>, string, string][] = [
        ['contains', () => db.customer.findMany({ where: { tenant: 'acme', email: { contains: 'a' } } }), 'Customer.email', 'contains'],
        ['endsWith', () => db.customer.findMany({ where: { tenant: 'acme', email: { endsWith: 'a' } } }), 'Customer.email', 'endsWith'],
        ['startsWith without a prefix index', () => db.customer.findMany({ where: { tenant: 'acme', prefs: { startsWith: 'a' } } }), 'Customer.prefs', 'startsWith'],
        ['startsWith without the partition', () => db.customer.findMany({ where: { email: { startsWith: 'a' } } }), 'Customer.email', 'startsWith'],
        ['lt without a range index', () => db.customer.findMany({ where: { tenant: 'acme', age: { lt: 3 } } }), 'Customer.age', 'lt'],
        ['gte without the partition', () => db.customer.findMany({ where: { born: { gte: new Date(0) } } }), 'Customer.born', 'gte'],
        ['not', () => db.customer.findMany({ where: { tenant: 'acme', email: { not: 'a' } } }), 'Customer.email', 'not'],
        ['mode', () => db.customer.findMany({ where: { tenant: 'acme', email: { equals: 'a', mode: 'insensitive' } } }), 'Customer.email', 'mode'],
        ['equals without an index', () => db.customer.findMany({ where: { tenant: 'acme', age: 36 } }), 'Customer.age', 'equals'],
        ['equals without the partition', () => db.customer.findMany({ where: { email: 'a' } }), 'Customer.email', 'equals'],
        ['OR', () => db.customer.findMany({ where: { tenant: 'acme', OR: [{ email: 'a' }, { name: 'b' }] } }), 'Customer.email', 'OR'],
        ['NOT', () => db.customer.findMany({ where: { tenant: 'acme', NOT: { email: 'a' } } }), 'Customer.email', 'NOT'],
        ['relation filter', () => db.customer.findMany({ where: { orders: { some: { tenant: 'acme', note: { endsWith: 'x' } } } } }), 'Order.note', 'endsWith'],
        ['relation filter without the partition', () => db.customer.findMany({ where: { orders: { every: { note: 'x' } } } }), 'Order.note', 'equals'],
        ['relation filter under OR', () => db.order.findMany({ where: { OR: [{ customer: { tenant: 'acme', email: 'x' } }] } }), 'Customer.email', 'OR'],
        ['nested where', () => db.customer.findMany({ include: { orders: { where: { tenant: 'acme', note: { not: 'x' } } } } }), 'Order.note', 'not'],
        ['nested orderBy', () => db.customer.findMany({ include: { orders: { orderBy: { note: 'asc' } } } }), 'Order.note', 'orderBy in a nested read (Customer.orders)'],
        ['orderBy', () => db.customer.findMany({ orderBy: { email: 'asc' } }), 'Customer.email', 'orderBy'],
        ['orderBy through a relation', () => db.order.findMany({ orderBy: { customer: { born: 'desc' } } }), 'Customer.born', 'orderBy'],
        ['distinct', () => db.customer.findMany({ distinct: ['email'] }), 'Customer.email', 'distinct'],
        ['cursor', () => db.customer.findMany({ where: { tenant: 'acme', email: 'a' }, cursor: { id: 'c1' } }), 'Customer.email', 'cursor'],
        ['groupBy', () => db.customer.groupBy({ by: ['email'] }), 'Customer.email', 'groupBy'],
        ['aggregate', () => db.customer.aggregate({ _max: { age: true } }), 'Customer.age', 'aggregate'],
        ['count', () => db.customer.count({ where: { tenant: 'acme', email: 'a' } }), 'Customer.email', 'count'],
        ['update without the partition', () => db.customer.update({ where: { id: 'c1' }, data: { age: 1 } }), 'Customer.age', 'update'],
        ['update moving the row', () => db.customer.update({ where: { id: 'c1', tenant: 'acme' }, data: { tenant: 'evil', age: 1 } }), 'Customer.tenant', 'update'],
        ['an atomic operation', () => db.customer.update({ where: { id: 'c1', tenant: 'acme' }, data: { age: { increment: 1 } } }), 'Customer.age', 'increment'],
        ['nested update', () => db.customer.update({ where: { id: 'c2', tenant: 'acme' }, data: { orders: { update: { where: { id: 'o1' }, data: { note: 'x' } } } } }), 'Order.note', 'a nested update (Customer.orders)'],
        ['$queryRaw', () => db.$queryRaw`SELECT email FROM customers`, 'raw SQL.email', '$queryRaw'],
        ['$queryRawUnsafe', () => db.$queryRawUnsafe('SELECT "key_version", photo FROM customers'), 'raw SQL.photo', '$queryRawUnsafe'],
        ['$executeRaw', () => db.$executeRaw`UPDATE orders SET note = ${'x'}`, 'raw SQL.note', '$executeRaw'],
      ];
      for (const [what, run, field, operator] of refusals) {
        const error = await run().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, what).toBeInstanceOf(UnsupportedQueryError);
        expect({ what, code: (error as UnsupportedQueryError).code, field: (error as UnsupportedQueryError).field, operator: (error as UnsupportedQueryError).operator }).toEqual({ what, code: 'ERR_UNSUPPORTED_QUERY', field, operator });
      }
      // What names no sealed field runs.
      expect(await db.customer.count({ where: { tenant: 'acme' } })).toBeGreaterThan(0);
      expect(await db.$queryRawUnsafe(`SELECT count(*)::int AS n FROM ${schema}.customers WHERE tenant = $1`, 'acme')).toEqual([{ n: expect.any(Number) }]);
    });

    it('a row moved to another tenant fails through Prisma as through the record API', async () => {
      await pool.query(`UPDATE ${schema}.customers SET tenant = 'evil' WHERE id = 'c1'`);
      const viaPrisma = await db.customer.findUnique({ where: { id: 'c1' } }).catch((e: unknown) => e);
      const [stored] = await pool.query(`SELECT * FROM ${schema}.customers WHERE id = 'c1'`).then((r) => r.rows);
      const viaRecords = await records.open(customers, { ...stored, emailIdx: stored.email_idx }).catch((e: unknown) => e);
      for (const error of [viaPrisma, viaRecords]) {
        expect(error).toMatchObject({ name: 'RecordFieldError', code: 'ERR_PARTITION_MISMATCH' });
      }
      expect(String((viaPrisma as Error).message)).not.toMatch(/example/i);
      await pool.query(`UPDATE ${schema}.customers SET tenant = 'acme' WHERE id = 'c1'`);
    });
  });
}
