/**
 * Range and prefix indexes (FORMAT.md §11a): keyed tokens of a column's values, stored as a set
 * beside the sealed value, so that a database finds candidate rows of a range or a prefix by
 * token overlap (PostgreSQL `&&` on an array with a GIN index; SQLite a token table). Candidates
 * are opened and filtered exactly: truncation and coarse buckets cost only extra rows.
 *
 * The keys come from the key hierarchy's partition `${partition}#search`, version = the index
 * version, one column key per (MAC, table, column, kind, partition): rotating data keys changes no
 * token, and shredding the tenant shreds them.
 */
import { describe, wipe } from '../core/bytes.ts';
import { ClosedError, KeyNotWarmError, PartitionShreddedError } from '../core/errors.ts';
import type { SuiteKey } from '../core/key-source.ts';
import { checkPartition, ColumnKeyCache, IndexKeyLoader, SEARCH_PARTITION_SUFFIX } from './blind-index-keys.ts';
import { normalizeValue } from './blind-index-values.ts';
import { UnsupportedQueryError } from './unsupported-query.ts';
import { type Bucket, bucketsOf, rangeCover } from './search-cover.ts';
import { domainBounds, rangeKey } from './search-levels.ts';
import { containsQueryMessages, containsValueMessages } from './search-grams.ts';
import { type ContainsSettings, type PrefixSettings, type RangeSettings, resolveSearchOptions, type SearchIndexOptions, type SearchIndexWarning, type SearchSettings } from './search-options.ts';
import { gramMessage, gramPadMessage, padMessage, prefixMessage, rangeMessage, searchInfo, type SearchKind, tokenOf } from './search-tokens.ts';

/** A range: any of the four bounds (none: the whole domain). */
export interface RangeCondition {
  gte?: unknown;
  gt?: unknown;
  lte?: unknown;
  lt?: unknown;
}
export interface PrefixCondition {
  startsWith: string;
}
/** A contains query (an n-gram index): the rows whose normalised value includes the normalised term. */
export interface ContainsCondition {
  contains: string;
}
export type SearchCondition = RangeCondition | PrefixCondition | ContainsCondition;

export interface SearchCallOptions {
  partition?: string;
}

/** The tokens of a query and its exact filter, for one partition. */
export interface SearchQuery {
  readonly kind: SearchKind;
  readonly partition: string;
  /** The tokens to look up: a row is a candidate when it holds any of them (`any`: range, prefix) or all of them (`all`: contains). */
  readonly tokens: readonly number[];
  readonly match: 'any' | 'all';
  /**
   * The same tokens, the widest bucket's first (range: coarsest level first; prefix and contains:
   * as `tokens`): the order a query with a `limit` reads them in, so that the first rows come from
   * the fewest buckets. It tells the database no more than the posting sizes do (a wider bucket
   * holds more rows).
   */
  readonly widestFirst: readonly number[];
  /** The exact filter of an opened value: candidates that fail it are truncation or bucket false positives. */
  matches(value: unknown): boolean;
}

export interface SearchIndex {
  readonly kind: SearchKind;
  readonly table: string;
  readonly column: string;
  readonly bits: number;
  readonly version: number;
  /** The MAC's name: `HMAC-SHA-256` or `HMAC-SM3`. */
  readonly mac: string;
  /** Tokens each value has (levels, or maxLength − minLength + 1 prefixes or grams). */
  readonly tokensPerValue: number;
  readonly warnings: readonly SearchIndexWarning[];
  /** The tokens to store for a value, sorted ascending (the level or length of each is not in its place). */
  tokens(value: unknown, options?: SearchCallOptions): Promise<number[]>;
  /** tokens(), synchronously once the partition's key is warm (else a KeyNotWarmError, ERR_KEY_NOT_WARM). */
  tokensSync(value: unknown, options?: SearchCallOptions): number[];
  query(condition: SearchCondition, options?: SearchCallOptions): Promise<SearchQuery>;
  querySync(condition: SearchCondition, options?: SearchCallOptions): SearchQuery;
  /** Whether a plaintext value meets the condition (the exact filter, no key needed). */
  matches(value: unknown, condition: SearchCondition): boolean;
  warm(partitions: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

/** Creates a range or prefix index (README "Range and prefix search", FORMAT.md §11a). */
export function createSearchIndex(options: SearchIndexOptions): SearchIndex {
  return new HierarchySearchIndex(resolveSearchOptions(options));
}

/** The messages of one value or query, and its exact filter. */
interface Plan {
  readonly messages: Uint8Array[];
  readonly matches?: (value: unknown) => boolean;
}

const closed = (): ClosedError => Object.assign(new ClosedError(), { message: 'the search index is closed' });

class HierarchySearchIndex implements SearchIndex {
  readonly kind: SearchKind;
  readonly table: string;
  readonly column: string;
  readonly bits: number;
  readonly version: number;
  readonly mac: string;
  readonly tokensPerValue: number;
  readonly warnings: readonly SearchIndexWarning[];
  readonly #s: SearchSettings;
  readonly #keys: ColumnKeyCache;
  readonly #loader: IndexKeyLoader;
  #closed = false;

  constructor(s: SearchSettings) {
    this.#s = s;
    const derive = (root: Uint8Array, partition: string, out: Uint8Array): void => s.mac.expand(root, [searchInfo(s.mac.name, s.table, s.column, s.kind, partition)], [out]);
    this.#keys = new ColumnKeyCache(s.backend, s.table, s.column, s.maxKeys, derive);
    this.#loader = new IndexKeyLoader(s.keys, s.hierarchy, s.version, SEARCH_PARTITION_SUFFIX);
    this.kind = s.kind;
    this.table = s.table;
    this.column = s.column;
    this.bits = s.bits;
    this.version = s.version;
    this.mac = s.mac.name;
    this.tokensPerValue = s.kind === 'range' ? s.levels.length : s.maxLength - s.minLength + 1;
    this.warnings = s.warnings;
    const description = `SearchIndex { kind: "${this.kind}", table: ${JSON.stringify(this.table)}, column: ${JSON.stringify(this.column)}, bits: ${this.bits}, version: ${this.version}, mac: "${this.mac}" }`;
    Object.assign(this, { toString: () => description, [Symbol.for('nodejs.util.inspect.custom')]: () => description });
    Object.freeze(this);
  }

  readonly tokens = async (value: unknown, call?: SearchCallOptions): Promise<number[]> => sorted(await this.#run(this.#valuePlan(value), call));
  readonly tokensSync = (value: unknown, call?: SearchCallOptions): number[] => sorted(this.#runSync(this.#valuePlan(value), call));

  readonly query = async (condition: SearchCondition, call?: SearchCallOptions): Promise<SearchQuery> => {
    const plan = this.#queryPlan(condition);
    return this.#answer(plan, await this.#run(plan, call), call);
  };

  readonly querySync = (condition: SearchCondition, call?: SearchCallOptions): SearchQuery => {
    const plan = this.#queryPlan(condition);
    return this.#answer(plan, this.#runSync(plan, call), call);
  };

  readonly matches = (value: unknown, condition: SearchCondition): boolean => {
    const plan = this.#queryPlan(condition);
    for (const m of plan.messages) wipe(m);
    return plan.matches!(value);
  };

  readonly warm = async (partitions: readonly string[]): Promise<void> => {
    if (this.#closed) throw closed();
    if (!Array.isArray(partitions)) throw new TypeError(`"partitions" expected an array, got ${describe(partitions)}`);
    await Promise.all(partitions.map(async (p: unknown) => this.#keys.get(checkPartition(p), await this.#loader.load(checkPartition(p)))));
  };

  readonly close = async (): Promise<void> => {
    this.#closed = true;
    this.#keys.clear();
  };

  #answer(plan: Plan, tokens: number[], call: SearchCallOptions | undefined): SearchQuery {
    const match = this.kind === 'contains' ? 'all' : 'any';
    const widestFirst = Object.freeze([...new Set(tokens)]);
    return Object.freeze({ kind: this.kind, partition: this.#partitionOf(call), tokens: Object.freeze([...widestFirst].sort((a, b) => a - b)), match, widestFirst, matches: plan.matches! });
  }

  #partitionOf(call: SearchCallOptions | undefined): string {
    return checkPartition(call?.partition ?? this.#s.defaultPartition);
  }

  async #run(plan: Plan, call: SearchCallOptions | undefined): Promise<number[]> {
    if (this.#closed) throw closed();
    const partition = this.#partitionOf(call);
    try {
      const got = this.#loader.peek(partition);
      const key = got instanceof Promise ? await this.#loader.load(partition, got) : got;
      if (this.#closed) throw closed();
      return this.#mac(partition, key, plan.messages);
    } catch (error) {
      this.#dropIfShredded(partition, error);
      throw error;
    } finally {
      for (const m of plan.messages) wipe(m);
    }
  }

  #runSync(plan: Plan, call: SearchCallOptions | undefined): number[] {
    try {
      if (this.#closed) throw closed();
      const partition = this.#partitionOf(call);
      const got = this.#loader.peek(partition);
      if (got instanceof Promise) {
        got.catch((error: unknown) => this.#dropIfShredded(partition, error));
        throw new KeyNotWarmError(`${this.#s.label} (partition ${JSON.stringify(partition)}, version ${this.version})`);
      }
      return this.#mac(partition, got, plan.messages);
    } finally {
      for (const m of plan.messages) wipe(m);
    }
  }

  #mac(partition: string, suiteKey: SuiteKey, messages: readonly Uint8Array[]): number[] {
    const key = this.#keys.get(partition, suiteKey);
    return messages.map((m) => {
      const digest = this.#s.mac.mac(key, m);
      const token = tokenOf(digest, this.bits);
      wipe(digest);
      return token;
    });
  }

  #valuePlan(value: unknown): Plan {
    const s = this.#s;
    if (s.kind === 'range') {
      const key = rangeKey(s.domain, value, s.scale, `${s.table}.${s.column}`);
      if (key < s.min || key > s.max) throw new RangeError(`${s.table}.${s.column}: the value is outside the index's bounds`);
      return { messages: bucketsOf(s.levels, key).map((b) => rangeMessage(s.levels[b.level]!.name, b.bucket)) };
    }
    const text = normalizedText(s, value);
    if (s.kind === 'contains') return { messages: containsValueMessages(text, s.minLength, s.maxLength, `${s.table}.${s.column}`) };
    const points = Array.from(text);
    const messages: Uint8Array[] = [];
    for (let n = s.minLength; n <= s.maxLength; n++) messages.push(n <= points.length ? prefixMessage(points.slice(0, n).join('')) : padMessage(n, text));
    return { messages };
  }

  #queryPlan(condition: SearchCondition): Plan {
    if (typeof condition !== 'object' || condition === null) throw new TypeError(`a ${this.kind} query expected a condition object, got ${describe(condition)}`);
    const s = this.#s;
    return s.kind === 'range' ? rangePlan(s, condition as RangeCondition) : s.kind === 'prefix' ? prefixPlan(s, condition as PrefixCondition) : containsPlan(s, condition as ContainsCondition);
  }

  #dropIfShredded(partition: string, error: unknown): void {
    if (error instanceof PartitionShreddedError) this.#keys.drop(partition);
  }
}

function sorted(tokens: number[]): number[] {
  return tokens.sort((a, b) => a - b);
}

function normalizedText(s: PrefixSettings | ContainsSettings, value: unknown): string {
  const where = `${s.table}.${s.column}`;
  if (typeof value !== 'string') throw new TypeError(`${where} expected a string for its ${s.kind} index, got ${describe(value)}`);
  const text = normalizeValue(value, s.chain, where);
  if (typeof text !== 'string') throw new TypeError(`${where}: a normaliser made ${describe(text)} of a string`);
  return text;
}

/** [lo, hi] in keys from a condition's bounds; undefined bounds are the domain's ends (the index's bounds clamp the cover, not this). */
function rangeBounds(s: RangeSettings, c: RangeCondition): [bigint, bigint] {
  const known = ['gte', 'gt', 'lte', 'lt'];
  if (Object.keys(c).some((k) => !known.includes(k))) throw new TypeError(`a range query takes gte, gt, lte and lt, got ${Object.keys(c).join(', ')}`);
  if (c.gte !== undefined && c.gt !== undefined) throw new TypeError('give "gte" or "gt", not both');
  if (c.lte !== undefined && c.lt !== undefined) throw new TypeError('give "lte" or "lt", not both');
  const where = `a query of ${s.table}.${s.column}`;
  let [lo, hi] = domainBounds(s.domain);
  if (c.gte !== undefined) lo = rangeKey(s.domain, c.gte, s.scale, where);
  if (c.gt !== undefined) lo = rangeKey(s.domain, c.gt, s.scale, where) + 1n;
  if (c.lte !== undefined) hi = rangeKey(s.domain, c.lte, s.scale, where);
  if (c.lt !== undefined) hi = rangeKey(s.domain, c.lt, s.scale, where) - 1n;
  return [lo, hi];
}

/** The cover of [lo, hi] within the index's bounds; ERR_UNSUPPORTED_QUERY when it needs more than maxQueryTokens. */
function boundedCover(s: RangeSettings, c: RangeCondition, lo: bigint, hi: bigint): Bucket[] {
  try {
    return rangeCover(s.levels, lo > s.min ? lo : s.min, hi < s.max ? hi : s.max, s.maxQueryTokens);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    const open = c.gte === undefined && c.gt === undefined && !s.declared.min ? 'a range with no lower bound' : c.lte === undefined && c.lt === undefined && !s.declared.max ? 'a range with no upper bound' : 'a range this wide';
    throw new UnsupportedQueryError(`${s.table}.${s.column}`, open, `${error.message}; or declare the column's bounds ({ min, max }) so that an open end stops there`);
  }
}

function rangePlan(s: RangeSettings, c: RangeCondition): Plan {
  const [lo, hi] = rangeBounds(s, c);
  const cover = boundedCover(s, c, lo, hi);
  const matches = (value: unknown): boolean => {
    let key: bigint;
    try {
      key = rangeKey(s.domain, value, s.scale, 'value');
    } catch {
      return false;
    }
    return key >= lo && key <= hi;
  };
  // Widest first (the sort is stable: left to right within a level), for a query with a limit.
  const widestFirst = [...cover].sort((a, b) => b.level - a.level);
  return { messages: widestFirst.map((b) => rangeMessage(s.levels[b.level]!.name, b.bucket)), matches };
}

function prefixPlan(s: PrefixSettings, c: PrefixCondition): Plan {
  if (Object.keys(c).length !== 1 || typeof c.startsWith !== 'string') throw new TypeError('a prefix query takes { startsWith: string }');
  const term = normalizedText(s, c.startsWith);
  const points = Array.from(term);
  if (points.length < s.minLength) throw new RangeError(`a prefix query of ${s.table}.${s.column} needs at least ${s.minLength} characters (after normalisation), got ${points.length}`);
  const matches = (value: unknown): boolean => {
    try {
      return normalizedText(s, value).startsWith(term);
    } catch {
      return false;
    }
  };
  return { messages: [prefixMessage(points.slice(0, Math.min(points.length, s.maxLength)).join(''))], matches };
}

function containsPlan(s: ContainsSettings, c: ContainsCondition): Plan {
  if (Object.keys(c).length !== 1 || typeof c.contains !== 'string') throw new TypeError('a contains query takes { contains: string }');
  const term = normalizedText(s, c.contains);
  const messages = containsQueryMessages(term, s.minLength, s.maxLength, `${s.table}.${s.column}`);
  const matches = (value: unknown): boolean => {
    try {
      return normalizedText(s, value).includes(term);
    } catch {
      return false;
    }
  };
  return { messages, matches };
}

/** For tests only: the pieces of FORMAT.md §11a. */
export const testing = Object.freeze({ searchInfo, rangeMessage, prefixMessage, padMessage, gramMessage, gramPadMessage, tokenOf, rangeCover, rangeKey });
