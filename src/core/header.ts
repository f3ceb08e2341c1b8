/**
 * The message header (FORMAT.md §2, §5): encode, and parse with every declared length checked
 * against its limit before the field is read. The parser returns the authenticated bytes exactly
 * as received, so the payload authenticates what was read and never a re-encoding.
 */
import { startsWithPublicBytes, utf8, utf8DecodeStrict } from './bytes.ts';
import { RecentList } from './recent.ts';
import { type PayloadSuite, suiteById as knownSuite } from './suites.ts';
import { type CanonicalContext, CONTEXT_LIMITS, parseContext } from './context.ts';
import { HeaderMalformedError, HeaderTruncatedError, LimitExceededError, UnsupportedSuiteError, UnsupportedVersionError } from './errors.ts';

export const MAGIC = Uint8Array.of(0x89, 0x4b, 0x4d, 0x45);
export const VERSION = 1;
export const PREFIX_LENGTH = 7;

export const HEADER_LIMITS = {
  maxProviderIdBytes: 32,
  maxKeyIdBytes: 1024,
  maxBlobBytes: 8192,
} as const;

/** The field limits bound the whole header; a streaming reader never buffers more than this. */
export const MAX_HEADER_LENGTH =
  PREFIX_LENGTH +
  CONTEXT_LIMITS.maxEncodedBytes +
  1 + HEADER_LIMITS.maxProviderIdBytes +
  2 + HEADER_LIMITS.maxKeyIdBytes +
  2 + HEADER_LIMITS.maxBlobBytes;

export const CONTEXT_STORED = 0x00;
export const CONTEXT_DETACHED = 0x01;

const RESERVED_SUITES: Record<number, string> = { 0x03: 'reserved for SM4-GCM, not implemented in this version' };

const PROVIDER_ID = /^[a-z0-9._-]{1,32}$/;

export interface WrappedKey {
  /** Key provider id, e.g. `local`, `tencent`. */
  readonly provider: string;
  /** KMS master key id. */
  readonly keyId: string;
  /** The KMS's opaque wrapped data key. */
  readonly ciphertextBlob: string;
}

export interface ParsedHeader {
  readonly version: number;
  readonly suite: PayloadSuite;
  readonly detached: boolean;
  /** The stored context; undefined when detached. */
  readonly context: CanonicalContext | undefined;
  readonly wrappedKey: WrappedKey;
  /** Bytes 0 .. end of the context section, as received (FORMAT.md §4). */
  readonly authenticated: Uint8Array;
  /** The wrapped-key section as received (provider, key id, blob): identifies the data key. */
  readonly wrappedBytes: Uint8Array;
  /** Total header length; the payload starts here. */
  readonly length: number;
}

/** The suite with this header id; UnsupportedSuiteError (naming reserved ids) otherwise. */
export function suiteById(id: number): PayloadSuite {
  const suite = knownSuite(id);
  if (!suite) throw new UnsupportedSuiteError(id, RESERVED_SUITES[id] ?? (id === 0 ? 'invalid' : 'unknown'));
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
const known = new RecentList<{ bytes: Uint8Array; authenticatedLength: number; header: ParsedHeader }>(8);
const EMPTY = new Uint8Array(0);


/**
 * Parses the header at the start of `bytes`. Needs the whole header, not the payload.
 * Throws HeaderMalformedError, UnsupportedVersionError, UnsupportedSuiteError, LimitExceededError.
 */
export function parseHeader(bytes: Uint8Array): ParsedHeader {
  const entry = known.find((e) => startsWithPublicBytes(bytes, e.bytes));
  if (entry) {
    const end = entry.authenticatedLength;
    const { version, suite, detached, context, wrappedKey } = entry.header;
    // A literal in parseHeaderBytes's field order: one object shape for readers, memo or not.
    return { version, suite, detached, context, wrappedKey, authenticated: bytes.subarray(0, end), wrappedBytes: bytes.subarray(end, entry.bytes.length), length: entry.bytes.length };
  }
  const header = parseHeaderBytes(bytes);
  const authenticatedLength = header.authenticated.length;
  known.add({ bytes: bytes.slice(0, header.length), authenticatedLength, header: { ...header, authenticated: EMPTY, wrappedBytes: EMPTY } });
  return header;
}

function parseHeaderBytes(bytes: Uint8Array): ParsedHeader {
  for (let i = 0; i < Math.min(MAGIC.length, bytes.length); i++) if (bytes[i] !== MAGIC[i]) throw notOurs(bytes);
  if (bytes.length < PREFIX_LENGTH) throw new HeaderTruncatedError('header truncated in the prefix');
  const version = bytes[4]!;
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
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const field = (lengthBytes: 1 | 2, max: number, what: string): Uint8Array => {
    if (offset + lengthBytes > bytes.length) throw new HeaderTruncatedError(`header truncated before the ${what} length`);
    const len = lengthBytes === 1 ? bytes[offset]! : view.getUint16(offset);
    if (len === 0) throw new HeaderMalformedError(`empty ${what}`);
    if (len > max) throw new LimitExceededError(`${what} of ${len} bytes; the limit is ${max}`);
    if (offset + lengthBytes + len > bytes.length) throw new HeaderTruncatedError(`header truncated in the ${what}`);
    const value = bytes.subarray(offset + lengthBytes, offset + lengthBytes + len);
    offset += lengthBytes + len;
    return value;
  };
  const text = (value: Uint8Array, what: string): string => {
    const s = utf8DecodeStrict(value);
    if (s === undefined) throw new HeaderMalformedError(`${what} is not valid UTF-8`);
    return s;
  };
  const provider = text(field(1, HEADER_LIMITS.maxProviderIdBytes, 'key provider id'), 'key provider id');
  if (!PROVIDER_ID.test(provider)) throw new HeaderMalformedError('key provider id has characters outside [a-z0-9._-]');
  const keyId = text(field(2, HEADER_LIMITS.maxKeyIdBytes, 'key id'), 'key id');
  const ciphertextBlob = text(field(2, HEADER_LIMITS.maxBlobBytes, 'ciphertext blob'), 'ciphertext blob');
  return {
    version,
    suite,
    detached: mode === CONTEXT_DETACHED,
    context,
    wrappedKey: { provider, keyId, ciphertextBlob },
    authenticated: bytes.subarray(0, authenticatedEnd),
    wrappedBytes: bytes.subarray(authenticatedEnd, offset),
    length: offset,
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
