import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { DecryptCache, DecryptCacheIds, EncryptionCache, testing as cacheTesting } from '../../src/economy/cache.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { createEnvelope, decryptCache, encryptionCache, type EnvelopeEvent, KmsError, LocalKms, openMany, sealMany, sealStream } from '../../src/index.ts';
import { TencentKms, type TencentKmsOptions } from '../../src/kms/tencent.ts';
import { useEmulator } from '../fixtures/emulator.ts';
import { BACKENDS } from '../helpers.ts';
import { InstrumentedProvider } from '../instrumented.ts';
const { decryptCacheId } = cacheTesting;

let emulator: RunningEmulator;
let keyId: string;
beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ alias: 'cache' }));
});
afterAll(() => emulator.close());
afterEach(() => {
  vi.useRealTimers();
  emulator.setFaults({});
  emulator.resetStats();
});

// No rate limit (these tests count calls, not pace), but a cap on sockets in flight. The deadline
// counts the wait for a place in flight, and 10,000 calls queue behind 64 places: on a loaded
// machine that takes minutes, so the deadline and the attempts are long here.
const UNLIMITED = { qps: 1e6, burst: 1e6, concurrency: 64 };
const tencent = (options: TencentKmsOptions = {}) =>
  new TencentKms({
    keyId,
    region: 'ap-guangzhou',
    endpoint: emulator.url,
    credentials: emulator.credentials[0]!,
    rateLimit: UNLIMITED,
    deadlineMs: 600_000,
    timeoutMs: 60_000,
    ...options,
  });
const record = (i: number) => `row ${i}: ${'x'.repeat(1000)}`;

describe('encryption cache, counted at the emulator', () => {
  it('10,000 concurrent seals cost exactly ceil(10,000 / maxMessages) GenerateDataKey calls; without the cache, 10,000', async () => {
    const maxMessages = 300;
    const cached = createEnvelope({ kms: tencent(), cache: encryptionCache({ maxMessages }) });
    const sealed = await Promise.all(Array.from({ length: 10_000 }, (_, i) => cached.seal(record(i), { context: { table: 'users' } })));
    expect(emulator.stats().calls.GenerateDataKey).toBe(Math.ceil(10_000 / maxMessages));
    expect(await cached.openString(sealed[9_999]!)).toBe(record(9_999));
    await cached.close();
    emulator.resetStats();
    const uncached = createEnvelope({ kms: tencent() });
    await Promise.all(Array.from({ length: 10_000 }, (_, i) => uncached.seal(record(i), { context: { table: 'users' } })));
    expect(emulator.stats().calls.GenerateDataKey).toBe(10_000);
  }, 120_000);

  it('entries never cross contexts, suites or context modes', async () => {
    const provider = new InstrumentedProvider(tencent());
    const envelope = createEnvelope({ kms: provider, cache: encryptionCache() });
    for (let round = 0; round < 3; round++) {
      await envelope.seal('a', { context: { tenant: 'a' } });
      await envelope.seal('b', { context: { tenant: 'b' } });
      await envelope.seal('b', { context: { tenant: 'b' }, detachedContext: true });
    }
    expect(provider.calls.generate).toBe(3);
    const other = createEnvelope({ kms: provider, cache: encryptionCache(), suite: 'cobblestone-128' });
    await other.seal('c', { context: { tenant: 'a' } });
    expect(provider.calls.generate).toBe(4);
    await envelope.close();
    await other.close();
  });

  it('maxAge and maxBytes retire a key (fake clock)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const provider = new InstrumentedProvider(LocalKms.generate());
    const envelope = createEnvelope({ kms: provider, cache: encryptionCache({ maxAge: 60_000, maxBytes: 1000 }) });
    await envelope.seal(new Uint8Array(600));
    await envelope.seal(new Uint8Array(300));
    expect(provider.calls.generate).toBe(1);
    await envelope.seal(new Uint8Array(200)); // 1100 bytes would exceed maxBytes
    expect(provider.calls.generate).toBe(2);
    vi.advanceTimersByTime(59_999);
    await envelope.seal('still fresh');
    expect(provider.calls.generate).toBe(2);
    vi.advanceTimersByTime(1);
    await envelope.seal('too old');
    expect(provider.calls.generate).toBe(3);
    // A message larger than maxBytes gets a key of its own, never cached.
    await envelope.seal(new Uint8Array(5000));
    await envelope.seal('small again');
    expect(provider.calls.generate).toBe(4);
    await envelope.close();
  });

  it('a stream of unknown length draws on the byte budget as it goes and never exceeds it', async () => {
    const envelope = createEnvelope({ kms: LocalKms.generate(), cache: encryptionCache({ maxBytes: 50_000 }) });
    const run = (size: number, declared?: number) =>
      new Response(new Uint8Array(size))
        .body!.pipeThrough(sealStream(envelope, declared === undefined ? {} : { size: declared }))
        .pipeTo(new WritableStream());
    await run(30_000);
    await expect(run(30_000)).rejects.toMatchObject({ code: 'ERR_LIMIT_EXCEEDED' });
    // With its size declared, a stream that does not fit takes a fresh key instead.
    await run(30_000, 30_000);
    await envelope.close();
  });

  it('single flight: concurrent misses share one GenerateDataKey; its failure reaches every waiter and is not cached', async () => {
    emulator.setFaults({ script: ['internal'] });
    const envelope = createEnvelope({ kms: tencent({ retry: { limit: 0 } }), cache: encryptionCache() });
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => envelope.seal('x', { context: { a: 'b' } })));
    expect(results.every((r) => r.status === 'rejected' && (r.reason as KmsError).kmsCode === 'InternalError')).toBe(true);
    expect(emulator.stats().calls.GenerateDataKey).toBe(1);
    await envelope.seal('x', { context: { a: 'b' } });
    expect(emulator.stats().calls.GenerateDataKey).toBe(2);
    await envelope.close();
  });
});

describe('decrypt cache and batches, counted at the emulator', () => {
  it('10,000 opens of rows sealed under one data key cost one Decrypt; after the TTL, two', async () => {
    const sealer = createEnvelope({ kms: tencent(), cache: encryptionCache({ maxMessages: 10_000 }) });
    const rows = await Promise.all(Array.from({ length: 10_000 }, (_, i) => sealer.seal(record(i), { context: { table: 'users' } })));
    await sealer.close();
    vi.useFakeTimers({ toFake: ['Date'] });
    const opener = createEnvelope({ kms: tencent(), decryptCache: decryptCache({ ttl: 60_000 }) });
    emulator.resetStats();
    const opened = await Promise.all(rows.map((row) => opener.openString(row)));
    expect(opened[1234]).toBe(record(1234));
    expect(emulator.stats().calls.Decrypt).toBe(1);
    vi.advanceTimersByTime(60_000);
    await Promise.all(rows.slice(0, 100).map((row) => opener.open(row)));
    expect(emulator.stats().calls.Decrypt).toBe(2);
    await opener.close();
  }, 120_000);

  it('openMany decrypts each distinct wrapped key once, even without a decrypt cache; one bad row does not fail the batch', async () => {
    const sealer = createEnvelope({ kms: tencent(), cache: encryptionCache({ maxMessages: 500 }) });
    const rows = await Promise.all(Array.from({ length: 1000 }, (_, i) => sealer.seal(record(i))));
    await sealer.close();
    rows[500] = rows[500]!.slice(0, 10); // a damaged row
    const envelope = createEnvelope({ kms: tencent() });
    emulator.resetStats();
    const results = await openMany(envelope, rows, { concurrency: 32 });
    expect(emulator.stats().calls.Decrypt).toBe(2);
    expect(results.filter((r) => r.ok).length).toBe(999);
    expect(results[500]).toMatchObject({ ok: false, error: { code: 'ERR_HEADER_MALFORMED' } });
    expect(results[0]).toMatchObject({ ok: true });
    expect(new TextDecoder().decode((results[999] as { value: Uint8Array }).value)).toBe(record(999));
  });

  it('sealMany returns per-item results, and shares keys only through the opt-in cache', async () => {
    const provider = new InstrumentedProvider(tencent());
    const envelope = createEnvelope({ kms: provider, cache: encryptionCache() });
    // @ts-expect-error a bad item on purpose
    const results = await sealMany(envelope, ['a', { plaintext: 'b', context: { t: '1' } }, 42, new Uint8Array([1])]);
    expect(results.map((r) => r.ok)).toEqual([true, true, false, true]);
    expect(provider.calls.generate).toBe(2); // the empty context and { t: '1' }
    await envelope.close();
  });
});

describe('client-side rate limit', () => {
  it('a burst of 1,000 uncached seals against the emulator QPS limit: zero throttling errors reach the caller', async () => {
    emulator.setFaults({ qpsLimit: 400 });
    const events: EnvelopeEvent[] = [];
    const kms = tencent({ rateLimit: { qps: 300, burst: 60, concurrency: 32 }, onEvent: (e) => events.push(e) });
    const envelope = createEnvelope({ kms });
    const results = await Promise.allSettled(Array.from({ length: 1000 }, (_, i) => envelope.seal(record(i))));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(emulator.stats().calls.GenerateDataKey).toBeGreaterThanOrEqual(1000);
    expect(events.some((e) => e.type === 'throttle-wait')).toBe(true);
    // The limiter kept most calls under the server's limit (on a loaded machine calls leave the
    // event loop in bunches, and the server's one-second window sees some of them as a burst).
    expect(emulator.stats().faults.throttle ?? 0).toBeLessThan(250);
  }, 60_000);

  it('without the limiter a burst draws throttling answers from the emulator', async () => {
    // A limit low enough that even a slow machine sends the burst faster than it allows.
    emulator.setFaults({ qpsLimit: 100 });
    const envelope = createEnvelope({ kms: tencent({ retry: { limit: 0 } }) });
    const results = await Promise.allSettled(Array.from({ length: 1000 }, (_, i) => envelope.seal(record(i))));
    expect(results.filter((r) => r.status === 'rejected').length).toBeGreaterThan(0);
    expect(emulator.stats().faults.throttle).toBeGreaterThan(0);
  }, 60_000);
});

describe('events, wiping and close()', () => {
  it('reports kms calls, cache hits, misses and evictions, and retries', async () => {
    const events: EnvelopeEvent[] = [];
    emulator.setFaults({ script: ['throttle'] });
    const kms = tencent({ retry: { limit: 2, baseDelayMs: 1 }, onEvent: (e) => events.push(e) });
    const envelope = createEnvelope({ kms, cache: encryptionCache({ maxMessages: 2 }), decryptCache: decryptCache(), onEvent: (e) => events.push(e) });
    const sealed = await envelope.seal('1');
    await envelope.seal('2');
    await envelope.seal('3');
    await envelope.open(sealed);
    await envelope.open(sealed);
    // A decrypt-cache hit counts even when the message then fails to open.
    const tampered = sealed.slice();
    tampered[tampered.length - 1]! ^= 1;
    const hitsBefore = events.filter((e) => e.type === 'cache-hit' && e.cache === 'decrypt').length;
    await expect(envelope.open(tampered)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    expect(events.filter((e) => e.type === 'cache-hit' && e.cache === 'decrypt').length).toBe(hitsBefore + 1);
    await envelope.close();
    const types = events.map((e) => ('cache' in e ? `${e.type}:${e.cache}` : e.type));
    expect(types).toContain('retry');
    expect(types).toContain('cache-hit:encrypt');
    expect(types).toContain('cache-miss:encrypt');
    expect(types).toContain('cache-evict:encrypt');
    expect(types).toContain('cache-hit:decrypt');
    expect(events.find((e) => e.type === 'kms-call' && e.action === 'Decrypt')).toMatchObject({ ok: true, provider: 'tencent' });
    expect(events.filter((e) => e.type === 'kms-call' && e.action === 'GenerateDataKey').length).toBe(2);
  });

  it('a throwing listener does not break encryption', async () => {
    const envelope = createEnvelope({ kms: LocalKms.generate(), cache: encryptionCache(), onEvent: () => { throw new Error('metrics down'); } });
    expect(await envelope.openString(await envelope.seal('still works'))).toBe('still works');
  });

  it('cached data keys are wiped on eviction and on close(), and kept until then', async () => {
    const provider = new InstrumentedProvider(LocalKms.generate());
    const envelope = createEnvelope({ kms: provider, cache: encryptionCache({ maxMessages: 2, maxEntries: 1 }) });
    await envelope.seal('1', { context: { a: '1' } });
    await envelope.seal('2', { context: { a: '1' } });
    const [first] = provider.handedOut;
    expect(first!.some((b) => b !== 0)).toBe(true); // still cached
    await envelope.seal('3', { context: { a: '1' } }); // spent after 2 messages: evicted
    expect(first!.every((b) => b === 0)).toBe(true);
    await envelope.seal('4', { context: { a: '2' } }); // maxEntries 1: the { a: '1' } key goes
    expect(provider.handedOut[1]!.every((b) => b === 0)).toBe(true);
    await envelope[Symbol.asyncDispose]();
    expect(provider.allWiped()).toBe(true);
  });

  it('DecryptCache wipes what it holds (keys and their HKDF states) on expiry and close', () => {
    let now = 0;
    const cache = new DecryptCache({ ttl: 10 }, () => {}, () => now);
    const a = new Uint8Array(32).fill(1);
    const b = new Uint8Array(32).fill(2);
    const stateA = [new Uint8Array(64).fill(3), new Uint8Array(64).fill(4)] as const;
    const stateB = [new Uint8Array(64).fill(5), new Uint8Array(64).fill(6)] as const;
    cache.set('a', a, stateA);
    cache.set('b', b, stateB);
    const copy = cache.get('a')!;
    expect(copy).toEqual({ key: new Uint8Array(32).fill(1), keyState: undefined, borrowed: false });
    expect(copy.key).not.toBe(a); // a copy
    const borrowed = cache.get('a', true)!;
    expect(borrowed.borrowed).toBe(true);
    expect(borrowed.key).toBe(a); // the cache's own, with its state
    expect(borrowed.keyState).toBe(stateA);
    now = 10;
    expect(cache.get('a')).toBeUndefined();
    expect([a, ...stateA].every((x) => x.every((byte) => byte === 0))).toBe(true);
    cache.close();
    expect([b, ...stateB].every((x) => x.every((byte) => byte === 0))).toBe(true);
  });

  it('EncryptionCache lends its own key and state only when asked to (tryAcquire with borrow)', async () => {
    const cache = new EncryptionCache<null>({}, () => {});
    const key = new Uint8Array(32).fill(7);
    const keyState = [new Uint8Array(64).fill(8), new Uint8Array(64).fill(9)] as const;
    await cache.acquire('p', 1, async () => ({ key, keyState, extra: null }));
    const borrowed = cache.tryAcquire('p', 1, true)!;
    expect([borrowed.borrowed, borrowed.key === key, borrowed.keyState === keyState]).toEqual([true, true, true]);
    const copied = cache.tryAcquire('p', 1)!;
    expect([copied.borrowed, copied.key === key, copied.keyState![0] === keyState[0]]).toEqual([false, false, false]);
    expect(copied.key).toEqual(key);
    await cache.close();
  });

  it('EncryptionCache wipes keys and their HKDF states when it retires them', async () => {
    const cache = new EncryptionCache<null>({ maxMessages: 1 }, () => {});
    const made: Uint8Array[] = [];
    const generate = async () => {
      const key = new Uint8Array(32).fill(7);
      const keyState = [new Uint8Array(64).fill(8), new Uint8Array(64).fill(9)] as const;
      made.push(key, ...keyState);
      return { key, keyState, extra: null };
    };
    const lease = await cache.acquire('p', 1, generate);
    expect(lease.keyState).toEqual([new Uint8Array(64).fill(8), new Uint8Array(64).fill(9)]);
    expect(lease.keyState![1]).not.toBe(made[2]); // a copy
    expect(lease.borrowed).toBe(false);
    await cache.acquire('p', 1, generate); // the first key is spent: retired
    expect(made.slice(0, 3).every((x) => x.every((byte) => byte === 0))).toBe(true);
    await cache.close();
    expect(made.every((x) => x.every((byte) => byte === 0))).toBe(true);
  });

  it('EncryptionCache.close waits for a generation under way and wipes its result', async () => {
    const cache = new EncryptionCache<null>({}, () => {});
    let resolve!: (v: { key: Uint8Array; extra: null }) => void;
    const key = new Uint8Array(32).fill(7);
    const pending = cache.acquire('p', 1, () => new Promise((r) => (resolve = r)));
    const closing = cache.close();
    resolve({ key, extra: null });
    await closing;
    await expect(pending).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(key.every((x) => x === 0)).toBe(true);
  });

  it('a listener that seals and opens again from inside a hit event cannot spoil the key lent to the call it interrupts', async () => {
    // Listeners run only once a lent cached key is done with: here they spend the key (two more
    // seals retire it, which wipes it) and let the decrypt cache's entry expire and be dropped.
    let reentered = false;
    const inner: Promise<unknown>[] = [];
    let envelope: ReturnType<typeof createEnvelope>;
    const onEvent = (event: EnvelopeEvent): void => {
      if (event.type !== 'cache-hit' || reentered) return;
      reentered = true;
      if (event.cache === 'encrypt') inner.push(envelope.seal('inner 1'), envelope.seal('inner 2'));
      else {
        const until = Date.now() + 5; // past the decrypt cache's ttl
        while (Date.now() < until);
        inner.push(envelope.open(first!));
      }
      reentered = false;
    };
    envelope = createEnvelope({ kms: new InstrumentedProvider(), cache: encryptionCache({ maxMessages: 2 }), decryptCache: decryptCache({ ttl: 2 }), onEvent });
    const first: Uint8Array | undefined = await envelope.seal('first');
    const sealed = await envelope.seal('outer'); // a cache hit: the listener spends the key meanwhile
    await Promise.all(inner);
    expect(await envelope.openString(sealed)).toBe('outer');
    expect(await envelope.openString(sealed)).toBe('outer'); // a decrypt-cache hit: the listener expires it
    await Promise.all(inner);
    await envelope.close();
  });

  it('close() drains work in flight, then refuses more with ERR_CLOSED', async () => {
    emulator.setFaults({ latencyMs: 200 });
    const envelope = createEnvelope({ kms: tencent(), cache: encryptionCache() });
    const inFlight = envelope.seal('slow');
    await new Promise((r) => setTimeout(r, 20));
    await Promise.all([envelope.close(), envelope.close()]); // both wait, both finish
    await expect(inFlight).resolves.toBeInstanceOf(Uint8Array);
    await expect(envelope.seal('late')).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  });
});

describe('decrypt cache ids', () => {
  it('the memo gives the id decryptCacheId computes, for any sequence of wrapped keys and contexts', () => {
    const backend = BACKENDS[0]!;
    const ids = new DecryptCacheIds(backend);
    const part = fc.uint8Array({ maxLength: 6 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(1, 2), part, part), { minLength: 1, maxLength: 30 }), (calls) => {
        for (const [suite, wrapped, context] of calls) {
          const expected = decryptCacheId(backend, [Uint8Array.of(suite), wrapped, context]);
          expect(ids.id(suite, wrapped, context)).toBe(expected);
          // The memo keeps its own copy of the wrapped key: changing the caller's changes nothing.
          wrapped.fill(0xee);
          expect(ids.id(suite, wrapped, context)).toBe(decryptCacheId(backend, [Uint8Array.of(suite), wrapped, context]));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('DecryptCache eviction', () => {
  it('evicts the least recently used key, as a reference LRU does, for any sequence of gets and sets', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.constantFrom('a', 'b', 'c', 'd', 'e')), { maxLength: 60 }), (steps) => {
        const cache = new DecryptCache({ ttl: 2 ** 40, maxEntries: 3 }, () => {});
        const model: string[] = []; // least recent first
        const touch = (id: string): void => {
          model.splice(model.indexOf(id), 1);
          model.push(id);
        };
        for (const [isSet, id] of steps) {
          if (isSet) {
            cache.set(id, new Uint8Array(32).fill(id.charCodeAt(0)));
            if (model.includes(id)) model.splice(model.indexOf(id), 1);
            model.push(id);
            if (model.length > 3) model.shift();
          } else {
            const got = cache.get(id, steps.length % 2 === 0);
            expect(got !== undefined).toBe(model.includes(id));
            if (got) {
              expect(got.key[0]).toBe(id.charCodeAt(0));
              touch(id);
            }
          }
        }
        expect(cache.size).toBe(model.length);
      }),
      { numRuns: 500, examples: [[[[true, 'a'], [false, 'a'], [true, 'b'], [false, 'a'], [true, 'c'], [true, 'd'], [false, 'a']]]] },
    );
  });
});
