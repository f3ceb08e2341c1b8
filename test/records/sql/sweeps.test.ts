/**
 * Table sweeps against a real PostgreSQL (test/fixtures/postgres.ts) and SQLite (better-sqlite3):
 * rotation to a new key version, backfill of a plaintext column, re-index into a new index
 * column; stopping after a batch and resuming; a second run that changes nothing; several workers
 * without a row done twice (an AFTER UPDATE trigger logs every committed rewrite); a row that
 * fails to open reported and left as it was.
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../../src/hierarchy/hierarchy.ts';
import { createEnvelope, inspect, LocalKms } from '../../../src/index.ts';
import { sweepPostgres, sweepSqlite } from '../../../src/records.ts';
import { createRecords, defineTable } from '../../../src/records/records.ts';
import { backfillSweep, reindexSweep, rewrapSweep, rotationSweep, type SweepEvent } from '../../../src/records/sweep.ts';
import { fieldFromText } from '../../../src/records/field-value.ts';
import { KmsError } from '../../../src/core/errors.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../../fixtures/postgres.ts';

const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: { email: { type: 'string' }, photo: { type: 'bytes', encoding: 'bytes' } },
});

const kms = LocalKms.generate();

function setup() {
  const store = new MemoryKeyStore();
  const hierarchy = createKeyHierarchy({ store, kms });
  return { store, hierarchy, records: createRecords({ hierarchy }) };
}

let server: PostgresServer;
let pool: pg.Pool;
const tables: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 8 });
});
afterAll(async () => {
  for (const table of tables) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.query(`DROP TABLE IF EXISTS ${tables.map((t) => `${t}_log`).join(', ') || 'kmse_none'}`);
  await pool.end();
  await server.stop();
});

const plainRows = (n: number, tenants = ['acme', 'globex']) =>
  Array.from({ length: n }, (_, i) => ({
    id: `r${String(i).padStart(6, '0')}`,
    tenant: tenants[i % tenants.length]!,
    email: `user${i}@example.com`,
    photo: Uint8Array.of(i & 0xff, 7, 7),
  }));

/** A table with a key-version column and a log of every committed rewrite (a trigger). */
async function pgTable(): Promise<string> {
  const table = uniqueTable('kmse_sweep');
  tables.push(table);
  await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, photo BYTEA, key_version INTEGER)`);
  await pool.query(`CREATE TABLE ${table}_log (id TEXT NOT NULL, old_version INTEGER, new_version INTEGER)`);
  await pool.query(`CREATE FUNCTION ${table}_f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    INSERT INTO ${table}_log VALUES (NEW.id, OLD.key_version, NEW.key_version); RETURN NEW; END $$`);
  await pool.query(`CREATE TRIGGER ${table}_t AFTER UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_f()`);
  return table;
}

async function insertSealed(records: ReturnType<typeof setup>['records'], table: string, rows: ReturnType<typeof plainRows>): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) {
    const sealed = await Promise.all(rows.slice(i, i + 500).map((r) => records.seal(customers, r)));
    const values: unknown[] = [];
    const tuples = sealed.map((r, j) => {
      const version = inspect(fieldFromText(r.email as string)!).keyVersion;
      values.push(r.id, r.tenant, r.email, Buffer.from(r.photo as Uint8Array), version);
      return `($${j * 5 + 1}, $${j * 5 + 2}, $${j * 5 + 3}, $${j * 5 + 4}, $${j * 5 + 5})`;
    });
    await pool.query(`INSERT INTO ${table} (id, tenant, email, photo, key_version) VALUES ${tuples.join(', ')}`, values);
  }
}

async function selectAll(table: string): Promise<Record<string, unknown>[]> {
  const { rows } = await pool.query(`SELECT id, tenant, email, photo, key_version FROM ${table} ORDER BY id`);
  return rows;
}

async function rotated(hierarchy: ReturnType<typeof setup>['hierarchy'], tenants = ['acme', 'globex']): Promise<void> {
  for (const t of tenants) await hierarchy.rotate(t);
}

describe('table sweeps on PostgreSQL', () => {
  it('rotation: every row sealed again under version 2, opens to the same values, once each; a second run changes nothing', async () => {
    const { hierarchy, records } = setup();
    const table = await pgTable();
    const plain = plainRows(230);
    await insertSealed(records, table, plain);
    await rotated(hierarchy);
    const events: SweepEvent[] = [];
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const summary = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 50, onEvent: (e) => events.push(e) });
    expect(summary).toMatchObject({ seen: 230, written: 230, current: 0, failed: 0, batches: 5, stopped: false });
    expect(events[0]).toEqual({ type: 'start', pending: 230, workers: 1 });
    expect(events.filter((e) => e.type === 'batch').map((e) => (e.type === 'batch' ? e.totals.written : 0))).toEqual([50, 100, 150, 200, 230]);
    expect(events.at(-1)).toMatchObject({ type: 'end', summary: { written: 230 } });
    const stored = await selectAll(table);
    for (const row of stored) {
      expect(row.key_version).toBe(2);
      expect(inspect(fieldFromText(row.email as string)!).keyVersion).toBe(2);
      expect(inspect(row.photo as Uint8Array).keyVersion).toBe(2);
    }
    const opened = await Promise.all(stored.map((r) => records.open(customers, { ...r, photo: new Uint8Array(r.photo as Buffer) })));
    expect(opened.map(({ key_version: _, ...r }) => r)).toEqual(plain);
    const again = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 50 });
    expect(again).toMatchObject({ seen: 0, written: 0, batches: 0 });
    const log = (await pool.query(`SELECT id, count(*)::int AS n FROM ${table}_log GROUP BY id`)).rows;
    expect(log).toHaveLength(230);
    expect(log.every((r: { n: number }) => r.n === 1)).toBe(true);
  });

  it('stops after the batch under way when its signal aborts, and the next run resumes where it stopped', async () => {
    const { hierarchy, records } = setup();
    const table = await pgTable();
    await insertSealed(records, table, plainRows(300));
    await rotated(hierarchy);
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const controller = new AbortController();
    const first = await sweepPostgres(pool, {
      table,
      key: 'id',
      ...plan,
      batchSize: 40,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'batch' && e.totals.batches === 3) controller.abort();
      },
    });
    expect(first).toMatchObject({ stopped: true, written: 120, batches: 3 });
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`);
    expect(rows[0].n).toBe(120);
    // The rows done are the first 120 in key order.
    const done = (await pool.query(`SELECT id FROM ${table} WHERE key_version = 2 ORDER BY id`)).rows.map((r: { id: string }) => r.id);
    expect(done).toEqual(plainRows(300).slice(0, 120).map((r) => r.id));
    const second = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 40 });
    expect(second).toMatchObject({ stopped: false, seen: 180, written: 180 });
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}_log`)).rows[0].n).toBe(300);
  });

  it('several workers (in this process and a second sweep at once) do every row exactly once', async () => {
    const { hierarchy, records } = setup();
    const table = await pgTable();
    await insertSealed(records, table, plainRows(1000));
    await rotated(hierarchy);
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const [a, b] = await Promise.all([
      sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 25, workers: 3 }),
      sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 25, workers: 2 }),
    ]);
    expect(a.written + b.written).toBe(1000);
    expect(a.failed + b.failed).toBe(0);
    const log = (await pool.query(`SELECT id, count(*)::int AS n FROM ${table}_log GROUP BY id HAVING count(*) <> 1`)).rows;
    expect(log).toEqual([]);
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}_log`)).rows[0].n).toBe(1000);
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows[0].n).toBe(1000);
  });

  it('a rotation by the values\' headers with several workers reads and counts each row once (its written rows still match pending)', async () => {
    const { hierarchy, records } = setup();
    const table = await pgTable();
    await insertSealed(records, table, plainRows(300));
    await rotated(hierarchy);
    const plan = rotationSweep(records, customers, { partitions: ['acme', 'globex'], versionsFrom: 'headers' });
    const summary = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 10, workers: 3 });
    expect(summary).toMatchObject({ seen: 300, written: 300, current: 0, failed: 0 });
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}_log`)).rows[0].n).toBe(300);
    expect(await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 10, workers: 3 })).toMatchObject({ seen: 300, written: 0, current: 300 });
  });

  it('a row that fails to open is reported and skipped, not rewritten; the others are done', async () => {
    const { hierarchy, records } = setup();
    const table = await pgTable();
    await insertSealed(records, table, plainRows(60));
    // r000003 gets r000005's email (a copied cell, same tenant), r000010's photo is flipped (tampered).
    await pool.query(`UPDATE ${table} SET email = (SELECT email FROM ${table} WHERE id = 'r000005') WHERE id = 'r000003'`);
    await pool.query(`UPDATE ${table} SET photo = overlay(photo placing '\\x00'::bytea from 40 for 1) WHERE id = 'r000010'`);
    await pool.query(`DELETE FROM ${table}_log`);
    const before = await selectAll(table);
    await rotated(hierarchy);
    const failed: unknown[] = [];
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const summary = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 16, onEvent: (e) => e.type === 'row-failed' && failed.push(e.failure) });
    expect(summary).toMatchObject({ seen: 60, written: 58, failed: 2 });
    expect(summary.failures.map((f) => [f.key, f.code])).toEqual([
      [['r000003'], 'ERR_DECRYPTION_FAILED'],
      [['r000010'], 'ERR_DECRYPTION_FAILED'],
    ]);
    expect(failed).toEqual(summary.failures);
    expect(summary.failures[0]!.message).toContain('customers.email of row ["r000003"] does not open');
    expect(JSON.stringify(summary)).not.toContain('example.com');
    const after = await selectAll(table);
    for (const id of ['r000003', 'r000010']) expect(after.find((r) => r.id === id)).toEqual(before.find((r) => r.id === id));
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}_log WHERE id IN ('r000003', 'r000010')`)).rows[0].n).toBe(0);
    // A second run reports them again and rewrites nothing.
    const again = await sweepPostgres(pool, { table, key: 'id', ...plan });
    expect(again).toMatchObject({ seen: 2, written: 0, failed: 2 });
  });

  it('a KMS failure stops the sweep with its error and rolls its batch back; committed batches stay done', async () => {
    const { KmsError } = await import('../../../src/core/errors.ts');
    const store = new MemoryKeyStore();
    let failing = false;
    const flaky = {
      id: kms.id,
      generateDataKey: (r: Parameters<typeof kms.generateDataKey>[0]) => kms.generateDataKey(r),
      decryptDataKey: (r: Parameters<typeof kms.decryptDataKey>[0]) => (failing ? Promise.reject(new KmsError('KMS down', { kind: 'unreachable' })) : kms.decryptDataKey(r)),
    };
    const hierarchy = createKeyHierarchy({ store, kms: flaky });
    const records = createRecords({ hierarchy });
    const table = await pgTable();
    await insertSealed(records, table, plainRows(100, ['acme']));
    await insertSealed(records, table, plainRows(100, ['zeta']).map((r) => ({ ...r, id: `z${r.id}` })));
    await rotated(hierarchy, ['acme', 'zeta']);
    hierarchy.forget();
    // acme's old and new keys in memory; zeta's not, and the KMS then fails.
    await hierarchy.warm(['acme']);
    await records.open(customers, { ...(await selectAll(table))[0], photo: null } as never);
    failing = true;
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const error = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 20 }).catch((e: unknown) => e);
    expect(['ERR_KMS', 'ERR_KEY_UNAVAILABLE']).toContain((error as { code?: string }).code);
    // acme's rows (first in key order) done; every zeta row untouched, none reported as failed.
    expect((await pool.query(`SELECT tenant, count(*)::int AS n FROM ${table} WHERE key_version = 2 GROUP BY tenant`)).rows).toEqual([{ tenant: 'acme', n: 100 }]);
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}_log`)).rows[0].n).toBe(100);
    const healthy = createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
    const resumed = await sweepPostgres(pool, { table, key: 'id', ...rotationSweep(healthy, customers, { minVersion: 2, keyVersionColumn: 'key_version' }), batchSize: 20 });
    expect(resumed).toMatchObject({ seen: 100, written: 100, failed: 0 });
  });

  it('backfill: a plaintext column sealed for the first time, readable throughout in migration mode', async () => {
    const { records } = setup();
    const table = await pgTable();
    const plain = plainRows(120);
    for (const r of plain) await pool.query(`INSERT INTO ${table} (id, tenant, email, photo) VALUES ($1, $2, $3, $4)`, [r.id, r.tenant, r.email, Buffer.from(r.photo)]);
    const migrating = defineTable({
      name: 'customers',
      primaryKey: 'id',
      partition: { column: 'tenant' },
      columns: { email: { type: 'string', legacyPlaintext: true }, photo: { type: 'bytes', encoding: 'bytes', legacyPlaintext: true } },
    });
    const plan = backfillSweep(records, migrating, { keyVersionColumn: 'key_version' });
    const controller = new AbortController();
    const first = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 50, signal: controller.signal, onEvent: (e) => e.type === 'batch' && controller.abort() });
    expect(first).toMatchObject({ written: 50, stopped: true });
    // Half-way: both kinds of rows open in migration mode.
    const mixed = await selectAll(table);
    const opened = await Promise.all(mixed.map((r) => records.open(migrating, { ...r, photo: new Uint8Array(r.photo as Buffer) } as never)));
    expect(opened.map((r) => r.email)).toEqual(plain.map((r) => r.email));
    const rest = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 50 });
    expect(rest).toMatchObject({ written: 70, failed: 0 });
    const stored = await selectAll(table);
    expect(JSON.stringify(stored)).not.toContain('example.com');
    expect(stored.every((r) => r.key_version === 1 && String(r.email).startsWith('kme.'))).toBe(true);
    // Migration mode off: every row opens sealed.
    const done = await Promise.all(stored.map((r) => records.open(customers, { ...r, photo: new Uint8Array(r.photo as Buffer) })));
    expect(done.map((r) => r.photo)).toEqual(plain.map((r) => r.photo));
  });

  it('re-index: a new blind index column filled for every row; the sealed values untouched', async () => {
    const { records } = setup();
    const table = await pgTable();
    await pool.query(`ALTER TABLE ${table} ADD COLUMN email_idx TEXT`);
    await insertSealed(records, table, plainRows(90));
    const before = await selectAll(table);
    const indexed = defineTable({
      name: 'customers',
      primaryKey: 'id',
      partition: { column: 'tenant' },
      columns: { email: { type: 'string', index: { column: 'email_idx', bits: 32, normalize: 'casefold' } }, photo: { type: 'bytes', encoding: 'bytes' } },
    });
    const summary = await sweepPostgres(pool, { table, key: 'id', ...reindexSweep(records, indexed, 'email'), batchSize: 40 });
    expect(summary).toMatchObject({ written: 90, failed: 0 });
    expect(await selectAll(table)).toEqual(before);
    const term = await records.indexOf(indexed, 'email', 'USER17@example.com', { partition: 'globex' });
    const { rows } = await pool.query(`SELECT id FROM ${table} WHERE email_idx = $1`, [term]);
    expect(rows.map((r: { id: string }) => r.id)).toContain('r000017');
  });

  it("the key-version column the table declares (defineTable's keyVersionColumn, kept by seal()) is the default marker", async () => {
    const { hierarchy, records } = setup();
    const declared = defineTable({ ...customers, keyVersionColumn: 'key_version' });
    const table = await pgTable();
    for (const r of plainRows(30)) {
      const s = await records.seal(declared, r);
      expect(s.key_version).toBe(1);
      await pool.query(`INSERT INTO ${table} (id, tenant, email, photo, key_version) VALUES ($1, $2, $3, $4, $5)`, [s.id, s.tenant, s.email, Buffer.from(s.photo as Uint8Array), s.key_version]);
    }
    await rotated(hierarchy);
    const plan = rotationSweep(records, declared, { minVersion: 2 });
    expect(plan.pending).toBe('"key_version" < 2');
    expect(await sweepPostgres(pool, { table, key: 'id', ...plan })).toMatchObject({ written: 30, failed: 0 });
    expect((await pool.query(`SELECT DISTINCT key_version FROM ${table}`)).rows).toEqual([{ key_version: 2 }]);
    expect(() => rotationSweep(records, customers, { minVersion: 2 })).toThrow(/key-version column/);
  });

  it('a row whose partition was not rotated past the minimum is reported, not rewritten', async () => {
    const { hierarchy, records } = setup();
    const table = await pgTable();
    await insertSealed(records, table, plainRows(10));
    await rotated(hierarchy, ['acme']);
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const summary = await sweepPostgres(pool, { table, key: 'id', ...plan });
    expect(summary).toMatchObject({ seen: 10, written: 5, failed: 5 });
    expect(summary.failures[0]!.message).toContain('rotate the partition');
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}_log`)).rows[0].n).toBe(5);
  });

  it('rewrap of format-1 messages in a bytea column to another master key: payload bytes unchanged, one ReEncrypt a value, a second run makes no KMS call', async () => {
    const two = new LocalKms({ old: new Uint8Array(32).fill(1), new: new Uint8Array(32).fill(2) }, { defaultKeyId: 'old' });
    let reEncrypts = 0;
    const counting = {
      id: two.id,
      generateDataKey: (r: Parameters<typeof two.generateDataKey>[0]) => two.generateDataKey(r),
      decryptDataKey: (r: Parameters<typeof two.decryptDataKey>[0]) => two.decryptDataKey(r),
      reEncryptDataKey: (r: Parameters<typeof two.reEncryptDataKey>[0]) => (reEncrypts++, two.reEncryptDataKey(r)),
    };
    const envelope = createEnvelope({ kms: counting });
    const table = uniqueTable('kmse_sweep_blobs');
    tables.push(table);
    await pool.query(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, doc BYTEA)`);
    const originals = new Map<number, Uint8Array>();
    for (let i = 0; i < 40; i++) {
      const sealed = await envelope.seal(`document ${i}`, { context: { doc: String(i) } });
      originals.set(i, sealed);
      await pool.query(`INSERT INTO ${table} VALUES ($1, $2)`, [i, i === 7 ? null : Buffer.from(sealed)]);
    }
    await pool.query(`UPDATE ${table} SET doc = '\\x00010203'::bytea WHERE id = 9`); // not a sealed message
    const plan = rewrapSweep(envelope, { columns: ['doc'], toKeyId: 'new' });
    const summary = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 16 });
    expect(summary).toMatchObject({ seen: 39, written: 38, failed: 1 });
    expect(summary.failures[0]).toMatchObject({ key: [9], code: 'ERR_HEADER_MALFORMED' });
    expect(reEncrypts).toBe(38);
    const { rows } = await pool.query(`SELECT id, doc FROM ${table} WHERE doc IS NOT NULL AND id <> 9 ORDER BY id`);
    for (const { id, doc } of rows as { id: number; doc: Buffer }[]) {
      const before = originals.get(id)!;
      expect(inspect(doc).keyId).toBe('new');
      expect(doc.subarray(inspect(doc).headerLength).equals(Buffer.from(before.subarray(inspect(before).headerLength)))).toBe(true);
      expect(await envelope.openString(doc)).toBe(`document ${id}`);
    }
    const again = await sweepPostgres(pool, { table, key: 'id', ...plan });
    expect(again).toMatchObject({ written: 0, current: 38, failed: 1 });
    expect(reEncrypts).toBe(38);
  });

  it('a composite key (tenant, number) is walked in key order across batches, on PostgreSQL and SQLite', async () => {
    const table = uniqueTable('kmse_sweep_composite');
    tables.push(table);
    await pool.query(`CREATE TABLE ${table} (tenant TEXT, n BIGINT, v TEXT, PRIMARY KEY (tenant, n))`);
    const keys = ['b', 'a', 'c'].flatMap((tenant) => [3, 1, 20, 100, 2].map((n) => [tenant, n] as const));
    for (const [tenant, n] of keys) await pool.query(`INSERT INTO ${table} VALUES ($1, $2, NULL)`, [tenant, n]);
    const seen: string[] = [];
    const options = {
      key: ['tenant', 'n'],
      columns: ['v'],
      pending: 'v IS NULL',
      batchSize: 4,
      transform: (row: Readonly<Record<string, unknown>>) => (seen.push(`${row.tenant}${row.n}`), { write: { v: 'done' } }),
    };
    expect(await sweepPostgres(pool, { table, ...options })).toMatchObject({ written: 15, batches: 4 });
    const order = ['a', 'b', 'c'].flatMap((t) => [1, 2, 3, 20, 100].map((n) => `${t}${n}`));
    expect(seen).toEqual(order);
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (tenant TEXT, n INTEGER, v TEXT, PRIMARY KEY (tenant, n))');
    for (const [tenant, n] of keys) db.prepare('INSERT INTO t VALUES (?, ?, NULL)').run(tenant, n);
    seen.length = 0;
    expect(await sweepSqlite(db, { table: 't', ...options })).toMatchObject({ written: 15 });
    expect(seen).toEqual(order);
    expect(db.prepare("SELECT count(*) AS n FROM t WHERE v = 'done'").get()).toEqual({ n: 15 });
    db.close();
  });

  it('writes rows whose transforms write different column sets, in any order, each row its own values', async () => {
    const table = await pgTable();
    for (let i = 0; i < 30; i++) await pool.query(`INSERT INTO ${table} (id, tenant, key_version) VALUES ($1, 'acme', 1)`, [`r${String(i).padStart(2, '0')}`]);
    // Three sets: {email}, {email, key_version} written in two key orders, {photo}.
    const transform = (row: Record<string, unknown>) => {
      const i = Number(String(row.id).slice(1));
      if (i % 3 === 0) return { write: { email: `e${i}` } };
      if (i % 3 === 1) return { write: i % 2 ? { email: `e${i}`, key_version: i } : { key_version: i, email: `e${i}` } };
      return { write: { photo: new Uint8Array([i]) } };
    };
    const summary = await sweepPostgres(pool, { table, key: 'id', columns: ['email', 'photo', 'key_version'], pending: 'true', transform, batchSize: 7 });
    expect(summary).toMatchObject({ written: 30, failed: 0 });
    const rows = (await pool.query(`SELECT id, email, photo, key_version FROM ${table} ORDER BY id`)).rows as { id: string; email: string | null; photo: Buffer | null; key_version: number }[];
    for (const [i, r] of rows.entries()) {
      expect(r.email).toBe(i % 3 === 2 ? null : `e${i}`);
      expect(r.photo ? [...r.photo] : null).toEqual(i % 3 === 2 ? [i] : null);
      expect(r.key_version).toBe(i % 3 === 1 ? i : 1);
    }
  });

  it('works a batch in slices, each slice\'s UPDATE sent before the next is worked on, in one transaction: a failure in a later slice rolls back the earlier slices', async () => {
    const table = await pgTable();
    await pool.query(`INSERT INTO ${table} (id, tenant, key_version) SELECT 'r' || lpad(i::text, 3, '0'), 'acme', 1 FROM generate_series(0, 249) AS i`);
    const stopAt = 'r180';
    const kmsDown = new KmsError('the KMS is down');
    const failing = (row: Record<string, unknown>) => {
      if (row.id === stopAt) throw kmsDown;
      return { write: { key_version: 2 } };
    };
    await expect(sweepPostgres(pool, { table, key: 'id', columns: ['key_version'], pending: 'key_version < 2', transform: failing, batchSize: 250 })).rejects.toThrow('the KMS is down');
    // Rows 0-179 were worked on and sent (two slices) before row 180 failed: none of them was kept.
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows).toEqual([{ n: 0 }]);
    const events: SweepEvent[] = [];
    const summary = await sweepPostgres(pool, { table, key: 'id', columns: ['key_version'], pending: 'key_version < 2', transform: () => ({ write: { key_version: 2 } }), batchSize: 250, onEvent: (e) => events.push(e) });
    expect(summary).toMatchObject({ seen: 250, written: 250, batches: 1 });
    expect(events.find((e) => e.type === 'batch')).toMatchObject({ batch: { seen: 250, written: 250 } });
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows).toEqual([{ n: 250 }]);
  });

  it('never sends a query on a client that is still running one (pg 9 refuses that): the sliced UPDATEs form one chain', async () => {
    const table = await pgTable();
    await pool.query(`INSERT INTO ${table} (id, tenant, key_version) SELECT 'r' || lpad(i::text, 3, '0'), 'acme', 1 FROM generate_series(0, 449) AS i`);
    const watched = new pg.Pool({ connectionString: server.url, max: 2 });
    let most = 0; // the most queries one client had outstanding at once
    watched.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
      let inFlight = 0;
      (client as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = (...args: unknown[]) => {
        most = Math.max(most, ++inFlight);
        return query(...args).finally(() => inFlight--);
      };
    });
    try {
      const summary = await sweepPostgres(watched, { table, key: 'id', columns: ['key_version'], pending: 'key_version < 2', transform: () => ({ write: { key_version: 2 } }), batchSize: 450 });
      expect(summary).toMatchObject({ seen: 450, written: 450, batches: 1 });
    } finally {
      await watched.end();
    }
    expect(most).toBe(1);
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows).toEqual([{ n: 450 }]);
  });

  it('a batch is BEGIN, the SELECT, one UPDATE per slice, COMMIT; the UPDATE is one named statement whatever its rows (unnest of arrays), prepared once on the connection, its generic plan an index scan', async () => {
    const table = await pgTable();
    // Enough rows, analyzed, for the planner to prefer the primary key to a scan of the table.
    await pool.query(`INSERT INTO ${table} (id, tenant, key_version) SELECT 'r' || lpad(i::text, 5, '0'), 'acme', 1 FROM generate_series(0, 19999) AS i`);
    await pool.query(`ANALYZE ${table}`);
    const watched = new pg.Pool({ connectionString: server.url, max: 2 });
    const sent: unknown[] = []; // the first argument of every query the sweep's client was given
    watched.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
      (client as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = (...args: unknown[]) => (sent.push(args[0]), query(...args));
    });
    try {
      const plan = { columns: ['key_version'], pending: `key_version < 2 AND id < 'r00500'`, transform: () => ({ write: { key_version: 2 } }), batchSize: 250, count: false };
      expect(await sweepPostgres(watched, { table, key: 'id', ...plan })).toMatchObject({ written: 500, batches: 2 });
      const kinds = sent.map((q) => (typeof q === 'string' ? q.split(' ')[0] : `named ${(q as { text: string }).text.split(' ')[0]}`));
      const batch = ['BEGIN', 'SELECT', 'named UPDATE', 'named UPDATE', 'named UPDATE', 'COMMIT']; // 250 rows: slices of 100, 100, 50
      expect(kinds).toEqual(['SELECT', ...batch, ...batch, 'BEGIN', 'SELECT', 'COMMIT']);
      const updates = sent.filter((q): q is { name: string; text: string } => typeof q === 'object');
      expect(new Set(updates.map((u) => `${u.name} ${u.text}`)).size).toBe(1);
      expect(updates[0]!.text).toContain('FROM unnest($1::text[], $2::integer[])');
      // The server parsed it once and planned it at most once per run (custom plans for the first five, then the generic one).
      expect(watched.totalCount).toBe(1);
      const { rows: prepared } = await watched.query('SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements');
      expect(prepared).toHaveLength(1);
      expect(prepared[0]).toMatchObject({ statement: updates[0]!.text });
      expect(Number(prepared[0].generic_plans) + Number(prepared[0].custom_plans)).toBe(6);
      expect(Number(prepared[0].generic_plans)).toBeGreaterThan(0);
    } finally {
      await watched.end();
    }
    // The generic plan (what every execution past the fifth runs) finds the rows by the primary key.
    const client = await pool.connect();
    try {
      await client.query(`SET plan_cache_mode = force_generic_plan`);
      await client.query(`PREPARE kmse_plan_check AS ${(sent.find((q) => typeof q === 'object') as { text: string }).text}`);
      const explained = (await client.query(`EXPLAIN EXECUTE kmse_plan_check('{r00600}', '{3}')`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
      expect(explained).toContain(`Index Scan using ${table}_pkey`);
      expect(explained).not.toContain('Seq Scan');
    } finally {
      await client.query('DEALLOCATE kmse_plan_check; RESET plan_cache_mode').catch(() => {});
      client.release();
    }
  });

  it('writes an array column (which unnest would flatten) row by row: arrays of different lengths, empty and NULL, each back as written', async () => {
    const table = uniqueTable('kmse_sweep');
    tables.push(table);
    await pool.query(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, tokens TEXT[], done BOOLEAN NOT NULL DEFAULT false)`);
    await pool.query(`INSERT INTO ${table} (id) SELECT i FROM generate_series(0, 149) AS i`);
    const tokensOf = (id: number) => (id % 5 === 4 ? null : Array.from({ length: id % 5 }, (_, j) => `t${id}.${j}`));
    const transform = (row: Record<string, unknown>) => ({ write: { tokens: tokensOf(row.id as number), done: true } });
    expect(await sweepPostgres(pool, { table, key: 'id', columns: ['tokens'], pending: 'NOT done', transform, batchSize: 150 })).toMatchObject({ written: 150 });
    const { rows } = await pool.query(`SELECT id, tokens FROM ${table} ORDER BY id`);
    expect(rows).toEqual(Array.from({ length: 150 }, (_, id) => ({ id, tokens: tokensOf(id) })));
  });

  it('a client that takes text only is sent text: by default for a client not pg\'s, and with namedStatements: false for pg\'s', async () => {
    const table = await pgTable();
    await pool.query(`INSERT INTO ${table} (id, tenant, key_version) SELECT 'r' || lpad(i::text, 3, '0'), 'acme', 1 FROM generate_series(0, 299) AS i`);
    const plan = { columns: ['key_version'], pending: 'key_version < 2', transform: () => ({ write: { key_version: 2 } }), batchSize: 100 };
    const textOnly = {
      async connect() {
        const client = await pool.connect();
        return {
          query: (text: unknown, values?: unknown[]) => {
            if (typeof text !== 'string') throw new TypeError('this client takes SQL text only');
            return client.query(text, values);
          },
          release: (error?: Error | boolean) => client.release(error),
        };
      },
    };
    expect(await sweepPostgres(textOnly, { table, key: 'id', ...plan, pending: `key_version < 2 AND id < 'r150'` })).toMatchObject({ written: 150, failed: 0 });
    const watched = new pg.Pool({ connectionString: server.url, max: 2 });
    const sent: unknown[] = [];
    watched.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
      (client as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = (...args: unknown[]) => (sent.push(args[0]), query(...args));
    });
    try {
      expect(await sweepPostgres(watched, { table, key: 'id', ...plan, namedStatements: false })).toMatchObject({ written: 150 });
      expect(sent.filter((q) => typeof q === 'string' && q.startsWith('UPDATE'))).toHaveLength(2);
      expect(sent.every((q) => typeof q === 'string')).toBe(true);
      expect((await watched.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows).toEqual([{ n: 0 }]);
    } finally {
      await watched.end();
    }
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows).toEqual([{ n: 300 }]);
  });

  it('count: false starts without counting the pending rows (pending undefined throughout) and still does every row', async () => {
    const table = await pgTable();
    await pool.query(`INSERT INTO ${table} (id, tenant, key_version) SELECT 'r' || lpad(i::text, 3, '0'), 'acme', 1 FROM generate_series(0, 119) AS i`);
    const plan = { columns: ['key_version'], pending: 'key_version < 2', transform: () => ({ write: { key_version: 2 } }), batchSize: 50 };
    const events: SweepEvent[] = [];
    const summary = await sweepPostgres(pool, { table, key: 'id', ...plan, count: false, onEvent: (e) => events.push(e) });
    expect(summary).toMatchObject({ pending: undefined, seen: 120, written: 120, batches: 3 });
    expect(events[0]).toEqual({ type: 'start', pending: undefined, workers: 1 });
    expect(events.filter((e) => e.type === 'batch').every((e) => e.type === 'batch' && e.pending === undefined)).toBe(true);
    await pool.query(`UPDATE ${table} SET key_version = 1 WHERE id < 'r010'`);
    expect(await sweepPostgres(pool, { table, key: 'id', ...plan })).toMatchObject({ pending: 10, written: 10 });
  });

  it('refuses bad options: no key, a column the table lacks, a transform writing the key', async () => {
    const { records } = setup();
    const table = await pgTable();
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    await expect(sweepPostgres(pool, { table, key: [], ...plan })).rejects.toThrow(/"key"/);
    // Each worker keeps a connection: a pool of 8 takes 7 workers at most (the key store needs one).
    await expect(sweepPostgres(pool, { table, key: 'id', ...plan, workers: 8 })).rejects.toThrow(/at least 9/);
    await expect(sweepPostgres(pool, { table, key: 'id', ...plan, columns: ['nope'] })).rejects.toThrow(/no column "nope"/);
    await expect(sweepPostgres(pool, { table: 'x; DROP TABLE y', key: 'id', ...plan })).rejects.toThrow(TypeError);
    await pool.query(`INSERT INTO ${table} (id, tenant, key_version) VALUES ('a', 'acme', 1)`);
    const error = await sweepPostgres(pool, { table, key: 'id', columns: ['email'], pending: 'true', transform: () => ({ write: { id: 'b' } }) }).catch((e: unknown) => e);
    expect(String(error)).toContain('not a column the sweep may write');
    expect((await pool.query(`SELECT id FROM ${table}`)).rows).toEqual([{ id: 'a' }]);
    expect(() => rotationSweep(records, customers, { minVersion: 0, keyVersionColumn: 'key_version' })).toThrow(RangeError);
    expect(() => backfillSweep(records, customers)).toThrow(/legacyPlaintext/);
  });
});

describe('table sweeps on SQLite', () => {
  it('rotation with a stop and a resume, a failed row skipped', async () => {
    const { hierarchy, records } = setup();
    const db = new Database(':memory:');
    db.exec('CREATE TABLE customers (id TEXT PRIMARY KEY, tenant TEXT, email TEXT, photo BLOB, key_version INTEGER)');
    const insert = db.prepare('INSERT INTO customers VALUES (?, ?, ?, ?, ?)');
    const plain = plainRows(150);
    for (const r of plain) {
      const s = await records.seal(customers, r);
      insert.run(s.id, s.tenant, s.email, Buffer.from(s.photo as Uint8Array), 1);
    }
    db.prepare("UPDATE customers SET email = (SELECT email FROM customers WHERE id = 'r000002') WHERE id = 'r000000'").run();
    await rotated(hierarchy);
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const controller = new AbortController();
    const first = await sweepSqlite(db, { table: 'customers', key: 'id', ...plan, batchSize: 30, signal: controller.signal, onEvent: (e) => e.type === 'batch' && e.totals.batches === 2 && controller.abort() });
    expect(first).toMatchObject({ stopped: true, seen: 60, written: 59, failed: 1 });
    expect(first.failures[0]).toMatchObject({ key: ['r000000'], code: 'ERR_DECRYPTION_FAILED' });
    const second = await sweepSqlite(db, { table: 'customers', key: 'id', ...plan, batchSize: 30 });
    expect(second).toMatchObject({ stopped: false, seen: 91, written: 90, failed: 1 });
    const rows = db.prepare('SELECT * FROM customers ORDER BY id').all() as Record<string, unknown>[];
    expect(rows.filter((r) => r.key_version === 2)).toHaveLength(149);
    const opened = await Promise.all(rows.slice(1).map((r) => records.open(customers, { ...r, photo: new Uint8Array(r.photo as Buffer) } as never)));
    expect(opened.map((r) => r.email)).toEqual(plain.slice(1).map((r) => r.email));
    await expect(sweepSqlite(db, { table: 'customers', key: 'id', ...plan, workers: 2 })).rejects.toThrow(/one worker/);
    db.close();
  });

  it('a row the application changes between the read and the write is left as the application wrote it, counted, and done by the next run', async () => {
    const { hierarchy, records } = setup();
    const db = new Database(':memory:');
    db.exec('CREATE TABLE customers (id TEXT PRIMARY KEY, tenant TEXT, email TEXT, photo BLOB, key_version INTEGER)');
    const insert = db.prepare('INSERT INTO customers VALUES (?, ?, ?, ?, ?)');
    for (const r of plainRows(20)) {
      const s = await records.seal(customers, r);
      insert.run(s.id, s.tenant, s.email, Buffer.from(s.photo as Uint8Array), 1);
    }
    const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
    const appValue = (await records.seal(customers, { ...plainRows(6)[5]!, email: 'new@example.org' })).email;
    await rotated(hierarchy);
    const racing = {
      ...plan,
      async transform(row: Readonly<Record<string, unknown>>) {
        const outcome = await plan.transform(row);
        // The application writes row r000005 while the sweep holds its new values in memory.
        if (row.id === 'r000005') db.prepare("UPDATE customers SET email = ? WHERE id = 'r000005'").run(appValue);
        return outcome;
      },
    };
    const first = await sweepSqlite(db, { table: 'customers', key: 'id', ...racing, batchSize: 8 });
    expect(first).toMatchObject({ seen: 20, written: 19, changed: 1, failed: 0 });
    const row = db.prepare("SELECT * FROM customers WHERE id = 'r000005'").get() as Record<string, unknown>;
    expect(row).toMatchObject({ email: appValue, key_version: 1 });
    const second = await sweepSqlite(db, { table: 'customers', key: 'id', ...plan });
    expect(second).toMatchObject({ seen: 1, written: 1, changed: 0 });
    const done = db.prepare("SELECT * FROM customers WHERE id = 'r000005'").get() as Record<string, unknown>;
    expect(done.key_version).toBe(2);
    expect((await records.open(customers, { ...done, photo: new Uint8Array(done.photo as Buffer) } as never)).email).toBe('new@example.org');
    db.close();
  });
});
