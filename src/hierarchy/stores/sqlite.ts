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
import { checkTombstone, checkWrappedKeyFields, type KeyState, type KeyStore, type PartitionTombstone, type StoredKey, type WrappedKeyFields } from '../key-store.ts';
import { checkNewKey, checkNotRetired, checkState, COLUMNS, keyFromRow, missingVersion, quoteTableName, TOMBSTONE_COLUMNS, tombstoneFromRow, tombstoneTableName } from './common.ts';

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
  /**
   * The table of the tombstones crypto-shredding leaves; default `<table>_tombstones`. Created with
   * the key table (IF NOT EXISTS, so an existing store gains it in place); with `createTable: false`,
   * create it yourself (sqliteTombstoneTableSql): until then the store reads no tombstone and shred fails.
   */
  tombstoneTable?: string;
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

/** The tombstone table the store expects (what `createTable` runs besides sqliteKeyTableSql). */
export function sqliteTombstoneTableSql(table = 'kms_envelope_keys_tombstones'): string {
  return `CREATE TABLE IF NOT EXISTS ${quoteTableName(table)} (
  partition TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  shredded_at INTEGER NOT NULL
)`;
}

export class SqliteKeyStore implements KeyStore {
  /** false on an in-memory database (better-sqlite3's `memory`): nothing it holds outlives the process. */
  readonly persistent: boolean;
  readonly #name: string;
  readonly #insert: SqliteStatement;
  readonly #select: SqliteStatement;
  readonly #active: SqliteStatement;
  readonly #list: SqliteStatement;
  readonly #update: SqliteStatement;
  readonly #delete: SqliteStatement;
  readonly #partitions: SqliteStatement;
  readonly #rewrap: SqliteStatement;
  readonly #retire: SqliteStatement;
  readonly #db: SqliteDatabase;
  readonly #tt: string;
  /** The tombstone statements, prepared on first use (the table may not exist with createTable: false). */
  #tombstoneStatements: { add: SqliteStatement; get: SqliteStatement; list: SqliteStatement } | undefined;

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
    const tombstones = tombstoneTableName(table, options.tombstoneTable);
    this.#db = db;
    this.persistent = (db as { memory?: unknown }).memory !== true;
    this.#tt = quoteTableName(tombstones);
    if (options.createTable ?? true) {
      db.exec(sqliteKeyTableSql(table));
      db.exec(sqliteTombstoneTableSql(tombstones));
    }
    this.#insert = db.prepare(`INSERT INTO ${t} (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (partition, version) DO NOTHING`);
    this.#select = db.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE partition = ? AND version = ?`);
    // Rows that are neither decrypt-only nor retired are active or corrupt: the highest of them is checked, so
    // a corrupt state on the newest version is an error, not a silent fall back to an older key.
    this.#active = db.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE partition = ? AND state IS NOT 'decrypt-only' AND state IS NOT 'retired' ORDER BY version DESC LIMIT 1`);
    this.#list = db.prepare(`SELECT ${COLUMNS} FROM ${t} WHERE partition = ? ORDER BY version`);
    this.#update = db.prepare(`UPDATE ${t} SET state = ? WHERE partition = ? AND version = ?`);
    this.#delete = db.prepare(`DELETE FROM ${t} WHERE partition = ?`);
    this.#partitions = db.prepare(`SELECT DISTINCT partition FROM ${t} ORDER BY partition`);
    this.#retire = db.prepare(`UPDATE ${t} SET state = 'retired', ciphertext_blob = '' WHERE partition = ? AND version = ? AND state = 'decrypt-only'`);
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
    const existing = await this.getVersion(partition, version);
    if (!existing) throw missingVersion(partition, version);
    checkNotRetired(existing, partition, version);
    if (Number(this.#update.run(state, partition, version).changes) === 0) throw missingVersion(partition, version);
  }

  async retireVersion(partition: string, version: number): Promise<boolean> {
    // Read (and check) the record first: a corrupt row is refused, not half repaired.
    if (!(await this.getVersion(partition, version))) return false;
    return Number(this.#retire.run(partition, version).changes) === 1;
  }

  async deletePartition(partition: string): Promise<void> {
    this.#delete.run(partition);
  }

  async listPartitions(): Promise<string[]> {
    return this.#partitions.all().map((row) => String((row as { partition: unknown }).partition));
  }

  async addTombstone(tombstone: PartitionTombstone): Promise<void> {
    checkTombstone(tombstone, 'addTombstone');
    this.#tombstone()!.add.run(tombstone.partition, tombstone.version, tombstone.shreddedAt);
  }

  async getTombstone(partition: string): Promise<PartitionTombstone | undefined> {
    const row = this.#tombstone(true)?.get.get(partition);
    return row === undefined ? undefined : tombstoneFromRow(this.#name, row, partition);
  }

  async listTombstones(): Promise<PartitionTombstone[]> {
    return (this.#tombstone(true)?.list.all() ?? []).map((row) => tombstoneFromRow(this.#name, row, String((row as { partition: unknown }).partition)));
  }

  /** The tombstone statements; undefined for a read when the table does not exist (nothing was shredded). */
  #tombstone(read = false): { add: SqliteStatement; get: SqliteStatement; list: SqliteStatement } | undefined {
    if (this.#tombstoneStatements) return this.#tombstoneStatements;
    const t = this.#tt;
    try {
      this.#tombstoneStatements = {
        // One upsert keeping the higher version: two shreds at once both leave theirs covered.
        add: this.#db.prepare(
          `INSERT INTO ${t} (${TOMBSTONE_COLUMNS}) VALUES (?, ?, ?) ON CONFLICT (partition) DO UPDATE SET version = max(version, excluded.version), shredded_at = max(shredded_at, excluded.shredded_at)`,
        ),
        get: this.#db.prepare(`SELECT ${TOMBSTONE_COLUMNS} FROM ${t} WHERE partition = ?`),
        list: this.#db.prepare(`SELECT ${TOMBSTONE_COLUMNS} FROM ${t} ORDER BY partition`),
      };
    } catch (error) {
      if (read && /no such table/i.test((error as Error).message)) return undefined;
      throw error;
    }
    return this.#tombstoneStatements;
  }

  async replaceWrappedKey(partition: string, version: number, expectedBlob: string, wrapped: WrappedKeyFields): Promise<boolean> {
    checkWrappedKeyFields(wrapped);
    // One UPDATE guarded by the old blob: the compare and set is the statement itself.
    return Number(this.#rewrap.run(wrapped.provider, wrapped.keyId, wrapped.ciphertextBlob, partition, version, expectedBlob).changes) === 1;
  }
}
