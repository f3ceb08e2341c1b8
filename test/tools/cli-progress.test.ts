/**
 * The progress line (hardening item 13): labelled phases (reading, verifying, writing), each pass
 * counted once over its own bytes, and a byte counter with its rate, never a false 100%, when the
 * length is unknown or wrong.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningEmulator, startEmulator } from '../../src/tools/emulator/index.ts';
import { progress, progressLine } from '../../src/tools/progress.ts';
import { MiB, run, type Sandbox, sandbox } from './cli-harness.ts';

describe('progressLine', () => {
  it('a known total: a bar, percentage, sizes, rate and ETA', () => {
    expect(progressLine('writing', 2 * MiB, 8 * MiB, 1)).toMatch(/^writing [█░]{24} 25% \| 2\.0\/8\.0 MiB \| 2\.0 MiB\/s \| ETA 00:03$/);
  });

  it('an unknown total, or more bytes than the total said (a growing file): a counter with its rate, no percentage', () => {
    for (const total of [Number.NaN, Number.POSITIVE_INFINITY, 0, 1 * MiB]) {
      const line = progressLine('sealing', 3 * MiB, total, 2);
      expect(line).toBe('sealing 3.0 MiB | 1.5 MiB/s');
      expect(line).not.toContain('%');
    }
  });
});

describe('progress', () => {
  it('labels each phase and counts it from zero: the rate of a phase is its own', () => {
    let t = 0;
    const written: string[] = [];
    const bar = progress({ write: (s: string) => written.push(s) }, true, 'opening', () => t);
    t = 2000;
    bar.phase('verifying');
    t = 4000;
    bar.update(8 * MiB, 8 * MiB); // 8 MiB in 2 s
    bar.phase('writing');
    t = 5000;
    bar.update(1 * MiB, 8 * MiB); // drawn at once (a new phase), 1 MiB in 1 s
    bar.stop();
    const lines = written.join('').split('\r\x1b[2K').filter((l) => l && !l.startsWith('\x1b'));
    expect(lines[0]).toMatch(/^verifying [█░]+ 100% \| 8\.0\/8\.0 MiB \| 4\.0 MiB\/s/);
    expect(lines[1]).toMatch(/^writing [█░]+ 12% \| 1\.0\/8\.0 MiB \| 1\.0 MiB\/s/);
    expect(written.join('')).toMatch(/^\x1b\[\?25l.*\x1b\[\?25h$/s);
  });
});

describe('kms-envelope progress on stderr (forced, as stderr is no terminal here)', () => {
  let box: Sandbox;
  let emulator: RunningEmulator;
  let flags: string[];
  let env: Record<string, string>;

  beforeAll(async () => {
    box = sandbox();
    emulator = await startEmulator();
    flags = ['--kms', 'tencent', '--region', 'ap-guangzhou', '--key-id', emulator.createKey('progress'), '--endpoint', emulator.url];
    env = { TENCENTCLOUD_SECRET_ID: emulator.credentials[0]!.secretId, TENCENTCLOUD_SECRET_KEY: emulator.credentials[0]!.secretKey };
    writeFileSync(box.path('big.bin'), Buffer.alloc(8 * MiB, 1));
    expect((await run(box, ['seal', 'big.bin', '-o', 'big.kmse', ...flags], { env })).code).toBe(0);
  });
  afterAll(async () => {
    await emulator.close();
    box.remove();
  });

  it('open to standard output: "verifying", then "writing", each over the 8 MiB once (never 16)', async () => {
    emulator.setFaults({ latencyMs: 1100 }); // the passes start after the line's first second
    try {
      const r = await run(box, ['open', 'big.kmse', ...flags], { env: { ...env, KMS_ENVELOPE_FORCE_PROGRESS: '1' } });
      expect(r.code).toBe(0);
      expect(r.stdout.length).toBe(8 * MiB);
      expect(r.stderr).toMatch(/verifying [█░]+ \d+% \| [\d.]+\/8\.0 MiB/);
      expect(r.stderr).toMatch(/writing [█░]+ \d+% \| [\d.]+\/8\.0 MiB/);
      expect(r.stderr.indexOf('verifying')).toBeLessThan(r.stderr.indexOf('writing'));
      expect(r.stderr).not.toContain('16.0 MiB');
    } finally {
      emulator.setFaults({});
    }
  });
});
