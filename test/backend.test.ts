import { extract } from '@noble/hashes/hkdf.js';
import { sha512 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BACKENDS, hex, readVectors, unhex } from './helpers.ts';

interface AeadFile {
  testGroups: { ivSize: number; keySize: number; tagSize: number; tests: AeadCase[] }[];
}
interface AeadCase {
  tcId: number;
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}
interface HkdfFile {
  testGroups: { tests: { tcId: number; ikm: string; salt: string; info: string; size: number; okm: string; result: string }[] }[];
}

const gcm = readVectors<AeadFile>('wycheproof/aes_gcm_test.json');
const gcmGroups = gcm.testGroups.filter((g) => g.ivSize === 96 && g.tagSize === 128);
const hkdf = readVectors<HkdfFile>('wycheproof/hkdf_sha512_test.json');

describe.each(BACKENDS)('backend $name', (backend) => {
  it('passes every Wycheproof AES-GCM vector with a 96-bit IV', () => {
    let count = 0;
    for (const group of gcmGroups) {
      for (const t of group.tests) {
        const key = unhex(t.key);
        const iv = unhex(t.iv);
        const aad = unhex(t.aad);
        const msg = unhex(t.msg);
        const sealed = unhex(t.ct + t.tag);
        const label = `Wycheproof/GCM/${group.keySize}/${t.tcId}`;
        const opened = new Uint8Array(Math.max(0, sealed.length - 16));
        const ok = backend.gcmOpen(key, iv, sealed, opened, 0, aad);
        if (t.result === 'valid') {
          expect(ok, label).toBe(true);
          expect(hex(opened), label).toBe(t.msg);
          const out = new Uint8Array(msg.length + 16);
          backend.gcmSeal(key, iv, msg, out, 0, aad);
          expect(hex(out), label).toBe(t.ct + t.tag);
        } else {
          expect(ok, label).toBe(false);
          expect(opened.every((b) => b === 0), `${label}: failed open leaves zeros`).toBe(true);
        }
        count++;
      }
    }
    expect(count).toBeGreaterThan(190);
  });

  it('computes HKDF-Expand-SHA-512 as every Wycheproof HKDF-SHA-512 vector', () => {
    let count = 0;
    for (const group of hkdf.testGroups) {
      for (const t of group.tests) {
        const prk = extract(sha512, unhex(t.ikm), unhex(t.salt));
        if (t.result === 'valid') {
          expect(hex(backend.hkdfExpandSha512(prk, unhex(t.info), t.size)), `tcId ${t.tcId}`).toBe(t.okm);
        } else {
          expect(() => backend.hkdfExpandSha512(prk, unhex(t.info), t.size), `tcId ${t.tcId}`).toThrow(RangeError);
        }
        count++;
      }
    }
    expect(count).toBe(83);
  });

  it('accepts a PRK shorter than HashLen, as Cobblestone uses a 16- or 32-byte data key', () => {
    const okm = backend.hkdfExpandSha512(new Uint8Array(16).fill(7), new Uint8Array([1, 2, 3]), 76);
    expect(okm.length).toBe(76);
  });
});

describe('node and noble backends', () => {
  const [node, noble] = BACKENDS as [(typeof BACKENDS)[0], (typeof BACKENDS)[0]];

  it('produce byte-identical AES-GCM output on random inputs', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(16, 32),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.uint8Array({ maxLength: 64 }),
        (keyLength, keyBytes, nonce, plaintext, aad) => {
          const key = keyBytes.subarray(0, keyLength);
          const a = new Uint8Array(plaintext.length + 16);
          const b = new Uint8Array(plaintext.length + 16);
          node.gcmSeal(key, nonce, plaintext, a, 0, aad);
          noble.gcmSeal(key, nonce, plaintext, b, 0, aad);
          expect(hex(a)).toBe(hex(b));
          const back = new Uint8Array(plaintext.length);
          expect(noble.gcmOpen(key, nonce, a, back, 0, aad)).toBe(true);
          expect(hex(back)).toBe(hex(plaintext));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('produce byte-identical HKDF-Expand output on random inputs', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 64 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 1, max: 300 }),
        (prk, info, length) => {
          expect(hex(node.hkdfExpandSha512(prk, info, length))).toBe(hex(noble.hkdfExpandSha512(prk, info, length)));
        },
      ),
      { numRuns: 200 },
    );
  });
});
