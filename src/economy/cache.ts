/**
 * Keeping the KMS off the hot path, safely.
 *
 * EncryptionCache reuses a data key for several messages, within limits on messages, bytes and age,
 * partitioned by suite and encryption context (a key is never shared across contexts). Reuse is
 * safe with Cobblestone: every message derives its own AES key and nonce from a fresh 192-bit salt;
 * the limits bound what one leaked data key exposes and how long it lives in memory. Concurrent
 * misses share one GenerateDataKey (single flight); a failure reaches every waiter and is not cached.
 *
 * DecryptCache remembers data keys that Decrypt returned, keyed by a hash of the wrapped key and
 * the context, for a time, so opening many messages sealed under one data key costs one Decrypt.
 *
 * Every cached plaintext key is wiped on eviction, expiry and close(). Callers get copies.
 *
 * A waiter whose signal aborts leaves a shared KMS call at once (rejecting with the signal's
 * reason); the call itself is told to stop (its own signal aborts) only when every waiter has left.
 */
import { abortable, throwIfAborted } from '../core/abort.ts';
import type { CryptoBackend } from '../core/backend.ts';
import { equalPublicBytes, wipe } from '../core/bytes.ts';
import { ClosedError, LimitExceededError } from '../core/errors.ts';
import { copyKeyState, type HmacKeyState, wipeKeyState } from '../core/hkdf.ts';
import { RecentList } from '../core/recent.ts';
import type { EnvelopeEvent } from './events.ts';
import { Lru } from '../core/lru.ts';

export interface EncryptionCacheOptions {
  /** Milliseconds a data key may be used after it was generated; default 300000 (5 minutes). */
  maxAge?: number;
  /** Messages per data key; default 1000. */
  maxMessages?: number;
  /** Plaintext bytes per data key; default 2^32 (4 GiB). */
  maxBytes?: number;
  /** Data keys held at once (one per suite and context in use), least recently used evicted; default 1000. */
  maxEntries?: number;
}

export interface DecryptCacheOptions {
  /** Milliseconds a decrypted data key is kept; default 60000. */
  ttl?: number;
  /** Keys held at once, least recently used evicted; default 10000. */
  maxEntries?: number;
}

export const ENCRYPTION_CACHE_DEFAULTS: Required<EncryptionCacheOptions> = {
  maxAge: 5 * 60_000,
  maxMessages: 1000,
  maxBytes: 2 ** 32,
  maxEntries: 1000,
};

export const DECRYPT_CACHE_DEFAULTS: Required<DecryptCacheOptions> = { ttl: 60_000, maxEntries: 10_000 };

type Emit = (event: EnvelopeEvent) => void;

/** What createEnvelope({ cache }) takes: made by encryptionCache(). */
export interface EncryptionCacheChoice {
  readonly kind: 'encryption-cache';
  readonly options: Readonly<EncryptionCacheOptions>;
}

/** What createEnvelope({ decryptCache }) takes: made by decryptCache(). */
export interface DecryptCacheChoice {
  readonly kind: 'decrypt-cache';
  readonly options: Readonly<DecryptCacheOptions>;
}

/** The caches the factories below made, by the choice they returned (module-private, so the classes stay internal). */
const makers = new WeakMap<object, (emit: Emit) => unknown>();

/**
 * An encryption cache: reuse each data key for several messages, within limits on messages, bytes
 * and age, never across contexts (opt-in). `createEnvelope({ kms, cache: encryptionCache() })`;
 * the defaults are ENCRYPTION_CACHE_DEFAULTS. An envelope without it carries none of its code.
 */
export function encryptionCache(options: EncryptionCacheOptions = {}): EncryptionCacheChoice {
  const choice: EncryptionCacheChoice = Object.freeze({ kind: 'encryption-cache', options: Object.freeze({ ...options }) });
  makers.set(choice, (emit) => new EncryptionCache(options, emit));
  return choice;
}

/** A decrypt cache: remember decrypted data keys for a while (opt-in). `createEnvelope({ kms, decryptCache: decryptCache({ ttl }) })`. */
export function decryptCache(options: DecryptCacheOptions = {}): DecryptCacheChoice {
  const choice: DecryptCacheChoice = Object.freeze({ kind: 'decrypt-cache', options: Object.freeze({ ...options }) });
  makers.set(choice, (emit) => new DecryptCache(options, emit));
  return choice;
}

/** The cache a choice stands for, made for one envelope; a TypeError naming the factory for anything else (`cache: true` before 0.3). */
export function cacheFrom<C>(choice: unknown, kind: 'encryption-cache' | 'decrypt-cache', emit: Emit): C | undefined {
  if (choice === undefined) return undefined;
  const make = typeof choice === 'object' && choice !== null && (choice as { kind?: unknown }).kind === kind ? makers.get(choice) : undefined;
  if (!make) {
    const [option, factory] = kind === 'encryption-cache' ? ['cache', 'encryptionCache'] : ['decryptCache', 'decryptCache'];
    throw new TypeError(`"${option}" expected ${factory}(options) (import { ${factory} } from 'kms-envelope'), got ${JSON.stringify(choice)}`);
  }
  return make(emit) as C;
}

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !(value > 0)) throw new RangeError(`"${name}" must be a positive number, got ${value}`);
  return value;
}

/** A generated data key with what every message under it shares. */
export interface CachedKeyMaterial<T> {
  key: Uint8Array;
  /** The key's precomputed HKDF state, where the backend has one: key material, wiped with the key. */
  keyState?: HmacKeyState | undefined;
  /** Whatever the caller wants to keep with the key (the encoded header). */
  extra: T;
}

interface Entry<T> extends CachedKeyMaterial<T> {
  created: number;
  messages: number;
  bytes: number;
  retired: boolean;
}

/** One message's use of a cached key: a private copy of the key, and a byte budget to draw on. */
export interface Lease<T> {
  /** A copy: the caller wipes it. */
  readonly key: Uint8Array;
  /** A copy of the key's HKDF state, if any: the caller wipes it. */
  readonly keyState: HmacKeyState | undefined;
  /**
   * True when `key` and `keyState` are the cache's own (see tryAcquire): the caller uses them before
   * it next yields (await) and never wipes them.
   */
  readonly borrowed: boolean;
  readonly extra: T;
  /** For streams of unknown length: reserves more bytes, or throws LimitExceededError. */
  reserve(bytes: number): void;
}

export class EncryptionCache<T> {
  readonly #options: Required<EncryptionCacheOptions>;
  readonly #entries = new Lru<Entry<T>>();
  readonly #inflight = new Map<string, Flight<void>>();
  readonly #emit: Emit;
  readonly #now: () => number;
  #closed = false;

  constructor(options: EncryptionCacheOptions, emit: Emit, now: () => number = Date.now) {
    this.#options = { ...ENCRYPTION_CACHE_DEFAULTS, ...options };
    positive(this.#options.maxAge, 'cache.maxAge');
    positive(this.#options.maxMessages, 'cache.maxMessages');
    positive(this.#options.maxBytes, 'cache.maxBytes');
    positive(this.#options.maxEntries, 'cache.maxEntries');
    this.#emit = emit;
    this.#now = now;
  }

  /**
   * Reserves one message (of `bytes`, or of unknown length) under the partition's current key,
   * generating a key when there is none or it is spent. A message larger than maxBytes gets a key
   * of its own that is never cached.
   */
  async acquire(
    partition: string,
    bytes: number | undefined,
    generate: (signal: AbortSignal | undefined) => Promise<CachedKeyMaterial<T>>,
    signal?: AbortSignal,
  ): Promise<Lease<T>> {
    throwIfAborted(signal);
    const need = bytes ?? 0;
    if (need > this.#options.maxBytes) {
      this.#emit({ type: 'cache-miss', cache: 'encrypt' });
      const own = await generate(signal);
      return { key: own.key, keyState: own.keyState, borrowed: false, extra: own.extra, reserve: () => {} };
    }
    let missed = false;
    for (;;) {
      if (this.#closed) throw new ClosedError();
      const entry = this.#entries.peek(partition);
      if (entry) {
        const reason = this.#spent(entry, need);
        if (!reason) {
          if (!missed) this.#emit({ type: 'cache-hit', cache: 'encrypt' });
          return this.#take(partition, entry, need);
        }
        this.#retire(partition, entry, reason);
      }
      if (!missed) {
        missed = true;
        this.#emit({ type: 'cache-miss', cache: 'encrypt' });
      }
      let flight = this.#inflight.get(partition);
      if (!flight) {
        const controller = new AbortController();
        const started: Flight<void> = {
          controller,
          waiters: 0,
          promise: generate(controller.signal)
            .then((material) => {
              if (this.#closed) {
                wipe(material.key);
                wipeKeyState(material.keyState);
                return;
              }
              this.#entries.set(partition, { ...material, created: this.#now(), messages: 0, bytes: 0, retired: false });
              this.#evictOverCapacity();
            })
            .finally(() => {
              if (this.#inflight.get(partition) === started) this.#inflight.delete(partition);
            }),
        };
        started.promise.catch(() => {}); // a flight every waiter left may still fail: nobody waits for it
        flight = started;
        this.#inflight.set(partition, flight);
      }
      // A failure reaches every waiter, and nothing is cached.
      await waitFor(flight, signal, () => {
        if (this.#inflight.get(partition) === flight) this.#inflight.delete(partition);
      });
    }
  }

  /**
   * The hit path of acquire(), synchronous: a lease on the partition's current key if it has one
   * with room for `bytes`, else undefined (and nothing reserved). Emits only on a hit. `borrow`:
   * the lease holds the cache's own key and state, not copies; safe only for a caller that is done
   * with them before it yields and runs no user code meanwhile (a reentrant call could retire and
   * wipe them), so the cache then leaves the hit event, which calls a listener, to the caller.
   */
  tryAcquire(partition: string, bytes: number | undefined, borrow = false): Lease<T> | undefined {
    const need = bytes ?? 0;
    if (this.#closed || need > this.#options.maxBytes) return undefined;
    const entry = this.#entries.peek(partition);
    if (!entry || this.#spent(entry, need)) return undefined;
    const lease = this.#take(partition, entry, need, borrow);
    if (!borrow) this.#emit({ type: 'cache-hit', cache: 'encrypt' });
    return lease;
  }

  /** Waits for key generations under way, then wipes every cached key. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inflight.values()].map((flight) => flight.promise));
    for (const [partition, entry] of [...this.#entries.entries()]) this.#retire(partition, entry, 'close');
  }

  get size(): number {
    return this.#entries.size;
  }

  #take(partition: string, entry: Entry<T>, need: number, borrow = false): Lease<T> {
    entry.messages++;
    entry.bytes += need;
    this.#entries.touch(partition, entry);
    return this.#lease(entry, borrow);
  }

  #lease(entry: Entry<T>, borrow: boolean): Lease<T> {
    const maxBytes = this.#options.maxBytes;
    return {
      key: borrow ? entry.key : entry.key.slice(),
      keyState: borrow ? entry.keyState : copyKeyState(entry.keyState),
      borrowed: borrow,
      extra: entry.extra,
      reserve: (bytes) => {
        if (entry.bytes + bytes > maxBytes) {
          throw new LimitExceededError(
            `the cached data key's budget of ${maxBytes} bytes ran out mid-stream: pass the stream's size, raise cache.maxBytes, or seal it without the cache`,
          );
        }
        entry.bytes += bytes;
      },
    };
  }

  #spent(entry: Entry<T>, bytes: number): 'messages' | 'bytes' | 'age' | undefined {
    if (entry.messages >= this.#options.maxMessages) return 'messages';
    if (entry.bytes + bytes > this.#options.maxBytes) return 'bytes';
    if (this.#now() - entry.created >= this.#options.maxAge) return 'age';
    return undefined;
  }

  #retire(partition: string, entry: Entry<T>, reason: 'messages' | 'bytes' | 'age' | 'capacity' | 'close'): void {
    if (this.#entries.peek(partition) === entry) this.#entries.delete(partition);
    if (entry.retired) return;
    entry.retired = true;
    wipe(entry.key);
    wipeKeyState(entry.keyState);
    this.#emit({ type: 'cache-evict', cache: 'encrypt', reason });
  }

  #evictOverCapacity(): void {
    while (this.#entries.size > this.#options.maxEntries) {
      const [partition, entry] = this.#entries.oldest()!;
      this.#retire(partition, entry, 'capacity');
    }
  }
}

/**
 * Identifies a wrapped data key under a context (SHA-256 of the length-prefixed parts), without
 * keeping the blob itself.
 */
function decryptCacheId(backend: CryptoBackend, parts: Uint8Array[]): string {
  let size = 0;
  for (const bytes of parts) size += 4 + bytes.length;
  const all = new Uint8Array(size);
  const view = new DataView(all.buffer);
  let o = 0;
  for (const bytes of parts) {
    view.setUint32(o, bytes.length); // length-prefixed, so no two part lists collide
    all.set(bytes, o + 4);
    o += 4 + bytes.length;
  }
  return backend.sha256Base64(all);
}

/**
 * decryptCacheId with a memo of the last few ids: the messages of one cached data key share their
 * wrapped key and context, and comparing them again costs a fraction of hashing them.
 */
export class DecryptCacheIds {
  readonly #backend: CryptoBackend;
  readonly #recent = new RecentList<{ suite: number; wrapped: Uint8Array; context: Uint8Array; id: string }>(8);

  constructor(backend: CryptoBackend) {
    this.#backend = backend;
  }

  /** `context` is a canonical encoding, never written to: it is kept by reference. */
  id(suite: number, wrapped: Uint8Array, context: Uint8Array): string {
    const known = this.#recent.find(
      (r) => r.suite === suite && equalPublicBytes(r.wrapped, wrapped) && (r.context === context || equalPublicBytes(r.context, context)),
    );
    if (known) return known.id;
    const id = decryptCacheId(this.#backend, [Uint8Array.of(suite), wrapped, context]);
    this.#recent.add({ suite, wrapped: wrapped.slice(), context, id });
    return id;
  }
}

/** A data key as the decrypt cache hands it out: copies, which the caller wipes, unless borrowed. */
export interface RememberedKey {
  key: Uint8Array;
  keyState: HmacKeyState | undefined;
  /** The cache's own key and state (see DecryptCache.get): used before the caller yields, never wiped. */
  borrowed: boolean;
}

interface Remembered {
  key: Uint8Array;
  keyState: HmacKeyState | undefined;
  expires: number;
}

export class DecryptCache {
  readonly #options: Required<DecryptCacheOptions>;
  readonly #entries = new Lru<Remembered>();
  readonly #emit: Emit;
  readonly #now: () => number;
  #ids: DecryptCacheIds | undefined;

  constructor(options: DecryptCacheOptions, emit: Emit, now: () => number = Date.now) {
    this.#options = { ...DECRYPT_CACHE_DEFAULTS, ...options };
    positive(this.#options.ttl, 'decryptCache.ttl');
    positive(this.#options.maxEntries, 'decryptCache.maxEntries');
    this.#emit = emit;
    this.#now = now;
  }

  /**
   * The id a wrapped key is remembered under (decryptCacheId, memoised). Here rather than in the
   * engine, so that an envelope without a decrypt cache carries no hashing of wrapped keys.
   */
  id(backend: CryptoBackend, suite: number, wrapped: Uint8Array, context: Uint8Array): string {
    return (this.#ids ??= new DecryptCacheIds(backend)).id(suite, wrapped, context);
  }

  /**
   * A copy of the remembered key, or undefined (expired entries are wiped on the way). `borrow`:
   * the cache's own key and its HKDF state instead, for a caller that is done with them before it
   * yields and runs no user code meanwhile; the caller then emits the hit event itself, after.
   */
  get(id: string, borrow = false): RememberedKey | undefined {
    const entry = this.#entries.peek(id);
    if (entry && this.#now() >= entry.expires) {
      this.#drop(id, entry, 'age');
      this.#emit({ type: 'cache-miss', cache: 'decrypt' });
      return undefined;
    }
    if (!entry) {
      this.#emit({ type: 'cache-miss', cache: 'decrypt' });
      return undefined;
    }
    this.#entries.touch(id, entry);
    if (borrow) return { key: entry.key, keyState: entry.keyState, borrowed: true };
    this.#emit({ type: 'cache-hit', cache: 'decrypt' });
    return { key: entry.key.slice(), keyState: undefined, borrowed: false };
  }

  /** Remembers `key` (and its state), taking ownership: wiped on eviction, expiry and close(). */
  set(id: string, key: Uint8Array, keyState?: HmacKeyState): void {
    const old = this.#entries.peek(id);
    if (old) this.#drop(id, old, 'capacity');
    this.#entries.set(id, { key, keyState, expires: this.#now() + this.#options.ttl });
    while (this.#entries.size > this.#options.maxEntries) {
      const [oldest, entry] = this.#entries.oldest()!;
      this.#drop(oldest, entry, 'capacity');
    }
  }

  close(): void {
    for (const [id, entry] of [...this.#entries.entries()]) this.#drop(id, entry, 'close');
  }

  get size(): number {
    return this.#entries.size;
  }

  #drop(id: string, entry: Remembered, reason: 'age' | 'capacity' | 'close'): void {
    this.#entries.delete(id);
    wipe(entry.key);
    wipeKeyState(entry.keyState);
    this.#emit({ type: 'cache-evict', cache: 'decrypt', reason });
  }
}

/** A KMS call shared by its waiters; its signal aborts once every waiter has left by aborting. */
interface Flight<T> {
  readonly promise: Promise<T>;
  /** Undefined when the flight's starter gave no signal: it never leaves early, so nothing aborts the flight. */
  readonly controller: AbortController | undefined;
  waiters: number;
}

/**
 * Waits for a shared flight, or until `signal` aborts (rejecting with its reason). The last waiter
 * to leave by aborting aborts the flight's own signal and calls `abandon` (to forget the flight, so
 * a later caller starts afresh instead of inheriting the abort).
 */
async function waitFor<T>(flight: Flight<T>, signal: AbortSignal | undefined, abandon: () => void): Promise<T> {
  flight.waiters++;
  try {
    return await abortable(flight.promise, signal);
  } catch (error) {
    if (signal?.aborted && error === signal.reason && flight.waiters === 1) {
      abandon();
      flight.controller?.abort(signal.reason);
    }
    throw error;
  } finally {
    flight.waiters--;
  }
}

/**
 * Concurrent identical Decrypts share one KMS call: each waiter gets its own copy of the key, and
 * the shared one is wiped once the last waiter has copied it (or left).
 */
export class DecryptFlights {
  readonly #flights = new Map<string, Flight<Uint8Array>>();

  /**
   * `decrypt` gets a signal only when the caller gave one: a flight started without one has a
   * waiter that never leaves early, so no AbortController, listener or timer is spent on it.
   */
  async run(id: string, decrypt: (signal: AbortSignal | undefined) => Promise<Uint8Array>, signal?: AbortSignal): Promise<Uint8Array> {
    throwIfAborted(signal);
    let flight = this.#flights.get(id);
    if (!flight) {
      const controller = signal ? new AbortController() : undefined;
      flight = { promise: decrypt(controller?.signal), controller, waiters: 0 };
      flight.promise.catch(() => {}); // a flight every waiter left may still fail: nobody waits for it
      this.#flights.set(id, flight);
    }
    const shared = flight;
    try {
      return (await waitFor(shared, signal, () => {})).slice();
    } finally {
      if (shared.waiters === 0) {
        if (this.#flights.get(id) === shared) this.#flights.delete(id);
        shared.promise.then(wipe, () => {});
      }
    }
  }

  get size(): number {
    return this.#flights.size;
  }
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { decryptCacheId };
