import type { CryptoBackend } from '../src/core/backend.ts';
import type { DataKey, DecryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider } from '../src/kms/key-provider.ts';
import { LocalKms } from '../src/kms/local.ts';

/**
 * A key provider that keeps a reference to every plaintext data key it hands out, so a test can
 * check afterwards that the library wiped all of them.
 */
export class InstrumentedProvider implements KeyProvider {
  readonly id = 'local';
  readonly handedOut: Uint8Array[] = [];
  calls = { generate: 0, decrypt: 0 };
  /** Optional fault: change what the inner provider returned. */
  mutateKey: ((key: Uint8Array) => Uint8Array) | undefined;
  readonly inner: KeyProvider;

  constructor(inner: KeyProvider = LocalKms.generate()) {
    this.inner = inner;
  }

  async generateDataKey(request: GenerateDataKeyRequest): Promise<DataKey> {
    this.calls.generate++;
    const key = await this.inner.generateDataKey(request);
    const plaintextKey = this.mutateKey ? this.mutateKey(key.plaintextKey) : key.plaintextKey;
    this.handedOut.push(plaintextKey);
    return { ...key, plaintextKey };
  }

  async decryptDataKey(request: DecryptDataKeyRequest): Promise<Uint8Array> {
    this.calls.decrypt++;
    const inner = await this.inner.decryptDataKey(request);
    const key = this.mutateKey ? this.mutateKey(inner) : inner;
    this.handedOut.push(key);
    return key;
  }

  allWiped(): boolean {
    return this.handedOut.length > 0 && this.handedOut.every((k) => k.every((b) => b === 0));
  }
}

/** A backend that records every key, nonce and HKDF output it sees, to check they end up zeroed. */
export function recordingBackend(inner: CryptoBackend): { backend: CryptoBackend; seen: Uint8Array[] } {
  const seen: Uint8Array[] = [];
  const backend: CryptoBackend = {
    name: inner.name,
    gcmSeal(key, nonce, plaintext, out, offset, aad) {
      seen.push(key, nonce);
      inner.gcmSeal(key, nonce, plaintext, out, offset, aad);
    },
    gcmOpen(key, nonce, sealed, out, offset, aad) {
      seen.push(key, nonce);
      return inner.gcmOpen(key, nonce, sealed, out, offset, aad);
    },
    gcmOpenFresh(key, nonce, sealed) {
      seen.push(key, nonce);
      return inner.gcmOpenFresh(key, nonce, sealed);
    },
    hkdfExpandSha512(prk, info, out) {
      inner.hkdfExpandSha512(prk, info, out);
      seen.push(...out);
    },
    randomBytes: (n) => inner.randomBytes(n),
    sha256Base64: (d) => inner.sha256Base64(d),
  };
  return { backend, seen };
}
