/**
 * A live plaintext column encrypted under application traffic, with migration workers killed at
 * random (issue 28): the harness of `npm run bench:migrate` (PostgreSQL, 1,000,000 rows) and of
 * the slow test (100,000 rows, PostgreSQL and SQLite).
 *
 * Real OS processes throughout, on the built package (dist/): K migration workers (each a process
 * running the backfill sweep: sweepPostgres or sweepSqlite over columnMigration's plan) that a
 * killer SIGKILLs at random moments and starts again; one application process writing W times a
 * second through the record API (updates of random rows and inserts of new ones, sealed, as phase
 * (a) has it), each write in one transaction with a plaintext shadow row kept by the harness; a
 * sampler of pg_locks for the workers' sessions. At the end a verifier opens every row with the
 * table of phase (c) and compares it with its shadow: plaintext left, lost updates and
 * double-encrypted values counted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import Database from 'better-sqlite3';
import pg from 'pg';
import { strongestLock } from '../src/records/sql/ddl.ts';
import { BackendCpu, cpuLine, procCpu } from './migrate-cpu.ts';

export interface MigrateOptions {
  kind: 'postgres' | 'sqlite';
  /** PostgreSQL URL (kind postgres). */
  url?: string;
  rows: number;
  writesPerSecond: number;
  workers: number;
  /** SIGKILLs of workers to make before letting them finish. */
  kills: number;
  /** The built package: a file URL of dist/ ending in a slash. */
  dist: string;
  /** Table name (reused between runs with `reuse`). */
  table?: string;
  /**
   * Each child process runs its script bundled into one file with the package and pg (esbuild), as
   * a deployed worker would be, rather than loading dist/'s modules one by one: a restarted
   * worker loads faster. Default true.
   */
  bundle?: boolean;
  /** Rows per batch (one transaction) of the workers; default 500. */
  batchSize?: number;
  /** The workers count the pending rows when they start (the sweep's `count`); default false. */
  countAtStart?: boolean;
  /** The workers load their tenants' keys (records.warm) as they start, beside the sweep's first batch; default true. */
  warmAtStart?: boolean;
  /** The backfill's rate (rows a second per worker) assumed when spreading the kills over its run; default 6000 (a loaded machine is slower: give its rate). */
  estimatedRowsPerSecond?: number;
  /** The application sends its writes as named statements (parsed and planned once per connection) rather than as text; default false. */
  appNamedStatements?: boolean;
  /** The lock sampler's period in ms (each sample is a query of pg_locks); default 5. */
  lockSampleMs?: number;
  log?: (line: string) => void;
}

export interface MigrateResult {
  rows: number;
  writesPerSecond: number;
  rowsPerSecondPerWorker: number;
  workers: number;
  plaintextLeft: number;
  lostUpdates: number;
  doubleEncrypted: number;
  strongestLock: string;
  kills: number;
  seconds: number;
  restarts: RestartTimings;
  /** Where the CPU went during the backfill (PostgreSQL on this machine; empty elsewhere): one line. */
  cpu: string;
  line: string;
}

const TENANTS = 8;
const TABLE_JS = `defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, keyVersionColumn: 'key_version',
  columns: { email: { type: 'string', index: { column: 'email_idx', bits: 16 } }, photo: { type: 'bytes', encoding: 'bytes' } } })`;

/**
 * The code every child process starts with: the record API on the shared key store. The main
 * entry is the one `import 'kms-envelope'` resolves to on Node (the `node` condition:
 * index.node.js, with the node:crypto backend); dist/index.js is the browser build, whose
 * synchronous seal runs the portable AES-GCM (its profile: 40% of a worker's CPU in it).
 */
function prelude(o: MigrateOptions, table: string): string {
  // Bundled, esbuild takes paths; loaded as it is, node takes the file URLs.
  const d = (f: string) => JSON.stringify(o.bundle === false ? new URL(f, o.dist).href : fileURLToPath(new URL(f, o.dist)));
  // better-sqlite3 (a native addon) stays out of the bundle: the bundle's require() finds it from dist/.
  const sqlite = o.bundle === false ? `import('better-sqlite3').then((m) => ({ Database: m.default }))` : `Promise.resolve({ Database: require('better-sqlite3') })`;
  const driver = o.kind === 'postgres' ? `import('pg').then((m) => ({ pg: m.default }))` : sqlite;
  const store =
    o.kind === 'postgres'
      ? `const pool = new pg.Pool({ connectionString: ${JSON.stringify(o.url)}, max: Number(process.env.POOL_MAX ?? 3), application_name: process.env.APP_NAME });
         const store = new PostgresKeyStore({ client: pool, table: ${JSON.stringify(`${table}_keys`)} });`
      : `const db = new Database(process.env.DB_FILE); db.pragma('journal_mode = WAL'); db.pragma('busy_timeout = 10000');
         const store = new SqliteKeyStore({ database: db, table: ${JSON.stringify(`${table}_keys`)} });`;
  return `
    const [{ pg, Database }, { LocalKms }, { createKeyHierarchy, PostgresKeyStore, SqliteKeyStore }, { createRecords, defineTable, columnMigration, sweepPostgres, sweepSqlite }] =
      await Promise.all([${driver}, import(${d('index.node.js')}), import(${d('hierarchy.js')}), import(${d('records.js')})]);
    const importedAt = Date.now(), importedCpu = process.cpuUsage();
    ${store}
    const records = createRecords({ hierarchy: createKeyHierarchy({ store, kms: LocalKms.fromEnv() }) });
    const migration = columnMigration(records, ${TABLE_JS});
    const table = ${JSON.stringify(table)};`;
}

/**
 * A migration worker: the backfill to its end. It prints its moments (wall-clock ms, then its CPU
 * ms so far) on standard output, which the harness reads when the process ends, killed or not:
 * `at boot` (node's own start done), `at loaded` (the script and the package loaded), `at start`
 * (connected, the sweep started), and `at batch` after each committed batch.
 */
export function workerScript(o: MigrateOptions, table: string): string {
  const sweepOptions = `{ table, key: 'id', ...migration.backfill, batchSize: ${o.batchSize ?? 500}, count: ${o.countAtStart === true}, onEvent: (e) => { if (e.type === 'start' || e.type === 'batch') mark(e.type); } }`;
  const sweep = o.kind === 'postgres' ? `await sweepPostgres(pool, ${sweepOptions})` : `await sweepSqlite(db, ${sweepOptions})`;
  return `${prelude(o, table)}
    const cpuMs = (u) => Math.round((u.user + u.system) / 1000);
    const mark = (what, at = Date.now(), cpu = cpuMs(process.cpuUsage())) => process.stdout.write('at ' + what + ' ' + at + ' ' + cpu + '\\n');
    mark('boot', Math.round(performance.timeOrigin + performance.nodeTiming.bootstrapComplete), 0);
    mark('loaded', importedAt, cpuMs(importedCpu));
    // The tenants' keys (sealing and blind index) load while the sweep connects and reads its first
    // batch, rather than when its first rows ask for them; a failure shows in the sweep's own loads.
    if (${o.warmAtStart !== false}) records.warm(${JSON.stringify(Array.from({ length: TENANTS }, (_, i) => `t${i}`))}, [migration.reading], { keepWarm: false }).catch(() => {});
    const summary = ${sweep};
    console.log('done ' + JSON.stringify({ written: summary.written, failed: summary.failed, changed: summary.changed }));
    process.exit(0);`;
}

/**
 * The application: W writes a second (3 updates of random rows to 1 insert), each one statement
 * on PostgreSQL (the row and its shadow in a data-modifying WITH: one transaction, one round trip)
 * and one transaction on SQLite. Writes are started on a clock (as many as are due every 5 ms, at
 * most 64 in flight), so a slow write delays no other.
 */
function appScript(o: MigrateOptions, table: string): string {
  const shadow = `INSERT INTO \${table}_shadow (id, email, photo) SELECT id, $7::text, $8::bytea FROM w ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, photo = EXCLUDED.photo`;
  const write =
    o.kind === 'postgres'
      ? `const params = [row.id, row.tenant, s.email, Buffer.from(s.photo), s.email_idx, s.key_version, row.email, Buffer.from(row.photo)];
         const text = insert
           ? \`WITH w AS (INSERT INTO \${table} (id, tenant, email, photo, email_idx, key_version) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) ${shadow}\`
           : \`WITH w AS (UPDATE \${table} SET email = $3, photo = $4, email_idx = $5, key_version = $6 WHERE id = $1 AND tenant = $2 RETURNING id) ${shadow}\`;
         await pool.query(${o.appNamedStatements === true} ? { name: insert ? 'app_insert' : 'app_update', text, values: params } : text, ${o.appNamedStatements === true} ? undefined : params);`
      : `db.transaction(() => {
           if (insert) db.prepare(\`INSERT INTO \${table} (id, tenant, email, photo, email_idx, key_version) VALUES (?, ?, ?, ?, ?, ?)\`).run(row.id, row.tenant, s.email, Buffer.from(s.photo), s.email_idx, s.key_version);
           else db.prepare(\`UPDATE \${table} SET email = ?, photo = ?, email_idx = ?, key_version = ? WHERE id = ?\`).run(s.email, Buffer.from(s.photo), s.email_idx, s.key_version, row.id);
           db.prepare(\`INSERT INTO \${table}_shadow (id, email, photo) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET email = excluded.email, photo = excluded.photo\`).run(row.id, row.email, Buffer.from(row.photo));
         })();`;
  return `${prelude(o, table)}
    const rows = ${o.rows}, rate = ${o.writesPerSecond};
    let next = rows, n = 0, issued = 0, inFlight = 0, stopping = false;
    process.on('message', () => { stopping = true; });
    const started = performance.now();
    async function one(k) {
      const insert = k % 4 === 3;
      const i = insert ? next++ : Math.floor(Math.random() * rows);
      const row = { id: 'r' + String(i).padStart(8, '0'), tenant: 't' + (i % ${TENANTS}), email: 'app' + k + '.' + i + '@example.com', photo: Uint8Array.of(k & 255, i & 255) };
      const s = await records.seal(migration.reading, row);
      ${write}
      n++;
    }
    const failed = (error) => { console.error(error); process.exit(1); };
    while (!stopping) {
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      while (issued < due && inFlight < 64) {
        inFlight++;
        one(issued++).then(() => inFlight--, failed);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    while (inFlight > 0) await new Promise((r) => setTimeout(r, 5));
    process.send({ writes: n, seconds: (performance.now() - started) / 1000 }, () => process.exit(0));`;
}

interface Spawned {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: string | null; out: string }>;
}

/** How node runs a child's script: from a bundle written into `dir` (see MigrateOptions.bundle), or as it is. */
export async function scriptArgs(o: MigrateOptions, script: string, dir: string, name: string): Promise<string[]> {
  if (o.bundle === false) return ['--input-type=module', '-e', script];
  const entry = join(dir, `${name}.source.mjs`);
  const outfile = join(dir, `${name}.mjs`);
  writeFileSync(entry, script);
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // pg finds its optional native binding by require() when asked for it; better-sqlite3 is a native addon, loaded from node_modules.
    external: ['pg-native', 'better-sqlite3'],
    nodePaths: [fileURLToPath(new URL('../node_modules/', o.dist))],
    // The CommonJS inside (pg) requires node's modules; bare imports left outside resolve from dist/.
    banner: { js: `import { createRequire as kmseRequire } from 'node:module'; const require = kmseRequire(${JSON.stringify(o.dist)});` },
    logLevel: 'error',
  });
  return [outfile];
}

function spawnScript(args: string[], env: Record<string, string>, ipc = false): Spawned {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ipc ? ['ignore', 'pipe', 'inherit', 'ipc'] : ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out })));
  return { child, exit };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The database side of the harness: setup, the counts, the sampler, the verifier's reads. */
interface Db {
  exec(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
  env: Record<string, string>;
}

async function openDb(o: MigrateOptions): Promise<Db & { dir?: string }> {
  if (o.kind === 'postgres') {
    const pool = new pg.Pool({ connectionString: o.url, max: 4, application_name: HARNESS });
    return { exec: async (sql, params) => (await pool.query(sql, params)).rows, close: () => pool.end(), env: {} };
  }
  const dir = mkdtempSync(join(tmpdir(), 'kmse-migrate-'));
  const file = join(dir, 'db.sqlite');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 10000');
  return {
    dir,
    exec: async (sql, params = []) => {
      const statement = db.prepare(sql);
      return statement.reader ? (statement.all(...params) as Record<string, unknown>[]) : (statement.run(...params), []);
    },
    close: async () => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
    env: { DB_FILE: file },
  };
}

/** The plaintext table and its shadow (a copy of every value the harness expects). */
export async function createTables(db: Db, o: MigrateOptions, table: string): Promise<void> {
  const bytes = o.kind === 'postgres' ? 'BYTEA' : 'BLOB';
  await db.exec(`DROP TABLE IF EXISTS ${table}`);
  await db.exec(`DROP TABLE IF EXISTS ${table}_shadow`);
  await db.exec(`DROP TABLE IF EXISTS ${table}_keys`);
  if (o.kind === 'postgres') await db.exec(`DROP TABLE IF EXISTS ${table}_keys_tombstones`);
  await db.exec(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, photo ${bytes}, email_idx TEXT)`);
  await db.exec(`CREATE TABLE ${table}_shadow (id TEXT PRIMARY KEY, email TEXT, photo ${bytes})`);
  const fill = (target: string, cols: string) =>
    o.kind === 'postgres'
      ? `INSERT INTO ${target} (${cols}) SELECT 'r' || lpad(g::text, 8, '0'), ${cols.includes('tenant') ? `'t' || (g % ${TENANTS}), ` : ''}'user' || g || '@example.com', int4send(g) FROM generate_series(0, ${o.rows - 1}) g`
      : `WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < ${o.rows - 1}) INSERT INTO ${target} (${cols}) SELECT 'r' || substr('00000000' || n, -8), ${cols.includes('tenant') ? `'t' || (n % ${TENANTS}), ` : ''}'user' || n || '@example.com', CAST(printf('%08x', n) AS BLOB) FROM g`;
  await db.exec(fill(table, 'id, tenant, email, photo'));
  await db.exec(fill(`${table}_shadow`, 'id, email, photo'));
  // Phase (a)'s DDL: the marker column (nullable, no default: no rewrite), then on PostgreSQL a
  // partial index of the rows still to do, built CONCURRENTLY (the harness's DDL, before the data phase).
  await db.exec(`ALTER TABLE ${table} ADD COLUMN key_version INTEGER`);
  if (o.kind === 'postgres') await db.exec(`CREATE INDEX CONCURRENTLY ${table}_todo ON ${table} (id) WHERE key_version IS NULL`);
}

const WORKER = 'kmse-migrate-worker';
const APP = 'kmse-migrate-app';
const HARNESS = 'kmse-migrate-harness';

/**
 * Samples the lock modes the migration workers' sessions hold on the table (PostgreSQL), and the
 * CPU of the sessions (`cpu`): the workers' as they show up holding locks, the others' from
 * pg_stat_activity every 100 ms.
 */
function sampleLocks(db: Db, o: MigrateOptions, table: string, cpu: BackendCpu): { stop(): Promise<Set<string>> } {
  const seen = new Set<string>();
  let running = o.kind === 'postgres';
  const loop = (async () => {
    for (let i = 0; running; i++) {
      if (i % 20 === 0) {
        const sessions = await db.exec(`SELECT pid, application_name FROM pg_stat_activity WHERE backend_type = 'client backend'`);
        cpu.note(sessions.map((r) => ({ pid: Number(r.pid), role: String(r.application_name) })));
      }
      const rows = await db.exec(
        `SELECT l.pid, l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND a.application_name = '${WORKER}'`,
        [table],
      );
      for (const r of rows) seen.add(String(r.mode));
      cpu.note(rows.map((r) => ({ pid: Number(r.pid), role: WORKER })));
      if (i % 4 === 0) cpu.sample();
      await sleep(o.lockSampleMs ?? 5);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}

/** The backfill's rate assumed when spreading the kills over its run (rows a second per worker): a little above the goal, so every kill lands before the end. */
const ESTIMATED_ROWS_PER_SECOND = 6000;
/** A worker is killed only once it has run this long (past loading the package and its keys). */
const MIN_WORKER_AGE_MS = 300;

/** One run of a worker process: when it was spawned and killed, and the moments it printed (wall-clock ms). */
interface WorkerRun {
  spawnedAt: number;
  killedAt?: number;
  /** When the run it replaces was killed (a restart). */
  restartOf?: number;
  boot?: number;
  loaded?: number;
  start?: number;
  batches: number[];
  /** The worker's CPU ms at `start` and at each batch. */
  startCpu?: number;
  batchCpu: number[];
}

function readMoments(run: WorkerRun, out: string): void {
  for (const [, what, at, cpu] of out.matchAll(/^at (boot|loaded|start|batch) (\d+) (\d+)$/gm)) {
    if (what === 'batch') {
      run.batches.push(Number(at));
      run.batchCpu.push(Number(cpu));
    } else run[what as 'boot' | 'loaded' | 'start'] = Number(at);
    if (what === 'start') run.startCpu = Number(cpu);
  }
}

const median = (xs: number[]): number => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);

/**
 * Where a kill's time goes, medians over the restarted workers (ms): from the kill to node running the script, loading the
 * package, connecting and starting the sweep, its first batch, and from the kill to that first
 * batch committed; beside them, a batch in steady work and the work a kill threw away (from the
 * killed worker's last commit to the kill).
 */
export interface RestartTimings {
  restarts: number;
  node: number;
  load: number;
  connect: number;
  firstBatch: number;
  /** The worker's own CPU in its first batch after a restart, and in a steady batch (ms). */
  firstBatchCpu: number;
  steadyBatchCpu: number;
  killToFirstBatch: number;
  steadyBatch: number;
  thrownAway: number;
}

function restartTimings(runs: WorkerRun[]): RestartTimings {
  const restarted = runs.filter((r) => r.restartOf !== undefined && r.boot !== undefined && r.loaded !== undefined && r.start !== undefined && r.batches.length > 0);
  const killed = runs.filter((r) => r.killedAt !== undefined);
  const steady = runs.flatMap((r) => r.batches.slice(2).map((at, i) => at - r.batches[i + 1]!));
  return {
    restarts: restarted.length,
    node: median(restarted.map((r) => r.boot! - r.restartOf!)),
    load: median(restarted.map((r) => r.loaded! - r.boot!)),
    connect: median(restarted.map((r) => r.start! - r.loaded!)),
    firstBatch: median(restarted.map((r) => r.batches[0]! - r.start!)),
    killToFirstBatch: median(restarted.map((r) => r.batches[0]! - r.restartOf!)),
    steadyBatch: median(steady),
    firstBatchCpu: median(restarted.map((r) => r.batchCpu[0]! - r.startCpu!)),
    steadyBatchCpu: median(runs.flatMap((r) => r.batchCpu.slice(2).map((cpu, i) => cpu - r.batchCpu[i + 1]!))),
    thrownAway: median(killed.map((r) => r.killedAt! - (r.batches.at(-1) ?? r.start ?? r.spawnedAt))),
  };
}

/** K workers, each started again at once when the killer SIGKILLs it; resolves when every one has finished with `done`. */
async function runWorkers(o: MigrateOptions, env: Record<string, string>, script: string[]): Promise<{ kills: number; restarts: RestartTimings }> {
  let kills = 0;
  let finished = false;
  const live: (ChildProcess | undefined)[] = [];
  const current: WorkerRun[] = [];
  const runs: WorkerRun[] = [];
  const started: number[] = [];
  const slot = async (i: number): Promise<void> => {
    for (let killedAt: number | undefined; ; ) {
      const run: WorkerRun = { spawnedAt: Date.now(), ...(killedAt === undefined ? {} : { restartOf: killedAt }), batches: [], batchCpu: [] };
      const s = spawnScript(script, { ...env, APP_NAME: 'kmse-migrate-worker' });
      live[i] = s.child;
      current[i] = run;
      runs.push(run);
      started[i] = performance.now();
      const r = await s.exit;
      live[i] = undefined;
      readMoments(run, r.out);
      if (r.code === 0) return;
      if (r.signal !== 'SIGKILL') throw new Error(`a migration worker exited with ${r.code ?? r.signal}`);
      killedAt = run.killedAt ?? Date.now();
    }
  };
  // The kills land at random moments spread over the backfill's expected time (its rows at
  // ESTIMATED_ROWS_PER_SECOND per worker), each on a worker that has been running for a while, so
  // they interrupt work in every part of the run rather than workers still starting.
  const expectedMs = (o.rows / (o.workers * (o.estimatedRowsPerSecond ?? ESTIMATED_ROWS_PER_SECOND))) * 1000;
  const moments = Array.from({ length: o.kills }, () => expectedMs * (0.05 + 0.85 * Math.random())).sort((a, b) => a - b);
  const killer = (async () => {
    const begin = performance.now();
    for (const moment of moments) {
      await sleep(Math.max(0, moment - (performance.now() - begin)));
      for (;;) {
        if (finished) return;
        const running = live.map((child, i) => ({ child, i })).filter(({ child, i }) => child && child.exitCode === null && child.signalCode === null && performance.now() - started[i]! >= MIN_WORKER_AGE_MS);
        const pick = running[Math.floor(Math.random() * running.length)];
        if (pick) {
          current[pick.i]!.killedAt = Date.now();
          pick.child!.kill('SIGKILL');
          kills++;
          break;
        }
        await sleep(50);
      }
    }
  })();
  try {
    await Promise.all(Array.from({ length: o.workers }, (_, i) => slot(i)));
  } finally {
    finished = true;
    await killer;
  }
  return { kills, restarts: restartTimings(runs) };
}

/** Every row opened with phase (c)'s table and compared with its shadow. */
function verifierScript(o: MigrateOptions, table: string): string {
  const read =
    o.kind === 'postgres'
      ? `(await pool.query(\`SELECT s.id, t.tenant, t.email, t.photo, t.email_idx, t.key_version, s.email AS s_email, s.photo AS s_photo FROM \${table}_shadow s LEFT JOIN \${table} t ON t.id = s.id WHERE s.id > $1 ORDER BY s.id LIMIT 2000\`, [after])).rows`
      : `db.prepare(\`SELECT t.*, s.email AS s_email, s.photo AS s_photo FROM \${table}_shadow s LEFT JOIN \${table} t USING (id) WHERE s.id > ? ORDER BY s.id LIMIT 2000\`).all(after)`;
  return `${prelude(o, table)}
    const sealedTable = migration.sealed;
    let after = '', plaintext = 0, lost = 0, double = 0, n = 0;
    const sealedLooking = (v) => typeof v === 'string' ? v.startsWith('kme.') : v instanceof Uint8Array && v.length >= 4 && v[0] === 0x89 && v[1] === 0x4b && v[2] === 0x4d && v[3] === 0x45;
    for (;;) {
      const rows = ${read};
      if (rows.length === 0) break;
      for (const row of rows) {
        n++;
        if (row.tenant == null || row.s_email == null) { lost++; continue; }
        if (row.key_version === null || !sealedLooking(row.email) || !sealedLooking(row.photo)) { plaintext++; continue; }
        let opened;
        try { opened = await records.open(sealedTable, row); } catch (e) { lost++; continue; }
        if (sealedLooking(opened.email) || sealedLooking(opened.photo)) { double++; continue; }
        if (opened.email !== row.s_email || Buffer.compare(Buffer.from(opened.photo), Buffer.from(row.s_photo)) !== 0) lost++;
      }
      after = rows.at(-1).id;
    }
    console.log(JSON.stringify({ n, plaintext, lost, double }));
    process.exit(0);`;
}

/** The CPU line of the backfill (see bench/migrate-cpu.ts): workers (every run, reaped), their sessions, the application and its sessions, the harness and its (the lock sampler), the rest of PostgreSQL. */
function cpuSpent(backends: BackendCpu, at: { self: NodeJS.CpuUsage; children: number | undefined; app: number | undefined }, appPid: number, rows: number, seconds: number): string {
  const self = process.cpuUsage(at.self);
  const sub = (now: number | undefined, then: number | undefined) => (now === undefined || then === undefined ? undefined : now - then);
  const { byRole, cluster } = backends.totals();
  const sessions = [...byRole.values()].reduce((a, b) => a + b, 0);
  if (byRole.size === 0) return '';
  return cpuLine(
    [
      ['workers', sub(procCpu('self')?.children, at.children)],
      ['their postgres sessions', byRole.get(WORKER) ?? 0],
      ['application', sub(procCpu(appPid)?.own, at.app)],
      ['its sessions', byRole.get(APP) ?? 0],
      ['harness', (self.user + self.system) / 1000],
      ['its sessions (lock sampler)', byRole.get(HARNESS) ?? 0],
      ['postgres rest', sub(cluster, sessions)],
    ],
    rows,
    seconds,
  );
}

export async function runMigrate(o: MigrateOptions): Promise<MigrateResult> {
  const log = o.log ?? (() => {});
  const table = o.table ?? `kmse_migrate_${randomBytes(4).toString('hex')}`;
  const db = await openDb(o);
  const env = { KMS_ENVELOPE_LOCAL_KEY: randomBytes(32).toString('base64'), ...db.env };
  const scripts = mkdtempSync(join(tmpdir(), 'kmse-migrate-scripts-'));
  try {
    const [appArgs, workerArgs, verifierArgs] = await Promise.all([
      scriptArgs(o, appScript(o, table), scripts, 'app'),
      scriptArgs(o, workerScript(o, table), scripts, 'worker'),
      scriptArgs(o, verifierScript(o, table), scripts, 'verifier'),
    ]);
    await createTables(db, o, table);
    log(`migrate setup: ${o.rows} plaintext rows in ${TENANTS} tenants (${o.kind})`);
    const app = spawnScript(appArgs, { ...env, POOL_MAX: '8', APP_NAME: APP }, true);
    const appDone = new Promise<{ writes: number; seconds: number }>((resolve) => app.child.once('message', (m) => resolve(m as { writes: number; seconds: number })));
    await sleep(500); // the application writes before the backfill starts (phase a)
    const backends = new BackendCpu();
    const sampler = sampleLocks(db, o, table, backends);
    const cpuAtStart = { self: process.cpuUsage(), children: procCpu('self')?.children, app: procCpu(app.child.pid!)?.own };
    const started = performance.now();
    const { kills, restarts } = await runWorkers(o, env, workerArgs);
    const seconds = (performance.now() - started) / 1000;
    const locks = await sampler.stop();
    const cpu = cpuSpent(backends, cpuAtStart, app.child.pid!, o.rows, seconds);
    app.child.send('stop');
    const traffic = await appDone;
    await app.exit;
    log(`migrate backfill: ${seconds.toFixed(1)} s, kills ${kills}, application ${traffic.writes} writes in ${traffic.seconds.toFixed(1)} s`);
    const r = restarts;
    if (cpu) log(cpu);
    log(
      `migrate restarts (${r.restarts}, medians in ms): kill to first batch ${r.killToFirstBatch} = node ${r.node} + loading ${r.load} + connect and start ${r.connect} + first batch ${r.firstBatch}; ` +
        `a steady batch ${r.steadyBatch}; the worker's CPU in its first batch ${r.firstBatchCpu}, in a steady batch ${r.steadyBatchCpu}; thrown away at a kill (since the last commit) ${r.thrownAway}`,
    );
    const verified = JSON.parse((await spawnScript(verifierArgs, env).exit).out.trim().split('\n').at(-1)!) as { n: number; plaintext: number; lost: number; double: number };
    const rowsPerSecondPerWorker = Math.round(o.rows / seconds / o.workers);
    const writesPerSecond = Math.round(traffic.writes / traffic.seconds);
    const strongestHeld = o.kind === 'postgres' ? (strongestLock(locks) ?? 'none') : 'none (SQLite: no table locks)';
    const line = `migrate ${o.rows} rows under ${writesPerSecond} writes/s: ${rowsPerSecondPerWorker} rows/s per worker (${o.workers} workers), plaintext left ${verified.plaintext}, lost updates ${verified.lost}, double-encrypted ${verified.double}, strongest lock ${strongestHeld}, kills ${kills}`;
    return { rows: o.rows, writesPerSecond, rowsPerSecondPerWorker, workers: o.workers, plaintextLeft: verified.plaintext, lostUpdates: verified.lost, doubleEncrypted: verified.double, strongestLock: strongestHeld, kills, seconds, restarts, cpu, line };
  } finally {
    if (!o.table) for (const t of [table, `${table}_shadow`, `${table}_keys`, ...(o.kind === 'postgres' ? [`${table}_keys_tombstones`] : [])]) await db.exec(`DROP TABLE IF EXISTS ${t}`).catch(() => {});
    await db.close();
    rmSync(scripts, { recursive: true, force: true });
  }
}
