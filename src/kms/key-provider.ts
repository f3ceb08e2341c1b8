/**
 * The contract every KMS implements. Two calls: generate a data key for a context, and decrypt a
 * wrapped data key for a context. A structural interface, so a fake for tests is a few lines.
 */
import type { CanonicalContext } from '../core/context.ts';
import type { KeySpec } from '../core/suites.ts';

export type { KeySpec } from '../core/suites.ts';

export interface GenerateDataKeyRequest {
  readonly keySpec: KeySpec;
  /** The validated context; send `context.json` to a KMS that binds a string. */
  readonly context: CanonicalContext;
  /**
   * Aborts when the caller cancels: a provider that can should end its call and reject with the
   * signal's reason (the library stops waiting either way, and wipes a key that arrives later).
   */
  readonly signal?: AbortSignal | undefined;
  /**
   * A probe of a KMS the fleet sees failing (the key hierarchy's fleet breaker): one attempt, no
   * retries. A provider that retries should not.
   */
  readonly probe?: boolean | undefined;
}

export interface DataKey {
  /** The master key that wrapped the data key, as the KMS names it. */
  readonly keyId: string;
  /** The data key in the clear. The caller owns it and wipes it after use. */
  readonly plaintextKey: Uint8Array;
  /** The data key wrapped under the master key: an opaque string stored in the header. */
  readonly ciphertextBlob: string;
}

export interface DecryptDataKeyRequest {
  /** The size of key the message's suite needs; a key of another size is an error. */
  readonly keySpec: KeySpec;
  readonly keyId: string;
  readonly ciphertextBlob: string;
  readonly context: CanonicalContext;
  /** As in GenerateDataKeyRequest. */
  readonly signal?: AbortSignal | undefined;
  /** As in GenerateDataKeyRequest. */
  readonly probe?: boolean | undefined;
}

export interface ReEncryptDataKeyRequest {
  /** The size of the data key inside the blob (a provider that decrypts checks it). */
  readonly keySpec: KeySpec;
  /** The master key the blob is wrapped under now, and the blob. */
  readonly keyId: string;
  readonly ciphertextBlob: string;
  /** The master key to wrap it under (may be the same one: a KMS that rotates key material then uses the newest). */
  readonly toKeyId: string;
  /** The context the blob is bound to; the new blob is bound to the same one. */
  readonly context: CanonicalContext;
  readonly signal?: AbortSignal | undefined;
}

/** A data key wrapped anew: the master key that wraps it and the new blob. */
export interface WrappedDataKey {
  readonly keyId: string;
  readonly ciphertextBlob: string;
}

export interface EncryptDataKeyRequest {
  readonly keyId: string;
  /** The data key in the clear: the caller owns it and wipes it. */
  readonly plaintextKey: Uint8Array;
  readonly context: CanonicalContext;
  readonly signal?: AbortSignal | undefined;
}

export interface KeyProvider {
  /** Stored in the header (FORMAT.md §5): `[a-z0-9._-]{1,32}`, e.g. `local`, `tencent`. */
  readonly id: string;
  /** Throws KmsError when the KMS fails. */
  generateDataKey(request: GenerateDataKeyRequest): Promise<DataKey>;
  /**
   * Returns the data key in the clear; the caller owns it and wipes it.
   * Throws DecryptionFailedError when the blob does not open under this context (wrong context,
   * tampered blob), and KmsError for every other failure (network, service, unknown key).
   */
  decryptDataKey(request: DecryptDataKeyRequest): Promise<Uint8Array>;
  /**
   * Optional: wraps the data key inside a blob under another master key without it leaving the
   * KMS (Tencent API 3.0 ReEncrypt). Without it, a rewrap is decryptDataKey + encryptDataKey
   * (kms/re-encrypt.ts), and the data key passes through this process.
   */
  reEncryptDataKey?(request: ReEncryptDataKeyRequest): Promise<WrappedDataKey>;
  /** Optional: wraps a given data key under a master key (Tencent Encrypt): the fallback's second half. */
  encryptDataKey?(request: EncryptDataKeyRequest): Promise<WrappedDataKey>;
}

/**
 * Optional master-key administration (crypto-shredding of a tenant with its own master key).
 * Both Tencent providers have it; hierarchy.shred() uses it when the provider does.
 */
export interface KeyAdministration {
  /** The master key refuses every use until enabled again (Tencent DisableKey). */
  disableKey(keyId: string): Promise<void>;
  enableKey(keyId: string): Promise<void>;
  /**
   * Deletes the master key after `pendingWindowInDays` (Tencent: 7 to 30; the key must be disabled
   * first). Returns when it will be deleted, in seconds since the epoch, when the KMS says.
   */
  scheduleKeyDeletion(keyId: string, pendingWindowInDays: number): Promise<{ deletionDate: number | undefined }>;
  cancelKeyDeletion(keyId: string): Promise<void>;
}

/** Whether a provider also administers its master keys. */
export function hasKeyAdministration(provider: unknown): provider is KeyAdministration {
  const p = provider as Partial<KeyAdministration> | undefined;
  return typeof p?.disableKey === 'function' && typeof p.scheduleKeyDeletion === 'function';
}
