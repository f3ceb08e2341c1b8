/**
 * SM3 (GB/T 32905-2016), HMAC-SM3 (RFC 2104 over SM3) and HKDF-Expand-SM3 (RFC 5869 §2.3): the
 * key schedule and commitment of suite 03 (FORMAT.md §3). Portable TypeScript, the same on every
 * runtime: no library kept on the npm registry offers SM3 over Uint8Array with a reusable HMAC
 * state and wipeable buffers, and node:crypto's "sm3" (where present) is checked against this one
 * in test/core/sm3.test.ts.
 */
import { wipe } from '../core/bytes.ts';
import type { HkdfExpand, HmacKeyState } from '../core/hkdf.ts';

const SM3_BLOCK = 64;
const SM3_LENGTH = 32;

const IV = Uint32Array.of(0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e);

/** T_j rotated left by j mod 32, for each round: the constant the compression adds. */
const TJ = new Int32Array(64);
for (let j = 0; j < 64; j++) {
  const t = j < 16 ? 0x79cc4519 : 0x7a879d8a;
  const r = j % 32;
  TJ[j] = r === 0 ? t : (t << r) | (t >>> (32 - r));
}

const rotl = (x: number, n: number): number => (x << n) | (x >>> (32 - n));

/** The message expansion's W[0..67] for one block; module scope, wiped after each hash. */
const W = new Int32Array(68);

/** Compresses `blocks` 64-byte blocks of `data` from `offset` into `state` (eight words). */
function sm3Compress(state: Int32Array, data: Uint8Array, offset: number, blocks: number): void {
  let a0 = state[0]!, b0 = state[1]!, c0 = state[2]!, d0 = state[3]!, e0 = state[4]!, f0 = state[5]!, g0 = state[6]!, h0 = state[7]!;
  for (let n = 0, at = offset; n < blocks; n++, at += SM3_BLOCK) {
    for (let j = 0; j < 16; j++) {
      const i = at + 4 * j;
      W[j] = (data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!;
    }
    for (let j = 16; j < 68; j++) {
      const x = W[j - 16]! ^ W[j - 9]! ^ rotl(W[j - 3]!, 15);
      W[j] = x ^ rotl(x, 15) ^ rotl(x, 23) ^ rotl(W[j - 13]!, 7) ^ W[j - 6]!;
    }
    let a = a0, b = b0, c = c0, d = d0, e = e0, f = f0, g = g0, h = h0;
    // Rounds 0-15 and 16-63 differ only in FF and GG: two loops, no branch per round.
    for (let j = 0; j < 16; j++) {
      const a12 = (a << 12) | (a >>> 20);
      const x = (a12 + e + TJ[j]!) | 0;
      const ss1 = (x << 7) | (x >>> 25);
      const wj = W[j]!;
      const tt1 = ((a ^ b ^ c) + d + (ss1 ^ a12) + (wj ^ W[j + 4]!)) | 0;
      const tt2 = ((e ^ f ^ g) + h + ss1 + wj) | 0;
      d = c;
      c = (b << 9) | (b >>> 23);
      b = a;
      a = tt1;
      h = g;
      g = (f << 19) | (f >>> 13);
      f = e;
      e = tt2 ^ ((tt2 << 9) | (tt2 >>> 23)) ^ ((tt2 << 17) | (tt2 >>> 15));
    }
    for (let j = 16; j < 64; j++) {
      const a12 = (a << 12) | (a >>> 20);
      const x = (a12 + e + TJ[j]!) | 0;
      const ss1 = (x << 7) | (x >>> 25);
      const wj = W[j]!;
      const tt1 = (((a & b) | (a & c) | (b & c)) + d + (ss1 ^ a12) + (wj ^ W[j + 4]!)) | 0;
      const tt2 = (((e & f) | (~e & g)) + h + ss1 + wj) | 0;
      d = c;
      c = (b << 9) | (b >>> 23);
      b = a;
      a = tt1;
      h = g;
      g = (f << 19) | (f >>> 13);
      f = e;
      e = tt2 ^ ((tt2 << 9) | (tt2 >>> 23)) ^ ((tt2 << 17) | (tt2 >>> 15));
    }
    a0 ^= a; b0 ^= b; c0 ^= c; d0 ^= d; e0 ^= e; f0 ^= f; g0 ^= g; h0 ^= h;
  }
  state[0] = a0; state[1] = b0; state[2] = c0; state[3] = d0; state[4] = e0; state[5] = f0; state[6] = g0; state[7] = h0;
}

/**
 * An SM3 hash in progress, from the IV or from a saved state (an HMAC key's) after `prior` bytes.
 * Its buffer and state are key material under HMAC: digestInto() wipes them.
 */
class Sm3 {
  readonly #state = new Int32Array(8);
  readonly #buffer = new Uint8Array(SM3_BLOCK);
  #buffered = 0;
  #length: number;

  constructor(from?: Uint8Array, prior = 0) {
    this.#length = 0;
    this.reset(from, prior);
  }

  /** Starts again, from the IV or from a saved state after `prior` bytes. */
  reset(from?: Uint8Array, prior = 0): this {
    if (from) for (let i = 0; i < 8; i++) this.#state[i] = (from[4 * i]! << 24) | (from[4 * i + 1]! << 16) | (from[4 * i + 2]! << 8) | from[4 * i + 3]!;
    else this.#state.set(IV);
    this.#buffered = 0;
    this.#length = prior;
    return this;
  }

  update(data: Uint8Array): this {
    let i = 0;
    this.#length += data.length;
    if (this.#buffered > 0) {
      const take = Math.min(SM3_BLOCK - this.#buffered, data.length);
      this.#buffer.set(data.subarray(0, take), this.#buffered);
      this.#buffered += take;
      i = take;
      if (this.#buffered < SM3_BLOCK) return this;
      sm3Compress(this.#state, this.#buffer, 0, 1);
      this.#buffered = 0;
    }
    const blocks = Math.floor((data.length - i) / SM3_BLOCK);
    if (blocks > 0) {
      sm3Compress(this.#state, data, i, blocks);
      i += blocks * SM3_BLOCK;
    }
    this.#buffer.set(data.subarray(i), 0);
    this.#buffered = data.length - i;
    return this;
  }

  /** The state words as 32 bytes (big-endian), without padding: an HMAC key's saved state. */
  stateBytes(): Uint8Array {
    const out = new Uint8Array(SM3_LENGTH);
    writeWords(this.#state, out, 0);
    return out;
  }

  /** Pads, writes the 32-byte digest into `out` at `offset`, and wipes this hash. */
  digestInto(out: Uint8Array, offset = 0): void {
    const bits = this.#length * 8;
    const b = this.#buffer;
    b[this.#buffered] = 0x80;
    b.fill(0, this.#buffered + 1);
    if (this.#buffered + 1 > SM3_BLOCK - 8) {
      sm3Compress(this.#state, b, 0, 1);
      b.fill(0);
    }
    const high = Math.floor(bits / 2 ** 32);
    const low = bits >>> 0;
    b[56] = high >>> 24; b[57] = high >>> 16; b[58] = high >>> 8; b[59] = high;
    b[60] = low >>> 24; b[61] = low >>> 16; b[62] = low >>> 8; b[63] = low;
    sm3Compress(this.#state, b, 0, 1);
    writeWords(this.#state, out, offset);
    this.destroy();
  }

  digest(): Uint8Array {
    const out = new Uint8Array(SM3_LENGTH);
    this.digestInto(out);
    return out;
  }

  destroy(): void {
    this.#state.fill(0);
    this.#buffer.fill(0);
    W.fill(0);
    this.#buffered = 0;
  }
}

function writeWords(words: Int32Array, out: Uint8Array, offset: number): void {
  for (let i = 0; i < 8; i++) {
    const w = words[i]!;
    out[offset + 4 * i] = w >>> 24;
    out[offset + 4 * i + 1] = w >>> 16;
    out[offset + 4 * i + 2] = w >>> 8;
    out[offset + 4 * i + 3] = w;
  }
}

/** SM3 of `data`. */
export function sm3(data: Uint8Array): Uint8Array {
  return new Sm3().update(data).digest();
}

/**
 * HMAC-SM3's inner and outer states after (key XOR ipad) and (key XOR opad), 32 bytes each: all
 * HKDF-Expand needs of its PRK (the HmacKeyState of the SHA-512 path, at SM3's size).
 */
export function hmacSm3Prepare(key: Uint8Array): HmacKeyState {
  const block = new Uint8Array(SM3_BLOCK);
  try {
    if (key.length > SM3_BLOCK) new Sm3().update(key).digestInto(block);
    else block.set(key);
    for (let i = 0; i < SM3_BLOCK; i++) block[i]! ^= 0x36;
    const inner = new Sm3().update(block);
    for (let i = 0; i < SM3_BLOCK; i++) block[i]! ^= 0x36 ^ 0x5c;
    const outer = new Sm3().update(block);
    const state: HmacKeyState = [inner.stateBytes(), outer.stateBytes()];
    inner.destroy();
    outer.destroy();
    return state;
  } finally {
    wipe(block);
  }
}

/**
 * Scratch for hmacSm3Into, reused: V8 allocates small typed arrays slowly, and a message's key
 * schedule is four hashes. Synchronous and not re-entered, so one set per thread; each hash wipes
 * itself when it finishes, and the inner digest is wiped after use.
 */
const INNER = new Sm3();
const OUTER = new Sm3();
const INNER_DIGEST = new Uint8Array(SM3_LENGTH);

/** HMAC-SM3 of the concatenated `parts` into `out` (32 bytes) at `offset`, from a prepared key state. */
function hmacSm3Into(state: HmacKeyState, parts: readonly Uint8Array[], out: Uint8Array, offset: number): void {
  try {
    INNER.reset(state[0], SM3_BLOCK);
    for (const part of parts) INNER.update(part);
    INNER.digestInto(INNER_DIGEST);
    OUTER.reset(state[1], SM3_BLOCK).update(INNER_DIGEST).digestInto(out, offset);
  } finally {
    INNER.destroy();
    OUTER.destroy();
    wipe(INNER_DIGEST);
  }
}

/** HMAC-SM3 (RFC 2104 with SM3: B = 64, L = 32). */
export function hmacSm3(key: Uint8Array, data: Uint8Array): Uint8Array {
  const state = hmacSm3Prepare(key);
  const out = new Uint8Array(SM3_LENGTH);
  try {
    hmacSm3Into(state, [data], out, 0);
    return out;
  } finally {
    wipe(state[0], state[1]);
  }
}

/**
 * HKDF-Expand-SM3 with the HkdfExpand contract (hkdf.ts): `info` in parts, the OKM written in
 * order into the `out` buffers, from `state` when given (hmacSm3Prepare(prk)). L <= 255 * 32.
 */
export const hkdfExpandSm3: HkdfExpand = (prk, info, out, state) => {
  let length = 0;
  for (const o of out) length += o.length;
  if (length > 255 * SM3_LENGTH) throw new RangeError('HKDF-Expand length exceeds 255 * HashLen');
  // A state of another hash (a caller that prepared SHA-512's) is ignored, never misread.
  const keyState = state && state[0].length === SM3_LENGTH && state[1].length === SM3_LENGTH ? state : hmacSm3Prepare(prk);
  const block = new Uint8Array(SM3_LENGTH);
  const round = new Uint8Array(1);
  try {
    for (let o = 0, i = 1; o < length; o += SM3_LENGTH, i++) {
      round[0] = i;
      // T(i) = HMAC(PRK, T(i-1) || info || i), T(0) empty.
      hmacSm3Into(keyState, i === 1 ? [...info, round] : [block, ...info, round], block, 0);
      let at = o;
      let from = 0;
      const end = Math.min(SM3_LENGTH, length - o);
      for (const target of out) {
        if (at >= target.length) {
          at -= target.length;
          continue;
        }
        const n = Math.min(target.length - at, end - from);
        target.set(block.subarray(from, from + n), at);
        from += n;
        at = 0;
        if (from === end) break;
      }
    }
  } finally {
    wipe(block);
    if (keyState !== state) wipe(keyState[0], keyState[1]);
  }
};

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { Sm3, hmacSm3 };
