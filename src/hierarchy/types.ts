/**
 * The public types of the key hierarchy (hierarchy.ts): its options, the KeyHierarchy object and
 * the reports of its operations.
 */
import type { BackendName } from '../core/select-backend.ts';
import type { FleetCoordinator, FleetCounters } from '../economy/coordinator.ts';
import type { CacheCounters, IntermediateKeyCacheOptions } from '../economy/intermediate-keys.ts';
import type { KeyProvider } from '../kms/key-provider.ts';
import type { KeyStore, StoredKey } from './key-store.ts';

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
  /**
   * A fleet's coordinator (PostgresCoordinator, or RedisCoordinator from 'kms-envelope/redis'):
   * one GenerateDataKey per partition and version across the fleet (a creation lease), one fleet
   * breaker (at most one KMS probe a second while the KMS fails), revocations and shreds passed to
   * every process. Never waited on for long: while it is unreachable, each process acts alone.
   */
  coordinator?: FleetCoordinator;
  /** Each coordinator call gives up after this long (then the process acts alone for 2 s), ms; default 250. */
  coordinatorTimeoutMs?: number;
  /**
   * How long a creation lease lasts, ms; default 60000: longer than a KMS call with all its
   * attempts (TencentKms's deadline is 20 s), so a live holder never loses it. A holder that dies
   * leaves it to expire; the others wait for the store's record until then.
   */
  creationLeaseMs?: number;
}

export interface AuditRecord {
  /** 'seal' records only seals served in the outage grace (`sealGrace: true`). */
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
