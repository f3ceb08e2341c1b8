/**
 * The command line on database key stores (src/tools/cli-store.ts): verify, key-store export,
 * import, rotate, retire and shred against a real PostgreSQL server and a real SQLite file, the
 * URL from an environment variable or a file; a store that does not exist, and a driver that is not
 * installed, exit 2. Runs the built CLI (dist/tools/cli.js).
 */
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyHierarchy, PostgresKeyStore, SqliteKeyStore } from '../../src/hierarchy.ts';
import { createEnvelope } from '../../src/index.ts';
import { localKmsFromKeyFile } from '../../src/node.ts';
import { startPostgres, type PostgresServer, uniqueTable } from '../fixtures/postgres.ts';
import { CLI, run, type Sandbox, sandbox } from './cli-harness.ts';

let box: Sandbox;
let server: PostgresServer;
let pool: pg.Pool;
beforeAll(async () => {
  box = sandbox();
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 2 });
});
afterAll(async () => {
  await pool?.end();
  await server?.stop();
  box?.remove();
});

const kms = () => localKmsFromKeyFile(box.path('.kms-envelope/local.key'));
const lines = (text: Buffer | string) => text.toString().trim().split('\n');

/** Two tenants, one value sealed for t1; the store closed afterwards. */
async function seed(store: PostgresKeyStore | SqliteKeyStore): Promise<Uint8Array> {
  const hierarchy = createKeyHierarchy({ store, kms: kms() });
  const sealed = await createEnvelope({ hierarchy, partition: 't1' }).seal('row of t1', { context: { row: '1' } });
  await hierarchy.warm(['t2']);
  await hierarchy.close();
  return sealed;
}

/** The same commands on either database; `env` points the CLI at the store. */
async function lifecycle(
  env: Record<string, string>,
  extra: string[],
  reopen: () => PostgresKeyStore | SqliteKeyStore,
  sealed: Uint8Array,
  putValue: (sealed: Uint8Array) => Promise<string>,
): Promise<void> {
  const verify = await run(box, ['verify', ...extra], { env });
  expect(verify.stderr).toBe('');
  expect(verify.code).toBe(0);
  expect(lines(verify.stdout).at(-1)).toBe('2 key versions checked: 2 decrypt, 0 do not');

  const rotated = await run(box, ['key-store', 'rotate', '--partition', 't1', ...extra], { env });
  expect(rotated.code).toBe(0);
  expect(rotated.stdout.toString()).toMatch(/^rotated t1: version 2 is active/);

  const exported = await run(box, ['key-store', 'export', '-o', 'backup.json', '--force', ...extra], { env });
  expect(exported.code).toBe(0);
  const backup = JSON.parse(readFileSync(box.path('backup.json'), 'utf8')) as { keys: { partition: string; version: number }[] };
  expect(backup.keys.map((k) => `${k.partition}#${k.version}`)).toEqual(['t1#1', 't1#2', 't2#1']);

  const unconfirmed = await run(box, ['key-store', 'shred', '--partition', 't2', ...extra], { env });
  expect(unconfirmed.code).toBe(2);
  expect(unconfirmed.stderr).toContain('--yes');
  const shredded = await run(box, ['key-store', 'shred', '--partition', 't2', '--yes', ...extra], { env });
  expect(shredded.code).toBe(0);
  expect(JSON.parse(shredded.stdout.toString())).toMatchObject({ partition: 't2', versionsDeleted: 1 });

  // retire reads the values (never a marker column): without a census it is refused; with one, the
  // rotation just made is too recent (activeTtlMs + grace) and the value still names version 1.
  const noCensus = await run(box, ['key-store', 'retire', '--partition', 't1', '--version', '1', ...extra], { env });
  expect([noCensus.code, noCensus.stderr]).toEqual([2, expect.stringContaining('--census TABLE:COLUMN')]);
  const census = await putValue(sealed);
  const retire = await run(box, ['key-store', 'retire', '--partition', 't1', '--version', '1', '--census', census, '--census-partition-column', 'tenant', ...extra], { env });
  expect(retire.code, retire.stderr).not.toBe(0);
  expect(retire.stderr).toMatch(/ERR_RETIRE_REFUSED|not retired|refused/i);

  // What is left still opens the value t1 sealed before the rotation.
  const after = reopen();
  const reader = createEnvelope({ hierarchy: createKeyHierarchy({ store: after, kms: kms() }), partition: 't1' });
  expect(await reader.openString(sealed, { context: { row: '1' } })).toBe('row of t1');
  expect((await after.listVersions('t2')).length).toBe(0);
}

describe('kms-envelope on an SQLite key store (better-sqlite3)', () => {
  it('verify, rotate, export, shred and retire with the URL in KMS_ENVELOPE_STORE_URL; import --create from a URL file', async () => {
    const file = box.path('keys.db');
    const db = new Database(file);
    let sealed: Uint8Array;
    try {
      sealed = await seed(new SqliteKeyStore({ database: db }));
    } finally {
      db.close();
    }
    const reopened: Database.Database[] = [];
    const reopen = () => {
      const again = new Database(file);
      reopened.push(again);
      return new SqliteKeyStore({ database: again, createTable: false });
    };
    try {
      const putValue = async (value: Uint8Array) => {
        const values = new Database(file);
        values.exec('CREATE TABLE kmse_values (tenant TEXT, doc BLOB)');
        values.prepare('INSERT INTO kmse_values VALUES (?, ?)').run('t1', Buffer.from(value));
        values.close();
        return 'kmse_values:doc';
      };
      await lifecycle({ KMS_ENVELOPE_STORE_URL: `sqlite:${file}` }, [], reopen, sealed, putValue);
    } finally {
      for (const d of reopened) d.close();
    }

    writeFileSync(box.path('restore.url'), `sqlite:${box.path('restored.db')}\n`, { mode: 0o600 });
    const missing = await run(box, ['key-store', 'import', '--store-url-file', 'restore.url', 'backup.json']);
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining('no key store at')]);
    const imported = await run(box, ['key-store', 'import', '--store-url-file', 'restore.url', '--create', 'backup.json']);
    expect(imported.code).toBe(0);
    expect(JSON.parse(imported.stdout.toString())).toMatchObject({ created: 3, conflicts: [] });
    const verified = await run(box, ['verify', '--store-url-file', 'restore.url']);
    expect([verified.code, lines(verified.stdout).at(-1)]).toEqual([0, '3 key versions checked: 3 decrypt, 0 do not']);
  });

  it('a store that does not exist exits 2: no file, a file without the table, a JSON store path mistyped', async () => {
    const noFile = await run(box, ['verify'], { env: { KMS_ENVELOPE_STORE_URL: `sqlite:${box.path('typo.db')}` } });
    expect([noFile.code, noFile.stderr]).toEqual([2, expect.stringContaining('no key store at')]);
    expect(existsSync(box.path('typo.db'))).toBe(false);
    new Database(box.path('empty.db')).close();
    const noTable = await run(box, ['key-store', 'export'], { env: { KMS_ENVELOPE_STORE_URL: `sqlite:${box.path('empty.db')}` } });
    expect([noTable.code, noTable.stdout.length]).toEqual([2, 0]);
    expect(noTable.stderr).toContain('the table does not exist');
    const json = await run(box, ['key-store', 'export', '--store', 'typo.json']);
    expect([json.code, json.stdout.length, json.stderr]).toEqual([2, 0, expect.stringContaining('no key store at typo.json')]);
    const verifyJson = await run(box, ['verify', '--store', 'typo.json']);
    expect(verifyJson.code).toBe(2);
  });

  it('never takes a database URL as an argument', async () => {
    const r = await run(box, ['verify', '--store', 'postgres://kmse:secret@127.0.0.1/kmse']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('KMS_ENVELOPE_STORE_URL');
    expect(r.stderr).not.toContain('secret');
  });
});

describe('kms-envelope on a PostgreSQL key store (pg)', () => {
  it('verify, rotate, export, shred and retire with the URL in a named variable and --table', async () => {
    const table = uniqueTable('kmse_cli');
    const sealed = await seed(new PostgresKeyStore({ client: pool, table }));
    const env = { KEYS_DB: server.url };
    const putValue = async (value: Uint8Array) => {
      const values = uniqueTable('kmse_cli_values');
      await pool.query(`CREATE TABLE ${values} (tenant TEXT, doc BYTEA)`);
      await pool.query(`INSERT INTO ${values} VALUES ($1, $2)`, ['t1', Buffer.from(value)]);
      return `${values}:doc`;
    };
    await lifecycle(env, ['--store-url-env', 'KEYS_DB', '--table', table], () => new PostgresKeyStore({ client: pool, table, createTable: false }), sealed, putValue);

    const restored = uniqueTable('kmse_cli_restored');
    const imported = await run(box, ['key-store', 'import', '--store-url-env', 'KEYS_DB', '--table', restored, '--create', 'backup.json'], { env });
    expect([imported.code, JSON.parse(imported.stdout.toString()).created]).toEqual([0, 3]);
  });

  it('a table or a database that does not exist exits 2, without printing the password', async () => {
    const noTable = await run(box, ['key-store', 'export', '--table', uniqueTable('kmse_absent')], { env: { KMS_ENVELOPE_STORE_URL: server.url } });
    expect([noTable.code, noTable.stdout.length]).toEqual([2, 0]);
    expect(noTable.stderr).toContain('the table does not exist');
    const url = new URL(server.url);
    url.password = 'hunter2-password';
    url.pathname = '/kmse_no_such_database';
    const noDatabase = await run(box, ['verify'], { env: { KMS_ENVELOPE_STORE_URL: url.href } });
    expect(noDatabase.code).toBe(2);
    expect(noDatabase.stderr).toMatch(/cannot open the key store|password authentication/);
    expect(noDatabase.stderr).not.toContain('hunter2');
  });
});

describe('a database driver that is not installed', () => {
  it('exits 2 naming the package (pg, better-sqlite3)', async () => {
    // A copy of the built package beside a node_modules that has its dependencies but no drivers.
    const root = box.path('bare');
    mkdirSync(join(root, 'node_modules'), { recursive: true });
    cpSync(join(CLI, '../../'), join(root, 'dist'), { recursive: true, filter: (src) => !src.includes('ts5.0') });
    cpSync(join(CLI, '../../../package.json'), join(root, 'package.json'));
    const modules = join(CLI, '../../../node_modules');
    for (const name of ['@noble', 'ky']) symlinkSync(join(modules, name), join(root, 'node_modules', name));
    const bareCli = join(root, 'dist/tools/cli.js');
    for (const [url, name] of [
      [server.url, 'pg'],
      [`sqlite:${box.path('keys.db')}`, 'better-sqlite3'],
    ] as const) {
      const r = await run(box, ['verify'], { env: { KMS_ENVELOPE_STORE_URL: url }, cli: bareCli });
      expect([r.code, r.stderr]).toEqual([2, `kms-envelope: this key store needs the "${name}" package, which is not installed: npm install ${name}\n`]);
    }
  });
});
