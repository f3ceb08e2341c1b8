/**
 * The values the Kysely plugin marks for sealing: a PendingSeal stands in a query's parameters for
 * the plaintext of a sealed column (or for a blind index) until the wrapped dialect seals it.
 */
import type { FieldSpec, Records, Table } from '../records.ts';

/** A table of any columns. */
export type AnyTable = Table<Record<string, FieldSpec>>;

/** One row of an INSERT or one UPDATE, sealed once for all its marked values. */
export class PendingRow {
  sealed: Promise<Record<string, unknown>> | undefined;
  readonly table: AnyTable;
  readonly name: string;
  readonly values: Readonly<Record<string, unknown>>;
  constructor(table: AnyTable, name: string, values: Readonly<Record<string, unknown>>) {
    this.table = table;
    this.name = name;
    this.values = values;
  }
}

const NOT_WRAPPED = 'kms-envelope/kysely: a sealed column reached the database unsealed: give the dialect to encryption.dialect() as well as the plugin to plugins';

/**
 * A value to seal, in place of the plaintext in the query's parameters. It holds the plaintext in
 * private fields (no enumerable property, nothing for a serializer to print) and refuses to
 * serialize: a driver that gets one without the wrapped dialect fails instead of storing plaintext.
 */
export class PendingSeal {
  readonly #row: PendingRow;
  readonly #column: string;
  constructor(row: PendingRow, column: string) {
    this.#row = row;
    this.#column = column;
  }
  /** `table.column`, for messages. */
  get target(): string {
    return `${this.#row.name}.${this.#column}`;
  }
  /** @internal The sealed value (or the blind index) the database is to store. */
  async seal(records: Records): Promise<unknown> {
    const row = this.#row;
    row.sealed ??= records.seal(row.table, row.values);
    return (await row.sealed)[this.#column] ?? null;
  }
  toJSON(): never {
    throw new TypeError(NOT_WRAPPED);
  }
  toPostgres(): never {
    throw new TypeError(NOT_WRAPPED);
  }
  toString(): never {
    throw new TypeError(NOT_WRAPPED);
  }
  [Symbol.toPrimitive](): never {
    throw new TypeError(NOT_WRAPPED);
  }
}
