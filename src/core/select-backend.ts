/**
 * The crypto backend an envelope, a key provider or a key hierarchy runs on. The Node backend
 * (node:crypto) is not imported here: the main entry under the `node` export condition
 * (src/index.node.ts, which Node, Bun and Deno resolve) hands it in, so that a browser bundle
 * carries none of its code.
 */
import type { CryptoBackend } from './backend.ts';
import { createWebCryptoBackend } from './backend-webcrypto.ts';
import { providedPortable } from './sync-aes.ts';

export type BackendName = 'node' | 'noble' | 'webcrypto';

let nodeFactory: (() => CryptoBackend | undefined) | undefined;
let nodeBackend: CryptoBackend | undefined | null = null;
let webCryptoBackend: CryptoBackend | undefined | null = null;

/**
 * Makes the Node backend available (src/index.node.ts, src/node.ts): `factory` probes for
 * node:crypto (process.getBuiltinModule) and returns undefined where the runtime has none.
 */
export function provideNodeBackend(factory: () => CryptoBackend | undefined): void {
  nodeFactory ??= factory;
}

function webCrypto(): CryptoBackend | undefined {
  if (webCryptoBackend === null) webCryptoBackend = createWebCryptoBackend();
  return webCryptoBackend;
}

function node(): CryptoBackend | undefined {
  if (nodeBackend === null && nodeFactory) nodeBackend = nodeFactory();
  return nodeBackend ?? undefined;
}

/**
 * The one named, or: node:crypto where it exists and was provided (Node, Bun, Deno with its node:
 * modules), else crypto.subtle (browsers, Workers), else @noble/ciphers once usePortableCrypto()
 * (backend-noble.ts) brought it in.
 */
export function selectBackend(name?: BackendName): CryptoBackend {
  if (name === 'noble') {
    const portable = providedPortable();
    if (!portable) throw new TypeError(`backend "noble" is not loaded: call usePortableCrypto() from 'kms-envelope' first (the Node entry does)`);
    return portable;
  }
  if (name === 'webcrypto') {
    const backend = webCrypto();
    if (!backend) throw new TypeError('backend "webcrypto" needs crypto.subtle, which this runtime does not have (a browser offers it only in a secure context)');
    return backend;
  }
  const backend = node();
  if (backend) return backend;
  if (name === 'node') {
    throw new TypeError(
      'backend "node" needs node:crypto, which this runtime does not have (or the package was loaded without the "node" export condition, which brings it in)',
    );
  }
  const fallback = webCrypto() ?? providedPortable();
  if (!fallback) throw new TypeError('this runtime has neither node:crypto nor crypto.subtle (a browser offers it only in a secure context): call usePortableCrypto() to run on @noble/ciphers');
  return fallback;
}
