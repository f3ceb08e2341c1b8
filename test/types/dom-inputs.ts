/**
 * Compile-time test (test/types/inputs.test.ts runs tsc on it with tsconfig.json here: DOM libs, no
 * Node types, as a browser or edge project has): the public signatures take the bytes that DOM
 * APIs produce, without casts. Nothing here runs.
 */
import { createEnvelope, inspect, LocalKms, open, type OpenItem, openMany, openRange, openStream, seal, type SealItem, sealMany, sealStream } from '../../src/index.ts';

/** The DOM's BufferSource (ArrayBufferView<ArrayBuffer> | ArrayBuffer), named so this file also compiles under Node's types. */
type BufferSource = Parameters<typeof crypto.subtle.digest>[1];

export async function domInputs(blob: Blob, response: Response, view: DataView, source: BufferSource, buffer: ArrayBuffer): Promise<void> {
  const envelope = createEnvelope({ kms: LocalKms.generate() });
  const fromBlob = new Uint8Array(await blob.arrayBuffer());
  const fromResponse = new Uint8Array(await response.arrayBuffer());
  const words = new Uint16Array(4);

  // seal: Uint8Array<ArrayBuffer>, ArrayBuffer, DataView, any BufferSource, other typed arrays.
  const sealed = await envelope.seal(fromBlob, { context: { table: 'users' } });
  await envelope.seal(await blob.arrayBuffer());
  await envelope.seal(view);
  await envelope.seal(source);
  await envelope.seal(buffer);
  await envelope.seal(words);
  await seal(source, { kms: LocalKms.generate() });

  // open, openString, openWithInfo, inspect: the same forms.
  await envelope.open(fromResponse);
  await envelope.open(await response.arrayBuffer());
  await envelope.openString(view);
  await envelope.openWithInfo(source, { context: new Map([['table', 'users']]) });
  await open(buffer, { kms: LocalKms.generate() });
  inspect(source);
  inspect(sealed);

  // Batches.
  const sealItems: SealItem[] = [fromBlob, buffer, view, 'text', { plaintext: source, context: { row: '1' } }];
  const openItems: OpenItem[] = [sealed, buffer, view, { sealed: source, context: { row: '1' } }];
  await sealMany(envelope, sealItems, { signal: AbortSignal.timeout(1000) });
  await openMany(envelope, openItems);

  // Streams: a Blob's or a fetch's body through sealStream and openStream, and BufferSource chunks.
  await blob.stream().pipeThrough(sealStream(envelope, { size: blob.size })).pipeTo(new WritableStream());
  if (response.body) await response.body.pipeThrough(openStream(envelope)).pipeTo(new WritableStream());
  const writer = sealStream(envelope).writable.getWriter();
  await writer.write(view);
  await writer.write(buffer);
  await writer.write(source);

  // openRange over a Blob: read() may answer with an ArrayBuffer or any view of one.
  await openRange(envelope, { size: blob.size, read: (position, length) => blob.slice(position, position + length).arrayBuffer() }, 0, 10);
  await openRange(envelope, async (position, length) => new DataView(await blob.slice(position, position + length).arrayBuffer()), 0, 10, { size: blob.size });

  // What comes out goes straight back into DOM APIs.
  new Blob([sealed]);
  await crypto.subtle.digest('SHA-256', await envelope.open(sealed));
}
