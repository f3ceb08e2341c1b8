/**
 * The main entry must bundle for browsers and edge runtimes unchanged: no module it reaches may
 * import a `node:` builtin at run time (Node APIs are reached through process.getBuiltinModule).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

function reach(entry: string): { modules: Set<string>; nodeImports: string[] } {
  const modules = new Set<string>();
  const nodeImports: string[] = [];
  const walk = (file: string): void => {
    if (modules.has(file)) return;
    modules.add(file);
    const source = readFileSync(file, 'utf8');
    for (const m of source.matchAll(/(?:^|\n)(?:import|export)\s+(?!type\b)[^;]*?from\s*['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (spec.startsWith('node:')) nodeImports.push(`${file} -> ${spec}`);
      else if (spec.startsWith('.')) walk(join(dirname(file), spec));
    }
  };
  walk(entry);
  return { modules, nodeImports };
}

describe('the main entry', () => {
  it('imports no node: builtin at run time, in any module it reaches', () => {
    const { modules, nodeImports } = reach(fileURLToPath(new URL('../src/index.ts', import.meta.url)));
    expect(modules.size).toBeGreaterThan(15);
    expect(nodeImports).toEqual([]);
  });

  it('seals with the portable backend and opens with the Node one', async () => {
    const { createEnvelope, LocalKms } = await import('../src/index.ts');
    const kms = LocalKms.generate({ backend: 'noble' });
    const sealed = await createEnvelope({ kms, backend: 'noble' }).seal('portable', { context: { a: 'b' } });
    expect(await createEnvelope({ kms, backend: 'node' }).openString(sealed)).toBe('portable');
  });

  it('works where WebAssembly is refused (node --jitless): the HKDF falls back, with the same bytes', async () => {
    // The built package in a process without WebAssembly seals with both backends, cached and
    // not, opens what it sealed, and hands the messages to this process to open.
    // dist/index.node.js: what 'kms-envelope' resolves to on Node (the node:crypto backend provided).
    const lib = new URL('../dist/index.node.js', import.meta.url).href;
    const script = `
      const { createEnvelope, decryptCache, encryptionCache, LocalKms } = await import(${JSON.stringify(lib)});
      const kms = new LocalKms({ k: new Uint8Array(32).fill(3) });
      const out = { wasm: typeof WebAssembly, sealed: [] };
      for (const backend of ['node', 'noble']) {
        for (const cache of [false, true]) {
          const envelope = createEnvelope({ kms, backend, ...(cache ? { cache: encryptionCache(), decryptCache: decryptCache() } : {}) });
          for (let i = 0; i < 2; i++) {
            const sealed = await envelope.seal('no wasm ' + i, { context: { a: 'b' } });
            if ((await envelope.openString(sealed)) !== 'no wasm ' + i) throw new Error('round trip failed');
            out.sealed.push(Buffer.from(sealed).toString('base64'));
          }
        }
      }
      console.log(JSON.stringify(out));`;
    const printed = execFileSync(process.execPath, ['--jitless', '--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const { wasm, sealed } = JSON.parse(printed) as { wasm: string; sealed: string[] };
    expect(wasm).toBe('undefined');
    expect(sealed.length).toBe(8);
    const { createEnvelope, LocalKms } = await import('../src/index.ts');
    const envelope = createEnvelope({ kms: new LocalKms({ k: new Uint8Array(32).fill(3) }) });
    const opened = await Promise.all(sealed.map((b64) => envelope.openString(Buffer.from(b64, 'base64'))));
    expect(opened).toEqual(Array.from({ length: 8 }, (_, i) => `no wasm ${i % 2}`));
  });
});
