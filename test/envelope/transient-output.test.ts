/**
 * TRANSIENT_OUTPUT (core/bytes.ts), the record API's own seal option: the text form reads the
 * sealed bytes once, so they may be a view of shared slab memory. Without it (every public call)
 * sealSync returns memory of its own, whose `.buffer` holds nothing else.
 */
import { describe, expect, it } from 'vitest';
import { TRANSIENT_OUTPUT } from '../../src/core/bytes.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../../src/hierarchy.ts';
import { createEnvelope, LocalKms, openSync, sealSync } from '../../src/index.ts';

describe('sealSync output memory', () => {
  it('is the message\'s own memory unless the library asks for a transient view; both open alike', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const envelope = createEnvelope({ hierarchy, partition: 't1' });
    await envelope.open(await envelope.seal('warm'));
    const options = { context: { a: 'b' }, detachedContext: true, partition: 't1' };
    const own = sealSync(envelope, 'hello', options);
    expect(own.buffer.byteLength).toBe(own.byteLength);
    const view = sealSync(envelope, 'hello', { ...options, [TRANSIENT_OUTPUT]: true } as typeof options);
    expect(view.buffer.byteLength).toBeGreaterThan(view.byteLength);
    for (const sealed of [own, view]) expect(new TextDecoder().decode(openSync(envelope, sealed, options))).toBe('hello');
    await envelope.close();
    await hierarchy.close();
  });
});
