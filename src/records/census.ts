/**
 * What stored values name, read from their own headers: the (partition, key version) of a sealed
 * field, and censuses of a table for hierarchy.retire() (how many values still name a version).
 * Never from a key-version column: any database writer can set that.
 */
import type { IntermediateKeyRef } from '../core/header.ts';
import { parseHeader } from '../core/header.ts';
import { fieldFromText } from './field-value.ts';
import { looksSealed } from './binding.ts';
import type { AnyTable } from './table.ts';

/**
 * The partition and key version a stored value's header names: undefined for NULL and for a value
 * that is not sealed (legacy plaintext); a typed error for one that looks sealed and does not parse.
 */
export function sealedKeyOf(value: unknown): IntermediateKeyRef | undefined {
  if (value === null || value === undefined || !looksSealed(value)) return undefined;
  const bytes = typeof value === 'string' ? fieldFromText(value) : (value as Uint8Array);
  if (bytes === undefined) throw new TypeError('a value with the sealed prefix "kme." is not base64url');
  const ref = parseHeader(bytes).intermediate;
  if (!ref) throw new TypeError('a sealed value names no key-hierarchy partition (sealed with a KMS data key)');
  return ref;
}

/** The lowest key version the sealed values of a row name (its true marker), or undefined when none is sealed. */
export function lowestVersionOf(table: AnyTable, row: Readonly<Record<string, unknown>>): number | undefined {
  let lowest: number | undefined;
  for (const column of Object.keys(table.columns)) {
    const ref = sealedKeyOf(row[column]);
    if (ref && (lowest === undefined || ref.version < lowest)) lowest = ref.version;
  }
  return lowest;
}

/**
 * How many of a row's values name (partition, version); a value whose header does not parse counts
 * (it cannot be shown not to name it).
 */
export function valuesNaming(table: AnyTable, row: Readonly<Record<string, unknown>>, partition: string, version: number): number {
  let count = 0;
  for (const column of Object.keys(table.columns)) {
    let ref: IntermediateKeyRef | undefined;
    try {
      ref = sealedKeyOf(row[column]);
    } catch {
      count++;
      continue;
    }
    if (ref && ref.partition === partition && ref.version === version) count++;
  }
  return count;
}

export interface CensusOptions {
  /** The table's declaration (its sealed columns, its partition column). */
  table: AnyTable;
  /** The table's SQL name (`name` or `schema.name`); default the declaration's name. */
  sqlTable?: string;
  /** Rows read per round trip; default 1000. */
  batchSize?: number;
}

/** The partition column of a table, if it has one (its rows are then read for one partition only). */
export function censusPartitionColumn(table: AnyTable): string | undefined {
  return typeof table.partition === 'object' ? table.partition.column : undefined;
}

export function censusBatchSize(options: CensusOptions): number {
  const size = options.batchSize ?? 1000;
  if (!Number.isSafeInteger(size) || size < 1 || size > 100_000) throw new RangeError('"batchSize" must be an integer from 1 to 100000');
  return size;
}
