/**
 * The synchronous AES-GCM that a backend without one of its own (WebCrypto's answers later) lends
 * from the portable backend (@noble/ciphers), once someone who needs it has provided it: the
 * synchronous functions (sealSync, openSync: the record API and the ORM hooks), the Node entry,
 * and usePortableCrypto(). An application that seals and opens asynchronously never loads it.
 */
import type { CryptoBackend } from './backend.ts';

let portable: CryptoBackend | undefined;

export function providePortable(backend: CryptoBackend): void {
  portable ??= backend;
}

/** The portable backend, or undefined while nobody has provided it. */
export function providedPortable(): CryptoBackend | undefined {
  return portable;
}

/** The portable backend; a TypeError naming the fix while nobody has provided it. */
export function syncAes(): CryptoBackend {
  if (portable) return portable;
  throw new TypeError(
    "synchronous AES-GCM on the WebCrypto backend needs the portable backend (@noble/ciphers): import sealSync/openSync from 'kms-envelope' (or kms-envelope/records), or call usePortableCrypto() once",
  );
}
