/**
 * While a row waits for a key to load, later rows that need the same key wait for it too before
 * they try the synchronous path: a batch under a cold key then makes one KeyNotWarmError, not one
 * per row (each of which also left a discarded sealing running behind it). The key is the
 * partition's active one for a seal, the partition's version named by the row's first sealed
 * value for an open: a cold old version does not hold up rows whose keys are in memory. A row
 * that waited and still finds no key (the load failed, or another version is needed) goes on alone.
 */
import { intermediateKeyVersion } from '../core/header.ts';
import { looksSealed, partitionOf } from './binding.ts';
import { fieldFromText } from './field-value.ts';
import type { AnyTable, Row } from './table.ts';

/** The id of the key a row needs, or undefined when it cannot be told before the work. */
type KeyId = (t: AnyTable, row: Row) => string | undefined;

const sealedColumns = new WeakMap<AnyTable, readonly string[]>();
/** The table's encrypted columns, listed once per table (a table is frozen). */
export function sealedColumnsOf(t: AnyTable): readonly string[] {
  let columns = sealedColumns.get(t);
  if (!columns) sealedColumns.set(t, (columns = Object.freeze(Object.keys(t.columns))));
  return columns;
}

/** The columns of the row that hold a value (neither null nor undefined). */
export const present = (t: AnyTable, row: Row): string[] => sealedColumnsOf(t).filter((c) => row[c] !== null && row[c] !== undefined);

const legacyTables = new WeakMap<AnyTable, boolean>();
/** Whether a column of the table is in migration mode (reads legacy plaintext). */
export function readsLegacy(t: AnyTable): boolean {
  let legacy = legacyTables.get(t);
  if (legacy === undefined) legacyTables.set(t, (legacy = Object.values(t.columns).some((f) => f.legacyPlaintext === true)));
  return legacy;
}

/** The row's partition, or undefined when it has none (open() does not need it: the header names it). */
function partitionIfAny(t: AnyTable, row: Row): string | undefined {
  try {
    return partitionOf(t, row);
  } catch {
    return undefined;
  }
}

/** What a seal of this row waits for: its partition's active key. */
export function sealKeyId(t: AnyTable, row: Row): string | undefined {
  const partition = partitionIfAny(t, row);
  return partition === undefined ? undefined : `seal\0${partition}`;
}

/** What an open of this row waits for: the key version its first sealed value names, in its partition. */
export function openKeyId(t: AnyTable, row: Row): string | undefined {
  const partition = partitionIfAny(t, row);
  if (partition === undefined) return undefined;
  for (const column of present(t, row)) {
    const value = row[column];
    if (!looksSealed(value)) continue;
    const sealed = typeof value === 'string' ? fieldFromText(value) : (value as Uint8Array);
    try {
      const version = sealed && intermediateKeyVersion(sealed);
      return version === undefined ? undefined : `open\0${version}\0${partition}`;
    } catch {
      return undefined; // not a header: the open reports it
    }
  }
  return undefined;
}

/** The key loads in flight, by the id of the key. */
export class KeyLoads {
  readonly #loading = new Map<string, Promise<unknown>>();

  /** Notes `work` as the load of key `id` until it settles; returns it. */
  track<T>(id: string | undefined, work: Promise<T>): Promise<T> {
    if (id === undefined) return work;
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    this.#loading.set(id, settled);
    void settled.then(() => {
      if (this.#loading.get(id) === settled) this.#loading.delete(id);
    });
    return work;
  }

  /** The load this row waits for, if any. */
  waitFor(t: AnyTable, row: Row, keyId: KeyId): Promise<unknown> | undefined {
    if (this.#loading.size === 0) return undefined;
    const id = keyId(t, row);
    return id === undefined ? undefined : this.#loading.get(id);
  }
}
