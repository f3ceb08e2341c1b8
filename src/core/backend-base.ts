/**
 * What the portable and WebCrypto backends share besides AES-GCM: HKDF-Expand-SHA-512 in
 * WebAssembly (or over @noble/hashes' HMAC where WebAssembly does not run), randomness from
 * crypto.getRandomValues, SHA-256 and HMAC-SHA-256 from @noble/hashes. No AES here: the WebCrypto
 * backend's asynchronous paths never load @noble/ciphers.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import type { CryptoBackend } from './backend.ts';
import { base64 } from './bytes.ts';
import { type HkdfExpand, hmacHkdf, wasmHkdf } from './hkdf.ts';
import { pooledRandom } from './random-pool.ts';

/**
 * HKDF-Expand over @noble/hashes' HMAC, where WebAssembly does not run. Not noble's expand(): it
 * insists on a PRK of at least HashLen (64) bytes, while Cobblestone's PRK is the 16- or 32-byte data key.
 */
export const nobleHmacHkdf: HkdfExpand = hmacHkdf((key) => hmac.create(sha512, key));

export type PortableBase = Pick<CryptoBackend, 'hkdfExpandSha512' | 'hkdfPrepareSha512' | 'randomBytes' | 'sha256Base64' | 'hmacSha256'>;

export const portableBase: PortableBase = {
  hkdfExpandSha512: wasmHkdf()?.expand ?? nobleHmacHkdf,
  hkdfPrepareSha512: wasmHkdf()?.prepare,
  randomBytes: pooledRandom((buffer) => globalThis.crypto.getRandomValues(buffer)),
  sha256Base64(data) {
    return base64.encode(sha256(data));
  },
  hmacSha256: (key, data) => hmac(sha256, key, data),
};
