/**
 * The payload suites (FORMAT.md §3): the one table every part of the library reads, by header id,
 * by the name callers pass to createEnvelope(), or by the KMS key spec.
 */

/** Data key size, in the KMS's words: 32 bytes (Cobblestone-256) or 16 bytes (Cobblestone-128, SM4). */
export type KeySpec = 'AES_256' | 'AES_128';

/** The names createEnvelope({ suite }) takes. */
export type SuiteName = 'cobblestone-256' | 'cobblestone-128' | 'sm4';

export interface PayloadSuite {
  /** Suite id in the header. */
  readonly id: number;
  readonly name: 'Cobblestone-256' | 'Cobblestone-128' | 'SM4-GCM-SM3';
  /** The option name, as createEnvelope({ suite }) takes it. */
  readonly option: SuiteName;
  /** AEAD name (IANA's for AES), part of the HKDF info. */
  readonly aead: 'AEAD_AES_256_GCM' | 'AEAD_AES_128_GCM' | 'AEAD_SM4_GCM';
  /**
   * The primitives: AES-GCM with HKDF-SHA-512, or SM4-GCM with HKDF-SM3 (core/suite-backend.ts
   * maps a backend to the latter).
   */
  readonly family: 'aes' | 'sm';
  readonly keyLength: 32 | 16;
  /** The data key the KMS is asked for. */
  readonly keySpec: KeySpec;
}

export const COBBLESTONE_256: PayloadSuite = Object.freeze({
  id: 0x01,
  name: 'Cobblestone-256',
  option: 'cobblestone-256',
  aead: 'AEAD_AES_256_GCM',
  family: 'aes',
  keyLength: 32,
  keySpec: 'AES_256',
});

export const COBBLESTONE_128: PayloadSuite = Object.freeze({
  id: 0x02,
  name: 'Cobblestone-128',
  option: 'cobblestone-128',
  aead: 'AEAD_AES_128_GCM',
  family: 'aes',
  keyLength: 16,
  keySpec: 'AES_128',
});

/**
 * Suite 03 (FORMAT.md §13): the chunked construction with SM4-GCM (RFC 8998) and HKDF-SM3, for
 * applications that must use the Chinese commercial algorithms. SM4 keys are 16 bytes: the KMS's
 * AES_128 data key spec is 16 random bytes, whatever cipher then uses them.
 */
export const SM4_GCM_SM3: PayloadSuite = Object.freeze({
  id: 0x03,
  name: 'SM4-GCM-SM3',
  option: 'sm4',
  aead: 'AEAD_SM4_GCM',
  family: 'sm',
  keyLength: 16,
  keySpec: 'AES_128',
});

export const SUITES: readonly PayloadSuite[] = Object.freeze([COBBLESTONE_256, COBBLESTONE_128, SM4_GCM_SM3]);

export const DEFAULT_SUITE: PayloadSuite = COBBLESTONE_256;

export const KEY_LENGTH_BY_SPEC: Readonly<Record<KeySpec, 16 | 32>> = Object.freeze({ AES_256: 32, AES_128: 16 });

/** The suite with this header id, or undefined. */
export function suiteById(id: number): PayloadSuite | undefined {
  return SUITES.find((suite) => suite.id === id);
}

/** The suite createEnvelope({ suite: name }) means; a TypeError naming the choices otherwise. */
export function suiteByName(name: unknown): PayloadSuite {
  const suite = SUITES.find((s) => s.option === name);
  if (!suite) {
    throw new TypeError(`"suite" expected ${SUITES.map((s) => JSON.stringify(s.option)).join(' or ')}, got ${JSON.stringify(name)}`);
  }
  return suite;
}
