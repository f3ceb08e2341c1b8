/**
 * OpenTelemetry (`kms-envelope/opentelemetry`): metrics and spans from a Meter and a Tracer the
 * application hands in (its own SDK and exporters: Prometheus, OTLP...).
 *
 *   const otel = createOpenTelemetry({ meter: metrics.getMeter('app'), tracer: trace.getTracer('app') });
 *   const detach = otel.instrument(hierarchy);              // cache, stale keys, versions, breaker, KMS latency
 *   const envelope = createEnvelope({ kms, onEvent: otel.onEvent });  // data-key KMS calls, throttling
 *   const records = otel.traceRecords(createRecords({ hierarchy }));  // spans for sealMany/openMany
 *   await runSweep(driver, { ...plan, onEvent: otel.sweepListener('rotation') });  // rows, a span per sweep
 *
 * Attributes never carry a key id, a context value, a partition (tenant) name or plaintext: only
 * the action, the outcome, the provider's id, the cache, the breaker's scope, the table and the
 * sweep's kind. `partitionAttributes` maps a partition to attributes of the caller's choosing
 * (a tier, a region) where an event names one. The warm path emits nothing: the hierarchy's hit and
 * miss counters are read when the SDK collects, so attaching a meter adds no work per seal or open.
 *
 * @opentelemetry/api is imported for its types only: the library never loads it (optional peer).
 */
import type { Attributes, Counter, Histogram, Meter, ObservableResult, Span, Tracer } from '@opentelemetry/api';
import type { BatchResult, EnvelopeEvent } from '../index.ts';
import type { HierarchyEvent, KeyHierarchy } from '../hierarchy.ts';
import type { Records, SweepEvent } from '../records.ts';

export interface OpenTelemetryOptions {
  meter?: Meter;
  tracer?: Tracer;
  /** Prefix of every metric and span name; default 'kms_envelope'. */
  prefix?: string;
  /** Attributes for an event's partition (never the name itself unless you return it); default none. */
  partitionAttributes?: (partition: string) => Attributes;
}

export type SweepKind = 'rotation' | 'rewrap' | 'backfill' | 'reindex' | 'migration';

export interface KmsEnvelopeTelemetry {
  /** The listener for createEnvelope({ onEvent }), createKeyHierarchy({ onEvent }) and createRecords({ onEvent }). */
  readonly onEvent: (event: EnvelopeEvent | HierarchyEvent) => void;
  /**
   * Listens to a hierarchy's events and observes its counters (cache hits and misses, stale keys
   * served, loads, revocations, breaker openings, key versions in use) at each collection.
   * Returns the function that stops both.
   */
  instrument(hierarchy: KeyHierarchy): () => void;
  /** The onEvent of runSweep(): rows by outcome, batches, and one span per sweep (an event per batch). */
  sweepListener(kind: SweepKind): (event: SweepEvent) => void;
  /** The same record set, its sealMany and openMany each in a span (rows, failures, table). */
  traceRecords(records: Records): Records;
  /** Runs `work` in a span named `${prefix}.${name}` (rewrap, a migration...), recording its failure. */
  trace<T>(name: string, work: (span: Span | undefined) => Promise<T>, attributes?: Attributes): Promise<T>;
}

/** OpenTelemetry's SpanStatusCode.ERROR, as a number: the adapter loads nothing of the API. */
const SPAN_ERROR = 2;

interface Instruments {
  kmsCalls: Counter;
  kmsDuration: Histogram;
  throttleWait: Histogram;
  retries: Counter;
  cacheEvents: Counter;
  keyLoads: Counter;
  keyLoadDuration: Histogram;
  staleServed: Counter;
  graceSeals: Counter;
  revocations: Counter;
  sweepRows: Counter;
  sweepBatches: Counter;
}

function instruments(meter: Meter, prefix: string): Instruments {
  const counter = (name: string, description: string): Counter => meter.createCounter(`${prefix}.${name}`, { description });
  const seconds = (name: string, description: string): Histogram => meter.createHistogram(`${prefix}.${name}`, { description, unit: 's' });
  return {
    kmsCalls: counter('kms.calls', 'KMS calls by action and outcome (ok, error, throttled)'),
    kmsDuration: seconds('kms.duration', 'KMS call latency, retries inside the call included'),
    throttleWait: seconds('kms.throttle_wait', 'Time a KMS call waited for the client-side rate limit or concurrency cap'),
    retries: counter('kms.retries', 'KMS attempts that failed and were tried again'),
    cacheEvents: counter('cache.events', 'Data-key cache hits, misses and evictions (intermediate keys: see cache.intermediate)'),
    keyLoads: counter('keys.loads', 'Intermediate-key loads by outcome'),
    keyLoadDuration: seconds('keys.load_duration', 'Intermediate-key load latency (store read and KMS Decrypt)'),
    staleServed: counter('keys.stale_served_events', 'Opens that used a key past its TTL while the KMS failed'),
    graceSeals: counter('keys.grace_seals', 'Seals under a key past its TTL allowed by sealGraceMs while the KMS failed'),
    revocations: counter('keys.revocations', 'Partitions whose keys were dropped because the KMS refused them for good'),
    sweepRows: counter('sweep.rows', 'Rows seen by sweeps and migrations, by outcome'),
    sweepBatches: counter('sweep.batches', 'Batches committed by sweeps and migrations'),
  };
}

const outcomeOf = (ok: boolean, errorCode: string | undefined, throttled = false): string => {
  if (ok) return 'ok';
  return throttled || /^RequestLimitExceeded|^4420$/.test(errorCode ?? '') ? 'throttled' : 'error';
};

export function createOpenTelemetry(options: OpenTelemetryOptions = {}): KmsEnvelopeTelemetry {
  return new Telemetry(options);
}

class Telemetry implements KmsEnvelopeTelemetry {
  readonly #meter: Meter | undefined;
  readonly #tracer: Tracer | undefined;
  readonly #prefix: string;
  readonly #partition: (partition: string) => Attributes;
  readonly #i: Instruments | undefined;
  /** The last state each breaker reported (1 open, 0 closed), observed at collection. */
  readonly #breakers = new Map<string, number>();

  constructor(options: OpenTelemetryOptions) {
    this.#meter = options.meter;
    this.#tracer = options.tracer;
    this.#prefix = options.prefix ?? 'kms_envelope';
    this.#partition = options.partitionAttributes ?? (() => ({}));
    this.#i = this.#meter && instruments(this.#meter, this.#prefix);
    this.#meter?.createObservableGauge(`${this.#prefix}.breaker.state`, { description: 'Circuit breakers: 1 open, 0 closed, by scope (kms, coordinator)' }).addCallback((result) => {
      for (const [scope, state] of this.#breakers) result.observe(state, { scope });
    });
  }

  readonly onEvent = (event: EnvelopeEvent | HierarchyEvent): void => {
    const i = this.#i;
    if (!i) return;
    switch (event.type) {
      case 'kms-call': {
        const attributes = { action: event.action, outcome: outcomeOf(event.ok, event.errorCode, 'throttled' in event && event.throttled), provider: event.provider };
        i.kmsCalls.add(1, attributes);
        i.kmsDuration.record(event.durationMs / 1000, attributes);
        return;
      }
      case 'throttle-wait':
        return i.throttleWait.record(event.waitMs / 1000, { action: event.action });
      case 'retry':
        return i.retries.add(1, { action: event.action });
      case 'cache-hit':
      case 'cache-miss':
      case 'cache-evict':
        return i.cacheEvents.add(1, { cache: event.cache, event: event.type.slice('cache-'.length), ...('reason' in event ? { reason: event.reason } : {}) });
      case 'key-load': {
        const attributes = { outcome: event.ok ? 'ok' : 'error', ...this.#partition(event.partition) };
        i.keyLoads.add(1, attributes);
        i.keyLoadDuration.record(event.durationMs / 1000, attributes);
        return;
      }
      case 'stale-served':
        return i.staleServed.add(1, this.#partition(event.partition));
      case 'grace-seal':
        return i.graceSeals.add(1, this.#partition(event.partition));
      case 'revoked':
        return i.revocations.add(1, this.#partition(event.partition));
      case 'breaker':
        this.#breakers.set(event.scope, event.state === 'open' ? 1 : 0);
        return;
      default:
        // wrapped-key-used (names a key id) and key-created: not metrics.
        return;
    }
  };

  instrument(hierarchy: KeyHierarchy): () => void {
    const unlisten = hierarchy.listen(this.onEvent);
    const meter = this.#meter;
    if (!meter) return unlisten;
    const p = this.#prefix;
    const cache = meter.createObservableCounter(`${p}.cache.intermediate`, { description: 'Intermediate-key cache: hits, misses, stale keys served, loads and their failures, revocations, breaker openings' });
    const versions = meter.createObservableGauge(`${p}.keys.versions_in_use`, { description: 'Intermediate-key versions held in memory' });
    const created = meter.createObservableCounter(`${p}.keys.versions_created`, { description: 'Intermediate-key versions this process created' });
    const observeCache = (result: ObservableResult): void => {
      const m = hierarchy.metrics();
      for (const name of ['hits', 'misses', 'staleServed', 'loads', 'loadFailures', 'revocations', 'breakerOpen'] as const) result.observe(m[name], { counter: name });
    };
    const observeVersions = (result: ObservableResult): void => {
      const inUse = hierarchy.metrics().versionsInUse;
      const byAttributes = new Map<string, { attributes: Attributes; count: number }>();
      for (const [partition, list] of Object.entries(inUse)) {
        const attributes = this.#partition(partition);
        const id = JSON.stringify(attributes);
        const slot = byAttributes.get(id) ?? { attributes, count: 0 };
        slot.count += list.length;
        byAttributes.set(id, slot);
      }
      if (byAttributes.size === 0) result.observe(0);
      for (const { attributes, count } of byAttributes.values()) result.observe(count, attributes);
    };
    const observeCreated = (result: ObservableResult): void => result.observe(hierarchy.metrics().versionsCreated);
    cache.addCallback(observeCache);
    versions.addCallback(observeVersions);
    created.addCallback(observeCreated);
    return () => {
      unlisten();
      cache.removeCallback(observeCache);
      versions.removeCallback(observeVersions);
      created.removeCallback(observeCreated);
    };
  }

  sweepListener(kind: SweepKind): (event: SweepEvent) => void {
    let span: Span | undefined;
    return (event) => {
      const i = this.#i;
      if (event.type === 'start') {
        span = this.#tracer?.startSpan(`${this.#prefix}.sweep`, { attributes: { 'sweep.kind': kind, 'sweep.workers': event.workers, ...(event.pending === undefined ? {} : { 'sweep.pending': event.pending }) } });
      } else if (event.type === 'batch') {
        const { written, current, failed, changed } = event.batch;
        for (const [outcome, rows] of Object.entries({ written, current, failed, changed })) if (rows > 0) i?.sweepRows.add(rows, { kind, outcome });
        i?.sweepBatches.add(1, { kind });
        span?.addEvent('batch', { 'sweep.worker': event.worker, 'sweep.rows': event.batch.seen, 'sweep.written': written, 'sweep.failed': failed });
      } else if (event.type === 'end') {
        const { seen, written, failed, stopped } = event.summary;
        span?.setAttributes({ 'sweep.rows': seen, 'sweep.written': written, 'sweep.failed': failed, 'sweep.stopped': stopped });
        span?.end();
        span = undefined;
      }
    };
  }

  traceRecords(records: Records): Records {
    if (!this.#tracer) return records;
    const batch =
      <A extends unknown[], R>(name: 'sealMany' | 'openMany', call: (...args: A) => Promise<BatchResult<R>[]>) =>
      (...args: A): Promise<BatchResult<R>[]> => {
        const [table, rows] = args as unknown as [{ name: string }, readonly unknown[]];
        return this.trace(
          `records.${name}`,
          async (span) => {
            const results = await call(...args);
            span?.setAttribute('records.failed', results.filter((r) => !r.ok).length);
            return results;
          },
          { 'records.table': table.name, 'records.rows': rows.length },
        );
      };
    return Object.freeze({ ...records, sealMany: batch('sealMany', records.sealMany), openMany: batch('openMany', records.openMany) }) as Records;
  }

  async trace<T>(name: string, work: (span: Span | undefined) => Promise<T>, attributes: Attributes = {}): Promise<T> {
    const tracer = this.#tracer;
    if (!tracer) return work(undefined);
    return tracer.startActiveSpan(`${this.#prefix}.${name}`, { attributes }, async (span) => {
      try {
        return await work(span);
      } catch (error) {
        // The error's stable code, never its message (it may name a partition or a key).
        const code = (error as { code?: unknown } | null)?.code;
        span.setStatus({ code: SPAN_ERROR });
        span.setAttribute('error.type', typeof code === 'string' ? code : error instanceof Error ? error.name : 'Error');
        throw error;
      } finally {
        span.end();
      }
    });
  }
}
