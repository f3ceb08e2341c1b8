/**
 * The stream pipeline over an asynchronous AEAD (core/chunked-async.ts): chunks emitted in order
 * whatever order WebCrypto answers in, no more than two batches and CHUNKS_IN_FLIGHT under way, a tampered
 * chunk failing with nothing after it released (and what was in flight wiped), and abort. The
 * AEAD is the real crypto.subtle, wrapped to count calls and to answer in a shuffled order.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AeadKey, AsyncAead } from '../../src/core/backend.ts';
import { createWebCryptoBackend } from '../../src/core/backend-webcrypto.ts';
import { CHUNK_SIZE, deriveKeys, PAYLOAD_PREFIX, PayloadSealer, SEALED_CHUNK_SIZE, sealedLength } from '../../src/core/chunked.ts';
import { AsyncStreamOpener, AsyncStreamSealer, BATCH_CHUNKS, CHUNKS_IN_FLIGHT, importAndWipe, sealAllAsync, testing as chunkedAsyncTesting } from '../../src/core/chunked-async.ts';
import { DecryptionFailedError } from '../../src/core/errors.ts';
import { COBBLESTONE_256 } from '../../src/core/suites.ts';
import { createEnvelope, LocalKms, openStream, sealStream } from '../../src/index.ts';
import { hex, sealPayload } from '../helpers.ts';
const { eachBounded } = chunkedAsyncTesting;

const webcrypto = createWebCryptoBackend()!;
const subtle = webcrypto.aead!;

/**
 * crypto.subtle, answering each call after a delay chosen by `delay(call number)` (so later
 * chunks can finish first), counting the calls under way, and keeping every plaintext it returned.
 */
function shuffledAead(delay: (call: number) => number) {
  let calls = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const opened: Uint8Array[] = [];
  const pending = new Set<Promise<unknown>>();
  const later = <T>(work: Promise<T>): Promise<T> => {
    const call = calls++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const p = work.then((value) => new Promise<T>((resolve) => setTimeout(() => resolve(value), delay(call))));
    const done = p.finally(() => {
      inFlight--;
      pending.delete(done);
    });
    pending.add(done);
    return done;
  };
  const aead: AsyncAead = {
    importKey: (key) => subtle.importKey(key),
    seal: (key: AeadKey, nonce, plaintext) => later(subtle.seal(key, nonce, plaintext)),
    // Indexed by call (the chunk's place), not by when crypto.subtle answered: its threads may
    // finish chunks out of order, more so on a loaded machine.
    open: (key: AeadKey, nonce, sealed) => {
      const index = calls;
      return later(
        subtle.open(key, nonce, sealed).then((plain) => {
          if (plain) opened[index] = plain;
          return plain;
        }),
      );
    },
  };
  return {
    aead,
    opened,
    get maxInFlight() {
      return maxInFlight;
    },
    settled: async () => {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
  };
}

const KEY = new Uint8Array(32).fill(5);
const SALT = new Uint8Array(24).fill(6);
const CTX = new Uint8Array([1, 2, 3]);
const patterned = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 13 + (i >> 14)) & 0xff);

function sealWhole(plaintext: Uint8Array): Uint8Array {
  const out = new Uint8Array(sealedLength(plaintext.length));
  sealPayload(webcrypto, COBBLESTONE_256, KEY, CTX, SALT, plaintext, out, 0);
  return out;
}

async function openPieces(aead: AsyncAead, sealed: Uint8Array, step: number) {
  const released: Uint8Array[] = [];
  const opener = new AsyncStreamOpener(webcrypto, aead, COBBLESTONE_256, KEY.slice(), CTX);
  const emit = (chunk: Uint8Array): void => void released.push(chunk.slice());
  let error: unknown;
  try {
    for (let i = 0; i < sealed.length; i += step) await opener.push(sealed.subarray(i, i + step), emit);
    await opener.end(emit);
  } catch (e) {
    error = e;
  }
  return { plaintext: new Uint8Array(Buffer.concat(released)), error };
}

describe('stream pipeline over an asynchronous AEAD', () => {
  it('emits chunks in order and keeps at most CHUNKS_IN_FLIGHT and two writes\' batches under way, whatever order they finish in', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 20 * CHUNK_SIZE }),
        fc.integer({ min: 1, max: 70000 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 16 }),
        async (size, step, delays) => {
          const plaintext = patterned(size);
          const expected = sealWhole(plaintext);
          // Sealing, in pieces of `step`.
          const sealing = shuffledAead((call) => delays[call % delays.length]!);
          const sealer = new PayloadSealer(webcrypto, COBBLESTONE_256, KEY, CTX, SALT);
          const parts = [sealer.start()];
          const pipeline = new AsyncStreamSealer(sealing.aead, sealer);
          const emit = (chunk: Uint8Array): void => void parts.push(chunk);
          for (let i = 0; i < size; i += step) await pipeline.push(plaintext.subarray(i, i + step), emit);
          await pipeline.end(emit);
          expect(hex(Buffer.concat(parts))).toBe(hex(expected));
          // The oldest batch, newer ones short of CHUNKS_IN_FLIGHT, and the write's own batch.
          const batch = (size: number): number => Math.min(BATCH_CHUNKS, Math.ceil(step / size) + 1);
          expect(sealing.maxInFlight).toBeLessThanOrEqual(CHUNKS_IN_FLIGHT + 2 * batch(CHUNK_SIZE));
          // Opening, in pieces of `step`.
          const opening = shuffledAead((call) => delays[(call + 1) % delays.length]!);
          const opened = await openPieces(opening.aead, expected, step);
          expect(opened.error).toBeUndefined();
          expect(hex(opened.plaintext)).toBe(hex(plaintext));
          expect(opening.maxInFlight).toBeLessThanOrEqual(CHUNKS_IN_FLIGHT + 2 * batch(SEALED_CHUNK_SIZE));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('holds memory to the chunks in flight: a 64 MiB stream in 1 MiB pieces never has more than two batches of 64 chunks under way', async () => {
    const counting = shuffledAead(() => 0);
    const sealer = new PayloadSealer(webcrypto, COBBLESTONE_256, KEY, CTX, SALT);
    sealer.start();
    const pipeline = new AsyncStreamSealer(counting.aead, sealer);
    const piece = new Uint8Array(1 << 20);
    let emitted = 0;
    for (let i = 0; i < 64; i++) await pipeline.push(piece, (chunk) => void (emitted += chunk.length));
    await pipeline.end((chunk) => void (emitted += chunk.length));
    expect(emitted).toBe(sealedLength(64 << 20) - PAYLOAD_PREFIX);
    // One piece issues its 64 chunks as a batch, and waits for the one before it.
    expect(BATCH_CHUNKS).toBe(64);
    expect(counting.maxInFlight).toBeLessThanOrEqual(2 * BATCH_CHUNKS);
    // A write longer than a batch is cut: 8 MiB at once keeps no more than two batches under way either.
    const cutting = shuffledAead(() => 0);
    const long = new AsyncStreamSealer(cutting.aead, new PayloadSealer(webcrypto, COBBLESTONE_256, KEY, CTX, SALT));
    await long.push(new Uint8Array(8 << 20), () => {});
    await long.end(() => {});
    expect(cutting.maxInFlight).toBeLessThanOrEqual(2 * BATCH_CHUNKS);
  });

  it('a tampered chunk fails the stream: no plaintext of it or after it is released, and what was in flight is wiped', async () => {
    const size = 12 * CHUNK_SIZE + 100;
    const plaintext = patterned(size);
    const sealed = sealWhole(plaintext);
    for (const bad of [0, 3, 11, 12]) {
      const tampered = sealed.slice();
      tampered[PAYLOAD_PREFIX + bad * SEALED_CHUNK_SIZE + 7]! ^= 1;
      // Later chunks answer first: they are done (and verified) before the tampered one fails.
      const shuffled = shuffledAead((call) => (call <= bad ? 8 : 0));
      const { plaintext: released, error } = await openPieces(shuffled.aead, tampered, 3 * SEALED_CHUNK_SIZE + 5);
      expect(error).toBeInstanceOf(DecryptionFailedError);
      expect(released.length).toBeLessThanOrEqual(bad * CHUNK_SIZE);
      expect(hex(released)).toBe(hex(plaintext.subarray(0, released.length)));
      await shuffled.settled();
      // Every chunk the AEAD opened but the stream did not release is zeros now.
      const releasedChunks = released.length / CHUNK_SIZE;
      const unreleased = shuffled.opened.filter((chunk, i) => i >= releasedChunks && chunk.length > 0);
      expect(unreleased.every((chunk) => chunk.every((b) => b === 0))).toBe(true);
    }
  });

  it('a truncated stream, or one extended past its final chunk, fails at the end', async () => {
    const sealed = sealWhole(patterned(3 * CHUNK_SIZE + 10));
    for (const broken of [sealed.subarray(0, sealed.length - 1), sealed.subarray(0, PAYLOAD_PREFIX + 2 * SEALED_CHUNK_SIZE), Buffer.concat([sealed, new Uint8Array(20)])]) {
      const { plaintext, error } = await openPieces(subtle, new Uint8Array(broken), 5000);
      expect(error).toBeInstanceOf(DecryptionFailedError);
      expect(plaintext.length).toBeLessThanOrEqual(3 * CHUNK_SIZE);
    }
  });

  it('destroy() while chunks are in flight: nothing more is emitted, and their plaintext is wiped as it arrives', async () => {
    const sealed = sealWhole(patterned(20 * CHUNK_SIZE));
    const slow = shuffledAead(() => 5);
    const opener = new AsyncStreamOpener(webcrypto, slow.aead, COBBLESTONE_256, KEY.slice(), CTX);
    const released: Uint8Array[] = [];
    // The first batch stays under way; the second makes the opener wait for the first.
    await opener.push(sealed.subarray(0, 8 * SEALED_CHUNK_SIZE), (chunk) => void released.push(chunk));
    const pushing = opener.push(sealed.subarray(8 * SEALED_CHUNK_SIZE, 17 * SEALED_CHUNK_SIZE), (chunk) => void released.push(chunk));
    await new Promise((resolve) => setTimeout(resolve, 1));
    opener.destroy();
    await expect(pushing).rejects.toThrow(DecryptionFailedError);
    expect(released).toEqual([]);
    await expect(opener.push(new Uint8Array(1), () => {})).rejects.toThrow(DecryptionFailedError);
    await slow.settled();
    expect(slow.opened.length).toBeGreaterThan(released.length);
    for (const chunk of slow.opened.slice(released.length)) if (chunk) expect(chunk.every((b) => b === 0)).toBe(true);
  });

  it('wipes the raw message key, base nonce and commitment once the key is imported, on every path', async () => {
    const zero = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0);
    const keys = deriveKeys(webcrypto, COBBLESTONE_256, KEY, SALT, CTX);
    expect(zero(keys.key)).toBe(false);
    (await importAndWipe(subtle, keys)).drop();
    expect([keys.key, keys.baseNonce, keys.commitment].every(zero)).toBe(true);
    // A failed import wipes them too.
    const bad = deriveKeys(webcrypto, COBBLESTONE_256, KEY, SALT, CTX);
    await expect(importAndWipe({ ...subtle, importKey: () => Promise.reject(new Error('refused')) }, bad)).rejects.toThrow('refused');
    expect([bad.key, bad.baseNonce, bad.commitment].every(zero)).toBe(true);
    // The stream sealer and the one-shot sealer destroy the PayloadSealer whose keys they took.
    for (const run of [
      async (sealer: PayloadSealer) => {
        const pipeline = new AsyncStreamSealer(subtle, sealer);
        await pipeline.push(new Uint8Array(100), () => {});
        pipeline.destroy();
      },
      (sealer: PayloadSealer) => sealAllAsync(subtle, sealer, new Uint8Array(100), new Uint8Array(sealedLength(100)), 0),
    ]) {
      const sealer = new PayloadSealer(webcrypto, COBBLESTONE_256, KEY, CTX, SALT);
      const shared = sealer.sharedKeys();
      await run(sealer);
      expect(zero(shared.key) && zero(shared.baseNonce)).toBe(true);
    }
  });

  it('eachBounded runs every index once with at most `limit` at a time, and stops starting after a failure', async () => {
    let running = 0;
    let most = 0;
    const seen: number[] = [];
    await eachBounded(50, 4, async (i) => {
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, i % 3));
      seen.push(i);
      running--;
    });
    expect(most).toBe(4);
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    const started: number[] = [];
    await expect(
      eachBounded(50, 4, async (i) => {
        started.push(i);
        if (i === 5) throw new Error('boom');
        await new Promise((resolve) => setTimeout(resolve, 1));
      }),
    ).rejects.toThrow('boom');
    expect(started.length).toBeLessThan(12);
  });
});

describe('sealStream/openStream on the webcrypto backend', () => {
  const kms = LocalKms.generate();
  const envelope = createEnvelope({ kms, backend: 'webcrypto' });
  const nodeEnvelope = createEnvelope({ kms, backend: 'node' });

  const pieces = (bytes: Uint8Array, step: number): ReadableStream<Uint8Array> =>
    new ReadableStream({
      start(controller) {
        for (let i = 0; i < bytes.length; i += step) controller.enqueue(bytes.slice(i, i + step));
        controller.close();
      },
    });
  const collect = async (stream: ReadableStream<Uint8Array>): Promise<Uint8Array> => {
    const parts: Uint8Array[] = [];
    for await (const part of stream as unknown as AsyncIterable<Uint8Array>) parts.push(part);
    return new Uint8Array(Buffer.concat(parts));
  };

  it('round-trips with the node backend both ways', async () => {
    const plaintext = patterned(5 * CHUNK_SIZE + 77);
    const sealed = await collect(pieces(plaintext, 10000).pipeThrough(sealStream(envelope)));
    expect(hex(await nodeEnvelope.open(sealed))).toBe(hex(plaintext));
    const byNode = await collect(pieces(plaintext, 7000).pipeThrough(sealStream(nodeEnvelope)));
    expect(hex(await collect(pieces(byNode, 9999).pipeThrough(openStream(envelope))))).toBe(hex(plaintext));
  });

  it('a tampered byte rejects the read, with no plaintext of the chunk or after it', async () => {
    const plaintext = patterned(6 * CHUNK_SIZE);
    const sealed = await nodeEnvelope.seal(plaintext);
    const tampered = sealed.slice();
    tampered[tampered.length - 3 * SEALED_CHUNK_SIZE]! ^= 0x80;
    const reader = pieces(tampered, 4096).pipeThrough(openStream(envelope)).getReader();
    let released = 0;
    let failure: unknown;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        released += value.length;
      }
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(DecryptionFailedError);
    expect(released).toBeLessThanOrEqual(3 * CHUNK_SIZE);
  });

  it('abort ends both streams with the signal’s reason', async () => {
    const controller = new AbortController();
    const plaintext = patterned(40 * CHUNK_SIZE);
    const sealed = await nodeEnvelope.seal(plaintext);
    let count = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(c) {
        if (count * 8192 >= sealed.length) return c.close();
        c.enqueue(sealed.slice(count * 8192, ++count * 8192));
        if (count === 20) controller.abort(new Error('stop here'));
      },
    });
    await expect(collect(source.pipeThrough(openStream(envelope, { signal: controller.signal })))).rejects.toThrow('stop here');
    const sealing = new AbortController();
    sealing.abort(new Error('not started'));
    await expect(collect(pieces(plaintext, 5000).pipeThrough(sealStream(envelope, { signal: sealing.signal })))).rejects.toThrow('not started');
  });
});
