/**
 * kms-envelope/sm4: suite 03, SM4-GCM with HKDF-SM3 (FORMAT.md §13), as a value.
 *
 * @example
 * ```ts
 * import { createEnvelope, LocalKms } from 'kms-envelope';
 * import { sm4 } from 'kms-envelope/sm4';
 * // Seal with SM4 (and open SM4 messages):
 * const envelope = createEnvelope({ kms: LocalKms.generate(), suite: sm4 });
 * // Seal with AES, open SM4 messages too:
 * const reader = createEnvelope({ kms: LocalKms.generate(), suites: [sm4] });
 * ```
 */
export { sm4 } from './sm4/suite.ts';
export type { Suite } from './core/suites.ts';
export { hmacSm3Tokens } from './sm4/search-mac.ts';
export type { TokenMac } from './core/token-mac.ts';
