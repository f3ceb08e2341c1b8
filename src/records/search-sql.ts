/**
 * SQL for range and prefix indexes, with no function or extension installed in the database:
 * PostgreSQL keeps a row's tokens in a bigint[] column with a GIN index and finds candidates with
 * `&&` (overlap); SQLite keeps them as JSON text in the row, and triggers copy them into a token
 * table with an index, which the query reads. Every fragment is parameterised; names are checked.
 */
import { quoteTableName } from '../core/sql-names.ts';

export type SearchDialect = 'postgres' | 'sqlite';

export interface SearchSqlInput {
  dialect: SearchDialect;
  /** The SQL table (default the table's logical name). */
  from: string;
  /** The column of the tokens. */
  tokenColumn: string;
  /** The partition column, when the table takes its partition from one. */
  partitionColumn: string | undefined;
  partition: string;
  tokens: readonly number[];
  /** `any` (default): rows holding any of the tokens; `all`: rows holding every one (a contains query). */
  match?: 'any' | 'all';
  /** PostgreSQL: the number of the first placeholder ($1 by default). */
  firstParam: number;
}

const quote = (name: string): string => quoteTableName(name);

/** The token table of a SQLite column: `<table>__<column>`. */
export function sqliteTokenTable(from: string, tokenColumn: string): string {
  return `${from.replace('.', '_')}__${tokenColumn}`;
}

/**
 * `column && tokens`, as one overlap per token when there are several (OR'ed, each reading one
 * element of the one array parameter): PostgreSQL then scans the GIN index once per token and ORs
 * the bitmaps, which costs less than one scan whose consistent check visits every query token for
 * every posting (about 30% less server CPU for a 34-token range over 1,000,000 rows; BENCHMARKS.md).
 */
function postgresOverlap(column: string, array: string, count: number): string {
  if (count <= 1) return `${column} && ${array}::bigint[]`;
  return `(${Array.from({ length: count }, (_, i) => `${column} && ARRAY[(${array}::bigint[])[${i + 1}]]`).join(' OR ')})`;
}

/** A WHERE fragment and its parameters: the rows of the partition holding any (or, for a contains query, all) of the tokens. */
export function searchSql(input: SearchSqlInput): { sql: string; params: unknown[] } {
  const { dialect, from, tokenColumn, partitionColumn, partition, tokens } = input;
  const params: unknown[] = [];
  const parts: string[] = [];
  const next = (value: unknown): string => (params.push(value), dialect === 'postgres' ? `$${input.firstParam + params.length - 1}` : '?');
  if (partitionColumn !== undefined) parts.push(`${quote(partitionColumn)} = ${next(partition)}`);
  if (dialect === 'postgres') {
    const array = next([...tokens]);
    parts.push(input.match === 'all' ? `${quote(tokenColumn)} @> ${array}::bigint[]` : postgresOverlap(quote(tokenColumn), array, tokens.length));
  } else {
    const list = tokens.map((t) => next(t)).join(', ');
    const every = input.match === 'all' ? ` GROUP BY "row" HAVING COUNT(DISTINCT "token") = ${next(new Set(tokens).size)}` : '';
    parts.push(`rowid IN (SELECT "row" FROM ${quote(sqliteTokenTable(from, tokenColumn))} WHERE "token" IN (${list})${every})`);
  }
  return { sql: parts.join(' AND '), params };
}

/**
 * The statements that add a token column and its index: PostgreSQL a bigint[] column and a GIN
 * index; SQLite a JSON text column, the token table with its indexes, and the triggers that keep
 * it (the table must have a rowid). Idempotent (IF NOT EXISTS).
 */
export function searchSchema(dialect: SearchDialect, from: string, tokenColumn: string): string[] {
  const table = quote(from);
  const column = quote(tokenColumn);
  if (dialect === 'postgres') {
    const name = quote(`${from.replace('.', '_')}_${tokenColumn}_gin`.slice(0, 63));
    return [`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${column} bigint[]`, `CREATE INDEX IF NOT EXISTS ${name} ON ${table} USING gin (${column})`];
  }
  const tokensName = sqliteTokenTable(from, tokenColumn);
  const tokens = quote(tokensName);
  const n = (suffix: string): string => quote(`${tokensName}_${suffix}`.slice(0, 63));
  const copy = `INSERT INTO ${tokens} ("token", "row") SELECT value, NEW.rowid FROM json_each(NEW.${column}) WHERE NEW.${column} IS NOT NULL;`;
  return [
    `CREATE TABLE IF NOT EXISTS ${tokens} ("token" INTEGER NOT NULL, "row" INTEGER NOT NULL)`,
    `CREATE INDEX IF NOT EXISTS ${n('token')} ON ${tokens} ("token", "row")`,
    `CREATE INDEX IF NOT EXISTS ${n('row')} ON ${tokens} ("row")`,
    `CREATE TRIGGER IF NOT EXISTS ${n('insert')} AFTER INSERT ON ${table} BEGIN ${copy} END`,
    `CREATE TRIGGER IF NOT EXISTS ${n('update')} AFTER UPDATE OF ${column} ON ${table} BEGIN DELETE FROM ${tokens} WHERE "row" = OLD.rowid; ${copy} END`,
    `CREATE TRIGGER IF NOT EXISTS ${n('delete')} AFTER DELETE ON ${table} BEGIN DELETE FROM ${tokens} WHERE "row" = OLD.rowid; END`,
  ];
}
