/** Fault injection for tests: a script of faults, random rates, and a QPS limit per action. */
import type { FaultKind, FaultOptions } from './types.ts';

export interface Picked {
  fault: FaultKind;
  /** Gives back the call's place in the QPS window (a call whose client left was not served). */
  release(): void;
}

const nothingToRelease = (): void => {};

const KINDS: ReadonlySet<string> = new Set<FaultKind>(['throttle', 'internal', 'http503', 'drop', 'malformed', 'none']);
const RATES = ['throttleRate', 'internalErrorRate', 'http503Rate', 'dropRate', 'malformedRate'] as const;

/** Fault options as the control endpoint may receive them (any JSON): a TypeError unless they are. */
export function checkFaultOptions(value: unknown): FaultOptions {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new TypeError('faults must be a JSON object');
  const o = value as Record<string, unknown>;
  const number = (name: string, max = Infinity): boolean => o[name] === undefined || (typeof o[name] === 'number' && o[name] >= 0 && o[name] <= max);
  const limits = o.qpsLimit;
  const qpsOk =
    number('qpsLimit') ||
    (typeof limits === 'object' && limits !== null && !Array.isArray(limits) && Object.values(limits).every((v) => typeof v === 'number' && v >= 0));
  if (!number('latencyMs') || !qpsOk || !RATES.every((name) => number(name, 1))) {
    throw new TypeError('faults: rates 0..1, latencyMs >= 0, qpsLimit >= 0 or { action: limit >= 0 }');
  }
  if (o.script !== undefined && !(Array.isArray(o.script) && o.script.every((k) => typeof k === 'string' && KINDS.has(k)))) {
    throw new TypeError(`faults: script lists fault kinds (${[...KINDS].join(', ')})`);
  }
  return o as FaultOptions;
}

export class Faults {
  #options: FaultOptions = { script: [] };
  /** Times of the calls admitted in the last second, per action (the QPS limit's window). */
  readonly #windows = new Map<string, number[]>();

  constructor(options: FaultOptions = {}) {
    this.set(options);
  }

  set(next: FaultOptions): void {
    checkFaultOptions(next);
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
  pick(action: string): Picked {
    const faults = this.#options;
    const scripted = faults.script?.shift();
    if (scripted) return { fault: scripted, release: nothingToRelease };
    const roll = (rate: number | undefined): boolean => rate !== undefined && rate > 0 && Math.random() < rate;
    const fault = roll(faults.dropRate) ? 'drop'
      : roll(faults.http503Rate) ? 'http503'
      : roll(faults.malformedRate) ? 'malformed'
      : roll(faults.throttleRate) ? 'throttle'
      : roll(faults.internalErrorRate) ? 'internal'
      : undefined;
    return fault ? { fault, release: nothingToRelease } : this.#admit(action);
  }

  /** Under the QPS limit, the call takes a place in its action's window of the last second. */
  #admit(action: string): Picked {
    const limits = this.#options.qpsLimit;
    const limit = typeof limits === 'number' ? limits : limits?.[action];
    if (limit === undefined || limit <= 0) return { fault: 'none', release: nothingToRelease };
    const t = Date.now();
    const window = (this.#windows.get(action) ?? []).filter((x) => t - x < 1000);
    this.#windows.set(action, window);
    if (window.length >= limit) return { fault: 'throttle', release: nothingToRelease };
    window.push(t);
    const release = (): void => {
      const current = this.#windows.get(action);
      const i = current?.indexOf(t) ?? -1;
      if (i >= 0) current!.splice(i, 1);
    };
    return { fault: 'none', release };
  }
}
