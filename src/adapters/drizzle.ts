/**
 * Drizzle (`kms-envelope/drizzle`): sealed columns as Drizzle custom types.
 *
 *   import { customType, pgTable, uuid } from 'drizzle-orm/pg-core';
 *   const sealed = sealedColumns({ customType, records, table: profiles });
 *   export const profileRows = pgTable('profiles', { id: uuid().primaryKey(), email: sealed.email(), born: sealed.born() });
 *   await records.warm(['acme']);   // Drizzle's hooks are synchronous: the keys must be in memory
 *
 * A custom type's toDriver and fromDriver are synchronous and see only the value, never the row:
 * each value is bound to its table and column (and schema version), NOT to its row. A value
 * copied to another column or table does not open there; a value copied to another row of the
 * same column does. So the record table must declare no primaryKey and a fixed partition; for
 * row binding, seal rows with records.seal() / sealMany() before Drizzle writes them (and open
 * them with records.open() after it reads them), or use kms-envelope/kysely.
 *
 * The hooks call records.sealFieldSync / openFieldSync: they work only when the partition's key
 * is in memory, and throw KeyNotWarmError (ERR_KEY_NOT_WARM) rather than wait for the KMS (the load
 * starts; a retry after it succeeds). records.warm() loads the keys and keeps them warm in the
 * background (refreshed before their TTL ends) until records.stopWarm().
 *
 * The hooks cannot write a key-version column (they see one value): a table declaring one is
 * refused. Rotate Drizzle tables with rotationSweep(..., { partitions, versionsFrom: 'headers' }),
 * which reads the version each value's header names.
 *
 * blindIndexType() is a custom type whose toDriver computes a blind index (the one a sealed column
 * declares in defineTable, through records.indexOfSync, or a createBlindIndex() of your own), so
 * that `eq(table.emailIndex, 'Alice@Example.com')` finds rows by value.
 *
 * Drizzle is imported for its types only: the library never loads it.
 */
import type { customType as pgCustomType } from 'drizzle-orm/pg-core';
import { type BlindIndex, type BlindIndexValue, type FieldSpec, type FieldValues, type Records, RowVersionError, type Table } from '../records.ts';

/** What the column hooks use of the records object (createRecords()): one field, synchronously, with no row. */
export type SyncFieldRecords = Pick<Records, 'sealFieldSync' | 'openFieldSync'>;

/** The driver's type of a sealed column: text for the `kme.` form, bytes for `encoding: 'bytes'`. */
type DriverData<S extends FieldSpec> = S['encoding'] extends 'bytes' ? Uint8Array : string;

/** The Drizzle column builder of one sealed column (PostgreSQL's customType). */
export type SealedColumnBuilder<S extends FieldSpec> = ReturnType<typeof pgCustomType<{ data: FieldValues[S['type']]; driverData: DriverData<S> }>>;

/** What a dialect's customType() takes: the same shape in pg-core, mysql-core and sqlite-core. */
export interface SealedColumnConfig<S extends FieldSpec> {
  dataType(): string;
  toDriver(value: FieldValues[S['type']]): DriverData<S>;
  fromDriver(value: DriverData<S>): FieldValues[S['type']];
}

export interface SealedColumnsOptions<C extends Record<string, FieldSpec>> {
  /** `customType` from drizzle-orm/pg-core (for MySQL or SQLite, use sealedColumnConfig with theirs). */
  customType: typeof pgCustomType;
  /** The records object (createRecords()); warm its partition before the first query. */
  records: SyncFieldRecords;
  /** The sealed columns, declared with defineTable(): no primaryKey, a fixed partition. */
  table: Table<C>;
  /** The SQL types of the columns: default `text` and, for `encoding: 'bytes'`, `bytea`. */
  sqlTypes?: { text?: string; bytes?: string };
}

function checkTable(table: Table<Record<string, FieldSpec>>): void {
  if (!table || typeof table.columns !== 'object' || !Array.isArray(table.primaryKeys)) throw new TypeError('"table" expected a table from defineTable()');
  if (table.rowVersion) {
    throw new RowVersionError(
      table.name,
      'partial-write',
      `kms-envelope/drizzle: the table has a row version (${table.rowVersion.column}), but Drizzle's column hooks seal one value at a time, without the row or its version: seal whole rows with records.seal() before Drizzle writes them`,
    );
  }
  if (table.primaryKeys.length) {
    throw new TypeError(
      `kms-envelope/drizzle: table ${table.name} declares a primaryKey, but Drizzle's column hooks see only the value and cannot bind it to its row: ` +
        'declare the table without primaryKey (values bound to table and column), or seal the rows with records.seal() before Drizzle writes them',
    );
  }
  if (table.keyVersionColumn !== undefined) {
    throw new TypeError(
      `kms-envelope/drizzle: table ${table.name} declares keyVersionColumn, which Drizzle's column hooks cannot write (they see one value, not the row), so it would lie: ` +
        "declare the table without it, and rotate with rotationSweep(records, table, { partitions, versionsFrom: 'headers' }), which reads the versions the values' headers name",
    );
  }
  if (typeof table.partition !== 'string') {
    throw new TypeError(`kms-envelope/drizzle: table ${table.name} takes its partition from the row, which Drizzle's column hooks do not see: give a fixed partition`);
  }
}

/**
 * The custom-type configuration of one sealed column, for any dialect's customType:
 * `customType<{ data: string; driverData: string }>(sealedColumnConfig(records, table, 'email'))`.
 */
export function sealedColumnConfig<C extends Record<string, FieldSpec>, K extends keyof C & string>(
  records: SyncFieldRecords,
  table: Table<C>,
  column: K,
  sqlType?: string,
): SealedColumnConfig<C[K]> {
  checkTable(table as unknown as Table<Record<string, FieldSpec>>);
  const spec = table.columns[column];
  if (!spec) throw new TypeError(`table ${table.name} has no sealed column ${JSON.stringify(column)}`);
  if (typeof records?.sealFieldSync !== 'function' || typeof records.openFieldSync !== 'function') {
    throw new TypeError('kms-envelope/drizzle: "records" expected the records object of createRecords() (sealFieldSync, openFieldSync)');
  }
  const type = sqlType ?? (spec.encoding === 'bytes' ? 'bytea' : 'text');
  return {
    dataType: () => type,
    toDriver: (value) => records.sealFieldSync(table, column, value) as DriverData<C[K]>,
    fromDriver: (stored) => records.openFieldSync(table, column, stored) as FieldValues[C[K]['type']],
  };
}

/** A PostgreSQL column builder per sealed column of `table`: `sealed.email()` or `sealed.email('email_sealed')`. */
export function sealedColumns<C extends Record<string, FieldSpec>>(options: SealedColumnsOptions<C>): { [K in keyof C & string]: SealedColumnBuilder<C[K]> } {
  const { customType, records, table, sqlTypes } = options;
  if (typeof customType !== 'function') throw new TypeError('"customType" expected customType from drizzle-orm/pg-core');
  const out: Record<string, unknown> = {};
  for (const [column, spec] of Object.entries(table.columns)) {
    const sqlType = spec.encoding === 'bytes' ? sqlTypes?.bytes : sqlTypes?.text;
    out[column] = customType(sealedColumnConfig(records, table, column, sqlType) as never);
  }
  return out as { [K in keyof C & string]: SealedColumnBuilder<C[K]> };
}

export interface BlindIndexTypeOptions<Out extends string | Uint8Array> {
  customType: typeof pgCustomType;
  /** A single-column blind index (createBlindIndex); its keys must be warm (index.warm()). */
  index: BlindIndex<Out & (string | Uint8Array<ArrayBuffer>), BlindIndexValue>;
  /** The partition of the rows; default the index's own `partition`. */
  partition?: string;
  /** The SQL type; default `text`, or `bytea` for an index with `output: 'bytes'`. */
  sqlType?: string;
}

/** The blind index a sealed column declares in defineTable (`index: { column, bits }`), computed by the records object. */
export interface RecordIndexTypeOptions<C extends Record<string, FieldSpec>> {
  customType: typeof pgCustomType;
  records: Pick<Records, 'indexOfSync'>;
  table: Table<C>;
  /** The sealed column whose index this column holds. */
  column: keyof C & string;
  /** The partition of the rows; default the table's fixed partition. */
  partition?: string;
  sqlType?: string;
}

/**
 * A PostgreSQL column type for a blind index (call it as a column: `emailIndex: type('email_index')`):
 * written and compared as the value (toDriver computes the index), read back as the stored index.
 * Insert the plaintext value into it (as into its sealed column) and look rows up with
 * `eq(table.emailIndex, value)`; then drop the false positives with `index.matches(row.email,
 * value)`. Never write back a value read from it.
 */
export function blindIndexType<C extends Record<string, FieldSpec>>(options: RecordIndexTypeOptions<C>): ReturnType<typeof pgCustomType<{ data: BlindIndexValue; driverData: string }>>;
export function blindIndexType<Out extends string | Uint8Array>(options: BlindIndexTypeOptions<Out>): ReturnType<typeof pgCustomType<{ data: BlindIndexValue; driverData: Out }>>;
export function blindIndexType(
  options: BlindIndexTypeOptions<string | Uint8Array> | RecordIndexTypeOptions<Record<string, FieldSpec>>,
): ReturnType<typeof pgCustomType<{ data: BlindIndexValue; driverData: string | Uint8Array }>> {
  const { customType } = options;
  if (typeof customType !== 'function') throw new TypeError('"customType" expected customType from drizzle-orm/pg-core');
  if (!('index' in options)) {
    const { records, table, column } = options;
    if (typeof records?.indexOfSync !== 'function') throw new TypeError('"records" expected the records object of createRecords()');
    if (!table?.columns?.[column]?.index) throw new TypeError(`${table?.name}.${column} declares no blind index (index: { column, bits } in defineTable)`);
    const partition = options.partition ?? (typeof table.partition === 'string' ? table.partition : undefined);
    if (partition === undefined) throw new TypeError(`blindIndexType(): table ${table.name} takes its partition from the row, which Drizzle's hooks do not see: give "partition"`);
    return customType<{ data: BlindIndexValue; driverData: string }>({
      dataType: () => options.sqlType ?? 'text',
      toDriver: (value) => records.indexOfSync(table, column, value, { partition }),
      fromDriver: (stored) => stored,
    });
  }
  const { index, partition } = options;
  if (typeof index?.computeSync !== 'function') throw new TypeError('"index" expected a blind index (createBlindIndex)');
  if (index.columns.length !== 1) throw new TypeError('blindIndexType() takes a single-column index');
  const type = options.sqlType ?? (index.output === 'bytes' ? 'bytea' : 'text');
  const call = partition === undefined ? undefined : { partition };
  return customType<{ data: BlindIndexValue; driverData: string | Uint8Array }>({
    dataType: () => type,
    toDriver: (value) => index.computeSync(value, call),
    fromDriver: (stored) => stored as BlindIndexValue,
  });
}

export interface SearchTokensTypeOptions<C extends Record<string, FieldSpec>> {
  customType: typeof pgCustomType;
  records: Pick<Records, 'searchTokensSync'>;
  table: Table<C>;
  /** The sealed column whose range or prefix tokens this column holds (\`search\` in defineTable). */
  column: keyof C & string;
  kind: 'range' | 'prefix' | 'contains';
  /** The partition of the rows; default the table's fixed partition. */
  partition?: string;
}

/**
 * A PostgreSQL bigint[] column type for the tokens of a range or prefix index (README "Range and
 * prefix search"): insert the plaintext value into it, as into its sealed column, and toDriver
 * writes the value's tokens. Query with records.searchQuery (its \`sql\` and \`params\` in Drizzle's
 * \`sql\` or a raw query), then records.openMatching. Needs the keys warm: records.warm([partition], [table]).
 */
export function searchTokensType<C extends Record<string, FieldSpec>>(options: SearchTokensTypeOptions<C>): ReturnType<typeof pgCustomType<{ data: unknown; driverData: number[] }>> {
  const { customType, records, table, column, kind } = options;
  if (typeof customType !== 'function') throw new TypeError('"customType" expected customType from drizzle-orm/pg-core');
  if (typeof records?.searchTokensSync !== 'function') throw new TypeError('"records" expected the records object of createRecords()');
  const field = table?.columns?.[column];
  const search = field?.search === undefined ? [] : Array.isArray(field.search) ? field.search : [field.search];
  if (!search.some((s: { kind: string }) => s.kind === kind)) throw new TypeError(`${table?.name}.${column} declares no ${kind} index (search: { kind: "${kind}", … } in defineTable)`);
  const partition = options.partition ?? (typeof table.partition === 'string' ? table.partition : undefined);
  if (partition === undefined) throw new TypeError(`searchTokensType(): table ${table.name} takes its partition from the row, which Drizzle's hooks do not see: give "partition"`);
  return customType<{ data: unknown; driverData: number[] }>({
    dataType: () => 'bigint[]',
    toDriver: (value) => records.searchTokensSync(table, column, kind, value, { partition }) as number[],
    fromDriver: (stored) => stored,
  });
}
