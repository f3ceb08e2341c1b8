/**
 * What the Prisma extension knows of the schema: each model's fields (from the client's runtime
 * data model, or the `datamodel` option), its relations, and the record table declared for it,
 * checked once when the extension is made so that a mistyped column fails there, not in a query.
 */
import type { FieldSpec, SearchIndexSpec, Table } from '../records.ts';
import { UnsupportedQueryError } from '../records.ts';

export type AnyTable = Table<Record<string, FieldSpec>>;
export type Row = Record<string, unknown>;

/** One field of a model, as Prisma describes it (`kind` 'scalar', 'object' for a relation, 'enum'). */
export interface PrismaField {
  readonly name: string;
  readonly kind: string;
  readonly type: string;
  readonly dbName?: string | null;
  readonly isList?: boolean;
}

/** The shape of a Prisma client's data model: its models and their fields. */
export interface PrismaDataModel {
  readonly models: Readonly<Record<string, { readonly fields: readonly PrismaField[] }>>;
}

const isObject = (value: unknown): value is Row => typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof Uint8Array);
export { isObject };

/** The models, their fields and the record tables declared for them. */
export class Models {
  readonly #fields = new Map<string, Map<string, PrismaField>>();
  readonly #tables: ReadonlyMap<string, AnyTable>;

  constructor(datamodel: PrismaDataModel, tables: Readonly<Record<string, Table<any>>>) {
    if (!datamodel || !isObject(datamodel.models)) throw new TypeError('kms-envelope/prisma: "datamodel" expected the client\'s data model ({ models: { Name: { fields } } })');
    for (const [name, model] of Object.entries(datamodel.models)) this.#fields.set(name, new Map(model.fields.map((f) => [f.name, f])));
    this.#tables = new Map(Object.entries(tables) as [string, AnyTable][]);
    for (const [model, table] of this.#tables) this.#check(model, table);
  }

  table(model: string | undefined): AnyTable | undefined {
    return model === undefined ? undefined : this.#tables.get(model);
  }

  /** The model a relation field leads to, or undefined for a scalar (or an unknown name). */
  relation(model: string, field: string): string | undefined {
    const f = this.#fields.get(model)?.get(field);
    return f?.kind === 'object' ? f.type : undefined;
  }

  isSealed(model: string, field: string): boolean {
    const table = this.#tables.get(model);
    return table !== undefined && Object.hasOwn(table.columns, field);
  }

  /** Whether a model, or a model its relations lead to, declares sealed columns (else the extension leaves its queries alone). */
  reachesSealed(model: string, seen = new Set<string>()): boolean {
    if (this.#tables.has(model)) return true;
    seen.add(model);
    for (const f of this.#fields.get(model)?.values() ?? []) if (f.kind === 'object' && !seen.has(f.type) && this.reachesSealed(f.type, seen)) return true;
    return false;
  }

  /** The SQL names of every sealed column (for refusing raw SQL that names one). */
  sealedSqlNames(): string[] {
    const names: string[] = [];
    for (const [model, table] of this.#tables) for (const column of Object.keys(table.columns)) names.push(this.#fields.get(model)!.get(column)!.dbName ?? column);
    return names;
  }

  /** The first sealed column of the model (to name in a refusal of the model as a whole). */
  anySealed(model: string): string {
    return `${model}.${Object.keys(this.#tables.get(model)!.columns)[0]}`;
  }

  #check(model: string, table: AnyTable): void {
    const fields = this.#fields.get(model);
    const fail = (what: string) => {
      throw new TypeError(`kms-envelope/prisma: model ${model}: ${what}`);
    };
    if (!fields) fail('is not in the client\'s data model (give tables by their model name, as in schema.prisma)');
    if (!table || typeof table.columns !== 'object' || !Array.isArray(table.primaryKeys)) fail('expected a table from defineTable()');
    const scalar = (name: string, types: readonly string[], role: string, list = false) => {
      const f = fields!.get(name);
      // The runtime data model of the generated clients does not say which fields are lists.
      if (!f || f.kind !== 'scalar' || !types.includes(f.type) || (f.isList !== undefined && f.isList !== list)) {
        fail(`${role} ${name} must be a scalar field of type ${types.join(' or ')}${list ? '[]' : ''}${f ? `, not ${f.kind} ${f.type}${f.isList ? '[]' : ''}` : ' (no such field)'}`);
      }
    };
    for (const [column, spec] of Object.entries(table.columns)) {
      scalar(column, [spec.encoding === 'bytes' ? 'Bytes' : 'String'], 'the sealed column');
      if (spec.index) scalar(spec.index.column, ['String'], `the blind index of ${column},`);
      for (const search of searchSpecs(spec)) {
        if (search.storage === 'json') fail(`the ${search.kind} index of ${column} stores JSON text (storage: 'json'): Prisma searches a BigInt[] field (storage: 'array', PostgreSQL)`);
        scalar(search.column, ['BigInt'], `the ${search.kind} tokens of ${column},`, true);
      }
    }
    if (table.rowVersion !== undefined) scalar(table.rowVersion.column, ['Int', 'BigInt'], 'the row-version column');
    for (const key of table.primaryKeys) if (!fields!.has(key)) fail(`the primary key column ${key} is not a field`);
    if (typeof table.partition === 'function') fail('takes its partition from a function: the extension needs a partition column ({ column }) or a fixed partition, to know what to read');
    if (typeof table.partition === 'object' && !fields!.has(table.partition.column)) fail(`the partition column ${table.partition.column} is not a field`);
    if (table.keyVersionColumn !== undefined) scalar(table.keyVersionColumn, ['Int', 'BigInt'], 'the key-version column');
  }
}

/** The partition column of a table (undefined for a fixed partition). */
export const partitionColumn = (table: AnyTable): string | undefined => (typeof table.partition === 'object' ? (table.partition as { column: string }).column : undefined);

/** The columns a sealed value is bound to: the primary key and the partition column. */
export const bindingColumns = (table: AnyTable): string[] => [...table.primaryKeys, ...[partitionColumn(table)].filter((c): c is string => c !== undefined)];

/** The columns an open needs besides the sealed ones: the binding, and the row version when the table declares one. */
export const openColumns = (table: AnyTable): string[] => [...bindingColumns(table), ...(table.rowVersion ? [table.rowVersion.column] : [])];

/** A column's range and prefix index specs, as a list. */
export const searchSpecs = (spec: FieldSpec): readonly SearchIndexSpec[] => (spec.search === undefined ? [] : Array.isArray(spec.search) ? spec.search : [spec.search as SearchIndexSpec]);

/** The columns records.seal writes from a sealed column's value: its blind index and its range and prefix tokens. */
export const derivedColumns = (table: AnyTable, column: string): { index: string | undefined; tokens: string[] } => ({
  index: table.columns[column]!.index?.column,
  tokens: searchSpecs(table.columns[column]!).map((s) => s.column),
});

export function refuse(model: string, field: string | undefined, operator: string, why: string): never {
  throw new UnsupportedQueryError(field === undefined ? model : `${model}.${field}`, operator, why);
}

/** Whether a value is a decimal object (Prisma.Decimal, decimal.js): the record API takes decimals as strings. */
const isDecimalObject = (value: unknown): value is { toFixed(): string } => typeof value === 'object' && value !== null && typeof (value as { toFixed?: unknown }).toFixed === 'function';

/** A value given for a sealed column, as the record API takes it: a decimal column's Prisma.Decimal as its string. */
export function plainValue(table: AnyTable, column: string, value: unknown): unknown {
  return table.columns[column]?.type === 'decimal' && isDecimalObject(value) ? value.toFixed() : value;
}

/** A row's values for sealed columns as the record API takes them. */
export function plainRow(table: AnyTable, row: Row): Row {
  const out: Row = { ...row };
  for (const column of Object.keys(table.columns)) if (out[column] !== undefined) out[column] = plainValue(table, column, out[column]);
  return out;
}
