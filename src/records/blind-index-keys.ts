/**
 * The keys of a blind index (FORMAT.md §11.1): the hierarchy partition `${partition}#blind-index`
 * holds one intermediate key per index version; a column key is HKDF-expanded from it per
 * (table, column, partition). Column keys are cached per partition and wiped when evicted, when
 * the hierarchy hands out another key for the version (a reload), when a shred is seen, and on close.
 */
import type { CryptoBackend } from '../core/backend.ts';
import { describe, utf8, wipe } from '../core/bytes.ts';
import { KeyNotFoundError, KeyUnavailableError } from '../core/errors.ts';
import type { KeySource, SuiteKey } from '../core/key-source.ts';
import { Lru } from '../core/lru.ts';
import { COBBLESTONE_256 } from '../core/suites.ts';
import type { KeyHierarchy } from '../hierarchy.ts';

/** Appended to a partition to name the hierarchy partition that holds its index keys. */
export const BLIND_INDEX_PARTITION_SUFFIX = '#blind-index';

/** The key hierarchy partition of a partition's blind index keys (a per-tenant KMS resolver sees this name). */
export function blindIndexPartition(partition: string): string {
  return partition + BLIND_INDEX_PARTITION_SUFFIX;
}

/** Appended to a partition to name the hierarchy partition that holds its range and prefix index keys (FORMAT.md §11a.1). */
export const SEARCH_PARTITION_SUFFIX = '#search';

const INFO_LABEL = 'kms-envelope/blind-index@v1';
const KEY_LENGTH = 32;
const MAX_PARTITION_BYTES = 255; // a key store's limit, for the suffixed name

export function checkPartition(partition: unknown): string {
  if (typeof partition !== 'string' || partition.length === 0) {
    throw new TypeError(`"partition" expected a non-empty string, got ${partition === undefined ? 'none (pass it to the call, or to createBlindIndex)' : describe(partition)}`);
  }
  for (const suffix of [BLIND_INDEX_PARTITION_SUFFIX, SEARCH_PARTITION_SUFFIX]) {
    if (partition.endsWith(suffix)) throw new RangeError(`"partition" may not end with "${suffix}": that names index keys`);
  }
  if (utf8(partition + BLIND_INDEX_PARTITION_SUFFIX, 'partition').length > MAX_PARTITION_BYTES) {
    throw new RangeError(`"partition" may be at most ${MAX_PARTITION_BYTES - BLIND_INDEX_PARTITION_SUFFIX.length} UTF-8 bytes`);
  }
  return partition;
}

/** `u16 length || UTF-8` of a name (table, column, partition). */
export function lengthPrefixed(text: string, title: string): Uint8Array {
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

interface CachedKey {
  /** The column key (32 bytes): ours, wiped on eviction and close(). */
  readonly key: Uint8Array;
  /** The hierarchy's key it was derived from, compared by identity: a reload derives again. */
  readonly source: Uint8Array;
}

const allZero = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0);

/** The column keys of one index, per partition, least recently used evicted and wiped. */
export class ColumnKeyCache {
  readonly #cache = new Lru<CachedKey>();
  readonly #backend: CryptoBackend;
  readonly #table: string;
  readonly #columnField: string;
  readonly #maxKeys: number;
  readonly #derive: ((root: Uint8Array, partition: string, out: Uint8Array) => void) | undefined;

  /**
   * `columnField`: the column field of the key derivation (the names joined by 0x00); `derive`:
   * another derivation of the column key from the root key (a search index's, FORMAT.md §11a.1).
   */
  constructor(backend: CryptoBackend, table: string, columnField: string, maxKeys: number, derive?: (root: Uint8Array, partition: string, out: Uint8Array) => void) {
    this.#backend = backend;
    this.#table = table;
    this.#columnField = columnField;
    this.#maxKeys = maxKeys;
    this.#derive = derive;
  }

  /** The column key of a partition from the hierarchy's key, cached; use it before yielding. */
  get(partition: string, suiteKey: SuiteKey): Uint8Array {
    const held = this.#cache.peek(partition);
    if (held && held.source === suiteKey.key) {
      this.#cache.touch(partition, held);
      return held.key;
    }
    if (held) this.drop(partition);
    if (suiteKey.key.length !== KEY_LENGTH || allZero(suiteKey.key)) {
      throw new KeyUnavailableError(`the key hierarchy gave a wiped key for ${JSON.stringify(blindIndexPartition(partition))} (closed or forgotten meanwhile)`);
    }
    const key = new Uint8Array(KEY_LENGTH);
    if (this.#derive) this.#derive(suiteKey.key, partition, key);
    else this.#backend.hkdfExpandSha512(suiteKey.key, [blindIndexInfo(this.#table, this.#columnField, partition)], [key]);
    this.#cache.set(partition, { key, source: suiteKey.key });
    this.#evictOverflow();
    return key;
  }

  /** Forgets a partition's column key, wiped. */
  drop(partition: string): void {
    const held = this.#cache.peek(partition);
    if (!held) return;
    this.#cache.delete(partition);
    wipe(held.key);
  }

  /** Wipes and forgets every column key. */
  clear(): void {
    for (const [, entry] of [...this.#cache.entries()]) wipe(entry.key);
    for (const [partition] of [...this.#cache.entries()]) this.#cache.delete(partition);
  }

  #evictOverflow(): void {
    while (this.#cache.size > this.#maxKeys) {
      const [oldest, evicted] = this.#cache.oldest()!;
      this.#cache.delete(oldest);
      wipe(evicted.key);
    }
  }
}

/**
 * Loads the hierarchy's key of an index version, creating it (and the versions below it) on first
 * use: version 1 as the hierarchy's first seal does, a later one by a rotation once the one before
 * it exists. Two processes racing make one key per version (the store keeps one).
 */
export class IndexKeyLoader {
  readonly #keys: KeySource;
  readonly #hierarchy: KeyHierarchy;
  readonly #version: number;
  readonly #suffix: string;
  /** Creations in flight, per hierarchy partition and version: one per process. */
  readonly #creating = new Map<string, Promise<void>>();

  /** `suffix`: the derived partition of the index's keys (`#blind-index`, or `#search`). */
  constructor(keys: KeySource, hierarchy: KeyHierarchy, version: number, suffix = BLIND_INDEX_PARTITION_SUFFIX) {
    this.#keys = keys;
    this.#hierarchy = hierarchy;
    this.#version = version;
    this.#suffix = suffix;
  }

  /** The key of the index's version for a partition, synchronously when the hierarchy holds it. */
  peek(partition: string): SuiteKey | Promise<SuiteKey> {
    return this.#keys.openKey({ partition: partition + this.#suffix, version: this.#version }, COBBLESTONE_256);
  }

  /** The key of the index's version for a partition (`first`: a load already started by peek()). */
  load(partition: string, first?: Promise<SuiteKey>): Promise<SuiteKey> {
    return this.#loadVersion(partition + this.#suffix, this.#version, first);
  }

  /** Creates version `v` of a hierarchy partition of index keys, and the versions below it that it lacks. */
  #create(indexPartition: string, v: number): Promise<void> {
    const id = `${v}:${indexPartition}`;
    let flight = this.#creating.get(id);
    if (!flight) {
      flight = this.#createNow(indexPartition, v).finally(() => this.#creating.delete(id));
      this.#creating.set(id, flight);
    }
    return flight;
  }

  async #createNow(indexPartition: string, v: number): Promise<void> {
    if (v === 1) {
      await this.#keys.sealKey(indexPartition, COBBLESTONE_256);
    } else {
      await this.#loadVersion(indexPartition, v - 1);
      await this.#hierarchy.rotate(indexPartition);
    }
  }

  /** The hierarchy's key of a version, loading it, and creating it (and those below) on first use. */
  async #loadVersion(indexPartition: string, v: number, first?: SuiteKey | Promise<SuiteKey>): Promise<SuiteKey> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await (first ?? this.#keys.openKey({ partition: indexPartition, version: v }, COBBLESTONE_256));
      } catch (error) {
        // A load that began before a concurrent creation fails; so may a creation that joined it: try again.
        if (!(error instanceof KeyNotFoundError) || attempt === 3) throw error;
      }
      first = undefined;
      try {
        await this.#create(indexPartition, v);
      } catch (error) {
        if (!(error instanceof KeyNotFoundError) || attempt === 2) throw error;
      }
    }
  }
}
