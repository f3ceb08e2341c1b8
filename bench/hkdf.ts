/** HKDF-Expand-SHA-512 for one Cobblestone-256 message (76 bytes): WebAssembly, node:crypto, @noble/hashes. */
import { randomBytes } from 'node:crypto';
import { nobleHmacHkdf } from '../src/core/backend-noble.ts';
import { testing as backendNodeTesting } from '../src/core/backend-node.ts';
import { wasmHkdf } from '../src/core/hkdf.ts';
import { formatNs, measure } from './harness.ts';
const { loadNodeCrypto, nodeHmacHkdf } = backendNodeTesting;

export async function benchHkdf(): Promise<string> {
  const out: string[] = [];
  const prk = randomBytes(32);
  const wasm = wasmHkdf()!.expand;
  const state = wasmHkdf()!.prepare(prk);
  const node = nodeHmacHkdf(loadNodeCrypto()!);
  // A Cobblestone info: label and AEAD name, salt, a small header as the context.
  const info = [randomBytes(31 + 16 + 1), randomBytes(24), randomBytes(40)];
  // As Cobblestone-256 takes it: key, base nonce, commitment.
  const okm = (): Uint8Array[] => [new Uint8Array(32), new Uint8Array(12), new Uint8Array(32)];
  const results = await measure([
    { name: 'WebAssembly SHA-512, key state precomputed (cached data keys)', run: () => wasm(prk, info, okm(), state) },
    { name: 'WebAssembly SHA-512 (both backends)', run: () => wasm(prk, info, okm()) },
    { name: 'node:crypto createHmac (fallback)', run: () => node(prk, info, okm()) },
    { name: '@noble/hashes hmac (fallback)', run: () => nobleHmacHkdf(prk, info, okm()) },
  ]);
  out.push('\n## HKDF-Expand-SHA-512, 76 bytes (one message key, nonce and commitment)\n');
  out.push('| implementation | time |');
  out.push('|---|---|');
  for (const r of results) out.push(`| ${r.name} | ${formatNs(r.medianNs)} (${formatNs(r.minNs)}–${formatNs(r.maxNs)}) |`);
  return out.join('\n');
}
