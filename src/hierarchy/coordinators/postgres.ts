/**
 * A FleetCoordinator in PostgreSQL (the key store's database), through the same injected query
 * call as PostgresKeyStore: every operation is one statement, so coordination holds no connection
 * and no lock between calls. Leases, marks and token buckets are rows of one table with an expiry
 * on the server's clock (clock_timestamp()): a lease whose holder died is taken over once it
 * expires (INSERT ... ON CONFLICT DO UPDATE ... WHERE expired, which locks the row, so two takers
 * cannot both win). Messages are rows of a second table read by polling, kept for 10 minutes.
 */
import { sha256 } from '../../core/hashes.ts';
import type { FleetCoordinator } from '../../economy/coordinator.ts';
import { quoteTableName } from '../stores/common.ts';
import type { PostgresQueryable } from '../stores/postgres.ts';

export interface PostgresCoordinatorOptions {
  /** A pg Pool (or Client) the caller made and closes. */
  client: PostgresQueryable;
  /** The tables' name prefix (`name` or `schema.name`); default `kms_envelope_fleet`: `<prefix>` and `<prefix>_messages`. */
  table?: string;
  /** Create the tables if they do not exist, on first use; default true. */
  createTable?: boolean;
}

const NOW = `(extract(epoch from clock_timestamp()) * 1000)::float8`;
const MESSAGE_KEEP_MS = 600_000;

/** The tables the coordinator expects (what `createTable` runs). */
export function postgresCoordinatorTableSql(table = 'kms_envelope_fleet'): string {
  return `CREATE TABLE IF NOT EXISTS ${quoteTableName(table)} (
  name TEXT PRIMARY KEY,
  token TEXT NOT NULL,
  until_ms DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS ${quoteTableName(`${table}_messages`)} (
  id BIGSERIAL PRIMARY KEY,
  message TEXT NOT NULL,
  at_ms DOUBLE PRECISION NOT NULL
)`;
}

function lockKey(table: string): string {
  return new DataView(sha256(new TextEncoder().encode(`kms-envelope fleet table ${table}`)).buffer).getBigInt64(0).toString();
}

export class PostgresCoordinator implements FleetCoordinator {
  readonly #client: PostgresQueryable;
  readonly #table: string;
  readonly #t: string;
  readonly #m: string;
  readonly #createTable: boolean;
  #ready: Promise<void> | undefined;

  constructor(options: PostgresCoordinatorOptions) {
    if (!options?.client || typeof options.client.query !== 'function') throw new TypeError('"client" expected a pg Pool or Client');
    this.#client = options.client;
    this.#table = options.table ?? 'kms_envelope_fleet';
    this.#t = quoteTableName(this.#table);
    this.#m = quoteTableName(`${this.#table}_messages`);
    this.#createTable = options.createTable ?? true;
  }

  /** Creates the tables now rather than on first use. */
  init(): Promise<void> {
    this.#ready ??= this.#create().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async #create(): Promise<void> {
    if (!this.#createTable) return;
    // As PostgresKeyStore: one implicit transaction under an advisory lock, so racing creators wait.
    try {
      await this.#client.query(`SELECT pg_advisory_xact_lock(${lockKey(this.#table)}); ${postgresCoordinatorTableSql(this.#table)}`);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code !== '23505' && code !== '42P07' && code !== '42710') throw error;
    }
  }

  async #rows(text: string, values: unknown[]): Promise<Record<string, unknown>[]> {
    await this.init();
    return (await this.#client.query(text, values)).rows as Record<string, unknown>[];
  }

  async acquire(name: string, ttlMs: number): Promise<string | undefined> {
    const token = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}`;
    const rows = await this.#rows(
      `INSERT INTO ${this.#t} AS l (name, token, until_ms) VALUES ($1, $2, ${NOW} + $3::float8)
       ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, until_ms = EXCLUDED.until_ms WHERE l.until_ms <= ${NOW}
       RETURNING token`,
      [name, token, ttlMs],
    );
    return rows[0]?.token === token ? token : undefined;
  }

  async release(name: string, token: string): Promise<void> {
    await this.#rows(`DELETE FROM ${this.#t} WHERE name = $1 AND token = $2`, [name, token]);
  }

  async mark(name: string, ttlMs: number): Promise<void> {
    await this.#rows(
      `INSERT INTO ${this.#t} AS l (name, token, until_ms) VALUES ($1, '', ${NOW} + $2::float8)
       ON CONFLICT (name) DO UPDATE SET token = '', until_ms = EXCLUDED.until_ms`,
      [name, ttlMs],
    );
  }

  async marked(name: string): Promise<boolean> {
    return (await this.#rows(`SELECT 1 FROM ${this.#t} WHERE name = $1 AND until_ms > ${NOW}`, [name])).length > 0;
  }

  async unmark(name: string): Promise<void> {
    await this.#rows(`DELETE FROM ${this.#t} WHERE name = $1`, [name]);
  }

  /** GCRA: until_ms is the bucket's theoretical arrival time; the row lock orders the takers. */
  async take(name: string, perSecond: number, burst: number): Promise<number> {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError('a bucket needs perSecond > 0 and burst >= 1');
    const interval = 1000 / perSecond;
    const tolerance = (Math.floor(burst) - 1) * interval;
    const rows = await this.#rows(
      `WITH taken AS (
         INSERT INTO ${this.#t} AS l (name, token, until_ms) VALUES ($1, 'bucket', ${NOW} + $2::float8)
         ON CONFLICT (name) DO UPDATE SET until_ms = GREATEST(l.until_ms, ${NOW}) + $2::float8 WHERE l.until_ms - $3::float8 <= ${NOW}
         RETURNING 1)
       SELECT (SELECT count(*) FROM taken) AS taken, (SELECT until_ms - $3::float8 - ${NOW} FROM ${this.#t} WHERE name = $1) AS wait`,
      [name, interval, tolerance],
    );
    const row = rows[0];
    if (Number(row?.taken) > 0) return 0;
    return Math.max(1, Number(row?.wait ?? interval));
  }

  async publish(message: string): Promise<void> {
    await this.#rows(
      `WITH gone AS (DELETE FROM ${this.#m} WHERE at_ms < ${NOW} - $2::float8) INSERT INTO ${this.#m} (message, at_ms) VALUES ($1, ${NOW})`,
      [message, MESSAGE_KEEP_MS],
    );
  }

  async receive(cursor: string): Promise<{ cursor: string; messages: string[] }> {
    if (cursor === '') {
      const [row] = await this.#rows(`SELECT COALESCE(max(id), 0)::text AS id FROM ${this.#m}`, []);
      return { cursor: String(row?.id ?? '0'), messages: [] };
    }
    const rows = await this.#rows(`SELECT id::text AS id, message FROM ${this.#m} WHERE id > $1 ORDER BY id LIMIT 200`, [cursor]);
    return { cursor: rows.length > 0 ? String(rows.at(-1)!.id) : cursor, messages: rows.map((r) => String(r.message)) };
  }
}
