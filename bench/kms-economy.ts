/**
 * Seal+open throughput of 1 KiB records through the emulator on loopback (its own process):
 * no cache, the encryption cache, and both caches; as ratios against the local path (LocalKms,
 * no network) in the same run. 32 records in flight, as a storage layer would have.
 */
import { randomBytes } from 'node:crypto';
import { createEnvelope, decryptCache, encryptionCache, type Envelope, LocalKms } from '../src/index.node.ts';
import { spawnEmulator } from './emulator-process.ts';
import { TencentKms } from '../src/kms/tencent.ts';

const RECORDS = 3000;
const IN_FLIGHT = 32;

async function throughput(envelope: Envelope, records: Uint8Array[]): Promise<number> {
  const start = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < records.length) {
      const record = records[next++]!;
      const context = { table: 'users' };
      const back = await envelope.open(await envelope.seal(record, { context }), { context });
      if (back.length !== record.length) throw new Error('round trip failed');
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return records.length / ((performance.now() - start) / 1000);
}

export async function benchKmsEconomy(): Promise<string> {
  const out: string[] = [];
  const emulator = await spawnEmulator();
  const { url, keyId } = emulator;
  try {
    // The emulator has no quota: lift the client-side limit so the numbers show the network path.
    const kms = () => new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: url, credentials: emulator.credentials, rateLimit: { qps: 1e6, burst: 1e6, concurrency: 64 } });
    const records = Array.from({ length: RECORDS }, () => randomBytes(1024));
    const cases: [string, () => Envelope][] = [
      ['local (LocalKms, no network, no cache)', () => createEnvelope({ kms: LocalKms.generate() })],
      ['emulator, no cache', () => createEnvelope({ kms: kms() })],
      ['emulator, encryption cache', () => createEnvelope({ kms: kms(), cache: encryptionCache() })],
      ['emulator, encryption + decrypt cache', () => createEnvelope({ kms: kms(), cache: encryptionCache(), decryptCache: decryptCache() })],
    ];
    await throughput(cases[1]![1](), records.slice(0, 300)); // warm up the connection pool and JIT
    out.push(`\n## KMS economy: seal+open of 1 KiB records, ${IN_FLIGHT} in flight, emulator on loopback\n`);
    out.push('| path | records/s | ratio to local |');
    out.push('|---|---|---|');
    let local = 0;
    for (const [name, make] of cases) {
      const envelope = make();
      const rate = await throughput(envelope, records);
      await envelope.close();
      if (!local) local = rate;
      out.push(`| ${name} | ${rate.toFixed(0)} | ${(rate / local).toFixed(2)}x |`);
    }
  } finally {
    emulator.stop();
  }
  return out.join('\n');
}
