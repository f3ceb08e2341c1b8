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
}
