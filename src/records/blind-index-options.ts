/**
 * createBlindIndex()'s options, checked and resolved once into the settings an index keeps.
 */
import type { CryptoBackend } from '../core/backend.ts';
import { describe, utf8 } from '../core/bytes.ts';
import { hmacSha256 as nobleHmacSha256 } from '../core/hashes.ts';
import { type KeySource, keySourceOf } from '../core/key-source.ts';
import { type BackendName, selectBackend } from '../core/select-backend.ts';
import type { KeyHierarchy } from '../hierarchy.ts';
import { blindIndexInfo, checkPartition } from './blind-index-keys.ts';
import { type BlindIndexNormalizer, normalizerChain, type NormalizerFn } from './blind-index-values.ts';
import { type BlindIndexSizing, type BlindIndexWarning, blindIndexWarnings, checkBits } from './blind-index-warnings.ts';

/** A column of a compound index, with its own normalisers (replacing the index's `normalize`). */
export interface BlindIndexColumn {
  name: string;
  normalize?: BlindIndexNormalizer | readonly BlindIndexNormalizer[];
}

/** `base64url` (default): text, RFC 4648 §5 without padding; `bytes`: a Uint8Array, for bytea or BLOB columns. */
export type BlindIndexOutput = 'base64url' | 'bytes';
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

interface ColumnSpec {
  readonly name: string;
  readonly chain: readonly NormalizerFn[];
}

/** What an index keeps of its options. */
export interface IndexSettings {
  readonly hierarchy: KeyHierarchy;
  readonly keys: KeySource;
  readonly table: string;
  readonly bits: number;
  readonly version: number;
  readonly output: BlindIndexOutput;
  readonly defaultPartition: string | undefined;
  readonly maxKeys: number;
  readonly backend: CryptoBackend;
  readonly hmac: (key: Uint8Array, message: Uint8Array) => Uint8Array;
  readonly columns: readonly ColumnSpec[];
  readonly names: readonly string[];
  /** The column field of the key derivation: the names joined by 0x00 (no name holds one). */
  readonly columnField: string;
  /** `blind index table.column` (or `table.(a, b)`), for messages. */
  readonly label: string;
  /** `table.column` of each column, for messages. */
  readonly where: readonly string[];
  readonly warnings: readonly BlindIndexWarning[];
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

function checkOutput(output: BlindIndexOutput): BlindIndexOutput {
  if (output !== 'base64url' && output !== 'bytes') throw new TypeError(`"output" expected "base64url" or "bytes", got ${JSON.stringify(output)}`);
  return output;
}

function checkMaxKeys(maxKeys: number): number {
  if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new RangeError('"maxCachedKeys" must be an integer >= 1');
  return maxKeys;
}

/** The columns of a single-column or a compound index, each with its normalisers. */
function columnsOf(options: BlindIndexOptions, defaultChain: readonly NormalizerFn[]): ColumnSpec[] {
  if (options.column !== undefined && options.columns !== undefined) throw new TypeError('give "column" or "columns", not both');
  if (options.column !== undefined) return [{ name: checkName(options.column, 'column'), chain: defaultChain }];
  const list: unknown = options.columns;
  if (!Array.isArray(list) || list.length < 2) throw new TypeError('"columns" expected two or more columns (or "column" for one)');
  const columns = list.map((c: unknown, i): ColumnSpec => {
    if (typeof c === 'string') return { name: checkName(c, `columns[${i}]`), chain: defaultChain };
    if (typeof c !== 'object' || c === null) throw new TypeError(`"columns[${i}]" expected a name or { name, normalize }, got ${describe(c)}`);
    const { name, normalize } = c as BlindIndexColumn;
    return { name: checkName(name, `columns[${i}].name`), chain: normalize === undefined ? defaultChain : normalizerChain(normalize, `columns[${i}].normalize`) };
  });
  if (new Set(columns.map((c) => c.name)).size !== columns.length) throw new TypeError('"columns" names a column twice');
  return columns;
}

/** The warnings of the index's sizes, reported once to `onWarning`. */
function warningsOf(options: BlindIndexOptions, bits: number, label: string): readonly BlindIndexWarning[] {
  const sizing: BlindIndexSizing = { bits };
  if (options.expectedDistinctValues !== undefined) sizing.expectedDistinctValues = options.expectedDistinctValues;
  if (options.expectedRows !== undefined) sizing.expectedRows = options.expectedRows;
  if (options.unique !== undefined) sizing.unique = options.unique;
  const warnings = Object.freeze(blindIndexWarnings(sizing, label).map((w) => Object.freeze(w)));
  if (options.onWarning) for (const w of warnings) options.onWarning(w);
  return warnings;
}

/** Checks createBlindIndex()'s options (in the order they always were) and resolves them. */
export function resolveIndexOptions(options: BlindIndexOptions): IndexSettings {
  if (typeof options !== 'object' || options === null) throw new TypeError(`"options" expected an object, got ${describe(options)}`);
  const { hierarchy } = options;
  const keys = keySourceOf(hierarchy);
  if (!keys) throw new TypeError('"hierarchy" expected a KeyHierarchy (createKeyHierarchy)');
  const table = checkName(options.table, 'table');
  const bits = checkBits(options.bits);
  const version = checkVersion(options.version ?? 1);
  const output = checkOutput(options.output ?? 'base64url');
  const defaultPartition = options.partition === undefined ? undefined : checkPartition(options.partition);
  const maxKeys = checkMaxKeys(options.maxCachedKeys ?? 10_000);
  const backend: CryptoBackend = selectBackend(options.backend);
  const hmac = backend.hmacSha256 ?? nobleHmacSha256;
  const columns = columnsOf(options, normalizerChain(options.normalize));
  const names = Object.freeze(columns.map((c) => c.name));
  const columnField = names.join('\0');
  const label = `blind index ${table}.${columns.length > 1 ? `(${names.join(', ')})` : names[0]}`;
  blindIndexInfo(table, columnField, 'p'); // the names' lengths, checked now rather than at the first key
  const warnings = warningsOf(options, bits, label);
  const where = names.map((n) => `${table}.${n}`);
  return { hierarchy, keys, table, bits, version, output, defaultPartition, maxKeys, backend, hmac, columns, names, columnField, label, where, warnings };
}
