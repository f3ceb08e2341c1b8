/**
 * kms-envelope under the `node` export condition (Node, Bun, Deno): the main entry, with the
 * portable backend and the node:crypto backend provided (core/backend-node.ts, found with process.getBuiltinModule, so no
 * `node:` module is named at build time). Other runtimes load src/index.ts, which carries none of
 * its code. Listed in package.json "sideEffects": importing it provides the backend.
 */
import { createNodeBackend } from './core/backend-node.ts';
import { usePortableCrypto } from './core/backend-noble.ts';
import { provideNodeBackend } from './core/select-backend.ts';

provideNodeBackend(createNodeBackend);
// Size does not matter here: `backend: 'noble'` by name works on Node as it always did.
usePortableCrypto();

export * from './index.ts';
