/**
 * A table's declaration for the record API (FORMAT.md §12): its encrypted columns, primary key,
 * partition and schema version; the row types that follow from it; the error of a value that
 * does not open.
 */
import type { FieldType, FieldValues } from './field-value.ts';
import { EnvelopeError, PartitionMismatchError } from '../core/errors.ts';
import type { BlindIndexNormalizer } from './blind-index-values.ts';
import { RowVersionError } from './row-version.ts';
import type { TokenMac } from '../core/token-mac.ts';
import type { DateLevel } from './search-levels.ts';

interface SearchSpecBase {
  /** The column the tokens are written to (PostgreSQL: bigint[] with a GIN index; SQLite: JSON text, see searchSchema). */
  column: string;
  /** Token bits, 16 to 52 (default 32). */
  bits?: number;
  version?: number;
  /** HMAC-SHA-256 by default; hmacSm3Tokens from kms-envelope/sm4. */
  mac?: TokenMac;
  /** `array` (default): a number[] for a PostgreSQL bigint[] column; `json`: its JSON text, for SQLite. */
  storage?: 'array' | 'json';
}

/**
 * A range index (README "Range and prefix search", FORMAT.md §11a): on number (safe integers, or
 * `domain: 'float64'`), bigint, date and decimal columns. It leaks which rows share a bucket at
 * each level, so `acknowledgeLeakage: 'range'` is required.
 */
export interface RangeIndexSpec extends SearchSpecBase {
  kind: 'range';
  acknowledgeLeakage: 'range';
  /** Finest first: powers of two (`[0, 8, 16]`), or for dates some of `day`, `month`, `year`. */
  levels: readonly (number | DateLevel)[];
  /** A number column's values as float64 rather than safe integers. */
  domain?: 'float64';
  maxQueryTokens?: number;
  /** The least and greatest values the column holds: values outside are refused, and open-ended queries stop there (README "Range and prefix search"). */
  bounds?: { min?: number | bigint | string | Date; max?: number | bigint | string | Date };
  /** The number of distinct values expected, for the dictionary warning (with both bounds). */
  expectedDistinctValues?: number;
}

/** A prefix index for `startsWith` on string columns; `acknowledgeLeakage: 'prefix'` is required. */
export interface PrefixIndexSpec extends SearchSpecBase {
  kind: 'prefix';
  acknowledgeLeakage: 'prefix';
  minLength: number;
  maxLength: number;
  normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[];
  expectedValueLength?: number;
}

/**
 * An n-gram index for `contains` on string columns (opt-in: it reveals more than a prefix index);
 * `acknowledgeLeakage: 'contains'` is required. Values longer than maxLength are refused.
 */
export interface ContainsIndexSpec extends SearchSpecBase {
  kind: 'contains';
  acknowledgeLeakage: 'contains';
  /** The gram length n (2 to 16): the shortest term a query may use. */
  minLength: number;
  /** The longest value, in code points: every value gets maxLength − minLength + 1 tokens. */
  maxLength: number;
  normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[];
  expectedValueLength?: number;
}

export type SearchIndexSpec = RangeIndexSpec | PrefixIndexSpec | ContainsIndexSpec;

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
  /** Range and prefix indexes of the column (README "Range and prefix search"): seal() writes their tokens. */
  search?: SearchIndexSpec | readonly SearchIndexSpec[];
  /** A decimal column's places, 0 to 38 (required for `type: 'decimal'`). */
  scale?: number;
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
    checkScale(spec.name, column, field);
    for (const search of searchSpecsOf(field)) checkSearchSpec(spec.name, column, field, search);
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

function checkScale(table: string, column: string, field: FieldSpec): void {
  if (field.type !== 'decimal' && field.scale === undefined) return;
  if (field.type !== 'decimal') throw new TypeError(`${table}.${column}: "scale" is for decimal columns`);
  if (!Number.isInteger(field.scale) || field.scale! < 0 || field.scale! > 38) throw new RangeError(`${table}.${column}: a decimal column needs "scale", an integer from 0 to 38`);
}

/** A column's search index specs, as a list. */
export function searchSpecsOf(field: FieldSpec): readonly SearchIndexSpec[] {
  const search = field.search;
  return search === undefined ? [] : Array.isArray(search) ? search : [search as SearchIndexSpec];
}

const RANGE_TYPES: readonly FieldType[] = ['number', 'bigint', 'date', 'decimal'];

/** What defineTable checks of a search index before any key: the kind, the acknowledgement, the column's type. */
function checkSearchSpec(table: string, column: string, field: FieldSpec, search: SearchIndexSpec): void {
  const where = `${table}.${column}`;
  if (typeof search !== 'object' || search === null) throw new TypeError(`${where}: "search" expected { kind, column, acknowledgeLeakage, … }`);
  const kind: unknown = search.kind;
  if (kind !== 'range' && kind !== 'prefix' && kind !== 'contains') throw new TypeError(`${where}: search kind ${JSON.stringify(kind)} is refused or unknown: "range", "prefix" and "contains" are the kinds (README "Range and prefix search" says why order-preserving, order-revealing and deterministic encryption and unkeyed hashes are not offered)`);
  if (search.acknowledgeLeakage !== kind) throw new TypeError(`${where}: a ${kind} index needs acknowledgeLeakage: "${kind}" (README "Range and prefix search": what it reveals)`);
  if (typeof search.column !== 'string' || search.column.length === 0) throw new TypeError(`${where}: a ${kind} index needs "column", the column its tokens are written to`);
  if (kind === 'range' && !RANGE_TYPES.includes(field.type)) throw new TypeError(`${where}: a range index is for number, bigint, date and decimal columns, not ${field.type}`);
  if (kind !== 'range' && field.type !== 'string') throw new TypeError(`${where}: a ${kind} index is for string columns, not ${field.type}`);
}

/** A table of any columns, as the record API handles it inside. */
export type AnyTable = Table<Record<string, FieldSpec>>;
/** A row of any columns, as the record API reads it. */
export type Row = Readonly<Record<string, unknown>>;
