/**
 * seal() and open(): one KMS call, one header, one Cobblestone payload (FORMAT.md).
 */
import type { CryptoBackend } from './backend.ts';
import { abytes, describe, utf8, utf8DecodeStrict, wipe } from './bytes.ts';
import {
  COBBLESTONE_128,
  COBBLESTONE_256,
  openPayload,
  PayloadSealer,
  type PayloadSuite,
  plaintextLength,
  SALT_LENGTH,
  sealedLength,
} from './chunked.ts';
import { type FileOptions, type FileResult, openFile, sealFile } from './files.ts';
import { type NodeDuplex, toNodeDuplex } from './node-stream.ts';
import { openRange, type RangeOptions, type RangeSource } from './range.ts';
import { createOpenStream, createSealStream } from './stream.ts';
import { type CanonicalContext, canonicalContext, type EncryptionContext, sameContext } from './context.ts';
import {
  ContextMismatchError,
  DecryptionFailedError,
  EnvelopeError,
  KeyProviderMismatchError,
  KmsError,
} from './errors.ts';
import { encodeAuthenticated, encodeWrappedKey, type ParsedHeader, parseHeader, validateProviderId } from './header.ts';
import type { KeyProvider, KeySpec } from './key-provider.ts';
import { KEY_LENGTH_BY_SPEC } from './key-provider.ts';
import { type BackendName, selectBackend } from './select-backend.ts';

export type SuiteName = 'cobblestone-256' | 'cobblestone-128';

export interface EnvelopeOptions {
  /** The key provider (KMS) that generates and decrypts data keys. */
  kms: KeyProvider;
  /** Payload suite; default `cobblestone-256` (32-byte data keys, AES-256-GCM). */
  suite?: SuiteName;
  /** Keep the context out of the message by default; open() then needs it. Default false. */
  detachedContext?: boolean;
  /** Crypto backend; default node:crypto where it exists, @noble/ciphers elsewhere. */
  backend?: BackendName;
  /** Randomness for salts. Only for reproducible test vectors: never set it in production. */
  randomBytes?: (length: number) => Uint8Array;
}

export interface SealOptions {
  /** Non-secret strings bound to the message and its data key; open() must see the same. */
  context?: EncryptionContext;
  /** Keep the context out of the message (override the envelope's default). */
  detachedContext?: boolean;
}

export interface OpenOptions {
  /**
   * The expected context. Required when the message was sealed with a detached context; otherwise
   * optional, and when given it must equal the stored one exactly.
   */
  context?: EncryptionContext;
}

/** What open() learned besides the plaintext. */
export interface OpenResult {
  plaintext: Uint8Array;
  context: EncryptionContext;
  keyId: string;
  provider: string;
}

/** The header of a sealed message, read without any KMS call. */
export interface MessageInfo {
  version: number;
  suite: PayloadSuite['name'];
  provider: string;
  keyId: string;
  /** Undefined when the context is detached. */
  context: EncryptionContext | undefined;
  detachedContext: boolean;
  headerLength: number;
  ciphertextBlobLength: number;
  /** Undefined when the payload has an impossible length (truncated). */
  plaintextLength: number | undefined;
}

export interface Envelope {
  seal(plaintext: Uint8Array | string, options?: SealOptions): Promise<Uint8Array>;
  /** A TransformStream from plaintext to the sealed message; the same bytes as seal(). */
  sealStream(options?: SealOptions): TransformStream<Uint8Array, Uint8Array>;
  /**
   * A TransformStream from a sealed message to its plaintext. Each chunk's plaintext is released
   * only after that chunk authenticates; a truncated, reordered or extended stream ends in an error.
   */
  openStream(options?: OpenOptions): TransformStream<Uint8Array, Uint8Array>;
  /** Node adapters: `pipeline(fs.createReadStream(a), envelope.sealNodeStream(), fs.createWriteStream(b))`. */
  sealNodeStream(options?: SealOptions): NodeDuplex;
  openNodeStream(options?: OpenOptions): NodeDuplex;
  /** Plaintext bytes [offset, offset + length) of a sealed message, decrypting only the chunks needed. */
  openRange(source: RangeSource, offset: number, length: number, options?: RangeOptions): Promise<Uint8Array>;
  /** Seals a file to `dest` atomically (temporary file, fsync, rename). */
  sealFile(src: string, dest: string, options?: SealOptions & FileOptions): Promise<FileResult>;
  /** Opens a file to `dest` atomically; on any failure `dest` is untouched and no plaintext is left. */
  openFile(src: string, dest: string, options?: OpenOptions & FileOptions): Promise<FileResult>;
  open(sealed: Uint8Array, options?: OpenOptions): Promise<Uint8Array>;
  /** open() and decode the plaintext as UTF-8 (a TypeError if it is not UTF-8). */
  openString(sealed: Uint8Array, options?: OpenOptions): Promise<string>;
  /** open() returning the context and key id the message names, too. */
  openWithInfo(sealed: Uint8Array, options?: OpenOptions): Promise<OpenResult>;
}

const SUITES: Record<SuiteName, { suite: PayloadSuite; keySpec: KeySpec }> = {
  'cobblestone-256': { suite: COBBLESTONE_256, keySpec: 'AES_256' },
  'cobblestone-128': { suite: COBBLESTONE_128, keySpec: 'AES_128' },
};

function assertProvider(kms: unknown): KeyProvider {
  const p = kms as KeyProvider | undefined;
  if (!p || typeof p.generateDataKey !== 'function' || typeof p.decryptDataKey !== 'function') {
    throw new TypeError(`"kms" expected a KeyProvider, got ${describe(kms)}`);
  }
  validateProviderId(p.id);
  return p;
}

/** Wraps anything a provider throws that is not ours into a KmsError, without its message's secrets. */
function kmsFailure(error: unknown, action: string): EnvelopeError {
  if (error instanceof EnvelopeError) return error;
  return new KmsError(`key provider failed to ${action}`, { cause: error });
}

/** A sealing in progress: the header, and the payload keys (the data key is already wiped). */
export interface SealSession {
  readonly header: Uint8Array;
  readonly sealer: PayloadSealer;
}

/** An opening in progress, after the KMS returned the data key (the caller wipes `key`). */
export interface OpenSession {
  readonly header: ParsedHeader;
  readonly context: CanonicalContext;
  /** The Cobblestone context (FORMAT.md §4). */
  readonly payloadContext: Uint8Array;
  readonly key: Uint8Array;
}

/** What the buffer, stream, range and file paths share: one way to start sealing and opening. */
export interface EnvelopeCore {
  readonly backend: CryptoBackend;
  beginSeal(options?: SealOptions): Promise<SealSession>;
  /**
   * Checks the context, the payload length (when known) and the provider, then asks the KMS for
   * the data key: a message that cannot open costs no KMS call.
   */
  beginOpen(header: ParsedHeader, options?: OpenOptions, payloadLength?: number): Promise<OpenSession>;
}

/** Creates the shared core of an envelope bound to one key provider. */
export function createEnvelopeCore(options: EnvelopeOptions): EnvelopeCore {
  if (options === null || typeof options !== 'object') throw new TypeError(`"options" expected an object, got ${describe(options)}`);
  const kms = assertProvider(options.kms);
  const suiteName = options.suite ?? 'cobblestone-256';
  const chosen = SUITES[suiteName];
  if (!chosen) throw new TypeError(`"suite" expected "cobblestone-256" or "cobblestone-128", got ${JSON.stringify(suiteName)}`);
  const backend: CryptoBackend = selectBackend(options.backend);
  const random = options.randomBytes ?? backend.randomBytes;
  const defaultDetached = options.detachedContext ?? false;

  async function beginSeal(sealOptions: SealOptions = {}): Promise<SealSession> {
    const context = canonicalContext(sealOptions.context);
    const detached = sealOptions.detachedContext ?? defaultDetached;
    const { suite, keySpec } = chosen!;
    let dataKey;
    try {
      dataKey = await kms.generateDataKey({ keySpec, context });
    } catch (error) {
      throw kmsFailure(error, 'generate a data key');
    }
    const key = dataKey?.plaintextKey;
    try {
      if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH_BY_SPEC[keySpec]) {
        throw new KmsError(`key provider returned a data key of the wrong length for ${keySpec}`);
      }
      const authenticated = encodeAuthenticated(suite, context, detached);
      const wrapped = encodeWrappedKey({ provider: kms.id, keyId: dataKey.keyId, ciphertextBlob: dataKey.ciphertextBlob });
      const header = new Uint8Array(authenticated.length + wrapped.length);
      header.set(authenticated);
      header.set(wrapped, authenticated.length);
      const sealer = new PayloadSealer(backend, suite, key, payloadContext(authenticated, context, detached), random(SALT_LENGTH));
      return { header, sealer };
    } finally {
      if (key instanceof Uint8Array) wipe(key);
    }
  }

  async function beginOpen(header: ParsedHeader, openOptions: OpenOptions = {}, payloadLength?: number): Promise<OpenSession> {
    const expected = openOptions.context === undefined ? undefined : canonicalContext(openOptions.context);
    let context: CanonicalContext;
    if (header.detached) {
      if (!expected) {
        throw new ContextMismatchError('this message was sealed with a detached context: pass the same context to open()');
      }
      context = expected;
    } else {
      context = header.context!;
      if (expected && !sameContext(expected, context)) {
        throw new ContextMismatchError('the context given to open() is not the one the message was sealed with');
      }
    }
    if (payloadLength !== undefined && plaintextLength(payloadLength) === undefined) throw new DecryptionFailedError();
    if (header.wrappedKey.provider !== kms.id) {
      throw new KeyProviderMismatchError(`this message was sealed with key provider "${header.wrappedKey.provider}", not "${kms.id}"`);
    }
    let key: Uint8Array;
    try {
      key = await kms.decryptDataKey({
        keySpec: header.suite.keyLength === 16 ? 'AES_128' : 'AES_256',
        keyId: header.wrappedKey.keyId,
        ciphertextBlob: header.wrappedKey.ciphertextBlob,
        context,
      });
    } catch (error) {
      throw kmsFailure(error, 'decrypt the data key');
    }
    if (!(key instanceof Uint8Array)) throw new KmsError('key provider returned no data key');
    return { header, context, payloadContext: payloadContext(header.authenticated, context, header.detached), key };
  }

  return { backend, beginSeal, beginOpen };
}

/** Creates an envelope bound to one key provider. */
export function createEnvelope(options: EnvelopeOptions): Envelope {
  const core = createEnvelopeCore(options);
  const { backend } = core;

  async function seal(plaintext: Uint8Array | string, sealOptions: SealOptions = {}): Promise<Uint8Array> {
    const bytes = typeof plaintext === 'string' ? utf8(plaintext, 'plaintext') : abytes(plaintext, 'plaintext');
    try {
      const { header, sealer } = await core.beginSeal(sealOptions);
      try {
        const out = new Uint8Array(header.length + sealedLength(bytes.length));
        out.set(header);
        sealer.sealAll(bytes, out, header.length);
        return out;
      } finally {
        sealer.destroy();
      }
    } finally {
      if (typeof plaintext === 'string') wipe(bytes);
    }
  }

  async function openWithInfo(sealed: Uint8Array, openOptions: OpenOptions = {}): Promise<OpenResult> {
    abytes(sealed, 'sealed');
    const header = parseHeader(sealed);
    const payload = sealed.subarray(header.length);
    const session = await core.beginOpen(header, openOptions, payload.length);
    try {
      const plaintext = openPayload(backend, header.suite, session.key, session.payloadContext, payload);
      return { plaintext, context: session.context.pairs, keyId: header.wrappedKey.keyId, provider: header.wrappedKey.provider };
    } finally {
      wipe(session.key);
    }
  }

  async function open(sealed: Uint8Array, openOptions?: OpenOptions): Promise<Uint8Array> {
    return (await openWithInfo(sealed, openOptions)).plaintext;
  }

  async function openString(sealed: Uint8Array, openOptions?: OpenOptions): Promise<string> {
    const plaintext = await open(sealed, openOptions);
    const text = utf8DecodeStrict(plaintext);
    wipe(plaintext);
    if (text === undefined) throw new TypeError('the plaintext is not valid UTF-8: use open() for bytes');
    return text;
  }

  return Object.freeze({
    seal,
    open,
    openString,
    openWithInfo,
    sealStream: (o?: SealOptions) => createSealStream(core, o),
    openStream: (o?: OpenOptions) => createOpenStream(core, o),
    sealNodeStream: (o?: SealOptions) => toNodeDuplex(createSealStream(core, o)),
    openNodeStream: (o?: OpenOptions) => toNodeDuplex(createOpenStream(core, o)),
    openRange: (source: RangeSource, offset: number, length: number, o?: RangeOptions) => openRange(core, source, offset, length, o),
    sealFile: (src: string, dest: string, o?: SealOptions & FileOptions) => sealFile(core, src, dest, o),
    openFile: (src: string, dest: string, o?: OpenOptions & FileOptions) => openFile(core, src, dest, o),
  });
}

/** FORMAT.md §4: authenticated header bytes, then the detached context's encoding if any. */
function payloadContext(authenticated: Uint8Array, context: CanonicalContext, detached: boolean): Uint8Array {
  if (!detached) return authenticated;
  const out = new Uint8Array(authenticated.length + context.encoded.length);
  out.set(authenticated);
  out.set(context.encoded, authenticated.length);
  return out;
}

/** Reads a sealed message's header: no KMS call, no decryption. */
export function inspect(sealed: Uint8Array): MessageInfo {
  abytes(sealed, 'sealed');
  const header = parseHeader(sealed);
  return {
    version: header.version,
    suite: header.suite.name,
    provider: header.wrappedKey.provider,
    keyId: header.wrappedKey.keyId,
    context: header.context?.pairs,
    detachedContext: header.detached,
    headerLength: header.length,
    ciphertextBlobLength: header.wrappedKey.ciphertextBlob.length,
    plaintextLength: plaintextLength(sealed.length - header.length),
  };
}

/** One-off seal: `seal(plaintext, { kms, context })`. */
export function seal(plaintext: Uint8Array | string, options: EnvelopeOptions & SealOptions): Promise<Uint8Array> {
  return createEnvelope(options).seal(plaintext, options);
}

/** One-off open: `open(sealed, { kms, context })`. */
export function open(sealed: Uint8Array, options: EnvelopeOptions & OpenOptions): Promise<Uint8Array> {
  return createEnvelope(options).open(sealed, options);
}
