/**
 * Blind indexes (FORMAT.md §11): equality search on encrypted database columns. An index value is
 * HMAC-SHA-256 of a column's normalised, typed value under a key derived per (table, column,
 * partition, index version) from the key hierarchy's intermediate key of the partition
 * `${partition}#blind-index` (its version is the index version), truncated to a chosen number of
 * bits. The database compares index values; the caller opens the rows found and drops the false
 * positives that truncation lets through.
 *
 * An index leaks the equality (and so the frequency) of values within one column of one partition;
 * the key differs per table, column, partition and version, so nothing compares across them.
 *
 * Column keys are cached per partition (the index fixes table, column and version) and wiped when
 * evicted, when the hierarchy hands out another key for the version (a reload), and on close().
 * The hierarchy stays the authority on keys: every computation asks it, so its TTLs, staleness
 * bound and revocation apply to indexes as to messages.
 */
import type { CryptoBackend } from '../core/backend.ts';
import { base64url, describe, isBytes, utf8, wipe } from '../core/bytes.ts';
import { ClosedError, KeyNotFoundError, KeyNotWarmError, KeyUnavailableError, PartitionShreddedError } from '../core/errors.ts';
import { hmacSha256 as nobleHmacSha256 } from '../core/hashes.ts';
import { type BackendName, selectBackend } from '../core/select-backend.ts';
import { COBBLESTONE_256 } from '../core/suites.ts';
import { Lru } from '../core/lru.ts';
import type { KeyHierarchy } from '../hierarchy.ts';
import { keySourceOf, type SuiteKey } from '../core/key-source.ts';

/** What a column holds: encoded with a type tag, so `1` and `"1"` differ unless a normaliser makes them one. */
export type BlindIndexValue = string | number | bigint | boolean | Date | Uint8Array;

/** The values of a compound index: in the declared order, or by column name (other properties are ignored). */
export type CompoundIndexValue = readonly BlindIndexValue[] | Readonly<Record<string, BlindIndexValue | null | undefined>>;

/**
 * Normalisers (FORMAT.md §11.3), applied in the order given, before the value is encoded:
 * - `trim`: strings lose leading and trailing white space (ECMAScript's WhiteSpace and LineTerminator);
 * - `casefold`: strings become `s.toLowerCase().toUpperCase().toLowerCase()` (Unicode default case
 *   conversion, locale-independent), so `Straße`, `STRASSE` and `strasse` match, as do final and medial sigma;
 * - `nfc`: strings in Unicode Normalization Form C, so composed and decomposed accents match;
 * - `text`: numbers, bigints, booleans and Dates become strings (`String(x)`, Dates `toISOString()`), so `1` and `"1"` match;
 * - `digits`: as `text`, then only the ASCII digits 0-9 are kept (`+1 (555) 010-9999` → `15550109999`);
 * - a function of your own: it must be deterministic, for as long as the index exists.
 * Text normalisers leave bytes and other non-strings as they are. Put `nfc` last: case mapping can
 * leave a string that is not in NFC (`ı` + U+0301 folds to `i` + U+0301, which NFC composes to `í`).
 */
export type BlindIndexNormalizer = 'trim' | 'casefold' | 'nfc' | 'text' | 'digits' | ((value: BlindIndexValue) => BlindIndexValue);

/** A column of a compound index, with its own normalisers (replacing the index's `normalize`). */
export interface BlindIndexColumn {
  name: string;
  normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[];
}

/** `base64url` (default): text, RFC 4648 §5 without padding; `bytes`: a Uint8Array, for bytea or BLOB columns. */
export type BlindIndexOutput = 'base64url' | 'bytes';

/** Sizes the index warnings are computed from (blindIndexWarnings). */
export interface BlindIndexSizing {
  /** Index length in bits, 16 to 256. */
  bits: number;
  /** About how many distinct values the column holds per partition: warns when the index would be a dictionary of them. */
  expectedDistinctValues?: number;
  /** About how many rows per partition: warns when a lookup is expected to match more than one other row. */
  expectedRows?: number;
  /** Whether a UNIQUE constraint will sit on the index column: warns that truncated indexes give false conflicts. */
  unique?: boolean;
}

export interface BlindIndexWarning {
  /**
   * `dictionary`: so few distinct values for the bits that almost none share an index value (the
   * index maps one to one onto the values); `false-positives`: a lookup is expected to match more
   * than one row of another value; `unique-conflicts`: a UNIQUE constraint may refuse distinct values.
   */
  readonly code: 'dictionary' | 'false-positives' | 'unique-conflicts';
  readonly message: string;
}

interface BlindIndexBaseOptions<O extends BlindIndexOutput> extends BlindIndexSizing {
  /** The key hierarchy whose partition `${partition}#blind-index` holds the index keys. */
  hierarchy: KeyHierarchy;
  /** The table's logical id (keep it when renaming the table: it is part of the key). */
  table: string;
  /** Normalisers of the value (for a compound index: of each column that names none of its own). */
  normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[];
  /** The index version, 1 to 2^32-1; default 1. A new version is a new key: re-index to it (README). */
  version?: number;
  /** The partition (tenant) used when a call names none. */
  partition?: string;
  output?: O;
  /** Called once per warning when the index is created (they are also in `index.warnings`). */
  onWarning?: (warning: BlindIndexWarning) => void;
  backend?: BackendName;
  /** Column keys held at once, one per partition, least recently used evicted (and wiped); default 10000. */
  maxCachedKeys?: number;
}

export interface SingleColumnIndexOptions<O extends BlindIndexOutput = 'base64url'> extends BlindIndexBaseOptions<O> {
  /** The column's logical id (keep it when renaming the column: it is part of the key). */
  column: string;
  columns?: undefined;
}

export interface CompoundIndexOptions<O extends BlindIndexOutput = 'base64url'> extends BlindIndexBaseOptions<O> {
  /** Two or more columns, in the order their values are concatenated. */
  columns: readonly (string | BlindIndexColumn)[];
  column?: undefined;
}

export type BlindIndexOptions<O extends BlindIndexOutput = BlindIndexOutput> = SingleColumnIndexOptions<O> | CompoundIndexOptions<O>;

export interface BlindIndexCallOptions {
  /** The partition (tenant) of the row; default the index's `partition`. */
  partition?: string;
}

export interface BlindIndex<Out extends string | Uint8Array<ArrayBuffer> = string, In = BlindIndexValue> {
  readonly table: string;
  readonly columns: readonly string[];
  readonly bits: number;
  readonly version: number;
  readonly output: BlindIndexOutput;
  readonly warnings: readonly BlindIndexWarning[];
  /** The index value of `value`, loading the key (creating it on first use) when it is not in memory. */
  compute(value: In, options?: BlindIndexCallOptions): Promise<Out>;
  /**
   * The index value, synchronously: needs the key in memory (after warm() or a compute()); never
   * waits, and throws BlindIndexNotWarmError otherwise (starting the load).
   */
  computeSync(value: In, options?: BlindIndexCallOptions): Out;
  /** Loads the keys of these partitions (creating them on first use), so that computeSync works. */
  warm(partitions: readonly string[]): Promise<void>;
  /** Whether two values are the same after normalisation (the filter of a lookup: an opened row against the search term). */
  matches(a: In, b: In): boolean;
  /** Wipes the cached column keys; later calls throw ClosedError. The hierarchy stays open. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * computeSync() found no key in memory (ERR_KEY_NOT_WARM, like every synchronous call of the
 * library): it started the load; await index.warm() or compute() first, then retry.
 */
export class BlindIndexNotWarmError extends KeyNotWarmError {
  readonly partition: string;
  readonly version: number;
  constructor(label: string, partition: string, version: number) {
    super(label);
    this.message =
      `${label}: the key of partition ${JSON.stringify(partition)} version ${version} is not in memory yet (it is loading): ` +
      'await index.warm([partition]) or index.compute() first, then retry; computeSync() never waits for the KMS';
    this.partition = partition;
    this.version = version;
  }
}

/** Appended to a partition to name the hierarchy partition that holds its index keys. */
export const BLIND_INDEX_PARTITION_SUFFIX = '#blind-index';

/** The key hierarchy partition of a partition's blind index keys (a per-tenant KMS resolver sees this name). */
export function blindIndexPartition(partition: string): string {
  return partition + BLIND_INDEX_PARTITION_SUFFIX;
}

const INFO_LABEL = 'kms-envelope/blind-index@v1';
const KEY_LENGTH = 32;
const MIN_BITS = 16;
const MAX_BITS = 256;
const MAX_PARTITION_BYTES = 255; // a key store's limit, for the suffixed name

/** Expected rows of another value that match one lookup in a partition of `rows` rows: (rows − 1) / 2^bits. */
export function expectedFalsePositives(bits: number, rows: number): number {
  return Math.max(0, rows - 1) / 2 ** bits;
}

/** The warnings an index of these sizes deserves (the same as createBlindIndex reports). */
export function blindIndexWarnings(sizing: BlindIndexSizing, label = 'blind index'): BlindIndexWarning[] {
  const bits = checkBits(sizing.bits);
  const warnings: BlindIndexWarning[] = [];
  const distinct = sizing.expectedDistinctValues;
  if (distinct !== undefined) {
    checkCount(distinct, 'expectedDistinctValues');
    if (distinct < 2 ** (bits / 2)) {
      const most = Math.floor(2 * Math.log2(Math.max(distinct, 1)));
      warnings.push({
        code: 'dictionary',
        message:
          `${label}: ${bits} bits for about ${distinct} distinct values: below 2^${bits / 2} distinct values almost no two share an ` +
          'index value, so the index column maps one to one onto the values (a dictionary: its frequencies are theirs, and one ' +
          `known row names every row of the same value); ${most >= MIN_BITS ? `at most ${most} bits` : 'no blind index'} would ` +
          'blur it, at the price of more false positives per lookup, and a column this small may be better left unindexed',
      });
    }
  }
  const rows = sizing.expectedRows;
  if (rows !== undefined) {
    checkCount(rows, 'expectedRows');
    const falsePositives = expectedFalsePositives(bits, rows);
    if (falsePositives > 1) {
      warnings.push({
        code: 'false-positives',
        message:
          `${label}: ${bits} bits for about ${rows} rows: each lookup is expected to match about ${round(falsePositives)} rows ` +
          `of other values, each opened and dropped; ${Math.ceil(Math.log2(rows))} bits or more keep it below one`,
      });
    }
  }
  if (sizing.unique) {
    // The chance that two of n distinct values share an index value: 1 - exp(-n(n-1) / 2^(bits+1)).
    const n = rows;
    const conflict = n === undefined ? undefined : -Math.expm1(-(n * (n - 1)) / 2 ** (bits + 1));
    if (conflict === undefined || conflict > 1e-9) {
      warnings.push({
        code: 'unique-conflicts',
        message:
          `${label}: a UNIQUE constraint on a ${bits}-bit index refuses distinct values whose indexes collide (false conflicts` +
          `${conflict === undefined ? '' : `: about ${round(conflict)} chance over ${n} rows`}); enforce uniqueness on a 256-bit ` +
          'index, or treat a conflict as "maybe": open the rows and compare',
      });
    }
  }
  return warnings;
}

function round(x: number): string {
  return x >= 100 ? String(Math.round(x)) : String(Number(x.toPrecision(2)));
}

function checkBits(bits: unknown): number {
  if (typeof bits !== 'number' || !Number.isInteger(bits) || bits < MIN_BITS || bits > MAX_BITS) {
    throw new RangeError(`"bits" must be an integer from ${MIN_BITS} to ${MAX_BITS}, got ${typeof bits === 'number' ? bits : describe(bits)}`);
  }
  return bits;
}

function checkCount(n: unknown, title: string): void {
  if (typeof n !== 'number' || !(n >= 0) || !Number.isFinite(n)) throw new RangeError(`"${title}" must be a number >= 0`);
}

/** `u16 length || UTF-8` of a name (table, column, partition). */
function lengthPrefixed(text: string, title: string): Uint8Array {
  const bytes = utf8(text, title);
  if (bytes.length > 0xffff) throw new RangeError(`"${title}" is longer than 65535 UTF-8 bytes`);
  const out = new Uint8Array(2 + bytes.length);
  out[0] = bytes.length >> 8;
  out[1] = bytes.length & 0xff;
  out.set(bytes, 2);
  return out;
}

/** The HKDF info of a column key: label || 0x00 || table || column || partition, each u16-length-prefixed. */
export function blindIndexInfo(table: string, column: string, partition: string): Uint8Array {
  const parts = [utf8(`${INFO_LABEL}\0`, 'info'), lengthPrefixed(table, 'table'), lengthPrefixed(column, 'column'), lengthPrefixed(partition, 'partition')];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The first ceil(bits / 8) bytes of `digest`, the bits of the last byte beyond `bits` zeroed. */
export function truncateIndex(digest: Uint8Array, bits: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.ceil(bits / 8));
  out.set(digest.subarray(0, out.length)); // a copy, whatever slice() means for the digest's class (Buffer: a view)
  const rest = bits % 8;
  if (rest !== 0) out[out.length - 1]! &= (0xff << (8 - rest)) & 0xff;
  return out;
}

// --- values ---------------------------------------------------------------------------------

const TAG = { string: 1, bytes: 2, number: 3, bigint: 4, boolean: 5, date: 6 } as const;

/** ECMAScript's WhiteSpace and LineTerminator code points (what String.prototype.trim removes), fixed here. */
const SPACE = '\\u0009-\\u000D\\u0020\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF';
const TRIM = new RegExp(`^[${SPACE}]+|[${SPACE}]+$`, 'g');
const NOT_DIGIT = /[^0-9]/g;

function isDate(value: unknown): value is Date {
  return value instanceof Date || Object.prototype.toString.call(value) === '[object Date]';
}

function asText(value: BlindIndexValue): BlindIndexValue {
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (isDate(value)) return value.toISOString(); // RangeError for an invalid Date
  return value;
}

/**
 * `digits` (FORMAT.md §11.3): the ASCII digits of the value as text. Bytes are refused (they have
 * no text), and so is a value with no digit at all, which would index like every other such value
 * (`Infinity`, `abc`, `true` and the empty string would all be "").
 */
function digitsOf(v: BlindIndexValue): string {
  if (isBytes(v)) throw new TypeError('the "digits" normaliser does not apply to bytes');
  const text = asText(v) as string;
  const digits = text.replace(NOT_DIGIT, '');
  if (digits.length === 0) throw new RangeError('a value with no digit 0-9 has no index under the "digits" normaliser (store NULL)');
  return digits;
}

const NORMALIZERS: Record<Exclude<BlindIndexNormalizer, (value: BlindIndexValue) => BlindIndexValue>, (value: BlindIndexValue) => BlindIndexValue> = {
  trim: (v) => (typeof v === 'string' ? v.replace(TRIM, '') : v),
  casefold: (v) => (typeof v === 'string' ? v.toLowerCase().toUpperCase().toLowerCase() : v),
  nfc: (v) => (typeof v === 'string' ? v.normalize('NFC') : v),
  text: asText,
  digits: digitsOf,
};

type NormalizerFn = (value: BlindIndexValue) => BlindIndexValue;

/** The normalisers as functions, checked; a TypeError names the bad one. */
export function normalizerChain(normalize: BlindIndexNormalizer | readonly BlindIndexNormalizer[] | undefined, title = 'normalize'): NormalizerFn[] {
  if (normalize === undefined) return [];
  const list = typeof normalize === 'string' || typeof normalize === 'function' ? [normalize] : normalize;
  if (!Array.isArray(list)) throw new TypeError(`"${title}" expected a normaliser or a list of them, got ${describe(normalize)}`);
  return list.map((n: unknown) => {
    if (typeof n === 'function') return n as NormalizerFn;
    if (typeof n === 'string' && Object.hasOwn(NORMALIZERS, n)) return NORMALIZERS[n as keyof typeof NORMALIZERS];
    throw new TypeError(`"${title}" expected ${Object.keys(NORMALIZERS).map((k) => JSON.stringify(k)).join(', ')} or a function, got ${typeof n === 'string' ? JSON.stringify(n) : describe(n)}`);
  });
}

function checkValue(value: unknown, where: string): BlindIndexValue {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' || isBytes(value) || isDate(value)) return value;
  if (value === null || value === undefined) {
    throw new TypeError(`${where} is ${String(value)}: a NULL value has no index (store NULL in the index column)`);
  }
  throw new TypeError(`${where} expected a string, number, bigint, boolean, Date or Uint8Array, got ${describe(value)}`);
}

/** Applies the normalisers in order. */
export function normalizeValue(value: BlindIndexValue, chain: readonly NormalizerFn[], where = 'value'): BlindIndexValue {
  let v = checkValue(value, where);
  // Before any normaliser: with `text`, NaN would otherwise index as "NaN" (FORMAT.md §11.2).
  if (typeof v === 'number' && Number.isNaN(v)) throw new RangeError(`${where} is NaN, which equals nothing: it has no index`);
  if (isDate(v) && Number.isNaN(Date.prototype.getTime.call(v))) throw new RangeError(`${where} is an invalid Date: it has no index`);
  for (const normalize of chain) v = checkValue(normalize(v), `${where} (after a normaliser)`);
  return v;
}

function float64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, value);
  return out;
}

/** tag || value bytes (FORMAT.md §11.2, the tags of §12.1); -0 becomes 0, NaN and invalid Dates are refused. */
function typedValue(value: BlindIndexValue, where: string): [number, Uint8Array] {
  if (typeof value === 'string') return [TAG.string, utf8(value, where)];
  if (typeof value === 'number') {
    if (Number.isNaN(value)) throw new RangeError(`${where} is NaN, which equals nothing: it has no index`);
    return [TAG.number, float64(value === 0 ? 0 : value)];
  }
  if (typeof value === 'bigint') return [TAG.bigint, utf8(value.toString(10), where)];
  if (typeof value === 'boolean') return [TAG.boolean, Uint8Array.of(value ? 1 : 0)];
  if (isDate(value)) {
    const time = value.getTime();
    if (Number.isNaN(time)) throw new RangeError(`${where} is an invalid Date: it has no index`);
    return [TAG.date, float64(time)];
  }
  return [TAG.bytes, value];
}

/**
 * The HMAC message of normalised values: for each, u32 length || tag || value bytes, in order
 * (the length counts the tag). One value for a single column; a compound index's in declared order.
 */
export function encodeIndexMessage(values: readonly BlindIndexValue[], where: readonly string[] = []): Uint8Array {
  const typed: [number, Uint8Array][] = [];
  let length = 0;
  for (let i = 0; i < values.length; i++) {
    const t = typedValue(values[i]!, where[i] ?? 'value');
    typed.push(t);
    length += 5 + t[1].length;
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const [tag, bytes] of typed) {
    const n = 1 + bytes.length;
    out[at] = n >>> 24;
    out[at + 1] = (n >>> 16) & 0xff;
    out[at + 2] = (n >>> 8) & 0xff;
    out[at + 3] = n & 0xff;
    out[at + 4] = tag;
    out.set(bytes, at + 5);
    at += 5 + bytes.length;
    if (tag !== TAG.bytes) wipe(bytes); // a copy of the value; bytes are the caller's own
  }
  return out;
}

// --- the index ------------------------------------------------------------------------------

interface CachedKey {
  /** The column key (32 bytes): ours, wiped on eviction and close(). */
  readonly key: Uint8Array;
  /** The hierarchy's key it was derived from, compared by identity: a reload derives again. */
  readonly source: Uint8Array;
}

interface ColumnSpec {
  readonly name: string;
  readonly chain: readonly NormalizerFn[];
}

function checkName(name: unknown, title: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError(`"${title}" expected a non-empty string, got ${describe(name)}`);
  if (name.includes('\0')) throw new TypeError(`"${title}" may not contain U+0000`);
  utf8(name, title);
  return name;
}

function checkVersion(version: unknown): number {
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version > 0xffffffff) {
    throw new RangeError(`"version" must be an integer from 1 to 2^32-1, got ${typeof version === 'number' ? version : describe(version)}`);
  }
  return version;
}

function checkPartition(partition: unknown): string {
  if (typeof partition !== 'string' || partition.length === 0) {
    throw new TypeError(`"partition" expected a non-empty string, got ${partition === undefined ? 'none (pass it to the call, or to createBlindIndex)' : describe(partition)}`);
  }
  if (partition.endsWith(BLIND_INDEX_PARTITION_SUFFIX)) throw new RangeError(`"partition" may not end with "${BLIND_INDEX_PARTITION_SUFFIX}": that names index keys`);
  if (utf8(partition + BLIND_INDEX_PARTITION_SUFFIX, 'partition').length > MAX_PARTITION_BYTES) {
    throw new RangeError(`"partition" may be at most ${MAX_PARTITION_BYTES - BLIND_INDEX_PARTITION_SUFFIX.length} UTF-8 bytes`);
  }
  return partition;
}

const allZero = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0);

/**
 * A blind index of one column, or of several (compound). See README "Blind indexes" and
 * FORMAT.md §11; `bits` is required: choose it from the table of false positives there.
 *
 * @example
 * ```ts
 * const email = createBlindIndex({ hierarchy, table: 'users', column: 'email', bits: 32, normalize: ['trim', 'casefold', 'nfc'] });
 * row.email_index = await email.compute(row.email, { partition: row.tenant_id });
 * // SELECT ... WHERE tenant_id = $1 AND email_index = $2, then open each row and keep those where email.matches(opened, term)
 * ```
 */
export function createBlindIndex<O extends BlindIndexOutput = 'base64url'>(
  options: SingleColumnIndexOptions<O>,
): BlindIndex<O extends 'bytes' ? Uint8Array<ArrayBuffer> : string, BlindIndexValue>;
export function createBlindIndex<O extends BlindIndexOutput = 'base64url'>(
  options: CompoundIndexOptions<O>,
): BlindIndex<O extends 'bytes' ? Uint8Array<ArrayBuffer> : string, CompoundIndexValue>;
export function createBlindIndex(options: BlindIndexOptions): BlindIndex<string | Uint8Array<ArrayBuffer>, BlindIndexValue | CompoundIndexValue> {
  if (typeof options !== 'object' || options === null) throw new TypeError(`"options" expected an object, got ${describe(options)}`);
  const { hierarchy } = options;
  const found = keySourceOf(hierarchy);
  if (!found) throw new TypeError('"hierarchy" expected a KeyHierarchy (createKeyHierarchy)');
  const keys = found;
  const table = checkName(options.table, 'table');
  const bits = checkBits(options.bits);
  const version = checkVersion(options.version ?? 1);
  const output: BlindIndexOutput = options.output ?? 'base64url';
  if (output !== 'base64url' && output !== 'bytes') throw new TypeError(`"output" expected "base64url" or "bytes", got ${JSON.stringify(output)}`);
  const defaultPartition = options.partition === undefined ? undefined : checkPartition(options.partition);
  const maxKeys = options.maxCachedKeys ?? 10_000;
  if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new RangeError('"maxCachedKeys" must be an integer >= 1');
  const backend: CryptoBackend = selectBackend(options.backend);
  const hmac = backend.hmacSha256 ?? nobleHmacSha256;
  const defaultChain = normalizerChain(options.normalize);

  let columns: ColumnSpec[];
  if (options.column !== undefined && options.columns !== undefined) throw new TypeError('give "column" or "columns", not both');
  if (options.column !== undefined) {
    columns = [{ name: checkName(options.column, 'column'), chain: defaultChain }];
  } else {
    const list: unknown = options.columns;
    if (!Array.isArray(list) || list.length < 2) throw new TypeError('"columns" expected two or more columns (or "column" for one)');
    columns = list.map((c: unknown, i) => {
      if (typeof c === 'string') return { name: checkName(c, `columns[${i}]`), chain: defaultChain };
      if (typeof c !== 'object' || c === null) throw new TypeError(`"columns[${i}]" expected a name or { name, normalize }, got ${describe(c)}`);
      const { name, normalize } = c as BlindIndexColumn;
      return { name: checkName(name, `columns[${i}].name`), chain: normalize === undefined ? defaultChain : normalizerChain(normalize, `columns[${i}].normalize`) };
    });
    if (new Set(columns.map((c) => c.name)).size !== columns.length) throw new TypeError('"columns" names a column twice');
  }
  const compound = columns.length > 1;
  const names = Object.freeze(columns.map((c) => c.name));
  /** The column field of the key derivation: the names joined by 0x00 (no name holds one). */
  const columnField = names.join('\0');
  const label = `blind index ${table}.${compound ? `(${names.join(', ')})` : names[0]}`;
  const where = names.map((n) => `${table}.${n}`);
  blindIndexInfo(table, columnField, 'p'); // the names' lengths, checked now rather than at the first key

  const sizing: BlindIndexSizing = { bits };
  if (options.expectedDistinctValues !== undefined) sizing.expectedDistinctValues = options.expectedDistinctValues;
  if (options.expectedRows !== undefined) sizing.expectedRows = options.expectedRows;
  if (options.unique !== undefined) sizing.unique = options.unique;
  const warnings = Object.freeze(blindIndexWarnings(sizing, label).map((w) => Object.freeze(w)));
  if (options.onWarning) for (const w of warnings) options.onWarning(w);

  const cache = new Lru<CachedKey>();
  let closed = false;

  function closedError(): ClosedError {
    const error = new ClosedError();
    error.message = 'the blind index is closed';
    return error;
  }

  function partitionOf(call: BlindIndexCallOptions | undefined): string {
    return call?.partition === undefined ? checkPartition(defaultPartition) : checkPartition(call.partition);
  }

  /** The normalised values of an input, in column order. */
  function valuesOf(value: unknown): BlindIndexValue[] {
    if (!compound) return [normalizeValue(value as BlindIndexValue, columns[0]!.chain, where[0])];
    let raw: unknown[];
    if (Array.isArray(value)) {
      if (value.length !== columns.length) throw new TypeError(`${label} expected ${columns.length} values, got ${value.length}`);
      raw = value;
    } else if (typeof value === 'object' && value !== null && !isBytes(value) && !isDate(value)) {
      raw = names.map((n) => (value as Record<string, unknown>)[n]);
    } else {
      throw new TypeError(`${label} expected an array of ${columns.length} values or an object with the columns, got ${describe(value)}`);
    }
    return raw.map((v, i) => normalizeValue(v as BlindIndexValue, columns[i]!.chain, where[i]));
  }

  function message(value: unknown): Uint8Array {
    return encodeIndexMessage(valuesOf(value), where);
  }

  /** The column key of a partition from the hierarchy's key, cached; use it before yielding. */
  function columnKey(partition: string, suiteKey: SuiteKey): Uint8Array {
    const held = cache.peek(partition);
    if (held && held.source === suiteKey.key) {
      cache.touch(partition, held);
      return held.key;
    }
    if (held) {
      cache.delete(partition);
      wipe(held.key);
    }
    if (suiteKey.key.length !== KEY_LENGTH || allZero(suiteKey.key)) {
      throw new KeyUnavailableError(`the key hierarchy gave a wiped key for ${JSON.stringify(blindIndexPartition(partition))} (closed or forgotten meanwhile)`);
    }
    const key = new Uint8Array(KEY_LENGTH);
    backend.hkdfExpandSha512(suiteKey.key, [blindIndexInfo(table, columnField, partition)], [key]);
    cache.set(partition, { key, source: suiteKey.key });
    while (cache.size > maxKeys) {
      const [oldest, evicted] = cache.oldest()!;
      cache.delete(oldest);
      wipe(evicted.key);
    }
    return key;
  }

  /** The index value of a message under a partition's key (synchronous: the SuiteKey is used at once). */
  function finish(partition: string, suiteKey: SuiteKey, msg: Uint8Array): string | Uint8Array<ArrayBuffer> {
    const digest = hmac(columnKey(partition, suiteKey), msg);
    const out = truncateIndex(digest, bits);
    wipe(digest);
    return output === 'bytes' ? out : base64url.encode(out);
  }

  const ref = (partition: string): { partition: string; version: number } => ({ partition: blindIndexPartition(partition), version });

  /** Creations in flight, per hierarchy partition and version: one per process. */
  const creating = new Map<string, Promise<void>>();

  /**
   * Creates version `v` of a hierarchy partition of index keys, and the versions below it that it
   * lacks: version 1 as the hierarchy's first seal does, a later one by a rotation once the one
   * before it exists. Two processes racing make one key per version (the store keeps one).
   */
  function create(indexPartition: string, v: number): Promise<void> {
    const id = `${v}:${indexPartition}`;
    let flight = creating.get(id);
    if (!flight) {
      flight = (async () => {
        if (v === 1) {
          await keys.sealKey(indexPartition, COBBLESTONE_256);
        } else {
          await loadVersion(indexPartition, v - 1);
          await hierarchy.rotate(indexPartition);
        }
      })().finally(() => creating.delete(id));
      creating.set(id, flight);
    }
    return flight;
  }

  /** The hierarchy's key of a version, loading it, and creating it (and those below) on first use. */
  async function loadVersion(indexPartition: string, v: number, first?: SuiteKey | Promise<SuiteKey>): Promise<SuiteKey> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await (first ?? keys.openKey({ partition: indexPartition, version: v }, COBBLESTONE_256));
      } catch (error) {
        // A load that began before a concurrent creation fails; so may a creation that joined it: try again.
        if (!(error instanceof KeyNotFoundError) || attempt === 3) throw error;
      }
      first = undefined;
      try {
        await create(indexPartition, v);
      } catch (error) {
        if (!(error instanceof KeyNotFoundError) || attempt === 2) throw error;
      }
    }
  }

  const load = (partition: string, first?: Promise<SuiteKey>): Promise<SuiteKey> => loadVersion(blindIndexPartition(partition), version, first);

  /** A shredded partition's column key is wiped as soon as the hierarchy refuses its key; the error goes on. */
  function dropIfShredded(partition: string, error: unknown): void {
    if (!(error instanceof PartitionShreddedError)) return;
    const held = cache.peek(partition);
    if (!held) return;
    cache.delete(partition);
    wipe(held.key);
  }

  function computeSync(value: unknown, call?: BlindIndexCallOptions): string | Uint8Array<ArrayBuffer> {
    if (closed) throw closedError();
    const partition = partitionOf(call);
    const msg = message(value);
    try {
      const got = keys.openKey(ref(partition), COBBLESTONE_256);
      if (got instanceof Promise) {
        got.catch((error: unknown) => dropIfShredded(partition, error)); // the load goes on for the next call; its failure is that call's to see
        throw new BlindIndexNotWarmError(label, partition, version);
      }
      return finish(partition, got, msg);
    } catch (error) {
      dropIfShredded(partition, error);
      throw error;
    } finally {
      wipe(msg);
    }
  }

  async function compute(value: unknown, call?: BlindIndexCallOptions): Promise<string | Uint8Array<ArrayBuffer>> {
    if (closed) throw closedError();
    const partition = partitionOf(call);
    const msg = message(value);
    try {
      const got = keys.openKey(ref(partition), COBBLESTONE_256);
      if (!(got instanceof Promise)) return finish(partition, got, msg);
      const loaded = await load(partition, got);
      if (closed) throw closedError();
      return finish(partition, loaded, msg);
    } catch (error) {
      dropIfShredded(partition, error);
      throw error;
    } finally {
      wipe(msg);
    }
  }

  async function warm(partitions: readonly string[]): Promise<void> {
    if (closed) throw closedError();
    if (!Array.isArray(partitions)) throw new TypeError(`"partitions" expected an array, got ${describe(partitions)}`);
    const checked = partitions.map((p: unknown) => checkPartition(p));
    await Promise.all(
      checked.map(async (partition) => {
        const loaded = await load(partition);
        if (closed) throw closedError();
        columnKey(partition, loaded);
      }),
    );
  }

  function matches(a: unknown, b: unknown): boolean {
    const x = message(a);
    const y = message(b);
    try {
      return x.length === y.length && x.every((byte, i) => byte === y[i]);
    } finally {
      wipe(x, y);
    }
  }

  async function close(): Promise<void> {
    closed = true;
    for (const [, entry] of [...cache.entries()]) wipe(entry.key);
    for (const [partition] of [...cache.entries()]) cache.delete(partition);
  }

  const description = `BlindIndex { table: ${JSON.stringify(table)}, columns: ${JSON.stringify(names)}, bits: ${bits}, version: ${version}, output: "${output}" }`;
  return Object.freeze({
    table,
    columns: names,
    bits,
    version,
    output,
    warnings,
    compute,
    computeSync,
    warm,
    matches,
    close,
    [Symbol.asyncDispose]: close,
    toString: () => description,
    toJSON: () => ({ table, columns: names, bits, version, output }),
    [Symbol.for('nodejs.util.inspect.custom')]: () => description,
  });
}
