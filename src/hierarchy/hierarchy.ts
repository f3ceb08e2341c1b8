/**
 * The key hierarchy (FORMAT.md §10.4): a 256-bit intermediate key per (partition, version), made
 * by one KMS GenerateDataKey and kept only wrapped, in a key store. Messages sealed under it carry
 * the partition and version instead of a KMS blob, and each derives its own keys from the
 * intermediate key and a fresh salt: a unique key per message with no KMS call. Opening needs one
 * KMS Decrypt per key version per process per TTL (economy/intermediate-keys.ts).
 */
import type { CanonicalContext } from '../core/context.ts';
import { attachKeySource, type KeySource, type SuiteKey } from '../core/key-source.ts';
import { selectBackend } from '../core/select-backend.ts';
import type { CryptoBackend } from '../core/backend.ts';
import { FleetLink, fleetName } from '../economy/coordinator.ts';
import { type CacheHooks, classifyKmsFailure, IntermediateKeyCache } from '../economy/intermediate-keys.ts';
import type { KeyProvider } from '../kms/key-provider.ts';
import type { StoredKey } from './key-store.ts';
import { KeyVersions, type KeyVersionsSettings } from './key-versions.ts';
import { rotateMasterKey, verifyVersions } from './master-key.ts';
import { recreatePartition, type ShredContext, ShredGuard, shredTenant } from './shred.ts';
import type { AuditRecord, KeyHierarchy, KeyHierarchyOptions } from './types.ts';

export { DERIVED_PARTITION_SUFFIXES } from './shred.ts';
export type {
  AuditRecord,
  HierarchyMetrics,
  KeyHierarchy,
  KeyHierarchyOptions,
  MasterKeyRotation,
  RotateMasterKeyOptions,
  ShredOptions,
  ShredReport,
  VerifyReport,
} from './types.ts';

export function createKeyHierarchy(options: KeyHierarchyOptions): KeyHierarchy {
  return new HierarchyOfKeys(resolveHierarchyOptions(options));
}

/** What a hierarchy keeps of its options. */
interface HierarchySettings extends KeyVersionsSettings {
  readonly audit: ((record: AuditRecord) => void) | undefined;
}

/** Checks createKeyHierarchy()'s options and resolves them once: the cache, the shred guard, the KMS resolver. */
function resolveHierarchyOptions(options: KeyHierarchyOptions): HierarchySettings {
  const { store } = options;
  if (!store || typeof store.getVersion !== 'function') throw new TypeError('"store" expected a KeyStore');
  const resolve = typeof options.kms === 'function' ? options.kms : () => options.kms as KeyProvider;
  const backend = selectBackend(options.backend);
  const now = options.now ?? (() => performance.now());
  const { ttlMs, jitter, refreshAheadMs, maxStaleMs, sealGraceMs, maxLoadsInFlight, maxEntries, maxEntriesPerPartition, breakerFailures, breakerCooldownMs } = options;
  const cacheOptions = Object.fromEntries(
    Object.entries({ ttlMs, jitter, refreshAheadMs, maxStaleMs, sealGraceMs, maxLoadsInFlight, maxEntries, maxEntriesPerPartition, breakerFailures, breakerCooldownMs }).filter(([, v]) => v !== undefined),
  );
  const fleet = options.coordinator ? new FleetLink(options.coordinator, { ...(options.coordinatorTimeoutMs === undefined ? {} : { timeoutMs: options.coordinatorTimeoutMs }) }) : undefined;
  const creationLeaseMs = options.creationLeaseMs ?? 60_000;
  if (!(creationLeaseMs > 0)) throw new RangeError(`"creationLeaseMs" must be a number > 0, got ${String(creationLeaseMs)}`);
  const cache = new IntermediateKeyCache(cacheOptions, classifyKmsFailure, now, Math.random, cacheHooks(fleet, options.audit));
  const activeTtl = options.activeTtlMs ?? 60_000;
  const guard = new ShredGuard(store, now, activeTtl, options.derivedPartitionSuffixes);
  // The fleet breaker stays open until a probe succeeds (each failed probe renews it): a probe the
  // fleet refused at the attempt level answers nothing, and must not let it lapse into a burst.
  const breaker = Math.max(breakerCooldownMs ?? 5_000, 30_000);
  return { store, resolve, backend, now, cache, activeTtl, guard, audit: options.audit, fleet, creationLeaseMs, breakerCooldownMs: breaker };
}

/** A revocation seen here goes to the fleet; a seal in the outage grace goes to the audit hook. */
function cacheHooks(fleet: FleetLink | undefined, audit: ((record: AuditRecord) => void) | undefined): CacheHooks {
  return {
    onRevoked: fleet ? (partition) => fleet.broadcast(fleetName('partition', partition)) : undefined,
    fleetBreaker: fleet ? () => fleet.reachable : undefined,
    onSealGrace: audit
      ? (partition, version) => {
          try {
            audit({ operation: 'seal', partition, version, contextDigest: '', fromCache: true, metadata: undefined, sealGrace: true });
          } catch {
            // An audit hook must not break encryption.
          }
        }
      : undefined,
  };
}

/** Drops what this process holds of a partition another process revoked or shredded (the message names its hash). */
function listenToFleet(fleet: FleetLink | undefined, versions: KeyVersions, cache: IntermediateKeyCache): void {
  fleet?.listen((message) => {
    for (const partition of Object.keys(cache.versionsInUse())) {
      if (fleetName('partition', partition) === message) versions.forget(partition);
    }
  });
}

/** The audit hook of opens: it never sees a key, and its failures never break decryption. */
function auditor(audit: ((record: AuditRecord) => void) | undefined, backend: CryptoBackend): KeySource['audited'] {
  return (key: SuiteKey, context: CanonicalContext, metadata: Readonly<Record<string, unknown>> | undefined): void => {
    if (!audit) return;
    try {
      audit({
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
  };
}

/**
 * The public hierarchy: its versions (KeyVersions) and settings in private fields, its key source
 * attached through core/key-source.ts (no public member hands out key bytes). The public members
 * are own properties, bound.
 */
class HierarchyOfKeys implements KeyHierarchy {
  readonly #s: HierarchySettings;
  readonly #versions: KeyVersions;
  readonly #shred: ShredContext;

  constructor(settings: HierarchySettings) {
    const versions = new KeyVersions(settings);
    this.#s = settings;
    this.#versions = versions;
    listenToFleet(settings.fleet, versions, settings.cache);
    this.#shred = {
      store: settings.store,
      guard: settings.guard,
      forget: (partition) => versions.forget(partition),
      forgetActive: (partition) => versions.forgetActive(partition),
      createVersion: (partition, version) => versions.createVersion(partition, version),
    };
    attachKeySource(this, {
      sealKey: (partition, suite) => versions.sealKey(partition, suite),
      openKey: (ref, suite) => versions.keyFor(ref, suite, 'open'),
      audited: auditor(settings.audit, settings.backend),
    });
  }

  readonly warm: KeyHierarchy['warm'] = async (partitions, warmOptions = {}) => {
    const spread = warmOptions.spreadMs ?? 0;
    await Promise.all(
      partitions.map(async (partition) => {
        if (spread > 0) await new Promise((r) => setTimeout(r, Math.random() * spread));
        await this.#versions.warm(partition);
      }),
    );
  };

  readonly rotate = (partition: string): Promise<StoredKey> => this.#versions.rotate(partition);
  readonly forget = (partition?: string): void => this.#versions.forget(partition);
  readonly recreate = (partition: string): Promise<StoredKey> => recreatePartition(this.#shred, partition);
  readonly rotateMasterKey: KeyHierarchy['rotateMasterKey'] = (rotation) => rotateMasterKey(this.#s, rotation);
  readonly verify: KeyHierarchy['verify'] = (verifyOptions = {}) => verifyVersions(this.#s.store, (partition, version) => this.#versions.loadVersion(partition, version), verifyOptions);
  readonly shred: KeyHierarchy['shred'] = async (partition, shredOptions = {}) => {
    const report = await shredTenant(this.#shred, this.#s.resolve, partition, shredOptions);
    for (const shredded of report.partitions) this.#s.fleet?.broadcast(fleetName('partition', shredded));
    return report;
  };
  readonly metrics = (): ReturnType<KeyHierarchy['metrics']> => this.#versions.metrics();
  readonly close = (): Promise<void> => {
    this.#s.fleet?.close();
    return this.#s.cache.close();
  };
}
