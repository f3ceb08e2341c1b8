/**
 * Several wrapped keys per message (FORMAT.md §10.2): one data key, wrapped by the envelope's KMS
 * (GenerateDataKey) and, for each additional target, by that provider's Encrypt of the plaintext
 * data key, so that a message opens through any of them: two Tencent regions, or a Tencent key and
 * an offline break-glass key. Opening tries the wrapped keys the envelope's providers can reach, in
 * a set order, with a cap on KMS attempts; the key commitment decides whether the data key is the
 * message's.
 *
 * Encrypt sends the plaintext data key to that KMS (over TLS, never under a public key: Tencent's
 * EncryptionPublicKey only protects what comes back). With TencentKms `responseKey`, the data key
 * never reaches this process in clear from GenerateDataKey or Decrypt, but each additional wrap
 * still sends it once to the other KMS.
 */
import { describe, utf8 } from '../core/bytes.ts';
import { HEADER_LIMITS, validateProviderId, type WrappedKey } from '../core/header.ts';
import type { CanonicalContext } from '../core/context.ts';
import type { KeyProvider } from '../kms/key-provider.ts';

/** A master key of another provider (or region) that also wraps each data key. */
export interface WrapTarget {
  /** Must have encryptDataKey (TencentKms, TencentKmsV2, LocalKms). */
  kms: KeyProvider;
  /** The master key it wraps under. */
  keyId: string;
}

export interface WrappingOptions {
  /**
   * Format 2: wrap each data key under these master keys too, after the `kms` one (at most 7, so a
   * message carries at most 8 wrapped keys). Each costs one Encrypt per data key; a failed one fails
   * the seal (a message never lacks a way to open that was asked for).
   */
  additionalWrapping?: readonly WrapTarget[];
  /**
   * Providers open() may use besides `kms` and the additional ones (a reader in another region, a
   * break-glass LocalKms). Order matters: see maxKmsAttempts.
   */
  fallbackKms?: readonly KeyProvider[];
  /**
   * The most KMS calls one open() makes to get its data key; default 4. Opening tries, for each
   * provider in the order `kms`, the additional targets' providers, `fallbackKms`, each of the
   * message's wrapped keys with that provider's id, in the order written; the first data key a
   * provider returns is used, and the key commitment decides whether it is the message's.
   */
  maxKmsAttempts?: number;
}

export interface Wrapping {
  readonly extra: readonly WrapTarget[];
  /** The providers open() tries, in order, each once. */
  readonly openers: readonly KeyProvider[];
  readonly maxAttempts: number;
}

const DEFAULT_MAX_KMS_ATTEMPTS = 4;
const MAX_KMS_ATTEMPTS = 16;
const MAX_FALLBACK_PROVIDERS = 16;

function checkProvider(value: unknown, what: string): KeyProvider {
  const p = value as KeyProvider | undefined;
  if (!p || typeof p.generateDataKey !== 'function' || typeof p.decryptDataKey !== 'function') throw new TypeError(`${what} expected a KeyProvider, got ${describe(value)}`);
  validateProviderId(p.id);
  return p;
}

/** Wrap targets checked: the count against `max` first, before anything is allocated. */
export function checkTargets(targets: readonly WrapTarget[], max: number, name: string): WrapTarget[] {
  if (!Array.isArray(targets)) throw new TypeError(`${name} expected an array of { kms, keyId }, got ${describe(targets)}`);
  if (targets.length > max) {
    throw new RangeError(`${name} takes at most ${max} targets (a message carries at most ${HEADER_LIMITS.maxWrappedKeys} wrapped keys), got ${targets.length}`);
  }
  return targets.map((target, i): WrapTarget => {
    const what = `${name}[${i}]`;
    if (target === null || typeof target !== 'object') throw new TypeError(`${what} expected { kms, keyId }, got ${describe(target)}`);
    const kms = checkProvider(target.kms, `${what}.kms`);
    if (typeof kms.encryptDataKey !== 'function') throw new TypeError(`${what}.kms ("${kms.id}") has no encryptDataKey: it cannot wrap a data key it did not generate`);
    const keyId = target.keyId;
    if (typeof keyId !== 'string' || keyId.length === 0 || utf8(keyId, 'key id').length > HEADER_LIMITS.maxKeyIdBytes) {
      throw new TypeError(`${what}.keyId expected a string of 1 to ${HEADER_LIMITS.maxKeyIdBytes} UTF-8 bytes, got ${describe(keyId)}`);
    }
    return { kms, keyId };
  });
}

/** The options checked, the limits before any allocation. */
export function resolveWrapping(options: WrappingOptions, primary: KeyProvider | undefined): Wrapping {
  const extra = checkTargets(options.additionalWrapping ?? [], HEADER_LIMITS.maxWrappedKeys - 1, '"additionalWrapping"');
  if (extra.length > 0 && !primary) throw new TypeError('"additionalWrapping" needs "kms", which generates the data key');
  const fallback = options.fallbackKms ?? [];
  if (!Array.isArray(fallback) || fallback.length > MAX_FALLBACK_PROVIDERS) throw new TypeError(`"fallbackKms" expected an array of at most ${MAX_FALLBACK_PROVIDERS} key providers, got ${describe(fallback)}`);
  const openers: KeyProvider[] = [];
  for (const p of [primary, ...extra.map((t) => t.kms), ...fallback.map((p, i) => checkProvider(p, `"fallbackKms[${i}]"`))]) if (p && !openers.includes(p)) openers.push(p);
  const maxAttempts = options.maxKmsAttempts ?? DEFAULT_MAX_KMS_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > MAX_KMS_ATTEMPTS) throw new RangeError(`"maxKmsAttempts" expected an integer from 1 to ${MAX_KMS_ATTEMPTS}, got ${describe(maxAttempts)}`);
  return { extra, openers, maxAttempts };
}

/** The additional wrapped keys of a fresh data key: one Encrypt per target, at once. The caller owns and wipes `key`. */
export async function wrapAlso(
  wrapping: Wrapping,
  key: Uint8Array,
  context: CanonicalContext,
  signal: AbortSignal | undefined,
  timed: <T>(provider: string, call: () => Promise<T>) => Promise<T>,
): Promise<WrappedKey[]> {
  return Promise.all(
    wrapping.extra.map(async ({ kms, keyId }): Promise<WrappedKey> => {
      const wrapped = await timed(kms.id, () => kms.encryptDataKey!({ keyId, plaintextKey: key, context, ...(signal ? { signal } : {}) }));
      return { provider: kms.id, keyId: wrapped.keyId, ciphertextBlob: wrapped.ciphertextBlob };
    }),
  );
}

/** One KMS call open() may make: a provider and a wrapped key with its id. */
export interface OpenAttempt {
  readonly provider: KeyProvider;
  readonly wrapped: WrappedKey;
  /** The wrapped key's place in the header. */
  readonly index: number;
}

/** The calls open() may make, in order, at most maxAttempts of them. */
export function openAttempts(wrapping: Wrapping, wrappedKeys: readonly WrappedKey[]): OpenAttempt[] {
  const out: OpenAttempt[] = [];
  for (const provider of wrapping.openers) {
    wrappedKeys.forEach((wrapped, index) => {
      if (wrapped.provider === provider.id && out.length < wrapping.maxAttempts) out.push({ provider, wrapped, index });
    });
  }
  return out;
}
