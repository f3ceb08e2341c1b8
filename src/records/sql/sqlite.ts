/**
 * The SQLite driver of a table sweep (src/records/sweep.ts), on a database the caller opened
 * (better-sqlite3, node:sqlite): one worker.
 *
 * SQLite has no row locks, and a transaction held open across the transform's awaits would take
 * in whatever else the application runs on the same connection meanwhile. So each batch is read,
 * transformed, and then written in ONE synchronous transaction in which every row is updated only
 * if it still holds what was read (`column IS ?` for each column read): a row the application
 * changed meanwhile is left to the next run, never overwritten with a value made from old data.
 */
import type { SqliteDatabase } from '../../hierarchy.ts';
import { quoteIdentifier, runSweep, type SweepDriver, type SweepRow, type SweepSummary } from '../sweep.ts';
import { bytesParam, pendingParams, tableShape, type TableSweepOptions } from './postgres.ts';

/**
 * `pending` with its `$1`..`$k` as anonymous `?` (better-sqlite3 binds numbered ones by name):
 * they must appear once each, in order, as the plans of rotationSweep() write them.
 */
function anonymousParams(pending: string, count: number): string {
  let next = 1;
  const sql = pending.replace(/\$([0-9]+)/g, (_, n: string) => {
    if (Number(n) !== next++) throw new TypeError('sweepSqlite: "pending" must use its parameters $1, $2, ... once each, in order');
    return '?';
  });
  if (next !== count + 1) throw new TypeError(`sweepSqlite: "pending" uses ${next - 1} parameters and ${count} were given`);
  return sql;
}

/** Sweeps an SQLite table; one worker (`workers` must be 1). See sweepPostgres(). */
export async function sweepSqlite(database: SqliteDatabase, options: TableSweepOptions): Promise<SweepSummary> {
  if (!database || typeof database.prepare !== 'function') throw new TypeError('"database" expected a better-sqlite3 Database (or node:sqlite DatabaseSync)');
  const shape = tableShape(options);
  const params = await pendingParams(options);
  const pendingSql = params.length ? anonymousParams(shape.pending, params.length) : shape.pending;
  const q = quoteIdentifier;
  const keyList = shape.key.map(q).join(', ');
  const read = [...shape.key, ...shape.columns];
  const select = (after: boolean) =>
    `SELECT ${read.map(q).join(', ')} FROM ${shape.table} WHERE (${pendingSql})` +
    (after ? ` AND (${keyList}) > (${shape.key.map(() => '?').join(', ')})` : '') +
    ` ORDER BY ${keyList} LIMIT ?`;
  const selectFirst = database.prepare(select(false));
  const selectAfter = database.prepare(select(true));
  const count = database.prepare(`SELECT count(*) AS n FROM ${shape.table} WHERE (${pendingSql})`);
  const updates = new Map<string, ReturnType<SqliteDatabase['prepare']>>();
  const updateFor = (names: string[]) => {
    const id = names.join('\u0000');
    let statement = updates.get(id);
    if (!statement) {
      const set = names.map((c) => `${q(c)} = ?`).join(', ');
      const unchanged = read.map((c) => `${q(c)} IS ?`).join(' AND ');
      statement = database.prepare(`UPDATE ${shape.table} SET ${set} WHERE ${unchanged}`);
      updates.set(id, statement);
    }
    return statement;
  };
  const param = (v: unknown): unknown => (typeof v === 'boolean' ? Number(v) : bytesParam(v));
  const driver: SweepDriver = {
    key: shape.key,
    countPending: async () => Number((count.get(...params.map(param)) as { n: unknown }).n),
    async batch(after, limit, work) {
      const given = params.map(param);
      const rows = (after === undefined ? selectFirst.all(...given, limit) : selectAfter.all(...given, ...after, limit)) as SweepRow[];
      const writes = await work(rows);
      let changed = 0;
      if (writes.length) {
        const byKey = new Map(rows.map((r) => [JSON.stringify(shape.key.map((c) => r[c])), r]));
        database.exec('BEGIN IMMEDIATE');
        try {
          for (const w of writes) {
            const names = Object.keys(w.write).sort();
            for (const n of names) if (!shape.columns.includes(n)) throw new TypeError(`the transform wrote ${JSON.stringify(n)}, not a column the sweep reads`);
            const row = byKey.get(JSON.stringify(w.key))!;
            const { changes } = updateFor(names).run(...names.map((n) => param(w.write[n])), ...read.map((c) => param(row[c])));
            if (Number(changes) === 0) changed++;
          }
          database.exec('COMMIT');
        } catch (error) {
          database.exec('ROLLBACK');
          throw error;
        }
      }
      const last = rows.at(-1);
      return { rows: rows.length, last: last ? shape.key.map((c) => last[c]) : undefined, changed };
    },
  };
  return runSweep(driver, options);
}
