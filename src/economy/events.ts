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
