/**
 * The versions of a hierarchy's intermediate keys in this process: which version of a partition is
 * active, loading a version through the KMS (one Decrypt per version per TTL, in the cache of
 * economy/intermediate-keys.ts), creating one (one GenerateDataKey, the record written to the
 * store), and the suite keys derived from a loaded version for the engine and the blind indexes.
 */
import { utf8, wipe } from '../core/bytes.ts';
import { type CanonicalContext, canonicalContext } from '../core/context.ts';
import { KeyNotFoundError, KeyUnavailableError, KmsError, PartitionShreddedError } from '../core/errors.ts';
import type { CryptoBackend } from '../core/backend.ts';
import type { IntermediateKeyRef } from '../core/header.ts';
import type { SuiteKey } from '../core/key-source.ts';
import type { Suite } from '../core/suites.ts';
import { FLEET_REFUSED_WAIT_MS, type FleetLink, fleetName } from '../economy/coordinator.ts';
import { classifyKmsFailure, entryId as versionId, errorCodeOf, type IntermediateKeyCache, type LoadedKey } from '../economy/intermediate-keys.ts';
import type { HierarchyEvent } from '../economy/events.ts';
import type { KeyProvider } from '../kms/key-provider.ts';
import { checkStoredKey, type KeyStore, type StoredKey } from './key-store.ts';
import type { WorkInFlight } from '../core/work-in-flight.ts';
import { KeyVersionRetiredError } from './retire.ts';
import type { ShredGuard } from './shred.ts';
import type { HierarchyMetrics } from './types.ts';

const INTERMEDIATE_KEY_LENGTH = 32;

/** The KMS context an intermediate key is bound to: a blob moved to another partition or version does not decrypt. */
export function kmsContext(partition: string, version: number): CanonicalContext {
  return canonicalContext({ 'kms-envelope': 'intermediate-key', partition, version: String(version) });
}

/** What the versions of a hierarchy work with, resolved once from its options. */
export interface KeyVersionsSettings {
  readonly store: KeyStore;
  readonly resolve: (partition: string) => KeyProvider;
  readonly backend: CryptoBackend;
  readonly now: () => number;
  readonly cache: IntermediateKeyCache;
  /** How long the active version of a partition is remembered, ms. */
  readonly activeTtl: number;
  readonly guard: ShredGuard;
  /** The hierarchy's listeners: KMS calls and creations (the cache reports loads). */
  readonly emit: (event: HierarchyEvent) => void;
  /** The calls that wait for the store or the KMS: close() drains or refuses them. */
  readonly work: WorkInFlight;
  /** Called when this process created a version (its record won): the admin audit. */
  readonly created: (key: StoredKey) => void;
  /** The fleet's coordinator, through its link (timeouts, fallback); undefined: this process alone. */
  readonly fleet: FleetLink | undefined;
  readonly creationLeaseMs: number;
  /** How long an outage opens the fleet breaker, ms (the cache's breakerCooldownMs). */
  readonly breakerCooldownMs: number;
}

/** The fleet breaker polls the KMS at most this often while it is open, ms. */
const PROBE_INTERVAL_MS = 1_000;


type KmsAction = 'GenerateDataKey' | 'Decrypt';

export class KeyVersions {
  readonly #s: KeyVersionsSettings;
  readonly #active = new Map<string, { version: number; until: number }>();
  /**
   * Versions this process is creating (version 1 on first use, or a rotation's), until their
   * plaintext is in the cache: one creation each, and no Decrypt of a key this process holds.
   */
  readonly #creating = new Map<string, Promise<StoredKey>>();
  #versionsCreated = 0;
  readonly #kmsCalls: HierarchyMetrics['kmsCalls'] = {
    GenerateDataKey: { ok: 0, failed: 0, throttled: 0 },
    Decrypt: { ok: 0, failed: 0, throttled: 0 },
  };

  constructor(settings: KeyVersionsSettings) {
    this.#s = settings;
  }

  /** Loads a version straight through the KMS (not the cache): the caller owns the key and wipes it. */
  async loadVersion(partition: string, version: number): Promise<Uint8Array> {
    const { store, guard } = this.#s;
    // The tombstone with the record: a version up to it is never used, whatever the store holds.
    const [stored, shredded] = await Promise.all([store.getVersion(partition, version), guard.tombstone(partition)]);
    if (shredded !== undefined && version <= shredded) throw new PartitionShreddedError(partition, shredded, 'open');
    if (!stored) throw new KeyNotFoundError(partition, version);
    checkStoredKey(stored, `key store record of partition ${JSON.stringify(partition)} version ${version}`);
    if (stored.partition !== partition || stored.version !== version) throw new KeyNotFoundError(partition, version);
    // Its wrapped key is deleted: never served again, whatever else the store or a cache holds.
    if (stored.state === 'retired') throw new KeyVersionRetiredError(partition, version);
    const kms = this.#s.resolve(partition);
    if (stored.provider !== kms.id) {
      throw new KmsError(`intermediate key ${version} of partition ${JSON.stringify(partition)} was wrapped by key provider "${stored.provider}", not "${kms.id}"`);
    }
    const key = await this.#guarded(kms.id, 'Decrypt', (probe) =>
      kms.decryptDataKey({ keySpec: 'AES_256', keyId: stored.keyId, ciphertextBlob: stored.ciphertextBlob, context: kmsContext(partition, version), ...probe }),
    );
    if (!(key instanceof Uint8Array) || key.length !== INTERMEDIATE_KEY_LENGTH) {
      if (key instanceof Uint8Array) wipe(key);
      throw new KmsError('key provider returned an intermediate key of the wrong length');
    }
    return key;
  }

  /** Creates `version` of a partition; when another process won the race, its record is the one returned. */
  createVersion(partition: string, version: number): Promise<StoredKey> {
    const id = versionId(partition, version);
    let creation = this.#creating.get(id);
    if (creation) return creation;
    creation = this.#createVersionOnce(partition, version);
    // Handles the failure for the map only: the creation's callers see it.
    const forget = (): void => {
      if (this.#creating.get(id) === creation) this.#creating.delete(id);
    };
    creation.then(forget, forget);
    this.#creating.set(id, creation);
    return creation;
  }

  /** The active version this process knows and has not let expire. */
  knownActive(partition: string): number | undefined {
    const known = this.#active.get(partition);
    return known && this.#s.now() < known.until ? known.version : undefined;
  }

  /** The active version of a partition, from memory, else the store (creating version 1 where none exists). */
  async activeVersion(partition: string): Promise<number> {
    const known = this.knownActive(partition);
    if (known !== undefined) return known;
    return this.readActive(partition);
  }

  /**
   * The active version of a partition read from the store now (creating version 1 where none
   * exists), remembered for activeTtl: a rotation by another process is seen at once.
   */
  async readActive(partition: string): Promise<number> {
    const { store, guard } = this.#s;
    const [active0, shredded] = await Promise.all([store.getActive(partition), guard.tombstone(partition)]);
    let found = active0 && (shredded === undefined || active0.version > shredded) ? active0 : undefined;
    if (!found) {
      // A creation by this process may have ended while the read was out: the read is stale.
      const created = this.knownActive(partition);
      if (created !== undefined) return created;
      // A shredded partition gets no new key unless it is re-created (recreate()).
      await guard.checkCreate(partition, shredded);
      // One creation per partition per process; the store settles races between processes.
      found = await this.createVersion(partition, 1);
    }
    this.#active.set(partition, { version: found.version, until: this.#s.now() + this.#s.activeTtl });
    return found.version;
  }

  /** The active version's suite key for sealing, synchronously when it is in memory. */
  sealKey(partition: string, suite: Suite): SuiteKey | Promise<SuiteKey> {
    const known = this.knownActive(partition);
    if (known !== undefined) return this.keyFor({ partition, version: known }, suite, 'seal');
    this.#s.guard.checkSeal(partition);
    this.#s.work.checkOpen();
    return this.#s.work.track(this.activeVersion(partition).then((version) => this.#keyOrLoad({ partition, version }, suite, 'seal')));
  }

  /** A version's suite key, synchronously when it is in memory; a load is tracked (close() drains or refuses it). */
  keyFor(ref: IntermediateKeyRef, suite: Suite, purpose: 'seal' | 'open'): SuiteKey | Promise<SuiteKey> {
    this.#s.guard.checkKnown(ref.partition, ref.version);
    const load = (): Promise<Uint8Array> => this.loadVersion(ref.partition, ref.version);
    const held = this.#s.cache.peek(ref.partition, ref.version, purpose, load);
    if (held) return this.#suiteKey(held, ref, suite, true);
    this.#s.work.checkOpen();
    return this.#s.work.track(this.#loadKey(ref, suite, purpose, load));
  }

  /** keyFor() within a call already tracked. */
  #keyOrLoad(ref: IntermediateKeyRef, suite: Suite, purpose: 'seal' | 'open'): SuiteKey | Promise<SuiteKey> {
    this.#s.guard.checkKnown(ref.partition, ref.version);
    const load = (): Promise<Uint8Array> => this.loadVersion(ref.partition, ref.version);
    const held = this.#s.cache.peek(ref.partition, ref.version, purpose, load);
    return held ? this.#suiteKey(held, ref, suite, true) : this.#loadKey(ref, suite, purpose, load);
  }

  #loadKey(ref: IntermediateKeyRef, suite: Suite, purpose: 'seal' | 'open', load: () => Promise<Uint8Array>): Promise<SuiteKey> {
    const loadKey = (): Promise<SuiteKey> => this.#s.cache.get(ref.partition, ref.version, purpose, load).then((loaded) => this.#suiteKey(loaded, ref, suite, false));
    // The store shows a new version before createVersion returns; until this process's creation
    // has handed its plaintext to the cache, loading that version would Decrypt a key it holds.
    const creation = this.#creating.get(versionId(ref.partition, ref.version));
    return creation ? creation.then(loadKey, loadKey) : loadKey();
  }

  /** Adds a version that becomes active for new writes; the previous ones become decrypt-only. */
  async rotate(partition: string): Promise<StoredKey> {
    const { store, guard } = this.#s;
    const [versions, shredded] = await Promise.all([store.listVersions(partition), guard.tombstone(partition)]);
    const last = versions.at(-1)?.version ?? 0;
    if (shredded !== undefined ? last <= shredded : last === 0) await guard.checkCreate(partition, shredded);
    const next = last + 1;
    const created = await this.createVersion(partition, next);
    for (const old of versions) if (old.state === 'active') await store.setState(partition, old.version, 'decrypt-only');
    this.#active.delete(partition);
    return created;
  }

  /**
   * Keeps a partition's active version usable synchronously (hierarchy.keepWarm): its active
   * version read again from the store when it would be forgotten within `aheadMs`, and its key
   * peeked, which starts the cache's one refresh ahead of expiry; loaded when it is not held.
   */
  async keepFresh(partition: string, aheadMs: number): Promise<void> {
    const known = this.#active.get(partition);
    const version = !known || known.until - this.#s.now() <= aheadMs ? await this.readActive(partition) : known.version;
    const load = (): Promise<Uint8Array> => this.loadVersion(partition, version);
    if (!this.#s.cache.peek(partition, version, 'seal', load)) await this.#s.cache.get(partition, version, 'seal', load);
  }

  /** Loads a partition's active version into the cache (creating version 1 where none exists). */
  async warm(partition: string): Promise<void> {
    const version = await this.activeVersion(partition);
    await this.#creating.get(versionId(partition, version))?.catch(() => undefined); // a version this process is creating: its plaintext, no Decrypt
    await this.#s.cache.get(partition, version, 'seal', () => this.loadVersion(partition, version));
  }

  /** Forgets the partition's active version (the next seal asks the store). */
  forgetActive(partition?: string): void {
    if (partition === undefined) this.#active.clear();
    else this.#active.delete(partition);
  }

  /** Forgets the partition's keys (every partition's without one) and active version. */
  forget(partition?: string): void {
    this.#s.cache.revoke(partition);
    this.forgetActive(partition);
  }

  metrics(): HierarchyMetrics {
    const { cache } = this.#s;
    const calls = this.#kmsCalls;
    return {
      ...cache.counters,
      ...(this.#s.fleet?.counters ?? { coordinatorFallbacks: 0, leaseWaits: 0, fleetBreakerRefused: 0, fleetProbes: 0, broadcastsReceived: 0 }),
      versionsCreated: this.#versionsCreated,
      versionsInUse: cache.versionsInUse(),
      kmsCalls: { GenerateDataKey: { ...calls.GenerateDataKey }, Decrypt: { ...calls.Decrypt } },
    };
  }

  async #createVersionOnce(partition: string, version: number): Promise<StoredKey> {
    const lease = await this.#creationLease(partition, version);
    if (lease.existing) return lease.existing;
    try {
      return await this.#generate(partition, version);
    } finally {
      if (lease.token !== undefined) this.#s.fleet!.release(fleetName('create', partition, version), lease.token);
    }
  }

  /**
   * One creation per partition and version across the fleet: the lease's holder calls the KMS;
   * the others wait for its record in the store, and go on alone if the lease expires first (its
   * holder died) or the coordinator is unreachable. The store's conditional create still decides.
   */
  async #creationLease(partition: string, version: number): Promise<{ token?: string; existing?: StoredKey }> {
    const { fleet, store, creationLeaseMs } = this.#s;
    if (!fleet) return {};
    const name = fleetName('create', partition, version);
    const giveUpAt = this.#s.now() + creationLeaseMs;
    for (let waited = false; ; waited = true) {
      const lease = await fleet.lease(name, creationLeaseMs);
      if (lease.state === 'fallback') return {};
      // A holder that ended between our store read and our lease left its record: use it.
      const existing = await store.getVersion(partition, version);
      if (existing) {
        if (lease.state === 'held') fleet.release(name, lease.token);
        return { existing };
      }
      if (lease.state === 'held') return { token: lease.token };
      if (!waited) fleet.counters.leaseWaits++;
      if (this.#s.now() >= giveUpAt) return {};
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 50));
    }
  }

  async #generate(partition: string, version: number): Promise<StoredKey> {
    const kms = this.#s.resolve(partition);
    const dataKey = await this.#guarded(kms.id, 'GenerateDataKey', (probe) => kms.generateDataKey({ keySpec: 'AES_256', context: kmsContext(partition, version), ...probe }));
    const plaintext = dataKey.plaintextKey;
    let kept = false;
    try {
      const stored = await this.#s.store.createVersion({
        partition,
        version,
        state: 'active',
        provider: kms.id,
        keyId: dataKey.keyId,
        ciphertextBlob: dataKey.ciphertextBlob,
        createdAt: Date.now(),
      });
      if (stored.ciphertextBlob === dataKey.ciphertextBlob) {
        this.#versionsCreated++;
        this.#s.emit({ type: 'key-created', partition, version });
        this.#s.created(stored);
        // This process's record won: its plaintext is the key, so the cache takes it without a Decrypt.
        if (plaintext instanceof Uint8Array && plaintext.length === INTERMEDIATE_KEY_LENGTH) {
          await this.#s.cache.get(partition, version, 'seal', () => ((kept = true), Promise.resolve(plaintext)));
        }
      }
      return stored;
    } finally {
      if (!kept && plaintext instanceof Uint8Array) wipe(plaintext);
    }
  }

  /** The suite's key derived from a loaded version, once per version and suite (the cache owns and wipes it). */
  #suiteKey(loaded: LoadedKey, ref: IntermediateKeyRef, suite: Suite, fromCache: boolean): SuiteKey {
    let derived = loaded.derived.get(suite.id);
    if (!derived) {
      const key = new Uint8Array(suite.keyLength);
      // HKDF-SHA-512 for the AES suites, HKDF-SM3 for suite 03 (FORMAT.md §10.4, §13).
      const kdf = suite.primitives(this.#s.backend);
      kdf.hkdfExpandSha512(loaded.key, [utf8(`kms-envelope/intermediate-key@v2+${suite.aead}\0`, 'info')], [key]);
      derived = { key, state: kdf.hkdfPrepareSha512?.(key) };
      loaded.derived.set(suite.id, derived);
    }
    return { ref, key: derived.key, state: derived.state, fromCache };
  }

  /**
   * A KMS call behind the fleet breaker: while it is open and another process probes, it waits
   * for that probe's verdict (FLEET_REFUSED_WAIT_MS at most), then is refused; an outage opens it
   * for every process; the probe's success closes it. A probe is one call with no retries
   * (`probe: true` to the provider).
   */
  async #guarded<T>(providerId: string, action: KmsAction, call: (probe: { probe?: true }) => Promise<T>): Promise<T> {
    const { fleet } = this.#s;
    if (!fleet) return this.#counted(action, providerId, () => call({}));
    const gate = await fleet.gate(providerId, PROBE_INTERVAL_MS, 'load', FLEET_REFUSED_WAIT_MS);
    if (gate === 'refuse') throw new KeyUnavailableError('the KMS is failing: another process of the fleet is probing it');
    try {
      const result = await this.#counted(action, providerId, () => call(gate === 'probe' ? { probe: true } : {}));
      if (gate === 'probe') fleet.reset(providerId);
      return result;
    } catch (error) {
      // A KMS answer of the outage class opens it; a refusal by the fleet (ERR_KEY_UNAVAILABLE) is no news.
      // Awaited (bounded by coordinatorTimeoutMs, never throws): the caller's own retry, and the
      // fleet's next loads, must find it open, not race its write to the coordinator.
      if (!(error instanceof KeyUnavailableError) && classifyKmsFailure(error) === 'outage') await fleet.trip(providerId, this.#s.breakerCooldownMs);
      throw error;
    }
  }

  /** A KMS call, counted by action and outcome. */
  async #counted<T>(action: KmsAction, provider: string, call: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const result = await call();
      this.#kmsCalls[action].ok++;
      this.#s.emit({ type: 'kms-call', provider, action, durationMs: performance.now() - started, ok: true, throttled: false });
      return result;
    } catch (error) {
      this.#kmsCalls[action].failed++;
      const code = error instanceof KmsError ? (error.kmsCode ?? '') : '';
      const throttled = code.startsWith('RequestLimitExceeded') || code === '4420';
      if (throttled) this.#kmsCalls[action].throttled++;
      this.#s.emit({ type: 'kms-call', provider, action, durationMs: performance.now() - started, ok: false, errorCode: errorCodeOf(error), throttled });
      throw error;
    }
  }
}
