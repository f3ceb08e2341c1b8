/**
 * A fleet of processes that behaves as one KMS client (README "Fleets"): one small coordination
 * interface, implemented over PostgreSQL (hierarchy/coordinators/postgres.ts) and Redis
 * (adapters/redis.ts, 'kms-envelope/redis'), and the link every process keeps to it.
 *
 * The coordinator sees only hashed names and counters: no key, no wrapped key, no partition or key
 * id in plaintext. A compromised coordinator can deny service (refuse leases, hold the breaker
 * open, drain the bucket), never read or forge a key: the key store's conditional create stays the
 * only arbiter of which key version is kept.
 *
 * The link never blocks a seal or an open on the coordinator (which it meets only on the way to
 * the KMS): each call has a timeout, past which that call gets the per-process answer (no lease,
 * no shared token, the local breaker alone). A failed call, or several slow answers in a row,
 * mark the coordinator unreachable for a while, during which every question gets that answer at
 * once. One slow answer does not: a loaded coordinator (or a loaded process) is not a dead one.
 */
import { KeyUnavailableError } from '../core/errors.ts';
import { sha256 } from '../core/hashes.ts';
import type { SharedBudget } from './rate-limit.ts';

/** What a fleet shares. Names are opaque (hashes); times are the coordinator's own clock. */
export interface FleetCoordinator {
  /** Takes `name` for `ttlMs` unless someone holds it: a token to release it with, or undefined. */
  acquire(name: string, ttlMs: number): Promise<string | undefined>;
  /** Gives `name` back if `token` still holds it (an expired lease may be someone else's now). */
  release(name: string, token: string): Promise<void>;
  /** Sets `name` for `ttlMs` whoever holds it (the breaker's open state). */
  mark(name: string, ttlMs: number): Promise<void>;
  /** Whether `name` is set and not expired. */
  marked(name: string): Promise<boolean>;
  /** Clears `name` whoever set it. */
  unmark(name: string): Promise<void>;
  /**
   * One token of the fleet's bucket `name` (`perSecond` sustained, `burst` at once; no window of
   * one second passes more than `perSecond + burst`): 0 when taken, else the ms to wait before asking again.
   */
  take(name: string, perSecond: number, burst: number): Promise<number>;
  /** Publishes a short message (a hashed name) to every process. */
  publish(message: string): Promise<void>;
  /** Messages published after `cursor` ('' for "from now on": no messages, a cursor). */
  receive(cursor: string): Promise<{ cursor: string; messages: string[] }>;
}

export interface FleetLinkOptions {
  /**
   * Each coordinator call gives up after this long, ms, and is answered by the per-process
   * fallback; default 1000. It bounds what the coordinator adds to a KMS call (which may take
   * seconds with its retries), not a seal or an open served from the cache.
   */
  timeoutMs?: number;
  /** This many timeouts in a row (or one failed call) make the coordinator unreachable; default 3. */
  timeoutsBeforeFallback?: number;
  /** After a failure or a timeout, the coordinator is not asked for this long, ms; default 2000. */
  retryAfterMs?: number;
  /** How often published messages are read, ms; default 1000. */
  pollMs?: number;
}

export interface FleetCounters {
  /** Coordinator calls that failed or timed out, answered by the per-process fallback. */
  coordinatorFallbacks: number;
  /** Creations that waited for another process's creation lease. */
  leaseWaits: number;
  /** Loads refused at once because the fleet's breaker is open and another process probes. */
  fleetBreakerRefused: number;
  /** Loads made as the fleet's probe while its breaker is open. */
  fleetProbes: number;
  /** Revocations and shreds received from other processes. */
  broadcastsReceived: number;
}

const UNREACHABLE = Symbol('unreachable');
/** A call that timed out, for the callers that tell it from an unreachable coordinator. */
const SLOW = Symbol('slow');

/** A hashed, fixed-length name for the coordinator: the partition never leaves in plaintext. */
export function fleetName(kind: string, ...parts: (string | number)[]): string {
  const digest = sha256(new TextEncoder().encode(parts.map(String).join('\u0000')));
  let hex = '';
  for (const byte of digest.subarray(0, 16)) hex += byte.toString(16).padStart(2, '0');
  return `${kind}:${hex}`;
}

/** A process's link to the coordinator: timeouts, the fallback, the counters, the message poll. */
export class FleetLink {
  readonly #coordinator: FleetCoordinator;
  readonly #timeoutMs: number;
  readonly #retryAfterMs: number;
  readonly #pollMs: number;
  readonly counters: FleetCounters = { coordinatorFallbacks: 0, leaseWaits: 0, fleetBreakerRefused: 0, fleetProbes: 0, broadcastsReceived: 0 };
  readonly #timeoutsBeforeFallback: number;
  #downUntil = 0;
  #timeoutsInARow = 0;
  readonly #closingWatches = new Map<string, Promise<void>>();
  #cursor: string | undefined;
  #poller: ReturnType<typeof setInterval> | undefined;
  #polling = false;

  constructor(coordinator: FleetCoordinator, options: FleetLinkOptions = {}) {
    for (const name of ['acquire', 'release', 'mark', 'marked', 'unmark', 'take', 'publish', 'receive'] as const) {
      if (typeof coordinator?.[name] !== 'function') throw new TypeError(`"coordinator" expected a FleetCoordinator (no ${name}())`);
    }
    this.#coordinator = coordinator;
    this.#timeoutMs = positive(options.timeoutMs ?? 1_000, 'timeoutMs');
    this.#timeoutsBeforeFallback = Math.ceil(positive(options.timeoutsBeforeFallback ?? 3, 'timeoutsBeforeFallback'));
    this.#retryAfterMs = positive(options.retryAfterMs ?? 2_000, 'retryAfterMs');
    this.#pollMs = positive(options.pollMs ?? 1_000, 'pollMs');
  }

  /** Whether the coordinator answered lately (false during the fallback). */
  get reachable(): boolean {
    return performance.now() >= this.#downUntil;
  }

  /**
   * A creation lease: 'held' (with its token), 'busy' (another process holds it), 'slow' (no answer
   * in time: ask again, as for 'busy') or 'fallback' (no coordinator: create alone).
   */
  async lease(name: string, ttlMs: number): Promise<{ state: 'held'; token: string } | { state: 'busy' | 'slow' | 'fallback' }> {
    // A lease granted after the timeout is not used: it goes back as soon as it arrives.
    const token = await this.#ask((c) => c.acquire(name, ttlMs), (late) => late !== undefined && this.release(name, late), SLOW);
    if (token === SLOW) return { state: 'slow' };
    if (token === UNREACHABLE) return { state: 'fallback' };
    return token === undefined ? { state: 'busy' } : { state: 'held', token };
  }

  release(name: string, token: string): void {
    void this.#ask((c) => c.release(name, token));
  }

  /** The wait before the fleet's bucket gives a token (0: taken; 0 too during the fallback). */
  async take(name: string, perSecond: number, burst: number): Promise<number> {
    const wait = await this.#ask((c) => c.take(name, perSecond, burst));
    return wait === UNREACHABLE ? 0 : wait;
  }

  /**
   * The fleet breaker's answer for a load: 'go' (closed, or no coordinator), 'probe' (open, and
   * this process makes the one call of this interval) or 'refuse' (open, another process probes).
   * With `waitMs`, a refused caller waits that long for the probe's verdict instead: a breaker that a
   * passing failure opened closes at the next probe's success, and the caller goes then.
   */
  async gate(scope: string, probeIntervalMs: number, probe: 'load' | 'attempt' = 'load', waitMs = 0): Promise<'go' | 'probe' | 'refuse'> {
    const deadline = performance.now() + waitMs;
    for (;;) {
      const answer = await this.#gateOnce(scope, probeIntervalMs, probe);
      if (answer === 'probe') this.counters.fleetProbes++;
      if (answer !== 'refuse') return answer;
      if (performance.now() >= deadline) {
        this.counters.fleetBreakerRefused++;
        return 'refuse';
      }
      await this.#closing(scope, probeIntervalMs, deadline);
    }
  }

  async #gateOnce(scope: string, probeIntervalMs: number, probe: 'load' | 'attempt'): Promise<'go' | 'probe' | 'refuse'> {
    if (!this.reachable) return 'go';
    const open = await this.#ask((c) => c.marked(fleetName('breaker', scope)));
    if (open !== true) return 'go';
    const claimed = await this.#ask((c) => c.acquire(fleetName(`probe-${probe}`, scope), probeIntervalMs));
    if (claimed === UNREACHABLE) return 'go';
    return claimed === undefined ? 'refuse' : 'probe';
  }

  /**
   * Resolves when the fleet breaker of `scope` is seen closed, a probe interval has passed (a
   * waiter may be the next probe) or `deadline`: one poll of the coordinator every quarter interval
   * for the whole process, however many loads wait.
   */
  #closing(scope: string, probeIntervalMs: number, deadline: number): Promise<void> {
    let watch = this.#closingWatches.get(scope);
    if (!watch) {
      watch = (async () => {
        const until = performance.now() + probeIntervalMs;
        while (performance.now() < until && this.reachable) {
          await new Promise((resolve) => setTimeout(resolve, probeIntervalMs / 4));
          if ((await this.#ask((c) => c.marked(fleetName('breaker', scope)))) !== true) return;
        }
      })().finally(() => this.#closingWatches.delete(scope));
      this.#closingWatches.set(scope, watch);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - performance.now()));
    });
    return Promise.race([watch, late]).finally(() => clearTimeout(timer));
  }

  /**
   * Opens the fleet breaker for `cooldownMs` (an outage seen here). With `probeIntervalMs`, the
   * failed attempt counts as the interval's probe: no other attempt of the fleet follows it before.
   */
  async trip(scope: string, cooldownMs: number, probeIntervalMs?: number): Promise<void> {
    await this.#ask((c) => c.mark(fleetName('breaker', scope), cooldownMs));
    if (probeIntervalMs !== undefined) await this.#ask((c) => c.acquire(fleetName('probe-attempt', scope), probeIntervalMs));
  }

  /** Closes the fleet breaker (a probe, or any call, succeeded). */
  reset(scope: string): void {
    void this.#ask((c) => c.unmark(fleetName('breaker', scope)));
  }

  /** Tells the other processes to drop what they hold of a partition (revocation, shred). */
  broadcast(message: string): void {
    void this.#ask((c) => c.publish(message));
  }

  /** Reads the messages of other processes every `pollMs` and hands each to `onMessage`. */
  listen(onMessage: (message: string) => void): void {
    if (this.#poller) return;
    this.#poller = setInterval(() => void this.#poll(onMessage), this.#pollMs);
    (this.#poller as { unref?: () => void }).unref?.();
    void this.#poll(onMessage);
  }

  close(): void {
    if (this.#poller) clearInterval(this.#poller);
    this.#poller = undefined;
  }

  async #poll(onMessage: (message: string) => void): Promise<void> {
    if (this.#polling || !this.reachable) return;
    this.#polling = true;
    try {
      const got = await this.#ask((c) => c.receive(this.#cursor ?? ''));
      if (got === UNREACHABLE) return;
      const first = this.#cursor === undefined;
      this.#cursor = got.cursor;
      if (first) return; // messages from before this process listened are not its business
      for (const message of got.messages) {
        this.counters.broadcastsReceived++;
        onMessage(message);
      }
    } finally {
      this.#polling = false;
    }
  }

  /**
   * One coordinator call within the timeout: its answer, or UNREACHABLE (the per-process answer).
   * A failure makes the coordinator unreachable for a while; a timeout only after several in a
   * row. `late` gets an answer that arrived after the timeout; a timeout answers `ifSlow`.
   */
  async #ask<T, S = typeof UNREACHABLE>(call: (c: FleetCoordinator) => Promise<T>, late?: (answer: T) => void, ifSlow?: S): Promise<T | typeof UNREACHABLE | S> {
    if (!this.reachable) return UNREACHABLE;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const TIMEOUT = Symbol('timeout');
    const timeout = new Promise<typeof TIMEOUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMEOUT), this.#timeoutMs);
    });
    const answered = call(this.#coordinator).then(
      (answer) => {
        this.#timeoutsInARow = 0;
        if (timedOut) late?.(answer);
        return answer;
      },
      (): typeof UNREACHABLE => {
        this.#fellBack(this.#timeoutsBeforeFallback);
        return UNREACHABLE;
      },
    );
    try {
      const answer = await Promise.race([answered, timeout]);
      if (answer !== TIMEOUT) return answer;
      timedOut = true;
      this.#fellBack(1);
      return ifSlow ?? UNREACHABLE;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counts a fallback answer; `weight` failures in a row (a failed call counts them all) make the coordinator unreachable. */
  #fellBack(weight: number): void {
    this.counters.coordinatorFallbacks++;
    this.#timeoutsInARow += weight;
    if (this.#timeoutsInARow < this.#timeoutsBeforeFallback) return;
    this.#timeoutsInARow = 0;
    this.#downUntil = performance.now() + this.#retryAfterMs;
  }
}

/**
 * How long an outage opens the fleet breaker, ms. Each failed probe renews it and a successful one
 * closes it, so it lapses on its own only when no process probes for this long.
 */
export const FLEET_BREAKER_OPEN_MS = 30_000;

/**
 * A load or an attempt the fleet breaker refuses waits this long for the probe's verdict before it
 * fails, ms: a breaker opened by a passing failure (one reset connection, one slow answer) closes
 * at the next probe, and the call goes then instead of failing a seal or an open that had no key
 * to fall back on.
 */
export const FLEET_REFUSED_WAIT_MS = 3_000;

/** Tencent's per-account quotas, calls per second (the shared budget's default). */
export const TENCENT_ACCOUNT_QUOTAS: Readonly<Record<string, number>> = { GenerateDataKey: 100, Decrypt: 300, Encrypt: 100, ReEncrypt: 100 };

export interface FleetBudgetOptions {
  /** The account's quota per action, calls per second; default Tencent's (TENCENT_ACCOUNT_QUOTAS). */
  quotas?: Readonly<Record<string, number>>;
  /** The fleet takes at most this fraction of each quota in any second; default 0.9. */
  share?: number;
  /** Link options (timeouts) when a coordinator is given rather than a link. */
  link?: FleetLinkOptions;
  /**
   * The fleet breaker this budget obeys: the key provider's id (default 'tencent', TencentKms's).
   * While a hierarchy with the same coordinator has it open, each attempt (a retry included) needs
   * the breaker's one attempt of the second fleet-wide, else fails at once with ERR_KEY_UNAVAILABLE.
   */
  breaker?: string;
}

/**
 * A fleet-wide token bucket per KMS action, for TencentKms's `rateLimit.shared`: no window of one
 * second passes more than `share` of the quota fleet-wide (the rate takes 90% of that and the
 * burst the rest), waits carry jitter so the fleet does not ask again in step. It is asked before
 * every attempt, retries included, so it also holds the fleet breaker's line: while the breaker is
 * open, one attempt a second fleet-wide (`breaker`). While the
 * coordinator is unreachable each call goes at once: the per-process budget (`rateLimit.fleet`),
 * which the limiter applies first, is the fallback.
 */
export function fleetBudget(coordinator: FleetCoordinator | FleetLink, options: FleetBudgetOptions = {}): SharedBudget {
  const link = coordinator instanceof FleetLink ? coordinator : new FleetLink(coordinator, options.link);
  const quotas = options.quotas ?? TENCENT_ACCOUNT_QUOTAS;
  const share = options.share ?? 0.9;
  const breaker = options.breaker ?? 'tencent';
  if (!(share > 0 && share <= 1)) throw new RangeError(`"share" must be in (0, 1], got ${share}`);
  let probing = false;
  let tripping: Promise<void> | undefined;
  return {
    // The first attempt that meets an outage opens the fleet's breaker, not the last of its retries:
    // the fleet stops calling a KMS that is down within one coordinator round trip. That attempt was
    // the second's probe, so its own retry waits for the next second like everyone else's.
    failing(): void {
      probing = false;
      const trip = link.trip(breaker, FLEET_BREAKER_OPEN_MS, 1_000);
      tripping = trip;
      void trip.finally(() => {
        if (tripping === trip) tripping = undefined;
      });
    },
    succeeded(): void {
      if (!probing) return;
      probing = false;
      link.reset(breaker);
    },
    async acquire(action: string, signal?: AbortSignal): Promise<void> {
      const quota = quotas[action];
      if (quota === undefined) return;
      const limit = Math.max(1, Math.floor(quota * share));
      const burst = Math.max(1, Math.floor(limit / 10));
      const name = fleetName('bucket', action);
      if (tripping) await tripping; // this client's retry after the breaker it opened, not before
      // As a load does: a refused attempt waits a little for the probe's verdict before it fails.
      const gate = await link.gate(breaker, 1_000, 'attempt', FLEET_REFUSED_WAIT_MS);
      if (gate === 'refuse') throw new KeyUnavailableError(`${action}: the KMS is failing: another process of the fleet is probing it`);
      if (gate === 'probe') probing = true;
      for (;;) {
        signal?.throwIfAborted();
        const wait = await link.take(name, limit - burst, burst);
        if (wait <= 0) return;
        await pause(wait + Math.random() * Math.min(50, wait), signal);
      }
    },
  };
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
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

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !(value > 0)) throw new RangeError(`"${name}" must be a number > 0, got ${String(value)}`);
  return value;
}
