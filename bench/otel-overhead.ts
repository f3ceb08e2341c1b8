/**
 * `npm run bench:otel`: the cost of the OpenTelemetry adapter on the warm record path. Two record
 * sets over two hierarchies with the same keys (LocalKms, memory store, keys warm): A plain, B with
 * everything attached (instrument(hierarchy) on a real MeterProvider and BasicTracerProvider,
 * createRecords({ onEvent }), traceRecords()). Each round times the same work on A and on B, in
 * alternating order: `ROWS` single-row seal + open calls, then sealMany/openMany batches of 100
 * (one span each on B). The figure: the median of the per-round ratios B/A, and the spread (min,
 * max) of the ratios, in CPU time of the process. The honest floor is A: the same API with nothing attached.
 *
 *   OTEL_BENCH_ROUNDS=15 OTEL_BENCH_ROWS=4000 npm run bench:otel
 */
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createOpenTelemetry } from '../src/adapters/opentelemetry.ts';
import { LocalKms } from '../src/index.node.ts'; // the node:crypto backend, as a Node app gets it
import { createKeyHierarchy, MemoryKeyStore } from '../src/hierarchy.ts';
import { createRecords, defineTable, type Records } from '../src/records.ts';

const ROUNDS = Number(process.env.OTEL_BENCH_ROUNDS ?? 15);
const ROWS = Number(process.env.OTEL_BENCH_ROWS ?? 4000);
const BATCH = 100;
const TENANTS = ['acme', 'zeta', 'umbrella', 'initech'];

const people = defineTable({ name: 'people', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' }, note: { type: 'string' } } });
const rows = Array.from({ length: ROWS }, (_, i) => ({ id: `r${i}`, tenant: TENANTS[i % TENANTS.length]!, email: `user${i}@example.com`, note: 'x'.repeat(40 + (i % 80)) }));

const store = new MemoryKeyStore();
const kms = LocalKms.generate();

function plainRecords(): Records {
  return createRecords({ hierarchy: createKeyHierarchy({ store, kms }) });
}

function instrumentedRecords(): { records: Records; collect: () => Promise<number> } {
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
  const meter = new MeterProvider({ readers: [reader] }).getMeter('bench');
  const spans = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }).getTracer('bench');
  const otel = createOpenTelemetry({ meter, tracer });
  const hierarchy = createKeyHierarchy({ store, kms });
  otel.instrument(hierarchy);
  const records = otel.traceRecords(createRecords({ hierarchy, onEvent: otel.onEvent }));
  const collect = async (): Promise<number> => {
    const { resourceMetrics } = await reader.collect();
    spans.reset();
    return resourceMetrics.scopeMetrics.reduce((n, s) => n + s.metrics.length, 0);
  };
  return { records, collect };
}

/** CPU time (user + system) of the work, ms: less disturbed by other processes on a loaded machine than wall-clock time. */
async function work(records: Records): Promise<number> {
  const started = process.cpuUsage();
  for (const row of rows) await records.open(people, await records.seal(people, row));
  for (let i = 0; i < rows.length; i += BATCH) {
    const sealed = await records.sealMany(people, rows.slice(i, i + BATCH), { failFast: true });
    await records.openMany(people, sealed.map((r) => (r.ok ? r.value : undefined)!), { failFast: true });
  }
  const used = process.cpuUsage(started);
  return (used.user + used.system) / 1000;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const a = plainRecords();
const b = instrumentedRecords();
for (const records of [a, b.records]) {
  await records.warm(TENANTS);
  await work(records); // warm up the JIT and the keys
}
const ratios: number[] = [];
const times: { a: number; b: number }[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const first = round % 2 === 0;
  const tA = first ? await work(a) : 0;
  const tB = await work(b.records);
  const tA2 = first ? tA : await work(a);
  times.push({ a: tA2, b: tB });
  ratios.push(tB / tA2);
}
const metrics = await b.collect();
const load = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const opsPerRound = rows.length * 4;
console.log(
  `otel overhead, warm record path (${ROUNDS} interleaved rounds of ${rows.length} single-row seal+open and ${rows.length / BATCH} sealMany+openMany of ${BATCH}): ` +
    `median ratio B/A ${median(ratios).toFixed(4)} (spread ${Math.min(...ratios).toFixed(4)}..${Math.max(...ratios).toFixed(4)}); ` +
    `A ${Math.round((opsPerRound / median(times.map((t) => t.a))) * 1000)} row ops/s, B ${Math.round((opsPerRound / median(times.map((t) => t.b))) * 1000)} row ops/s; ` +
    `${metrics} metrics exported; load average ${load}`,
);
