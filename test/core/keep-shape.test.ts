/**
 * keepShape (core/bytes.ts): the last instance of each per-message class is kept so that V8 keeps
 * its shape through a full collection. What is kept must hold nothing secret: every kept sealer
 * is finished, every kept set of message keys is wiped, and the node:crypto objects kept were
 * made with a zero key.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createEnvelope, LocalKms } from '../../src/index.node.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../../src/hierarchy.ts';
import { testing } from '../../src/core/bytes.ts';
import { PayloadKeys, PayloadSealer } from '../../src/core/chunked.ts';
import { CompactSealer } from '../../src/core/compact.ts';

function kept<T>(type: abstract new (...args: never[]) => T): T | undefined {
  return testing.kept().find((o) => o instanceof type) as T | undefined;
}

describe('keepShape', () => {
  it('keeps one of each per-message class, finished and wiped, after compact and chunked seals and opens', async () => {
    const kms = LocalKms.generate();
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
    const compact = createEnvelope({ hierarchy, partition: 'tenant-1' });
    const chunked = createEnvelope({ kms });
    const plaintext = randomBytes(1024);
    for (const envelope of [compact, chunked]) {
      expect(Buffer.from(await envelope.open(await envelope.seal(plaintext, { context: { row: '1' } }))).equals(plaintext)).toBe(true);
    }
    const sealer = kept(CompactSealer)!;
    expect(sealer).toBeInstanceOf(CompactSealer);
    expect(() => sealer.seal(new Uint8Array(1), new Uint8Array(64), 0)).toThrow(/already used/);
    const chunkedSealer = kept(PayloadSealer)!;
    expect(chunkedSealer).toBeInstanceOf(PayloadSealer);
    expect(() => chunkedSealer.start()).toThrow(/already ended/);
    const keys = kept(PayloadKeys)!;
    expect(keys).toBeInstanceOf(PayloadKeys);
    for (const part of [keys.key, keys.baseNonce, keys.commitment]) expect(part.every((b) => b === 0)).toBe(true);
    // The header reader kept reads no caller's message (it is made over no bytes).
    expect(testing.kept().some((o) => o.constructor.name === 'FieldReader')).toBe(true);
    await compact.close();
    await chunked.close();
    await hierarchy.close();
  });
});
