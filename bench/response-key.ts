/**
 * The cost of a data key that never crosses the wire in clear (TencentKms `responseKey`): one
 * GenerateDataKey and one Decrypt, with and without EncryptionPublicKey, against the emulator in a
 * process of its own, in the same run. Run: npm run bench:response-key
 */
import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { canonicalContext } from '../src/core/context.ts';
import { ResponseKeys } from '../src/kms/response-key.ts';
import { TencentKms, type TencentKmsOptions } from '../src/kms/tencent.ts';
import { spawnEmulator } from './emulator-process.ts';
import { formatNs } from './harness.ts';

const median = (samples: number[]): number => samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;

/** Nanoseconds of one call. */
async function once(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start);
}

const ROUNDS = 600;
/** A key pair per call costs a key generation each: measured every this many rounds. */
const PER_CALL_EVERY = 20;

async function main(): Promise<void> {
  const emulator = await spawnEmulator();
  const { url, keyId, credentials } = emulator;
  const context = canonicalContext({ table: 'users', row: '42' });
  const cases: [string, TencentKmsOptions['responseKey']][] = [
    ['no public key (Plaintext in clear)', false],
    ['RSAES_OAEP_SHA_256, key pair per process, node:crypto', { backend: 'node' }],
    ['RSAES_OAEP_SHA_256, key pair per process, WebCrypto', { backend: 'webcrypto' }],
    ['RSAES_OAEP_SHA_1, key pair per process, node:crypto', { algorithm: 'RSAES_OAEP_SHA_1', backend: 'node' }],
    ['RSAES_OAEP_SHA_256, key pair per call, node:crypto', { keyPair: 'call', backend: 'node' }],
  ];
  const lines = [`| response key | GenerateDataKey p50 | ratio | Decrypt p50 | ratio | calls |`, '|---|---|---|---|---|---|'];
  try {
    const runs = await Promise.all(
      cases.map(async ([name, responseKey]) => {
        const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: url, credentials, rateLimit: false, responseKey });
        const dataKey = await kms.generateDataKey({ keySpec: 'AES_256', context });
        dataKey.plaintextKey.fill(0);
        return { name, kms, blob: dataKey.ciphertextBlob, perCall: typeof responseKey === 'object' && responseKey.keyPair === 'call', generate: [] as number[], decrypt: [] as number[] };
      }),
    );
    // Interleaved, one call of each case per round, so that the machine's load weighs on all alike.
    for (let round = 0; round < ROUNDS; round++) {
      for (const run of runs) {
        if (run.perCall && round % PER_CALL_EVERY !== 0) continue;
        run.generate.push(await once(async () => (await run.kms.generateDataKey({ keySpec: 'AES_256', context })).plaintextKey.fill(0)));
        run.decrypt.push(await once(async () => (await run.kms.decryptDataKey({ keySpec: 'AES_256', keyId, ciphertextBlob: run.blob, context })).fill(0)));
      }
    }
    const base = { generate: median(runs[0]!.generate), decrypt: median(runs[0]!.decrypt) };
    for (const run of runs) {
      const generate = median(run.generate);
      const decrypt = median(run.decrypt);
      lines.push(`| ${run.name} | ${formatNs(generate)} | ${(generate / base.generate).toFixed(2)}x | ${formatNs(decrypt)} | ${(decrypt / base.decrypt).toFixed(2)}x | ${run.generate.length} |`);
      run.kms.close();
    }
  } finally {
    emulator.stop();
  }
  lines.push('', ...(await localWork()));
  console.log(lines.join('\n'));
}

/** The client's own work, without the network: one OAEP decryption, and one key pair. */
async function localWork(): Promise<string[]> {
  const out = ['| local work | p50 | calls |', '|---|---|---|'];
  for (const backend of ['node', 'webcrypto'] as const) {
    const keys = new ResponseKeys({ backend });
    const pair = await keys.pair();
    const ciphertext = publicEncrypt({ key: pair.publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, randomBytes(32));
    const samples: number[] = [];
    for (let i = 0; i < 2000; i++) samples.push(await once(async () => (await pair.decrypt(ciphertext)).fill(0)));
    out.push(`| RSAES_OAEP_SHA_256 decryption of a data key, ${backend} | ${formatNs(median(samples))} | ${samples.length} |`);
    const generation: number[] = [];
    for (let i = 0; i < 40; i++) generation.push(await once(() => new ResponseKeys({ backend, keyPair: 'call' }).pair()));
    out.push(`| RSA-2048 key pair generation, ${backend} | ${formatNs(median(generation))} | ${generation.length} |`);
    keys.close();
  }
  return out;
}

await main();
