/**
 * Fast backend: node:crypto (OpenSSL, AES-NI). Loaded with process.getBuiltinModule (runtime.ts)
 * so that this package has no static `node:` import and bundles for browsers unchanged.
 */
import type { CryptoBackend } from './backend.ts';
import { type NodeCryptoLike, nodeGcmOpen, nodeGcmSeal } from './gcm-node.ts';
import { type HkdfExpand, hmacHkdf, wasmHkdf } from './hkdf.ts';
import { keepShape } from './bytes.ts';
import { pooledRandom } from './random-pool.ts';
import { builtinModule } from './runtime.ts';

function loadNodeCrypto(): NodeCryptoLike | undefined {
  return builtinModule<NodeCryptoLike>('node:crypto');
}

/** HKDF-Expand over node:crypto's createHmac: the fallback where WebAssembly does not run. */
function nodeHmacHkdf(c: NodeCryptoLike): HkdfExpand {
  return hmacHkdf((key) => c.createHmac('sha512', key));
}

/**
 * A finished cipher and decipher, and the buffers node:crypto made for them, kept for the process's
 * life (see keepShape): their shapes are node:crypto's, and the code built on them (node:crypto's
 * and ours) would otherwise be deoptimized by every full collection that finds none left. A zero
 * key, and OpenSSL frees its context at final(): they hold nothing secret.
 */
function keepCipherShapes(c: NodeCryptoLike): void {
  const zero = new Uint8Array(32);
  const nonce = zero.subarray(0, 12);
  const cipher = c.createCipheriv('aes-256-gcm', zero, nonce, { authTagLength: 16 });
  cipher.setAAD(zero);
  const sealed = cipher.update(zero);
  cipher.final();
  const decipher = c.createDecipheriv('aes-256-gcm', zero, nonce, { authTagLength: 16 });
  decipher.setAuthTag(cipher.getAuthTag());
  decipher.setAAD(zero);
  decipher.update(sealed);
  decipher.final();
  keepShape(cipher);
  keepShape(decipher);
  keepShape(sealed);
}

export function createNodeBackend(): CryptoBackend | undefined {
  const c = loadNodeCrypto();
  if (!c) return undefined;
  keepCipherShapes(c);
  return {
    name: 'node',
    gcmSeal: (key, nonce, plaintext, out, offset, aad) => nodeGcmSeal(c, { key, nonce, aad }, plaintext, out, offset),
    gcmOpen: (key, nonce, sealed, out, offset, aad) => nodeGcmOpen(c, { key, nonce, aad }, sealed, out, offset) === true,
    gcmOpenFresh(key, nonce, sealed) {
      const plaintext = nodeGcmOpen(c, { key, nonce }, sealed, undefined, 0);
      return plaintext instanceof Uint8Array ? plaintext : undefined;
    },
    hkdfExpandSha512: wasmHkdf()?.expand ?? nodeHmacHkdf(c),
    hkdfPrepareSha512: wasmHkdf()?.prepare,
    randomBytes: pooledRandom((buffer) => c.randomFillSync(buffer)),
    sha256Base64: (data) => (c.hash ? c.hash('sha256', data, 'base64') : c.createHash('sha256').update(data).digest('base64')),
    hmacSha256(key, data) {
      const h = c.createHmac('sha256', key);
      h.update(data);
      const digest = h.digest(); // a Buffer, whose slice() is a view: hand out a plain Uint8Array over it
      return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
    },
  };
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { loadNodeCrypto, nodeHmacHkdf };
