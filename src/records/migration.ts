/**
 * Encrypting a column that already holds plaintext, on a live table, in phases a team can follow
 * and pause (README "Encrypting a live plaintext column"):
 *
 *   (a) writes sealed: the application reads and writes through `migration.reading` (the columns
 *       in migration mode: reads accept both forms and count the plaintext ones in records.stats;
 *       writes seal);
 *   (b) backfill: a sweep (`migration.backfill`, through sweepPostgres or sweepSqlite) seals the old
 *       rows in place, or into new columns, with their blind-index columns, in one pass;
 *   (c) refuse plaintext: `refusePlaintext()` checks that no row holds plaintext any more and gives
 *       `migration.sealed`, the table whose reads refuse it;
 *   (d) clean-up (optional): dropping the plaintext source columns (into mode), a DDL step.
 *
 * Going back is a configuration change up to (c), with no data change: use the previous phase's
 * table again. Decrypting back to plaintext is one explicit sweep (`decryptSweep`), never a side
 * effect. The data phases write rows with UPDATEs only (a sweep takes FOR UPDATE row locks, at most
 * RowExclusiveLock on the table); DDL steps are separate calls (sql/ddl.ts).
 */
import { EnvelopeError } from '../core/errors.ts';
import { quoteTableName } from '../core/sql-names.ts';
import { wipe } from '../core/bytes.ts';
import { defineTable, type FieldSpec, type PlainRow, type Records, type Table } from './records.ts';
import { backfillSweep, quoteIdentifier, type RecordSweepPlan, type RowTransform, type SweepRow } from './sweep.ts';
import { looksSealed } from './binding.ts';

type AnyTable = Table<Record<string, FieldSpec>>;

/** Phase (c) asked for while rows still hold plaintext: nothing was switched. */
export class MigrationIncompleteError extends EnvelopeError {
  /** Rows that still hold a plaintext value. */
  readonly plaintextRows: number;
  constructor(table: string, plaintextRows: number) {
    super('ERR_MIGRATION_INCOMPLETE', `table ${table} still has ${plaintextRows} row(s) holding plaintext: run the backfill to its end before refusing plaintext`);
    this.plaintextRows = plaintextRows;
  }
}

export interface ColumnMigrationOptions {
  /**
   * The key-version column (NULL until a row is sealed): the backfill's progress marker. Needed for
   * bytes columns and for into mode; recommended for text columns too (without it, the `kme.`
   * prefix is the marker, and a plaintext value that itself begins with `kme.` would be taken for
   * sealed). Default: the table's `keyVersionColumn`.
   */
  keyVersionColumn?: string;
  /**
   * Into mode: seal each source column into a new column (`{ email: 'email_sealed' }`) instead of
   * in place. The plaintext source stays until the clean-up drops it (rollback keeps it readable);
   * in place, each row's plaintext is gone when its batch commits.
   */
  into?: Readonly<Record<string, string>>;
}

export interface ColumnMigration {
  /** Phases (a) and (b): the table the application reads and writes through (plaintext read and counted, writes sealed). */
  readonly reading: AnyTable;
  /** Phase (c): the same table with plaintext refused. */
  readonly sealed: AnyTable;
  /** Phase (b): the backfill sweep's plan (columns, pending predicate, transform). */
  readonly backfill: RecordSweepPlan;
  /** SQL predicate of the rows that still hold plaintext (what the backfill has left). */
  readonly plaintextLeft: string;
  /** Into mode: the source → target column names (empty in place). */
  readonly into: Readonly<Record<string, string>>;
  /** Into mode: a row as read, with each target taken from its source while the target is NULL (in place: the row itself). */
  forRead(row: Readonly<Record<string, unknown>>): Record<string, unknown>;
  /** Into mode: a sealed row as written, its plaintext sources set to NULL (in place: the row itself). */
  forWrite(row: Readonly<Record<string, unknown>>): Record<string, unknown>;
}

/** The table with its encrypted columns in migration mode (true) or not (false). */
function withLegacy(t: AnyTable, legacy: boolean, keyVersionColumn: string | undefined): AnyTable {
  const columns = Object.fromEntries(Object.entries(t.columns).map(([c, f]) => [c, { ...f, legacyPlaintext: legacy }]));
  return defineTable({ ...t, columns, ...(keyVersionColumn ? { keyVersionColumn } : {}) }) as AnyTable;
}

/** The table as into mode stores it: each column under its target name, bound to the source's column id. */
function renamed(t: AnyTable, into: Readonly<Record<string, string>>): AnyTable {
  const columns: Record<string, FieldSpec> = {};
  for (const [c, f] of Object.entries(t.columns)) {
    const target = into[c];
    if (target !== undefined) quoteIdentifier(target);
    columns[target ?? c] = { ...f, id: f.id ?? c };
  }
  return defineTable({ ...t, columns }) as AnyTable;
}

function checkInto(t: AnyTable, into: Readonly<Record<string, string>>, marker: string | undefined): void {
  const targets = new Set<string>();
  for (const [source, target] of Object.entries(into)) {
    if (!(source in t.columns)) throw new TypeError(`"into" names ${JSON.stringify(source)}, not an encrypted column of table ${t.name}`);
    if (typeof target !== 'string' || target === source || target in t.columns || targets.has(target)) throw new TypeError(`"into" expected a new column name for ${source}, got ${JSON.stringify(target)}`);
    targets.add(target);
  }
  if (targets.size && marker === undefined) throw new TypeError('into mode needs a key-version column as its progress marker ("keyVersionColumn")');
}

/**
 * The phases of encrypting `table`'s columns, which hold plaintext today. `table` declares the
 * columns as they will be sealed (type, id, index); migration mode is set here.
 */
export function columnMigration<C extends Record<string, FieldSpec>>(records: Records, table: Table<C>, options: ColumnMigrationOptions = {}): ColumnMigration {
  const t = table as unknown as AnyTable;
  if (!t || typeof t.name !== 'string' || typeof t.columns !== 'object') throw new TypeError('"table" expected a table from defineTable()');
  const marker = options.keyVersionColumn ?? t.keyVersionColumn;
  if (marker !== undefined) quoteIdentifier(marker);
  const into = Object.freeze({ ...(options.into ?? {}) });
  checkInto(t, into, marker);
  const stored = Object.keys(into).length ? renamed(t, into) : t;
  const reading = withLegacy(stored, true, marker);
  const sealed = withLegacy(stored, false, marker);
  const sources = Object.keys(into);
  if (sources.length === 0) {
    const backfill = backfillSweep(records, reading, marker === undefined ? {} : { keyVersionColumn: marker });
    return { reading, sealed, backfill, plaintextLeft: backfill.pending, into, forRead: (row) => ({ ...row }), forWrite: (row) => ({ ...row }) };
  }
  const plaintextLeft = sources.map((s) => `(${quoteIdentifier(into[s]!)} IS NULL AND ${quoteIdentifier(s)} IS NOT NULL)`).join(' OR ');
  const forRead = (row: Readonly<Record<string, unknown>>): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...row };
    for (const s of sources) if ((out[into[s]!] ?? null) === null) out[into[s]!] = row[s] ?? null;
    return out;
  };
  const forWrite = (row: Readonly<Record<string, unknown>>): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...row };
    for (const s of sources) if (into[s]! in out) out[s] = null;
    return out;
  };
  const backfill = intoBackfill(records, reading, { into, marker: marker!, plaintextLeft, forRead });
  return { reading, sealed, backfill, plaintextLeft, into, forRead, forWrite };
}

/** Into mode's backfill: seals each source value into its target (sources untouched), with the indexes and the marker. */
function intoBackfill(
  records: Records,
  reading: AnyTable,
  o: { into: Readonly<Record<string, string>>; marker: string; plaintextLeft: string; forRead: (row: SweepRow) => Record<string, unknown> },
): RecordSweepPlan {
  const targets = Object.values(o.into);
  const indexes = Object.values(reading.columns).flatMap((f) => (f.index ? [f.index.column] : []));
  const partition = typeof reading.partition === 'object' ? [reading.partition.column] : [];
  const transform: RowTransform = async (row) => {
    const merged = o.forRead(row);
    let sealed: Record<string, unknown>;
    let plain: Record<string, unknown> | undefined;
    try {
      plain = await plainOf(records, reading, merged);
      sealed = (await records.seal(reading as Table<Record<string, FieldSpec>>, plain as PlainRow<Record<string, FieldSpec>>)) as Record<string, unknown>;
    } catch (error) {
      return { failed: error instanceof Error ? error : new Error(String(error)) };
    } finally {
      // Opened bytes are plaintext this process made: wiped once sealed (the row's own values are the driver's).
      for (const t of targets) if (plain?.[t] instanceof Uint8Array && plain[t] !== merged[t]) wipe(plain[t]);
    }
    const write: Record<string, unknown> = {};
    for (const c of [...targets, ...indexes, o.marker]) if (c in sealed) write[c] = sealed[c] ?? null;
    return { write };
  };
  return { columns: [...new Set([...partition, ...Object.keys(o.into), ...targets, ...indexes, o.marker])], pending: o.plaintextLeft, transform };
}

/** A merged row opened (plaintext passes through in migration mode): what seal() takes. */
async function plainOf(records: Records, reading: AnyTable, merged: Record<string, unknown>): Promise<PlainRow<Record<string, FieldSpec>>> {
  return (await records.open(reading as Table<Record<string, FieldSpec>>, merged as never)) as PlainRow<Record<string, FieldSpec>>;
}

/** Where the counts are read: a pg Pool or client (query) or a better-sqlite3 / node:sqlite database (prepare). */
export type MigrationDatabase =
  | { query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> }
  | { prepare(sql: string): { get(...params: unknown[]): unknown } };

async function firstRow(db: MigrationDatabase, sql: string): Promise<Record<string, unknown>> {
  if ('prepare' in db) return db.prepare(sql).get() as Record<string, unknown>;
  return (await db.query(sql)).rows[0] as Record<string, unknown>;
}

export interface MigrationStatus {
  /** Rows that still hold a plaintext value (the backfill's work left). */
  plaintextRows: number;
  /** All rows of the table. */
  rows: number;
}

/** How far the migration of `sqlTable` is: rows left in plaintext, of all rows (one count query). */
export async function migrationStatus(db: MigrationDatabase, sqlTable: string, migration: ColumnMigration): Promise<MigrationStatus> {
  const name = quoteTableName(sqlTable);
  const row = await firstRow(db, `SELECT count(*) AS n, coalesce(sum(CASE WHEN (${migration.plaintextLeft}) THEN 1 ELSE 0 END), 0) AS left FROM ${name}`);
  return { plaintextRows: Number(row.left), rows: Number(row.n) };
}

/**
 * Phase (c): checks that no row of `sqlTable` holds plaintext and returns the table whose reads
 * refuse it; throws MigrationIncompleteError (ERR_MIGRATION_INCOMPLETE), switching nothing, while
 * any row does. Writers of plaintext must be gone first (phase a everywhere): a row written in
 * plaintext after this check fails to open, loudly, rather than passing unsealed.
 */
export async function refusePlaintext(db: MigrationDatabase, sqlTable: string, migration: ColumnMigration): Promise<AnyTable> {
  const { plaintextRows } = await migrationStatus(db, sqlTable, migration);
  if (plaintextRows > 0) throw new MigrationIncompleteError(sqlTable, plaintextRows);
  return migration.sealed;
}

/**
 * The explicit way back: a sweep that opens every sealed value of the migration's columns and
 * writes its plaintext (in place: into the same columns; into mode: the sources, the targets set
 * to NULL), the marker set to NULL. Text columns get the value's text (strings only, as they were
 * before the migration); run it with the application on `migration.reading`.
 */
export function decryptSweep(records: Records, migration: ColumnMigration): RecordSweepPlan {
  const t = migration.reading;
  const marker = t.keyVersionColumn;
  const columns = Object.keys(t.columns);
  const sourceOf = Object.fromEntries(Object.entries(migration.into).map(([s, target]) => [target, s]));
  for (const c of columns) if (t.columns[c]!.type !== 'string' && t.columns[c]!.type !== 'bytes') throw new TypeError(`${t.name}.${c} is a ${t.columns[c]!.type}: only string and bytes columns go back to plaintext`);
  if (marker === undefined && columns.some((c) => t.columns[c]!.encoding === 'bytes')) throw new TypeError('decrypting bytes columns back needs the key-version column as the marker');
  const sealedAny = columns.map((c) => `${quoteIdentifier(c)} IS NOT NULL`).join(' OR ');
  const pending = marker !== undefined ? `${quoteIdentifier(marker)} IS NOT NULL` : columns.map((c) => `substr(${quoteIdentifier(c)}, 1, 4) = 'kme.'`).join(' OR ');
  const partition = typeof t.partition === 'object' ? [t.partition.column] : [];
  const transform: RowTransform = async (row) => {
    const write: Record<string, unknown> = {};
    try {
      const opened = await records.open(t as Table<Record<string, FieldSpec>>, row as never);
      for (const c of columns) {
        if (!looksSealed(row[c])) continue;
        write[sourceOf[c] ?? c] = opened[c] ?? null;
        if (sourceOf[c]) write[c] = null;
      }
    } catch (error) {
      return { failed: error instanceof Error ? error : new Error(String(error)) };
    }
    if (marker !== undefined) write[marker] = null;
    return Object.keys(write).length ? { write } : { current: true };
  };
  return {
    columns: [...new Set([...partition, ...columns, ...Object.keys(migration.into), ...(marker ? [marker] : [])])],
    pending: marker !== undefined ? `${pending} AND (${sealedAny})` : pending,
    transform,
  };
}
