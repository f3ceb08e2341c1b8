import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open as openHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvelope, DecryptionFailedError, LocalKms, openRange, openStream, sealStream } from '../../src/index.ts';
import { openNodeStream, sealNodeStream } from '../../src/node.ts';
import { hex, seededRandom } from '../helpers.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const kms = LocalKms.generate();
const envelope = createEnvelope({ kms });
const context = { table: 'files', id: '7' };

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream as unknown as AsyncIterable<Uint8Array>) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

/** A readable that yields `bytes` in pieces of the given sizes (cycled). */
function source(bytes: Uint8Array, pieces: number[] = [bytes.length || 1]): ReadableStream<Uint8Array> {
  let i = 0;
  let p = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i >= bytes.length) return controller.close();
      const n = pieces[p++ % pieces.length]!;
      controller.enqueue(bytes.slice(i, i + n));
      i += n;
    },
  });
}

/** Runs a sealed message through openStream; returns what it released and how it ended. */
async function openStreamed(sealed: Uint8Array, pieces?: number[], options = {}) {
  const released: Uint8Array[] = [];
  let error: unknown;
  try {
    for await (const part of source(sealed, pieces).pipeThrough(openStream(envelope, options)) as unknown as AsyncIterable<Uint8Array>) {
      released.push(part);
    }
  } catch (e) {
    error = e;
  }
  return { plaintext: new Uint8Array(Buffer.concat(released)), error };
}

const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);

describe('sealStream / openStream', () => {
  it('sealStream writes the same bytes as seal() (same randomness), whatever the input pieces', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3 * 16384 + 10 }), fc.array(fc.integer({ min: 1, max: 40000 }), { minLength: 1, maxLength: 5 }), async (size, pieces) => {
        const plaintext = pattern(size);
        const make = () => {
          const random = seededRandom(`stream ${size}`);
          return createEnvelope({ kms: new LocalKms({ k: new Uint8Array(32).fill(1) }, { randomBytes: random }), randomBytes: random });
        };
        const viaSeal = await make().seal(plaintext, { context });
        const viaStream = await collect(source(plaintext, pieces).pipeThrough(sealStream(make(), { context })));
        expect(hex(viaStream)).toBe(hex(viaSeal));
      }),
      { numRuns: 25 },
    );
  });

  it('a sealed buffer opens as a stream, and a sealed stream opens as a buffer', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3 * 16384 + 10 }), fc.array(fc.integer({ min: 1, max: 40000 }), { minLength: 1, maxLength: 5 }), async (size, pieces) => {
        const plaintext = pattern(size);
        const opened = await openStreamed(await envelope.seal(plaintext, { context }), pieces);
        expect(opened.error).toBeUndefined();
        expect(hex(opened.plaintext)).toBe(hex(plaintext));
        const sealed = await collect(source(plaintext, pieces).pipeThrough(sealStream(envelope, { context })));
        expect(hex(await envelope.open(sealed))).toBe(hex(plaintext));
      }),
      { numRuns: 25 },
    );
  });

  it.each([0, 1, 16383, 16384, 16385, 32768, 50000])('opens %i bytes fed one byte at a time', async (size) => {
    const plaintext = pattern(size);
    const sealed = await envelope.seal(plaintext, { context });
    const opened = await openStreamed(sealed, size > 20000 ? [1, 7, 4096] : [1]);
    expect(opened.error).toBeUndefined();
    expect(hex(opened.plaintext)).toBe(hex(plaintext));
  });

  it('a truncated stream ends with a typed error, never a clean end, releasing only authenticated chunks', async () => {
    const plaintext = pattern(3 * 16384 + 100);
    const sealed = await envelope.seal(plaintext, { context });
    const headerLength = sealed.length - (56 + 3 * 16400 + 116);
    const cuts = [5, headerLength - 1, headerLength + 10, headerLength + 56, headerLength + 56 + 16400, headerLength + 56 + 16400 + 5, sealed.length - 1];
    for (const cut of cuts) {
      const opened = await openStreamed(sealed.subarray(0, cut), [4096]);
      expect(opened.error, `cut at ${cut}`).toBeDefined();
      expect((opened.error as { code?: string }).code).toMatch(/^ERR_(DECRYPTION_FAILED|HEADER_MALFORMED)$/);
      // Whatever was released is whole authenticated chunks of the true plaintext.
      expect(opened.plaintext.length % 16384).toBe(0);
      expect(hex(opened.plaintext)).toBe(hex(plaintext.subarray(0, opened.plaintext.length)));
    }
  });

  it('an extended or reordered stream ends with ERR_DECRYPTION_FAILED', async () => {
    const sealed = await envelope.seal(pattern(2 * 16384 + 5), { context });
    const h = sealed.length - (56 + 2 * 16400 + 21) + 56;
    const chunk = (i: number) => sealed.subarray(h + i * 16400, h + (i + 1) * 16400);
    const reordered = new Uint8Array(Buffer.concat([sealed.subarray(0, h), chunk(1), chunk(0), sealed.subarray(h + 2 * 16400)]));
    const extended = new Uint8Array(Buffer.concat([sealed, new Uint8Array([0])]));
    for (const bad of [reordered, extended]) {
      const opened = await openStreamed(bad, [5000]);
      expect(opened.error).toBeInstanceOf(DecryptionFailedError);
    }
  });

  it('keeps failing once failed: the readable side stays errored', async () => {
    const sealed = await envelope.seal(pattern(100), { context });
    const stream = source(sealed.subarray(0, sealed.length - 1)).pipeThrough(openStream(envelope));
    const reader = stream.getReader();
    await expect(reader.read()).rejects.toBeInstanceOf(DecryptionFailedError);
    await expect(reader.read()).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('checks a stored context before any KMS call, and takes a detached one', async () => {
    const provider = new InstrumentedProvider(kms);
    const env = createEnvelope({ kms: provider });
    const stored = await env.seal('x', { context });
    const mismatch = await collect(source(stored).pipeThrough(openStream(env, { context: { other: '1' } }))).catch((e: unknown) => e);
    expect(mismatch).toMatchObject({ code: 'ERR_CONTEXT_MISMATCH' });
    expect(provider.calls.decrypt).toBe(0);
    const detached = await env.seal('y', { context, detachedContext: true });
    expect(new TextDecoder().decode(await collect(source(detached).pipeThrough(openStream(env, { context }))))).toBe('y');
    expect(provider.allWiped()).toBe(true);
  });

  it('garbage input is a typed header error', async () => {
    const opened = await openStreamed(new TextEncoder().encode('hello, not sealed at all'));
    expect(opened.error).toMatchObject({ code: 'ERR_HEADER_MALFORMED' });
    expect((await openStreamed(new Uint8Array(0))).error).toMatchObject({ code: 'ERR_HEADER_MALFORMED' });
  });

  it('memory stays flat: 256 MiB through sealStream and openStream', async () => {
    const total = 256 * 1024 * 1024;
    const piece = new Uint8Array(1024 * 1024).fill(5);
    let produced = 0;
    const input = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (produced >= total) return controller.close();
        produced += piece.length;
        controller.enqueue(piece.slice());
      },
    });
    // Measure what is retained, not garbage waiting for a collection (other test files run
    // beside this one): a full GC before each sample.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    let received = 0;
    let peak = 0;
    const base = process.memoryUsage().arrayBuffers;
    await input
      .pipeThrough(sealStream(envelope, { context }))
      .pipeThrough(openStream(envelope))
      .pipeTo(
        new WritableStream({
          async write(chunk) {
            received += chunk.length;
            if (received % (32 * 1024 * 1024) < chunk.length) {
              gc();
              // Newer V8 (Node 24) frees array buffers' memory on another thread after the
              // collection: wait for it, and collect again.
              await new Promise((resolve) => setTimeout(resolve, 50));
              gc();
              peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
            }
          },
        }),
      );
    expect(received).toBe(total);
    expect(peak).toBeLessThan(64 * 1024 * 1024);
  });
});

describe('Node stream adapters', () => {
  it('pipeline(fs.createReadStream, sealNodeStream, fs.createWriteStream) and back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-node-'));
    try {
      const plaintext = pattern(100_000);
      writeFileSync(join(dir, 'a'), plaintext);
      await pipeline(createReadStream(join(dir, 'a')), sealNodeStream(envelope, { context }), createWriteStream(join(dir, 'a.kmse')));
      await pipeline(createReadStream(join(dir, 'a.kmse')), openNodeStream(envelope), createWriteStream(join(dir, 'a.out')));
      expect(hex(readFileSync(join(dir, 'a.out')))).toBe(hex(plaintext));
      expect(hex(await envelope.open(readFileSync(join(dir, 'a.kmse'))))).toBe(hex(plaintext));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('openRange', () => {
  const plaintext = pattern(5 * 16384 + 123);
  const dir = mkdtempSync(join(tmpdir(), 'kmse-range-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads any range from a FileHandle, decrypting only what it needs', async () => {
    const sealed = await envelope.seal(plaintext, { context });
    writeFileSync(join(dir, 'r.kmse'), sealed);
    const handle = await openHandle(join(dir, 'r.kmse'));
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: plaintext.length }), fc.integer({ min: 0, max: 40000 }), async (offset, want) => {
          const length = Math.min(want, plaintext.length - offset);
          const part = await openRange(envelope, handle, offset, length);
          expect(hex(part)).toBe(hex(plaintext.subarray(offset, offset + length)));
        }),
        { numRuns: 40 },
      );
    } finally {
      await handle.close();
    }
  });

  it('reads from a function source, counting the bytes it reads', async () => {
    const sealed = await envelope.seal(plaintext, { context });
    let bytesRead = 0;
    const read = async (position: number, length: number) => {
      bytesRead += length;
      return sealed.subarray(position, position + length);
    };
    const part = await openRange(envelope, read, 2 * 16384 + 10, 100, { size: sealed.length, verifyLength: false });
    expect(hex(part)).toBe(hex(plaintext.subarray(2 * 16384 + 10, 2 * 16384 + 110)));
    expect(bytesRead).toBeLessThan(sealed.length / 2); // header, salt/commitment and one chunk
  });

  it('authenticates the total length through the final chunk by default', async () => {
    const sealed = await envelope.seal(plaintext, { context });
    sealed[sealed.length - 1]! ^= 1; // corrupt the final chunk only
    const read = async (position: number, length: number) => sealed.subarray(position, position + length);
    expect(hex(await openRange(envelope, read, 0, 10, { size: sealed.length, verifyLength: false }))).toBe(hex(plaintext.subarray(0, 10)));
    await expect(openRange(envelope, read, 0, 10, { size: sealed.length })).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('refuses ranges outside the plaintext, and impossible sizes before any KMS call', async () => {
    const provider = new InstrumentedProvider(kms);
    const env = createEnvelope({ kms: provider });
    const sealed = await env.seal(plaintext, { context });
    const read = async (position: number, length: number) => sealed.subarray(position, position + length);
    await expect(openRange(env, read, plaintext.length - 5, 10, { size: sealed.length })).rejects.toThrow(RangeError);
    await expect(openRange(env, read, -1, 1, { size: sealed.length })).rejects.toThrow(RangeError);
    const before = provider.calls.decrypt;
    // A size that ends the payload on a full chunk: no message has it.
    await expect(openRange(env, read, 0, 1, { size: sealed.length - (123 + 16) })).rejects.toBeInstanceOf(DecryptionFailedError);
    expect(provider.calls.decrypt).toBe(before);
    expect(provider.allWiped()).toBe(true);
  });
});
