/**
 * The facade: createEnvelope() and the one-off seal(), open() and inspect(). Buffers, batches,
 * WHATWG streams and ranges start from the engine (engine.ts); Node's files and streams live in
 * kms-envelope/node and take an Envelope.
 */
import { anySignal, checkSignal, throwIfAborted } from '../core/abort.ts';
import { type ByteInput, isByteInput, toBytes, utf8, utf8DecodeStrict, wipe } from '../core/bytes.ts';
import { openPayload, plaintextLength, sealedLength } from '../core/chunked.ts';
import { openPayloadAsync, sealAllAsync } from '../core/chunked-async.ts';
import { compactPlaintextLength, compactSealedLength, openCompact, openCompactAsync } from '../core/compact.ts';
import type { EncryptionContext } from '../core/context.ts';
import { type ParsedHeader, parseHeader } from '../core/header.ts';
import type { PayloadSuite } from '../core/suites.ts';
import { DecryptCache } from '../economy/cache.ts';
import {
  bindCore,
  createEnvelopeCore,
  type EnvelopeOptions,
  type OpenOptions,
  type OpenSession,
  type SealOptions,
  type SealSession,
} from './engine.ts';
import { type KeyPolicy, policyFindings } from '../core/key-policy.ts';

export type { EnvelopeOptions, OpenOptions, SealOptions, StreamSealOptions } from './engine.ts';
export type { KeyPolicy } from '../core/key-policy.ts';

declare global {
  interface SymbolConstructor {
    /**
     * For `await using envelope = createEnvelope(...)`, declared for compilers whose lib lacks
     * explicit resource management (as @types/node declares it).
     */
    readonly asyncDispose: unique symbol;
  }
}
export type { SuiteName } from '../core/suites.ts';

/**
 * The bytes seal() and open() return: always over a plain ArrayBuffer (never a shared one), which
 * is what `new Blob()`, `fetch()` and `crypto.subtle` take under TypeScript's DOM types.
 */
export type Bytes = Uint8Array<ArrayBuffer>;

/** What open() learned besides the plaintext. */
export interface OpenResult {
  plaintext: Bytes;
  context: EncryptionContext;
  /** The KMS master key of the (first) wrapped key, or `partition#version` under a key hierarchy. */
  keyId: string;
  /** The key provider id, or `hierarchy`. */
  provider: string;
}

/** The header of a sealed message, read without any KMS call (and with no cryptographic check). */
export interface MessageInfo {
  /** The format version: 1 or 2. */
  version: number;
  suite: PayloadSuite['name'];
  /** `kms`: a data key wrapped by the KMS; `intermediate`: an intermediate key of a key hierarchy. */
  keySource: 'kms' | 'intermediate';
  /** The first wrapped key's provider, or `hierarchy`. */
  provider: string;
  /** The first wrapped key's master key id, or `partition#version`. */
  keyId: string;
  /** Every wrapped key (format 2 may carry several); empty under a key hierarchy. */
  wrappedKeys: { provider: string; keyId: string }[];
  /** Under a key hierarchy: the partition and the intermediate-key version. */
  partition: string | undefined;
  keyVersion: number | undefined;
  /** Format 2: the compact payload of small values. */
  compact: boolean;
  /** Undefined when the context is detached. */
  context: EncryptionContext | undefined;
  detachedContext: boolean;
  headerLength: number;
  /** The first wrapped key's blob length (0 under a key hierarchy). */
  ciphertextBlobLength: number;
  /** Undefined when the payload has an impossible length (truncated). */
  plaintextLength: number | undefined;
}

/** The key names OpenResult and MessageInfo report. */
function keyNames(header: ParsedHeader): { keyId: string; provider: string } {
  const ref = header.intermediate;
  if (ref) return { keyId: `${ref.partition}#${ref.version}`, provider: 'hierarchy' };
  const first = header.wrappedKeys[0]!;
  return { keyId: first.keyId, provider: first.provider };
}

/** One item's outcome in a batch: one bad row does not fail the batch. */
export type BatchResult<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface BatchOptions {
  /** Items worked on at once; default 16. */
  concurrency?: number;
  /**
   * Cancels the whole batch: it rejects with the signal's reason, items under way are aborted
   * (with their own `signal`, if any, too), none is started after, and no opened plaintext is kept.
   */
  signal?: AbortSignal;
}

/** Bytes in (plaintext, sealed messages, chunks): a Uint8Array or Buffer, any other view, or an ArrayBuffer. */
export type { ByteInput } from '../core/bytes.ts';

export type SealItem = ByteInput | string | ({ plaintext: ByteInput | string } & SealOptions);
export type OpenItem = ByteInput | ({ sealed: ByteInput } & OpenOptions);

export interface Envelope {
  seal(plaintext: ByteInput | string, options?: SealOptions): Promise<Bytes>;
  open(sealed: ByteInput, options?: OpenOptions): Promise<Bytes>;
  /** open() and decode the plaintext as UTF-8 (a TypeError if it is not UTF-8). */
  openString(sealed: ByteInput, options?: OpenOptions): Promise<string>;
  /** open() returning the context and key id the message names, too. */
  openWithInfo(sealed: ByteInput, options?: OpenOptions): Promise<OpenResult>;
  /**
   * seal(), synchronously: when its key is in memory (a warm key hierarchy, or the encryption
   * cache), else a KeyNotWarmError (ERR_KEY_NOT_WARM) while the key loads. For hooks that cannot
   * wait (ORM column types).
   */
  sealSync(plaintext: ByteInput | string, options?: SealOptions): Bytes;
  /** open(), synchronously, as sealSync. */
  openSync(sealed: ByteInput, options?: OpenOptions): Bytes;
  /** Seals many items with bounded concurrency; per-item results. */
  sealMany(items: readonly SealItem[], options?: BatchOptions): Promise<BatchResult<Bytes>[]>;
  /** Opens many items with bounded concurrency, one Decrypt per distinct wrapped key; per-item results. */
  openMany(items: readonly OpenItem[], options?: BatchOptions): Promise<BatchResult<Bytes>[]>;
  /** Waits for work under way, then wipes every cached key; later calls fail with ERR_CLOSED. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Runs `work` on every item with at most `concurrency` at once; per-item results, in order. When
 * `signal` aborts, starts no more items, waits for those under way (each has the signal, so they
 * end at once), hands every value made to `discard` (to wipe plaintext) and rejects with the reason.
 */
async function batch<I, T>(
  items: readonly I[],
  concurrency: number,
  work: (item: I, signal: AbortSignal | undefined) => Promise<T>,
  signal: AbortSignal | undefined,
  discard: (value: T) => void = () => {},
): Promise<BatchResult<T>[]> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`"concurrency" must be a positive integer, got ${concurrency}`);
  throwIfAborted(signal);
  const results = new Array<BatchResult<T>>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !signal?.aborted) {
      const i = next++;
      try {
        results[i] = { ok: true, value: await work(items[i]!, signal) };
      } catch (error) {
        results[i] = { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  if (signal?.aborted) {
    for (const result of results) if (result?.ok) discard(result.value);
    throw signal.reason;
  }
  return results;
}

/** An item's options with the batch's signal joined to its own; `done` removes the listeners. */
function withBatchSignal<O extends { signal?: AbortSignal }>(options: O, signal: AbortSignal | undefined): { options: O; done: () => void } {
  if (!signal) return { options, done: () => {} };
  const joined = anySignal(signal, checkSignal(options.signal));
  return { options: { ...options, signal: joined.signal }, done: joined.dispose };
}

/** Creates an envelope bound to one key provider. */
export function createEnvelope(options: EnvelopeOptions): Envelope {
  const core = createEnvelopeCore(options);

  // seal and open finish synchronously when a cache has the key: no promise until track().
  // With an asynchronous AEAD (the WebCrypto backend), seal and open use it; sealSync and
  // openSync (`sync`) use the backend's synchronous methods, which give the same bytes.
  function sealNow(plaintext: ByteInput | string, sealOptions: SealOptions = {}, sync = false): Bytes | Promise<Bytes> {
    const own = typeof plaintext === 'string';
    const bytes = own ? utf8(plaintext, 'plaintext') : toBytes(plaintext, 'plaintext');
    const aead = sync ? undefined : core.sealAead;
    const outFor = (session: SealSession): Bytes => {
      const { header, compact } = session;
      const out = new Uint8Array(header.length + (compact ? compactSealedLength(bytes.length)! : sealedLength(bytes.length)));
      out.set(header);
      return out;
    };
    const sealWith = (session: SealSession): Bytes => {
      try {
        const { header, sealer, compact } = session;
        const out = outFor(session);
        if (compact) compact.seal(bytes, out, header.length);
        else sealer!.sealAll(bytes, out, header.length);
        return out;
      } finally {
        session.sealer?.destroy();
        session.compact?.destroy();
        if (own) wipe(bytes);
      }
    };
    const sealAsyncWith = async (session: SealSession): Promise<Bytes> => {
      try {
        const { header, sealer, compact } = session;
        const out = outFor(session);
        if (compact) await compact.sealAsync(aead!, bytes, out, header.length);
        else await sealAllAsync(aead!, sealer!, bytes, out, header.length);
        return out;
      } finally {
        session.sealer?.destroy();
        session.compact?.destroy();
        if (own) wipe(bytes);
      }
    };
    let started: SealSession | Promise<SealSession>;
    try {
      started = core.beginSeal(sealOptions, bytes.length, true);
    } catch (error) {
      if (own) wipe(bytes);
      throw error;
    }
    const finish = aead ? sealAsyncWith : sealWith;
    if (!(started instanceof Promise)) return finish(started);
    return started.then(finish, (error: unknown) => {
      if (own) wipe(bytes);
      throw error;
    });
  }

  /** Opens a message; the context and key names only for openWithInfo (`info`), off the plain open's path. */
  function openNow(input: ByteInput, openOptions: OpenOptions = {}, scope?: DecryptCache, sync = false, info = false): OpenResult | Promise<OpenResult> {
    const sealed = toBytes(input, 'sealed');
    const header = parseHeader(sealed);
    const payload = sealed.subarray(header.length);
    const result = (plaintext: Bytes, session: OpenSession): OpenResult =>
      info ? { plaintext, context: session.context.pairs, ...keyNames(header) } : ({ plaintext } as OpenResult);
    const openWith = (session: OpenSession): OpenResult | Promise<OpenResult> => {
      const { crypto } = session;
      const aead = sync ? undefined : crypto.aead;
      try {
        if (aead) {
          // The key schedule runs before the call returns: a lent key is done with here.
          const open = header.compact ? openCompactAsync : openPayloadAsync;
          const opened = open(crypto, aead, header.suite, session.key, session.payloadContext, payload, session.keyState);
          return opened.then((plaintext) => result(plaintext as Bytes, session));
        }
        const open = header.compact ? openCompact : openPayload;
        // Every payload opener returns fresh memory over a plain ArrayBuffer (never a shared one).
        const plaintext = open(crypto, header.suite, session.key, session.payloadContext, payload, session.keyState) as Bytes;
        return result(plaintext, session);
      } finally {
        if (!session.borrowed) wipe(session.key);
      }
    };
    // Borrowing is safe: a cache hit comes back synchronously and is opened at once, below.
    const started = core.beginOpen(header, openOptions, payload.length, scope, true, sync);
    if (started instanceof Promise) return started.then(openWith);
    try {
      return openWith(started);
    } finally {
      // A lent key's hit event, once the key is done with (listeners are user code).
      if (started.hitPending) core.emit({ type: 'cache-hit', cache: 'decrypt' });
    }
  }

  const plaintextOf = (result: OpenResult | Promise<OpenResult>): Bytes | Promise<Bytes> =>
    result instanceof Promise ? result.then((r) => r.plaintext) : result.plaintext;
  const seal = (plaintext: ByteInput | string, o?: SealOptions): Promise<Bytes> => core.track(() => sealNow(plaintext, o));
  const openWithInfo = (sealed: ByteInput, o?: OpenOptions): Promise<OpenResult> => core.track(() => openNow(sealed, o, undefined, false, true));
  const open = (sealed: ByteInput, o?: OpenOptions): Promise<Bytes> => core.track(() => plaintextOf(openNow(sealed, o)));

  async function openString(sealed: ByteInput, openOptions?: OpenOptions): Promise<string> {
    const plaintext = await open(sealed, openOptions);
    const text = utf8DecodeStrict(plaintext);
    wipe(plaintext);
    if (text === undefined) throw new TypeError('the plaintext is not valid UTF-8: use open() for bytes');
    return text;
  }

  const sealMany = async (items: readonly SealItem[], o: BatchOptions = {}): Promise<BatchResult<Bytes>[]> =>
    batch(
      items,
      o.concurrency ?? 16,
      async (item, signal) => {
        const [plaintext, own] = typeof item === 'string' || isByteInput(item) ? [item, {}] : [item.plaintext, item];
        const { options: sealOptions, done } = withBatchSignal<SealOptions>(own, signal);
        try {
          return await seal(plaintext, sealOptions);
        } finally {
          done();
        }
      },
      checkSignal(o.signal),
    );
  async function openMany(items: readonly OpenItem[], o: BatchOptions = {}): Promise<BatchResult<Bytes>[]> {
    // Within a batch every distinct wrapped key is decrypted once, cache or no cache.
    const scope = new DecryptCache({ ttl: 2 ** 31, maxEntries: Math.max(1, items.length) }, () => {});
    try {
      return await batch(
        items,
        o.concurrency ?? 16,
        async (item, signal) => {
          const [sealed, own] = isByteInput(item) ? [item, {}] : [item.sealed, item];
          const { options: openOptions, done } = withBatchSignal<OpenOptions>(own, signal);
          try {
            return await core.track(() => plaintextOf(openNow(sealed, openOptions, scope)));
          } finally {
            done();
          }
        },
        checkSignal(o.signal),
        wipe,
      );
    } finally {
      scope.close();
    }
  }

  const envelope: Envelope = Object.freeze({
    seal,
    open,
    sealSync: (plaintext: ByteInput | string, o?: SealOptions) => core.trackSync(() => sealNow(plaintext, o, true), 'sealSync', () => {}),
    openSync: (sealed: ByteInput, o?: OpenOptions) => core.trackSync(() => plaintextOf(openNow(sealed, o, undefined, true)), 'openSync', wipe),
    openString,
    openWithInfo,
    sealMany,
    openMany,
    close: () => core.close(),
    [Symbol.asyncDispose]: () => core.close(),
  });
  return bindCore(envelope, core);
}

/** Reads a sealed message's header: no KMS call, no decryption, no cryptographic check. */
export function inspect(input: ByteInput): MessageInfo {
  const sealed = toBytes(input, 'sealed');
  const header = parseHeader(sealed);
  const payloadLength = sealed.length - header.length;
  return {
    version: header.version,
    suite: header.suite.name,
    keySource: header.keySource,
    ...keyNames(header),
    wrappedKeys: header.wrappedKeys.map(({ provider, keyId }) => ({ provider, keyId })),
    partition: header.intermediate?.partition,
    keyVersion: header.intermediate?.version,
    compact: header.compact,
    context: header.context?.pairs,
    detachedContext: header.detached,
    headerLength: header.length,
    ciphertextBlobLength: header.wrappedKeys[0]?.ciphertextBlob.length ?? 0,
    plaintextLength: header.compact ? compactPlaintextLength(payloadLength) : plaintextLength(payloadLength),
  };
}

/**
 * Whether a sealed message (or just its header) falls short of a key policy, read from the header
 * alone (no KMS call): an older format version, an intermediate-key version below the minimum, or
 * a master key that is not current. For sweeps that rewrap or re-seal what needs it.
 */
export function needsRewrap(input: ByteInput, policy: KeyPolicy): boolean {
  return rewrapReasons(input, policy).length > 0;
}

/** needsRewrap's reasons, in words (each names the version or key found); empty when current. */
export function rewrapReasons(input: ByteInput, policy: KeyPolicy): string[] {
  if (policy === null || typeof policy !== 'object') throw new TypeError(`"policy" expected an object, got ${typeof policy}`);
  return policyFindings(parseHeader(toBytes(input, 'sealed')), policy).map((f) => f.message);
}

/** One-off seal: `seal(plaintext, { kms, context })`. */
export function seal(plaintext: ByteInput | string, options: EnvelopeOptions & SealOptions): Promise<Bytes> {
  return createEnvelope(options).seal(plaintext, options);
}

/** One-off open: `open(sealed, { kms, context })`. */
export function open(sealed: ByteInput, options: EnvelopeOptions & OpenOptions): Promise<Bytes> {
  return createEnvelope(options).open(sealed, options);
}
