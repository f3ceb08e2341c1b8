import type { CryptoBackend } from './backend.ts';
import { createNodeBackend } from './backend-node.ts';
import { nobleBackend } from './backend-noble.ts';

export type BackendName = 'node' | 'noble';

let nodeBackend: CryptoBackend | undefined | null = null;

/** node:crypto where it exists (Node, Deno, Bun), @noble/ciphers elsewhere; or the one named. */
export function selectBackend(name?: BackendName): CryptoBackend {
  if (name === 'noble') return nobleBackend;
  if (nodeBackend === null) nodeBackend = createNodeBackend();
  if (nodeBackend) return nodeBackend;
  if (name === 'node') throw new TypeError('backend "node" needs node:crypto, which this runtime does not have');
  return nobleBackend;
}
