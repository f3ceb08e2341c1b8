/**
 * The rows a Prisma query returns, opened: the plan of which models a selection reads (through
 * `select`, `include` and their relations), with the primary-key and partition columns added to
 * a selection (or taken out of an `omit`) that left them out, since each sealed value is bound to
 * them, and stripped again after the open; then one openMany per table over every row of the
 * result tree, so that a partition's key is loaded once.
 */
import type { FieldSpec, Records, SealedRow } from '../records.ts';
import { type AnyTable, isObject, type Models, openColumns, type Row } from './prisma-models.ts';
import { refuseMention } from './prisma-where.ts';

export interface ReadPlan {
  readonly table: AnyTable | undefined;
  /** Keys added to the selection for the open, removed from the rows after it. */
  readonly strip: readonly string[];
  readonly relations: ReadonlyMap<string, ReadPlan>;
}

/** What a relation's nested arguments may not name: the database cannot order or page by ciphertext. */
const NESTED_REFUSED = ['orderBy', 'cursor', 'distinct'] as const;

/** A where of a model that may touch sealed columns, as one the database runs exactly (the rows it meets, by primary key). */
export type WhereResolver = (model: string, where: unknown) => Promise<unknown>;

/** The arguments with the columns the open needs added to the selection, and the plan of the result. */
export async function planSelection(models: Models, model: string, args: Row | undefined, resolve: WhereResolver): Promise<{ args: Row; plan: ReadPlan }> {
  const table = models.table(model);
  const out: Row = { ...args };
  const strip: string[] = [];
  const relations = new Map<string, ReadPlan>();
  const wanted = table ? openColumns(table) : [];
  if (isObject(out.select)) {
    const select: Row = { ...out.select };
    const readsSealed = table !== undefined && Object.keys(table.columns).some((c) => select[c]);
    for (const column of readsSealed ? wanted : []) {
      if (!select[column]) (select[column] = true, strip.push(column));
    }
    out.select = await planRelations({ models, model, resolve }, select, relations);
  } else if (isObject(out.include)) {
    out.include = await planRelations({ models, model, resolve }, { ...out.include }, relations);
  }
  if (isObject(out.omit)) {
    const omit: Row = { ...out.omit };
    for (const column of wanted) if (omit[column]) (delete omit[column], strip.push(column));
    out.omit = omit;
  }
  return { args: out, plan: { table, strip, relations } };
}

/**
 * Each relation of a select or include planned in turn: a where on its sealed columns resolved to
 * the exact related rows (so that Prisma's take and skip count only those); ordering by them refused.
 */
async function planRelations(at: { models: Models; model: string; resolve: WhereResolver }, selection: Row, relations: Map<string, ReadPlan>): Promise<Row> {
  const { models, model, resolve } = at;
  for (const [key, value] of Object.entries(selection)) {
    if (key === '_count' && isObject(value)) {
      selection[key] = await countSelection(at, value);
      continue;
    }
    const target = models.relation(model, key);
    if (!target || !value || !models.reachesSealed(target)) continue;
    const nested = isObject(value) ? { ...value } : undefined;
    if (nested) for (const name of NESTED_REFUSED) if (nested[name] !== undefined) refuseMention(models, target, nested[name], `${name} in a nested read (${model}.${key})`);
    if (nested?.where !== undefined) nested.where = await resolve(target, nested.where);
    const planned = await planSelection(models, target, nested, resolve);
    relations.set(key, planned.plan);
    selection[key] = nested ? planned.args : true;
  }
  return selection;
}

/** `_count: { select: { relation: { where } } }`: each where resolved, so that the count is of the rows that meet it. */
async function countSelection({ models, model, resolve }: { models: Models; model: string; resolve: WhereResolver }, count: Row): Promise<Row> {
  if (!isObject(count.select)) return count;
  const select: Row = { ...count.select };
  for (const [key, value] of Object.entries(select)) {
    const target = models.relation(model, key);
    if (target && isObject(value) && value.where !== undefined) select[key] = { ...value, where: await resolve(target, value.where) };
  }
  return { ...count, select };
}

/** Every row of a result tree that holds sealed values, by table. */
function collect(plan: ReadPlan, value: unknown, into: Map<AnyTable, Row[]>): void {
  if (Array.isArray(value)) {
    for (const row of value) collect(plan, row, into);
    return;
  }
  if (!isObject(value)) return;
  if (plan.table && Object.keys(plan.table.columns).some((c) => value[c] !== null && value[c] !== undefined)) {
    let rows = into.get(plan.table);
    if (!rows) into.set(plan.table, (rows = []));
    rows.push(value);
  }
  for (const [key, nested] of plan.relations) collect(nested, value[key], into);
}

function strip(plan: ReadPlan, value: unknown): void {
  if (Array.isArray(value)) {
    for (const row of value) strip(plan, row);
    return;
  }
  if (!isObject(value)) return;
  for (const key of plan.strip) delete value[key];
  for (const [key, nested] of plan.relations) strip(nested, value[key]);
}

/** Opens the sealed values of a result in place (one openMany per table), then strips the added keys. */
export async function openResult<T>(records: Records, plan: ReadPlan, result: T): Promise<T> {
  const byTable = new Map<AnyTable, Row[]>();
  collect(plan, result, byTable);
  await Promise.all(
    [...byTable].map(async ([table, rows]) => {
      const opened = await records.openMany(table, rows as SealedRow<Record<string, FieldSpec>>[], { failFast: true });
      opened.forEach((r, i) => {
        if (!r.ok) throw r.error;
        for (const column of Object.keys(table.columns)) if (Object.hasOwn(rows[i]!, column)) rows[i]![column] = r.value[column];
      });
    }),
  );
  strip(plan, result);
  return result;
}
