/**
 * Client-side rate limiting for KMS calls: a token bucket per action (GCRA: each call reserves
 * the next slot in order, so waiting is fair) and a cap on calls in flight. A burst then queues
 * here instead of drawing throttling errors from the KMS. With `qps` R and `burst` B, no window of
 * one second sees more than B + R calls, so defaults keep B + R at the KMS's published limit.
 * A wait (for a token or for a place in flight) ends when the caller's signal aborts, and the
 * waiter that leaves gives its token and its place back, so deadlines include the wait.
 */
import { delay, throwIfAborted } from '../core/abort.ts';

export interface BucketOptions {
  /** Sustained calls per second. */
  qps: number;
  /** Calls allowed at once after a quiet spell. */
  burst: number;
}

export interface RateLimitOptions {
  /** Applies to every action not named in `actions`. */
  qps?: number;
  burst?: number;
  /** Per action, e.g. `{ Decrypt: { qps: 240, burst: 60 } }`. */
  actions?: Record<string, BucketOptions>;
  /** Calls in flight at once; default 64. */
  concurrency?: number;
  /**
   * The KMS quota is per account, shared by every process: with `processes` N, each process takes
   * 1/N of each action's rate (the defaults or `actions`), so the fleet together stays within it.
   */
  fleet?: { processes: number };
  /**
   * Adapt to the KMS's answers (default true): a throttling error halves the action's rate (at most
   * once a second), and calls that succeed raise it back step by step to its configured rate
   * (additive increase, multiplicative decrease), so a fleet that guessed its share wrong settles.
   */
  adaptive?: boolean;
  /**
   * A token bucket shared by the fleet (for example in Redis), asked before every call after the
   * local limit; it resolves when the call may go, or rejects when `signal` aborts.
   */
  shared?: SharedBudget;
}

/** A fleet's budget (fleetBudget() in kms-envelope/hierarchy), asked before each attempt and told how it went. */
export interface SharedBudget {
  acquire(action: string, signal?: AbortSignal): Promise<void>;
  /** An attempt failed for an outage (network, timeout, 5xx; not throttling): the fleet's breaker opens at once. */
  failing?(action: string): void;
  /** An attempt succeeded. */
  succeeded?(action: string): void;
}

class Bucket {
  readonly #maxQps: number;
  readonly #burst: number;
  #qps: number;
  #interval = 0;
  #tolerance = 0;
  #tat = 0; // theoretical arrival time of the next call, ms
  #lastDecrease = -Infinity;

  constructor(options: BucketOptions) {
    if (!(options.qps > 0) || !(options.burst >= 1)) throw new RangeError('rate limit needs qps > 0 and burst >= 1');
    this.#maxQps = options.qps;
    this.#burst = Math.floor(options.burst);
    this.#qps = options.qps;
    this.#setRate(options.qps);
  }

  get qps(): number {
    return this.#qps;
  }

  #setRate(qps: number): void {
    this.#qps = qps;
    this.#interval = 1000 / qps;
    // The burst shrinks with the rate: a throttled fleet must not keep bursting at full size.
    this.#tolerance = (Math.max(1, Math.round((this.#burst * qps) / this.#maxQps)) - 1) * this.#interval;
  }

  /** Multiplicative decrease, at most once a second (concurrent failures report one throttle). */
  decrease(now: number): void {
    if (now - this.#lastDecrease < 1000) return;
    this.#lastDecrease = now;
    this.#setRate(Math.max(this.#maxQps / 64, this.#qps / 2));
  }

  /** Additive increase: a hundredth of the configured rate per call that succeeded. */
  increase(): void {
    if (this.#qps < this.#maxQps) this.#setRate(Math.min(this.#maxQps, this.#qps + this.#maxQps / 100));
  }

  /** Reserves a slot; returns how long to wait for it, in ms, and a function that gives it back. */
  reserve(now: number): { wait: number; cancel: () => void } {
    const tat = Math.max(this.#tat, now);
    const next = tat + this.#interval;
    this.#tat = next;
    return {
      wait: Math.max(0, tat - this.#tolerance - now),
      // Only the latest reservation can be given back; an earlier one stays spent (the bucket only
      // ever errs towards fewer calls).
      cancel: () => {
        if (this.#tat === next) this.#tat -= this.#interval;
      },
    };
  }
}

interface Waiter {
  /** Hands the waiter a place in flight. */
  grant: () => void;
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #defaults: Record<string, BucketOptions>;
  readonly #fallback: BucketOptions;
  readonly #concurrency: number;
  readonly #adaptive: boolean;
  readonly #shared: RateLimitOptions['shared'];
  #inFlight = 0;
  readonly #queue: Waiter[] = [];

  constructor(options: RateLimitOptions, defaults: { actions: Record<string, BucketOptions>; fallback: BucketOptions }) {
    const uniform = options.qps !== undefined ? { qps: options.qps, burst: options.burst ?? Math.max(1, options.qps / 4) } : undefined;
    const processes = options.fleet?.processes ?? 1;
    if (!(Number.isInteger(processes) && processes >= 1)) throw new RangeError(`"fleet.processes" must be a positive integer, got ${processes}`);
    const share = (b: BucketOptions): BucketOptions => ({ qps: b.qps / processes, burst: Math.max(1, b.burst / processes) });
    const actions = { ...(uniform ? {} : defaults.actions), ...options.actions };
    this.#defaults = Object.fromEntries(Object.entries(actions).map(([action, b]) => [action, share(b)]));
    this.#fallback = share(uniform ?? defaults.fallback);
    this.#concurrency = options.concurrency ?? 64;
    if (!(this.#concurrency >= 1)) throw new RangeError('rate limit concurrency must be at least 1');
    this.#adaptive = options.adaptive ?? true;
    this.#shared = options.shared;
  }

  /** The KMS throttled `action`: halve its rate (adaptive limiters). */
  throttled(action: string): void {
    if (this.#adaptive) this.#bucket(action).decrease(Date.now());
  }

  /** A call of `action` succeeded: raise its rate a step back towards the configured one. */
  succeeded(action: string): void {
    if (this.#adaptive) this.#bucket(action).increase();
    this.#shared?.succeeded?.(action);
  }

  /** An attempt of `action` failed for an outage: the shared budget's breaker hears it at once. */
  failing(action: string): void {
    this.#shared?.failing?.(action);
  }

  /** The current rate of `action`, calls per second (metrics, tests). */
  rate(action: string): number {
    return this.#bucket(action).qps;
  }

  #bucket(action: string): Bucket {
    let bucket = this.#buckets.get(action);
    if (!bucket) {
      bucket = new Bucket(this.#defaults[action] ?? this.#fallback);
      this.#buckets.set(action, bucket);
    }
    return bucket;
  }

  /**
   * Waits for a slot for `action` and a place in flight; returns the time waited and a release
   * function. When `signal` aborts first, rejects with its reason, having given the slot and the
   * place back.
   */
  async acquire(action: string, signal?: AbortSignal): Promise<{ waitedMs: number; release: () => void }> {
    throwIfAborted(signal);
    const started = Date.now();
    // The place in flight first, then the rate slot: a slot reserved before a wait in the queue
    // would be spent late, and the calls held back by a stall would leave at once, above the rate.
    // A full house queues; a release hands its place straight to the next in line.
    if (this.#inFlight >= this.#concurrency) await this.#queueFor(signal);
    else this.#inFlight++;
    try {
      const slot = this.#bucket(action).reserve(Date.now());
      if (slot.wait > 0) {
        try {
          await delay(slot.wait, signal);
        } catch (error) {
          slot.cancel();
          throw error;
        }
      }
      if (this.#shared) await this.#shared.acquire(action, signal);
    } catch (error) {
      this.#handOn();
      throw error;
    }
    let released = false;
    return {
      waitedMs: Date.now() - started,
      release: () => {
        if (released) return;
        released = true;
        this.#handOn();
      },
    };
  }

  /** Passes a place in flight to the next waiter, or frees it. */
  #handOn(): void {
    const next = this.#queue.shift();
    if (next) next.grant();
    else this.#inFlight--;
  }

  #queueFor(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#queue.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

