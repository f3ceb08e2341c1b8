import { extract } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { testing as backendNodeTesting } from '../../src/core/backend-node.ts';
import { nobleHmacHkdf } from '../../src/core/backend-noble.ts';
import { testing as hkdfTesting, type HkdfExpand, wasmHkdf } from '../../src/core/hkdf.ts';
import { sha512Compressor } from '../../src/core/sha512-wasm.ts';
import { BACKENDS, hex, readVectors, unhex } from '../helpers.ts';
const { createWasmHkdf, hkdfExpandBytes, WASM_CONSTANTS } = hkdfTesting;
const { loadNodeCrypto, nodeHmacHkdf } = backendNodeTesting;

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
});

const HKDFS: { name: string; expand: HkdfExpand }[] = [
  { name: 'WebAssembly', expand: createWasmHkdf()!.expand },
  { name: 'node:crypto createHmac', expand: nodeHmacHkdf(loadNodeCrypto()!) },
  { name: '@noble/hashes hmac', expand: nobleHmacHkdf },
];

describe.each(HKDFS)('HKDF-Expand-SHA-512 ($name)', ({ expand }) => {
  it('computes every Wycheproof HKDF-SHA-512 vector, info whole and in parts', () => {
    let count = 0;
    for (const group of hkdf.testGroups) {
      for (const t of group.tests) {
        const prk = extract(sha512, unhex(t.ikm), unhex(t.salt));
        const info = unhex(t.info);
        const parts = [info.subarray(0, 3), info.subarray(3, 3), info.subarray(3)];
        if (t.result === 'valid') {
          expect(hex(hkdfExpandBytes(expand, prk, [info], t.size)), `tcId ${t.tcId}`).toBe(t.okm);
          expect(hex(hkdfExpandBytes(expand, prk, parts, t.size)), `tcId ${t.tcId} in parts`).toBe(t.okm);
        } else {
          expect(() => hkdfExpandBytes(expand, prk, [info], t.size), `tcId ${t.tcId}`).toThrow(RangeError);
        }
        count++;
      }
    }
    expect(count).toBe(83);
  });

  it('accepts a PRK shorter than HashLen, as Cobblestone uses a 16- or 32-byte data key', () => {
    const prk = new Uint8Array(16).fill(7);
    const info = new Uint8Array([1, 2, 3]);
    // RFC 5869 §2.3 by hand: T(1) = HMAC(prk, info || 1), T(2) = HMAC(prk, T(1) || info || 2).
    const t1 = hmac(sha512, prk, Uint8Array.of(...info, 1));
    const t2 = hmac(sha512, prk, Uint8Array.of(...t1, ...info, 2));
    expect(hex(hkdfExpandBytes(expand, prk, [info], 76))).toBe(hex(Uint8Array.of(...t1, ...t2.subarray(0, 12))));
  });
});

describe('HKDF-Expand implementations', () => {
  it('agree on random keys (up to two blocks long), infos (in parts, past one memory page) and lengths', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.array(fc.uint8Array({ maxLength: 400 }), { maxLength: 4 }),
        fc.integer({ min: 0, max: 300 }),
        (prk, info, length) => {
          const expected = hex(hkdfExpandBytes(HKDFS[1]!.expand, prk, info, length));
          expect(hex(hkdfExpandBytes(HKDFS[0]!.expand, prk, info, length))).toBe(expected);
          expect(hex(hkdfExpandBytes(HKDFS[2]!.expand, prk, info, length))).toBe(expected);
        },
      ),
      { numRuns: 300 },
    );
    // The OKM split over several outputs is the same bytes.
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.array(fc.integer({ min: 0, max: 70 }), { maxLength: 5 }), (prk, sizes) => {
        const length = sizes.reduce((a, b) => a + b, 0);
        for (const { expand } of HKDFS) {
          const parts = sizes.map((n) => new Uint8Array(n));
          expand(prk, [prk], parts);
          const joined = Uint8Array.from(parts.flatMap((p) => [...p]));
          expect(hex(joined)).toBe(hex(hkdfExpandBytes(expand, prk, [prk], length)));
        }
      }),
      { numRuns: 200 },
    );
    const big = [new Uint8Array(70_000).fill(9), new Uint8Array(5)];
    expect(hex(hkdfExpandBytes(HKDFS[0]!.expand, new Uint8Array(32), big, 200))).toBe(hex(hkdfExpandBytes(HKDFS[1]!.expand, new Uint8Array(32), big, 200)));
  });

  it('WebAssembly: a precomputed key state gives the same OKM as the key, and no other', () => {
    const { expand, prepare } = wasmHkdf()!;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (prk, info) => {
        const state = prepare(prk);
        const out = [new Uint8Array(32), new Uint8Array(44)];
        expand(prk, [info], out, state);
        expect(hex(Uint8Array.of(...out[0]!, ...out[1]!))).toBe(hex(hkdfExpandBytes(HKDFS[1]!.expand, prk, [info], 76)));
        // The state, not the PRK, is what is used: another key's state gives another key's OKM.
        const other = Uint8Array.of(...prk, 1);
        expand(prk, [info], out, prepare(other));
        expect(hex(Uint8Array.of(...out[0]!, ...out[1]!))).toBe(hex(hkdfExpandBytes(HKDFS[1]!.expand, other, [info], 76)));
      }),
      { numRuns: 200 },
    );
  });

  it('leave no key material in the WebAssembly memory after a call, only the constants', () => {
    const [start, end] = WASM_CONSTANTS;
    const onlyConstants = (): void => {
      const memory = new Uint8Array(sha512Compressor()!.memory.buffer);
      expect(memory.subarray(0, start).every((b) => b === 0)).toBe(true);
      expect(memory.subarray(end).every((b) => b === 0)).toBe(true);
      // The outer padding (0x80, zeros, the length 192 * 8) and the SHA-512 IV.
      const constants = hex(memory.subarray(start, end));
      expect(constants.slice(0, 128)).toBe(`80${'00'.repeat(61)}0600`);
      expect(constants.slice(128)).toBe('6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179');
    };
    for (const prk of [new Uint8Array(32).fill(0xaa), new Uint8Array(200).fill(0xbb)]) {
      const okm = hkdfExpandBytes(wasmHkdf()!.expand, prk, [new Uint8Array(100).fill(1)], 200);
      expect(okm.some((b) => b !== 0)).toBe(true);
      onlyConstants();
      const state = wasmHkdf()!.prepare(prk);
      expect(state[0].some((b) => b !== 0)).toBe(true);
      onlyConstants();
    }
  });
});

describe('node and noble backends', () => {
  const [node, noble] = BACKENDS as [(typeof BACKENDS)[0], (typeof BACKENDS)[0]];

  it('seal and open views at any byte offset (chunks behind a header), with the same bytes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 7 }),
        (key, nonce, plaintext, shift) => {
          const place = (bytes: Uint8Array): Uint8Array => {
            const backing = new Uint8Array(bytes.length + shift);
            backing.set(bytes, shift);
            return backing.subarray(shift);
          };
          const expected = new Uint8Array(plaintext.length + 16);
          node.gcmSeal(key, nonce, plaintext, expected, 0);
          const sealed = new Uint8Array(plaintext.length + 16);
          noble.gcmSeal(key, nonce, place(plaintext), sealed, 0);
          expect(hex(sealed)).toBe(hex(expected));
          expect(hex(noble.gcmOpenFresh(key, nonce, place(sealed))!)).toBe(hex(plaintext));
          const out = new Uint8Array(plaintext.length);
          expect(noble.gcmOpen(key, nonce, place(sealed), out, 0)).toBe(true);
          expect(hex(out)).toBe(hex(plaintext));
        },
      ),
      { numRuns: 200 },
    );
  });

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
});

describe.each(BACKENDS)('randomBytes ($name)', (backend) => {
  it('draws fresh bytes of any length (small ones from a pool)', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) seen.add(hex(backend.randomBytes(24))); // 400 x 24 B spans refills of the 4 KiB pool
    expect(seen.size).toBe(400);
    for (const length of [0, 1, 256, 257, 65536, 100_000]) {
      const bytes = backend.randomBytes(length);
      expect(bytes.length).toBe(length);
      // Each 64 KiB slice of a long draw is filled (WebCrypto fills at most 65536 bytes a call).
      if (length > 65536) expect(bytes.subarray(65536).some((b) => b !== 0)).toBe(true);
    }
  });
});
