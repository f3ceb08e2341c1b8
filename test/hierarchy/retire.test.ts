/**
 * hierarchy.retire() over the four key stores: refused while the version is active, before
 * activeTtlMs + graceMs since the rotation, and while a census of the values' headers finds one
 * naming it; then the wrapped key is gone, a copy of an old value (a backup) fails with
 * KeyVersionRetiredError in this process and in a new one, and the record stays (never reused).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyHierarchy, type KeyStore, MemoryKeyStore, PostgresKeyStore, SqliteKeyStore, type VersionCensus } from '../../src/hierarchy.ts';
import { LocalKms } from '../../src/index.ts';
import { JsonFileKeyStore } from '../../src/node.ts';
import { createRecords, defineTable, sealedKeyOf } from '../../src/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const dir = mkdtempSync(join(tmpdir(), 'kmse-retire-'));
let server: PostgresServer;
let pool: pg.Pool;
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
});
afterAll(async () => {
  await pool.end();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const notes = defineTable({ name: 'notes', partition: 'tenant-a', columns: { body: { type: 'string' } } });
const kms = LocalKms.generate();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const STORES: [string, () => KeyStore][] = [
  ['memory', () => new MemoryKeyStore()],
  ['JSON file', () => new JsonFileKeyStore(join(dir, `keys-${Math.random()}.json`))],
  ['SQLite', () => new SqliteKeyStore({ database: new Database(':memory:') })],
  ['PostgreSQL', () => new PostgresKeyStore({ client: pool, table: uniqueTable('kmse_retire') })],
];

describe.each(STORES)('hierarchy.retire on the %s store', (_, makeStore) => {
  it('refuses while active, too soon, or named by a value; then deletes the wrapped key for good', async () => {
    const store = makeStore();
    const hierarchy = createKeyHierarchy({ store, kms, activeTtlMs: 20 });
    const records = createRecords({ hierarchy });
    const stored: string[] = [(await records.seal(notes, { body: 'old' })).body as string];
    const census: VersionCensus = async (partition, version) =>
      stored.filter((v) => {
        const ref = sealedKeyOf(v);
        return ref?.partition === partition && ref.version === version;
      }).length;

    await expect(hierarchy.retire('tenant-a', 1, { census, graceMs: 0 })).rejects.toMatchObject({ code: 'ERR_RETIRE_REFUSED', reason: 'active' });
    await hierarchy.rotate('tenant-a');
    await expect(hierarchy.retire('tenant-a', 1, { census, graceMs: 600_000 })).rejects.toMatchObject({ reason: 'too-soon' });
    await sleep(30); // past activeTtlMs: no process of this configuration seals under version 1 any more
    await expect(hierarchy.retire('tenant-a', 1, { census, graceMs: 0 })).rejects.toMatchObject({ reason: 'in-use', valuesNaming: 1 });
    await expect(hierarchy.retire('tenant-a', 1, {} as never)).rejects.toThrow(/census/);

    const backup = stored[0]!;
    stored[0] = (await records.seal(notes, await records.open(notes, { body: backup }))).body as string;
    expect(sealedKeyOf(stored[0])?.version).toBe(2);
    const report = await hierarchy.retire('tenant-a', 1, { census, graceMs: 0 });
    expect(report).toMatchObject({ partition: 'tenant-a', version: 1 });

    const [v1, v2] = await store.listVersions('tenant-a');
    expect(v1).toMatchObject({ version: 1, state: 'retired', ciphertextBlob: '' });
    expect(v2).toMatchObject({ version: 2, state: 'active' });
    await expect(records.open(notes, { body: backup })).rejects.toMatchObject({ code: 'ERR_KEY_VERSION_RETIRED' });
    expect((await records.open(notes, { body: stored[0] })).body).toBe('old');
    // Another process over the same store: version 1 never loads; version 2 is still the active one.
    const again = createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
    await expect(again.open(notes, { body: backup })).rejects.toMatchObject({ code: 'ERR_KEY_VERSION_RETIRED' });
    expect(sealedKeyOf((await again.seal(notes, { body: 'new' })).body)?.version).toBe(2);
    await expect(store.setState('tenant-a', 1, 'active')).rejects.toThrow(/retired/);
    await expect(hierarchy.retire('tenant-a', 1, { census, graceMs: 0 })).rejects.toMatchObject({ reason: 'retired' });
    expect((await hierarchy.verify({ partitions: ['tenant-a'] })).checked).toBe(1);
    // The number is never reused: the next rotation makes version 3.
    expect((await hierarchy.rotate('tenant-a')).version).toBe(3);
    await hierarchy.close();
  });
});

describe('a persistent key store with a key that lives only in memory', () => {
  it('warns (KMS_ENVELOPE_EPHEMERAL_KEY); a memory store, SQLite in memory, or a key file, does not', async () => {
    const seen: string[] = [];
    const listen = (w: Error & { code?: string }) => seen.push(w.code ?? '');
    const dir = mkdtempSync(join(tmpdir(), 'kmse-ephemeral-'));
    const onDisk = new Database(join(dir, 'keys.db'));
    process.on('warning', listen);
    try {
      createKeyHierarchy({ store: new SqliteKeyStore({ database: onDisk }), kms: LocalKms.generate() });
      createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
      createKeyHierarchy({ store: new SqliteKeyStore({ database: new Database(':memory:') }), kms: LocalKms.generate() });
      createKeyHierarchy({ store: new SqliteKeyStore({ database: onDisk }), kms: LocalKms.generate({ keyId: 'from-config' }) });
      await sleep(20); // warnings are emitted on the next tick
    } finally {
      process.off('warning', listen);
      onDisk.close();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(seen.filter((c) => c === 'KMS_ENVELOPE_EPHEMERAL_KEY')).toHaveLength(1);
  });
});
