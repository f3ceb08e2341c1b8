/**
 * The packed package as the package linters see it: publint (package.json against the files
 * shipped) and Are the Types Wrong (every entry resolves to its types under node10, node16 from
 * ESM, node16 from CommonJS and bundler resolution).
 *
 * kms-envelope is ESM-only ("type": "module", no "require" condition), so attw's one note is
 * "CJS resolves to ESM" under node16 from CommonJS: a require() from a CommonJS TypeScript
 * project gets an ES module (Node 20.19+ can require() it; older ones need import()). attw runs
 * with `--profile esm-only`, the profile for such packages, for its exit code; that profile also
 * leaves node10 out, so the test reads attw's JSON report, which lists every problem, and
 * accepts nothing but that one note.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { describe, expect, it } from 'vitest';
import { PACKAGE, packOnce, ROOT, run } from './pack.ts';

describe('package linters on the packed tarball', () => {
  it('publint: no errors, warnings or suggestions', async () => {
    const { tarball } = await packOnce();
    const data = readFileSync(tarball);
    const { messages, pkg } = await publint({
      level: 'suggestion',
      pack: { tarball: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) },
    });
    const lines = messages.map((m) => `${m.type}: ${formatMessage(m, pkg) ?? m.code}`);
    expect(lines).toEqual([]);
  });

  it('attw: every entry resolves to its types; the one note is "ESM only" for require() from CommonJS', async () => {
    const { tarball } = await packOnce();
    const bin = join(ROOT, 'node_modules', '@arethetypeswrong', 'cli', 'dist', 'index.js');
    // --no-definitely-typed: no look-up of an @types/kms-envelope in the registry.
    const args = [bin, tarball, '--profile', 'esm-only', '--format', 'json', '--no-definitely-typed', '--no-color'];
    const outcome = await run(process.execPath, args, { cwd: ROOT, maxBuffer: 64 << 20 }).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (error: { code?: number; stdout?: string; message: string }) => ({ code: error.code ?? 1, stdout: error.stdout || error.message }),
    );
    const report = JSON.parse(outcome.stdout) as {
      analysis: { entrypoints: Record<string, { resolutions: Record<string, { resolution?: { fileName: string } }> }> };
      problems?: Record<string, { kind: string; entrypoint?: string; resolutionKind?: string }[]>;
    };
    const entrypoints = report.analysis.entrypoints;
    // The entries package.json "exports" names, derived from it (no hand-kept list).
    const exported = Object.keys(PACKAGE.exports);
    expect(Object.keys(entrypoints).sort()).toEqual([...exported].sort());
    for (const entry of exported.filter((e) => e !== './package.json')) {
      for (const kind of ['node10', 'node16-cjs', 'node16-esm', 'bundler']) {
        expect(entrypoints[entry]!.resolutions[kind]?.resolution?.fileName, `${entry} under ${kind}`).toMatch(/\.d\.ts$/);
      }
    }
    // The report lists every problem, the profile's ignored ones too: the strict check is here.
    const problems = Object.values(report.problems ?? {}).flat();
    const unexpected = problems.filter((p) => !(p.kind === 'CJSResolvesToESM' && p.resolutionKind === 'node16-cjs'));
    expect(unexpected, 'attw problems other than "CJS resolves to ESM" under node16 from CommonJS').toEqual([]);
    expect(outcome.code, 'attw --profile esm-only exit code').toBe(0);
  });
});

describe('the development install', () => {
  it('node_modules/.bin/tsc is the project TypeScript, not the typescript-5.0 alias', () => {
    // Both packages have a `tsc` bin; npm links the one whose path sorts first, which is the
    // project's "typescript" as long as the alias's name sorts after it.
    const tsc = realpathSync(join(ROOT, 'node_modules', '.bin', 'tsc'));
    expect(tsc).toBe(realpathSync(join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')));
  });
});
