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
  type ByteInput,
  type Bytes,
  type Envelope,
  type EnvelopeOptions,
  type KeyPolicy,
  type MessageInfo,
  type OpenOptions,
  type OpenResult,
  type SealOptions,
  type StreamSealOptions,
  type SuiteName,
} from './envelope/envelope.ts';
export type { CloseOptions, CloseReport } from './core/work-in-flight.ts';
export { rewrap, type RewrapOptions } from './envelope/rewrap.ts';
export { openStream, sealStream } from './envelope/stream.ts';
export { openRange, type FileHandleLike, type RangeOptions, type RangeSource, type ReadAt } from './envelope/range.ts';
export { openSync, sealSync } from './envelope/sync.ts';
export { type BatchOptions, type BatchResult, type OpenItem, openMany, type SealItem, sealMany } from './envelope/batch.ts';
export { usePortableCrypto } from './core/backend-noble.ts';
export { keyPolicy, type KeyPolicyChoice } from './core/key-policy.ts';
export type { Suite } from './core/suites.ts';
export {
  DECRYPT_CACHE_DEFAULTS,
  decryptCache,
  type DecryptCacheChoice,
  ENCRYPTION_CACHE_DEFAULTS,
  encryptionCache,
  type EncryptionCacheChoice,
  type DecryptCacheOptions,
  type EncryptionCacheOptions,
} from './economy/cache.ts';
export type { EnvelopeEvent, EventListener } from './economy/events.ts';
export type { BucketOptions, RateLimitOptions } from './economy/rate-limit.ts';
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
  ClosedError,
  ContextMismatchError,
  DecryptionFailedError,
  EnvelopeError,
  type EnvelopeErrorCode,
  FieldMalformedError,
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
