/**
 * The OpenTelemetry adapter with the SDK's in-memory exporters, a PostgreSQL key store and the
 * emulator: KMS calls by action and outcome (throttling included) with latencies, cache counters,
 * stale keys served, the breaker, key versions in use, sweep rows and spans. Every attribute of
 * every data point, span and span event is searched for the key id, the partitions, a context
 * value, a primary key and the plaintext: none may appear unless partitionAttributes maps it in.
 */
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpenTelemetry } from '../../src/adapters/opentelemetry.ts';
import { createEnvelope, TencentKms } from '../../src/index.ts';
import { createKeyHierarchy, PostgresKeyStore } from '../../src/hierarchy.ts';
import { createRecords, defineTable, rotationSweep, sweepSqlite } from '../../src/records.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const FAST = { retry: { limit: 1, baseDelayMs: 1, maxDelayMs: 2 }, timeoutMs: 2000, deadlineMs: 5000 };
const TENANTS = ['tenant-secret-acme', 'tenant-secret-zeta'];
const PLAINTEXT = 'plaintext-secret@example.com';
const CONTEXT_VALUE = 'ctx-secret-order-77';
const PRIMARY_KEY = 'pk-secret-0001';

const people = defineTable({ name: 'people', primaryKey: 'id', partition: { column: 'tenant' }, keyVersionColumn: 'key_version', columns: { email: { type: 'string' } } });

let emulator: RunningEmulator;
let keyId: string;
let server: PostgresServer;
let pool: pg.Pool;
beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ alias: 'otel' }));
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
});
afterAll(async () => {
  await pool.end();
  await server.stop();
  await emulator.close();
});

function telemetry() {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const collect = async (): Promise<ResourceMetrics> => (await reader.collect()).resourceMetrics;
  return { meter: meterProvider.getMeter('test'), tracer: tracerProvider.getTracer('test'), collect, spans, close: () => Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]) };
}

interface Point {
  metric: string;
  attributes: Record<string, unknown>;
  value: unknown;
}

function pointsOf(resource: ResourceMetrics): Point[] {
  return resource.scopeMetrics.flatMap((scope) =>
    scope.metrics.flatMap((metric) => metric.dataPoints.map((p) => ({ metric: metric.descriptor.name, attributes: p.attributes as Record<string, unknown>, value: p.value }))),
  );
}

const sum = (points: Point[], metric: string, match: Record<string, unknown> = {}): number =>
  points
    .filter((p) => p.metric === metric && Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((n, p) => n + (typeof p.value === 'number' ? p.value : (p.value as { count: number }).count), 0);

const tencent = (options: object = {}) => new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, ...FAST, ...options });

describe('the OpenTelemetry adapter', () => {
  it('reports KMS calls, throttling, the caches, stale keys, the breaker, versions in use, sweep rows and spans, and no secret in any attribute', async () => {
    const t = telemetry();
    const otel = createOpenTelemetry({ meter: t.meter, tracer: t.tracer });
    let clock = 0;
    const store = new PostgresKeyStore({ client: pool, table: uniqueTable('otel_keys') });
    const hierarchy = createKeyHierarchy({ store, kms: tencent(), now: () => clock, ttlMs: 1000, jitter: 0, breakerFailures: 1, breakerCooldownMs: 10 });
    const detach = otel.instrument(hierarchy);
    const records = otel.traceRecords(createRecords({ hierarchy }));
    const rows = TENANTS.flatMap((tenant, i) => [{ id: i === 0 ? PRIMARY_KEY : `r${i}`, tenant, email: PLAINTEXT }]);
    const sealed = (await records.sealMany(people, rows, { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    expect((await records.openMany(people, sealed)).every((r) => r.ok)).toBe(true);

    // Data keys through the envelope: a throttled GenerateDataKey (retries used up), then one that works.
    const envelope = createEnvelope({ kms: tencent(), onEvent: otel.onEvent });
    emulator.setFaults({ script: ['throttle', 'throttle'] });
    await expect(envelope.seal(PLAINTEXT, { context: { order: CONTEXT_VALUE } })).rejects.toMatchObject({ code: 'ERR_KMS' });
    const message = await envelope.seal(PLAINTEXT, { context: { order: CONTEXT_VALUE } });
    expect(await envelope.openString(message, { context: { order: CONTEXT_VALUE } })).toBe(PLAINTEXT);

    // The KMS fails: past the TTL, opens are served a stale key; the failure opens the breaker (breakerFailures 1).
    clock += 1500;
    emulator.setFaults({ internalErrorRate: 1 });
    expect((await records.open(people, sealed[0]!)).email).toBe(PLAINTEXT);
    await records.open(people, sealed[1]!);
    emulator.setFaults({});

    // A sweep (rotation to version 2 of one tenant) on SQLite, with its span and rows.
    clock += 100; // past the breaker's cooldown
    await hierarchy.warm(TENANTS);
    await hierarchy.rotate(TENANTS[0]!);
    const db = new Database(':memory:');
    db.exec('CREATE TABLE people (id TEXT PRIMARY KEY, tenant TEXT, email TEXT, key_version INTEGER)');
    for (const row of sealed) db.prepare('INSERT INTO people VALUES (?, ?, ?, ?)').run(row.id, row.tenant, row.email, row.key_version);
    const plan = rotationSweep(records, people, { minVersion: 2, keyVersionColumn: 'key_version' });
    const summary = await sweepSqlite(db, { table: 'people', key: 'id', ...plan, pending: `key_version < 2 AND tenant = '${TENANTS[0]}'`, onEvent: otel.sweepListener('rotation') });
    expect(summary).toMatchObject({ written: 1, failed: 0 });

    const points = pointsOf(await t.collect());
    // KMS calls by action and outcome, with latency histograms.
    expect(sum(points, 'kms_envelope.kms.calls', { action: 'GenerateDataKey', outcome: 'throttled' })).toBe(1);
    expect(sum(points, 'kms_envelope.kms.calls', { action: 'GenerateDataKey', outcome: 'ok' })).toBeGreaterThanOrEqual(4); // 2 tenants, a rotation, the envelope
    expect(sum(points, 'kms_envelope.kms.calls', { action: 'Decrypt', outcome: 'error' })).toBe(1);
    expect(sum(points, 'kms_envelope.kms.duration', { action: 'GenerateDataKey', outcome: 'ok' })).toBeGreaterThanOrEqual(4);
    // The intermediate-key cache's counters, read at collection.
    expect(sum(points, 'kms_envelope.cache.intermediate', { counter: 'hits' })).toBeGreaterThan(0);
    expect(sum(points, 'kms_envelope.cache.intermediate', { counter: 'staleServed' })).toBeGreaterThanOrEqual(2);
    expect(sum(points, 'kms_envelope.keys.stale_served_events')).toBe(sum(points, 'kms_envelope.cache.intermediate', { counter: 'staleServed' }));
    expect(sum(points, 'kms_envelope.cache.intermediate', { counter: 'breakerOpen' })).toBe(1);
    expect(sum(points, 'kms_envelope.breaker.state', { scope: 'kms' })).toBe(0); // opened, then closed by the warm() that worked
    expect(sum(points, 'kms_envelope.keys.versions_in_use')).toBe(3);
    expect(sum(points, 'kms_envelope.keys.loads', { outcome: 'error' })).toBe(1);
    expect(sum(points, 'kms_envelope.sweep.rows', { kind: 'rotation', outcome: 'written' })).toBe(1);
    expect(sum(points, 'kms_envelope.sweep.batches', { kind: 'rotation' })).toBe(1);
    // Spans: the batches and the sweep.
    const spans = t.spans.getFinishedSpans();
    expect(spans.map((s) => s.name).sort()).toEqual(['kms_envelope.records.openMany', 'kms_envelope.records.sealMany', 'kms_envelope.sweep']);
    expect(spans.find((s) => s.name === 'kms_envelope.records.sealMany')!.attributes).toMatchObject({ 'records.table': 'people', 'records.rows': 2, 'records.failed': 0 });
    expect(spans.find((s) => s.name === 'kms_envelope.sweep')!.events.map((e) => e.name)).toEqual(['batch']);

    // No key id, partition, context value, primary key or plaintext anywhere in an attribute.
    const attributes = [...points.map((p) => p.attributes), ...spans.flatMap((s) => [s.attributes, ...s.events.map((e) => e.attributes ?? {})])];
    const text = JSON.stringify(attributes);
    for (const secret of [keyId, ...TENANTS, CONTEXT_VALUE, PRIMARY_KEY, PLAINTEXT, 'tenant-secret']) expect(text).not.toContain(secret);
    expect(attributes.length).toBeGreaterThan(20);
    detach();
    await hierarchy.close();
    await t.close();
  });

  it('puts a partition into attributes only through partitionAttributes, and records a failed span by its code', async () => {
    const t = telemetry();
    const otel = createOpenTelemetry({ meter: t.meter, tracer: t.tracer, partitionAttributes: (partition) => ({ tier: partition.endsWith('acme') ? 'gold' : 'basic' }) });
    const store = new PostgresKeyStore({ client: pool, table: uniqueTable('otel_keys') });
    const hierarchy = createKeyHierarchy({ store, kms: tencent() });
    otel.instrument(hierarchy);
    const records = createRecords({ hierarchy });
    await records.seal(people, { id: 'a', tenant: TENANTS[0]!, email: PLAINTEXT });
    await records.seal(people, { id: 'b', tenant: TENANTS[1]!, email: PLAINTEXT });
    const points = pointsOf(await t.collect());
    expect(sum(points, 'kms_envelope.keys.versions_in_use', { tier: 'gold' })).toBe(1);
    expect(sum(points, 'kms_envelope.keys.versions_in_use', { tier: 'basic' })).toBe(1);
    await expect(otel.trace('rewrap', async () => hierarchy.rotate(''))).rejects.toThrow();
    const [span] = t.spans.getFinishedSpans();
    expect(span!.name).toBe('kms_envelope.rewrap');
    expect(span!.status.code).toBe(2);
    expect(JSON.stringify([points.map((p) => p.attributes), span!.attributes])).not.toMatch(/tenant-secret/);
    await hierarchy.close();
    await t.close();
  });

  it('without a meter or tracer does nothing, and hands the record set back as it is', () => {
    const otel = createOpenTelemetry();
    const records = { sealMany: () => Promise.resolve([]) } as never;
    expect(otel.traceRecords(records)).toBe(records);
    expect(() => otel.onEvent({ type: 'cache-hit', cache: 'encrypt' })).not.toThrow();
  });
});
