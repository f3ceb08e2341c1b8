/**
 * Whether a data key is the one a message was sealed with, from its key commitment alone (FORMAT.md
 * §6, §10.3): before a rewrap wraps a data key anew, so that a wrapped key that decrypts to another
 * data key is never copied into a message. The chunked payload's commitment is checked without
 * decrypting a chunk; a compact payload (under 16 KiB) is opened and its plaintext wiped.
 */
import { equalBytes, wipe } from './bytes.ts';
import { deriveKeys, PAYLOAD_PREFIX, type PayloadKey, SALT_LENGTH } from './chunked.ts';
import { openCompact } from './compact.ts';
import { DecryptionFailedError } from './errors.ts';

export function keyOpensPayload(payloadKey: PayloadKey, payload: Uint8Array, compact: boolean): boolean {
  const { crypto: backend, suite, key, context: payloadContext } = payloadKey;
  if (compact) {
    try {
      wipe(openCompact(payloadKey, payload));
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
