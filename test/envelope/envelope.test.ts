import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createEnvelope,
  decryptCache,
  DecryptionFailedError,
  encryptionCache,
  EnvelopeError,
  inspect,
  isEnvelopeError,
  LocalKms,
  open,
  openMany,
  seal,
} from '../../src/index.ts';
import { slabBytes } from '../../src/core/bytes.ts';
import { PAYLOAD_PREFIX, PayloadOpener } from '../../src/core/chunked.ts';
import { COBBLESTONE_256 } from '../../src/core/suites.ts';
import { canonicalContext } from '../../src/core/context.ts';
import { parseHeader } from '../../src/core/header.ts';
import { selectBackend } from '../../src/core/select-backend.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const kms = LocalKms.generate();
const envelopes = {
  node: createEnvelope({ kms, backend: 'node' }),
  noble: createEnvelope({ kms, backend: 'noble' }),
};

// Context strings: any well-formed Unicode, keys non-empty.
const contextArb = fc.dictionary(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  { maxKeys: 5 },
);
const payloadArb = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc.integer({ min: 0, max: 3 * 16384 + 100 }).map((n) => Uint8Array.from({ length: n }, (_, i) => i & 0xff)),
  fc.constantFrom(16383, 16384, 16385, 32768).map((n) => new Uint8Array(n).fill(0xab)),
);

describe('seal/open', () => {
  it('round-trips any payload (0 B to a few chunks) and any context, across both backends', async () => {
    await fc.assert(
      fc.asyncProperty(payloadArb, contextArb, fc.boolean(), fc.boolean(), async (plaintext, context, detached, nodeSeals) => {
        const [a, b] = nodeSeals ? [envelopes.node, envelopes.noble] : [envelopes.noble, envelopes.node];
        const sealed = await a.seal(plaintext, { context, detachedContext: detached });
        const result = await b.openWithInfo(sealed, detached ? { context } : {});
        expect(Buffer.from(result.plaintext).equals(Buffer.from(plaintext))).toBe(true);
        expect({ ...result.context }).toEqual({ ...context });
      }),
      { numRuns: 60 },
    );
  });

  it('seals strings as UTF-8 and openString gives them back', async () => {
    const sealed = await envelopes.node.seal('card 4111… ü 🔐', { context: { table: 'users', row: '42' } });
    expect(await envelopes.node.openString(sealed, { context: { row: '42', table: 'users' } })).toBe('card 4111… ü 🔐');
  });

  it('openString refuses a plaintext that is not UTF-8', async () => {
    const sealed = await envelopes.node.seal(new Uint8Array([0xff, 0xfe]));
    await expect(envelopes.node.openString(sealed)).rejects.toThrow(TypeError);
  });

  it('free functions seal() and open() work for one-off use', async () => {
    const sealed = await seal('one-off', { kms, context: { a: 'b' } });
    expect(new TextDecoder().decode(await open(sealed, { kms, context: { a: 'b' } }))).toBe('one-off');
  });

  it('cobblestone-128 uses 16-byte data keys and suite 0x02', async () => {
    const provider = new InstrumentedProvider();
    const envelope = createEnvelope({ kms: provider, suite: 'cobblestone-128' });
    const sealed = await envelope.seal('short key');
    expect(sealed[5]).toBe(0x02);
    expect(provider.handedOut[0]!.length).toBe(16);
    expect(inspect(sealed).suite).toBe('Cobblestone-128');
    expect(await envelope.openString(sealed)).toBe('short key');
  });

  it('inspect() reads the header without any KMS call', async () => {
    const provider = new InstrumentedProvider();
    const envelope = createEnvelope({ kms: provider });
    const sealed = await envelope.seal('x'.repeat(20000), { context: { k: 'v' } });
    const info = inspect(sealed);
    expect(info).toMatchObject({ version: 1, suite: 'Cobblestone-256', provider: 'local', keyId: expect.stringMatching(/^memory-/), detachedContext: false, plaintextLength: 20000 });
    expect({ ...info.context }).toEqual({ k: 'v' });
    expect(provider.calls.decrypt).toBe(0);
  });

  it('every single-bit flip of a sealed message is rejected (exhaustive, small message)', async () => {
    const sealed = await envelopes.node.seal('flip me', { context: { table: 'users' } });
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const bad = sealed.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const error = await envelopes.node.open(bad).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isEnvelopeError(error), `bit ${bit}`).toBe(true);
    }
  });

  it('every single-bit flip is rejected (property, messages of a few chunks)', async () => {
    const sealedArb = fc.uint8Array({ maxLength: 40000 }).chain((pt) => fc.tuple(fc.constant(pt), fc.nat()));
    await fc.assert(
      fc.asyncProperty(sealedArb, async ([plaintext, pick]) => {
        const sealed = await envelopes.node.seal(plaintext, { context: { p: 'q' } });
        const bit = pick % (sealed.length * 8);
        sealed[bit >> 3]! ^= 1 << (bit & 7);
        await expect(envelopes.node.open(sealed)).rejects.toBeInstanceOf(EnvelopeError);
      }),
      { numRuns: 50 },
    );
  });

  it('every truncation and every appended byte is rejected', async () => {
    const sealed = await envelopes.node.seal(new Uint8Array(16384 + 10).fill(1), { context: { t: 'u' } });
    const lengths = new Set<number>();
    for (let n = 0; n < 400; n++) lengths.add(n);
    for (let n = sealed.length - 400; n < sealed.length; n++) lengths.add(n);
    for (let n = 400; n < sealed.length - 400; n += 97) lengths.add(n);
    for (const n of lengths) {
      await expect(envelopes.node.open(sealed.subarray(0, n)), `length ${n}`).rejects.toBeInstanceOf(EnvelopeError);
    }
    for (const extra of [[0], [0xff], new Array(16).fill(0), new Array(16400).fill(7)]) {
      await expect(envelopes.node.open(new Uint8Array([...sealed, ...extra]))).rejects.toBeInstanceOf(DecryptionFailedError);
    }
  });

  it('random header mutations give a typed error, never a crash', async () => {
    const sealed = await envelopes.node.seal('mutate me', { context: { a: '1', b: '2' } });
    const headerLength = parseHeader(sealed).length;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: headerLength - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        async (mutations) => {
          const bad = sealed.slice();
          for (const [i, v] of mutations) bad[i] = v;
          if (Buffer.from(bad).equals(Buffer.from(sealed))) return;
          const error = await envelopes.node.open(bad).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(isEnvelopeError(error)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('random bytes after the magic give a typed error, never a crash or a huge allocation', async () => {
    const before = process.memoryUsage().arrayBuffers;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (tail) => {
        const bad = new Uint8Array([0x89, 0x4b, 0x4d, 0x45, 1, 1, tail[0] ?? 0, ...tail]);
        const error = await envelopes.node.open(bad).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isEnvelopeError(error)).toBe(true);
      }),
      { numRuns: 1000 },
    );
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  it.each(['node', 'noble'] as const)('with both caches, seals and opens again and again under one data key (%s)', async (backend) => {
    // The hot path lends cached keys and their HKDF states to each seal and open: none may be
    // changed or wiped by the message that borrowed it.
    const provider = new InstrumentedProvider(kms);
    const envelope = createEnvelope({ kms: provider, cache: encryptionCache(), decryptCache: decryptCache(), backend });
    const first = await envelope.seal('first', { context: { t: '1' } });
    for (let i = 0; i < 5; i++) {
      const sealed = await envelope.seal(`message ${i}`, { context: { t: '1' } });
      expect(await envelope.openString(sealed)).toBe(`message ${i}`);
      expect(await envelope.openString(first)).toBe('first');
      expect(await openMany(envelope, [first, sealed, first], { concurrency: 1 })).toMatchObject([{ ok: true }, { ok: true }, { ok: true }]);
    }
    expect(provider.calls).toEqual({ generate: 1, decrypt: 1 }); // openMany too takes the key from the decrypt cache
    await envelope.close();
    expect(provider.allWiped()).toBe(true);
  });

  it('an encryption-cache entry of a detached context keeps its own bytes, not a block of the shared slab', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // V8 frees dead ArrayBuffers' memory after the collection, not during it: collect, wait, collect.
    const collect = async (): Promise<void> => {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 50));
      gc();
    };
    const envelope = createEnvelope({ kms: LocalKms.generate(), cache: encryptionCache() });
    await collect();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 300; i++) {
      await envelope.seal('x', { context: { row: String(i) }, detachedContext: true }); // a new cache entry each
      for (let k = 0; k < 16; k++) slabBytes(4096); // other work spends the rest of the slab block
    }
    await collect();
    // A cached view into the slab would keep 300 blocks of 64 KiB: 18.75 MiB (0.1 MiB without).
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(4 * 2 ** 20);
    await envelope.close();
  });

  it('open with another context fails', async () => {
    await fc.assert(
      fc.asyncProperty(contextArb, contextArb, fc.boolean(), async (a, b, detached) => {
        fc.pre(canonicalContext(a).json !== canonicalContext(b).json);
        const sealed = await envelopes.node.seal('ctx', { context: a, detachedContext: detached });
        await expect(envelopes.node.open(sealed, { context: b })).rejects.toMatchObject({
          code: detached ? 'ERR_DECRYPTION_FAILED' : 'ERR_CONTEXT_MISMATCH',
        });
      }),
      { numRuns: 50 },
    );
  });

  it('a substituted wrapped key fails by the commitment, before any chunk is decrypted', async () => {
    const context = { table: 'users', row: '42' };
    const victim = await envelopes.node.seal('victim', { context });
    const donor = await envelopes.node.seal('donor', { context });
    const v = parseHeader(victim);
    const d = parseHeader(donor);
    const spliced = new Uint8Array(
      Buffer.concat([victim.subarray(0, v.authenticated.length), donor.subarray(d.authenticated.length, d.length), victim.subarray(v.length)]),
    );
    await expect(envelopes.node.open(spliced)).rejects.toBeInstanceOf(DecryptionFailedError);
    // The KMS opens the donor's wrapped key (same context), so the failure is the payload's ...
    const key = await kms.decryptDataKey({ ...d.wrappedKeys[0]!, keySpec: 'AES_256', context: canonicalContext(context) });
    // ... and it happens at the commitment: the 56-byte salt || commitment alone is rejected.
    const opener = new PayloadOpener(selectBackend(), COBBLESTONE_256, key, v.authenticated);
    expect(() => opener.push(victim.subarray(v.length, v.length + PAYLOAD_PREFIX))).toThrow(DecryptionFailedError);
  });

  it('rejects bad arguments with TypeError/RangeError naming them', async () => {
    // @ts-expect-error wrong type on purpose
    await expect(envelopes.node.seal(42)).rejects.toThrow(/"plaintext" expected Uint8Array, got number/);
    // @ts-expect-error wrong type on purpose
    await expect(envelopes.node.seal('x', { context: { a: 1 } })).rejects.toThrow(TypeError);
    await expect(envelopes.node.seal('x', { context: { '': 'v' } })).rejects.toThrow(RangeError);
    await expect(envelopes.node.seal('x', { context: { k: '\ud800' } })).rejects.toThrow(/well-formed/);
    await expect(envelopes.node.seal('x', { context: { k: 'v'.repeat(5000) } })).rejects.toThrow(RangeError);
    // @ts-expect-error wrong type on purpose
    await expect(envelopes.node.open('not bytes')).rejects.toThrow(TypeError);
    // @ts-expect-error wrong type on purpose
    expect(() => createEnvelope({ kms: {} })).toThrow(/"kms" expected a KeyProvider/);
    // @ts-expect-error wrong type on purpose
    expect(() => createEnvelope({ kms, suite: 'aes' })).toThrow(TypeError);
  });

  it('names the key provider a message needs when another is given', async () => {
    const sealed = await envelopes.node.seal('x');
    const other = { id: 'tencent', generateDataKey: kms.generateDataKey.bind(kms), decryptDataKey: kms.decryptDataKey.bind(kms) };
    await expect(createEnvelope({ kms: other }).open(sealed)).rejects.toMatchObject({
      code: 'ERR_KEY_PROVIDER_MISMATCH',
      message: expect.stringContaining('"local"'),
    });
  });

  it('hints that text input may be base64', async () => {
    const sealed = await envelopes.node.seal('x');
    const b64 = new TextEncoder().encode(Buffer.from(sealed).toString('base64'));
    await expect(envelopes.node.open(b64)).rejects.toThrow(/base64/);
  });
});

describe('close({ drain })', () => {
  /** A provider whose calls wait until the test opens the gate: the seals and opens are under way when close() begins. */
  function gatedProvider() {
    const inner = new InstrumentedProvider(kms);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const provider = {
      id: inner.id,
      generateDataKey: async (request: Parameters<InstrumentedProvider['generateDataKey']>[0]) => (await gate, inner.generateDataKey(request)),
      decryptDataKey: async (request: Parameters<InstrumentedProvider['decryptDataKey']>[0]) => (await gate, inner.decryptDataKey(request)),
    };
    return { provider, inner, open };
  }
  const codeOf = (r: PromiseSettledResult<unknown>): string => (r.status === 'fulfilled' ? 'ok' : String((r.reason as { code?: string }).code));

  it('by default waits for the seals under way, reports them drained, then refuses new calls', async () => {
    const { provider, inner, open } = gatedProvider();
    const envelope = createEnvelope({ kms: provider });
    const seals = Array.from({ length: 20 }, (_, i) => envelope.seal(`row ${i}`));
    let closed = false;
    const closing = envelope.close().then((report) => ((closed = true), report));
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(closed).toBe(false); // it waits for the KMS calls the seals are making
    await expect(envelope.seal('late')).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    open();
    expect(await closing).toEqual({ drained: 20, refused: 1, timedOut: false });
    expect((await Promise.allSettled(seals)).map(codeOf)).toEqual(Array(20).fill('ok'));
    expect(inner.allWiped()).toBe(true);
  });

  it('with drain false refuses the opens under way, wipes what they would have returned, and waits for them to settle', async () => {
    const sealed = await Promise.all(Array.from({ length: 10 }, (_, i) => envelopes.node.seal(`secret ${i}`)));
    const { provider, inner, open } = gatedProvider();
    const envelope = createEnvelope({ kms: provider });
    const opens = sealed.map((m) => envelope.open(m));
    const closing = envelope.close({ drain: false });
    open();
    expect(await closing).toEqual({ drained: 0, refused: 10, timedOut: false });
    expect((await Promise.allSettled(opens)).map(codeOf)).toEqual(Array(10).fill('ERR_CLOSED'));
    expect(inner.calls.decrypt).toBe(10);
    expect(inner.allWiped()).toBe(true);
  });

  it('with a drain in ms refuses what is still running when it ends, and says it timed out', async () => {
    const { provider, open } = gatedProvider();
    const envelope = createEnvelope({ kms: provider });
    const seals = Array.from({ length: 5 }, () => envelope.seal('x'));
    const closing = envelope.close({ drain: 0 });
    await new Promise((resolve) => setTimeout(resolve, 1)); // after the drain's own timer
    open();
    expect(await closing).toEqual({ drained: 0, refused: 5, timedOut: true });
    expect((await Promise.allSettled(seals)).map(codeOf)).toEqual(Array(5).fill('ERR_CLOSED'));
    await expect(createEnvelope({ kms }).close({ drain: -1 })).rejects.toThrow(TypeError);
    expect(await createEnvelope({ kms }).close({ drain: 5 })).toEqual({ drained: 0, refused: 0, timedOut: false });
  });
});
