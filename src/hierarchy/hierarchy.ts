/**
 * The key hierarchy (FORMAT.md §10.4): a 256-bit intermediate key per (partition, version), made
 * by one KMS GenerateDataKey and kept only wrapped, in a key store. Messages sealed under it carry
 * the partition and version instead of a KMS blob, and each derives its own keys from the
 * intermediate key and a fresh salt: a unique key per message with no KMS call. Opening needs one
 * KMS Decrypt per key version per process per TTL (economy/intermediate-keys.ts).
 */
import { utf8, wipe } from '../core/bytes.ts';
import { type CanonicalContext, canonicalContext } from '../core/context.ts';
import { KeyNotFoundError, KmsError, PartitionShreddedError } from '../core/errors.ts';
import type { IntermediateKeyRef } from '../core/header.ts';
import { type BackendName, selectBackend } from '../core/select-backend.ts';
import type { Suite } from '../core/suites.ts';
import { attachKeySource, type KeySource, type SuiteKey } from '../core/key-source.ts';
import {
  type CacheCounters,
  classifyKmsFailure,
  entryId as versionId,
  IntermediateKeyCache,
  type IntermediateKeyCacheOptions,
  type LoadedKey,
} from '../economy/intermediate-keys.ts';
import { checkStoredKey, checkTombstone, type KeyStore, type StoredKey } from './key-store.ts';
import { partitionsOf } from './key-store-backup.ts';
import { hasKeyAdministration, type KeyProvider } from '../kms/key-provider.ts';
import { reEncryptDataKey } from '../kms/re-encrypt.ts';

export interface KeyHierarchyOptions extends IntermediateKeyCacheOptions {
  /** Where the wrapped intermediate keys live. */
  store: KeyStore;
  /** The KMS that wraps them: one provider, or a resolver from partition (tenant) to its provider. */
  kms: KeyProvider | ((partition: string) => KeyProvider);
  /** How long the active version of a partition is remembered before the store is asked again, ms; default 60000. */
  activeTtlMs?: number;
  /** Called on every open with what was opened; never with a key or plaintext. */
  audit?: (record: AuditRecord) => void;
  backend?: BackendName;
  /** A monotonic clock in ms; default performance.now(). For tests of TTLs and staleness. */
  now?: () => number;
  /**
   * Suffixes of partitions derived from a partition (`tenant` + suffix), besides
   * DERIVED_PARTITION_SUFFIXES (the blind index's): shred(tenant) shreds them too, and once the
   * tenant is shredded no key is made for them unless it is re-created. For search indexes of your own.
   */
  derivedPartitionSuffixes?: readonly string[];
}

/**
 * The suffixes of the partitions derived from a partition that the library makes: `#blind-index`
 * (blind-index.ts, BLIND_INDEX_PARTITION_SUFFIX). shred(tenant) covers `tenant` and each of these.
 */
export const DERIVED_PARTITION_SUFFIXES: readonly string[] = Object.freeze(['#blind-index']);

export interface AuditRecord {
  operation: 'open';
  partition: string;
  version: number;
  /** SHA-256 (base64) of the canonical encoding of the message's context. */
  contextDigest: string;
  /** Whether the intermediate key came from memory (no KMS call). */
  fromCache: boolean;
  /** What the caller passed as `audit` in the open call. */
  metadata: Readonly<Record<string, unknown>> | undefined;
}

export interface HierarchyMetrics extends CacheCounters {
  versionsCreated: number;
  versionsInUse: Record<string, number[]>;
  /** KMS calls by action and outcome, and how many of the failures were throttling. */
  kmsCalls: Record<'GenerateDataKey' | 'Decrypt', { ok: number; failed: number; throttled: number }>;
}

export interface KeyHierarchy {
  /** Loads the active versions of these partitions (creating version 1 where none exists), spread over `spreadMs`. */
  warm(partitions: readonly string[], options?: { spreadMs?: number }): Promise<void>;
  /** Adds a version that becomes active for new writes; the previous ones stay for opening (decrypt-only). */
  rotate(partition: string): Promise<StoredKey>;
  /** Forgets a partition's keys in memory at once (after shredding, or to pick up a rotation now). */
  forget(partition?: string): void;
  /**
   * Re-creates a shredded partition, explicitly: a new active version above the highest one
   * shredded (version numbers are never reused), and so for each derived partition with a
   * tombstone (its blind indexes then need an index `version` above the shredded one). What was
   * sealed before the shred stays unreadable (ERR_PARTITION_SHREDDED). A RangeError when the
   * partition was never shredded.
   */
  recreate(partition: string): Promise<StoredKey>;
  /**
   * Rotates the KMS master key: every stored intermediate key (of the partitions given, default
   * all) is re-wrapped under `toKeyId` by one KMS ReEncrypt each (Decrypt + Encrypt where the
   * provider has no ReEncrypt), and its store record replaced by a compare and set. The sealed
   * records are not touched: they name a partition and version, not the master key.
   */
  rotateMasterKey(options: RotateMasterKeyOptions): Promise<MasterKeyRotation>;
  /** Checks that every stored key version (of the partitions given, default all) still decrypts through the KMS. */
  verify(options?: { partitions?: readonly string[]; signal?: AbortSignal }): Promise<VerifyReport>;
  /**
   * Crypto-shredding of a partition (tenant): its intermediate keys, and those of its derived
   * partitions (blind indexes, DERIVED_PARTITION_SUFFIXES), are deleted from the store, a tombstone
   * left for each, and forgotten in this process; with `masterKey`, the tenant's own master key is
   * also disabled and (with `deleteAfterDays`) scheduled for deletion through the KMS. Afterwards
   * its messages fail with PartitionShreddedError (ERR_PARTITION_SHREDDED), and so does a seal or a
   * blind index for it, until recreate(). Other processes keep a loaded key until its TTL ends, and
   * a key-store backup from before brings the keys back (README "Crypto-shredding" gives every bound).
   */
  shred(partition: string, options?: ShredOptions): Promise<ShredReport>;
  metrics(): HierarchyMetrics;
  close(): Promise<void>;
}

export interface RotateMasterKeyOptions {
  /** The master key every intermediate key is wrapped under afterwards. */
  toKeyId: string;
  /** Default: every partition the store lists. */
  partitions?: readonly string[];
  /** Only versions wrapped under this master key; default every one not already under `toKeyId`. */
  fromKeyId?: string;
  signal?: AbortSignal;
}

export interface MasterKeyRotation {
  /** Versions re-wrapped, and the KMS calls that took (one per version with ReEncrypt). */
  rewrapped: number;
  /** Versions already under `toKeyId`, or under another key than `fromKeyId`: untouched. */
  skipped: number;
  /** Versions another process re-wrapped meanwhile (the compare and set found a new blob). */
  raced: number;
  failed: { partition: string; version: number; code: string; message: string }[];
}

export interface VerifyReport {
  checked: number;
  ok: number;
  failed: { partition: string; version: number; keyId: string; code: string; message: string }[];
}

export interface ShredOptions {
  /**
   * The tenant's own master key, to disable through the KMS (DisableKey). Only for a master key no
   * other tenant uses: a shared one would shred them all.
   */
  masterKey?: string;
  /** With `masterKey`: schedule its deletion after this many days (Tencent: 7 to 30; ScheduleKeyDeletion). */
  deleteAfterDays?: number;
}

export interface ShredReport {
  /** Versions deleted from the store, of the partition and its derived partitions. */
  versionsDeleted: number;
  /** The partitions shredded (each now has a tombstone): the partition and its derived partitions. */
  partitions: string[];
  masterKeyDisabled: boolean;
  /** When the KMS deletes the master key (seconds since the epoch), if scheduled. */
  deletionDate: number | undefined;
}

const INTERMEDIATE_KEY_LENGTH = 32;

function failureCode(error: unknown): string {
  const e = error as { kmsCode?: unknown; code?: unknown } | null;
  return typeof e?.kmsCode === 'string' ? e.kmsCode : typeof e?.code === 'string' ? e.code : 'ERROR';
}

/** The KMS context an intermediate key is bound to: a blob moved to another partition or version does not decrypt. */
function kmsContext(partition: string, version: number): CanonicalContext {
  return canonicalContext({ 'kms-envelope': 'intermediate-key', partition, version: String(version) });
}

/** Tombstones remembered per process at most (they are permanent facts; past this the map starts over). */
const SHREDDED_MAX = 10_000;

/**
 * What a hierarchy knows of shredded partitions (the key store's tombstones): which versions may
 * never be used or created again, and which partitions refused a seal lately. Every key load reads
 * the partition's tombstone with the key record, so a version shredded elsewhere (or created by a
 * process that raced the shred) is refused once loaded, and a known one at once, with no store call.
 */
class ShredGuard {
  readonly #store: KeyStore;
  readonly #now: () => number;
  readonly #refusalMs: number;
  readonly suffixes: readonly string[];
  /** Partition -> the highest version shredded, as the store said. */
  readonly #shredded = new Map<string, number>();
  /** Partition -> until when a seal is refused without asking the store again (as the active version is cached). */
  readonly #refused = new Map<string, number>();

  constructor(store: KeyStore, now: () => number, refusalMs: number, suffixes: readonly string[] | undefined) {
    this.#store = store;
    this.#now = now;
    this.#refusalMs = refusalMs;
    const extra = suffixes ?? [];
    if (!Array.isArray(extra) || !extra.every((x) => typeof x === 'string' && x.length > 0)) {
      throw new TypeError('"derivedPartitionSuffixes" expected an array of non-empty strings');
    }
    this.suffixes = Object.freeze([...new Set([...DERIVED_PARTITION_SUFFIXES, ...extra])]);
  }

  /** Whether the store keeps tombstones (shred needs them). */
  get supported(): boolean {
    return typeof this.#store.addTombstone === 'function' && typeof this.#store.getTombstone === 'function';
  }

  /** The partition and the partitions derived from it. */
  family(partition: string): string[] {
    return [partition, ...this.suffixes.map((suffix) => partition + suffix)];
  }

  /** Throws at once when the version is known shredded: no store call, no KMS call. */
  checkKnown(partition: string, version: number): void {
    const shredded = this.#shredded.get(partition);
    if (shredded !== undefined && version <= shredded) throw new PartitionShreddedError(partition, shredded, 'open');
  }

  /** Throws at once when a seal for the partition was refused lately. */
  checkSeal(partition: string): void {
    const until = this.#refused.get(partition);
    if (until === undefined) return;
    if (this.#now() < until) throw new PartitionShreddedError(partition, this.#shredded.get(partition) ?? 1, 'seal');
    this.#refused.delete(partition);
  }

  /** The highest version shredded of the partition, from the store (undefined: never shredded). */
  async tombstone(partition: string): Promise<number | undefined> {
    if (typeof this.#store.getTombstone !== 'function') return undefined;
    const found = await this.#store.getTombstone(partition);
    if (found === undefined) return undefined;
    checkTombstone(found, `key store tombstone of partition ${JSON.stringify(partition)}`);
    if (found.partition !== partition) throw new TypeError(`key store tombstone of partition ${JSON.stringify(partition)}: it names partition ${JSON.stringify(found.partition)}`);
    this.note(partition, found.version);
    return found.version;
  }

  note(partition: string, version: number): void {
    if (this.#shredded.size >= SHREDDED_MAX && !this.#shredded.has(partition)) this.#shredded.clear();
    this.#shredded.set(partition, Math.max(version, this.#shredded.get(partition) ?? 0));
  }

  /**
   * Throws PartitionShreddedError when no new version may be made for a partition that has none
   * above `tombstone` (its own): it was shredded, or it is derived from a tenant that was shredded
   * and not re-created (a search index of a suffix added since). Refuses seals for a while then.
   */
  async checkCreate(partition: string, tombstone: number | undefined): Promise<void> {
    let refused = tombstone;
    for (const suffix of refused === undefined ? this.suffixes : []) {
      if (!partition.endsWith(suffix) || partition.length === suffix.length) continue;
      const base = partition.slice(0, -suffix.length);
      const baseTombstone = await this.tombstone(base);
      if (baseTombstone === undefined) continue;
      const active = await this.#store.getActive(base);
      if (!active || active.version <= baseTombstone) refused = baseTombstone;
    }
    if (refused === undefined) return;
    this.#refused.set(partition, this.#now() + this.#refusalMs);
    throw new PartitionShreddedError(partition, refused, 'seal');
  }

  /** After recreate(): seals are no longer refused. */
  lift(partition: string): void {
    this.#refused.delete(partition);
  }
}

/** What shredding and re-creating a partition use of a hierarchy. */
interface ShredContext {
  readonly store: KeyStore;
  readonly guard: ShredGuard;
  /** Drops the partition's keys and active version from memory. */
  readonly forget: (partition: string) => void;
  /** Drops only the partition's active version from memory (the next seal asks the store). */
  readonly forgetActive: (partition: string) => void;
  readonly createVersion: (partition: string, version: number) => Promise<StoredKey>;
}

/**
 * Shreds one partition: a tombstone first (so a failure half-way leaves the keys refused, never
 * usable), then the versions deleted; again while a version created meanwhile (a rotation racing
 * the shred) is found. Returns how many versions were deleted.
 */
async function shredOne(c: ShredContext, partition: string, at: number): Promise<number> {
  let deleted = 0;
  let highest = 1;
  for (let round = 0; round < 3; round++) {
    const versions = await c.store.listVersions(partition);
    if (round > 0 && versions.length === 0) break;
    highest = Math.max(highest, ...versions.map((v) => v.version));
    await c.store.addTombstone!({ partition, version: highest, shreddedAt: at });
    await c.store.deletePartition!(partition);
    deleted += versions.length;
  }
  c.guard.note(partition, highest);
  c.forget(partition);
  return deleted;
}

/** hierarchy.recreate(): a new version above the tombstone of the partition and of each derived partition that has one. */
async function recreatePartition(c: ShredContext, partition: string): Promise<StoredKey> {
  if (typeof partition !== 'string' || partition.length === 0) throw new TypeError('"partition" expected a non-empty string');
  let first: StoredKey | undefined;
  for (const p of c.guard.family(partition)) {
    const tombstone = await c.guard.tombstone(p);
    if (tombstone === undefined) {
      if (p === partition) throw new RangeError(`recreate: partition ${JSON.stringify(partition)} was never shredded (it needs no re-creating)`);
      continue;
    }
    const versions = await c.store.listVersions(p);
    const last = versions.at(-1)?.version ?? 0;
    const created = last > tombstone ? versions.at(-1)! : await c.createVersion(p, Math.max(last, tombstone) + 1);
    for (const old of versions) if (old.state === 'active' && old.version < created.version) await c.store.setState(p, old.version, 'decrypt-only');
    c.guard.lift(p);
    c.forgetActive(p);
    first ??= created;
  }
  return first!;
}

/**
 * hierarchy.shred(): the tenant and its derived partitions, each tombstoned and emptied; then, with
 * `masterKey`, the tenant's own master key disabled (and scheduled for deletion) through the KMS.
 */
async function shredTenant(c: ShredContext, resolve: (partition: string) => KeyProvider, partition: string, shredOptions: ShredOptions): Promise<ShredReport> {
  if (typeof partition !== 'string' || partition.length === 0) throw new TypeError('"partition" expected a non-empty string');
  if (typeof c.store.deletePartition !== 'function') throw new TypeError('shred: this key store cannot delete a partition (deletePartition)');
  if (!c.guard.supported) throw new TypeError('shred: this key store keeps no tombstones (addTombstone, getTombstone), so a shredded partition could silently get new keys');
  const { masterKey, deleteAfterDays } = shredOptions;
  if (deleteAfterDays !== undefined && masterKey === undefined) throw new TypeError('"deleteAfterDays" needs "masterKey"');
  const kms = resolve(partition);
  if (masterKey !== undefined && !hasKeyAdministration(kms)) throw new TypeError(`shred: key provider "${kms.id}" cannot disable master keys`);
  const at = Date.now();
  const partitions = c.guard.family(partition);
  let versionsDeleted = 0;
  for (const p of partitions) versionsDeleted += await shredOne(c, p, at);
  let masterKeyDisabled = false;
  let deletionDate: number | undefined;
  if (masterKey !== undefined && hasKeyAdministration(kms)) {
    await kms.disableKey(masterKey);
    masterKeyDisabled = true;
    if (deleteAfterDays !== undefined) deletionDate = (await kms.scheduleKeyDeletion(masterKey, deleteAfterDays)).deletionDate;
  }
  return { versionsDeleted, partitions, masterKeyDisabled, deletionDate };
}

export function createKeyHierarchy(options: KeyHierarchyOptions): KeyHierarchy {
  const { store } = options;
  if (!store || typeof store.getVersion !== 'function') throw new TypeError('"store" expected a KeyStore');
  const resolve = typeof options.kms === 'function' ? options.kms : () => options.kms as KeyProvider;
  const backend = selectBackend(options.backend);
  const now = options.now ?? (() => performance.now());
  const { ttlMs, jitter, refreshAheadMs, maxStaleMs, maxLoadsInFlight, maxEntries, maxEntriesPerPartition, breakerFailures, breakerCooldownMs } = options;
  const cacheOptions = Object.fromEntries(
    Object.entries({ ttlMs, jitter, refreshAheadMs, maxStaleMs, maxLoadsInFlight, maxEntries, maxEntriesPerPartition, breakerFailures, breakerCooldownMs }).filter(([, v]) => v !== undefined),
  );
  const cache = new IntermediateKeyCache(cacheOptions, classifyKmsFailure, now);
  const activeTtl = options.activeTtlMs ?? 60_000;
  const active = new Map<string, { version: number; until: number }>();
  const guard = new ShredGuard(store, now, activeTtl, options.derivedPartitionSuffixes);
  /**
   * Versions this process is creating (version 1 on first use, or a rotation's), until their
   * plaintext is in the cache: one creation each, and no Decrypt of a key this process holds.
   */
  const creating = new Map<string, Promise<StoredKey>>();
  let versionsCreated = 0;
  const kmsCalls: HierarchyMetrics['kmsCalls'] = {
    GenerateDataKey: { ok: 0, failed: 0, throttled: 0 },
    Decrypt: { ok: 0, failed: 0, throttled: 0 },
  };

  /** A KMS call, counted by action and outcome. */
  async function counted<T>(action: 'GenerateDataKey' | 'Decrypt', call: () => Promise<T>): Promise<T> {
    try {
      const result = await call();
      kmsCalls[action].ok++;
      return result;
    } catch (error) {
      kmsCalls[action].failed++;
      const code = error instanceof KmsError ? (error.kmsCode ?? '') : '';
      if (code.startsWith('RequestLimitExceeded') || code === '4420') kmsCalls[action].throttled++;
      throw error;
    }
  }

  async function loadVersion(partition: string, version: number): Promise<Uint8Array> {
    // The tombstone with the record: a version up to it is never used, whatever the store holds.
    const [stored, shredded] = await Promise.all([store.getVersion(partition, version), guard.tombstone(partition)]);
    if (shredded !== undefined && version <= shredded) throw new PartitionShreddedError(partition, shredded, 'open');
    if (!stored) throw new KeyNotFoundError(partition, version);
    checkStoredKey(stored, `key store record of partition ${JSON.stringify(partition)} version ${version}`);
    if (stored.partition !== partition || stored.version !== version) throw new KeyNotFoundError(partition, version);
    const kms = resolve(partition);
    if (stored.provider !== kms.id) {
      throw new KmsError(`intermediate key ${version} of partition ${JSON.stringify(partition)} was wrapped by key provider "${stored.provider}", not "${kms.id}"`);
    }
    const key = await counted('Decrypt', () =>
      kms.decryptDataKey({ keySpec: 'AES_256', keyId: stored.keyId, ciphertextBlob: stored.ciphertextBlob, context: kmsContext(partition, version) }),
    );
    if (!(key instanceof Uint8Array) || key.length !== INTERMEDIATE_KEY_LENGTH) {
      if (key instanceof Uint8Array) wipe(key);
      throw new KmsError('key provider returned an intermediate key of the wrong length');
    }
    return key;
  }

  /** Creates `version` of a partition; when another process won the race, its record is the one returned. */
  function createVersion(partition: string, version: number): Promise<StoredKey> {
    const id = versionId(partition, version);
    let creation = creating.get(id);
    if (creation) return creation;
    creation = createVersionOnce(partition, version);
    // Handles the failure for the map only: the creation's callers see it.
    const forget = (): void => {
      if (creating.get(id) === creation) creating.delete(id);
    };
    creation.then(forget, forget);
    creating.set(id, creation);
    return creation;
  }

  async function createVersionOnce(partition: string, version: number): Promise<StoredKey> {
    const kms = resolve(partition);
    const dataKey = await counted('GenerateDataKey', () => kms.generateDataKey({ keySpec: 'AES_256', context: kmsContext(partition, version) }));
    const plaintext = dataKey.plaintextKey;
    let kept = false;
    try {
      const stored = await store.createVersion({
        partition,
        version,
        state: 'active',
        provider: kms.id,
        keyId: dataKey.keyId,
        ciphertextBlob: dataKey.ciphertextBlob,
        createdAt: Date.now(),
      });
      if (stored.ciphertextBlob === dataKey.ciphertextBlob) {
        versionsCreated++;
        // This process's record won: its plaintext is the key, so the cache takes it without a Decrypt.
        if (plaintext instanceof Uint8Array && plaintext.length === INTERMEDIATE_KEY_LENGTH) {
          await cache.get(partition, version, 'seal', () => ((kept = true), Promise.resolve(plaintext)));
        }
      }
      return stored;
    } finally {
      if (!kept && plaintext instanceof Uint8Array) wipe(plaintext);
    }
  }

  /** The active version this process knows and has not let expire. */
  function knownActive(partition: string): number | undefined {
    const known = active.get(partition);
    return known && now() < known.until ? known.version : undefined;
  }

  async function activeVersion(partition: string): Promise<number> {
    const known = knownActive(partition);
    if (known !== undefined) return known;
    const [active0, shredded] = await Promise.all([store.getActive(partition), guard.tombstone(partition)]);
    let found = active0 && (shredded === undefined || active0.version > shredded) ? active0 : undefined;
    if (!found) {
      // A creation by this process may have ended while the read was out: the read is stale.
      const created = knownActive(partition);
      if (created !== undefined) return created;
      // A shredded partition gets no new key unless it is re-created (recreate()).
      await guard.checkCreate(partition, shredded);
      // One creation per partition per process; the store settles races between processes.
      found = await createVersion(partition, 1);
    }
    active.set(partition, { version: found.version, until: now() + activeTtl });
    return found.version;
  }

  function suiteKey(loaded: LoadedKey, ref: IntermediateKeyRef, suite: Suite, fromCache: boolean): SuiteKey {
    let derived = loaded.derived.get(suite.id);
    if (!derived) {
      const key = new Uint8Array(suite.keyLength);
      // HKDF-SHA-512 for the AES suites, HKDF-SM3 for suite 03 (FORMAT.md §10.4, §13).
      const kdf = suite.primitives(backend);
      kdf.hkdfExpandSha512(loaded.key, [utf8(`kms-envelope/intermediate-key@v2+${suite.aead}\0`, 'info')], [key]);
      derived = { key, state: kdf.hkdfPrepareSha512?.(key) };
      loaded.derived.set(suite.id, derived);
    }
    return { ref, key: derived.key, state: derived.state, fromCache };
  }

  function keyFor(ref: IntermediateKeyRef, suite: Suite, purpose: 'seal' | 'open'): SuiteKey | Promise<SuiteKey> {
    guard.checkKnown(ref.partition, ref.version);
    const load = (): Promise<Uint8Array> => loadVersion(ref.partition, ref.version);
    const held = cache.peek(ref.partition, ref.version, purpose, load);
    if (held) return suiteKey(held, ref, suite, true);
    const loadKey = (): Promise<SuiteKey> => cache.get(ref.partition, ref.version, purpose, load).then((loaded) => suiteKey(loaded, ref, suite, false));
    // The store shows a new version before createVersion returns; until this process's creation
    // has handed its plaintext to the cache, loading that version would Decrypt a key it holds.
    const creation = creating.get(versionId(ref.partition, ref.version));
    return creation ? creation.then(loadKey, loadKey) : loadKey();
  }

  const shredContext: ShredContext = {
    store,
    guard,
    forget: (partition) => {
      cache.revoke(partition);
      active.delete(partition);
    },
    forgetActive: (partition) => active.delete(partition),
    createVersion,
  };

  const source: KeySource = {
    sealKey(partition, suite) {
      const known = knownActive(partition);
      if (known !== undefined) return keyFor({ partition, version: known }, suite, 'seal');
      guard.checkSeal(partition);
      return activeVersion(partition).then((version) => keyFor({ partition, version }, suite, 'seal'));
    },
    openKey: (ref, suite) => keyFor(ref, suite, 'open'),
    audited(key, context, metadata) {
      if (!options.audit) return;
      try {
        options.audit({
          operation: 'open',
          partition: key.ref.partition,
          version: key.ref.version,
          contextDigest: backend.sha256Base64(context.encoded),
          fromCache: key.fromCache,
          metadata,
        });
      } catch {
        // An audit hook must not break decryption; it sees every call, so it can count its own failures.
      }
    },
  };
  const hierarchy: KeyHierarchy = {
    async warm(partitions, warmOptions = {}) {
      const spread = warmOptions.spreadMs ?? 0;
      await Promise.all(
        partitions.map(async (partition) => {
          if (spread > 0) await new Promise((r) => setTimeout(r, Math.random() * spread));
          const version = await activeVersion(partition);
          await creating.get(versionId(partition, version))?.catch(() => undefined); // a version this process is creating: its plaintext, no Decrypt
          await cache.get(partition, version, 'seal', () => loadVersion(partition, version));
        }),
      );
    },
    async rotate(partition) {
      const [versions, shredded] = await Promise.all([store.listVersions(partition), guard.tombstone(partition)]);
      const last = versions.at(-1)?.version ?? 0;
      if (shredded !== undefined ? last <= shredded : last === 0) await guard.checkCreate(partition, shredded);
      const next = last + 1;
      const created = await createVersion(partition, next);
      for (const old of versions) if (old.state === 'active') await store.setState(partition, old.version, 'decrypt-only');
      active.delete(partition);
      return created;
    },
    forget(partition) {
      cache.revoke(partition);
      if (partition === undefined) active.clear();
      else active.delete(partition);
    },
    recreate: (partition) => recreatePartition(shredContext, partition),
    async rotateMasterKey(rotation) {
      if (!rotation || typeof rotation.toKeyId !== 'string' || rotation.toKeyId.length === 0) throw new TypeError('"toKeyId" expected a non-empty string');
      if (typeof store.replaceWrappedKey !== 'function') throw new TypeError('rotateMasterKey: this key store cannot replace a wrapped key (replaceWrappedKey)');
      const report: MasterKeyRotation = { rewrapped: 0, skipped: 0, raced: 0, failed: [] };
      for (const partition of await partitionsOf(store, rotation.partitions, 'rotateMasterKey')) {
        const kms = resolve(partition);
        for (const key of await store.listVersions(partition)) {
          if (rotation.signal?.aborted) throw rotation.signal.reason;
          const chosen = key.provider === kms.id && (rotation.fromKeyId === undefined ? key.keyId !== rotation.toKeyId : key.keyId === rotation.fromKeyId);
          if (!chosen) {
            report.skipped++;
            continue;
          }
          try {
            const wrapped = await reEncryptDataKey(kms, {
              keySpec: 'AES_256',
              keyId: key.keyId,
              ciphertextBlob: key.ciphertextBlob,
              toKeyId: rotation.toKeyId,
              context: kmsContext(partition, key.version),
              signal: rotation.signal,
            });
            const replaced = await store.replaceWrappedKey(partition, key.version, key.ciphertextBlob, { provider: kms.id, ...wrapped });
            if (replaced) report.rewrapped++;
            else report.raced++;
          } catch (error) {
            if (rotation.signal?.aborted && error === rotation.signal.reason) throw error;
            report.failed.push({ partition, version: key.version, code: failureCode(error), message: (error as Error).message });
          }
        }
      }
      return report;
    },
    async verify(verifyOptions = {}) {
      const report: VerifyReport = { checked: 0, ok: 0, failed: [] };
      for (const partition of await partitionsOf(store, verifyOptions.partitions, 'verify')) {
        for (const key of await store.listVersions(partition)) {
          if (verifyOptions.signal?.aborted) throw verifyOptions.signal.reason;
          report.checked++;
          try {
            // Straight through the KMS, not the cache: a key in memory proves nothing about the KMS.
            wipe(await loadVersion(partition, key.version));
            report.ok++;
          } catch (error) {
            report.failed.push({ partition, version: key.version, keyId: key.keyId, code: failureCode(error), message: (error as Error).message });
          }
        }
      }
      return report;
    },
    shred: (partition, shredOptions = {}) => shredTenant(shredContext, resolve, partition, shredOptions),
    metrics: () => ({
      ...cache.counters,
      versionsCreated,
      versionsInUse: cache.versionsInUse(),
      kmsCalls: { GenerateDataKey: { ...kmsCalls.GenerateDataKey }, Decrypt: { ...kmsCalls.Decrypt } },
    }),
    close: () => cache.close(),
  };
  attachKeySource(hierarchy, source);
  return hierarchy;
}
