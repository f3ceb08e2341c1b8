/**
 * HMAC-SM3 for search tokens (FORMAT.md §11a.1), the Chinese commercial profile: column keys by
 * HKDF-Expand-SM3, tokens by HMAC-SM3 (GB/T 32905 SM3 in RFC 2104's HMAC).
 */
import type { TokenMac } from '../core/token-mac.ts';
import { hkdfExpandSm3, hmacSm3 } from './sm3.ts';

/** Pass as `mac` of a range or prefix index: `{ kind: 'range', mac: hmacSm3Tokens, … }`. */
export const hmacSm3Tokens: TokenMac = Object.freeze({ name: 'HMAC-SM3', expand: hkdfExpandSm3, mac: hmacSm3 });
