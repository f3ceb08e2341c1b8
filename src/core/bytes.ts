/** Small byte helpers and the input checks used at the public boundary (noble-style asserts). */

const encoder = /* @__PURE__ */ new TextEncoder();
const fatalDecoder = /* @__PURE__ */ new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array || (ArrayBuffer.isView(value) && value.constructor.name === 'Uint8Array');
}

/**
 * Bytes as callers hold them: a Uint8Array (a Buffer), any other view (DataView, typed arrays), or
 * an ArrayBuffer: DOM's BufferSource and Node's ArrayBufferView, with no cast needed.
 */
export type ByteInput = ArrayBufferView | ArrayBuffer;

function isArrayBuffer(value: unknown): value is ArrayBuffer {
  if (value instanceof ArrayBuffer) return true;
  const tag = typeof value === 'object' && value !== null ? Object.prototype.toString.call(value) : '';
  return tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]'; // another realm's, or shared
}

/** True for any ByteInput (told apart from the `{ plaintext }` and `{ sealed }` batch items). */
export function isByteInput(value: unknown): value is ByteInput {
  return ArrayBuffer.isView(value) || isArrayBuffer(value);
}

/**
 * Any ByteInput as a Uint8Array over the same memory (no copy: the caller's bytes are read, never
 * kept or written); a TypeError naming the argument for anything else.
 */
export function toBytes(value: unknown, title: string): Uint8Array {
  if (isBytes(value)) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (isArrayBuffer(value)) return new Uint8Array(value);
  throw new TypeError(`"${title}" expected Uint8Array, got ${describe(value)}; any ArrayBufferView or ArrayBuffer will do`);
}

/** Names the type of a bad argument without printing its value (it may be a secret). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return typeof value;
}

/** UTF-8 encode; refuses lone surrogates, which TextEncoder would silently replace. */
export function utf8(value: string, title: string): Uint8Array {
  // Short ASCII strings (context keys, key ids, blobs) are the common case, and a plain loop
  // beats a TextEncoder call for them.
  const n = value.length;
  if (n <= 256) {
    const out = new Uint8Array(n);
    let i = 0;
    for (; i < n; i++) {
      const code = value.charCodeAt(i);
      if (code > 0x7f) break;
      out[i] = code;
    }
    if (i === n) return out;
  }
  if (!value.isWellFormed()) throw new TypeError(`"${title}" is not well-formed Unicode (lone surrogate)`);
  return encoder.encode(value);
}

/**
 * Whether the bytes are well-formed UTF-8, as a fatal TextDecoder judges them, without making a
 * string (a string cannot be wiped): no overlong forms, no surrogates, nothing above U+10FFFF.
 */
export function isWellFormedUtf8(bytes: Uint8Array): boolean {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let more: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) more = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      more = 2;
      if (lead === 0xe0) low = 0xa0; // overlong
      else if (lead === 0xed) high = 0x9f; // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      more = 3;
      if (lead === 0xf0) low = 0x90; // overlong
      else if (lead === 0xf4) high = 0x8f; // above U+10FFFF
    } else return false;
    if (i + more >= n) return false;
    const second = bytes[i + 1]!;
    if (second < low || second > high) return false;
    for (let k = 2; k <= more; k++) {
      const next = bytes[i + k]!;
      if (next < 0x80 || next > 0xbf) return false;
    }
    i += more + 1;
  }
  return true;
}

/** Strict UTF-8 decode; returns undefined for invalid input. */
export function utf8DecodeStrict(bytes: Uint8Array): string | undefined {
  // Short ASCII (context keys, key ids, a wrapped key's blob) is valid UTF-8 as it stands: skip
  // the decoder call, whose fixed cost is several times this loop's for these lengths.
  if (bytes.length <= 256) {
    let ascii = true;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i]! > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  try {
    return fatalDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Overwrites every given buffer with zeros. JS gives no guarantee that no copy survives elsewhere. */
export function wipe(...arrays: (Uint8Array | undefined | null)[]): void {
  for (const a of arrays) a?.fill(0);
}

/** Constant-time comparison of two equal-length buffers. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * Equality for public bytes (headers, wrapped keys): stops at the first difference, searching from
 * the end, where the wrapped keys of two messages differ. Not for secrets: use equalBytes.
 */
export function equalPublicBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && startsWithPublicBytes(a, b);
}

/** Whether `bytes` holds `prefix` at offset `at` (public bytes; compared from the prefix's end). */
export function startsWithPublicBytes(bytes: Uint8Array, prefix: Uint8Array, at = 0): boolean {
  if (bytes.length - at < prefix.length) return false;
  for (let i = prefix.length - 1; i >= 0; i--) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Character code -> 6-bit value (-1 where the character is not in the alphabet), per alphabet. */
const DECODE_TABLES = new Map<string, Int8Array>();
function decodeTable(alphabet: string): Int8Array {
  let table = DECODE_TABLES.get(alphabet);
  if (!table) {
    table = new Int8Array(128).fill(-1);
    for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
    DECODE_TABLES.set(alphabet, table);
  }
  return table;
}

/** Alphabet -> its character codes, for writing base64 as bytes. */
const ENCODE_TABLES = new Map<string, Uint8Array>();
function encodeTable(alphabet: string): Uint8Array {
  let table = ENCODE_TABLES.get(alphabet);
  if (!table) {
    table = new Uint8Array(64);
    for (let i = 0; i < 64; i++) table[i] = alphabet.charCodeAt(i);
    ENCODE_TABLES.set(alphabet, table);
  }
  return table;
}

/**
 * The last instance of each class made per message (a sealer, its keys, a header reader), kept:
 * V8 collects a class's hidden class (its shape) at a full collection once no instance is left,
 * and deoptimizes every optimized function built on it, which then warms up again (measured: about
 * a third more time per 1 KiB seal+open in the batches after a full collection). One instance
 * keeps the shape. Each is kept finished or wiped: it holds no key. (BENCHMARKS.md, session 10.)
 */
const lastMade = new Map<unknown, object>();
export function keepShape(instance: object): void {
  lastMade.set(instance.constructor, instance);
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { kept: (): object[] => [...lastMade.values()] };

/**
 * Small byte arrays as views of a shared 64 KiB slab, never reused (each call takes the next region;
 * a spent slab goes when its last views do). Why not one small array each: V8 keeps a typed array
 * of more than 64 bytes off its heap (an allocation of its own, about ten times the cost of a view),
 * and V8 keeps one of up to 64 bytes on its heap and copies it out the first time native code asks
 * for its buffer, which OpenSSL and @noble/ciphers both do. For bytes that do not outlive the
 * operation (message keys, which are wiped; the header and context a key derivation reads; the
 * text form's characters): a view kept for long keeps its whole slab. Regions are 16-byte aligned
 * (@noble/ciphers reads keys as 32-bit words).
 */
const SLAB_SIZE = 65536;
let slab = new ArrayBuffer(0);
let slabUsed = 0;

export function slabBytes(length: number): Uint8Array {
  if (length > SLAB_SIZE / 16) return new Uint8Array(length);
  const size = Math.ceil(length / 16) * 16;
  if (slabUsed + size > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_SIZE);
    slabUsed = 0;
  }
  const view = new Uint8Array(slab, slabUsed, length);
  slabUsed += size;
  return view;
}

/**
 * A seal option of the library's own (never a public one): the sealed bytes are read once and
 * dropped by the caller (the record API's text form), so they may be a view of the slab above
 * instead of memory of their own. Sealed bytes are not secret. A symbol: no caller's options can
 * set it by accident, and JSON or a spread of user input never carries it.
 */
// No description: it is never printed, and its bytes would count against the browser bundle's budget.
export const TRANSIENT_OUTPUT: unique symbol = Symbol();

const PAD = 0x3d; // '='
const asciiDecoder = /* @__PURE__ */ new TextDecoder(); // ASCII only here: the UTF-8 decoder's fast path

/**
 * Writes the characters as bytes, then makes one string of them: appending to a string makes a
 * rope node per piece, and a sealed database field would leave hundreds of them to collect.
 */
function base64Encode(bytes: Uint8Array, alphabet: string, pad: boolean): string {
  const table = encodeTable(alphabet);
  const whole = bytes.length - (bytes.length % 3);
  const rest = bytes.length - whole;
  const out = slabBytes((whole / 3) * 4 + (rest === 0 ? 0 : pad ? 4 : rest + 1));
  let o = 0;
  for (let i = 0; i < whole; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o] = table[n >> 18]!;
    out[o + 1] = table[(n >> 12) & 63]!;
    out[o + 2] = table[(n >> 6) & 63]!;
    out[o + 3] = table[n & 63]!;
    o += 4;
  }
  if (rest > 0) {
    const n = (bytes[whole]! << 16) | (rest === 2 ? bytes[whole + 1]! << 8 : 0);
    out[o++] = table[n >> 18]!;
    out[o++] = table[(n >> 12) & 63]!;
    if (rest === 2) out[o++] = table[(n >> 6) & 63]!;
    if (pad) while (o < out.length) out[o++] = PAD;
  }
  const text = asciiDecoder.decode(out);
  out.fill(0); // the characters may spell a key (a KMS request's base64)
  return text;
}

/**
 * Strict base64 decode straight into a Uint8Array (no intermediate string of the secret).
 * Returns undefined for anything non-canonical: wrong alphabet, bad padding, non-zero trailing bits.
 */
function base64Decode(text: string, alphabet: string, pad: boolean, allocate: (length: number) => Uint8Array = (n) => new Uint8Array(n)): Uint8Array | undefined {
  let len = text.length;
  if (pad) {
    if (len % 4 !== 0) return undefined;
    if (len > 0 && text[len - 1] === '=') len--;
    if (len > 0 && text[len - 1] === '=') len--;
  } else if (len % 4 === 1) {
    return undefined;
  }
  const out = allocate(Math.floor((len * 3) / 4));
  const table = decodeTable(alphabet);
  const at = (i: number): number => {
    const code = text.charCodeAt(i);
    return code < 128 ? table[code]! : -1;
  };
  const whole = len - (len % 4);
  let o = 0;
  // Four characters (three bytes) at a time; a character outside the alphabet makes a value < 0.
  for (let i = 0; i < whole; i += 4) {
    const a = at(i);
    const b = at(i + 1);
    const c = at(i + 2);
    const d = at(i + 3);
    if ((a | b | c | d) < 0) {
      out.fill(0);
      return undefined;
    }
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o] = n >> 16;
    out[o + 1] = (n >> 8) & 0xff;
    out[o + 2] = n & 0xff;
    o += 3;
  }
  const rest = len - whole; // 0, 2 or 3 (1 was refused above)
  if (rest > 0) {
    const a = at(whole);
    const b = at(whole + 1);
    const c = rest === 3 ? at(whole + 2) : 0;
    // The unused low bits of the last character must be zero (canonical encoding).
    if ((a | b | c) < 0 || (rest === 2 ? b & 0x0f : c & 0x03) !== 0) {
      out.fill(0);
      return undefined;
    }
    const n = (a << 18) | (b << 12) | (c << 6);
    out[o] = n >> 16;
    if (rest === 3) out[o + 1] = (n >> 8) & 0xff;
  }
  return out;
}

export const base64 = {
  encode: (bytes: Uint8Array): string => base64Encode(bytes, B64, true),
  decode: (text: string): Uint8Array | undefined => base64Decode(text, B64, true),
};

export const base64url = {
  encode: (bytes: Uint8Array): string => base64Encode(bytes, B64URL, false),
  decode: (text: string): Uint8Array | undefined => base64Decode(text, B64URL, false),
  /** decode() into slab memory (slabBytes), for bytes read once and dropped, such as a stored field. */
  decodeTransient: (text: string): Uint8Array | undefined => base64Decode(text, B64URL, false, slabBytes),
};
