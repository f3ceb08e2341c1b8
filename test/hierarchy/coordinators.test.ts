/**
 * The fleet coordinators against real servers (the Redis of KMS_ENVELOPE_REDIS_URL or one started
 * here, the PostgreSQL of KMS_ENVELOPE_PG_URL or one started here), one process: leases, marks,
 * the token bucket, messages; and hierarchies sharing one coordinator and one key store, as the
 * processes of a fleet do: one GenerateDataKey per version, one KMS probe while the breaker is
 * open, a shred seen by one reaching the others. The coordinator never holds a partition name.
 * Multi-process checks (a holder SIGKILLed, 8 racing processes, the coordinator dying) are in
 * coordinator-fleet.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCoordinator } from '../../src/adapters/redis.ts';
import { type FleetCoordinator, fleetBudget, FleetLink, fleetName } from '../../src/economy/coordinator.ts';
import { PostgresCoordinator } from '../../src/hierarchy/coordinators/postgres.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import type { KeyHierarchy } from '../../src/hierarchy/types.ts';
import { createEnvelope, KeyUnavailableError, KmsError, LocalKms, TencentKms } from '../../src/index.ts';
import { canonicalContext } from '../../src/core/context.ts';
import type { KeyProvider } from '../../src/kms/key-provider.ts';
import { startPostgres, type PostgresServer, uniqueTable } from '../fixtures/postgres.ts';
import { type RedisServer, startRedis } from '../fixtures/redis.ts';
import { type EmulatorFixture, useEmulator } from '../fixtures/emulator.ts';

let redisServer: RedisServer;
let pgServer: PostgresServer;
let redis: Redis;
let pool: pg.Pool;
let emulator: EmulatorFixture;

beforeAll(async () => {
  [redisServer, pgServer, emulator] = await Promise.all([startRedis(), startPostgres(), useEmulator({ alias: 'fleet-breaker' })]);
  redis = new Redis(redisServer.url);
  pool = new pg.Pool({ connectionString: pgServer.url, max: 4 });
});

afterAll(async () => {
  redis?.disconnect();
  await pool?.end();
  await Promise.all([redisServer?.stop(), pgServer?.stop(), emulator?.emulator.close()]);
});

/** A TencentKms on the emulator that retries once at once, its budget shared through `link` when given. */
function tencent(link?: FleetLink): TencentKms {
  return new TencentKms({
    keyId: emulator.keyId,
    region: 'ap-guangzhou',
    endpoint: emulator.url,
    credentials: emulator.credentials,
    retry: { limit: 1, baseDelayMs: 1, maxDelayMs: 1 },
    timeoutMs: 60_000,
    deadlineMs: 120_000,
    ...(link ? { rateLimit: { shared: fleetBudget(link) } } : {}),
  });
}

/** Requests the emulator received since its last reset, every action. */
const received = (): number => Object.values(emulator.emulator.stats().calls).reduce((n, c) => n + c, 0);

const backends: [string, () => FleetCoordinator, () => Promise<string>][] = [
  [
    'Redis',
    () => new RedisCoordinator({ client: redis, prefix: `kmse-test:${randomBytes(6).toString('hex')}:` }),
    async () => (await redis.keys('kmse-test:*')).join('\n') + (await Promise.all((await redis.keys('kmse-test:*')).filter((k) => k.endsWith('messages')).map((k) => redis.xrange(k, '-', '+')))).flat(3).join('\n'),
  ],
  [
    'PostgreSQL',
    () => new PostgresCoordinator({ client: pool, table: uniqueTable('kmse_fleet') }),
    async () => {
      const tables = (await pool.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE 'kmse_fleet_%'`)).rows.map((r: { tablename: string }) => r.tablename);
      const dumps = await Promise.all(tables.map(async (t) => JSON.stringify((await pool.query(`SELECT * FROM "${t}"`)).rows)));
      return dumps.join('\n');
    },
  ],
];

/** A LocalKms that counts its calls, can be made to fail as an outage does, and answers slowly enough for creations to race. */
function flakyKms() {
  const local = LocalKms.generate();
  const state = { generate: 0, decrypt: 0, down: false };
  const fail = (): never => {
    throw new KmsError('the KMS is down', { kmsCode: 'InternalError' });
  };
  const kms: KeyProvider = {
    id: local.id,
    async generateDataKey(request) {
      state.generate++;
      await new Promise((r) => setTimeout(r, 30));
      if (state.down) fail();
      return local.generateDataKey(request);
    },
    async decryptDataKey(request) {
      state.decrypt++;
      if (state.down) fail();
      return local.decryptDataKey(request);
    },
  };
  return { kms, state };
}

describe.each(backends)('the %s coordinator', (_name, make, dump) => {
  it('leases: one holder at a time, released only with its token, taken over once expired', async () => {
    const c = make();
    const token = await c.acquire('lease:a', 60_000);
    expect(token).toBeTypeOf('string');
    expect(await c.acquire('lease:a', 60_000)).toBeUndefined();
    await c.release('lease:a', 'not-the-token');
    expect(await c.acquire('lease:a', 60_000)).toBeUndefined();
    await c.release('lease:a', token!);
    expect(await c.acquire('lease:a', 60_000)).toBeTypeOf('string');
    expect(await c.acquire('lease:b', 100)).toBeTypeOf('string');
    let again: string | undefined;
    for (let i = 0; i < 200 && again === undefined; i++) {
      await new Promise((r) => setTimeout(r, 25));
      again = await c.acquire('lease:b', 60_000);
    }
    expect(again).toBeTypeOf('string'); // expired, taken over
  });

  it('marks, the bucket and messages', async () => {
    const c = make();
    expect(await c.marked('breaker:x')).toBe(false);
    await c.mark('breaker:x', 60_000);
    expect(await c.marked('breaker:x')).toBe(true);
    await c.unmark('breaker:x');
    expect(await c.marked('breaker:x')).toBe(false);
    // 1 a second with a burst of 3: three tokens at once, then a wait of about a second.
    expect([await c.take('bucket:y', 1, 3), await c.take('bucket:y', 1, 3), await c.take('bucket:y', 1, 3)]).toEqual([0, 0, 0]);
    const wait = await c.take('bucket:y', 1, 3);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(1000);
    const start = await c.receive('');
    expect(start.messages).toEqual([]);
    await c.publish('partition:aa');
    await c.publish('partition:bb');
    const got = await c.receive(start.cursor);
    expect(got.messages).toEqual(['partition:aa', 'partition:bb']);
    expect((await c.receive(got.cursor)).messages).toEqual([]);
  });

  describe('hierarchies sharing it (the processes of a fleet)', () => {
    let hierarchies: KeyHierarchy[] = [];
    const fleet = (n: number, coordinator: FleetCoordinator, kms: KeyProvider, store = new MemoryKeyStore()) => {
      hierarchies = Array.from({ length: n }, () => createKeyHierarchy({ kms, store, coordinator, breakerFailures: 100, breakerCooldownMs: 60_000, coordinatorTimeoutMs: 5_000 }));
      return hierarchies;
    };
    afterAll(() => Promise.all(hierarchies.map((h) => h.close())));

    it('one GenerateDataKey per partition and version across the fleet (the creation lease)', async () => {
      const { kms, state } = flakyKms();
      const members = fleet(6, make(), kms);
      await Promise.all(members.map((h) => h.warm(['tenant-a', 'tenant-b'])));
      expect(state.generate).toBe(2);
      const sealed = await createEnvelope({ hierarchy: members[0]!, partition: 'tenant-a' }).seal(new Uint8Array([1, 2, 3]));
      expect(await createEnvelope({ hierarchy: members[5]!, partition: 'tenant-a' }).open(sealed)).toEqual(new Uint8Array([1, 2, 3]));
      expect(members.reduce((n, h) => n + h.metrics().leaseWaits, 0)).toBeGreaterThan(0);
    });

    it('while the KMS fails, every call of the fleet is its probe; the others wait for its verdict, then are refused; a probe that succeeds closes it', async () => {
      const { kms, state } = flakyKms();
      const members = fleet(4, make(), kms);
      state.down = true;
      await expect(members[0]!.warm(['p0'])).rejects.toThrow(KmsError); // the outage opens the fleet breaker
      const before = state.generate;
      const tries = await Promise.allSettled(members.flatMap((h, i) => [h.warm([`p${i}-a`]), h.warm([`p${i}-b`]), h.warm([`p${i}-c`])]));
      const calls = state.generate - before;
      const probes = members.reduce((n, h) => n + h.metrics().fleetProbes, 0);
      const refused = members.reduce((n, h) => n + h.metrics().fleetBreakerRefused, 0);
      expect(tries.every((t) => t.status === 'rejected')).toBe(true);
      expect(calls).toBe(probes); // no call but the probes
      expect(refused).toBeGreaterThan(0);
      expect(tries.filter((t) => t.status === 'rejected' && t.reason instanceof KeyUnavailableError).length).toBe(refused);
      state.down = false;
      let warmed = false;
      for (let i = 0; i < 100 && !warmed; i++) {
        warmed = await members[1]!.warm(['back']).then(() => true, () => false);
        if (!warmed) await new Promise((r) => setTimeout(r, 100));
      }
      expect(warmed).toBe(true); // a probe went through and closed it
      await members[2]!.warm(['back-2']); // at once, with no probe
    });

    it('a load the fleet breaker refuses waits for the probe: after a passing failure, every process goes on once the probe succeeds', async () => {
      const { kms, state } = flakyKms();
      // The real coordinator, its writes of a mark slowed: the breaker must be open before the failure reaches its caller.
      const real = make();
      const coordinator = new Proxy(real, {
        get(target, name) {
          const value = Reflect.get(target, name, target) as unknown;
          if (typeof value !== 'function') return value;
          const method = (value as (...args: unknown[]) => unknown).bind(target);
          return name === 'mark' ? async (...args: unknown[]) => (await new Promise((r) => setTimeout(r, 200)), method(...args)) : method;
        },
      });
      const members = fleet(4, coordinator, kms);
      state.down = true;
      await expect(members[0]!.warm(['blip-0'])).rejects.toThrow(KmsError); // one failure opens the fleet breaker
      expect(await real.marked(fleetName('breaker', kms.id))).toBe(true); // open before the failure reached its caller
      state.down = false; // the KMS was fine all along
      const tries = await Promise.allSettled(members.slice(1).map((h, i) => h.warm([`blip-${i + 1}`])));
      expect(tries.map((t) => t.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
      expect(members.reduce((n, h) => n + h.metrics().fleetProbes, 0)).toBeGreaterThan(0);
      expect(members.reduce((n, h) => n + h.metrics().fleetBreakerRefused, 0)).toBe(0);
    });

    it('TencentKms down: the first failed attempt opens the fleet breaker (no retries after it), and a probe is one attempt', async () => {
      const c = make();
      emulator.emulator.setFaults({ internalErrorRate: 1 });
      try {
        // Through fleetBudget: each attempt, retries included, asks the fleet; the first failure closes the door.
        const links = [0, 1, 2].map(() => new FleetLink(c, { timeoutMs: 5_000 }));
        const budgeted = links.map((link) => tencent(link));
        const context = canonicalContext({ table: 'fleet' });
        emulator.emulator.resetStats();
        const first = await budgeted[0]!.generateDataKey({ keySpec: 'AES_256', context }).then(() => undefined, (e: unknown) => e);
        expect(first).toBeInstanceOf(Error); // its retries waited for the fleet's probes (or were them)
        const rest = await Promise.allSettled(budgeted.map((k) => k.generateDataKey({ keySpec: 'AES_256', context })));
        expect(rest.every((r) => r.status === 'rejected')).toBe(true);
        const probes = links.reduce((n, l) => n + l.counters.fleetProbes, 0);
        expect(received()).toBe(1 + probes); // the first attempt, then only the fleet's probes (one attempt each)
        // Through the hierarchy alone (no fleetBudget): a probe asks the provider for one attempt.
        const members = fleet(3, make(), tencent());
        emulator.emulator.resetStats();
        await expect(members[0]!.warm(['down-a'])).rejects.toThrow();
        const before = received();
        await Promise.allSettled(members.slice(1).map((h) => h.warm(['down-b'])));
        const hierarchyProbes = members.reduce((n, h) => n + h.metrics().fleetProbes, 0);
        expect(hierarchyProbes).toBeGreaterThan(0);
        expect(received() - before).toBe(hierarchyProbes);
      } finally {
        emulator.emulator.setFaults({});
      }
    });

    it('a shred seen by one process reaches the others, and the coordinator never holds the partition name', async () => {
      const { kms } = flakyKms();
      const members = fleet(2, make(), kms);
      const partition = 'tenant-secret-name-1';
      await Promise.all(members.map((h) => h.warm([partition])));
      await new Promise((r) => setTimeout(r, 1_200)); // both listen (the first poll takes the cursor)
      expect(members[1]!.metrics().versionsInUse[partition]).toEqual([1]);
      await members[0]!.shred(partition);
      for (let i = 0; i < 100 && members[1]!.metrics().versionsInUse[partition]; i++) await new Promise((r) => setTimeout(r, 100));
      expect(members[1]!.metrics().versionsInUse[partition]).toBeUndefined();
      expect(members[1]!.metrics().broadcastsReceived).toBeGreaterThan(0);
      const everything = await dump();
      expect(everything.length).toBeGreaterThan(0);
      expect(everything).not.toContain('tenant-secret-name');
    });
  });
});

describe('the link to a slow or failing coordinator', () => {
  /** The real Redis coordinator behind a switch: `hold` keeps each call waiting until `letGo()`, `fail` rejects. */
  function switched() {
    const real = new RedisCoordinator({ client: redis, prefix: `kmse-test:${randomBytes(6).toString('hex')}:` });
    const mode = { hold: false, fail: false };
    let held: (() => void)[] = [];
    const coordinator = Object.fromEntries(
      (['acquire', 'release', 'mark', 'marked', 'unmark', 'take', 'publish', 'receive'] as const).map((name) => [
        name,
        async (...args: unknown[]) => {
          if (mode.fail) throw new Error('connection refused');
          if (mode.hold) await new Promise<void>((resolve) => held.push(resolve));
          return (real[name] as (...a: unknown[]) => Promise<unknown>)(...args);
        },
      ]),
    ) as unknown as FleetCoordinator;
    const letGo = (): void => {
      for (const resolve of held) resolve();
      held = [];
    };
    return { real, coordinator, mode, letGo };
  }

  it('a slow answer gets the fallback without making the coordinator unreachable; timeouts in a row or a failure do; a lease granted late goes back', async () => {
    const { real, coordinator, mode, letGo } = switched();
    const link = new FleetLink(coordinator, { timeoutMs: 1_000, timeoutsBeforeFallback: 2, retryAfterMs: 600_000 });
    mode.hold = true;
    expect(await link.lease('lease:late', 600_000)).toEqual({ state: 'slow' }); // timed out: ask again, do not create alone
    expect(link.reachable).toBe(true);
    mode.hold = false;
    letGo(); // the lease is granted now, late: the link gives it back
    let again: string | undefined;
    for (let i = 0; i < 100 && again === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      again = await real.acquire('lease:late', 60_000);
    }
    expect(again).toBeTypeOf('string');
    expect(await link.take('bucket:b', 100, 10)).toBe(0); // answered in time: the count starts again
    mode.hold = true;
    await link.take('bucket:b', 100, 10);
    expect(link.reachable).toBe(true);
    await link.take('bucket:b', 100, 10);
    expect(link.reachable).toBe(false); // two timeouts in a row
    expect(link.counters.coordinatorFallbacks).toBe(3);
    mode.hold = false;
    letGo();
    const failing = new FleetLink(coordinator, { timeoutMs: 1_000, timeoutsBeforeFallback: 2, retryAfterMs: 600_000 });
    mode.fail = true;
    expect(await failing.take('bucket:c', 100, 10)).toBe(0);
    expect(failing.reachable).toBe(false); // one failure is enough
  });
});
