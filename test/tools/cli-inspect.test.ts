/**
 * `inspect` (hardening item 14): a file cut short is reported truncated (its size against what
 * the header and the format allow) with a non-zero exit, and both the help and the output say that
 * inspect makes no cryptographic check.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type Sandbox, sandbox } from './cli-harness.ts';

let box: Sandbox;
let sealed: Buffer;
let headerLength: number;

beforeAll(async () => {
  box = sandbox();
  writeFileSync(box.path('plain.bin'), Buffer.alloc(200_000, 3));
  expect((await run(box, ['seal', 'plain.bin', '-o', 'whole.kmse'])).code).toBe(0);
  sealed = readFileSync(box.path('whole.kmse'));
  const info = await run(box, ['inspect', 'whole.kmse']);
  headerLength = (JSON.parse(info.stdout.toString()) as { headerLength: number }).headerLength;
});
afterAll(() => box.remove());

describe('kms-envelope inspect', () => {
  it('a whole file: exit 0, and the output says nothing was checked cryptographically', async () => {
    const r = await run(box, ['inspect', 'whole.kmse']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
    // The size fits, which proves nothing: completeness is not claimed.
    expect(info).toMatchObject({ plaintextLength: 200_000, size: sealed.length, sizeFits: true, complete: null });
    expect(String(info.checked)).toContain('no cryptographic check');
    const help = await run(box, ['inspect', '--help']);
    expect(help.stdout.toString()).toMatch(/NO cryptographic check/);
  });

  it('cut in half (a size the format allows): never claims complete; open then refuses it', async () => {
    const half = sealed.subarray(0, Math.floor(sealed.length / 2));
    writeFileSync(box.path('half.kmse'), half);
    const r = await run(box, ['inspect', 'half.kmse']);
    const info = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
    expect(info.complete).not.toBe(true);
    expect(info).toMatchObject({ size: half.length, complete: null });
    const opened = await run(box, ['open', 'half.kmse', '-o', 'half.out']);
    expect(opened.code).toBe(1);
  });

  it('cut inside the last chunk tag: says truncated, exit 1', async () => {
    // The payload's 56-byte prefix, then fewer bytes than one tag: no message has that size.
    writeFileSync(box.path('cut.kmse'), sealed.subarray(0, headerLength + 56 + 10));
    const r = await run(box, ['inspect', 'cut.kmse']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cut.kmse is truncated');
    expect(JSON.parse(r.stdout.toString())).toMatchObject({ complete: false, sizeFits: false, plaintextLength: null });
  });

  it('cut inside the header: says truncated, exit 1', async () => {
    writeFileSync(box.path('head.kmse'), sealed.subarray(0, headerLength - 20));
    const r = await run(box, ['inspect', 'head.kmse']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('head.kmse is truncated');
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });
});
