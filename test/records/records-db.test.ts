/**
 * The record API against real databases: PostgreSQL (a real server on 127.0.0.1, see
 * test/fixtures/postgres.ts) and SQLite (better-sqlite3). Sealed rows are inserted, read back and
 * opened; cells are copied and swapped with SQL UPDATEs and must fail with a typed error.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    card: { type: 'string' },
    photo: { type: 'bytes', encoding: 'bytes' },
  },
});

const kms = LocalKms.generate();
const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });

let server: PostgresServer;
let pool: pg.Pool;
const tables: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
});
afterAll(async () => {
  for (const table of tables) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.end();
  await server.stop();
});

async function pgTable(): Promise<string> {
  const table = uniqueTable('kmse_records');
  tables.push(table);
  await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, card TEXT, photo BYTEA)`);
  return table;
}

const rowsOf = (n: number, tenant = 'acme') =>
  Array.from({ length: n }, (_, i) => ({ id: `0190a1b2-${String(i).padStart(8, '0')}`, tenant, email: `user${i}@example.com`, card: `4111 ${i}`, photo: Uint8Array.of(i & 0xff, 1, 2) }));

async function insert(table: string, rows: Record<string, unknown>[]): Promise<void> {
  const values: unknown[] = [];
  const tuples = rows.map((r, i) => {
    values.push(r.id, r.tenant, r.email, r.card, r.photo === undefined || r.photo === null ? null : Buffer.from(r.photo as Uint8Array));
    return `($${i * 5 + 1}, $${i * 5 + 2}, $${i * 5 + 3}, $${i * 5 + 4}, $${i * 5 + 5})`;
  });
  await pool.query(`INSERT INTO ${table} (id, tenant, email, card, photo) VALUES ${tuples.join(', ')}`, values);
}

async function select(table: string, where = ''): Promise<Record<string, unknown>[]> {
  const { rows } = await pool.query(`SELECT id, tenant, email, card, photo FROM ${table} ${where} ORDER BY id`);
  return rows.map((r: Record<string, unknown>) => ({ ...r, photo: r.photo === null ? null : new Uint8Array(r.photo as Buffer) }));
}

describe('records in PostgreSQL', () => {
  it('inserts sealed rows (text and bytea columns, NULLs) and reads them back opened', async () => {
    const table = await pgTable();
    const plain = [...rowsOf(20), { id: 'nulls', tenant: 'acme', email: null, card: null, photo: null }];
    const sealed = (await records.sealMany(customers, plain, { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    await insert(table, sealed);
    const stored = await select(table);
    expect(JSON.stringify(stored)).not.toContain('example.com');
    expect(stored.find((r) => r.id === 'nulls')).toMatchObject({ email: null, card: null, photo: null });
    const opened = (await records.openMany(customers, stored, { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    expect(opened.sort((a, b) => String(a.id).localeCompare(String(b.id)))).toEqual(plain.sort((a, b) => a.id.localeCompare(b.id)));
  });

  it('a cell copied to another row, another column, or swapped with SQL UPDATEs fails with a typed error naming the column and the row', async () => {
    const table = await pgTable();
    const [a, b] = rowsOf(2);
    await insert(table, [await records.seal(customers, a!), await records.seal(customers, b!)]);
    // Copy a's email onto b; copy a's card into a's email; swap the two cards.
    await pool.query(`UPDATE ${table} SET email = (SELECT email FROM ${table} WHERE id = $1) WHERE id = $2`, [a!.id, b!.id]);
    await pool.query(`UPDATE ${table} SET email = card WHERE id = $1`, [a!.id]);
    await pool.query(
      `UPDATE ${table} t SET card = s.card FROM (SELECT id, card FROM ${table}) s WHERE s.id <> t.id`,
    );
    const [ra, rb] = await select(table);
    const only = (column: 'email' | 'card') =>
      defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, columns: { [column]: { type: 'string' as const } } });
    for (const [stored, column] of [[rb, 'email'], [ra, 'email'], [ra, 'card'], [rb, 'card']] as const) {
      const error = await records.open(only(column), stored as never).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RecordFieldError);
      const failed = error as RecordFieldError;
      expect(failed.code).toBe('ERR_DECRYPTION_FAILED');
      expect(failed.table).toBe('customers');
      expect(failed.column).toBe(column);
      expect(failed.row).toEqual([stored!.id]);
      expect(failed.message).toContain(`customers.${column} of row ["${stored!.id}"] does not open`);
    }
    // The photos were not touched: each row's photo still opens on its own.
    const photos = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, columns: { photo: { type: 'bytes', encoding: 'bytes' } } });
    expect((await records.open(photos, { id: ra!.id, tenant: 'acme', photo: ra!.photo as Uint8Array })).photo).toEqual(a!.photo);
  });

  it('a value copied to another table fails there', async () => {
    const table = await pgTable();
    const [a] = rowsOf(1);
    await insert(table, [await records.seal(customers, a!)]);
    const suppliers = defineTable({ name: 'suppliers', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' } } });
    const [stored] = await select(table);
    await expect(records.open(suppliers, stored!)).rejects.toMatchObject({ table: 'suppliers', column: 'email', row: [a!.id] });
  });

  it('a transaction rolled back leaves nothing', async () => {
    const table = await pgTable();
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const sealed = await records.seal(customers, rowsOf(1)[0]!);
      await client.query(`INSERT INTO ${table} (id, tenant, email) VALUES ($1, $2, $3)`, [sealed.id, sealed.tenant, sealed.email]);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await select(table)).toEqual([]);
  });

  it('seals, inserts, selects and opens a batch of 10,000 rows', async () => {
    const table = await pgTable();
    const tenants = ['t1', 't2', 't3'];
    const plain = tenants.flatMap((t) => rowsOf(10_000 / 5, t).map((r) => ({ ...r, id: `${t}-${r.id}` }))).concat(rowsOf(4000, 't4').map((r) => ({ ...r, id: `t4-${r.id}` })));
    expect(plain).toHaveLength(10_000);
    const local = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });
    const sealed = (await local.sealMany(customers, plain, { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    for (let i = 0; i < sealed.length; i += 1000) await insert(table, sealed.slice(i, i + 1000));
    const opened = await local.openMany(customers, await select(table));
    expect(opened.every((r) => r.ok)).toBe(true);
    expect(opened).toHaveLength(10_000);
  });

  it('two processes writing sealed rows at once: every row of both opens', async () => {
    const table = await pgTable();
    const dir = mkdtempSync(join(tmpdir(), 'kmse-records-'));
    try {
      const masterKey = Buffer.alloc(32, 9).toString('base64');
      const dist = (entry: string): string => JSON.stringify(new URL(`../../dist/${entry}`, import.meta.url).href);
      const script = `
        import pg from 'pg';
        import { LocalKms } from ${dist('index.js')};
        import { createKeyHierarchy, MemoryKeyStore } from ${dist('hierarchy.js')};
        import { createRecords, defineTable } from ${dist('records.js')};
        const [table, who] = process.argv.slice(1);
        const kms = LocalKms.fromEnv();
        const store = new MemoryKeyStore();
        const records = createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
        const t = defineTable({ name: 'customers', primaryKey: 'id', partition: 'shared', columns: { email: { type: 'string' } } });
        const pool = new pg.Pool({ connectionString: process.env.PG_URL, max: 2 });
        for (let i = 0; i < 200; i++) {
          const row = await records.seal(t, { id: who + '-' + i, email: who + i + '@example.com' });
          await pool.query('INSERT INTO ' + table + ' (id, tenant, email) VALUES ($1, $2, $3)', [row.id, 'shared', row.email]);
        }
        const { rows } = await pool.query('SELECT id, email FROM ' + table + " WHERE id LIKE $1", [who + '-%']);
        let ok = 0;
        for (const r of rows) { await records.open(t, r); ok++; }
        console.log(ok);
        await pool.end();`;
      const run = (who: string) =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(process.execPath, ['--input-type=module', '-e', script, table, who], {
            cwd: new URL('..', import.meta.url).pathname,
            env: { ...process.env, PG_URL: server.url, KMS_ENVELOPE_LOCAL_KEY: masterKey },
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d));
          child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`writer ${who} exited ${code}`))));
        });
      expect(await Promise.all([run('a'), run('b')])).toEqual(['200', '200']);
      expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n).toBe(400);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('records in SQLite (better-sqlite3)', () => {
  it('stores text and BLOB columns, reads back, and refuses a copied cell', async () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE customers (id TEXT PRIMARY KEY, tenant TEXT, email TEXT, card TEXT, photo BLOB)');
    const insertRow = db.prepare('INSERT INTO customers (id, tenant, email, card, photo) VALUES (@id, @tenant, @email, @card, @photo)');
    const plain = rowsOf(50);
    for (const row of plain) {
      const sealed = await records.seal(customers, row);
      insertRow.run({ ...sealed, photo: Buffer.from(sealed.photo as Uint8Array) });
    }
    const read = () =>
      (db.prepare('SELECT * FROM customers ORDER BY id').all() as Record<string, unknown>[]).map((r) => ({ ...r, photo: new Uint8Array(r.photo as Buffer) }));
    const opened = await Promise.all(read().map((r) => records.open(customers, r)));
    expect(opened).toEqual(plain);
    db.prepare('UPDATE customers SET card = (SELECT card FROM customers WHERE id = ?) WHERE id = ?').run(plain[0]!.id, plain[1]!.id);
    const rows = read();
    await expect(records.open(customers, rows[1]!)).rejects.toMatchObject({ column: 'card', row: [plain[1]!.id] });
    db.close();
  });
});

describe('records: blind indexes in PostgreSQL', () => {
  it('finds a row by the blind index of a search term, and filters false positives by opening', async () => {
    const people = defineTable({
      name: 'people',
      primaryKey: 'id',
      partition: { column: 'tenant' },
      columns: { email: { type: 'string', index: { column: 'email_idx', bits: 16, normalize: ['trim', 'casefold'] } } },
    });
    const table = uniqueTable('kmse_people');
    tables.push(table);
    await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT, email TEXT, email_idx TEXT)`);
    await pool.query(`CREATE INDEX ON ${table} (email_idx)`);
    const plain = Array.from({ length: 300 }, (_, i) => ({ id: `p${i}`, tenant: 'acme', email: `Person${i}@Example.com` }));
    for (const row of plain) {
      const sealed = await records.seal(people, row);
      expect(sealed.email_idx).toMatch(/^[A-Za-z0-9_-]+$/);
      await pool.query(`INSERT INTO ${table} (id, tenant, email, email_idx) VALUES ($1, $2, $3, $4)`, [sealed.id, sealed.tenant, sealed.email, sealed.email_idx]);
    }
    const term = '  person123@example.COM ';
    const idx = await records.indexOf(people, 'email', term, { partition: 'acme' });
    const { rows: candidates } = await pool.query(`SELECT id, tenant, email FROM ${table} WHERE email_idx = $1`, [idx]);
    expect(candidates.length).toBeGreaterThanOrEqual(1); // 16 bits: a few false positives are possible
    const found = [];
    for (const c of candidates) {
      const opened = await records.open(people, c);
      if ((opened.email as string).trim().toLowerCase() === term.trim().toLowerCase()) found.push(opened.id);
    }
    expect(found).toEqual(['p123']);
    // The sync path once warm.
    await records.warm(['acme'], [people]);
    expect(records.indexOfSync(people, 'email', 'PERSON123@example.com', { partition: 'acme' })).toBe(idx);
  });
});
