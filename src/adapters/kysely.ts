/**
 * Kysely (`kms-envelope/kysely`): sealed columns in queries built with Kysely.
 *
 *   const encryption = kyselyEncryption({ records, tables: { users } });
 *   const db = new Kysely<DB>({ dialect: encryption.dialect(new PostgresDialect({ pool })), plugins: [encryption] });
 *
 * Writes: the plugin (transformQuery, synchronous) marks each value of a sealed column in an
 * INSERT's VALUES or an UPDATE's SET; the wrapped dialect seals the marked values, asynchronously
 * through the record API, just before the query goes to the database. Each value is bound to its
 * table, column and row: an INSERT row's own primary key and partition, an UPDATE's from `key =
 * value` terms of its WHERE (and its SET). Reads: transformResult opens the sealed columns of a
 * SELECT (or of RETURNING) over a declared table, found by their name or alias in the selection.
 * A sealed column that declares a blind index (`index: { column }` in defineTable) has its index
 * column written with it (added to the INSERT or the SET); look rows up with records.indexOf().
 *
 * Everything else fails closed: a sealed column set to an SQL expression, a literal inlined in the
 * SQL, an INSERT ... SELECT, an UPDATE that does not pin the primary key, a marked value that
 * reaches a driver without the wrapped dialect (it refuses to serialize). Values read through a
 * subquery, a CTE or an expression are not opened: they come back sealed.
 *
 * Kysely is imported for its types only: the library never loads it.
 */
import type {
  AliasNode,
  ColumnNode,
  ColumnUpdateNode,
  CompiledQuery,
  DatabaseConnection,
  Dialect,
  Driver,
  InsertQueryNode,
  KyselyPlugin,
  OperationNode,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryResult,
  ReferenceNode,
  RootOperationNode,
  SelectionNode,
  TableNode,
  UnknownRow,
  UpdateQueryNode,
  ValueNode,
} from 'kysely';
import type { FieldSpec, Records, SealedRow, Table } from '../records.ts';

type AnyTable = Table<Record<string, FieldSpec>>;

export interface KyselyEncryptionOptions {
  records: Records;
  /**
   * The tables with sealed columns, by their name in SQL (`users`, or `schema.users` for a
   * table in another schema), each declared with defineTable(). Column names are the SQL names.
   */
  tables: Readonly<Record<string, Table<any>>>;
}

export interface KyselyEncryption extends KyselyPlugin {
  /**
   * The dialect that seals the marked values before each query runs. Give it to `new Kysely()`
   * together with this plugin: without it, a marked value refuses to reach the database.
   */
  dialect(dialect: Dialect): Dialect;
}

/** One row of an INSERT or one UPDATE, sealed once for all its marked values. */
class PendingRow {
  sealed: Promise<Record<string, unknown>> | undefined;
  readonly table: AnyTable;
  readonly name: string;
  readonly values: Readonly<Record<string, unknown>>;
  constructor(table: AnyTable, name: string, values: Readonly<Record<string, unknown>>) {
    this.table = table;
    this.name = name;
    this.values = values;
  }
}

const NOT_WRAPPED = 'kms-envelope/kysely: a sealed column reached the database unsealed: give the dialect to encryption.dialect() as well as the plugin to plugins';

/**
 * A value to seal, in place of the plaintext in the query's parameters. It holds the plaintext in
 * private fields (no enumerable property, nothing for a serializer to print) and refuses to
 * serialize: a driver that gets one without the wrapped dialect fails instead of storing plaintext.
 */
export class PendingSeal {
  readonly #row: PendingRow;
  readonly #column: string;
  constructor(row: PendingRow, column: string) {
    this.#row = row;
    this.#column = column;
  }
  /** `table.column`, for messages. */
  get target(): string {
    return `${this.#row.name}.${this.#column}`;
  }
  /** @internal The sealed value (or the blind index) the database is to store. */
  async seal(records: Records): Promise<unknown> {
    const row = this.#row;
    row.sealed ??= records.seal(row.table, row.values);
    return (await row.sealed)[this.#column] ?? null;
  }
  toJSON(): never {
    throw new TypeError(NOT_WRAPPED);
  }
  toPostgres(): never {
    throw new TypeError(NOT_WRAPPED);
  }
  toString(): never {
    throw new TypeError(NOT_WRAPPED);
  }
  [Symbol.toPrimitive](): never {
    throw new TypeError(NOT_WRAPPED);
  }
}

// ---------------------------------------------------------------------------------------------
// Operation nodes, read by their kind (Kysely's node classes are not loaded).

const is = <N extends OperationNode>(node: OperationNode | undefined, kind: N['kind']): node is N => node?.kind === kind;

function tableName(node: TableNode): string {
  const { schema, identifier } = node.table;
  return schema ? `${schema.name}.${identifier.name}` : identifier.name;
}

const identifier = (name: string) => ({ kind: 'IdentifierNode', name }) as const;
const columnNode = (name: string) => ({ kind: 'ColumnNode', column: identifier(name) }) as unknown as ColumnNode;
const valueNode = (value: unknown) => ({ kind: 'ValueNode', value }) as unknown as ValueNode;

function columnName(node: OperationNode): string | undefined {
  if (is<ColumnNode>(node, 'ColumnNode')) return node.column.name;
  if (is<ReferenceNode>(node, 'ReferenceNode') && is<ColumnNode>(node.column, 'ColumnNode')) return node.column.column.name;
  return undefined;
}

/** A table in a FROM, a JOIN or an UPDATE: its SQL name and the name it is referred to by. */
function scopeEntry(node: OperationNode): { name: string; ref: string } | undefined {
  if (is<TableNode>(node, 'TableNode')) return { name: tableName(node), ref: node.table.identifier.name };
  if (is<AliasNode>(node, 'AliasNode') && is<TableNode>(node.node, 'TableNode')) {
    const alias = (node.alias as { name?: string }).name;
    return { name: tableName(node.node), ref: alias ?? node.node.table.identifier.name };
  }
  return undefined;
}

/** `column = value` terms joined by AND at the top of a WHERE (what pins a row). */
function equalities(node: OperationNode | undefined, out: Record<string, unknown> = {}): Record<string, unknown> {
  if (!node) return out;
  if (node.kind === 'WhereNode') return equalities((node as unknown as { where: OperationNode }).where, out);
  if (node.kind === 'ParensNode') return equalities((node as unknown as { node: OperationNode }).node, out);
  if (node.kind === 'AndNode') {
    const and = node as unknown as { left: OperationNode; right: OperationNode };
    equalities(and.left, out);
    return equalities(and.right, out);
  }
  if (node.kind === 'BinaryOperationNode') {
    const op = node as unknown as { leftOperand: OperationNode; operator: { operator?: string }; rightOperand: OperationNode };
    const column = columnName(op.leftOperand);
    if (op.operator.operator === '=' && column !== undefined && is<ValueNode>(op.rightOperand, 'ValueNode') && !op.rightOperand.immediate) {
      out[column] = op.rightOperand.value;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface OpenPlan {
  table: AnyTable;
  /** Record column (sealed, primary key or partition) -> the key it has in the result rows. */
  keys: Map<string, string>;
}

export function kyselyEncryption(options: KyselyEncryptionOptions): KyselyEncryption {
  const { records } = options;
  const tables = new Map<string, AnyTable>(Object.entries(options.tables) as [string, AnyTable][]);
  for (const [name, table] of tables) {
    if (!table || typeof table.columns !== 'object' || !Array.isArray(table.primaryKeys)) throw new TypeError(`tables.${name} expected a table from defineTable()`);
  }
  const plans = new WeakMap<object, OpenPlan[]>();

  const sealedColumn = (table: AnyTable, column: string): boolean => Object.hasOwn(table.columns, column);
  /** The blind-index column a sealed column declares (records.seal() computes it). */
  const indexColumn = (table: AnyTable, column: string): string | undefined => table.columns[column]?.index?.column;
  const partitionColumn = (table: AnyTable): string | undefined => (typeof table.partition === 'object' ? table.partition.column : undefined);

  /** Refuses a write whose row cannot be bound: its primary key or partition column is not known. */
  function requireBinding(name: string, table: AnyTable, row: Readonly<Record<string, unknown>>, where: string): void {
    const needed = [...table.primaryKeys, ...[partitionColumn(table)].filter((c): c is string => c !== undefined)];
    const missing = needed.filter((column) => row[column] === undefined || row[column] === null);
    if (missing.length) {
      throw new TypeError(`kms-envelope/kysely: ${where} of ${name} seals a column, so it must give ${missing.join(', ')} (sealed values are bound to their row and partition)`);
    }
  }

  function refuse(name: string, column: string, what: string): never {
    throw new TypeError(`kms-envelope/kysely: ${name}.${column} is sealed: ${what}`);
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

  function transformInsert(node: InsertQueryNode): InsertQueryNode {
    const name = node.into ? tableName(node.into) : undefined;
    const table = name === undefined ? undefined : tables.get(name);
    if (!table || !node.columns) return node;
    const given = node.columns.map((c) => c.column.name);
    const sealedAt = given.flatMap((c, i) => (sealedColumn(table, c) ? [i] : []));
    if (sealedAt.length === 0) return node;
    // The blind indexes of the sealed columns are written too: computed with the seal, in place of any value given.
    const indexOf = new Map<number, number>(); // index column position -> its sealed column's position
    const columns = [...given];
    for (const i of sealedAt) {
      const index = indexColumn(table, given[i]!);
      if (index === undefined) continue;
      let at = columns.indexOf(index);
      if (at < 0) at = columns.push(index) - 1;
      indexOf.set(at, i);
    }
    for (const update of [...(node.onConflict?.updates ?? []), ...(node.onDuplicateKey?.updates ?? [])]) checkUpsert(name!, table, node, update);
    const values = node.values;
    if (!values || values.kind !== 'ValuesNode') refuse(name!, columns[sealedAt[0]!]!, 'an INSERT ... SELECT cannot seal: insert the values');
    const rows = (values as unknown as { values: readonly OperationNode[] }).values.map((list) => {
      const primitive = list.kind === 'PrimitiveValueListNode';
      const items: unknown[] = [...(list as unknown as { values: readonly unknown[] }).values];
      while (items.length < columns.length) items.push(primitive ? null : valueNode(null));
      const plain: Record<string, unknown> = {};
      columns.forEach((column, i) => {
        const item = items[i];
        if (primitive) plain[column] = item;
        else if (is<ValueNode>(item as OperationNode, 'ValueNode') && !(item as ValueNode).immediate) plain[column] = (item as ValueNode).value;
      });
      if (sealedAt.some((i) => plain[columns[i]!] !== null && plain[columns[i]!] !== undefined)) requireBinding(name!, table, plain, 'an INSERT');
      const row = new PendingRow(table, name!, plain);
      const hasValue = (i: number) => plain[columns[i]!] !== null && plain[columns[i]!] !== undefined;
      if (primitive) {
        return {
          ...list,
          values: items.map((item, i) => {
            if (indexOf.has(i)) return hasValue(indexOf.get(i)!) ? new PendingSeal(row, columns[i]!) : null;
            return sealedAt.includes(i) && item !== null && item !== undefined ? new PendingSeal(row, columns[i]!) : item;
          }),
        };
      }
      return {
        ...list,
        values: (items as OperationNode[]).map((item, i) => {
          if (indexOf.has(i)) return valueNode(hasValue(indexOf.get(i)!) ? new PendingSeal(row, columns[i]!) : null);
          return sealedAt.includes(i) ? marked(name!, columns[i]!, item, row) : item;
        }),
      };
    });
    return { ...node, columns: columns.map(columnNode), values: { ...values, values: rows } as OperationNode, ...upsertIndexes(table, node) };
  }

  /** An upsert that takes excluded.<sealed column> takes its blind index from excluded too. */
  function upsertIndexes(table: AnyTable, node: InsertQueryNode): Partial<InsertQueryNode> {
    const updates = node.onConflict?.updates;
    if (!updates) return {};
    const set = new Set(updates.map((u) => columnName(u.column)));
    const added = updates.flatMap((u) => {
      const column = columnName(u.column);
      const index = column === undefined ? undefined : indexColumn(table, column);
      if (index === undefined || set.has(index)) return [];
      return [{ ...u, column: columnNode(index), value: { ...(u.value as ReferenceNode), column: columnNode(index) } }];
    });
    return added.length ? { onConflict: { ...node.onConflict!, updates: [...updates, ...added] } } : {};
  }

  /** An upsert may set a sealed column only to `excluded.<the same column>`, on a conflict over the primary key (the same row). */
  function checkUpsert(name: string, table: AnyTable, node: InsertQueryNode, update: ColumnUpdateNode): void {
    const column = columnName(update.column);
    if (column === undefined || !sealedColumn(table, column)) return;
    const ref = update.value;
    const sameColumn = is<ReferenceNode>(ref, 'ReferenceNode') && columnName(ref) === column && ref.table?.table.identifier.name === 'excluded';
    const conflict = (node.onConflict?.columns ?? []).map((c) => c.column.name).sort();
    const onKey = table.primaryKeys.length > 0 && JSON.stringify(conflict) === JSON.stringify([...table.primaryKeys].sort());
    if (!sameColumn || !onKey) refuse(name, column, `an upsert may set it only to excluded.${column}, on a conflict over the primary key (${table.primaryKeys.join(', ') || 'none declared'})`);
  }

  function transformUpdate(node: UpdateQueryNode): UpdateQueryNode {
    const entry = node.table ? scopeEntry(node.table) : undefined;
    const table = entry ? tables.get(entry.name) : undefined;
    if (!entry || !table || !node.updates) return node;
    const touched = node.updates.filter((u) => {
      const column = columnName(u.column);
      return column !== undefined && sealedColumn(table, column);
    });
    if (touched.length === 0) return node;
    const plain: Record<string, unknown> = { ...equalities(node.where) };
    for (const u of node.updates) {
      const column = columnName(u.column);
      if (column !== undefined && is<ValueNode>(u.value, 'ValueNode') && !u.value.immediate) plain[column] = u.value.value;
    }
    const sealsSomething = touched.some((u) => !is<ValueNode>(u.value, 'ValueNode') || (u.value.value !== null && u.value.value !== undefined));
    if (sealsSomething) requireBinding(entry.name, table, plain, 'an UPDATE (its SET or `key = value` in its WHERE)');
    const row = new PendingRow(table, entry.name, plain);
    const indexes = new Map<string, string>(); // index column -> its sealed column
    for (const u of touched) {
      const column = columnName(u.column)!;
      const index = indexColumn(table, column);
      if (index !== undefined) indexes.set(index, column);
    }
    const indexValue = (index: string) => {
      const value = plain[indexes.get(index)!];
      return valueNode(value === null || value === undefined ? null : new PendingSeal(row, index));
    };
    const updates: ColumnUpdateNode[] = node.updates.map((u) => {
      const column = columnName(u.column);
      if (column !== undefined && indexes.has(column)) return { ...u, value: indexValue(column) };
      if (column === undefined || !sealedColumn(table, column)) return u;
      return { ...u, value: marked(entry.name, column, u.value, row) };
    });
    const present = new Set(node.updates.map((u) => columnName(u.column)));
    for (const index of indexes.keys()) {
      if (!present.has(index)) updates.push({ kind: 'ColumnUpdateNode', column: columnNode(index), value: indexValue(index) } as ColumnUpdateNode);
    }
    return { ...node, updates };
  }

  /** Which result keys hold which declared table's columns, from the scope and the selections. */
  function openPlans(scope: readonly OperationNode[], selections: readonly SelectionNode[] | undefined): OpenPlan[] {
    const entries = scope.map(scopeEntry).filter((e): e is { name: string; ref: string } => e !== undefined);
    const declared = entries.flatMap((e) => {
      const table = tables.get(e.name);
      return table ? [{ ...e, table }] : [];
    });
    if (declared.length === 0 || !selections) return [];
    const relevant = (table: AnyTable): string[] => [...Object.keys(table.columns), ...table.primaryKeys, ...[partitionColumn(table)].filter((c): c is string => c !== undefined)];
    const plans = declared.map((d) => ({ ...d, keys: new Map<string, string>() }));
    const all = (plan: (typeof plans)[number]) => {
      for (const column of relevant(plan.table)) plan.keys.set(column, column);
    };
    for (const { selection } of selections) {
      let target: OperationNode = selection;
      let alias: string | undefined;
      if (is<AliasNode>(target, 'AliasNode')) {
        alias = (target.alias as { name?: string }).name;
        target = target.node;
      }
      if (target.kind === 'SelectAllNode') {
        plans.forEach(all);
        continue;
      }
      if (!is<ReferenceNode>(target, 'ReferenceNode')) continue;
      const qualifier = target.table?.table.identifier.name;
      const owners = plans.filter((p) => qualifier === undefined || p.ref === qualifier);
      if (target.column.kind === 'SelectAllNode') {
        owners.forEach(all);
        continue;
      }
      const column = (target.column as ColumnNode).column.name;
      for (const plan of owners) if (relevant(plan.table).includes(column)) plan.keys.set(column, alias ?? column);
    }
    const active = plans.filter((p) => Object.keys(p.table.columns).some((c) => p.keys.has(c)));
    for (const plan of active) {
      const missing = relevant(plan.table).filter((c) => !Object.hasOwn(plan.table.columns, c) && !plan.keys.has(c));
      if (missing.length) {
        throw new TypeError(`kms-envelope/kysely: a query that reads sealed columns of ${plan.name} must select ${missing.join(', ')} too (sealed values are bound to their row and partition)`);
      }
    }
    return active.map(({ table, keys }) => ({ table, keys }));
  }

  function transformQuery({ node, queryId }: PluginTransformQueryArgs): RootOperationNode {
    let out: RootOperationNode = node;
    let found: OpenPlan[] = [];
    switch (node.kind) {
      case 'InsertQueryNode': {
        out = transformInsert(node);
        if (node.into) found = openPlans([node.into], node.returning?.selections);
        break;
      }
      case 'UpdateQueryNode': {
        out = transformUpdate(node);
        if (node.table) found = openPlans([node.table, ...(node.from?.froms ?? []), ...(node.joins ?? []).map((j) => j.table)], node.returning?.selections);
        break;
      }
      case 'DeleteQueryNode':
        found = openPlans([...node.from.froms, ...(node.joins ?? []).map((j) => j.table)], node.returning?.selections);
        break;
      case 'SelectQueryNode':
        found = openPlans([...(node.from?.froms ?? []), ...(node.joins ?? []).map((j) => j.table)], node.selections);
        break;
    }
    if (found.length) plans.set(queryId, found);
    return out;
  }

  async function transformResult({ result, queryId }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const found = plans.get(queryId);
    if (!found || !result.rows?.length) return result;
    const rows = result.rows.map((row) => ({ ...row }));
    for (const { table, keys } of found) {
      const inputs = rows.map((row) => {
        const input: Record<string, unknown> = {};
        for (const [column, key] of keys) input[column] = row[key];
        return input;
      });
      const opened = await records.openMany(table, inputs as SealedRow<Record<string, FieldSpec>>[], { failFast: true });
      opened.forEach((r, i) => {
        if (!r.ok) throw r.error;
        for (const column of Object.keys(table.columns)) {
          const key = keys.get(column);
          if (key !== undefined) rows[i]![key] = r.value[column];
        }
      });
    }
    return { ...result, rows };
  }

  /** The compiled query with every PendingSeal sealed. */
  async function sealParameters(query: CompiledQuery): Promise<CompiledQuery> {
    if (!query.parameters.some((p) => p instanceof PendingSeal)) return query;
    const parameters = await Promise.all(query.parameters.map((p) => (p instanceof PendingSeal ? p.seal(records) : p)));
    return { ...query, parameters: Object.freeze(parameters) };
  }

  function wrapConnection(connection: DatabaseConnection): DatabaseConnection {
    return {
      executeQuery: async (query) => connection.executeQuery(await sealParameters(query)),
      streamQuery: async function* (query, chunkSize) {
        yield* connection.streamQuery(await sealParameters(query), chunkSize);
      },
    };
  }

  function wrapDriver(driver: Driver): Driver {
    const inner = new WeakMap<DatabaseConnection, DatabaseConnection>();
    const unwrap = (arg: unknown): unknown => (typeof arg === 'object' && arg !== null && inner.get(arg as DatabaseConnection)) || arg;
    return new Proxy(driver, {
      get(target, property) {
        if (property === 'acquireConnection') {
          return async () => {
            const connection = await target.acquireConnection();
            const wrapped = wrapConnection(connection);
            inner.set(wrapped, connection);
            return wrapped;
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (...args: unknown[]) => (value as (...a: unknown[]) => unknown).apply(target, args.map(unwrap)) : value;
      },
    });
  }

  return {
    transformQuery,
    transformResult,
    dialect(dialect: Dialect): Dialect {
      if (!dialect || typeof dialect.createDriver !== 'function') throw new TypeError('dialect() expected a Kysely dialect');
      return {
        createDriver: () => wrapDriver(dialect.createDriver()),
        createQueryCompiler: () => dialect.createQueryCompiler(),
        createAdapter: () => dialect.createAdapter(),
        createIntrospector: (db) => dialect.createIntrospector(db),
      };
    },
  };
}
