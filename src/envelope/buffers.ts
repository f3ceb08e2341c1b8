/**
 * seal() and open() of a whole message in memory, the paths every buffer operation shares
 * (seal, open, openWithInfo, the batches, sealSync and openSync). Each finishes synchronously when
 * a cache (or a warm key hierarchy) has the key: no promise until the caller's track(). With an
 * asynchronous AEAD (the WebCrypto backend) seal and open use it; the synchronous paths (`sync`)
 * use the backend's synchronous methods, which give the same bytes.
 */
import { type ByteInput, slabBytes, toBytes, TRANSIENT_OUTPUT, utf8, wipe } from '../core/bytes.ts';
import { openPayload, sealedLength } from '../core/chunked.ts';
import { openPayloadAsync, sealAllAsync } from '../core/chunked-async.ts';
import { compactSealedLength, openCompact, openCompactAsync } from '../core/compact.ts';
import type { EncryptionContext } from '../core/context.ts';
import { type ParsedHeader, parseHeader } from '../core/header.ts';
import { type EnvelopeCore, type KeyScope, type OpenOptions, type OpenSession, payloadKeyOf, type SealOptions, type SealSession } from './engine.ts';

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

/** How a buffer is opened. */
export interface BufferOpen {
  /** The batch's keys (openMany). */
  readonly scope?: KeyScope | undefined;
  /** openWithInfo: the context and key names too (off the plain open's path). */
  readonly info?: boolean | undefined;
}

/** The key names OpenResult and MessageInfo report. */
export function keyNames(header: ParsedHeader): { keyId: string; provider: string } {
  const ref = header.intermediate;
  if (ref) return { keyId: `${ref.partition}#${ref.version}`, provider: 'hierarchy' };
  const first = header.wrappedKeys[0]!;
  return { keyId: first.keyId, provider: first.provider };
}

/** The sealed message's memory, with its header written: a slab view when the caller reads it once (TRANSIENT_OUTPUT). */
function outFor(session: SealSession, plaintextLength: number, transient = false): Bytes {
  const { header, compact } = session;
  const length = header.length + (compact ? compactSealedLength(plaintextLength)! : sealedLength(plaintextLength));
  const out = transient ? (slabBytes(length) as Bytes) : new Uint8Array(length);
  out.set(header);
  return out;
}

function endSession(session: SealSession): void {
  session.sealer?.destroy();
  session.compact?.destroy();
}

function sealWith(session: SealSession, bytes: Uint8Array, transient = false): Bytes {
  try {
    const { header, sealer, compact } = session;
    const out = outFor(session, bytes.length, transient);
    if (compact) compact.seal(bytes, out, header.length);
    else sealer!.sealAll(bytes, out, header.length);
    return out;
  } finally {
    endSession(session);
  }
}

async function sealAsyncWith(core: EnvelopeCore, session: SealSession, bytes: Uint8Array): Promise<Bytes> {
  const aead = core.sealAead!;
  try {
    const { header, sealer, compact } = session;
    const out = outFor(session, bytes.length);
    if (compact) await compact.sealAsync(aead, bytes, out, header.length);
    else await sealAllAsync(aead, sealer!, bytes, out, header.length);
    return out;
  } finally {
    endSession(session);
  }
}

/** Seals a whole plaintext (a string is encoded, and its bytes wiped after). */
export function sealBuffer(core: EnvelopeCore, plaintext: ByteInput | string, options: SealOptions = {}, sync = false): Bytes | Promise<Bytes> {
  const own = typeof plaintext === 'string';
  const bytes = own ? utf8(plaintext, 'plaintext') : toBytes(plaintext, 'plaintext');
  let started: SealSession | Promise<SealSession>;
  try {
    started = core.beginSeal(options, { bytes: bytes.length, compactOk: true });
  } catch (error) {
    if (own) wipe(bytes);
    throw error;
  }
  // A key in memory (the common case: a warm hierarchy, a database field): no closure.
  if (!(started instanceof Promise)) return finishSeal(core, started, bytes, own, sync, !!(options as { [TRANSIENT_OUTPUT]?: boolean })[TRANSIENT_OUTPUT]);
  return started.then(
    (session) => finishSeal(core, session, bytes, own, sync, false),
    (error: unknown) => {
      if (own) wipe(bytes);
      throw error;
    },
  );
}

/** Seals with a started session, then wipes the bytes when they are an encoded string (`own`). */
function finishSeal(core: EnvelopeCore, session: SealSession, bytes: Uint8Array, own: boolean, sync: boolean, transient: boolean): Bytes | Promise<Bytes> {
  if (sync || !core.sealAead) {
    try {
      return sealWith(session, bytes, transient);
    } finally {
      if (own) wipe(bytes);
    }
  }
  const sealed = sealAsyncWith(core, session, bytes);
  return own ? sealed.finally(() => wipe(bytes)) : sealed;
}

/**
 * The payload opened with the session's key, which is wiped before this returns unless lent: the
 * key schedule runs before then (a lent key is done with too).
 */
function openPayloadWith(session: OpenSession, payload: Uint8Array, sync: boolean): Bytes | Promise<Bytes> {
  try {
    const key = payloadKeyOf(session);
    const aead = sync ? undefined : session.crypto.aead;
    const compact = session.header.compact;
    // Every payload opener returns fresh memory over a plain ArrayBuffer (never a shared one).
    if (aead) return (compact ? openCompactAsync(key, aead, payload) : openPayloadAsync(key, aead, payload)) as Promise<Bytes>;
    return (compact ? openCompact(key, payload) : openPayload(key, payload)) as Bytes;
  } finally {
    if (!session.borrowed) wipe(session.key);
  }
}

/** Opens a whole message (openSync: openSealedSync). */
export function openBuffer(core: EnvelopeCore, input: ByteInput, options: OpenOptions = {}, { scope, info = false }: BufferOpen = {}): OpenResult | Promise<OpenResult> {
  const sealed = toBytes(input, 'sealed');
  const header = parseHeader(sealed);
  const payload = sealed.subarray(header.length);
  const result = (plaintext: Bytes, session: OpenSession): OpenResult =>
    info ? { plaintext, context: session.context.pairs, ...keyNames(header) } : ({ plaintext } as OpenResult);
  const openWith = (session: OpenSession): OpenResult | Promise<OpenResult> => {
    const opened = openPayloadWith(session, payload, false);
    return opened instanceof Promise ? opened.then((plaintext) => result(plaintext, session)) : result(opened, session);
  };
  // Borrowing is safe: a cache hit comes back synchronously and is opened at once, below.
  const started = core.beginOpen(header, options, { payloadLength: payload.length, scope, borrow: true });
  if (started instanceof Promise) return started.then(openWith);
  try {
    return openWith(started);
  } finally {
    // A lent key's hit event, once the key is done with (listeners are user code).
    if (started.hitPending) core.emit({ type: 'cache-hit', cache: 'decrypt' });
  }
}

/** openSync's open of a whole message: its plaintext, with no closure or result object per call. */
export function openSealedSync(core: EnvelopeCore, input: ByteInput, options: OpenOptions = {}): Bytes | Promise<Bytes> {
  const sealed = toBytes(input, 'sealed');
  const header = parseHeader(sealed);
  return openBufferSync(core, header, sealed.subarray(header.length), options);
}

/**
 * The synchronous open (openSync: a database field) when the key is in memory; a key that must
 * load makes a promise that rejects with KeyNotWarmError (openSync throws it at once).
 */
function openBufferSync(core: EnvelopeCore, header: ParsedHeader, payload: Uint8Array, options: OpenOptions): Bytes | Promise<Bytes> {
  const started = core.beginOpen(header, options, { payloadLength: payload.length, borrow: true, warmOnly: true });
  if (started instanceof Promise) return started.then((session) => openPayloadWith(session, payload, true));
  try {
    return openPayloadWith(started, payload, true);
  } finally {
    // A lent key's hit event, once the key is done with (listeners are user code).
    if (started.hitPending) core.emit({ type: 'cache-hit', cache: 'decrypt' });
  }
}

/** The plaintext of an open's result, as soon as there is one. */
export function plaintextOf(result: OpenResult | Promise<OpenResult>): Bytes | Promise<Bytes> {
  return result instanceof Promise ? result.then((r) => r.plaintext) : result.plaintext;
}
