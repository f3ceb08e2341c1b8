/**
 * The payload: C2SP chunked encryption (Cobblestone), FORMAT.md §6.
 * https://c2sp.org/chunked-encryption
 */
import type { CryptoBackend } from './backend.ts';
import { NONCE_LENGTH, TAG_LENGTH } from './backend.ts';
import { equalBytes, utf8, wipe } from './bytes.ts';
import { DecryptionFailedError } from './errors.ts';

export interface PayloadSuite {
  /** Suite id in the header. */
  readonly id: number;
  readonly name: 'Cobblestone-256' | 'Cobblestone-128';
  /** IANA AEAD name, part of the HKDF info. */
  readonly aead: 'AEAD_AES_256_GCM' | 'AEAD_AES_128_GCM';
  readonly keyLength: 32 | 16;
}

export const COBBLESTONE_256: PayloadSuite = Object.freeze({
  id: 0x01,
  name: 'Cobblestone-256',
  aead: 'AEAD_AES_256_GCM',
  keyLength: 32,
});
export const COBBLESTONE_128: PayloadSuite = Object.freeze({
  id: 0x02,
  name: 'Cobblestone-128',
  aead: 'AEAD_AES_128_GCM',
  keyLength: 16,
});

export const CHUNK_SIZE = 16384;
export const SALT_LENGTH = 24;
export const COMMITMENT_LENGTH = 32;
export const PAYLOAD_PREFIX = SALT_LENGTH + COMMITMENT_LENGTH;
export const SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_LENGTH;
/** FORMAT.md §6: the chunk counter MUST NOT reach 2^38. */
export const MAX_CHUNKS = 2 ** 38;

/** The per-message key material, views into one HKDF output; wipe() when done. */
export class PayloadKeys {
  readonly key: Uint8Array;
  readonly baseNonce: Uint8Array;
  readonly commitment: Uint8Array;
  readonly #okm: Uint8Array;
  readonly #nonce = new Uint8Array(NONCE_LENGTH);

  constructor(okm: Uint8Array, keyLength: number) {
    this.#okm = okm;
    this.key = okm.subarray(0, keyLength);
    this.baseNonce = okm.subarray(keyLength, keyLength + NONCE_LENGTH);
    this.commitment = okm.subarray(keyLength + NONCE_LENGTH, keyLength + NONCE_LENGTH + COMMITMENT_LENGTH);
  }

  /** base nonce XOR counter (big-endian, as wide as the nonce). Aborts at 2^38. */
  nonce(counter: number): Uint8Array {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= MAX_CHUNKS) {
      throw new RangeError(`chunk counter ${counter} out of range: a message has at most 2^38 chunks`);
    }
    const n = this.#nonce;
    n.set(this.baseNonce);
    // 38 bits span the last 5 bytes; split into a high byte and a low 32-bit word.
    const high = Math.floor(counter / 2 ** 32);
    const low = counter >>> 0;
    n[7]! ^= high;
    n[8]! ^= low >>> 24;
    n[9]! ^= (low >>> 16) & 0xff;
    n[10]! ^= (low >>> 8) & 0xff;
    n[11]! ^= low & 0xff;
    return n;
  }

  wipe(): void {
    wipe(this.#okm, this.#nonce);
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

/** HKDF-Expand(prk = input key, info = prefix || aead || 0x00 || salt || context). */
export function deriveKeys(
  backend: CryptoBackend,
  suite: PayloadSuite,
  inputKey: Uint8Array,
  salt: Uint8Array,
  context: Uint8Array,
): PayloadKeys {
  if (inputKey.length !== suite.keyLength) throw new DecryptionFailedError();
  if (salt.length !== SALT_LENGTH) throw new RangeError(`salt must be ${SALT_LENGTH} bytes`);
  const head = infoHead(suite);
  const info = new Uint8Array(head.length + SALT_LENGTH + context.length);
  info.set(head);
  info.set(salt, head.length);
  info.set(context, head.length + SALT_LENGTH);
  const okm = backend.hkdfExpandSha512(inputKey, info, suite.keyLength + NONCE_LENGTH + COMMITMENT_LENGTH);
  return new PayloadKeys(okm, suite.keyLength);
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
 * Seals `plaintext` into `out` at `offset` (sealedLength(plaintext.length) bytes):
 * salt || commitment || chunks. Wipes the derived keys.
 */
export function sealPayload(
  backend: CryptoBackend,
  suite: PayloadSuite,
  inputKey: Uint8Array,
  context: Uint8Array,
  salt: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  offset: number,
): void {
  const keys = deriveKeys(backend, suite, inputKey, salt, context);
  try {
    out.set(salt, offset);
    out.set(keys.commitment, offset + SALT_LENGTH);
    let o = offset + PAYLOAD_PREFIX;
    let counter = 0;
    for (let p = 0; ; p += CHUNK_SIZE, counter++) {
      const chunk = plaintext.subarray(p, p + CHUNK_SIZE);
      backend.gcmSeal(keys.key, keys.nonce(counter), chunk, out, o);
      o += chunk.length + TAG_LENGTH;
      if (chunk.length < CHUNK_SIZE) break;
    }
  } finally {
    keys.wipe();
  }
}

/**
 * Opens a whole payload. Checks the length and the commitment before any chunk; returns the
 * plaintext only when every chunk authenticates, and leaves nothing behind otherwise.
 */
export function openPayload(
  backend: CryptoBackend,
  suite: PayloadSuite,
  inputKey: Uint8Array,
  context: Uint8Array,
  payload: Uint8Array,
): Uint8Array {
  const length = plaintextLength(payload.length);
  if (length === undefined || inputKey.length !== suite.keyLength) throw new DecryptionFailedError();
  const keys = deriveKeys(backend, suite, inputKey, payload.subarray(0, SALT_LENGTH), context);
  const out = new Uint8Array(length);
  try {
    if (!equalBytes(keys.commitment, payload.subarray(SALT_LENGTH, PAYLOAD_PREFIX))) throw new DecryptionFailedError();
    let i = PAYLOAD_PREFIX;
    for (let counter = 0, o = 0; i < payload.length; counter++) {
      const sealed = payload.subarray(i, i + SEALED_CHUNK_SIZE);
      if (!backend.gcmOpen(keys.key, keys.nonce(counter), sealed, out, o)) throw new DecryptionFailedError();
      i += sealed.length;
      o += sealed.length - TAG_LENGTH;
    }
    return out;
  } catch (error) {
    wipe(out);
    throw error;
  } finally {
    keys.wipe();
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
  #buffer = new Uint8Array(PAYLOAD_PREFIX + SEALED_CHUNK_SIZE);
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

  /** Feeds ciphertext; returns the plaintext chunks that authenticated. */
  push(data: Uint8Array): Uint8Array[] {
    this.#check();
    const released: Uint8Array[] = [];
    try {
      let i = 0;
      while (i < data.length) {
        if (!this.#keys) {
          const take = Math.min(PAYLOAD_PREFIX - this.#buffered, data.length - i);
          this.#buffer.set(data.subarray(i, i + take), this.#buffered);
          this.#buffered += take;
          i += take;
          if (this.#buffered === PAYLOAD_PREFIX) this.#openHeader();
          continue;
        }
        // Hold back a full sealed chunk until one more byte arrives: only then is it not the last.
        if (this.#buffered === SEALED_CHUNK_SIZE) released.push(this.#openChunk(false));
        const take = Math.min(SEALED_CHUNK_SIZE - this.#buffered, data.length - i);
        this.#buffer.set(data.subarray(i, i + take), this.#buffered);
        this.#buffered += take;
        i += take;
      }
      return released;
    } catch (error) {
      for (const r of released) wipe(r);
      this.#fail();
      throw error;
    }
  }

  /** Ends the stream: the held-back chunk must be a valid short final chunk. */
  end(): Uint8Array {
    this.#check();
    try {
      if (!this.#keys || this.#buffered === SEALED_CHUNK_SIZE) throw new DecryptionFailedError();
      const last = this.#openChunk(true);
      this.#done = true;
      this.#release();
      return last;
    } catch (error) {
      this.#fail();
      throw error;
    }
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

  #openChunk(final: boolean): Uint8Array {
    const sealed = this.#buffer.subarray(0, this.#buffered);
    if (sealed.length < TAG_LENGTH || (final && sealed.length === SEALED_CHUNK_SIZE)) throw new DecryptionFailedError();
    const out = new Uint8Array(sealed.length - TAG_LENGTH);
    if (!this.#backend.gcmOpen(this.#keys!.key, this.#keys!.nonce(this.#counter), sealed, out, 0)) {
      throw new DecryptionFailedError();
    }
    this.#counter++;
    this.#buffered = 0;
    return out;
  }

  #fail(): void {
    this.#failed = true;
    this.#release();
  }

  #release(): void {
    wipe(this.#inputKey, this.#buffer);
    this.#keys?.wipe();
    this.#inputKey = undefined;
  }
}
