import { readFileSync } from 'node:fs';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import type { CryptoBackend } from '../src/core/backend.ts';
import { nobleBackend } from '../src/core/backend-noble.ts';
import { createNodeBackend } from '../src/core/backend-node.ts';
import { PayloadSealer } from '../src/core/chunked.ts';
import type { PayloadSuite } from '../src/core/suites.ts';

export const BACKENDS: CryptoBackend[] = [createNodeBackend()!, nobleBackend];

export function readVectors<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`./vectors/${name}`, import.meta.url), 'utf8')) as T;
}

/** Deterministic randomness for reproducible vectors: HMAC-SHA-512(seed, counter) blocks. */
export function seededRandom(seed: string): (length: number) => Uint8Array {
  const key = new TextEncoder().encode(seed);
  let counter = 0;
  return (length: number) => {
    const out = new Uint8Array(length);
    for (let o = 0; o < length; o += 64) {
      const block = hmac(sha512, key, new Uint8Array(new Uint32Array([counter++]).buffer));
      out.set(block.subarray(0, Math.min(64, length - o)), o);
    }
    return out;
  };
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function unhex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/**
 * Seals `plaintext` into `out` at `offset` with the given salt (sealedLength(plaintext.length)
 * bytes): the one-shot form of PayloadSealer that the vector tests use.
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
  new PayloadSealer(backend, suite, inputKey, context, salt).sealAll(plaintext, out, offset);
}
