/**
 * Row-version binding (FORMAT.md §12.4): a table may name a plain integer column whose value is
 * bound into every sealed value of the row, so that one cell rolled back to an older sealed value
 * fails while the rest of the row is newer. Here: the version's one bound spelling, what a write
 * must give, and the typed error of what is refused.
 */
import { EnvelopeError } from '../core/errors.ts';

/** What this file reads of a table (table.ts declares it; no import, which would make a circle). */
interface AnyTable {
  readonly name: string;
  readonly columns: Readonly<Record<string, unknown>>;
  readonly rowVersion?: { readonly column: string; readonly legacyUnversioned?: boolean } | undefined;
}
type Row = Readonly<Record<string, unknown>>;

/** Why a row version was refused. */
export type RowVersionProblem =
  /** defineTable: a row version needs a primary key (the version of which row?). */
  | 'no-primary-key'
  /** A write without the new version, or a read without the version column. */
  | 'missing'
  /** Not an integer from 0 to 2^63 − 1 in one of the accepted spellings. */
  | 'invalid'
  /** A write that does not seal every sealed column of the row again under a new version given as a value. */
  | 'partial-write'
  /** A row whose version is NULL (sealed before the table had the column), read outside migration mode. */
  | 'unversioned';

/**
 * The row-version binding refused a declaration, a write or a read (`ERR_ROW_VERSION`). Never
 * carries a sealed or plaintext value: only table and column names and the problem.
 */
export class RowVersionError extends EnvelopeError {
  readonly table: string;
  readonly problem: RowVersionProblem;
  constructor(table: string, problem: RowVersionProblem, message: string) {
    super('ERR_ROW_VERSION', `table ${table}: ${message}`);
    this.table = table;
    this.problem = problem;
  }
}

const MAX = 2n ** 63n - 1n;
const DECIMAL = /^(?:0|[1-9][0-9]{0,18})$/;

/**
 * The bound spelling of a row version (decimal ASCII, no leading zeros), from a safe integer, a
 * bigint or a decimal string (how PostgreSQL drivers return BIGINT), 0 to 2^63 − 1; else undefined.
 */
export function rowVersionText(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? String(value) : undefined;
  if (typeof value === 'bigint') return value >= 0n && value <= MAX ? value.toString(10) : undefined;
  if (typeof value === 'string') return DECIMAL.test(value) && BigInt(value) <= MAX ? value : undefined;
  return undefined;
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 24 ? `${value.slice(0, 24)}…` : value)}`;
  if (typeof value === 'number' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  return value === null ? 'null' : typeof value;
}

function checked(t: AnyTable, column: string, value: unknown): string {
  const text = rowVersionText(value);
  if (text === undefined) {
    throw new RowVersionError(t.name, 'invalid', `row version column ${column} holds ${describeValue(value)}: a row version is an integer from 0 to 2^63 - 1 (a number, a bigint or a decimal string)`);
  }
  return text;
}

/**
 * The version a write binds: the row's version column, a value the client chose before sealing
 * (the new version), and every sealed column present (null for none): a write seals them all.
 */
export function versionToSeal(t: AnyTable, row: Row): string | undefined {
  const column = t.rowVersion?.column;
  if (column === undefined) return undefined;
  const value = row[column];
  if (value === null || value === undefined) {
    throw new RowVersionError(
      t.name,
      'missing',
      `a write must give the row's new version in ${column} as a value (known before sealing, never an SQL expression such as ${column} + 1): it is bound into every sealed value of the row`,
    );
  }
  const missing = Object.keys(t.columns).filter((c) => row[c] === undefined);
  if (missing.length) {
    throw new RowVersionError(t.name, 'partial-write', `every write seals every sealed column again under the new version: give ${missing.join(', ')} too (null for none)`);
  }
  return checked(t, column, value);
}

/**
 * The version a sweep binds when it seals a stored row again: the row's own (the same plaintext
 * under the same version), or 0 for a row sealed before the table had the column (NULL).
 */
export function versionToReseal(t: AnyTable, row: Row): string | undefined {
  const column = t.rowVersion?.column;
  if (column === undefined) return undefined;
  const value = row[column];
  if (value === undefined) throw new RowVersionError(t.name, 'missing', `the row was read without its row version column ${column}: read it with the sealed columns`);
  return value === null ? '0' : checked(t, column, value);
}

/**
 * The version a read binds: the row's version column, or null when it is NULL (a row sealed
 * before the table had the column: opened without the binding only in migration mode).
 */
export function versionToOpen(t: AnyTable, row: Row): string | null | undefined {
  const column = t.rowVersion?.column;
  if (column === undefined) return undefined;
  const value = row[column];
  if (value === undefined) throw new RowVersionError(t.name, 'missing', `the row was read without its row version column ${column}, which its sealed values are bound to: select it with them`);
  return value === null ? null : checked(t, column, value);
}

/** Refuses to seal one field of a row-version table alone (ORM column types): a write seals the whole row. */
export function refuseFieldSeal(t: AnyTable): void {
  if (!t.rowVersion) return;
  throw new RowVersionError(t.name, 'partial-write', 'a field is never sealed alone in a table with a row version: every write seals every sealed column of the row under its new version (records.seal())');
}

/** Refuses to open a value of an unversioned row (NULL version) unless the table is in migration mode. */
export function refuseUnversioned(t: AnyTable): void {
  if (t.rowVersion?.legacyUnversioned) return;
  const column = t.rowVersion!.column;
  throw new RowVersionError(
    t.name,
    'unversioned',
    `the row's version ${column} is NULL: its values would open without the row-version binding. For rows sealed before the table had the column, declare rowVersion: { column: '${column}', legacyUnversioned: true } until a sweep has sealed them again`,
  );
}

/**
 * For adapters (Kysely, Sequelize, Prisma, …): refuses a write of a row-version table that sets
 * some sealed columns but not all, or sealed columns without the version column, or the version
 * without every sealed column. `columns` are the columns the write sets; a write that sets neither
 * a sealed column nor the version passes (it leaves the sealed values as they are).
 */
export function refusePartialWrite(table: AnyTable, columns: Iterable<string>, what: string): void {
  const version = table.rowVersion?.column;
  if (version === undefined) return;
  const set = new Set(columns);
  const sealed = Object.keys(table.columns);
  if (!set.has(version) && !sealed.some((c) => set.has(c))) return;
  const missing = [...sealed, version].filter((c) => !set.has(c));
  if (missing.length === 0) return;
  throw new RowVersionError(
    table.name,
    'partial-write',
    `${what} must set every sealed column (null for none) and the new row version ${version} as a value, or none of them: it lacks ${missing.join(', ')}. A partial update would leave values bound to another version (load the row, change it, write it whole)`,
  );
}
