/** HKDF-Expand-SHA-512 for one Cobblestone-256 message (76 bytes): node:crypto against @noble/hashes. */
import { randomBytes } from 'node:crypto';
import { nobleBackend } from '../src/backend-noble.ts';
import { createNodeBackend } from '../src/backend-node.ts';
import { formatNs, measure } from './harness.ts';

export async function benchHkdf(): Promise<string> {
  const out: string[] = [];
  const node = createNodeBackend()!;
  const prk = randomBytes(32);
  const info = randomBytes(31 + 16 + 1 + 24 + 40);
  const results = await measure([
    { name: 'node:crypto createHmac', run: () => node.hkdfExpandSha512(prk, info, 76) },
    { name: '@noble/hashes hmac', run: () => nobleBackend.hkdfExpandSha512(prk, info, 76) },
  ]);
  out.push('\n## HKDF-Expand-SHA-512, 76 bytes (one message key, nonce and commitment)\n');
  out.push('| implementation | time |');
  out.push('|---|---|');
  for (const r of results) out.push(`| ${r.name} | ${formatNs(r.medianNs)} (${formatNs(r.minNs)}–${formatNs(r.maxNs)}) |`);
  return out.join('\n');
}
