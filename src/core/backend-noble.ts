/** Portable backend: @noble/ciphers AES-GCM over the shared portable base (backend-base.ts). No Node APIs. */
import { gcm } from '@noble/ciphers/aes.js';
import type { CryptoBackend } from './backend.ts';
import { TAG_LENGTH } from './backend.ts';
import { portableBase } from './backend-base.ts';
import { wipe } from './bytes.ts';
import { providePortable } from './sync-aes.ts';

export { nobleHmacHkdf } from './backend-base.ts';

/**
 * @noble/ciphers reads its input as 32-bit words and copies an unaligned one with Uint8Array.from,
 * which walks it element by element; a message's chunks sit at any offset behind its header, so
 * they are copied here with slice() (a memcpy) instead.
 */
function aligned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
}

export const nobleBackend: CryptoBackend = {
  ...portableBase,
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
};

/**
 * Brings in the portable backend (@noble/ciphers AES-GCM): `backend: 'noble'` by name, the
 * fallback of a runtime with neither node:crypto nor crypto.subtle, and the synchronous AES-GCM
 * of the WebCrypto backend (sealSync, openSync). The synchronous functions and the Node entry call
 * it themselves; an application that seals and opens asynchronously in a browser need not.
 */
export function usePortableCrypto(): void {
  providePortable(nobleBackend);
}
