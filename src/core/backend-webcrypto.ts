/**
 * WebCrypto backend: AES-GCM over `crypto.subtle` (hardware AES in browsers, Deno, Workers), which
 * only answers asynchronously. Its `aead` is what the asynchronous paths use (LocalKms included);
 * the key schedule, hashes and randomness are the portable base's (backend-base.ts), and the
 * synchronous AES-GCM of sealSync/openSync is the portable backend's once provided (sync-aes.ts),
 * which gives the same bytes.
 *
 * Keys: the AES key of a message is imported as a non-extractable CryptoKey and its raw bytes are
 * wiped as the import call returns (WebCrypto copies its inputs). The key schedule, HKDF-Expand
 * with the data key as the PRK, stays synchronous: WebCrypto's HKDF always runs Extract first, so
 * it cannot compute the format's Expand-only HKDF, and an HMAC CryptoKey would hand the derived
 * bytes back raw anyway (SECURITY.md).
 */
import type { AeadKey, AsyncAead, CryptoBackend } from './backend.ts';
import { TAG_LENGTH } from './backend.ts';
import { portableBase } from './backend-base.ts';
import { syncAes } from './sync-aes.ts';

/** The part of SubtleCrypto this backend uses, typed here so that core/ needs neither DOM nor node types. */
export interface SubtleLike {
  importKey(format: 'raw', keyData: Uint8Array, algorithm: 'AES-GCM', extractable: false, usages: ('encrypt' | 'decrypt')[]): Promise<AeadKey>;
  encrypt(algorithm: GcmParams, key: AeadKey, data: Uint8Array): Promise<ArrayBuffer>;
  decrypt(algorithm: GcmParams, key: AeadKey, data: Uint8Array): Promise<ArrayBuffer>;
}

interface GcmParams {
  name: 'AES-GCM';
  iv: Uint8Array;
  additionalData?: Uint8Array;
}

/** The runtime's crypto.subtle, or undefined (an insecure context in a browser has none). */
function globalSubtle(): SubtleLike | undefined {
  const subtle = (globalThis as { crypto?: { subtle?: unknown } }).crypto?.subtle;
  return subtle && typeof (subtle as SubtleLike).encrypt === 'function' ? (subtle as SubtleLike) : undefined;
}

const USAGES: ('encrypt' | 'decrypt')[] = ['encrypt', 'decrypt'];

function params(iv: Uint8Array, aad: Uint8Array | undefined): GcmParams {
  return aad ? { name: 'AES-GCM', iv, additionalData: aad } : { name: 'AES-GCM', iv };
}

const bytesOf = (buffer: ArrayBuffer): Uint8Array => new Uint8Array(buffer);

/** AES-GCM over a SubtleCrypto. */
function subtleAead(subtle: SubtleLike): AsyncAead {
  return {
    importKey(key) {
      if (key.length !== 16 && key.length !== 32 && key.length !== 24) {
        return Promise.reject(new RangeError(`AES-GCM key must be 16, 24 or 32 bytes, got ${key.length}`));
      }
      return subtle.importKey('raw', key, 'AES-GCM', false, USAGES);
    },
    // .then(), not async functions: one promise per chunk fewer on the streams' path.
    seal: (key, nonce, plaintext, aad) => subtle.encrypt(params(nonce, aad), key, plaintext).then(bytesOf),
    open(key, nonce, sealed, aad) {
      if (sealed.length < TAG_LENGTH) return Promise.resolve(undefined);
      // WebCrypto verifies the tag before it hands back anything: no unauthenticated plaintext exists here.
      return subtle.decrypt(params(nonce, aad), key, sealed).then(bytesOf, () => undefined);
    },
  };
}

/** The WebCrypto backend over `subtle` (the runtime's by default), or undefined where there is none (null). */
export function createWebCryptoBackend(subtle: SubtleLike | null | undefined = globalSubtle()): CryptoBackend | undefined {
  if (!subtle) return undefined;
  return Object.freeze({
    ...portableBase,
    name: 'webcrypto',
    aead: subtleAead(subtle),
    // The synchronous paths only (sealSync, openSync): the portable AES-GCM, once provided (sync-aes.ts).
    gcmSeal: (key, nonce, plaintext, out, offset, aad) => syncAes().gcmSeal(key, nonce, plaintext, out, offset, aad),
    gcmOpen: (key, nonce, sealed, out, offset, aad) => syncAes().gcmOpen(key, nonce, sealed, out, offset, aad),
    gcmOpenFresh: (key, nonce, sealed) => syncAes().gcmOpenFresh(key, nonce, sealed),
  } satisfies CryptoBackend);
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { globalSubtle };
