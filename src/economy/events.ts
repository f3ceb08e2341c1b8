/** What the library reports to an `onEvent` listener, so users can feed their own metrics. */
export type EnvelopeEvent =
  /** One KeyProvider call as the envelope saw it (retries inside it included). */
  | { type: 'kms-call'; provider: string; action: 'GenerateDataKey' | 'Decrypt' | 'Encrypt' | 'ReEncrypt' | 'Decrypt+Encrypt'; durationMs: number; ok: boolean; errorCode?: string }
  /**
   * open() got its data key from this wrapped key (`index`: its place in the header) through this
   * provider, on its `attempt`-th KMS call (a message may carry several: FORMAT.md §10.2).
   */
  | { type: 'wrapped-key-used'; provider: string; keyId: string; index: number; attempt: number }
  | { type: 'cache-hit' | 'cache-miss'; cache: 'encrypt' | 'decrypt' }
  | { type: 'cache-evict'; cache: 'encrypt' | 'decrypt'; reason: 'messages' | 'bytes' | 'age' | 'capacity' | 'close' }
  /** A KMS attempt failed and will be tried again after `delayMs`. */
  | { type: 'retry'; action: string; attempt: number; delayMs: number; errorCode?: string }
  /** A KMS call waited `waitMs` for the client-side rate limit or concurrency cap. */
  | { type: 'throttle-wait'; action: string; waitMs: number };

export type EventListener = (event: EnvelopeEvent) => void;

/** Calls the listener, never letting its failure reach the operation. */
export function emitter(listener: EventListener | undefined): (event: EnvelopeEvent) => void {
  if (!listener) return () => {};
  return (event) => {
    try {
      listener(event);
    } catch {
      // A metrics hook must not break encryption.
    }
  };
}

/**
 * What a key hierarchy reports to its listeners (`onEvent` of createKeyHierarchy and createRecords,
 * hierarchy.listen()): the cold and failing paths only; the warm path emits nothing (its hits are
 * counted in metrics()). Events name partitions and versions for the listener's own use; the
 * OpenTelemetry adapter never copies them into an attribute unless the caller maps them in.
 */
export type HierarchyEvent =
  /** One KMS call for an intermediate key (GenerateDataKey to create a version, Decrypt to load one). */
  | { type: 'kms-call'; provider: string; action: 'GenerateDataKey' | 'Decrypt' | 'ReEncrypt' | 'Encrypt' | 'Decrypt+Encrypt'; durationMs: number; ok: boolean; errorCode?: string; throttled: boolean }
  /** A key version loaded into memory (store read and KMS Decrypt), or the load failed. */
  | { type: 'key-load'; partition: string; version: number; durationMs: number; ok: boolean; errorCode?: string }
  /** A key version created (version 1 on first use, or a rotation's). */
  | { type: 'key-created'; partition: string; version: number }
  /** Opening used a key past its TTL while the KMS fails (within maxStaleMs). */
  | { type: 'stale-served'; partition: string; version: number }
  /** The KMS refused a key for good (master key disabled or deleted, or a tombstone): the partition's keys were dropped. */
  | { type: 'revoked'; partition: string; errorCode?: string }
  /**
   * A circuit breaker opened or closed. `scope` 'kms': the hierarchy's loads of intermediate keys;
   * 'coordinator': a fleet coordinator's (PostgreSQL or Redis), emitted by the fleet code with the same shape.
   */
  | { type: 'breaker'; scope: 'kms' | 'coordinator'; state: 'open' | 'closed' }
  /**
   * A seal under a key past its TTL, allowed by `sealGraceMs` while the KMS fails (the fleet code
   * emits it with this shape).
   */
  | { type: 'grace-seal'; partition: string; version: number };

export type HierarchyEventListener = (event: HierarchyEvent) => void;
