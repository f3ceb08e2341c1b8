/**
 * The crypto suite 03 runs on (SM4-GCM with HKDF-SM3, FORMAT.md §13): a backend's interface over
 * SM4-GCM and HKDF-Expand-SM3. The chunked and compact payloads, the caches and the key hierarchy
 * take it from the suite (suite.ts: sm4.primitives) and are otherwise unchanged: every suite is the
 * same construction over other primitives.
 *
 * On the node backend SM4-GCM is OpenSSL's where the build has it (Node 24); everywhere else,
 * WebCrypto included (it has no SM4), the portable TypeScript path, which gives the same bytes. The
 * SM backend has no asynchronous `aead`: the asynchronous paths run synchronously for suite 03.
 */
import type { CryptoBackend } from '../core/backend.ts';
import { builtinModule } from '../core/runtime.ts';
import { hasNativeSm4Gcm, nativeSm4Gcm, type NodeSm4Crypto, portableSm4Gcm, type Sm4Gcm } from './sm4-gcm.ts';
import { hkdfExpandSm3, hmacSm3Prepare } from './sm3.ts';

/** The SM backends made so far, by the backend they wrap; and the set of them, so that wrapping is idempotent. */
const smBackends = new WeakMap<CryptoBackend, CryptoBackend>();
const isSm = new WeakSet<CryptoBackend>();

let nodeAead: Sm4Gcm | null | undefined;

/**
 * OpenSSL's SM4-GCM where the Node build has it (Node 24), else undefined: the portable path.
 * OpenSSL's SM4-CTR under our GHASH (nodeSm4Gcm) gives the same bytes but is no faster than the
 * TypeScript SM4 on Node 20 and 22 (slower for small records, where each call creates a cipher):
 * BENCHMARKS.md, "SM4 suite".
 */
function nodeSm4(): Sm4Gcm | undefined {
  if (nodeAead === undefined) {
    const c = builtinModule<NodeSm4Crypto>('node:crypto');
    nodeAead = c && hasNativeSm4Gcm(c) ? nativeSm4Gcm(c) : null;
  }
  return nodeAead ?? undefined;
}

/** The SM4-GCM a backend's suite-03 messages use (tests compare the paths). */
function sm4GcmFor(backend: CryptoBackend): Sm4Gcm {
  return (backend.name === 'node' ? nodeSm4() : undefined) ?? portableSm4Gcm;
}

/** Builds the suite-03 view of `backend`: SM4-GCM and HKDF-SM3, its randomness and hashes. */
function smBackend(backend: CryptoBackend, aead: Sm4Gcm = sm4GcmFor(backend)): CryptoBackend {
  const sm: CryptoBackend = {
    name: backend.name,
    gcmSeal: aead.seal,
    gcmOpen: aead.open,
    gcmOpenFresh: aead.openFresh,
    // The suite's KDF under the interface's name: HKDF-Expand with HMAC-SM3 (FORMAT.md §13).
    hkdfExpandSha512: hkdfExpandSm3,
    hkdfPrepareSha512: hmacSm3Prepare,
    randomBytes: backend.randomBytes,
    sha256Base64: backend.sha256Base64,
    hmacSha256: backend.hmacSha256,
  };
  isSm.add(sm);
  return sm;
}

/** The suite-03 view of `backend`, made once per backend. */
export function smBackendOf(backend: CryptoBackend): CryptoBackend {
  if (isSm.has(backend)) return backend;
  let sm = smBackends.get(backend);
  if (!sm) {
    sm = smBackend(backend);
    smBackends.set(backend, sm);
  }
  return sm;
}
