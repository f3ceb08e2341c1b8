/**
 * A where with conditions on sealed columns, resolved to the rows that meet them: the candidates
 * the blind indexes find (their primary key, partition and searched columns only) are read
 * through the client the extension wraps, opened in one batch, filtered and paged; the query
 * then runs on those rows' primary keys, so its selection, ordering and relations are Prisma's.
 */
import type { FieldSpec, Records, SealedRow } from '../records.ts';
import { type AnyTable, openColumns, refuse, type Row } from './prisma-models.ts';
import type { Condition, WhereTranslator } from './prisma-where.ts';

/** Reads rows of the model (a findMany). */
export type RowReader = (args: Row) => Promise<Row[]>;

export interface Page {
  readonly orderBy?: unknown;
  readonly skip?: number;
  readonly take?: number;
}

/** Prisma's skip and take on an array, a negative take counting from the end. */
function paged<T>(rows: readonly T[], { skip = 0, take }: Page): T[] {
  if (take === undefined) return rows.slice(skip);
  if (take >= 0) return rows.slice(skip, skip + take);
  return rows.slice(0, Math.max(0, rows.length - skip)).slice(take);
}

/** The filter of exactly these rows by primary key. */
function byKeys(table: AnyTable, rows: readonly Row[]): Row {
  const keys = table.primaryKeys;
  if (keys.length === 1) return { [keys[0]!]: { in: rows.map((r) => r[keys[0]!]) } };
  return { OR: rows.map((r) => Object.fromEntries(keys.map((k) => [k, r[k]]))) };
}

/** The where, narrowed to the rows that meet the conditions (after open and filter, and the page if given). */
export async function resolveWhere(
  records: Records,
  translator: WhereTranslator,
  read: RowReader,
  target: { model: string; table: AnyTable; where: Row | undefined; conditions: readonly Condition[] },
  page: Page = {},
): Promise<Row> {
  const { model, table, where, conditions } = target;
  if (table.primaryKeys.length === 0) refuse(model, conditions[0]!.column, conditions[0]!.op, 'a search on a sealed column needs the table\'s primaryKey (defineTable) to name the rows found');
  const columns = [...new Set([...openColumns(table), ...conditions.map((c) => c.column)])];
  const candidates = await read({ where, select: Object.fromEntries(columns.map((c) => [c, true])), ...(page.orderBy === undefined ? {} : { orderBy: page.orderBy }) });
  const opened = await records.openMany(table, candidates as SealedRow<Record<string, FieldSpec>>[], { failFast: true });
  const found = opened.flatMap((r) => {
    if (!r.ok) throw r.error;
    return translator.meets(r.value as Row, conditions) ? [r.value as Row] : [];
  });
  const rows = paged(found, page);
  const and = where?.AND === undefined ? [] : Array.isArray(where.AND) ? where.AND : [where.AND];
  return { ...where, AND: [...and, byKeys(table, rows)] };
}
