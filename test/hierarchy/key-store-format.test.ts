/**
 * FORMAT.md §14: the key store record, the tombstone and the export form, as another tool reads
 * them. The export of a known store byte for byte, every malformed record or tombstone refused
 * before anything is imported, and tombstones written first.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exportKeyStore, importKeyStore, parseKeyStoreExport } from '../../src/hierarchy/key-store-backup.ts';
import { MemoryKeyStore, type StoredKey } from '../../src/hierarchy/key-store.ts';

const record = (partition: string, version: number, extra: Partial<StoredKey> = {}): StoredKey => ({
  partition,
  version,
  state: 'active',
  provider: 'local',
  keyId: 'master',
  ciphertextBlob: `lk1.blob-${partition}-${version}`,
  createdAt: 1_700_000_000_000 + version,
  ...extra,
});

async function knownStore(): Promise<MemoryKeyStore> {
  const store = new MemoryKeyStore();
  await store.createVersion(record('tenant-b', 1));
  await store.createVersion(record('tenant-a', 2));
  await store.createVersion(record('tenant-a', 1, { state: 'decrypt-only' }));
  await store.addTombstone({ partition: 'gone', version: 3, shreddedAt: 1_700_000_000_500 });
  return store;
}

describe('FORMAT.md §14 key store export', () => {
  it('writes the form §14.3 gives: partition by partition, versions lowest first, tombstones when there are any', async () => {
    const exported = await exportKeyStore(await knownStore(), { now: () => 1_700_000_001_000 });
    expect(JSON.stringify(exported)).toBe(
      '{"format":"kms-envelope key store export","version":1,"exportedAt":1700000001000,"keys":[' +
        '{"partition":"tenant-a","version":1,"state":"decrypt-only","provider":"local","keyId":"master","ciphertextBlob":"lk1.blob-tenant-a-1","createdAt":1700000000001},' +
        '{"partition":"tenant-a","version":2,"state":"active","provider":"local","keyId":"master","ciphertextBlob":"lk1.blob-tenant-a-2","createdAt":1700000000002},' +
        '{"partition":"tenant-b","version":1,"state":"active","provider":"local","keyId":"master","ciphertextBlob":"lk1.blob-tenant-b-1","createdAt":1700000000001}],' +
        '"tombstones":[{"partition":"gone","version":3,"shreddedAt":1700000000500}]}',
    );
    const empty = await exportKeyStore(new MemoryKeyStore(), { now: () => 0 });
    expect(empty).toEqual({ format: 'kms-envelope key store export', version: 1, exportedAt: 0, keys: [] });
  });

  it('A reader MUST refuse an export whose format or version differs, or any record or tombstone whose fields are not as in 14.1 and 14.2, before it imports anything', async () => {
    const good = await exportKeyStore(await knownStore(), { now: () => 1 });
    const breakages: [string, (e: Record<string, unknown>) => void][] = [
      ['format', (e) => (e.format = 'kms-envelope key store')],
      ['version', (e) => (e.version = 2)],
      ['keys', (e) => (e.keys = {})],
      ['tombstones', (e) => (e.tombstones = {})],
    ];
    const recordFields: [string, unknown][] = [
      ['partition', ''],
      ['partition', 'x'.repeat(256)],
      ['version', 0],
      ['version', 2 ** 32],
      ['version', 1.5],
      ['version', '1'],
      ['state', 'retired'],
      ['provider', ''],
      ['keyId', ''],
      ['ciphertextBlob', ''],
      ['createdAt', 'yesterday'],
    ];
    for (const [field, value] of recordFields) breakages.push([`the last record's ${field} ${JSON.stringify(value)}`, (e) => ((e.keys as Record<string, unknown>[]).at(-1)![field] = value)]);
    for (const [field, value] of [['partition', ''], ['version', 0], ['version', 2 ** 32], ['shreddedAt', 0.5]] as const) {
      breakages.push([`the tombstone's ${field} ${JSON.stringify(value)}`, (e) => ((e.tombstones as Record<string, unknown>[])[0]![field] = value)]);
    }
    for (const [name, change] of breakages) {
      const bad = JSON.parse(JSON.stringify(good)) as Record<string, unknown>;
      change(bad);
      expect(() => parseKeyStoreExport(JSON.stringify(bad)), name).toThrow(TypeError);
      const target = new MemoryKeyStore();
      await expect(importKeyStore(target, JSON.stringify(bad)), name).rejects.toThrow(TypeError);
      expect(await target.listPartitions(), name).toEqual([]);
      expect(await target.listTombstones(), name).toEqual([]);
    }
    expect(() => parseKeyStoreExport('{')).toThrow(/not JSON/);
  });

  it("An import MUST write the export's tombstones first, and MUST NOT create a record whose version a tombstone covers (the export's or the store's)", async () => {
    const source = await knownStore();
    await source.createVersion(record('gone', 3)); // a record the tombstone covers, as a raced creation would leave
    await source.createVersion(record('gone', 4)); // a re-created partition's version, above it
    const exported = await exportKeyStore(source, { now: () => 1 });
    const target = new MemoryKeyStore();
    await target.addTombstone({ partition: 'tenant-b', version: 1, shreddedAt: 5 });
    const order: string[] = [];
    const spy = new Proxy(target, {
      get(t, name, receiver) {
        const value = Reflect.get(t, name, receiver) as unknown;
        if (name === 'addTombstone' || name === 'createVersion') return (arg: { partition: string }) => (order.push(`${String(name)} ${arg.partition}`), (value as (a: unknown) => unknown).call(t, arg));
        return typeof value === 'function' ? value.bind(t) : value;
      },
    });
    const result = await importKeyStore(spy, exported);
    expect(order[0]).toBe('addTombstone gone');
    expect(result).toMatchObject({ created: 3, tombstones: 1, shredded: [{ partition: 'gone', version: 3 }, { partition: 'tenant-b', version: 1 }] });
    expect((await target.listVersions('gone')).map((k) => k.version)).toEqual([4]);
    expect(await target.listVersions('tenant-b')).toEqual([]);
  });

  it('an export reads back as it was written, for any records (property)', async () => {
    const records = fc.uniqueArray(
      fc.record({ partition: fc.string({ minLength: 1, maxLength: 20 }).filter((p) => p.isWellFormed()), version: fc.integer({ min: 1, max: 2 ** 32 - 1 }), blob: fc.string({ minLength: 1, maxLength: 8 }) }),
      { selector: (r) => `${r.partition}\u0000${r.version}`, maxLength: 8 },
    );
    await fc.assert(
      fc.asyncProperty(records, async (list) => {
        const store = new MemoryKeyStore();
        for (const r of list) await store.createVersion(record(r.partition, r.version, { ciphertextBlob: r.blob }));
        const exported = await exportKeyStore(store, { now: () => 7 });
        expect(parseKeyStoreExport(JSON.stringify(exported))).toEqual(exported);
        const copy = new MemoryKeyStore();
        expect((await importKeyStore(copy, JSON.stringify(exported))).created).toBe(list.length);
        expect(await exportKeyStore(copy, { now: () => 7 })).toEqual(exported);
      }),
      { numRuns: 50 },
    );
  });
});
