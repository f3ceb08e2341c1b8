/**
 * The main entry must bundle for browsers and edge runtimes unchanged: no module it reaches may
 * import a `node:` builtin at run time (Node APIs are reached through process.getBuiltinModule).
 */
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
});
