/**
 * Loopback round-trip time of GenerateDataKey and Decrypt through the emulator, run as its own
 * process (the CLI) so client and server do not share an event loop. Keep-alive is on (fetch's
 * default). Reports p50 and p99 over sequential calls, for both providers.
 */
import { canonicalContext } from '../src/core/context.ts';
import type { KeyProvider } from '../src/kms/key-provider.ts';
import { TencentKms } from '../src/kms/tencent.ts';
import { TencentKmsV2 } from '../src/kms/tencent-v2.ts';
import { spawnEmulator } from './emulator-process.ts';
import { formatNs } from './harness.ts';

const CALLS = 2000;
const WARMUP = 200;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function time(fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const start = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - start));
  }
  return samples.sort((a, b) => a - b);
}

export async function benchKmsRtt(): Promise<string> {
  const out: string[] = [];
  const emulator = await spawnEmulator();
  const { url, keyId } = emulator;
  try {
    const { credentials } = emulator;
    const providers: [string, KeyProvider][] = [
      // The client-side rate limit is off: this measures the round trip, not Tencent's quota.
      ['TencentKms (API 3.0, TC3)', new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: url, credentials, rateLimit: false })],
      ['TencentKmsV2 (POST, HmacSHA256)', new TencentKmsV2({ keyId, region: 'gz', endpoint: `${url}/v2/index.php`, credentials, rateLimit: false })],
    ];
    const context = canonicalContext({ table: 'users', row: '42' });
    out.push(`\n## KMS round trip on loopback (emulator in its own process, keep-alive, ${CALLS} sequential calls)\n`);
    out.push('| provider | action | p50 | p99 |');
    out.push('|---|---|---|---|');
    for (const [name, kms] of providers) {
      const dataKey = await kms.generateDataKey({ keySpec: 'AES_256', context });
      dataKey.plaintextKey.fill(0);
      const generate = await time(async () => (await kms.generateDataKey({ keySpec: 'AES_256', context })).plaintextKey.fill(0));
      const decrypt = await time(async () =>
        (await kms.decryptDataKey({ keySpec: 'AES_256', keyId: dataKey.keyId, ciphertextBlob: dataKey.ciphertextBlob, context })).fill(0),
      );
      out.push(`| ${name} | GenerateDataKey | ${formatNs(percentile(generate, 50))} | ${formatNs(percentile(generate, 99))} |`);
      out.push(`| ${name} | Decrypt | ${formatNs(percentile(decrypt, 50))} | ${formatNs(percentile(decrypt, 99))} |`);
    }
  } finally {
    emulator.stop();
  }
  return out.join('\n');
}
