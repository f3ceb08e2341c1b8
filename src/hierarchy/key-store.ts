/**
 * Key stores: where the wrapped intermediate keys of the key hierarchy live (FORMAT.md §10). A
 * store holds only wrapped keys (the KMS's ciphertext blobs), never a plaintext key, so a copy of
 * it is as safe as a copy of the sealed data. One record per (partition, version).
 *
 * Writing a store for another database (Redis, DynamoDB, ...): implement these five calls.
 * createVersion must be atomic: when two processes create the same (partition, version) at once,
 * exactly one record is kept and both callers get that one (a conditional put, an INSERT ... ON
 * CONFLICT DO NOTHING followed by a read, Redis SET NX, DynamoDB attribute_not_exists).
 */

/** A version of a partition's intermediate key, as stored. */
export interface StoredKey {
  /** The caller's partition: a tenant, or a tenant and purpose. 1-255 UTF-8 bytes. */
  readonly partition: string;
  /** 1, 2, 3, ... per partition. */
  readonly version: number;
  /**
   * `active`: used for new writes (the highest active version); `decrypt-only`: opens old messages
   * only; `retired`: its wrapped key is deleted (hierarchy.retire), `ciphertextBlob` is empty, and
   * it never loads again (KeyVersionRetiredError). The record stays so the number is never reused.
   */
  readonly state: KeyState;
  /** The key provider that wrapped it, its master key id, and the wrapped key. */
  readonly provider: string;
  readonly keyId: string;
  readonly ciphertextBlob: string;
  /** Milliseconds since the epoch, when the version was created. */
  readonly createdAt: number;
}

export type KeyState = 'active' | 'decrypt-only' | 'retired';

/**
 * What crypto-shredding leaves of a partition: its name and the highest key version it had. No
 * version up to `version` is ever used again, nor created again (a version made by a process that
 * raced the shred is refused as shredded too); a partition is re-created only explicitly
 * (hierarchy.recreate), with versions above it.
 */
export interface PartitionTombstone {
  readonly partition: string;
  /** The highest key version shredded, at least 1. */
  readonly version: number;
  /** Milliseconds since the epoch, when it was (last) shredded. */
  readonly shreddedAt: number;
}

/** Checks a tombstone's fields: a TypeError for anything else. */
export function checkTombstone(tombstone: PartitionTombstone, where: string): PartitionTombstone {
  const t = tombstone as Partial<PartitionTombstone> | null;
  const ok =
    typeof t === 'object' &&
    t !== null &&
    typeof t.partition === 'string' &&
    t.partition.length > 0 &&
    Number.isSafeInteger(t.version) &&
    t.version! >= 1 &&
    t.version! <= 0xffffffff &&
    Number.isSafeInteger(t.shreddedAt);
  if (!ok) throw new TypeError(`${where}: not a partition tombstone`);
  return tombstone;
}

/** Two tombstones of one partition as one: the higher version, the later time (a store keeps this). */
export function mergeTombstones(a: PartitionTombstone | undefined, b: PartitionTombstone): PartitionTombstone {
  if (!a) return Object.freeze({ partition: b.partition, version: b.version, shreddedAt: b.shreddedAt });
  return Object.freeze({ partition: b.partition, version: Math.max(a.version, b.version), shreddedAt: Math.max(a.shreddedAt, b.shreddedAt) });
}

/** A stored version's wrapping: the provider, its master key and the wrapped key. */
export interface WrappedKeyFields {
  readonly provider: string;
  readonly keyId: string;
  readonly ciphertextBlob: string;
}

/** Checks replaceWrappedKey's new fields: labelled TypeErrors. */
export function checkWrappedKeyFields(wrapped: WrappedKeyFields): WrappedKeyFields {
  const ok = (v: unknown) => typeof v === 'string' && v.length > 0;
  if (!wrapped || !ok(wrapped.provider) || !ok(wrapped.keyId) || !ok(wrapped.ciphertextBlob)) {
    throw new TypeError('replaceWrappedKey: "wrapped" expected { provider, keyId, ciphertextBlob } as non-empty strings');
  }
  return wrapped;
}

export interface KeyStore {
  /** The record of (partition, version), or undefined. */
  getVersion(partition: string, version: number): Promise<StoredKey | undefined>;
  /** The highest version whose state is `active`, or undefined when the partition has none. */
  getActive(partition: string): Promise<StoredKey | undefined>;
  /**
   * Stores `key` unless (partition, version) exists; returns the record that is stored afterwards
   * (the caller's, or the one another process created first).
   */
  createVersion(key: StoredKey): Promise<StoredKey>;
  /** Every version of the partition, lowest first. */
  listVersions(partition: string): Promise<StoredKey[]>;
  /** Sets a version's state (`decrypt-only` retires it from new writes). */
  setState(partition: string, version: number, state: KeyState): Promise<void>;
  /**
   * Retires a version (hierarchy.retire): its state becomes `retired` and its wrapped key is
   * deleted (`ciphertextBlob` empty), only if its state is `decrypt-only` now, in one statement (a
   * compare and set). Returns whether it did. Optional: hierarchy.retire() needs it (the four
   * stores here have it).
   */
  retireVersion?(partition: string, version: number): Promise<boolean>;
  /** Removes every version of the partition (crypto-shredding). Optional. */
  deletePartition?(partition: string): Promise<void>;
  /**
   * Records that a partition was shredded, keeping the higher version (and the later time) when it
   * already has a tombstone; tombstones are never removed. Optional, with getTombstone and
   * listTombstones: hierarchy.shred() needs them (the four stores here have them).
   */
  addTombstone?(tombstone: PartitionTombstone): Promise<void>;
  /** The partition's tombstone, or undefined when it was never shredded. */
  getTombstone?(partition: string): Promise<PartitionTombstone | undefined>;
  /** Every tombstone (export). */
  listTombstones?(): Promise<PartitionTombstone[]>;
  /** Every partition with at least one version (master-key rotation, verify, export). Optional. */
  listPartitions?(): Promise<string[]>;
  /**
   * Replaces a version's wrapped key (master-key rotation: the same intermediate key, wrapped under
   * another master key) if its blob is still `expectedBlob`; returns whether it did. A compare and
   * set, so two rotations at once never lose a write: the second finds the blob changed. Optional.
   */
  replaceWrappedKey?(partition: string, version: number, expectedBlob: string, wrapped: WrappedKeyFields): Promise<boolean>;
  /** Releases connections or handles the store opened itself. Optional. */
  close?(): Promise<void>;
}

/** Checks a record's fields; a store that returns anything else is corrupt. */
export function checkStoredKey(key: StoredKey, where: string): StoredKey {
  const ok =
    typeof key === 'object' &&
    key !== null &&
    typeof key.partition === 'string' &&
    key.partition.length > 0 &&
    Number.isSafeInteger(key.version) &&
    key.version >= 1 &&
    key.version <= 0xffffffff &&
    (key.state === 'active' || key.state === 'decrypt-only' || key.state === 'retired') &&
    new TextEncoder().encode(key.partition).length <= 255 &&
    typeof key.provider === 'string' &&
    key.provider.length > 0 &&
    typeof key.keyId === 'string' &&
    key.keyId.length > 0 &&
    typeof key.ciphertextBlob === 'string' &&
    // A retired version keeps no wrapped key; every other one has one.
    (key.state === 'retired' ? key.ciphertextBlob === '' : key.ciphertextBlob.length > 0) &&
    Number.isFinite(key.createdAt);
  if (!ok) throw new TypeError(`${where}: not a stored key record`);
  return key;
}

/** A key store in memory: for tests, single processes, and as the model the others follow. */
export class MemoryKeyStore implements KeyStore {
  readonly #partitions = new Map<string, Map<number, StoredKey>>();
  readonly #tombstones = new Map<string, PartitionTombstone>();

  async getVersion(partition: string, version: number): Promise<StoredKey | undefined> {
    return this.#partitions.get(partition)?.get(version);
  }

  async getActive(partition: string): Promise<StoredKey | undefined> {
    let best: StoredKey | undefined;
    for (const key of this.#partitions.get(partition)?.values() ?? []) {
      if (key.state === 'active' && (!best || key.version > best.version)) best = key;
    }
    return best;
  }

  async createVersion(key: StoredKey): Promise<StoredKey> {
    checkStoredKey(key, 'createVersion');
    let versions = this.#partitions.get(key.partition);
    if (!versions) {
      versions = new Map();
      this.#partitions.set(key.partition, versions);
    }
    const existing = versions.get(key.version);
    if (existing) return existing;
    const stored = Object.freeze({ ...key });
    versions.set(key.version, stored);
    return stored;
  }

  async listVersions(partition: string): Promise<StoredKey[]> {
    return [...(this.#partitions.get(partition)?.values() ?? [])].sort((a, b) => a.version - b.version);
  }

  async setState(partition: string, version: number, state: KeyState): Promise<void> {
    const versions = this.#partitions.get(partition);
    const key = versions?.get(version);
    if (!versions || !key) throw new RangeError(`no key version ${version} in partition ${JSON.stringify(partition)}`);
    if (key.state === 'retired' || state === 'retired') throw new RangeError(`setState: key version ${version} of partition ${JSON.stringify(partition)} cannot become or stop being retired (hierarchy.retire)`);
    versions.set(version, Object.freeze({ ...key, state }));
  }

  async retireVersion(partition: string, version: number): Promise<boolean> {
    const versions = this.#partitions.get(partition);
    const key = versions?.get(version);
    if (!versions || !key || key.state !== 'decrypt-only') return false;
    versions.set(version, Object.freeze({ ...key, state: 'retired', ciphertextBlob: '' }));
    return true;
  }

  async deletePartition(partition: string): Promise<void> {
    this.#partitions.delete(partition);
  }

  async listPartitions(): Promise<string[]> {
    return [...this.#partitions.keys()].filter((p) => this.#partitions.get(p)!.size > 0).sort();
  }

  async addTombstone(tombstone: PartitionTombstone): Promise<void> {
    checkTombstone(tombstone, 'addTombstone');
    this.#tombstones.set(tombstone.partition, mergeTombstones(this.#tombstones.get(tombstone.partition), tombstone));
  }

  async getTombstone(partition: string): Promise<PartitionTombstone | undefined> {
    return this.#tombstones.get(partition);
  }

  async listTombstones(): Promise<PartitionTombstone[]> {
    return [...this.#tombstones.values()].sort((a, b) => (a.partition < b.partition ? -1 : a.partition > b.partition ? 1 : 0));
  }

  async replaceWrappedKey(partition: string, version: number, expectedBlob: string, wrapped: WrappedKeyFields): Promise<boolean> {
    checkWrappedKeyFields(wrapped);
    const versions = this.#partitions.get(partition);
    const key = versions?.get(version);
    if (!versions || !key || key.ciphertextBlob !== expectedBlob) return false;
    versions.set(version, Object.freeze({ ...key, provider: wrapped.provider, keyId: wrapped.keyId, ciphertextBlob: wrapped.ciphertextBlob }));
    return true;
  }
}
