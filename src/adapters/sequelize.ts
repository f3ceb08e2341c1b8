/**
 * Sequelize (`kms-envelope/sequelize`): a model's sealed attributes, through its hooks.
 *
 *   sealModel(Customer, { records, table: customers });
 *
 * Writes seal in beforeCreate, beforeUpdate and beforeBulkCreate (Model.update() runs per row:
 * the adapter turns on individualHooks when a sealed attribute is set), each value bound to the
 * table, the column and the row (the instance's primary key, and its partition); afterCreate,
 * afterUpdate and afterBulkCreate put the plaintext back on the instance. Reads open in afterFind
 * (instances, `raw: true` rows, and included instances of other sealed models). The record table's
 * columns are the model's attribute names. A sealed column that declares a blind index (`index: {
 * column }`) has that attribute written with it; look rows up with records.indexOf().
 *
 * Fails closed: Model.upsert() with a sealed attribute is refused (Sequelize builds its values
 * before the beforeUpsert hook, so they cannot be sealed there); a read without the primary key
 * fails with a RecordFieldError or a TypeError naming it. Sequelize's validators skip sealed
 * attributes (they would see a Date or JSON value in a TEXT attribute, or the sealed text after
 * the hooks): validate those values in the application, and let the database check NOT NULL.
 *
 * Sequelize is imported for its types only: the library never loads it.
 */
import type { Model, ModelStatic } from 'sequelize';
import type { FieldSpec, Records, SealedRow, Table } from '../records.ts';

type AnyTable = Table<Record<string, FieldSpec>>;

export interface SealModelOptions {
  records: Records;
  /** The model's sealed attributes, declared with defineTable() (columns named as the attributes). */
  table: Table<any>;
}

/** The parts of a Sequelize instance the hooks use. */
interface Instance {
  dataValues: Record<string, unknown>;
  _previousDataValues: Record<string, unknown>;
  constructor: unknown;
  changed(key: string): boolean;
  setDataValue(key: string, value: unknown): void;
}

interface Hookable {
  name: string;
  addHook(type: string, name: string, fn: (...args: any[]) => unknown): unknown;
  removeHook(type: string, name: string): unknown;
}

interface Binding {
  records: Records;
  table: AnyTable;
}

const HOOK = 'kms-envelope';
const HOOKS = ['beforeValidate', 'beforeCreate', 'beforeUpdate', 'afterCreate', 'afterUpdate', 'beforeBulkCreate', 'afterBulkCreate', 'beforeBulkUpdate', 'beforeUpsert', 'afterFind'] as const;

/** Every sealed model, for opening included instances. */
const bindings = new WeakMap<object, Binding>();

/** What a write sealed on an instance: the plaintext, and the exact sealed values it put in its place. */
const pending = new WeakMap<object, { plain: Record<string, unknown>; sealed: Record<string, unknown> }>();

type BufferFrom = (buffer: ArrayBufferLike, offset: number, length: number) => Uint8Array;
const bufferFrom = (globalThis as { Buffer?: { from: BufferFrom } }).Buffer?.from;

/** Sealed bytes as a Buffer: Sequelize writes any other Uint8Array of a BLOB as the text of its numbers. */
/** The columns seal() writes beside a sealed column: its blind index, and the tokens of its range and prefix indexes. */
function derivedColumns(table: AnyTable, column: string): string[] {
  const field = table.columns[column]!;
  const search = field.search === undefined ? [] : Array.isArray(field.search) ? field.search : [field.search];
  return [...(field.index ? [field.index.column] : []), ...search.map((s: { column: string }) => s.column)];
}

function asBuffer(value: unknown): unknown {
  if (!(value instanceof Uint8Array) || !bufferFrom) return value;
  return bufferFrom(value.buffer, value.byteOffset, value.byteLength);
}

const isInstance = (value: unknown): value is Instance =>
  typeof value === 'object' && value !== null && 'dataValues' in value && '_previousDataValues' in value && typeof (value as Instance).changed === 'function';

/**
 * Adds the hooks that seal and open `table`'s columns to a model. Returns a function that removes
 * them again.
 */
export function sealModel<M extends Model>(model: ModelStatic<M>, options: SealModelOptions): () => void {
  const { records } = options;
  const table = options.table as AnyTable;
  if (!table || typeof table.columns !== 'object' || !Array.isArray(table.primaryKeys)) throw new TypeError('"table" expected a table from defineTable()');
  const hookable = model as unknown as Hookable;
  if (typeof hookable?.addHook !== 'function') throw new TypeError('sealModel() expected a Sequelize model');
  const columns = Object.keys(table.columns);
  // A sealed column's blind index (`index: { column }` in defineTable) and its range and prefix
  // tokens (`search: { column }`) are attributes the hooks write.
  const indexOf = new Map(columns.map((c) => [c, derivedColumns(table, c)] as const));
  const attributes = (model as unknown as { getAttributes?: () => Record<string, unknown> }).getAttributes?.() ?? {};
  for (const [column, indexes] of indexOf) {
    for (const index of indexes) {
      if (!Object.hasOwn(attributes, index)) throw new TypeError(`sealModel(): ${hookable.name} has no attribute ${index} for the index of ${column}: declare it (TEXT for a blind index, ARRAY(BIGINT) for tokens on PostgreSQL, TEXT for tokens as JSON on SQLite)`);
    }
  }

  /** Seals the instance's sealed attributes (only the changed ones of a stored instance). */
  async function seal(instance: Instance, onlyChanged: boolean): Promise<void> {
    const values = instance.dataValues;
    const left = pending.get(instance);
    const row: Record<string, unknown> = { ...values };
    const plain: Record<string, unknown> = {};
    for (const column of columns) {
      let value = values[column];
      // A value this adapter sealed in a write that then failed: seal its plaintext again (the row may have changed).
      if (left && Object.hasOwn(left.sealed, column) && left.sealed[column] === value) value = left.plain[column];
      row[column] = undefined;
      if (onlyChanged && !instance.changed(column)) continue;
      if (value === null || value === undefined) {
        for (const index of indexOf.get(column)!) instance.setDataValue(index, null);
        continue;
      }
      row[column] = plain[column] = value;
    }
    if (Object.keys(plain).length === 0) return;
    const sealed = await records.seal(table, row);
    const put: Record<string, unknown> = {};
    for (const column of Object.keys(plain)) {
      instance.setDataValue(column, (put[column] = asBuffer(sealed[column])));
      for (const index of indexOf.get(column)!) instance.setDataValue(index, sealed[index] ?? null);
    }
    pending.set(instance, { plain, sealed: put });
  }

  /** Puts the plaintext back on an instance after its write. */
  function restore(instance: Instance): void {
    const left = pending.get(instance);
    if (!left) return;
    pending.delete(instance);
    for (const [column, value] of Object.entries(left.plain)) {
      if (instance.dataValues[column] !== left.sealed[column]) continue; // changed meanwhile
      instance.dataValues[column] = value;
      instance._previousDataValues[column] = value;
    }
  }

  const hooks: Record<(typeof HOOKS)[number], (...args: any[]) => unknown> = {
    // Sequelize's validators would see a Date or a JSON value in a TEXT attribute, or the sealed
    // text once the write hooks ran: sealed attributes are left to the application and the database.
    beforeValidate: (_instance: Instance, o: { skip?: string[] }) => {
      o.skip = [...new Set([...(o.skip ?? []), ...columns])];
    },
    beforeCreate: (instance: Instance) => seal(instance, false),
    beforeUpdate: (instance: Instance) => seal(instance, true),
    afterCreate: (instance: Instance) => restore(instance),
    afterUpdate: (instance: Instance) => restore(instance),
    beforeBulkCreate: async (instances: Instance[], o: { individualHooks?: boolean }) => {
      if (!o.individualHooks) await Promise.all(instances.map((i) => seal(i, false))); // else beforeCreate seals each
    },
    afterBulkCreate: (instances: Instance[]) => {
      for (const instance of instances) restore(instance);
    },
    // Model.update(values, { where }): one value per row, so per row through beforeUpdate.
    beforeBulkUpdate: (o: { attributes?: Record<string, unknown>; individualHooks?: boolean }) => {
      if (columns.some((c) => o.attributes?.[c] !== undefined)) o.individualHooks = true;
    },
    beforeUpsert: (values: Record<string, unknown>) => {
      const sealed = columns.filter((c) => values?.[c] !== null && values?.[c] !== undefined);
      if (sealed.length) {
        throw new TypeError(`kms-envelope/sequelize: ${hookable.name}.upsert() cannot seal ${sealed.join(', ')} (Sequelize builds its values before the hook): find the row, then save() or create()`);
      }
    },
    afterFind: async (result: unknown) => {
      const items = result === null || result === undefined ? [] : Array.isArray(result) ? result : [result];
      if (items.length) await openAll({ records, table }, items);
    },
  };
  for (const type of HOOKS) hookable.addHook(type, HOOK, hooks[type]);
  bindings.set(model, { records, table });
  return () => {
    for (const type of HOOKS) hookable.removeHook(type, HOOK);
    bindings.delete(model);
  };
}

/** Opens found instances or raw rows of a model, and the instances of other sealed models they include. */
async function openAll({ records, table }: Binding, items: readonly unknown[]): Promise<void> {
  const rows = items.map((item) => (isInstance(item) ? item.dataValues : (item as Record<string, unknown>)));
  const opened = await records.openMany(table, rows as SealedRow<Record<string, FieldSpec>>[], { failFast: true });
  opened.forEach((result, i) => {
    if (!result.ok) throw result.error;
    const item = items[i];
    const values = rows[i]!;
    for (const column of Object.keys(table.columns)) {
      if (values[column] === null || values[column] === undefined) continue;
      values[column] = result.value[column];
      if (isInstance(item)) item._previousDataValues[column] = result.value[column];
    }
  });
  // Included instances (eager loading) of other sealed models.
  const nested = new Map<Binding, unknown[]>();
  for (const item of items) {
    if (!isInstance(item)) continue;
    for (const value of Object.values(item.dataValues)) {
      for (const child of Array.isArray(value) ? value : [value]) {
        const binding = isInstance(child) ? bindings.get(child.constructor as object) : undefined;
        if (binding) nested.set(binding, [...(nested.get(binding) ?? []), child]);
      }
    }
  }
  for (const [binding, children] of nested) await openAll(binding, children);
}
