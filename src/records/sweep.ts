/**
 * Resumable sweeps over a table: rotation (re-encryption under the active key version), the first
 * encryption of a plaintext column (backfill) and a blind index rebuilt (re-index), by one loop.
 *
 * The loop walks the rows still to do in key order, a batch at a time. A driver
 * (kms-envelope/node: PostgreSQL, SQLite) runs each batch as ONE transaction: it locks the batch's
 * rows, hands them to the transform, and writes what the transform made together with the row's
 * progress marker (the column the `pending` predicate looks at, such as the key-version column),
 * then commits. So a sweep stopped anywhere (Ctrl-C, an AbortSignal, SIGKILL, a lost connection)
 * leaves every row either done or still pending, and the next run picks up the pending ones: it
 * resumes, and a second run over a finished table changes nothing. On PostgreSQL, several workers
 * (in one process or many) share a table through `FOR UPDATE SKIP LOCKED`: a row locked by one is
 * skipped by the others, and a committed row no longer matches `pending`.
 *
 * A row whose value does not open (tampered, copied from another row, a key version that is gone)
 * is reported (an event, and the summary) and skipped: never rewritten. A failure that is not the
 * row's (the KMS unreachable, a key unavailable) ends the sweep instead, its batch rolled back.
 */
import { isEnvelopeError } from '../core/errors.ts';
import { TEXT_PREFIX } from './field-value.ts';
import { wipe } from '../core/bytes.ts';
import type { ContextInput } from '../core/context.ts';
import { type Envelope, needsRewrap, rewrap } from '../index.ts';
import type { BlindIndexValue } from './blind-index.ts';
import { lowestVersionOf } from './census.ts';
import { defineTable, type FieldSpec, type PlainRow, type Records, type Table } from './records.ts';
import { searchSpecsOf } from './table.ts';

/** A row as the driver read it: the key columns and the sweep's columns. */
export type SweepRow = Readonly<Record<string, unknown>>;

/** What to do with one row: write these columns (values and marker), nothing (already current), or skip it as failed. */
export type RowOutcome = { write: Record<string, unknown> } | { current: true } | { failed: Error };

/** The per-row work of a sweep (reseal, backfill, re-index, or the caller's own). */
export type RowTransform = (row: SweepRow) => Promise<RowOutcome> | RowOutcome;

export interface SweepCounts {
  /** Rows read and handed to the transform. */
  seen: number;
  /** Rows rewritten (committed). */
  written: number;
  /** Rows that needed nothing. */
  current: number;
  /** Rows that failed to open or to seal again: reported, left as they were. */
  failed: number;
  /** Rows the application changed between the read and the write (SQLite, which has no row locks): left for the next run. */
  changed: number;
  /** Batches committed. */
  batches: number;
}

export interface SweepFailure {
  /** The row's key column values. */
  key: readonly unknown[];
  /** The error's `code` (ERR_DECRYPTION_FAILED, …) or name. */
  code: string;
  message: string;
}

export type SweepEvent =
  /** Before the first batch: how many rows `pending` matches (undefined when the driver cannot count). */
  | { type: 'start'; pending: number | undefined; workers: number }
  /** After each committed batch: the batch's counts, the sweep's totals so far, the last key done. */
  | { type: 'batch'; worker: number; batch: SweepCounts; totals: SweepCounts; pending: number | undefined; last: readonly unknown[]; elapsedMs: number }
  /** A row that failed: reported and skipped, never rewritten. */
  | { type: 'row-failed'; worker: number; failure: SweepFailure }
  /** The end: every pending row seen (`stopped` false), or stopped by the signal after its current batch. */
  | { type: 'end'; summary: SweepSummary };

export interface SweepSummary extends SweepCounts {
  /**
   * How many rows `pending` matched at the start (undefined when the driver cannot count). Each
   * row is counted once in `seen` (a row failed or found current is not read again in the run,
   * by any worker), so a sweep of a table nobody writes to meanwhile ends with `seen === pending`.
   */
  pending: number | undefined;
  /** True when the signal stopped the sweep (the current batch was finished and committed first). */
  stopped: boolean;
  /** The failed rows (the first 1000; `failed` counts them all). */
  failures: SweepFailure[];
  elapsedMs: number;
}

/** The database side: one batch in one transaction. */
export interface SweepDriver {
  /** How many rows `pending` matches now, for progress and ETA; optional. */
  countPending?(): Promise<number>;
  /**
   * In one transaction: reads (and locks against other workers) up to `limit` pending rows with a
   * key after `after` (from the start when undefined), in key order; calls `work` with them, at once
   * or in consecutive slices (so that the database writes one slice while the next is worked on);
   * writes the rows it returns (by key) and commits. On any error, rolls back and rethrows. Returns the
   * number of rows read, the last key read (undefined when none: the sweep is over for this
   * worker), and how many writes it dropped because their row changed since it was read.
   */
  batch(
    after: readonly unknown[] | undefined,
    limit: number,
    work: (rows: SweepRow[]) => Promise<{ key: readonly unknown[]; write: Record<string, unknown> }[]>,
  ): Promise<{ rows: number; last: readonly unknown[] | undefined; changed?: number }>;
  /** Key columns, in order (what `key` values are). */
  readonly key: readonly string[];
  /** Opens one more independent connection for another worker, when the driver allows several. */
  fork?(): Promise<SweepDriver & { release(): void }>;
}

export interface SweepOptions {
  transform: RowTransform;
  /** Rows per batch (per transaction); default 500. */
  batchSize?: number;
  /** Workers at once (drivers with fork(): PostgreSQL); default 1. Each has its own connection. */
  workers?: number;
  /** Stops the sweep after the batch under way has committed; the summary then says `stopped`. */
  signal?: AbortSignal;
  /** Progress and counts: one event per batch, per failed row, and at the end. Its failure never reaches the sweep. */
  onEvent?: (event: SweepEvent) => void;
  /** Rows transformed at once within a batch; default 16. */
  concurrency?: number;
  /**
   * Whether to count the rows `pending` matches before the first batch (the `pending` of the start
   * event, the batch events and the summary: progress and an ETA); default true. The count reads
   * every pending row: on a large table, a worker that a supervisor starts again after a crash
   * reaches its first batch sooner without it (`pending` is then undefined).
   */
  count?: boolean;
  /**
   * Whether a row still matches `pending` after it was written (a plan that finds its rows by their
   * values' headers, with no marker to move): with several workers, each remembers the rows this
   * run wrote so that no row is read, and counted, twice.
   */
  writtenStayPending?: boolean;
}

/** Error codes that are the KMS's or the machine's, not the row's: the sweep stops on them. */
const NOT_THE_ROW = new Set(['ERR_KMS', 'ERR_KEY_UNAVAILABLE', 'ERR_CLOSED', 'ERR_KEY_NOT_WARM']);

/** Whether a transform's error is the row's own fault (skip it) rather than a reason to stop. */
function isRowFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return true;
  const code = isEnvelopeError(error) ? error.code : undefined;
  if (code && NOT_THE_ROW.has(code)) return false;
  // A RecordFieldError carries the KMS's code when the KMS failed under it.
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error && isEnvelopeError(cause) && NOT_THE_ROW.has(cause.code)) return false;
  return true;
}

const zero = (): SweepCounts => ({ seen: 0, written: 0, current: 0, failed: 0, changed: 0, batches: 0 });
const MAX_FAILURES_KEPT = 1000;

function describeFailure(key: readonly unknown[], error: Error): SweepFailure {
  const code = isEnvelopeError(error) ? error.code : ((error as { code?: unknown }).code as string | undefined) ?? error.name;
  return { key: key.map((v) => (typeof v === 'bigint' ? v.toString() : v)), code: String(code), message: error.message };
}

/** Maps with at most `limit` calls in flight, results in order. */
async function mapLimited<I, O>(items: readonly I[], limit: number, work: (item: I) => Promise<O>): Promise<O[]> {
  const out = new Array<O>(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]!);
    }
  });
  await Promise.all(runners);
  return out;
}

/**
 * Runs a sweep to its end (or to the signal) and resolves with its summary. Rejects, after
 * rolling back the batch under way, on a database error or a failure that is not a row's own
 * (ERR_KMS, ERR_KEY_UNAVAILABLE): every batch committed before stays done, and a new run resumes.
 */
export async function runSweep(driver: SweepDriver, options: SweepOptions): Promise<SweepSummary> {
  const { transform, signal, writtenStayPending } = options;
  if (typeof transform !== 'function') throw new TypeError('"transform" expected a function of a row');
  const batchSize = options.batchSize ?? 500;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new RangeError('"batchSize" must be an integer from 1 to 10000');
  const workers = options.workers ?? 1;
  if (!Number.isSafeInteger(workers) || workers < 1 || workers > 64) throw new RangeError('"workers" must be an integer from 1 to 64');
  if (workers > 1 && !driver.fork) throw new TypeError('this driver runs one worker only (SQLite): "workers" must be 1');
  const concurrency = options.concurrency ?? 16;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new RangeError('"concurrency" must be a positive integer');
  const emit = (event: SweepEvent): void => {
    try {
      options.onEvent?.(event);
    } catch {
      // A progress hook must not break the sweep.
    }
  };

  const started = performance.now();
  const totals = zero();
  const failures: SweepFailure[] = [];
  const pending = options.count !== false && driver.countPending ? await driver.countPending() : undefined;
  emit({ type: 'start', pending, workers });
  let failedElsewhere: unknown;

  // Rows this run failed or found current stay pending (and written ones too, for plans that
  // say so): with several workers another one reads them again, and is to skip them (counted
  // once, never retried in the same run).
  const settled = workers > 1 ? new Set<string>() : undefined;
  const keyId = (key: readonly unknown[]): string => JSON.stringify(key, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

  async function worker(index: number, d: SweepDriver): Promise<void> {
    let after: readonly unknown[] | undefined;
    for (;;) {
      if (signal?.aborted || failedElsewhere !== undefined) return;
      const batch = zero();
      const rowFailures: SweepFailure[] = [];
      const { rows, last, changed = 0 } = await d.batch(after, batchSize, async (read) => {
        const rows = settled ? read.filter((row) => !settled.has(keyId(d.key.map((c) => row[c])))) : read;
        const outcomes = await mapLimited(rows, concurrency, async (row) => {
          const key = d.key.map((c) => row[c]);
          let outcome: RowOutcome;
          try {
            outcome = await transform(row);
          } catch (error) {
            if (!isRowFailure(error)) throw error;
            outcome = { failed: error instanceof Error ? error : new Error(String(error)) };
          }
          return { key, outcome };
        });
        const writes: { key: readonly unknown[]; write: Record<string, unknown> }[] = [];
        batch.seen += rows.length;
        for (const { key, outcome } of outcomes) {
          if ('write' in outcome) writes.push({ key, write: outcome.write });
          else if ('current' in outcome) batch.current++;
          else {
            if (!isRowFailure(outcome.failed)) throw outcome.failed;
            rowFailures.push(describeFailure(key, outcome.failed));
          }
          if (settled && (writtenStayPending || !('write' in outcome))) settled.add(keyId(key));
        }
        batch.written += writes.length;
        batch.failed = rowFailures.length;
        return writes;
      });
      if (last === undefined || rows === 0) return;
      after = last;
      batch.batches = 1;
      batch.changed = changed;
      batch.written -= changed;
      for (const k of ['seen', 'written', 'current', 'failed', 'changed', 'batches'] as const) totals[k] += batch[k];
      for (const failure of rowFailures) {
        if (failures.length < MAX_FAILURES_KEPT) failures.push(failure);
        emit({ type: 'row-failed', worker: index, failure });
      }
      emit({ type: 'batch', worker: index, batch, totals: { ...totals }, pending, last, elapsedMs: performance.now() - started });
    }
  }

  const forks: (SweepDriver & { release(): void })[] = [];
  try {
    for (let i = 1; i < workers; i++) forks.push(await driver.fork!());
    const all = [driver, ...forks].map((d, i) =>
      worker(i, d).catch((error: unknown) => {
        failedElsewhere ??= error; // the others stop after their current batch
        throw error;
      }),
    );
    const settled = await Promise.allSettled(all);
    if (failedElsewhere !== undefined) throw failedElsewhere;
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
  } finally {
    for (const f of forks) f.release();
  }
  const summary: SweepSummary = { ...totals, pending, stopped: signal?.aborted === true, failures, elapsedMs: performance.now() - started };
  emit({ type: 'end', summary });
  return summary;
}

// ---------------------------------------------------------------------------------------------
// Transforms over the record API

type AnyTable = Table<Record<string, FieldSpec>>;

interface RecordSweepOptions {
  /**
   * A plain column holding each row's key version (the lowest of its sealed values), written
   * with the values: the marker the `pending` predicate reads, and an index for SQL to find the
   * rows to rotate. Default: the table's `keyVersionColumn` (defineTable), which seal() keeps.
   */
  keyVersionColumn?: string;
}

/** The key-version column given, else the one the table declares. */
function markerOf(t: AnyTable, given: string | undefined): string | undefined {
  const column = given ?? t.keyVersionColumn;
  if (column !== undefined) quoteIdentifier(column);
  return column;
}

const utf8Length = (text: string): number => new TextEncoder().encode(text).length;

/** A SQL identifier, double-quoted (PostgreSQL and SQLite both read it). */
export function quoteIdentifier(name: string): string {
  // PostgreSQL cuts identifiers at 63 bytes (with a notice only): a longer name would name another column.
  if (typeof name !== 'string' || name.length === 0 || utf8Length(name) > 63 || name.includes('\u0000') || !name.isWellFormed()) {
    throw new TypeError(`not a column name: ${JSON.stringify(name)}`);
  }
  // Database drivers make each row an object keyed by column name, where "__proto__" sets the
  // prototype instead of a property: the column would vanish from every row read.
  if (name === '__proto__') throw new TypeError('a column named "__proto__" cannot be read as a row property: rename it');
  return `"${name.replaceAll('"', '""')}"`;
}

function sealedColumns(table: AnyTable): string[] {
  return Object.keys(table.columns);
}

/** The columns of blind indexes and of range and prefix tokens: a reseal writes them again. */
function indexColumns(table: AnyTable): string[] {
  return Object.values(table.columns).flatMap((f) => [...(f.index ? [f.index.column] : []), ...searchSpecsOf(f).map((s) => s.column)]);
}

function partitionOfRow(t: AnyTable, row: SweepRow): string {
  const p = t.partition;
  return String(typeof p === 'string' ? p : typeof p === 'function' ? p(row) : row[p.column]);
}

/** The partition column the table names, if any (it has to be read for the transform). */
function partitionColumns(table: AnyTable): string[] {
  return typeof table.partition === 'object' ? [table.partition.column] : [];
}

/** The row-version column the table declares (§12.4), read and written by the sweeps that seal. */
function rowVersionColumns(table: AnyTable): string[] {
  return table.rowVersion ? [table.rowVersion.column] : [];
}

/** What a records sweep reads and how it finds the rows still to do. */
export interface RecordSweepPlan {
  /** Columns to read besides the key (the transform's input). */
  columns: string[];
  /** SQL predicate of the rows still to do (PostgreSQL and SQLite), the progress marker; `$1`, `$2`, ... are `params`. */
  pending: string;
  /**
   * The bound parameters of `pending` (partition names, target versions: never SQL text), resolved
   * by the driver once before the first batch.
   */
  params?: () => Promise<readonly unknown[]>;
  transform: RowTransform;
  /** See SweepOptions.writtenStayPending: true for plans whose `pending` no write moves. */
  writtenStayPending?: boolean;
}

function checkedTable(table: unknown): AnyTable {
  const t = table as AnyTable;
  if (!t || typeof t.name !== 'string' || typeof t.columns !== 'object') throw new TypeError('"table" expected a table from defineTable()');
  return t;
}

/**
 * Rotation: every row whose key-version column is below `minVersion` is opened and sealed again
 * under its partition's active version (rotate the partitions first: hierarchy.rotate()). Blind
 * indexes declared on the table are written again too. The key-version column is the marker: a
 * row sealed again has the new version and no longer matches. A row whose partition's active
 * version is still below `minVersion` is reported as failed (rotate that partition, run again).
 */
export function rotationSweep<C extends Record<string, FieldSpec>>(
  records: Records,
  table: Table<C>,
  options: (RecordSweepOptions & { minVersion: number }) | TenantRotationOptions,
): RecordSweepPlan {
  const t = checkedTable(table);
  if ('partitions' in options) return tenantRotation(records, t, options);
  const { minVersion } = options;
  if (!Number.isSafeInteger(minVersion) || minVersion < 1) throw new RangeError('"minVersion" must be a positive integer');
  const keyVersionColumn = markerOf(t, options.keyVersionColumn);
  if (keyVersionColumn === undefined) throw new TypeError(`a rotation sweep needs a key-version column as its marker: declare keyVersionColumn in table ${t.name} (or pass it)`);
  const marker = quoteIdentifier(keyVersionColumn);
  // In migration mode, rows sealed before the table had its row version are sealed again with it.
  const unversioned = t.rowVersion?.legacyUnversioned ? ` OR ${quoteIdentifier(t.rowVersion.column)} IS NULL` : '';
  return {
    columns: [...new Set([...partitionColumns(t), ...sealedColumns(t), ...indexColumns(t), keyVersionColumn, ...rowVersionColumns(t)])],
    pending: `${marker} < ${minVersion}${unversioned}`,
    transform: resealTransform(records, t, { keyVersionColumn, minVersion }),
  };
}

export interface TenantRotationOptions extends RecordSweepOptions {
  /**
   * The partitions (tenants) to rotate: only their rows are read, each aimed at its own
   * partition's active version (read from the key store when the sweep starts). Sent as bound
   * parameters, never as SQL text. The table takes its partition from a column, or is fixed.
   */
  partitions: readonly string[];
  /**
   * How the rows still to do are found. `marker` (the default with a key-version column): rows
   * whose marker is below their partition's active version, and rows whose marker is NULL while
   * they hold a value (written by something that did not keep the marker); each is sealed again
   * and its marker written. `headers` (the default without one, as for Drizzle tables): every row
   * of the partitions holding a value is read and each value's own header says whether it is
   * below; rows already current are left as they are.
   */
  versionsFrom?: 'marker' | 'headers';
}

const MAX_PARTITIONS = 1000;

/** The partition column of a table, or undefined for a fixed partition (a function cannot be a predicate). */
function tenantColumn(t: AnyTable, partitions: readonly string[]): string | undefined {
  if (!Array.isArray(partitions) || partitions.length === 0 || partitions.length > MAX_PARTITIONS || !partitions.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new TypeError(`"partitions" expected 1 to ${MAX_PARTITIONS} partition names`);
  }
  if (typeof t.partition === 'object') return quoteIdentifier(t.partition.column);
  if (typeof t.partition === 'function') throw new TypeError(`table ${t.name} takes its partition from a function, which SQL cannot select by: declare partition: { column }`);
  const fixed = t.partition;
  if (!partitions.every((p) => p === fixed)) throw new TypeError(`table ${t.name} holds partition ${JSON.stringify(fixed)} only`);
  return undefined;
}

/** The rotation of some partitions: per-row targets, bound parameters (see TenantRotationOptions). */
function tenantRotation(records: Records, t: AnyTable, options: TenantRotationOptions): RecordSweepPlan {
  const partitions = [...new Set(options.partitions ?? [])];
  const column = tenantColumn(t, partitions);
  const keyVersionColumn = markerOf(t, options.keyVersionColumn);
  const byHeaders = (options.versionsFrom ?? (keyVersionColumn === undefined ? 'headers' : 'marker')) === 'headers';
  if (!byHeaders && keyVersionColumn === undefined) throw new TypeError(`table ${t.name} has no key-version column: rotate it with versionsFrom: 'headers'`);
  if (typeof records?.hierarchy?.activeVersion !== 'function') throw new TypeError('"records" expected the records object of createRecords()');
  const anyValue = `(${sealedColumns(t).map((c) => `${quoteIdentifier(c)} IS NOT NULL`).join(' OR ')})`;
  const m = keyVersionColumn === undefined ? '' : quoteIdentifier(keyVersionColumn);
  const below = (at: number): string => `(${m} < $${at} OR (${m} IS NULL AND ${anyValue}))`;
  let pending: string;
  if (byHeaders) pending = column === undefined ? anyValue : `${column} IN (${partitions.map((_, i) => `$${i + 1}`).join(', ')}) AND ${anyValue}`;
  else pending = column === undefined ? below(1) : partitions.map((_, i) => `(${column} = $${2 * i + 1} AND ${below(2 * i + 2)})`).join(' OR ');
  const targets = new Map<string, number>();
  const params = async (): Promise<readonly unknown[]> => {
    for (const p of partitions) targets.set(p, await records.hierarchy.activeVersion(p));
    if (byHeaders) return column === undefined ? [] : partitions;
    return column === undefined ? [targets.get(partitions[0]!)] : partitions.flatMap((p) => [p, targets.get(p)]);
  };
  const targetOf = (row: SweepRow): number => {
    const target = targets.get(column === undefined ? (t.partition as string) : String(row[(t.partition as { column: string }).column]));
    if (target === undefined) throw new TypeError('the sweep read a row of a partition it was not given, or ran before its parameters were resolved');
    return target;
  };
  const reseal = resealTransform(records, t, { ...(keyVersionColumn === undefined ? {} : { keyVersionColumn }), minVersion: targetOf });
  return {
    columns: [...new Set([...partitionColumns(t), ...sealedColumns(t), ...indexColumns(t), ...(keyVersionColumn === undefined ? [] : [keyVersionColumn])])],
    pending,
    params,
    transform: byHeaders ? headerTransform(t, targetOf, reseal) : reseal,
    ...(byHeaders ? { writtenStayPending: true } : {}),
  };
}

/** Rotation by the values' headers: a row whose every value names its target version or above is current. */
function headerTransform(t: AnyTable, targetOf: (row: SweepRow) => number, reseal: RowTransform): RowTransform {
  return (row) => {
    let lowest: number | undefined;
    try {
      lowest = lowestVersionOf(t, row);
    } catch (error) {
      return { failed: error as Error };
    }
    return lowest === undefined || lowest >= targetOf(row) ? { current: true } : reseal(row);
  };
}

/**
 * Backfill: the first encryption of columns that hold plaintext. Declare the columns in the table
 * with `legacyPlaintext: true` (reads pass plaintext through while the backfill runs), then sweep:
 * each row with a plaintext value is sealed (with its blind indexes). The marker is the key-version
 * column (NULL until sealed) when given, else the text columns' `kme.` prefix.
 */
export function backfillSweep<C extends Record<string, FieldSpec>>(records: Records, table: Table<C>, options: RecordSweepOptions = {}): RecordSweepPlan {
  const t = checkedTable(table);
  const keyVersionColumn = markerOf(t, options.keyVersionColumn);
  const columns = sealedColumns(t);
  for (const c of columns) {
    if (!t.columns[c]!.legacyPlaintext) throw new TypeError(`${t.name}.${c} must be declared with legacyPlaintext: true for a backfill (its plaintext is read as it is)`);
  }
  const anyValue = columns.map((c) => `${quoteIdentifier(c)} IS NOT NULL`).join(' OR ');
  let pending: string;
  if (keyVersionColumn) pending = `${quoteIdentifier(keyVersionColumn)} IS NULL AND (${anyValue})`;
  else {
    const textColumns = columns.filter((c) => t.columns[c]!.encoding !== 'bytes');
    if (textColumns.length !== columns.length) throw new TypeError('a backfill of bytes columns needs "keyVersionColumn" as its marker');
    pending = textColumns.map((c) => `(${quoteIdentifier(c)} IS NOT NULL AND substr(${quoteIdentifier(c)}, 1, 4) <> 'kme.')`).join(' OR ');
  }
  return {
    columns: [...new Set([...partitionColumns(t), ...columns, ...indexColumns(t), ...(keyVersionColumn ? [keyVersionColumn] : []), ...rowVersionColumns(t)])],
    pending,
    transform: resealTransform(records, t, { ...(keyVersionColumn ? { keyVersionColumn } : {}), minVersion: 1, sealPlaintextOnly: !keyVersionColumn }),
  };
}

/**
 * Re-index: computes a blind index into a new index column (the expand step of expand and
 * contract: add the column, declare it in the table as the column's `index`, sweep, switch the
 * lookups, drop the old column). Only the index is written; the sealed value stays as it is. The
 * marker is the new index column: NULL until done.
 */
export function reindexSweep<C extends Record<string, FieldSpec>>(records: Records, table: Table<C>, column: keyof C & string): RecordSweepPlan {
  const t = checkedTable(table);
  const field = t.columns[column];
  if (!field?.index) throw new TypeError(`${t.name}.${column} declares no blind index (index: { column, bits }) to build`);
  const indexColumn = field.index.column;
  const only = { ...t, columns: { [column]: field } } as AnyTable;
  const partitionOf = (row: SweepRow): string => partitionOfRow(t, row);
  return {
    columns: [...new Set([...partitionColumns(t), column, indexColumn, ...rowVersionColumns(t)])],
    pending: `${quoteIdentifier(column)} IS NOT NULL AND ${quoteIdentifier(indexColumn)} IS NULL`,
    async transform(row) {
      try {
        const opened = await records.open(only as Table<Record<string, FieldSpec>>, row as never);
        const value = opened[column] as BlindIndexValue;
        const index = await records.indexOf(only, column as string, value, { partition: partitionOf(row) });
        return { write: { [indexColumn]: index } };
      } catch (error) {
        if (!isRowFailure(error)) throw error;
        return { failed: error as Error };
      }
    },
  };
}

/**
 * Re-index of a range or prefix index (README "Range and prefix search", FORMAT.md §11a.5): its
 * tokens computed from the opened values into the token column the table declares for `kind` (a
 * new column for a new version: add it, declare it, sweep, switch the queries, drop the old one).
 * Only the tokens are written; the sealed value stays as it is. The marker is the token column:
 * NULL until done.
 */
export function searchReindexSweep<C extends Record<string, FieldSpec>>(records: Records, table: Table<C>, column: keyof C & string, kind: 'range' | 'prefix' | 'contains'): RecordSweepPlan {
  const t = checkedTable(table);
  const field = t.columns[column];
  const spec = field && searchSpecsOf(field).find((s) => s.kind === kind);
  if (!spec) throw new TypeError(`${t.name}.${column} declares no ${kind} index (search: { kind: "${kind}", column, … }) to build`);
  const only = { ...t, columns: { [column]: field } } as AnyTable;
  return {
    columns: [...new Set([...partitionColumns(t), column, spec.column])],
    pending: `${quoteIdentifier(column)} IS NOT NULL AND ${quoteIdentifier(spec.column)} IS NULL`,
    async transform(row) {
      try {
        const opened = await records.open(only as Table<Record<string, FieldSpec>>, row as never);
        const partition = partitionOfRow(t, row);
        return { write: { [spec.column]: await records.searchTokens(only, column as string, kind, opened[column], { partition }) } };
      } catch (error) {
        if (!isRowFailure(error)) throw error;
        return { failed: error as Error };
      }
    },
  };
}

/**
 * Rewrap of columns holding whole sealed messages (bytea or BLOB) under a KMS data key, format 1
 * or 2: each value not yet under `toKeyId` is moved there by rewrap() (one ReEncrypt per
 * value; only its wrapped-key section changes, the payload bytes stay as they are). A value already
 * under the key is left (its header says so, no KMS call). With no marker column, `pending` is every
 * row with a value (give a narrower predicate if you have one): a run after a stop reads the rows
 * done again, finds them current from their headers, and writes nothing there. For values sealed
 * with a detached context, `context(row, column)` gives it.
 */
export function rewrapSweep(
  envelope: Envelope,
  options: { columns: readonly string[]; toKeyId: string; context?: (row: SweepRow, column: string) => ContextInput; pending?: string },
): RecordSweepPlan {
  const { columns, toKeyId } = options;
  if (!Array.isArray(columns) || columns.length === 0) throw new TypeError('"columns" expected the columns holding sealed messages');
  for (const c of columns) quoteIdentifier(c);
  if (typeof toKeyId !== 'string' || toKeyId.length === 0) throw new TypeError('"toKeyId" expected the master key to rewrap to');
  const policy = { keyIds: [toKeyId] };
  return {
    columns: [...columns],
    pending: options.pending ?? columns.map((c) => `${quoteIdentifier(c)} IS NOT NULL`).join(' OR '),
    writtenStayPending: true,
    async transform(row) {
      const write: Record<string, unknown> = {};
      try {
        for (const column of columns) {
          const value = row[column];
          if (value === null || value === undefined) continue;
          if (!(value instanceof Uint8Array)) throw new TypeError(`column ${column} holds ${typeof value}, not the bytes of a sealed message`);
          if (!needsRewrap(value, policy)) continue;
          const context = options.context?.(row, column);
          write[column] = await rewrap(envelope, value, { toKeyId, ...(context === undefined ? {} : { context }) });
        }
      } catch (error) {
        if (!isRowFailure(error)) throw error;
        return { failed: error as Error };
      }
      return Object.keys(write).length ? { write } : { current: true };
    },
  };
}

/**
 * The transform of rotation and backfill: open the row (plaintext passes through in migration
 * mode), seal it again under the active version, and write the sealed columns, their blind
 * indexes and the key version. Every opened value is wiped by the record API's own paths; the
 * plaintext row lives only between the two calls.
 */
function resealTransform(records: Records, t: AnyTable, o: { keyVersionColumn?: string; minVersion: number | ((row: SweepRow) => number); sealPlaintextOnly?: boolean }): RowTransform {
  const columns = sealedColumns(t);
  const indexes = indexColumns(t);
  const marker = o.keyVersionColumn;
  // seal() keeps the key-version column the table declares: declared here for another one.
  const sealTable = (marker !== undefined && marker !== t.keyVersionColumn ? defineTable({ ...t, keyVersionColumn: marker }) : t) as Table<Record<string, FieldSpec>>;
  const table = t as Table<Record<string, FieldSpec>>;
  /** Opened bytes values are plaintext: wiped once sealed again (strings cannot be). */
  const wipeOpened = (opened: Record<string, unknown>, row: SweepRow): void => {
    for (const c of columns) if (opened[c] instanceof Uint8Array && opened[c] !== row[c]) wipe(opened[c]);
  };
  /** Reseal synchronously while the keys are in memory (no promise per value); undefined when one is not. */
  const resealNow = (row: SweepRow): Record<string, unknown> | undefined => {
    try {
      return records.resealSync(sealTable, row as never) as Record<string, unknown>;
    } catch (error) {
      if (isEnvelopeError(error) && error.code === 'ERR_KEY_NOT_WARM') return undefined; // loading now: the async path waits for it
      throw error;
    }
  };
  // A row version is kept (the same plaintext under the same version); an unversioned row gets 0.
  const rowVersion = t.rowVersion?.column;
  const resealLater = async (row: SweepRow): Promise<Record<string, unknown>> => {
    let opened: Record<string, unknown> | undefined;
    try {
      opened = await records.open(table, row as never);
      const plain = rowVersion === undefined ? opened : { ...opened, [rowVersion]: opened[rowVersion] ?? 0 };
      return (await records.seal(sealTable, plain as PlainRow<Record<string, FieldSpec>>)) as Record<string, unknown>;
    } finally {
      if (opened) wipeOpened(opened, row);
    }
  };
  return async (row) => {
    if (o.sealPlaintextOnly) {
      const plain = columns.some((c) => typeof row[c] === 'string' && !(row[c] as string).startsWith(TEXT_PREFIX));
      if (!plain) return { current: true };
    }
    let sealed: Record<string, unknown>;
    try {
      sealed = resealNow(row) ?? (await resealLater(row));
    } catch (error) {
      if (!isRowFailure(error)) throw error;
      return { failed: error as Error };
    }
    const write: Record<string, unknown> = {};
    for (const c of [...columns, ...indexes]) if (c in sealed) write[c] = sealed[c] ?? null;
    if (rowVersion !== undefined) write[rowVersion] = sealed[rowVersion];
    const minVersion = typeof o.minVersion === 'function' ? o.minVersion(row) : o.minVersion;
    // The lowest version the new values name: seal() notes it in the marker; else read from their headers.
    const hasValue = columns.some((c) => sealed[c] !== null && sealed[c] !== undefined);
    let version: number | undefined;
    try {
      version = !hasValue ? undefined : marker !== undefined ? (sealed[marker] as number) : lowestVersionOf(t, sealed);
    } catch (error) {
      return { failed: error as Error };
    }
    if (version !== undefined && version < minVersion) {
      return { failed: new RangeError(`the active key version of the row's partition is ${version}, below ${minVersion}: rotate the partition, then sweep again`) };
    }
    // A row with no value left has no key version (NULL): it no longer matches the rotation's marker.
    if (marker !== undefined) write[marker] = version ?? null;
    return { write };
  };
}
