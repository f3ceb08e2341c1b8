/**
 * Compile-time test (test/types/inputs.test.ts runs tsc on it with tsconfig.node.json here: Node
 * types and DOM libs together, as many Node projects have): Buffers and the bytes Node APIs
 * produce, without casts. Also checked by the main tsconfig (Node types, no DOM). Nothing here runs.
 */
import { readFile } from 'node:fs/promises';
import { createEnvelope, inspect, LocalKms, type OpenItem, openMany, openRange, type SealItem, sealMany, sealStream } from '../../src/index.ts';
import { sealNodeStream } from '../../src/node.ts';

export async function nodeInputs(path: string): Promise<void> {
  const envelope = createEnvelope({ kms: LocalKms.generate() });
  const file: Buffer = await readFile(path);
  const text = Buffer.from('row 42', 'utf8');
  const sealed = await envelope.seal(file, { context: new Map([['file', path]]) });
  await envelope.seal(text.subarray(1));
  await envelope.open(Buffer.from(sealed));
  await envelope.openString(await readFile(path), { signal: AbortSignal.timeout(1000) });
  await envelope.openWithInfo(file);
  inspect(file);
  const sealItems: SealItem[] = [file, text, { plaintext: file }];
  const openItems: OpenItem[] = [file, { sealed: file }];
  await sealMany(envelope, sealItems);
  await openMany(envelope, openItems);
  await openRange(envelope, { size: file.length, read: async (position, length) => file.subarray(position, position + length) }, 0, 1);
  const writer = sealStream(envelope).writable.getWriter();
  await writer.write(file);
  sealNodeStream(envelope, { context: { file: path } }).end(file);
}
