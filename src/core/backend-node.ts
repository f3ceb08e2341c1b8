/**
 * Fast backend: node:crypto (OpenSSL, AES-NI). Loaded with process.getBuiltinModule so that this
 * package has no static `node:` import and bundles for browsers unchanged.
 */
import type * as NodeCrypto from 'node:crypto';
import type { CryptoBackend } from './backend.ts';
import { TAG_LENGTH } from './backend.ts';
import { wipe } from './bytes.ts';
import { type HkdfExpand, hmacHkdf, wasmHkdf } from './hkdf.ts';
import { pooledRandom } from './random-pool.ts';

type NodeCryptoModule = typeof NodeCrypto;

export function loadNodeCrypto(): NodeCryptoModule | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  try {
    return proc?.getBuiltinModule?.('node:crypto') as NodeCryptoModule | undefined;
  } catch {
    return undefined;
  }
}

const GCM_BY_KEY_LENGTH: Record<number, NodeCrypto.CipherGCMTypes> = {
  16: 'aes-128-gcm',
  24: 'aes-192-gcm',
  32: 'aes-256-gcm',
};

function algorithm(key: Uint8Array): NodeCrypto.CipherGCMTypes {
  const alg = GCM_BY_KEY_LENGTH[key.length];
  if (!alg) throw new RangeError(`AES-GCM key must be 16, 24 or 32 bytes, got ${key.length}`);
  return alg;
}


/** HKDF-Expand over node:crypto's createHmac: the fallback where WebAssembly does not run. */
export function nodeHmacHkdf(c: NodeCryptoModule): HkdfExpand {
  return hmacHkdf((key) => c.createHmac('sha512', key));
}

export function createNodeBackend(): CryptoBackend | undefined {
  const c = loadNodeCrypto();
  if (!c) return undefined;
  return {
    name: 'node',
    gcmSeal(key, nonce, plaintext, out, offset, aad) {
      const cipher = c.createCipheriv(algorithm(key), key, nonce, { authTagLength: TAG_LENGTH });
      if (aad) cipher.setAAD(aad);
      const body = cipher.update(plaintext);
      const tail = cipher.final();
      out.set(body, offset);
      out.set(tail, offset + body.length);
      out.set(cipher.getAuthTag(), offset + body.length + tail.length);
    },
    gcmOpen(key, nonce, sealed, out, offset, aad) {
      if (sealed.length < TAG_LENGTH) return false;
      const ctLen = sealed.length - TAG_LENGTH;
      const decipher = c.createDecipheriv(algorithm(key), key, nonce, { authTagLength: TAG_LENGTH });
      decipher.setAuthTag(sealed.subarray(ctLen));
      if (aad) decipher.setAAD(aad);
      // OpenSSL decrypts before it verifies: the plaintext goes to the caller's buffer, which is
      // never released before the tag verifies, and is zeroed here (with the copy) if it does not.
      const body = decipher.update(sealed.subarray(0, ctLen));
      out.set(body, offset);
      try {
        decipher.final();
        // Small outputs are data keys (LocalKms unwrap): no copy of them may survive. Message
        // chunks are the caller's plaintext anyway, and skipping their wipe saves a pass.
        if (ctLen <= 64) wipe(body);
        return true;
      } catch {
        wipe(body);
        out.fill(0, offset, offset + ctLen);
        return false;
      }
    },
    gcmOpenFresh(key, nonce, sealed) {
      if (sealed.length < TAG_LENGTH) return undefined;
      const ctLen = sealed.length - TAG_LENGTH;
      const decipher = c.createDecipheriv(algorithm(key), key, nonce, { authTagLength: TAG_LENGTH });
      decipher.setAuthTag(sealed.subarray(ctLen));
      const body = decipher.update(sealed.subarray(0, ctLen));
      try {
        decipher.final();
        // A plain Uint8Array over the Buffer's own memory (OpenSSL output is never pooled; copied
        // if it ever were, so that `.buffer` exposes nothing else).
        return body.buffer.byteLength === body.length ? new Uint8Array(body.buffer, body.byteOffset, body.length) : new Uint8Array(body);
      } catch {
        wipe(body); // unauthenticated plaintext never leaves
        return undefined;
      }
    },
    hkdfExpandSha512: wasmHkdf()?.expand ?? nodeHmacHkdf(c),
    hkdfPrepareSha512: wasmHkdf()?.prepare,
    randomBytes: pooledRandom((buffer) => c.randomFillSync(buffer)),
    sha256Base64(data) {
      // crypto.hash (Node 20.12+) is the one-call form; createHash elsewhere.
      const hash = (c as unknown as { hash?: (alg: string, data: Uint8Array, enc: 'base64') => string }).hash;
      return hash ? hash('sha256', data, 'base64') : c.createHash('sha256').update(data).digest('base64');
    },
  };
}
