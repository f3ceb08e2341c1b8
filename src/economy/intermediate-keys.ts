/**
 * The plaintext intermediate keys of the key hierarchy, held in memory for a while (FORMAT.md §10.4,
 * README "Key hierarchy"). One KMS Decrypt per key version per process per TTL, and:
 *
 * - storm control: each entry's TTL has jitter, so a fleet started together does not expire
 *   together; one caller refreshes an entry ahead of its expiry while the others keep using it;
 *   one load per key version at a time (single flight); a cap on loads in flight;
 * - outage tolerance: when a load fails for an outage (KMS down or throttling), opening may use an
 *   entry past its TTL, up to `maxStaleMs`, never beyond; sealing uses only entries within their
 *   TTL, or past it by at most `sealGraceMs` when that entry's own refresh failed for an outage
 *   (never when the store said the version is missing, retired or shredded: that drops the
 *   entry). A failure that means revocation (the master key disabled or deleted) drops the
 *   partition's entries at once and is never answered from memory;
 * - a circuit breaker: after `breakerFailures` outage failures in a row, loads fail at once for
 *   `breakerCooldownMs` (then one is let through) instead of hammering a failing KMS.
 *
 * Time is monotonic (performance.now()), so a wall-clock step does not move a TTL. Every key is
 * wiped when it leaves: eviction, revocation, close().
 */
import { wipe } from '../core/bytes.ts';
import { ClosedError, KeyNotFoundError, KeyUnavailableError, KmsError, PartitionShreddedError } from '../core/errors.ts';
import { type HmacKeyState, wipeKeyState } from '../core/hkdf.ts';
import { Lru } from '../core/lru.ts';
import type { HierarchyEvent } from './events.ts';

export interface IntermediateKeyCacheOptions {
  /** How long a loaded key is used, ms; default 600000 (10 minutes). */
  ttlMs?: number;
  /** Each entry's TTL is shortened by a random fraction up to this; default 0.2. */
  jitter?: number;
  /** One caller starts a refresh this long before expiry, ms; default a tenth of the TTL. */
  refreshAheadMs?: number;
  /** Opening may use an expired key this long past its TTL while loads fail for an outage, ms; default 3600000. */
  maxStaleMs?: number;
  /** Loads (KMS Decrypts) in flight at once, across versions; default 4. */
  maxLoadsInFlight?: number;
  /** Keys held at once, least recently used evicted; default 10000. */
  maxEntries?: number;
  /**
   * Key versions held at once per partition (tenant), its own least recently used evicted first;
   * default 16. So one tenant's burst of versions cannot push other tenants' keys out.
   */
  maxEntriesPerPartition?: number;
  /**
   * Sealing may use a key version this long past its TTL, only while its refresh fails for an
   * outage (network, timeout, 5xx, throttling), ms; default 900000 (15 minutes: SECURITY.md
   * "Writing through a KMS outage"). During an outage a shred then takes up to TTL + this to reach
   * a process that missed its broadcast. 0: seals fail once the TTL ends, as before 0.4.
   */
  sealGraceMs?: number;
  /** Outage failures in a row that open the breaker; default 5. */
  breakerFailures?: number;
  /** How long an open breaker refuses loads, ms; default 5000. */
  breakerCooldownMs?: number;
}

export const INTERMEDIATE_KEY_CACHE_DEFAULTS: Required<IntermediateKeyCacheOptions> = {
  ttlMs: 600_000,
  jitter: 0.2,
  refreshAheadMs: 60_000,
  maxStaleMs: 3_600_000,
  sealGraceMs: 900_000,
  maxLoadsInFlight: 4,
  maxEntries: 10_000,
  maxEntriesPerPartition: 16,
  breakerFailures: 5,
  breakerCooldownMs: 5_000,
};

/** A loaded key version: the key and what is derived from it per suite (wiped with it). */
export interface LoadedKey {
  readonly key: Uint8Array;
  /** Per suite id: the suite's input key and its HKDF state. */
  readonly derived: Map<number, { key: Uint8Array; state: HmacKeyState | undefined }>;
}

interface Entry {
  readonly partition: string;
  readonly version: number;
  loaded: LoadedKey;
  /** Monotonic ms: used for new work until then. */
  expiresAt: number;
  refreshing: boolean;
  /** Its last refresh failed for an outage (sealing may then use it within the grace). */
  outage: boolean;
  /** Monotonic ms: no refresh is started before then (one try a second while the KMS fails). */
  retryAt: number;
}

/** What the cache tells its owner: a revocation seen here, a seal served in the grace. */
export interface CacheHooks {
  onRevoked?: (partition: string) => void;
  onSealGrace?: (partition: string, version: number) => void;
  /**
   * Whether the fleet's breaker decides instead of this process's (a reachable coordinator): then
   * loads are not paused here, so the KMS's return, seen by the fleet's probe, is used at once.
   */
  fleetBreaker?: () => boolean;
}

/** Why a load failed: an outage may be ridden out with stale keys, a revocation never. */
export type FailureClass = 'outage' | 'revoked' | 'other';

export interface CacheCounters {
  hits: number;
  misses: number;
  staleServed: number;
  loads: number;
  loadFailures: number;
  revocations: number;
  breakerOpen: number;
  /** Seals served with a key version past its TTL, within `sealGraceMs`, during an outage. */
  sealGraceServed: number;
}

export type Clock = () => number;

const monotonic: Clock = () => performance.now();

export class IntermediateKeyCache {
  readonly #options: Required<IntermediateKeyCacheOptions>;
  readonly #entries = new Lru<Entry>();
  readonly #flights = new Map<string, Promise<Entry>>();
  readonly #classify: (error: unknown) => FailureClass;
  readonly #now: Clock;
  readonly #random: () => number;
  readonly counters: CacheCounters = { hits: 0, misses: 0, staleServed: 0, loads: 0, loadFailures: 0, revocations: 0, breakerOpen: 0, sealGraceServed: 0 };
  #loadsInFlight = 0;
  readonly #loadQueue: (() => void)[] = [];
  #failuresInRow = 0;
  #breakerUntil = 0;
  #breakerOpened = false;
  #closed = false;
  /** The hierarchy's listeners (set by it): called on loads, stale keys served, revocations and the breaker, never on a hit. */
  events: ((event: HierarchyEvent) => void) | undefined = undefined;
  readonly #hooks: CacheHooks;

  constructor(options: IntermediateKeyCacheOptions, classify: (error: unknown) => FailureClass, now: Clock = monotonic, random: () => number = Math.random, hooks: CacheHooks = {}) {
    const ttl = options.ttlMs ?? INTERMEDIATE_KEY_CACHE_DEFAULTS.ttlMs;
    this.#options = { ...INTERMEDIATE_KEY_CACHE_DEFAULTS, refreshAheadMs: ttl / 10, ...options };
    for (const [name, value] of Object.entries(this.#options)) {
      if (typeof value !== 'number' || !(value >= 0)) throw new RangeError(`"${name}" must be a number >= 0, got ${String(value)}`);
    }
    if (this.#options.jitter >= 1) throw new RangeError('"jitter" must be below 1');
    this.#classify = classify;
    this.#now = now;
    this.#random = random;
    this.#hooks = hooks;
  }

  /**
   * The key, synchronously, when an entry is usable now (within its TTL; for opening, also a stale
   * one while the KMS is failing), else undefined. May start a refresh ahead of expiry.
   */
  peek(partition: string, version: number, purpose: 'seal' | 'open', load: () => Promise<Uint8Array>): LoadedKey | undefined {
    const id = entryId(partition, version);
    const entry = this.#entries.peek(id);
    if (!entry) return undefined;
    const now = this.#now();
    if (now < entry.expiresAt) {
      this.#entries.touch(id, entry);
      if (!entry.refreshing && now >= entry.expiresAt - this.#options.refreshAheadMs) this.#refresh(entry, load);
      this.counters.hits++;
      return entry.loaded;
    }
    if (purpose === 'open' && this.#failing(now) && now < entry.expiresAt + this.#options.maxStaleMs) {
      this.counters.staleServed++;
      this.events?.({ type: 'stale-served', partition, version });
      this.#retry(entry, now, load);
      return entry.loaded;
    }
    if (purpose === 'seal' && entry.outage && now < entry.expiresAt + this.#options.sealGraceMs) return this.#graced(entry, now, load);
    return undefined;
  }

  /** The key, loading it (once, for every concurrent caller) when no usable entry is held. */
  async get(partition: string, version: number, purpose: 'seal' | 'open', load: () => Promise<Uint8Array>): Promise<LoadedKey> {
    const held = this.peek(partition, version, purpose, load);
    if (held) return held;
    this.counters.misses++;
    const id = entryId(partition, version);
    try {
      return (await this.#load(id, partition, version, load)).loaded;
    } catch (error) {
      // An outage: an expired entry may still open, within the staleness bound.
      const entry = this.#entries.peek(id);
      if (!entry || this.#classify(error) !== 'outage') throw error;
      const now = this.#now();
      if (purpose === 'open' && now < entry.expiresAt + this.#options.maxStaleMs) {
        this.counters.staleServed++;
        this.events?.({ type: 'stale-served', partition, version });
        return entry.loaded;
      }
      entry.outage = true;
      if (purpose === 'seal' && now < entry.expiresAt + this.#options.sealGraceMs) return this.#graced(entry, now, load);
      throw error;
    }
  }

  /** Drops (and wipes) every entry of a partition, or all: revocation, shredding. */
  revoke(partition?: string): void {
    for (const [id, entry] of [...this.#entries.entries()]) {
      if (partition === undefined || entry.partition === partition) this.#drop(id, entry);
    }
  }

  /** Drops (and wipes) one version's entry: a retired version. */
  revokeVersion(partition: string, version: number): void {
    const id = entryId(partition, version);
    const entry = this.#entries.peek(id);
    if (entry) this.#drop(id, entry);
  }

  /** Versions held now, per partition (metrics). */
  versionsInUse(): Record<string, number[]> {
    const out: Record<string, number[]> = {};
    for (const [, entry] of this.#entries.entries()) (out[entry.partition] ??= []).push(entry.version);
    return out;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** For health(): whether loads are failing now (breaker open, or a failure since the last success), and the keys usable now. */
  state(): { breaker: 'open' | 'closed'; failing: boolean; fresh: number; stale: number } {
    const now = this.#now();
    let fresh = 0;
    let stale = 0;
    for (const [, entry] of this.#entries.entries()) {
      if (now < entry.expiresAt) fresh++;
      else if (now < entry.expiresAt + this.#options.maxStaleMs) stale++;
    }
    return { breaker: now < this.#breakerUntil ? 'open' : 'closed', failing: this.#failing(now), fresh, stale };
  }

  /** Whether a key of this version is usable now: within its TTL, or (loads failing) within its staleness bound. */
  holds(partition: string, version: number): boolean {
    const entry = this.#entries.peek(entryId(partition, version));
    if (entry === undefined) return false;
    const now = this.#now();
    return now < entry.expiresAt || (this.#failing(now) && now < entry.expiresAt + this.#options.maxStaleMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#flights.values()]);
    this.revoke();
  }

  #failing(now: number): boolean {
    return this.#failuresInRow > 0 || now < this.#breakerUntil;
  }

  /** A seal served past the TTL within the grace: counted, reported, and a refresh tried. */
  #graced(entry: Entry, now: number, load: () => Promise<Uint8Array>): LoadedKey {
    this.counters.sealGraceServed++;
    this.#hooks.onSealGrace?.(entry.partition, entry.version);
    this.events?.({ type: 'grace-seal', partition: entry.partition, version: entry.version });
    this.#retry(entry, now, load);
    return entry.loaded;
  }

  /** An expired entry in use during an outage: a refresh at most once a second, so the KMS's return is seen at once. */
  #retry(entry: Entry, now: number, load: () => Promise<Uint8Array>): void {
    if (entry.refreshing || now < entry.retryAt) return;
    entry.retryAt = now + 1_000;
    this.#refresh(entry, load);
  }

  #refresh(entry: Entry, load: () => Promise<Uint8Array>): void {
    entry.refreshing = true;
    this.#load(entryId(entry.partition, entry.version), entry.partition, entry.version, load).then(
      () => undefined,
      () => {
        entry.refreshing = false; // the next caller near expiry tries again
      },
    );
  }

  #load(id: string, partition: string, version: number, load: () => Promise<Uint8Array>): Promise<Entry> {
    let flight = this.#flights.get(id);
    if (!flight) {
      flight = this.#loadOnce(id, partition, version, load).finally(() => this.#flights.delete(id));
      this.#flights.set(id, flight);
    }
    return flight;
  }

  async #loadOnce(id: string, partition: string, version: number, load: () => Promise<Uint8Array>): Promise<Entry> {
    if (this.#closed) throw new ClosedError();
    const now = this.#now();
    if (now < this.#breakerUntil && !this.#hooks.fleetBreaker?.()) {
      throw new KeyUnavailableError(`the KMS is failing: loads of intermediate keys are paused for ${Math.ceil(this.#breakerUntil - now)} ms`);
    }
    await this.#slot();
    let key: Uint8Array;
    const started = this.#now();
    try {
      // Queued behind the cap while close() began without draining: refused, not loaded.
      if (this.#closed) throw new ClosedError();
      this.counters.loads++;
      key = await load();
    } catch (error) {
      if (!(error instanceof ClosedError)) {
        this.counters.loadFailures++;
        this.events?.({ type: 'key-load', partition, version, durationMs: this.#now() - started, ok: false, errorCode: errorCodeOf(error) });
        this.#failed(error, partition, id);
      }
      throw error;
    } finally {
      this.#release();
    }
    this.#failuresInRow = 0;
    this.events?.({ type: 'key-load', partition, version, durationMs: this.#now() - started, ok: true });
    if (this.#breakerOpened) {
      this.#breakerOpened = false;
      this.events?.({ type: 'breaker', scope: 'kms', state: 'closed' });
    }
    if (this.#closed) {
      wipe(key);
      throw new ClosedError();
    }
    const ttl = this.#options.ttlMs * (1 - this.#random() * this.#options.jitter);
    const old = this.#entries.peek(id);
    const entry: Entry = { partition, version, loaded: { key, derived: new Map() }, expiresAt: this.#now() + ttl, refreshing: false, outage: false, retryAt: 0 };
    if (old) this.#drop(id, old);
    this.#entries.set(id, entry);
    this.#evictWithin(partition);
    while (this.#entries.size > this.#options.maxEntries) {
      const [oldest, evicted] = this.#entries.oldest()!;
      this.#drop(oldest, evicted);
    }
    return entry;
  }

  /** A partition over its own cap gives up its least recently used version, not another tenant's. */
  #evictWithin(partition: string): void {
    const mine = [...this.#entries.entries()].filter(([, e]) => e.partition === partition);
    for (let i = 0; mine.length - i > this.#options.maxEntriesPerPartition; i++) this.#drop(mine[i]![0], mine[i]![1]);
  }

  #failed(error: unknown, partition: string, id: string): void {
    const kind = this.#classify(error);
    if (kind === 'revoked') {
      this.counters.revocations++;
      this.revoke(partition);
      this.events?.({ type: 'revoked', partition, errorCode: errorCodeOf(error) });
      this.#hooks.onRevoked?.(partition);
      return;
    }
    const entry = this.#entries.peek(id);
    if (kind !== 'outage') {
      // The store said the version is missing (or retired): it is never served again.
      if (entry && error instanceof KeyNotFoundError) this.#drop(id, entry);
      return;
    }
    if (entry) entry.outage = true;
    if (++this.#failuresInRow >= this.#options.breakerFailures) {
      this.counters.breakerOpen++;
      this.#breakerOpened = true;
      this.events?.({ type: 'breaker', scope: 'kms', state: 'open' });
      this.#breakerUntil = this.#now() + this.#options.breakerCooldownMs;
      this.#failuresInRow = this.#options.breakerFailures - 1; // one more failure after the cooldown reopens it
    }
  }

  async #slot(): Promise<void> {
    if (this.#loadsInFlight < Math.max(1, this.#options.maxLoadsInFlight)) {
      this.#loadsInFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.#loadQueue.push(resolve));
  }

  #release(): void {
    const next = this.#loadQueue.shift();
    if (next) next();
    else this.#loadsInFlight--;
  }

  #drop(id: string, entry: Entry): void {
    if (this.#entries.peek(id) === entry) this.#entries.delete(id);
    wipe(entry.loaded.key);
    for (const derived of entry.loaded.derived.values()) {
      wipe(derived.key);
      wipeKeyState(derived.state);
    }
    entry.loaded.derived.clear();
  }
}

/** The stable code of a failure (the KMS's own code first), for events; never its message. */
export function errorCodeOf(error: unknown): string {
  const e = error as { kmsCode?: unknown; code?: unknown; name?: unknown } | null;
  if (typeof e?.kmsCode === 'string' && e.kmsCode) return e.kmsCode;
  if (typeof e?.code === 'string') return e.code;
  return typeof e?.name === 'string' ? e.name : 'ERROR';
}

/** One key version of one partition, as a Map key. */
export function entryId(partition: string, version: number): string {
  return `${version}\u0000${partition}`;
}

/** Tencent's (API 3.0, and legacy 4530 not found, 4550 disabled) and LocalKms's answers that mean the master key is gone or refused: revocation. */
export function classifyKmsFailure(error: unknown): FailureClass {
  if (error instanceof KeyUnavailableError) return 'outage';
  if (error instanceof PartitionShreddedError) return 'revoked'; // a tombstone: the partition's keys go at once
  if (!(error instanceof KmsError)) return 'other';
  const code = error.kmsCode ?? '';
  if (/^ResourceUnavailable\.(Cmk|Key)/.test(code) || code === 'ResourceNotFound' || code === '4550' || code === '4530' || code === 'UnauthorizedOperation') return 'revoked';
  if (code.startsWith('AuthFailure') || code.startsWith('InvalidParameter')) return 'other';
  return 'outage'; // throttling, internal errors, timeouts, network
}
