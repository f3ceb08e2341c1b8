/**
 * What the emulator counts, for tests and `GET /__emulator/stats`. Counts are kept in Maps: an
 * action name is the caller's text, and one such as `__proto__` must stay a name.
 */
import type { EmulatorStats } from './types.ts';

export class Stats {
  #calls = new Map<string, number>();
  #served = new Map<string, number>();
  #abandoned = new Map<string, number>();
  #faults = new Map<string, number>();
  #authFailures = 0;

  call(action: string): void {
    bump(this.#calls, action);
  }

  served(action: string): void {
    bump(this.#served, action);
  }

  abandoned(action: string): void {
    bump(this.#abandoned, action);
  }

  fault(kind: string): void {
    bump(this.#faults, kind);
  }

  authFailure(): void {
    this.#authFailures++;
  }

  snapshot(): EmulatorStats {
    return {
      calls: Object.fromEntries(this.#calls),
      served: Object.fromEntries(this.#served),
      abandoned: Object.fromEntries(this.#abandoned),
      faults: Object.fromEntries(this.#faults),
      authFailures: this.#authFailures,
    };
  }

  reset(): void {
    this.#calls = new Map();
    this.#served = new Map();
    this.#abandoned = new Map();
    this.#faults = new Map();
    this.#authFailures = 0;
  }
}

function bump(counts: Map<string, number>, name: string): void {
  counts.set(name, (counts.get(name) ?? 0) + 1);
}
