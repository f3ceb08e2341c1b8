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
