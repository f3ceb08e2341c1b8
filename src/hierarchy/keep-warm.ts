/**
 * Keeping partitions warm (hierarchy.keepWarm, records.warm): a timer per keeper, unref'd, that
 * before each partition's key or active version would lapse reads the active version again and
 * starts the cache's one refresh ahead of expiry. So a synchronous call (an ORM hook) after a quiet
 * spell finds its key in memory, at one KMS Decrypt per partition per TTL per process.
 */

export interface KeepWarmOptions {
  /** More work per tick, after the partitions' keys (records: their blind-index keys). */
  also?: (partitions: readonly string[]) => Promise<void>;
  /** A refresh that failed (the KMS down): the next tick tries again. Default: ignored. */
  onError?: (error: unknown) => void;
}

export interface KeepWarm {
  /** Stops the refreshes (keys already loaded stay until their TTL ends). */
  stop(): void;
  /** Waits for the tick under way, if any (tests, shutdown). */
  settled(): Promise<void>;
}

/** How a hierarchy refreshes one partition, and how often a keeper ticks. */
export interface KeepWarmTarget {
  readonly keepFresh: (partition: string, aheadMs: number) => Promise<void>;
  readonly periodMs: number;
}

/**
 * The tick period for a cache's refresh-ahead window and the active version's memory: half the
 * shorter, so at least one tick falls in each window (10 ms at least).
 */
export function keepWarmPeriod(ttlMs: number, refreshAheadMs: number | undefined, activeTtlMs: number): number {
  const ahead = refreshAheadMs ?? ttlMs / 10;
  return Math.max(10, Math.min(ahead > 0 ? ahead : ttlMs, activeTtlMs) / 2);
}

/** The keepers of one hierarchy: close() stops them all. */
export class Keepers {
  readonly #running = new Set<KeepWarm>();

  start(target: KeepWarmTarget, partitions: Iterable<string>, options: KeepWarmOptions = {}): KeepWarm {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    let under: Promise<void> = Promise.resolve();
    const tick = async (): Promise<void> => {
      const list = [...partitions];
      const results = await Promise.allSettled(list.map((p) => target.keepFresh(p, 2 * target.periodMs)));
      if (options.also) results.push(...(await Promise.allSettled([options.also(list)])));
      for (const r of results) if (r.status === 'rejected') report(r.reason);
    };
    const report = (error: unknown): void => {
      try {
        options.onError?.(error);
      } catch {
        // A hook's failure must not stop the refreshes.
      }
    };
    const schedule = (): void => {
      if (stopped) return;
      timer = setTimeout(() => {
        under = tick().finally(schedule);
      }, target.periodMs);
      (timer as { unref?: () => void }).unref?.();
    };
    const keeper: KeepWarm = {
      stop: () => {
        stopped = true;
        if (timer !== undefined) clearTimeout(timer);
        this.#running.delete(keeper);
      },
      settled: () => under.catch(() => undefined),
    };
    this.#running.add(keeper);
    schedule();
    return keeper;
  }

  stopAll(): void {
    for (const keeper of [...this.#running]) keeper.stop();
  }
}
