/**
 * The SM4 block cipher (GB/T 32907-2016): 128-bit key, 128-bit block, 32 rounds. Portable
 * TypeScript for suite 03 (FORMAT.md §3) where the runtime has no SM4 (browsers, edge, a Node
 * without OpenSSL's SM4), and for the one-block GHASH key on every runtime. Checked against the
 * standard's examples and against OpenSSL's sm4-ecb/sm4-ctr in test/core/sm4.test.ts.
 *
 * Table-driven (four 256-word tables of L(S(x))), like most software SM4: the lookups depend on
 * key and data, the same cache-timing caveat as table AES; the node backend uses OpenSSL's SM4
 * where it can.
 */

const SBOX = Uint8Array.from(
  (
    'd690e9fecce13db716b614c228fb2c052b679a762abe04c3aa441326498606999c4250f491ef987a33540b43edcfac62' +
    'e4b31ca9c908e89580df94fa758f3fa64707a7fcf37317ba83593c19e6854fa8686b81b27164da8bf8eb0f4b70569d35' +
    '1e240e5e6358d1a225227c3b01217887d40046579fd327524c3602e7a0c4c89eeabf8ad240c738b5a3f7f2cef96115a1' +
    'e0ae5da49b341a55ad933230f58cb1e31df6e22e8266ca60c02923ab0d534e6fd5db3745defd8e2f03ff6a726d6c5b51' +
    '8d1baf92bbddbc7f11d95c411f105ad80ac13188a5cd7bbd2d74d012b8e5b4b08969974a0c96777e65b9f109c56ec684' +
    '18f07dec3adc4d2079ee5f3ed7cb3948'
  )
    .match(/../g)!
    .map((byte) => Number.parseInt(byte, 16)),
);

const FK = Int32Array.of(0xa3b1bac6, 0x56aa3350, 0x677d9197, 0xb27022dc);

/** CK_i: bytes (4i + j) * 7 mod 256, j = 0..3. */
const CK = new Int32Array(32);
for (let i = 0; i < 32; i++) {
  let word = 0;
  for (let j = 0; j < 4; j++) word = (word << 8) | (((4 * i + j) * 7) & 0xff);
  CK[i] = word;
}

const rotl = (x: number, n: number): number => (x << n) | (x >>> (32 - n));

/** T0[x] = L(S(x) << 24), and T1..T3 the same rotated a byte further: T(w) is four lookups. */
const T0 = new Int32Array(256);
const T1 = new Int32Array(256);
const T2 = new Int32Array(256);
const T3 = new Int32Array(256);
for (let x = 0; x < 256; x++) {
  const b = SBOX[x]! << 24;
  const l = b ^ rotl(b, 2) ^ rotl(b, 10) ^ rotl(b, 18) ^ rotl(b, 24);
  T0[x] = l;
  T1[x] = rotl(l, 24);
  T2[x] = rotl(l, 16);
  T3[x] = rotl(l, 8);
}

function tau(x: number): number {
  return (SBOX[x >>> 24]! << 24) | (SBOX[(x >>> 16) & 0xff]! << 16) | (SBOX[(x >>> 8) & 0xff]! << 8) | SBOX[x & 0xff]!;
}

export const SM4_BLOCK = 16;
export const SM4_KEY_LENGTH = 16;

/** The 32 round keys of a 16-byte key: key material, wipe with `fill(0)`. */
export function sm4ExpandKey(key: Uint8Array): Int32Array {
  if (key.length !== SM4_KEY_LENGTH) throw new RangeError(`SM4 key must be 16 bytes, got ${key.length}`);
  const rk = new Int32Array(32);
  let k0 = readWord(key, 0) ^ FK[0]!;
  let k1 = readWord(key, 4) ^ FK[1]!;
  let k2 = readWord(key, 8) ^ FK[2]!;
  let k3 = readWord(key, 12) ^ FK[3]!;
  for (let i = 0; i < 32; i++) {
    const b = tau(k1 ^ k2 ^ k3 ^ CK[i]!);
    const next = k0 ^ b ^ rotl(b, 13) ^ rotl(b, 23);
    rk[i] = next;
    k0 = k1;
    k1 = k2;
    k2 = k3;
    k3 = next;
  }
  k0 = k1 = k2 = k3 = 0;
  return rk;
}

function readWord(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!;
}

function writeWord(bytes: Uint8Array, at: number, word: number): void {
  bytes[at] = word >>> 24;
  bytes[at + 1] = word >>> 16;
  bytes[at + 2] = word >>> 8;
  bytes[at + 3] = word;
}

/** The block's four words after 32 rounds, reversed (R), into `out`. */
function rounds(rk: Int32Array, x0: number, x1: number, x2: number, x3: number, out: Int32Array): void {
  for (let i = 0; i < 32; i += 4) {
    let x = x1 ^ x2 ^ x3 ^ rk[i]!;
    x0 ^= T0[x >>> 24]! ^ T1[(x >>> 16) & 0xff]! ^ T2[(x >>> 8) & 0xff]! ^ T3[x & 0xff]!;
    x = x2 ^ x3 ^ x0 ^ rk[i + 1]!;
    x1 ^= T0[x >>> 24]! ^ T1[(x >>> 16) & 0xff]! ^ T2[(x >>> 8) & 0xff]! ^ T3[x & 0xff]!;
    x = x3 ^ x0 ^ x1 ^ rk[i + 2]!;
    x2 ^= T0[x >>> 24]! ^ T1[(x >>> 16) & 0xff]! ^ T2[(x >>> 8) & 0xff]! ^ T3[x & 0xff]!;
    x = x0 ^ x1 ^ x2 ^ rk[i + 3]!;
    x3 ^= T0[x >>> 24]! ^ T1[(x >>> 16) & 0xff]! ^ T2[(x >>> 8) & 0xff]! ^ T3[x & 0xff]!;
  }
  out[0] = x3;
  out[1] = x2;
  out[2] = x1;
  out[3] = x0;
}

/** Scratch for one block's output words; wiped by the callers that put key stream in it. */
const BLOCK_WORDS = new Int32Array(4);

/** Encrypts one block of `input` at `inAt` into `out` at `outAt` (the two may be the same). */
export function sm4EncryptBlock(rk: Int32Array, input: Uint8Array, inAt: number, out: Uint8Array, outAt: number): void {
  rounds(rk, readWord(input, inAt), readWord(input, inAt + 4), readWord(input, inAt + 8), readWord(input, inAt + 12), BLOCK_WORDS);
  for (let i = 0; i < 4; i++) writeWord(out, outAt + 4 * i, BLOCK_WORDS[i]!);
  BLOCK_WORDS.fill(0);
}

/** Decrypts one block: the same rounds with the round keys reversed (for the standard's examples). */
function sm4DecryptBlock(rk: Int32Array, input: Uint8Array, inAt: number, out: Uint8Array, outAt: number): void {
  const reversed = rk.slice().reverse();
  try {
    sm4EncryptBlock(reversed, input, inAt, out, outAt);
  } finally {
    reversed.fill(0);
  }
}

/**
 * CTR mode with GCM's 32-bit counter (NIST SP 800-38D inc32): XORs the key stream from `counter`
 * (16 bytes, the first block's counter) into `input`, writing `out` at `outAt`. Leaves `counter`
 * where the next block would start.
 */
export function sm4Ctr32(rk: Int32Array, counter: Uint8Array, input: Uint8Array, out: Uint8Array, outAt: number): void {
  const c0 = readWord(counter, 0);
  const c1 = readWord(counter, 4);
  const c2 = readWord(counter, 8);
  let c3 = readWord(counter, 12);
  const ks = BLOCK_WORDS;
  const n = input.length;
  let i = 0;
  for (; i + SM4_BLOCK <= n; i += SM4_BLOCK, c3 = (c3 + 1) | 0) {
    rounds(rk, c0, c1, c2, c3, ks);
    for (let w = 0; w < 4; w++) writeWord(out, outAt + i + 4 * w, readWord(input, i + 4 * w) ^ ks[w]!);
  }
  if (i < n) {
    rounds(rk, c0, c1, c2, c3, ks);
    c3 = (c3 + 1) | 0;
    for (let j = 0; i + j < n; j++) out[outAt + i + j] = input[i + j]! ^ ((ks[j >>> 2]! >>> (24 - 8 * (j & 3))) & 0xff);
  }
  ks.fill(0);
  writeWord(counter, 12, c3);
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { sm4DecryptBlock };
