/**
 * The data of Prisma's writes, sealed through the record API: a create's row (and the rows of
 * its nested creates, createMany and connectOrCreate) with records.seal, a createMany's rows with
 * records.sealMany (one key load per partition), an update's values bound to the row its where
 * pins. records.seal writes each sealed column's blind index and the key-version marker; an
 * update that seals some of a row's columns keeps the marker at the lowest version of the row.
 */
import type { FieldSpec, PlainRow, Records, Table } from '../records.ts';
import { type AnyTable, bindingColumns, isObject, type Models, refuse, type Row } from './prisma-models.ts';
import { pinned, refuseMention } from './prisma-where.ts';

type AnyRecordTable = Table<Record<string, FieldSpec>>;

/** Reads the current key-version marker of the row a where pins (through the client the extension wraps). */
export type MarkerReader = (model: string, where: Row, column: string) => Promise<number | bigint | null | undefined>;

const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);

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
    const sealed: Row = table ? await this.#records.seal(table as AnyRecordTable, scalars as PlainRow<Record<string, FieldSpec>>) : scalars;
    for (const [key, value] of relations) sealed[key] = await this.#nested(model, key, value);
    return sealed;
  }

  /** The rows of a createMany, sealed as a batch. */
  async createMany(model: string, data: unknown): Promise<unknown> {
    const table = this.#models.table(model);
    const rows = asArray(data);
    if (!table) return data;
    const sealed = await this.#records.sealMany(table as AnyRecordTable, rows as PlainRow<Record<string, FieldSpec>>[], { failFast: true });
    const out = sealed.map((r) => {
      if (!r.ok) throw r.error;
      return r.value;
    });
    return Array.isArray(data) ? out : out[0];
  }

  /** An update's data: its sealed values bound to the row the where pins, its nested writes. */
  async update(model: string, where: Row | undefined, data: unknown): Promise<Row> {
    if (!isObject(data)) return data as Row;
    const table = this.#models.table(model);
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

  async #sealUpdate(model: string, table: AnyTable, where: Row | undefined, scalars: Row): Promise<Row> {
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
    const sealed = await this.#records.seal(table as AnyRecordTable, { ...binding, ...values } as PlainRow<Record<string, FieldSpec>>);
    for (const [column, value] of Object.entries(values)) {
      out[column] = sealed[column];
      const index = table.columns[column]!.index?.column;
      if (index !== undefined) out[index] = value === null ? null : sealed[index];
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
