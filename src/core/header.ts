/**
 * The message header (FORMAT.md §2, §5, and §10 for version 2): encode, and parse with every
 * declared length checked against its limit before the field is read. The parser returns the
 * authenticated bytes exactly as received, so the payload authenticates what was read and never a
 * re-encoding.
 */
import { keepShape, startsWithPublicBytes, utf8, utf8DecodeStrict } from './bytes.ts';
import { RecentList } from './recent.ts';
import { type PayloadSuite, suiteById as knownSuite } from './suites.ts';
import { type CanonicalContext, CONTEXT_LIMITS, parseContext } from './context.ts';
import { HeaderMalformedError, HeaderTruncatedError, LimitExceededError, UnsupportedSuiteError, UnsupportedVersionError } from './errors.ts';

export const MAGIC = Uint8Array.of(0x89, 0x4b, 0x4d, 0x45);
export const VERSION = 1;
const VERSION_2 = 2;
const PREFIX_LENGTH = 7;

export const HEADER_LIMITS = {
  maxProviderIdBytes: 32,
  maxKeyIdBytes: 1024,
  maxBlobBytes: 8192,
  /** Version 2: wrapped keys of one data key in one message. */
  maxWrappedKeys: 8,
  maxPartitionBytes: 255,
  /** Version 2: an intermediate-key version is a u32, as LEB128 of at most 5 bytes. */
  maxKeyVersion: 0xffffffff,
} as const;

const MAX_WRAPPED_KEY_LENGTH = 1 + HEADER_LIMITS.maxProviderIdBytes + 2 + HEADER_LIMITS.maxKeyIdBytes + 2 + HEADER_LIMITS.maxBlobBytes;

/** The field limits bound a version-1 header. */
const MAX_HEADER_LENGTH_V1 = PREFIX_LENGTH + CONTEXT_LIMITS.maxEncodedBytes + MAX_WRAPPED_KEY_LENGTH;

/**
 * The largest header of any version: a streaming reader never buffers more than this before it
 * can parse (version 2 with the most wrapped keys).
 */
export const MAX_HEADER_LENGTH = PREFIX_LENGTH + CONTEXT_LIMITS.maxEncodedBytes + 1 + HEADER_LIMITS.maxWrappedKeys * MAX_WRAPPED_KEY_LENGTH;

const CONTEXT_STORED = 0x00;
const CONTEXT_DETACHED = 0x01;

/** Version-2 flags (FORMAT.md §10.1). */
const FLAG_DETACHED = 0x01;
const FLAG_COMPACT = 0x02;
const SOURCE_SHIFT = 2;
const SOURCE_MASK = 0x0c;
const SOURCE_KMS = 0;
const SOURCE_INTERMEDIATE = 1;
const FLAGS_RESERVED = 0xf0;

/** Where a message's input key comes from. */
export type KeySource = 'kms' | 'intermediate';

/** FORMAT.md §2: ids 04 to 0F are kept for later suites of this version. */
function unknownSuite(id: number): string {
  return id === 0 ? 'invalid' : id >= 0x04 && id <= 0x0f ? 'reserved for a later suite, not implemented in this version' : 'unknown';
}

const PROVIDER_ID = /^[a-z0-9._-]{1,32}$/;

export interface WrappedKey {
  /** Key provider id, e.g. `local`, `tencent`. */
  readonly provider: string;
  /** KMS master key id. */
  readonly keyId: string;
  /** The KMS's opaque wrapped data key. */
  readonly ciphertextBlob: string;
}

/** Version 2: a message whose input key is a version of a partition's intermediate key. */
export interface IntermediateKeyRef {
  readonly partition: string;
  readonly version: number;
}

export interface ParsedHeader {
  readonly version: number;
  readonly suite: PayloadSuite;
  readonly detached: boolean;
  /** The stored context; undefined when detached. */
  readonly context: CanonicalContext | undefined;
  /** Version 2: the compact payload (FORMAT.md §10.3); always false in version 1. */
  readonly compact: boolean;
  readonly keySource: KeySource;
  /** The KMS-wrapped data keys, in the order written (one in version 1); empty for an intermediate key. */
  readonly wrappedKeys: readonly WrappedKey[];
  /** The intermediate key the message names; undefined for a KMS data key. */
  readonly intermediate: IntermediateKeyRef | undefined;
  /** Bytes 0 .. end of the authenticated sections, as received (FORMAT.md §4, §10). */
  readonly authenticated: Uint8Array;
  /** The wrapped-key section as received (provider, key id, blob...): identifies the data key. */
  readonly wrappedBytes: Uint8Array;
  /** Total header length; the payload starts here. */
  readonly length: number;
}

/** The suite with this header id; UnsupportedSuiteError (naming reserved ids) otherwise. */
export function suiteById(id: number): PayloadSuite {
  const suite = knownSuite(id);
  if (!suite) throw new UnsupportedSuiteError(id, unknownSuite(id));
  return suite;
}

export function validateProviderId(id: string): string {
  if (!PROVIDER_ID.test(id)) throw new TypeError(`key provider id must match ${PROVIDER_ID}, got ${JSON.stringify(id)}`);
  return id;
}

/** Encodes the authenticated part: prefix and context section. */
export function encodeAuthenticated(suite: PayloadSuite, context: CanonicalContext, detached: boolean): Uint8Array {
  const out = new Uint8Array(PREFIX_LENGTH + (detached ? 0 : context.encoded.length));
  out.set(MAGIC);
  out[4] = VERSION;
  out[5] = suite.id;
  out[6] = detached ? CONTEXT_DETACHED : CONTEXT_STORED;
  if (!detached) out.set(context.encoded, PREFIX_LENGTH);
  return out;
}

/** Encodes the wrapped-key section, checking it against the limits a reader enforces. */
export function encodeWrappedKey(wrapped: WrappedKey): Uint8Array {
  const provider = utf8(validateProviderId(wrapped.provider), 'provider id');
  const keyId = utf8(wrapped.keyId, 'key id');
  const blob = utf8(wrapped.ciphertextBlob, 'ciphertext blob');
  if (keyId.length < 1 || keyId.length > HEADER_LIMITS.maxKeyIdBytes) {
    throw new RangeError(`key id must be 1 to ${HEADER_LIMITS.maxKeyIdBytes} bytes, got ${keyId.length}`);
  }
  if (blob.length < 1 || blob.length > HEADER_LIMITS.maxBlobBytes) {
    throw new RangeError(`ciphertext blob must be 1 to ${HEADER_LIMITS.maxBlobBytes} bytes, got ${blob.length}`);
  }
  const out = new Uint8Array(1 + provider.length + 2 + keyId.length + 2 + blob.length);
  const view = new DataView(out.buffer);
  let o = 0;
  out[o++] = provider.length;
  out.set(provider, o);
  o += provider.length;
  view.setUint16(o, keyId.length);
  out.set(keyId, o + 2);
  o += 2 + keyId.length;
  view.setUint16(o, blob.length);
  out.set(blob, o + 2);
  return out;
}

/** Version 2 (FORMAT.md §10): the prefix with its flags, the stored context, and the intermediate-key section if any. */
export function encodeAuthenticatedV2(
  suite: PayloadSuite,
  context: CanonicalContext,
  detached: boolean,
  compact: boolean,
  intermediate: IntermediateKeyRef | undefined,
): Uint8Array {
  const partition = intermediate ? utf8(intermediate.partition, 'partition') : undefined;
  if (partition && (partition.length < 1 || partition.length > HEADER_LIMITS.maxPartitionBytes)) {
    throw new RangeError(`partition must be 1 to ${HEADER_LIMITS.maxPartitionBytes} UTF-8 bytes, got ${partition.length}`);
  }
  const version = intermediate ? leb128(intermediate.version) : undefined;
  const contextBytes = detached ? 0 : context.encoded.length;
  const out = new Uint8Array(PREFIX_LENGTH + contextBytes + (partition ? 1 + partition.length + version!.length : 0));
  out.set(MAGIC);
  out[4] = VERSION_2;
  out[5] = suite.id;
  out[6] = (detached ? FLAG_DETACHED : 0) | (compact ? FLAG_COMPACT : 0) | ((intermediate ? SOURCE_INTERMEDIATE : SOURCE_KMS) << SOURCE_SHIFT);
  let o = PREFIX_LENGTH;
  if (!detached) {
    out.set(context.encoded, o);
    o += contextBytes;
  }
  if (partition) {
    out[o++] = partition.length;
    out.set(partition, o);
    o += partition.length;
    out.set(version!, o);
  }
  return out;
}

/** Version 2: the count and the wrapped keys (FORMAT.md §10.2), each as in version 1. */
export function encodeWrappedKeys(wrapped: readonly WrappedKey[]): Uint8Array {
  if (wrapped.length < 1 || wrapped.length > HEADER_LIMITS.maxWrappedKeys) {
    throw new RangeError(`a message carries 1 to ${HEADER_LIMITS.maxWrappedKeys} wrapped keys, got ${wrapped.length}`);
  }
  const parts = wrapped.map(encodeWrappedKey);
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  out[0] = parts.length;
  let o = 1;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}

/** Unsigned LEB128, minimal, for a key version (1 to 2^32-1): a plain array, which set() copies from (Uint8Array.from costs more). */
function leb128(value: number): number[] {
  if (!Number.isInteger(value) || value < 1 || value > HEADER_LIMITS.maxKeyVersion) {
    throw new RangeError(`key version must be an integer from 1 to ${HEADER_LIMITS.maxKeyVersion}, got ${value}`);
  }
  const out: number[] = [];
  let v = value;
  do {
    const byte = v % 128;
    v = Math.floor(v / 128);
    out.push(v > 0 ? byte | 0x80 : byte);
  } while (v > 0);
  return out;
}

/** A hint for the most common wrong input: the message was base64- or hex-encoded. */
function notOurs(bytes: Uint8Array): HeaderMalformedError {
  const looksText = bytes.length >= 4 && bytes.subarray(0, 4).every((b) => b >= 0x20 && b < 0x7f);
  const hint = looksText ? ' (it looks like text: was it base64- or hex-encoded?)' : '';
  return new HeaderMalformedError(`not a kms-envelope message: bad magic bytes${hint}`);
}

/**
 * Recently parsed headers, most recent first. Every message sealed under one cached data key has
 * the same header, so a reader mostly sees headers it has parsed before; comparing bytes costs
 * a tenth of parsing (context decoding and UTF-8 checks). Parsing is a function of the bytes, and
 * a header is self-delimiting, so input that starts with a known header parses to it. The memo
 * holds its own copies (headers are not secret) and hands out views into the caller's bytes.
 */
const known = new RecentList<{ bytes: Uint8Array; authenticatedLength: number; header: ParsedHeader }>(32);
const EMPTY = new Uint8Array(0);


/**
 * Parses the header at the start of `bytes`. Needs the whole header, not the payload.
 * Throws HeaderMalformedError, UnsupportedVersionError, UnsupportedSuiteError, LimitExceededError.
 */
export function parseHeader(bytes: Uint8Array): ParsedHeader {
  const entry = known.find((e) => startsWithPublicBytes(bytes, e.bytes));
  if (entry) {
    const end = entry.authenticatedLength;
    const { version, suite, detached, context, compact, keySource, wrappedKeys, intermediate } = entry.header;
    // A literal in the parsers' field order: one object shape for readers, memo or not.
    return {
      version,
      suite,
      detached,
      context,
      compact,
      keySource,
      wrappedKeys,
      intermediate,
      authenticated: bytes.subarray(0, end),
      wrappedBytes: bytes.subarray(end, entry.bytes.length),
      length: entry.bytes.length,
    };
  }
  const header = parseHeaderBytes(bytes);
  const authenticatedLength = header.authenticated.length;
  known.add({ bytes: bytes.slice(0, header.length), authenticatedLength, header: { ...header, authenticated: EMPTY, wrappedBytes: EMPTY } });
  return header;
}

/**
 * The intermediate-key version a message names, read without parsing the rest of the header: for
 * callers that need only the version of a message they just sealed (the record API's key-version
 * column). Anything but a version-2 header with a detached context and key source 1 takes the full
 * parse, which also checks it.
 */
export function intermediateKeyVersion(bytes: Uint8Array): number | undefined {
  const flags = bytes[6];
  if (bytes[4] !== VERSION_2 || flags === undefined || (flags & (FLAGS_RESERVED | FLAG_DETACHED | SOURCE_MASK)) !== (FLAG_DETACHED | (SOURCE_INTERMEDIATE << SOURCE_SHIFT))) {
    return parseHeader(bytes).intermediate?.version;
  }
  const reader = new FieldReader(bytes, PREFIX_LENGTH);
  reader.field(1, HEADER_LIMITS.maxPartitionBytes, 'partition');
  return reader.keyVersion();
}

/** Reads fields of a header in order, each length checked against its limit before the field is read. */
class FieldReader {
  offset: number;
  readonly #bytes: Uint8Array;
  readonly #view: DataView;

  constructor(bytes: Uint8Array, offset: number) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = offset;
  }

  // One reader kept (over no bytes, so it keeps no caller's message alive): see keepShape.
  static {
    keepShape(new FieldReader(new Uint8Array(0), 0));
  }

  byte(what: string): number {
    if (this.offset >= this.#bytes.length) throw new HeaderTruncatedError(`header truncated before the ${what}`);
    return this.#bytes[this.offset++]!;
  }

  field(lengthBytes: 1 | 2, max: number, what: string): Uint8Array {
    const bytes = this.#bytes;
    const offset = this.offset;
    if (offset + lengthBytes > bytes.length) throw new HeaderTruncatedError(`header truncated before the ${what} length`);
    const len = lengthBytes === 1 ? bytes[offset]! : this.#view.getUint16(offset);
    if (len === 0) throw new HeaderMalformedError(`empty ${what}`);
    if (len > max) throw new LimitExceededError(`${what} of ${len} bytes; the limit is ${max}`);
    if (offset + lengthBytes + len > bytes.length) throw new HeaderTruncatedError(`header truncated in the ${what}`);
    this.offset = offset + lengthBytes + len;
    return bytes.subarray(offset + lengthBytes, offset + lengthBytes + len);
  }

  text(lengthBytes: 1 | 2, max: number, what: string): string {
    const s = utf8DecodeStrict(this.field(lengthBytes, max, what));
    if (s === undefined) throw new HeaderMalformedError(`${what} is not valid UTF-8`);
    return s;
  }

  wrappedKey(): WrappedKey {
    const provider = this.text(1, HEADER_LIMITS.maxProviderIdBytes, 'key provider id');
    if (!PROVIDER_ID.test(provider)) throw new HeaderMalformedError('key provider id has characters outside [a-z0-9._-]');
    const keyId = this.text(2, HEADER_LIMITS.maxKeyIdBytes, 'key id');
    const ciphertextBlob = this.text(2, HEADER_LIMITS.maxBlobBytes, 'ciphertext blob');
    return { provider, keyId, ciphertextBlob };
  }

  /** A minimal unsigned LEB128 key version, 1 to 2^32-1. */
  keyVersion(): number {
    let value = 0;
    for (let i = 0, scale = 1; i < 5; i++, scale *= 128) {
      const byte = this.byte('key version');
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        if (byte === 0 && i > 0) throw new HeaderMalformedError('key version is not minimally encoded');
        if (value < 1 || value > HEADER_LIMITS.maxKeyVersion) throw new HeaderMalformedError(`key version ${value} is out of range`);
        return value;
      }
    }
    throw new HeaderMalformedError('key version is longer than 5 bytes');
  }
}

function parseHeaderBytes(bytes: Uint8Array): ParsedHeader {
  for (let i = 0; i < Math.min(MAGIC.length, bytes.length); i++) if (bytes[i] !== MAGIC[i]) throw notOurs(bytes);
  if (bytes.length < PREFIX_LENGTH) throw new HeaderTruncatedError('header truncated in the prefix');
  const version = bytes[4]!;
  if (version === VERSION_2) return parseVersion2(bytes);
  if (version !== VERSION) throw new UnsupportedVersionError(version);
  const suite = suiteById(bytes[5]!);
  const mode = bytes[6]!;
  if (mode !== CONTEXT_STORED && mode !== CONTEXT_DETACHED) {
    throw new HeaderMalformedError(`unknown context mode 0x${mode.toString(16).padStart(2, '0')}`);
  }
  let offset = PREFIX_LENGTH;
  let context: CanonicalContext | undefined;
  if (mode === CONTEXT_STORED) {
    const parsed = parseContext(bytes, offset);
    context = parsed.context;
    offset = parsed.end;
  }
  const authenticatedEnd = offset;
  const reader = new FieldReader(bytes, offset);
  const wrappedKey = reader.wrappedKey();
  return {
    version,
    suite,
    detached: mode === CONTEXT_DETACHED,
    context,
    compact: false,
    keySource: 'kms',
    wrappedKeys: [wrappedKey],
    intermediate: undefined,
    authenticated: bytes.subarray(0, authenticatedEnd),
    wrappedBytes: bytes.subarray(authenticatedEnd, reader.offset),
    length: reader.offset,
  };
}

/** FORMAT.md §10. */
function parseVersion2(bytes: Uint8Array): ParsedHeader {
  const suite = suiteById(bytes[5]!);
  const flags = bytes[6]!;
  if ((flags & FLAGS_RESERVED) !== 0) throw new HeaderMalformedError(`reserved flag bits set (0x${flags.toString(16).padStart(2, '0')})`);
  const source = (flags & SOURCE_MASK) >> SOURCE_SHIFT;
  if (source !== SOURCE_KMS && source !== SOURCE_INTERMEDIATE) throw new HeaderMalformedError(`unknown key source ${source}`);
  const detached = (flags & FLAG_DETACHED) !== 0;
  let offset = PREFIX_LENGTH;
  let context: CanonicalContext | undefined;
  if (!detached) {
    const parsed = parseContext(bytes, offset);
    context = parsed.context;
    offset = parsed.end;
  }
  const reader = new FieldReader(bytes, offset);
  let intermediate: IntermediateKeyRef | undefined;
  if (source === SOURCE_INTERMEDIATE) {
    const partition = reader.text(1, HEADER_LIMITS.maxPartitionBytes, 'partition');
    intermediate = { partition, version: reader.keyVersion() };
  }
  const authenticatedEnd = reader.offset;
  const wrappedKeys: WrappedKey[] = [];
  if (source === SOURCE_KMS) {
    const count = reader.byte('wrapped key count');
    if (count === 0) throw new HeaderMalformedError('no wrapped key');
    if (count > HEADER_LIMITS.maxWrappedKeys) throw new LimitExceededError(`${count} wrapped keys; the limit is ${HEADER_LIMITS.maxWrappedKeys}`);
    for (let i = 0; i < count; i++) wrappedKeys.push(reader.wrappedKey());
  }
  return {
    version: VERSION_2,
    suite,
    detached,
    context,
    compact: (flags & FLAG_COMPACT) !== 0,
    keySource: source === SOURCE_KMS ? 'kms' : 'intermediate',
    wrappedKeys,
    intermediate,
    authenticated: bytes.subarray(0, authenticatedEnd),
    wrappedBytes: bytes.subarray(authenticatedEnd, reader.offset),
    length: reader.offset,
  };
}

/**
 * For streams: the header if `bytes` holds all of it, undefined if more bytes are needed.
 * Throws as parseHeader for anything malformed.
 */
export function parseHeaderIfComplete(bytes: Uint8Array): ParsedHeader | undefined {
  try {
    return parseHeader(bytes);
  } catch (error) {
    if (error instanceof HeaderTruncatedError && bytes.length < MAX_HEADER_LENGTH) return undefined;
    throw error;
  }
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { PREFIX_LENGTH, MAX_HEADER_LENGTH_V1 };
