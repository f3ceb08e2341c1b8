/**
 * Retirement of a key version (hierarchy.retire): its wrapped key deleted from the store once no
 * sealed value names it, judged from the values' own headers by the caller's census (a sweep
 * reading them: kms-envelope/records censusPostgres, censusSqlite), and once no process may still
 * seal under it. A retired version never loads again (KeyVersionRetiredError).
 */
import { EnvelopeError } from '../core/errors.ts';
import type { KeyStore, StoredKey } from './key-store.ts';

/** A message names a retired key version: its wrapped key was deleted, so the message does not open. */
export class KeyVersionRetiredError extends EnvelopeError {
  readonly partition: string;
  readonly version: number;
  constructor(partition: string, version: number) {
    super('ERR_KEY_VERSION_RETIRED', `intermediate key version ${version} of partition ${JSON.stringify(partition)} was retired (hierarchy.retire): its wrapped key is deleted, so what it sealed does not open`);
    this.name = 'KeyVersionRetiredError';
    this.partition = partition;
    this.version = version;
  }
}

export type RetireRefusal = 'active' | 'too-soon' | 'in-use' | 'not-found' | 'retired';

/** hierarchy.retire() refused: `reason` says why, and nothing was changed. */
export class RetireRefusedError extends EnvelopeError {
  readonly partition: string;
  readonly version: number;
  readonly reason: RetireRefusal;
  /** Values the census found naming the version (`in-use`). */
  readonly valuesNaming: number;
  /** How long until the version may be retired (`too-soon`), ms. */
  readonly retryAfterMs: number;
  constructor(partition: string, version: number, reason: RetireRefusal, detail: string, counts: { valuesNaming?: number; retryAfterMs?: number } = {}) {
    super('ERR_RETIRE_REFUSED', `key version ${version} of partition ${JSON.stringify(partition)} was not retired: ${detail}`);
    this.name = 'RetireRefusedError';
    this.partition = partition;
    this.version = version;
    this.reason = reason;
    this.valuesNaming = counts.valuesNaming ?? 0;
    this.retryAfterMs = counts.retryAfterMs ?? 0;
  }
}

/**
 * Counts the sealed values that name (partition, version), read from their headers (never from a
 * marker column, which any database writer can set). kms-envelope/records makes them for tables.
 */
export type VersionCensus = (partition: string, version: number, signal?: AbortSignal) => Promise<number>;

export interface RetireOptions {
  /** Where sealed values live: every census must find none naming the version. At least one. */
  census: VersionCensus | readonly VersionCensus[];
  /**
   * Added to this hierarchy's activeTtlMs: how much longer any process may seal under the version
   * after the rotation that replaced it (another process's longer activeTtlMs, a write in flight,
   * clocks apart). Default 60000.
   */
  graceMs?: number;
  signal?: AbortSignal;
}

export interface RetireReport {
  partition: string;
  version: number;
  /** When the version stopped being active (the next version's createdAt), ms since the epoch. */
  inactiveSince: number;
}

/** What retiring uses of a hierarchy. */
export interface RetireContext {
  readonly store: KeyStore;
  readonly activeTtl: number;
  /** Drops the version from this process's memory. */
  readonly forget: (partition: string, version: number) => void;
}

/** When `version` stopped being active: the creation of the lowest version above it (a rotation). */
function inactiveSince(versions: readonly StoredKey[], version: number): number | undefined {
  return versions.find((v) => v.version > version)?.createdAt;
}

function checkArguments(partition: string, version: number, options: RetireOptions): { census: readonly VersionCensus[]; graceMs: number } {
  if (typeof partition !== 'string' || partition.length === 0) throw new TypeError('"partition" expected a non-empty string');
  if (!Number.isSafeInteger(version) || version < 1) throw new RangeError('"version" must be a positive integer');
  const census = typeof options?.census === 'function' ? [options.census] : options?.census;
  if (!Array.isArray(census) || census.length === 0 || !census.every((c) => typeof c === 'function')) {
    throw new TypeError('retire: "census" expected where the sealed values live (censusPostgres, censusSqlite, or your own count of the values naming the version): a version is retired only when none names it');
  }
  const graceMs = options.graceMs ?? 60_000;
  if (!Number.isSafeInteger(graceMs) || graceMs < 0) throw new RangeError('"graceMs" must be an integer >= 0');
  return { census, graceMs };
}

/** The stored record of a version that may be retired: refusals for every other. */
async function retirable(c: RetireContext, partition: string, version: number, graceMs: number): Promise<number> {
  const versions = await c.store.listVersions(partition);
  const key = versions.find((v) => v.version === version);
  if (!key) throw new RetireRefusedError(partition, version, 'not-found', 'the key store has no such version');
  if (key.state === 'retired') throw new RetireRefusedError(partition, version, 'retired', 'it is retired already');
  const since = inactiveSince(versions, version);
  if (key.state === 'active' || since === undefined) throw new RetireRefusedError(partition, version, 'active', 'it is (or may still be) the active version: rotate the partition first');
  const wait = since + c.activeTtl + graceMs - Date.now();
  if (wait > 0) {
    throw new RetireRefusedError(partition, version, 'too-soon', `a process may still seal under it for ${wait} ms (activeTtlMs + graceMs after the rotation)`, { retryAfterMs: wait });
  }
  return since;
}

/**
 * hierarchy.retire(): the version must be decrypt-only, replaced longer than activeTtlMs +
 * graceMs ago, and named by no value any census finds; then its record becomes `retired` with
 * no wrapped key, by a compare and set on its state.
 */
export async function retireVersion(c: RetireContext, partition: string, version: number, options: RetireOptions): Promise<RetireReport> {
  const { census, graceMs } = checkArguments(partition, version, options);
  if (typeof c.store.retireVersion !== 'function') throw new TypeError('retire: this key store cannot retire a version (retireVersion)');
  const since = await retirable(c, partition, version, graceMs);
  let naming = 0;
  for (const count of census) {
    options.signal?.throwIfAborted();
    const found = await count(partition, version, options.signal);
    if (!Number.isSafeInteger(found) || found < 0) throw new TypeError(`retire: a census returned ${String(found)}, not a count of values`);
    naming += found;
  }
  if (naming > 0) {
    throw new RetireRefusedError(partition, version, 'in-use', `${naming} sealed value(s) still name it: sweep them to the active version (rotationSweep), then retire`, { valuesNaming: naming });
  }
  options.signal?.throwIfAborted();
  if (!(await c.store.retireVersion(partition, version))) {
    throw new RetireRefusedError(partition, version, 'not-found', 'its record changed meanwhile (retired, shredded or made active by another process)');
  }
  c.forget(partition, version);
  return { partition, version, inactiveSince: since };
}
