/**
 * Export and import of a key store, for backups: wrapped keys only (the KMS's blobs), never a
 * plaintext key, so an export is as safe to keep as the sealed data. An export restores only with
 * the KMS master keys that wrapped it: crypto-shredding (hierarchy.shred) removes a tenant's
 * records from the store, but a backup taken before keeps them until the backup is gone too
 * (README "Crypto-shredding").
 */
import { checkStoredKey, type KeyStore, type StoredKey } from './key-store.ts';

const FORMAT = 'kms-envelope key store export';

export interface KeyStoreExport {
  readonly format: typeof FORMAT;
  readonly version: 1;
  /** Milliseconds since the epoch. */
  readonly exportedAt: number;
  readonly keys: readonly StoredKey[];
}

export interface ImportResult {
  created: number;
  /** Records already in the store, the same wrapped key. */
  present: number;
  /** Records whose (partition, version) holds another wrapped key in the store: left as they are. */
  conflicts: { partition: string; version: number }[];
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
  return { format: FORMAT, version: 1, exportedAt: (options.now ?? Date.now)(), keys };
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
  return e as KeyStoreExport;
}

/**
 * Creates every exported record the store lacks; a record present with the same wrapped key
 * counts as present, one with another wrapped key is a conflict and is left as it is (the store's
 * may be newer: a master-key rotation since the export).
 */
export async function importKeyStore(store: KeyStore, exported: KeyStoreExport | string): Promise<ImportResult> {
  const { keys } = parseKeyStoreExport(exported);
  const result: ImportResult = { created: 0, present: 0, conflicts: [] };
  for (const key of keys) {
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
