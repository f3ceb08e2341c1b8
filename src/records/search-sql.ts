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
  /** The same tokens, the widest bucket's first: the order a query with a limit reads them in. */
  widestFirst?: readonly number[];
  /** At most this many candidates, after skipping `offset` (see SearchSqlOptions.limit). */
  limit?: number;
  offset?: number;
  /** PostgreSQL, with a limit: the table's one primary key column. */
  primaryKey?: string;
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

type Next = (value: unknown) => string;

/**
 * PostgreSQL, at most `limit` candidates: the primary keys of the first rows, read one token at a
 * time, widest bucket first, by a LATERAL scan per token under the LIMIT, so the database stops at
 * the limit (a GIN index answers only with a bitmap: an OR of every token would collect every
 * match before the first row). `OFFSET 0` keeps the planner from flattening the per-token
 * subquery into a join it may turn around (the tokens then read for every row). Each token's rows
 * skip those holding an earlier token (a truncation collision, or a writer's copied tokens), so no
 * row takes two places and pages do not overlap. The outer test is on the primary key, not the
 * ctid: a partitioned table's partitions repeat ctids.
 */
function postgresFirst(input: SearchSqlInput, next: Next): string {
  const key = quote(input.primaryKey!);
  const column = quote(input.tokenColumn);
  const own = input.partitionColumn === undefined ? '' : `${quote(input.partitionColumn)} = ${next(input.partition)} AND `;
  const array = `${next([...(input.widestFirst ?? input.tokens)])}::bigint[]`;
  let rows: string;
  if (input.match === 'all' || input.tokens.length <= 1) {
    rows = `SELECT ${key} FROM ${quote(input.from)} WHERE ${own}${column} ${input.match === 'all' ? '@>' : '&&'} ${array}`;
  } else {
    const perToken = `SELECT ${key} FROM ${quote(input.from)} WHERE ${own}${column} && ARRAY["kmse_tokens"."token"] AND NOT ${column} && (${array})[1:"kmse_tokens"."k" - 1] OFFSET 0`;
    rows = `SELECT "kmse_rows".${key} FROM unnest(${array}) WITH ORDINALITY AS "kmse_tokens"("token", "k") CROSS JOIN LATERAL (${perToken}) AS "kmse_rows"`;
  }
  return `${key} = ANY (ARRAY(${rows} LIMIT ${next(input.limit)} OFFSET ${next(input.offset ?? 0)}))`;
}

/** SQLite, at most `limit` candidates: the token table's rows of the partition, each once. */
function sqliteFirst(input: SearchSqlInput, next: Next): string {
  const list = input.tokens.map((t) => next(t)).join(', ');
  const own = input.partitionColumn === undefined ? '' : ` AND "kmse_row".${quote(input.partitionColumn)} = ${next(input.partition)}`;
  const join = `FROM ${quote(sqliteTokenTable(input.from, input.tokenColumn))} AS "kmse_token" JOIN ${quote(input.from)} AS "kmse_row" ON "kmse_row".rowid = "kmse_token"."row"`;
  const where = `WHERE "kmse_token"."token" IN (${list})${own}`;
  const rows =
    input.match === 'all'
      ? `SELECT "kmse_token"."row" ${join} ${where} GROUP BY "kmse_token"."row" HAVING COUNT(DISTINCT "kmse_token"."token") = ${next(new Set(input.tokens).size)}`
      : `SELECT DISTINCT "kmse_token"."row" ${join} ${where}`;
  return `rowid IN (${rows} LIMIT ${next(input.limit)} OFFSET ${next(input.offset ?? 0)})`;
}

/** A WHERE fragment and its parameters: the rows of the partition holding any (or, for a contains query, all) of the tokens. */
export function searchSql(input: SearchSqlInput): { sql: string; params: unknown[] } {
  const { dialect, from, tokenColumn, partitionColumn, partition, tokens } = input;
  const params: unknown[] = [];
  const parts: string[] = [];
  const next = (value: unknown): string => (params.push(value), dialect === 'postgres' ? `$${input.firstParam + params.length - 1}` : '?');
  if (input.limit !== undefined) return { sql: dialect === 'postgres' ? postgresFirst(input, next) : sqliteFirst(input, next), params };
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
