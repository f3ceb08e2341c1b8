import { createHash } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CryptoBackend } from '../src/backend.ts';
import {
  CHUNK_SIZE,
  COBBLESTONE_128,
  COBBLESTONE_256,
  deriveKeys,
  MAX_CHUNKS,
  openPayload,
  PAYLOAD_PREFIX,
  PayloadOpener,
  type PayloadSuite,
  plaintextLength,
  sealedLength,
  sealPayload,
} from '../src/chunked.ts';
import { DecryptionFailedError } from '../src/errors.ts';
import { BACKENDS, hex, readVectors, unhex } from './helpers.ts';

interface ChunkedFile {
  testGroups: { aead: string; tests: ChunkedCase[] }[];
}
interface ChunkedCase {
  tcId: number;
  comment: string;
  flags: string[];
  key: string;
  ctx: string;
  ct: string;
  msgLength?: number;
  msgSha512?: string;
  result: 'valid' | 'invalid';
}

const FILES: [PayloadSuite, string][] = [
  [COBBLESTONE_256, 'wycheproof/c2sp_chunked_encryption_aes_256_gcm_test.json'],
  [COBBLESTONE_128, 'wycheproof/c2sp_chunked_encryption_aes_128_gcm_test.json'],
];

const sha512 = (b: Uint8Array): string => createHash('sha512').update(b).digest('hex');

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** Streams `ct` through a PayloadOpener in pieces of `step` bytes; returns what it released and the error. */
function stream(backend: CryptoBackend, suite: PayloadSuite, key: Uint8Array, ctx: Uint8Array, ct: Uint8Array, step: number) {
  const released: Uint8Array[] = [];
  let error: unknown;
  const opener = new PayloadOpener(backend, suite, key.slice(), ctx);
  try {
    for (let i = 0; i < ct.length; i += step) released.push(...opener.push(ct.subarray(i, i + step)));
    released.push(opener.end());
  } catch (e) {
    error = e;
  }
  return { plaintext: concat(released), error, opener };
}

for (const [suite, file] of FILES) {
  const vectors = readVectors<ChunkedFile>(file);
  const cases = vectors.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, ctBytes: new Uint8Array(inflateSync(unhex(t.ct))) })));

  describe.each(BACKENDS)(`${suite.name} Wycheproof vectors on backend $name`, (backend) => {
    it('has all 35 vectors', () => expect(cases.length).toBe(35));

    it.each(cases)('tcId $tcId: $comment', (t) => {
      const key = unhex(t.key);
      const ctx = unhex(t.ctx);
      const ct = t.ctBytes;
      if (t.result === 'valid') {
        const plain = openPayload(backend, suite, key, ctx, ct);
        expect(plain.length).toBe(t.msgLength);
        expect(sha512(plain)).toBe(t.msgSha512);
        // Encryption check 2 of the how-to: the same salt gives the same bytes.
        const again = new Uint8Array(sealedLength(plain.length));
        sealPayload(backend, suite, key, ctx, ct.subarray(0, 24), plain, again, 0);
        expect(sha512(again)).toBe(sha512(ct));
        for (const step of [ct.length, 1000, 16400]) {
          const s = stream(backend, suite, key, ctx, ct, step);
          expect(s.error).toBeUndefined();
          expect(sha512(s.plaintext)).toBe(t.msgSha512);
        }
      } else {
        expect(() => openPayload(backend, suite, key, ctx, ct)).toThrow(DecryptionFailedError);
        // PartialPlaintext: a stream may release the valid prefix, never more, and must fail.
        const prefix = t.msgLength ?? 0;
        for (const step of [ct.length || 1, 1000, 16400]) {
          const s = stream(backend, suite, key, ctx, ct, step);
          expect(s.error).toBeInstanceOf(DecryptionFailedError);
          expect(s.plaintext.length).toBeLessThanOrEqual(prefix);
          if (s.plaintext.length === prefix && prefix > 0) expect(sha512(s.plaintext)).toBe(t.msgSha512);
          // ... and keeps failing, rather than ending cleanly.
          expect(() => s.opener.push(new Uint8Array(1))).toThrow(DecryptionFailedError);
          expect(() => s.opener.end()).toThrow(DecryptionFailedError);
        }
      }
    });
  });
}

describe('chunk arithmetic', () => {
  it('sealedLength and plaintextLength are inverse for every plaintext length', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (n) => {
        expect(plaintextLength(sealedLength(n))).toBe(n);
      }),
    );
  });

  it('the final chunk MUST be shorter than 16384 bytes: a payload ending in a full chunk is truncated', () => {
    expect(plaintextLength(PAYLOAD_PREFIX + CHUNK_SIZE + 16)).toBeUndefined();
    expect(plaintextLength(PAYLOAD_PREFIX + CHUNK_SIZE + 16 + 16)).toBe(CHUNK_SIZE);
    expect(plaintextLength(PAYLOAD_PREFIX + 15)).toBeUndefined();
    expect(plaintextLength(PAYLOAD_PREFIX - 1)).toBeUndefined();
  });

  it('The chunk counter MUST NOT reach 2^38', () => {
    const [backend] = BACKENDS;
    const keys = deriveKeys(backend!, COBBLESTONE_256, new Uint8Array(32), new Uint8Array(24), new Uint8Array(0));
    const base = keys.baseNonce.slice();
    const last = keys.nonce(MAX_CHUNKS - 1);
    // The last valid counter flips exactly the low 38 bits.
    const xor = last.map((b, i) => b ^ base[i]!);
    expect(hex(xor)).toBe('00000000000000' + '3fffffffff');
    expect(() => keys.nonce(MAX_CHUNKS)).toThrow(RangeError);
    expect(() => keys.nonce(-1)).toThrow(RangeError);
    keys.wipe();
  });
});
