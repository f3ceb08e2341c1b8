/**
 * `npm run bench:rewrap`: 10,000 version-1 messages (one KMS blob each) moved to another master key
 * through ReEncrypt against the emulator in its own process, which enforces Tencent's account
 * quotas (ReEncrypt 100/s, GenerateDataKey 100/s, Decrypt 300/s) with the real throttling error.
 * The messages are sealed first with the quotas off (setup, not measured). Then:
 *
 * - rewrap: rewrap(envelope, ) on every message, 8 at once, through a TencentKms whose client-side
 *   limit for ReEncrypt is 75/s with a burst of 1. The quota is counted where the requests arrive:
 *   a stall of either process (a loaded machine, the network) bunches the requests sent before
 *   it, and 8 at once bounds that bunch to 8, so no second at the KMS sees more than 75 + 8 + 1.
 *   The limiter's own concurrency cap does not do it: its queue comes after the rate slot, so calls
 *   that got their slot during a stall go out together after it (90/s + 5 with 32 in flight drew 80
 *   throttling answers in 10,000 calls on this 2-core machine under load, 75/s + 1 with a cap of 8
 *   drew 1, and 100 requests went out in one second).
 * - baseline, in the same run, on the first 2,000 messages: the glue users write today, open() and
 *   seal() again under the new key (a Decrypt and a GenerateDataKey per message, the payload
 *   decrypted and re-encrypted), through the library's default limits.
 *
 * Printed: messages/s of each, the ratio, the ReEncrypt calls the emulator counted, its throttling
 * answers (must be 0), failed rewraps (must be 0), the most ReEncrypt calls sent in any sliding
 * second (from the client's kms-call events), and that every payload is byte-identical.
 *
 * Flags: --messages N (default 10000), --baseline N (default 2000).
 */
import { loadavg } from 'node:os';
import { createEnvelope, type EnvelopeEvent, inspect, rewrap, TencentKms } from '../src/index.node.ts';
import { parseHeader } from '../src/core/header.ts';
import { setFaults, startEmulatorProcess, TENCENT_QUOTAS } from './fleet.ts';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const MESSAGES = arg('messages', 10_000);
const BASELINE = arg('baseline', 2_000);
const CONCURRENCY = 32;
const REWRAP_CONCURRENCY = 8;

async function stats(url: string, secretKey: string): Promise<{ calls: Record<string, number>; faults: Record<string, number> }> {
  const response = await fetch(`${url}/__emulator/stats`, { headers: { Authorization: `Bearer ${secretKey}` } });
  return (await response.json()) as { calls: Record<string, number>; faults: Record<string, number> };
}

/** Runs `work` over indexes 0..n-1 with `concurrency` at once. */
async function pool(n: number, concurrency: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await work(next++);
  }));
}

/** The most events in any window of `ms` (times sorted). */
function peak(times: number[], ms = 1000): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i]! - t[j]! >= ms) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

async function main(): Promise<void> {
  const emulator = await startEmulatorProcess(new URL('../../dist/', import.meta.url));
  try {
    const credentials = { secretId: emulator.secretId, secretKey: emulator.secretKey };
    const common = { region: 'ap-guangzhou', endpoint: emulator.url, credentials };
    const from = emulator.keyId;
    const create = new TencentKms({ ...common, keyId: from });
    const to = await create.createKey({ alias: `rewrap-target-${Date.now()}` });

    // Setup: the messages, quotas off.
    await setFaults(emulator, {});
    const sealer = createEnvelope({ kms: new TencentKms({ ...common, keyId: from, rateLimit: false }) });
    const payload = new Uint8Array(256).fill(7);
    const sealed: Uint8Array[] = new Array(MESSAGES);
    await pool(MESSAGES, 64, async (i) => void (sealed[i] = await sealer.seal(payload, { context: { row: String(i) } })));
    console.log(`setup: ${MESSAGES} version-1 messages sealed, one GenerateDataKey each`);

    await setFaults(emulator, { qpsLimit: TENCENT_QUOTAS });
    await new Promise((r) => setTimeout(r, 1_100)); // the quota windows start empty

    // Rewrap through ReEncrypt; every request's send time logged by the fetch the client is given.
    const starts: number[] = [];
    const logged: typeof fetch = (input, init) => {
      starts.push(performance.now());
      return fetch(input, init);
    };
    let events = 0;
    const onEvent = (e: EnvelopeEvent): void => {
      if (e.type === 'kms-call' && e.action === 'ReEncrypt') events++;
    };
    const rewrapper = createEnvelope({
      kms: new TencentKms({ ...common, keyId: to, fetch: logged, rateLimit: { actions: { ReEncrypt: { qps: 75, burst: 1 } } } }),
      onEvent,
    });
    const before = await stats(emulator.url, emulator.secretKey);
    let failed = 0;
    let identical = 0;
    const rewrapped: Uint8Array[] = new Array(MESSAGES);
    const t0 = performance.now();
    await pool(MESSAGES, REWRAP_CONCURRENCY, async (i) => {
      try {
        rewrapped[i] = await rewrap(rewrapper, sealed[i]!, { toKeyId: to });
      } catch {
        failed++;
      }
    });
    const seconds = (performance.now() - t0) / 1000;
    const after = await stats(emulator.url, emulator.secretKey);
    for (let i = 0; i < MESSAGES; i++) {
      const a = sealed[i]!;
      const b = rewrapped[i];
      if (b && inspect(b).keyId === to && Buffer.from(a.subarray(parseHeader(a).length)).equals(Buffer.from(b.subarray(parseHeader(b).length)))) identical++;
    }
    const reEncrypts = (after.calls.ReEncrypt ?? 0) - (before.calls.ReEncrypt ?? 0);
    const throttled = (after.faults.throttle ?? 0) - (before.faults.throttle ?? 0);
    const rate = MESSAGES / seconds;

    // Baseline: open + seal under the new key, on the first BASELINE messages.
    await new Promise((r) => setTimeout(r, 1_100));
    const opener = createEnvelope({ kms: new TencentKms({ ...common, keyId: from }) });
    const resealer = createEnvelope({ kms: new TencentKms({ ...common, keyId: to }) });
    const b0 = performance.now();
    let baselineFailed = 0;
    await pool(BASELINE, CONCURRENCY, async (i) => {
      try {
        const plaintext = await opener.open(sealed[i]!, { context: { row: String(i) } });
        await resealer.seal(plaintext, { context: { row: String(i) } });
      } catch {
        baselineFailed++;
      }
    });
    const baselineRate = BASELINE / ((performance.now() - b0) / 1000);

    console.log(`| approach | messages | messages/s | KMS calls per message | failed |`);
    console.log(`|---|---|---|---|---|`);
    console.log(`| rewrap (ReEncrypt, payload untouched) | ${MESSAGES} | ${rate.toFixed(1)} | 1 | ${failed} |`);
    console.log(`| baseline: open + seal under the new key | ${BASELINE} | ${baselineRate.toFixed(1)} | 2 | ${baselineFailed} |`);
    console.log(`\nrewrap / baseline: ${(rate / baselineRate).toFixed(2)}x`);
    console.log(`ReEncrypt calls at the emulator: ${reEncrypts} (kms-call events: ${events}); throttled answers: ${throttled}; failed rewraps: ${failed}`);
    console.log(`most ReEncrypt requests sent in any sliding second: ${peak(starts)} (quota ${TENCENT_QUOTAS.ReEncrypt}); rate ${(rate / TENCENT_QUOTAS.ReEncrypt!).toFixed(2)} of the quota`);
    console.log(`payloads byte-identical and under the new key: ${identical} of ${MESSAGES}`);
    console.log(`# load average ${loadavg()[0]!.toFixed(1)} at the end`);
    if (failed > 0 || throttled > 0 || identical !== MESSAGES) process.exitCode = 1;
  } finally {
    await emulator.stop();
  }
}

await main();
