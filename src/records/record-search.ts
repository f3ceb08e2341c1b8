/**
 * The range and prefix indexes the record API keeps for a table's columns (`search` in
 * defineTable): one per table, column and kind, made on first use; the tokens of a row; the SQL of
 * a query and the exact filter of its candidates.
 */
import { describe } from '../core/bytes.ts';
import type { KeyHierarchy } from '../hierarchy.ts';
import { partitionOf } from './binding.ts';
import { createSearchIndex, type SearchCondition, type SearchIndex, type SearchQuery } from './search-index.ts';
import type { RangeIndexOptions, SearchIndexOptions } from './search-options.ts';
import { type SearchDialect, searchSql } from './search-sql.ts';
import type { SearchKind } from './search-tokens.ts';
import { type AnyTable, type FieldSpec, type Row, type SearchIndexSpec, searchSpecsOf } from './table.ts';

export interface SearchSqlOptions {
  partition: string;
  dialect: SearchDialect;
  /** The SQL table, when its name is not the table's logical name. */
  from?: string;
  /** PostgreSQL: the number of the first placeholder (default 1). */
  firstParam?: number;
  /**
   * At most this many candidates: the fragment then finds the first rows only, reading the
   * tokens one at a time, widest bucket first, and the database stops there instead of collecting
   * every match first (a GIN index answers only with a bitmap of all the rows it finds: 10,000
   * for a range of 1% of 1,000,000 rows). `WHERE ${sql}` then needs no LIMIT of its own. No row is
   * a candidate twice. PostgreSQL needs a one-column `primaryKey` (the fragment is `key = ANY
   * (ARRAY(…))`); SQLite reads its token table's rowids.
   */
  limit?: number;
  /** With `limit`: skip this many candidates first, for the next page (the same order while the rows do not change). */
  offset?: number;
}

/** A query as SQL: `WHERE ${sql}` with `params` finds the candidates; openMatching keeps the exact matches. */
export interface SearchSql extends SearchQuery {
  readonly table: string;
  readonly column: string;
  readonly sql: string;
  readonly params: readonly unknown[];
}

function rangeDomain(field: FieldSpec, spec: SearchIndexSpec): RangeIndexOptions['domain'] {
  if (field.type === 'number') return spec.kind === 'range' && spec.domain === 'float64' ? 'float64' : 'integer';
  return field.type === 'date' ? 'date' : field.type === 'decimal' ? 'decimal' : 'integer';
}

function optionsOf(hierarchy: KeyHierarchy, t: AnyTable, column: string, spec: SearchIndexSpec): SearchIndexOptions {
  const field = t.columns[column]!;
  const { column: _target, storage: _storage, ...rest } = spec;
  const common = { ...rest, hierarchy, table: t.name, column: field.id ?? column };
  if (spec.kind !== 'range') return common as SearchIndexOptions;
  return { ...common, domain: rangeDomain(field, spec), ...(field.type === 'decimal' ? { scale: field.scale } : {}) } as SearchIndexOptions;
}

function conditionKind(condition: SearchCondition): SearchKind {
  if (typeof condition !== 'object' || condition === null) return 'range';
  return 'startsWith' in condition ? 'prefix' : 'contains' in condition ? 'contains' : 'range';
}

/** Every (column, spec) pair of a table's search indexes, in column order: a table is defined once and never changes. */
const searchEntries = new WeakMap<AnyTable, readonly (readonly [string, SearchIndexSpec])[]>();
function searchEntriesOf(t: AnyTable): readonly (readonly [string, SearchIndexSpec])[] {
  let all = searchEntries.get(t);
  if (!all) {
    all = Object.keys(t.columns).flatMap((c) => searchSpecsOf(t.columns[c]!).map((s) => [c, s] as const));
    searchEntries.set(t, all);
  }
  return all;
}

const count = (name: string, value: unknown, least: number): number => {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < least) throw new TypeError(`"${name}" expected an integer of at least ${least}, got ${describe(value)}`);
  return value;
};

/** The limit and offset of a query that finds its first candidates only, checked; none without a limit. */
function pageOf(t: AnyTable, options: SearchSqlOptions): { limit?: number; offset?: number; primaryKey?: string } {
  if (options.limit === undefined) {
    if (options.offset !== undefined) throw new TypeError('"offset" needs a "limit"');
    return {};
  }
  const page = { limit: count('limit', options.limit, 1), offset: count('offset', options.offset ?? 0, 0) };
  if (options.dialect === 'sqlite') return page;
  if (t.primaryKeys.length !== 1) throw new TypeError(`a PostgreSQL search with a "limit" needs a table with a one-column primaryKey; ${t.name} has ${t.primaryKeys.length}`);
  return { ...page, primaryKey: t.primaryKeys[0]! };
}

export class RecordSearch {
  readonly #hierarchy: KeyHierarchy;
  /** Per table and column, per spec object: two declarations of one table (versions 1 and 2 during a re-index) have indexes of their own. */
  readonly #indexes = new Map<string, Map<SearchIndexSpec, SearchIndex>>();

  constructor(hierarchy: KeyHierarchy) {
    this.#hierarchy = hierarchy;
  }

  /** The index of a column's spec. */
  of(t: AnyTable, column: string, spec: SearchIndexSpec): SearchIndex {
    const id = `${t.name}\u0000${column}`;
    let bySpec = this.#indexes.get(id);
    if (!bySpec) this.#indexes.set(id, (bySpec = new Map()));
    let index = bySpec.get(spec);
    if (!index) {
      index = createSearchIndex(optionsOf(this.#hierarchy, t, column, spec));
      bySpec.set(spec, index);
    }
    return index;
  }

  /** The spec of a column's index of a kind (a TypeError when it has none). */
  specOf(t: AnyTable, column: string, kind: SearchKind): SearchIndexSpec {
    const field = t.columns[column];
    const spec = field && searchSpecsOf(field).find((s) => s.kind === kind);
    if (!spec) throw new TypeError(`${t.name}.${column} has no ${kind} index (search: { kind: "${kind}", … } in defineTable)`);
    return spec;
  }

  /** The (column, spec) pairs of the row's values that have search indexes. */
  entriesOf(t: AnyTable, row: Row): readonly (readonly [string, SearchIndexSpec])[] {
    const all = searchEntriesOf(t);
    // Most tables have no search index: nothing is made per row for them.
    return all.length === 0 ? all : all.filter(([c]) => row[c] !== null && row[c] !== undefined);
  }

  /** The tokens as the row stores them. */
  stored(spec: SearchIndexSpec, tokens: number[]): unknown {
    return spec.storage === 'json' ? JSON.stringify(tokens) : tokens;
  }

  tokensSync(t: AnyTable, column: string, spec: SearchIndexSpec, value: unknown, partition: string): unknown {
    return this.stored(spec, this.of(t, column, spec).tokensSync(value, { partition }));
  }

  async tokens(t: AnyTable, column: string, spec: SearchIndexSpec, value: unknown, partition: string): Promise<unknown> {
    return this.stored(spec, await this.of(t, column, spec).tokens(value, { partition }));
  }

  /** A condition's kind: `startsWith` is a prefix query, `contains` a contains query, bounds a range query. */
  async query(t: AnyTable, column: string, condition: SearchCondition, options: SearchSqlOptions): Promise<SearchSql> {
    const kind = conditionKind(condition);
    const spec = this.specOf(t, column, kind);
    const q = await this.of(t, column, spec).query(condition, { partition: options.partition });
    if (options.dialect !== 'postgres' && options.dialect !== 'sqlite') throw new TypeError(`"dialect" expected "postgres" or "sqlite", got ${JSON.stringify(options.dialect)}`);
    const partitionColumn = typeof t.partition === 'object' ? t.partition.column : undefined;
    const page = pageOf(t, options);
    const { sql, params } = searchSql({ dialect: options.dialect, from: options.from ?? t.name, tokenColumn: spec.column, partitionColumn, partition: q.partition, tokens: q.tokens, widestFirst: q.widestFirst, match: q.match, firstParam: options.firstParam ?? 1, ...page });
    return Object.freeze({ kind: q.kind, partition: q.partition, tokens: q.tokens, widestFirst: q.widestFirst, match: q.match, matches: q.matches, table: t.name, column, sql, params: Object.freeze(params) });
  }

  /** Whether an opened row is an exact match: the query's partition, and a value that meets the condition. */
  keeps(t: AnyTable, query: SearchSql, row: Row): boolean {
    let partition: string;
    try {
      partition = partitionOf(t, row);
    } catch {
      return false;
    }
    return partition === query.partition && query.matches(row[query.column]);
  }

  async warm(partitions: readonly string[], tables: readonly AnyTable[]): Promise<void> {
    for (const t of tables) for (const [column, field] of Object.entries(t.columns)) for (const spec of searchSpecsOf(field)) this.of(t, column, spec);
    await Promise.all([...this.#indexes.values()].flatMap((bySpec) => [...bySpec.values()]).map((index) => index.warm(partitions)));
  }
}
