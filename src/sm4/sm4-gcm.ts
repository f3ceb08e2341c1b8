/**
 * SM4-GCM (RFC 8998 §2.1: GCM of NIST SP 800-38D with SM4 as the block cipher), 12-byte nonce,
 * 16-byte tag: GCM is CTR plus GHASH. Three ways to the same bytes, chosen per runtime:
 *
 * - `native`: OpenSSL's own "sm4-gcm" through node:crypto, where the Node build has it (Node 24);
 * - `portable`: the TypeScript SM4 of sm4.ts and ghash.ts: every other runtime (browsers, edge,
 *   WebCrypto, which has no SM4, and Node 20 and 22);
 * - `node`: OpenSSL's "sm4-ctr" (Node 20's and 22's builds have SM4-CTR but no SM4-GCM) for the
 *   bulk and ghash.ts for the tag. Not chosen (suite-backend.ts): it is no faster than `portable`;
 *   kept for the tests, which check all three against each other and OpenSSL.
 *
 * The tag is checked before any plaintext is produced on the node and portable paths (CTR runs
 * only after GHASH over the ciphertext verified); the native path decrypts first and zeroes the
 * output when the tag fails, as gcm-node.ts does for AES.
 */
import { TAG_LENGTH } from '../core/backend.ts';
import { equalBytes, wipe } from '../core/bytes.ts';
import { Ghash } from './ghash.ts';
import { SM4_BLOCK, SM4_KEY_LENGTH, sm4Ctr32, sm4EncryptBlock, sm4ExpandKey } from './sm4.ts';

const SM4_GCM_NONCE_LENGTH = 12;
/** GCM's bound on one message: 2^32 - 2 blocks. Below it the 32-bit counter never wraps. */
const MAX_GCM_PLAINTEXT = (2 ** 32 - 2) * SM4_BLOCK;

/** The part of node:crypto the node paths use, typed here so that core/ needs no `node:` types. */
export interface NodeSm4Crypto {
  createCipheriv(algorithm: string, key: Uint8Array, iv: Uint8Array | null, options?: { authTagLength: number }): NodeCipherLike;
  createDecipheriv(algorithm: string, key: Uint8Array, iv: Uint8Array, options: { authTagLength: number }): NodeDecipherLike;
}
interface NodeCipherLike {
  setAAD(aad: Uint8Array): unknown;
  update(data: Uint8Array): Uint8Array;
  final(): Uint8Array;
  getAuthTag(): Uint8Array;
}
interface NodeDecipherLike {
  setAAD(aad: Uint8Array): unknown;
  setAuthTag(tag: Uint8Array): unknown;
  update(data: Uint8Array): Uint8Array;
  final(): Uint8Array;
}

/** The AEAD with the CryptoBackend gcm* contract (backend.ts). */
export interface Sm4Gcm {
  readonly path: 'native' | 'node' | 'portable';
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, out: Uint8Array, offset: number, aad?: Uint8Array): void;
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, out: Uint8Array, offset: number, aad?: Uint8Array): boolean;
  openFresh(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Uint8Array | undefined;
}

/** XORs the SM4 key stream from `counter` (inc32) into `input`, written to `out` at `outAt`. */
type CtrXor = (key: Uint8Array, rk: Int32Array, counter: Uint8Array, input: Uint8Array, out: Uint8Array, outAt: number) => void;

function checkInputs(key: Uint8Array, nonce: Uint8Array, length: number): void {
  if (key.length !== SM4_KEY_LENGTH) throw new RangeError(`SM4-GCM key must be 16 bytes, got ${key.length}`);
  if (nonce.length !== SM4_GCM_NONCE_LENGTH) throw new RangeError(`SM4-GCM nonce must be 12 bytes, got ${nonce.length}`);
  if (length > MAX_GCM_PLAINTEXT) throw new RangeError('SM4-GCM message exceeds 2^32 - 2 blocks');
}

/**
 * GCM over a CTR function. Per message: the round keys, H = E(0^128), J0 = nonce || 0^31 || 1 and
 * E(J0) (the tag mask), all wiped before returning.
 */
function gcmOver(path: 'node' | 'portable', ctr: CtrXor): Sm4Gcm {
  /** H = E(0^128) and the tag mask E(J0); `counter` is left at inc32(J0), the first data block's. */
  function start(nonce: Uint8Array, rk: Int32Array, counter: Uint8Array, hashKey: Uint8Array, mask: Uint8Array): void {
    sm4EncryptBlock(rk, hashKey, 0, hashKey, 0); // hashKey enters as zeros: H = E(0^128)
    counter.set(nonce);
    counter[15] = 1;
    sm4EncryptBlock(rk, counter, 0, mask, 0);
    counter[15] = 2;
  }
  /** GHASH_H(aad, ciphertext, lengths) XOR E(J0). */
  function tagOf(hashKey: Uint8Array, mask: Uint8Array, aad: Uint8Array | undefined, ciphertext: Uint8Array): Uint8Array {
    const ghash = new Ghash(hashKey);
    const lengths = new Uint8Array(16);
    const view = new DataView(lengths.buffer);
    const aadBits = (aad?.length ?? 0) * 8;
    const dataBits = ciphertext.length * 8;
    view.setUint32(0, Math.floor(aadBits / 2 ** 32));
    view.setUint32(4, aadBits >>> 0);
    view.setUint32(8, Math.floor(dataBits / 2 ** 32));
    view.setUint32(12, dataBits >>> 0);
    if (aad && aad.length > 0) ghash.update(aad);
    if (ciphertext.length > 0) ghash.update(ciphertext);
    ghash.update(lengths);
    const tag = new Uint8Array(TAG_LENGTH);
    ghash.digestInto(tag); // and wipes its table
    for (let i = 0; i < TAG_LENGTH; i++) tag[i]! ^= mask[i]!;
    return tag;
  }
  /** Runs `body` with fresh per-message material, and wipes it all after. */
  function withKeys<T>(key: Uint8Array, body: (rk: Int32Array, counter: Uint8Array, hashKey: Uint8Array, mask: Uint8Array) => T): T {
    const rk = sm4ExpandKey(key);
    const scratch = new Uint8Array(48);
    const counter = scratch.subarray(0, 16);
    const hashKey = scratch.subarray(16, 32);
    const mask = scratch.subarray(32, 48);
    try {
      return body(rk, counter, hashKey, mask);
    } finally {
      rk.fill(0);
      wipe(scratch);
    }
  }

  function verify(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array | undefined, onValid: (rk: Int32Array, counter: Uint8Array, ciphertext: Uint8Array) => void): boolean {
    if (sealed.length < TAG_LENGTH) return false;
    const ciphertext = sealed.subarray(0, sealed.length - TAG_LENGTH);
    checkInputs(key, nonce, ciphertext.length);
    return withKeys(key, (rk, counter, hashKey, mask) => {
      start(nonce, rk, counter, hashKey, mask);
      const tag = tagOf(hashKey, mask, aad, ciphertext);
      const ok = equalBytes(tag, sealed.subarray(ciphertext.length));
      wipe(tag);
      if (ok) onValid(rk, counter, ciphertext);
      return ok;
    });
  }

  return {
    path,
    seal(key, nonce, plaintext, out, offset, aad) {
      checkInputs(key, nonce, plaintext.length);
      withKeys(key, (rk, counter, hashKey, mask) => {
        start(nonce, rk, counter, hashKey, mask);
        ctr(key, rk, counter, plaintext, out, offset);
        const tag = tagOf(hashKey, mask, aad, out.subarray(offset, offset + plaintext.length));
        out.set(tag, offset + plaintext.length);
        wipe(tag);
      });
    },
    open(key, nonce, sealed, out, offset, aad) {
      const ok = verify(key, nonce, sealed, aad, (rk, counter, ciphertext) => ctr(key, rk, counter, ciphertext, out, offset));
      // The CryptoBackend contract: a failed open leaves its output region zero.
      if (!ok && sealed.length >= TAG_LENGTH) out.fill(0, offset, offset + sealed.length - TAG_LENGTH);
      return ok;
    },
    openFresh(key, nonce, sealed) {
      let plain: Uint8Array | undefined;
      const ok = verify(key, nonce, sealed, undefined, (rk, counter, ciphertext) => {
        plain = new Uint8Array(ciphertext.length);
        ctr(key, rk, counter, ciphertext, plain, 0);
      });
      return ok ? plain : undefined;
    },
  };
}

/** SM4-GCM in TypeScript (sm4.ts, ghash.ts): every runtime. */
export const portableSm4Gcm: Sm4Gcm = gcmOver('portable', (_key, rk, counter, input, out, outAt) => sm4Ctr32(rk, counter, input, out, outAt));

/**
 * SM4-GCM with OpenSSL's SM4-CTR for the bulk. OpenSSL's CTR increments all 128 bits where GCM
 * increments the low 32: the same here, since the counter starts at 2 after a 12-byte nonce and
 * checkInputs() caps a message at 2^32 - 2 blocks.
 */
export function nodeSm4Gcm(c: NodeSm4Crypto): Sm4Gcm {
  return gcmOver('node', (key, _rk, counter, input, out, outAt) => {
    if (input.length === 0) return;
    const stream = c.createCipheriv('sm4-ctr', key, counter);
    const body = stream.update(input);
    out.set(body, outAt);
    // When opening, this is a second copy of the plaintext: only the caller's may remain.
    body.fill(0);
  });
}

/** OpenSSL's own SM4-GCM, where the Node build has it (probed once by the caller). */
export function nativeSm4Gcm(c: NodeSm4Crypto): Sm4Gcm {
  return {
    path: 'native',
    seal(key, nonce, plaintext, out, offset, aad) {
      checkInputs(key, nonce, plaintext.length);
      const cipher = c.createCipheriv('sm4-gcm', key, nonce, { authTagLength: TAG_LENGTH });
      if (aad) cipher.setAAD(aad);
      const body = cipher.update(plaintext);
      const tail = cipher.final();
      out.set(body, offset);
      out.set(tail, offset + body.length);
      out.set(cipher.getAuthTag(), offset + body.length + tail.length);
    },
    open(key, nonce, sealed, out, offset, aad) {
      const plain = nativeOpen(c, key, nonce, sealed, aad);
      if (!plain) {
        if (sealed.length >= TAG_LENGTH) out.fill(0, offset, offset + sealed.length - TAG_LENGTH);
        return false;
      }
      out.set(plain, offset);
      wipe(plain);
      return true;
    },
    openFresh: (key, nonce, sealed) => nativeOpen(c, key, nonce, sealed, undefined),
  };
}

function nativeOpen(c: NodeSm4Crypto, key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array | undefined): Uint8Array | undefined {
  if (sealed.length < TAG_LENGTH) return undefined;
  const length = sealed.length - TAG_LENGTH;
  checkInputs(key, nonce, length);
  const decipher = c.createDecipheriv('sm4-gcm', key, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAuthTag(sealed.subarray(length));
  if (aad) decipher.setAAD(aad);
  const body = decipher.update(sealed.subarray(0, length));
  try {
    decipher.final();
  } catch {
    body.fill(0);
    return undefined;
  }
  // A plain Uint8Array over the Buffer's own memory; copied (and the original wiped) if it is pooled.
  if (body.buffer.byteLength === body.length) return new Uint8Array(body.buffer, body.byteOffset, body.length);
  const plain = new Uint8Array(body);
  body.fill(0);
  return plain;
}

/** Whether this node:crypto has OpenSSL's SM4-GCM (Node 20's OpenSSL 3.0 has not). */
export function hasNativeSm4Gcm(c: NodeSm4Crypto): boolean {
  try {
    c.createCipheriv('sm4-gcm', new Uint8Array(16), new Uint8Array(12), { authTagLength: TAG_LENGTH });
    return true;
  } catch {
    return false;
  }
}

