/**
 * The payload: C2SP chunked encryption (Cobblestone), FORMAT.md §6.
 * https://c2sp.org/chunked-encryption
 *
 * Every function and class here takes `backend` as the suite's primitives
 * (`suite.primitives(backend)`, core/suites.ts): the backend itself for the AES suites.
 */
import type { CryptoBackend } from './backend.ts';
import { NONCE_LENGTH, TAG_LENGTH } from './backend.ts';
import { equalBytes, keepShape, slabBytes, utf8, wipe } from './bytes.ts';
import { DecryptionFailedError } from './errors.ts';
import type { HmacKeyState } from './hkdf.ts';
import { chunkNonce } from './chunk-nonce.ts';
import type { PayloadSuite } from './suites.ts';

export const CHUNK_SIZE = 16384;
export const SALT_LENGTH = 24;
const COMMITMENT_LENGTH = 32;
export const PAYLOAD_PREFIX = SALT_LENGTH + COMMITMENT_LENGTH;
export const SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_LENGTH;
/** FORMAT.md §6: the chunk counter MUST NOT reach 2^38. */
export const MAX_CHUNKS = 2 ** 38;

/**
 * What opening a payload takes, resolved once: the suite's primitives (`crypto`) and parameters,
 * the input key (the data key, or a hierarchy's derived key), the Cobblestone context (FORMAT.md
 * §4), and the key's precomputed HKDF state when a cache lent it. The caller keeps and wipes `key`.
 */
export interface PayloadKey {
  readonly crypto: CryptoBackend;
  readonly suite: PayloadSuite;
  readonly key: Uint8Array;
  readonly context: Uint8Array;
  readonly keyState?: HmacKeyState | undefined;
}

/**
 * A range of a payload to open: plaintext bytes [start, start + length) of a payload of
 * `payloadLength` bytes read through `read`; with `verifyLength`, the final chunk too, which
 * authenticates the message length.
 */
export interface PayloadRange {
  readonly read: PayloadReader;
  readonly payloadLength: number;
  readonly start: number;
  readonly length: number;
  readonly verifyLength: boolean;
}

/** The per-message key material from HKDF (views into the key slab); wipe() when done. */
export class PayloadKeys {
  readonly key: Uint8Array;
  readonly baseNonce: Uint8Array;
  readonly commitment: Uint8Array;
  readonly #nonce: Uint8Array;

  constructor(keyLength: number) {
    const region = slabBytes(keyLength + 2 * NONCE_LENGTH + COMMITMENT_LENGTH);
    const { buffer, byteOffset: at } = region;
    this.key = new Uint8Array(buffer, at, keyLength);
    this.baseNonce = new Uint8Array(buffer, at + keyLength, NONCE_LENGTH);
    this.commitment = new Uint8Array(buffer, at + keyLength + NONCE_LENGTH, COMMITMENT_LENGTH);
    this.#nonce = new Uint8Array(buffer, at + keyLength + NONCE_LENGTH + COMMITMENT_LENGTH, NONCE_LENGTH);
    keepShape(this);
  }

  /** base nonce XOR counter (big-endian, as wide as the nonce). Aborts at 2^38. */
  nonce(counter: number): Uint8Array {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= MAX_CHUNKS) {
      throw new RangeError(`chunk counter ${counter} out of range: a message has at most 2^38 chunks`);
    }
    return chunkNonce(this.baseNonce, counter, this.#nonce);
  }

  wipe(): void {
    wipe(this.key, this.baseNonce, this.commitment, this.#nonce);
  }
}

/** "c2sp.org/chunked-encryption@v1+" || aead || 0x00, per suite. */
const INFO_HEAD = new Map<string, Uint8Array>();
function infoHead(suite: PayloadSuite): Uint8Array {
  let head = INFO_HEAD.get(suite.aead);
  if (!head) {
    head = utf8(`c2sp.org/chunked-encryption@v1+${suite.aead}\0`, 'info');
    INFO_HEAD.set(suite.aead, head);
  }
  return head;
}

/**
 * HKDF-Expand(prk = input key, info = prefix || aead || 0x00 || salt || context); `keyState`, when
 * given, is the backend's precomputed state of this input key (a cached data key's).
 */
export function deriveKeys(
  backend: CryptoBackend,
  suite: PayloadSuite,
  inputKey: Uint8Array,
  salt: Uint8Array,
  context: Uint8Array,
  keyState?: HmacKeyState,
): PayloadKeys {
  if (inputKey.length !== suite.keyLength) throw new DecryptionFailedError();
  if (salt.length !== SALT_LENGTH) throw new RangeError(`salt must be ${SALT_LENGTH} bytes`);
  const keys = new PayloadKeys(suite.keyLength);
  backend.hkdfExpandSha512(inputKey, [infoHead(suite), salt, context], [keys.key, keys.baseNonce, keys.commitment], keyState);
  return keys;
}

/** Payload length for a plaintext length (FORMAT.md §6). */
export function sealedLength(plaintextLength: number): number {
  const full = Math.floor(plaintextLength / CHUNK_SIZE);
  return PAYLOAD_PREFIX + full * SEALED_CHUNK_SIZE + (plaintextLength - full * CHUNK_SIZE) + TAG_LENGTH;
}

/**
 * Plaintext length for a payload length, or undefined when no message has that length
 * (truncated, or a final chunk of fewer than 16 bytes).
 */
export function plaintextLength(payloadLength: number): number | undefined {
  const body = payloadLength - PAYLOAD_PREFIX;
  if (body < TAG_LENGTH) return undefined;
  const full = Math.floor(body / SEALED_CHUNK_SIZE);
  const last = body - full * SEALED_CHUNK_SIZE;
  if (last < TAG_LENGTH) return undefined;
  return full * CHUNK_SIZE + last - TAG_LENGTH;
}

/**
 * Opens consecutive sealed chunks (the last may be short), the first with counter `first`, into
 * `out`; false at the first tag that does not verify.
 */
function openChunksInto(backend: CryptoBackend, keys: PayloadKeys, sealed: Uint8Array, first: number, out: Uint8Array): boolean {
  for (let i = 0, o = 0, counter = first; i < sealed.length; counter++) {
    const chunk = sealed.subarray(i, i + SEALED_CHUNK_SIZE);
    if (!backend.gcmOpen(keys.key, keys.nonce(counter), chunk, out, o)) return false;
    i += chunk.length;
    o += chunk.length - TAG_LENGTH;
  }
  return true;
}

/**
 * Opens a whole payload. Checks the length and the commitment before any chunk; returns the
 * plaintext only when every chunk authenticates, and leaves nothing behind otherwise.
 */
export function openPayload({ crypto: backend, suite, key: inputKey, context, keyState }: PayloadKey, payload: Uint8Array): Uint8Array {
  const length = plaintextLength(payload.length);
  if (length === undefined || inputKey.length !== suite.keyLength) throw new DecryptionFailedError();
  const keys = deriveKeys(backend, suite, inputKey, payload.subarray(0, SALT_LENGTH), context, keyState);
  if (length < CHUNK_SIZE) {
    // One chunk (most records): the backend's own output buffer is the plaintext, no copy.
    try {
      if (!equalBytes(keys.commitment, payload.subarray(SALT_LENGTH, PAYLOAD_PREFIX))) throw new DecryptionFailedError();
      const plaintext = backend.gcmOpenFresh(keys.key, keys.nonce(0), payload.subarray(PAYLOAD_PREFIX));
      if (!plaintext) throw new DecryptionFailedError();
      return plaintext;
    } finally {
      keys.wipe();
    }
  }
  const out = new Uint8Array(length);
  try {
    if (!equalBytes(keys.commitment, payload.subarray(SALT_LENGTH, PAYLOAD_PREFIX))) throw new DecryptionFailedError();
    if (!openChunksInto(backend, keys, payload.subarray(PAYLOAD_PREFIX), 0, out)) throw new DecryptionFailedError();
    return out;
  } catch (error) {
    wipe(out);
    throw error;
  } finally {
    keys.wipe();
  }
}

/**
 * Push-based streaming sealer: emits salt || commitment first, then each full chunk as soon as
 * it has 16 KiB, and a short (possibly empty) final chunk at the end. The foundation of sealStream().
 */
export class PayloadSealer {
  readonly #backend: CryptoBackend;
  #keys: PayloadKeys | undefined;
  readonly #salt: Uint8Array;
  // Allocated on the first push that needs it: one-shot seals (sealAll) never buffer.
  #buffer: Uint8Array | undefined;
  #buffered = 0;
  #counter = 0;

  /** Derives the message keys; the caller keeps (and wipes) `inputKey` and `keyState`. */
  constructor(backend: CryptoBackend, suite: PayloadSuite, inputKey: Uint8Array, context: Uint8Array, salt: Uint8Array, keyState?: HmacKeyState) {
    this.#backend = backend;
    this.#salt = salt;
    this.#keys = deriveKeys(backend, suite, inputKey, salt, context, keyState);
    keepShape(this);
  }

  /** salt || commitment. */
  start(): Uint8Array {
    const keys = this.#live();
    const out = new Uint8Array(PAYLOAD_PREFIX);
    out.set(this.#salt);
    out.set(keys.commitment, SALT_LENGTH);
    return out;
  }

  /**
   * Seals a whole message in one go, straight into `out` at `offset`:
   * salt || commitment || chunks (sealedLength(plaintext.length) bytes). Wipes the keys.
   */
  sealAll(plaintext: Uint8Array, out: Uint8Array, offset: number): void {
    const keys = this.#live();
    try {
      out.set(this.#salt, offset);
      out.set(keys.commitment, offset + SALT_LENGTH);
      let o = offset + PAYLOAD_PREFIX;
      for (let p = 0, counter = 0; ; p += CHUNK_SIZE, counter++) {
        const chunk = plaintext.subarray(p, p + CHUNK_SIZE);
        this.#backend.gcmSeal(keys.key, keys.nonce(counter), chunk, out, o);
        o += chunk.length + TAG_LENGTH;
        if (chunk.length < CHUNK_SIZE) break;
      }
    } finally {
      this.destroy();
    }
  }

  /** Feeds plaintext; returns the sealed full chunks it completed (possibly none), in one buffer. */
  push(data: Uint8Array): Uint8Array {
    const keys = this.#live();
    const total = this.#buffered + data.length;
    const chunks = Math.floor(total / CHUNK_SIZE);
    const out = new Uint8Array(chunks * SEALED_CHUNK_SIZE);
    let i = 0;
    let o = 0;
    for (let c = 0; c < chunks; c++) {
      let chunk: Uint8Array;
      if (this.#buffered === 0) {
        chunk = data.subarray(i, i + CHUNK_SIZE); // straight from the input, no copy
        i += CHUNK_SIZE;
      } else {
        const take = CHUNK_SIZE - this.#buffered;
        this.#buffer!.set(data.subarray(i, i + take), this.#buffered);
        i += take;
        this.#buffered = 0;
        chunk = this.#buffer!;
      }
      this.#backend.gcmSeal(keys.key, keys.nonce(this.#counter++), chunk, out, o);
      o += SEALED_CHUNK_SIZE;
    }
    if (i < data.length) {
      this.#buffer ??= new Uint8Array(CHUNK_SIZE);
      this.#buffer.set(data.subarray(i), this.#buffered);
      this.#buffered += data.length - i;
    }
    return out;
  }

  /**
   * The message key and base nonce, for full chunks sealed elsewhere (worker threads) with
   * counters from reserveChunks(). Views of this sealer's keys: copy them, never keep them.
   */
  sharedKeys(): { readonly key: Uint8Array; readonly baseNonce: Uint8Array } {
    const keys = this.#live();
    return { key: keys.key, baseNonce: keys.baseNonce };
  }

  /** Hands out the next `chunks` counters. Only between whole chunks: nothing may be buffered. */
  reserveChunks(chunks: number): number {
    this.#live();
    if (this.#buffered !== 0) throw new Error('PayloadSealer: chunks can be reserved only between whole chunks');
    const first = this.#counter;
    this.#counter += chunks;
    return first;
  }

  /** The final short chunk; wipes the keys. */
  end(): Uint8Array {
    const keys = this.#live();
    try {
      const out = new Uint8Array(this.#buffered + TAG_LENGTH);
      const rest = this.#buffer?.subarray(0, this.#buffered) ?? new Uint8Array(0);
      this.#backend.gcmSeal(keys.key, keys.nonce(this.#counter), rest, out, 0);
      return out;
    } finally {
      this.destroy();
    }
  }

  /** Wipes the keys and the buffered plaintext. */
  destroy(): void {
    this.#keys?.wipe();
    this.#keys = undefined;
    wipe(this.#buffer);
  }

  #live(): PayloadKeys {
    if (!this.#keys) throw new Error('PayloadSealer: already ended');
    return this.#keys;
  }
}

/**
 * Push-based streaming opener: releases each chunk's plaintext only after that chunk authenticates,
 * holds back one sealed chunk to find the last, and keeps failing once it has failed (the
 * Wycheproof PartialPlaintext semantics). The foundation of openStream().
 */
export class PayloadOpener {
  readonly #backend: CryptoBackend;
  readonly #suite: PayloadSuite;
  readonly #context: Uint8Array;
  #inputKey: Uint8Array | undefined;
  #keys: PayloadKeys | undefined;
  #buffer = new Uint8Array(SEALED_CHUNK_SIZE);
  #buffered = 0;
  #counter = 0;
  #failed = false;
  #done = false;

  /** Takes ownership of `inputKey` and wipes it. */
  constructor(backend: CryptoBackend, suite: PayloadSuite, inputKey: Uint8Array, context: Uint8Array) {
    this.#backend = backend;
    this.#suite = suite;
    this.#context = context;
    this.#inputKey = inputKey;
    if (inputKey.length !== suite.keyLength) this.#fail();
  }

  /** Feeds ciphertext; returns the plaintext of each chunk that authenticated (possibly none). */
  push(data: Uint8Array): Uint8Array[] {
    this.#check();
    const out: Uint8Array[] = [];
    try {
      let i = 0;
      if (!this.#keys) {
        const take = Math.min(PAYLOAD_PREFIX - this.#buffered, data.length);
        this.#buffer.set(data.subarray(0, take), this.#buffered);
        this.#buffered += take;
        i = take;
        if (this.#buffered < PAYLOAD_PREFIX) return out;
        this.#openHeader();
      }
      // Every full sealed chunk followed by at least one more byte is not the last: open it.
      const available = this.#buffered + data.length - i;
      const chunks = available > SEALED_CHUNK_SIZE ? Math.floor((available - 1) / SEALED_CHUNK_SIZE) : 0;
      for (let c = 0; c < chunks; c++) {
        let sealed: Uint8Array;
        if (this.#buffered === 0) {
          sealed = data.subarray(i, i + SEALED_CHUNK_SIZE);
          i += SEALED_CHUNK_SIZE;
        } else {
          const take = SEALED_CHUNK_SIZE - this.#buffered;
          this.#buffer.set(data.subarray(i, i + take), this.#buffered);
          i += take;
          this.#buffered = 0;
          sealed = this.#buffer;
        }
        out.push(this.#openChunk(sealed));
      }
      this.#buffer.set(data.subarray(i), this.#buffered);
      this.#buffered += data.length - i;
      return out;
    } catch (error) {
      for (const chunk of out) wipe(chunk);
      this.#fail();
      throw error;
    }
  }

  /** Ends the stream: the held-back chunk must be a valid short final chunk. */
  end(): Uint8Array {
    this.#check();
    try {
      if (!this.#keys || this.#buffered < TAG_LENGTH || this.#buffered === SEALED_CHUNK_SIZE) throw new DecryptionFailedError();
      const out = this.#openChunk(this.#buffer.subarray(0, this.#buffered));
      this.#done = true;
      this.#release();
      return out;
    } catch (error) {
      this.#fail();
      throw error;
    }
  }

  /** The message key and base nonce (after the commitment was checked): see PayloadSealer.sharedKeys. */
  sharedKeys(): { readonly key: Uint8Array; readonly baseNonce: Uint8Array } {
    this.#check();
    if (!this.#keys) throw new Error('PayloadOpener: the commitment has not been read yet');
    return { key: this.#keys.key, baseNonce: this.#keys.baseNonce };
  }

  /** Hands out the next `chunks` counters for full chunks opened elsewhere, in order. */
  reserveChunks(chunks: number): number {
    this.#check();
    if (!this.#keys || this.#buffered !== 0) throw new Error('PayloadOpener: chunks can be reserved only between whole chunks');
    const first = this.#counter;
    this.#counter += chunks;
    return first;
  }

  /** Records a failure found elsewhere (a worker): wipes everything and keeps failing. */
  fail(): void {
    this.#fail();
  }

  /** Abandons the stream and wipes all key material. */
  destroy(): void {
    if (!this.#done) this.#fail();
  }

  #check(): void {
    if (this.#failed) throw new DecryptionFailedError();
    if (this.#done) throw new Error('PayloadOpener: stream already ended');
  }

  #openHeader(): void {
    const inputKey = this.#inputKey!;
    const keys = deriveKeys(this.#backend, this.#suite, inputKey, this.#buffer.subarray(0, SALT_LENGTH), this.#context);
    wipe(inputKey);
    this.#inputKey = undefined;
    this.#keys = keys;
    const ok = equalBytes(keys.commitment, this.#buffer.subarray(SALT_LENGTH, PAYLOAD_PREFIX));
    this.#buffered = 0;
    if (!ok) throw new DecryptionFailedError();
  }

  #openChunk(sealed: Uint8Array): Uint8Array {
    const keys = this.#keys!;
    const plain = this.#backend.gcmOpenFresh(keys.key, keys.nonce(this.#counter), sealed);
    if (!plain) throw new DecryptionFailedError();
    this.#counter++;
    return plain;
  }

  #fail(): void {
    this.#failed = true;
    this.#release();
  }

  #release(): void {
    wipe(this.#inputKey, this.#buffer);
    this.#keys?.wipe();
    this.#inputKey = undefined;
    keepShape(this); // spent: wiped, and it keeps failing or stays ended
  }
}

/** Reads `length` bytes at `position` of the payload (not of the message). */
export type PayloadReader = (position: number, length: number) => Promise<Uint8Array>;

/**
 * Random access: opens plaintext bytes [start, start + length) of a payload of `payloadLength`
 * bytes, decrypting only the chunks they fall in (after the commitment check). With
 * `verifyLength`, also decrypts the final chunk, which authenticates the message length.
 */
export async function openPayloadRange(
  { crypto: backend, suite, key: inputKey, context }: PayloadKey,
  { read, payloadLength, start, length, verifyLength }: PayloadRange,
): Promise<Uint8Array> {
  const total = rangeTotal(suite, inputKey, payloadLength, start, length);
  const prefix = await readExactly(read, 0, PAYLOAD_PREFIX);
  const keys = deriveKeys(backend, suite, inputKey, prefix.subarray(0, SALT_LENGTH), context);
  let out: Uint8Array | undefined;
  try {
    if (!equalBytes(keys.commitment, prefix.subarray(SALT_LENGTH))) throw new DecryptionFailedError();
    const openChunks = async (first: number, last: number): Promise<Uint8Array> => {
      const from = PAYLOAD_PREFIX + first * SEALED_CHUNK_SIZE;
      const to = Math.min(payloadLength, PAYLOAD_PREFIX + (last + 1) * SEALED_CHUNK_SIZE);
      const sealed = await readExactly(read, from, to - from);
      const plain = new Uint8Array(sealed.length - (last - first + 1) * TAG_LENGTH);
      if (!openChunksInto(backend, keys, sealed, first, plain)) {
        wipe(plain);
        throw new DecryptionFailedError();
      }
      return plain;
    };
    out = await readChunkRange(openChunks, start, length, total, verifyLength);
    return out;
  } catch (error) {
    wipe(out);
    throw error;
  } finally {
    keys.wipe();
  }
}

/**
 * The plaintext length of a payload a range is read from, after checking the key length and that
 * [start, start + length) lies inside it (RangeError). Shared by the synchronous and WebCrypto readers.
 */
export function rangeTotal(suite: PayloadSuite, inputKey: Uint8Array, payloadLength: number, start: number, length: number): number {
  const total = plaintextLength(payloadLength);
  if (total === undefined || inputKey.length !== suite.keyLength) throw new DecryptionFailedError();
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > total) {
    throw new RangeError(`range [${start}, ${start}+${length}) is outside the plaintext of ${total} bytes`);
  }
  return total;
}

/** Exactly `length` bytes at `position` of the payload; anything else is a message that does not open. */
export async function readExactly(read: PayloadReader, position: number, length: number): Promise<Uint8Array> {
  const bytes = await read(position, length);
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new DecryptionFailedError();
  return bytes;
}

/**
 * Plaintext bytes [start, start + length) from `openChunks` (which opens chunks first..last and
 * returns their plaintext), and with `verifyLength` the final chunk too, which authenticates the
 * message length. Shared by the synchronous and the WebCrypto range readers.
 */
export async function readChunkRange(
  openChunks: (first: number, last: number) => Promise<Uint8Array>,
  start: number,
  length: number,
  total: number,
  verifyLength: boolean,
): Promise<Uint8Array> {
  const finalChunk = Math.floor(total / CHUNK_SIZE);
  const first = Math.floor(start / CHUNK_SIZE);
  const last = length === 0 ? first - 1 : Math.floor((start + length - 1) / CHUNK_SIZE);
  let out = new Uint8Array(0);
  if (last >= first) {
    const plain = await openChunks(first, last);
    out = plain.slice(start - first * CHUNK_SIZE, start - first * CHUNK_SIZE + length);
    wipe(plain);
  }
  try {
    if (verifyLength && last !== finalChunk) wipe(await openChunks(finalChunk, finalChunk));
  } catch (error) {
    wipe(out);
    throw error;
  }
  return out;
}
