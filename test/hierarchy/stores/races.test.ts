/**
 * Races between real processes, for the stores that several processes share: the JSON file (its
 * lock), SQLite (busy timeout, ON CONFLICT) and PostgreSQL (a real server). Children import the
 * built package (dist/, made by `npm run build` before the tests), wait at a barrier until all are
 * ready, and then go at once.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyStore, StoredKey } from '../../../src/hierarchy/key-store.ts';
import { JsonFileKeyStore } from '../../../src/node.ts';
import { PostgresKeyStore, SqliteKeyStore } from '../../../src/hierarchy.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../../fixtures/postgres.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
// The built store modules themselves: the whole kms-envelope/node entry would slow every child's start-up.
const DIST = new URL('../../../dist/', import.meta.url);
const WRITERS = 8;
const dir = mkdtempSync(join(tmpdir(), 'kmse-key-store-races-'));
let server: PostgresServer | undefined;
let pool: pg.Pool;

type Kind = 'json' | 'sqlite' | 'postgres';
const KINDS: Kind[] = ['json', 'sqlite', 'postgres'];
const PARTITIONS = Array.from({ length: 10 }, (_, i) => `tenant-${i}`);
const PER_WRITER = 5;
const TOTAL = WRITERS * PER_WRITER;
const runs = new Map<Kind, Promise<Run>>();

beforeAll(async () => {
  if (!existsSync(new URL('node/json-file-key-store.js', DIST))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  // The three stores race at the same time (each against itself), the first two while the
  // PostgreSQL server starts.
  const start = (kind: Kind) => {
    const run = race(kind);
    run.catch(() => {}); // reported by the tests that await it
    runs.set(kind, run);
  };
  start('json');
  start('sqlite');
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  start('postgres');
}, 60_000);

afterAll(async () => {
  for (const run of runs.values()) await run.then((r) => r.target.close(), () => {});
  await pool?.end();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Job {
  kind: Kind;
  target: string;
  table?: string;
  op: 'write' | 'read';
  id: number;
  /** write: create version 1 of each of these partitions (every writer the same ones, in order). */
  partitions?: string[];
  /** write: then create these versions of the partition "shared", and retire the even ones. */
  versions?: number[];
  /** read: read "shared" until it has this many versions. */
  expect?: number;
}

// One child: imports first, then "ready", then waits for "go" and opens its own store (so the
// table creation races too), does its job and prints the result as JSON.
const CHILD = `
const job = JSON.parse(process.argv[1]);
const { JsonFileKeyStore, SqliteKeyStore, PostgresKeyStore } = await import(process.env.KMSE_DIST + { json: 'node/json-file-key-store', sqlite: 'hierarchy/stores/sqlite', postgres: 'hierarchy/stores/postgres' }[job.kind] + '.js');
const Database = job.kind === 'sqlite' ? (await import('better-sqlite3')).default : undefined;
const pg = job.kind === 'postgres' ? (await import('pg')).default : undefined;
process.stdout.write('ready\\n');
await new Promise((go) => process.stdin.once('data', go));
let store;
let close = async () => {};
if (job.kind === 'json') store = new JsonFileKeyStore(job.target);
if (job.kind === 'sqlite') {
  const db = new Database(job.target);
  store = new SqliteKeyStore({ database: db, table: job.table });
  close = async () => db.close();
}
if (job.kind === 'postgres') {
  const pool = new pg.Pool({ connectionString: job.target, max: 1 });
  store = new PostgresKeyStore({ client: pool, table: job.table });
  close = () => pool.end();
}
const key = (partition, version, blob) => ({ partition, version, state: 'active', provider: 'local', keyId: 'local-k', ciphertextBlob: blob, createdAt: Date.now() });
let result;
if (job.op === 'write') {
  const same = [];
  for (const partition of job.partitions) same.push(await store.createVersion(key(partition, 1, 'blob of writer ' + job.id)));
  for (const v of job.versions) await store.createVersion(key('shared', v, 'blob of writer ' + job.id));
  for (const v of job.versions) if (v % 2 === 0) await store.setState('shared', v, 'decrypt-only');
  result = { same, distinct: job.versions.length };
}
if (job.op === 'read') {
  let reads = 0;
  let seen = 0;
  const until = Date.now() + 30000;
  while (seen < job.expect && Date.now() < until) {
    seen = (await store.listVersions('shared')).length;
    await store.getActive('shared');
    reads++;
    await new Promise((r) => setTimeout(r, 5));
  }
  result = { reads, seen };
}
await close();
process.stdout.write(JSON.stringify(result) + '\\n');
`;

/** Runs one child per job, all released at once; resolves with their results in job order. */
async function runAtOnce(jobs: Job[]): Promise<unknown[]> {
  const children = jobs.map((job) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, JSON.stringify(job)], {
      cwd: ROOT, // resolves better-sqlite3 and pg from the project's node_modules
      env: { ...process.env, KMSE_DIST: DIST.href },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const ready = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n')) resolve();
      }),
    );
    const done = new Promise<unknown>((resolve, reject) =>
      child.on('close', (code) => {
        if (code === 0) resolve(JSON.parse(out.slice('ready\n'.length)));
        else reject(new Error(`child ${job.op} #${job.id} (${job.kind}) exited with ${code}: ${err}`));
      }),
    );
    return { child, ready, done };
  });
  try {
    // A child that dies before it is ready ends the wait too, with its error.
    await Promise.race([Promise.all(children.map((c) => c.ready)), Promise.all(children.map((c) => c.done))]);
    for (const { child } of children) child.stdin.end('go\n');
    return await Promise.all(children.map((c) => c.done));
  } finally {
    for (const { child } of children) if (child.exitCode === null) child.kill();
  }
}

interface Target {
  target: string;
  table?: string;
  /** The parent's own store over the same storage, to check what was kept. */
  open(): KeyStore;
  close(): Promise<void>;
}

let counter = 0;

async function makeTarget(kind: Kind): Promise<Target> {
  const name = join(dir, `race-${++counter}`);
  if (kind === 'json') return { target: `${name}.json`, open: () => new JsonFileKeyStore(`${name}.json`), close: async () => {} };
  const table = uniqueTable();
  if (kind === 'sqlite') {
    // WAL, as the store's documentation asks, so readers do not wait for the writer.
    const db = new Database(`${name}.sqlite`);
    db.pragma('journal_mode = WAL');
    return { target: `${name}.sqlite`, table, open: () => new SqliteKeyStore({ database: db, table }), close: async () => void db.close() };
  }
  return {
    target: server!.url,
    table,
    open: () => new PostgresKeyStore({ client: pool, table }),
    close: async () => void (await pool.query(`DROP TABLE IF EXISTS ${table}, ${table}_tombstones`)),
  };
}

interface Run {
  target: Target;
  writes: Array<{ same: StoredKey[]; distinct: number }>;
  reads: Array<{ reads: number; seen: number }>;
}

/**
 * One round of processes per store, released at once: every writer first creates version 1 of the
 * same partitions, then its own versions of one shared partition (and retires the even ones),
 * while a reader reads that partition.
 */
async function race(kind: Kind): Promise<Run> {
  const target = await makeTarget(kind);
  const writers = Array.from({ length: WRITERS }, (_, id): Job => ({
    kind,
    target: target.target,
    table: target.table,
    op: 'write',
    id,
    partitions: PARTITIONS,
    // Interleaved, so that every write lands next to another writer's.
    versions: Array.from({ length: PER_WRITER }, (_, k) => id + WRITERS * k + 1),
  }));
  const readers = [0].map((id): Job => ({ kind, target: target.target, table: target.table, op: 'read', id, expect: TOTAL }));
  const results = await runAtOnce([...writers, ...readers]);
  return { target, writes: results.slice(0, WRITERS) as Run['writes'], reads: results.slice(WRITERS) as Run['reads'] };
}

describe.each(KINDS)('%s store: races between processes', (kind) => {
  let run: Run;
  beforeAll(async () => {
    run = await runs.get(kind)!;
  }, 60_000);

  it(`${WRITERS} processes create version 1 of the same partitions at once: one record wins each, and every process gets that one`, async () => {
    const store = run.target.open();
    for (const [i, partition] of PARTITIONS.entries()) {
      const got = run.writes.map((w) => w.same[i]!);
      expect(new Set(got.map((k) => JSON.stringify(k))).size).toBe(1);
      expect(got[0]!.ciphertextBlob).toMatch(/^blob of writer [0-7]$/);
      expect(await store.listVersions(partition)).toEqual([got[0]]);
    }
  });

  it(`${WRITERS} processes create and retire distinct versions of one partition at once, while another reads: nothing is lost`, async () => {
    expect(run.writes.map((w) => w.distinct)).toEqual(Array(WRITERS).fill(PER_WRITER));
    for (const read of run.reads) {
      expect(read.seen).toBe(TOTAL);
      expect(read.reads).toBeGreaterThan(0);
    }
    const stored = await run.target.open().listVersions('shared');
    expect(stored.map((k) => k.version)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
    for (const k of stored) {
      expect(k.ciphertextBlob).toBe(`blob of writer ${(k.version - 1) % WRITERS}`);
      expect(k.state).toBe(k.version % 2 === 0 ? 'decrypt-only' : 'active');
    }
  });
});
