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
import type { Dialect, KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, QueryResult, RootOperationNode, UnknownRow } from 'kysely';
import type { Records, Table } from '../records.ts';
import { sealingDialect } from './kysely-dialect.ts';
import type { AnyTable } from './kysely-pending.ts';
import { type OpenPlan, openResult, plansOf } from './kysely-reads.ts';
import { tablesOf } from './kysely-tables.ts';
import { markInsert, markUpdate } from './kysely-writes.ts';

export { PendingSeal } from './kysely-pending.ts';

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

export function kyselyEncryption(options: KyselyEncryptionOptions): KyselyEncryption {
  return new KyselyEncryptionPlugin(options.records, tablesOf(options.tables));
}

/**
 * The plugin: the declared tables and the open plans of the queries in flight in private fields.
 * Its members are own properties, bound.
 */
class KyselyEncryptionPlugin implements KyselyEncryption {
  readonly #records: Records;
  readonly #tables: ReadonlyMap<string, AnyTable>;
  readonly #plans = new WeakMap<object, OpenPlan[]>();

  constructor(records: Records, tables: ReadonlyMap<string, AnyTable>) {
    this.#records = records;
    this.#tables = tables;
  }

  readonly transformQuery = ({ node, queryId }: PluginTransformQueryArgs): RootOperationNode => {
    let out: RootOperationNode = node;
    if (node.kind === 'InsertQueryNode') out = markInsert(this.#tables, node);
    else if (node.kind === 'UpdateQueryNode') out = markUpdate(this.#tables, node);
    const found = plansOf(this.#tables, node);
    if (found.length) this.#plans.set(queryId, found);
    return out;
  };

  readonly transformResult = async ({ result, queryId }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> => {
    const found = this.#plans.get(queryId);
    if (!found || !result.rows?.length) return result;
    return openResult(this.#records, found, result);
  };

  readonly dialect = (dialect: Dialect): Dialect => sealingDialect(this.#records, dialect);
}
