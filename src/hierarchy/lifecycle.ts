/**
 * health() of a key hierarchy: a readiness check that costs one store read and no KMS call. (Its
 * close({ drain }) counts its calls in flight with core/work-in-flight.ts.)
 */
import type { IntermediateKeyCache } from '../economy/intermediate-keys.ts';
import type { KeyStore } from './key-store.ts';


export interface HealthReport {
  /** Ready: the store answered, the KMS is not failing (or every key needed is within its grace), and the partitions asked for have active keys loaded. */
  ok: boolean;
  store: { ok: boolean; ms: number; error?: string };
  /**
   * 'ok': the last key load succeeded (or none failed); 'grace': loads fail but keys held are
   * within their staleness bound (opening goes on); 'failing': loads fail and no key is held.
   * No KMS call is made: this is what this process saw.
   */
  kms: 'ok' | 'grace' | 'failing';
  breaker: 'open' | 'closed';
  /** Key versions held within their TTL, and past it but within maxStaleMs. */
  keysLoaded: number;
  keysStale: number;
  /** Of the partitions given to health(): those whose active version is not loaded. */
  notLoaded: string[];
  closed: boolean;
}

/** A name no partition has (partitions are at most 255 UTF-8 bytes): a store read of it finds nothing, cheaply. */
const PROBE_PARTITION = 'kms-envelope health probe '.padEnd(256, '.');

/** health(): one store read (of a partition that cannot exist), the cache's state, and which active keys are loaded. */
export async function checkHealth(
  store: KeyStore,
  cache: IntermediateKeyCache,
  activeOf: (partition: string) => number | undefined,
  partitions: readonly string[],
  closed: boolean,
): Promise<HealthReport> {
  const started = performance.now();
  let storeState: HealthReport['store'];
  try {
    await store.getActive(PROBE_PARTITION);
    storeState = { ok: true, ms: performance.now() - started };
  } catch (error) {
    const e = error as { code?: unknown; name?: unknown } | null;
    storeState = { ok: false, ms: performance.now() - started, error: typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'ERROR' };
  }
  const state = cache.state();
  const kms = !state.failing ? 'ok' : state.fresh + state.stale > 0 ? 'grace' : 'failing';
  const notLoaded = partitions.filter((partition) => {
    const version = activeOf(partition);
    return version === undefined || !cache.holds(partition, version);
  });
  return {
    ok: storeState.ok && kms !== 'failing' && notLoaded.length === 0 && !closed,
    store: storeState,
    kms,
    breaker: state.breaker,
    keysLoaded: state.fresh,
    keysStale: state.stale,
    notLoaded,
    closed,
  };
}
