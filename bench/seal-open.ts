/**
 * seal+open with LocalKms (a fresh data key per message, no cache) against raw node:crypto
 * AES-256-GCM encrypt+decrypt of the same payload (fresh cipher per op), in the same process.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createEnvelope, LocalKms } from '../src/index.ts';
import { formatNs, formatSize, measure } from './harness.ts';

const SIZES = [64, 1024, 16 * 1024, 1024 * 1024];

function rawEncryptDecrypt(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  const tag = c.getAuthTag();
  const d = createDecipheriv('aes-256-gcm', key, nonce);
  d.setAuthTag(tag);
  return Buffer.concat([d.update(ct), d.final()]);
}

export async function benchSealOpen(): Promise<void> {
  const kms = LocalKms.generate();
  const envelopes = { node: createEnvelope({ kms, backend: 'node' }), noble: createEnvelope({ kms, backend: 'noble' }) };
  const context = { table: 'users', row: '42' };
  const key = randomBytes(32);
  console.log('\n## seal+open, LocalKms, fresh data key per message, vs raw node:crypto AES-256-GCM enc+dec\n');
  console.log('| size | raw node:crypto | seal+open (node) | ratio | seal+open (noble) | ratio |');
  console.log('|---|---|---|---|---|---|');
  for (const size of SIZES) {
    const plaintext = randomBytes(size);
    // Cross-check before timing: every path returns the plaintext.
    for (const env of Object.values(envelopes)) {
      const back = await env.open(await env.seal(plaintext, { context }));
      if (!Buffer.from(back).equals(plaintext)) throw new Error('round trip failed');
    }
    if (!Buffer.from(rawEncryptDecrypt(key, plaintext)).equals(plaintext)) throw new Error('raw round trip failed');
    const results = await measure(
      [
        { name: 'raw', run: () => rawEncryptDecrypt(key, plaintext) },
        { name: 'node', run: async () => envelopes.node.open(await envelopes.node.seal(plaintext, { context })) },
        { name: 'noble', run: async () => envelopes.noble.open(await envelopes.noble.seal(plaintext, { context })) },
      ],
      { rounds: size >= 1 << 20 ? 7 : 15 },
    );
    const [raw, node, noble] = results as [(typeof results)[0], (typeof results)[0], (typeof results)[0]];
    console.log(
      `| ${formatSize(size)} | ${formatNs(raw.medianNs)} | ${formatNs(node.medianNs)} | ${(node.medianNs / raw.medianNs).toFixed(2)}x | ${formatNs(noble.medianNs)} | ${(noble.medianNs / raw.medianNs).toFixed(2)}x |`,
    );
  }
}
