/**
 * The key store a command works on: a JSON file (`--store FILE`), or a PostgreSQL or SQLite
 * database whose URL comes from an environment variable or a file, never from an argument alone
 * (a URL carries a password, and arguments land in shell history and in `ps`). The database
 * drivers (pg, better-sqlite3) are loaded only when a URL names them; a missing one exits 2 naming
 * the package. A store that does not exist (no file, no database, no table) exits 2 instead of
 * reading as an empty store: a typo must not pass for "0 checked" or an empty backup.
 */
import { existsSync, readFileSync } from 'node:fs';
import { type KeyStore, PostgresKeyStore, SqliteKeyStore, type VersionCensus } from '../hierarchy.ts';
import { censusPostgres, censusSqlite, defineTable, type PostgresSweepPool } from '../records.ts';
import { JsonFileKeyStore } from '../node.ts';
import { ConfigError, printable, UsageError } from './cli-errors.ts';

export const STORE_URL_ENV = 'KMS_ENVELOPE_STORE_URL';

export const storeOptions = {
  store: { type: 'string' },
  'store-url-env': { type: 'string' },
  'store-url-file': { type: 'string' },
  table: { type: 'string' },
} as const;

export interface StoreFlags {
  store?: string | undefined;
  'store-url-env'?: string | undefined;
  'store-url-file'?: string | undefined;
  table?: string | undefined;
}

export const STORE_HELP = `The key store (one of):
  --store FILE             a JSON key store file (JsonFileKeyStore)
  --store-url-env NAME     the environment variable holding a database URL [default: ${STORE_URL_ENV}, when set]
  --store-url-file FILE    a file holding a database URL (one line; keep it mode 0600)
  --table NAME             the key table in the database (default kms_envelope_keys)
A database URL is postgres://USER@HOST:PORT/DB (needs the pg package) or sqlite:PATH (needs
better-sqlite3); it is never taken as an argument, which shell history and ps would keep.`;

export interface OpenedStore {
  store: KeyStore;
  /** A census of the values of a table in the same database (retire): undefined for a JSON store. */
  census?: (table: CensusTable) => VersionCensus;
  /** What to call the store in messages: never with a password. */
  name: string;
  close(): Promise<void>;
}

/** A table holding sealed values, as `--census TABLE:COLUMN,COLUMN` names it. */
export interface CensusTable {
  sqlTable: string;
  columns: string[];
  partitionColumn: string | undefined;
}

/** The declaration a census reads a table by: its sealed columns and partition column (their types do not matter: headers are read). */
function censusDeclaration(t: CensusTable) {
  const columns = Object.fromEntries(t.columns.map((c) => [c, { type: 'string' as const }]));
  return defineTable({ name: t.sqlTable, columns, partition: t.partitionColumn === undefined ? () => '' : { column: t.partitionColumn } });
}

/** The URL the flags point to, or undefined for none (then --store FILE is the store). */
function storeUrl(flags: StoreFlags): string | undefined {
  if (flags['store-url-file'] !== undefined) {
    const file = flags['store-url-file'];
    if (!existsSync(file)) throw new ConfigError(`no such file: ${file} (--store-url-file)`);
    const url = readFileSync(file, 'utf8').trim();
    if (!url) throw new ConfigError(`${file} (--store-url-file) is empty: it should hold a database URL`);
    return url;
  }
  const name = flags['store-url-env'] ?? (flags.store === undefined ? STORE_URL_ENV : undefined);
  if (name === undefined) return undefined;
  const url = process.env[name]?.trim();
  if (url) return url;
  if (flags['store-url-env'] !== undefined) throw new ConfigError(`the environment variable ${name} (--store-url-env) is not set`);
  return undefined;
}

/** A URL for messages: no password, no query (which may hold one). */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    parsed.search = '';
    return parsed.href;
  } catch {
    return url.replace(/:[^:@/]*@/, '@');
  }
}

/** Loads a database driver the CLI does not depend on; a missing one is a configuration error naming it. */
async function loadDriver<T>(name: 'pg' | 'better-sqlite3', load: () => Promise<{ default: T }>): Promise<T> {
  try {
    return (await load()).default;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new ConfigError(`this key store needs the "${name}" package, which is not installed: npm install ${name}`);
    }
    throw error;
  }
}

/**
 * Opens the key store the flags name. `create`: a store that does not exist is made (import into a
 * new store); otherwise it must exist. Needs --store or a URL.
 */
export async function openKeyStore(flags: StoreFlags, command: string, create = false): Promise<OpenedStore> {
  if (flags.store !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(flags.store)) {
    throw new UsageError(`--store takes a file; a database URL goes in ${STORE_URL_ENV} (or --store-url-env NAME, --store-url-file FILE), never on the command line`);
  }
  const url = storeUrl(flags);
  if (url === undefined) {
    if (flags.store === undefined) throw new UsageError(`${command} needs a key store: --store FILE, or a database URL in ${STORE_URL_ENV} (or --store-url-env, --store-url-file)`);
    if (flags.table !== undefined) throw new UsageError('--table is for a database store, not --store FILE');
    if (!create && !existsSync(flags.store)) throw new ConfigError(`no key store at ${flags.store}: no such file (a new store is made only by 'key-store import --create')`);
    return { store: new JsonFileKeyStore(flags.store), name: flags.store, close: async () => {} };
  }
  if (flags.store !== undefined) throw new UsageError('give one key store: --store FILE or a database URL, not both');
  const table = flags.table ?? 'kms_envelope_keys';
  if (/^postgres(?:ql)?:\/\//i.test(url)) return openPostgres(url, table, create);
  if (/^sqlite:/i.test(url)) return openSqlite(url, table, create);
  throw new ConfigError(`the key store URL ${printable(redactedUrl(url))} is neither postgres://... nor sqlite:PATH`);
}

interface PgPool {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  end(): Promise<void>;
}

/** PostgreSQL error codes and network failures that mean "no such database here": exit 2, not a crash. */
const PG_MISSING: Record<string, string> = {
  '3D000': 'the database does not exist',
  '28P01': 'password authentication failed',
  '28000': 'the role may not connect',
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'no such host',
};

async function openPostgres(url: string, table: string, create: boolean): Promise<OpenedStore> {
  const pg = await loadDriver<{ Pool: new (options: object) => PgPool }>('pg', () => import('pg'));
  const name = `PostgreSQL ${redactedUrl(url)} table ${table}`;
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  try {
    const [row] = (await pool.query('SELECT to_regclass($1) IS NOT NULL AS present', [table])).rows as { present: boolean }[];
    if (!row?.present && !create) throw new ConfigError(`no key store in ${printable(name)}: the table does not exist (a new store is made only by 'key-store import --create')`);
  } catch (error) {
    await pool.end();
    const code = String((error as { code?: unknown }).code ?? '');
    if (code in PG_MISSING) throw new ConfigError(`cannot open the key store ${printable(name)}: ${PG_MISSING[code]} (${code})`);
    throw error;
  }
  const store = new PostgresKeyStore({ client: pool, table, createTable: create });
  return { store, name, close: () => pool.end(), census: (t) => censusPostgres(pool as unknown as PostgresSweepPool, { table: censusDeclaration(t), sqlTable: t.sqlTable }) };
}

export interface SqliteDb {
  prepare(sql: string): { get(...params: unknown[]): unknown; all(...params: unknown[]): unknown[]; run(...params: unknown[]): { changes: number | bigint } };
  exec(sql: string): unknown;
  close(): unknown;
}

type SqliteDriver = new (file: string, options?: object) => SqliteDb;

/** An SQLite database through better-sqlite3, loaded now (the demo's, in memory with ':memory:'). */
export async function sqliteDatabase(path: string, options: object = {}): Promise<SqliteDb> {
  const Database = await loadDriver<SqliteDriver>('better-sqlite3', () => import('better-sqlite3'));
  return new Database(path, options);
}

async function openSqlite(url: string, table: string, create: boolean): Promise<OpenedStore> {
  const path = decodeURIComponent(url.replace(/^sqlite:(?:\/\/(?=\/))?/i, ''));
  if (!path) throw new ConfigError('the key store URL sqlite: names no file (sqlite:PATH)');
  const name = `SQLite ${path} table ${table}`;
  if (!create && !existsSync(path)) throw new ConfigError(`no key store at ${path}: no such SQLite file (a new store is made only by 'key-store import --create')`);
  const db = await sqliteDatabase(path, { fileMustExist: !create });
  try {
    const bare = table.split('.').at(-1)!;
    if (!create && db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(bare) === undefined) {
      throw new ConfigError(`no key store in ${name}: the table does not exist (a new store is made only by 'key-store import --create')`);
    }
    const store = new SqliteKeyStore({ database: db, table, createTable: create });
    return { store, name, close: async () => void db.close(), census: (t) => censusSqlite(db as never, { table: censusDeclaration(t), sqlTable: t.sqlTable }) };
  } catch (error) {
    db.close();
    throw error;
  }
}
