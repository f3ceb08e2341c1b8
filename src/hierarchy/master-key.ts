/**
 * The operations of a hierarchy over every stored version: rotateMasterKey() re-wraps each under
 * another KMS master key, verify() checks that each still decrypts through the KMS.
 */
import { wipe } from '../core/bytes.ts';
import type { KeyProvider } from '../kms/key-provider.ts';
import { reEncryptDataKey } from '../kms/re-encrypt.ts';
import { partitionsOf } from './key-store-backup.ts';
import type { KeyStore, StoredKey } from './key-store.ts';
import { kmsContext } from './key-versions.ts';
import type { MasterKeyRotation, RotateMasterKeyOptions, VerifyReport } from './types.ts';

function failureCode(error: unknown): string {
  const e = error as { kmsCode?: unknown; code?: unknown } | null;
  return typeof e?.kmsCode === 'string' ? e.kmsCode : typeof e?.code === 'string' ? e.code : 'ERROR';
}

/** Where the stored versions live and the KMS of each partition. */
interface StoredVersions {
  readonly store: KeyStore;
  readonly resolve: (partition: string) => KeyProvider;
}

/** hierarchy.rotateMasterKey(): every chosen version re-wrapped by one ReEncrypt, its record replaced by a compare and set. */
export async function rotateMasterKey(at: StoredVersions, rotation: RotateMasterKeyOptions): Promise<MasterKeyRotation> {
  const { store } = at;
  if (!rotation || typeof rotation.toKeyId !== 'string' || rotation.toKeyId.length === 0) throw new TypeError('"toKeyId" expected a non-empty string');
  if (typeof store.replaceWrappedKey !== 'function') throw new TypeError('rotateMasterKey: this key store cannot replace a wrapped key (replaceWrappedKey)');
  const report: MasterKeyRotation = { rewrapped: 0, skipped: 0, raced: 0, failed: [] };
  for (const partition of await partitionsOf(store, rotation.partitions, 'rotateMasterKey')) {
    const kms = at.resolve(partition);
    for (const key of await store.listVersions(partition)) {
      if (rotation.signal?.aborted) throw rotation.signal.reason;
      // A retired version has no wrapped key left to re-wrap.
      const chosen = key.state !== 'retired' && key.provider === kms.id && (rotation.fromKeyId === undefined ? key.keyId !== rotation.toKeyId : key.keyId === rotation.fromKeyId);
      if (!chosen) {
        report.skipped++;
        continue;
      }
      await rewrapVersion({ store, kms, rotation, report }, partition, key);
    }
  }
  return report;
}

/** One version re-wrapped under `toKeyId`, counted in the report (a failure too, unless the rotation was aborted). */
async function rewrapVersion(
  run: { store: KeyStore; kms: KeyProvider; rotation: RotateMasterKeyOptions; report: MasterKeyRotation },
  partition: string,
  key: StoredKey,
): Promise<void> {
  const { store, kms, rotation, report } = run;
  try {
    const wrapped = await reEncryptDataKey(kms, {
      keySpec: 'AES_256',
      keyId: key.keyId,
      ciphertextBlob: key.ciphertextBlob,
      toKeyId: rotation.toKeyId,
      context: kmsContext(partition, key.version),
      signal: rotation.signal,
    });
    const replaced = await store.replaceWrappedKey!(partition, key.version, key.ciphertextBlob, { provider: kms.id, ...wrapped });
    if (replaced) report.rewrapped++;
    else report.raced++;
  } catch (error) {
    if (rotation.signal?.aborted && error === rotation.signal.reason) throw error;
    report.failed.push({ partition, version: key.version, code: failureCode(error), message: (error as Error).message });
  }
}

/** hierarchy.verify(): each stored version loaded straight through the KMS (`load`), its key wiped at once. */
export async function verifyVersions(
  store: KeyStore,
  load: (partition: string, version: number) => Promise<Uint8Array>,
  options: { partitions?: readonly string[]; signal?: AbortSignal },
): Promise<VerifyReport> {
  const report: VerifyReport = { checked: 0, ok: 0, failed: [] };
  for (const partition of await partitionsOf(store, options.partitions, 'verify')) {
    for (const key of await store.listVersions(partition)) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (key.state === 'retired') continue; // deleted on purpose: nothing to decrypt
      report.checked++;
      try {
        // Straight through the KMS, not the cache: a key in memory proves nothing about the KMS.
        wipe(await load(partition, key.version));
        report.ok++;
      } catch (error) {
        report.failed.push({ partition, version: key.version, keyId: key.keyId, code: failureCode(error), message: (error as Error).message });
      }
    }
  }
  return report;
}
