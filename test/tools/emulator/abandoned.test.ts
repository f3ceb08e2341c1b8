/**
 * A call whose client gave up before the answer (here during injected latency) is not a served
 * call: it is counted apart, its action does not run, and it leaves the QPS window to others.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../../src/tools/emulator/index.ts';
import { useEmulator } from '../../fixtures/emulator.ts';
import { errorCode, tc3Headers } from './wire.ts';

let emulator: RunningEmulator;
let keyId: string;
beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ alias: 'abandoned' }));
});
afterAll(() => emulator.close());
beforeEach(() => {
  emulator.setFaults({});
  emulator.resetStats();
});

/** A signed API 3.0 call; with a controller the client may abort it, and then gets `undefined`. */
async function call(action: string, payload: object, controller?: AbortController): Promise<string | undefined> {
  const body = JSON.stringify(payload);
  const headers = tc3Headers({ action, body, credentials: emulator.credentials[0]! });
  try {
    const response = await fetch(emulator.url, { method: 'POST', headers, body, ...(controller ? { signal: controller.signal } : {}) });
    return await response.text();
  } catch (error) {
    if (controller?.signal.aborted) return undefined;
    throw error;
  }
}

/** Waits (a bounded time) until a count of the stats reaches `n`; the assertions after it tell if it did not. */
async function until(count: () => number | undefined, n: number): Promise<void> {
  for (const started = Date.now(); (count() ?? 0) < n && Date.now() - started < 5000; ) await new Promise((r) => setTimeout(r, 5));
}

/** Calls that the emulator has authenticated (and holds in its latency) when their clients give up. */
async function giveUp(action: string, payload: object, n = 1): Promise<(string | undefined)[]> {
  const controllers = Array.from({ length: n }, () => new AbortController());
  const before = emulator.stats().calls[action] ?? 0;
  const answers = Promise.all(controllers.map((c) => call(action, payload, c)));
  await until(() => emulator.stats().calls[action], before + n);
  for (const c of controllers) c.abort();
  const result = await answers;
  await until(() => emulator.stats().abandoned?.[action], n);
  return result;
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('abandoned calls', () => {
  it('are counted as abandoned, not served', async () => {
    emulator.setFaults({ latencyMs: 600 });
    expect(await giveUp('GenerateDataKey', { KeyId: keyId })).toEqual([undefined]);
    emulator.setFaults({});
    expect(errorCode((await call('GenerateDataKey', { KeyId: keyId }))!)).toBeUndefined();
    const stats = emulator.stats();
    expect(stats.calls).toEqual({ GenerateDataKey: 2 });
    expect(stats.served).toEqual({ GenerateDataKey: 1 });
    expect(stats.abandoned).toEqual({ GenerateDataKey: 1 });
  });

  it('do not run their action: an abandoned CreateKey makes no key', async () => {
    const count = async () => (JSON.parse((await call('ListKeys', { Limit: 100 }))!) as { Response: { TotalCount: number } }).Response.TotalCount;
    const before = await count();
    emulator.setFaults({ latencyMs: 600 });
    expect(await giveUp('CreateKey', { Alias: 'never-made' })).toEqual([undefined]);
    await settle(700);
    emulator.setFaults({});
    expect(await count()).toBe(before);
  });

  it('leave the QPS window to the calls that wait for their answer', async () => {
    // Two calls fill a window of 2 and give up during the latency; the next two, within the same
    // second, must get through rather than be throttled on the abandoned calls' account.
    emulator.setFaults({ qpsLimit: 2, latencyMs: 300 });
    expect(await giveUp('GenerateDataKey', { KeyId: keyId }, 2)).toEqual([undefined, undefined]);
    const answers = await Promise.all([call('GenerateDataKey', { KeyId: keyId }), call('GenerateDataKey', { KeyId: keyId })]);
    expect(answers.map((a) => errorCode(a!))).toEqual([undefined, undefined]);
    const stats = emulator.stats();
    expect(stats.faults.throttle ?? 0).toBe(0);
    expect(stats.abandoned).toEqual({ GenerateDataKey: 2 });
    expect(stats.served).toEqual({ GenerateDataKey: 2 });
  });

  it('a call answered before the client hangs up is served', async () => {
    expect(errorCode((await call('GenerateDataKey', { KeyId: keyId }, new AbortController()))!)).toBeUndefined();
    await settle(20);
    expect(emulator.stats().served).toEqual({ GenerateDataKey: 1 });
    expect(emulator.stats().abandoned).toEqual({});
  });
});
