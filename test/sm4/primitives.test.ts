/**
 * The primitives of suite 03 (FORMAT.md §13): SM4 (GB/T 32907), SM3 (GB/T 32905), HMAC-SM3,
 * HKDF-Expand-SM3 and SM4-GCM (RFC 8998), against the published answers in
 * test/vectors/sm-primitives.json, and every path against OpenSSL's on random inputs.
 */
import { createCipheriv, createHash, createHmac, getCiphers } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasNativeSm4Gcm, nativeSm4Gcm, type NodeSm4Crypto, nodeSm4Gcm, portableSm4Gcm, type Sm4Gcm } from '../../src/sm4/sm4-gcm.ts';
import { GHASH } from '@noble/ciphers/_polyval.js';
import { Ghash } from '../../src/sm4/ghash.ts';
import { hkdfExpandSm3, hmacSm3Prepare, sm3, testing as sm3Testing } from '../../src/sm4/sm3.ts';
import { sm4Ctr32, sm4EncryptBlock, sm4ExpandKey, testing as sm4Testing } from '../../src/sm4/sm4.ts';
import { hex, readVectors, unhex } from '../helpers.ts';
const { hmacSm3, Sm3 } = sm3Testing;
const { sm4DecryptBlock } = sm4Testing;

interface Vectors {
  sm4: { cases: { name: string; key: string; plaintext: string; ciphertext: string; iterations: number }[] };
  sm3: { cases: { name: string; message: string; digest: string }[] };
  sm4Gcm: { cases: { name: string; key: string; nonce: string; aad: string; plaintext: string; ciphertext: string; tag: string }[] };
  hmacSm3: { cases: { name: string; key: string; message: string; mac: string }[] };
}
const vectors = readVectors<Vectors>('sm-primitives.json');
const nodeCrypto = { createCipheriv, createDecipheriv: (await import('node:crypto')).createDecipheriv } as unknown as NodeSm4Crypto;

/** Every SM4-GCM path this Node has: portable always, OpenSSL's CTR (Node 20+), OpenSSL's GCM (Node 24). */
const PATHS: Sm4Gcm[] = [portableSm4Gcm, nodeSm4Gcm(nodeCrypto), ...(hasNativeSm4Gcm(nodeCrypto) ? [nativeSm4Gcm(nodeCrypto)] : [])];

describe('SM4 (GB/T 32907-2016)', () => {
  it.each(vectors.sm4.cases)('$name', ({ key, plaintext, ciphertext, iterations }) => {
    const rk = sm4ExpandKey(unhex(key));
    const block = unhex(plaintext);
    for (let i = 0; i < iterations; i++) sm4EncryptBlock(rk, block, 0, block, 0);
    expect(hex(block)).toBe(ciphertext);
    if (iterations === 1) {
      sm4DecryptBlock(rk, block, 0, block, 0);
      expect(hex(block)).toBe(plaintext);
    }
  });

  it('matches OpenSSL sm4-ecb on random keys and blocks', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 0, maxLength: 8 * 16 }), (key, data) => {
        const blocks = data.subarray(0, data.length - (data.length % 16));
        const expected = createCipheriv('sm4-ecb', key, null).setAutoPadding(false).update(blocks);
        const rk = sm4ExpandKey(key);
        const out = new Uint8Array(blocks.length);
        for (let i = 0; i < blocks.length; i += 16) sm4EncryptBlock(rk, blocks, i, out, i);
        expect(hex(out)).toBe(hex(expected));
      }),
    );
  });

  it('CTR (inc32) matches OpenSSL sm4-ctr while the low counter word does not wrap', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.uint8Array({ maxLength: 600 }), (key, nonce, data) => {
        const counter = new Uint8Array(16);
        counter.set(nonce);
        counter[15] = 2;
        const expected = createCipheriv('sm4-ctr', key, counter).update(data);
        const out = new Uint8Array(data.length);
        sm4Ctr32(sm4ExpandKey(key), counter, data, out, 0);
        expect(hex(out)).toBe(hex(expected));
      }),
    );
  });

  it('refuses a key that is not 16 bytes', () => {
    for (const n of [0, 15, 17, 32]) expect(() => sm4ExpandKey(new Uint8Array(n))).toThrow(RangeError);
  });
});

describe('SM3 (GB/T 32905-2016)', () => {
  it.each(vectors.sm3.cases)('$name', ({ message, digest }) => {
    expect(hex(sm3(unhex(message)))).toBe(digest);
  });

  it('matches OpenSSL sm3 on random messages fed in random pieces', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), fc.array(fc.nat(700), { maxLength: 5 }), (message, cuts) => {
        const hash = new Sm3();
        let at = 0;
        for (const cut of [...cuts].sort((a, b) => a - b)) {
          const to = Math.min(cut, message.length);
          if (to < at) continue;
          hash.update(message.subarray(at, to));
          at = to;
        }
        hash.update(message.subarray(at));
        expect(hex(hash.digest())).toBe(createHash('sm3').update(message).digest('hex'));
      }),
    );
  });
});

describe('HMAC-SM3', () => {
  it.each(vectors.hmacSm3.cases)('$name', ({ key, message, mac }) => {
    expect(hex(hmacSm3(unhex(key), unhex(message)))).toBe(mac);
  });

  it('matches OpenSSL HMAC-SM3 on random keys (to beyond a block) and messages', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 150 }), fc.uint8Array({ maxLength: 300 }), (key, message) => {
        expect(hex(hmacSm3(key, message))).toBe(createHmac('sm3', key).update(message).digest('hex'));
      }),
    );
  });
});

describe('HKDF-Expand-SM3 (RFC 5869 §2.3 with HMAC-SM3)', () => {
  // An independent HKDF-Expand: the library's generic one over OpenSSL's HMAC-SM3 (HashLen 32).
  const reference = (prk: Uint8Array, info: Uint8Array, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    let previous = new Uint8Array(0);
    for (let o = 0, i = 1; o < length; o += 32, i++) {
      const h = createHmac('sm3', prk).update(previous).update(info).update(Uint8Array.of(i)).digest();
      out.set(h.subarray(0, Math.min(32, length - o)), o);
      previous = h;
    }
    return out;
  };

  it('matches an HKDF-Expand over OpenSSL HMAC-SM3, with info in parts, outputs in parts, with and without a prepared key state', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 80 }),
        fc.array(fc.uint8Array({ maxLength: 90 }), { maxLength: 4 }),
        fc.array(fc.integer({ min: 0, max: 70 }), { minLength: 1, maxLength: 4 }),
        (prk, infoParts, lengths) => {
          const info = new Uint8Array(infoParts.reduce((n, p) => n + p.length, 0));
          infoParts.reduce((at, p) => (info.set(p, at), at + p.length), 0);
          const expected = hex(reference(prk, info, lengths.reduce((a, b) => a + b, 0)));
          for (const state of [undefined, hmacSm3Prepare(prk)]) {
            const outs = lengths.map((n) => new Uint8Array(n));
            hkdfExpandSm3(prk, infoParts, outs, state);
            expect(outs.map(hex).join('')).toBe(expected);
          }
        },
      ),
    );
  });

  it('ignores a key state of another hash (a SHA-512 HMAC state) rather than misreading it', () => {
    const prk = Uint8Array.from({ length: 16 }, (_, i) => i);
    const sha512State = [new Uint8Array(64).fill(1), new Uint8Array(64).fill(2)] as const;
    const out = new Uint8Array(60);
    hkdfExpandSm3(prk, [Uint8Array.of(1, 2, 3)], [out], sha512State);
    expect(hex(out)).toBe(hex(reference(prk, Uint8Array.of(1, 2, 3), 60)));
  });

  it('refuses an output longer than 255 * 32 bytes', () => {
    expect(() => hkdfExpandSm3(new Uint8Array(16), [], [new Uint8Array(255 * 32 + 1)])).toThrow(RangeError);
  });
});

describe('GHASH (NIST SP 800-38D §6.4)', () => {
  it('matches @noble/ciphers GHASH on random keys and segments (AAD, data, lengths), each padded to a block', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.array(fc.uint8Array({ maxLength: 100 }), { maxLength: 4 }), (key, segments) => {
        const ours = new Ghash(key);
        const theirs = new GHASH(key);
        for (const segment of segments) {
          ours.update(segment);
          theirs.update(segment);
        }
        const out = new Uint8Array(16);
        ours.digestInto(out);
        expect(hex(out)).toBe(hex(theirs.digest()));
      }),
    );
  });
});

describe('SM4-GCM (RFC 8998)', () => {
  it('paths on this Node: portable and OpenSSL sm4-ctr always; OpenSSL sm4-gcm where the build has it', () => {
    expect(getCiphers()).toContain('sm4-ctr');
    expect(PATHS.map((p) => p.path).slice(0, 2)).toEqual(['portable', 'node']);
  });

  for (const aead of PATHS) {
    it.each(vectors.sm4Gcm.cases)(`$name (${aead.path})`, ({ key, nonce, aad, plaintext, ciphertext, tag }) => {
      const pt = unhex(plaintext);
      const out = new Uint8Array(pt.length + 16);
      aead.seal(unhex(key), unhex(nonce), pt, out, 0, unhex(aad));
      expect(hex(out)).toBe(ciphertext + tag);
      const back = new Uint8Array(pt.length);
      expect(aead.open(unhex(key), unhex(nonce), out, back, 0, unhex(aad))).toBe(true);
      expect(hex(back)).toBe(plaintext);
    });

    it(`round trips, and rejects any altered byte or other AAD leaving the output zero (${aead.path})`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: 16, maxLength: 16 }),
          fc.uint8Array({ minLength: 12, maxLength: 12 }),
          fc.uint8Array({ maxLength: 300 }),
          fc.uint8Array({ maxLength: 40 }),
          fc.nat(),
          (key, nonce, plaintext, aad, where) => {
            const sealed = new Uint8Array(plaintext.length + 16);
            aead.seal(key, nonce, plaintext, sealed, 0, aad);
            const fresh = aead.openFresh(key, nonce, sealed);
            if (aad.length === 0) expect(fresh && hex(fresh)).toBe(hex(plaintext));
            const out = new Uint8Array(plaintext.length);
            expect(aead.open(key, nonce, sealed, out, 0, aad)).toBe(true);
            expect(hex(out)).toBe(hex(plaintext));
            const bad = sealed.slice();
            bad[where % bad.length]! ^= 0x80;
            out.fill(0xee);
            expect(aead.open(key, nonce, bad, out, 0, aad)).toBe(false);
            expect(out.every((b) => b === 0)).toBe(true);
            expect(aead.openFresh(key, nonce, bad)).toBeUndefined();
            expect(aead.open(key, nonce, sealed, out, 0, Uint8Array.of(...aad, 0))).toBe(false);
            expect(aead.open(key, nonce, sealed.subarray(0, 15), out, 0, aad)).toBe(false);
          },
        ),
      );
    });
  }

  it('every path gives the same bytes on random keys, nonces, AAD and plaintexts (up to a full chunk)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 16380, max: 16384 }).map((n) => new Uint8Array(n).fill(n & 0xff))),
        fc.uint8Array({ maxLength: 40 }),
        (key, nonce, plaintext, aad) => {
          const results = PATHS.map((aead) => {
            const out = new Uint8Array(plaintext.length + 16);
            aead.seal(key, nonce, plaintext, out, 0, aad);
            return hex(out);
          });
          expect(new Set(results).size).toBe(1);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses a key of other than 16 bytes and a nonce of other than 12, on every path', () => {
    for (const aead of PATHS) {
      expect(() => aead.seal(new Uint8Array(32), new Uint8Array(12), new Uint8Array(1), new Uint8Array(17), 0)).toThrow(RangeError);
      expect(() => aead.seal(new Uint8Array(16), new Uint8Array(16), new Uint8Array(1), new Uint8Array(17), 0)).toThrow();
    }
  });
});
