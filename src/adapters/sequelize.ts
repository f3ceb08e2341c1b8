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
import { type FieldSpec, type Records, refusePartialWrite, RowVersionError, type SealedRow, type Table } from '../records.ts';

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
  const marker = table.keyVersionColumn;
  if (marker !== undefined && !Object.hasOwn(attributes, marker)) throw new TypeError(`sealModel(): ${hookable.name} has no attribute ${marker} for the key-version column: declare it (INTEGER)`);

  /**
   * The key-version marker after a write: the lowest version of the row's values. A write that
   * leaves other sealed values holding a value keeps the lower of the marker the instance was read
   * with and its own seals' (a stored NULL stays NULL: the rotation sweep takes such rows).
   */
  function markerAfter(instance: Instance, sealedVersion: number | undefined, left: readonly string[]): number | null | undefined {
    // An attribute the instance was read without (undefined) may hold a value: counted as held.
    const held = left.filter((c) => instance.dataValues[c] !== null);
    if (held.length === 0) return sealedVersion ?? null;
    if (sealedVersion === undefined) return undefined; // nothing sealed: the marker stays as it is
    const stored = instance._previousDataValues[marker!];
    if (stored === undefined) {
      throw new TypeError(`kms-envelope/sequelize: ${hookable.name} updates some sealed attributes and leaves ${held.join(', ')}: read the instance with its ${marker} attribute, so that the key-version column stays the lowest version of the row's values`);
    }
    return stored === null ? null : Math.min(Number(stored), sealedVersion);
  }

  const version = rowVersionOf(model, table);

  /** Seals the instance's sealed attributes (only the changed ones of a stored instance; all of them, under the new version, in a table with a row version). */
  async function seal(instance: Instance, onlyChanged: boolean): Promise<void> {
    const values = instance.dataValues;
    const left = pending.get(instance);
    const row: Record<string, unknown> = { ...values };
    if (version) {
      if (!version.wholeRow(instance, onlyChanged)) return;
      row[version.column] = version.next(instance, onlyChanged);
      onlyChanged = false;
    }
    const plain: Record<string, unknown> = {};
    for (const column of columns) {
      let value = values[column];
      // A value this adapter sealed in a write that then failed: seal its plaintext again (the row may have changed).
      if (left && Object.hasOwn(left.sealed, column) && left.sealed[column] === value) value = left.plain[column];
      row[column] = undefined;
      if (onlyChanged && !instance.changed(column)) continue;
      if (value === null || value === undefined) {
        if (version && value === null) row[column] = null; // a row version seals the whole row: null is a value
        for (const index of indexOf.get(column)!) instance.setDataValue(index, null);
        continue;
      }
      row[column] = plain[column] = value;
    }
    const untouched = columns.filter((c) => onlyChanged && !instance.changed(c));
    if (Object.keys(plain).length === 0) {
      if (marker !== undefined && columns.some((c) => !untouched.includes(c))) {
        const after = markerAfter(instance, undefined, untouched);
        if (after !== undefined) instance.setDataValue(marker, after);
      }
      return;
    }
    const sealed = await records.seal(table, row);
    if (marker !== undefined) {
      const after = markerAfter(instance, sealed[marker] as number | undefined, untouched);
      if (after !== undefined) instance.setDataValue(marker, after);
    }
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
      if (version) refuseBulkUpdate(hookable.name, table, version.column, o.attributes ?? {});
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

/**
 * A table with a row version (FORMAT.md §12.4), on a Sequelize model: a write that changes a
 * sealed attribute or the version seals every sealed attribute again, under the new version the
 * instance gives (set by the application, or computed by Sequelize's own optimistic locking,
 * `version: '<the column>'`, which writes the old version + 1 as a value and checks the old one).
 */
function rowVersionOf(model: unknown, table: AnyTable) {
  const column = table.rowVersion?.column;
  if (column === undefined) return undefined;
  const locking = (model as { _versionAttribute?: unknown })._versionAttribute === column;
  const name = (model as { name?: string }).name ?? table.name;
  const columns = Object.keys(table.columns);
  return {
    column,
    /** Whether this write seals: any new record, or an update of a sealed attribute or the version (any update under Sequelize's locking, which moves the version). */
    wholeRow(instance: Instance, update: boolean): boolean {
      if (!update || locking) return true;
      return instance.changed(column) || columns.some((c) => instance.changed(c));
    },
    /** The version the write stores: the instance's, or under Sequelize's locking of an update, the old one + 1. */
    next(instance: Instance, update: boolean): unknown {
      const value = instance.dataValues[column];
      if (locking && update) {
        if (typeof value !== 'number' && typeof value !== 'string' && typeof value !== 'bigint') {
          throw new RowVersionError(table.name, 'missing', `${name}: the instance's row version ${column} is ${value === null ? 'NULL' : typeof value}: seal its rows again with a sweep first (legacyUnversioned)`);
        }
        return BigInt(String(value)) + 1n;
      }
      if (locking && (value === null || value === undefined)) {
        instance.setDataValue(column, 0); // a new row under Sequelize's locking starts at 0, as its own default does
        return 0;
      }
      if (update && !instance.changed(column)) {
        throw new RowVersionError(table.name, 'missing', `${name}: an update of a sealed attribute must set the new row version ${column} (a value above the old one), or declare the model with version: '${column}'`);
      }
      return value;
    },
  };
}

/**
 * Model.update(values, { where }) of a row-version table: refused when it sets a sealed attribute
 * or the version (one version for many rows, and a partial write when it sets some of them): find
 * the instances, change them, save() each.
 */
function refuseBulkUpdate(model: string, table: AnyTable, column: string, attributes: Record<string, unknown>): void {
  const set = Object.keys(attributes).filter((a) => attributes[a] !== undefined);
  refusePartialWrite(table, set, `${model}.update()`);
  if (set.includes(column)) {
    throw new RowVersionError(table.name, 'partial-write', `${model}.update() sets the row version ${column} and the sealed attributes of every row it matches at once: find the instances, change them and save() each, under its own new version`);
  }
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
