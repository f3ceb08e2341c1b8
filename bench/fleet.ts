/**
 * `npm run bench:fleet`: a fleet of OS processes (child_process.fork, 50 by default) sealing and
 * opening small records against ONE KMS emulator in its own process, which enforces Tencent's
 * account quotas (GenerateDataKey 100/s, Decrypt 300/s, ReEncrypt 100/s) and answers past them with
 * the real throttling error (RequestLimitExceeded). Every TencentKms takes
 * `rateLimit: { fleet: { processes: N } }`.
 *
 * Phases: deploy (every process starts at once, behind a barrier), steady, steady with ten times
 * the records, outage (the emulator refuses every call for 30 s, set through its control
 * endpoint, then recovers), recovery. Run for
 * the key hierarchy (a key store shared by the fleet, each process several partitions, TTL shorter
 * than the run, maxStaleMs above the outage) and, in the same run, for today's per-process caches
 * (`createEnvelope({ kms, cache: encryptionCache(), decryptCache: decryptCache() })`, a context per table). After deploy
 * each process hands a sample of its records to the others that serve the same tenants, so opens
 * include records sealed by other processes before the outage. The second steady phase, as long
 * as the first, seals and opens ten times the records: what KMS calls do with the number of records.
 *
 * One line per phase and approach:
 *   fleet <phase> (<approach>): ops N/s, failed F, kms calls K (throttled T), p99 L ms
 * where KMS calls are counted at the emulator (GET /__emulator/stats, delta over the phase) and
 * throttled are its RequestLimitExceeded answers. The quota check counts, per action, the calls
 * the fleet sent in every sliding 1-second window (each worker logs each request it sends, through
 * the `fetch` it gives TencentKms), and the emulator's counts sampled each second.
 *
 * Since issue 24: 20 processes x 10 library instances (each instance its own TencentKms, caches,
 * hierarchy and coordinator client; one pg Pool of 3 connections per process, shared by its
 * instances as a deployment shares its pool), a PostgreSQL key store (KMS_ENVELOPE_PG_URL or a
 * throwaway cluster), a coordinator (`--coordinator redis`: a redis-server of the bench's own on a
 * free port; `postgres`: the key store's database; `none`), a 60-second outage and, with Redis,
 * a coordinator-down phase (redis-server SIGKILLed for 30 s under load, then started again on the
 * same port). maxStaleMs and sealGraceMs are set to the outage plus the TTL plus 10 s. Besides the
 * lines above it prints `fleet deploy (hierarchy): GenerateDataKey G for V key versions` (the
 * emulator's GenerateDataKey count during deploy, versions the store kept) and `fleet outage
 * (hierarchy): kms calls per second fleet-wide: max M`: the larger of the busiest sliding 1-second
 * window of the requests the workers sent while the emulator refused every call, and the most
 * calls the emulator refused between two of its stats samples (about 1 s apart); calls already
 * sent when the KMS went down count.
 *
 * Flags: --processes N (default 20), --instances N (default 10), --store postgres|sqlite|json
 * (default postgres), --coordinator redis|postgres|none (default redis), --outage-seconds N
 * (default 60), --coordinator-timeout-ms N (default: the library's), --only hierarchy|per (one approach), --quick (shorter phases, outage 12 s: a
 * smoke run, not the numbers of BENCHMARKS.md).
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { type AddressInfo, connect, createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as HierarchyLibrary from '../src/hierarchy.ts';
import { startPostgres as startBenchPostgres } from './postgres-process.ts';
import type { FaultOptions } from '../src/tools/emulator/types.ts';
import type { Approach, FromWorker, HierarchyCounters, PhaseReport, SharedRecord, ToWorker, WorkerConfig, WorkerStatus } from './fleet-worker.ts';

/** As in fleet-worker.ts (not imported: that module runs a worker when loaded). */
const KMS_ACTIONS = ['GenerateDataKey', 'Decrypt', 'ReEncrypt', 'other'] as const;
const OUTCOMES = ['ok', 'throttled', 'error', 'network'] as const;

/** Tencent's per-account quotas, per second. */
export const TENCENT_QUOTAS: Record<string, number> = { GenerateDataKey: 100, Decrypt: 300, ReEncrypt: 100 };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The emulator, in its own process (the CLI from dist/), and its control endpoint.

export interface EmulatorProcess {
  url: string;
  secretId: string;
  secretKey: string;
  keyId: string;
  stop(): Promise<void>;
}

/** Starts `kms-envelope emulator` from the built package; resolves once it printed its address, credentials and key. */
export async function startEmulatorProcess(distUrl: URL, options: { priority?: number } = {}): Promise<EmulatorProcess & { priority: number | undefined }> {
  const cli = fileURLToPath(new URL('tools/cli.js', distUrl));
  const child = spawn(process.execPath, [cli, 'emulator', '--host', '127.0.0.1', '--key-alias', 'fleet'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let priority: number | undefined;
  if (options.priority !== undefined && child.pid !== undefined) {
    try {
      setPriority(child.pid, options.priority);
      priority = options.priority;
    } catch {
      // not allowed (a negative niceness needs privileges): it runs at the default priority
    }
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    if (await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)])) return;
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(5_000)]);
  };
  try {
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async (prefix: string): Promise<string> => {
      const line = await Promise.race([lines.next(), sleep(15_000).then(() => undefined)]);
      const text = line && !line.done ? String(line.value) : undefined;
      if (!text?.startsWith(prefix)) throw new Error(`the emulator did not print "${prefix}..." (got ${JSON.stringify(text)})`);
      return text.slice(prefix.length);
    };
    const url = await next('listening on ');
    const secretId = await next('secret id: ');
    const secretKey = await next('secret key: ');
    const keyId = await next('key id: ');
    return { url, secretId, secretKey, keyId, stop, priority };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function control(emulator: EmulatorProcess, what: 'faults' | 'stats', body?: FaultOptions): Promise<unknown> {
  const response = await fetch(`${emulator.url}/__emulator/${what}`, {
    method: body ? 'POST' : 'GET',
    headers: { Authorization: `Bearer ${emulator.secretKey}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`emulator ${what}: HTTP ${response.status} ${text}`);
  return JSON.parse(text);
}

export function setFaults(emulator: EmulatorProcess, faults: FaultOptions): Promise<unknown> {
  return control(emulator, 'faults', faults);
}

interface StatsSnapshot {
  /** Date.now() when the answer came. */
  at: number;
  calls: Record<string, number>;
  throttled: number;
  /** Calls the emulator refused with an injected fault other than throttling (the outage's). */
  refused: number;
}

async function snapshot(emulator: EmulatorProcess): Promise<StatsSnapshot> {
  const stats = (await control(emulator, 'stats')) as { calls: Record<string, number>; faults: Record<string, number> };
  const refused = Object.entries(stats.faults).reduce((sum, [kind, n]) => (kind === 'throttle' ? sum : sum + n), 0);
  return { at: Date.now(), calls: stats.calls, throttled: stats.faults.throttle ?? 0, refused };
}

function delta(before: StatsSnapshot, after: StatsSnapshot): { calls: Record<string, number>; total: number; throttled: number } {
  const calls: Record<string, number> = {};
  let total = 0;
  for (const [action, n] of Object.entries(after.calls)) {
    const d = n - (before.calls[action] ?? 0);
    if (d) calls[action] = d;
    total += d;
  }
  return { calls, total, throttled: after.throttled - before.throttled };
}

// ---------------------------------------------------------------------------------------------
// One fleet run.

export interface PhaseSpec {
  name: string;
  /** The phase lasts at least this long, ms... */
  minMs: number;
  /** ...and at most this long, whatever `until` says. */
  maxMs: number;
  /** The emulator refuses every call during the phase (`outageFaults`). */
  outage?: boolean;
  /** Each process starts at most this many operations in the phase (default: no limit but time). */
  opLimit?: number;
  /**
   * Also wait, up to maxMs, until every process: has sealed and opened in each of its tenants
   * ('warm'); has been served a stale key in this phase ('stale'); has ended its opLimit operations ('done').
   */
  until?: 'warm' | 'stale' | 'done';
  /** After the phase, each process hands a sample of its records to the others that serve the same tenants. */
  shareAfter?: boolean;
  /**
   * From this phase on, the processes work on other tenants: tenant names shifted by this many
   * (fresh partitions, so a phase pays the same first use as the one before).
   */
  tenantOffset?: number;
  /** The target rate in this phase is this many times `opsPerSecond`. */
  rateFactor?: number;
  /** The coordinator (Redis) is stopped during the phase and started again after it. */
  coordinatorDown?: boolean;
}

/** A coordinator server the bench can stop and start again (on the same port). */
export interface CoordinatorServer {
  kind: 'redis' | 'postgres';
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export interface FleetOptions {
  /** The approach's name in the printed lines, e.g. `hierarchy`. */
  label: string;
  approach: Approach;
  processes: number;
  tenants: number;
  tenantsPerProcess: number;
  /** Per process. 0: as fast as `clients` go (with an opLimit). */
  opsPerSecond: number;
  clients: number;
  valueBytes?: number;
  sampleSize?: number;
  phases: PhaseSpec[];
  emulator: EmulatorProcess;
  /** The quotas the emulator enforces (and the check compares with). */
  quota: Record<string, number>;
  /** What the emulator does during an outage phase; default every call answered InternalError. */
  outageFaults?: FaultOptions;
  /** The compiled worker (fleet-worker.js). */
  workerPath: string;
  /** The built package, dist/ (file: URL with a trailing slash). */
  distUrl: URL;
  store?: 'sqlite' | 'json' | 'postgres';
  /** The PostgreSQL server of the key store (store 'postgres') and of the PostgreSQL coordinator. */
  postgresUrl?: string;
  /** Library instances per process (default 1); the quota share is per instance. */
  instances?: number;
  coordinator?: CoordinatorServer;
  hierarchy?: { ttlMs: number; maxStaleMs: number; sealGraceMs?: number; coordinatorTimeoutMs?: number };
  /** Progress (stderr in the bench). */
  log?: (line: string) => void;
}

export interface PhaseResult {
  name: string;
  durationMs: number;
  ops: number;
  failed: number;
  seals: number;
  sealFailed: number;
  opens: number;
  openFailed: number;
  foreignOpens: number;
  foreignOpenFailed: number;
  errors: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  /** Calls at the emulator during the phase (stats delta), per action and in all, and its RequestLimitExceeded answers. */
  kmsCalls: number;
  kmsByAction: Record<string, number>;
  throttled: number;
  /** Summed over the processes (hierarchy). */
  counters: HierarchyCounters | undefined;
}

export interface QuotaCheck {
  action: string;
  quota: number;
  /** The most calls the fleet sent in any sliding 1-second window (workers' logs), throttled ones included. */
  maxSent: number;
  /** The most answered without error in any sliding 1-second window. */
  maxAnswered: number;
  /** The most calls the emulator counted between two stats samples about a second apart, and that interval. */
  maxSampled: number;
  sampledIntervalMs: number;
}

export interface FleetRun {
  label: string;
  approach: Approach;
  processes: number;
  phases: PhaseResult[];
  quota: QuotaCheck[];
  /** Any action's maxSent above its quota. */
  aboveQuota: boolean;
  /** The most KMS requests (every action) the fleet sent in any 1-second window of each phase. */
  maxPerSecond: Record<string, number>;
  /** KMS requests in the workers' logs, and calls the emulator counted over the same run: they should agree. */
  loggedCalls: number;
  emulatorCalls: number;
  /** Worker processes that failed to start or report. */
  problems: string[];
}

interface Worker {
  id: number;
  child: ChildProcess;
  tenants: string[];
  exited: Promise<void>;
  status: WorkerStatus | undefined;
  report: Extract<FromWorker, { type: 'report' }> | undefined;
  sample: SharedRecord[] | undefined;
  ready: boolean;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The most entries of `times` (sorted, ms) in any window [t, t + 1000). */
function busiestSecond(times: number[]): number {
  let best = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (j < times.length && times[j]! < times[i]! + 1000) j++;
    best = Math.max(best, j - i);
  }
  return best;
}

/** Creates the shared store's file (SQLite: WAL mode and the table) or table (PostgreSQL) before the workers open it. */
async function prepareStore(kind: 'sqlite' | 'json' | 'postgres', path: string, distUrl: URL, table?: string): Promise<void> {
  if (kind === 'postgres') {
    const nodeLib = (await import(new URL('hierarchy.js', distUrl).href)) as typeof HierarchyLibrary;
    const pg = createRequire(new URL('../package.json', distUrl))('pg') as { Pool: new (o: object) => HierarchyLibrary.PostgresQueryable & { end(): Promise<void> } };
    const pool = new pg.Pool({ connectionString: path, max: 1 });
    try {
      await new nodeLib.PostgresKeyStore({ client: pool, table }).init();
      await new nodeLib.PostgresCoordinator({ client: pool, table: `${table}_fleet` }).init();
    } finally {
      await pool.end();
    }
    return;
  }
  if (kind !== 'sqlite') return;
  const nodeLib = (await import(new URL('hierarchy.js', distUrl).href)) as typeof HierarchyLibrary;
  const require = createRequire(new URL('../package.json', distUrl));
  const Database = require('better-sqlite3') as new (path: string) => HierarchyLibrary.SqliteDatabase & { pragma(s: string): unknown; close(): void };
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  new nodeLib.SqliteKeyStore({ database: db });
  db.close();
}

export async function runFleet(options: FleetOptions): Promise<FleetRun> {
  const log = options.log ?? (() => {});
  const { emulator, processes } = options;
  const storeKind = options.store ?? 'sqlite';
  const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-fleet-'));
  const storeTable = `kmse_bench_fleet_${process.pid}_${Date.now().toString(36)}`;
  const storePath = storeKind === 'postgres' ? options.postgresUrl! : join(dir, storeKind === 'sqlite' ? 'keys.sqlite' : 'keys.json');
  const coordinator = options.coordinator;
  const tenantName = (i: number): string => `t${String(i).padStart(2, '0')}`;
  const tenantsOf = (id: number, offset = 0): string[] =>
    Array.from({ length: options.tenantsPerProcess }, (_, j) => tenantName(((id * options.tenantsPerProcess + j) % options.tenants) + offset));
  const plannedMs = options.phases.reduce((sum, p) => sum + p.maxMs, 0);
  const workers: Worker[] = [];
  const problems: string[] = [];
  const samples: StatsSnapshot[] = [];
  let sampling = true;
  let sampler: Promise<void> = Promise.resolve();
  try {
    if (options.approach === 'hierarchy') await prepareStore(storeKind, storePath, options.distUrl, storeTable);
    // Deploy: every process is started at once.
    for (let id = 0; id < processes; id++) {
      const tenants = tenantsOf(id);
      const config: WorkerConfig = {
        id,
        approach: options.approach,
        processes: processes * (options.instances ?? 1),
        instances: options.instances ?? 1,
        ...(coordinator && options.approach === 'hierarchy'
          ? { coordinator: { kind: coordinator.kind, url: coordinator.kind === 'redis' ? coordinator.url : options.postgresUrl!, name: coordinator.kind === 'redis' ? storeTable : `${storeTable}_fleet` } }
          : {}),
        tenants,
        distUrl: options.distUrl.href,
        emulator: { url: emulator.url, secretId: emulator.secretId, secretKey: emulator.secretKey, keyId: emulator.keyId },
        ...(options.approach === 'hierarchy' ? { store: { kind: storeKind, path: storePath, table: storeTable }, hierarchy: options.hierarchy ?? { ttlMs: 600_000, maxStaleMs: 3_600_000 } } : {}),
        opsPerSecond: options.opsPerSecond,
        clients: options.clients,
        valueBytes: options.valueBytes ?? 32,
        sampleSize: options.sampleSize ?? 8,
        maxRunMs: plannedMs + 120_000,
      };
      const child = fork(options.workerPath, [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
      const worker: Worker = { id, child, tenants, exited: new Promise((resolve) => child.once('exit', () => resolve())), status: undefined, report: undefined, sample: undefined, ready: false };
      child.on('message', (message: FromWorker) => {
        if (message.type === 'ready') worker.ready = true;
        else if (message.type === 'status') worker.status = message;
        else if (message.type === 'report') worker.report = message;
        else if (message.type === 'sample') worker.sample = message.records;
        else if (message.type === 'fatal') problems.push(`process ${id}: ${message.message}`);
      });
      child.on('error', (error) => problems.push(`process ${id}: ${error.message}`));
      workers.push(worker);
    }
    const spawnStart = Date.now();
    const readyCount = (): number => workers.filter((w) => w.ready).length;
    while (readyCount() < processes && Date.now() - spawnStart < 180_000 && problems.length === 0) await sleep(20);
    if (readyCount() < processes) throw new Error(`only ${readyCount()} of ${processes} processes started: ${problems.join('; ')}`);
    log(`${options.label}: ${processes} processes ready in ${Date.now() - spawnStart} ms`);

    const broadcast = (message: ToWorker): void => {
      for (const w of workers) if (w.child.connected) w.child.send(message);
    };

    // The emulator's counts, sampled about every second, for the per-second check on its side.
    samples.push(await snapshot(emulator));
    sampler = (async () => {
      while (sampling) {
        await sleep(1000 - ((Date.now() - samples[0]!.at) % 1000));
        if (!sampling) break;
        try {
          samples.push(await snapshot(emulator));
        } catch {
          // a missed sample widens one interval; the check reports the interval
        }
      }
    })();

    const boundaries: { at: number; stats: StatsSnapshot }[] = [];
    /** While the emulator refused every call (the outage phase's line counts only these requests). */
    const outageWindow = { from: 0, to: 0 };
    for (const [index, phase] of options.phases.entries()) {
      if (phase.outage) {
        await setFaults(emulator, { qpsLimit: options.quota, ...(options.outageFaults ?? { internalErrorRate: 1 }) });
        outageWindow.from = Date.now();
      }
      if (phase.coordinatorDown) await coordinator?.stop();
      const stats = await snapshot(emulator);
      boundaries.push({ at: Date.now(), stats });
      for (const w of workers) w.status = undefined;
      for (const w of workers) {
        if (phase.tenantOffset !== undefined) w.tenants = tenantsOf(w.id, phase.tenantOffset);
        const message: ToWorker = {
          type: 'phase',
          index,
          name: phase.name,
          opLimit: phase.opLimit ?? Number.MAX_SAFE_INTEGER,
          ...(phase.tenantOffset === undefined ? {} : { tenants: w.tenants }),
          ...(phase.rateFactor === undefined ? {} : { opsPerSecond: options.opsPerSecond * phase.rateFactor }),
        };
        if (w.child.connected) w.child.send(message);
      }
      log(`${options.label}: ${phase.name}${phase.outage ? ' (the emulator refuses every call)' : ''}`);
      const start = Date.now();
      const met = (): boolean => {
        if (!phase.until) return true;
        return workers.every((w) => {
          const s = w.status;
          if (!s || s.phase !== index) return false;
          return phase.until === 'warm' ? s.warm : phase.until === 'stale' ? s.staleServed > 0 : s.done;
        });
      };
      while (Date.now() - start < phase.maxMs && !(Date.now() - start >= phase.minMs && met())) await sleep(25);
      if (!met()) log(`${options.label}: ${phase.name} ended after ${phase.maxMs} ms before every process was ${phase.until}`);
      if (phase.outage) {
        outageWindow.to = Date.now();
        await setFaults(emulator, { qpsLimit: options.quota });
      }
      if (phase.coordinatorDown) await coordinator?.start();
      if (phase.shareAfter) {
        for (const w of workers) w.sample = undefined;
        broadcast({ type: 'sample' });
        const asked = Date.now();
        while (workers.some((w) => w.sample === undefined) && Date.now() - asked < 30_000) await sleep(10);
        const all = workers.flatMap((w) => w.sample ?? []);
        let handed = 0;
        for (const w of workers) {
          const records = all.filter((r) => r.from !== w.id && w.tenants.includes(r.tenant)).slice(0, 2_000);
          handed += records.length;
          if (w.child.connected) w.child.send({ type: 'pool', records } satisfies ToWorker);
        }
        log(`${options.label}: ${all.length} records sampled, ${handed} handed to other processes of the same tenants`);
      }
    }
    const endStats = await snapshot(emulator);
    boundaries.push({ at: Date.now(), stats: endStats });
    broadcast({ type: 'stop' });
    const stopped = Date.now();
    while (workers.some((w) => !w.report && w.child.exitCode === null) && Date.now() - stopped < 45_000) await sleep(20);
    sampling = false;
    await sampler;
    for (const w of workers) if (!w.report) problems.push(`process ${w.id} sent no report (exit ${w.child.exitCode ?? w.child.signalCode})`);
    // Calls the processes made after the last phase (operations under way at the stop) count in
    // the comparison with their logs, not in any phase.
    const finalStats = await snapshot(emulator);

    // Per phase: the workers' operations (counted in the phase they ended in) and the emulator's counts.
    const phases: PhaseResult[] = options.phases.map((spec, index) => {
      const reports = workers.map((w) => w.report?.phases[index]).filter((p): p is PhaseReport => p !== undefined);
      const sum = (key: 'seals' | 'sealFailed' | 'opens' | 'openFailed' | 'foreignOpens' | 'foreignOpenFailed'): number => reports.reduce((s, r) => s + r[key], 0);
      const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
      const errors: Record<string, number> = {};
      for (const r of reports) for (const [code, n] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + n;
      let counters: HierarchyCounters | undefined;
      for (const r of reports) {
        if (!r.counters) continue;
        const sum: HierarchyCounters = (counters ??= Object.fromEntries(Object.keys(r.counters).map((k) => [k, 0])) as unknown as HierarchyCounters);
        for (const key of Object.keys(sum) as (keyof HierarchyCounters)[]) sum[key] += r.counters[key];
      }
      const d = delta(boundaries[index]!.stats, boundaries[index + 1]!.stats);
      const seals = sum('seals');
      const opens = sum('opens');
      return {
        name: spec.name,
        durationMs: boundaries[index + 1]!.at - boundaries[index]!.at,
        ops: seals + opens,
        failed: sum('sealFailed') + sum('openFailed'),
        seals,
        sealFailed: sum('sealFailed'),
        opens,
        openFailed: sum('openFailed'),
        foreignOpens: sum('foreignOpens'),
        foreignOpenFailed: sum('foreignOpenFailed'),
        errors,
        p50Ms: quantile(latencies, 0.5),
        p99Ms: quantile(latencies, 0.99),
        kmsCalls: d.total,
        kmsByAction: d.calls,
        throttled: d.throttled,
        counters,
      };
    });

    // The quota check: every request the fleet sent, per action, in sliding 1-second windows.
    const sent = new Map<string, number[]>();
    const answered = new Map<string, number[]>();
    let loggedCalls = 0;
    for (const w of workers) {
      const entries = w.report?.kmsLog ?? [];
      for (let i = 0; i + 2 < entries.length; i += 3) {
        const action = KMS_ACTIONS[entries[i + 1]!] ?? 'other';
        loggedCalls++;
        (sent.get(action) ?? sent.set(action, []).get(action)!).push(entries[i]!);
        if (OUTCOMES[entries[i + 2]!] === 'ok') (answered.get(action) ?? answered.set(action, []).get(action)!).push(entries[i]!);
      }
    }
    const quota: QuotaCheck[] = Object.entries(options.quota).map(([action, limit]) => {
      let maxSampled = 0;
      let sampledIntervalMs = 0;
      for (let i = 1; i < samples.length; i++) {
        const n = (samples[i]!.calls[action] ?? 0) - (samples[i - 1]!.calls[action] ?? 0);
        if (n > maxSampled) {
          maxSampled = n;
          sampledIntervalMs = samples[i]!.at - samples[i - 1]!.at;
        }
      }
      return {
        action,
        quota: limit,
        maxSent: busiestSecond((sent.get(action) ?? []).sort((a, b) => a - b)),
        maxAnswered: busiestSecond((answered.get(action) ?? []).sort((a, b) => a - b)),
        maxSampled,
        sampledIntervalMs,
      };
    });
    const allSent = [...sent.values()].flat().sort((a, b) => a - b);
    const maxPerSecond = Object.fromEntries(
      options.phases.flatMap((spec, index) => {
        const within = (from: number): number => busiestSecond(allSent.filter((t) => t >= from && t < boundaries[index + 1]!.at));
        return [[spec.name, within(boundaries[index]!.at)], [`${spec.name} after 1 s`, within(boundaries[index]!.at + 1_000)]];
      }),
    );
    const refused = (from: number): number => busiestSecond(allSent.filter((t) => t >= from && t < outageWindow.to));
    maxPerSecond['while down'] = refused(outageWindow.from);
    maxPerSecond['while down after 1 s'] = refused(outageWindow.from + 1_000);
    // The emulator's side: calls it received and refused between two stats samples (about 1 s apart).
    let refusedPerSample = 0;
    for (let i = 1; i < samples.length; i++) refusedPerSample = Math.max(refusedPerSample, samples[i]!.refused - samples[i - 1]!.refused);
    maxPerSecond['refused by the emulator per sample'] = refusedPerSample;
    return {
      label: options.label,
      approach: options.approach,
      processes,
      phases,
      quota,
      aboveQuota: quota.some((q) => q.maxSent > q.quota),
      maxPerSecond,
      loggedCalls,
      emulatorCalls: delta(boundaries[0]!.stats, finalStats).total,
      problems,
    };
  } finally {
    sampling = false;
    await sampler.catch(() => {});
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(10_000)]);
    await setFaults(emulator, { qpsLimit: options.quota }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Printing.

const rate = (n: number, ms: number): string => {
  const r = ms > 0 ? (n * 1000) / ms : 0;
  return r >= 100 ? r.toFixed(0) : r.toFixed(1);
};

export function phaseLine(run: FleetRun, phase: PhaseResult, label = run.label): string {
  return `fleet ${phase.name} (${label}): ops ${rate(phase.ops, phase.durationMs)}/s, failed ${phase.failed}, kms calls ${phase.kmsCalls} (throttled ${phase.throttled}), p99 ${Math.round(phase.p99Ms)} ms`;
}

export function phaseDetail(phase: PhaseResult): string {
  const errors = Object.entries(phase.errors).map(([code, n]) => `${code} ${n}`).join(', ');
  const byAction = Object.entries(phase.kmsByAction).map(([a, n]) => `${a} ${n}`).join(', ') || 'none';
  const c = phase.counters;
  return [
    `  ${(phase.durationMs / 1000).toFixed(1)} s: seals ${phase.seals} (failed ${phase.sealFailed}), opens ${phase.opens} (failed ${phase.openFailed}; of other processes' records ${phase.foreignOpens}, failed ${phase.foreignOpenFailed}), p50 ${phase.p50Ms.toFixed(1)} ms`,
    `  kms calls: ${byAction}${errors ? `; errors: ${errors}` : ''}`,
    ...(c
      ? [
          `  hierarchy: stale keys served ${c.staleServed}, seals in the grace ${c.sealGraceServed}, key loads ${c.loads} (failed ${c.loadFailures}), breaker opened ${c.breakerOpen}, versions created ${c.versionsCreated}; ` +
            `fleet: probes ${c.fleetProbes}, refused by the fleet breaker ${c.fleetBreakerRefused}, lease waits ${c.leaseWaits}, coordinator fallbacks ${c.coordinatorFallbacks}`,
        ]
      : []),
  ].join('\n');
}

export function quotaLine(run: FleetRun): string {
  const sent = run.quota.map((q) => `${q.action} ${q.maxSent}/${q.quota}`).join(', ');
  const sampled = run.quota.map((q) => `${q.action} ${q.maxSampled}${q.maxSampled ? ` in ${q.sampledIntervalMs} ms` : ''}`).join(', ');
  return [
    `fleet quota (${run.label}): above the quota: ${run.aboveQuota ? 'YES' : 'no'}; most KMS calls sent in any 1 s window: ${sent}`,
    `  answered without error in any 1 s window: ${run.quota.map((q) => `${q.action} ${q.maxAnswered}`).join(', ')}; emulator stats sampled each second, most in one sample: ${sampled}; requests logged by the processes ${run.loggedCalls}, counted by the emulator ${run.emulatorCalls}`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// The bench.

/** A redis-server of the bench's own on a free 127.0.0.1 port, which the coordinator-down phase stops and starts again on the same port. */
async function startRedisServer(): Promise<CoordinatorServer> {
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as AddressInfo;
      server.close(() => resolve(free));
    });
  });
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--maxclients', '10000'], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => (socket.end(), resolve(true)));
        socket.on('error', () => resolve(false));
      });
      if (up) return;
      await sleep(50);
    }
    throw new Error('redis-server did not start');
  };
  const stop = async (): Promise<void> => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGKILL'); // as a crash: no goodbye to the clients
    await exited;
  };
  await start();
  return { kind: 'redis', url: `redis://127.0.0.1:${port}`, start, stop };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const processes = Number(flag('--processes') ?? 20);
  const instances = Number(flag('--instances') ?? 10);
  const store = (flag('--store') ?? 'postgres') as 'sqlite' | 'json' | 'postgres';
  const coordinatorKind = (flag('--coordinator') ?? 'redis') as 'redis' | 'postgres' | 'none';
  const quick = args.includes('--quick');
  if (!Number.isInteger(processes) || processes < 2 || processes > 200) throw new Error('--processes: 2 to 200');
  if (!Number.isInteger(instances) || instances < 1 || instances > 50) throw new Error('--instances: 1 to 50');
  if (!['sqlite', 'json', 'postgres'].includes(store)) throw new Error('--store: postgres, sqlite or json');
  if (!['redis', 'postgres', 'none'].includes(coordinatorKind)) throw new Error('--coordinator: redis, postgres or none');
  const s = quick ? 0.2 : 1;
  const outageMs = Number(flag('--outage-seconds') ?? (quick ? 12 : 60)) * 1000;
  const distUrl = new URL('../../dist/', import.meta.url);
  const workerPath = fileURLToPath(new URL('./fleet-worker.js', import.meta.url));
  const log = (line: string): void => {
    process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  };

  const BASE_RATE = 4; // operations per second per process
  const RECORDS_FACTOR = 10;
  const fixed = (name: string, ms: number, extra: Partial<PhaseSpec> = {}): PhaseSpec => ({ name, minMs: ms, maxMs: ms, ...extra });
  const phases = [
    // Deploy lasts until every process has sealed and opened in each of its tenants (at most a minute).
    { name: 'deploy', minMs: 10_000 * s, maxMs: 60_000, until: 'warm' as const, shareAfter: true },
    fixed('steady', 20_000 * s),
    // The same length as steady, ten times the records: what KMS calls do with the number of records.
    fixed(`steady ${RECORDS_FACTOR}x records`, 20_000 * s, { rateFactor: RECORDS_FACTOR }),
    fixed('outage', outageMs, { outage: true }),
    fixed('recovery', 10_000 * s),
    ...(coordinatorKind === 'redis' ? [fixed('coordinator down', 30_000 * s, { coordinatorDown: true })] : []),
  ];
  const ttlMs = 15_000 * s;
  // Opening and sealing ride out the outage with the keys they hold: both bounds cover the outage plus the TTL.
  // The library's default unless --coordinator-timeout-ms says otherwise.
  const timeoutFlag = flag('--coordinator-timeout-ms');
  const coordinatorTimeoutMs = timeoutFlag === undefined ? undefined : Number(timeoutFlag);
  const hierarchy = { ttlMs, maxStaleMs: outageMs + ttlMs + 10_000, sealGraceMs: outageMs + ttlMs + 10_000, ...(coordinatorTimeoutMs === undefined ? {} : { coordinatorTimeoutMs }) };
  // Tenants: each served by about 10 processes.
  const tenantsPerProcess = 4;
  const tenants = Math.max(tenantsPerProcess, Math.round((processes * tenantsPerProcess) / 10));

  const postgres = store === 'postgres' || coordinatorKind === 'postgres' ? await startBenchPostgres() : undefined;
  const redis = coordinatorKind === 'redis' ? await startRedisServer() : undefined;
  const coordinator: CoordinatorServer | undefined =
    coordinatorKind === 'redis' ? redis : coordinatorKind === 'postgres' ? { kind: 'postgres', url: postgres!.url, start: async () => {}, stop: async () => {} } : undefined;
  // The emulator stands for a remote service with CPU of its own: it runs ahead of the fleet's
  // processes on this machine's cores (niceness -10 when allowed), or its answers would measure
  // the scheduler instead of the KMS traffic.
  const emulator = await startEmulatorProcess(distUrl, { priority: -10 });
  try {
    await setFaults(emulator, { qpsLimit: TENCENT_QUOTAS });
    console.log(
      `# fleet: ${processes} processes (child_process) x ${instances} library instances (each its own TencentKms, caches, hierarchy and coordinator client; one pg Pool of 3 connections per process), ` +
        `one emulator process enforcing GenerateDataKey ${TENCENT_QUOTAS.GenerateDataKey}/s, Decrypt ${TENCENT_QUOTAS.Decrypt}/s, ReEncrypt ${TENCENT_QUOTAS.ReEncrypt}/s; ` +
        `${tenants} tenants, ${tenantsPerProcess} per process; ${BASE_RATE} ops/s per process (seal and open alternate, 32-byte values); ` +
        `phases ${phases.map((p) => `${p.name} ${p.maxMs / 1000} s`).join(', ')}; hierarchy TTL ${ttlMs / 1000} s (jitter 20%), coordinatorTimeoutMs ${coordinatorTimeoutMs ?? 'the default (1000)'}, maxStaleMs ${hierarchy.maxStaleMs / 1000} s, sealGraceMs ${hierarchy.sealGraceMs / 1000} s, ${store} key store; ` +
        `coordinator ${coordinatorKind}${coordinatorKind === 'none' ? '' : ' (fleetBudget at 90% of the quotas, creation leases, the fleet breaker)'}; ` +
        `TencentKms rateLimit { fleet: { processes: ${processes * instances} } }; emulator niceness ${emulator.priority ?? 'default'}; ` +
        `${availableParallelism()} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the start`,
    );
    const common = { processes, instances, tenants, tenantsPerProcess, clients: 2, opsPerSecond: BASE_RATE, phases, emulator, quota: TENCENT_QUOTAS, workerPath, distUrl, store, hierarchy, log, postgresUrl: postgres?.url, coordinator };
    const records: string[] = [];
    const only = flag('--only');
    const started = Date.now();
    for (const approach of (['hierarchy', 'per-process cache'] as const).filter((a) => !only || a.startsWith(only))) {
      const run = await runFleet({ ...common, label: approach, approach, ...(approach === 'hierarchy' ? {} : { phases: phases.filter((p) => !p.coordinatorDown) }) });
      for (const phase of run.phases) {
        console.log(phaseLine(run, phase));
        console.log(phaseDetail(phase));
      }
      console.log(quotaLine(run));
      if (approach === 'hierarchy') {
        const deploy = run.phases[0]!;
        console.log(`fleet deploy (hierarchy): GenerateDataKey ${deploy.kmsByAction.GenerateDataKey ?? 0} for ${deploy.counters?.versionsCreated ?? 0} key versions`);
        // M: the larger of the two readings of the calls a down KMS receives in a second, the calls in
        // flight when it went down included: every request the processes sent while it was down, in
        // sliding 1 s windows (their logs), and the calls the emulator refused between two stats samples.
        const m = Math.max(run.maxPerSecond['while down'] ?? 0, run.maxPerSecond['refused by the emulator per sample'] ?? 0);
        console.log(`fleet outage (hierarchy): kms calls per second fleet-wide: max ${m}`);
        console.log(
          `  sent by the processes while the emulator refused every call, in any sliding 1 s window: max ${run.maxPerSecond['while down'] ?? 0}, after its first second: max ${run.maxPerSecond['while down after 1 s'] ?? 0}; ` +
            `refused by the emulator in one stats sample (about 1 s): max ${run.maxPerSecond['refused by the emulator per sample'] ?? 0}; ` +
            `the whole phase, the KMS's return included: max ${run.maxPerSecond.outage ?? 0}`,
        );
      }
      for (const problem of run.problems) console.log(`  problem: ${problem}`);
      const [one, more] = [run.phases[1]!, run.phases[2]!];
      records.push(
        `fleet records (${approach}): ${one.name} sealed ${one.seals} records with ${one.kmsCalls} kms calls, ` +
          `${more.name} sealed ${more.seals} with ${more.kmsCalls} (${(more.seals / Math.max(1, one.seals)).toFixed(1)}x records, ${(more.kmsCalls / Math.max(1, one.kmsCalls)).toFixed(2)}x kms calls)`,
      );
      await sleep(1_500); // the emulator's 1-second windows empty between runs
    }
    for (const line of records) console.log(line);
    console.log(`# run time ${((Date.now() - started) / 1000).toFixed(0)} s; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end`);
  } finally {
    await emulator.stop();
    await redis?.stop();
    postgres?.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
