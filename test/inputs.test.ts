/**
 * Byte inputs at run time: a DataView, an ArrayBuffer, a Buffer, another typed array, or a view at
 * an offset into a larger buffer seal to exactly the bytes the equivalent Uint8Array seals to, and
 * open, inspect, the batches, the streams and openRange take them too. The compile-time half is
 * test/types/inputs.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { createEnvelope, inspect, LocalKms, type OpenItem, openMany, openRange, openStream, sealMany, sealStream } from '../src/index.ts';
import { seededRandom } from './helpers.ts';

/** A fresh envelope with the same master key and the same randomness each time: same input, same bytes. */
function deterministic() {
  const random = seededRandom('inputs');
  const kms = LocalKms.generate({ randomBytes: random });
  return createEnvelope({ kms, randomBytes: random });
}

const plaintext = Uint8Array.from({ length: 40_000 }, (_, i) => (i * 7 + 3) & 0xff);

/** The same bytes as `plaintext`, in every form a caller may hold them. */
function forms(bytes: Uint8Array): [string, ArrayBufferView | ArrayBuffer][] {
  const padded = new Uint8Array(bytes.length + 11);
  padded.set(bytes, 5);
  const even = bytes.length % 2 === 0;
  return [
    ['a DataView', new DataView(bytes.slice().buffer)],
    ['a DataView at an offset into a larger buffer', new DataView(padded.buffer, 5, bytes.length)],
    ['an ArrayBuffer', bytes.slice().buffer],
    ['a Buffer', Buffer.from(bytes)],
    ['a Uint8Array at an offset', padded.subarray(5, 5 + bytes.length)],
    ...(even ? ([['a Uint16Array', new Uint16Array(bytes.slice().buffer)]] as [string, ArrayBufferView][]) : []),
  ];
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

describe('byte inputs: DataView, ArrayBuffer, Buffer and other views', () => {
  const reference = deterministic().seal(plaintext, { context: { form: 'any' } });

  it.each(forms(plaintext))('%s seals to the same bytes as the equivalent Uint8Array', async (_what, input) => {
    const sealed = await deterministic().seal(input, { context: { form: 'any' } });
    expect(hex(sealed)).toBe(hex(await reference));
  });

  it.each(forms(new Uint8Array(0)))('%s of zero bytes seals as an empty Uint8Array does', async (_what, input) => {
    expect(hex(await deterministic().seal(input))).toBe(hex(await deterministic().seal(new Uint8Array(0))));
  });

  it('open, openString, openWithInfo and inspect take a sealed message in every form', async () => {
    const envelope = deterministic();
    const sealed = await envelope.seal(plaintext, { context: { form: 'any' } });
    const text = await envelope.seal('héllo');
    for (const [what, input] of forms(sealed)) {
      expect(hex(await envelope.open(input)), what).toBe(hex(plaintext));
      expect((await envelope.openWithInfo(input)).context).toEqual({ form: 'any' });
      expect(inspect(input).plaintextLength).toBe(plaintext.length);
    }
    for (const [, input] of forms(text)) expect(await envelope.openString(input)).toBe('héllo');
  });

  it('sealMany and openMany take every form, as items and inside item objects', async () => {
    const envelope = deterministic();
    const inputs = forms(plaintext).map(([, input]) => input);
    const sealed = await sealMany(envelope, [...inputs, ...inputs.map((p) => ({ plaintext: p }))]);
    expect(sealed.every((r) => r.ok)).toBe(true);
    const messages = sealed.map((r) => (r.ok ? r.value : new Uint8Array(0)));
    const views = messages.flatMap((m, i): OpenItem[] => (i % 2 ? [new DataView(m.buffer), { sealed: m.slice().buffer }] : [Buffer.from(m)]));
    const opened = await openMany(envelope, views);
    expect(opened.map((r) => (r.ok ? hex(r.value) : r.error.message))).toEqual(views.map(() => hex(plaintext)));
  });

  it('sealStream and openStream take chunks in every form', async () => {
    const envelope = deterministic();
    const chunksOf = (bytes: Uint8Array) =>
      new ReadableStream<ArrayBufferView | ArrayBuffer>({
        start(controller) {
          const third = Math.floor(bytes.length / 3);
          controller.enqueue(new DataView(bytes.slice(0, third).buffer));
          controller.enqueue(bytes.slice(third, 2 * third).buffer);
          controller.enqueue(Buffer.from(bytes.subarray(2 * third)));
          controller.close();
        },
      });
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      const parts: Uint8Array[] = [];
      for await (const part of stream as unknown as AsyncIterable<Uint8Array>) parts.push(part);
      return new Uint8Array(Buffer.concat(parts));
    };
    const sealed = await collect(chunksOf(plaintext).pipeThrough(sealStream(envelope)));
    expect(hex(await collect(chunksOf(sealed).pipeThrough(openStream(envelope))))).toBe(hex(plaintext));
  });

  it('openRange takes a read() that answers with an ArrayBuffer or any view', async () => {
    const envelope = deterministic();
    const sealed = await envelope.seal(plaintext);
    const blob = new Blob([sealed]);
    const fromBlob = await openRange(envelope, { size: blob.size, read: (position, length) => blob.slice(position, position + length).arrayBuffer() }, 20_000, 100);
    expect(hex(fromBlob)).toBe(hex(plaintext.subarray(20_000, 20_100)));
    const asView = await openRange(envelope, (position, length) => Promise.resolve(new DataView(sealed.slice(position, position + length).buffer)), 5, 10, { size: sealed.length });
    expect(hex(asView)).toBe(hex(plaintext.subarray(5, 15)));
  });

  it('anything else is still a TypeError naming the argument', async () => {
    const envelope = deterministic();
    // @ts-expect-error wrong type on purpose
    await expect(envelope.seal([1, 2, 3])).rejects.toThrow(/"plaintext" expected Uint8Array, got Array/);
    // @ts-expect-error wrong type on purpose
    await expect(envelope.open({ byteLength: 3 })).rejects.toThrow(/"sealed" expected Uint8Array/);
  });
});
