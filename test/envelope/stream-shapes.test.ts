/**
 * The parked pipeline (envelope/stream-shapes.ts) and the kept opener (keepShape): a full
 * collection must not deoptimize Node's web streams or our opener, and what is parked holds
 * nothing of any caller's stream. The deoptimizations are V8's own count (`--trace-deopt`) in a
 * child process whose optimizations run on its main thread (`--no-concurrent-recompilation`), so
 * the count does not depend on the machine's load: 18 (Node 20 and 22) and 22 (Node 24) in four
 * collections before the pipeline was parked, none after.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { createEnvelope, LocalKms, openStream, sealStream } from '../../src/index.ts';
import { testing } from '../../src/envelope/stream-shapes.ts';

/** Opens (and seals) 2 MiB thirty times, then once after each of four full collections. */
const CHILD = `
const { createEnvelope, LocalKms, openStream, sealStream } = await import(process.argv[2]);
const envelope = createEnvelope({ kms: LocalKms.generate() });
const plaintext = new Uint8Array(2 << 20).fill(7);
const source = (bytes) => {
  let o = 0;
  return new ReadableStream({ pull(c) { if (o >= bytes.length) c.close(); else { c.enqueue(bytes.subarray(o, o + 65536)); o += 65536; } } });
};
const drain = async (stream) => { let n = 0; for await (const part of stream) n += part.length; return n; };
const parts = [];
for await (const part of source(plaintext).pipeThrough(sealStream(envelope))) parts.push(part);
const sealed = new Uint8Array(Buffer.concat(parts));
const round = async () => {
  if ((await drain(source(sealed).pipeThrough(openStream(envelope)))) !== plaintext.length) throw new Error('round trip');
  await drain(source(plaintext).pipeThrough(sealStream(envelope)));
};
for (let i = 0; i < 30; i++) await round();
console.log('--- collections');
for (let i = 0; i < 4; i++) { globalThis.gc(); await round(); }
await envelope.close();
console.log('--- done');
`;

describe('stream shapes', () => {
  it('a full collection deoptimizes neither the web streams nor the opener (V8 trace, child process)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-stream-shapes-'));
    try {
      const bundle = join(dir, 'bundle.mjs');
      const entry = new URL('../../src/index.node.ts', import.meta.url).pathname;
      buildSync({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'node', target: 'node20', outfile: bundle, logLevel: 'silent' });
      writeFileSync(join(dir, 'child.mjs'), CHILD);
      const flags = ['--expose-gc', '--trace-deopt', '--no-concurrent-recompilation'];
      const child = spawnSync(process.execPath, [...flags, join(dir, 'child.mjs'), bundle], { encoding: 'utf8', maxBuffer: 64 << 20 });
      expect(child.stderr).toBe('');
      // The child ends on its own: what is parked keeps no process alive.
      expect(child.status).toBe(0);
      const [, afterCollections = ''] = child.stdout.split('--- collections');
      expect(afterCollections).toContain('--- done');
      const deoptimized = afterCollections
        .split('\n')
        .filter((line) => line.includes('reason: weak objects'))
        .map((line) => /<SharedFunctionInfo ([^>]*)>/.exec(line)?.[1] ?? line);
      expect(deoptimized).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parks one pipeline per process, holding none of the caller’s streams', async () => {
    const envelope = createEnvelope({ kms: LocalKms.generate() });
    const streams: TransformStream[] = [];
    for (let i = 0; i < 3; i++) {
      const sealing = sealStream(envelope);
      const opening = openStream(envelope);
      streams.push(sealing, opening);
      const sealed = await new Response(new Blob([new Uint8Array(40_000).fill(i)]).stream().pipeThrough(sealing)).arrayBuffer();
      const opened = await new Response(new Blob([sealed]).stream().pipeThrough(opening)).arrayBuffer();
      expect(opened.byteLength).toBe(40_000);
    }
    const parked = testing.parked();
    expect(parked).toBeDefined();
    // Made by the first stream and never again: not one per stream (that would be a leak).
    for (let i = 0; i < 3; i++) openStream(envelope);
    expect(testing.parked()).toBe(parked);
    const callers = new Set<object>(streams.flatMap((s) => [s, s.readable, s.writable]));
    expect(parked!.some((object) => callers.has(object))).toBe(false);
    await envelope.close();
  });
});
