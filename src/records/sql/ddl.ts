/**
 * The DDL steps of a column migration on PostgreSQL (adding the key-version or target column,
 * building an index CONCURRENTLY, dropping a source column), each its own command, apart from the
 * data phases: each runs under `lock_timeout` (a step that cannot get its lock at once gives up
 * instead of queueing every application query behind it), and reports the locks it took on the
 * table.
 *
 * Plain DDL runs in a transaction, and the report is read from pg_locks for this backend before
 * COMMIT: exactly the locks held on the table. CREATE INDEX CONCURRENTLY cannot run in a
 * transaction; it takes ShareUpdateExclusiveLock (PostgreSQL's documentation), which blocks no
 * read or write, and is reported as such.
 */
import { quoteTableName } from '../../core/sql-names.ts';
import { quoteIdentifier } from '../sweep.ts';

/** One connection (pg's PoolClient) from a pool (pg's Pool). */
export interface DdlPool {
  connect(): Promise<{ query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>; release(error?: Error | boolean): void }>;
}

export interface DdlStepReport {
  /** The statement run. */
  statement: string;
  /** The lock modes held on the table by the step (strongest first). */
  locks: string[];
  /** One line for a log: `ddl <statement>: locks <modes>`. */
  line: string;
}

/** PostgreSQL's table lock modes, weakest first. */
export const LOCK_MODES = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
] as const;

/** The strongest of some lock modes (undefined for none). */
export function strongestLock(modes: Iterable<string>): string | undefined {
  let best = -1;
  for (const m of modes) best = Math.max(best, LOCK_MODES.indexOf(m as (typeof LOCK_MODES)[number]));
  return best < 0 ? undefined : LOCK_MODES[best];
}

const byStrength = (modes: string[]): string[] => [...new Set(modes)].sort((a, b) => LOCK_MODES.indexOf(b as never) - LOCK_MODES.indexOf(a as never));

function checkedTimeout(ms: number | undefined): number {
  const t = ms ?? 2000;
  if (!Number.isSafeInteger(t) || t < 1 || t > 600_000) throw new RangeError('"lockTimeoutMs" must be an integer from 1 to 600000');
  return t;
}

/** Runs one DDL statement on `table` under lock_timeout, in a transaction, and reports the locks it held. */
async function runInTransaction(pool: DdlPool, table: string, statement: string, lockTimeoutMs: number): Promise<DdlStepReport> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = ${lockTimeoutMs}`);
    await client.query(statement);
    const { rows } = await client.query('SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = $1 AND relation = $2::regclass', ['relation', table]);
    await client.query('COMMIT');
    const locks = byStrength((rows as { mode: string }[]).map((r) => r.mode));
    return { statement, locks, line: `ddl ${statement}: locks ${locks.join(', ') || 'none'}` };
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release(broken);
  }
}

/** ALTER TABLE … ADD COLUMN (nullable, no default: a catalog change, no table rewrite). */
export async function addColumn(pool: DdlPool, options: { table: string; column: string; type: string; lockTimeoutMs?: number }): Promise<DdlStepReport> {
  const table = quoteTableName(options.table);
  if (!/^[a-z][a-z0-9 ]{0,30}$/i.test(options.type)) throw new TypeError(`"type" expected a plain SQL type name (text, bytea, integer), got ${JSON.stringify(options.type)}`);
  return runInTransaction(pool, table, `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${quoteIdentifier(options.column)} ${options.type}`, checkedTimeout(options.lockTimeoutMs));
}

/** ALTER TABLE … DROP COLUMN: the clean-up (d) of into mode, once reads no longer use the source. */
export async function dropColumn(pool: DdlPool, options: { table: string; column: string; lockTimeoutMs?: number }): Promise<DdlStepReport> {
  const table = quoteTableName(options.table);
  return runInTransaction(pool, table, `ALTER TABLE ${table} DROP COLUMN IF EXISTS ${quoteIdentifier(options.column)}`, checkedTimeout(options.lockTimeoutMs));
}

/**
 * CREATE INDEX CONCURRENTLY (reads and writes go on meanwhile): for the key-version marker the
 * backfill and rotation sweeps look up, or a blind-index column. An index left INVALID by a
 * failed build is dropped first, so the step can simply be run again.
 */
export async function createIndexConcurrently(
  pool: DdlPool,
  options: { table: string; index: string; columns: readonly string[]; where?: string; lockTimeoutMs?: number },
): Promise<DdlStepReport> {
  const table = quoteTableName(options.table);
  const index = quoteIdentifier(options.index);
  if (!Array.isArray(options.columns) || options.columns.length === 0) throw new TypeError('"columns" expected the indexed columns');
  const columns = options.columns.map((c) => quoteIdentifier(c)).join(', ');
  const statement = `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${index} ON ${table} (${columns})${options.where ? ` WHERE ${options.where}` : ''}`;
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query(`SET lock_timeout = ${checkedTimeout(options.lockTimeoutMs)}`);
    const invalid = await client.query('SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1 AND NOT i.indisvalid', [options.index]);
    if (invalid.rows.length) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`);
    await client.query(statement);
    await client.query('RESET lock_timeout');
    return { statement, locks: ['ShareUpdateExclusiveLock'], line: `ddl ${statement}: locks ShareUpdateExclusiveLock` };
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.release(broken);
  }
}
