/**
 * The public types of the key hierarchy (hierarchy.ts): its options, the KeyHierarchy object and
 * the reports of its operations.
 */
import type { KeepWarm, KeepWarmOptions } from './keep-warm.ts';
import type { RetireOptions, RetireReport } from './retire.ts';
import type { BackendName } from '../core/select-backend.ts';
import type { FleetCoordinator, FleetCounters } from '../economy/coordinator.ts';
import type { CacheCounters, IntermediateKeyCacheOptions } from '../economy/intermediate-keys.ts';
import type { HierarchyEventListener } from '../economy/events.ts';
import type { KeyProvider } from '../kms/key-provider.ts';
import type { KeyStore, StoredKey } from './key-store.ts';
import type { CloseOptions, CloseReport } from '../core/work-in-flight.ts';
import type { HealthReport } from './lifecycle.ts';

export type { CloseOptions, CloseReport } from '../core/work-in-flight.ts';
export type { HealthReport } from './lifecycle.ts';
export type { HierarchyEvent, HierarchyEventListener } from '../economy/events.ts';

export interface KeyHierarchyOptions extends IntermediateKeyCacheOptions {
  /** Where the wrapped intermediate keys live. */
  store: KeyStore;
  /** The KMS that wraps them: one provider, or a resolver from partition (tenant) to its provider. */
  kms: KeyProvider | ((partition: string) => KeyProvider);
  /** How long the active version of a partition is remembered before the store is asked again, ms; default 60000. */
  activeTtlMs?: number;
  /**
   * The audit hook, never given a key or plaintext: every envelope open under the hierarchy, one
   * record per record-API open call (records.open/openMany/openSync: not one per field), and the
   * administrative operations (key creation, rotate, retire, recreate, shred, master-key rotation,
   * verify). Its failures never reach the operation.
   */
  audit?: (record: AuditRecord) => void;
  /** Key loads and their failures, KMS calls, stale keys served, revocations, breaker changes (hierarchy.listen() adds more listeners). */
  onEvent?: HierarchyEventListener;
  backend?: BackendName;
  /** A monotonic clock in ms; default performance.now(). For tests of TTLs and staleness. */
  now?: () => number;
  /**
   * Suffixes of partitions derived from a partition (`tenant` + suffix), besides
   * DERIVED_PARTITION_SUFFIXES (the blind index's): shred(tenant) shreds them too, and once the
   * tenant is shredded no key is made for them unless it is re-created. For search indexes of your own.
   */
  derivedPartitionSuffixes?: readonly string[];
  /**
   * A fleet's coordinator (PostgresCoordinator, or RedisCoordinator from 'kms-envelope/redis'):
   * one GenerateDataKey per partition and version across the fleet (a creation lease), one fleet
   * breaker (at most one KMS probe a second while the KMS fails), revocations and shreds passed to
   * every process. Never waited on for long: while it is unreachable, each process acts alone.
   */
  coordinator?: FleetCoordinator;
  /**
   * Each coordinator call gives up after this long with the per-process answer, ms; default 1000.
   * A failed call, or 3 timeouts in a row, make the process act alone for 2 s.
   */
  coordinatorTimeoutMs?: number;
  /**
   * How long a creation lease lasts, ms; default 60000: longer than a KMS call with all its
   * attempts (TencentKms's deadline is 20 s), so a live holder never loses it. A holder that dies
   * leaves it to expire; the others wait for the store's record until then.
   */
  creationLeaseMs?: number;
}

export type AuditRecord = OpenAuditRecord | RowsOpenAuditRecord | AdminAuditRecord;

/** One envelope open (envelope.open and its kin) under the hierarchy; 'seal' only for a seal served in the outage grace (`sealGrace: true`). */
export interface OpenAuditRecord {
  operation: 'open' | 'seal';
  partition: string;
  version: number;
  /** SHA-256 (base64) of the canonical encoding of the message's context. */
  contextDigest: string;
  /** Whether the intermediate key came from memory (no KMS call). */
  fromCache: boolean;
  /** What the caller passed as `audit` in the open call. */
  metadata: Readonly<Record<string, unknown>> | undefined;
  /** A seal made with a key version past its TTL during a KMS outage (`sealGraceMs`). */
  sealGrace?: boolean;
}

/** One records.open, openMany or openSync call: its fields opened, by key version. */
export interface RowsOpenAuditRecord {
  operation: 'open-rows';
  table: string;
  rows: number;
  /** Rows that failed to open (a field refused or malformed). */
  failed: number;
  /** Fields opened (a key was found for them). */
  fields: number;
  /** The key versions used, with the fields each opened and whether all came from memory. */
  keys: { partition: string; version: number; fields: number; fromCache: boolean }[];
  /** What the caller passed as `audit` to the call (a request id, a user). */
  metadata: Readonly<Record<string, unknown>> | undefined;
}

/** An administrative operation on the keys, when it ended (ok or not). */
export interface AdminAuditRecord {
  operation: 'create-version' | 'rotate' | 'retire' | 'recreate' | 'shred' | 'rotate-master-key' | 'verify';
  /** The partitions named (for rotate-master-key and verify without a list: empty, meaning all). */
  partitions: string[];
  /** The versions made, retired or deleted, when the operation names them. */
  versions: number[];
  ok: boolean;
  /** On failure: the error's stable code (never its message). */
  errorCode?: string;
  /** Counts from the operation's report (rewrapped, failed, checked, versionsDeleted...). */
  counts?: Record<string, number>;
  /** When it ended, ms since the epoch. */
  at: number;
}

export interface HierarchyMetrics extends CacheCounters, FleetCounters {
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
  /**
   * The partition's active version, read from the key store now (creating version 1 where none
   * exists), and remembered: a rotation by another process is seen at once (the sweeps aim at it).
   */
  activeVersion(partition: string): Promise<number>;
  /**
   * Retires a key version (README "Retiring old key versions"): its wrapped key is deleted from
   * the store, so what it sealed never opens again (KeyVersionRetiredError, ERR_KEY_VERSION_RETIRED),
   * backups of old rows included. Only when the version was replaced (rotate) longer than
   * activeTtlMs + graceMs ago, and every census (a sweep reading the sealed values' headers) finds
   * no value naming it; else RetireRefusedError (ERR_RETIRE_REFUSED) and nothing changes. Other
   * processes drop a loaded copy when its TTL ends.
   */
  retire(partition: string, version: number, options: RetireOptions): Promise<RetireReport>;
  /**
   * Keeps these partitions' keys warm in the background (read each tick, so a Set may grow): the
   * active version read again before it would be forgotten, the key refreshed before its TTL
   * ends, one KMS Decrypt per partition per TTL. Until stop() (or close()). records.warm() uses it.
   */
  keepWarm(partitions: Iterable<string>, options?: KeepWarmOptions): KeepWarm;
  metrics(): HierarchyMetrics;
  /** Adds an event listener (as `onEvent`); returns the function that removes it. */
  listen(listener: HierarchyEventListener): () => void;
  /**
   * A readiness check: one store read, no KMS call. `partitions`: those whose active key must be
   * loaded for the process to count as ready.
   */
  health(options?: { partitions?: readonly string[] }): Promise<HealthReport>;
  /**
   * Stops the hierarchy: calls waiting for a key are drained (default) or refused, per `drain`;
   * later calls get ERR_CLOSED; every key held is wiped. Resolves with what it drained and refused.
   */
  close(options?: CloseOptions): Promise<CloseReport>;
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
