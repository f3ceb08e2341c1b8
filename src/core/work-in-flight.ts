/**
 * Calls that wait (for a key store, the KMS, a key load), counted so that close({ drain }) of a key
 * hierarchy or a record set can let them finish, or refuse them and say how many. Only cold paths
 * are tracked: a key held in memory is handed out with no work here. Kept out of the main entry's
 * reach (the envelope's own close() drains through its tracker in envelope/engine.ts).
 */
import { ClosedError } from './errors.ts';

export interface CloseOptions {
  /**
   * true (the default): wait for every call in flight and queued (key loads, store reads, seals
   * and opens waiting for a key) before closing; a number: wait up to that many ms, then refuse
   * what is still waiting; false: refuse at once what waits for the store or the KMS (a KMS call
   * already sent is let finish, and its key wiped). Calls made after close() began are refused
   * (ERR_CLOSED) either way.
   */
  drain?: boolean | number;
}

export interface CloseReport {
  /** Calls that were waiting when close() began and finished normally before it resolved. */
  drained: number;
  /** Calls refused with ERR_CLOSED: made after close() began, or still waiting when the drain ended (or with drain false). */
  refused: number;
  /** Whether the drain ran out of time (drain: ms) with calls still waiting. */
  timedOut: boolean;
}

/** The error a call gets once its object is closing or closed, naming the object. */
export function closedError(what: string): ClosedError {
  const error = new ClosedError();
  error.message = `the ${what} is closed`;
  return error;
}

/** Calls waiting for a key (or a row for a key), counted so that close() can drain or refuse them. */
export class WorkInFlight {
  readonly #what: string;
  readonly #pending = new Set<Promise<unknown>>();
  #closing = false;
  #refusing = false;
  #drained = 0;
  #refused = 0;

  constructor(what: string) {
    this.#what = what;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Throws ERR_CLOSED (counted) once close() has begun. */
  checkOpen(): void {
    if (this.#closing) {
      this.#refused++;
      throw closedError(this.#what);
    }
  }

  /** Tracks a call that waits; once the drain has ended (or with drain false) it is refused when it settles. */
  track<T>(work: Promise<T>): Promise<T> {
    const tracked = work.then(
      (value) => {
        if (this.#refusing) throw this.#refusal();
        if (this.#closing) this.#drained++;
        return value;
      },
      (error: unknown) => {
        if (this.#refusing || error instanceof ClosedError) throw this.#refusal();
        if (this.#closing) this.#drained++;
        throw error;
      },
    );
    this.#pending.add(tracked);
    const forget = (): void => void this.#pending.delete(tracked);
    tracked.then(forget, forget);
    return tracked;
  }

  /** Refuses new calls, waits (per `drain`) for those waiting, then refuses the rest; `close` runs before the report. */
  async close(options: CloseOptions = {}, close: () => Promise<void>): Promise<CloseReport> {
    const drain = options.drain ?? true;
    if (typeof drain !== 'boolean' && !(typeof drain === 'number' && drain >= 0)) throw new TypeError('"drain" expected true, false or a number of ms >= 0');
    this.#closing = true;
    let timedOut = false;
    if (drain !== false) timedOut = !(await this.#idle(drain === true ? undefined : drain));
    this.#refusing = true;
    await close();
    // What was still waiting settles refused once the cache is closed (its KMS calls finish, their keys wiped).
    await Promise.allSettled([...this.#pending]);
    return { drained: this.#drained, refused: this.#refused, timedOut };
  }

  #refusal(): ClosedError {
    this.#refused++;
    return closedError(this.#what);
  }

  /** Whether every tracked call settled (within `timeoutMs` when given); calls that start meanwhile are waited for too. */
  async #idle(timeoutMs: number | undefined): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = timeoutMs === undefined ? undefined : new Promise<false>((done) => (timer = setTimeout(() => done(false), timeoutMs)));
    try {
      while (this.#pending.size > 0) {
        const all = Promise.allSettled([...this.#pending]).then(() => true);
        if (!(await (expired ? Promise.race([all, expired]) : all))) return false;
      }
      return true;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }
}

