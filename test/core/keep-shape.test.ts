/**
 * keepShape (core/bytes.ts): the last instance of each per-message class is kept so that V8 keeps
 * its shape through a full collection. What is kept must hold nothing secret: every kept sealer
 * is finished, every kept set of message keys is wiped, and the node:crypto objects kept were
 * made with a zero key.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createEnvelope, DecryptionFailedError, LocalKms, openStream } from '../../src/index.node.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../../src/hierarchy.ts';
import { testing } from '../../src/core/bytes.ts';
import { PayloadKeys, PayloadOpener, PayloadSealer } from '../../src/core/chunked.ts';
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

  it('keeps a stream opener only once it is spent (ended or failed, keys wiped), never one still opening', async () => {
    const envelope = createEnvelope({ kms: LocalKms.generate() });
    const sealed = await envelope.seal(randomBytes(40_000));
    const opening = (bytes: Uint8Array) => new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(bytes), c.close()) }).pipeThrough(openStream(envelope));
    const spent = (): PayloadOpener => {
      const opener = kept(PayloadOpener)!;
      expect(opener).toBeInstanceOf(PayloadOpener);
      expect(() => opener.push(new Uint8Array(1))).toThrow();
      expect(() => opener.sharedKeys()).toThrow();
      const keys = kept(PayloadKeys)!;
      for (const part of [keys.key, keys.baseNonce, keys.commitment]) expect(part.every((b) => b === 0)).toBe(true);
      return opener;
    };
    // Ended: the whole message opened.
    expect((await new Response(opening(sealed)).arrayBuffer()).byteLength).toBe(40_000);
    const ended = spent();
    // Still opening: its first chunk released, the rest not yet given. The opener kept is still the
    // spent one, not this live one, which holds the message key.
    const cut = sealed.length - 20_000;
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const live = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) }).pipeThrough(openStream(envelope)).getReader();
    feed.enqueue(sealed.subarray(0, cut));
    expect((await live.read()).value?.length).toBe(16384);
    expect(kept(PayloadOpener)).toBe(ended);
    // Failed: the rest tampered with. The opener that failed is the one kept, wiped.
    const tampered = sealed.slice(cut);
    tampered[100] = tampered[100]! ^ 1;
    feed.enqueue(tampered);
    feed.close();
    await expect(live.read()).rejects.toBeInstanceOf(DecryptionFailedError);
    expect(spent()).not.toBe(ended);
    await envelope.close();
  });
});
