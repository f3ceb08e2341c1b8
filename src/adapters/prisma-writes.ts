/**
 * The data of Prisma's writes, sealed through the record API: a create's row (and the rows of
 * its nested creates, createMany and connectOrCreate) with records.seal, a createMany's rows with
 * records.sealMany (one key load per partition), an update's values bound to the row its where
 * pins. records.seal writes each sealed column's blind index and the key-version marker; an
 * update that seals some of a row's columns keeps the marker at the lowest version of the row.
 */
import { type FieldSpec, type PlainRow, type Records, refusePartialWrite, RowVersionError, type Table } from '../records.ts';
import { type AnyTable, bindingColumns, derivedColumns, isObject, type Models, plainRow, refuse, type Row } from './prisma-models.ts';
import { pinned, refuseMention } from './prisma-where.ts';

type AnyRecordTable = Table<Record<string, FieldSpec>>;

/** Reads the current key-version marker of the row a where pins (through the client the extension wraps). */
export type MarkerReader = (model: string, where: Row, column: string) => Promise<number | bigint | null | undefined>;

const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);

/**
 * A row-version table's update (FORMAT.md §12.4): it sets every sealed column and the new version
 * as a value, or none of them; an update of many rows never sets them (one version for every row
 * it matches). Partial updates are refused rather than completed by reading, opening and sealing
 * the rest of the row: that read-modify-write would need the row locked or compared on its
 * version to lose no concurrent update, which the caller's own read and write do better.
 */
export function checkRowVersion(table: AnyTable | undefined, data: unknown, what: string, many = false): void {
  const column = table?.rowVersion?.column;
  if (column === undefined || !isObject(data)) return;
  refusePartialWrite(table!, Object.keys(data).filter((k) => data[k] !== undefined), what);
  if (many && data[column] !== undefined) {
    throw new RowVersionError(table!.name, 'partial-write', `${what} sets the row version ${column} and the sealed columns of every row it matches at once: update each row by its primary key, under its own new version`);
  }
}

/**
 * A created row's token columns for the sealed values it leaves out or sets to null: empty (a
 * createMany inserts every row with the same columns, NULL where a row gives none).
 */
function withEmptyTokens(table: AnyTable, row: Row): Row {
  for (const column of Object.keys(table.columns)) for (const tokens of derivedColumns(table, column).tokens) row[tokens] ??= [];
  return row;
}

/** A write's value of a plain column: `{ set: value }` unwrapped. */
const setValue = (value: unknown): unknown => (isObject(value) && Object.keys(value).length === 1 && 'set' in value ? value.set : value);

export class DataSealer {
  readonly #records: Records;
  readonly #models: Models;
  readonly #readMarker: MarkerReader;

  constructor(records: Records, models: Models, readMarker: MarkerReader) {
    this.#records = records;
    this.#models = models;
    this.#readMarker = readMarker;
  }

  /** One row to create, and its nested writes. */
  async create(model: string, data: unknown): Promise<Row> {
    if (!isObject(data)) return data as Row;
    const table = this.#models.table(model);
    const { scalars, relations } = this.#split(model, data);
    const sealed: Row = table ? withEmptyTokens(table, await this.#records.seal(table as AnyRecordTable, plainRow(table, scalars) as PlainRow<Record<string, FieldSpec>>)) : scalars;
    for (const [key, value] of relations) sealed[key] = await this.#nested(model, key, value);
    return sealed;
  }

  /** The rows of a createMany, sealed as a batch. */
  async createMany(model: string, data: unknown): Promise<unknown> {
    const table = this.#models.table(model);
    if (!table) return data;
    const rows = asArray(data).map((row) => (isObject(row) ? plainRow(table, row) : row));
    const sealed = await this.#records.sealMany(table as AnyRecordTable, rows as PlainRow<Record<string, FieldSpec>>[], { failFast: true });
    const out = sealed.map((r) => {
      if (!r.ok) throw r.error;
      return withEmptyTokens(table, r.value as Row);
    });
    return Array.isArray(data) ? out : out[0];
  }

  /** An update's data: its sealed values bound to the row the where pins, its nested writes. */
  async update(model: string, where: Row | undefined, data: unknown): Promise<Row> {
    if (!isObject(data)) return data as Row;
    const table = this.#models.table(model);
    checkRowVersion(table, data, `${model}.update`);
    const { scalars, relations } = this.#split(model, data);
    const out: Row = table ? await this.#sealUpdate(model, table, where, scalars) : scalars;
    for (const [key, value] of relations) out[key] = await this.#nested(model, key, value);
    return out;
  }

  /** Whether an update's data sets a sealed column of the model. */
  touchesSealed(model: string, data: unknown): boolean {
    const table = this.#models.table(model);
    return table !== undefined && isObject(data) && Object.keys(table.columns).some((c) => data[c] !== undefined);
  }

  #split(model: string, data: Row): { scalars: Row; relations: [string, unknown][] } {
    const scalars: Row = {};
    const relations: [string, unknown][] = [];
    for (const [key, value] of Object.entries(data)) {
      if (this.#models.relation(model, key) && isObject(value)) relations.push([key, value]);
      else scalars[key] = value;
    }
    return { scalars, relations };
  }

  async #sealUpdate(model: string, table: AnyTable, where: Row | undefined, given: Row): Promise<Row> {
    const scalars = plainRow(table, given);
    const out: Row = { ...scalars };
    const values: Row = {};
    for (const column of Object.keys(table.columns)) {
      let value = scalars[column];
      if (value === undefined) continue;
      // An object is an operation ({ set }), except for a json column, whose value it is.
      if (isObject(value) && table.columns[column]!.type !== 'json') {
        if (!(Object.keys(value).length === 1 && 'set' in value)) refuse(model, column, Object.keys(value)[0] ?? '{}', 'a sealed column is only set to a value');
        value = value.set;
      }
      values[column] = value;
    }
    if (Object.keys(values).length === 0) return out;
    const binding: Row = {};
    for (const column of bindingColumns(table)) {
      const given = pinned(where, column);
      if (given === undefined) refuse(model, Object.keys(values)[0], 'update', `the where must give ${bindingColumns(table).join(', ')} by equality: sealed values are bound to their row and partition`);
      if (scalars[column] !== undefined && scalars[column] !== given) refuse(model, column, 'update', 'the sealed values of the row are bound to it: create the row again instead');
      binding[column] = given;
    }
    const version = table.rowVersion ? { [table.rowVersion.column]: setValue(scalars[table.rowVersion.column]) } : {};
    Object.assign(out, version);
    const sealed = await this.#records.seal(table as AnyRecordTable, { ...binding, ...version, ...values } as PlainRow<Record<string, FieldSpec>>);
    for (const [column, value] of Object.entries(values)) {
      out[column] = sealed[column];
      const { index, tokens } = derivedColumns(table, column);
      if (index !== undefined) out[index] = value === null ? null : sealed[index];
      // A value set to null leaves no tokens: the old value's would still find the row.
      for (const t of tokens) out[t] = value === null ? [] : sealed[t];
    }
    const marker = table.keyVersionColumn;
    if (marker !== undefined && sealed[marker] !== undefined) out[marker] = await this.#marker(model, table, binding, values, Number(sealed[marker]));
    return out;
  }

  /** The row's marker after an update: the new values' version, or the row's older one when other sealed columns stay. */
  async #marker(model: string, table: AnyTable, binding: Row, values: Row, version: number): Promise<number> {
    if (Object.keys(table.columns).every((c) => Object.hasOwn(values, c))) return version;
    const old = await this.#readMarker(model, binding, table.keyVersionColumn!);
    return old === null || old === undefined ? version : Math.min(Number(old), version);
  }

  /** A relation's nested writes: creates sealed; an update, upsert or updateMany that sets a sealed column is refused. */
  async #nested(model: string, key: string, ops: unknown): Promise<unknown> {
    const target = this.#models.relation(model, key)!;
    if (!isObject(ops)) return ops;
    const out: Row = { ...ops };
    for (const [op, value] of Object.entries(ops)) {
      if (value === undefined) continue;
      const each = async (f: (item: Row) => Promise<unknown>) => (Array.isArray(value) ? Promise.all(value.map((v) => f(v as Row))) : f(value as Row));
      switch (op) {
        case 'create':
          out[op] = await each((item) => this.create(target, item));
          break;
        case 'createMany':
          out[op] = { ...(value as Row), data: await this.createMany(target, (value as Row).data) };
          break;
        case 'connectOrCreate':
          out[op] = await each(async (item) => (refuseMention(this.#models, target, item.where, `a nested where (${model}.${key})`), { ...item, create: await this.create(target, item.create) }));
          break;
        case 'upsert':
        case 'update':
        case 'updateMany':
          out[op] = await each(async (item) => this.#nestedUpdate(model, key, target, op, item));
          break;
        default:
          refuseMention(this.#models, target, value, `a nested ${op} (${model}.${key})`);
      }
    }
    return out;
  }

  async #nestedUpdate(model: string, key: string, target: string, op: string, item: Row): Promise<Row> {
    const wrapped = isObject(item.data) || isObject(item.create) || isObject(item.update);
    const data = wrapped ? (item.data ?? item.update) : item;
    checkRowVersion(this.#models.table(target), data, `a nested ${op} (${model}.${key})`, op === 'updateMany');
    if (this.touchesSealed(target, data)) refuse(target, Object.keys(this.#models.table(target)!.columns).find((c) => (data as Row)[c] !== undefined), `a nested ${op} (${model}.${key})`, 'update the related row through its own model, with its primary key and partition');
    if (item.where !== undefined) refuseMention(this.#models, target, item.where, `a nested where (${model}.${key})`);
    if (!wrapped) return this.update(target, undefined, item);
    const out: Row = { ...item };
    if (item.create !== undefined) out.create = await this.create(target, item.create);
    if (item.data !== undefined) out.data = await this.update(target, undefined, item.data);
    if (item.update !== undefined) out.update = await this.update(target, undefined, item.update);
    return out;
  }
}
