/**
 * Key policies read from a header alone (no KMS call): what a message needs to be current, for
 * needsRewrap() and for a minimum-version policy on open (README "Rotation").
 */
import { KeyVersionRefusedError } from './errors.ts';
import type { ParsedHeader } from './header.ts';

export interface KeyPolicy {
  /** Messages in an older format version need rewriting (2 moves a version-1 message to version 2). */
  minFormatVersion?: number;
  /**
   * Under a key hierarchy: intermediate-key versions below this are old. One number for every
   * partition, or a number per partition (partitions not named have no minimum).
   */
  minKeyVersion?: number | Readonly<Record<string, number>>;
  /**
   * KMS-wrapped messages: the master key ids that are current. A message none of whose wrapped
   * keys names one of them needs a rewrap.
   */
  keyIds?: readonly string[];
}

/** The policy's checks that fail for this header, in words; empty when the message is current. */
export function policyFindings(header: ParsedHeader, policy: KeyPolicy): KeyVersionRefusedError[] {
  const found: KeyVersionRefusedError[] = [];
  if (policy.minFormatVersion !== undefined && header.version < policy.minFormatVersion) {
    found.push(new KeyVersionRefusedError('format version', header.version, policy.minFormatVersion));
  }
  const ref = header.intermediate;
  if (ref && policy.minKeyVersion !== undefined) {
    const minimum = typeof policy.minKeyVersion === 'number' ? policy.minKeyVersion : policy.minKeyVersion[ref.partition];
    if (minimum !== undefined && ref.version < minimum) {
      found.push(new KeyVersionRefusedError('key version', ref.version, minimum, ` in partition ${JSON.stringify(ref.partition)}`));
    }
  }
  if (policy.keyIds !== undefined && header.keySource === 'kms') {
    const current = new Set(policy.keyIds);
    if (!header.wrappedKeys.some((w) => current.has(w.keyId))) {
      found.push(new KeyVersionRefusedError('key id', header.wrappedKeys[0]!.keyId, 'not one of the current key ids'));
    }
  }
  return found;
}

/** Checks a policy given by a caller: labelled TypeErrors for anything else. */
function checkKeyPolicy(policy: unknown, name: string): KeyPolicy | undefined {
  if (policy === undefined) return undefined;
  if (policy === null || typeof policy !== 'object') throw new TypeError(`"${name}" expected an object`);
  const p = policy as KeyPolicy;
  const positive = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 1;
  if (p.minFormatVersion !== undefined && !positive(p.minFormatVersion)) throw new TypeError(`"${name}.minFormatVersion" expected an integer >= 1`);
  const min = p.minKeyVersion;
  if (min !== undefined && !positive(min) && !(typeof min === 'object' && min !== null && Object.values(min).every(positive))) {
    throw new TypeError(`"${name}.minKeyVersion" expected an integer >= 1, or an object of them by partition`);
  }
  if (p.keyIds !== undefined && !(Array.isArray(p.keyIds) && p.keyIds.every((k) => typeof k === 'string'))) {
    throw new TypeError(`"${name}.keyIds" expected an array of strings`);
  }
  return p;
}

/** A minimum-version policy on open: the first finding, thrown before any KMS call. */
function enforceKeyPolicy(header: ParsedHeader, policy: KeyPolicy | undefined): void {
  if (!policy) return;
  const [first] = policyFindings(header, policy);
  if (first) throw first;
}

/** What createEnvelope({ keyPolicy }) and open()'s `keyPolicy` take: made by keyPolicy(). */
export interface KeyPolicyChoice {
  readonly kind: 'key-policy';
  readonly policy: Readonly<KeyPolicy>;
}

/** The checks of each choice keyPolicy() made (module-private). */
const enforcers = new WeakMap<object, (header: ParsedHeader) => void>();

/**
 * A minimum-version policy for open(): messages older than it are refused (a KeyVersionRefusedError
 * naming the version found, before any KMS call). `createEnvelope({ kms, keyPolicy: keyPolicy({
 * minKeyVersion: 3 }) })`, or per open: `open(sealed, { keyPolicy: keyPolicy({ ... }) })`.
 */
export function keyPolicy(policy: KeyPolicy): KeyPolicyChoice {
  if (policy === undefined) throw new TypeError('"policy" expected an object');
  const checked = checkKeyPolicy(policy, 'policy')!;
  const choice: KeyPolicyChoice = Object.freeze({ kind: 'key-policy', policy: Object.freeze({ ...checked }) });
  enforcers.set(choice, (header) => enforceKeyPolicy(header, checked));
  return choice;
}

/** The check a keyPolicy() choice stands for; undefined for none; a TypeError naming the factory otherwise (a plain policy before 0.3). */
export function keyPolicyCheck(choice: unknown, name: string): ((header: ParsedHeader) => void) | undefined {
  if (choice === undefined) return undefined;
  const check = typeof choice === 'object' && choice !== null ? enforcers.get(choice) : undefined;
  if (!check) throw new TypeError(`"${name}" expected keyPolicy({ ... }) (import { keyPolicy } from 'kms-envelope'), got ${JSON.stringify(choice)}`);
  return check;
}
