/**
 * Cancellation with an AbortSignal, shared by every path: an aborted operation rejects with the
 * signal's own reason, never a wrapped one, and a value that arrives after the abort (a data key
 * the KMS sent anyway) goes to a callback that wipes it.
 */
import { describe } from './bytes.ts';

/** The `signal` option as given: undefined or an AbortSignal (a TypeError otherwise). */
export function checkSignal(signal: unknown, title = 'signal'): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (typeof AbortSignal === 'function' && signal instanceof AbortSignal) return signal;
  // Another realm's or a polyfill's signal: anything that behaves like one.
  const s = signal as Partial<AbortSignal> | null;
  if (s && typeof s === 'object' && typeof s.aborted === 'boolean' && typeof s.addEventListener === 'function') return signal as AbortSignal;
  throw new TypeError(`"${title}" expected an AbortSignal, got ${describe(signal)}`);
}

/** Throws the signal's reason when it is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/**
 * `promise`, or a rejection with the signal's reason as soon as it aborts (whichever comes first).
 * When the abort wins, a value the promise still yields goes to `late` (to wipe a key).
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, late?: (value: T) => void): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.then(late, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) late?.(value);
        else {
          settled = true;
          resolve(value);
        }
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (!settled) {
          settled = true;
          reject(error);
        }
      },
    );
  });
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One signal that aborts when any of `signals` does, with that one's reason; `dispose()` removes
 * the listeners (call it when the work is done, so a long-lived signal does not collect them).
 */
export function anySignal(...signals: (AbortSignal | undefined)[]): { signal: AbortSignal | undefined; dispose: () => void } {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  if (given.length <= 1) return { signal: given[0], dispose: () => {} };
  const controller = new AbortController();
  const already = given.find((s) => s.aborted);
  if (already) {
    controller.abort(already.reason);
    return { signal: controller.signal, dispose: () => {} };
  }
  const listeners = given.map((s) => {
    const listener = (): void => controller.abort(s.reason);
    s.addEventListener('abort', listener, { once: true });
    return () => s.removeEventListener('abort', listener);
  });
  return { signal: controller.signal, dispose: () => listeners.forEach((remove) => remove()) };
}
