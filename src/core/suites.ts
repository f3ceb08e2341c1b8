/**
 * The payload suites (FORMAT.md §3). A suite is a value (as in tink): its header id and parameters,
 * and the primitives its payloads run on. The two AES suites are built in; suite 03 (SM4-GCM with
 * HKDF-SM3) is the value `sm4` of 'kms-envelope/sm4', passed to createEnvelope({ suites: [sm4] })
 * by the applications that need it, so that no other application carries its code.
 */
import type { CryptoBackend } from './backend.ts';
import { UnsupportedSuiteError } from './errors.ts';

/** Data key size, in the KMS's words: 32 bytes (Cobblestone-256) or 16 bytes (Cobblestone-128, SM4). */
export type KeySpec = 'AES_256' | 'AES_128';

/** The names of the built-in suites, as createEnvelope({ suite }) takes them. */
export type SuiteName = 'cobblestone-256' | 'cobblestone-128';

/** What a header names: a suite's id and parameters. */
export interface PayloadSuite {
  /** Suite id in the header. */
  readonly id: number;
  readonly name: 'Cobblestone-256' | 'Cobblestone-128' | 'SM4-GCM-SM3';
  /** AEAD name (IANA's for AES), part of the HKDF info. */
  readonly aead: 'AEAD_AES_256_GCM' | 'AEAD_AES_128_GCM' | 'AEAD_SM4_GCM';
  readonly keyLength: 32 | 16;
  /** The data key the KMS is asked for. */
  readonly keySpec: KeySpec;
}

/**
 * A payload suite as a value: createEnvelope({ suite, suites }) takes it. The payload code asks
 * it for its primitives and knows no cipher family.
 */
export interface Suite extends PayloadSuite {
  /**
   * The crypto this suite's payloads run on, over `backend` (its randomness and hashes): the
   * backend itself for the AES suites; SM4-GCM and HKDF-SM3 for suite 03 (no asynchronous AEAD:
   * those paths then run synchronously).
   */
  primitives(backend: CryptoBackend): CryptoBackend;
  /**
   * The node:crypto cipher that worker threads may seal and open this suite's chunks with
   * (kms-envelope/node files with `parallel`); undefined: the chunks stay on the calling thread.
   */
  readonly workerCipher?: 'aes-256-gcm' | 'aes-128-gcm' | undefined;
}

const own = (backend: CryptoBackend): CryptoBackend => backend;

export const COBBLESTONE_256: Suite = Object.freeze({
  id: 0x01,
  name: 'Cobblestone-256',
  aead: 'AEAD_AES_256_GCM',
  keyLength: 32,
  keySpec: 'AES_256',
  primitives: own,
  workerCipher: 'aes-256-gcm',
});

export const COBBLESTONE_128: Suite = Object.freeze({
  id: 0x02,
  name: 'Cobblestone-128',
  aead: 'AEAD_AES_128_GCM',
  keyLength: 16,
  keySpec: 'AES_128',
  primitives: own,
  workerCipher: 'aes-128-gcm',
});

/**
 * Suite 03 (FORMAT.md §13) as the header names it: the chunked construction with SM4-GCM (RFC 8998)
 * and HKDF-SM3. Its primitives are in 'kms-envelope/sm4' (src/sm4/), which `IMPORT_SM4` names.
 * SM4 keys are 16 bytes: the KMS's AES_128 data key spec is 16 random bytes, whatever cipher uses them.
 */
export const SM4_GCM_SM3: PayloadSuite = Object.freeze({
  id: 0x03,
  name: 'SM4-GCM-SM3',
  aead: 'AEAD_SM4_GCM',
  keyLength: 16,
  keySpec: 'AES_128',
});

const IMPORT_SM4 = "import { sm4 } from 'kms-envelope/sm4' and pass createEnvelope({ suites: [sm4] })";

/** Every suite a header may name, built in or not. */
const KNOWN: readonly PayloadSuite[] = Object.freeze([COBBLESTONE_256, COBBLESTONE_128, SM4_GCM_SM3]);

export const DEFAULT_SUITE: Suite = COBBLESTONE_256;

export const KEY_LENGTH_BY_SPEC: Readonly<Record<KeySpec, 16 | 32>> = Object.freeze({ AES_256: 32, AES_128: 16 });

/** The suite with this header id (its parameters), or undefined. */
export function suiteById(id: number): PayloadSuite | undefined {
  return KNOWN.find((suite) => suite.id === id);
}

function isSuite(value: unknown): value is Suite {
  return typeof value === 'object' && value !== null && typeof (value as Suite).primitives === 'function' && suiteById((value as Suite).id) !== undefined;
}

/** The suite createEnvelope({ suite }) means: a built-in name or a suite value; a TypeError naming the choices otherwise. */
export function suiteOption(value: unknown): Suite {
  if (value === 'cobblestone-256') return COBBLESTONE_256;
  if (value === 'cobblestone-128') return COBBLESTONE_128;
  if (isSuite(value)) return value;
  if (value === 'sm4') throw new TypeError(`"suite" takes the SM4 suite as a value: ${IMPORT_SM4.replace('suites: [sm4]', 'suite: sm4')}`);
  throw new TypeError(`"suite" expected "cobblestone-256", "cobblestone-128" or a suite value (sm4), got ${JSON.stringify(value)}`);
}

/**
 * The suites an envelope opens, by header id: the built-in ones, `extra` (createEnvelope's
 * `suites`), and the suite it seals with.
 */
export function suiteTable(extra: unknown, sealing: Suite): ReadonlyMap<number, Suite> {
  if (extra !== undefined && !(Array.isArray(extra) && extra.every(isSuite))) {
    throw new TypeError(`"suites" expected an array of suite values (import { sm4 } from 'kms-envelope/sm4'), got ${JSON.stringify(extra)}`);
  }
  const table = new Map<number, Suite>([COBBLESTONE_256, COBBLESTONE_128].map((s) => [s.id, s]));
  for (const suite of [...((extra as Suite[] | undefined) ?? []), sealing]) table.set(suite.id, suite);
  return table;
}

/** The suite value for a header's suite; UnsupportedSuiteError naming the import when the envelope lacks it. */
export function suiteFor(table: ReadonlyMap<number, Suite>, suite: PayloadSuite): Suite {
  const found = table.get(suite.id);
  if (found) return found;
  throw new UnsupportedSuiteError(suite.id, suite.id === SM4_GCM_SM3.id ? `${suite.name}: ${IMPORT_SM4}` : suite.name);
}
