import { createHash } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CryptoBackend } from '../../src/core/backend.ts';
import {
  PayloadKeys,
  CHUNK_SIZE,
  deriveKeys,
  MAX_CHUNKS,
  openPayload,
  openPayloadRange,
  PAYLOAD_PREFIX,
  PayloadOpener,
  PayloadSealer,
  plaintextLength,
  sealedLength,
} from '../../src/core/chunked.ts';
import { DecryptionFailedError } from '../../src/core/errors.ts';
import { COBBLESTONE_128, COBBLESTONE_256, type PayloadSuite } from '../../src/core/suites.ts';
import { BACKENDS, hex, readVectors, sealPayload, unhex } from '../helpers.ts';

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
        const plain = openPayload({ crypto: backend, suite, key, context: ctx }, ct);
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
        expect(() => openPayload({ crypto: backend, suite, key, context: ctx }, ct)).toThrow(DecryptionFailedError);
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

for (const [suite, file] of FILES) {
  const vectors = readVectors<ChunkedFile>(file);
  const cases = vectors.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, ctBytes: new Uint8Array(inflateSync(unhex(t.ct))) })));
  const [backend] = BACKENDS as [CryptoBackend];

  describe(`${suite.name} Wycheproof vectors through random access`, () => {
    const reader = (ct: Uint8Array) => async (position: number, length: number) => ct.subarray(position, position + length);
    const whole = (t: (typeof cases)[0]) => {
      const total = plaintextLength(t.ctBytes.length) ?? 0;
      return openPayloadRange({ crypto: backend, suite, key: unhex(t.key), context: unhex(t.ctx) }, { read: reader(t.ctBytes), payloadLength: t.ctBytes.length, start: 0, length: total, verifyLength: true });
    };
    const lengthOnly = (t: (typeof cases)[0]) => {
      const total = plaintextLength(t.ctBytes.length) ?? 0;
      return openPayloadRange({ crypto: backend, suite, key: unhex(t.key), context: unhex(t.ctx) }, { read: reader(t.ctBytes), payloadLength: t.ctBytes.length, start: total, length: 0, verifyLength: true });
    };

    it.each(cases)('tcId $tcId: reading the whole message, and authenticating its length', async (t) => {
      if (t.result === 'valid') {
        expect(sha512(await whole(t))).toBe(t.msgSha512);
        expect((await lengthOnly(t)).length).toBe(0);
        // A range inside one chunk, and one across a boundary, match the whole.
        const plain = await whole(t);
        for (const [start, length] of [[1, 5], [16380, 10], [plain.length - 3, 3]] as const) {
          if (start < 0 || start + length > plain.length) continue;
          const part = await openPayloadRange({ crypto: backend, suite, key: unhex(t.key), context: unhex(t.ctx) }, { read: reader(t.ctBytes), payloadLength: t.ctBytes.length, start, length, verifyLength: true });
          expect(hex(part)).toBe(hex(plain.subarray(start, start + length)));
        }
      } else {
        await expect(whole(t)).rejects.toThrow();
        if (!t.flags.includes('ValidFinalChunk')) await expect(lengthOnly(t)).rejects.toThrow();
      }
    });
  });
}

describe('PayloadSealer', () => {
  it.each(BACKENDS)('streams the same bytes as sealPayload, whatever the input pieces ($name)', (backend) => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 * CHUNK_SIZE + 100 }), fc.array(fc.integer({ min: 1, max: 20000 }), { minLength: 1, maxLength: 8 }), (size, cuts) => {
        const key = new Uint8Array(32).fill(3);
        const salt = new Uint8Array(24).fill(4);
        const plaintext = Uint8Array.from({ length: size }, (_, i) => i & 0xff);
        const expected = new Uint8Array(sealedLength(size));
        sealPayload(backend, COBBLESTONE_256, key, new Uint8Array(0), salt, plaintext, expected, 0);
        const sealer = new PayloadSealer(backend, COBBLESTONE_256, key, new Uint8Array(0), salt);
        const parts = [sealer.start()];
        for (let i = 0, c = 0; i < size; c++) {
          const n = cuts[c % cuts.length]!;
          parts.push(sealer.push(plaintext.subarray(i, i + n)));
          i += n;
        }
        parts.push(sealer.end());
        expect(hex(concat(parts))).toBe(hex(expected));
      }),
      { numRuns: 40 },
    );
  });

  it('opens byte by byte as a stream', () => {
    const [backend] = BACKENDS as [CryptoBackend];
    const key = new Uint8Array(32).fill(3);
    const plaintext = Uint8Array.from({ length: 16384 + 50 }, (_, i) => i & 0xff);
    const sealed = new Uint8Array(sealedLength(plaintext.length));
    sealPayload(backend, COBBLESTONE_256, key, new Uint8Array(0), new Uint8Array(24), plaintext, sealed, 0);
    const s = stream(backend, COBBLESTONE_256, key, new Uint8Array(0), sealed, 1);
    expect(s.error).toBeUndefined();
    expect(hex(s.plaintext)).toBe(hex(plaintext));
  });
});

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

describe('PayloadKeys', () => {
  it('gives every message its own aligned region of the key slab, across slabs', () => {
    const all: PayloadKeys[] = [];
    for (let i = 0; i < 2000; i++) {
      const keys = new PayloadKeys(i % 2 ? 16 : 32);
      for (const part of [keys.key, keys.baseNonce, keys.commitment]) {
        expect(part.byteOffset % 4).toBe(0); // @noble/ciphers reads keys as 32-bit words
        part.fill(i & 0xff);
      }
      expect(keys.key.byteOffset % 16).toBe(0);
      all.push(keys);
    }
    // No region overlaps another: each still holds what was written to it.
    all.forEach((keys, i) => {
      for (const part of [keys.key, keys.baseNonce, keys.commitment]) expect(part.every((b) => b === (i & 0xff))).toBe(true);
    });
    expect(new Set(all.map((k) => k.key.buffer)).size).toBeGreaterThan(1);
    all[5]!.wipe();
    expect([all[5]!.key, all[5]!.baseNonce, all[5]!.commitment].every((p) => p.every((b) => b === 0))).toBe(true);
    expect(all[6]!.key.every((b) => b === 6)).toBe(true);
  });
});
