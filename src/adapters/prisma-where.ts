/**
 * Filters on sealed columns. The database sees ciphertext, so `equals` and `in` go through the
 * column's blind index (computed under the partition the where pins), `notIn` becomes `not null`,
 * and each keeps a condition that the opened rows must meet (the index's false positives, and
 * the rows notIn excludes, are dropped after the open). Every other operator, and a sealed column
 * under OR, NOT or a relation filter, is refused: never a silent empty or wrong answer.
 */
import type { BlindIndexValue, Records } from '../records.ts';
import { type AnyTable, isObject, type Models, partitionColumn, refuse, type Row } from './prisma-models.ts';

export interface Condition {
  readonly column: string;
  readonly op: 'equals' | 'in' | 'notIn';
  readonly values: readonly BlindIndexValue[];
}

export interface TranslatedWhere {
  /** The where for the database (index columns in place of sealed values). */
  readonly where: Row | undefined;
  /** What the opened rows must meet; empty when the where touches no sealed column. */
  readonly conditions: readonly Condition[];
}

const SEARCHABLE = new Set(['equals', 'in', 'notIn']);

/** The first sealed field a filter (or an orderBy, a selection of an aggregate) names, through relations, as [model, field]. */
export function sealedMention(models: Models, model: string, node: unknown): [string, string] | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      if (typeof item === 'string' && models.isSealed(model, item)) return [model, item];
      const found = sealedMention(models, model, item);
      if (found) return found;
    }
    return undefined;
  }
  if (!isObject(node)) return typeof node === 'string' && models.isSealed(model, node) ? [model, node] : undefined;
  for (const [key, value] of Object.entries(node)) {
    if (value === undefined) continue;
    if (models.isSealed(model, key)) return [model, key];
    const target = models.relation(model, key);
    const found = sealedMention(models, target ?? model, value);
    if (found) return found;
  }
  return undefined;
}

/** Refuses an argument (orderBy, cursor, distinct, a nested where, an aggregate's) that names a sealed field. */
export function refuseMention(models: Models, model: string, node: unknown, operator: string): void {
  const found = sealedMention(models, model, node);
  if (found) refuse(found[0], found[1], operator, 'the database holds only ciphertext: it cannot order, compare or aggregate it');
}

/** The partition a where pins: a fixed one, or `partitionColumn: value` (or `{ equals: value }`). */
function pinnedPartition(table: AnyTable, where: Row): string | undefined {
  if (typeof table.partition === 'string') return table.partition;
  const value = pinned(where, partitionColumn(table)!);
  return typeof value === 'string' ? value : undefined;
}

/** A column's value that a where gives by equality (directly, as `{ equals }`, or inside a compound unique). */
export function pinned(where: Row | undefined, column: string): unknown {
  if (!where) return undefined;
  const direct = where[column];
  if (direct !== undefined && direct !== null && !isObject(direct)) return direct;
  if (isObject(direct) && Object.keys(direct).length === 1 && direct.equals !== undefined && direct.equals !== null) return direct.equals;
  for (const value of Object.values(where)) if (isObject(value) && Object.hasOwn(value, column) && !isObject(value[column])) return value[column];
  return undefined;
}

export class WhereTranslator {
  readonly #records: Records;
  readonly #models: Models;

  constructor(records: Records, models: Models) {
    this.#records = records;
    this.#models = models;
  }

  /** The where for the database and the conditions the opened rows must meet. */
  async translate(model: string, where: unknown): Promise<TranslatedWhere> {
    if (!isObject(where)) return { where: where as undefined, conditions: [] };
    const conditions: Condition[] = [];
    const table = this.#models.table(model);
    const out = await this.#node(model, table, where, table ? pinnedPartition(table, where) : undefined, conditions);
    return { where: out, conditions };
  }

  async #node(model: string, table: AnyTable | undefined, where: Row, partition: string | undefined, conditions: Condition[]): Promise<Row> {
    const out: Row = {};
    const extra: Row[] = [];
    for (const [key, value] of Object.entries(where)) {
      if (value === undefined) continue;
      if (key === 'AND') {
        const parts = Array.isArray(value) ? value : [value];
        out.AND = await Promise.all(parts.map((part) => (isObject(part) ? this.#node(model, table, part, partition, conditions) : part)));
      } else if (key === 'OR' || key === 'NOT') {
        const found = sealedMention(this.#models, model, value);
        if (found) refuse(found[0], found[1], key, `a sealed column is searched only under AND: the rows ${key} would keep or drop cannot be told from ciphertext`);
        out[key] = value;
      } else if (table && Object.hasOwn(table.columns, key)) {
        if (value === null) out[key] = null;
        else extra.push(...(await this.#sealedFilter(model, table, key, value, partition, conditions)));
      } else {
        const target = this.#models.relation(model, key);
        if (target) refuseMention(this.#models, target, value, `a relation filter (${model}.${key})`);
        out[key] = value;
      }
    }
    if (extra.length) out.AND = [...(Array.isArray(out.AND) ? out.AND : out.AND === undefined ? [] : [out.AND]), ...extra];
    return out;
  }

  /** The database filters for one sealed column's filter, with the conditions the opened rows must meet. */
  async #sealedFilter(model: string, table: AnyTable, column: string, filter: unknown, partition: string | undefined, conditions: Condition[]): Promise<Row[]> {
    const ops: Row = isObject(filter) ? filter : { equals: filter };
    const out: Row[] = [];
    for (const [op, value] of Object.entries(ops)) {
      if (value === undefined) continue;
      if (!SEARCHABLE.has(op)) refuse(model, column, op, 'only equals, in and notIn are searched, through the blind index');
      const index = table.columns[column]!.index;
      if (!index) refuse(model, column, op, 'the column declares no blind index (index: { column, bits } in defineTable)');
      if (op === 'equals' && value === null) {
        out.push({ [column]: null });
        continue;
      }
      const values = (op === 'equals' ? [value] : value) as BlindIndexValue[];
      if (!Array.isArray(values)) throw new TypeError(`${model}.${column}: ${op} expected an array`);
      conditions.push({ column, op: op as Condition['op'], values });
      if (op === 'notIn') {
        out.push({ [column]: { not: null } });
        continue;
      }
      if (partition === undefined) refuse(model, column, op, `the blind index is per partition: give ${partitionColumn(table)} by equality in the same where`);
      const indexes = await Promise.all(values.map((v) => this.#records.indexOf(table, column, v, { partition })));
      out.push({ [index.column]: op === 'equals' ? indexes[0] : { in: indexes } });
    }
    return out;
  }

  /** Whether an opened row meets the conditions (a null value meets none). */
  meets(table: AnyTable, row: Row, conditions: readonly Condition[]): boolean {
    return conditions.every(({ column, op, values }) => {
      const value = row[column] as BlindIndexValue | null | undefined;
      if (value === null || value === undefined) return false;
      const found = values.some((v) => this.#records.matches(table, column, value, v));
      return op === 'notIn' ? !found : found;
    });
  }
}
