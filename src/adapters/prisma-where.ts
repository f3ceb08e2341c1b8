/**
 * Filters on sealed columns. The database sees ciphertext, so `equals` and `in` go through the
 * column's blind index (computed under the partition the where pins), `notIn` becomes `not null`,
 * `gt`/`gte`/`lt`/`lte` and `startsWith` go through the column's range and prefix indexes (token
 * overlap, `hasSome` on a BigInt[] field), and each keeps a condition that the opened rows must
 * meet (the indexes' false positives, and the rows notIn excludes, are dropped after the open).
 * A relation filter (some, every, none, is, isNot) or a nested read's where on sealed columns is
 * resolved to the exact rows it meets, by primary key. Every other operator, and a sealed column
 * under OR or NOT, is refused: never a silent empty or wrong answer.
 */
import type { BlindIndexValue, Records, SearchCondition } from '../records.ts';
import { type AnyTable, isObject, type Models, partitionColumn, plainValue, refuse, type Row, searchSpecs } from './prisma-models.ts';

export interface Condition {
  readonly column: string;
  /** The operator, as the query gave it (`equals`, `in`, `notIn`, `startsWith`, `gte` …). */
  readonly op: string;
  /** Whether an opened, non-null value meets it. */
  readonly test: (value: unknown) => boolean;
}

export interface TranslatedWhere {
  /** The where for the database (index columns in place of sealed values). */
  readonly where: Row | undefined;
  /** What the opened rows must meet; empty when the where touches no sealed column. */
  readonly conditions: readonly Condition[];
}

/** A translated where of a model with conditions, narrowed to the exact rows that meet them. */
export type ExactWhere = (model: string, table: AnyTable, translated: TranslatedWhere) => Promise<Row>;

const BLIND = new Set(['equals', 'in', 'notIn']);
const RANGE = new Set(['gt', 'gte', 'lt', 'lte']);
const RELATION_FILTERS = new Set(['some', 'every', 'none', 'is', 'isNot']);

function whyRefused(op: string): string {
  if (op === 'endsWith') return 'no index answers endsWith: declare a contains index and filter the opened rows, or use startsWith';
  return 'searched are equals, in and notIn (blind index), gt, gte, lt and lte (range index), startsWith (prefix index) and contains (contains index)';
}

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

  /**
   * The where for the database and the conditions the opened rows must meet. `exact` resolves the
   * relation filters on sealed columns (without it they are refused).
   */
  async translate(model: string, where: unknown, exact?: ExactWhere): Promise<TranslatedWhere> {
    if (!isObject(where)) return { where: where as undefined, conditions: [] };
    const conditions: Condition[] = [];
    const table = this.#models.table(model);
    const out = await this.#node({ model, table, partition: table ? pinnedPartition(table, where) : undefined, conditions, exact }, where);
    return { where: out, conditions };
  }

  /** A where of the model that touches sealed columns, as the exact rows it meets (a where the database can run as it is). */
  async exact(model: string, where: unknown, exact: ExactWhere): Promise<unknown> {
    const translated = await this.translate(model, where, exact);
    if (translated.conditions.length === 0) return translated.where;
    return exact(model, this.#models.table(model)!, translated);
  }

  async #node(at: Scope, where: Row): Promise<Row> {
    const { model, table } = at;
    const out: Row = {};
    const extra: Row[] = [];
    for (const [key, value] of Object.entries(where)) {
      if (value === undefined) continue;
      if (key === 'AND') {
        const parts = Array.isArray(value) ? value : [value];
        out.AND = await Promise.all(parts.map((part) => (isObject(part) ? this.#node(at, part) : part)));
      } else if (key === 'OR' || key === 'NOT') {
        const found = sealedMention(this.#models, model, value);
        if (found) refuse(found[0], found[1], key, `a sealed column is searched only under AND: the rows ${key} would keep or drop cannot be told from ciphertext`);
        out[key] = value;
      } else if (table && Object.hasOwn(table.columns, key)) {
        if (value === null) out[key] = null;
        else extra.push(...(await this.#sealedFilter(at, key, value)));
      } else {
        const target = this.#models.relation(model, key);
        out[key] = target ? await this.#relationFilter(at, key, target, value) : value;
      }
    }
    if (extra.length) out.AND = [...(Array.isArray(out.AND) ? out.AND : out.AND === undefined ? [] : [out.AND]), ...extra];
    return out;
  }

  /**
   * A relation filter that touches sealed columns: each of its wheres (some, every, none, is,
   * isNot, or a to-one relation's where given directly) replaced by the exact related rows it
   * meets. Exact for every form: `every: W` holds when no related row lies outside the rows W meets.
   */
  async #relationFilter(at: Scope, key: string, target: string, value: unknown): Promise<unknown> {
    if (!sealedMention(this.#models, target, value)) return value;
    const operator = `a relation filter (${at.model}.${key})`;
    if (!at.exact || !isObject(value)) {
      const found = sealedMention(this.#models, target, value)!;
      refuse(found[0], found[1], operator, 'a relation filter on a sealed column is searched only in a query\'s where');
    }
    const exact = at.exact;
    const forms = Object.keys(value).filter((k) => value[k] !== undefined);
    if (!forms.every((k) => RELATION_FILTERS.has(k))) return this.exact(target, value, exact);
    const out: Row = {};
    for (const form of forms) out[form] = value[form] === null ? null : await this.exact(target, value[form], exact);
    return out;
  }

  /** The database filters for one sealed column's filter, with the conditions the opened rows must meet. */
  async #sealedFilter(at: Scope, column: string, filter: unknown): Promise<Row[]> {
    const { model, table } = at as Scope & { table: AnyTable };
    const ops: Row = isObject(filter) ? filter : { equals: filter };
    const out: Row[] = [];
    const range: Row = {};
    for (const [op, given] of Object.entries(ops)) {
      if (given === undefined) continue;
      const value = plainValue(table, column, given);
      if (RANGE.has(op)) range[op] = value;
      else if (op === 'startsWith') out.push(await this.#searchFilter(at, column, 'prefix', op, { startsWith: value as string }));
      else if (op === 'contains') out.push(await this.#searchFilter(at, column, 'contains', op, { contains: value as string }));
      else if (BLIND.has(op)) out.push(...(await this.#blindFilter(at, column, op, value)));
      else refuse(model, column, op, whyRefused(op));
    }
    const bounds = Object.keys(range);
    if (bounds.length) out.push(await this.#searchFilter(at, column, 'range', bounds[0]!, range));
    return out;
  }

  async #blindFilter(at: Scope, column: string, op: string, value: unknown): Promise<Row[]> {
    const { model, partition, conditions } = at;
    const table = at.table!;
    const index = table.columns[column]!.index;
    if (!index) refuse(model, column, op, 'the column declares no blind index (index: { column, bits } in defineTable)');
    if (op === 'equals' && value === null) return [{ [column]: null }];
    const values = (op === 'equals' ? [value] : value) as BlindIndexValue[];
    if (!Array.isArray(values)) throw new TypeError(`${model}.${column}: ${op} expected an array`);
    const plain = values.map((v) => plainValue(table, column, v) as BlindIndexValue);
    const found = (v: unknown) => plain.some((p) => this.#records.matches(table, column, v as BlindIndexValue, p));
    conditions.push({ column, op, test: op === 'notIn' ? (v) => !found(v) : found });
    if (op === 'notIn') return [{ [column]: { not: null } }];
    if (partition === undefined) refuse(model, column, op, `the blind index is per partition: give ${partitionColumn(table)} by equality in the same where`);
    const indexes = await Promise.all(plain.map((v) => this.#records.indexOf(table, column, v, { partition })));
    return [{ [index.column]: op === 'equals' ? indexes[0] : { in: indexes } }];
  }

  /**
   * A range, prefix or contains condition: the rows holding any of its tokens (every one, for
   * contains: each gram of the term), the exact filter kept for after the open.
   */
  async #searchFilter(at: Scope, column: string, kind: 'range' | 'prefix' | 'contains', op: string, condition: SearchCondition): Promise<Row> {
    const { model, partition, conditions } = at;
    const table = at.table!;
    const spec = searchSpecs(table.columns[column]!).find((s) => s.kind === kind);
    if (!spec) refuse(model, column, op, `the column declares no ${kind} index (search: { kind: '${kind}', … } in defineTable)`);
    if (partition === undefined) refuse(model, column, op, `the ${kind} index is per partition: give ${partitionColumn(table)} by equality in the same where`);
    const query = await this.#records.searchQuery(table, column, condition, { partition, dialect: 'postgres' });
    conditions.push({ column, op, test: (v) => query.matches(v) });
    return { [spec.column]: { [query.match === 'all' ? 'hasEvery' : 'hasSome']: query.tokens.map((t) => BigInt(t)) } };
  }

  /** Whether an opened row meets the conditions (a null value meets none). */
  meets(row: Row, conditions: readonly Condition[]): boolean {
    return conditions.every(({ column, test }) => row[column] !== null && row[column] !== undefined && test(row[column]));
  }
}

/** Where a where is translated: its model and table, the partition it pins, the conditions found so far. */
interface Scope {
  readonly model: string;
  readonly table: AnyTable | undefined;
  readonly partition: string | undefined;
  readonly conditions: Condition[];
  readonly exact: ExactWhere | undefined;
}
