/**
 * A table's declaration for the record API (FORMAT.md §12): its encrypted columns, primary key,
 * partition and schema version; the row types that follow from it; the error of a value that
 * does not open.
 */
import type { FieldType, FieldValues } from './field-value.ts';
import { EnvelopeError, PartitionMismatchError } from '../core/errors.ts';
import type { BlindIndexNormalizer } from './blind-index-values.ts';
import { RowVersionError } from './row-version.ts';

export interface FieldSpec<T extends FieldType = FieldType> {
  type: T;
  /** The logical column id bound into each value; default the column's name. Keep it when renaming the column. */
  id?: string;
  /** `text` (default): the text form `kme.…` for text columns; `bytes`: the sealed bytes, for bytea or BLOB columns. */
  encoding?: 'text' | 'bytes';
  /**
   * Migration only: read values that are not sealed (legacy plaintext) as they are, and count
   * them. Anyone who can write the table can then plant plaintext: switch it off once a backfill
   * has sealed every row.
   */
  legacyPlaintext?: boolean;
  /**
   * A blind index for equality search (README "Blind indexes"): seal() writes it to `column`, and
   * indexOf() gives the value to look up. It leaks equality and frequency within the column and
   * partition.
   */
  index?: { column: string; bits: number; normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[]; version?: number };
}

export interface TableSpec<C extends Record<string, FieldSpec>> {
  /** The logical table id bound into each value. */
  name: string;
  /** The encrypted columns. */
  columns: C;
  /**
   * The primary key column(s), bound into each value when given. Only where the key is known before
   * the write (client-made ids such as UUIDv7, natural keys); database-made ids cannot be bound.
   */
  primaryKey?: string | readonly string[];
  /** The key hierarchy partition: a column of the row (`{ column: 'tenant_id' }`), a function of it, or a fixed name. */
  partition: string | { column: string } | ((row: Readonly<Record<string, unknown>>) => string);
  /** Bound into each value; raise it when a column's meaning changes. Default 1. */
  schemaVersion?: number;
  /**
   * A plain integer column the record API keeps at the key version the row's values were sealed
   * under (the lowest, should they differ), so SQL finds the rows to rotate with an index:
   * `WHERE key_version < $1`. Not bound into the values; written by seal(), never read by open().
   */
  keyVersionColumn?: string;
  /**
   * Row-version binding (FORMAT.md §12.4, README "Row versions"): a plain integer column whose
   * value is bound into every sealed value of the row, so that one cell rolled back to an older
   * sealed value fails to open while the rest of the row is newer. Needs a primary key. Every
   * write then seals every sealed column again, under a new version given as a value in the row.
   * `legacyUnversioned` (migration only): open rows whose version is NULL (sealed before the table
   * had the column) without the binding, until a sweep has sealed them again; then switch it off.
   */
  rowVersion?: { column: string; legacyUnversioned?: boolean };
}

export interface Table<C extends Record<string, FieldSpec>> extends Readonly<TableSpec<C>> {
  readonly schemaVersion: number;
  readonly primaryKeys: readonly string[];
}

/** The plaintext row: encrypted columns typed by their spec; null and undefined pass through. */
export type PlainRow<C extends Record<string, FieldSpec>> = { [K in keyof C]?: FieldValues[C[K]['type']] | null } & Record<string, unknown>;

/** The row as stored: encrypted columns are text (`kme.…`) or bytes. */
export type SealedRow<C extends Record<string, FieldSpec>> = {
  [K in keyof C]?: (C[K]['encoding'] extends 'bytes' ? Uint8Array : string) | null;
} & Record<string, unknown>;

/** A value that failed to open: names the table, the column and the row; `cause` says why. */
export class RecordFieldError extends EnvelopeError {
  readonly table: string;
  readonly column: string;
  /** The row's primary key values (empty when the table binds none). */
  readonly row: readonly unknown[];
  constructor(table: string, column: string, row: readonly unknown[], cause: unknown) {
    const code = cause instanceof EnvelopeError ? cause.code : 'ERR_DECRYPTION_FAILED';
    const where = `${table}.${column}${row.length ? ` of row ${JSON.stringify(row)}` : ''}`;
    const why =
      cause instanceof EnvelopeError && code === 'ERR_DECRYPTION_FAILED'
        ? 'it was sealed for another row, column or table, or it was altered'
        : cause instanceof PartitionMismatchError
          ? `it was sealed ${cause.found === undefined ? 'under no partition' : `for partition ${JSON.stringify(cause.found)}`}, not for the row's partition ${JSON.stringify(cause.expected)} (the row or the value was moved from another partition)`
          : cause instanceof Error
          ? cause.message
          : String(cause);
    super(code, `${where} does not open: ${why}`, { cause });
    this.table = table;
    this.column = column;
    this.row = row;
  }
}

/** Declares a table's encrypted columns; the types of rows follow from it. */
export function defineTable<const C extends Record<string, FieldSpec>>(spec: TableSpec<C>): Table<C> {
  if (typeof spec?.name !== 'string' || spec.name.length === 0) throw new TypeError('"name" expected the table\'s name');
  const primaryKeys = spec.primaryKey === undefined ? [] : typeof spec.primaryKey === 'string' ? [spec.primaryKey] : [...spec.primaryKey];
  const ids = new Set<string>();
  for (const [column, field] of Object.entries(spec.columns)) {
    const id = field.id ?? column;
    if (ids.has(id)) throw new TypeError(`column id ${JSON.stringify(id)} is used twice in table ${spec.name}`);
    ids.add(id);
    if (primaryKeys.includes(column)) throw new TypeError(`primary key column ${column} cannot be encrypted: it is bound into the others`);
  }
  const schemaVersion = spec.schemaVersion ?? 1;
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1) throw new RangeError('"schemaVersion" must be a positive integer');
  const kv = spec.keyVersionColumn;
  if (kv !== undefined && (typeof kv !== 'string' || kv.length === 0 || kv in spec.columns || primaryKeys.includes(kv))) {
    throw new TypeError(`"keyVersionColumn" expected the name of a plain column, neither encrypted nor a primary key, got ${JSON.stringify(kv)}`);
  }
  const rowVersion = checkRowVersion(spec, primaryKeys);
  return Object.freeze({ ...spec, schemaVersion, primaryKeys: Object.freeze(primaryKeys), ...(rowVersion ? { rowVersion } : {}) });
}

/** The row-version declaration, checked: a plain column of a table with a primary key. */
function checkRowVersion(spec: TableSpec<Record<string, FieldSpec>>, primaryKeys: readonly string[]): TableSpec<never>['rowVersion'] {
  const rv = spec.rowVersion;
  if (rv === undefined) return undefined;
  const column = rv?.column;
  if (typeof column !== 'string' || column.length === 0 || column in spec.columns || primaryKeys.includes(column) || column === spec.keyVersionColumn) {
    throw new TypeError(`"rowVersion.column" expected the name of a plain integer column, neither encrypted, a primary key nor the key-version column, got ${JSON.stringify(column)}`);
  }
  if (rv.legacyUnversioned !== undefined && typeof rv.legacyUnversioned !== 'boolean') throw new TypeError('"rowVersion.legacyUnversioned" expected a boolean');
  if (primaryKeys.length === 0) {
    throw new RowVersionError(spec.name, 'no-primary-key', `a row version needs a primary key: the version is bound to the row it numbers (declare primaryKey, with ids known before the write)`);
  }
  return Object.freeze({ column, legacyUnversioned: rv.legacyUnversioned === true });
}

/** A table of any columns, as the record API handles it inside. */
export type AnyTable = Table<Record<string, FieldSpec>>;
/** A row of any columns, as the record API reads it. */
export type Row = Readonly<Record<string, unknown>>;
