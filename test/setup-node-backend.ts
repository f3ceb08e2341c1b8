/**
 * What loading 'kms-envelope' on Node does (package.json "exports", condition `node` ->
 * src/index.node.ts): provide the node:crypto backend (and the portable one), for every suite here that imports src/ directly.
 */
import { createNodeBackend } from '../src/core/backend-node.ts';
import { usePortableCrypto } from '../src/core/backend-noble.ts';
import { provideNodeBackend } from '../src/core/select-backend.ts';

provideNodeBackend(createNodeBackend);
usePortableCrypto();
