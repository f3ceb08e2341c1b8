/** Portable backend: @noble/ciphers AES-GCM, HKDF in WebAssembly (or over @noble/hashes). No Node APIs. */
import { gcm } from '@noble/ciphers/aes.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import type { CryptoBackend } from './backend.ts';
import { TAG_LENGTH } from './backend.ts';
import { base64, wipe } from './bytes.ts';
import { type HkdfExpand, hmacHkdf, wasmHkdf } from './hkdf.ts';
import { pooledRandom } from './random-pool.ts';

/**
 * HKDF-Expand over @noble/hashes' HMAC, where WebAssembly does not run. Not noble's expand(): it
 * insists on a PRK of at least HashLen (64) bytes, while Cobblestone's PRK is the 16- or 32-byte data key.
 */
export const nobleHmacHkdf: HkdfExpand = hmacHkdf((key) => hmac.create(sha512, key));

/**
 * @noble/ciphers reads its input as 32-bit words and copies an unaligned one with Uint8Array.from,
 * which walks it element by element; a message's chunks sit at any offset behind its header, so
 * they are copied here with slice() (a memcpy) instead.
 */
function aligned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
}

export const nobleBackend: CryptoBackend = {
  name: 'noble',
  gcmSeal(key, nonce, plaintext, out, offset, aad) {
    const input = aligned(plaintext);
    try {
      out.set(gcm(key, nonce, aad).encrypt(input), offset);
    } finally {
      if (input !== plaintext) wipe(input);
    }
  },
  gcmOpen(key, nonce, sealed, out, offset, aad) {
    if (sealed.length < TAG_LENGTH) return false;
    let plain: Uint8Array;
    try {
      // noble verifies the tag before running CTR, so no unauthenticated plaintext exists.
      plain = gcm(key, nonce, aad).decrypt(aligned(sealed));
    } catch {
      return false;
    }
    out.set(plain, offset);
    wipe(plain);
    return true;
  },
  gcmOpenFresh(key, nonce, sealed) {
    if (sealed.length < TAG_LENGTH) return undefined;
    try {
      return gcm(key, nonce).decrypt(aligned(sealed));
    } catch {
      return undefined;
    }
  },
  hkdfExpandSha512: wasmHkdf()?.expand ?? nobleHmacHkdf,
  hkdfPrepareSha512: wasmHkdf()?.prepare,
  randomBytes: pooledRandom((buffer) => globalThis.crypto.getRandomValues(buffer)),
  sha256Base64(data) {
    return base64.encode(sha256(data));
  },
  hmacSha256: (key, data) => hmac(sha256, key, data),
};
