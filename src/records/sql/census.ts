/**
 * Censuses of a PostgreSQL or SQLite table for hierarchy.retire(): every sealed value of the
 * partition's rows read (no locks, in batches) and its header parsed; the count of those naming
 * the version. Rows of a table with a partition column are read for that partition only (a value
 * in another partition's row does not open there anyway); a table with a fixed partition or a
 * partition function is read whole.
 */
import { quoteTableName } from '../../core/sql-names.ts';
import type { SqliteDatabase, VersionCensus } from '../../hierarchy.ts';
import { censusBatchSize, censusPartitionColumn, type CensusOptions, valuesNaming } from '../census.ts';
import { quoteIdentifier } from '../sweep.ts';
import type { PostgresSweepPool } from './postgres.ts';

function selectOf(options: CensusOptions, extra: string[] = []): { sql: string; partitionColumn: string | undefined } {
  const { table } = options;
  const partitionColumn = censusPartitionColumn(table);
  const columns = [...extra, ...Object.keys(table.columns).map(quoteIdentifier)];
  const where = partitionColumn === undefined ? '' : ` WHERE ${quoteIdentifier(partitionColumn)} = $1`;
  return { sql: `SELECT ${columns.join(', ')} FROM ${quoteTableName(options.sqlTable ?? table.name)}${where}`, partitionColumn };
}

/** The census of a PostgreSQL table: one read-only transaction, a cursor fetched `batchSize` rows at a time. */
export function censusPostgres(pool: PostgresSweepPool, options: CensusOptions): VersionCensus {
  if (!pool || typeof pool.connect !== 'function') throw new TypeError('"pool" expected a pg Pool (connect() giving a client)');
  const size = censusBatchSize(options);
  const { sql, partitionColumn } = selectOf(options);
  return async (partition, version, signal) => {
    const client = await pool.connect();
    let count = 0;
    try {
      await client.query('BEGIN READ ONLY');
      await client.query(`DECLARE kmse_census NO SCROLL CURSOR FOR ${sql}`, partitionColumn === undefined ? [] : [partition]);
      for (;;) {
        signal?.throwIfAborted();
        const { rows } = await client.query(`FETCH ${size} FROM kmse_census`);
        for (const row of rows) count += valuesNaming(options.table, row as Record<string, unknown>, partition, version);
        if (rows.length < size) break;
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      client.release(true);
      throw error;
    }
    client.release();
    return count;
  };
}

/** The census of an SQLite table: read in rowid order, `batchSize` rows at a time. */
export function censusSqlite(database: SqliteDatabase, options: CensusOptions): VersionCensus {
  if (!database || typeof database.prepare !== 'function') throw new TypeError('"database" expected a better-sqlite3 Database (or node:sqlite DatabaseSync)');
  const size = censusBatchSize(options);
  const { sql, partitionColumn } = selectOf(options, ['rowid AS "kmse_rowid"']);
  const filtered = partitionColumn === undefined ? `${sql} WHERE` : `${sql.replace('$1', '?')} AND`;
  const page = database.prepare(`${filtered} rowid > ? ORDER BY rowid LIMIT ?`);
  return async (partition, version, signal) => {
    let count = 0;
    let after: unknown = -Infinity;
    for (;;) {
      signal?.throwIfAborted();
      const rows = (partitionColumn === undefined ? page.all(after, size) : page.all(partition, after, size)) as Record<string, unknown>[];
      for (const row of rows) count += valuesNaming(options.table, row, partition, version);
      if (rows.length < size) return count;
      after = rows.at(-1)!['kmse_rowid'];
    }
  };
}
