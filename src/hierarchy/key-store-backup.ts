/**
 * Export and import of a key store, for backups: wrapped keys only (the KMS's blobs), never a
 * plaintext key, so an export is as safe to keep as the sealed data. An export restores only with
 * the KMS master keys that wrapped it: crypto-shredding (hierarchy.shred) removes a tenant's
 * records from the store, but a backup taken before keeps them until the backup is gone too
 * (README "Crypto-shredding"). Tombstones travel with an export, and an import never brings back
 * a key version that a tombstone (the export's or the store's) covers.
 */
import { checkStoredKey, checkTombstone, type KeyStore, type PartitionTombstone, type StoredKey } from './key-store.ts';

const FORMAT = 'kms-envelope key store export';

export interface KeyStoreExport {
  readonly format: typeof FORMAT;
  readonly version: 1;
  /** Milliseconds since the epoch. */
  readonly exportedAt: number;
  readonly keys: readonly StoredKey[];
  /** The shredded partitions (absent in exports made before tombstones existed). */
  readonly tombstones?: readonly PartitionTombstone[];
}

export interface ImportResult {
  created: number;
  /** Records already in the store, the same wrapped key. */
  present: number;
  /** Records whose (partition, version) holds another wrapped key in the store: left as they are. */
  conflicts: { partition: string; version: number }[];
  /** Records refused because their partition was shredded up to their version (a tombstone of the export or the store). */
  shredded: { partition: string; version: number }[];
  /** Tombstones written to the store. */
  tombstones: number;
}

/** The partitions to walk: the ones given, or every one (the store must list them). */
export async function partitionsOf(store: KeyStore, partitions: readonly string[] | undefined, what: string): Promise<string[]> {
  if (partitions !== undefined) return [...partitions];
  if (typeof store.listPartitions !== 'function') throw new TypeError(`${what}: this key store cannot list its partitions: pass "partitions"`);
  return store.listPartitions();
}

/** Every version of the partitions (default all), as records holding wrapped keys only. */
export async function exportKeyStore(store: KeyStore, options: { partitions?: readonly string[]; now?: () => number } = {}): Promise<KeyStoreExport> {
  const keys: StoredKey[] = [];
  for (const partition of await partitionsOf(store, options.partitions, 'exportKeyStore')) {
    for (const key of await store.listVersions(partition)) {
      const { version, state, provider, keyId, ciphertextBlob, createdAt } = checkStoredKey(key, 'exportKeyStore');
      keys.push({ partition, version, state, provider, keyId, ciphertextBlob, createdAt });
    }
  }
  const wanted = options.partitions === undefined ? undefined : new Set(options.partitions);
  const tombstones: PartitionTombstone[] = [];
  for (const t of typeof store.listTombstones === 'function' ? await store.listTombstones() : []) {
    const { partition, version, shreddedAt } = checkTombstone(t, 'exportKeyStore');
    if (!wanted || wanted.has(partition)) tombstones.push({ partition, version, shreddedAt });
  }
  return { format: FORMAT, version: 1, exportedAt: (options.now ?? Date.now)(), keys, ...(tombstones.length ? { tombstones } : {}) };
}

/** An export as text (JSON), or parsed: checked record by record; a TypeError for anything else. */
export function parseKeyStoreExport(input: string | unknown): KeyStoreExport {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch {
      throw new TypeError('not a key store export: not JSON');
    }
  }
  const e = value as Partial<KeyStoreExport> | null;
  if (!e || typeof e !== 'object' || e.format !== FORMAT || e.version !== 1 || !Array.isArray(e.keys)) {
    throw new TypeError(`not a key store export (${FORMAT}, version 1)`);
  }
  e.keys.forEach((key, i) => checkStoredKey(key, `key store export, record ${i}`));
  if (e.tombstones !== undefined && !Array.isArray(e.tombstones)) throw new TypeError('key store export: "tombstones" is not an array');
  e.tombstones?.forEach((t, i) => checkTombstone(t, `key store export, tombstone ${i}`));
  return e as KeyStoreExport;
}

/**
 * Writes the export's tombstones, then creates every exported record the store lacks, except the
 * versions a tombstone covers (the export's or the store's: a backup taken before a shred does not
 * undo it); a record present with the same wrapped key counts as present, one with another wrapped
 * key is a conflict and is left as it is (the store's may be newer: a master-key rotation since the
 * export). An export with tombstones needs a store that keeps them (a TypeError otherwise).
 */
export async function importKeyStore(store: KeyStore, exported: KeyStoreExport | string): Promise<ImportResult> {
  const { keys, tombstones = [] } = parseKeyStoreExport(exported);
  const result: ImportResult = { created: 0, present: 0, conflicts: [], shredded: [], tombstones: 0 };
  if (tombstones.length && typeof store.addTombstone !== 'function') throw new TypeError('importKeyStore: the export has tombstones and this key store keeps none (addTombstone)');
  for (const t of tombstones) {
    await store.addTombstone!(t);
    result.tombstones++;
  }
  const covered = new Map<string, number | undefined>();
  for (const key of keys) {
    if (!covered.has(key.partition)) covered.set(key.partition, (await store.getTombstone?.(key.partition))?.version);
    const shredded = covered.get(key.partition);
    if (shredded !== undefined && key.version <= shredded) {
      result.shredded.push({ partition: key.partition, version: key.version });
      continue;
    }
    const before = await store.getVersion(key.partition, key.version);
    if (before) {
      if (before.ciphertextBlob === key.ciphertextBlob) result.present++;
      else result.conflicts.push({ partition: key.partition, version: key.version });
      continue;
    }
    const stored = await store.createVersion(key);
    if (stored.ciphertextBlob === key.ciphertextBlob) result.created++;
    else result.conflicts.push({ partition: key.partition, version: key.version });
  }
  return result;
}
