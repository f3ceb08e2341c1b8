/** Fault injection for tests: a script of faults, random rates, and a QPS limit per action. */
import type { FaultKind, FaultOptions } from './types.ts';

export class Faults {
  #options: FaultOptions = { script: [] };
  /** Times of the calls admitted in the last second, per action (the QPS limit's window). */
  readonly #windows = new Map<string, number[]>();

  constructor(options: FaultOptions = {}) {
    this.set(options);
  }

  set(next: FaultOptions): void {
    this.#options = { ...next, script: [...(next.script ?? [])] };
    this.#windows.clear();
  }

  /** The options in force, with what is left of the script. */
  get options(): FaultOptions {
    return this.#options;
  }

  get latencyMs(): number {
    return this.#options.latencyMs ?? 0;
  }

  /** The next fault for this request, if any (script first, then rates, then the QPS limit). */
  pick(action: string): FaultKind {
    const faults = this.#options;
    const scripted = faults.script?.shift();
    if (scripted) return scripted;
    const roll = (rate: number | undefined): boolean => rate !== undefined && rate > 0 && Math.random() < rate;
    if (roll(faults.dropRate)) return 'drop';
    if (roll(faults.http503Rate)) return 'http503';
    if (roll(faults.malformedRate)) return 'malformed';
    if (roll(faults.throttleRate)) return 'throttle';
    if (roll(faults.internalErrorRate)) return 'internal';
    return this.#overQps(action) ? 'throttle' : 'none';
  }

  #overQps(action: string): boolean {
    const limit = this.#options.qpsLimit;
    if (limit === undefined || limit <= 0) return false;
    const t = Date.now();
    const window = (this.#windows.get(action) ?? []).filter((x) => t - x < 1000);
    this.#windows.set(action, window);
    if (window.length >= limit) return true;
    window.push(t);
    return false;
  }
}
