/**
 * What the Prisma extension knows of the schema: each model's fields (from the client's runtime
 * data model, or the `datamodel` option), its relations, and the record table declared for it,
 * checked once when the extension is made so that a mistyped column fails there, not in a query.
 */
import type { FieldSpec, Table } from '../records.ts';
import { UnsupportedQueryError } from '../records.ts';

export type AnyTable = Table<Record<string, FieldSpec>>;
export type Row = Record<string, unknown>;

/** One field of a model, as Prisma describes it (`kind` 'scalar', 'object' for a relation, 'enum'). */
export interface PrismaField {
  readonly name: string;
  readonly kind: string;
  readonly type: string;
  readonly dbName?: string | null;
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
    const scalar = (name: string, types: readonly string[], role: string) => {
      const f = fields!.get(name);
      if (!f || f.kind !== 'scalar' || !types.includes(f.type)) fail(`${role} ${name} must be a scalar field of type ${types.join(' or ')}${f ? `, not ${f.kind} ${f.type}` : ' (no such field)'}`);
    };
    for (const [column, spec] of Object.entries(table.columns)) {
      scalar(column, [spec.encoding === 'bytes' ? 'Bytes' : 'String'], 'the sealed column');
      if (spec.index) scalar(spec.index.column, ['String'], `the blind index of ${column},`);
    }
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

export function refuse(model: string, field: string | undefined, operator: string, why: string): never {
  throw new UnsupportedQueryError(field === undefined ? model : `${model}.${field}`, operator, why);
}
