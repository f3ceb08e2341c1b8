/**
 * `npm run bench:compare`: the working tree's build (dist/) against the `v0.2.0` tag's, loaded side
 * by side in one process, so the same run and the same machine measure both:
 *
 *   - 1 KiB seal+open, a fresh data key per message (LocalKms, no cache);
 *   - 1 KiB seal+open, cached (the encryption and decrypt caches: `cache: true, decryptCache: true` before 0.3, the factories since);
 *   - records seal+open of one row (the record API under a key hierarchy, MemoryKeyStore, LocalKms);
 *   - the records bench's loop against PostgreSQL (bench/records-db-run.ts: rows of three encrypted
 *     fields and a blind index, inserted in batches with sealMany and selected back with openMany),
 *     time per row for the insert and for the select.
 *
 * The in-memory cases run in interleaved rounds (as bench/harness.ts: every case once per round,
 * so a slow stretch of the machine hits both builds, the two builds of a case back to back and
 * taking turns at going first), timed in this process's CPU time (as bench/sm4.ts: the machines
 * are shared; `--wall` for wall-clock time); the PostgreSQL passes alternate the builds and are
 * timed in wall-clock time (the server is another process).
 * Each line gives both medians, the ratio current / v0.2.0 (the median of the per-round ratios:
 * above 1 is slower) and the spread (lowest–highest round) of each, with the load average at the
 * start and the end. Before timing, each build opens what the other sealed under the same master key.
 *
 * The tag is built once into a directory under the OS temporary directory (`git archive`, the
 * working tree's node_modules linked in, `tsc -p tsconfig.build.json`) and reused. Names are
 * looked up in the package's entries, the newer ones first (`kms-envelope/records`,
 * `kms-envelope/hierarchy` from package.json `exports`, else dist/records.js and
 * dist/hierarchy.js), falling back to dist/index.js, where v0.2.0 exports everything.
 *
 * Flags: --ref TAG (default v0.2.0), --rounds N (default 15), --pg URL (a PostgreSQL server; by
 * default KMS_ENVELOPE_PG_URL, else a throwaway cluster from .ci/postgres.sh), --no-pg (skip the
 * PostgreSQL cases), --rows N (default 10000), --passes N (default 5), --wall.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { type Case, formatNs, type Result, ratioTo } from './harness.ts';
import { startPostgres } from './postgres-process.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? '') : undefined;
}
// v0.2.0 is the tag on 180678a, the last commit before the house moves; a clone without the tag uses the commit.
const REF = flag('--ref') || (tagExists('v0.2.0') ? 'v0.2.0' : '180678a');
const ROUNDS = Number(flag('--rounds') || 15);
const ROWS = Number(flag('--rows') || 10_000);
const PASSES = Number(flag('--passes') || 5);
const BATCH = 1_000;
const WALL = process.argv.includes('--wall');

/** This process's CPU time (all its threads), nanoseconds: what else runs on a shared machine does not count. */
function cpuNs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}
const wallNs = (): number => Number(process.hrtime.bigint());

/**
 * bench/harness.ts's measure() with a choice of clock (this process's CPU time by default, as
 * bench/sm4.ts: the machines these run on are shared) and the cases of each pair taking turns at
 * going first: the cases come in pairs (v0.2.0, current) and every round runs each pair back to
 * back, after a full garbage collection, in batches of about `batchMs`.
 */
async function measurePairs(cases: Case[], options: { rounds: number; batchMs?: number }): Promise<Result[]> {
  const clock = WALL ? wallNs : cpuNs;
  const batchMs = options.batchMs ?? 100;
  const timeBatch = async (c: Case, ops: number): Promise<number> => {
    const start = clock();
    for (let i = 0; i < ops; i++) {
      const r = c.run();
      if (r instanceof Promise) await r;
    }
    return (clock() - start) / ops;
  };
  // Calibration doubles as warm-up.
  const opsPerBatch = new Map<Case, number>();
  for (const c of cases) {
    let ops = 1;
    while ((await timeBatch(c, ops)) * ops < batchMs * 1e6 * 0.5 && ops < 1e7) ops *= 2;
    opsPerBatch.set(c, ops);
  }
  const samples = new Map<Case, number[]>(cases.map((c) => [c, []]));
  const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => {});
  for (let r = 0; r < options.rounds; r++) {
    for (let p = 0; p < cases.length; p += 2) {
      const pair = r % 2 ? [cases[p + 1]!, cases[p]!] : [cases[p]!, cases[p + 1]!];
      for (const c of pair) {
        gc();
        samples.get(c)!.push(await timeBatch(c, opsPerBatch.get(c)!));
      }
    }
  }
  return cases.map((c) => {
    const rounds = samples.get(c)!;
    const s = [...rounds].sort((a, b) => a - b);
    return { name: c.name, medianNs: s[Math.floor(s.length / 2)]!, minNs: s[0]!, maxNs: s[s.length - 1]!, rounds };
  });
}

// ---------------------------------------------------------------------------------------------
// The two builds, typed by what this bench uses of them (no import of src/: any layout loads).

type Row = Record<string, unknown>;
interface EnvelopeLike {
  seal(plaintext: Uint8Array): Promise<Uint8Array>;
  open(sealed: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}
type BatchResult<T> = { ok: true; value: T } | { ok: false; error: unknown };
interface RecordsLike {
  seal(table: unknown, row: Row): Promise<Row>;
  open(table: unknown, row: Row): Promise<Row>;
  sealMany(table: unknown, rows: readonly Row[], options?: { failFast?: boolean }): Promise<BatchResult<Row>[]>;
  openMany(table: unknown, rows: readonly Row[], options?: { failFast?: boolean }): Promise<BatchResult<Row>[]>;
}
interface Build {
  name: string;
  createEnvelope(options: { kms: unknown; cache?: unknown; decryptCache?: unknown }): EnvelopeLike;
  /** Both caches as this build takes them: factories since 0.3 (encryptionCache(), decryptCache()), `true` before. */
  caches: { cache: unknown; decryptCache: unknown };
  LocalKms: { new (keys: Record<string, Uint8Array>): unknown; generate(): unknown };
  createRecords(options: { hierarchy: unknown }): RecordsLike;
  createKeyHierarchy(options: { store: unknown; kms: unknown }): unknown;
  MemoryKeyStore: new () => unknown;
  defineTable(spec: object): unknown;
}

/** The file of a package entry as Node loads it: package.json `exports` (its `node` condition, else its default), else dist/<name>.js. */
function entryFile(dir: string, name: string): string | undefined {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { exports?: Record<string, unknown> };
  const spec = manifest.exports?.[name === 'index' ? '.' : `./${name}`];
  const conditions = spec as { node?: string; default?: string } | undefined;
  const target = typeof spec === 'string' ? spec : (conditions?.node ?? conditions?.default ?? undefined);
  for (const file of [target && join(dir, target), join(dir, 'dist', `${name}.js`)]) if (file && existsSync(file)) return file;
  return undefined;
}

async function loadBuild(name: string, dir: string): Promise<Build> {
  const modules = new Map<string, Record<string, unknown>>();
  for (const entry of ['index', 'records', 'hierarchy']) {
    const file = entryFile(dir, entry);
    if (file) modules.set(entry, (await import(pathToFileURL(file).href)) as Record<string, unknown>);
  }
  const pick = (exported: string, entries: string[]): unknown => {
    for (const entry of [...entries, 'index']) {
      const value = modules.get(entry)?.[exported];
      if (value !== undefined) return value;
    }
    throw new Error(`${name} (${dir}): no entry exports ${exported}`);
  };
  return {
    name,
    createEnvelope: pick('createEnvelope', []) as Build['createEnvelope'],
    LocalKms: pick('LocalKms', []) as Build['LocalKms'],
    createRecords: pick('createRecords', ['records']) as Build['createRecords'],
    defineTable: pick('defineTable', ['records']) as Build['defineTable'],
    createKeyHierarchy: pick('createKeyHierarchy', ['hierarchy']) as Build['createKeyHierarchy'],
    MemoryKeyStore: pick('MemoryKeyStore', ['hierarchy']) as Build['MemoryKeyStore'],
    caches: cachesOf(modules.get('index') ?? {}),
  };
}

function cachesOf(index: Record<string, unknown>): Build['caches'] {
  const factory = (name: string) => index[name] as (() => unknown) | undefined;
  const encryption = factory('encryptionCache');
  const decrypt = factory('decryptCache');
  return encryption && decrypt ? { cache: encryption(), decryptCache: decrypt() } : { cache: true, decryptCache: true };
}

/** The tag's source, built once under the OS temporary directory (reused while its commit is the same). */
function tagExists(tag: string): boolean {
  try {
    execFileSync('git', ['-C', root, 'rev-parse', '--verify', '--quiet', `${tag}^{commit}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function buildRef(ref: string): string {
  const commit = execFileSync('git', ['-C', root, 'rev-parse', `${ref}^{commit}`], { encoding: 'utf8' }).trim();
  const dir = join(tmpdir(), `kms-envelope-${ref}-${commit.slice(0, 12)}`);
  const done = join(dir, '.built');
  if (existsSync(done)) return dir;
  console.error(`# building ${ref} (${commit.slice(0, 12)}) in ${dir}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('sh', ['-c', 'git -C "$1" archive "$2" | tar -x -C "$3"', 'sh', root, commit, dir], { stdio: 'inherit' });
  symlinkSync(realpathSync(join(root, 'node_modules')), join(dir, 'node_modules'), 'dir');
  execFileSync(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
  writeFileSync(done, `${commit}\n`);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The cases

const benchRows = (count: number): Row[] =>
  Array.from({ length: count }, (_, i) => ({
    id: `0190a1b2-${String(i).padStart(8, '0')}`,
    name: `user ${i}`,
    a: `a${i}`.padEnd(20, 'x'),
    b: `b${i}`.padEnd(100, 'y'),
    c: `c${i}`.padEnd(200, 'z'),
  }));

const USERS = {
  name: 'users',
  primaryKey: 'id',
  partition: 'tenant-1',
  columns: { a: { type: 'string', index: { column: 'idx', bits: 128 } }, b: { type: 'string' }, c: { type: 'string' } },
};

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** Each build opens what the other sealed, under one master key: the format did not move. */
async function crossCheck(builds: Build[], message: Uint8Array): Promise<void> {
  const master = crypto.getRandomValues(new Uint8Array(32));
  const envelopes = builds.map((b) => b.createEnvelope({ kms: new b.LocalKms({ bench: master.slice() }) }));
  for (const [i, from] of envelopes.entries()) {
    const sealed = await from.seal(message);
    for (const [j, to] of envelopes.entries()) {
      if (!same(await to.open(sealed), message)) throw new Error(`${builds[j]!.name} did not open what ${builds[i]!.name} sealed`);
    }
  }
  await Promise.all(envelopes.map((e) => e.close()));
}

function recordsApi(b: Build): { records: RecordsLike; table: unknown } {
  const hierarchy = b.createKeyHierarchy({ store: new b.MemoryKeyStore(), kms: b.LocalKms.generate() });
  return { records: b.createRecords({ hierarchy }), table: b.defineTable(USERS) };
}

async function memoryCases(builds: Build[], toClose: EnvelopeLike[]): Promise<Case[]> {
  const message = crypto.getRandomValues(new Uint8Array(1024));
  const rows = benchRows(1000);
  const cases: Case[][] = [[], [], []];
  for (const b of builds) {
    const fresh = b.createEnvelope({ kms: b.LocalKms.generate() });
    const cached = b.createEnvelope({ kms: b.LocalKms.generate(), ...b.caches });
    toClose.push(fresh, cached);
    const { records, table } = recordsApi(b);
    let n = 0;
    const sealOpen = (e: EnvelopeLike) => async (): Promise<void> => {
      const opened = await e.open(await e.seal(message));
      if (opened.length !== message.length) throw new Error('seal+open lost bytes');
    };
    cases[0]!.push({ name: `1 KiB seal+open, fresh data key|${b.name}`, run: sealOpen(fresh) });
    cases[1]!.push({ name: `1 KiB seal+open, cached|${b.name}`, run: sealOpen(cached) });
    cases[2]!.push({
      name: `records seal+open, one row|${b.name}`,
      run: async () => {
        const row = rows[n++ % rows.length]!;
        const opened = await records.open(table, await records.seal(table, row));
        if (opened.c !== row.c) throw new Error('records seal+open lost the row');
      },
    });
  }
  return cases.flat();
}

/** The records bench's loop against PostgreSQL, per build: time per row of insert (sealMany) and select (openMany). */
async function postgresPasses(builds: Build[], url: string): Promise<Result[]> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const rows = benchRows(ROWS);
  const samples = new Map<string, number[]>();
  const add = (name: string, ns: number): void => void (samples.get(name) ?? samples.set(name, []).get(name)!).push(ns);
  try {
    const apis = builds.map((b) => ({ b, ...recordsApi(b) }));
    for (let pass = 0; pass < PASSES; pass++) {
      // The builds alternate which goes first.
      for (const { b, records, table } of pass % 2 ? [...apis].reverse() : apis) {
        const name = `bench_compare_${b.name.replace(/\W/g, '_')}`;
        await pool.query(`DROP TABLE IF EXISTS ${name}`);
        await pool.query(`CREATE TABLE ${name} (id TEXT PRIMARY KEY, name TEXT, a TEXT, b TEXT, c TEXT, idx TEXT)`);
        let start = process.hrtime.bigint();
        for (let i = 0; i < ROWS; i += BATCH) {
          const sealed = (await records.sealMany(table, rows.slice(i, i + BATCH), { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
          const values: unknown[] = [];
          const tuples = sealed.map((r, j) => {
            values.push(r.id, r.name, r.a, r.b, r.c, r.idx);
            return `($${j * 6 + 1}, $${j * 6 + 2}, $${j * 6 + 3}, $${j * 6 + 4}, $${j * 6 + 5}, $${j * 6 + 6})`;
          });
          await pool.query(`INSERT INTO ${name} (id, name, a, b, c, idx) VALUES ${tuples.join(', ')}`, values);
        }
        add(`records + PostgreSQL insert, per row|${b.name}`, Number(process.hrtime.bigint() - start) / ROWS);
        start = process.hrtime.bigint();
        let opened = 0;
        for (let i = 0; i < ROWS; i += BATCH) {
          const { rows: batch } = await pool.query(`SELECT id, name, a, b, c, idx FROM ${name} ORDER BY id LIMIT ${BATCH} OFFSET ${i}`);
          for (const r of await records.openMany(table, batch as Row[], { failFast: true })) if (r.ok && typeof r.value.a === 'string') opened++;
        }
        add(`records + PostgreSQL select, per row|${b.name}`, Number(process.hrtime.bigint() - start) / ROWS);
        if (opened !== ROWS) throw new Error(`${b.name}: opened ${opened} of ${ROWS} rows`);
        await pool.query(`DROP TABLE ${name}`);
      }
    }
  } finally {
    await pool.end();
  }
  return [...samples].map(([name, rounds]) => {
    const s = [...rounds].sort((a, b) => a - b);
    return { name, medianNs: s[Math.floor(s.length / 2)]!, minNs: s[0]!, maxNs: s[s.length - 1]!, rounds };
  });
}

// ---------------------------------------------------------------------------------------------

function table(results: Result[], names: [string, string]): string {
  const byCase = new Map<string, Map<string, Result>>();
  for (const r of results) {
    const [label, build] = r.name.split('|') as [string, string];
    (byCase.get(label) ?? byCase.set(label, new Map()).get(label)!).set(build, r);
  }
  const head = ['case', `${names[0]} median`, `${names[1]} median`, 'ratio', `${names[0]} spread`, `${names[1]} spread`];
  const lines = [head];
  const spread = (r: Result): string => `${formatNs(r.minNs)}–${formatNs(r.maxNs)}`;
  for (const [label, pair] of byCase) {
    const base = pair.get(names[0])!;
    const current = pair.get(names[1])!;
    lines.push([label, formatNs(base.medianNs), formatNs(current.medianNs), `${ratioTo(current, base).toFixed(2)}x`, spread(base), spread(current)]);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const row = (l: string[]): string => `| ${l.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [row(lines[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.slice(1).map(row)].join('\n');
}

const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
const startLoad = load();
const refDir = buildRef(REF);
if (!existsSync(join(root, 'dist', 'index.js'))) throw new Error('no dist/index.js: run `npm run build` first (npm run bench:compare does)');
const builds = [await loadBuild(REF, refDir), await loadBuild('current', root)];
const message = crypto.getRandomValues(new Uint8Array(1024));
await crossCheck(builds, message);

const envelopes: EnvelopeLike[] = [];
const results = await measurePairs(await memoryCases(builds, envelopes), { rounds: ROUNDS });
await Promise.all(envelopes.map((e) => e.close()));

let pgNote = 'PostgreSQL cases skipped (--no-pg)';
if (flag('--no-pg') === undefined) {
  const given = flag('--pg');
  const server = given ? { url: given, stop: () => {} } : await startPostgres();
  try {
    results.push(...(await postgresPasses(builds, server.url)));
    pgNote = `PostgreSQL: ${ROWS} rows in batches of ${BATCH}, ${PASSES} passes per build (alternating), wall-clock time`;
  } finally {
    server.stop();
  }
}

console.log(`# ${REF} (${refDir}) against the working tree (${root}dist), Node ${process.version}`);
console.log(`# in-memory cases: ${ROUNDS} interleaved rounds timed in ${WALL ? 'wall-clock time' : "this process's CPU time"}; ${pgNote}`);
console.log(`# ratio: current / ${REF}, the median of per-round ratios (above 1: slower); spread: lowest–highest round`);
console.log(table(results, [REF, 'current']));
console.log(`# load average (1, 5, 15 min): ${startLoad} at the start, ${load()} at the end`);
