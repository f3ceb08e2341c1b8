/**
 * Client-side rate limiting for KMS calls: a token bucket per action (GCRA: each call reserves
 * the next slot in order, so waiting is fair) and a cap on calls in flight. A burst then queues
 * here instead of drawing throttling errors from the KMS. With `qps` R and `burst` B, no window of
 * one second sees more than B + R calls, so defaults keep B + R at the KMS's published limit.
 */
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
}

class Bucket {
  readonly #interval: number;
  readonly #tolerance: number;
  #tat = 0; // theoretical arrival time of the next call, ms

  constructor(options: BucketOptions) {
    if (!(options.qps > 0) || !(options.burst >= 1)) throw new RangeError('rate limit needs qps > 0 and burst >= 1');
    this.#interval = 1000 / options.qps;
    this.#tolerance = (Math.floor(options.burst) - 1) * this.#interval;
  }

  /** Reserves a slot; returns how long to wait for it, in ms. */
  reserve(now: number): number {
    const tat = Math.max(this.#tat, now);
    this.#tat = tat + this.#interval;
    return Math.max(0, tat - this.#tolerance - now);
  }
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #defaults: Record<string, BucketOptions>;
  readonly #fallback: BucketOptions;
  readonly #concurrency: number;
  #inFlight = 0;
  readonly #queue: (() => void)[] = [];

  constructor(options: RateLimitOptions, defaults: { actions: Record<string, BucketOptions>; fallback: BucketOptions }) {
    const uniform = options.qps !== undefined ? { qps: options.qps, burst: options.burst ?? Math.max(1, options.qps / 4) } : undefined;
    this.#defaults = { ...(uniform ? {} : defaults.actions), ...options.actions };
    this.#fallback = uniform ?? defaults.fallback;
    this.#concurrency = options.concurrency ?? 64;
    if (!(this.#concurrency >= 1)) throw new RangeError('rate limit concurrency must be at least 1');
  }

  /** Waits for a slot for `action` and a place in flight; returns the time waited and a release function. */
  async acquire(action: string): Promise<{ waitedMs: number; release: () => void }> {
    const started = Date.now();
    let bucket = this.#buckets.get(action);
    if (!bucket) {
      bucket = new Bucket(this.#defaults[action] ?? this.#fallback);
      this.#buckets.set(action, bucket);
    }
    const wait = bucket.reserve(started);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    // A full house queues; a release hands its place straight to the next in line.
    if (this.#inFlight >= this.#concurrency) await new Promise<void>((resolve) => this.#queue.push(resolve));
    else this.#inFlight++;
    let released = false;
    return {
      waitedMs: Date.now() - started,
      release: () => {
        if (released) return;
        released = true;
        const next = this.#queue.shift();
        if (next) next();
        else this.#inFlight--;
      },
    };
  }
}
