/** Portable backend: @noble/ciphers AES-GCM and @noble/hashes HKDF. No Node APIs. */
import { gcm } from '@noble/ciphers/aes.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import type { CryptoBackend } from './backend.ts';
import { TAG_LENGTH } from './backend.ts';
import { base64, wipe } from './bytes.ts';

export const nobleBackend: CryptoBackend = {
  name: 'noble',
  gcmSeal(key, nonce, plaintext, out, offset, aad) {
    const sealed = gcm(key, nonce, aad).encrypt(plaintext);
    out.set(sealed, offset);
    wipe(sealed);
  },
  gcmOpen(key, nonce, sealed, out, offset, aad) {
    if (sealed.length < TAG_LENGTH) return false;
    let plain: Uint8Array;
    try {
      // noble verifies the tag before running CTR, so no unauthenticated plaintext exists.
      plain = gcm(key, nonce, aad).decrypt(sealed);
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
      return gcm(key, nonce).decrypt(sealed);
    } catch {
      return undefined;
    }
  },
  // Our own HKDF-Expand: noble's expand() insists on a PRK of at least HashLen (64) bytes, while
  // Cobblestone uses the 16- or 32-byte data key as the PRK.
  hkdfExpandSha512(prk, info, length) {
    if (length > 255 * 64) throw new RangeError('HKDF-Expand length exceeds 255 * HashLen');
    const out = new Uint8Array(length);
    const counter = new Uint8Array(1);
    let previous = new Uint8Array(0);
    for (let o = 0, round = 1; o < length; o += 64, round++) {
      counter[0] = round;
      const block = hmac.create(sha512, prk).update(previous).update(info).update(counter).digest();
      out.set(block.subarray(0, Math.min(64, length - o)), o);
      wipe(previous);
      previous = block;
    }
    wipe(previous);
    return out;
  },
  randomBytes(length) {
    return globalThis.crypto.getRandomValues(new Uint8Array(length));
  },
  sha256Base64(data) {
    return base64.encode(sha256(data));
  },
};
