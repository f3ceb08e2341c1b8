/**
 * The fleet coordinators with real processes (the built package, dist/, run by
 * test/fixtures/fleet-child.mjs) against real Redis and PostgreSQL:
 * - a creation lease whose holder is SIGKILLed is released by its expiry, and taken over;
 * - 8 processes racing for the shared KMS budget: the in-process emulator enforces the fleet's
 *   share as its quota (a sliding one-second window, as Tencent counts) and answers
 *   RequestLimitExceeded above it: the count is the emulator's, not the test's clock;
 * - a coordinator that dies under load: seals and opens go on, each process on its own budget and breaker.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCoordinator } from '../../src/adapters/redis.ts';
import { PostgresCoordinator } from '../../src/hierarchy/coordinators/postgres.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createEnvelope, LocalKms } from '../../src/index.ts';
import { type EmulatorFixture, useEmulator } from '../fixtures/emulator.ts';
import { startPostgres, type PostgresServer, uniqueTable } from '../fixtures/postgres.ts';
import { type RedisServer, startRedis } from '../fixtures/redis.ts';

const CHILD = fileURLToPath(new URL('../fixtures/fleet-child.mjs', import.meta.url));
const DIST = new URL('../../dist/', import.meta.url);

let redisServer: RedisServer;
let pgServer: PostgresServer;
let emulator: EmulatorFixture;
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!existsSync(new URL('adapters/redis.js', DIST))) throw new Error('dist/ is missing: run `npm run build` first (npm run test:slow does)');
  [redisServer, pgServer, emulator] = await Promise.all([startRedis(), startPostgres(), useEmulator({ alias: 'fleet' })]);
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all([redisServer?.stop(), pgServer?.stop(), emulator?.emulator.close()]);
});

/** A child process and its JSON lines, one at a time. */
function child(config: Record<string, unknown>) {
  const proc = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(proc);
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const line = await lines.next();
    if (line.done) throw new Error(`the child exited (${proc.exitCode ?? proc.signalCode}) without a line`);
    return JSON.parse(String(line.value)) as Record<string, unknown>;
  };
  return { proc, next };
}

const backends = [
  { backend: 'redis', config: () => ({ backend: 'redis', url: redisServer.url, prefix: `kmse-fleet:${Math.random().toString(36).slice(2)}:` }), local: (c: Record<string, unknown>) => new RedisCoordinator({ client: new Redis(String(c.url)), prefix: String(c.prefix) }) },
  { backend: 'postgres', config: () => ({ backend: 'postgres', url: pgServer.url, table: uniqueTable('kmse_fleet') }), local: (c: Record<string, unknown>) => new PostgresCoordinator({ client: new pg.Pool({ connectionString: String(c.url), max: 2 }), table: String(c.table) }) },
] as const;

describe.each(backends)('the $backend coordinator with processes', ({ config, local }) => {
  it('a lease whose holder is SIGKILLed is released by its expiry and taken over', async () => {
    const c = config();
    const holder = child({ ...c, mode: 'lease', name: 'create:killed', ttlMs: 3_000 });
    expect(await holder.next()).toEqual({ held: true });
    holder.proc.kill('SIGKILL');
    const coordinator = local(c);
    expect(await coordinator.acquire('create:killed', 60_000)).toBeUndefined(); // still held: nobody released it
    let token: string | undefined;
    for (let i = 0; i < 600 && token === undefined; i++) {
      await new Promise((r) => setTimeout(r, 50));
      token = await coordinator.acquire('create:killed', 60_000);
    }
    expect(token).toBeTypeOf('string');
  });

  it('8 racing processes never take more than the fleet share of the quota in any second (counted by the emulator)', async () => {
    const c = config();
    const SHARE_QPS = 36; // 90% of a quota of 40
    emulator.emulator.resetStats();
    emulator.emulator.setFaults({ qpsLimit: { GenerateDataKey: SHARE_QPS } });
    const racers = Array.from({ length: 8 }, () =>
      child({ ...c, mode: 'bucket', calls: 12, quota: 40, share: 0.9, endpoint: emulator.url, credentials: emulator.credentials, keyId: emulator.keyId }),
    );
    for (const r of racers) expect(await r.next()).toEqual({ ready: true });
    for (const r of racers) r.proc.stdin!.write('go\n');
    const results = await Promise.all(racers.map((r) => r.next()));
    const stats = emulator.emulator.stats();
    emulator.emulator.setFaults({});
    expect(results.map((r) => r.failed)).toEqual(Array.from({ length: 8 }, () => ({})));
    expect(results.reduce((n, r) => n + Number(r.ok), 0)).toBe(96);
    expect(stats.calls.GenerateDataKey).toBe(96);
    expect(stats.faults.throttle ?? 0).toBe(0); // never above 36 in any sliding second
  });
});

describe('a coordinator that dies under load', () => {
  it('seals and opens go on, each process on its own: the coordinator never blocks them', async () => {
    const own = await startRedis({ own: true });
    const client = new Redis(own.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    const coordinator = new RedisCoordinator({ client });
    const store = new MemoryKeyStore();
    const kms = LocalKms.generate();
    const members = Array.from({ length: 3 }, () => createKeyHierarchy({ kms, store, coordinator, coordinatorTimeoutMs: 200 }));
    try {
      const work = async (round: number): Promise<void> => {
        await Promise.all(
          members.map(async (hierarchy, i) => {
            const envelope = createEnvelope({ hierarchy, partition: `t-${round}-${i % 2}` });
            const sealed = await envelope.seal(new Uint8Array([round, i]));
            expect(await envelope.open(sealed)).toEqual(new Uint8Array([round, i]));
          }),
        );
      };
      await work(1);
      expect(members.reduce((n, h) => n + h.metrics().coordinatorFallbacks, 0)).toBe(0);
      await own.stop(); // the coordinator dies
      for (let round = 2; round < 6; round++) await work(round); // new partitions: creations without a lease
      expect(members.reduce((n, h) => n + h.metrics().coordinatorFallbacks, 0)).toBeGreaterThan(0);
      expect(members.reduce((n, h) => n + h.metrics().versionsCreated, 0)).toBe(10); // every partition made once, by the store's conditional create
    } finally {
      client.disconnect();
      await Promise.all(members.map((h) => h.close()));
      await own.stop().catch(() => {});
    }
  });
});
