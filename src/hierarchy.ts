/**
 * kms-envelope/hierarchy: a key hierarchy of intermediate keys under the KMS master key, and the key
 * stores that keep them (memory, PostgreSQL, SQLite; the JSON file store is in 'kms-envelope/node').
 *
 * @example
 * ```ts
 * import { createEnvelope, LocalKms } from 'kms-envelope';
 * import { createKeyHierarchy, PostgresKeyStore } from 'kms-envelope/hierarchy';
 * const hierarchy = createKeyHierarchy({ kms, store: new PostgresKeyStore({ pool }) });
 * const envelope = createEnvelope({ hierarchy });
 * ```
 */
export {
  createKeyHierarchy,
  DERIVED_PARTITION_SUFFIXES,
  type AdminAuditRecord,
  type AuditRecord,
  type CloseOptions,
  type CloseReport,
  type HealthReport,
  type HierarchyEvent,
  type HierarchyEventListener,
  type OpenAuditRecord,
  type RowsOpenAuditRecord,
  type HierarchyMetrics,
  type KeepWarm,
  type KeepWarmOptions,
  type KeyHierarchy,
  KeyVersionRetiredError,
  RetireRefusedError,
  type RetireOptions,
  type RetireRefusal,
  type RetireReport,
  type VersionCensus,
  type KeyHierarchyOptions,
  type MasterKeyRotation,
  type RotateMasterKeyOptions,
  type ShredOptions,
  type ShredReport,
  type VerifyReport,
} from './hierarchy/hierarchy.ts';
export { MemoryKeyStore, type KeyState, type KeyStore, type PartitionTombstone, type StoredKey, type WrappedKeyFields } from './hierarchy/key-store.ts';
export { exportKeyStore, importKeyStore, parseKeyStoreExport, type ImportResult, type KeyStoreExport } from './hierarchy/key-store-backup.ts';
export { INTERMEDIATE_KEY_CACHE_DEFAULTS, type IntermediateKeyCacheOptions } from './economy/intermediate-keys.ts';
export { CorruptKeyRecordError } from './hierarchy/stores/common.ts';
export { type PostgresKeyStoreOptions, type PostgresQueryable, PostgresKeyStore, postgresKeyTableSql, postgresTombstoneTableSql } from './hierarchy/stores/postgres.ts';
export { type SqliteDatabase, type SqliteKeyStoreOptions, type SqliteStatement, SqliteKeyStore, sqliteKeyTableSql, sqliteTombstoneTableSql } from './hierarchy/stores/sqlite.ts';
export {
  fleetBudget,
  TENCENT_ACCOUNT_QUOTAS,
  type FleetBudgetOptions,
  type FleetCoordinator,
  type FleetCounters,
} from './economy/coordinator.ts';
export { PostgresCoordinator, postgresCoordinatorTableSql, type PostgresCoordinatorOptions } from './hierarchy/coordinators/postgres.ts';
