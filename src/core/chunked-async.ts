/**
 * The chunked payload (FORMAT.md §6) over an asynchronous AEAD (the WebCrypto backend): the same
 * bytes as chunked.ts, with several chunks in flight at once so that WebCrypto's worker threads
 * stay busy, and results taken strictly in order. The key schedule is chunked.ts's (synchronous);
 * the message key is then imported as a non-extractable key and its raw bytes wiped.
 */
import type { AeadKey, AsyncAead, CryptoBackend } from './backend.ts';
import { NONCE_LENGTH, TAG_LENGTH } from './backend.ts';
import { equalBytes, wipe } from './bytes.ts';
import { chunkNonce } from './chunk-nonce.ts';
import {
  CHUNK_SIZE,
  deriveKeys,
  MAX_CHUNKS,
  PAYLOAD_PREFIX,
  type PayloadKey,
  type PayloadKeys,
  type PayloadRange,
  type PayloadSealer,
  plaintextLength,
  rangeTotal,
  readChunkRange,
  readExactly,
  SALT_LENGTH,
  SEALED_CHUNK_SIZE,
} from './chunked.ts';
import { DecryptionFailedError } from './errors.ts';
import type { PayloadSuite } from './suites.ts';

/**
 * Chunks in flight at once for a whole message, and the fewest a stream keeps under way beyond
 * the batch it waits for: enough to keep WebCrypto and the event loop overlapping, few enough that
 * memory stays small. See BENCHMARKS.md "Browsers" and issue 30's section.
 */
export const CHUNKS_IN_FLIGHT = 8;

/** A message key imported for the asynchronous AEAD, with its own copy of the base nonce. */
class AsyncChunkKey {
  readonly #aead: AsyncAead;
  #key: AeadKey | undefined;
  readonly #baseNonce: Uint8Array;
  readonly #nonce = new Uint8Array(NONCE_LENGTH);

  private constructor(aead: AsyncAead, key: AeadKey, baseNonce: Uint8Array) {
    this.#aead = aead;
    this.#key = key;
    this.#baseNonce = baseNonce;
  }

  /**
   * Imports `keys.key` (the caller wipes `keys` once this settles; the import copied it).
   * Everything is read before this returns, so `keys` may be a sealer's lent view.
   */
  static import(aead: AsyncAead, keys: { readonly key: Uint8Array; readonly baseNonce: Uint8Array }): Promise<AsyncChunkKey> {
    const baseNonce = keys.baseNonce.slice();
    return aead.importKey(keys.key).then(
      (key) => new AsyncChunkKey(aead, key, baseNonce),
      (error: unknown) => {
        wipe(baseNonce);
        throw error;
      },
    );
  }

  /** Seals chunk `counter`; the plaintext is copied before this returns (it may be reused at once). */
  seal(counter: number, plaintext: Uint8Array): Promise<Uint8Array> {
    return this.#aead.seal(this.#live(), this.#nonceOf(counter), plaintext);
  }

  /** Opens chunk `counter` (copied before this returns); undefined when its tag does not verify. */
  open(counter: number, sealed: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#aead.open(this.#live(), this.#nonceOf(counter), sealed);
  }

  /** Drops the CryptoKey (it cannot be zeroed: SECURITY.md) and wipes the nonce. */
  drop(): void {
    this.#key = undefined;
    wipe(this.#baseNonce, this.#nonce);
  }

  #live(): AeadKey {
    if (!this.#key) throw new Error('AsyncChunkKey: already dropped');
    return this.#key;
  }

  #nonceOf(counter: number): Uint8Array {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= MAX_CHUNKS) {
      throw new RangeError(`chunk counter ${counter} out of range: a message has at most 2^38 chunks`);
    }
    return chunkNonce(this.#baseNonce, counter, this.#nonce);
  }
}

/** Imports `keys` and wipes them once the import settled, whichever way. */
export function importAndWipe(aead: AsyncAead, keys: PayloadKeys): Promise<AsyncChunkKey> {
  let imported: Promise<AsyncChunkKey>;
  try {
    imported = AsyncChunkKey.import(aead, keys);
  } catch (error) {
    keys.wipe();
    throw error;
  }
  return imported.finally(() => keys.wipe());
}

/**
 * Runs work(0) .. work(count - 1) with at most `limit` under way. After a failure starts no more,
 * waits for those under way (so none writes after), and rejects with the first failure.
 */
async function eachBounded(count: number, limit: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < count && !failure) {
      const index = next++;
      try {
        await work(index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failure) throw failure.error;
}

/**
 * Seals a whole message into `out` at `offset` (sealedLength(plaintext.length) bytes), as
 * PayloadSealer.sealAll does. Destroys `sealer` once its key is imported.
 */
export async function sealAllAsync(aead: AsyncAead, sealer: PayloadSealer, plaintext: Uint8Array, out: Uint8Array, offset: number): Promise<void> {
  let imported: Promise<AsyncChunkKey>;
  try {
    out.set(sealer.start(), offset);
    imported = AsyncChunkKey.import(aead, sealer.sharedKeys());
  } catch (error) {
    sealer.destroy();
    throw error;
  }
  const key = await imported.finally(() => sealer.destroy());
  try {
    const base = offset + PAYLOAD_PREFIX;
    const chunks = Math.floor(plaintext.length / CHUNK_SIZE) + 1;
    await eachBounded(chunks, CHUNKS_IN_FLIGHT, async (c) => {
      out.set(await key.seal(c, plaintext.subarray(c * CHUNK_SIZE, (c + 1) * CHUNK_SIZE)), base + c * SEALED_CHUNK_SIZE);
    });
  } finally {
    key.drop();
  }
}

/**
 * Opens consecutive sealed chunks (the last may be short), the first with counter `first`, several
 * at once, into a new array of `plaintextLength` bytes; wiped and DecryptionFailedError at the
 * first tag that does not verify.
 */
async function openChunksAsync(key: AsyncChunkKey, sealed: Uint8Array, first: number, plaintextLength: number): Promise<Uint8Array> {
  const out = new Uint8Array(plaintextLength);
  try {
    await eachBounded(Math.ceil(sealed.length / SEALED_CHUNK_SIZE), CHUNKS_IN_FLIGHT, async (c) => {
      const plain = await key.open(first + c, sealed.subarray(c * SEALED_CHUNK_SIZE, (c + 1) * SEALED_CHUNK_SIZE));
      if (!plain) throw new DecryptionFailedError();
      out.set(plain, c * CHUNK_SIZE);
      wipe(plain);
    });
    return out;
  } catch (error) {
    wipe(out);
    throw error;
  }
}

/**
 * Opens a whole payload, as openPayload does: the length and the commitment before any chunk, and
 * the plaintext only when every chunk authenticates. The key schedule runs before this returns,
 * so `inputKey` and `keyState` may be lent (the caller keeps and wipes them).
 */
export async function openPayloadAsync({ crypto: backend, suite, key: inputKey, context, keyState }: PayloadKey, aead: AsyncAead, payload: Uint8Array): Promise<Uint8Array> {
  const length = plaintextLength(payload.length);
  if (length === undefined || inputKey.length !== suite.keyLength) throw new DecryptionFailedError();
  const keys = deriveKeys(backend, suite, inputKey, payload.subarray(0, SALT_LENGTH), context, keyState);
  if (!equalBytes(keys.commitment, payload.subarray(SALT_LENGTH, PAYLOAD_PREFIX))) {
    keys.wipe();
    throw new DecryptionFailedError();
  }
  const key = await importAndWipe(aead, keys);
  const sealed = payload.subarray(PAYLOAD_PREFIX);
  try {
    if (length < CHUNK_SIZE) {
      // One chunk (most records): WebCrypto's own output buffer is the plaintext, no copy.
      const plaintext = await key.open(0, sealed);
      if (!plaintext) throw new DecryptionFailedError();
      return plaintext;
    }
    return await openChunksAsync(key, sealed, 0, length);
  } finally {
    key.drop();
  }
}

/**
 * Random access, as openPayloadRange does: plaintext bytes [start, start + length) of a payload of
 * `payloadLength` bytes, decrypting only the chunks they fall in (several at once), after the
 * commitment check; with `verifyLength`, the final chunk too. Takes `inputKey` as openPayloadRange
 * does (the caller keeps and wipes it).
 */
export async function openPayloadRangeAsync(
  { crypto: backend, suite, key: inputKey, context }: PayloadKey,
  aead: AsyncAead,
  { read, payloadLength, start, length, verifyLength }: PayloadRange,
): Promise<Uint8Array> {
  const total = rangeTotal(suite, inputKey, payloadLength, start, length);
  const prefix = await readExactly(read, 0, PAYLOAD_PREFIX);
  const keys = deriveKeys(backend, suite, inputKey, prefix.subarray(0, SALT_LENGTH), context);
  if (!equalBytes(keys.commitment, prefix.subarray(SALT_LENGTH))) {
    keys.wipe();
    throw new DecryptionFailedError();
  }
  const key = await importAndWipe(aead, keys);
  let out: Uint8Array | undefined;
  try {
    const openChunks = async (first: number, last: number): Promise<Uint8Array> => {
      const from = PAYLOAD_PREFIX + first * SEALED_CHUNK_SIZE;
      const to = Math.min(payloadLength, PAYLOAD_PREFIX + (last + 1) * SEALED_CHUNK_SIZE);
      const sealed = await readExactly(read, from, to - from);
      return openChunksAsync(key, sealed, first, sealed.length - (last - first + 1) * TAG_LENGTH);
    };
    out = await readChunkRange(openChunks, start, length, total, verifyLength);
    return out;
  } catch (error) {
    wipe(out);
    throw error;
  } finally {
    key.drop();
  }
}

/** Where the next chunks go: a stream's enqueue. */
export type Emit = (chunk: Uint8Array) => void;

/** The most chunks a stream launches as one batch (1 MiB of plaintext); a longer write is cut. */
export const BATCH_CHUNKS = 64;

/**
 * Batches of chunks under way, oldest first, each awaited once (not chunk by chunk). A stream
 * launches a batch per write and waits for the oldest only while the newer ones keep at least
 * CHUNKS_IN_FLIGHT chunks under way, so WebCrypto always has work while this thread hands results
 * on: the depth adapts to the writes (a Blob's 64 KiB reads: 8 to 12 chunks; 1 MiB pieces: one
 * or two batches of 64). Results never emitted (an error, an abort) are wiped as they arrive.
 */
class Batches {
  readonly #queue: Promise<(Uint8Array | undefined)[]>[] = [];
  readonly #counts: number[] = [];
  #chunks = 0;

  add(results: Promise<Uint8Array | undefined>[]): void {
    const all = Promise.all(results);
    all.catch(() => {}); // never an unhandled rejection: taken in order, or discarded
    this.#queue.push(all);
    this.#counts.push(results.length);
    this.#chunks += results.length;
  }

  /** Whether the oldest batch should be taken now: `all`, or while newer ones keep WebCrypto busy. */
  due(all: boolean): boolean {
    return this.#queue.length > 0 && (all || (this.#queue.length > 1 && this.#chunks - this.#counts[0]! >= CHUNKS_IN_FLIGHT));
  }

  /** The oldest batch's results, in order (undefined: a tag that did not verify). */
  take(): Promise<(Uint8Array | undefined)[]> {
    this.#chunks -= this.#counts.shift()!;
    return this.#queue.shift()!;
  }

  /** Drops every pending batch, wiping each result as it arrives. */
  discard(): void {
    this.#counts.length = 0;
    this.#chunks = 0;
    for (const batch of this.#queue.splice(0)) batch.then((results) => wipe(...results), () => {});
  }
}

/**
 * sealStream's engine over an asynchronous AEAD: cuts the plaintext into 16 KiB chunks (straight
 * from the input where it can, WebCrypto copies), launches each write's chunks as a batch, and
 * emits the sealed chunks in order, each in WebCrypto's own buffer: joining a batch into one array
 * cost Chromium's main thread more than the reader's reads it saved (BENCHMARKS.md, issue 30).
 * Takes `sealer` (its keys are imported, then it is destroyed).
 */
export class AsyncStreamSealer {
  readonly #imported: Promise<AsyncChunkKey>;
  #key: AsyncChunkKey | undefined;
  readonly #batches = new Batches();
  #buffer: Uint8Array | undefined;
  #buffered = 0;
  #counter = 0;
  #done = false;

  constructor(aead: AsyncAead, sealer: PayloadSealer) {
    let imported: Promise<AsyncChunkKey>;
    try {
      imported = AsyncChunkKey.import(aead, sealer.sharedKeys());
    } catch (error) {
      sealer.destroy();
      throw error;
    }
    this.#imported = imported.finally(() => sealer.destroy());
    this.#imported.catch(() => {}); // reported by the first push or end
  }

  /** Feeds plaintext: seals every chunk it completes, emitting older batches while newer ones are under way. */
  async push(data: Uint8Array, emit: Emit): Promise<void> {
    const key = this.#key ?? (await this.#live());
    let batch: Promise<Uint8Array>[] = [];
    let i = 0;
    if (this.#buffered > 0) {
      const take = Math.min(CHUNK_SIZE - this.#buffered, data.length);
      this.#buffer!.set(data.subarray(0, take), this.#buffered);
      this.#buffered += take;
      i = take;
      if (this.#buffered < CHUNK_SIZE) return;
      batch.push(key.seal(this.#counter++, this.#buffer!));
      this.#buffered = 0;
    }
    for (; data.length - i >= CHUNK_SIZE; i += CHUNK_SIZE) {
      batch.push(key.seal(this.#counter++, data.subarray(i, i + CHUNK_SIZE)));
      if (batch.length === BATCH_CHUNKS) {
        this.#batches.add(batch);
        batch = [];
        await this.#emitDue(emit, false);
      }
    }
    if (i < data.length) {
      this.#buffer ??= new Uint8Array(CHUNK_SIZE);
      this.#buffer.set(data.subarray(i));
      this.#buffered = data.length - i;
    }
    if (batch.length > 0) this.#batches.add(batch);
    await this.#emitDue(emit, false);
  }

  /** Seals the final short chunk and emits everything left, in order; drops the key. */
  async end(emit: Emit): Promise<void> {
    const key = await this.#live();
    try {
      this.#batches.add([key.seal(this.#counter++, this.#buffer?.subarray(0, this.#buffered) ?? new Uint8Array(0))]);
      await this.#emitDue(emit, true);
    } finally {
      this.destroy();
    }
  }

  /** Wipes the buffered plaintext and drops the key; pending chunks are never emitted. */
  destroy(): void {
    this.#done = true;
    this.#batches.discard();
    wipe(this.#buffer);
    this.#key?.drop();
    this.#imported.then((key) => key.drop(), () => {});
  }

  async #emitDue(emit: Emit, all: boolean): Promise<void> {
    while (this.#batches.due(all)) {
      const sealed = (await this.#batches.take()) as Uint8Array[];
      if (this.#done) throw new Error('AsyncStreamSealer: already ended');
      for (const chunk of sealed) emit(chunk);
    }
  }

  async #live(): Promise<AsyncChunkKey> {
    if (this.#done) throw new Error('AsyncStreamSealer: already ended');
    const key = (this.#key ??= await this.#imported);
    if (this.#done) throw new Error('AsyncStreamSealer: already ended');
    return key;
  }
}

/**
 * openStream's engine over an asynchronous AEAD, with PayloadOpener's guarantees: the commitment
 * is checked before any chunk; each chunk's plaintext is emitted only after it and every chunk
 * before it authenticated; one sealed chunk is held back to find the last; after a failure
 * nothing more is emitted (chunks already in flight are wiped as they arrive) and it keeps failing.
 */
export class AsyncStreamOpener {
  readonly #backend: CryptoBackend;
  readonly #aead: AsyncAead;
  readonly #suite: PayloadSuite;
  readonly #context: Uint8Array;
  #inputKey: Uint8Array | undefined;
  #key: AsyncChunkKey | undefined;
  readonly #batches = new Batches();
  readonly #buffer = new Uint8Array(SEALED_CHUNK_SIZE);
  #buffered = 0;
  #counter = 0;
  #failed = false;
  #done = false;

  /** Takes ownership of `inputKey` and wipes it. */
  constructor(backend: CryptoBackend, aead: AsyncAead, suite: PayloadSuite, inputKey: Uint8Array, context: Uint8Array) {
    this.#backend = backend;
    this.#aead = aead;
    this.#suite = suite;
    this.#context = context;
    this.#inputKey = inputKey;
    if (inputKey.length !== suite.keyLength) this.#fail();
  }

  /** Feeds ciphertext: opens every chunk known not to be the last, emitting older batches while newer ones are under way. */
  async push(data: Uint8Array, emit: Emit): Promise<void> {
    this.#check();
    try {
      let i = 0;
      if (!this.#key) {
        const take = Math.min(PAYLOAD_PREFIX - this.#buffered, data.length);
        this.#buffer.set(data.subarray(0, take), this.#buffered);
        this.#buffered += take;
        i = take;
        if (this.#buffered < PAYLOAD_PREFIX) return;
        await this.#openHeader();
      }
      const key = this.#key!;
      let batch: Promise<Uint8Array | undefined>[] = [];
      // Every full sealed chunk followed by at least one more byte is not the last: open it.
      if (this.#buffered > 0 && this.#buffered + data.length - i > SEALED_CHUNK_SIZE) {
        const take = SEALED_CHUNK_SIZE - this.#buffered;
        this.#buffer.set(data.subarray(i, i + take), this.#buffered);
        i += take;
        this.#buffered = 0;
        batch.push(key.open(this.#counter++, this.#buffer));
      }
      if (this.#buffered === 0) {
        for (; data.length - i > SEALED_CHUNK_SIZE; i += SEALED_CHUNK_SIZE) {
          batch.push(key.open(this.#counter++, data.subarray(i, i + SEALED_CHUNK_SIZE)));
          if (batch.length === BATCH_CHUNKS) {
            this.#batches.add(batch);
            batch = [];
            await this.#emitDue(emit, false);
          }
        }
      }
      this.#buffer.set(data.subarray(i), this.#buffered);
      this.#buffered += data.length - i;
      if (batch.length > 0) this.#batches.add(batch);
      await this.#emitDue(emit, false);
    } catch (error) {
      this.#fail();
      throw error;
    }
  }

  /** Ends the stream: the held-back chunk must be a valid short final chunk; emits everything left. */
  async end(emit: Emit): Promise<void> {
    this.#check();
    try {
      if (!this.#key || this.#buffered < TAG_LENGTH || this.#buffered === SEALED_CHUNK_SIZE) throw new DecryptionFailedError();
      this.#batches.add([this.#key.open(this.#counter++, this.#buffer.subarray(0, this.#buffered))]);
      await this.#emitDue(emit, true);
      this.#done = true;
      this.#release();
    } catch (error) {
      this.#fail();
      throw error;
    }
  }

  /** Abandons the stream: wipes its key material and every plaintext not yet emitted. */
  destroy(): void {
    if (!this.#done) this.#fail();
  }

  /** Emits the batches due, each only once every chunk in it (and before it) authenticated. */
  async #emitDue(emit: Emit, all: boolean): Promise<void> {
    while (this.#batches.due(all)) {
      const plain = await this.#batches.take();
      // A tag that did not verify, or failed (aborted) while this batch was in flight: none of it is released.
      if (this.#failed || plain.includes(undefined)) {
        wipe(...plain);
        throw new DecryptionFailedError();
      }
      for (const chunk of plain) emit(chunk!);
    }
  }

  async #openHeader(): Promise<void> {
    const inputKey = this.#inputKey!;
    this.#inputKey = undefined;
    let keys: PayloadKeys;
    try {
      keys = deriveKeys(this.#backend, this.#suite, inputKey, this.#buffer.subarray(0, SALT_LENGTH), this.#context);
    } finally {
      wipe(inputKey);
    }
    const ok = equalBytes(keys.commitment, this.#buffer.subarray(SALT_LENGTH, PAYLOAD_PREFIX));
    this.#buffered = 0;
    if (!ok) {
      keys.wipe();
      throw new DecryptionFailedError();
    }
    const key = await importAndWipe(this.#aead, keys);
    if (this.#failed) {
      key.drop(); // destroyed while the key was being imported
      throw new DecryptionFailedError();
    }
    this.#key = key;
  }

  #check(): void {
    if (this.#failed) throw new DecryptionFailedError();
    if (this.#done) throw new Error('AsyncStreamOpener: stream already ended');
  }

  #fail(): void {
    this.#failed = true;
    this.#release();
  }

  #release(): void {
    this.#batches.discard();
    wipe(this.#inputKey, this.#buffer);
    this.#inputKey = undefined;
    this.#key?.drop();
  }
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { AsyncChunkKey, eachBounded };
