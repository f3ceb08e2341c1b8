/**
 * Rotation and erasure under the key hierarchy (issue 14): an intermediate-key rotation adds a
 * version for new writes and keeps the old ones for opening; a master-key rotation re-wraps the
 * stored intermediate keys (one ReEncrypt each) and never the records; verify(); export/import;
 * crypto-shredding of one tenant (its master key disabled and scheduled for deletion in the
 * emulator, with Tencent's codes) while the others read on.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { canonicalContext } from '../../src/core/context.ts';
import { createEnvelope, inspect, keyPolicy, KeyVersionRefusedError, LocalKms, needsRewrap, PartitionShreddedError, TencentKms, TencentKmsV2 } from '../../src/index.ts';
import { createKeyHierarchy, exportKeyStore, importKeyStore, MemoryKeyStore } from '../../src/hierarchy.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

const FAST = { retry: { baseDelayMs: 1, maxDelayMs: 5 }, timeoutMs: 2000, deadlineMs: 10000 };
let emulator: RunningEmulator;
let masterA: string;
beforeAll(async () => ({ emulator, keyId: masterA } = await useEmulator({ alias: 'rotation-a' })));
afterAll(() => emulator.close());

const tencent = (keyId: string) => new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, ...FAST });
const legacy = (keyId: string) => new TencentKmsV2({ keyId, region: 'gz', endpoint: `${emulator.url}/v2/index.php`, credentials: emulator.credentials[0]!, ...FAST });

describe('intermediate-key rotation', () => {
  it('adds a version that seals new writes; old versions stay decrypt-only and open; a minimum-version policy then refuses them by name', async () => {
    const store = new MemoryKeyStore();
    const hierarchy = createKeyHierarchy({ store, kms: LocalKms.generate() });
    const envelope = createEnvelope({ hierarchy, partition: 't1' });
    const old = await envelope.seal('before', { context: { row: '1' } });
    const created = await hierarchy.rotate('t1');
    expect(created.version).toBe(2);
    expect((await store.listVersions('t1')).map((k) => [k.version, k.state])).toEqual([[1, 'decrypt-only'], [2, 'active']]);
    const fresh = await envelope.seal('after', { context: { row: '2' } });
    expect([inspect(old).keyVersion, inspect(fresh).keyVersion]).toEqual([1, 2]);
    expect(await envelope.openString(old, { context: { row: '1' } })).toBe('before');
    expect(needsRewrap(old, { minKeyVersion: 2 })).toBe(true);
    expect(needsRewrap(fresh, { minKeyVersion: { t1: 2 } })).toBe(false);
    const strict = createEnvelope({ hierarchy, partition: 't1', keyPolicy: keyPolicy({ minKeyVersion: 2 }) });
    const refused = await strict.open(old, { context: { row: '1' } }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(KeyVersionRefusedError);
    expect(refused).toMatchObject({ code: 'ERR_KEY_VERSION_REFUSED', what: 'key version', found: 1, minimum: 2 });
    expect((refused as Error).message).toContain('key version 1');
    expect(await strict.openString(fresh, { context: { row: '2' } })).toBe('after');
    // Per open, and the format version too.
    await expect(envelope.open(fresh, { context: { row: '2' }, keyPolicy: keyPolicy({ minKeyVersion: 3 }) })).rejects.toMatchObject({ found: 2, minimum: 3 });
    const v1 = await createEnvelope({ kms: LocalKms.generate() }).seal('x');
    expect(needsRewrap(v1, { minFormatVersion: 2 })).toBe(true);
  });
});

describe('master-key rotation (emulator, API 3.0)', () => {
  it('re-wraps each stored intermediate key with one ReEncrypt, not the records; they open once the old master key is disabled; verify() before and after', async () => {
    const masterB = emulator.createKey('rotation-b');
    const store = new MemoryKeyStore();
    const kms = tencent(masterA);
    const hierarchy = createKeyHierarchy({ store, kms });
    const tenants = ['acme', 'globex', 'initech'];
    const sealed = new Map<string, Uint8Array[]>();
    for (const t of tenants) {
      const envelope = createEnvelope({ hierarchy, partition: t });
      sealed.set(t, await Promise.all(Array.from({ length: 50 }, (_, i) => envelope.seal(`${t} ${i}`, { context: { row: String(i) } }))));
    }
    await hierarchy.rotate('acme'); // 4 versions in all
    expect((await hierarchy.verify()).failed).toEqual([]);
    const recordsBefore = [...sealed.values()].flat().map((s) => Buffer.from(s).toString('base64'));

    emulator.resetStats();
    const report = await hierarchy.rotateMasterKey({ toKeyId: masterB });
    expect(report).toEqual({ rewrapped: 4, skipped: 0, raced: 0, failed: [] });
    expect(emulator.stats().calls).toEqual({ ReEncrypt: 4 });
    expect((await store.listVersions('acme')).every((k) => k.keyId === masterB)).toBe(true);
    // Again: nothing left to do, no KMS call.
    emulator.resetStats();
    expect(await hierarchy.rotateMasterKey({ toKeyId: masterB })).toMatchObject({ rewrapped: 0, skipped: 4 });
    expect(emulator.stats().calls).toEqual({});

    await kms.disableKey(masterA);
    try {
      // A process that starts now (nothing in memory) opens every record through the new master key.
      const reader = createKeyHierarchy({ store, kms: tencent(masterB) });
      for (const t of tenants) {
        const envelope = createEnvelope({ hierarchy: reader, partition: t });
        expect(await envelope.openString(sealed.get(t)![7]!, { context: { row: '7' } })).toBe(`${t} 7`);
      }
      expect([...sealed.values()].flat().map((s) => Buffer.from(s).toString('base64'))).toEqual(recordsBefore);
      const report = await reader.verify();
      expect(report).toMatchObject({ checked: 4, ok: 4, failed: [] });
      await reader.close();
    } finally {
      await kms.enableKey(masterA);
    }
    await hierarchy.close();
  });

  it('verify() names each version that no longer decrypts, with the KMS code', async () => {
    const masterC = emulator.createKey('rotation-c');
    const store = new MemoryKeyStore();
    const kms = tencent(masterC);
    const hierarchy = createKeyHierarchy({ store, kms });
    await hierarchy.warm(['x', 'y']);
    await kms.disableKey(masterC);
    const report = await hierarchy.verify({ partitions: ['x', 'y'] });
    expect(report.ok).toBe(0);
    expect(report.failed.map((f) => [f.partition, f.version, f.code])).toEqual([
      ['x', 1, 'ResourceUnavailable.CmkDisabled'],
      ['y', 1, 'ResourceUnavailable.CmkDisabled'],
    ]);
    await kms.enableKey(masterC);
    await hierarchy.close();
  });
});

describe('export and import of a key store', () => {
  it('carries wrapped keys only; a store rebuilt from the export opens the records; importing twice creates nothing; a conflict is reported and left', async () => {
    const kms = LocalKms.generate();
    const store = new MemoryKeyStore();
    const hierarchy = createKeyHierarchy({ store, kms });
    const envelope = createEnvelope({ hierarchy, partition: 'p1' });
    const sealed = await envelope.seal('kept', { context: { id: '1' } });
    await hierarchy.rotate('p1');
    await hierarchy.warm(['p2']);
    const exported = await exportKeyStore(store);
    expect(exported.keys.map((k) => `${k.partition}#${k.version}`)).toEqual(['p1#1', 'p1#2', 'p2#1']);
    const text = JSON.stringify(exported);
    expect(text).not.toMatch(/plaintext/i);
    const restored = new MemoryKeyStore();
    expect(await importKeyStore(restored, text)).toEqual({ created: 3, present: 0, conflicts: [], shredded: [], tombstones: 0 });
    expect(await importKeyStore(restored, exported)).toEqual({ created: 0, present: 3, conflicts: [], shredded: [], tombstones: 0 });
    const other = createEnvelope({ hierarchy: createKeyHierarchy({ store: restored, kms }), partition: 'p1' });
    expect(await other.openString(sealed, { context: { id: '1' } })).toBe('kept');
    const clash = new MemoryKeyStore();
    await clash.createVersion({ ...exported.keys[0]!, ciphertextBlob: 'another' });
    expect((await importKeyStore(clash, exported)).conflicts).toEqual([{ partition: 'p1', version: 1 }]);
    expect((await clash.getVersion('p1', 1))!.ciphertextBlob).toBe('another');
    await expect(importKeyStore(clash, '{"format":"x"}')).rejects.toThrow(TypeError);
  });
});

describe('crypto-shredding a tenant', () => {
  it('its records fail with a typed error while other tenants read on; its own master key is disabled, then scheduled for deletion with Tencent codes', async () => {
    const shared = emulator.createKey('shred-shared');
    const own = emulator.createKey('shred-own');
    const store = new MemoryKeyStore();
    const kmsFor = (partition: string) => tencent(partition === 'doomed' ? own : shared);
    const hierarchy = createKeyHierarchy({ store, kms: kmsFor });
    const doomed = createEnvelope({ hierarchy, partition: 'doomed' });
    const kept = createEnvelope({ hierarchy, partition: 'kept' });
    const a = await doomed.seal('gone soon', { context: { id: '1' } });
    const b = await kept.seal('stays', { context: { id: '1' } });

    const backup = await exportKeyStore(store);
    const report = await hierarchy.shred('doomed', { masterKey: own, deleteAfterDays: 7 });
    expect(report.versionsDeleted).toBe(1);
    expect(report.masterKeyDisabled).toBe(true);
    expect(report.deletionDate).toBeGreaterThan(Date.now() / 1000 + 6 * 86400);
    const error = await doomed.open(a, { context: { id: '1' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartitionShreddedError);
    expect(error).toMatchObject({ code: 'ERR_PARTITION_SHREDDED', partition: 'doomed', version: 1 });
    expect(await kept.openString(b, { context: { id: '1' } })).toBe('stays');
    expect(await store.listPartitions()).toEqual(['kept']);
    // A backup of the store from before still holds the wrapped key: restored, it opens nothing
    // while the master key is disabled or pending deletion (a typed KMS error, not garbage).
    const restored = new MemoryKeyStore();
    await importKeyStore(restored, backup);
    const fromBackup = createEnvelope({ hierarchy: createKeyHierarchy({ store: restored, kms: kmsFor }), partition: 'doomed' });
    await expect(fromBackup.open(a, { context: { id: '1' } })).rejects.toMatchObject({ code: 'ERR_KMS', kmsCode: 'ResourceUnavailable.CmkDisabled' });
    await hierarchy.close();
  });

  it('the emulator answers DisableKey, ScheduleKeyDeletion and CancelKeyDeletion with Tencent codes on both APIs, and a key past its window is gone', async () => {
    const realNow = Date.now.bind(Date);
    const clock = () => Math.floor(Date.now() / 1000);
    const { emulator: timed, keyId } = await useEmulator({ alias: 'deletion', now: clock });
    try {
      const v3 = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: timed.url, credentials: timed.credentials[0]!, ...FAST });
      const v2 = new TencentKmsV2({ keyId, region: 'gz', endpoint: `${timed.url}/v2/index.php`, credentials: timed.credentials[0]!, ...FAST });
      const ctx = canonicalContext({ t: '1' });
      const dataKey = await v3.generateDataKey({ keySpec: 'AES_256', context: ctx });
      const blob = { keySpec: 'AES_256' as const, keyId, ciphertextBlob: dataKey.ciphertextBlob, context: ctx };
      await expect(v3.call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 })).rejects.toMatchObject({ kmsCode: 'ResourceUnavailable.CmkShouldBeDisabled' });
      await expect(v3.scheduleKeyDeletion(keyId, 6)).rejects.toThrow(RangeError);
      await expect(v3.call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 31 })).rejects.toMatchObject({ kmsCode: 'InvalidParameter.InvalidPendingWindowInDays' });
      await expect(v3.cancelKeyDeletion(keyId)).rejects.toMatchObject({ kmsCode: 'ResourceUnavailable.CmkNotPendingDelete' });
      await v2.disableKey(keyId);
      await expect(v3.decryptDataKey(blob)).rejects.toMatchObject({ kmsCode: 'ResourceUnavailable.CmkDisabled' });
      await expect(v2.decryptDataKey(blob)).rejects.toMatchObject({ kmsCode: '4550' });
      const { deletionDate } = await v3.scheduleKeyDeletion(keyId, 7);
      expect(deletionDate).toBeGreaterThanOrEqual(clock() + 7 * 86400 - 2);
      await expect(v3.decryptDataKey(blob)).rejects.toMatchObject({ kmsCode: 'ResourceUnavailable.CmkDisabled' });
      await expect(v3.enableKey(keyId)).rejects.toMatchObject({ kmsCode: 'ResourceUnavailable.CmkStateNotSupport' });
      await v3.cancelKeyDeletion(keyId); // back to Disabled: the pending window is the way back
      await v3.enableKey(keyId);
      expect((await v3.decryptDataKey(blob)).length).toBe(32);
      await v3.disableKey(keyId);
      await v2.scheduleKeyDeletion(keyId, 30);
      // Thirty days later, for the client's signatures and the emulator's clock alike.
      vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 30 * 86_400_000 + 1000);
      await expect(v3.decryptDataKey(blob)).rejects.toMatchObject({ kmsCode: 'ResourceUnavailable.CmkNotFound' });
      await expect(v2.decryptDataKey(blob)).rejects.toMatchObject({ kmsCode: '4530' });
    } finally {
      vi.restoreAllMocks();
      await timed.close();
    }
  });

  it('a master key deleted after its window (legacy 4530) is revocation: a key in memory past its TTL is not served stale', async () => {
    const realNow = Date.now.bind(Date);
    const { emulator: timed, keyId } = await useEmulator({ alias: 'stale', now: () => Math.floor(Date.now() / 1000) });
    let clock = 0;
    try {
      const kms = new TencentKmsV2({ keyId, region: 'gz', endpoint: `${timed.url}/v2/index.php`, credentials: timed.credentials[0]!, ...FAST });
      const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms, ttlMs: 1000, jitter: 0, maxStaleMs: 3_600_000, now: () => clock });
      const envelope = createEnvelope({ hierarchy, partition: 'p' });
      const sealed = await envelope.seal('x', { context: { r: '1' } });
      await kms.disableKey(keyId);
      await kms.scheduleKeyDeletion(keyId, 7);
      vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 8 * 86_400_000);
      clock = 2000; // past the TTL, well within maxStaleMs
      await expect(envelope.open(sealed, { context: { r: '1' } })).rejects.toMatchObject({ code: 'ERR_KMS', kmsCode: '4530' });
      expect(hierarchy.metrics().staleServed).toBe(0);
      await hierarchy.close();
    } finally {
      vi.restoreAllMocks();
      await timed.close();
    }
  });

  it('a legacy-API hierarchy rotates its master key through Decrypt + Encrypt', async () => {
    const to = emulator.createKey('legacy-to');
    const store = new MemoryKeyStore();
    const hierarchy = createKeyHierarchy({ store, kms: legacy(masterA) });
    const envelope = createEnvelope({ hierarchy, partition: 'old' });
    const sealed = await envelope.seal('legacy', { context: { r: '1' } });
    emulator.resetStats();
    expect(await hierarchy.rotateMasterKey({ toKeyId: to })).toMatchObject({ rewrapped: 1 });
    expect(emulator.stats().calls).toEqual({ Decrypt: 1, Encrypt: 1 });
    const reader = createEnvelope({ hierarchy: createKeyHierarchy({ store, kms: legacy(to) }), partition: 'old' });
    expect(await reader.openString(sealed, { context: { r: '1' } })).toBe('legacy');
  });
});
