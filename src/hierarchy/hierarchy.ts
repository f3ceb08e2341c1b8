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
import { OpenAuditBatch } from '../core/audit-batch.ts';
import type { HierarchyEvent } from '../economy/events.ts';
import { FLEET_BREAKER_OPEN_MS, FleetLink, fleetName } from '../economy/coordinator.ts';
import { type CacheHooks, classifyKmsFailure, INTERMEDIATE_KEY_CACHE_DEFAULTS, IntermediateKeyCache } from '../economy/intermediate-keys.ts';
import { Listeners } from '../economy/listeners.ts';
import type { KeyProvider } from '../kms/key-provider.ts';
import { type KeyStore, MemoryKeyStore, type StoredKey } from './key-store.ts';
import { type AuditHook, audited, auditSafely } from './admin-audit.ts';
import { KeyVersions, type KeyVersionsSettings } from './key-versions.ts';
import { checkHealth } from './lifecycle.ts';
import { WorkInFlight } from '../core/work-in-flight.ts';
import { Keepers, keepWarmPeriod } from './keep-warm.ts';
import { rotateMasterKey, verifyVersions } from './master-key.ts';
import { retireVersion } from './retire.ts';
import { recreatePartition, type ShredContext, ShredGuard, shredTenant } from './shred.ts';
import type { KeyHierarchy, KeyHierarchyOptions } from './types.ts';

export { DERIVED_PARTITION_SUFFIXES } from './shred.ts';
export { KeyVersionRetiredError, RetireRefusedError, type RetireOptions, type RetireRefusal, type RetireReport, type VersionCensus } from './retire.ts';
export type { KeepWarm, KeepWarmOptions } from './keep-warm.ts';
export type {
  AdminAuditRecord,
  AuditRecord,
  CloseOptions,
  CloseReport,
  HealthReport,
  HierarchyEvent,
  HierarchyEventListener,
  OpenAuditRecord,
  RowsOpenAuditRecord,
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
  readonly audit: AuditHook;
  readonly listeners: Listeners<HierarchyEvent>;
  /** How often a keepWarm() keeper ticks, ms. */
  readonly keepWarmPeriod: number;
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
  const { audit } = options;
  if (audit !== undefined && typeof audit !== 'function') throw new TypeError('"audit" expected a function');
  const cache = new IntermediateKeyCache(cacheOptions, classifyKmsFailure, now, Math.random, cacheHooks(fleet, audit));
  warnIfKeyDiesWithProcess(store, options.kms);
  const activeTtl = options.activeTtlMs ?? 60_000;
  const guard = new ShredGuard(store, now, activeTtl, options.derivedPartitionSuffixes);
  const listeners = new Listeners<HierarchyEvent>();
  if (options.onEvent !== undefined) listeners.add(options.onEvent);
  // The cache calls its listeners only while some are attached: none, no event object made.
  const emit = (event: HierarchyEvent): void => {
    if (listeners.size > 0) listeners.emit(event);
  };
  cache.events = emit;
  const created = (key: StoredKey): void => auditSafely(audit, { operation: 'create-version', partitions: [key.partition], versions: [key.version], ok: true, at: Date.now() });
  const period = keepWarmPeriod(ttlMs ?? INTERMEDIATE_KEY_CACHE_DEFAULTS.ttlMs, refreshAheadMs, activeTtl);
  // The fleet breaker stays open until a probe succeeds (each failed probe renews it): a probe the
  // fleet refused at the attempt level answers nothing, and must not let it lapse into a burst.
  const breaker = Math.max(breakerCooldownMs ?? 5_000, FLEET_BREAKER_OPEN_MS);
  const work = new WorkInFlight('key hierarchy');
  return { store, resolve, backend, now, cache, activeTtl, guard, audit, listeners, emit, created, work, keepWarmPeriod: period, fleet, creationLeaseMs, breakerCooldownMs: breaker };
}

/**
 * A key store that outlives the process (not MemoryKeyStore, nor SQLite in memory) with a master key that does not
 * (LocalKms.generate(), ids `memory-…`): after a restart no stored key decrypts. Warned once per
 * hierarchy, through process.emitWarning where there is one.
 */
function warnIfKeyDiesWithProcess(store: KeyStore, kms: KeyHierarchyOptions['kms']): void {
  if (store instanceof MemoryKeyStore || (store as { persistent?: unknown }).persistent === false || typeof kms === 'function') return;
  const ids = (kms as { keyIds?: unknown }).keyIds;
  if (kms.id !== 'local' || !Array.isArray(ids) || !ids.some((id) => typeof id === 'string' && id.startsWith('memory-'))) return;
  const message =
    'kms-envelope: a persistent key store is paired with LocalKms.generate(), whose master key lives only in this process: after a restart nothing stored opens. ' +
    'Use a key file (localKmsFromKeyFile) or a KMS (TencentKms).';
  const emit = (globalThis as { process?: { emitWarning?: (message: string, options: { code: string }) => void } }).process?.emitWarning;
  if (emit) emit(message, { code: 'KMS_ENVELOPE_EPHEMERAL_KEY' });
  else console.warn(message);
}

/** A revocation seen here goes to the fleet; a seal in the outage grace goes to the audit hook. */
function cacheHooks(fleet: FleetLink | undefined, audit: AuditHook): CacheHooks {
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
function auditor(audit: AuditHook, backend: CryptoBackend): KeySource['audited'] {
  return (key: SuiteKey, context: CanonicalContext, metadata: Readonly<Record<string, unknown>> | undefined): void => {
    if (!audit) return;
    // A record-API call: noted, audited once when the call ends (auditedBatch).
    if (metadata instanceof OpenAuditBatch) return metadata.note(key.ref.partition, key.ref.version, key.fromCache);
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

/** One audit record for a record-API call's opens. */
function batchAuditor(audit: AuditHook): NonNullable<KeySource['auditedBatch']> {
  return (batch, call) =>
    auditSafely(audit, { operation: 'open-rows', ...call, fields: batch.fields, keys: [...batch.keys.values()].map((k) => ({ ...k })), metadata: batch.metadata });
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
  readonly #keepers = new Keepers();

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
      auditing: settings.audit !== undefined,
      auditedBatch: batchAuditor(settings.audit),
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

  readonly rotate = (partition: string): Promise<StoredKey> => audited(this.#s.audit, 'rotate', [partition], () => this.#versions.rotate(partition), (k) => ({ versions: [k.version] }));
  readonly forget = (partition?: string): void => this.#versions.forget(partition);
  readonly recreate = (partition: string): Promise<StoredKey> => audited(this.#s.audit, 'recreate', [partition], () => recreatePartition(this.#shred, partition), (k) => ({ versions: [k.version] }));
  readonly rotateMasterKey: KeyHierarchy['rotateMasterKey'] = (rotation) =>
    audited(this.#s.audit, 'rotate-master-key', rotation?.partitions ?? [], () => rotateMasterKey(this.#s, rotation), (r) => ({ counts: { rewrapped: r.rewrapped, skipped: r.skipped, raced: r.raced, failed: r.failed.length } }));
  readonly verify: KeyHierarchy['verify'] = (verifyOptions = {}) =>
    audited(
      this.#s.audit,
      'verify',
      verifyOptions.partitions ?? [],
      () => verifyVersions(this.#s.store, (partition, version) => this.#versions.loadVersion(partition, version), verifyOptions),
      (r) => ({ counts: { checked: r.checked, ok: r.ok, failed: r.failed.length } }),
    );
  readonly shred: KeyHierarchy['shred'] = (partition, shredOptions = {}) =>
    audited(
      this.#s.audit,
      'shred',
      [partition],
      async () => {
        const report = await shredTenant(this.#shred, this.#s.resolve, partition, shredOptions);
        for (const shredded of report.partitions) this.#s.fleet?.broadcast(fleetName('partition', shredded));
        return report;
      },
      (r) => ({ counts: { versionsDeleted: r.versionsDeleted, masterKeyDisabled: r.masterKeyDisabled ? 1 : 0 } }),
    );
  readonly metrics = (): ReturnType<KeyHierarchy['metrics']> => this.#versions.metrics();
  readonly listen: KeyHierarchy['listen'] = (listener) => this.#s.listeners.add(listener);
  readonly health: KeyHierarchy['health'] = (healthOptions = {}) =>
    checkHealth(this.#s.store, this.#s.cache, (partition) => this.#versions.knownActive(partition), healthOptions.partitions ?? [], this.#s.work.closing);
  readonly activeVersion = (partition: string): Promise<number> => this.#versions.readActive(partition);
  readonly retire: KeyHierarchy['retire'] = (partition, version, retireOptions) =>
    audited(
      this.#s.audit,
      'retire',
      [partition],
      () => retireVersion({ store: this.#s.store, activeTtl: this.#s.activeTtl, forget: (p, v) => this.#s.cache.revokeVersion(p, v) }, partition, version, retireOptions),
      () => ({ versions: [version] }),
    );
  readonly keepWarm: KeyHierarchy['keepWarm'] = (partitions, keepOptions) =>
    this.#keepers.start({ keepFresh: (p, ahead) => this.#versions.keepFresh(p, ahead), periodMs: this.#s.keepWarmPeriod }, partitions, keepOptions);
  readonly close: KeyHierarchy['close'] = (closeOptions) => {
    this.#keepers.stopAll();
    return this.#s.work.close(closeOptions, () => {
      this.#s.fleet?.close();
      return this.#s.cache.close();
    });
  };
}
