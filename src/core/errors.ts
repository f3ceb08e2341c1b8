/**
 * One error base class with a stable `code`, like jose's JOSEError. Messages never carry keys,
 * plaintext or secrets; every authentication failure is the same opaque DecryptionFailedError.
 */

export type EnvelopeErrorCode =
  | 'ERR_HEADER_MALFORMED'
  | 'ERR_UNSUPPORTED_VERSION'
  | 'ERR_UNSUPPORTED_SUITE'
  | 'ERR_LIMIT_EXCEEDED'
  | 'ERR_CONTEXT_MISMATCH'
  | 'ERR_KEY_PROVIDER_MISMATCH'
  | 'ERR_DECRYPTION_FAILED'
  | 'ERR_KMS'
  | 'ERR_KEY_NOT_FOUND'
  | 'ERR_KEY_UNAVAILABLE'
  | 'ERR_KEY_NOT_WARM'
  | 'ERR_KEY_VERSION_REFUSED'
  | 'ERR_FILE_CHANGED'
  | 'ERR_CLOSED'
  | 'ERR_PARTITION_MISMATCH'
  | 'ERR_PARTITION_SHREDDED'
  | 'ERR_FIELD_MALFORMED'
  | 'ERR_MIGRATION_INCOMPLETE'
  | 'ERR_ROW_VERSION'
  | 'ERR_UNSUPPORTED_QUERY'
  | 'ERR_KEY_VERSION_RETIRED'
  | 'ERR_RETIRE_REFUSED';

export class EnvelopeError extends Error {
  readonly code: EnvelopeErrorCode;
  constructor(code: EnvelopeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The message's header is not in the shape FORMAT.md describes. */
export class HeaderMalformedError extends EnvelopeError {
  constructor(message: string) {
    super('ERR_HEADER_MALFORMED', message);
  }
}

/** The header ends before its last field: malformed for a whole message, "need more" for a stream. */
export class HeaderTruncatedError extends HeaderMalformedError {}

export class UnsupportedVersionError extends EnvelopeError {
  readonly version: number;
  constructor(version: number) {
    super('ERR_UNSUPPORTED_VERSION', `unsupported message version ${version} (this library reads versions 1 and 2)`);
    this.version = version;
  }
}

export class UnsupportedSuiteError extends EnvelopeError {
  readonly suite: number;
  constructor(suite: number, detail = '') {
    const hex = `0x${suite.toString(16).padStart(2, '0')}`;
    super('ERR_UNSUPPORTED_SUITE', `unsupported suite ${hex}${detail ? ` (${detail})` : ''}`);
    this.suite = suite;
  }
}

export class LimitExceededError extends EnvelopeError {
  constructor(message: string) {
    super('ERR_LIMIT_EXCEEDED', message);
  }
}

export class ContextMismatchError extends EnvelopeError {
  constructor(message: string) {
    super('ERR_CONTEXT_MISMATCH', message);
  }
}

export class KeyProviderMismatchError extends EnvelopeError {
  constructor(message: string) {
    super('ERR_KEY_PROVIDER_MISMATCH', message);
  }
}

/**
 * Every authentication failure: wrong key, wrong context, commitment, tag, truncation, extension.
 * One message for all of them, so that failures are no oracle.
 */
export class DecryptionFailedError extends EnvelopeError {
  constructor() {
    super('ERR_DECRYPTION_FAILED', 'decryption failed');
  }
}

/**
 * What kind of KMS failure (README, Errors), so a caller can tell them apart:
 * - `timeout`: no answer in time (each attempt timed out, or the call's deadline passed);
 * - `throttled`: the KMS's rate limit, after the retries, or the deadline passed in the client-side limiter;
 * - `auth`: credentials missing or refused, signature, permissions;
 * - `bad-request`: a request the KMS refuses for its parameters, or that is refused before it is
 *   sent (a context over the KMS's limit);
 * - `bad-response`: an answer out of shape (not JSON, too large, a redirect, a missing, malformed
 *   or oversized field, a data key of the wrong length);
 * - `unreachable`: no connection (refused, reset, DNS);
 * - `service`: every other failure the KMS reports (key disabled or not found, internal errors,
 *   HTTP 5xx), and any failure of a key provider that gives no kind.
 */
export type KmsErrorKind = 'timeout' | 'throttled' | 'auth' | 'bad-request' | 'bad-response' | 'unreachable' | 'service';

/** The key provider (KMS) failed: network, service error, permissions, bad response. */
export class KmsError extends EnvelopeError {
  /** The KMS's own error code, when it gave one (e.g. `ResourceUnavailable.CmkDisabled`). */
  readonly kmsCode: string | undefined;
  readonly requestId: string | undefined;
  /** What kind of failure; `service` when the provider did not say. */
  readonly kind: KmsErrorKind;
  constructor(message: string, options: { kind?: KmsErrorKind; kmsCode?: string; requestId?: string; cause?: unknown } = {}) {
    super('ERR_KMS', message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = options.kind ?? 'service';
    this.kmsCode = options.kmsCode;
    this.requestId = options.requestId;
  }
}

/** Key hierarchy: the key store has no such intermediate-key version (or partition). */
export class KeyNotFoundError extends EnvelopeError {
  readonly partition: string;
  readonly version: number | undefined;
  constructor(partition: string, version?: number) {
    super('ERR_KEY_NOT_FOUND', `no intermediate key ${version === undefined ? '' : `version ${version} `}in partition ${JSON.stringify(partition)}`);
    this.partition = partition;
    this.version = version;
  }
}

/**
 * Key hierarchy: the intermediate key cannot be had now: the KMS is failing and no key in memory
 * may be used (past its TTL for sealing, past the staleness bound for opening), or the circuit
 * breaker is open. Revocation is a KmsError from the KMS instead, never this.
 */
export class KeyUnavailableError extends EnvelopeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_KEY_UNAVAILABLE', message, options);
  }
}

/**
 * A synchronous call (sealSync, openSync, the ORM adapters) found its key not in memory. The key is
 * being loaded: warm it first (records.warm(), hierarchy.warm(), or any async call), then retry.
 */
export class KeyNotWarmError extends EnvelopeError {
  constructor(what: string) {
    super('ERR_KEY_NOT_WARM', `${what} needs its key loaded in memory: warm it first (await records.warm([partition]) or any async call), then retry`);
  }
}

/**
 * A key policy refused the message before any KMS call: its format version or its intermediate-key
 * version is older than the minimum (`minFormatVersion`, `minKeyVersion`), or its master key is not
 * one the policy accepts. `found` is what the message names; `minimum` what the policy asks.
 */
export class KeyVersionRefusedError extends EnvelopeError {
  readonly what: 'format version' | 'key version' | 'key id';
  readonly found: number | string;
  readonly minimum: number | string | undefined;
  constructor(what: 'format version' | 'key version' | 'key id', found: number | string, minimum: number | string | undefined, detail = '') {
    const asked = minimum === undefined ? '' : typeof minimum === 'number' ? ` (the minimum is ${minimum})` : ` (${minimum})`;
    super('ERR_KEY_VERSION_REFUSED', `the message's ${what} ${typeof found === 'number' ? found : JSON.stringify(found)} is refused by the key policy${asked}${detail}`);
    this.what = what;
    this.found = found;
    this.minimum = minimum;
  }
}

/** A file changed while it was rewrapped in place: the rewrap was abandoned and the file left as it is. */
export class FileChangedError extends EnvelopeError {
  readonly path: string;
  constructor(path: string) {
    super('ERR_FILE_CHANGED', `${path} changed while it was rewrapped (size, times or inode): it was left as it is; run the rewrap again`);
    this.path = path;
  }
}

/** The envelope was closed: close() wiped its caches, and it takes no more work. */
export class ClosedError extends EnvelopeError {
  constructor() {
    super('ERR_CLOSED', 'the envelope is closed');
  }
}

/**
 * The message names another key-hierarchy partition (tenant) than the one the caller expects: the
 * envelope's `partition`, the `partition` of the open, or the row's partition (records). Thrown
 * before any key is loaded. `found` is undefined for a message sealed with a KMS data key, which
 * names no partition. Partition names are not secret: they are in the header in clear.
 */
export class PartitionMismatchError extends EnvelopeError {
  readonly expected: string;
  readonly found: string | undefined;
  constructor(expected: string, found: string | undefined) {
    const sealed = found === undefined ? 'with a KMS data key, under no partition' : `for partition ${JSON.stringify(found)}`;
    super('ERR_PARTITION_MISMATCH', `the message was sealed ${sealed}, not for the expected partition ${JSON.stringify(expected)}`);
    this.expected = expected;
    this.found = found;
  }
}

/**
 * Key hierarchy: the partition was shredded (hierarchy.shred). Opening a message of a shredded key
 * version, sealing for the partition, or computing its blind index fails with this, until the
 * partition is explicitly re-created (hierarchy.recreate), whose new versions start above
 * `version`, the highest version shredded: version numbers are never reused.
 */
export class PartitionShreddedError extends EnvelopeError {
  readonly partition: string;
  /** The highest key version shredded (at least 1). */
  readonly version: number;
  constructor(partition: string, version: number, what: 'open' | 'seal' | 'import') {
    const detail =
      what === 'open'
        ? `its key versions up to ${version} are destroyed, so what they sealed does not open`
        : what === 'seal'
          ? `no new key is made for it unless it is re-created explicitly (hierarchy.recreate(${JSON.stringify(partition)}))`
          : `its key versions up to ${version} are not brought back from a backup`;
    super('ERR_PARTITION_SHREDDED', `partition ${JSON.stringify(partition)} was shredded: ${detail}`);
    this.partition = partition;
    this.version = version;
  }
}

const ERROR_NAMES = new Set([
  'ClosedError',
  'EnvelopeError',
  'HeaderMalformedError',
  'HeaderTruncatedError',
  'UnsupportedVersionError',
  'UnsupportedSuiteError',
  'LimitExceededError',
  'ContextMismatchError',
  'KeyProviderMismatchError',
  'DecryptionFailedError',
  'KmsError',
  'UnsupportedAlgorithmError',
  'KeyNotFoundError',
  'KeyUnavailableError',
  'KeyNotWarmError',
  'KeyVersionRefusedError',
  'FileChangedError',
  'BlindIndexNotWarmError',
  'RecordFieldError',
  'PartitionMismatchError',
  'PartitionShreddedError',
  'FieldMalformedError',
]);

/** True for any error thrown by this library, across realms and duplicate installs. */
export function isEnvelopeError(error: unknown): error is EnvelopeError {
  if (error instanceof EnvelopeError) return true;
  return error instanceof Error && ERROR_NAMES.has(error.name) && typeof (error as { code?: unknown }).code === 'string';
}

/**
 * A database field (FORMAT.md §12) that authenticated but whose plaintext is not a valid value of
 * its column's type: another type tag, or value bytes no writer makes (a NaN with payload bits, an
 * invalid or fractional Date, `-0` as a bigint, JSON not in JSON.stringify's form). Distinct from
 * ERR_DECRYPTION_FAILED: the key and the binding were right, so the bytes were sealed as they are
 * by someone who held the key. Never carries the plaintext.
 */
export class FieldMalformedError extends EnvelopeError {
  /** The column's declared type. */
  readonly type: string;
  /** The type tag found (the plaintext's first byte), or undefined for an empty plaintext. */
  readonly tag: number | undefined;
  constructor(type: string, tag: number | undefined, why: string) {
    super('ERR_FIELD_MALFORMED', `the value is not a ${type} (${why})`);
    this.type = type;
    this.tag = tag;
  }
}
