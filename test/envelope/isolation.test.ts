/**
 * The envelope's partition check: an envelope created for a partition (tenant) opens only that
 * partition's messages, `open(…, { partition })` states the expected one per call, and an envelope
 * without one opens any (the administrative path). A message of another partition fails with
 * PartitionMismatchError naming both, on every open path, before any key is loaded or any KMS call.
 */
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { createEnvelope, isEnvelopeError, LocalKms, openMany, openRange, openStream, openSync, PartitionMismatchError } from '../../src/index.ts';
import { InstrumentedProvider } from '../instrumented.ts';

/** Two tenants' messages sealed by one process; `later` is a process started afterwards (nothing in memory). */
async function sealedForTwoTenants() {
  const store = new MemoryKeyStore();
  const kms = { 'tenant-a': new InstrumentedProvider(), 'tenant-b': new InstrumentedProvider() };
  const kmsFor = (partition: string) => kms[partition as keyof typeof kms];
  const writer = createKeyHierarchy({ store, kms: kmsFor });
  const a = await createEnvelope({ hierarchy: writer, partition: 'tenant-a' }).seal('tenant a secret', { context: { id: '1' } });
  const big = await createEnvelope({ hierarchy: writer, partition: 'tenant-a' }).seal(new Uint8Array(40_000).fill(7), { context: { id: '2' } });
  const b = await createEnvelope({ hierarchy: writer, partition: 'tenant-b' }).seal('tenant b secret', { context: { id: '1' } });
  const later = () => createKeyHierarchy({ store, kms: kmsFor });
  const calls = () => JSON.stringify([kms['tenant-a'].calls, kms['tenant-b'].calls]);
  return { a, big, b, later, calls };
}

async function rejection(work: () => unknown): Promise<PartitionMismatchError> {
  try {
    await work();
  } catch (error) {
    expect(error).toBeInstanceOf(PartitionMismatchError);
    return error as PartitionMismatchError;
  }
  throw new Error('expected a PartitionMismatchError, and it opened');
}

describe("the envelope's partition", () => {
  it("an envelope created for tenant-b refuses tenant-a's message on every open path, before any key is loaded", async () => {
    const { a, big, b, later, calls } = await sealedForTwoTenants();
    const hierarchy = later();
    const envelope = createEnvelope({ hierarchy, partition: 'tenant-b' });
    const before = calls();
    const context = { id: '1' };
    const error = await rejection(() => envelope.open(a, { context }));
    expect(error).toMatchObject({ code: 'ERR_PARTITION_MISMATCH', expected: 'tenant-b', found: 'tenant-a' });
    expect(error.message).toBe('the message was sealed for partition "tenant-a", not for the expected partition "tenant-b"');
    expect(isEnvelopeError(error)).toBe(true);
    await rejection(() => envelope.openString(a, { context }));
    await rejection(() => envelope.openWithInfo(a, { context }));
    await rejection(() => openSync(envelope, a, { context }));
    const [item] = await openMany(envelope, [{ sealed: a, context }]);
    expect(!item!.ok && item!.error).toBeInstanceOf(PartitionMismatchError);
    await rejection(() => new Blob([big]).stream().pipeThrough(openStream(envelope, { context: { id: '2' } })).pipeTo(new WritableStream()));
    const source = { size: big.length, read: async (p: number, n: number) => big.slice(p, p + n) };
    await rejection(() => openRange(envelope, source, 100, 100, { context: { id: '2' } }));
    expect(calls()).toBe(before);
    expect(hierarchy.metrics()).toMatchObject({ misses: 0, loads: 0, kmsCalls: { Decrypt: { ok: 0, failed: 0 } } });
    // Its own tenant's messages open.
    expect(await envelope.openString(b, { context })).toBe('tenant b secret');
    await expect(envelope.openString(a, { context, partition: 'tenant-a' })).resolves.toBe('tenant a secret'); // stated per call
  });

  it('open(…, { partition }) states the expected partition per call; an envelope with no partition opens any (the administrative path)', async () => {
    const { a, b, later } = await sealedForTwoTenants();
    const admin = createEnvelope({ hierarchy: later() });
    const context = { id: '1' };
    expect(await admin.openString(a, { context })).toBe('tenant a secret');
    expect(await admin.openString(b, { context })).toBe('tenant b secret');
    expect(await admin.openString(a, { context, partition: 'tenant-a' })).toBe('tenant a secret');
    expect(await rejection(() => admin.open(a, { context, partition: 'tenant-b' }))).toMatchObject({ expected: 'tenant-b', found: 'tenant-a' });
    expect(await rejection(() => openSync(admin, b, { context, partition: 'tenant-a' }))).toMatchObject({ expected: 'tenant-a', found: 'tenant-b' });
    await expect(admin.open(a, { context, partition: '' })).rejects.toThrow(TypeError);
  });

  it('a message sealed with a KMS data key names no partition: refused where a partition is stated, opened by an envelope that merely has one', async () => {
    const kms = LocalKms.generate();
    const sealed = await createEnvelope({ kms }).seal('kms message');
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
    const envelope = createEnvelope({ kms, hierarchy, partition: 'tenant-a' });
    expect(await envelope.openString(sealed)).toBe('kms message');
    const error = await rejection(() => envelope.open(sealed, { partition: 'tenant-a' }));
    expect(error).toMatchObject({ expected: 'tenant-a', found: undefined });
    expect(error.message).toContain('under no partition');
  });
});
