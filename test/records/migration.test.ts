/**
 * Encrypting a live plaintext column (src/records/migration.ts, sql/ddl.ts) on a real PostgreSQL
 * and SQLite: the phases in order with their checks (phase c refused while plaintext is left), in
 * place (text, bytea) and into a new column, the application writing and updating rows while the
 * backfill runs (no lost update, nothing sealed twice, no plaintext left), the locks the data
 * phase holds (sampled from pg_locks: never above RowExclusiveLock), the DDL steps' lock report and
 * lock_timeout, and the explicit way back to plaintext.
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import {
  addColumn,
  columnMigration,
  createIndexConcurrently,
  decryptSweep,
  dropColumn,
  migrationStatus,
  refusePlaintext,
  strongestLock,
  sweepPostgres,
  sweepSqlite,
} from '../../src/records.ts';
import { createRecords, defineTable } from '../../src/records/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  keyVersionColumn: 'key_version',
  columns: { email: { type: 'string', index: { column: 'email_idx', bits: 16 } }, photo: { type: 'bytes', encoding: 'bytes' } },
});
const kms = LocalKms.generate();
const setup = () => createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });

let server: PostgresServer;
let pool: pg.Pool;
const tables: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 8 });
});
afterAll(async () => {
  if (tables.length) await pool.query(`DROP TABLE IF EXISTS ${tables.join(', ')}`);
  await pool.end();
  await server.stop();
});

const emailOf = (i: number, round = 0) => `user${i}.${round}@example.com`;

async function plaintextTable(rows: number): Promise<string> {
  const table = uniqueTable('kmse_migrate');
  tables.push(table);
  await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, photo BYTEA, email_idx TEXT)`);
  await pool.query(
    `INSERT INTO ${table} (id, tenant, email, photo) SELECT 'r' || lpad(g::text, 6, '0'), CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, 'user' || g || '.0@example.com', int4send(g) FROM generate_series(0, $1 - 1) g`,
    [rows],
  );
  return table;
}

/** Samples the lock modes other sessions hold on the table until stopped. */
function lockSampler(table: string): { stop(): Promise<string[]> } {
  const seen = new Set<string>();
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await pool.query('SELECT mode FROM pg_locks WHERE locktype = $1 AND relation = $2::regclass AND pid <> pg_backend_pid()', ['relation', table]);
      for (const r of rows as { mode: string }[]) seen.add(r.mode);
      await new Promise((resume) => setTimeout(resume, 2));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return [...seen];
    },
  };
}

describe('a live column migration on PostgreSQL, in place', () => {
  it('goes through the phases: (c) refused while plaintext is left; the backfill under application writes loses no update, seals nothing twice, holds at most RowExclusiveLock', async () => {
    const records = setup();
    const table = await plaintextTable(1200);
    const add = await addColumn(pool, { table, column: 'key_version', type: 'integer' });
    expect(add.locks[0]).toBe('AccessExclusiveLock');
    expect(add.line).toMatch(/^ddl ALTER TABLE .* ADD COLUMN .*: locks AccessExclusiveLock/);
    const index = await createIndexConcurrently(pool, { table, index: `${table}_kv`, columns: ['key_version'] });
    expect(index.locks).toEqual(['ShareUpdateExclusiveLock']);

    const migration = columnMigration(records, customers);
    // Phase (a): reads accept plaintext (counted), writes seal.
    const { rows: first } = await pool.query(`SELECT * FROM ${table} WHERE id = 'r000001'`);
    expect((await records.open(migration.reading, first[0])).email).toBe(emailOf(1));
    expect(records.stats.legacyValuesRead['customers.email']).toBe(1);
    await expect(refusePlaintext(pool, table, migration)).rejects.toMatchObject({ code: 'ERR_MIGRATION_INCOMPLETE', plaintextRows: 1200 });

    // The application updates rows through the record API while the backfill runs (two workers, small batches).
    const latest = new Map<number, string>();
    let appRunning = true;
    const app = (async () => {
      for (let round = 1; appRunning; round++) {
        const i = (round * 37) % 1200;
        const row = { id: `r${String(i).padStart(6, '0')}`, tenant: i % 2 === 0 ? 'acme' : 'globex', email: emailOf(i, round), photo: Uint8Array.of(round & 0xff) };
        const sealed = await records.seal(migration.reading, row);
        await pool.query(`UPDATE ${table} SET email = $2, photo = $3, email_idx = $4, key_version = $5 WHERE id = $1`, [row.id, sealed.email, Buffer.from(sealed.photo as unknown as Uint8Array), sealed.email_idx, sealed.key_version]);
        latest.set(i, row.email);
      }
    })();
    const sampler = lockSampler(table);
    const summary = await sweepPostgres(pool, { table, key: 'id', ...migration.backfill, batchSize: 50, workers: 2 });
    appRunning = false;
    await app;
    const locks = await sampler.stop();
    expect(summary.failed).toBe(0);
    expect(locks.length).toBeGreaterThan(0);
    expect(strongestLock(locks)).toBe('RowExclusiveLock');

    expect(await migrationStatus(pool, table, migration)).toEqual({ plaintextRows: 0, rows: 1200 });
    const sealedTable = await refusePlaintext(pool, table, migration);
    const { rows } = await pool.query(`SELECT * FROM ${table} ORDER BY id`);
    const opened = await records.openMany(sealedTable, rows);
    for (const [i, result] of opened.entries()) {
      if (!result.ok) throw result.error;
      // Every value is sealed once: it opens to the plaintext, not to another sealed value.
      expect(result.value.email).toBe(latest.get(i) ?? emailOf(i));
      expect(rows[i].key_version).toBe(1);
      expect(rows[i].email_idx).toBe(await records.indexOf(customers, 'email', result.value.email as string, { partition: rows[i].tenant }));
    }
    // Phase (c) refuses a plaintext value planted afterwards.
    await pool.query(`UPDATE ${table} SET email = 'planted@example.com' WHERE id = 'r000002'`);
    const planted = (await pool.query(`SELECT * FROM ${table} WHERE id = 'r000002'`)).rows[0];
    await expect(records.open(sealedTable, planted)).rejects.toThrow(/not sealed/);
  });

  it('goes back to plaintext only through the explicit decrypt sweep', async () => {
    const records = setup();
    const table = await plaintextTable(60);
    await addColumn(pool, { table, column: 'key_version', type: 'integer' });
    const migration = columnMigration(records, customers);
    await sweepPostgres(pool, { table, key: 'id', ...migration.backfill });
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE email LIKE 'kme.%'`)).rows[0].n).toBe(60);
    const back = await sweepPostgres(pool, { table, key: 'id', ...decryptSweep(records, migration) });
    expect(back.written).toBe(60);
    const { rows } = await pool.query(`SELECT id, email, photo, key_version FROM ${table} ORDER BY id`);
    rows.forEach((r, i) => {
      expect(r.email).toBe(emailOf(i));
      expect([...r.photo]).toEqual([...Buffer.from([0, 0, 0, i])]);
      expect(r.key_version).toBeNull();
    });
  });
});

describe('a live column migration on PostgreSQL, into a new column', () => {
  it('seals into the target, keeps the source until the clean-up, reads merge both meanwhile', async () => {
    const records = setup();
    const table = await plaintextTable(80);
    for (const [column, type] of [['email_sealed', 'text'], ['key_version', 'integer']] as const) await addColumn(pool, { table, column, type });
    const text = defineTable({ ...customers, columns: { email: customers.columns.email } });
    const migration = columnMigration(records, text, { into: { email: 'email_sealed' } });
    // A write in phase (a): the sealed value in the target, the source NULL.
    const sealed = migration.forWrite(await records.seal(migration.reading, { id: 'r000003', tenant: 'globex', email_sealed: 'new@example.com' }));
    expect(sealed.email).toBeNull();
    await pool.query(`UPDATE ${table} SET email = $2, email_sealed = $3, email_idx = $4, key_version = $5 WHERE id = $1`, ['r000003', sealed.email, sealed.email_sealed, sealed.email_idx, sealed.key_version]);
    expect((await migrationStatus(pool, table, migration)).plaintextRows).toBe(79);

    const summary = await sweepPostgres(pool, { table, key: 'id', ...migration.backfill, batchSize: 16 });
    expect(summary.written).toBe(79);
    await refusePlaintext(pool, table, migration);
    const { rows } = await pool.query(`SELECT * FROM ${table} ORDER BY id`);
    for (const [i, row] of rows.entries()) {
      const opened = await records.open(migration.sealed, row);
      expect(opened.email_sealed).toBe(i === 3 ? 'new@example.com' : emailOf(i));
      if (i !== 3) expect(row.email).toBe(emailOf(i)); // the source stays (a rollback reads it) until the clean-up
    }
    const drop = await dropColumn(pool, { table, column: 'email' });
    expect(drop.locks[0]).toBe('AccessExclusiveLock');
  });

  it('refuses a target that is a sealed column already, or into mode without a marker', () => {
    const records = setup();
    expect(() => columnMigration(records, customers, { into: { email: 'photo' } })).toThrow(TypeError);
    const noMarker = defineTable({ ...customers, keyVersionColumn: undefined });
    expect(() => columnMigration(records, noMarker, { into: { email: 'email_sealed' } })).toThrow(/marker/);
  });
});

describe('DDL steps', () => {
  it('give up at lock_timeout instead of queueing the application behind them', async () => {
    const table = await plaintextTable(1);
    const holder = await pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT * FROM ${table}`); // AccessShareLock until the end of the transaction
      await expect(addColumn(pool, { table, column: 'key_version', type: 'integer', lockTimeoutMs: 100 })).rejects.toMatchObject({ code: '55P03' });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    await expect(addColumn(pool, { table, column: 'x', type: 'text; DROP TABLE t' })).rejects.toThrow(TypeError);
  });
});

describe('a live column migration on SQLite', () => {
  it('backfills in place with application updates between the read and the write left to the next run', async () => {
    const records = setup();
    const db = new Database(':memory:');
    db.exec('CREATE TABLE customers (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, photo BLOB, email_idx TEXT, key_version INTEGER)');
    const insert = db.prepare('INSERT INTO customers (id, tenant, email, photo) VALUES (?, ?, ?, ?)');
    for (let i = 0; i < 300; i++) insert.run(`r${String(i).padStart(6, '0')}`, i % 2 ? 'globex' : 'acme', emailOf(i), Buffer.from([i & 0xff]));
    const migration = columnMigration(records, customers);
    expect(await migrationStatus(db, 'customers', migration)).toEqual({ plaintextRows: 300, rows: 300 });
    await expect(refusePlaintext(db, 'customers', migration)).rejects.toMatchObject({ code: 'ERR_MIGRATION_INCOMPLETE' });

    // The application changes a row while its batch is being sealed (between the sweep's read and write).
    let changedOnce = false;
    const backfill = migration.backfill;
    const summary = await sweepSqlite(db, {
      table: 'customers',
      key: 'id',
      ...backfill,
      batchSize: 100,
      async transform(row) {
        if (!changedOnce && row.id === 'r000150') {
          changedOnce = true;
          const sealed = await records.seal(migration.reading, { id: 'r000150', tenant: 'acme', email: 'changed@example.com', photo: Uint8Array.of(1) });
          db.prepare('UPDATE customers SET email = ?, photo = ?, email_idx = ?, key_version = ? WHERE id = ?').run(sealed.email, Buffer.from(sealed.photo as unknown as Uint8Array), sealed.email_idx, sealed.key_version, 'r000150');
        }
        return backfill.transform(row);
      },
    });
    expect(summary.changed).toBe(1);
    expect(await migrationStatus(db, 'customers', migration)).toEqual({ plaintextRows: 0, rows: 300 });
    const sealedTable = await refusePlaintext(db, 'customers', migration);
    const rows = db.prepare('SELECT * FROM customers ORDER BY id').all() as Record<string, unknown>[];
    for (const [i, row] of rows.entries()) {
      const opened = await records.open(sealedTable, row as never);
      expect(opened.email).toBe(i === 150 ? 'changed@example.com' : emailOf(i));
    }
  });
});
