import type { CryptoBackend } from './backend.ts';
import { createNodeBackend } from './backend-node.ts';
import { nobleBackend } from './backend-noble.ts';
import { createWebCryptoBackend } from './backend-webcrypto.ts';

export type BackendName = 'node' | 'noble' | 'webcrypto';

let nodeBackend: CryptoBackend | undefined | null = null;
let webCryptoBackend: CryptoBackend | undefined | null = null;

function webCrypto(): CryptoBackend | undefined {
  if (webCryptoBackend === null) webCryptoBackend = createWebCryptoBackend();
  return webCryptoBackend;
}

/**
 * The one named, or: node:crypto where it exists (Node, Bun, Deno with its node: modules), else
 * crypto.subtle (browsers, Workers), else @noble/ciphers.
 */
export function selectBackend(name?: BackendName): CryptoBackend {
  if (name === 'noble') return nobleBackend;
  if (name === 'webcrypto') {
    const backend = webCrypto();
    if (!backend) throw new TypeError('backend "webcrypto" needs crypto.subtle, which this runtime does not have (a browser offers it only in a secure context)');
    return backend;
  }
  if (nodeBackend === null) nodeBackend = createNodeBackend();
  if (nodeBackend) return nodeBackend;
  if (name === 'node') throw new TypeError('backend "node" needs node:crypto, which this runtime does not have');
  return webCrypto() ?? nobleBackend;
}
