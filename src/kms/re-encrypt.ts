/**
 * A rewrap of one wrapped data key through any key provider: its own reEncryptDataKey when it has
 * one (the data key never leaves the KMS), else decryptDataKey then encryptDataKey, with the data
 * key wiped on every path. A provider with neither cannot rewrap: a KmsError says so.
 */
import { wipe } from '../core/bytes.ts';
import { KmsError } from '../core/errors.ts';
import { KEY_LENGTH_BY_SPEC } from '../core/suites.ts';
import type { KeyProvider, ReEncryptDataKeyRequest, WrappedDataKey } from './key-provider.ts';

/** How a rewrap went through the provider: one ReEncrypt, or Decrypt + Encrypt. */
export type RewrapPath = 'ReEncrypt' | 'Decrypt+Encrypt';

export function rewrapPath(provider: KeyProvider): RewrapPath | undefined {
  if (typeof provider.reEncryptDataKey === 'function') return 'ReEncrypt';
  if (typeof provider.encryptDataKey === 'function') return 'Decrypt+Encrypt';
  return undefined;
}

export async function reEncryptDataKey(provider: KeyProvider, request: ReEncryptDataKeyRequest): Promise<WrappedDataKey> {
  if (typeof request.toKeyId !== 'string' || request.toKeyId.length === 0) throw new TypeError('"toKeyId" expected a non-empty string');
  let result: WrappedDataKey;
  if (typeof provider.reEncryptDataKey === 'function') {
    result = await provider.reEncryptDataKey(request);
  } else if (typeof provider.encryptDataKey === 'function') {
    const { keySpec, keyId, ciphertextBlob, context, signal } = request;
    const key = await provider.decryptDataKey({ keySpec, keyId, ciphertextBlob, context, signal });
    try {
      if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH_BY_SPEC[keySpec]) {
        throw new KmsError(`key provider returned a data key of the wrong length for ${keySpec}`, { kind: 'bad-response' });
      }
      result = await provider.encryptDataKey({ keyId: request.toKeyId, plaintextKey: key, context, signal });
    } finally {
      if (key instanceof Uint8Array) wipe(key);
    }
  } else {
    throw new KmsError(`key provider "${provider.id}" can neither re-encrypt nor encrypt a data key: it cannot rewrap`, { kind: 'bad-request' });
  }
  if (!result || typeof result.ciphertextBlob !== 'string' || result.ciphertextBlob.length === 0 || typeof result.keyId !== 'string' || result.keyId.length === 0) {
    throw new KmsError('key provider returned no key id or ciphertext blob for the rewrapped key', { kind: 'bad-response' });
  }
  return result;
}
