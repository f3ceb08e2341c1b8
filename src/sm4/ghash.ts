/**
 * GHASH (NIST SP 800-38D §6.4) for SM4-GCM, with Shoup's 8-bit tables: 256 multiples of H (4 KiB)
 * per key, then 16 table steps per block. @noble/ciphers' GHASH computes the same (the tests check
 * one against the other) but builds a table of objects per call and allocates per block, which made
 * it the bottleneck of SM4-GCM on Node (OpenSSL does the SM4); see BENCHMARKS.md "SM4 suite".
 *
 * Words are big-endian 32-bit (w0 = bytes 0..3); GCM's bit order puts x^0 in the most significant
 * bit of byte 0, so multiplying by x is a right shift, reduced by XORing 0xe1 into the top byte.
 */

/** R[b]: what the 8 bits b shifted out of the low end contribute to the top word after a shift by 8. */
const REDUCE = new Int32Array(256);
for (let b = 0; b < 256; b++) {
  let w0 = 0;
  let w3 = b;
  for (let i = 0; i < 8; i++) {
    const carry = w3 & 1;
    w3 >>>= 1;
    w0 = (w0 >>> 1) ^ (carry ? 0xe1000000 : 0);
  }
  REDUCE[b] = w0;
}

export class Ghash {
  /** M[b] = b * H, four words each: key material, wiped by destroy(). */
  readonly #table = new Int32Array(1024);
  #y0 = 0;
  #y1 = 0;
  #y2 = 0;
  #y3 = 0;

  /** `hashKey` is H = E(K, 0^128), 16 bytes; it may be wiped once this returns. */
  constructor(hashKey: Uint8Array) {
    const t = this.#table;
    let h0 = read(hashKey, 0);
    let h1 = read(hashKey, 4);
    let h2 = read(hashKey, 8);
    let h3 = read(hashKey, 12);
    // M[0x80] = H, and each lower power of two is the one above times x.
    for (let b = 0x80; b > 0; b >>>= 1) {
      t[4 * b] = h0;
      t[4 * b + 1] = h1;
      t[4 * b + 2] = h2;
      t[4 * b + 3] = h3;
      const carry = h3 & 1;
      h3 = (h3 >>> 1) | (h2 << 31);
      h2 = (h2 >>> 1) | (h1 << 31);
      h1 = (h1 >>> 1) | (h0 << 31);
      h0 = (h0 >>> 1) ^ (carry ? 0xe1000000 : 0);
    }
    h0 = h1 = h2 = h3 = 0;
    for (let b = 2; b < 256; b <<= 1) {
      for (let j = 1; j < b; j++) {
        for (let w = 0; w < 4; w++) t[4 * (b + j) + w] = t[4 * b + w]! ^ t[4 * j + w]!;
      }
    }
  }

  /** Absorbs `data` as one segment, zero-padded to a whole block (as GCM feeds AAD and ciphertext). */
  update(data: Uint8Array): this {
    const t = this.#table;
    let y0 = this.#y0, y1 = this.#y1, y2 = this.#y2, y3 = this.#y3;
    const n = data.length;
    for (let at = 0; at < n; at += 16) {
      if (at + 16 <= n) {
        y0 ^= read(data, at);
        y1 ^= read(data, at + 4);
        y2 ^= read(data, at + 8);
        y3 ^= read(data, at + 12);
      } else {
        const tail = new Uint8Array(16);
        tail.set(data.subarray(at));
        y0 ^= read(tail, 0);
        y1 ^= read(tail, 4);
        y2 ^= read(tail, 8);
        y3 ^= read(tail, 12);
        tail.fill(0);
      }
      // Y * H by Horner over Y's bytes, last first: Z = Z * x^8 + M[byte].
      let z0 = 0, z1 = 0, z2 = 0, z3 = 0;
      for (let w = 3; w >= 0; w--) {
        const word = w === 3 ? y3 : w === 2 ? y2 : w === 1 ? y1 : y0;
        for (let shift = 0; shift < 32; shift += 8) {
          if (w !== 3 || shift !== 0) {
            const rem = z3 & 0xff;
            z3 = (z3 >>> 8) | (z2 << 24);
            z2 = (z2 >>> 8) | (z1 << 24);
            z1 = (z1 >>> 8) | (z0 << 24);
            z0 = (z0 >>> 8) ^ REDUCE[rem]!;
          }
          const m = 4 * ((word >>> shift) & 0xff);
          z0 ^= t[m]!;
          z1 ^= t[m + 1]!;
          z2 ^= t[m + 2]!;
          z3 ^= t[m + 3]!;
        }
      }
      y0 = z0;
      y1 = z1;
      y2 = z2;
      y3 = z3;
    }
    this.#y0 = y0;
    this.#y1 = y1;
    this.#y2 = y2;
    this.#y3 = y3;
    return this;
  }

  /** Writes the 16-byte hash into `out` at `offset` and wipes the table and the state. */
  digestInto(out: Uint8Array, offset = 0): void {
    write(out, offset, this.#y0);
    write(out, offset + 4, this.#y1);
    write(out, offset + 8, this.#y2);
    write(out, offset + 12, this.#y3);
    this.destroy();
  }

  destroy(): void {
    this.#table.fill(0);
    this.#y0 = this.#y1 = this.#y2 = this.#y3 = 0;
  }
}

function read(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!;
}

function write(bytes: Uint8Array, at: number, word: number): void {
  bytes[at] = word >>> 24;
  bytes[at + 1] = word >>> 16;
  bytes[at + 2] = word >>> 8;
  bytes[at + 3] = word;
}
