import { describe, expect, it } from 'vitest';
import { KeyNotFoundError, KeyUnavailableError, KmsError } from '../../src/core/errors.ts';
import { classifyKmsFailure, IntermediateKeyCache } from '../../src/economy/intermediate-keys.ts';

/** A clock the test moves, and a loader that counts calls and fails on demand. */
function setup(options: ConstructorParameters<typeof IntermediateKeyCache>[0] = {}) {
  let time = 0;
  const clock = { now: () => time, advance: (ms: number) => (time += ms) };
  const state = { calls: 0, fail: undefined as Error | undefined, handedOut: [] as Uint8Array[], gate: undefined as Promise<void> | undefined };
  const load = async (): Promise<Uint8Array> => {
    state.calls++;
    if (state.gate) await state.gate;
    if (state.fail) throw state.fail;
    const key = new Uint8Array(32).fill(state.calls);
    state.handedOut.push(key);
    return key;
  };
  const cache = new IntermediateKeyCache({ ttlMs: 1000, jitter: 0, refreshAheadMs: 100, maxStaleMs: 5000, breakerFailures: 3, breakerCooldownMs: 2000, ...options }, classifyKmsFailure, clock.now, () => 0.5);
  return { cache, clock, state, load };
}

const outage = () => new KmsError('throttled', { kmsCode: 'RequestLimitExceeded' });
const revoked = () => new KmsError('disabled', { kmsCode: 'ResourceUnavailable.CmkDisabled' });

describe('IntermediateKeyCache (economy/)', () => {
  it('loads a key version once for every concurrent caller (single flight), then serves it from memory', async () => {
    const { cache, state, load } = setup();
    const all = await Promise.all(Array.from({ length: 50 }, () => cache.get('t1', 1, 'seal', load)));
    expect(state.calls).toBe(1);
    expect(new Set(all.map((k) => k.key)).size).toBe(1);
    expect(cache.peek('t1', 1, 'seal', load)).toBe(all[0]);
    expect(cache.counters).toMatchObject({ loads: 1, misses: 50 });
  });

  it('refreshes ahead of expiry in one caller while the others keep the current key', async () => {
    const { cache, clock, state, load } = setup();
    const first = await cache.get('t1', 1, 'seal', load);
    clock.advance(950); // inside the refresh window, before expiry
    let release!: () => void;
    state.gate = new Promise((r) => (release = r));
    for (let i = 0; i < 10; i++) expect(cache.peek('t1', 1, 'seal', load)).toBe(first);
    await new Promise((r) => setTimeout(r, 0));
    expect(cache.peek('t1', 1, 'seal', load)).toBe(first); // still the current key while the refresh waits
    expect(state.calls).toBe(2); // one refresh started, not eleven
    release();
    await new Promise((r) => setTimeout(r, 0));
    const refreshed = cache.peek('t1', 1, 'seal', load)!;
    expect(refreshed).not.toBe(first);
    expect(first.key.every((b) => b === 0)).toBe(true); // the replaced key is wiped
  });

  it('jitters the TTL so that keys loaded together do not expire together', async () => {
    let r = 0;
    const randoms = [0, 0.99];
    let time = 0;
    const cache = new IntermediateKeyCache({ ttlMs: 1000, jitter: 0.5 }, classifyKmsFailure, () => time, () => randoms[r++ % 2]!);
    const load = async () => new Uint8Array(32).fill(1);
    await cache.get('a', 1, 'seal', load);
    await cache.get('b', 1, 'seal', load);
    time = 600; // past 1000 * (1 - 0.99 * 0.5), before 1000
    expect(cache.peek('a', 1, 'seal', load)).toBeDefined();
    expect(cache.peek('b', 1, 'seal', load)).toBeUndefined();
  });

  it('in an outage, opens with a stale key up to maxStaleMs and never beyond; seals only within the TTL (no grace)', async () => {
    const { cache, clock, state, load } = setup({ sealGraceMs: 0 });
    const key = await cache.get('t1', 1, 'open', load);
    clock.advance(2000); // expired
    state.fail = outage();
    await expect(cache.get('t1', 1, 'seal', load)).rejects.toBe(state.fail);
    await expect(cache.get('t1', 1, 'open', load)).resolves.toBe(key);
    expect(cache.peek('t1', 1, 'open', load)).toBe(key); // while loads fail, without another attempt
    clock.advance(5000); // beyond TTL + maxStaleMs
    await expect(cache.get('t1', 1, 'open', load)).rejects.toThrow();
    expect(cache.counters.staleServed).toBeGreaterThanOrEqual(2);
  });

  describe('sealGraceMs: writing through an outage', () => {
    function graced() {
      const events: string[] = [];
      const base = setup({ sealGraceMs: 3000 });
      const cache = new IntermediateKeyCache(
        { ttlMs: 1000, jitter: 0, refreshAheadMs: 100, maxStaleMs: 5000, sealGraceMs: 3000, breakerFailures: 3, breakerCooldownMs: 2000 },
        classifyKmsFailure,
        base.clock.now,
        () => 0.5,
        { onSealGrace: (p, v) => events.push(`grace ${p} ${v}`), onRevoked: (p) => events.push(`revoked ${p}`) },
      );
      return { ...base, cache, events };
    }

    it('seals past the TTL only after an outage failure, within the grace, counted and reported', async () => {
      const { cache, clock, state, load, events } = graced();
      const key = await cache.get('t1', 1, 'seal', load);
      clock.advance(1500); // expired, no failure yet: a seal loads
      state.fail = outage();
      await expect(cache.get('t1', 1, 'seal', load)).resolves.toBe(key); // the load failed for an outage: grace
      expect(cache.peek('t1', 1, 'seal', load)).toBe(key);
      expect(cache.counters.sealGraceServed).toBe(2);
      expect(events).toEqual(['grace t1 1', 'grace t1 1']);
      clock.advance(2600); // beyond TTL + grace
      expect(cache.peek('t1', 1, 'seal', load)).toBeUndefined();
      await expect(cache.get('t1', 1, 'seal', load)).rejects.toThrow();
    });

    it('never after the store said the version is missing (retired, shredded) or the master key was revoked', async () => {
      const { cache, clock, state, load, events } = graced();
      const key = await cache.get('t1', 1, 'seal', load);
      await cache.get('t2', 1, 'seal', load);
      clock.advance(1500);
      state.fail = new KeyNotFoundError('t1', 1);
      await expect(cache.get('t1', 1, 'seal', load)).rejects.toBe(state.fail);
      expect(key.key.every((b) => b === 0)).toBe(true); // dropped and wiped
      state.fail = outage();
      await expect(cache.get('t1', 1, 'seal', load)).rejects.toBe(state.fail); // nothing left to grace
      state.fail = revoked();
      await expect(cache.get('t2', 1, 'seal', load)).rejects.toBe(state.fail);
      state.fail = outage();
      await expect(cache.get('t2', 1, 'seal', load)).rejects.toBe(state.fail);
      expect(cache.counters.sealGraceServed).toBe(0);
      expect(events).toEqual(['revoked t2']);
    });

    it('refreshes as soon as the KMS answers again: the next seal a second later gets a fresh key', async () => {
      const { cache, clock, state, load } = graced();
      const key = await cache.get('t1', 1, 'seal', load);
      clock.advance(1500);
      state.fail = outage();
      await expect(cache.get('t1', 1, 'seal', load)).resolves.toBe(key);
      state.fail = undefined; // the KMS is back
      clock.advance(1000);
      expect(cache.peek('t1', 1, 'seal', load)).toBe(key); // still served, and a refresh starts
      await new Promise((r) => setTimeout(r, 0));
      const fresh = cache.peek('t1', 1, 'seal', load);
      expect(fresh).toBeDefined();
      expect(fresh).not.toBe(key);
    });
  });

  it('treats a disabled or deleted master key as revocation: drops the partition at once and never serves it stale', async () => {
    const { cache, clock, state, load } = setup();
    const key = await cache.get('t1', 1, 'open', load);
    const other = await cache.get('t2', 1, 'open', load);
    clock.advance(2000);
    state.fail = revoked();
    await expect(cache.get('t1', 1, 'open', load)).rejects.toBe(state.fail);
    expect(key.key.every((b) => b === 0)).toBe(true);
    expect(cache.peek('t1', 1, 'open', load)).toBeUndefined();
    expect(other.key.some((b) => b !== 0)).toBe(true); // another tenant is untouched
    expect(cache.counters.revocations).toBe(1);
  });

  it('opens a circuit breaker after repeated outage failures: loads fail at once with a typed error, then one is let through', async () => {
    const { cache, clock, state, load } = setup();
    state.fail = outage();
    for (let i = 0; i < 3; i++) await expect(cache.get('t1', 1, 'seal', load)).rejects.toBe(state.fail);
    const calls = state.calls;
    await expect(cache.get('t1', 1, 'seal', load)).rejects.toBeInstanceOf(KeyUnavailableError);
    expect(state.calls).toBe(calls); // the KMS was not asked
    clock.advance(2000);
    state.fail = undefined;
    await expect(cache.get('t1', 1, 'seal', load)).resolves.toBeDefined();
    expect(state.calls).toBe(calls + 1);
  });

  it('caps loads in flight across versions', async () => {
    let inFlight = 0;
    let most = 0;
    const cache = new IntermediateKeyCache({ maxLoadsInFlight: 2 }, classifyKmsFailure);
    const load = async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return new Uint8Array(32);
    };
    await Promise.all(Array.from({ length: 8 }, (_, v) => cache.get('t', v + 1, 'seal', load)));
    expect(most).toBe(2);
  });

  it('wipes every key on close()', async () => {
    const { cache, state, load } = setup();
    await cache.get('t1', 1, 'seal', load);
    await cache.get('t1', 2, 'seal', load);
    await cache.close();
    expect(state.handedOut.every((k) => k.every((b) => b === 0))).toBe(true);
    expect(cache.size).toBe(0);
  });

  it('classifies KMS answers: throttling and internal errors are outages, a disabled key is revocation', () => {
    expect(classifyKmsFailure(outage())).toBe('outage');
    expect(classifyKmsFailure(new KmsError('x', { kmsCode: 'InternalError' }))).toBe('outage');
    expect(classifyKmsFailure(new KmsError('x', { kmsCode: '4420' }))).toBe('outage');
    expect(classifyKmsFailure(revoked())).toBe('revoked');
    expect(classifyKmsFailure(new KmsError('x', { kmsCode: 'ResourceUnavailable.CmkNotFound' }))).toBe('revoked');
    expect(classifyKmsFailure(new KmsError('x', { kmsCode: '4550' }))).toBe('revoked');
    expect(classifyKmsFailure(new KmsError('x', { kmsCode: 'AuthFailure.SignatureFailure' }))).toBe('other');
    expect(classifyKmsFailure(new Error('x'))).toBe('other');
  });
});

describe('IntermediateKeyCache: tenants', () => {
  it("keeps one tenant's burst of versions from evicting another tenant's keys", async () => {
    const cache = new IntermediateKeyCache({ maxEntries: 20, maxEntriesPerPartition: 4 }, classifyKmsFailure);
    const load = async () => new Uint8Array(32).fill(1);
    const quiet = await cache.get('quiet', 1, 'open', load);
    for (let v = 1; v <= 30; v++) await cache.get('noisy', v, 'open', load);
    expect(cache.peek('quiet', 1, 'open', load)).toBe(quiet);
    expect(cache.versionsInUse().noisy).toEqual([27, 28, 29, 30]);
    expect(quiet.key.some((b) => b !== 0)).toBe(true);
  });
});
