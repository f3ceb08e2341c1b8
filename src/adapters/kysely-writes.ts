/**
 * The writes of the Kysely plugin (transformQuery, synchronous): each value of a sealed column in
 * an INSERT's VALUES or an UPDATE's SET becomes a PendingSeal, bound to its row (an INSERT row's
 * own primary key and partition, an UPDATE's from `key = value` terms of its WHERE and its SET);
 * the blind-index column of a sealed column is written with it. Everything else fails closed.
 */
import type { ColumnUpdateNode, InsertQueryNode, OperationNode, ReferenceNode, UpdateQueryNode, ValueNode } from 'kysely';
import { columnName, columnNode, equalities, is, rawNode, scopeEntry, tableName, valueNode } from './kysely-nodes.ts';
import { type AnyTable, PendingRow, PendingSeal } from './kysely-pending.ts';
import { bindingColumns, indexColumns, markerColumn, sealedColumn } from './kysely-tables.ts';
import { refusePartialWrite, RowVersionError } from '../records.ts';

type Row = Record<string, unknown>;

const given = (value: unknown): boolean => value !== null && value !== undefined;

function refuse(name: string, column: string, what: string): never {
  throw new TypeError(`kms-envelope/kysely: ${name}.${column} is sealed: ${what}`);
}

/** Refuses a write whose row cannot be bound: its primary key or partition column is not known. */
function requireBinding(name: string, table: AnyTable, row: Readonly<Row>, where: string): void {
  const missing = bindingColumns(table).filter((column) => row[column] === undefined || row[column] === null);
  if (missing.length) {
    throw new TypeError(`kms-envelope/kysely: ${where} of ${name} seals a column, so it must give ${missing.join(', ')} (sealed values are bound to their row and partition)`);
  }
}

/**
 * A table with a row version (FORMAT.md §12.4): a write that seals must set every sealed column
 * and the new version, and the version as a value (a parameter), never an SQL expression such as
 * `row_version + 1`: the seal binds the version the client gives.
 */
function refuseVersionExpression(name: string, table: AnyTable, value: OperationNode | undefined, what: string): void {
  const column = table.rowVersion?.column;
  if (column === undefined || value === undefined) return;
  if (is<ValueNode>(value, 'ValueNode') && !value.immediate && value.value !== null && value.value !== undefined) return;
  const found = is<ValueNode>(value, 'ValueNode') ? (value.immediate ? 'a literal inlined in the SQL' : 'NULL') : `an SQL expression (${value.kind})`;
  throw new RowVersionError(name, 'missing', `${what} must give the new row version ${column} as a value (a parameter known before sealing), not ${found}`);
}

/** The value node of a sealed column, replaced by a PendingSeal (null stays null). */
function marked(name: string, column: string, value: OperationNode, row: PendingRow): OperationNode {
  if (!is<ValueNode>(value, 'ValueNode')) {
    if (value.kind === 'DefaultInsertValueNode') return value;
    refuse(name, column, `it takes a value, not an SQL expression (${value.kind}), so that the value is sealed`);
  }
  if (value.immediate) refuse(name, column, 'a literal inlined in the SQL (sql.lit) cannot be sealed: pass it as a value');
  if (value.value === null || value.value === undefined) return value;
  return { ...value, value: new PendingSeal(row, column) } as ValueNode;
}

// --- INSERT -----------------------------------------------------------------------------------

/** An INSERT's columns, where its sealed values are, and where each blind index goes. */
interface InsertShape {
  readonly name: string;
  readonly table: AnyTable;
  readonly columns: readonly string[];
  readonly sealedAt: readonly number[];
  /** Index column position -> its sealed column's position. */
  readonly indexOf: ReadonlyMap<number, number>;
  /** The key-version column's position, when the table declares one: written with the seals. */
  readonly markerAt: number | undefined;
}

/** The INSERT with its sealed values marked and their blind-index columns added, or the node as it is. */
export function markInsert(tables: ReadonlyMap<string, AnyTable>, node: InsertQueryNode): InsertQueryNode {
  const name = node.into ? tableName(node.into) : undefined;
  const table = name === undefined ? undefined : tables.get(name);
  if (!table || !node.columns) return node;
  refusePartialWrite(table, node.columns.map((c) => c.column.name), `an INSERT into ${name}`);
  const shape = insertShape(name!, table, node.columns.map((c) => c.column.name));
  if (!shape) return node;
  for (const updates of [node.onConflict?.updates, node.onDuplicateKey?.updates]) {
    if (!updates) continue;
    refusePartialWrite(table, updates.flatMap((u) => columnName(u.column) ?? []), `an upsert of ${name}`);
    for (const update of updates) checkUpsert(shape, node, update);
  }
  const values = node.values;
  if (!values || values.kind !== 'ValuesNode') refuse(shape.name, shape.columns[shape.sealedAt[0]!]!, 'an INSERT ... SELECT cannot seal: insert the values');
  const rows = (values as unknown as { values: readonly OperationNode[] }).values.map((list) => markInsertRow(shape, list));
  return { ...node, columns: shape.columns.map(columnNode), values: { ...values, values: rows } as OperationNode, ...upsertIndexes(table, node) };
}

/** The shape of an INSERT that seals something (undefined when it seals nothing). */
function insertShape(name: string, table: AnyTable, names: readonly string[]): InsertShape | undefined {
  const sealedAt = names.flatMap((c, i) => (sealedColumn(table, c) ? [i] : []));
  if (sealedAt.length === 0) return undefined;
  // The blind indexes of the sealed columns are written too: computed with the seal, in place of any value given.
  const indexOf = new Map<number, number>();
  const columns = [...names];
  for (const i of sealedAt) {
    for (const index of indexColumns(table, names[i]!)) {
      let at = columns.indexOf(index);
      if (at < 0) at = columns.push(index) - 1;
      indexOf.set(at, i);
    }
  }
  // The key-version marker: the lowest version of the row's values, in place of any value given.
  const marker = markerColumn(table);
  let markerAt: number | undefined;
  if (marker !== undefined) {
    markerAt = columns.indexOf(marker);
    if (markerAt < 0) markerAt = columns.push(marker) - 1;
  }
  return { name, table, columns, sealedAt, indexOf, markerAt };
}

/** One row of VALUES (primitive values or value nodes), its sealed values and blind indexes marked. */
function markInsertRow(shape: InsertShape, list: OperationNode): OperationNode {
  const { name, table, columns, sealedAt, indexOf, markerAt } = shape;
  const primitive = list.kind === 'PrimitiveValueListNode';
  const items: unknown[] = [...(list as unknown as { values: readonly unknown[] }).values];
  while (items.length < columns.length) items.push(primitive ? null : valueNode(null));
  const plain = insertedRow(columns, items, primitive);
  const versionAt = table.rowVersion ? columns.indexOf(table.rowVersion.column) : -1;
  if (versionAt >= 0) refuseVersionExpression(name, table, primitive ? valueNode(items[versionAt]) : (items[versionAt] as OperationNode), 'an INSERT');
  if (sealedAt.some((i) => given(plain[columns[i]!]))) requireBinding(name, table, plain, 'an INSERT');
  const row = new PendingRow(table, name, plain);
  const hasValue = (i: number) => given(plain[columns[i]!]);
  const sealsAny = sealedAt.some(hasValue);
  if (primitive) {
    return {
      ...list,
      values: items.map((item, i) => {
        if (i === markerAt) return sealsAny ? new PendingSeal(row, columns[i]!) : null;
        if (indexOf.has(i)) return hasValue(indexOf.get(i)!) ? new PendingSeal(row, columns[i]!) : null;
        return sealedAt.includes(i) && item !== null && item !== undefined ? new PendingSeal(row, columns[i]!) : item;
      }),
    } as OperationNode;
  }
  return {
    ...list,
    values: (items as OperationNode[]).map((item, i) => {
      if (i === markerAt) return valueNode(sealsAny ? new PendingSeal(row, columns[i]!) : null);
      if (indexOf.has(i)) return valueNode(hasValue(indexOf.get(i)!) ? new PendingSeal(row, columns[i]!) : null);
      return sealedAt.includes(i) ? marked(name, columns[i]!, item, row) : item;
    }),
  } as OperationNode;
}

/** The plaintext row an INSERT's values give: parameters only (not literals inlined in the SQL). */
function insertedRow(columns: readonly string[], items: readonly unknown[], primitive: boolean): Row {
  const plain: Row = {};
  columns.forEach((column, i) => {
    const item = items[i];
    if (primitive) plain[column] = item;
    else if (is<ValueNode>(item as OperationNode, 'ValueNode') && !(item as ValueNode).immediate) plain[column] = (item as ValueNode).value;
  });
  return plain;
}

/** An upsert that takes excluded.<sealed column> takes its blind index from excluded too. */
function upsertIndexes(table: AnyTable, node: InsertQueryNode): Partial<InsertQueryNode> {
  const updates = node.onConflict?.updates;
  if (!updates) return {};
  const set = new Set(updates.map((u) => columnName(u.column)));
  const added = updates.flatMap((u) => {
    const column = columnName(u.column);
    const indexes = column === undefined ? [] : indexColumns(table, column).filter((index) => !set.has(index));
    return indexes.map((index) => ({ ...u, column: columnNode(index), value: { ...(u.value as ReferenceNode), column: columnNode(index) } }));
  });
  return added.length ? { onConflict: { ...node.onConflict!, updates: [...updates, ...added] } } : {};
}

/** An upsert may set a sealed column only to `excluded.<the same column>`, on a conflict over the primary key (the same row). */
function checkUpsert(shape: InsertShape, node: InsertQueryNode, update: ColumnUpdateNode): void {
  const { name, table } = shape;
  const column = columnName(update.column);
  if (column === undefined || !(sealedColumn(table, column) || column === table.rowVersion?.column)) return;
  const ref = update.value;
  const sameColumn = is<ReferenceNode>(ref, 'ReferenceNode') && columnName(ref) === column && ref.table?.table.identifier.name === 'excluded';
  const conflict = (node.onConflict?.columns ?? []).map((c) => c.column.name).sort();
  const onKey = table.primaryKeys.length > 0 && JSON.stringify(conflict) === JSON.stringify([...table.primaryKeys].sort());
  if (!sameColumn || !onKey) refuse(name, column, `an upsert may set it only to excluded.${column}, on a conflict over the primary key (${table.primaryKeys.join(', ') || 'none declared'})`);
}

// --- UPDATE -----------------------------------------------------------------------------------

/** The UPDATE with its sealed values marked and their blind-index columns set, or the node as it is. */
export function markUpdate(tables: ReadonlyMap<string, AnyTable>, node: UpdateQueryNode): UpdateQueryNode {
  const entry = node.table ? scopeEntry(node.table) : undefined;
  const table = entry ? tables.get(entry.name) : undefined;
  if (!entry || !table || !node.updates) return node;
  refusePartialWrite(table, node.updates.flatMap((u) => columnName(u.column) ?? []), `an UPDATE of ${entry.name}`);
  const touched = node.updates.filter((u) => {
    const column = columnName(u.column);
    return column !== undefined && sealedColumn(table, column);
  });
  if (touched.length === 0) return node;
  refuseVersionExpression(entry.name, table, node.updates.find((u) => columnName(u.column) === table.rowVersion?.column)?.value, 'an UPDATE');
  const plain = updatedRow(node);
  const sealsSomething = touched.some((u) => !is<ValueNode>(u.value, 'ValueNode') || (u.value.value !== null && u.value.value !== undefined));
  if (sealsSomething) requireBinding(entry.name, table, plain, 'an UPDATE (its SET or `key = value` in its WHERE)');
  const row = new PendingRow(table, entry.name, plain);
  const indexes = new Map<string, string>(); // index column -> its sealed column
  for (const u of touched) {
    const column = columnName(u.column)!;
    for (const index of indexColumns(table, column)) indexes.set(index, column);
  }
  const updates = markedUpdates(node.updates, row, indexes);
  const marker = markerColumn(table);
  return { ...node, updates: marker === undefined ? updates : withMarker(updates, row, marker, touched) };
}

/**
 * The key-version marker of an UPDATE: the lowest version of the row's values afterwards. An UPDATE
 * that sets every sealed column writes its own seals' version (NULL when it seals none); one that
 * sets some keeps the lower of the stored marker and its seals' version, computed by the database
 * (a stored NULL stays NULL while a column it leaves holds a value: that row has no true marker, and
 * the rotation sweep takes it); one that seals nothing and leaves other columns keeps the marker.
 */
function withMarker(updates: ColumnUpdateNode[], row: PendingRow, marker: string, touched: readonly ColumnUpdateNode[]): ColumnUpdateNode[] {
  const set = new Set(touched.map((u) => columnName(u.column)!));
  if (updates.some((u) => columnName(u.column) === marker)) refuse(row.name, marker, 'it is the key-version column, which the adapter writes: leave it out of the SET');
  const others = Object.keys(row.table.columns).filter((c) => !set.has(c));
  const sealsAny = [...set].some((c) => given(row.values[c]));
  const mine = (): OperationNode => valueNode(new PendingSeal(row, marker));
  let value: OperationNode;
  if (others.length === 0) value = sealsAny ? mine() : valueNode(null);
  else if (!sealsAny) return updates;
  else {
    const m = columnNode(marker);
    // CASE WHEN m < v THEN m WHEN m IS NULL AND (o1 IS NOT NULL OR ...) THEN NULL ELSE v END
    const between = others.map((_, i) => (i === 0 ? ' IS NULL AND (' : ' IS NOT NULL OR '));
    value = rawNode(['CASE WHEN ', ' < ', ' THEN ', ' WHEN ', ...between, ' IS NOT NULL) THEN NULL ELSE ', ' END'], [m, mine(), m, m, ...others.map(columnNode), mine()]);
  }
  return [...updates, { kind: 'ColumnUpdateNode', column: columnNode(marker), value } as ColumnUpdateNode];
}

/** The row an UPDATE pins: `key = value` terms of its WHERE, then the parameters of its SET. */
function updatedRow(node: UpdateQueryNode): Row {
  const plain: Row = { ...equalities(node.where) };
  for (const u of node.updates!) {
    const column = columnName(u.column);
    if (column !== undefined && is<ValueNode>(u.value, 'ValueNode') && !u.value.immediate) plain[column] = u.value.value;
  }
  return plain;
}

/** The SET with each sealed value and blind index marked, and the blind indexes it lacks added. */
function markedUpdates(updates: readonly ColumnUpdateNode[], row: PendingRow, indexes: ReadonlyMap<string, string>): ColumnUpdateNode[] {
  const indexValue = (index: string) => {
    const value = row.values[indexes.get(index)!];
    return valueNode(value === null || value === undefined ? null : new PendingSeal(row, index));
  };
  const out: ColumnUpdateNode[] = updates.map((u) => {
    const column = columnName(u.column);
    if (column !== undefined && indexes.has(column)) return { ...u, value: indexValue(column) };
    if (column === undefined || !sealedColumn(row.table, column)) return u;
    return { ...u, value: marked(row.name, column, u.value, row) };
  });
  const present = new Set(updates.map((u) => columnName(u.column)));
  for (const index of indexes.keys()) {
    if (!present.has(index)) out.push({ kind: 'ColumnUpdateNode', column: columnNode(index), value: indexValue(index) } as ColumnUpdateNode);
  }
  return out;
}
