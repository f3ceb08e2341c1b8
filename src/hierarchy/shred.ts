/**
 * Crypto-shredding (README "Crypto-shredding"): what a hierarchy knows of shredded partitions (the
 * key store's tombstones), shred() of a tenant and its derived partitions, and recreate().
 */
import { PartitionShreddedError } from '../core/errors.ts';
import { hasKeyAdministration, type KeyProvider } from '../kms/key-provider.ts';
import { checkTombstone, type KeyStore, type StoredKey } from './key-store.ts';
import type { ShredOptions, ShredReport } from './types.ts';

/**
 * The suffixes of the partitions derived from a partition that the library makes: `#blind-index`
 * (blind-index.ts, BLIND_INDEX_PARTITION_SUFFIX) and `#search` (range and prefix indexes,
 * SEARCH_PARTITION_SUFFIX). shred(tenant) covers `tenant` and each of these.
 */
export const DERIVED_PARTITION_SUFFIXES: readonly string[] = Object.freeze(['#blind-index', '#search']);

/** Tombstones remembered per process at most (they are permanent facts; past this the map starts over). */
const SHREDDED_MAX = 10_000;

/**
 * What a hierarchy knows of shredded partitions (the key store's tombstones): which versions may
 * never be used or created again, and which partitions refused a seal lately. Every key load reads
 * the partition's tombstone with the key record, so a version shredded elsewhere (or created by a
 * process that raced the shred) is refused once loaded, and a known one at once, with no store call.
 */
export class ShredGuard {
  readonly #store: KeyStore;
  readonly #now: () => number;
  readonly #refusalMs: number;
  readonly suffixes: readonly string[];
  /** Partition -> the highest version shredded, as the store said. */
  readonly #shredded = new Map<string, number>();
  /** Partition -> until when a seal is refused without asking the store again (as the active version is cached). */
  readonly #refused = new Map<string, number>();

  constructor(store: KeyStore, now: () => number, refusalMs: number, suffixes: readonly string[] | undefined) {
    this.#store = store;
    this.#now = now;
    this.#refusalMs = refusalMs;
    const extra = suffixes ?? [];
    if (!Array.isArray(extra) || !extra.every((x) => typeof x === 'string' && x.length > 0)) {
      throw new TypeError('"derivedPartitionSuffixes" expected an array of non-empty strings');
    }
    this.suffixes = Object.freeze([...new Set([...DERIVED_PARTITION_SUFFIXES, ...extra])]);
  }

  /** Whether the store keeps tombstones (shred needs them). */
  get supported(): boolean {
    return typeof this.#store.addTombstone === 'function' && typeof this.#store.getTombstone === 'function';
  }

  /** The partition and the partitions derived from it. */
  family(partition: string): string[] {
    return [partition, ...this.suffixes.map((suffix) => partition + suffix)];
  }

  /** Throws at once when the version is known shredded: no store call, no KMS call. */
  checkKnown(partition: string, version: number): void {
    const shredded = this.#shredded.get(partition);
    if (shredded !== undefined && version <= shredded) throw new PartitionShreddedError(partition, shredded, 'open');
  }

  /** Throws at once when a seal for the partition was refused lately. */
  checkSeal(partition: string): void {
    const until = this.#refused.get(partition);
    if (until === undefined) return;
    if (this.#now() < until) throw new PartitionShreddedError(partition, this.#shredded.get(partition) ?? 1, 'seal');
    this.#refused.delete(partition);
  }

  /** The highest version shredded of the partition, from the store (undefined: never shredded). */
  async tombstone(partition: string): Promise<number | undefined> {
    if (typeof this.#store.getTombstone !== 'function') return undefined;
    const found = await this.#store.getTombstone(partition);
    if (found === undefined) return undefined;
    checkTombstone(found, `key store tombstone of partition ${JSON.stringify(partition)}`);
    if (found.partition !== partition) throw new TypeError(`key store tombstone of partition ${JSON.stringify(partition)}: it names partition ${JSON.stringify(found.partition)}`);
    this.note(partition, found.version);
    return found.version;
  }

  note(partition: string, version: number): void {
    if (this.#shredded.size >= SHREDDED_MAX && !this.#shredded.has(partition)) this.#shredded.clear();
    this.#shredded.set(partition, Math.max(version, this.#shredded.get(partition) ?? 0));
  }

  /**
   * Throws PartitionShreddedError when no new version may be made for a partition that has none
   * above `tombstone` (its own): it was shredded, or it is derived from a tenant that was shredded
   * and not re-created (a search index of a suffix added since). Refuses seals for a while then.
   */
  async checkCreate(partition: string, tombstone: number | undefined): Promise<void> {
    let refused = tombstone;
    for (const suffix of refused === undefined ? this.suffixes : []) {
      if (!partition.endsWith(suffix) || partition.length === suffix.length) continue;
      const base = partition.slice(0, -suffix.length);
      const baseTombstone = await this.tombstone(base);
      if (baseTombstone === undefined) continue;
      const active = await this.#store.getActive(base);
      if (!active || active.version <= baseTombstone) refused = baseTombstone;
    }
    if (refused === undefined) return;
    this.#refused.set(partition, this.#now() + this.#refusalMs);
    throw new PartitionShreddedError(partition, refused, 'seal');
  }

  /** After recreate(): seals are no longer refused. */
  lift(partition: string): void {
    this.#refused.delete(partition);
  }
}

/** What shredding and re-creating a partition use of a hierarchy. */
export interface ShredContext {
  readonly store: KeyStore;
  readonly guard: ShredGuard;
  /** Drops the partition's keys and active version from memory. */
  readonly forget: (partition: string) => void;
  /** Drops only the partition's active version from memory (the next seal asks the store). */
  readonly forgetActive: (partition: string) => void;
  readonly createVersion: (partition: string, version: number) => Promise<StoredKey>;
}

/**
 * Shreds one partition: a tombstone first (so a failure half-way leaves the keys refused, never
 * usable), then the versions deleted; again while a version created meanwhile (a rotation racing
 * the shred) is found. Returns how many versions were deleted.
 */
async function shredOne(c: ShredContext, partition: string, at: number): Promise<number> {
  let deleted = 0;
  let highest = 1;
  for (let round = 0; round < 3; round++) {
    const versions = await c.store.listVersions(partition);
    if (round > 0 && versions.length === 0) break;
    highest = Math.max(highest, ...versions.map((v) => v.version));
    await c.store.addTombstone!({ partition, version: highest, shreddedAt: at });
    await c.store.deletePartition!(partition);
    deleted += versions.length;
  }
  c.guard.note(partition, highest);
  c.forget(partition);
  return deleted;
}

/** hierarchy.recreate(): a new version above the tombstone of the partition and of each derived partition that has one. */
export async function recreatePartition(c: ShredContext, partition: string): Promise<StoredKey> {
  if (typeof partition !== 'string' || partition.length === 0) throw new TypeError('"partition" expected a non-empty string');
  let first: StoredKey | undefined;
  for (const p of c.guard.family(partition)) {
    const tombstone = await c.guard.tombstone(p);
    if (tombstone === undefined) {
      if (p === partition) throw new RangeError(`recreate: partition ${JSON.stringify(partition)} was never shredded (it needs no re-creating)`);
      continue;
    }
    const versions = await c.store.listVersions(p);
    const last = versions.at(-1)?.version ?? 0;
    const created = last > tombstone ? versions.at(-1)! : await c.createVersion(p, Math.max(last, tombstone) + 1);
    for (const old of versions) if (old.state === 'active' && old.version < created.version) await c.store.setState(p, old.version, 'decrypt-only');
    c.guard.lift(p);
    c.forgetActive(p);
    first ??= created;
  }
  return first!;
}

/**
 * hierarchy.shred(): the tenant and its derived partitions, each tombstoned and emptied; then, with
 * `masterKey`, the tenant's own master key disabled (and scheduled for deletion) through the KMS.
 */
export async function shredTenant(c: ShredContext, resolve: (partition: string) => KeyProvider, partition: string, shredOptions: ShredOptions): Promise<ShredReport> {
  if (typeof partition !== 'string' || partition.length === 0) throw new TypeError('"partition" expected a non-empty string');
  if (typeof c.store.deletePartition !== 'function') throw new TypeError('shred: this key store cannot delete a partition (deletePartition)');
  if (!c.guard.supported) throw new TypeError('shred: this key store keeps no tombstones (addTombstone, getTombstone), so a shredded partition could silently get new keys');
  const { masterKey, deleteAfterDays } = shredOptions;
  if (deleteAfterDays !== undefined && masterKey === undefined) throw new TypeError('"deleteAfterDays" needs "masterKey"');
  const kms = resolve(partition);
  if (masterKey !== undefined && !hasKeyAdministration(kms)) throw new TypeError(`shred: key provider "${kms.id}" cannot disable master keys`);
  const at = Date.now();
  const partitions = c.guard.family(partition);
  let versionsDeleted = 0;
  for (const p of partitions) versionsDeleted += await shredOne(c, p, at);
  let masterKeyDisabled = false;
  let deletionDate: number | undefined;
  if (masterKey !== undefined && hasKeyAdministration(kms)) {
    await kms.disableKey(masterKey);
    masterKeyDisabled = true;
    if (deleteAfterDays !== undefined) deletionDate = (await kms.scheduleKeyDeletion(masterKey, deleteAfterDays)).deletionDate;
  }
  return { versionsDeleted, partitions, masterKeyDisabled, deletionDate };
}
