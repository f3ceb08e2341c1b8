/**
 * Whether a data key is the one a message was sealed with, from its key commitment alone (FORMAT.md
 * §6, §10.3): before a rewrap wraps a data key anew, so that a wrapped key that decrypts to another
 * data key is never copied into a message. The chunked payload's commitment is checked without
 * decrypting a chunk; a compact payload (under 16 KiB) is opened and its plaintext wiped.
 */
import type { CryptoBackend } from './backend.ts';
import { equalBytes, wipe } from './bytes.ts';
import { deriveKeys, PAYLOAD_PREFIX, SALT_LENGTH } from './chunked.ts';
import { openCompact } from './compact.ts';
import { DecryptionFailedError } from './errors.ts';
import type { PayloadSuite } from './suites.ts';

export function keyOpensPayload(backend: CryptoBackend, suite: PayloadSuite, key: Uint8Array, payloadContext: Uint8Array, payload: Uint8Array, compact: boolean): boolean {
  if (compact) {
    try {
      wipe(openCompact(backend, suite, key, payloadContext, payload));
      return true;
    } catch (error) {
      if (error instanceof DecryptionFailedError) return false;
      throw error;
    }
  }
  if (payload.length < PAYLOAD_PREFIX || key.length !== suite.keyLength) return false;
  const keys = deriveKeys(backend, suite, key, payload.subarray(0, SALT_LENGTH), payloadContext);
  try {
    return equalBytes(keys.commitment, payload.subarray(SALT_LENGTH, PAYLOAD_PREFIX));
  } finally {
    keys.wipe();
  }
}
