/**
 * The one start every path shares (buffers, streams, ranges, files, batches): options resolved
 * once, then data key -> header -> payload keys for sealing, and header -> context check -> data
 * key (cache, flight or KMS) for opening, with the work tracked so close() can drain it.
 */
import { abortable, checkSignal, throwIfAborted } from '../core/abort.ts';
import type { AsyncAead, CryptoBackend } from '../core/backend.ts';
import { base64, describe, slabBytes, wipe } from '../core/bytes.ts';
import { type PayloadKey, plaintextLength, PayloadSealer, SALT_LENGTH } from '../core/chunked.ts';
import { COMPACT_MAX_PLAINTEXT, COMPACT_SALT_LENGTH, CompactSealer, compactPlaintextLength } from '../core/compact.ts';
import { type CanonicalContext, canonicalContext, type ContextInput, sameContext } from '../core/context.ts';
import { ClosedError, KeyNotWarmError, ContextMismatchError, DecryptionFailedError, EnvelopeError, KeyProviderMismatchError, KmsError, PartitionMismatchError } from '../core/errors.ts';
import {
  encodeAuthenticated,
  encodeAuthenticatedV2,
  encodeWrappedKey,
  encodeWrappedKeys,
  type ParsedHeader,
  validateProviderId,
  type WrappedKey,
} from '../core/header.ts';
import { copyKeyState, type HmacKeyState, wipeKeyState } from '../core/hkdf.ts';
import { type KeyPolicyChoice, keyPolicyCheck } from '../core/key-policy.ts';
import { type BackendName, selectBackend } from '../core/select-backend.ts';
import { DEFAULT_SUITE, KEY_LENGTH_BY_SPEC, type PayloadSuite, type Suite, type SuiteName, suiteFor, suiteOption, suiteTable } from '../core/suites.ts';
import {
  type CachedKeyMaterial,
  cacheFrom,
  type DecryptCache,
  type DecryptCacheChoice,
  DecryptFlights,
  type EncryptionCache,
  type EncryptionCacheChoice,
  type Lease,
  type RememberedKey,
} from '../economy/cache.ts';
import { type EnvelopeEvent, type EventListener, emitter } from '../economy/events.ts';
import type { CloseOptions, CloseReport } from '../core/work-in-flight.ts';
import { type KeySource, keySourceOf, type KeySourceOwner, type SuiteKey } from '../core/key-source.ts';
import type { DataKey, KeyProvider } from '../kms/key-provider.ts';
import { type OpenAttempt, openAttempts, resolveWrapping, type Wrapping, type WrappingOptions, wrapAlso } from './wrapped-keys.ts';

export interface EnvelopeOptions extends WrappingOptions {
  /**
   * The key provider (KMS) that generates and decrypts a data key per message (or per cache window).
   * Optional with a `hierarchy`, which has its own; then messages with a KMS data key do not open.
   */
  kms?: KeyProvider;
  /**
   * Seal under a key hierarchy (createKeyHierarchy): a unique key per message derived from the
   * partition's intermediate key, with no KMS call (format 2). Messages sealed so open with it too.
   */
  hierarchy?: KeySourceOwner;
  /**
   * With a hierarchy: the partition sealed under when a seal names none, and the only partition
   * whose messages open when an open names none (PartitionMismatchError, ERR_PARTITION_MISMATCH,
   * before any key is loaded). An envelope without one opens every partition's messages: the
   * administrative path, for code that serves every tenant.
   */
  partition?: string;
  /**
   * The format version written: 1 (the default, which every release reads) or 2 (FORMAT.md §10;
   * read by 0.2 and later). Upgrade every reader before a writer. A hierarchy writes 2.
   */
  format?: 1 | 2;
  /** Format 2: values below 16 KiB sealed by seal() take the compact payload; default true. */
  compact?: boolean;
  /**
   * The suite sealed with: `cobblestone-256` (the default: 32-byte data keys, AES-256-GCM),
   * `cobblestone-128`, or a suite value (`sm4` of 'kms-envelope/sm4'). Its messages open too.
   */
  suite?: SuiteName | Suite;
  /**
   * Suites opened besides the built-in AES ones and `suite`: `[sm4]` (import { sm4 } from
   * 'kms-envelope/sm4') opens suite-03 messages; without it they fail with UnsupportedSuiteError.
   */
  suites?: readonly Suite[];
  /** Keep the context out of the message by default; open() then needs it. Default false. */
  detachedContext?: boolean;
  /** Crypto backend; default node:crypto where it exists, else WebCrypto (crypto.subtle), else @noble/ciphers. */
  backend?: BackendName;
  /**
   * Reuse each data key for several messages (opt-in): `cache: encryptionCache()` (import {
   * encryptionCache } from 'kms-envelope'), within limits on messages, bytes and age, never across
   * contexts. See economy/cache.ts for the defaults and why.
   */
  cache?: EncryptionCacheChoice;
  /** Remember decrypted data keys for a while (opt-in): `decryptCache: decryptCache({ ttl })`. */
  decryptCache?: DecryptCacheChoice;
  /** KMS calls and cache events, for metrics. */
  onEvent?: EventListener;
  /**
   * Refuse to open messages older than this (a KeyVersionRefusedError naming the version found,
   * before any KMS call): `keyPolicy({ minKeyVersion: 3 })` (import { keyPolicy } from
   * 'kms-envelope') once every value is rewrapped past version 2.
   */
  keyPolicy?: KeyPolicyChoice;
  /** Randomness for salts. Only for reproducible test vectors: never set it in production. */
  randomBytes?: (length: number) => Uint8Array;
}

export interface SealOptions {
  /**
   * Non-secret strings bound to the message and its data key; open() must see the same. A plain
   * object or a Map<string, string>, read once.
   */
  context?: ContextInput;
  /**
   * Cancels the work: an abort rejects with the signal's reason, wipes every key, and reaches the
   * KMS call; a signal already aborted rejects before any KMS call.
   */
  signal?: AbortSignal;
  /** With a hierarchy: the partition (tenant) whose intermediate key seals this message. */
  partition?: string;
  /** Keep the context out of the message (override the envelope's default). */
  detachedContext?: boolean;
}

export interface StreamSealOptions extends SealOptions {
  /** The plaintext size when known: a cached data key then reserves it up front. */
  size?: number;
}

export interface OpenOptions {
  /**
   * The expected context. Required when the message was sealed with a detached context; otherwise
   * optional, and when given it must equal the stored one exactly.
   */
  context?: ContextInput;
  /** As in SealOptions: cancels the open. */
  signal?: AbortSignal;
  /** With a hierarchy: caller metadata handed to its audit hook with this open. */
  audit?: Readonly<Record<string, unknown>>;
  /** A key policy for this open (keyPolicy({ ... })), instead of the envelope's. */
  keyPolicy?: KeyPolicyChoice;
  /**
   * The partition (tenant) the message must be sealed for, instead of the envelope's: another one,
   * or a message with a KMS data key (which names none), fails with PartitionMismatchError
   * (ERR_PARTITION_MISMATCH) before any key is loaded or any KMS call.
   */
  partition?: string;
}

/** A sealing in progress: the header, and the payload keys (the data key is already wiped). */
export interface SealSession {
  readonly header: Uint8Array;
  /** The suite sealed with. */
  readonly suite: Suite;
  /** The chunked payload's sealer; undefined for a compact message. */
  readonly sealer: PayloadSealer | undefined;
  /** The compact payload's sealer (format 2, values below 16 KiB); undefined otherwise. */
  readonly compact: CompactSealer | undefined;
  /** Draws more plaintext bytes from a cached data key's budget (streams of unknown length). */
  readonly reserve: (bytes: number) => void;
}

/** An opening in progress, after the KMS returned the data key (the caller wipes `key`). */
export interface OpenSession {
  readonly header: ParsedHeader;
  readonly context: CanonicalContext;
  /** The Cobblestone context (FORMAT.md §4). */
  readonly payloadContext: Uint8Array;
  readonly key: Uint8Array;
  /** The message's suite (UnsupportedSuiteError before any KMS call when the envelope lacks it). */
  readonly suite: Suite;
  /** The suite's primitives over the envelope's backend (suite.primitives). */
  readonly crypto: CryptoBackend;
  /** The key's precomputed HKDF state, when borrowed from a cache. */
  readonly keyState: HmacKeyState | undefined;
  /** When true (only if asked for), `key` and `keyState` are a cache's: use them at once, never wipe them. */
  readonly borrowed: boolean;
  /** The decrypt cache lent the key: the caller emits its hit event once done with it. */
  readonly hitPending: boolean;
}

/** How a path seals. */
export interface SealMode {
  /** The plaintext size when known: a cached data key reserves it (undefined for streams). */
  readonly bytes?: number | undefined;
  /** The caller can seal a compact payload (it has the whole plaintext). */
  readonly compactOk?: boolean | undefined;
}

/** Keys remembered for a while by id (a decrypt cache, or one batch's keys: openMany). */
export interface KeyScope {
  get(id: string, borrow: boolean): RememberedKey | undefined;
  set(id: string, key: Uint8Array, keyState: HmacKeyState | undefined): void;
}

/** How a path opens. */
export interface OpenMode {
  /** The payload's length when known: a length no message has costs no KMS call. */
  readonly payloadLength?: number | undefined;
  /** Keys shared by one batch (openMany): each distinct wrapped key is decrypted once. */
  readonly scope?: KeyScope | undefined;
  /**
   * The caller can borrow a cached key (with its HKDF state): it then opens synchronously, before
   * it yields, and never wipes a borrowed key.
   */
  readonly borrow?: boolean | undefined;
  /**
   * openSync: a key that is not in memory is loaded, and the promise then rejects instead of
   * opening: the caller has already been told ERR_KEY_NOT_WARM, so the open (and its audit record)
   * must not happen behind its back.
   */
  readonly warmOnly?: boolean | undefined;
}

/** What the buffer, stream, range, file and batch paths share: one way to start sealing and opening. */
export interface EnvelopeCore {
  readonly backend: CryptoBackend;
  /**
   * The asynchronous AEAD that seals this envelope's messages (the WebCrypto backend, an AES
   * suite), or undefined: sealing is synchronous. Opening takes the message suite's (session.crypto.aead).
   */
  readonly sealAead: AsyncAead | undefined;
  /** The envelope's key provider (undefined with only a hierarchy): rewrap.ts uses it. */
  readonly kms: KeyProvider | undefined;
  /** The envelope's onEvent, never throwing. */
  readonly emit: (event: EnvelopeEvent) => void;
  beginSeal(options?: SealOptions, mode?: SealMode): SealSession | Promise<SealSession>;
  /**
   * Checks the suite, the context, the key policy, the payload length (when known) and the
   * provider, then gets the data key (from a cache or the KMS): a message that cannot open costs
   * no KMS call.
   */
  beginOpen(header: ParsedHeader, options?: OpenOptions, mode?: OpenMode): OpenSession | Promise<OpenSession>;
  /** Runs `work` as tracked work that close() waits for; refuses once closed. */
  track<T>(work: () => T | Promise<T>): Promise<T>;
  /**
   * Runs `work` now and returns its result when it finished synchronously (its key was in memory);
   * otherwise lets it finish in the background (it loads the key), hands its result to `discard`,
   * and throws KeyNotWarmError naming `what`.
   */
  trackSync<I, O, T>(work: (core: EnvelopeCore, input: I, options: O) => T | Promise<T>, input: I, options: O, what: string, discard: (value: T) => void): T;
  /** Refuses new calls, drains (or refuses, per `drain`) those under way, then wipes every cached key. */
  close(options?: CloseOptions): Promise<CloseReport>;
}

/** What the payload openers take from an open session. */
export function payloadKeyOf(session: OpenSession): PayloadKey {
  return { crypto: session.crypto, suite: session.header.suite, key: session.key, context: session.payloadContext, keyState: session.keyState };
}

/** The chunked sealer of a session that streams (never compact: compactOk was not given). */
export function chunkedSealer(session: SealSession): PayloadSealer {
  if (!session.sealer) throw new Error('internal: a compact session on a chunked path');
  return session.sealer;
}

interface HeaderParts {
  header: Uint8Array;
  payloadContext: Uint8Array;
}

/** An envelope's resolved options: checked once, at creation. */
interface Settings {
  readonly kms: KeyProvider | undefined;
  readonly hierarchy: KeySource | undefined;
  readonly partition: string | undefined;
  readonly format: 1 | 2;
  readonly compact: boolean;
  readonly suite: Suite;
  /** The suites this envelope opens, by header id. */
  readonly suites: ReadonlyMap<number, Suite>;
  readonly backend: CryptoBackend;
  /** The sealing suite's primitives over `backend`. */
  readonly crypto: CryptoBackend;
  readonly random: (length: number) => Uint8Array;
  readonly defaultDetached: boolean;
  readonly emit: (event: EnvelopeEvent) => void;
  readonly encryptionCache: EncryptionCache<HeaderParts> | undefined;
  readonly decryptCache: DecryptCache | undefined;
  readonly keyPolicy: ((header: ParsedHeader) => void) | undefined;
  /** The wrapped keys besides the kms one, the providers open() tries, its cap on KMS calls (wrapped-keys.ts). */
  readonly wrapping: Wrapping;
}

function assertProvider(kms: unknown): KeyProvider {
  const p = kms as KeyProvider | undefined;
  if (!p || typeof p.generateDataKey !== 'function' || typeof p.decryptDataKey !== 'function') {
    throw new TypeError(`"kms" expected a KeyProvider, got ${describe(kms)}`);
  }
  validateProviderId(p.id);
  return p;
}

function resolve(options: EnvelopeOptions): Settings {
  if (options === null || typeof options !== 'object') throw new TypeError(`"options" expected an object, got ${describe(options)}`);
  const hierarchy = options.hierarchy === undefined ? undefined : keySourceOf(options.hierarchy);
  if (options.hierarchy !== undefined && hierarchy === undefined) {
    throw new TypeError(`"hierarchy" expected a KeyHierarchy from createKeyHierarchy(), got ${describe(options.hierarchy)}`);
  }
  const kms = options.kms === undefined && hierarchy ? undefined : assertProvider(options.kms);
  const suite = options.suite === undefined ? DEFAULT_SUITE : suiteOption(options.suite);
  // Several wrapped keys need format 2 (FORMAT.md §10.2).
  const severalWrapped = Array.isArray(options.additionalWrapping) && options.additionalWrapping.length > 0;
  const format = options.format ?? (hierarchy || severalWrapped ? 2 : 1);
  if (severalWrapped && format !== 2) throw new TypeError('"additionalWrapping" writes several wrapped keys, which format 2 carries: drop "format: 1"');
  if (format !== 1 && format !== 2) throw new TypeError(`"format" expected 1 or 2, got ${JSON.stringify(format)}`);
  if (hierarchy && format !== 2) throw new TypeError('a key hierarchy writes format 2: drop "format: 1"');
  if (options.partition !== undefined) checkPartition(options.partition);
  const backend = selectBackend(options.backend);
  const emit = emitter(options.onEvent);
  return {
    kms,
    hierarchy,
    partition: options.partition,
    format,
    compact: format === 2 && (options.compact ?? true),
    suite,
    suites: suiteTable(options.suites, suite),
    backend,
    crypto: suite.primitives(backend),
    random: options.randomBytes ?? backend.randomBytes,
    defaultDetached: options.detachedContext ?? false,
    emit,
    encryptionCache: cacheFrom<EncryptionCache<HeaderParts>>(options.cache, 'encryption-cache', emit),
    decryptCache: cacheFrom<DecryptCache>(options.decryptCache, 'decrypt-cache', emit),
    keyPolicy: keyPolicyCheck(options.keyPolicy, 'keyPolicy'),
    wrapping: resolveWrapping(options, kms),
  };
}

function checkPartition(partition: unknown): string {
  if (typeof partition !== 'string' || partition.length === 0) throw new TypeError(`"partition" expected a non-empty string, got ${describe(partition)}`);
  return partition;
}

/** The provider a KMS-key message needs; a typed error when the envelope has none. */
function requireKms(s: Settings, found: string): KeyProvider {
  if (!s.kms) throw new KeyProviderMismatchError(`this message was sealed with key provider "${found}", and this envelope has only a key hierarchy: pass "kms" too`);
  return s.kms;
}

/** Wraps anything a provider throws that is not ours into a KmsError, without its message's secrets. */
function kmsFailure(error: unknown, action: string): EnvelopeError {
  if (error instanceof EnvelopeError) return error;
  return new KmsError(`key provider failed to ${action}`, { cause: error });
}

/** The plaintext keys in what a provider returned (a DataKey, or a key): wiped when it comes too late. */
function wipeLate(value: unknown): void {
  if (value instanceof Uint8Array) wipe(value);
  else if (value && typeof value === 'object' && (value as { plaintextKey?: unknown }).plaintextKey instanceof Uint8Array) wipe((value as DataKey).plaintextKey);
}

/**
 * A KMS call with its kms-call event. When `signal` aborts first, rejects with its reason (never
 * wrapped), whether or not the provider heeds the signal; a key the provider returns later is wiped.
 */
async function timed<T>(s: Settings, action: 'GenerateDataKey' | 'Decrypt' | 'Encrypt', call: () => Promise<T>, signal?: AbortSignal, provider = s.kms?.id ?? 'hierarchy'): Promise<T> {
  const started = Date.now();
  try {
    const result = await abortable(call(), signal, wipeLate);
    s.emit({ type: 'kms-call', provider, action, durationMs: Date.now() - started, ok: true });
    return result;
  } catch (error) {
    if (signal?.aborted && error === signal.reason) {
      s.emit({ type: 'kms-call', provider, action, durationMs: Date.now() - started, ok: false, errorCode: 'ABORTED' });
      throw error;
    }
    const failure = kmsFailure(error, action === 'Decrypt' ? 'decrypt the data key' : action === 'Encrypt' ? 'wrap the data key' : 'generate a data key');
    const code = failure instanceof KmsError ? (failure.kmsCode ?? failure.code) : failure.code;
    s.emit({ type: 'kms-call', provider, action, durationMs: Date.now() - started, ok: false, errorCode: code });
    throw failure;
  }
}

/**
 * FORMAT.md §4: authenticated header bytes, then the detached context's encoding if any. In the
 * shared slab when used once; `kept` (an encryption-cache entry) gets its own memory, or it would
 * hold a whole slab block for as long as the entry lives.
 */
function payloadContext(authenticated: Uint8Array, context: CanonicalContext, detached: boolean, kept = false): Uint8Array {
  if (!detached) return authenticated;
  const length = authenticated.length + context.encoded.length;
  const out = kept ? new Uint8Array(length) : slabBytes(length);
  out.set(authenticated);
  out.set(context.encoded, authenticated.length);
  return out;
}

/** A fresh data key from the KMS, with the header that names it. */
async function generate(s: Settings, context: CanonicalContext, detached: boolean, compact: boolean, signal: AbortSignal | undefined): Promise<CachedKeyMaterial<HeaderParts>> {
  const { suite } = s;
  const kms = requireKms(s, 'none');
  const dataKey = await timed(s, 'GenerateDataKey', () => kms.generateDataKey({ keySpec: suite.keySpec, context, signal }), signal);
  const key = dataKey?.plaintextKey;
  try {
    if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH_BY_SPEC[suite.keySpec]) {
      throw new KmsError(`key provider returned a data key of the wrong length for ${suite.keySpec}`);
    }
    const wrappedKey: WrappedKey = { provider: kms.id, keyId: dataKey.keyId, ciphertextBlob: dataKey.ciphertextBlob };
    const authenticated = s.format === 2 ? encodeAuthenticatedV2(suite, context, detached, compact, undefined) : encodeAuthenticated(suite, context, detached);
    const also = s.wrapping.extra.length === 0 ? [] : await wrapAlso(s.wrapping, key, context, signal, (provider, call) => timed(s, 'Encrypt', call, signal, provider));
    const wrapped = encodeProviderFields(() => (s.format === 2 ? encodeWrappedKeys([wrappedKey, ...also]) : encodeWrappedKey(wrappedKey)));
    const header = new Uint8Array(authenticated.length + wrapped.length);
    header.set(authenticated);
    header.set(wrapped, authenticated.length);
    // Only a cached key is used again: only it is worth a precomputed HKDF state.
    const keyState = s.encryptionCache ? s.crypto.hkdfPrepareSha512?.(key) : undefined;
    return { key, keyState, extra: { header, payloadContext: payloadContext(authenticated, context, detached, true) } };
  } catch (error) {
    if (key instanceof Uint8Array) wipe(key);
    throw error;
  }
}

/**
 * The wrapped-key section from what the provider returned: a key id or blob that is empty, too
 * long or not well-formed Unicode is the provider's bad response (ERR_KMS), not the caller's.
 */
function encodeProviderFields(encode: () => Uint8Array): Uint8Array {
  try {
    return encode();
  } catch (error) {
    if (error instanceof EnvelopeError) throw error;
    throw new KmsError(`key provider returned a key id or ciphertext blob the header cannot hold: ${(error as Error).message}`, { kind: 'bad-response' });
  }
}

const noReserve = (): void => {};

/** A header kept for reuse by hierarchyHeader. */
interface KeptHeader {
  context: CanonicalContext | undefined;
  partition: string;
  version: number;
  compact: boolean;
  header: Uint8Array;
}

/** beginSeal: synchronous when the encryption cache (or the hierarchy) has the key, so the hot path has no promise. */
function sealStarter(s: Settings): EnvelopeCore['beginSeal'] {
  /** Encryption-cache partitions by context: a key is never shared across suites, context modes, payload forms or contexts. */
  const partitions = [0, 1, 2, 3].map(() => new WeakMap<CanonicalContext, string>());
  function partitionOf(context: CanonicalContext, detached: boolean, compact: boolean): string {
    const known = partitions[(detached ? 1 : 0) + (compact ? 2 : 0)]!;
    let partition = known.get(context);
    if (partition === undefined) {
      partition = `${s.suite.id}.${detached ? 'd' : 's'}${compact ? 'c' : ''}.${base64.encode(context.encoded)}`;
      known.set(context, partition);
    }
    return partition;
  }

  /** The payload sealer for this key, derived at once: the key may be a lent one. */
  function sealerFor(key: Uint8Array, keyState: HmacKeyState | undefined, payloadCtx: Uint8Array, salt: Uint8Array, compact: boolean) {
    return compact
      ? { sealer: undefined, compact: new CompactSealer(s.crypto, s.suite, key, payloadCtx, salt, keyState) }
      : { sealer: new PayloadSealer(s.crypto, s.suite, key, payloadCtx, salt, keyState), compact: undefined };
  }

  /**
   * Derives the message keys, synchronously: a borrowed key is done with on return. The salt is
   * drawn before (`random` may be the caller's), so no user code runs while a key is lent.
   */
  function startSealing(lease: Lease<HeaderParts>, salt: Uint8Array, compact: boolean): SealSession {
    try {
      const { sealer, compact: compactSealer } = sealerFor(lease.key, lease.keyState, lease.extra.payloadContext, salt, compact);
      return { header: lease.extra.header, suite: s.suite, sealer, compact: compactSealer, reserve: lease.reserve };
    } finally {
      if (!lease.borrowed) {
        wipe(lease.key);
        wipeKeyState(lease.keyState);
      }
    }
  }

  /** Under the key hierarchy: the partition's active intermediate key, no KMS call once it is warm. */
  /**
   * Headers kept for reuse (never written to: sealBuffer and streams copy them into their output).
   * A detached header names only the partition, the key version and the form, so every field of a
   * partition shares it: kept by partition, bounded (cleared when full). A stored-context header
   * also holds the context: the last one is kept, since a storage layer seals row after row under
   * one partition and context, and a CanonicalContext is immutable (the same object, the same bytes).
   */
  const detachedHeaders = new Map<string, KeptHeader>();
  let lastStored: KeptHeader | undefined;
  function hierarchyHeader(key: SuiteKey, context: CanonicalContext, detached: boolean, compact: boolean): Uint8Array {
    const { partition, version } = key.ref;
    const known = detached ? detachedHeaders.get(partition) : lastStored;
    if (known && known.version === version && known.compact === compact && known.partition === partition && (detached || known.context === context)) return known.header;
    const header = encodeAuthenticatedV2(s.suite, context, detached, compact, key.ref);
    const kept = { context: detached ? undefined : context, partition, version, compact, header };
    if (!detached) lastStored = kept;
    else (detachedHeaders.size < 1024 ? detachedHeaders : (detachedHeaders.clear(), detachedHeaders)).set(partition, kept);
    return header;
  }

  function startWithHierarchy(key: SuiteKey, context: CanonicalContext, detached: boolean, compact: boolean, salt: Uint8Array): SealSession {
    const header = hierarchyHeader(key, context, detached, compact);
    const { sealer, compact: compactSealer } = sealerFor(key.key, key.state, payloadContext(header, context, detached), salt, compact);
    return { header, suite: s.suite, sealer, compact: compactSealer, reserve: noReserve };
  }

  return function beginSeal(sealOptions: SealOptions = {}, { bytes, compactOk = false }: SealMode = {}): SealSession | Promise<SealSession> {
    const signal = checkSignal(sealOptions.signal);
    throwIfAborted(signal);
    const context = canonicalContext(sealOptions.context);
    const detached = sealOptions.detachedContext ?? s.defaultDetached;
    const compact = s.compact && compactOk && bytes !== undefined && bytes <= COMPACT_MAX_PLAINTEXT;
    const saltLength = compact ? COMPACT_SALT_LENGTH : SALT_LENGTH;
    const hierarchy = s.hierarchy;
    if (hierarchy) {
      const partition = checkPartition(sealOptions.partition ?? s.partition);
      const salt = s.random(saltLength);
      const key = hierarchy.sealKey(partition, s.suite);
      if (!(key instanceof Promise)) return startWithHierarchy(key, context, detached, compact, salt);
      return abortable(key, signal).then((k) => startWithHierarchy(k, context, detached, compact, salt));
    }
    const cache = s.encryptionCache;
    if (!cache) {
      // The salt after the data key, as the format's vectors were made (test/vectors).
      return generate(s, context, detached, compact, signal).then((material) =>
        // The same shape as a cache's lease, so that startSealing's property reads stay monomorphic.
        startSealing({ key: material.key, keyState: material.keyState, borrowed: false, extra: material.extra, reserve: noReserve }, s.random(saltLength), compact),
      );
    }
    const salt = s.random(saltLength);
    const partition = partitionOf(context, detached, compact);
    const hit = cache.tryAcquire(partition, bytes, true);
    if (hit) {
      try {
        return startSealing(hit, salt, compact);
      } finally {
        s.emit({ type: 'cache-hit', cache: 'encrypt' }); // a listener runs only once the lent key is done with
      }
    }
    return cache
      .acquire(partition, bytes, (flightSignal) => generate(s, context, detached, compact, flightSignal), signal)
      .then((lease) => startSealing(lease, salt, compact));
  };
}

/** The context a message opens under: the stored one (checked against the caller's), or the caller's for a detached one. */
function openingContext(header: ParsedHeader, openOptions: OpenOptions): CanonicalContext {
  const expected = openOptions.context === undefined ? undefined : canonicalContext(openOptions.context);
  if (header.detached) {
    if (!expected) throw new ContextMismatchError('this message was sealed with a detached context: pass the same context to open()');
    return expected;
  }
  const stored = header.context!;
  if (expected && !sameContext(expected, stored)) {
    throw new ContextMismatchError('the context given to open() is not the one the message was sealed with');
  }
  return stored;
}

/**
 * The partition a message must name: the open's, else the envelope's. The envelope's binds only
 * messages under a hierarchy (a KMS data key names no partition, and is bound by its own key).
 */
function checkOpenPartition(header: ParsedHeader, given: string | undefined, envelopes: string | undefined): void {
  const expected = given === undefined ? header.intermediate && envelopes : checkPartition(given);
  const found = header.intermediate?.partition;
  if (expected !== undefined && found !== expected) throw new PartitionMismatchError(expected, found);
}

/** The payload length is one some message of this form has: a message that cannot open costs no KMS call. */
function checkPayloadLength(header: ParsedHeader, payloadLength: number | undefined): void {
  if (payloadLength === undefined) return;
  const plaintext = header.compact ? compactPlaintextLength(payloadLength) : plaintextLength(payloadLength);
  if (plaintext === undefined) throw new DecryptionFailedError();
}

/** beginOpen: synchronous when a cache (or the hierarchy) has the key. */
function openStarter(s: Settings): EnvelopeCore['beginOpen'] {
  const flights = new DecryptFlights();
  const { decryptCache } = s;

  function withHierarchy(header: ParsedHeader, context: CanonicalContext, openOptions: OpenOptions, borrow: boolean, warmOnly: boolean): OpenSession | Promise<OpenSession> {
    const hierarchy = s.hierarchy;
    const ref = header.intermediate!;
    if (!hierarchy) {
      throw new KeyProviderMismatchError(`this message was sealed under a key hierarchy (partition ${JSON.stringify(ref.partition)}): pass createEnvelope({ hierarchy })`);
    }
    const payloadCtx = payloadContext(header.authenticated, context, header.detached);
    const suite = suiteFor(s.suites, header.suite);
    const crypto = suite.primitives(s.backend);
    const session = (key: SuiteKey, lend: boolean): OpenSession => {
      hierarchy.audited(key, context, openOptions.audit);
      // A lent key is used before the caller yields; otherwise the caller gets its own copy to wipe.
      return { header, context, payloadContext: payloadCtx, key: lend ? key.key : key.key.slice(), suite, crypto, keyState: lend ? key.state : undefined, borrowed: lend, hitPending: false };
    };
    const key = hierarchy.openKey(ref, suite);
    if (!(key instanceof Promise)) return session(key, borrow);
    if (warmOnly) {
      return key.then(() => {
        throw new KeyNotWarmError('openSync');
      });
    }
    return abortable(key, openOptions.signal).then((k) => session(k, false));
  }

  return function beginOpen(header, openOptions = {}, { payloadLength, scope, borrow = false, warmOnly = false }: OpenMode = {}) {
    const signal = checkSignal(openOptions.signal);
    throwIfAborted(signal);
    checkOpenPartition(header, openOptions.partition, s.partition);
    const context = openingContext(header, openOptions);
    const suite = suiteFor(s.suites, header.suite);
    const crypto = suite.primitives(s.backend);
    (openOptions.keyPolicy === undefined ? s.keyPolicy : keyPolicyCheck(openOptions.keyPolicy, 'keyPolicy'))?.(header);
    checkPayloadLength(header, payloadLength);
    if (header.keySource === 'intermediate') return withHierarchy(header, context, openOptions, borrow, warmOnly);
    const providers = header.wrappedKeys.map((w) => w.provider);
    const kms = requireKms(s, providers.join('", "'));
    const attempts = openAttempts(s.wrapping, header.wrappedKeys);
    if (attempts.length === 0) {
      const mine = s.wrapping.openers.map((p) => p.id).join('", "');
      throw new KeyProviderMismatchError(`this message was sealed with key provider "${[...new Set(providers)].join('", "')}", not "${mine || kms.id}"`);
    }
    const keySpec = header.suite.keySpec;
    // The wrapped-key section names the provider, the key id and the blob; the suite fixes the key spec.
    // The decrypt cache files a key under a hash (it outlives the message); a flight or a batch needs only an exact id.
    const id = decryptCache
      ? decryptCache.id(s.backend, header.suite.id, header.wrappedBytes, context.encoded)
      : `${header.suite.id}.${base64.encode(header.wrappedBytes)}.${base64.encode(context.encoded)}`;
    const session = ({ key, keyState, borrowed }: RememberedKey, hitPending = false): OpenSession => ({
      header,
      context,
      payloadContext: payloadContext(header.authenticated, context, header.detached),
      key,
      suite,
      crypto,
      keyState,
      borrowed,
      hitPending,
    });
    const inScope = scope?.get(id, borrow);
    if (inScope) return session(inScope);
    const cached = decryptCache?.get(id, borrow);
    if (cached) return session(cached, cached.borrowed);
    // Concurrent opens of the same wrapped key share one Decrypt.
    return flights
      .run(id, async (flightSignal) => {
        const fresh = await decryptFirst(s, attempts, keySpec, context, flightSignal);
        // A remembered key is used again: worth its precomputed HKDF state.
        const state = decryptCache || scope ? crypto.hkdfPrepareSha512?.(fresh) : undefined;
        decryptCache?.set(id, fresh.slice(), copyKeyState(state));
        scope?.set(id, fresh.slice(), copyKeyState(state));
        wipeKeyState(state);
        return fresh;
      }, signal)
      .then((key) => session({ key, keyState: undefined, borrowed: false }));
  };
}

/**
 * The data key from the first of the message's wrapped keys (of this provider) that the KMS
 * decrypts, in the order written; at most one KMS call per wrapped key.
 */
/**
 * The data key from the first attempt that returns one (wrapped-keys.ts: the providers in order,
 * the wrapped keys in the order written, at most maxKmsAttempts calls); onEvent hears which one.
 */
async function decryptFirst(
  s: Settings,
  attempts: readonly OpenAttempt[],
  keySpec: PayloadSuite['keySpec'],
  context: CanonicalContext,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  let failure: unknown;
  for (const [n, { provider, wrapped, index }] of attempts.entries()) {
    throwIfAborted(signal);
    const { keyId, ciphertextBlob } = wrapped;
    try {
      const fresh = await timed(s, 'Decrypt', () => provider.decryptDataKey({ keySpec, keyId, ciphertextBlob, context, signal }), signal, provider.id);
      if (!(fresh instanceof Uint8Array)) throw new KmsError('key provider returned no data key');
      s.emit({ type: 'wrapped-key-used', provider: provider.id, keyId, index, attempt: n + 1 });
      return fresh;
    } catch (error) {
      if (signal?.aborted && error === signal.reason) throw error;
      failure = error;
    }
  }
  throw failure;
}

/**
 * Work under way, which close() waits for; work that finishes synchronously costs one settled
 * promise. Work that settles after the drain ended (drain false, or its ms ran out) is refused:
 * its result wiped, ERR_CLOSED in its place. close() still waits for it to settle, so no cached
 * key is wiped under a call that is using it.
 */
/** trackSync of tracker(): the core passed in, so that a sync call's work is a module function, not a closure per call. */
type TrackSync = <I, O, T>(work: (core: EnvelopeCore, input: I, options: O) => T | Promise<T>, core: EnvelopeCore, input: I, options: O, what: string, discard: (value: T) => void) => T;

function tracker(): { track: EnvelopeCore['track']; trackSync: TrackSync; drain: (options?: CloseOptions) => Promise<CloseReport> } {
  let active = 0;
  let idle: Promise<void> | undefined;
  let drained: (() => void) | undefined;
  let closed = false;
  let refusing = false;
  const report: CloseReport = { drained: 0, refused: 0, timedOut: false };
  const leave = (): void => {
    if (--active === 0) drained?.();
  };
  const refusal = (): ClosedError => (report.refused++, new ClosedError());
  const settled = (): boolean => {
    leave();
    if (!refusing && closed) report.drained++;
    return !refusing;
  };
  /** Runs `work` (with trackSync's arguments: no closure per call), counted while it runs: a synchronous result or error leaves at once. */
  function begin<T>(work: (core?: EnvelopeCore, input?: unknown, options?: unknown) => T | Promise<T>, core?: EnvelopeCore, input?: unknown, options?: unknown): T | Promise<T> {
    if (closed) throw refusal();
    active++;
    let result: T | Promise<T>;
    try {
      result = work(core, input, options);
    } catch (error) {
      leave();
      throw error;
    }
    if (!(result instanceof Promise)) leave();
    return result;
  }
  function track<T>(work: () => T | Promise<T>): Promise<T> {
    let result: T | Promise<T>;
    try {
      result = begin(work);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!(result instanceof Promise)) return Promise.resolve(result);
    return result.then(
      (value) => {
        if (settled()) return value;
        wipeResult(value);
        throw refusal();
      },
      (error: unknown) => {
        throw settled() ? error : refusal();
      },
    );
  }
  function trackSync<I, O, T>(work: (core: EnvelopeCore, input: I, options: O) => T | Promise<T>, core: EnvelopeCore, input: I, options: O, what: string, discard: (value: T) => void): T {
    // The work and its arguments, not a closure per call: sealSync and openSync run once per database field.
    const result = begin(work as (core?: EnvelopeCore, input?: unknown, options?: unknown) => T | Promise<T>, core, input, options);
    if (!(result instanceof Promise)) return result;
    // The key was not in memory: the work loads it and finishes in the background; its result is not wanted.
    result.then(discard, () => {}).finally(leave);
    throw new KeyNotWarmError(what);
  }
  async function drain({ drain: wait = true }: CloseOptions = {}): Promise<CloseReport> {
    if (typeof wait !== 'boolean' && !(typeof wait === 'number' && wait >= 0)) throw new TypeError('"drain" expected a boolean or ms >= 0');
    closed = true;
    refusing = !wait;
    idle ??= new Promise<void>((done) => (active ? (drained = done) : done()));
    // A drain of some ms: what is still running when they are up is refused as it settles.
    const timer = typeof wait === 'number' ? setTimeout(() => (report.timedOut = refusing = true), wait) : undefined;
    await idle;
    clearTimeout(timer);
    return { ...report };
  }
  return { track, trackSync, drain };
}

/** Wipes what a refused call would have returned: plaintext bytes, or an open result's plaintext. */
function wipeResult(value: unknown): void {
  const plaintext = value instanceof Uint8Array ? value : (value as { plaintext?: unknown } | undefined)?.plaintext;
  if (plaintext instanceof Uint8Array) wipe(plaintext);
}

/** Creates the shared core of an envelope bound to one key provider. */
export function createEnvelopeCore(options: EnvelopeOptions): EnvelopeCore {
  const s = resolve(options);
  const { track, trackSync, drain } = tracker();
  const core: EnvelopeCore = {
    backend: s.backend,
    sealAead: s.crypto.aead,
    kms: s.kms,
    emit: s.emit,
    beginSeal: sealStarter(s),
    beginOpen: openStarter(s),
    track,
    trackSync: (work, input, options, what, discard) => trackSync(work, core, input, options, what, discard),
    async close(options) {
      const report = await drain(options);
      await s.encryptionCache?.close();
      s.decryptCache?.close();
      return report;
    },
  };
  return core;
}

/** Envelopes and their cores, so that kms-envelope/node can work on an Envelope it is handed. */
const cores = new WeakMap<object, EnvelopeCore>();

export function bindCore<T extends object>(envelope: T, core: EnvelopeCore): T {
  cores.set(envelope, core);
  return envelope;
}

/** The core of an envelope made by createEnvelope(); a TypeError for anything else. */
export function coreOf(envelope: unknown): EnvelopeCore {
  const core = typeof envelope === 'object' && envelope !== null ? cores.get(envelope) : undefined;
  if (!core) throw new TypeError(`"envelope" expected an Envelope from createEnvelope(), got ${describe(envelope)}`);
  return core;
}
