/**
 * A KeyStore in one JSON file (mode 0600), for a single machine: one process or several.
 *
 * Every change is a read-modify-write of the whole file, so changes from two processes must not
 * interleave: each takes an exclusive lock file beside the store (`<file>.lock`, created with
 * O_EXCL, holding the holder's pid, host and a timestamp), re-reads the file under it, and writes
 * the new file atomically (temporary file, fsync, rename). Readers take no lock: the rename makes
 * every read see one whole file, old or new.
 *
 * A lock left by a process that died is stale after `staleLockMs` and is removed, under a second
 * short lock (`<file>.lock.break`) and only if it is still the very lock judged stale, so two
 * waiters never both break locks and a fresh lock is never removed. A holder that was so slow its
 * lock was broken finds that out before it writes, and fails instead of overwriting.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import {
  checkStoredKey,
  checkTombstone,
  checkWrappedKeyFields,
  type KeyState,
  type KeyStore,
  mergeTombstones,
  type PartitionTombstone,
  type StoredKey,
  type WrappedKeyFields,
} from '../hierarchy/key-store.ts';
import { writeAtomically } from './atomic.ts';
import { checkNotRetired, checkState, CorruptKeyRecordError, missingVersion } from '../hierarchy/stores/common.ts';

export interface JsonFileKeyStoreOptions {
  /** A lock older than this (ms) is taken to be left by a dead process and removed; default 10000. */
  staleLockMs?: number;
  /** How long a change waits for the lock (ms) before it fails; default 30000. */
  lockTimeoutMs?: number;
}

const MARKER = 'kms-envelope key store';

/** Partition -> version (as the JSON key) -> the record as read, checked only when used. */
type Partitions = Map<string, Map<string, unknown>>;

/** Partition -> its tombstone as read (the file's optional `tombstones`), checked only when used. */
type Tombstones = Map<string, unknown>;

function errorCode(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

interface LockSeen {
  content: string;
  ino: number;
  age: number;
}

/** The O_EXCL lock file beside the store (see the module comment). */
class FileLock {
  readonly #path: string;
  readonly #staleMs: number;
  readonly #timeoutMs: number;

  constructor(path: string, staleMs: number, timeoutMs: number) {
    this.#path = path;
    this.#staleMs = staleMs;
    this.#timeoutMs = timeoutMs;
  }

  /** Waits for the lock and returns the token that proves it is ours. */
  async acquire(): Promise<string> {
    const token = randomBytes(12).toString('base64url');
    const start = Date.now();
    let delay = 1;
    for (;;) {
      if (await this.#tryCreate(token)) return token;
      const seen = await this.#look();
      if (seen && seen.age > this.#staleMs && (await this.#breakStale(seen))) continue;
      if (Date.now() - start > this.#timeoutMs) {
        throw Object.assign(new Error(`${this.#path}: the store is locked${seen ? ` (${seen.content || 'no holder written yet'})` : ''}; gave up after ${this.#timeoutMs} ms`), {
          code: 'ERR_LOCK_TIMEOUT',
        });
      }
      // Jittered backoff, so waiters do not retry in step.
      await sleep(delay * (0.5 + Math.random()));
      delay = Math.min(delay * 2, 20);
    }
  }

  async #tryCreate(token: string): Promise<boolean> {
    let handle;
    try {
      handle = await open(this.#path, 'wx', 0o600);
    } catch (error) {
      if (errorCode(error) === 'EEXIST') return false;
      throw error;
    }
    try {
      await handle.writeFile(JSON.stringify({ pid: process.pid, host: hostname(), since: Date.now(), token }));
      await handle.close();
    } catch (error) {
      await handle.close().catch(() => {});
      await unlink(this.#path).catch(() => {});
      throw error;
    }
    return true;
  }

  /** The lock file as it is now, or undefined when there is none. */
  async #look(): Promise<LockSeen | undefined> {
    let handle;
    try {
      handle = await open(this.#path, 'r');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    try {
      // One descriptor for both, so the inode and the content are of the same file.
      const info = await handle.stat();
      const content = await handle.readFile('utf8');
      let since = info.mtimeMs;
      try {
        const parsed = JSON.parse(content) as { since?: unknown };
        if (typeof parsed.since === 'number') since = Math.min(since, parsed.since);
      } catch {
        // Empty while its holder is writing it, or garbage: its mtime says how old it is.
      }
      return { content, ino: info.ino, age: Date.now() - since };
    } finally {
      await handle.close();
    }
  }

  /** Removes the stale lock `seen` if it is still there; false when another waiter is at it. */
  async #breakStale(seen: LockSeen): Promise<boolean> {
    const breaker = `${this.#path}.break`;
    let handle;
    try {
      handle = await open(breaker, 'wx', 0o600);
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
      // A breaker that died between its few calls leaves this file: it too goes stale.
      const info = await stat(breaker).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > this.#staleMs) await unlink(breaker).catch(() => {});
      return false;
    }
    try {
      const now = await this.#look();
      if (now && now.ino === seen.ino && now.content === seen.content && now.age > this.#staleMs) {
        await unlink(this.#path).catch((error: unknown) => {
          if (errorCode(error) !== 'ENOENT') throw error;
        });
      }
      return true;
    } finally {
      await handle.close().catch(() => {});
      await unlink(breaker).catch(() => {});
    }
  }

  /** True while the lock file is still the one `token` created. */
  async holds(token: string): Promise<boolean> {
    try {
      return (JSON.parse(await readFile(this.#path, 'utf8')) as { token?: unknown }).token === token;
    } catch {
      return false;
    }
  }

  async release(token: string): Promise<void> {
    // A lock broken as stale may belong to someone else by now: never remove theirs.
    if (await this.holds(token)) await unlink(this.#path).catch(() => {});
  }
}

export class JsonFileKeyStore implements KeyStore {
  /** The store file's absolute path. */
  readonly path: string;
  readonly #lock: FileLock;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(path: string, options: JsonFileKeyStoreOptions = {}) {
    if (typeof path !== 'string' || path === '') throw new TypeError('"path" expected a file path');
    const staleMs = options.staleLockMs ?? 10_000;
    const timeoutMs = options.lockTimeoutMs ?? 30_000;
    if (!(staleMs > 0)) throw new RangeError('"staleLockMs" expected a number > 0');
    if (!(timeoutMs >= 0)) throw new RangeError('"lockTimeoutMs" expected a number >= 0');
    this.path = resolve(path);
    this.#lock = new FileLock(`${this.path}.lock`, staleMs, timeoutMs);
  }

  async getVersion(partition: string, version: number): Promise<StoredKey | undefined> {
    const raw = (await this.#read()).get(partition)?.get(String(version));
    return raw === undefined ? undefined : this.#check(raw, partition, String(version));
  }

  async getActive(partition: string): Promise<StoredKey | undefined> {
    let best: StoredKey | undefined;
    for (const key of this.#versions(await this.#read(), partition)) {
      if (key.state === 'active' && (!best || key.version > best.version)) best = key;
    }
    return best;
  }

  async createVersion(key: StoredKey): Promise<StoredKey> {
    checkStoredKey(key, 'createVersion');
    const record: StoredKey = {
      partition: key.partition,
      version: key.version,
      state: key.state,
      provider: key.provider,
      keyId: key.keyId,
      ciphertextBlob: key.ciphertextBlob,
      createdAt: key.createdAt,
    };
    // Most calls for an existing version need no lock: records are never replaced, only retired.
    const existing = await this.getVersion(key.partition, key.version);
    if (existing) return existing;
    return this.#change((partitions) => {
      const versions = partitions.get(key.partition) ?? new Map<string, unknown>();
      const existing = versions.get(String(key.version));
      if (existing !== undefined) return { result: this.#check(existing, key.partition, String(key.version)) };
      versions.set(String(key.version), record);
      partitions.set(key.partition, versions);
      return { result: Object.freeze(record), write: true };
    });
  }

  async listVersions(partition: string): Promise<StoredKey[]> {
    return this.#versions(await this.#read(), partition).sort((a, b) => a.version - b.version);
  }

  async setState(partition: string, version: number, state: KeyState): Promise<void> {
    checkState(state);
    await this.#change((partitions) => {
      const versions = partitions.get(partition);
      const raw = versions?.get(String(version));
      if (!versions || raw === undefined) throw missingVersion(partition, version);
      const key = this.#check(raw, partition, String(version));
      checkNotRetired(key, partition, version);
      versions.set(String(version), { ...key, state });
      return { result: undefined, write: true };
    });
  }

  async retireVersion(partition: string, version: number): Promise<boolean> {
    return this.#change((partitions) => {
      const versions = partitions.get(partition);
      const raw = versions?.get(String(version));
      if (!versions || raw === undefined) return { result: false };
      const key = this.#check(raw, partition, String(version));
      if (key.state !== 'decrypt-only') return { result: false };
      versions.set(String(version), { ...key, state: 'retired', ciphertextBlob: '' });
      return { result: true, write: true };
    });
  }

  async deletePartition(partition: string): Promise<void> {
    await this.#change((partitions) => ({ result: undefined, write: partitions.delete(partition) }));
  }

  async listPartitions(): Promise<string[]> {
    return [...(await this.#read())].filter(([, versions]) => versions.size > 0).map(([partition]) => partition).sort();
  }

  async addTombstone(tombstone: PartitionTombstone): Promise<void> {
    checkTombstone(tombstone, 'addTombstone');
    await this.#change((_partitions, tombstones) => {
      const before = tombstones.get(tombstone.partition);
      const merged = mergeTombstones(before === undefined ? undefined : this.#checkTombstone(before, tombstone.partition), tombstone);
      tombstones.set(tombstone.partition, { ...merged });
      return { result: undefined, write: true };
    });
  }

  async getTombstone(partition: string): Promise<PartitionTombstone | undefined> {
    const raw = (await this.#readFile()).tombstones.get(partition);
    return raw === undefined ? undefined : this.#checkTombstone(raw, partition);
  }

  async listTombstones(): Promise<PartitionTombstone[]> {
    const { tombstones } = await this.#readFile();
    return [...tombstones].map(([partition, raw]) => this.#checkTombstone(raw, partition)).sort((a, b) => (a.partition < b.partition ? -1 : a.partition > b.partition ? 1 : 0));
  }

  #checkTombstone(raw: unknown, partition: string): PartitionTombstone {
    let tombstone: PartitionTombstone;
    try {
      tombstone = checkTombstone(raw as PartitionTombstone, this.path);
    } catch (error) {
      throw new CorruptKeyRecordError(this.path, partition, undefined, 'not a partition tombstone', { cause: error });
    }
    if (tombstone.partition !== partition) throw new CorruptKeyRecordError(this.path, partition, undefined, `its tombstone names partition ${JSON.stringify(tombstone.partition)}`);
    return Object.freeze({ partition, version: tombstone.version, shreddedAt: tombstone.shreddedAt });
  }

  async replaceWrappedKey(partition: string, version: number, expectedBlob: string, wrapped: WrappedKeyFields): Promise<boolean> {
    checkWrappedKeyFields(wrapped);
    return this.#change((partitions) => {
      const versions = partitions.get(partition);
      const raw = versions?.get(String(version));
      if (!versions || raw === undefined) return { result: false };
      const key = this.#check(raw, partition, String(version));
      if (key.ciphertextBlob !== expectedBlob) return { result: false };
      versions.set(String(version), { ...key, provider: wrapped.provider, keyId: wrapped.keyId, ciphertextBlob: wrapped.ciphertextBlob });
      return { result: true, write: true };
    });
  }

  #check(raw: unknown, partition: string, versionKey: string): StoredKey {
    const version = Number(versionKey);
    const named = Number.isSafeInteger(version) ? version : undefined;
    let key: StoredKey;
    try {
      key = checkStoredKey(raw as StoredKey, this.path);
    } catch (error) {
      throw new CorruptKeyRecordError(this.path, partition, named, 'not a stored key record', { cause: error });
    }
    if (key.partition !== partition || String(key.version) !== versionKey) {
      throw new CorruptKeyRecordError(this.path, partition, named, `it names partition ${JSON.stringify(key.partition)} version ${key.version}`);
    }
    const { version: v, state, provider, keyId, ciphertextBlob, createdAt } = key;
    return Object.freeze({ partition, version: v, state, provider, keyId, ciphertextBlob, createdAt });
  }

  #versions(partitions: Partitions, partition: string): StoredKey[] {
    return [...(partitions.get(partition) ?? [])].map(([versionKey, raw]) => this.#check(raw, partition, versionKey));
  }

  /** The versions of the whole file, parsed; a missing file is an empty store. */
  async #read(): Promise<Partitions> {
    return (await this.#readFile()).partitions;
  }

  /** The whole file, parsed: versions and tombstones (a file written before tombstones has none). */
  async #readFile(): Promise<{ partitions: Partitions; tombstones: Tombstones }> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return { partitions: new Map(), tombstones: new Map() };
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new CorruptKeyRecordError(this.path, undefined, undefined, 'not JSON', { cause: error });
    }
    const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
    if (!isObject(parsed) || parsed.format !== MARKER || parsed.version !== 1 || !isObject(parsed.partitions)) {
      throw new CorruptKeyRecordError(this.path, undefined, undefined, `not a ${MARKER} file, version 1`);
    }
    // Maps, not objects, so that a partition named __proto__ is just a name.
    const partitions: Partitions = new Map();
    for (const [partition, versions] of Object.entries(parsed.partitions)) {
      if (!isObject(versions)) throw new CorruptKeyRecordError(this.path, partition, undefined, 'its versions are not an object');
      partitions.set(partition, new Map(Object.entries(versions)));
    }
    if (parsed.tombstones !== undefined && !isObject(parsed.tombstones)) throw new CorruptKeyRecordError(this.path, undefined, undefined, 'its tombstones are not an object');
    return { partitions, tombstones: new Map(Object.entries(parsed.tombstones ?? {})) };
  }

  /**
   * Runs `change` on the file as it is under the lock, and writes the result when it asks to.
   * Changes from this instance queue up here instead of polling the lock against each other.
   */
  #change<T>(change: (partitions: Partitions, tombstones: Tombstones) => { result: T; write?: boolean }): Promise<T> {
    const run = async (): Promise<T> => {
      await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      const token = await this.#lock.acquire();
      try {
        const { partitions, tombstones } = await this.#readFile();
        const { result, write } = change(partitions, tombstones);
        if (write) {
          if (!(await this.#lock.holds(token))) {
            throw Object.assign(new Error(`${this.path}: the lock was broken as stale while this change held it; nothing was written`), { code: 'ERR_LOCK_LOST' });
          }
          const file = {
            format: MARKER,
            version: 1,
            partitions: Object.fromEntries([...partitions].map(([partition, versions]) => [partition, Object.fromEntries(versions)])),
            // Only once something was shredded: a file without it reads as before, in older versions too.
            ...(tombstones.size > 0 ? { tombstones: Object.fromEntries(tombstones) } : {}),
          };
          const bytes = Buffer.from(`${JSON.stringify(file, null, 2)}\n`, 'utf8');
          await writeAtomically(this.path, { overwrite: true, mode: 0o600 }, (sink) => sink(bytes));
        }
        return result;
      } finally {
        await this.#lock.release(token);
      }
    };
    const result = this.#tail.then(run, run);
    this.#tail = result.catch(() => {});
    return result;
  }
}
