/**
 * The MAC of a search index (FORMAT.md §11a): the key derivation of its column keys and the keyed
 * hash of its tokens, as one value. HMAC-SHA-256 with HKDF-SHA-512 is the records entry's
 * default; HMAC-SM3 with HKDF-SM3 is in kms-envelope/sm4. A primitive is a value, never a string
 * the index switches on, and there is no unkeyed one.
 */
import type { HkdfExpand } from './hkdf.ts';

export interface TokenMac {
  /** The name bound into every column key of the index (FORMAT.md §11a.1): `HMAC-SHA-256`, `HMAC-SM3`. */
  readonly name: string;
  /** HKDF-Expand of the MAC's hash: the column key from the index root key. */
  readonly expand: HkdfExpand;
  /** The MAC of a message under a 32-byte column key (a fresh array the caller may wipe). */
  mac(key: Uint8Array, message: Uint8Array): Uint8Array;
}
