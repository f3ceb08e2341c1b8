/** HKDF-Expand-SHA-512 for one Cobblestone-256 message (76 bytes): WebAssembly, node:crypto, @noble/hashes. */
import { randomBytes } from 'node:crypto';
import { nobleHmacHkdf } from '../src/backend-noble.ts';
import { loadNodeCrypto, nodeHmacHkdf } from '../src/backend-node.ts';
import { hkdfExpandBytes, wasmHkdf } from '../src/hkdf.ts';
import { formatNs, measure } from './harness.ts';

export async function benchHkdf(): Promise<string> {
  const out: string[] = [];
  const wasm = wasmHkdf()!;
  const node = nodeHmacHkdf(loadNodeCrypto()!);
  const prk = randomBytes(32);
  // A Cobblestone info: label and AEAD name, salt, a small header as the context.
  const info = [randomBytes(31 + 16 + 1), randomBytes(24), randomBytes(40)];
  const results = await measure([
    { name: 'WebAssembly SHA-512 (both backends)', run: () => hkdfExpandBytes(wasm, prk, info, 76) },
    { name: 'node:crypto createHmac (fallback)', run: () => hkdfExpandBytes(node, prk, info, 76) },
    { name: '@noble/hashes hmac (fallback)', run: () => hkdfExpandBytes(nobleHmacHkdf, prk, info, 76) },
  ]);
  out.push('\n## HKDF-Expand-SHA-512, 76 bytes (one message key, nonce and commitment)\n');
  out.push('| implementation | time |');
  out.push('|---|---|');
  for (const r of results) out.push(`| ${r.name} | ${formatNs(r.medianNs)} (${formatNs(r.minNs)}–${formatNs(r.maxNs)}) |`);
  return out.join('\n');
}
