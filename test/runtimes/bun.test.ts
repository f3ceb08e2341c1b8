/**
 * Bun smoke test: the built package in Bun (the `bun` devDependency's binary) seals and opens a
 * record, a message and a 16 MiB stream, and opens the version-1 vectors made on Node
 * (test/runtimes/smoke.mjs). Run by `npm run test:runtimes` and .ci/run; needs dist/ (npm run build).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { SMOKE_CHECKS, type SmokeResult } from './expected.ts';

const BUN = fileURLToPath(new URL('../../node_modules/.bin/bun', import.meta.url));

describe('Bun', () => {
  let result: SmokeResult;

  beforeAll(() => {
    const printed = execFileSync(BUN, [fileURLToPath(new URL('./bun-main.mjs', import.meta.url))], { encoding: 'utf8', timeout: 120_000 });
    result = JSON.parse(printed.trim().split('\n').at(-1)!) as SmokeResult;
  }, 150_000);

  it('runs the package on Bun, with the node:crypto backend (Bun has node:crypto)', () => {
    expect(result.runtime).toMatch(/^Bun \d+\.\d+/);
    expect(result.backend).toBe('node');
    expect(result.checks.map((c) => c.name)).toEqual(SMOKE_CHECKS);
  });

  it.each(SMOKE_CHECKS)('%s', (name) => {
    const check = result.checks.find((c) => c.name === name)!;
    expect(check.detail, name).toBeTypeOf('string');
    expect(check.ok, check.detail).toBe(true);
  });
});
