/**
 * A rotation sweep killed with SIGKILL at random points and started again, as real OS processes
 * (dist/; `npm run build` first) against the real PostgreSQL, two sweeping processes at a time
 * with two workers each, sharing a PostgresKeyStore; then one stopped by SIGINT (Ctrl-C: it
 * finishes its batches under way and reports what it wrote). At the end every row is done exactly once (an
 * AFTER UPDATE trigger logs every committed rewrite: a row done twice would be logged twice) and
 * opens to its original values (nothing lost). In the slow list: it spawns processes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyHierarchy } from '../../../src/hierarchy/hierarchy.ts';
import { LocalKms } from '../../../src/index.ts';
import { PostgresKeyStore } from '../../../src/hierarchy.ts';
import { createRecords, defineTable } from '../../../src/records/records.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../../fixtures/postgres.ts';

const ROWS = 6000;
const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' } } });
const masterKey = randomBytes(32).toString('base64');
const env = { KMS_ENVELOPE_LOCAL_KEY: masterKey };

let server: PostgresServer;
let pool: pg.Pool;
let table: string;
let keys: string;
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  table = uniqueTable('kmse_kill');
  keys = uniqueTable('kmse_kill_keys');
});
afterAll(async () => {
  await pool.query(`DROP TABLE IF EXISTS ${table}, ${table}_log, ${keys}, ${keys}_tombstones`);
  await pool.end();
  await server.stop();
});

const dist = (file: string) => JSON.stringify(new URL(`../../../dist/${file}`, import.meta.url).href);
// One sweeping process: prints a line per committed batch, and `done` with its summary at the end.
const SWEEPER = `
  import pg from 'pg';
  import { LocalKms } from ${dist('index.js')};
  import { createKeyHierarchy, PostgresKeyStore } from ${dist('hierarchy.js')};
  import { createRecords, defineTable, rotationSweep, sweepPostgres } from ${dist('records.js')};
  const [url, table, keys] = process.argv.slice(1);
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  const hierarchy = createKeyHierarchy({ store: new PostgresKeyStore({ client: pool, table: keys }), kms: LocalKms.fromEnv() });
  const records = createRecords({ hierarchy });
  const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' } } });
  const plan = rotationSweep(records, customers, { minVersion: 2, keyVersionColumn: 'key_version' });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort()); // Ctrl-C: finish the batches under way, then stop
  const summary = await sweepPostgres(pool, { table, key: 'id', ...plan, batchSize: 40, workers: 2, signal: controller.signal, onEvent: (e) => e.type === 'batch' && console.log('batch') });
  console.log((summary.stopped ? 'stopped ' : 'done ') + JSON.stringify({ written: summary.written, failed: summary.failed }));
  await pool.end();`;

function sweeper(): { child: ChildProcess; batches: () => number; exit: Promise<{ code: number | null; signal: string | null; out: string }> } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SWEEPER, server.url, table, keys], {
    cwd: new URL('../../..', import.meta.url).pathname,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const exit = new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, out: out + err })),
  );
  return { child, batches: () => out.split('\n').filter((l) => l === 'batch').length, exit };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(5);
  }
}

describe('a sweep killed with SIGKILL and started again', () => {
  it('loses and duplicates nothing (two processes at a time, killed at random points, one stopped by Ctrl-C, then run to the end)', async () => {
    await pool.query(`CREATE TABLE ${table} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT, key_version INTEGER)`);
    await pool.query(`CREATE TABLE ${table}_log (id TEXT NOT NULL)`);
    await pool.query(`CREATE FUNCTION ${table}_f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ${table}_log VALUES (NEW.id); RETURN NEW; END $$`);
    await pool.query(`CREATE TRIGGER ${table}_t AFTER UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_f()`);
    const hierarchy = createKeyHierarchy({ store: new PostgresKeyStore({ client: pool, table: keys }), kms: LocalKms.fromEnv(env) });
    const records = createRecords({ hierarchy });
    const plain = Array.from({ length: ROWS }, (_, i) => ({ id: `k${String(i).padStart(6, '0')}`, tenant: `t${i % 3}`, email: `person${i}@example.com` }));
    for (let i = 0; i < ROWS; i += 500) {
      const sealed = await Promise.all(plain.slice(i, i + 500).map((r) => records.seal(customers, r)));
      const values = sealed.flatMap((r) => [r.id, r.tenant, r.email]);
      await pool.query(`INSERT INTO ${table} VALUES ${sealed.map((_, j) => `($${j * 3 + 1}, $${j * 3 + 2}, $${j * 3 + 3}, 1)`).join(', ')}`, values);
    }
    for (const t of ['t0', 't1', 't2']) await hierarchy.rotate(t);

    let kills = 0;
    for (let round = 0; round < 4; round++) {
      const pair = [sweeper(), sweeper()];
      // Wait until some batches committed, then a random moment more, then SIGKILL both. Counted
      // over the pair: one process may start well after the other, and waiting for each to reach
      // the target once let the first sweep the whole table (2 rounds in 33).
      const target = 1 + Math.floor(Math.random() * 4);
      const deadline = Date.now() + 30_000;
      while (pair.reduce((n, s) => n + s.batches(), 0) < target && Date.now() < deadline && !(await Promise.race([...pair.map((s) => s.exit.then(() => true)), sleep(5).then(() => false)]))) {
        // polling
      }
      await sleep(Math.random() * 60);
      for (const s of pair) s.child.kill('SIGKILL');
      const exits = await Promise.all(pair.map((s) => s.exit));
      kills += exits.filter((e) => e.signal === 'SIGKILL').length;
      const done = (await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows[0].n;
      if (done >= ROWS / 2) break; // leave work for the last run
    }
    expect(kills).toBeGreaterThan(0);
    const before = (await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows[0].n;
    expect(before).toBeLessThan(ROWS); // the kills left work to do

    // Ctrl-C (SIGINT) on a sweeper: it finishes its batches under way, says what it wrote, and exits 0.
    const logged = async () => (await pool.query(`SELECT count(*)::int AS n FROM ${table}_log`)).rows[0].n as number;
    const beforeInterrupt = await logged();
    const interrupted = sweeper();
    await until(() => interrupted.batches() >= 2);
    interrupted.child.kill('SIGINT');
    const stopped = await interrupted.exit;
    expect(stopped.code, stopped.out).toBe(0);
    const said = /^stopped (\{.*\})$/m.exec(stopped.out);
    expect(said, stopped.out).not.toBeNull();
    expect((await logged()) - beforeInterrupt).toBe((JSON.parse(said![1]!) as { written: number }).written);

    const remaining = ROWS - (await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key_version = 2`)).rows[0].n;
    expect(remaining).toBeGreaterThan(0);
    const last = sweeper();
    const end = await last.exit;
    expect(end.code, end.out).toBe(0);
    expect(end.out).toContain(`done {"written":${remaining},"failed":0}`);

    // Nothing duplicated: every row rewritten exactly once across every process, killed or not.
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}_log`)).rows[0].n).toBe(ROWS);
    expect((await pool.query(`SELECT id FROM ${table}_log GROUP BY id HAVING count(*) > 1`)).rows).toEqual([]);
    // Nothing lost: every row at version 2 and opening to what was written.
    const { rows } = await pool.query(`SELECT id, tenant, email, key_version FROM ${table} ORDER BY id`);
    expect(rows).toHaveLength(ROWS);
    expect(rows.every((r: { key_version: number }) => r.key_version === 2)).toBe(true);
    const fresh = createRecords({ hierarchy: createKeyHierarchy({ store: new PostgresKeyStore({ client: pool, table: keys }), kms: LocalKms.fromEnv(env) }) });
    const opened = await fresh.openMany(customers, rows, { failFast: true });
    expect(opened.map((r) => (r.ok ? r.value.email : undefined))).toEqual(plain.map((r) => r.email));
  }, 180_000);
});
