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
import { base64url, describe, isBytes, wipe } from '../core/bytes.ts';
import { ClosedError, KeyNotWarmError, PartitionShreddedError } from '../core/errors.ts';
import type { SuiteKey } from '../core/key-source.ts';
import { blindIndexInfo, checkPartition, ColumnKeyCache, IndexKeyLoader, truncateIndex } from './blind-index-keys.ts';
import { type BlindIndexOptions, type BlindIndexOutput, type CompoundIndexOptions, type IndexSettings, resolveIndexOptions, type SingleColumnIndexOptions } from './blind-index-options.ts';
import { type BlindIndexValue, encodeIndexMessage, isDate, normalizerChain, normalizeValue } from './blind-index-values.ts';
import type { BlindIndexWarning } from './blind-index-warnings.ts';

export type { BlindIndexNormalizer, BlindIndexValue } from './blind-index-values.ts';
export type { BlindIndexSizing, BlindIndexWarning } from './blind-index-warnings.ts';
export { blindIndexWarnings, expectedFalsePositives } from './blind-index-warnings.ts';
export { BLIND_INDEX_PARTITION_SUFFIX, blindIndexPartition } from './blind-index-keys.ts';
export type { BlindIndexColumn, BlindIndexOptions, BlindIndexOutput, CompoundIndexOptions, SingleColumnIndexOptions } from './blind-index-options.ts';

/** The values of a compound index: in the declared order, or by column name (other properties are ignored). */
export type CompoundIndexValue = readonly BlindIndexValue[] | Readonly<Record<string, BlindIndexValue | null | undefined>>;

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
export function createBlindIndex(options: BlindIndexOptions): BlindIndex<IndexOut, IndexIn> {
  return new HierarchyBlindIndex(resolveIndexOptions(options));
}

type IndexOut = string | Uint8Array<ArrayBuffer>;
type IndexIn = BlindIndexValue | CompoundIndexValue;

function closedError(): ClosedError {
  const error = new ClosedError();
  error.message = 'the blind index is closed';
  return error;
}

/**
 * One index: its options resolved once (IndexSettings), its column keys and key loads in private
 * fields. The public members are own properties, bound, and the object is frozen (as it always was).
 */
class HierarchyBlindIndex implements BlindIndex<IndexOut, IndexIn> {
  readonly table: string;
  readonly columns: readonly string[];
  readonly bits: number;
  readonly version: number;
  readonly output: BlindIndexOutput;
  readonly warnings: readonly BlindIndexWarning[];
  readonly #s: IndexSettings;
  readonly #keys: ColumnKeyCache;
  readonly #loader: IndexKeyLoader;
  #closed = false;

  constructor(settings: IndexSettings) {
    this.#s = settings;
    this.#keys = new ColumnKeyCache(settings.backend, settings.table, settings.columnField, settings.maxKeys);
    this.#loader = new IndexKeyLoader(settings.keys, settings.hierarchy, settings.version);
    this.table = settings.table;
    this.columns = settings.names;
    this.bits = settings.bits;
    this.version = settings.version;
    this.output = settings.output;
    this.warnings = settings.warnings;
    const description = `BlindIndex { table: ${JSON.stringify(this.table)}, columns: ${JSON.stringify(this.columns)}, bits: ${this.bits}, version: ${this.version}, output: "${this.output}" }`;
    const { table, columns, bits, version, output } = this;
    Object.assign(this, {
      [Symbol.asyncDispose]: this.close,
      toString: () => description,
      toJSON: () => ({ table, columns, bits, version, output }),
      [Symbol.for('nodejs.util.inspect.custom')]: () => description,
    });
    Object.freeze(this);
  }

  readonly compute = async (value: IndexIn, call?: BlindIndexCallOptions): Promise<IndexOut> => {
    if (this.#closed) throw closedError();
    const partition = this.#partitionOf(call);
    const msg = this.#message(value);
    try {
      const got = this.#loader.peek(partition);
      if (!(got instanceof Promise)) return this.#finish(partition, got, msg);
      const loaded = await this.#loader.load(partition, got);
      if (this.#closed) throw closedError();
      return this.#finish(partition, loaded, msg);
    } catch (error) {
      this.#dropIfShredded(partition, error);
      throw error;
    } finally {
      wipe(msg);
    }
  };

  readonly computeSync = (value: IndexIn, call?: BlindIndexCallOptions): IndexOut => {
    if (this.#closed) throw closedError();
    const partition = this.#partitionOf(call);
    const msg = this.#message(value);
    try {
      const got = this.#loader.peek(partition);
      if (got instanceof Promise) {
        got.catch((error: unknown) => this.#dropIfShredded(partition, error)); // the load goes on for the next call; its failure is that call's to see
        throw new BlindIndexNotWarmError(this.#s.label, partition, this.version);
      }
      return this.#finish(partition, got, msg);
    } catch (error) {
      this.#dropIfShredded(partition, error);
      throw error;
    } finally {
      wipe(msg);
    }
  };

  readonly warm = async (partitions: readonly string[]): Promise<void> => {
    if (this.#closed) throw closedError();
    if (!Array.isArray(partitions)) throw new TypeError(`"partitions" expected an array, got ${describe(partitions)}`);
    const checked = partitions.map((p: unknown) => checkPartition(p));
    await Promise.all(
      checked.map(async (partition) => {
        const loaded = await this.#loader.load(partition);
        if (this.#closed) throw closedError();
        this.#keys.get(partition, loaded);
      }),
    );
  };

  readonly matches = (a: IndexIn, b: IndexIn): boolean => {
    const x = this.#message(a);
    let y: Uint8Array | undefined;
    try {
      y = this.#message(b);
      return x.length === y.length && x.every((byte, i) => byte === y![i]);
    } finally {
      wipe(x); // also when b is refused
      if (y) wipe(y);
    }
  };

  readonly close = async (): Promise<void> => {
    this.#closed = true;
    this.#keys.clear();
  };

  declare readonly [Symbol.asyncDispose]: () => Promise<void>;

  #partitionOf(call: BlindIndexCallOptions | undefined): string {
    return call?.partition === undefined ? checkPartition(this.#s.defaultPartition) : checkPartition(call.partition);
  }

  /** The normalised values of an input, in column order. */
  #valuesOf(value: unknown): BlindIndexValue[] {
    const { columns, where, label, names } = this.#s;
    if (columns.length === 1) return [normalizeValue(value as BlindIndexValue, columns[0]!.chain, where[0])];
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

  #message(value: unknown): Uint8Array {
    return encodeIndexMessage(this.#valuesOf(value), this.#s.where);
  }

  /** The index value of a message under a partition's key (synchronous: the SuiteKey is used at once). */
  #finish(partition: string, suiteKey: SuiteKey, msg: Uint8Array): IndexOut {
    const digest = this.#s.hmac(this.#keys.get(partition, suiteKey), msg);
    const out = truncateIndex(digest, this.bits);
    wipe(digest);
    return this.output === 'bytes' ? out : base64url.encode(out);
  }

  /** A shredded partition's column key is wiped as soon as the hierarchy refuses its key; the error goes on. */
  #dropIfShredded(partition: string, error: unknown): void {
    if (error instanceof PartitionShreddedError) this.#keys.drop(partition);
  }
}

/** For tests only: the pieces of the format (FORMAT.md §11), checked against its worked example. */
export const testing = Object.freeze({ blindIndexInfo, truncateIndex, normalizerChain, normalizeValue, encodeIndexMessage });
