/**
 * A small benchmark harness: warm up, then interleave the cases in rounds (so machine noise hits
 * them alike) and report the median time per operation with its spread.
 */
export interface Case {
  name: string;
  /** Runs one operation. */
  run: () => unknown | Promise<unknown>;
}

export interface Result {
  name: string;
  /** Median nanoseconds per operation over the rounds. */
  medianNs: number;
  /** Lowest and highest round, nanoseconds per operation. */
  minNs: number;
  maxNs: number;
  /** Nanoseconds per operation in each round, in round order. */
  rounds: number[];
}

/**
 * The median over rounds of this case's time over the baseline's in the same round: the two ran
 * moments apart, so a slow stretch of the machine hits both and cancels out.
 */
export function ratioTo(result: Result, baseline: Result): number {
  const ratios = result.rounds.map((ns, r) => ns / baseline.rounds[r]!).sort((a, b) => a - b);
  return ratios[Math.floor(ratios.length / 2)]!;
}

const collectGarbage = (globalThis as { gc?: () => void }).gc ?? ((): void => {});

async function timeBatch(c: Case, ops: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const r = c.run();
    if (r instanceof Promise) await r;
  }
  return Number(process.hrtime.bigint() - start) / ops;
}

export interface MeasureOptions {
  rounds?: number;
  /** Target length of one batch, milliseconds. */
  batchMs?: number;
  /**
   * Run a full garbage collection before every batch (default true). A forced full collection also
   * throws away V8's optimized code that embedded objects of the last batch, so a case made of
   * JavaScript (a stream) pays for warming up again in every batch; benches of steady throughput
   * turn it off and rely on interleaving.
   */
  collectBetween?: boolean;
}

export async function measure(cases: Case[], options: MeasureOptions = {}): Promise<Result[]> {
  const rounds = options.rounds ?? 15;
  const collectBetween = options.collectBetween ?? true;
  const batchMs = options.batchMs ?? 40;
  // Calibrate a batch size per case so each batch lasts about batchMs; this doubles as warm-up.
  const opsPerBatch = new Map<Case, number>();
  for (const c of cases) {
    let ops = 1;
    for (;;) {
      const ns = (await timeBatch(c, ops)) * ops;
      if (ns > batchMs * 1e6 * 0.5 || ops > 1e7) break;
      ops *= 2;
    }
    opsPerBatch.set(c, ops);
  }
  const samples = new Map<Case, number[]>(cases.map((c) => [c, []]));
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) {
      // Each batch starts with a clean heap, so it pays for its own garbage and not the last case's
      // (the peers leave a lot). `npm run bench` runs node with --expose-gc.
      if (collectBetween) collectGarbage();
      samples.get(c)!.push(await timeBatch(c, opsPerBatch.get(c)!));
    }
  }
  return cases.map((c) => {
    const rounds = samples.get(c)!;
    const s = [...rounds].sort((a, b) => a - b);
    return { name: c.name, medianNs: s[Math.floor(s.length / 2)]!, minNs: s[0]!, maxNs: s[s.length - 1]!, rounds };
  });
}

export function formatNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(0)} ns`;
}

export function formatSize(bytes: number): string {
  if (bytes >= 1 << 20) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1024) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}
