/**
 * The payload suites (FORMAT.md §3): the one table every part of the library reads, by header id,
 * by the name callers pass to createEnvelope(), or by the KMS key spec.
 */

/** Data key size, in the KMS's words: 32 bytes (Cobblestone-256) or 16 bytes (Cobblestone-128). */
export type KeySpec = 'AES_256' | 'AES_128';

/** The names createEnvelope({ suite }) takes. */
export type SuiteName = 'cobblestone-256' | 'cobblestone-128';

export interface PayloadSuite {
  /** Suite id in the header. */
  readonly id: number;
  readonly name: 'Cobblestone-256' | 'Cobblestone-128';
  /** The option name, as createEnvelope({ suite }) takes it. */
  readonly option: SuiteName;
  /** IANA AEAD name, part of the HKDF info. */
  readonly aead: 'AEAD_AES_256_GCM' | 'AEAD_AES_128_GCM';
  readonly keyLength: 32 | 16;
  /** The data key the KMS is asked for. */
  readonly keySpec: KeySpec;
}

export const COBBLESTONE_256: PayloadSuite = Object.freeze({
  id: 0x01,
  name: 'Cobblestone-256',
  option: 'cobblestone-256',
  aead: 'AEAD_AES_256_GCM',
  keyLength: 32,
  keySpec: 'AES_256',
});

export const COBBLESTONE_128: PayloadSuite = Object.freeze({
  id: 0x02,
  name: 'Cobblestone-128',
  option: 'cobblestone-128',
  aead: 'AEAD_AES_128_GCM',
  keyLength: 16,
  keySpec: 'AES_128',
});

export const SUITES: readonly PayloadSuite[] = Object.freeze([COBBLESTONE_256, COBBLESTONE_128]);

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
