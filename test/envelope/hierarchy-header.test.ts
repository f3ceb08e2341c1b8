/**
 * The engine keeps the last stored-context header of a hierarchy seal (engine.ts, hierarchyHeader):
 * every field it depends on (context, partition, key version, compact form) must still reach the
 * bytes when only that field changes from one seal to the next.
 */
import { describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { createEnvelope, inspect, LocalKms } from '../../src/index.ts';

describe('hierarchy seals with a stored context reuse only a header that matches', () => {
  it('follows the context, the partition, the key version and the payload form from seal to seal', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const envelope = createEnvelope({ hierarchy, partition: 'tenant-a' });
    const small = new Uint8Array(100);
    const large = new Uint8Array(20_000);
    const a = { table: 'users', row: '1' };
    const b = { table: 'users', row: '2' };
    const seen = async (plaintext: Uint8Array, context: Record<string, string>, partition?: string) => {
      const sealed = await envelope.seal(plaintext, { context, ...(partition ? { partition } : {}) });
      expect(await envelope.open(sealed, { context, ...(partition ? { partition } : {}) })).toEqual(plaintext);
      const info = inspect(sealed);
      return { context: info.context, partition: info.partition, version: info.keyVersion, compact: info.compact };
    };
    expect(await seen(small, a)).toEqual({ context: a, partition: 'tenant-a', version: 1, compact: true });
    expect(await seen(small, a)).toEqual({ context: a, partition: 'tenant-a', version: 1, compact: true });
    expect(await seen(small, b)).toEqual({ context: b, partition: 'tenant-a', version: 1, compact: true });
    expect(await seen(small, a)).toEqual({ context: a, partition: 'tenant-a', version: 1, compact: true });
    expect(await seen(large, a)).toEqual({ context: a, partition: 'tenant-a', version: 1, compact: false });
    expect(await seen(small, a, 'tenant-b')).toEqual({ context: a, partition: 'tenant-b', version: 1, compact: true });
    expect(await seen(small, a)).toEqual({ context: a, partition: 'tenant-a', version: 1, compact: true });
    await hierarchy.rotate('tenant-a');
    expect(await seen(small, a)).toEqual({ context: a, partition: 'tenant-a', version: 2, compact: true });
    await hierarchy.close();
  });

  it('seals the same bytes as a fresh envelope would, salt aside', async () => {
    const kms = LocalKms.generate();
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
    const salts = () => {
      let n = 0;
      return (length: number) => new Uint8Array(length).fill(++n % 256);
    };
    const warm = createEnvelope({ hierarchy, partition: 'p', randomBytes: salts() });
    const context = { table: 't', row: '9' };
    const first = await warm.seal('x', { context });
    const second = await warm.seal('x', { context });
    const fresh = createEnvelope({ hierarchy, partition: 'p', randomBytes: salts() });
    expect(await fresh.seal('x', { context })).toEqual(first);
    expect(await fresh.seal('x', { context })).toEqual(second);
    await hierarchy.close();
  });
});
