/**
 * What the tarball holds: the build (without the demo), the documents and the licence; no source
 * maps (the sources are not shipped, so a map would point at nothing), no stale output of a file
 * that no longer exists in src/, and a package.json a consumer's install runs nothing from.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE, packOnce, type PackResult, removeDir, ROOT, run, tempDir } from './pack.ts';

let result: PackResult;
let dir: string | undefined;
let paths: string[];

beforeAll(async () => {
  const packed = await packOnce();
  result = packed.result;
  paths = result.files.map((f) => f.path).sort();
  dir = tempDir('contents');
  await run('tar', ['-xzf', packed.tarball, '-C', dir, '--strip-components=1']);
}, 120_000);

afterAll(() => removeDir(dir));

describe('the packed tarball', () => {
  it('holds the documents, the licence and the entries', () => {
    // Every file package.json "exports" names, derived from it (no hand-kept list), and the CLI.
    const named = Object.values(PACKAGE.exports).flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)));
    for (const path of [
      'package.json',
      'README.md',
      'FORMAT.md',
      'CHANGELOG.md',
      'SECURITY.md',
      'LICENSE',
      'dist/tools/cli.js',
      ...named.map((target) => target.replace(/^\.\//, '')),
    ]) {
      expect(paths, path).toContain(path);
    }
    expect(paths.filter((p) => !p.startsWith('dist/') && !['package.json', 'README.md', 'FORMAT.md', 'CHANGELOG.md', 'SECURITY.md', 'LICENSE'].includes(p))).toEqual([]);
  });

  it('ships no demo, no source map and no sourceMappingURL', () => {
    expect(paths.filter((p) => p.startsWith('dist/tools/demo.'))).toEqual([]);
    expect(paths.filter((p) => p.endsWith('.map'))).toEqual([]);
    const withUrl = paths.filter((p) => /\.[cm]?[jt]s$/.test(p) && readFileSync(join(dir!, p), 'utf8').includes('sourceMappingURL'));
    expect(withUrl, 'files that name a source map').toEqual([]);
  });

  it('ships no stale output: every module in dist/ comes from a file in src/', () => {
    const stale = paths
      .filter((p) => p.startsWith('dist/') && !p.startsWith('dist/ts5.0/') && /\.(?:js|d\.ts)$/.test(p))
      .map((p) => p.replace(/^dist\//, 'src/').replace(/\.(?:js|d\.ts)$/, '.ts'))
      .filter((src) => !existsSync(join(ROOT, src)));
    expect(stale, 'dist files without a source (a clean build, `npm run clean && npm run build`, removes them)').toEqual([]);
    const declarations = paths.filter((p) => p.endsWith('.d.ts') && !p.startsWith('dist/ts5.0/'));
    const old = paths.filter((p) => p.startsWith('dist/ts5.0/'));
    expect(old.sort()).toEqual(declarations.map((p) => p.replace(/^dist\//, 'dist/ts5.0/')).sort());
  });

  it('has the Apache License 2.0 text that package.json names', () => {
    const license = readFileSync(join(dir!, 'LICENSE'), 'utf8');
    expect(license).toContain('Apache License');
    expect(license).toContain('Version 2.0, January 2004');
    expect(license).toContain('END OF TERMS AND CONDITIONS');
    const manifest = JSON.parse(readFileSync(join(dir!, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.license).toBe('Apache-2.0');
  });

  it('has a package.json a consumer install runs nothing from, with a runnable bin', () => {
    const manifest = JSON.parse(readFileSync(join(dir!, 'package.json'), 'utf8')) as {
      scripts?: Record<string, string>;
      bin?: Record<string, string>;
      dependencies?: Record<string, string>;
    };
    for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) expect(manifest.scripts?.[hook], hook).toBeUndefined();
    expect(Object.keys(manifest.dependencies ?? {})).not.toContain('cli-progress');
    for (const target of Object.values(manifest.bin ?? {})) {
      expect(paths).toContain(target.replace(/^\.\//, ''));
      expect(readFileSync(join(dir!, target), 'utf8').startsWith('#!/usr/bin/env node')).toBe(true);
    }
  });

  it('stays small', () => {
    // Orders of magnitude, not a budget (the tests above name what may ship: dist/ from src/, its
    // TypeScript 5.0 declarations, the documents; no map): a folder shipped by mistake shows here.
    // Each module ships three files (JavaScript, declarations, TypeScript 5.0 declarations); 0.3
    // has 165 modules, 495 files, 2.03 MB unpacked.
    const modules = paths.filter((p) => p.startsWith('dist/') && !p.startsWith('dist/ts5.0/') && p.endsWith('.js')).length;
    expect(result.files.length).toBeLessThanOrEqual(3 * modules + 10);
    expect(result.unpackedSize).toBeLessThan(4_000_000);
  });
});
