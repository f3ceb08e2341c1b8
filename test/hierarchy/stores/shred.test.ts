/**
 * Tombstones in every key store (memory, JSON file, SQLite, a real PostgreSQL): added, read back by
 * another instance over the same storage (another process), the higher version kept when a
 * partition is shredded again; and stores made before tombstones existed keep working: a JSON file
 * without them reads, the SQL stores gain their tombstone table in place (CREATE TABLE IF NOT
 * EXISTS), and with `createTable: false` and no such table they read no tombstone and refuse to add one.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KeyStore, MemoryKeyStore, type StoredKey } from '../../../src/hierarchy/key-store.ts';
import { JsonFileKeyStore } from '../../../src/node.ts';
import { PostgresKeyStore, SqliteKeyStore } from '../../../src/hierarchy.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../../fixtures/postgres.ts';

const dir = mkdtempSync(join(tmpdir(), 'kmse-tombstones-'));
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
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
const key = (partition: string, version: number): StoredKey => ({
  partition,
  version,
  state: 'active',
  provider: 'local',
  keyId: 'local-0123456789abcdef',
  ciphertextBlob: `wrapped-${partition}-${version}`,
  createdAt: 1_790_000_000_000 + version,
});

/** A store, and `reopen()`: another store over the same storage. */
const STORES: Array<[string, () => { store: KeyStore; reopen: () => KeyStore }]> = [
  [
    'MemoryKeyStore',
    () => {
      const store = new MemoryKeyStore();
      return { store, reopen: () => store };
    },
  ],
  [
    'JsonFileKeyStore',
    () => {
      const path = join(dir, `keys-${++counter}.json`);
      return { store: new JsonFileKeyStore(path), reopen: () => new JsonFileKeyStore(path) };
    },
  ],
  [
    'SqliteKeyStore',
    () => {
      const path = join(dir, `keys-${++counter}.sqlite`);
      const open = () => new SqliteKeyStore({ database: new Database(path) });
      return { store: open(), reopen: open };
    },
  ],
  [
    'PostgresKeyStore',
    () => {
      const table = uniqueTable('kmse_tomb');
      made.push(table, `${table}_tombstones`);
      return { store: new PostgresKeyStore({ client: pool, table }), reopen: () => new PostgresKeyStore({ client: pool, table }) };
    },
  ],
];

describe.each(STORES)('%s: tombstones', (_name, make) => {
  it('are added, read back by another instance, listed, and keep the higher version (and the later time) when added again', async () => {
    const { store, reopen } = make();
    await store.createVersion(key('kept', 1));
    expect(await store.getTombstone!('gone')).toBeUndefined();
    expect(await store.listTombstones!()).toEqual([]);
    await store.addTombstone!({ partition: 'gone', version: 3, shreddedAt: 1000 });
    await store.addTombstone!({ partition: 'gone#blind-index', version: 1, shreddedAt: 1000 });
    await store.addTombstone!({ partition: 'gone', version: 2, shreddedAt: 2000 });
    const other = reopen();
    expect(await other.getTombstone!('gone')).toEqual({ partition: 'gone', version: 3, shreddedAt: 2000 });
    await other.addTombstone!({ partition: 'gone', version: 5, shreddedAt: 1500 });
    expect(await store.getTombstone!('gone')).toEqual({ partition: 'gone', version: 5, shreddedAt: 2000 });
    expect((await store.listTombstones!()).map((t) => [t.partition, t.version])).toEqual([
      ['gone', 5],
      ['gone#blind-index', 1],
    ]);
    expect(await other.getVersion('kept', 1)).toEqual(key('kept', 1));
    for (const bad of [{ partition: '', version: 1, shreddedAt: 0 }, { partition: 'p', version: 0, shreddedAt: 0 }, { partition: 'p', version: 1.5, shreddedAt: 0 }]) {
      await expect(store.addTombstone!(bad)).rejects.toThrow(TypeError);
    }
  });
});

describe('key stores made before tombstones', () => {
  it('a JSON file without tombstones reads as before, and gains them without touching its keys', async () => {
    const path = join(dir, `old-${++counter}.json`);
    const file = { format: 'kms-envelope key store', version: 1, partitions: { p: { 1: key('p', 1) } } };
    writeFileSync(path, JSON.stringify(file));
    const store = new JsonFileKeyStore(path);
    expect(await store.getTombstone('p')).toBeUndefined();
    expect(await store.getActive('p')).toEqual(key('p', 1));
    await store.addTombstone({ partition: 'q', version: 1, shreddedAt: 5 });
    const written = JSON.parse(readFileSync(path, 'utf8'));
    expect(written.partitions).toEqual(file.partitions);
    expect(written.tombstones).toEqual({ q: { partition: 'q', version: 1, shreddedAt: 5 } });
  });

  it('SQLite: the tombstone table is created in place beside an existing key table; with createTable: false and none, no tombstone is read and none added', async () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE kms_envelope_keys (partition TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL, provider TEXT NOT NULL, key_id TEXT NOT NULL, ciphertext_blob TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (partition, version))');
    const old = new SqliteKeyStore({ database: db, createTable: false });
    await old.createVersion(key('p', 1));
    expect(await old.getTombstone('p')).toBeUndefined();
    expect(await old.listTombstones()).toEqual([]);
    await expect(old.addTombstone({ partition: 'p', version: 1, shreddedAt: 0 })).rejects.toThrow(/no such table/);
    const upgraded = new SqliteKeyStore({ database: db });
    expect(await upgraded.getActive('p')).toEqual(key('p', 1));
    await upgraded.addTombstone({ partition: 'p', version: 1, shreddedAt: 0 });
    expect(await new SqliteKeyStore({ database: db, createTable: false }).getTombstone('p')).toEqual({ partition: 'p', version: 1, shreddedAt: 0 });
    expect(() => new SqliteKeyStore({ database: db, tombstoneTable: 'bad name' })).toThrow(TypeError);
    db.close();
  });

  it('PostgreSQL: the same, and a long key-table name gets a tombstone table name cut to fit', async () => {
    const table = uniqueTable('kmse_tomb_old');
    made.push(table, `${table}_tombstones`);
    const old = new PostgresKeyStore({ client: pool, table, createTable: false });
    await pool.query(
      `CREATE TABLE ${table} (partition TEXT NOT NULL, version BIGINT NOT NULL, state TEXT NOT NULL, provider TEXT NOT NULL, key_id TEXT NOT NULL, ciphertext_blob TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (partition, version))`,
    );
    await old.createVersion(key('p', 1));
    expect(await old.getTombstone('p')).toBeUndefined();
    await expect(old.addTombstone({ partition: 'p', version: 1, shreddedAt: 0 })).rejects.toMatchObject({ code: '42P01' });
    const upgraded = new PostgresKeyStore({ client: pool, table });
    await upgraded.addTombstone({ partition: 'p', version: 2, shreddedAt: 7 });
    expect(await upgraded.getActive('p')).toEqual(key('p', 1));
    expect(await old.getTombstone('p')).toEqual({ partition: 'p', version: 2, shreddedAt: 7 });
    const long = `kmse_${'l'.repeat(50)}_${counter++}`.slice(0, 63);
    made.push(long, `${long.slice(0, 52)}_tombstones`);
    const longStore = new PostgresKeyStore({ client: pool, table: long });
    await longStore.addTombstone({ partition: 'p', version: 1, shreddedAt: 0 });
    expect((await pool.query(`SELECT partition FROM ${long.slice(0, 52)}_tombstones`)).rows).toEqual([{ partition: 'p' }]);
  });
});
