/**
 * SHA-512 compression (FIPS 180-4 §6.4.2) as a WebAssembly function, assembled here at load time
 * from a few dozen opcodes: no binary blob, no build step, no dependency. WebAssembly has native
 * 64-bit words, so it beats SHA-512 in JavaScript (split 32-bit words) and, with no per-call
 * object setup, makes HKDF cheaper than node:crypto's createHmac on small inputs (BENCHMARKS.md).
 *
 * compress(from, state, data, blocks): hashes the `blocks` 128-byte blocks at `data` into the state
 * at `state`, starting from the state at `from` (copied to `state` first; they may be the same).
 * A state is 64 bytes, the eight hash words big-endian, so a final state is the digest. Starting
 * from another address spares the caller a copy per HMAC step.
 */

import { base64 } from './bytes.ts';

/** The 80 round constants (FIPS 180-4 §4.2.3), big-endian 64-bit words, in base64 (half the bundle bytes of 80 hex strings). */
const K_BASE64 =
  'QoovmNcoriJxN0SRI+9lzbXA+8/sTTsv6bXbpYGJ27w5VsJb80i1OFnxEfG2BdAZkj+CpK8ZT5urHF7V2m2BGNgHqpijAwJCEoNbAUVwb74kMYW+TuSyjFUMfcPV/7Ticr5ddPJ7iW+A3rH+OxaWsZvcBqclxxI1wZvxdM9pJpTkm2nBnvFK0u++R4Y4TyXjD8GdxouM1bUkDKHMd6ycZS3pLG9ZKwJ1SnSEqm6m5INcsKncvUH71Hb5iNqDEVO1mD5RUu5m36uoMcZtLbQyELADJ8iY+yE/v1l/x77vDuTG4AvzPaiPwtWnkUeTCqclBspjUeADgm8UKSlnCg5ucCe3CoVG0i/8LhshOFwmySZNLG38WsQq7VM4DROdlbPfZQpzVIuvY952agq7PHeyqIHCyS5H7a7mknIshRSCNTuiv+ihTPEDZKgaZku8QjABwkuLcND4l5HHbFGjBlS+MNGS6BnW71IY1pkGJFVlqRD0DjWFV3EgKhBqoHAyu9G4GaTBFrjS0MgeN2wIUUGrUydId0zfjuuZNLC8teGbSKg5HAyzxclaY07YqkrjQYrLW5zKT3dj43NoLm/z1rK4o3SPgu5d77L8eKVjb0MXL2CEyHgUofCrcozHAggaZDnskL7/+iNjHiikUGzr3oK96b75o/eyxnkVxnF48uNyUyvKJz7O6iZhnNGGuMchwMIH6tp91s3g6x71fU9/7m7ReAbwZ6pyF2+6CmN9xaLImKYRP5gEvvkNrhtxCzUTHEcbKNt39SMEfYQyyqt7QMckkzyevgoVyb68Qx1nxJwQDUxMxdS+yz5Ctll/KZz8ZX4qX8tvqzrW+uxsRBmMSkdYFw==';

// Opcodes used below (WebAssembly core spec §5.4).
const OP = {
  block: 0x02, loop: 0x03, end: 0x0b, br: 0x0c, brIf: 0x0d,
  localGet: 0x20, localSet: 0x21,
  i64Load: 0x29, i64Store: 0x37, i32Const: 0x41, i64Const: 0x42,
  i32Eqz: 0x45, i32Add: 0x6a, i32Sub: 0x6b,
  i64Add: 0x7c, i64And: 0x83, i64Or: 0x84, i64Xor: 0x85, i64Shl: 0x86, i64ShrU: 0x88, i64Rotl: 0x89, i64Rotr: 0x8a,
} as const;
const I32 = 0x7f;
const I64 = 0x7e;
const VOID_BLOCK = 0x40;

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function sleb(value: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = Number(value & 0x7fn);
    value >>= 7n;
    if ((value === 0n && (byte & 0x40) === 0) || (value === -1n && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

// Locals: params 0-3 (from, state, data, blocks: i32), then a..h in 4-11, the schedule window in
// 12-27, a temporary in 28.
const FROM = 0;
const STATE = 1;
const DATA = 2;
const BLOCKS = 3;
const SLOT = 4;
const W = 12;
const TMP = 28;

function compressBody(): number[] {
  const code: number[] = [];
  const kBytes = base64.decode(K_BASE64)!;
  const k = new DataView(kBytes.buffer, kBytes.byteOffset, kBytes.byteLength);
  const get = (local: number): void => void code.push(OP.localGet, local);
  const set = (local: number): void => void code.push(OP.localSet, local);
  // The same few constants recur thousands of times: encode each once (BigInt work is slow).
  const encoded = new Map<bigint, number[]>();
  const i64 = (value: bigint): void => {
    let bytes = encoded.get(value);
    if (!bytes) encoded.set(value, (bytes = sleb(BigInt.asIntN(64, value))));
    code.push(OP.i64Const, ...bytes);
  };
  const op = (...ops: number[]): void => void code.push(...ops);
  const load = (base: number, offset: number): void => void code.push(OP.localGet, base, OP.i64Load, 3, ...uleb(offset));
  /** Reverses the bytes of the i64 on the stack (memory is little-endian, SHA-512 big-endian). */
  const byteSwap = (): void => {
    set(TMP);
    get(TMP), i64(8n), op(OP.i64ShrU), i64(0x00ff00ff00ff00ffn), op(OP.i64And);
    get(TMP), i64(0x00ff00ff00ff00ffn), op(OP.i64And), i64(8n), op(OP.i64Shl, OP.i64Or);
    set(TMP);
    get(TMP), i64(16n), op(OP.i64ShrU), i64(0x0000ffff0000ffffn), op(OP.i64And);
    get(TMP), i64(0x0000ffff0000ffffn), op(OP.i64And), i64(16n), op(OP.i64Shl, OP.i64Or);
    i64(32n), op(OP.i64Rotl);
  };
  /** rotr(x, a) ^ rotr(x, b) ^ (shift ? x >> c : rotr(x, c)) */
  const sigma = (x: number, a: bigint, b: bigint, c: bigint, shift: boolean): void => {
    get(x), i64(a), op(OP.i64Rotr);
    get(x), i64(b), op(OP.i64Rotr, OP.i64Xor);
    get(x), i64(c), op(shift ? OP.i64ShrU : OP.i64Rotr, OP.i64Xor);
  };

  for (let j = 0; j < 8; j++) get(STATE), load(FROM, 8 * j), op(OP.i64Store, 3, ...uleb(8 * j));
  op(OP.block, VOID_BLOCK, OP.loop, VOID_BLOCK);
  get(BLOCKS), op(OP.i32Eqz, OP.brIf, 1);
  for (let j = 0; j < 8; j++) load(STATE, 8 * j), byteSwap(), set(SLOT + j);
  for (let j = 0; j < 16; j++) load(DATA, 8 * j), byteSwap(), set(W + j);
  for (let t = 0; t < 80; t++) {
    // Slot names rotate instead of values: after round t, a is the old h and e the old d.
    const s = (i: number): number => SLOT + ((((i - t) % 8) + 8) % 8);
    const w = W + (t % 16);
    if (t >= 16) {
      sigma(W + ((t - 2) % 16), 19n, 61n, 6n, true);
      get(W + ((t - 7) % 16)), op(OP.i64Add);
      sigma(W + ((t - 15) % 16), 1n, 8n, 7n, true), op(OP.i64Add);
      get(w), op(OP.i64Add), set(w);
    }
    // T1 = h + Σ1(e) + Ch(e, f, g) + K[t] + W[t], with Ch = g ^ (e & (f ^ g)).
    get(s(7));
    sigma(s(4), 14n, 18n, 41n, false), op(OP.i64Add);
    get(s(6)), get(s(4)), get(s(5)), get(s(6)), op(OP.i64Xor, OP.i64And, OP.i64Xor, OP.i64Add);
    i64(k.getBigUint64(8 * t)), op(OP.i64Add);
    get(w), op(OP.i64Add), set(TMP);
    // d += T1; h = T1 + Σ0(a) + Maj(a, b, c), with Maj = (a & b) | (c & (a | b)).
    get(s(3)), get(TMP), op(OP.i64Add), set(s(3));
    get(TMP);
    sigma(s(0), 28n, 34n, 39n, false), op(OP.i64Add);
    get(s(0)), get(s(1)), op(OP.i64And), get(s(2)), get(s(0)), get(s(1)), op(OP.i64Or, OP.i64And, OP.i64Or, OP.i64Add);
    set(s(7));
  }
  for (let j = 0; j < 8; j++) {
    get(STATE);
    load(STATE, 8 * j), byteSwap(), get(SLOT + j), op(OP.i64Add), byteSwap();
    op(OP.i64Store, 3, ...uleb(8 * j));
  }
  get(DATA), op(OP.i32Const, ...sleb(128n), OP.i32Add), set(DATA);
  get(BLOCKS), op(OP.i32Const, 1, OP.i32Sub), set(BLOCKS);
  op(OP.br, 0, OP.end, OP.end, OP.end);
  return code;
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(text: string): number[] {
  return [text.length, ...Array.from(text, (ch) => ch.charCodeAt(0))];
}

function moduleBytes(): Uint8Array {
  const body = [1, 25, I64, ...compressBody()]; // one local group: 25 x i64
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 4, I32, I32, I32, I32, 0]), // type 0: (i32, i32, i32, i32) -> ()
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(5, [1, 0x00, 1]), // one memory, at least one page
    ...section(7, [2, ...name('memory'), 0x02, 0, ...name('compress'), 0x00, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

/** The little of the WebAssembly API used here (lib.dom is not in this project's typings). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}

export interface Sha512Compressor {
  readonly memory: WasmMemory;
  readonly compress: (from: number, state: number, data: number, blocks: number) => void;
}

let instance: Sha512Compressor | null | undefined;

/** The compressor, or undefined where WebAssembly is unavailable or refused (a strict CSP). */
export function sha512Compressor(): Sha512Compressor | undefined {
  if (instance === undefined) {
    try {
      const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
      if (!api) throw new Error('no WebAssembly');
      const wasm = new api.Instance(new api.Module(moduleBytes()));
      instance = wasm.exports as unknown as Sha512Compressor;
    } catch {
      instance = null;
    }
  }
  return instance ?? undefined;
}
