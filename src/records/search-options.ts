/**
 * The options of range and prefix indexes (README "Range and prefix search"), checked and resolved
 * once: the acknowledgement of what the kind leaks, the refusals of the schemes that leak more
 * (order-preserving and order-revealing encryption, deterministic encryption, unkeyed hashes), the
 * MAC, the levels or prefix lengths, and the warnings.
 */
import type { CryptoBackend } from '../core/backend.ts';
import { describe, utf8 } from '../core/bytes.ts';
import { hmacSha256 as nobleHmacSha256 } from '../core/hashes.ts';
import { type KeySource, keySourceOf } from '../core/key-source.ts';
import { type BackendName, selectBackend } from '../core/select-backend.ts';
import type { TokenMac } from '../core/token-mac.ts';
import type { KeyHierarchy } from '../hierarchy.ts';
import { checkPartition } from './blind-index-keys.ts';
import { type BlindIndexNormalizer, normalizerChain, type NormalizerFn } from './blind-index-values.ts';
import { type DateLevel, domainBounds, type Level, type RangeDomain, rangeKey, type RangeValue, resolveLevels } from './search-levels.ts';
import { searchInfo, type SearchKind } from './search-tokens.ts';

export interface SearchIndexWarning {
  /** `dictionary`: the finest tokens name single values (or whole short values): an equality index of them. */
  code: 'dictionary';
  message: string;
}

interface SearchBaseOptions {
  /** The key hierarchy whose partition `${partition}#search` holds the index keys. */
  hierarchy: KeyHierarchy;
  /** The table's logical id (part of the key). */
  table: string;
  /** The column's logical id (part of the key). */
  column: string;
  /**
   * Required: the index's kind named again, to say that you have read what it leaks (README
   * "Range and prefix search": which values share a bucket or a prefix, and the order of buckets).
   */
  acknowledgeLeakage: SearchKind;
  /** Token bits, 16 to 52 (default 32): fewer bits blur the snapshot and let more candidates through the exact filter. */
  bits?: number;
  /** The index version, 1 to 2^32-1 (default 1); a new version (or MAC, levels, lengths) is a re-index. */
  version?: number;
  /** HMAC-SHA-256 by default; `hmacSm3Tokens` from kms-envelope/sm4 for the Chinese commercial profile. */
  mac?: TokenMac;
  /** The partition (tenant) used when a call names none. */
  partition?: string;
  onWarning?: (warning: SearchIndexWarning) => void;
  backend?: BackendName;
  /** Column keys held at once, one per partition (default 10000). */
  maxCachedKeys?: number;
}

export interface RangeIndexOptions extends SearchBaseOptions {
  kind: 'range';
  /** `integer` (safe integers, bigints), `decimal` (strings at `scale`), `date`, or `float64` (numbers, by the order-preserving map of FORMAT.md §11a.2). */
  domain: RangeDomain;
  /** Finest first: bucket widths as powers of two (`[0, 8, 16]`), or for dates some of `day`, `month`, `year`. */
  levels: readonly (number | DateLevel)[];
  /** Decimal places of a `decimal` domain (0 to 38). */
  scale?: number;
  /** The most tokens a query may have (default 64; FORMAT.md §11a.3). */
  maxQueryTokens?: number;
  /**
   * The least and greatest values the column holds (either or both): a value outside is refused,
   * and a query with no lower (upper) bound runs up to these instead of the domain's end, so that
   * `{ gte: x }` alone has a small cover. Without them an open-ended query whose cover needs more
   * than maxQueryTokens tokens is refused (ERR_UNSUPPORTED_QUERY).
   */
  bounds?: { min?: RangeValue; max?: RangeValue };
  /** The number of distinct values the column is expected to hold, for the dictionary warning (with both bounds declared). */
  expectedDistinctValues?: number;
}

export interface PrefixIndexOptions extends SearchBaseOptions {
  kind: 'prefix';
  /** The shortest prefix a query may use (at least 1). */
  minLength: number;
  /** The longest prefix stored; every value gets maxLength − minLength + 1 tokens (at most 32), padded with dummies. */
  maxLength: number;
  /** The blind-index normalisers, applied to values and search terms alike. */
  normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[];
  /** The length of typical values, for the dictionary warning (default 8). */
  expectedValueLength?: number;
}

/**
 * An n-gram index for `contains` (opt-in: it reveals more than a prefix index, README "Range and
 * prefix search"): each value's distinct substrings of `minLength` code points, padded with
 * dummies to maxLength − minLength + 1 tokens; a value longer than `maxLength` is refused.
 */
export interface ContainsIndexOptions extends SearchBaseOptions {
  kind: 'contains';
  /** n, the gram length (2 to 16), and so the shortest term a `contains` query may use. */
  minLength: number;
  /** The longest value indexed, in code points (longer values are refused); every value gets maxLength − minLength + 1 tokens (at most 256). */
  maxLength: number;
  /** The blind-index normalisers, applied to values and search terms alike. */
  normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[];
  /** The length of typical values, for the dictionary warning (default 8). */
  expectedValueLength?: number;
}

export type SearchIndexOptions = RangeIndexOptions | PrefixIndexOptions | ContainsIndexOptions;

interface CommonSettings {
  readonly keys: KeySource;
  readonly hierarchy: KeyHierarchy;
  readonly table: string;
  readonly column: string;
  readonly bits: number;
  readonly version: number;
  readonly mac: TokenMac;
  readonly defaultPartition: string | undefined;
  readonly maxKeys: number;
  readonly backend: CryptoBackend;
  readonly label: string;
  readonly warnings: readonly SearchIndexWarning[];
}
export interface RangeSettings extends CommonSettings {
  readonly kind: 'range';
  readonly domain: RangeDomain;
  readonly scale: number;
  readonly levels: readonly Level[];
  readonly maxQueryTokens: number;
  /** The keys of `bounds` (or the domain's ends), and whether each was declared. */
  readonly min: bigint;
  readonly max: bigint;
  readonly declared: { readonly min: boolean; readonly max: boolean };
}
export interface PrefixSettings extends CommonSettings {
  readonly kind: 'prefix';
  readonly minLength: number;
  readonly maxLength: number;
  readonly chain: readonly NormalizerFn[];
}
export interface ContainsSettings extends CommonSettings {
  readonly kind: 'contains';
  /** The gram length n. */
  readonly minLength: number;
  readonly maxLength: number;
  readonly chain: readonly NormalizerFn[];
}
export type SearchSettings = RangeSettings | PrefixSettings | ContainsSettings;

/** Kinds asked for by names of schemes we refuse, and why (README "Why not OPE, ORE, deterministic encryption or plain hashes"). */
const REFUSED: Readonly<Record<string, string>> = {
  ope: 'order-preserving encryption stores the order of every pair of values, and a snapshot with a few known values recovers most of the rest (Naveed, Kamara, Wright, CCS 2015; Grubbs et al., S&P 2017)',
  ore: 'order-revealing encryption lets anyone holding the ciphertexts sort them, which is most of what OPE leaks (Grubbs et al., S&P 2017; Durak, DuBuisson, Cash, CCS 2016)',
  deterministic: 'deterministic field encryption stores equal values as equal ciphertexts beside the data: a dictionary of the column; use a sealed field and a blind index (keyed, truncated, with a key of its own)',
  hash: 'an unkeyed hash of a value is a dictionary anyone can build: hash every candidate value and compare; tokens here are HMACs under keys from the KMS',
};

function refuseKind(kind: unknown): never {
  const name = typeof kind === 'string' ? kind.toLowerCase() : '';
  const key = /^(ope|order-preserving)/.test(name) ? 'ope' : /^(ore|order-revealing)/.test(name) ? 'ore' : /^(deterministic|det)/.test(name) ? 'deterministic' : /^(hash|sha|md5|sm3)/.test(name) ? 'hash' : undefined;
  if (key) throw new TypeError(`search index kind ${JSON.stringify(kind)} is refused: ${REFUSED[key]}`);
  throw new TypeError(`"kind" expected "range", "prefix" or "contains", got ${typeof kind === 'string' ? JSON.stringify(kind) : describe(kind)}`);
}

function checkName(name: unknown, title: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError(`"${title}" expected a non-empty string, got ${describe(name)}`);
  if (name.includes('\0')) throw new TypeError(`"${title}" may not contain U+0000`);
  utf8(name, title);
  return name;
}

function checkInteger(value: unknown, title: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`"${title}" must be an integer from ${min} to ${max}, got ${typeof value === 'number' ? value : describe(value)}`);
  }
  return value;
}

function checkMac(mac: unknown): TokenMac | undefined {
  if (mac === undefined) return undefined;
  if (typeof mac === 'string') throw new TypeError(`"mac" expected a TokenMac value (hmacSm3Tokens from kms-envelope/sm4, or none for HMAC-SHA-256), got the string ${JSON.stringify(mac)}: ${REFUSED.hash}`);
  const m = mac as TokenMac;
  if (typeof m !== 'object' || m === null || typeof m.name !== 'string' || typeof m.expand !== 'function' || typeof m.mac !== 'function') throw new TypeError(`"mac" expected a TokenMac value, got ${describe(mac)}`);
  return m;
}

function hmacSha256Tokens(backend: CryptoBackend): TokenMac {
  return { name: 'HMAC-SHA-256', expand: backend.hkdfExpandSha512, mac: backend.hmacSha256 ?? nobleHmacSha256 };
}

function warn(options: SearchIndexOptions, warnings: SearchIndexWarning[]): readonly SearchIndexWarning[] {
  const frozen = Object.freeze(warnings.map((w) => Object.freeze(w)));
  if (options.onWarning) for (const w of frozen) options.onWarning(w);
  return frozen;
}

/** Fewer than two expected distinct values per finest bucket between the declared bounds: most finest tokens name one value. */
function sparseWarning(label: string, options: RangeIndexOptions, finest: Level, bounds: Pick<RangeSettings, 'min' | 'max' | 'declared'>): SearchIndexWarning[] {
  const expected = options.expectedDistinctValues;
  if (expected === undefined) return [];
  checkInteger(expected, 'expectedDistinctValues', 1, Number.MAX_SAFE_INTEGER);
  if (!bounds.declared.min || !bounds.declared.max) return [];
  const buckets = finest.bucket(bounds.max) - finest.bucket(bounds.min) + 1n;
  if (BigInt(expected) >= 2n * buckets) return [];
  return [
    {
      code: 'dictionary',
      message:
        `${label}: about ${expected} distinct values over ${buckets} buckets of the finest level (${finest.name}) between the bounds: most buckets hold one value, ` +
        'so its token names the value (an equality index with its frequencies); a coarser finest level blurs this',
    },
  ];
}

function rangeWarnings(label: string, domain: RangeDomain, levels: readonly Level[]): SearchIndexWarning[] {
  if (domain === 'date' || !levels[0]!.name.endsWith('/2^0')) return [];
  return [
    {
      code: 'dictionary',
      message:
        `${label}: the finest level has buckets of one value, so each row's finest token names its exact value: equal values are ` +
        'linked across the column (their frequencies are the values\' frequencies), and a range query names the values it covers one by one; ' +
        'a finest level of 2^4 or more values per bucket blurs this, at the price of candidates dropped by the exact filter',
    },
  ];
}

function prefixWarnings(label: string, options: PrefixIndexOptions): SearchIndexWarning[] {
  const typical = options.expectedValueLength ?? 8;
  if (options.maxLength < typical) return [];
  return [
    {
      code: 'dictionary',
      message:
        `${label}: a maxLength of ${options.maxLength} for values of about ${typical} characters stores most values whole as their longest prefix: ` +
        'equal values are linked (an equality index with its frequencies) and values sharing a start are grouped at every length; a smaller maxLength blurs this',
    },
  ];
}

function containsWarnings(label: string, options: ContainsIndexOptions): SearchIndexWarning[] {
  const typical = options.expectedValueLength ?? 8;
  if (typical >= 2 * options.minLength) return [];
  return [
    {
      code: 'dictionary',
      message:
        `${label}: grams of ${options.minLength} characters in values of about ${typical} are each much of the value: values of ${options.minLength} characters are stored whole ` +
        '(an equality index with its frequencies) and most others nearly so; a shorter gram, or a contains index only on longer values, blurs this',
    },
  ];
}

const SNAPSHOT_REVEALS: Readonly<Record<SearchKind, string>> = {
  range: 'which rows share a bucket at each level, and so much of their order',
  prefix: 'which rows share a prefix at each length',
  contains: "which rows share each substring of the gram's length, how often each occurs, and roughly each value's length",
};

function commonSettings(options: SearchIndexOptions, kind: SearchKind): Omit<CommonSettings, 'warnings'> {
  const keys = keySourceOf(options.hierarchy);
  if (!keys) throw new TypeError('"hierarchy" expected a KeyHierarchy (createKeyHierarchy)');
  if (options.acknowledgeLeakage !== kind) {
    throw new TypeError(`a ${kind} index needs acknowledgeLeakage: "${kind}", saying that you have read what it reveals (README "Range and prefix search": a snapshot shows ${SNAPSHOT_REVEALS[kind]}; queries show which rows match)`);
  }
  const table = checkName(options.table, 'table');
  const column = checkName(options.column, 'column');
  const backend = selectBackend(options.backend);
  const mac = checkMac(options.mac) ?? hmacSha256Tokens(backend);
  searchInfo(mac.name, table, column, kind, 'p'); // the names' lengths, checked now
  return {
    keys,
    hierarchy: options.hierarchy,
    table,
    column,
    bits: checkInteger(options.bits ?? 32, 'bits', 16, 52),
    version: checkInteger(options.version ?? 1, 'version', 1, 0xffffffff),
    mac,
    defaultPartition: options.partition === undefined ? undefined : checkPartition(options.partition),
    maxKeys: checkInteger(options.maxCachedKeys ?? 10_000, 'maxCachedKeys', 1, Number.MAX_SAFE_INTEGER),
    backend,
    label: `${kind} index ${table}.${column}`,
  };
}

const DOMAINS: readonly RangeDomain[] = ['integer', 'decimal', 'date', 'float64'];

function rangeIndexBounds(options: RangeIndexOptions, scale: number): Pick<RangeSettings, 'min' | 'max' | 'declared'> {
  const b = options.bounds ?? {};
  if (typeof b !== 'object' || b === null || Object.keys(b).some((k) => k !== 'min' && k !== 'max')) throw new TypeError(`"bounds" expected { min?, max? }, got ${describe(b)}`);
  let [min, max] = domainBounds(options.domain);
  if (b.min !== undefined) min = rangeKey(options.domain, b.min, scale, '"bounds.min"');
  if (b.max !== undefined) max = rangeKey(options.domain, b.max, scale, '"bounds.max"');
  if (min > max) throw new RangeError('"bounds.min" is greater than "bounds.max"');
  return { min, max, declared: Object.freeze({ min: b.min !== undefined, max: b.max !== undefined }) };
}

function resolveRange(options: RangeIndexOptions): RangeSettings {
  const common = commonSettings(options, 'range');
  if (!DOMAINS.includes(options.domain)) throw new TypeError(`"domain" expected ${DOMAINS.map((d) => JSON.stringify(d)).join(', ')}, got ${describe(options.domain)}`);
  const scale = options.domain === 'decimal' ? checkInteger(options.scale, 'scale', 0, 38) : 0;
  const levels = resolveLevels(options.domain, options.levels, scale);
  const maxQueryTokens = checkInteger(options.maxQueryTokens ?? 64, 'maxQueryTokens', 1, 4096);
  const bounds = rangeIndexBounds(options, scale);
  const single = rangeWarnings(common.label, options.domain, levels);
  const sparse = sparseWarning(common.label, options, levels[0]!, bounds);
  const warnings = warn(options, single.length > 0 ? single : sparse);
  return { ...common, kind: 'range', domain: options.domain, scale, levels, maxQueryTokens, ...bounds, warnings };
}

function resolvePrefix(options: PrefixIndexOptions): PrefixSettings {
  const common = commonSettings(options, 'prefix');
  const minLength = checkInteger(options.minLength, 'minLength', 1, 256);
  const maxLength = checkInteger(options.maxLength, 'maxLength', minLength, Math.min(256, minLength + 31));
  const chain = normalizerChain(options.normalize);
  const warnings = warn(options, prefixWarnings(common.label, options));
  return { ...common, kind: 'prefix', minLength, maxLength, chain, warnings };
}

function resolveContains(options: ContainsIndexOptions): ContainsSettings {
  const common = commonSettings(options, 'contains');
  const minLength = checkInteger(options.minLength, 'minLength', 2, 16);
  const maxLength = checkInteger(options.maxLength, 'maxLength', minLength, minLength + 255);
  const chain = normalizerChain(options.normalize);
  const warnings = warn(options, containsWarnings(common.label, options));
  return { ...common, kind: 'contains', minLength, maxLength, chain, warnings };
}

/** Checks a search index's options and resolves them; refuses OPE, ORE, deterministic encryption and unkeyed hashes by name. */
export function resolveSearchOptions(options: SearchIndexOptions): SearchSettings {
  if (typeof options !== 'object' || options === null) throw new TypeError(`"options" expected an object, got ${describe(options)}`);
  if (options.kind === 'range') return resolveRange(options);
  if (options.kind === 'prefix') return resolvePrefix(options);
  if (options.kind === 'contains') return resolveContains(options);
  return refuseKind((options as { kind?: unknown }).kind);
}
