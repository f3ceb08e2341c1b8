/**
 * seal() and open(): one KMS call, one header, one Cobblestone payload (FORMAT.md); plus the
 * stream, range, file and batch paths, which share the same start (EnvelopeCore), and the
 * optional data-key caches that keep the KMS off the hot path.
 */
import type { CryptoBackend } from './core/backend.ts';
import { abytes, base64, describe, utf8, utf8DecodeStrict, wipe } from './core/bytes.ts';
import {
  type CachedKeyMaterial,
  DecryptCache,
  type DecryptCacheOptions,
  DecryptCacheIds,
  DecryptFlights,
  EncryptionCache,
  type EncryptionCacheOptions,
  type Lease,
  type RememberedKey,
} from './economy/cache.ts';
import { copyKeyState, type HmacKeyState, wipeKeyState } from './core/hkdf.ts';
import {
  COBBLESTONE_128,
  COBBLESTONE_256,
  openPayload,
  PayloadSealer,
  type PayloadSuite,
  plaintextLength,
  SALT_LENGTH,
  sealedLength,
} from './core/chunked.ts';
import { type CanonicalContext, canonicalContext, type EncryptionContext, sameContext } from './core/context.ts';
import {
  ClosedError,
  ContextMismatchError,
  DecryptionFailedError,
  EnvelopeError,
  KeyProviderMismatchError,
  KmsError,
} from './core/errors.ts';
import { type EnvelopeEvent, type EventListener, emitter } from './economy/events.ts';
import { type FileOptions, type FileResult, openFile, sealFile } from './node/files.ts';
import { encodeAuthenticated, encodeWrappedKey, type ParsedHeader, parseHeader, validateProviderId } from './core/header.ts';
import type { KeyProvider, KeySpec } from './kms/key-provider.ts';
import { KEY_LENGTH_BY_SPEC } from './kms/key-provider.ts';
import { type NodeDuplex, toNodeDuplex } from './node/node-stream.ts';
import { openRange, type RangeOptions, type RangeSource } from './range.ts';
import { type BackendName, selectBackend } from './core/select-backend.ts';
import { createOpenStream, createSealStream } from './stream.ts';

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
  /**
   * Reuse each data key for several messages (opt-in; `true` for the defaults), within limits on
   * messages, bytes and age, never across contexts. See cache.ts for the defaults and why.
   */
  cache?: EncryptionCacheOptions | boolean;
  /** Remember decrypted data keys for a while (opt-in; `true` for the defaults). */
  decryptCache?: DecryptCacheOptions | boolean;
  /** KMS calls and cache events, for metrics. */
  onEvent?: EventListener;
  /** Randomness for salts. Only for reproducible test vectors: never set it in production. */
  randomBytes?: (length: number) => Uint8Array;
}

export interface SealOptions {
  /** Non-secret strings bound to the message and its data key; open() must see the same. */
  context?: EncryptionContext;
  /** Keep the context out of the message (override the envelope's default). */
  detachedContext?: boolean;
}

export interface StreamSealOptions extends SealOptions {
  /** The plaintext size when known: a cached data key then reserves it up front. */
  size?: number;
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

/** One item's outcome in a batch: one bad row does not fail the batch. */
export type BatchResult<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface BatchOptions {
  /** Items worked on at once; default 16. */
  concurrency?: number;
}

export type SealItem = Uint8Array | string | ({ plaintext: Uint8Array | string } & SealOptions);
export type OpenItem = Uint8Array | ({ sealed: Uint8Array } & OpenOptions);

export interface Envelope {
  seal(plaintext: Uint8Array | string, options?: SealOptions): Promise<Uint8Array>;
  open(sealed: Uint8Array, options?: OpenOptions): Promise<Uint8Array>;
  /** open() and decode the plaintext as UTF-8 (a TypeError if it is not UTF-8). */
  openString(sealed: Uint8Array, options?: OpenOptions): Promise<string>;
  /** open() returning the context and key id the message names, too. */
  openWithInfo(sealed: Uint8Array, options?: OpenOptions): Promise<OpenResult>;
  /** A TransformStream from plaintext to the sealed message; the same bytes as seal(). */
  sealStream(options?: StreamSealOptions): TransformStream<Uint8Array, Uint8Array>;
  /**
   * A TransformStream from a sealed message to its plaintext. Each chunk's plaintext is released
   * only after that chunk authenticates; a truncated, reordered or extended stream ends in an error.
   */
  openStream(options?: OpenOptions): TransformStream<Uint8Array, Uint8Array>;
  /** Node adapters: `pipeline(fs.createReadStream(a), envelope.sealNodeStream(), fs.createWriteStream(b))`. */
  sealNodeStream(options?: StreamSealOptions): NodeDuplex;
  openNodeStream(options?: OpenOptions): NodeDuplex;
  /** Plaintext bytes [offset, offset + length) of a sealed message, decrypting only the chunks needed. */
  openRange(source: RangeSource, offset: number, length: number, options?: RangeOptions): Promise<Uint8Array>;
  /** Seals a file to `dest` atomically (temporary file, fsync, rename). */
  sealFile(src: string, dest: string, options?: SealOptions & FileOptions): Promise<FileResult>;
  /** Opens a file to `dest` atomically; on any failure `dest` is untouched and no plaintext is left. */
  openFile(src: string, dest: string, options?: OpenOptions & FileOptions): Promise<FileResult>;
  /** Seals many items with bounded concurrency; per-item results. */
  sealMany(items: readonly SealItem[], options?: BatchOptions): Promise<BatchResult<Uint8Array>[]>;
  /** Opens many items with bounded concurrency, one Decrypt per distinct wrapped key; per-item results. */
  openMany(items: readonly OpenItem[], options?: BatchOptions): Promise<BatchResult<Uint8Array>[]>;
  /** Waits for work under way, then wipes every cached key; later calls fail with ERR_CLOSED. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
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
  /** Draws more plaintext bytes from a cached data key's budget (streams of unknown length). */
  readonly reserve: (bytes: number) => void;
}

/** An opening in progress, after the KMS returned the data key (the caller wipes `key`). */
export interface OpenSession {
  readonly header: ParsedHeader;
  readonly context: CanonicalContext;
  /** The Cobblestone context (FORMAT.md §4). */
  readonly payloadContext: Uint8Array;
  readonly key: Uint8Array;
  /** The key's precomputed HKDF state, when borrowed from a cache. */
  readonly keyState: HmacKeyState | undefined;
  /** When true (only if asked for), `key` and `keyState` are a cache's: use them at once, never wipe them. */
  readonly borrowed: boolean;
  /** The decrypt cache lent the key: the caller emits its hit event once done with it. */
  readonly hitPending: boolean;
}

/** What the buffer, stream, range, file and batch paths share: one way to start sealing and opening. */
export interface EnvelopeCore {
  readonly backend: CryptoBackend;
  /** The envelope's onEvent, never throwing. */
  readonly emit: (event: EnvelopeEvent) => void;
  /** `bytes`: the plaintext size when known (a cached key reserves it); undefined for streams. */
  beginSeal(options?: SealOptions, bytes?: number): SealSession | Promise<SealSession>;
  /**
   * Checks the context, the payload length (when known) and the provider, then gets the data key
   * (from the decrypt cache or the KMS): a message that cannot open costs no KMS call.
   */
  beginOpen(
    header: ParsedHeader,
    options?: OpenOptions,
    payloadLength?: number,
    scope?: DecryptCache,
    /**
     * Whether the caller can borrow a cached key (with its HKDF state): it then opens synchronously,
     * before it yields, and never wipes a borrowed key.
     */
    borrow?: boolean,
  ): OpenSession | Promise<OpenSession>;
  /** Runs `work` as tracked work that close() waits for; refuses once closed. */
  track<T>(work: () => T | Promise<T>): Promise<T>;
  close(): Promise<void>;
}

interface HeaderParts {
  header: Uint8Array;
  payloadContext: Uint8Array;
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
  const emit = emitter(options.onEvent);
  const encryptionCache = options.cache ? new EncryptionCache<HeaderParts>(options.cache === true ? {} : options.cache, emit) : undefined;
  const decryptCache = options.decryptCache ? new DecryptCache(options.decryptCache === true ? {} : options.decryptCache, emit) : undefined;
  const flights = new DecryptFlights();
  const cacheIds = new DecryptCacheIds(backend);
  // Work under way, which close() waits for.
  let active = 0;
  let idle: Promise<void> | undefined;
  let drained: (() => void) | undefined;
  let closed = false;

  /** A KMS call with its kms-call event. */
  async function timed<T>(action: 'GenerateDataKey' | 'Decrypt', call: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      const result = await call();
      emit({ type: 'kms-call', provider: kms.id, action, durationMs: Date.now() - started, ok: true });
      return result;
    } catch (error) {
      const failure = kmsFailure(error, action === 'Decrypt' ? 'decrypt the data key' : 'generate a data key');
      const code = failure instanceof KmsError ? (failure.kmsCode ?? failure.code) : failure.code;
      emit({ type: 'kms-call', provider: kms.id, action, durationMs: Date.now() - started, ok: false, errorCode: code });
      throw failure;
    }
  }

  /** A fresh data key from the KMS, with the header that names it. */
  async function generate(context: CanonicalContext, detached: boolean): Promise<CachedKeyMaterial<HeaderParts>> {
    const { suite, keySpec } = chosen!;
    const dataKey = await timed('GenerateDataKey', () => kms.generateDataKey({ keySpec, context }));
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
      // Only a cached key is used again: only it is worth a precomputed HKDF state.
      const keyState = encryptionCache ? backend.hkdfPrepareSha512?.(key) : undefined;
      return { key, keyState, extra: { header, payloadContext: payloadContext(authenticated, context, detached) } };
    } catch (error) {
      if (key instanceof Uint8Array) wipe(key);
      throw error;
    }
  }

  const noReserve = (): void => {};

  /** Encryption-cache partitions by context: a key is never shared across suites, context modes or contexts. */
  const partitions = [new WeakMap<CanonicalContext, string>(), new WeakMap<CanonicalContext, string>()];
  function partitionOf(context: CanonicalContext, detached: boolean): string {
    const known = partitions[detached ? 1 : 0]!;
    let partition = known.get(context);
    if (partition === undefined) {
      partition = `${chosen!.suite.id}.${detached ? 'd' : 's'}.${base64.encode(context.encoded)}`;
      known.set(context, partition);
    }
    return partition;
  }

  /**
   * Derives the message keys, synchronously: a borrowed key is done with on return. The salt is
   * drawn before (`random` may be the caller's), so no user code runs while a key is lent.
   */
  function startSealing(lease: Lease<HeaderParts>, salt: Uint8Array): SealSession {
    try {
      const sealer = new PayloadSealer(backend, chosen!.suite, lease.key, lease.extra.payloadContext, salt, lease.keyState);
      return { header: lease.extra.header, sealer, reserve: lease.reserve };
    } finally {
      if (!lease.borrowed) {
        wipe(lease.key);
        wipeKeyState(lease.keyState);
      }
    }
  }

  // Synchronous when the encryption cache has the key: no promise on the hot path.
  function beginSeal(sealOptions: SealOptions = {}, bytes?: number): SealSession | Promise<SealSession> {
    const context = canonicalContext(sealOptions.context);
    const detached = sealOptions.detachedContext ?? defaultDetached;
    if (!encryptionCache) {
      // The salt after the data key, as the format's vectors were made (test/vectors).
      return generate(context, detached).then((material) =>
        // The same shape as a cache's lease, so that startSealing's property reads stay monomorphic.
        startSealing({ key: material.key, keyState: material.keyState, borrowed: false, extra: material.extra, reserve: noReserve }, random(SALT_LENGTH)),
      );
    }
    const salt = random(SALT_LENGTH);
    const partition = partitionOf(context, detached);
    const hit = encryptionCache.tryAcquire(partition, bytes, true);
    if (hit) {
      try {
        return startSealing(hit, salt);
      } finally {
        emit({ type: 'cache-hit', cache: 'encrypt' }); // a listener runs only once the lent key is done with
      }
    }
    return encryptionCache.acquire(partition, bytes, () => generate(context, detached)).then((lease) => startSealing(lease, salt));
  }

  // Synchronous when a cache has the key.
  function beginOpen(
    header: ParsedHeader,
    openOptions: OpenOptions = {},
    payloadLength?: number,
    scope?: DecryptCache,
    borrow = false,
  ): OpenSession | Promise<OpenSession> {
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
    const keySpec: KeySpec = header.suite.keyLength === 16 ? 'AES_128' : 'AES_256';
    const { keyId, ciphertextBlob } = header.wrappedKey;
    // The wrapped-key section names the provider, the key id and the blob; the suite fixes the key spec.
    const id = cacheIds.id(header.suite.id, header.wrappedBytes, context.encoded);
    const session = ({ key, keyState, borrowed }: RememberedKey, hitPending = false): OpenSession => ({
      header,
      context,
      payloadContext: payloadContext(header.authenticated, context, header.detached),
      key,
      keyState,
      borrowed,
      hitPending,
    });
    const inScope = scope?.get(id, borrow);
    if (inScope) return session(inScope);
    const cached = decryptCache?.get(id, borrow);
    if (cached) return session(cached, cached.borrowed);
    // Concurrent opens of the same wrapped key share one Decrypt.
    return flights
      .run(id, async () => {
        const fresh = await timed('Decrypt', () => kms.decryptDataKey({ keySpec, keyId, ciphertextBlob, context }));
        if (!(fresh instanceof Uint8Array)) throw new KmsError('key provider returned no data key');
        // A remembered key is used again: worth its precomputed HKDF state.
        const state = decryptCache || scope ? backend.hkdfPrepareSha512?.(fresh) : undefined;
        decryptCache?.set(id, fresh.slice(), copyKeyState(state));
        scope?.set(id, fresh.slice(), copyKeyState(state));
        wipeKeyState(state);
        return fresh;
      })
      .then((key) => session({ key, keyState: undefined, borrowed: false }));
  }

  function leave(): void {
    if (--active === 0) drained?.();
  }

  // Work that finishes synchronously (a cache hit) costs one settled promise and nothing more.
  function track<T>(work: () => T | Promise<T>): Promise<T> {
    if (closed) return Promise.reject(new ClosedError());
    active++;
    let result: T | Promise<T>;
    try {
      result = work();
    } catch (error) {
      leave();
      return Promise.reject(error);
    }
    if (!(result instanceof Promise)) {
      leave();
      return Promise.resolve(result);
    }
    return result.then(
      (value) => (leave(), value),
      (error: unknown) => {
        leave();
        throw error;
      },
    );
  }

  async function close(): Promise<void> {
    closed = true;
    if (active > 0) await (idle ??= new Promise<void>((resolve) => (drained = resolve)));
    await encryptionCache?.close();
    decryptCache?.close();
  }

  return { backend, emit, beginSeal, beginOpen, track, close };
}

/** Runs `work` on every item with at most `concurrency` at once; per-item results, in order. */
async function batch<I, T>(items: readonly I[], concurrency: number, work: (item: I) => Promise<T>): Promise<BatchResult<T>[]> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`"concurrency" must be a positive integer, got ${concurrency}`);
  const results = new Array<BatchResult<T>>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { ok: true, value: await work(items[i]!) };
      } catch (error) {
        results[i] = { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/** Creates an envelope bound to one key provider. */
export function createEnvelope(options: EnvelopeOptions): Envelope {
  const core = createEnvelopeCore(options);
  const { backend } = core;

  // seal and open finish synchronously when a cache has the key: no promise until track().
  function sealNow(plaintext: Uint8Array | string, sealOptions: SealOptions = {}): Uint8Array | Promise<Uint8Array> {
    const own = typeof plaintext === 'string';
    const bytes = own ? utf8(plaintext, 'plaintext') : abytes(plaintext, 'plaintext');
    const sealWith = (session: SealSession): Uint8Array => {
      try {
        const out = new Uint8Array(session.header.length + sealedLength(bytes.length));
        out.set(session.header);
        session.sealer.sealAll(bytes, out, session.header.length);
        return out;
      } finally {
        session.sealer.destroy();
        if (own) wipe(bytes);
      }
    };
    let started: SealSession | Promise<SealSession>;
    try {
      started = core.beginSeal(sealOptions, bytes.length);
    } catch (error) {
      if (own) wipe(bytes);
      throw error;
    }
    if (!(started instanceof Promise)) return sealWith(started);
    return started.then(sealWith, (error: unknown) => {
      if (own) wipe(bytes);
      throw error;
    });
  }

  function openNow(sealed: Uint8Array, openOptions: OpenOptions = {}, scope?: DecryptCache): OpenResult | Promise<OpenResult> {
    abytes(sealed, 'sealed');
    const header = parseHeader(sealed);
    const payload = sealed.subarray(header.length);
    const openWith = (session: OpenSession): OpenResult => {
      try {
        const plaintext = openPayload(backend, header.suite, session.key, session.payloadContext, payload, session.keyState);
        return { plaintext, context: session.context.pairs, keyId: header.wrappedKey.keyId, provider: header.wrappedKey.provider };
      } finally {
        if (!session.borrowed) wipe(session.key);
      }
    };
    // Borrowing is safe: a cache hit comes back synchronously and is opened at once, below.
    const started = core.beginOpen(header, openOptions, payload.length, scope, true);
    if (started instanceof Promise) return started.then(openWith);
    try {
      return openWith(started);
    } finally {
      // A lent key's hit event, once the key is done with (listeners are user code).
      if (started.hitPending) core.emit({ type: 'cache-hit', cache: 'decrypt' });
    }
  }

  const plaintextOf = (result: OpenResult | Promise<OpenResult>): Uint8Array | Promise<Uint8Array> =>
    result instanceof Promise ? result.then((r) => r.plaintext) : result.plaintext;
  const seal = (plaintext: Uint8Array | string, o?: SealOptions): Promise<Uint8Array> => core.track(() => sealNow(plaintext, o));
  const openWithInfo = (sealed: Uint8Array, o?: OpenOptions): Promise<OpenResult> => core.track(() => openNow(sealed, o));
  const open = (sealed: Uint8Array, o?: OpenOptions): Promise<Uint8Array> => core.track(() => plaintextOf(openNow(sealed, o)));

  async function openString(sealed: Uint8Array, openOptions?: OpenOptions): Promise<string> {
    const plaintext = await open(sealed, openOptions);
    const text = utf8DecodeStrict(plaintext);
    wipe(plaintext);
    if (text === undefined) throw new TypeError('the plaintext is not valid UTF-8: use open() for bytes');
    return text;
  }

  const sealMany = (items: readonly SealItem[], o: BatchOptions = {}): Promise<BatchResult<Uint8Array>[]> =>
    batch(items, o.concurrency ?? 16, (item) =>
      typeof item === 'string' || item instanceof Uint8Array ? seal(item) : seal(item.plaintext, item),
    );
  async function openMany(items: readonly OpenItem[], o: BatchOptions = {}): Promise<BatchResult<Uint8Array>[]> {
    // Within a batch every distinct wrapped key is decrypted once, cache or no cache.
    const scope = new DecryptCache({ ttl: 2 ** 31, maxEntries: Math.max(1, items.length) }, () => {});
    try {
      return await batch(items, o.concurrency ?? 16, async (item) => {
        const [sealed, openOptions] = item instanceof Uint8Array ? [item, {}] : [item.sealed, item];
        return core.track(() => plaintextOf(openNow(sealed, openOptions, scope)));
      });
    } finally {
      scope.close();
    }
  }

  return Object.freeze({
    seal,
    open,
    openString,
    openWithInfo,
    sealStream: (o?: StreamSealOptions) => createSealStream(core, o),
    openStream: (o?: OpenOptions) => createOpenStream(core, o),
    sealNodeStream: (o?: StreamSealOptions) => toNodeDuplex(createSealStream(core, o)),
    openNodeStream: (o?: OpenOptions) => toNodeDuplex(createOpenStream(core, o)),
    openRange: (source: RangeSource, offset: number, length: number, o?: RangeOptions) =>
      core.track(() => openRange(core, source, offset, length, o)),
    sealFile: (src: string, dest: string, o?: SealOptions & FileOptions) => core.track(() => sealFile(core, src, dest, o)),
    openFile: (src: string, dest: string, o?: OpenOptions & FileOptions) => core.track(() => openFile(core, src, dest, o)),
    sealMany,
    openMany,
    close: () => core.close(),
    [Symbol.asyncDispose]: () => core.close(),
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
