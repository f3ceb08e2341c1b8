/**
 * The fleet simulation of bench/fleet.ts, small: 6 OS processes against one emulator process that
 * enforces Tencent's account quotas. Under the key hierarchy (a JSON key store shared by the
 * processes) no open fails while the KMS refuses every call, records sealed by other processes
 * included, and KMS calls do not grow with the number of records. The workers run the built
 * package (dist/, made by `npm run build` before the tests) from a transpiled copy of
 * bench/fleet-worker.ts. Phases end on counts the processes report (every process warm, every
 * process served a stale key, every process done), with generous caps: the assertions are on
 * counts and failures, never on speed.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { transformSync } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmulatorProcess, type FleetOptions, type FleetRun, runFleet, setFaults, startEmulatorProcess, TENCENT_QUOTAS } from '../../bench/fleet.ts';

const DIST = new URL('../../dist/', import.meta.url);
const PROCESSES = 6;
const TENANTS = 4;
const TENANTS_PER_PROCESS = 2;

let emulator: EmulatorProcess | undefined;
let dir = '';
let workerPath = '';

beforeAll(async () => {
  if (!existsSync(new URL('index.js', DIST))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  dir = mkdtempSync(join(tmpdir(), 'kms-envelope-fleet-test-'));
  workerPath = join(dir, 'fleet-worker.mjs');
  const source = readFileSync(new URL('../../bench/fleet-worker.ts', import.meta.url), 'utf8');
  writeFileSync(workerPath, transformSync(source, { loader: 'ts', format: 'esm', target: 'node20' }).code);
  emulator = await startEmulatorProcess(DIST);
  await setFaults(emulator, { qpsLimit: TENCENT_QUOTAS });
}, 30_000);

afterAll(async () => {
  await emulator?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function options(overrides: Pick<FleetOptions, 'label' | 'phases' | 'opsPerSecond'> & Partial<FleetOptions>): FleetOptions {
  return {
    approach: 'hierarchy',
    processes: PROCESSES,
    tenants: TENANTS,
    tenantsPerProcess: TENANTS_PER_PROCESS,
    clients: 2,
    emulator: emulator!,
    quota: TENCENT_QUOTAS,
    workerPath,
    distUrl: DIST,
    store: 'json',
    hierarchy: { ttlMs: 600_000, maxStaleMs: 3_600_000 },
    // KMS_ENVELOPE_FLEET_LOG=1 shows the phases as they go.
    ...(process.env.KMS_ENVELOPE_FLEET_LOG ? { log: (line: string) => console.error(`[${new Date().toISOString().slice(11, 23)}] ${line}`) } : {}),
    ...overrides,
  };
}

const phase = (run: FleetRun, name: string) => run.phases.find((p) => p.name === name)!;

describe('a fleet of processes under the key hierarchy (bench/fleet.ts, small)', () => {
  it('deploys without failures and opens every record while the KMS refuses every call, other processes\' records included', async () => {
    const run = await runFleet(
      options({
        label: 'hierarchy',
        opsPerSecond: 20,
        // A TTL shorter than the outage, so keys expire during it and are served stale.
        hierarchy: { ttlMs: 1_000, maxStaleMs: 600_000 },
        phases: [
          { name: 'deploy', minMs: 2_000, maxMs: 30_000, until: 'warm', shareAfter: true },
          { name: 'outage', minMs: 2_000, maxMs: 20_000, until: 'stale', outage: true },
        ],
      }),
    );
    expect(run.problems).toEqual([]);
    const deploy = phase(run, 'deploy');
    expect(deploy.ops).toBeGreaterThan(0);
    expect(deploy.failed, JSON.stringify(deploy.errors)).toBe(0);
    const outage = phase(run, 'outage');
    // The emulator did refuse: every call in the outage failed, none was throttled for the quota.
    expect(outage.kmsCalls).toBeGreaterThan(0);
    expect(outage.counters!.loadFailures).toBeGreaterThan(0);
    expect(outage.counters!.staleServed).toBeGreaterThan(0);
    expect(outage.opens).toBeGreaterThan(0);
    expect(outage.foreignOpens).toBeGreaterThan(0);
    expect(outage.openFailed, JSON.stringify(outage.errors)).toBe(0);
    expect(run.aboveQuota).toBe(false);
  }, 90_000);

  it('makes the same KMS calls for ten times the records', async () => {
    // Two phases on fresh partitions each (tenantOffset), so each pays the first use of its keys:
    // 10 operations per process, then 100.
    const run = await runFleet(
      options({
        label: 'hierarchy, records',
        opsPerSecond: 0,
        phases: [
          { name: 'few', minMs: 0, maxMs: 60_000, opLimit: 10, until: 'done', tenantOffset: 0 },
          { name: 'many', minMs: 0, maxMs: 60_000, opLimit: 100, until: 'done', tenantOffset: TENANTS },
        ],
      }),
    );
    expect(run.problems).toEqual([]);
    const few = phase(run, 'few');
    const many = phase(run, 'many');
    for (const [p, opLimit] of [
      [few, 10],
      [many, 100],
    ] as const) {
      expect(p.failed, JSON.stringify(p.errors)).toBe(0);
      expect(p.ops).toBe(PROCESSES * opLimit);
      // One Decrypt per process and partition (no TTL expires) but for the process whose new key
      // version the store kept (it uses GenerateDataKey's plaintext), one GenerateDataKey per
      // partition and per process that raced to create it: nothing per record.
      // (A process that read its own new version from the store before createVersion returned
      // once loaded it through a Decrypt too: test/hierarchy.test.ts has that race.)
      expect(p.kmsByAction.Decrypt, JSON.stringify({ calls: p.kmsByAction, throttled: p.throttled, counters: p.counters })).toBe(PROCESSES * TENANTS_PER_PROCESS - TENANTS);
      expect(p.kmsByAction.GenerateDataKey).toBeGreaterThanOrEqual(TENANTS);
      expect(p.kmsByAction.GenerateDataKey).toBeLessThanOrEqual(PROCESSES * TENANTS_PER_PROCESS);
      expect(p.kmsCalls).toBeLessThanOrEqual(2 * PROCESSES * TENANTS_PER_PROCESS);
      expect(p.throttled).toBe(0);
    }
  }, 120_000);
});
