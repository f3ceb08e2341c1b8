import { afterAll, describe, expect, it } from 'vitest';
import { chunkNonce } from '../../src/core/chunk-nonce.ts';
import { CHUNK_SIZE, MAX_CHUNKS, PayloadKeys, SEALED_CHUNK_SIZE } from '../../src/core/chunked.ts';
import { ChunkWorkerPool } from '../../src/node/worker-pool.ts';
import { BACKENDS } from '../helpers.ts';

const pool = new ChunkWorkerPool(2);
afterAll(() => pool.close());

// Counters where a carry or the 2^38 limit could go wrong.
const EDGES = [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 36, MAX_CHUNKS - 2, MAX_CHUNKS - 1];

describe('the worker pool (node/)', () => {
  it('derives every chunk nonce as the main thread does, at every counter edge', async () => {
    const keys = new PayloadKeys(32);
    keys.key.set(Uint8Array.from({ length: 32 }, (_, i) => i * 7));
    keys.baseNonce.set(Uint8Array.from({ length: 12 }, (_, i) => 0xf0 ^ i));
    const session = pool.session(keys.key, keys.baseNonce);
    try {
      for (const counter of EDGES) {
        const plaintext = Uint8Array.from({ length: CHUNK_SIZE }, (_, i) => (i + counter) & 0xff);
        const fromWorker = await session.seal(counter, plaintext);
        for (const backend of BACKENDS) {
          const here = new Uint8Array(SEALED_CHUNK_SIZE);
          backend.gcmSeal(keys.key, keys.nonce(counter), plaintext, here, 0);
          expect(Buffer.from(fromWorker!).equals(Buffer.from(here)), `counter ${counter} (${backend.name})`).toBe(true);
        }
        const opened = await session.open(counter, fromWorker!);
        expect(Buffer.from(opened!).equals(Buffer.from(plaintext))).toBe(true);
        // A chunk opened under the neighbouring counter fails, in the worker as here.
        const other = counter === 0 ? 1 : counter - 1;
        expect(await session.open(other, fromWorker!)).toBeUndefined();
      }
    } finally {
      session.end();
      keys.wipe();
    }
  });

  it('computes the chunk nonce as base XOR counter, big-endian in the last five bytes', () => {
    const base = new Uint8Array(12);
    const out = new Uint8Array(12);
    expect([...chunkNonce(base, 2 ** 32 + 0x01020304, out)]).toEqual([0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
    expect([...chunkNonce(base.fill(0xff), MAX_CHUNKS - 1, out)]).toEqual([255, 255, 255, 255, 255, 255, 255, 0xc0, 0, 0, 0, 0]);
    expect(() => new PayloadKeys(16).nonce(MAX_CHUNKS)).toThrow(RangeError);
  });

  it('refuses a batch that would reach 2^38 chunks', () => {
    const keys = new PayloadKeys(16);
    const session = pool.session(keys.key, keys.baseNonce);
    try {
      expect(() => session.seal(MAX_CHUNKS - 1, new Uint8Array(2 * CHUNK_SIZE))).toThrow(RangeError);
    } finally {
      session.end();
    }
  });
});
