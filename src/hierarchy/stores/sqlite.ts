/**
 * A KeyStore in an SQLite database, through a client the caller opens (better-sqlite3, or
 * node:sqlite's DatabaseSync): this package imports no database driver, so the database is
 * typed by the few calls the store makes.
 *
 * Several processes may share the database file. Open it in WAL mode
 * (`db.pragma('journal_mode = WAL')`) so readers never wait for the writer; the store sets
 * `PRAGMA busy_timeout` so a process that finds the database locked waits for it instead of
 * failing with SQLITE_BUSY. Every statement runs on its own (autocommit): createVersion is one
 * INSERT ... ON CONFLICT DO NOTHING and a SELECT, so two processes creating the same version
 * keep exactly one record and both read that one.
 */
import { checkWrappedKeyFields, type KeyState, type KeyStore, type StoredKey, type WrappedKeyFields } from '../key-store.ts';
import { checkNewKey, checkState, COLUMNS, keyFromRow, missingVersion, quoteTableName } from './common.ts';

/** A prepared statement: better-sqlite3's Statement and node:sqlite's StatementSync fit. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** The database calls the store makes: better-sqlite3's Database and node:sqlite's DatabaseSync fit. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement;
  exec(sql: string): unknown;
}

export interface SqliteKeyStoreOptions {
  /** A database the caller opened and closes: the store never closes it. */
  database: SqliteDatabase;
  /** The table (`name` or `schema.name`, plain identifiers); default `kms_envelope_keys`. */
  table?: string;
  /** Create the table if it does not exist; default true. */
  createTable?: boolean;
  /** Sets `PRAGMA busy_timeout` on the connection: how long to wait for a lock, in ms; default 5000. */
  busyTimeoutMs?: number;
}

/** The table the store expects (what `createTable` runs). */
export function sqliteKeyTableSql(table = 'kms_envelope_keys'): string {
  return `CREATE TABLE IF NOT EXISTS ${quoteTableName(table)} (
  partition TEXT NOT NULL,
  version INTEGER NOT NULL,
  state TEXT NOT NULL,
  provider TEXT NOT NULL,
  key_id TEXT NOT NULL,
  ciphertext_blob TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (partition, version)
)`;
}

export class SqliteKeyStore implements KeyStore {
  readonly #name: string;
  readonly #insert: SqliteStatement;
  readonly #select: SqliteStatement;
  readonly #active: SqliteStatement;
  readonly #list: SqliteStatement;
  readonly #update: SqliteStatement;
  readonly #delete: SqliteStatement;
  readonly #partitions: SqliteStatement;
  readonly #rewrap: SqliteStatement;

  /** Sets the busy timeout and creates the table (synchronously, so errors surface here). */
  constructor(options: SqliteKeyStoreOptions) {
    const db = options?.database;
    if (!db || typeof db.prepare !== 'function' || typeof db.exec !== 'function') throw new TypeError('"database" expected an SQLite database (better-sqlite3 or node:sqlite)');
    const table = options.table ?? 'kms_envelope_keys';
    const t = quoteTableName(table);
    const busy = options.busyTimeoutMs ?? 5000;
    if (!Number.isSafeInteger(busy) || busy < 0) throw new RangeError('"busyTimeoutMs" expected an integer >= 0');
    this.#name = `sqlite table ${table}`;
    db.exec(`PRAGMA busy_timeout = ${busy}`);
    if (options.createTable ?? true) db.exec(sqliteKeyTableSql(table));
    this.#insert = db.prepare(`INSERT INTO ${t} (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (partition, version) DO NOTHING`);
    this.#select = db.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE partition = ? AND version = ?`);
    // Rows that are not decrypt-only are active or corrupt: the highest of them is checked, so
    // a corrupt state on the newest version is an error, not a silent fall back to an older key.
    this.#active = db.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE partition = ? AND state IS NOT 'decrypt-only' ORDER BY version DESC LIMIT 1`);
    this.#list = db.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE partition = ? ORDER BY version`);
    this.#update = db.prepare(`UPDATE ${t} SET state = ? WHERE partition = ? AND version = ?`);
    this.#delete = db.prepare(`DELETE FROM ${t} WHERE partition = ?`);
    this.#partitions = db.prepare(`SELECT DISTINCT partition FROM ${t} ORDER BY partition`);
    this.#rewrap = db.prepare(`UPDATE ${t} SET provider = ?, key_id = ?, ciphertext_blob = ? WHERE partition = ? AND version = ? AND ciphertext_blob = ?`);
  }

  async getVersion(partition: string, version: number): Promise<StoredKey | undefined> {
    const row = this.#select.get(partition, version);
    return row === undefined ? undefined : keyFromRow(this.#name, row, partition, version);
  }

  async getActive(partition: string): Promise<StoredKey | undefined> {
    const row = this.#active.get(partition);
    if (row === undefined) return undefined;
    const key = keyFromRow(this.#name, row, partition);
    return key.state === 'active' ? key : undefined;
  }

  async createVersion(key: StoredKey): Promise<StoredKey> {
    checkNewKey(key);
    this.#insert.run(key.partition, key.version, key.state, key.provider, key.keyId, key.ciphertextBlob, key.createdAt);
    const stored = await this.getVersion(key.partition, key.version);
    // Only a deletePartition between the two statements leaves nothing to read.
    if (!stored) return this.createVersion(key);
    return stored;
  }

  async listVersions(partition: string): Promise<StoredKey[]> {
    return this.#list.all(partition).map((row) => keyFromRow(this.#name, row, partition));
  }

  async setState(partition: string, version: number, state: KeyState): Promise<void> {
    checkState(state);
    // Read (and check) the record first: a corrupt row is refused, not half repaired.
    if (!(await this.getVersion(partition, version))) throw missingVersion(partition, version);
    if (Number(this.#update.run(state, partition, version).changes) === 0) throw missingVersion(partition, version);
  }

  async deletePartition(partition: string): Promise<void> {
    this.#delete.run(partition);
  }

  async listPartitions(): Promise<string[]> {
    return this.#partitions.all().map((row) => String((row as { partition: unknown }).partition));
  }

  async replaceWrappedKey(partition: string, version: number, expectedBlob: string, wrapped: WrappedKeyFields): Promise<boolean> {
    checkWrappedKeyFields(wrapped);
    // One UPDATE guarded by the old blob: the compare and set is the statement itself.
    return Number(this.#rewrap.run(wrapped.provider, wrapped.keyId, wrapped.ciphertextBlob, partition, version, expectedBlob).changes) === 1;
  }
}
