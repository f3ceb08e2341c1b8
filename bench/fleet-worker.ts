/**
 * One process of the fleet simulation (bench/fleet.ts, test/fleet.test.ts), started with
 * child_process.fork and driven over IPC. It seals and opens small records against the KMS
 * emulator, either under the key hierarchy (a key store shared by the fleet, one envelope per
 * partition) or with today's per-process caches (`createEnvelope({ kms, cache: encryptionCache(),
 * decryptCache: decryptCache() })`, a context per table), and reports per phase what it saw: operations,
 * failures by error code, latencies, the hierarchy's metrics, and a log of every KMS request it
 * sent (time, action, answer), taken by the `fetch` it hands TencentKms.
 *
 * It runs compiled JavaScript and loads the library from the built package (`distUrl`, dist/), so
 * the bench (dist-bench/) and the test (a transpiled copy) run the same code. Every loop is bounded
 * by a phase's operation limit, the whole run's `maxRunMs` and a stop from the parent; a worker
 * whose parent goes away exits.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type * as Library from '../src/index.node.ts';
import type * as NodeLibrary from '../src/node.ts';
import type * as HierarchyLibrary from '../src/hierarchy.ts';
import type * as RedisLibrary from '../src/adapters/redis.ts';

export type Approach = 'hierarchy' | 'per-process cache';

export interface WorkerConfig {
  id: number;
  approach: Approach;
  /** Library instances in the fleet (processes × instances): each TencentKms keeps 1/N of the account's quota. */
  processes: number;
  /**
   * Library instances in this process (default 1), each with its own TencentKms, caches,
   * hierarchy and coordinator client; the PostgreSQL pool is shared by the process, as a
   * deployment shares its pool. Operations go round robin over them.
   */
  instances?: number;
  /** The fleet's coordinator (hierarchy only): its shared budget, creation leases, breaker and broadcasts. */
  coordinator?: { kind: 'redis' | 'postgres'; url: string; name: string };
  /** The partitions (tenants, one table each) this process serves. */
  tenants: string[];
  /** file: URL of the built package (dist/), with a trailing slash. */
  distUrl: string;
  emulator: { url: string; secretId: string; secretKey: string; keyId: string };
  /** The shared key store (hierarchy only). */
  store?: { kind: 'sqlite' | 'json' | 'postgres'; path: string; table?: string };
  hierarchy?: { ttlMs: number; maxStaleMs: number; sealGraceMs?: number; coordinatorTimeoutMs?: number };
  /** Target operations per second of this process (0: as fast as the clients go). */
  opsPerSecond: number;
  /** Operations in flight at once (client loops). */
  clients: number;
  valueBytes: number;
  /** Records per tenant handed to the other processes when the parent asks for a sample. */
  sampleSize: number;
  /** The worker exits on its own after this long, whatever happens. */
  maxRunMs: number;
}

/** A record as it travels between processes (base64). */
export interface SharedRecord {
  from: number;
  tenant: string;
  sealed: string;
  plaintext: string;
}

export type ToWorker =
  | {
      type: 'phase';
      index: number;
      name: string;
      /** Operations this process starts in the phase, at most. */
      opLimit: number;
      /** The tenants this process works on from this phase on (default: its configured ones). */
      tenants?: string[];
      /** The target rate in this phase (default: the configured one). */
      opsPerSecond?: number;
    }
  | { type: 'sample' }
  | { type: 'pool'; records: SharedRecord[] }
  | { type: 'stop' };

export interface HierarchyCounters {
  hits: number;
  misses: number;
  staleServed: number;
  loads: number;
  loadFailures: number;
  breakerOpen: number;
  versionsCreated: number;
  sealGraceServed: number;
  fleetProbes: number;
  fleetBreakerRefused: number;
  coordinatorFallbacks: number;
  leaseWaits: number;
}

export const ZERO_COUNTERS: HierarchyCounters = {
  hits: 0,
  misses: 0,
  staleServed: 0,
  loads: 0,
  loadFailures: 0,
  breakerOpen: 0,
  versionsCreated: 0,
  sealGraceServed: 0,
  fleetProbes: 0,
  fleetBreakerRefused: 0,
  coordinatorFallbacks: 0,
  leaseWaits: 0,
};

/** One library instance: its own TencentKms (and so its own limiter and HTTP client), caches, hierarchy and coordinator client. */
interface Instance {
  hierarchy: HierarchyLibrary.KeyHierarchy | undefined;
  shared: Library.Envelope | undefined;
  envelopes: Map<string, Library.Envelope>;
}

interface Libraries {
  lib: typeof Library;
  nodeLib: typeof NodeLibrary;
  hierarchyLib: typeof HierarchyLibrary;
}

export interface PhaseReport {
  name: string;
  seals: number;
  sealFailed: number;
  opens: number;
  openFailed: number;
  /** Opens of records sealed by other processes, and how many of them failed. */
  foreignOpens: number;
  foreignOpenFailed: number;
  /** Failures by error code (`ERR_KMS:InternalError`, `ERR_KEY_UNAVAILABLE`, ...). */
  errors: Record<string, number>;
  /** Latency of every operation that ended in the phase, failed ones included, ms. */
  latencies: number[];
  /** Hierarchy metrics counted during the phase (undefined for the per-process cache). */
  counters: HierarchyCounters | undefined;
}

export interface WorkerStatus {
  type: 'status';
  id: number;
  phase: number;
  /** The phase's operation limit is reached and every operation ended. */
  done: boolean;
  /** Every tenant has had a successful seal and a successful open. */
  warm: boolean;
  /** Whether stale keys were served since the current phase began (1) or not (0) (hierarchy). */
  staleServed: number;
}

export type FromWorker =
  | { type: 'ready'; id: number }
  | WorkerStatus
  | { type: 'sample'; id: number; records: SharedRecord[] }
  | {
      type: 'report';
      id: number;
      phases: PhaseReport[];
      /** Flat triples: Date.now() when sent, action index (KMS_ACTIONS), outcome (OUTCOMES). */
      kmsLog: number[];
    }
  | { type: 'fatal'; id: number; message: string };

export const KMS_ACTIONS = ['GenerateDataKey', 'Decrypt', 'ReEncrypt', 'other'] as const;
export const OUTCOMES = ['ok', 'throttled', 'error', 'network'] as const;

const MAX_LOG_ENTRIES = 200_000;
const MAX_OWN_RECORDS = 256;
const MAX_LATENCIES_PER_PHASE = 200_000;

interface HeldRecord {
  from: number;
  tenant: string;
  sealed: Uint8Array;
  plaintext: Uint8Array;
}

interface PhaseState extends PhaseReport {
  opLimit: number;
  opsPerSecond: number;
  /** Operations started in the phase (its opLimit counts these). */
  started: number;
  metricsAtStart: HierarchyCounters | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function send(message: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

function errorCode(error: unknown): string {
  const e = error as { code?: unknown; kmsCode?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : error instanceof Error ? error.name : 'unknown';
  return typeof e?.kmsCode === 'string' ? `${code}:${e.kmsCode}` : code;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
  const startedAt = performance.now();
  const hardDeadline = startedAt + config.maxRunMs;
  // Whatever happens, this process ends: the parent kills it too, this is the last resort.
  setTimeout(() => process.exit(3), config.maxRunMs + 5_000).unref();
  process.on('disconnect', () => process.exit(0));

  const lib = (await import(new URL('index.js', config.distUrl).href)) as typeof Library;
  const nodeLib = (await import(new URL('node.js', config.distUrl).href)) as typeof NodeLibrary;
  const hierarchyLib = (await import(new URL('hierarchy.js', config.distUrl).href)) as typeof HierarchyLibrary;

  // Every KMS request this process sends, with its answer: the per-second quota check.
  const kmsLog: number[] = [];
  const countingFetch: typeof fetch = async (input, init) => {
    const headers = input instanceof Request ? input.headers : new Headers(init?.headers);
    const action = KMS_ACTIONS.indexOf((headers.get('x-tc-action') ?? 'other') as (typeof KMS_ACTIONS)[number]);
    const sentAt = Date.now();
    let outcome = OUTCOMES.indexOf('network');
    try {
      const response = await fetch(input, init);
      outcome = OUTCOMES.indexOf('error');
      if (response.status === 200) {
        try {
          const body = JSON.parse(await response.clone().text()) as { Response?: { Error?: { Code?: string } } };
          const code = body.Response?.Error?.Code;
          outcome = OUTCOMES.indexOf(code === undefined ? 'ok' : code.startsWith('RequestLimitExceeded') ? 'throttled' : 'error');
        } catch {
          // not JSON: an error outcome; the transport reports it
        }
      }
      return response;
    } finally {
      if (kmsLog.length < MAX_LOG_ENTRIES * 3) kmsLog.push(sentAt, action < 0 ? KMS_ACTIONS.length - 1 : action, outcome);
    }
  };

  const instances = await makeInstances(config, countingFetch, { lib, nodeLib, hierarchyLib });
  const closeStore = instances.closeStore;
  const hierarchical = config.approach === 'hierarchy';

  const counters = (): HierarchyCounters | undefined => {
    if (!hierarchical) return undefined;
    const sum = { ...ZERO_COUNTERS };
    for (const { hierarchy } of instances.list) {
      const m = hierarchy!.metrics();
      for (const key of Object.keys(sum) as (keyof HierarchyCounters)[]) sum[key] += m[key];
    }
    return sum;
  };

  const phases: PhaseState[] = [];
  let current: PhaseState | undefined;
  let running = true;
  const own: HeldRecord[] = [];
  let pool: HeldRecord[] = [];
  const sealedOk = new Set<string>();
  const openedOk = new Set<string>();
  let sequence = 0;
  let opCount = 0;
  let inFlight = 0;

  const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
  let tenants = config.tenants;
  /** Under the hierarchy, one envelope per partition: `createEnvelope({ hierarchy, partition })`. */
  const envelopeOf = (instance: Instance, tenant: string): Library.Envelope => {
    let envelope = instance.envelopes.get(tenant);
    if (!envelope) {
      envelope = lib.createEnvelope({ hierarchy: instance.hierarchy!, partition: tenant });
      instance.envelopes.set(tenant, envelope);
    }
    return envelope;
  };

  async function sealOne(instance: Instance): Promise<void> {
    const tenant = tenants[sequence % tenants.length]!; // round robin: every tenant is used
    const plaintext = randomBytes(config.valueBytes);
    const row = `${config.id}-${sequence++}`;
    const sealed = instance.hierarchy
      ? await envelopeOf(instance, tenant).seal(plaintext, { context: { table: tenant, row } })
      : await instance.shared!.seal(plaintext, { context: { table: tenant } });
    sealedOk.add(tenant);
    own.push({ from: config.id, tenant, sealed, plaintext });
    if (own.length > MAX_OWN_RECORDS) own.splice(0, own.length - MAX_OWN_RECORDS);
  }

  async function openOne(instance: Instance, record: HeldRecord): Promise<void> {
    const envelope = instance.hierarchy ? envelopeOf(instance, record.tenant) : instance.shared!;
    const back = await envelope.open(record.sealed);
    if (back.length !== record.plaintext.length || !timingSafeEqual(back, record.plaintext)) {
      throw Object.assign(new Error('opened something else'), { code: 'MISMATCH' });
    }
    openedOk.add(record.tenant);
  }

  /**
   * One operation: seals and opens alternate; half of the opens are of other processes' records.
   * It counts in the phase it ends in (an operation that waits for a key across a phase boundary,
   * say into the outage, reports what the KMS did in the later phase).
   */
  async function operation(): Promise<void> {
    const mine = own.filter((r) => tenants.includes(r.tenant));
    const sealTurn = opCount++ % 2 === 0 || mine.length === 0;
    const record = sealTurn ? undefined : pool.length > 0 && Math.random() < 0.5 ? pick(pool) : pick(mine);
    const foreign = record !== undefined && record.from !== config.id;
    const instance = instances.list[opCount % instances.list.length]!;
    const started = performance.now();
    inFlight++;
    try {
      if (record) await openOne(instance, record);
      else await sealOne(instance);
    } catch (error) {
      const phase = current!;
      const code = errorCode(error);
      phase.errors[code] = (phase.errors[code] ?? 0) + 1;
      if (record) phase.openFailed++;
      else phase.sealFailed++;
      if (foreign) phase.foreignOpenFailed++;
    } finally {
      inFlight--;
      const phase = current!;
      if (record) phase.opens++;
      else phase.seals++;
      if (foreign) phase.foreignOpens++;
      if (phase.latencies.length < MAX_LATENCIES_PER_PHASE) phase.latencies.push(performance.now() - started);
    }
  }

  // Resolved (and replaced) on every message that may let an idle client go on: a phase, the stop.
  let wake: () => void = () => {};
  let woken = new Promise<void>((resolve) => (wake = resolve));
  const nudge = (): void => {
    wake();
    woken = new Promise<void>((resolve) => (wake = resolve));
  };
  const untilDeadline = new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, hardDeadline - performance.now())).unref());

  /** A client: operations at the phase's target rate (each client its share), one at a time. */
  async function client(index: number): Promise<void> {
    let pacedFor: PhaseState | undefined;
    let period = 0;
    let next = 0;
    while (running && performance.now() < hardDeadline) {
      const phase = current;
      if (!phase || phase.started >= phase.opLimit) {
        await Promise.race([woken, untilDeadline]); // idle until the next phase or the stop
        continue;
      }
      if (pacedFor !== phase) {
        pacedFor = phase;
        period = phase.opsPerSecond > 0 ? (config.clients * 1000) / phase.opsPerSecond : 0;
        next = performance.now() + (period * index) / config.clients;
      }
      if (period > 0) {
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        next = Math.max(next + period, performance.now() - period); // no catching up after a long wait
        if (!running || phase !== current) continue;
      }
      phase.started++;
      await operation();
      if (period === 0) await new Promise<void>((resolve) => setImmediate(resolve)); // let IPC in
    }
  }

  function closePhase(phase: PhaseState): void {
    const end = counters();
    const start = phase.metricsAtStart;
    if (end && start) {
      phase.counters = Object.fromEntries(Object.entries(end).map(([k, v]) => [k, v - start[k as keyof HierarchyCounters]])) as unknown as HierarchyCounters;
    }
  }

  // What the parent waits on (warm, stale keys served, done), sent when it changes.
  let lastStatus = '';
  const statusTimer = setInterval(() => {
    if (!current) return;
    const now = counters();
    const status: WorkerStatus = {
      type: 'status',
      id: config.id,
      phase: phases.length - 1,
      done: current.started >= current.opLimit && inFlight === 0,
      warm: tenants.every((t) => sealedOk.has(t) && openedOk.has(t)),
      staleServed: Math.min(1, now && current.metricsAtStart ? now.staleServed - current.metricsAtStart.staleServed : 0),
    };
    const text = JSON.stringify(status);
    if (text === lastStatus) return;
    lastStatus = text;
    void send(status);
  }, 200);

  let clients: Promise<void>[] = [];
  let stopping: Promise<void> | undefined;

  async function stop(): Promise<void> {
    running = false;
    nudge();
    clearInterval(statusTimer);
    // Operations under way end within the KMS deadline (20 s); no more waiting than that.
    await Promise.race([Promise.allSettled(clients), sleep(25_000)]);
    if (current) closePhase(current);
    const report: PhaseReport[] = phases.map(({ name, seals, sealFailed, opens, openFailed, foreignOpens, foreignOpenFailed, errors, latencies, counters: c }) => ({
      name,
      seals,
      sealFailed,
      opens,
      openFailed,
      foreignOpens,
      foreignOpenFailed,
      errors,
      latencies: latencies.map((l) => Math.round(l * 100) / 100),
      counters: c,
    }));
    await send({ type: 'report', id: config.id, phases: report, kmsLog });
    const envelopes = instances.list.flatMap((i) => [...i.envelopes.values(), ...(i.shared ? [i.shared] : [])]);
    await Promise.race([Promise.allSettled(envelopes.map((e) => e.close())), sleep(2_000)]);
    await Promise.race([Promise.allSettled(instances.list.map((i) => i.hierarchy?.close())), sleep(2_000)]);
    await Promise.race([closeStore(), sleep(2_000)]);
    process.exit(0);
  }

  process.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'phase': {
        if (current) closePhase(current);
        current = {
          name: message.name,
          seals: 0,
          sealFailed: 0,
          opens: 0,
          openFailed: 0,
          foreignOpens: 0,
          foreignOpenFailed: 0,
          errors: {},
          latencies: [],
          counters: undefined,
          opLimit: message.opLimit,
          opsPerSecond: message.opsPerSecond ?? config.opsPerSecond,
          started: 0,
          metricsAtStart: counters(),
        };
        phases.push(current);
        if (message.tenants) {
          tenants = message.tenants;
          pool = pool.filter((r) => tenants.includes(r.tenant));
        }
        if (clients.length === 0) clients = Array.from({ length: config.clients }, (_, i) => client(i));
        nudge();
        break;
      }
      case 'sample': {
        const records: SharedRecord[] = [];
        for (const tenant of config.tenants) {
          const mine = own.filter((r) => r.tenant === tenant).slice(-config.sampleSize);
          for (const r of mine) {
            records.push({ from: r.from, tenant, sealed: Buffer.from(r.sealed).toString('base64'), plaintext: Buffer.from(r.plaintext).toString('base64') });
          }
        }
        void send({ type: 'sample', id: config.id, records });
        break;
      }
      case 'pool':
        pool = message.records.map((r) => ({ from: r.from, tenant: r.tenant, sealed: Buffer.from(r.sealed, 'base64'), plaintext: Buffer.from(r.plaintext, 'base64') }));
        break;
      case 'stop':
        stopping ??= stop();
        break;
    }
  });

  await warmUp(lib, config);
  await send({ type: 'ready', id: config.id });
}

/** The key store of the process (one pg Pool for PostgreSQL, shared by its instances). */
function makeStore(config: WorkerConfig, libs: Libraries, require: NodeRequire): { store: HierarchyLibrary.KeyStore; pool: unknown; close: () => Promise<void> } {
  const { store } = config;
  if (!store) throw new Error('the hierarchy needs a store');
  if (store.kind === 'postgres') {
    const pg = require('pg') as { Pool: new (options: object) => HierarchyLibrary.PostgresQueryable & { end(): Promise<void>; on(e: string, f: () => void): void } };
    const pool = new pg.Pool({ connectionString: store.path, max: 3 });
    pool.on('error', () => {});
    return { store: new libs.hierarchyLib.PostgresKeyStore({ client: pool, table: store.table, createTable: false }), pool, close: () => pool.end() };
  }
  if (store.kind === 'sqlite') {
    const Database = require('better-sqlite3') as new (path: string) => HierarchyLibrary.SqliteDatabase & { pragma(s: string): unknown; close(): void };
    const db = new Database(store.path);
    db.pragma('synchronous = NORMAL'); // WAL (set by the parent): a commit needs no fsync of its own
    return { store: new libs.hierarchyLib.SqliteKeyStore({ database: db, createTable: false, busyTimeoutMs: 10_000 }), pool: undefined, close: async () => db.close() };
  }
  return { store: new libs.nodeLib.JsonFileKeyStore(store.path), pool: undefined, close: async () => {} };
}

/** The coordinator client of one instance: its own Redis connection, or the process's pool. */
async function makeCoordinator(config: WorkerConfig, pool: unknown, require: NodeRequire): Promise<{ coordinator: HierarchyLibrary.FleetCoordinator | undefined; close: () => void }> {
  const c = config.coordinator;
  if (!c) return { coordinator: undefined, close: () => {} };
  if (c.kind === 'postgres') {
    const hierarchyLib = (await import(new URL('hierarchy.js', config.distUrl).href)) as typeof HierarchyLibrary;
    return { coordinator: new hierarchyLib.PostgresCoordinator({ client: pool as HierarchyLibrary.PostgresQueryable, table: c.name }), close: () => {} };
  }
  const { Redis } = require('ioredis') as typeof import('ioredis');
  // No offline queue: while Redis is down a command fails at once and the link falls back.
  const client = new Redis(c.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 500 });
  client.on('error', () => {});
  const redisLib = (await import(new URL('adapters/redis.js', config.distUrl).href)) as typeof RedisLibrary;
  return { coordinator: new redisLib.RedisCoordinator({ client, prefix: `${c.name}:` }), close: () => client.disconnect() };
}

async function makeInstances(config: WorkerConfig, countingFetch: typeof fetch, libs: Libraries): Promise<{ list: Instance[]; closeStore: () => Promise<void> }> {
  const { lib, hierarchyLib } = libs;
  // Packages from the repository's node_modules (this file may run from a temporary copy).
  const require = createRequire(new URL('../package.json', config.distUrl));
  const { url, secretId, secretKey, keyId } = config.emulator;
  const hierarchical = config.approach === 'hierarchy';
  const made = hierarchical ? makeStore(config, libs, require) : undefined;
  const closers: (() => void)[] = [];
  const list: Instance[] = [];
  for (let i = 0; i < (config.instances ?? 1); i++) {
    const { coordinator, close } = hierarchical ? await makeCoordinator(config, made!.pool, require) : { coordinator: undefined, close: () => {} };
    closers.push(close);
    const kms = new lib.TencentKms({
      keyId,
      region: 'ap-guangzhou',
      endpoint: url,
      credentials: { secretId, secretKey },
      rateLimit: {
        fleet: { processes: config.processes },
        ...(coordinator ? { shared: hierarchyLib.fleetBudget(coordinator, { link: { ...(config.hierarchy?.coordinatorTimeoutMs === undefined ? {} : { timeoutMs: config.hierarchy.coordinatorTimeoutMs }) } }) } : {}),
      },
      fetch: countingFetch,
    });
    if (!hierarchical) {
      list.push({ hierarchy: undefined, shared: lib.createEnvelope({ kms, ...caches(lib) }), envelopes: new Map() });
      continue;
    }
    const h = config.hierarchy!;
    const hierarchy = hierarchyLib.createKeyHierarchy({
      store: made!.store,
      kms,
      ttlMs: h.ttlMs,
      maxStaleMs: h.maxStaleMs,
      ...(h.sealGraceMs === undefined ? {} : { sealGraceMs: h.sealGraceMs }),
      ...(coordinator ? { coordinator, ...(h.coordinatorTimeoutMs === undefined ? {} : { coordinatorTimeoutMs: h.coordinatorTimeoutMs }) } : {}),
    });
    list.push({ hierarchy, shared: undefined, envelopes: new Map() });
  }
  return {
    list,
    closeStore: async () => {
      for (const close of closers) close();
      await made?.close();
    },
  };
}

/**
 * Loads and compiles what the first operations would (the HTTP client, ky, the sealing code)
 * before the process reports ready, without any KMS call: on this 2-core machine 50 cold
 * processes would otherwise spend the first seconds of the deploy compiling modules, and the
 * deploy would measure that instead of the KMS traffic (each real process has CPU of its own).
 */
/** Both caches, as the build under test takes them: factories since 0.3, `true` before (a v0.2.0 dist). */
function caches(lib: typeof Library): Pick<Library.EnvelopeOptions, 'cache' | 'decryptCache'> {
  if ('encryptionCache' in lib) return { cache: lib.encryptionCache(), decryptCache: lib.decryptCache() };
  return { cache: true, decryptCache: true } as never;
}

async function warmUp(lib: typeof Library, config: WorkerConfig): Promise<void> {
  const require = createRequire(new URL('../package.json', config.distUrl));
  await import(pathToFileURL(require.resolve('ky')).href);
  // An unauthenticated control request: answered 401, counted nowhere, and it loads fetch.
  await fetch(`${config.emulator.url}/__emulator/stats`, { signal: AbortSignal.timeout(10_000) })
    .then((r) => r.arrayBuffer())
    .catch(() => undefined);
  const local = lib.createEnvelope({ kms: lib.LocalKms.generate(), ...caches(lib) });
  for (let i = 0; i < 50; i++) await local.open(await local.seal(randomBytes(config.valueBytes), { context: { table: 'warm-up', row: String(i) } }));
  await local.close();
}

main().catch(async (error: unknown) => {
  const id = (() => {
    try {
      return (JSON.parse(process.argv[2] ?? '{}') as WorkerConfig).id;
    } catch {
      return -1;
    }
  })();
  await send({ type: 'fatal', id, message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
  process.exit(1);
});
