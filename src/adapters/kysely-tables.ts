/**
 * The declared tables the Kysely plugin seals columns of, and what it reads of each: its sealed
 * columns, their blind-index columns, and the columns a sealed value is bound to.
 */
import type { AnyTable } from './kysely-pending.ts';
import type { Table } from '../records.ts';

/** The declared tables by their SQL name, each checked to come from defineTable(). */
export function tablesOf(declared: Readonly<Record<string, Table<any>>>): Map<string, AnyTable> {
  const tables = new Map<string, AnyTable>(Object.entries(declared) as [string, AnyTable][]);
  for (const [name, table] of tables) {
    if (!table || typeof table.columns !== 'object' || !Array.isArray(table.primaryKeys)) throw new TypeError(`tables.${name} expected a table from defineTable()`);
  }
  return tables;
}

export const sealedColumn = (table: AnyTable, column: string): boolean => Object.hasOwn(table.columns, column);

/** The columns records.seal() computes beside a sealed column: its blind index, and the tokens of its range and prefix indexes. */
export function indexColumns(table: AnyTable, column: string): string[] {
  const field = table.columns[column];
  if (!field) return [];
  const search = field.search === undefined ? [] : Array.isArray(field.search) ? field.search : [field.search];
  return [...(field.index ? [field.index.column] : []), ...search.map((s: { column: string }) => s.column)];
}

export const partitionColumn = (table: AnyTable): string | undefined => (typeof table.partition === 'object' ? table.partition.column : undefined);

/** The columns a sealed value is bound to: the primary key, the partition column and the row version (FORMAT.md §12.4). */
export const bindingColumns = (table: AnyTable): string[] => [...table.primaryKeys, ...[partitionColumn(table), table.rowVersion?.column].filter((c): c is string => c !== undefined)];

/** The key-version column the table declares (the adapter writes it with the sealed values). */
export const markerColumn = (table: AnyTable): string | undefined => table.keyVersionColumn;
