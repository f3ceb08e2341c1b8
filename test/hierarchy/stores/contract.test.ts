/**
 * One KeyStore contract, run against every store: the in-memory model, the JSON file, SQLite and
 * a real PostgreSQL server (test/fixtures/postgres.ts). Then what only one store has: the JSON
 * file's lock, the SQL stores' table names and PostgreSQL's concurrent table creation. Races
 * between real processes are in races.test.ts.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type KeyStore, MemoryKeyStore, type StoredKey } from '../../../src/hierarchy/key-store.ts';
import { CorruptKeyRecordError, PostgresKeyStore, SqliteKeyStore } from '../../../src/hierarchy.ts';
import { JsonFileKeyStore } from '../../../src/node.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../../fixtures/postgres.ts';

const dir = mkdtempSync(join(tmpdir(), 'kmse-key-stores-'));
let server: PostgresServer | undefined;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 10 });
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
const fresh = (name: string) => join(dir, `${name}-${++counter}`);

function key(partition: string, version: number, over: Partial<StoredKey> = {}): StoredKey {
  return {
    partition,
    version,
    state: 'active',
    provider: 'local',
    keyId: 'local-0123456789abcdef',
    ciphertextBlob: `wrapped-${partition}-${version}`,
    createdAt: 1_790_000_000_000 + version,
    ...over,
  };
}

interface Harness {
  store: KeyStore;
  /** Another store over the same storage, as a second process sees it. */
  reopen?: () => KeyStore;
  /** Damages the stored record of (partition, version) so it no longer passes checkStoredKey. */
  corrupt?: (partition: string, version: number) => Promise<void>;
  cleanup?: () => Promise<void>;
}

const STORES: Array<[string, () => Promise<Harness>]> = [
  ['MemoryKeyStore', async () => ({ store: new MemoryKeyStore() })],
  [
    'JsonFileKeyStore',
    async () => {
      const path = `${fresh('store')}.json`;
      return {
        store: new JsonFileKeyStore(path),
        reopen: () => new JsonFileKeyStore(path),
        corrupt: async (partition, version) => {
          const file = JSON.parse(readFileSync(path, 'utf8'));
          file.partitions[partition][String(version)].ciphertextBlob = 42;
          writeFileSync(path, JSON.stringify(file));
        },
      };
    },
  ],
  [
    'SqliteKeyStore',
    async () => {
      const db = new Database(`${fresh('store')}.sqlite`);
      db.pragma('journal_mode = WAL');
      const table = uniqueTable();
      return {
        store: new SqliteKeyStore({ database: db, table }),
        reopen: () => new SqliteKeyStore({ database: db, table }),
        corrupt: async (partition, version) => {
          db.prepare(`UPDATE ${table} SET state = 'bogus' WHERE partition = ? AND version = ?`).run(partition, version);
        },
        cleanup: async () => void db.close(),
      };
    },
  ],
  [
    'PostgresKeyStore',
    async () => {
      const table = uniqueTable();
      return {
        store: new PostgresKeyStore({ client: pool, table }),
        reopen: () => new PostgresKeyStore({ client: pool, table }),
        corrupt: async (partition, version) => {
          await pool.query(`UPDATE ${table} SET state = 'bogus' WHERE partition = $1 AND version = $2`, [partition, version]);
        },
        cleanup: async () => void (await pool.query(`DROP TABLE IF EXISTS ${table}, ${table}_tombstones`)),
      };
    },
  ],
];

describe.each(STORES)('%s: the KeyStore contract', (_name, make) => {
  let h: Harness;
  let store: KeyStore;
  beforeEach(async () => {
    h = await make();
    store = h.store;
  });
  afterEach(async () => {
    await h.cleanup?.();
  });

  it('has nothing before anything is created', async () => {
    expect(await store.getVersion('tenant-a', 1)).toBeUndefined();
    expect(await store.getActive('tenant-a')).toBeUndefined();
    expect(await store.listVersions('tenant-a')).toEqual([]);
  });

  it('creates versions and reads them back, lowest version first, each partition on its own', async () => {
    for (const v of [3, 1, 2]) expect(await store.createVersion(key('tenant-a', v))).toEqual(key('tenant-a', v));
    await store.createVersion(key('tenant-b', 7));
    expect(await store.getVersion('tenant-a', 2)).toEqual(key('tenant-a', 2));
    expect(await store.getVersion('tenant-a', 4)).toBeUndefined();
    expect(await store.getVersion('tenant-b', 1)).toBeUndefined();
    expect(await store.listVersions('tenant-a')).toEqual([key('tenant-a', 1), key('tenant-a', 2), key('tenant-a', 3)]);
    expect(await store.listVersions('tenant-b')).toEqual([key('tenant-b', 7)]);
    expect(Object.isFrozen(await store.getVersion('tenant-a', 1))).toBe(true);
  });

  it('getActive is the highest active version, and follows setState', async () => {
    await store.createVersion(key('p', 1));
    await store.createVersion(key('p', 2));
    await store.createVersion(key('p', 3, { state: 'decrypt-only' }));
    expect(await store.getActive('p')).toEqual(key('p', 2));
    await store.setState('p', 2, 'decrypt-only');
    expect(await store.getActive('p')).toEqual(key('p', 1));
    expect(await store.getVersion('p', 2)).toEqual(key('p', 2, { state: 'decrypt-only' }));
    await store.setState('p', 3, 'active');
    expect(await store.getActive('p')).toEqual(key('p', 3));
    for (const v of [1, 3]) await store.setState('p', v, 'decrypt-only');
    expect(await store.getActive('p')).toBeUndefined();
    expect((await store.listVersions('p')).map((k) => k.state)).toEqual(['decrypt-only', 'decrypt-only', 'decrypt-only']);
  });

  it('createVersion of an existing version returns the stored record unchanged', async () => {
    const first = await store.createVersion(key('p', 1));
    const second = await store.createVersion(key('p', 1, { ciphertextBlob: 'another blob', state: 'decrypt-only', keyId: 'other', createdAt: 5 }));
    expect(second).toEqual(first);
    expect(await store.getVersion('p', 1)).toEqual(key('p', 1));
    expect(await store.listVersions('p')).toHaveLength(1);
  });

  it('setState of a missing version is a RangeError', async () => {
    await store.createVersion(key('p', 1));
    await expect(store.setState('p', 2, 'decrypt-only')).rejects.toThrow(RangeError);
    await expect(store.setState('q', 1, 'decrypt-only')).rejects.toThrow(RangeError);
  });

  it('deletePartition removes every version of that partition and nothing else', async () => {
    for (const v of [1, 2]) await store.createVersion(key('gone', v));
    await store.createVersion(key('kept', 1));
    await store.deletePartition!('gone');
    expect(await store.listVersions('gone')).toEqual([]);
    expect(await store.getActive('gone')).toBeUndefined();
    expect(await store.listVersions('kept')).toEqual([key('kept', 1)]);
    await store.deletePartition!('never-there');
    // A deleted partition starts again from nothing.
    expect(await store.createVersion(key('gone', 1, { ciphertextBlob: 'new' }))).toEqual(key('gone', 1, { ciphertextBlob: 'new' }));
  });

  it('listPartitions lists every partition with a version, and deletePartition removes it from the list', async () => {
    expect(await store.listPartitions!()).toEqual([]);
    for (const p of ['b', 'a', "it's"]) await store.createVersion(key(p, 1));
    await store.createVersion(key('a', 2));
    expect(await store.listPartitions!()).toEqual(['a', 'b', "it's"]);
    await store.deletePartition!('b');
    expect(await store.listPartitions!()).toEqual(['a', "it's"]);
  });

  it('replaceWrappedKey replaces the wrapping only while the blob is the expected one (compare and set), keeping state and createdAt', async () => {
    const old = await store.createVersion(key('p', 1, { state: 'decrypt-only' }));
    const wrapped = { provider: 'tencent', keyId: 'new-cmk', ciphertextBlob: 'rewrapped-blob' };
    expect(await store.replaceWrappedKey!('p', 1, 'some other blob', wrapped)).toBe(false);
    expect(await store.getVersion('p', 1)).toEqual(old);
    expect(await store.replaceWrappedKey!('p', 1, old.ciphertextBlob, wrapped)).toBe(true);
    expect(await store.getVersion('p', 1)).toEqual({ ...old, ...wrapped });
    // A second rotation racing with the first saw the old blob: it must not overwrite.
    expect(await store.replaceWrappedKey!('p', 1, old.ciphertextBlob, { ...wrapped, ciphertextBlob: 'late' })).toBe(false);
    expect(await store.replaceWrappedKey!('p', 2, old.ciphertextBlob, wrapped)).toBe(false);
    await expect(store.replaceWrappedKey!('p', 1, 'rewrapped-blob', { provider: '', keyId: 'k', ciphertextBlob: 'b' })).rejects.toThrow(TypeError);
  });

  it('refuses an invalid record and stores nothing', async () => {
    for (const bad of [key('p', 0), key('p', 1.5), key('', 1), key('p', 1, { ciphertextBlob: '' }), key('p', 1, { state: 'retired' as never })]) {
      await expect(store.createVersion(bad)).rejects.toThrow(TypeError);
    }
    expect(await store.listVersions('p')).toEqual([]);
  });

  it('takes partition names as data, not syntax', async () => {
    const names = ['__proto__', 'constructor', `a'b"c; DROP TABLE x; --`, 'ünïcødé 🔑', 'a.b/c\\d', ' '];
    for (const [i, name] of names.entries()) await store.createVersion(key(name, i + 1));
    for (const [i, name] of names.entries()) {
      expect(await store.listVersions(name)).toEqual([key(name, i + 1)]);
      expect(await store.getActive(name)).toEqual(key(name, i + 1));
    }
    expect(await store.listVersions('toString')).toEqual([]);
  });

  it('keeps the largest version the interface allows', async () => {
    await store.createVersion(key('p', 0xffffffff));
    expect(await store.getActive('p')).toEqual(key('p', 0xffffffff));
  });

  it('shows every change to a second store over the same storage', async (context) => {
    if (!h.reopen) return context.skip();
    await store.createVersion(key('p', 1));
    await store.createVersion(key('p', 2));
    await store.setState('p', 2, 'decrypt-only');
    const other = h.reopen();
    expect(await other.listVersions('p')).toEqual([key('p', 1), key('p', 2, { state: 'decrypt-only' })]);
    expect(await other.createVersion(key('p', 2, { ciphertextBlob: 'x' }))).toEqual(key('p', 2, { state: 'decrypt-only' }));
    await other.createVersion(key('p', 3));
    expect(await store.getActive('p')).toEqual(key('p', 3));
  });

  it('refuses a corrupted record with an error naming its partition and version, and never overwrites it', async (context) => {
    if (!h.corrupt) return context.skip();
    for (const v of [1, 2]) await store.createVersion(key('p', v));
    await store.createVersion(key('q', 1));
    await h.corrupt('p', 2);
    const refused = { name: 'CorruptKeyRecordError', code: 'ERR_KEY_RECORD_CORRUPT', partition: 'p', version: 2 };
    const checks = [
      () => store.getVersion('p', 2),
      () => store.getActive('p'),
      () => store.listVersions('p'),
      () => store.createVersion(key('p', 2)),
      () => store.setState('p', 2, 'active'),
    ];
    for (const check of checks) {
      const error = await check().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(CorruptKeyRecordError);
      expect(error).toBeInstanceOf(TypeError);
      expect(error).toMatchObject(refused);
      expect(String(error)).toMatch(/partition "p" version 2/);
    }
    // The rest of the store is still usable.
    expect(await store.getVersion('p', 1)).toEqual(key('p', 1));
    expect(await store.listVersions('q')).toEqual([key('q', 1)]);
  });
});

describe('JsonFileKeyStore: the file and its lock', () => {
  const holder = (since: number) => JSON.stringify({ pid: 999_999, host: 'elsewhere', since, token: 'theirs' });

  it('writes a mode 0600 JSON file and leaves no lock or temporary file behind', async () => {
    const folder = fresh('folder');
    const store = new JsonFileKeyStore(join(folder, 'nested', 'keys.json'));
    await Promise.all([1, 2, 3, 4].map((v) => store.createVersion(key('p', v))));
    await store.setState('p', 1, 'decrypt-only');
    expect(statSync(store.path).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(folder, 'nested'))).toEqual(['keys.json']);
    const file = JSON.parse(readFileSync(store.path, 'utf8'));
    expect(file).toMatchObject({ format: 'kms-envelope key store', version: 1 });
    expect(Object.keys(file.partitions.p)).toEqual(['1', '2', '3', '4']);
  });

  it('refuses a file that is not a key store, and never writes over it', async () => {
    for (const text of ['{"partitions": {', '[]', '{"format": "something else", "version": 1, "partitions": {}}', '{"format":"kms-envelope key store","version":1,"partitions":{"p":[]}}']) {
      const path = `${fresh('garbled')}.json`;
      writeFileSync(path, text);
      const store = new JsonFileKeyStore(path);
      await expect(store.listVersions('p')).rejects.toBeInstanceOf(CorruptKeyRecordError);
      await expect(store.createVersion(key('p', 1))).rejects.toBeInstanceOf(CorruptKeyRecordError);
      expect(readFileSync(path, 'utf8')).toBe(text);
    }
  });

  it('refuses a record filed under another partition or version', async () => {
    const path = `${fresh('moved')}.json`;
    const store = new JsonFileKeyStore(path);
    await store.createVersion(key('p', 1));
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.partitions.p['2'] = key('p', 1);
    file.partitions.q = { '1': key('p', 1) };
    writeFileSync(path, JSON.stringify(file));
    await expect(store.getVersion('p', 2)).rejects.toMatchObject({ partition: 'p', version: 2, message: /names partition "p" version 1/ });
    await expect(store.getActive('q')).rejects.toMatchObject({ partition: 'q', version: 1 });
  });

  it('waits for a lock held by another process, then goes on', async () => {
    const path = `${fresh('held')}.json`;
    writeFileSync(`${path}.lock`, holder(Date.now()));
    const store = new JsonFileKeyStore(path);
    let done = false;
    const created = store.createVersion(key('p', 1)).then((k) => ((done = true), k));
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    rmSync(`${path}.lock`);
    expect(await created).toEqual(key('p', 1));
  });

  it('gives up after lockTimeoutMs, naming the holder', async () => {
    const path = `${fresh('timeout')}.json`;
    writeFileSync(`${path}.lock`, holder(Date.now()));
    const store = new JsonFileKeyStore(path, { lockTimeoutMs: 200 });
    await expect(store.createVersion(key('p', 1))).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT', message: /999999/ });
    // Readers take no lock.
    expect(await store.listVersions('p')).toEqual([]);
  });

  it('breaks a stale lock (its holder died) and only that one', async () => {
    const path = `${fresh('stale')}.json`;
    const lock = `${path}.lock`;
    writeFileSync(lock, holder(Date.now() - 60_000));
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    const store = new JsonFileKeyStore(path, { staleLockMs: 5_000 });
    expect(await store.createVersion(key('p', 1))).toEqual(key('p', 1));
    expect(readdirSync(join(path, '..')).filter((f) => f.startsWith(`${path.split('/').pop()}.lock`))).toEqual([]);
    // A holder that died before writing its lock file leaves it empty: it ages by its mtime.
    writeFileSync(lock, '');
    utimesSync(lock, old, old);
    expect(await store.createVersion(key('p', 2))).toEqual(key('p', 2));
  });
});

describe('SqliteKeyStore and PostgresKeyStore: tables', () => {
  it('take only plain identifiers as table names', () => {
    const db = new Database(':memory:');
    for (const bad of ['', 'a b', 'keys; DROP TABLE x', '"keys"', 'a.b.c', '1keys', 'k'.repeat(64)]) {
      expect(() => new SqliteKeyStore({ database: db, table: bad })).toThrow(TypeError);
      expect(() => new PostgresKeyStore({ client: pool, table: bad })).toThrow(TypeError);
    }
    expect(() => new SqliteKeyStore({ database: db, table: 'main.custom_keys' })).not.toThrow();
    db.close();
  });

  it('SQLite: sets a busy timeout so a locked database is waited for', () => {
    const db = new Database(':memory:');
    new SqliteKeyStore({ database: db });
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    new SqliteKeyStore({ database: db, busyTimeoutMs: 250 });
    expect(db.pragma('busy_timeout', { simple: true })).toBe(250);
    db.close();
  });

  it('PostgreSQL: stores created at once over separate connections all create the same new table', async () => {
    const table = uniqueTable();
    const clients = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const client = new pg.Client({ connectionString: server!.url });
        await client.connect();
        return client;
      }),
    );
    try {
      const stores = clients.map((client) => new PostgresKeyStore({ client, table }));
      await Promise.all(stores.map((store) => store.init()));
      const made = await Promise.all(stores.map((store, i) => store.createVersion(key('p', 1, { ciphertextBlob: `blob-${i}` }))));
      expect(new Set(made.map((k) => k.ciphertextBlob)).size).toBe(1);
    } finally {
      await pool.query(`DROP TABLE IF EXISTS ${table}, ${table}_tombstones`);
      await Promise.all(clients.map((client) => client.end()));
    }
  });

  it('PostgreSQL: a schema-qualified table, and createTable: false for tables made by migrations', async () => {
    const schema = uniqueTable('kmse_schema');
    await pool.query(`CREATE SCHEMA ${schema}`);
    try {
      const store = new PostgresKeyStore({ client: pool, table: `${schema}.keys` });
      await store.createVersion(key('p', 1));
      expect(await new PostgresKeyStore({ client: pool, table: `${schema}.keys`, createTable: false }).getActive('p')).toEqual(key('p', 1));
      await expect(new PostgresKeyStore({ client: pool, table: `${schema}.absent`, createTable: false }).getActive('p')).rejects.toMatchObject({ code: '42P01' });
    } finally {
      await pool.query(`DROP SCHEMA ${schema} CASCADE`);
    }
  });
});
