/**
 * kms-envelope: envelope encryption with a KMS data key.
 *
 * @example
 * ```ts
 * import { createEnvelope, LocalKms } from 'kms-envelope';
 * // Browser-safe: files, Node streams and key files are in 'kms-envelope/node'.
 * const envelope = createEnvelope({ kms: LocalKms.generate() });
 * const sealed = await envelope.seal('secret', { context: { table: 'users', row: '42' } });
 * const plain = await envelope.openString(sealed, { context: { table: 'users', row: '42' } });
 * ```
 */
export {
  createEnvelope,
  inspect,
  needsRewrap,
  rewrapReasons,
  open,
  seal,
  type BatchOptions,
  type BatchResult,
  type ByteInput,
  type Bytes,
  type Envelope,
  type EnvelopeOptions,
  type KeyPolicy,
  type MessageInfo,
  type OpenItem,
  type OpenOptions,
  type OpenResult,
  type RewrapOptions,
  type SealItem,
  type SealOptions,
  type StreamSealOptions,
  type SuiteName,
} from './envelope.ts';
export {
  DECRYPT_CACHE_DEFAULTS,
  ENCRYPTION_CACHE_DEFAULTS,
  type DecryptCacheOptions,
  type EncryptionCacheOptions,
} from './economy/cache.ts';
export type { EnvelopeEvent, EventListener } from './economy/events.ts';
export type { BucketOptions, RateLimitOptions } from './economy/rate-limit.ts';
export type { FileHandleLike, RangeOptions, RangeSource, ReadAt } from './range.ts';
export { LocalKms, type LocalKmsOptions } from './kms/local.ts';
export { TencentKms, type TencentKmsOptions } from './kms/tencent.ts';
export { TencentKmsV2, type TencentKmsV2Options } from './kms/tencent-v2.ts';
export type { CredentialSource, RetryOptions, TencentCredentials, TransportOptions } from './kms/tencent-transport.ts';
export {
  cvmRoleCredentials,
  type CvmRoleCredentialsOptions,
  refreshingCredentials,
  type RefreshingCredentials,
  type RefreshOptions,
  stsCredentials,
  type StsCredentialsOptions,
  type TemporaryCredentials,
} from './kms/tencent-credentials.ts';
export { type ResponseKeyAlgorithm, type ResponseKeyOptions, UnsupportedAlgorithmError } from './kms/response-key.ts';
export type {
  DataKey,
  DecryptDataKeyRequest,
  EncryptDataKeyRequest,
  GenerateDataKeyRequest,
  KeyAdministration,
  KeyProvider,
  KeySpec,
  ReEncryptDataKeyRequest,
  WrappedDataKey,
} from './kms/key-provider.ts';
export type { CanonicalContext, ContextInput, EncryptionContext } from './core/context.ts';
export type { BackendName } from './core/select-backend.ts';
export {
  BLIND_INDEX_PARTITION_SUFFIX,
  BlindIndexNotWarmError,
  blindIndexPartition,
  blindIndexWarnings,
  createBlindIndex,
  expectedFalsePositives,
  type BlindIndex,
  type BlindIndexCallOptions,
  type BlindIndexColumn,
  type BlindIndexNormalizer,
  type BlindIndexOptions,
  type BlindIndexOutput,
  type BlindIndexSizing,
  type BlindIndexValue,
  type BlindIndexWarning,
  type CompoundIndexOptions,
  type CompoundIndexValue,
  type SingleColumnIndexOptions,
} from './blind-index.ts';
export {
  createKeyHierarchy,
  DERIVED_PARTITION_SUFFIXES,
  type AuditRecord,
  type HierarchyMetrics,
  type KeyHierarchy,
  type KeyHierarchyOptions,
  type MasterKeyRotation,
  type RotateMasterKeyOptions,
  type ShredOptions,
  type ShredReport,
  type VerifyReport,
} from './hierarchy.ts';
export { MemoryKeyStore, type KeyState, type KeyStore, type PartitionTombstone, type StoredKey, type WrappedKeyFields } from './economy/key-store.ts';
export { exportKeyStore, importKeyStore, parseKeyStoreExport, type ImportResult, type KeyStoreExport } from './economy/key-store-backup.ts';
export {
  createRecords,
  defineTable,
  RecordFieldError,
  sealedFieldLength,
  type FieldSpec,
  type FieldType,
  type FieldValues,
  type PlainRow,
  type RecordBatchOptions,
  type Records,
  type RecordsOptions,
  type SealedRow,
  type Table,
  type TableSpec,
} from './records.ts';
export {
  backfillSweep,
  reindexSweep,
  rewrapSweep,
  rotationSweep,
  runSweep,
  type RecordSweepPlan,
  type RowOutcome,
  type RowTransform,
  type SweepCounts,
  type SweepDriver,
  type SweepEvent,
  type SweepFailure,
  type SweepOptions,
  type SweepRow,
  type SweepSummary,
} from './sweep.ts';
export { INTERMEDIATE_KEY_CACHE_DEFAULTS, type IntermediateKeyCacheOptions } from './economy/intermediate-keys.ts';
export {
  ClosedError,
  ContextMismatchError,
  DecryptionFailedError,
  EnvelopeError,
  type EnvelopeErrorCode,
  FileChangedError,
  HeaderMalformedError,
  isEnvelopeError,
  KeyProviderMismatchError,
  KeyNotFoundError,
  KeyNotWarmError,
  KeyUnavailableError,
  KeyVersionRefusedError,
  KmsError,
  type KmsErrorKind,
  LimitExceededError,
  PartitionMismatchError,
  PartitionShreddedError,
  UnsupportedSuiteError,
  UnsupportedVersionError,
} from './core/errors.ts';
