import { readFileSync } from 'node:fs';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import type { CryptoBackend } from '../src/core/backend.ts';
import { nobleBackend } from '../src/core/backend-noble.ts';
import { createNodeBackend } from '../src/core/backend-node.ts';

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
