/**
 * HKDF-Expand-SHA-512 (RFC 5869 §2.3), which Cobblestone runs once per message with the data key
 * as the PRK. Two implementations: over the WebAssembly SHA-512 compressor (the whole HMAC in one
 * linear memory, no per-call objects, and a cached key's HMAC state reused: faster than
 * node:crypto's createHmac or @noble/hashes on one message's 76 bytes, see BENCHMARKS.md "HKDF"),
 * which both backends use where WebAssembly runs; and over any HMAC object, their fallback. All
 * are checked against the Wycheproof vectors and each other in test/core/backend.test.ts.
 */
import { wipe } from './bytes.ts';
import { sha512Compressor } from './sha512-wasm.ts';

// Memory layout (WebAssembly): the HMAC inner and outer states after the key block; T(2); the
// outer hash's one-block message (an inner digest, then its fixed padding); the SHA-512 IV; the key
// block; then the inner message, with room for T(1) before the info so that round 2 hashes
// T(1) || info || 2 in place. The padding and the IV are constants and outlive every wipe.
const INNER = 0;
const OUTER = 64;
const T2 = 128;
const OUTER_MESSAGE = 192;
const OUTER_PADDING = 256;
const IV_AT = 320;
const KEY_BLOCK = 384;
/** Where the constants lie (the outer padding and the IV), for the test that all else is wiped. */
const WASM_CONSTANTS: readonly [start: number, end: number] = [OUTER_PADDING, KEY_BLOCK];
const DATA = 512;
const INFO = DATA + 64;
const BLOCK = 128;
const HASH = 64;

const IV = Uint8Array.from(
  '6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179'
    .match(/../g)!
    .map((byte) => Number.parseInt(byte, 16)),
);

/**
 * HKDF-Expand with HMAC-SHA-512. `info` may come in parts (hashed as their concatenation); the
 * OKM fills `out` in order, L being their total length: the caller's buffers, written in place
 * (a message's key, base nonce and commitment), with no OKM buffer to allocate and copy from.
 */
export type HkdfExpand = (prk: Uint8Array, info: readonly Uint8Array[], out: readonly Uint8Array[], state?: HmacKeyState) => void;

/** The OKM as one buffer. */
function hkdfExpandBytes(expand: HkdfExpand, prk: Uint8Array, info: readonly Uint8Array[], length: number): Uint8Array {
  const okm = new Uint8Array(length);
  expand(prk, info, [okm]);
  return okm;
}

function totalLength(out: readonly Uint8Array[]): number {
  let length = 0;
  for (const o of out) length += o.length;
  if (length > 255 * HASH) throw new RangeError('HKDF-Expand length exceeds 255 * HashLen');
  return length;
}

/**
 * Copies `length` bytes of `source` from `start` (the OKM from offset `at`) into the outputs, byte
 * by byte: for these few bytes a loop costs less than making subarray views to set() from.
 */
function scatter(source: Uint8Array, start: number, length: number, out: readonly Uint8Array[], at: number): void {
  let from = start;
  const end = start + length;
  for (const o of out) {
    if (at >= o.length) {
      at -= o.length;
      continue;
    }
    const n = Math.min(o.length - at, end - from);
    for (let i = 0; i < n; i++) o[at + i] = source[from + i]!;
    from += n;
    at = 0;
    if (from === end) return;
  }
}

/**
 * HMAC-SHA-512's inner and outer hash states after the key block: all that HKDF-Expand needs of
 * its PRK. Precomputed once per cached data key, it saves two of the seven SHA-512 blocks of every
 * message. Key material: wiped with the key. Two 64-byte buffers, which V8 allocates cheaply.
 */
export type HmacKeyState = readonly [inner: Uint8Array, outer: Uint8Array];

export function copyKeyState(state: HmacKeyState | undefined): HmacKeyState | undefined {
  return state && [state[0].slice(), state[1].slice()];
}

export function wipeKeyState(state: HmacKeyState | undefined): void {
  if (state) wipe(state[0], state[1]);
}

/** HKDF-Expand that may start from a precomputed key state (see HmacKeyState). */
export interface PreparedHkdf {
  readonly expand: HkdfExpand;
  readonly prepare: (prk: Uint8Array) => HmacKeyState;
}

/** Round counters 1..4 (Cobblestone needs two), made once. */
const ROUND = [Uint8Array.of(0), Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3), Uint8Array.of(4)];

interface Hmac {
  update(data: Uint8Array): unknown;
  digest(): Uint8Array;
}

/** HKDF-Expand over an HMAC-SHA-512 factory (node:crypto's createHmac, @noble/hashes' hmac). */
export function hmacHkdf(createHmac: (key: Uint8Array) => Hmac): HkdfExpand {
  return (prk, info, out) => {
    const length = totalLength(out);
    // T(i) = HMAC(prk, T(i-1) || info || i), fed as separate updates: no scratch buffer to allocate.
    let previous: Uint8Array | undefined;
    for (let o = 0, round = 1; o < length; o += HASH, round++) {
      const h = createHmac(prk);
      if (previous) h.update(previous);
      for (const part of info) h.update(part);
      h.update(ROUND[round] ?? Uint8Array.of(round));
      const block = h.digest();
      scatter(block, 0, Math.min(block.length, length - o), out, o);
      if (previous) wipe(previous);
      previous = block;
    }
    if (previous) wipe(previous);
  };
}

let shared: PreparedHkdf | null | undefined;

/** One WebAssembly HKDF per thread (it is synchronous, so calls never interleave), or undefined. */
export function wasmHkdf(): PreparedHkdf | undefined {
  if (shared === undefined) shared = createWasmHkdf() ?? null;
  return shared ?? undefined;
}

/** The WebAssembly HKDF-Expand, or undefined where WebAssembly is unavailable. */
function createWasmHkdf(): PreparedHkdf | undefined {
  const wasm = sha512Compressor();
  if (!wasm) return undefined;
  const { memory, compress } = wasm;
  let bytes = new Uint8Array(0);
  let view = new DataView(bytes.buffer);

  /** Grows the memory to `size` bytes; renews the views (and the constants) when it grew. */
  function ensure(size: number): void {
    // Growing detaches the old buffer (its views read as empty): reading memory.buffer costs more.
    if (bytes.length === 0 || size > bytes.length) {
      if (size > memory.buffer.byteLength) memory.grow(Math.ceil((size - memory.buffer.byteLength) / 65536));
      bytes = new Uint8Array(memory.buffer);
      view = new DataView(memory.buffer);
      // The outer message is always 64 bytes after the opad block: its padding never changes.
      bytes.fill(0, OUTER_PADDING, OUTER_PADDING + HASH);
      bytes[OUTER_PADDING] = 0x80;
      view.setUint32(OUTER_PADDING + 60, (BLOCK + HASH) * 8);
      bytes.set(IV, IV_AT);
    }
  }

  /** Pads the message of `length` bytes at `at` (after `prior` bytes already hashed); returns its blocks. */
  function pad(at: number, length: number, prior: number): number {
    const blocks = Math.floor((length + 17 + BLOCK - 1) / BLOCK);
    const end = at + blocks * BLOCK;
    bytes[at + length] = 0x80;
    bytes.fill(0, at + length + 1, end - 8);
    const bits = (prior + length) * 8;
    view.setUint32(end - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(end - 4, bits >>> 0);
    return blocks;
  }

  /** HMAC's inner and outer states after (key XOR ipad) and (key XOR opad), into INNER and OUTER. */
  function prepare(key: Uint8Array): void {
    if (key.length > BLOCK) {
      // A key longer than a block is hashed first (RFC 2104 §2).
      bytes.set(key, DATA);
      compress(IV_AT, KEY_BLOCK, DATA, pad(DATA, key.length, 0));
      bytes.fill(0, KEY_BLOCK + HASH, KEY_BLOCK + BLOCK);
    } else {
      bytes.set(key, KEY_BLOCK);
      bytes.fill(0, KEY_BLOCK + key.length, KEY_BLOCK + BLOCK);
    }
    // XOR the pads 32 bits at a time: ipad first, then ipad ^ opad turns it into the opad block.
    for (let i = 0; i < BLOCK; i += 4) view.setInt32(KEY_BLOCK + i, view.getInt32(KEY_BLOCK + i) ^ 0x36363636);
    compress(IV_AT, INNER, KEY_BLOCK, 1);
    for (let i = 0; i < BLOCK; i += 4) view.setInt32(KEY_BLOCK + i, view.getInt32(KEY_BLOCK + i) ^ 0x6a6a6a6a);
    compress(IV_AT, OUTER, KEY_BLOCK, 1);
  }

  /** Zeroes everything but the constants: states, T(i), key and message bytes are all key material. */
  function wipeMemory(used: number): void {
    bytes.fill(0, 0, OUTER_PADDING);
    bytes.fill(0, KEY_BLOCK, used);
  }

  const expand: HkdfExpand = (prk, info, out, state) => {
    const length = totalLength(out);
    let infoLength = 0;
    for (const part of info) infoLength += part.length;
    // The longest message with its padding: T(1) || info || i, or a long key being hashed.
    const used = Math.max(INFO + infoLength + 1, DATA + prk.length + 1) + 2 * BLOCK;
    ensure(used);
    try {
      if (state) {
        bytes.set(state[0], INNER);
        bytes.set(state[1], OUTER);
      } else {
        prepare(prk);
      }
      let at = INFO;
      for (const part of info) {
        bytes.set(part, at);
        at += part.length;
      }
      for (let o = 0, round = 1; o < length; o += HASH, round++) {
        // T(1) = HMAC(info || 1) hashes from INFO; later rounds from DATA, where T(i-1) was put.
        const start = round === 1 ? INFO : DATA;
        if (round > 2) bytes.copyWithin(DATA, T2, T2 + HASH);
        bytes[at] = round;
        compress(INNER, OUTER_MESSAGE, start, pad(start, at + 1 - start, BLOCK));
        const target = round === 1 ? DATA : T2;
        compress(OUTER, target, OUTER_MESSAGE, 1);
        scatter(bytes, target, Math.min(HASH, length - o), out, o);
      }
    } finally {
      wipeMemory(used);
    }
  };

  return {
    expand,
    prepare(prk) {
      const used = DATA + prk.length + 1 + 2 * BLOCK;
      ensure(used);
      try {
        prepare(prk);
        return [bytes.slice(INNER, INNER + HASH), bytes.slice(OUTER, OUTER + HASH)];
      } finally {
        wipeMemory(used);
      }
    },
  };
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { WASM_CONSTANTS, hkdfExpandBytes, createWasmHkdf };
