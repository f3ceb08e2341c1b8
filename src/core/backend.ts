/**
 * The small internal crypto interface every backend implements: AES-GCM with a 12-byte nonce and a
 * 16-byte tag, HKDF-Expand-SHA-512, and randomness, all synchronous. `node:crypto` is the fast path
 * on Node; `@noble/ciphers` is the portable path. The WebCrypto backend (browsers, Deno, Workers)
 * adds an asynchronous AES-GCM (`aead`) that the asynchronous paths use; its synchronous methods are
 * noble's, for the paths that cannot wait. All produce identical bytes.
 */
import type { HkdfExpand, HmacKeyState } from './hkdf.ts';

export interface CryptoBackend {
  readonly name: 'node' | 'noble' | 'webcrypto';
  /**
   * AES-GCM that answers later (crypto.subtle): where present, seal(), open() and the streams use
   * it, and the synchronous methods serve only sealSync/openSync and the other synchronous paths.
   */
  readonly aead?: AsyncAead | undefined;
  /** Writes ciphertext || tag (plaintext.length + 16 bytes) into `out` at `offset`. */
  gcmSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, out: Uint8Array, offset: number, aad?: Uint8Array): void;
  /**
   * Verifies and decrypts `sealed` (ciphertext || tag) into `out` at `offset`. Returns false when the
   * tag does not verify; the output region is then zero.
   */
  gcmOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, out: Uint8Array, offset: number, aad?: Uint8Array): boolean;
  /**
   * Verifies and decrypts `sealed` into a fresh buffer, returned only when the tag verifies
   * (undefined otherwise): streams hand it on without another copy.
   */
  gcmOpenFresh(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Uint8Array | undefined;
  /**
   * HKDF-Expand (RFC 5869 §2.3) with HMAC-SHA-512 into `out`, in order (see HkdfExpand); from
   * `state` when given, which must be hkdfPrepareSha512(prk).
   */
  hkdfExpandSha512: HkdfExpand;
  /** The PRK's precomputed HMAC state, for a data key used many times; absent where unsupported. */
  hkdfPrepareSha512?: ((prk: Uint8Array) => HmacKeyState) | undefined;
  randomBytes(length: number): Uint8Array;
  /** SHA-256 as base64 text, for cache keys. */
  sha256Base64(data: Uint8Array): string;
  /** HMAC-SHA-256 (blind indexes); absent on a backend that lacks it: use core/hashes.ts. Same bytes everywhere. */
  hmacSha256?: ((key: Uint8Array, data: Uint8Array) => Uint8Array) | undefined;
}

/** An AES-GCM key as the asynchronous AEAD holds it (a non-extractable CryptoKey): opaque here. */
export interface AeadKey {
  readonly algorithm: unknown;
}

/**
 * Asynchronous AES-GCM. Every call copies its inputs before it returns (as WebCrypto does), so a
 * caller may reuse or wipe them at once, with the work still under way.
 */
export interface AsyncAead {
  /** Imports a 16- or 32-byte key for encryption and decryption; the raw bytes may be wiped on return. */
  importKey(key: Uint8Array): Promise<AeadKey>;
  /** ciphertext || tag, in a fresh buffer. */
  seal(key: AeadKey, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  /** The plaintext in a fresh buffer when the tag verifies, undefined otherwise. */
  open(key: AeadKey, nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Promise<Uint8Array | undefined>;
}

export const TAG_LENGTH = 16;
export const NONCE_LENGTH = 12;
