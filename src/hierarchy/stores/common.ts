/**
 * What the stores of kms-envelope/node share: the error for a record that fails its check, the
 * mapping of a database row to a StoredKey, and the checks on table names and arguments.
 */
import { quoteTableName } from '../../core/sql-names.ts';
import { checkStoredKey, checkTombstone, type KeyState, type PartitionTombstone, type StoredKey } from '../key-store.ts';

/**
 * A stored record (or the whole store file) is not a valid key record. A TypeError, as
 * checkStoredKey's, with the partition and version it was read for, so a corrupt row is never
 * used and the operator knows which one to look at.
 */
export class CorruptKeyRecordError extends TypeError {
  readonly code = 'ERR_KEY_RECORD_CORRUPT';
  /** Undefined when the whole store (a file that does not parse) is corrupt. */
  readonly partition: string | undefined;
  readonly version: number | undefined;
  constructor(store: string, partition: string | undefined, version: number | undefined, detail: string, options?: { cause?: unknown }) {
    const what = partition === undefined ? '' : ` the record of partition ${JSON.stringify(partition)}${version === undefined ? '' : ` version ${version}`}`;
    super(`${store}:${what} is corrupt (${detail}); it is not used`, options);
    this.name = 'CorruptKeyRecordError';
    this.partition = partition;
    this.version = version;
  }
}

/** A row as the SQL stores select it (column names of the table). */
interface KeyRow {
  partition: unknown;
  version: unknown;
  state: unknown;
  provider: unknown;
  key_id: unknown;
  ciphertext_blob: unknown;
  created_at: unknown;
}

export const COLUMNS = 'partition, version, state, provider, key_id, ciphertext_blob, created_at';

/** Integers may come back as bigint (better-sqlite3 safeIntegers) or as text (pg's BIGINT). */
function integer(value: unknown): unknown {
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (typeof value === 'string' && /^-?[0-9]{1,16}$/.test(value) && Number.isSafeInteger(Number(value))) return Number(value);
  return value;
}

/**
 * A row read for (partition, version) as a checked, frozen StoredKey; anything else is a
 * CorruptKeyRecordError naming them. `version` is undefined when the row was found by partition only.
 */
export function keyFromRow(store: string, row: unknown, partition: string, version?: number): StoredKey {
  const r = (typeof row === 'object' && row !== null ? row : {}) as Partial<KeyRow>;
  const key = {
    partition: r.partition,
    version: integer(r.version),
    state: r.state,
    provider: r.provider,
    keyId: r.key_id,
    ciphertextBlob: r.ciphertext_blob,
    createdAt: integer(r.created_at),
  } as unknown as StoredKey;
  const named = version ?? (typeof key.version === 'number' ? key.version : undefined);
  try {
    checkStoredKey(key, store);
  } catch (error) {
    throw new CorruptKeyRecordError(store, partition, named, 'not a stored key record', { cause: error });
  }
  if (key.partition !== partition || (version !== undefined && key.version !== version)) {
    throw new CorruptKeyRecordError(store, partition, named, `it names partition ${JSON.stringify(key.partition)} version ${key.version}`);
  }
  return Object.freeze(key);
}

/** Checks a new record for the SQL stores: a valid key whose createdAt fits an integer column. */
export function checkNewKey(key: StoredKey): StoredKey {
  checkStoredKey(key, 'createVersion');
  if (!Number.isSafeInteger(key.createdAt)) throw new RangeError('createVersion: "createdAt" expected an integer (milliseconds since the epoch)');
  return key;
}

export function checkState(state: KeyState): void {
  if (state !== 'active' && state !== 'decrypt-only') throw new TypeError(`setState: "state" expected 'active' or 'decrypt-only', got ${JSON.stringify(state)}`);
}

/** A retired version's state never changes again (its wrapped key is gone). */
export function checkNotRetired(key: StoredKey | undefined, partition: string, version: number): void {
  if (key?.state === 'retired') throw new RangeError(`key version ${version} of partition ${JSON.stringify(partition)} is retired: its state cannot change`);
}

export function missingVersion(partition: string, version: number): RangeError {
  return new RangeError(`no key version ${version} in partition ${JSON.stringify(partition)}`);
}

/**
 * The tombstone table beside a key table: `<table>_tombstones` in the same schema (the name cut to
 * fit 63 characters), unless named.
 */
export function tombstoneTableName(table: string, given: string | undefined): string {
  if (given !== undefined) {
    quoteTableName(given);
    return given;
  }
  const parts = table.split('.');
  parts.push(`${parts.pop()!.slice(0, 63 - '_tombstones'.length)}_tombstones`);
  return parts.join('.');
}

export const TOMBSTONE_COLUMNS = 'partition, version, shredded_at';

/** A tombstone row read for `partition` as a checked, frozen PartitionTombstone; else a CorruptKeyRecordError. */
export function tombstoneFromRow(store: string, row: unknown, partition: string): PartitionTombstone {
  const r = (typeof row === 'object' && row !== null ? row : {}) as { partition?: unknown; version?: unknown; shredded_at?: unknown };
  const tombstone = { partition: r.partition, version: integer(r.version), shreddedAt: integer(r.shredded_at) } as PartitionTombstone;
  try {
    checkTombstone(tombstone, store);
  } catch (error) {
    throw new CorruptKeyRecordError(store, partition, undefined, 'not a partition tombstone', { cause: error });
  }
  if (tombstone.partition !== partition) throw new CorruptKeyRecordError(store, partition, undefined, `its tombstone names partition ${JSON.stringify(tombstone.partition)}`);
  return Object.freeze(tombstone);
}

export { quoteTableName };
