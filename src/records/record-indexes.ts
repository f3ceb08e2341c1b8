/**
 * The blind indexes the record API keeps for a table's indexed columns (`index` in defineTable):
 * one per table and column, made on first use.
 */
import type { KeyHierarchy } from '../hierarchy.ts';
import { type BlindIndex, createBlindIndex } from './blind-index.ts';
import type { AnyTable, Row } from './table.ts';

/** An indexed column of a table: where its blind index is written, and the index. */
export interface IndexedColumn {
  readonly column: string;
  readonly target: string;
  readonly index: BlindIndex;
}

export class RecordIndexes {
  readonly #hierarchy: KeyHierarchy;
  readonly #indexes = new Map<string, BlindIndex>();
  /** Each table's indexed columns, made once (a row costs no key string and no lookup by name). */
  readonly #columns = new WeakMap<AnyTable, readonly IndexedColumn[]>();

  constructor(hierarchy: KeyHierarchy) {
    this.#hierarchy = hierarchy;
  }

  /** The blind index of an indexed column (a TypeError for a column without one). */
  of(t: AnyTable, column: string): BlindIndex {
    const field = t.columns[column];
    if (!field?.index) throw new TypeError(`${t.name}.${column} has no blind index`);
    const id = `${t.name}\u0000${column}`;
    let index = this.#indexes.get(id);
    if (!index) {
      const { bits, normalize, version } = field.index;
      index = createBlindIndex({ hierarchy: this.#hierarchy, table: t.name, column: field.id ?? column, bits, ...(normalize ? { normalize } : {}), ...(version ? { version } : {}) });
      this.#indexes.set(id, index);
    }
    return index;
  }

  /** The table's indexed columns, with their indexes (made on first use). */
  indexedColumns(t: AnyTable): readonly IndexedColumn[] {
    let columns = this.#columns.get(t);
    if (!columns) {
      columns = Object.keys(t.columns)
        .filter((c) => t.columns[c]!.index)
        .map((column) => ({ column, target: this.target(t, column), index: this.of(t, column) }));
      this.#columns.set(t, columns);
    }
    return columns;
  }

  /** The indexed columns of the row that hold a value. */
  columnsOf(t: AnyTable, row: Row): string[] {
    return Object.keys(t.columns).filter((c) => t.columns[c]!.index && row[c] !== null && row[c] !== undefined);
  }

  /** The column the blind index of `column` is written to. */
  target(t: AnyTable, column: string): string {
    return t.columns[column]!.index!.column;
  }

  /** Wipes every index's keys (the hierarchy stays open). */
  async close(): Promise<void> {
    await Promise.all([...this.#indexes.values()].map((index) => index.close()));
  }

  /** Loads (or refreshes ahead of expiry) every index's keys of the partitions: the keeper's tick. */
  async refresh(partitions: readonly string[]): Promise<void> {
    await Promise.all([...this.#indexes.values()].map((index) => index.warm(partitions)));
  }

  /** Makes the indexes of these tables, then loads every index's keys of the partitions. */
  async warm(partitions: readonly string[], tables: readonly AnyTable[]): Promise<void> {
    for (const t of tables) for (const [column, field] of Object.entries(t.columns)) if (field.index) this.of(t, column);
    await this.#hierarchy.warm(partitions);
    await Promise.all([...this.#indexes.values()].map((index) => index.warm(partitions)));
  }
}
