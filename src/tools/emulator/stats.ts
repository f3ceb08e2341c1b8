/** What the emulator counts, for tests and `GET /__emulator/stats`. */
import type { EmulatorStats } from './types.ts';

export class Stats {
  #stats: EmulatorStats = Stats.#empty();

  static #empty(): EmulatorStats {
    return { calls: {}, faults: {}, authFailures: 0 };
  }

  call(action: string): void {
    this.#stats.calls[action] = (this.#stats.calls[action] ?? 0) + 1;
  }

  fault(kind: string): void {
    this.#stats.faults[kind] = (this.#stats.faults[kind] ?? 0) + 1;
  }

  authFailure(): void {
    this.#stats.authFailures++;
  }

  snapshot(): EmulatorStats {
    return structuredClone(this.#stats);
  }

  reset(): void {
    this.#stats = Stats.#empty();
  }
}
