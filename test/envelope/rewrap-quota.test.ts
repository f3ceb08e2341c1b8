/**
 * The rewrap benchmark (bench/rewrap.ts), small: version-1 messages moved to another master key
 * through ReEncrypt against an emulator enforcing Tencent's ReEncrypt quota (100/s) draw no
 * throttling answer and no failure, one ReEncrypt per message. Counts only, never speed.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEnvelope, inspect, rewrap, sealMany, TencentKms } from '../../src/index.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

let emulator: RunningEmulator;
let from: string;
beforeAll(async () => ({ emulator, keyId: from } = await useEmulator({ alias: 'quota-from' })));
afterAll(() => emulator.close());

it('rewraps 200 messages under the ReEncrypt quota with no throttled or failed call', async () => {
  const to = emulator.createKey('quota-to');
  const common = { region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, timeoutMs: 20_000, deadlineMs: 50_000 };
  const sealer = createEnvelope({ kms: new TencentKms({ ...common, keyId: from, rateLimit: false }) });
  const batch = await sealMany(sealer, Array.from({ length: 200 }, (_, i) => ({ plaintext: `m${i}`, context: { i: String(i) } })), { concurrency: 8 });
  const sealed = batch.map((r) => (r.ok ? r.value : Promise.reject(r.error))) as Uint8Array[];
  emulator.setFaults({ qpsLimit: { ReEncrypt: 100, GenerateDataKey: 100, Decrypt: 300 } });
  emulator.resetStats();
  const rewrapper = createEnvelope({ kms: new TencentKms({ ...common, keyId: to, rateLimit: { actions: { ReEncrypt: { qps: 75, burst: 1 } } } }) });
  // 8 at once: a stall of either side then bunches at most 8 requests (bench/rewrap.ts says why).
  const results: PromiseSettledResult<Uint8Array>[] = [];
  for (let i = 0; i < sealed.length; i += 8) results.push(...(await Promise.allSettled(sealed.slice(i, i + 8).map((s) => rewrap(rewrapper, s, { toKeyId: to })))));
  expect(batch.every((r) => r.ok)).toBe(true);
  expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  expect(emulator.stats().calls).toEqual({ ReEncrypt: 200 });
  expect(emulator.stats().faults.throttle ?? 0).toBe(0);
  const last = (results.at(-1) as PromiseFulfilledResult<Uint8Array>).value;
  expect(inspect(last).keyId).toBe(to);
}, 120_000);
