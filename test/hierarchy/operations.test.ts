/**
 * Operations (issue 29): the events of hierarchies and record sets, the admin audit records and one
 * audit record per record-API open call, close({ drain }) of envelopes, hierarchies and record
 * sets, and health(); on a PostgreSQL key store with the emulator as the KMS.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, type Envelope, TencentKms } from '../../src/index.ts';
import { type AuditRecord, createKeyHierarchy, type HierarchyEvent, type KeyHierarchyOptions, PostgresKeyStore } from '../../src/hierarchy.ts';
import { createRecords, defineTable } from '../../src/records.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';
import { type PostgresServer, startPostgres, uniqueTable } from '../fixtures/postgres.ts';

const FAST = { retry: { limit: 0, baseDelayMs: 1, maxDelayMs: 2 }, timeoutMs: 3000, deadlineMs: 6000 };
const people = defineTable({ name: 'people', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' }, phone: { type: 'string' } } });

let emulator: RunningEmulator;
let keyId: string;
let server: PostgresServer;
let pool: pg.Pool;
beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ alias: 'operations' }));
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 6 });
});
afterAll(async () => {
  await pool.end();
  await server.stop();
  await emulator.close();
});

const kms = () => new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, ...FAST });
const storeOf = (table = uniqueTable('ops_keys')) => new PostgresKeyStore({ client: pool, table });
const hierarchyOf = (options: Partial<KeyHierarchyOptions> = {}) => createKeyHierarchy({ store: storeOf(), kms: kms(), ...options });
const codeOf = (settled: PromiseSettledResult<unknown>) => (settled.status === 'rejected' ? (settled.reason as { code?: string }).code : 'ok');

describe('events', () => {
  it('reports creations, KMS calls, key loads, stale keys, the breaker and revocations to the hierarchy and record-set listeners', async () => {
    const table = uniqueTable('ops_keys');
    const events: HierarchyEvent[] = [];
    const writer = createKeyHierarchy({ store: storeOf(table), kms: kms(), onEvent: (e) => events.push(e) });
    const sealed = await createEnvelope({ hierarchy: writer, partition: 'acme' }).seal('hello');
    // The new version's plaintext goes into the cache without a Decrypt (a load with no KMS call).
    expect(events.map((e) => e.type)).toEqual(['kms-call', 'key-created', 'key-load']);
    expect(events[0]).toMatchObject({ action: 'GenerateDataKey', ok: true, provider: 'tencent', throttled: false });

    let clock = 0;
    const seen: HierarchyEvent[] = [];
    // sealGraceMs: 0, so that warm() after the outage loads the key (with the grace it would seal with the held one).
    const reader = createKeyHierarchy({ store: storeOf(table), kms: kms(), now: () => clock, ttlMs: 1000, jitter: 0, breakerFailures: 1, breakerCooldownMs: 50, sealGraceMs: 0 });
    const records = createRecords({ hierarchy: reader, onEvent: (e) => seen.push(e) });
    const envelope = createEnvelope({ hierarchy: reader, partition: 'acme' });
    expect(await envelope.openString(sealed)).toBe('hello');
    expect(seen.map((e) => e.type)).toEqual(['kms-call', 'key-load']);
    expect(seen[1]).toMatchObject({ partition: 'acme', version: 1, ok: true });
    // The KMS fails past the TTL: the load fails, the breaker opens, the key is served stale.
    clock += 2000;
    emulator.setFaults({ internalErrorRate: 1 });
    expect(await envelope.openString(sealed)).toBe('hello');
    emulator.setFaults({});
    expect(seen.slice(2).map((e) => e.type)).toEqual(['kms-call', 'key-load', 'breaker', 'stale-served']);
    expect(seen[4]).toMatchObject({ scope: 'kms', state: 'open' });
    // After the cooldown a load works: the breaker closes.
    clock += 100;
    await reader.warm(['acme']);
    expect(seen.filter((e) => e.type === 'breaker').map((e) => (e as { state: string }).state)).toEqual(['open', 'closed']);
    // Shredded by another process: the next load finds the tombstone, the partition's keys are dropped.
    await writer.shred('acme');
    clock += 2000;
    await expect(envelope.open(sealed)).rejects.toMatchObject({ code: 'ERR_PARTITION_SHREDDED' });
    expect(seen.at(-1)).toMatchObject({ type: 'revoked', partition: 'acme', errorCode: 'ERR_PARTITION_SHREDDED' });
    // A closed record set stops listening; a throwing listener never breaks the operation.
    await records.close();
    const count = seen.length;
    reader.listen(() => {
      throw new Error('listener failure');
    });
    await reader.warm(['other']);
    expect(seen).toHaveLength(count);
    await Promise.all([writer.close(), reader.close()]);
  });
});

describe('audit', () => {
  it('writes a record for each admin operation, with its partitions, versions and counts, never a key', async () => {
    const audits: AuditRecord[] = [];
    const hierarchy = hierarchyOf({ audit: (a) => audits.push(a) });
    await hierarchy.warm(['acme', 'zeta']);
    await hierarchy.rotate('acme');
    expect(await hierarchy.verify()).toMatchObject({ checked: 3, ok: 3 });
    await hierarchy.rotateMasterKey({ toKeyId: emulator.createKey('operations-2') });
    await hierarchy.shred('zeta');
    await hierarchy.recreate('zeta');
    await expect(hierarchy.rotateMasterKey({ toKeyId: '' })).rejects.toThrow(TypeError);
    const admin = (audits as (AuditRecord & { at: number })[]).map(({ at, ...rest }) => (expect(at).toBeGreaterThan(1.7e12), rest));
    expect(admin).toEqual([
      { operation: 'create-version', partitions: ['acme'], versions: [1], ok: true },
      { operation: 'create-version', partitions: ['zeta'], versions: [1], ok: true },
      { operation: 'create-version', partitions: ['acme'], versions: [2], ok: true },
      { operation: 'rotate', partitions: ['acme'], versions: [2], ok: true },
      { operation: 'verify', partitions: [], versions: [], ok: true, counts: { checked: 3, ok: 3, failed: 0 } },
      { operation: 'rotate-master-key', partitions: [], versions: [], ok: true, counts: { rewrapped: 3, skipped: 0, raced: 0, failed: 0 } },
      { operation: 'shred', partitions: ['zeta'], versions: [], ok: true, counts: { versionsDeleted: 1, masterKeyDisabled: 0 } },
      { operation: 'create-version', partitions: ['zeta'], versions: [2], ok: true },
      { operation: 'create-version', partitions: ['zeta#blind-index'], versions: [2], ok: true },
      // recreate() makes the keys of every derived partition a shred covers again: blind indexes and search.
      { operation: 'create-version', partitions: ['zeta#search'], versions: [2], ok: true },
      { operation: 'recreate', partitions: ['zeta'], versions: [2], ok: true },
      { operation: 'rotate-master-key', partitions: [], versions: [], ok: false, errorCode: 'TypeError' },
    ]);
    expect(JSON.stringify(audits)).not.toMatch(/ciphertext|plaintext/i);
    await hierarchy.close();
  });

  it('makes one record per records.open, openMany and openSync call, with the caller metadata, counting fields by key version', async () => {
    const audits: AuditRecord[] = [];
    const table = uniqueTable('ops_keys');
    const writer = createKeyHierarchy({ store: storeOf(table), kms: kms() });
    const records = createRecords({ hierarchy: writer });
    const rows = Array.from({ length: 20 }, (_, i) => ({ id: `r${i}`, tenant: i % 2 ? 'acme' : 'zeta', email: `${i}@x`, phone: `+${i}` }));
    const sealed = (await records.sealMany(people, rows, { failFast: true })).map((r) => (r.ok ? r.value : undefined)!);
    const reader = createRecords({ hierarchy: createKeyHierarchy({ store: storeOf(table), kms: kms(), audit: (a) => audits.push(a) }) });
    const broken = { ...sealed[3]!, email: sealed[4]!.email };
    const opened = await reader.openMany(people, [...sealed, broken], { audit: { requestId: 'req-1' } });
    expect(opened.filter((r) => !r.ok)).toHaveLength(1);
    expect((await reader.open(people, sealed[0]!, { audit: { requestId: 'req-2' } })).email).toBe('0@x');
    expect(reader.openSync(people, sealed[1]!).phone).toBe('+1');
    const opens = audits.filter((a) => a.operation === 'open-rows');
    expect(opens).toHaveLength(3);
    expect(opens[0]).toMatchObject({ table: 'people', rows: 21, failed: 1, metadata: { requestId: 'req-1' } });
    const keys = (opens[0] as { keys: { partition: string; version: number; fields: number }[] }).keys;
    expect(keys.map((k) => [k.partition, k.version]).sort()).toEqual([['acme', 1], ['zeta', 1]]);
    expect(keys.reduce((n, k) => n + k.fields, 0)).toBe((opens[0] as { fields: number }).fields);
    expect((opens[0] as { fields: number }).fields).toBeGreaterThanOrEqual(40);
    expect(opens[1]).toMatchObject({ rows: 1, failed: 0, fields: 2, metadata: { requestId: 'req-2' }, keys: [{ partition: 'zeta', version: 1, fields: 2, fromCache: true }] });
    expect(opens[2]).toMatchObject({ rows: 1, failed: 0, fields: 2, metadata: undefined });
    // No per-field open records from the record API.
    expect(audits.filter((a) => a.operation === 'open')).toEqual([]);
  });
});

describe('close({ drain }) and health()', () => {
  async function coldHierarchy(latencyMs: number) {
    const store = storeOf();
    const hierarchy = createKeyHierarchy({ store, kms: kms() });
    emulator.setFaults({ latencyMs });
    return { store, hierarchy };
  }

  it('a hierarchy drains the seals queued behind a cold key, then refuses new ones by name', async () => {
    const { hierarchy } = await coldHierarchy(150);
    const envelope = createEnvelope({ hierarchy, partition: 'acme' });
    const seals = Array.from({ length: 200 }, (_, i) => envelope.seal(`row ${i}`));
    const report = await hierarchy.close();
    emulator.setFaults({});
    const settled = await Promise.allSettled(seals);
    expect(settled.map(codeOf).filter((c) => c !== 'ok')).toEqual([]);
    expect(report).toEqual({ drained: 200, refused: 0, timedOut: false });
    const after = await envelope.seal('late').catch((e: unknown) => e);
    expect(after).toMatchObject({ code: 'ERR_CLOSED', message: 'the key hierarchy is closed' });
  });

  it('with drain false (or a drain that times out) refuses what waits and says how many', async () => {
    const { hierarchy } = await coldHierarchy(300);
    const envelope = createEnvelope({ hierarchy, partition: 'acme' });
    const seals = Array.from({ length: 50 }, (_, i) => envelope.seal(`row ${i}`));
    const report = await hierarchy.close({ drain: false });
    const settled = await Promise.allSettled(seals);
    expect(settled.map(codeOf)).toEqual(Array(50).fill('ERR_CLOSED'));
    expect(report).toEqual({ drained: 0, refused: 50, timedOut: false });

    const timed = (await coldHierarchy(400)).hierarchy;
    const late = createEnvelope({ hierarchy: timed, partition: 'acme' });
    const more = Array.from({ length: 10 }, () => late.seal('x'));
    expect(await timed.close({ drain: 20 })).toEqual({ drained: 0, refused: 10, timedOut: true });
    expect((await Promise.allSettled(more)).map(codeOf)).toEqual(Array(10).fill('ERR_CLOSED'));
    emulator.setFaults({});
    await expect(timed.close({ drain: -1 })).rejects.toThrow(TypeError);
  });

  it('a record set and an envelope drain their rows and messages waiting for a key; the hierarchy stays open', async () => {
    const { hierarchy } = await coldHierarchy(150);
    const records = createRecords({ hierarchy });
    const seals = Array.from({ length: 30 }, (_, i) => records.seal(people, { id: `r${i}`, tenant: 'acme', email: `${i}@x` }));
    const report = await records.close();
    expect((await Promise.allSettled(seals)).map(codeOf).filter((c) => c !== 'ok')).toEqual([]);
    expect(report.refused).toBe(0);
    expect(report.drained).toBeGreaterThanOrEqual(1);
    await expect(records.seal(people, { id: 'x', tenant: 'acme', email: 'e' })).rejects.toMatchObject({ code: 'ERR_CLOSED', message: 'the record set is closed' });
    expect((await records.health()).closed).toBe(true);

    const envelope: Envelope = createEnvelope({ hierarchy, partition: 'zeta' });
    const messages = Array.from({ length: 30 }, (_, i) => envelope.seal(`m${i}`));
    await envelope.close();
    emulator.setFaults({});
    expect((await Promise.allSettled(messages)).map(codeOf).filter((c) => c !== 'ok')).toEqual([]);
    await expect(envelope.seal('late')).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    // The hierarchy itself is still open.
    expect(await createEnvelope({ hierarchy, partition: 'zeta' }).seal('still')).toBeInstanceOf(Uint8Array);
    await hierarchy.close();
  });

  it('health(): store reachable, KMS ok or within grace, active keys loaded; no KMS call', async () => {
    let clock = 0;
    // sealGraceMs: 0: a warm() past the TTL with the KMS failing fails instead of sealing within the outage grace.
    const hierarchy = hierarchyOf({ now: () => clock, ttlMs: 1000, jitter: 0, sealGraceMs: 0 });
    expect(await hierarchy.health({ partitions: ['acme'] })).toMatchObject({ ok: false, store: { ok: true }, kms: 'ok', notLoaded: ['acme'] });
    await hierarchy.warm(['acme']);
    const calls = emulator.stats();
    expect(await hierarchy.health({ partitions: ['acme'] })).toMatchObject({ ok: true, kms: 'ok', breaker: 'closed', keysLoaded: 1, notLoaded: [] });
    expect(emulator.stats()).toEqual(calls);
    // Past the TTL with the KMS failing: within grace (stale keys still open), still ready.
    clock += 1500;
    emulator.setFaults({ internalErrorRate: 1 });
    await expect(hierarchy.warm(['acme'])).rejects.toMatchObject({ code: 'ERR_KMS' });
    emulator.setFaults({});
    expect(await hierarchy.health({ partitions: ['acme'] })).toMatchObject({ ok: true, kms: 'grace', keysLoaded: 0, keysStale: 1 });
    // A store that cannot be reached.
    const unreachable = new pg.Pool({ connectionString: 'postgres://kmse@127.0.0.1:9/none', connectionTimeoutMillis: 2000 });
    const lost = createKeyHierarchy({ store: new PostgresKeyStore({ client: unreachable }), kms: kms() });
    expect(await lost.health()).toMatchObject({ ok: false, store: { ok: false, error: 'ECONNREFUSED' } });
    await unreachable.end();
    await hierarchy.close();
    expect(await hierarchy.health()).toMatchObject({ ok: false, closed: true });
  });
});
