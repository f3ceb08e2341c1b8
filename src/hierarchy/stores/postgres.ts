/**
 * A KeyStore in PostgreSQL, through a client the caller makes (a pg Pool or Client, or anything
 * with the same query call): this package imports no database driver, so the client is typed by
 * the one call the store makes.
 *
 * createVersion is one INSERT ... ON CONFLICT DO NOTHING RETURNING: under PostgreSQL's default
 * READ COMMITTED isolation, a second insert of the same (partition, version) waits for the first
 * to commit and then does nothing, and the SELECT that follows sees the winner's row. Every call is
 * one statement, so the store works the same over a Pool (any connection) and a Client.
 */
import { sha256 } from '../../core/hashes.ts';
import { checkTombstone, checkWrappedKeyFields, type KeyState, type KeyStore, type PartitionTombstone, type StoredKey, type WrappedKeyFields } from '../key-store.ts';
import { checkNewKey, checkNotRetired, checkState, COLUMNS, keyFromRow, missingVersion, quoteTableName, TOMBSTONE_COLUMNS, tombstoneFromRow, tombstoneTableName } from './common.ts';

/** The call the store makes: pg's Pool and Client fit (`query(text, values)` resolving to `{ rows }`). */
export interface PostgresQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

export interface PostgresKeyStoreOptions {
  /** A pg Pool (or Client) the caller made and closes: the store never ends it. */
  client: PostgresQueryable;
  /** The table (`name` or `schema.name`, plain identifiers); default `kms_envelope_keys`. */
  table?: string;
  /** Create the table if it does not exist, on first use; default true. */
  createTable?: boolean;
  /**
   * The table of the tombstones crypto-shredding leaves; default `<table>_tombstones`. Created with
   * the key table (IF NOT EXISTS, so an existing store gains it in place); with `createTable: false`,
   * create it yourself (postgresTombstoneTableSql): until then the store reads no tombstone and shred fails.
   */
  tombstoneTable?: string;
}

/** The table the store expects (what `createTable` runs). */
export function postgresKeyTableSql(table = 'kms_envelope_keys'): string {
  // version is a BIGINT because the KeyStore interface allows versions up to 2^32 - 1.
  return `CREATE TABLE IF NOT EXISTS ${quoteTableName(table)} (
  partition TEXT NOT NULL,
  version BIGINT NOT NULL,
  state TEXT NOT NULL,
  provider TEXT NOT NULL,
  key_id TEXT NOT NULL,
  ciphertext_blob TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (partition, version)
)`;
}

/** The tombstone table the store expects (what `createTable` runs besides postgresKeyTableSql). */
export function postgresTombstoneTableSql(table = 'kms_envelope_keys_tombstones'): string {
  return `CREATE TABLE IF NOT EXISTS ${quoteTableName(table)} (
  partition TEXT PRIMARY KEY,
  version BIGINT NOT NULL,
  shredded_at BIGINT NOT NULL
)`;
}

/** PostgreSQL's undefined_table: a tombstone table not created (createTable: false) holds no tombstone. */
const UNDEFINED_TABLE = '42P01';

/** A 64-bit advisory-lock key of its own for each table name. */
function lockKey(table: string): string {
  return new DataView(sha256(new TextEncoder().encode(`kms-envelope key table ${table}`)).buffer).getBigInt64(0).toString();
}

export class PostgresKeyStore implements KeyStore {
  readonly #client: PostgresQueryable;
  readonly #table: string;
  readonly #t: string;
  readonly #name: string;
  readonly #createTable: boolean;
  readonly #tombstones: string;
  readonly #tt: string;
  #ready: Promise<void> | undefined;

  constructor(options: PostgresKeyStoreOptions) {
    const client = options?.client;
    if (!client || typeof client.query !== 'function') throw new TypeError('"client" expected a pg Pool or Client');
    this.#client = client;
    this.#table = options.table ?? 'kms_envelope_keys';
    this.#t = quoteTableName(this.#table);
    this.#name = `postgres table ${this.#table}`;
    this.#createTable = options.createTable ?? true;
    this.#tombstones = tombstoneTableName(this.#table, options.tombstoneTable);
    this.#tt = quoteTableName(this.#tombstones);
  }

  /** Creates the table now rather than on first use (to fail at startup, not at the first request). */
  init(): Promise<void> {
    this.#ready ??= this.#create().catch((error: unknown) => {
      this.#ready = undefined; // the next call tries again
      throw error;
    });
    return this.#ready;
  }

  async #create(): Promise<void> {
    if (!this.#createTable) return;
    // Two sessions running CREATE TABLE IF NOT EXISTS at once can both pass the existence check and
    // one then fails on pg_type's unique index: a transaction-scoped advisory lock serialises them.
    // One query string with no parameters runs as one implicit transaction on one connection (of
    // a Pool too), so the lock is held until the table exists and is released whatever happens.
    const sql = `SELECT pg_advisory_xact_lock(${lockKey(this.#table)}); ${postgresKeyTableSql(this.#table)}; ${postgresTombstoneTableSql(this.#tombstones)}`;
    try {
      await this.#client.query(sql);
    } catch (error) {
      // Someone created it without our lock (another tool): it exists, which is what we wanted.
      const code = (error as { code?: unknown }).code;
      if (code !== '23505' && code !== '42P07' && code !== '42710') throw error;
    }
  }

  async #query(text: string, values: unknown[]): Promise<unknown[]> {
    await this.init();
    return (await this.#client.query(text, values)).rows;
  }

  async getVersion(partition: string, version: number): Promise<StoredKey | undefined> {
    if (!Number.isSafeInteger(version)) return undefined;
    const [row] = await this.#query(`SELECT ${COLUMNS} FROM ${this.#t} WHERE partition = $1 AND version = $2`, [partition, version]);
    return row === undefined ? undefined : keyFromRow(this.#name, row, partition, version);
  }

  async getActive(partition: string): Promise<StoredKey | undefined> {
    // Rows that are neither decrypt-only nor retired are active or corrupt: the highest of them is checked, so
    // a corrupt state on the newest version is an error, not a silent fall back to an older key.
    const [row] = await this.#query(
      `SELECT ${COLUMNS} FROM ${this.#t} WHERE partition = $1 AND state IS DISTINCT FROM 'decrypt-only' AND state IS DISTINCT FROM 'retired' ORDER BY version DESC LIMIT 1`,
      [partition],
    );
    if (row === undefined) return undefined;
    const key = keyFromRow(this.#name, row, partition);
    return key.state === 'active' ? key : undefined;
  }

  async createVersion(key: StoredKey): Promise<StoredKey> {
    checkNewKey(key);
    for (;;) {
      const [inserted] = await this.#query(
        `INSERT INTO ${this.#t} (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (partition, version) DO NOTHING RETURNING ${COLUMNS}`,
        [key.partition, key.version, key.state, key.provider, key.keyId, key.ciphertextBlob, key.createdAt],
      );
      if (inserted !== undefined) return keyFromRow(this.#name, inserted, key.partition, key.version);
      const existing = await this.getVersion(key.partition, key.version);
      // Only a deletePartition between the two statements leaves nothing to read: insert again.
      if (existing) return existing;
    }
  }

  async listVersions(partition: string): Promise<StoredKey[]> {
    const rows = await this.#query(`SELECT ${COLUMNS} FROM ${this.#t} WHERE partition = $1 ORDER BY version`, [partition]);
    return rows.map((row) => keyFromRow(this.#name, row, partition));
  }

  async setState(partition: string, version: number, state: KeyState): Promise<void> {
    checkState(state);
    // Read (and check) the record first: a corrupt row is refused, not half repaired.
    const existing = await this.getVersion(partition, version);
    if (!existing) throw missingVersion(partition, version);
    checkNotRetired(existing, partition, version);
    const rows = await this.#query(`UPDATE ${this.#t} SET state = $3 WHERE partition = $1 AND version = $2 RETURNING version`, [partition, version, state]);
    if (rows.length === 0) throw missingVersion(partition, version);
  }

  async retireVersion(partition: string, version: number): Promise<boolean> {
    // Read (and check) the record first: a corrupt row is refused, not half repaired.
    if (!(await this.getVersion(partition, version))) return false;
    // One UPDATE guarded by the state: the compare and set is the statement itself.
    const rows = await this.#query(
      `UPDATE ${this.#t} SET state = 'retired', ciphertext_blob = '' WHERE partition = $1 AND version = $2 AND state = 'decrypt-only' RETURNING version`,
      [partition, version],
    );
    return rows.length === 1;
  }

  async deletePartition(partition: string): Promise<void> {
    await this.#query(`DELETE FROM ${this.#t} WHERE partition = $1`, [partition]);
  }

  async listPartitions(): Promise<string[]> {
    const rows = await this.#query(`SELECT DISTINCT partition FROM ${this.#t} ORDER BY partition`, []);
    return rows.map((row) => String((row as { partition: unknown }).partition));
  }

  async addTombstone(tombstone: PartitionTombstone): Promise<void> {
    checkTombstone(tombstone, 'addTombstone');
    // One upsert keeping the higher version: two shreds at once both leave theirs covered.
    await this.#query(
      `INSERT INTO ${this.#tt} AS t (${TOMBSTONE_COLUMNS}) VALUES ($1, $2, $3) ON CONFLICT (partition) DO UPDATE SET version = GREATEST(t.version, EXCLUDED.version), shredded_at = GREATEST(t.shredded_at, EXCLUDED.shredded_at)`,
      [tombstone.partition, tombstone.version, tombstone.shreddedAt],
    );
  }

  async getTombstone(partition: string): Promise<PartitionTombstone | undefined> {
    const [row] = await this.#tombstoneQuery(`SELECT ${TOMBSTONE_COLUMNS} FROM ${this.#tt} WHERE partition = $1`, [partition]);
    return row === undefined ? undefined : tombstoneFromRow(this.#name, row, partition);
  }

  async listTombstones(): Promise<PartitionTombstone[]> {
    const rows = await this.#tombstoneQuery(`SELECT ${TOMBSTONE_COLUMNS} FROM ${this.#tt} ORDER BY partition`, []);
    return rows.map((row) => tombstoneFromRow(this.#name, row, String((row as { partition: unknown }).partition)));
  }

  /** A read of the tombstone table: none at all when it was never created (a store made before tombstones, createTable: false). */
  async #tombstoneQuery(text: string, values: unknown[]): Promise<unknown[]> {
    try {
      return await this.#query(text, values);
    } catch (error) {
      if ((error as { code?: unknown }).code === UNDEFINED_TABLE && !this.#createTable) return [];
      throw error;
    }
  }

  async replaceWrappedKey(partition: string, version: number, expectedBlob: string, wrapped: WrappedKeyFields): Promise<boolean> {
    checkWrappedKeyFields(wrapped);
    // One UPDATE guarded by the old blob: the compare and set is the statement itself.
    const rows = await this.#query(
      `UPDATE ${this.#t} SET provider = $3, key_id = $4, ciphertext_blob = $5 WHERE partition = $1 AND version = $2 AND ciphertext_blob = $6 RETURNING version`,
      [partition, version, wrapped.provider, wrapped.keyId, wrapped.ciphertextBlob, expectedBlob],
    );
    return rows.length === 1;
  }
}
