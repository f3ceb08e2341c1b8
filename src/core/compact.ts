/**
 * The compact payload of version 2 (FORMAT.md §10.3): for values below one chunk (database fields),
 * the chunked construction's key schedule with a 16-byte salt and a 16-byte key commitment, and a
 * single AES-GCM chunk:
 *
 *   payload = salt (16) || commitment (16) || AES-GCM(key, nonce, plaintext) || tag (16)
 *   key || nonce || commitment = HKDF-Expand-SHA-512(input key,
 *       "kms-envelope/compact@v2+" || aead || 0x00 || salt || context, keyLength + 12 + 16)
 */
import type { AsyncAead, CryptoBackend } from './backend.ts';
import { TAG_LENGTH } from './backend.ts';
import { CHUNK_SIZE, type PayloadKey, PayloadKeys } from './chunked.ts';
import { importAndWipe } from './chunked-async.ts';
import { equalBytes, keepShape, utf8 } from './bytes.ts';
import { DecryptionFailedError } from './errors.ts';
import type { HmacKeyState } from './hkdf.ts';
import type { PayloadSuite } from './suites.ts';

export const COMPACT_SALT_LENGTH = 16;
const COMPACT_COMMITMENT_LENGTH = 16;
const COMPACT_PREFIX = COMPACT_SALT_LENGTH + COMPACT_COMMITMENT_LENGTH;
/** A compact payload holds less than one chunk of the chunked format. */
export const COMPACT_MAX_PLAINTEXT = CHUNK_SIZE - 1;

const INFO_HEAD = new Map<string, Uint8Array>();
function infoHead(suite: PayloadSuite): Uint8Array {
  let head = INFO_HEAD.get(suite.aead);
  if (!head) {
    head = utf8(`kms-envelope/compact@v2+${suite.aead}\0`, 'info');
    INFO_HEAD.set(suite.aead, head);
  }
  return head;
}

/** Message keys with the views HKDF writes (the commitment is 16 bytes here). */
interface CompactKeys {
  readonly keys: PayloadKeys;
  readonly commitment: Uint8Array;
  readonly outputs: Uint8Array[];
}

function compactKeys(keyLength: number): CompactKeys {
  const keys = new PayloadKeys(keyLength);
  const commitment = keys.commitment.subarray(0, COMPACT_COMMITMENT_LENGTH);
  return { keys, commitment, outputs: [keys.key, keys.baseNonce, commitment] };
}

function deriveCompactKeys({ crypto, suite, key, context, keyState }: PayloadKey, salt: Uint8Array, into: CompactKeys = compactKeys(suite.keyLength)): CompactKeys {
  if (key.length !== suite.keyLength) throw new DecryptionFailedError();
  crypto.hkdfExpandSha512(key, [infoHead(suite), salt, context], into.outputs, keyState);
  return into;
}

/**
 * Message keys, one set per key length, reused by one user at a time: openCompact derives, uses and
 * wipes them without yielding, so calls never share them (a nested call, should there be one, gets
 * its own); a CompactSealer takes its set at construction and gives it back wiped when it seals or
 * is destroyed (the sync path does both without yielding), and one made while the set is taken (a
 * sealer held across an await) gets its own. A database row seals three fields: this saves five
 * typed arrays and two objects per field.
 */
class KeyScratch {
  readonly #keys = new Map<number, CompactKeys>();
  #busy = false;

  take(keyLength: number): CompactKeys | undefined {
    if (this.#busy) return undefined;
    let scratch = this.#keys.get(keyLength);
    if (!scratch) this.#keys.set(keyLength, (scratch = compactKeys(keyLength)));
    this.#busy = true;
    return scratch;
  }

  /** Gives the set back (its user wiped it). */
  give(): void {
    this.#busy = false;
  }
}
const openScratch = new KeyScratch();
const sealScratch = new KeyScratch();

/** The payload length of a compact message, or undefined when the plaintext is too long for one. */
export function compactSealedLength(plaintextLength: number): number | undefined {
  return plaintextLength <= COMPACT_MAX_PLAINTEXT ? COMPACT_PREFIX + plaintextLength + TAG_LENGTH : undefined;
}

/** The plaintext length of a compact payload, or undefined when no compact payload has that length. */
export function compactPlaintextLength(payloadLength: number): number | undefined {
  const length = payloadLength - COMPACT_PREFIX - TAG_LENGTH;
  return length >= 0 && length <= COMPACT_MAX_PLAINTEXT ? length : undefined;
}

/** Opens a compact payload: the commitment first, then the tag; the plaintext only if both hold. */
export function openCompact(payloadKey: PayloadKey, payload: Uint8Array): Uint8Array {
  const { crypto: backend, suite } = payloadKey;
  if (compactPlaintextLength(payload.length) === undefined || payloadKey.key.length !== suite.keyLength) throw new DecryptionFailedError();
  const scratch = openScratch.take(suite.keyLength);
  const derived = scratch ?? compactKeys(suite.keyLength);
  try {
    const { keys, commitment } = deriveCompactKeys(payloadKey, payload.subarray(0, COMPACT_SALT_LENGTH), derived);
    if (!equalBytes(commitment, payload.subarray(COMPACT_SALT_LENGTH, COMPACT_PREFIX))) throw new DecryptionFailedError();
    const plaintext = backend.gcmOpenFresh(keys.key, keys.nonce(0), payload.subarray(COMPACT_PREFIX));
    if (!plaintext) throw new DecryptionFailedError();
    return plaintext;
  } finally {
    derived.keys.wipe();
    if (scratch) openScratch.give();
  }
}

/**
 * openCompact over an asynchronous AEAD (the WebCrypto backend). The key schedule runs before this
 * returns, so `inputKey` and `keyState` may be lent.
 */
export async function openCompactAsync(payloadKey: PayloadKey, aead: AsyncAead, payload: Uint8Array): Promise<Uint8Array> {
  if (compactPlaintextLength(payload.length) === undefined || payloadKey.key.length !== payloadKey.suite.keyLength) throw new DecryptionFailedError();
  const { keys, commitment } = deriveCompactKeys(payloadKey, payload.subarray(0, COMPACT_SALT_LENGTH));
  if (!equalBytes(commitment, payload.subarray(COMPACT_SALT_LENGTH, COMPACT_PREFIX))) {
    keys.wipe();
    throw new DecryptionFailedError();
  }
  const key = await importAndWipe(aead, keys);
  try {
    const plaintext = await key.open(0, payload.subarray(COMPACT_PREFIX));
    if (!plaintext) throw new DecryptionFailedError();
    return plaintext;
  } finally {
    key.drop();
  }
}

/**
 * A compact sealing in progress: the message keys are derived at construction (so a lent input
 * key is done with at once), and seal() writes the payload once. Wipes its keys when done.
 */
export class CompactSealer {
  readonly #backend: CryptoBackend;
  readonly #salt: Uint8Array;
  #keys: CompactKeys | undefined;
  /** Whether #keys are the shared sealing scratch (given back, wiped, by #release). */
  #scratch = false;

  constructor(backend: CryptoBackend, suite: PayloadSuite, inputKey: Uint8Array, context: Uint8Array, salt: Uint8Array, keyState?: HmacKeyState) {
    if (salt.length !== COMPACT_SALT_LENGTH) throw new RangeError(`salt must be ${COMPACT_SALT_LENGTH} bytes`);
    this.#backend = backend;
    this.#salt = salt;
    const scratch = sealScratch.take(suite.keyLength);
    this.#scratch = scratch !== undefined;
    try {
      this.#keys = deriveCompactKeys({ crypto: backend, suite, key: inputKey, context, keyState }, salt, scratch);
    } catch (error) {
      this.#keys = scratch;
      this.destroy();
      throw error;
    }
    keepShape(this);
  }

  /** Writes salt || commitment || ciphertext || tag into `out` at `offset`; wipes the keys. */
  seal(plaintext: Uint8Array, out: Uint8Array, offset: number): void {
    const derived = this.#keys;
    if (!derived) throw new Error('CompactSealer: already used');
    try {
      if (plaintext.length > COMPACT_MAX_PLAINTEXT) throw new RangeError(`a compact payload holds at most ${COMPACT_MAX_PLAINTEXT} bytes`);
      out.set(this.#salt, offset);
      out.set(derived.commitment, offset + COMPACT_SALT_LENGTH);
      this.#backend.gcmSeal(derived.keys.key, derived.keys.nonce(0), plaintext, out, offset + COMPACT_PREFIX);
    } finally {
      this.destroy();
    }
  }

  /** seal() over an asynchronous AEAD (the WebCrypto backend); wipes the keys once imported. */
  async sealAsync(aead: AsyncAead, plaintext: Uint8Array, out: Uint8Array, offset: number): Promise<void> {
    const derived = this.#keys;
    if (!derived) throw new Error('CompactSealer: already used');
    if (plaintext.length > COMPACT_MAX_PLAINTEXT) {
      this.destroy();
      throw new RangeError(`a compact payload holds at most ${COMPACT_MAX_PLAINTEXT} bytes`);
    }
    this.#keys = undefined;
    out.set(this.#salt, offset);
    out.set(derived.commitment, offset + COMPACT_SALT_LENGTH);
    let key: Awaited<ReturnType<typeof importAndWipe>>;
    try {
      key = await importAndWipe(aead, derived.keys);
    } finally {
      // The keys are wiped once imported (or failed): then the scratch is free for the next sealer.
      derived.keys.wipe();
      this.#release();
    }
    try {
      out.set(await key.seal(0, plaintext), offset + COMPACT_PREFIX);
    } finally {
      key.drop();
    }
  }

  destroy(): void {
    this.#keys?.keys.wipe();
    this.#keys = undefined;
    this.#release();
  }

  /** Gives the sealing scratch back (its keys already wiped). */
  #release(): void {
    if (this.#scratch) {
      this.#scratch = false;
      sealScratch.give();
    }
  }
}

/**
 * The streaming face of a compact payload, for readers that take a message piece by piece: it
 * gathers the payload (at most one chunk's worth, more fails) and opens it at the end, releasing
 * nothing before. Takes ownership of `inputKey` and wipes it.
 */
export class CompactOpener {
  readonly #backend: CryptoBackend;
  readonly #suite: PayloadSuite;
  readonly #context: Uint8Array;
  #inputKey: Uint8Array | undefined;
  #buffer = new Uint8Array(COMPACT_PREFIX + COMPACT_MAX_PLAINTEXT + TAG_LENGTH);
  #buffered = 0;
  #failed = false;

  constructor(backend: CryptoBackend, suite: PayloadSuite, inputKey: Uint8Array, context: Uint8Array) {
    this.#backend = backend;
    this.#suite = suite;
    this.#context = context;
    this.#inputKey = inputKey;
  }

  push(data: Uint8Array): Uint8Array[] {
    if (this.#failed || !this.#inputKey) throw new DecryptionFailedError();
    if (this.#buffered + data.length > this.#buffer.length) {
      this.destroy();
      throw new DecryptionFailedError();
    }
    this.#buffer.set(data, this.#buffered);
    this.#buffered += data.length;
    return [];
  }

  end(): Uint8Array {
    const key = this.#inputKey;
    if (this.#failed || !key) throw new DecryptionFailedError();
    try {
      return openCompact({ crypto: this.#backend, suite: this.#suite, key, context: this.#context }, this.#buffer.subarray(0, this.#buffered));
    } catch (error) {
      this.#failed = true;
      throw error;
    } finally {
      this.#release();
    }
  }

  /** end() over an asynchronous AEAD (the WebCrypto backend). */
  async endAsync(aead: AsyncAead): Promise<Uint8Array> {
    const key = this.#inputKey;
    if (this.#failed || !key) throw new DecryptionFailedError();
    try {
      return await openCompactAsync({ crypto: this.#backend, suite: this.#suite, key, context: this.#context }, aead, this.#buffer.subarray(0, this.#buffered));
    } catch (error) {
      this.#failed = true;
      throw error;
    } finally {
      this.#release();
    }
  }

  destroy(): void {
    this.#failed = true;
    this.#release();
  }

  #release(): void {
    this.#buffer.fill(0);
    if (this.#inputKey) this.#inputKey.fill(0);
    this.#inputKey = undefined;
  }
}
