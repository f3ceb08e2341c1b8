/**
 * Crypto-shredding a tenant, across a restart: the key store is a real PostgreSQL
 * (test/fixtures/postgres.ts) or SQLite file, the tenant's rows sit in a table of the same
 * database, and after hierarchy.shred() a new hierarchy over the same store (a process started
 * later) finds the tenant's rows failing as shredded (ERR_PARTITION_SHREDDED, not as altered), its
 * blind-index values no longer computable, a new seal refused with no key made, and the other tenant
 * untouched. Export and import carry the tombstones, and an import never brings a shredded tenant back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PartitionShreddedError } from '../../src/core/errors.ts';
import { exportKeyStore, importKeyStore } from '../../src/hierarchy/key-store-backup.ts';
import { type KeyStore, MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { createBlindIndex } from '../../src/records.ts';
import { inspect } from '../../src/index.ts';
import { JsonFileKeyStore } from '../../src/node.ts';
import { PostgresKeyStore, SqliteKeyStore } from '../../src/hierarchy.ts';
import { fieldFromText } from '../../src/records/field-value.ts';
import { createRecords, defineTable, RecordFieldError } from '../../src/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';
import { postgresSql, type Sql, type SqlKind, sqliteSql } from '../fixtures/sql.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  partition: { column: 'tenant' },
  columns: { email: { type: 'string', index: { column: 'email_idx', bits: 32 } } },
});
const people = [
  { id: 'u1', tenant: 'acme', email: 'alice@example.com' },
  { id: 'u2', tenant: 'globex', email: 'bob@example.com' },
];

const dir = mkdtempSync(join(tmpdir(), 'kmse-shred-'));
let server: PostgresServer;
let pool: pg.Pool;
const made: string[] = [];
const opened: Database.Database[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
});
afterAll(async () => {
  for (const db of opened) db.close();
  for (const table of made) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.end();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
/** A database holding the key store and the rows; `store()` is a new store over it, as a restarted process opens it. */
async function backing(kind: SqlKind): Promise<{ sql: Sql; table: string; store: () => KeyStore }> {
  if (kind === 'sqlite') {
    const file = join(dir, `db-${++counter}.sqlite`);
    const connect = () => {
      const db = new Database(file);
      opened.push(db);
      return db;
    };
    const sql = sqliteSql(connect());
    await sql.run('CREATE TABLE customers (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, email_idx TEXT)');
    return { sql, table: 'customers', store: () => new SqliteKeyStore({ database: connect() }) };
  }
  const [table, keys] = [uniqueTable('kmse_shred_rows'), uniqueTable('kmse_shred_keys')];
  made.push(table, keys, `${keys}_tombstones`);
  const sql = postgresSql(pool);
  await sql.run(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, email_idx TEXT)`);
  return { sql, table, store: () => new PostgresKeyStore({ client: pool, table: keys }) };
}

/** The tenants' own KMS providers (counting their calls), for their partitions and derived ones. */
function tenantKms() {
  const kms = { acme: new InstrumentedProvider(), globex: new InstrumentedProvider() };
  return { kms, kmsFor: (partition: string) => kms[partition.split('#')[0] as keyof typeof kms] };
}

async function error(work: () => unknown): Promise<Error & { code?: string; cause?: unknown }> {
  try {
    await work();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

for (const kind of ['postgres', 'sqlite'] as const) {
  describe(`crypto-shredding across a restart, key store and rows on ${kind}`, () => {
    it("the tenant's rows fail as shredded, its index values can no longer be computed, a new seal is refused, the other tenant is untouched", async () => {
      const b = await backing(kind);
      const { kms, kmsFor } = tenantKms();
      const first = createKeyHierarchy({ store: b.store(), kms: kmsFor });
      const before = createRecords({ hierarchy: first });
      for (const row of await Promise.all(people.map((p) => before.seal(customers, p)))) {
        await b.sql.run(`INSERT INTO ${b.table} (id, tenant, email, email_idx) VALUES (?, ?, ?, ?)`, [row.id, row.tenant, row.email, row.email_idx]);
      }
      const [acmeRow, globexRow] = await b.sql.all(`SELECT id, tenant, email, email_idx FROM ${b.table} ORDER BY id`);

      const report = await first.shred('acme');
      expect(report).toMatchObject({ versionsDeleted: 2, partitions: ['acme', 'acme#blind-index', 'acme#search'], masterKeyDisabled: false });
      expect(kms.acme.allWiped()).toBe(true); // every acme key this process held is wiped
      expect(await error(() => before.open(customers, acmeRow!))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
      await first.close();

      // A restart: a new hierarchy over the same store.
      const hierarchy = createKeyHierarchy({ store: b.store(), kms: kmsFor });
      const records = createRecords({ hierarchy });
      const acmeCalls = JSON.stringify(kms.acme.calls);
      const opening = await error(() => records.open(customers, acmeRow!));
      expect(opening).toBeInstanceOf(RecordFieldError);
      expect(opening).toMatchObject({ code: 'ERR_PARTITION_SHREDDED', table: 'customers', column: 'email', row: ['u1'] });
      expect(opening.cause).toBeInstanceOf(PartitionShreddedError);
      expect(opening.cause).toMatchObject({ partition: 'acme', version: 1 });
      expect(opening.message).not.toMatch(/altered|alice/);
      expect(await error(() => records.openSync(customers, acmeRow!))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });

      // Its index values: no key to compute them with, and none made.
      const indexing = await error(() => records.indexOf(customers, 'email', 'alice@example.com', { partition: 'acme' }));
      expect(indexing).toBeInstanceOf(PartitionShreddedError);
      expect(indexing).toMatchObject({ partition: 'acme#blind-index', version: 1 });
      expect(() => records.indexOfSync(customers, 'email', 'alice@example.com', { partition: 'acme' })).toThrow(PartitionShreddedError);

      // A new seal is refused, and so are warm, sealSync (the refusal is remembered) and rotate.
      const newRow = { id: 'u3', tenant: 'acme', email: 'new@example.com' };
      expect(await error(() => records.seal(customers, newRow))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
      expect(await error(() => records.warm(['acme']))).toBeInstanceOf(PartitionShreddedError);
      expect(() => records.sealSync(customers, newRow)).toThrow(PartitionShreddedError);
      expect(await error(() => hierarchy.rotate('acme'))).toBeInstanceOf(PartitionShreddedError);
      expect(JSON.stringify(kms.acme.calls)).toBe(acmeCalls); // no Decrypt, no GenerateDataKey for the tenant
      const store = b.store();
      expect(await store.listVersions('acme')).toEqual([]);
      expect(await store.listVersions('acme#blind-index')).toEqual([]);
      expect(await store.getTombstone!('acme')).toMatchObject({ partition: 'acme', version: 1 });
      expect(await store.getTombstone!('acme#blind-index')).toMatchObject({ partition: 'acme#blind-index', version: 1 });

      // The other tenant reads, searches and writes on.
      expect((await records.open(customers, globexRow!)).email).toBe('bob@example.com');
      expect(await records.indexOf(customers, 'email', 'bob@example.com', { partition: 'globex' })).toBe(globexRow!.email_idx);
      expect((await records.seal(customers, { id: 'u4', tenant: 'globex', email: 'dan@example.com' })).email).toMatch(/^kme\./);
      expect(await store.getTombstone!('globex')).toBeUndefined();
      await hierarchy.close();
    });

    it('export and import keep the tombstones; importing a backup from before the shred does not bring the tenant back', async () => {
      const b = await backing(kind);
      const { kmsFor } = tenantKms();
      const store = b.store();
      const hierarchy = createKeyHierarchy({ store, kms: kmsFor });
      const records = createRecords({ hierarchy });
      const acmeRow = await records.seal(customers, people[0]!);
      await records.seal(customers, people[1]!);
      const backup = await exportKeyStore(store);
      expect(backup.tombstones).toBeUndefined();
      await hierarchy.shred('acme');

      const exported = await exportKeyStore(store);
      expect(exported.tombstones!.map((t) => [t.partition, t.version])).toEqual([
        ['acme', 1],
        ['acme#blind-index', 1],
        ['acme#search', 1], // a tombstone for the search keys too, none of which were made
      ]);
      expect(exported.keys.map((k) => k.partition)).toEqual(['globex', 'globex#blind-index']);
      // The old backup into the shredded store: the tenant's versions are refused, the others present.
      expect(await importKeyStore(store, backup)).toEqual({
        created: 0,
        present: 2,
        conflicts: [],
        shredded: [
          { partition: 'acme', version: 1 },
          { partition: 'acme#blind-index', version: 1 },
        ],
        tombstones: 0,
      });
      expect(await store.listVersions('acme')).toEqual([]);

      // A new store from the export (a JSON file, and one of this kind) has the tombstones, and
      // then refuses the old backup too.
      for (const target of [new JsonFileKeyStore(join(dir, `restored-${++counter}.json`)), (await backing(kind)).store()]) {
        expect(await importKeyStore(target, JSON.stringify(exported))).toMatchObject({ created: 2, tombstones: 3, shredded: [] });
        expect(await importKeyStore(target, backup)).toMatchObject({ created: 0, present: 2, shredded: [{ partition: 'acme' }, { partition: 'acme#blind-index' }] });
        expect((await target.listTombstones!()).map((t) => t.partition)).toEqual(['acme', 'acme#blind-index', 'acme#search']);
        const restored = createRecords({ hierarchy: createKeyHierarchy({ store: target, kms: kmsFor }) });
        expect(await error(() => restored.open(customers, acmeRow))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
        expect(await error(() => restored.seal(customers, people[0]!))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
      }
      await hierarchy.close();
    });
  });
}

describe('crypto-shredding: versions are never reused', () => {
  it('a version written back for a shredded partition (a racing process, a store copied back) is refused as shredded too', async () => {
    const store = new MemoryKeyStore();
    const { kmsFor } = tenantKms();
    const hierarchy = createKeyHierarchy({ store, kms: kmsFor });
    const records = createRecords({ hierarchy });
    const row = await records.seal(customers, people[0]!);
    const version1 = (await store.getVersion('acme', 1))!;
    await hierarchy.shred('acme');
    await store.createVersion(version1);
    const later = createRecords({ hierarchy: createKeyHierarchy({ store, kms: kmsFor }) });
    expect(await error(() => later.open(customers, row))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
    expect(await error(() => later.seal(customers, people[0]!))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
  });

  it('recreate() starts above the shredded versions, for the tenant and its blind-index partition; what was sealed before stays shredded', async () => {
    const store = new MemoryKeyStore();
    const { kms, kmsFor } = tenantKms();
    const hierarchy = createKeyHierarchy({ store, kms: kmsFor });
    const records = createRecords({ hierarchy });
    const old = await records.seal(customers, people[0]!);
    await hierarchy.rotate('acme'); // versions 1 and 2
    await hierarchy.shred('acme');
    await expect(hierarchy.recreate('never-shredded')).rejects.toThrow(RangeError);
    const generated = kms.acme.calls.generate;
    expect(await hierarchy.recreate('acme')).toMatchObject({ partition: 'acme', version: 3, state: 'active' });
    expect(kms.acme.calls.generate).toBe(generated + 3); // the tenant's key, its blind-index key and its search key, each above the tombstone
    expect((await store.listVersions('acme#blind-index')).map((k) => k.version)).toEqual([2]);
    const fresh = await records.seal(customers, { ...people[0]!, id: 'u5' }).catch(() => undefined);
    expect(fresh).toBeUndefined(); // the table's index (version 1) was shredded: its blind index needs a new version
    expect(inspect(fieldFromText(await sealedNote(records))!).keyVersion).toBe(3);
    expect(await error(() => records.open(customers, old))).toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
    const index2 = createBlindIndex({ hierarchy, table: 'customers', column: 'email', bits: 32, version: 2 });
    expect(await index2.compute('alice@example.com', { partition: 'acme' })).toMatch(/^[A-Za-z0-9_-]+$/);
    const index1 = createBlindIndex({ hierarchy, table: 'customers', column: 'email', bits: 32 });
    await expect(index1.compute('alice@example.com', { partition: 'acme' })).rejects.toBeInstanceOf(PartitionShreddedError);
    // Shredded again: the tombstone rises to the highest version.
    await hierarchy.shred('acme');
    expect(await store.getTombstone('acme')).toMatchObject({ version: 3 });
  });

  it('shred covers derived partitions of suffixes of your own, and refuses one named after the shred; a store without tombstones cannot shred', async () => {
    const store = new MemoryKeyStore();
    const { kmsFor } = tenantKms();
    const hierarchy = createKeyHierarchy({ store, kms: kmsFor, derivedPartitionSuffixes: ['#vectors'] });
    await hierarchy.warm(['acme', 'acme#vectors']);
    expect((await hierarchy.shred('acme')).partitions).toEqual(['acme', 'acme#blind-index', 'acme#search', 'acme#vectors']);
    expect(await store.listPartitions()).toEqual([]);
    // A suffix added since (a new kind of derived key): its keys are not made for the shredded tenant either.
    const later = createKeyHierarchy({ store, kms: kmsFor, derivedPartitionSuffixes: ['#vectors', '#images'] });
    await expect(later.warm(['acme#images'])).rejects.toMatchObject({ code: 'ERR_PARTITION_SHREDDED', partition: 'acme#images' });
    await later.warm(['globex#images']);
    const bare: KeyStore = {
      getVersion: (p, v) => store.getVersion(p, v),
      getActive: (p) => store.getActive(p),
      createVersion: (k) => store.createVersion(k),
      listVersions: (p) => store.listVersions(p),
      setState: (p, v, s) => store.setState(p, v, s),
      deletePartition: (p) => store.deletePartition(p),
    };
    await expect(createKeyHierarchy({ store: bare, kms: kmsFor }).shred('globex')).rejects.toThrow(/keeps no tombstones/);
  });
});

/** A value sealed for acme through a table with no blind index, to read its key version. */
async function sealedNote(records: ReturnType<typeof createRecords>): Promise<string> {
  const plain = defineTable({ name: 'notes', primaryKey: 'id', partition: { column: 'tenant' }, columns: { body: { type: 'string' } } });
  return (await records.seal(plain, { id: 'n1', tenant: 'acme', body: 'after the re-creation' })).body as string;
}
