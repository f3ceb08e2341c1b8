/**
 * The client-side rate limiter (src/economy/rate-limit.ts): a wait for a token or for a place in
 * flight ends when the caller's signal aborts (deadlines and cancellation include the wait), and a
 * waiter that leaves gives its token and its place back. Fake timers: no wall clock involved.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RateLimiter } from '../../src/economy/rate-limit.ts';

const defaults = { actions: {}, fallback: { qps: 0.1, burst: 1 } }; // one call, then one every 10 s

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** Whether a promise has settled, after the microtasks queued so far. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await vi.advanceTimersByTimeAsync(0);
  return done;
}

describe('rate limiter: deadlines and cancellation include the wait', () => {
  it('a wait for a token ends with the abort reason as soon as the signal aborts', { timeout: 2000 }, async () => {
    const limiter = new RateLimiter({}, defaults);
    const first = await limiter.acquire('GenerateDataKey');
    first.release();
    const controller = new AbortController();
    const waiting = limiter.acquire('GenerateDataKey', controller.signal);
    expect(await settled(waiting)).toBe(false); // 10 s to the next token
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
  });

  it('a waiter that leaves gives its token back: the next caller waits one interval, not two', { timeout: 2000 }, async () => {
    const limiter = new RateLimiter({}, defaults);
    (await limiter.acquire('Decrypt')).release();
    const controller = new AbortController();
    const leaving = limiter.acquire('Decrypt', controller.signal);
    controller.abort(new Error('gone'));
    await expect(leaving).rejects.toThrow('gone');
    const next = limiter.acquire('Decrypt');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await settled(next)).toBe(true);
  });

  it('an already aborted signal rejects at once and takes no token', { timeout: 2000 }, async () => {
    const limiter = new RateLimiter({}, defaults);
    const reason = new Error('already aborted');
    await expect(limiter.acquire('Decrypt', AbortSignal.abort(reason))).rejects.toBe(reason);
    const slot = limiter.acquire('Decrypt');
    expect(await settled(slot)).toBe(true); // the burst token is still there
  });

  it('an aborted waiter for the concurrency cap leaves the queue: the freed place goes to the next live waiter', { timeout: 2000 }, async () => {
    const limiter = new RateLimiter({ concurrency: 1 }, { actions: {}, fallback: { qps: 1000, burst: 1000 } });
    const holder = await limiter.acquire('Decrypt');
    const controller = new AbortController();
    const leaving = limiter.acquire('Decrypt', controller.signal);
    const staying = limiter.acquire('Decrypt');
    expect(await settled(leaving)).toBe(false);
    controller.abort(new Error('gone'));
    await expect(leaving).rejects.toThrow('gone');
    expect(await settled(staying)).toBe(false);
    holder.release();
    expect(await settled(staying)).toBe(true);
    (await staying).release();
    // Nothing leaked: the one place is free again.
    expect(await settled(limiter.acquire('Decrypt'))).toBe(true);
  });
});

describe('rate limiter: a stall does not turn into a burst', () => {
  it('calls queued behind the concurrency cap take their rate slots when they get a place, not before', { timeout: 2000 }, async () => {
    // 10 calls/s with a burst of 1, one call in flight at a time.
    const limiter = new RateLimiter({ concurrency: 1 }, { actions: {}, fallback: { qps: 10, burst: 1 } });
    const holder = await limiter.acquire('Decrypt'); // a call that stalls for 5 s
    const sent: number[] = [];
    const start = Date.now();
    const queued = Array.from({ length: 5 }, () =>
      limiter.acquire('Decrypt').then((slot) => {
        sent.push(Date.now() - start);
        slot.release(); // each call done at once
      }),
    );
    await vi.advanceTimersByTimeAsync(5_000);
    holder.release();
    await vi.advanceTimersByTimeAsync(2_000);
    await Promise.all(queued);
    expect(sent).toHaveLength(5);
    // At most one call per 100 ms after the stall: at the rate, never all five at 5,000 ms.
    for (let i = 1; i < sent.length; i++) expect(sent[i]! - sent[i - 1]!).toBeGreaterThanOrEqual(100);
  });
});

describe('RateLimiter: the fleet budget and adaptive rates', () => {
  const defaults = { actions: { GenerateDataKey: { qps: 80, burst: 20 } }, fallback: { qps: 16, burst: 4 } };

  it('gives each of N processes 1/N of the account quota', () => {
    const limiter = new RateLimiter({ fleet: { processes: 50 } }, defaults);
    expect(limiter.rate('GenerateDataKey')).toBeCloseTo(80 / 50);
    expect(limiter.rate('ListKeys')).toBeCloseTo(16 / 50);
    expect(() => new RateLimiter({ fleet: { processes: 0 } }, defaults)).toThrow(RangeError);
  });

  it('halves the rate on throttling (once a second at most) and raises it back step by step on success', () => {
    const limiter = new RateLimiter({}, defaults);
    limiter.throttled('GenerateDataKey');
    limiter.throttled('GenerateDataKey'); // the same second: one decrease
    expect(limiter.rate('GenerateDataKey')).toBe(40);
    for (let i = 0; i < 10; i++) limiter.succeeded('GenerateDataKey');
    expect(limiter.rate('GenerateDataKey')).toBeCloseTo(48);
    for (let i = 0; i < 1000; i++) limiter.succeeded('GenerateDataKey');
    expect(limiter.rate('GenerateDataKey')).toBe(80); // never above the configured rate
    const fixed = new RateLimiter({ adaptive: false }, defaults);
    fixed.throttled('GenerateDataKey');
    expect(fixed.rate('GenerateDataKey')).toBe(80);
  });

  it('asks a shared bucket before every call', async () => {
    const asked: string[] = [];
    const limiter = new RateLimiter({ shared: { acquire: async (action) => void asked.push(action) } }, defaults);
    const { release } = await limiter.acquire('Decrypt');
    release();
    expect(asked).toEqual(['Decrypt']);
  });
});
