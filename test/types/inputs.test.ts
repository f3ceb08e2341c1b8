/**
 * TypeScript inputs: the public signatures take Uint8Array and ArrayBufferView in the forms DOM and
 * Node APIs produce (Buffer, `new Uint8Array(await blob.arrayBuffer())`, BufferSource such as a
 * DataView or an ArrayBuffer) without casts, under TS 5.9 with DOM libs. The compile-time half runs
 * tsc on dom-inputs.ts (DOM libs, no Node types) and node-inputs.ts (Node types and DOM libs); the
 * runtime half is test/inputs.test.ts.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function tsc(project: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project], { cwd: ROOT }, (_error, stdout, stderr) => resolve(`${stdout}${stderr}`));
  });
}

describe('TypeScript inputs (tsc on test/types)', () => {
  // Two tsc runs over the library's source, side by side: the one test here that takes seconds.
  it('dom-inputs.ts (DOM libs, no Node types: Blob, fetch, DataView, ArrayBuffer, BufferSource) and node-inputs.ts (Node types and DOM libs: Buffer, readFile) compile without casts', { timeout: 60_000 }, async () => {
    const [dom, node] = await Promise.all([tsc('test/types/tsconfig.json'), tsc('test/types/tsconfig.node.json')]);
    expect(dom).toBe('');
    expect(node).toBe('');
  });
});
