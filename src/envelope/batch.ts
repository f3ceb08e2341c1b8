/**
 * sealMany() and openMany(): bounded concurrency, per-item results, one signal for the batch, and
 * the batch's own keys (each distinct wrapped key decrypted once, whatever the caches). Functions
 * that take an Envelope (its methods before 0.3), so that an application without batches carries none of it.
 */
import { anySignal, checkSignal, throwIfAborted } from '../core/abort.ts';
import { type ByteInput, isByteInput, wipe } from '../core/bytes.ts';
import { type HmacKeyState, wipeKeyState } from '../core/hkdf.ts';
import type { RememberedKey } from '../economy/cache.ts';
import { type Bytes, openBuffer, plaintextOf, sealBuffer } from './buffers.ts';
import { coreOf, type KeyScope, type OpenOptions, type SealOptions } from './engine.ts';
import type { Envelope } from './envelope.ts';

export type SealItem = ByteInput | string | ({ plaintext: ByteInput | string } & SealOptions);
export type OpenItem = ByteInput | ({ sealed: ByteInput } & OpenOptions);

/** One item's outcome in a batch: one bad row does not fail the batch. */
export type BatchResult<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface BatchOptions {
  /** Items worked on at once; default 16. */
  concurrency?: number;
  /**
   * Cancels the whole batch: it rejects with the signal's reason, items under way are aborted
   * (with their own `signal`, if any, too), none is started after, and no opened plaintext is kept.
   */
  signal?: AbortSignal;
}

/** How batch() runs: its limit, the batch's signal, and what wipes a value made when it aborts. */
export interface BatchRun<T> {
  readonly concurrency: number;
  readonly signal: AbortSignal | undefined;
  readonly discard?: ((value: T) => void) | undefined;
}

/**
 * Runs `work` on every item with at most `concurrency` at once; per-item results, in order. When
 * `signal` aborts, starts no more items, waits for those under way (each has the signal, so they
 * end at once), hands every value made to `discard` (to wipe plaintext) and rejects with the reason.
 */
export async function batch<I, T>(
  items: readonly I[],
  work: (item: I, signal: AbortSignal | undefined) => Promise<T>,
  { concurrency, signal, discard = () => {} }: BatchRun<T>,
): Promise<BatchResult<T>[]> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`"concurrency" must be a positive integer, got ${concurrency}`);
  throwIfAborted(signal);
  const results = new Array<BatchResult<T>>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !signal?.aborted) {
      const i = next++;
      try {
        results[i] = { ok: true, value: await work(items[i]!, signal) };
      } catch (error) {
        results[i] = { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  if (signal?.aborted) {
    for (const result of results) if (result?.ok) discard(result.value);
    throw signal.reason;
  }
  return results;
}

/** Runs `work` with an item's options, the batch's signal joined to its own. */
async function withBatchSignal<O extends { signal?: AbortSignal }, T>(options: O, signal: AbortSignal | undefined, work: (options: O) => Promise<T>): Promise<T> {
  if (!signal) return work(options);
  const joined = anySignal(signal, checkSignal(options.signal));
  try {
    return await work({ ...options, signal: joined.signal });
  } finally {
    joined.dispose();
  }
}

/** One batch's data keys by wrapped key: lent (or copied) like a decrypt cache's, wiped by close(). */
class BatchKeys implements KeyScope {
  readonly #keys = new Map<string, { key: Uint8Array; keyState: HmacKeyState | undefined }>();

  get(id: string, borrow: boolean): RememberedKey | undefined {
    const entry = this.#keys.get(id);
    if (!entry) return undefined;
    return borrow ? { key: entry.key, keyState: entry.keyState, borrowed: true } : { key: entry.key.slice(), keyState: undefined, borrowed: false };
  }

  /** Takes ownership of `key` and `keyState`. */
  set(id: string, key: Uint8Array, keyState: HmacKeyState | undefined): void {
    const old = this.#keys.get(id);
    if (old) this.#wipe(old);
    this.#keys.set(id, { key, keyState });
  }

  close(): void {
    for (const entry of this.#keys.values()) this.#wipe(entry);
    this.#keys.clear();
  }

  #wipe(entry: { key: Uint8Array; keyState: HmacKeyState | undefined }): void {
    wipe(entry.key);
    wipeKeyState(entry.keyState);
  }
}

/**
 * Seals many items with bounded concurrency; per-item results. (Envelope.sealMany() before 0.3.)
 *
 * @example
 * ```ts
 * import { sealMany } from 'kms-envelope';
 * const results = await sealMany(envelope, rows.map((row) => ({ plaintext: row.note, context: { row: row.id } })));
 * ```
 */
export function sealMany(envelope: Envelope, items: readonly SealItem[], options: BatchOptions = {}): Promise<BatchResult<Bytes>[]> {
  const core = coreOf(envelope);
  const sealOne = (item: SealItem, signal: AbortSignal | undefined): Promise<Bytes> => {
    const [plaintext, own] = typeof item === 'string' || isByteInput(item) ? [item, {}] : [item.plaintext, item];
    return withBatchSignal<SealOptions, Bytes>(own, signal, (o) => core.track(() => sealBuffer(core, plaintext, o)));
  };
  return batch(items, sealOne, { concurrency: options.concurrency ?? 16, signal: checkSignal(options.signal) });
}

/** Opens many items with bounded concurrency, one Decrypt per distinct wrapped key; per-item results. (Envelope.openMany() before 0.3.) */
export async function openMany(envelope: Envelope, items: readonly OpenItem[], options: BatchOptions = {}): Promise<BatchResult<Bytes>[]> {
  const core = coreOf(envelope);
  // Within a batch every distinct wrapped key is decrypted once, cache or no cache.
  const scope = new BatchKeys();
  const openOne = (item: OpenItem, signal: AbortSignal | undefined): Promise<Bytes> => {
    const [sealed, own] = isByteInput(item) ? [item, {}] : [item.sealed, item];
    return withBatchSignal<OpenOptions, Bytes>(own, signal, (o) => core.track(() => plaintextOf(openBuffer(core, sealed, o, { scope }))));
  };
  try {
    return await batch(items, openOne, { concurrency: options.concurrency ?? 16, signal: checkSignal(options.signal), discard: wipe });
  } finally {
    scope.close();
  }
}
