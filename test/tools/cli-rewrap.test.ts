/**
 * `kms-envelope rewrap --to-key ID PATH...` spawned (dist/tools/cli.js; `npm run build` first):
 * over a LocalKms key file with two keys, and over the emulator's API 3.0 (ReEncrypt, counted in
 * its stats). The summary, the checkpoint's second run, failures and exit codes, the progress bar
 * on a (forced) terminal, and Ctrl-C leaving every file whole.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEnvelope, inspect, LocalKms, TencentKms } from '../../src/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { run, type Sandbox, sandbox, start, finish, until } from './cli-harness.ts';

let box: Sandbox;
let kms: LocalKms;
beforeEach(() => {
  box = sandbox();
  const keys = { old: randomBytes(32).toString('base64'), new: randomBytes(32).toString('base64') };
  writeFileSync(box.path('.kms-envelope/local.key'), JSON.stringify({ format: 'kms-envelope local key file v1', defaultKeyId: 'old', keys }), { mode: 0o600 });
  kms = LocalKms.fromKeyFileText(readFileSync(box.path('.kms-envelope/local.key'), 'utf8'), 'test');
});
afterEach(() => box.remove());

async function sealFiles(count: number, size = 2000): Promise<string[]> {
  const envelope = createEnvelope({ kms });
  mkdirSync(box.path('tree/sub'), { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `tree/${i % 2 ? 'sub/' : ''}f${i}.kmse`;
    writeFileSync(box.path(name), await envelope.seal(randomBytes(size)));
    names.push(name);
  }
  return names;
}

describe('kms-envelope rewrap (LocalKms)', () => {
  it('rewraps a tree, prints the summary, and a second run skips by the checkpoint', async () => {
    const names = await sealFiles(6);
    writeFileSync(box.path('tree/readme.txt'), 'plain');
    const first = await run(box, ['rewrap', '--to-key', 'new', 'tree']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout.toString()).toContain('rewrapped 6, already current 0, failed 0, skipped 1');
    expect(first.stdout.toString()).toContain('skipped: tree/readme.txt: not a sealed file');
    for (const n of names) expect(inspect(readFileSync(box.path(n))).keyId).toBe('new');
    expect(readFileSync(box.path('.kms-envelope/rewrap.checkpoint'), 'utf8').trim().split('\n')).toHaveLength(6);
    const second = await run(box, ['rewrap', '--to-key', 'new', 'tree', '--json']);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout.toString())).toMatchObject({ rewrapped: 0, current: 6, failed: [] });
    expect(box.leftovers()).toEqual([]);
  });

  it('exit 1 with the failed files and their reasons; exit 2 for usage and a missing path', async () => {
    await sealFiles(2);
    writeFileSync(box.path('tree/other.kmse'), await createEnvelope({ kms: LocalKms.generate({ keyId: 'elsewhere' }) }).seal('x'));
    const r = await run(box, ['rewrap', '--to-key', 'new', '--checkpoint', 'none', 'tree']);
    expect(r.code).toBe(1);
    expect(r.stdout.toString()).toMatch(/failed: tree\/other\.kmse: .+/);
    expect(r.stdout.toString()).toContain('rewrapped 2, already current 0, failed 1');
    expect((await run(box, ['rewrap', 'tree'])).code).toBe(2);
    expect((await run(box, ['rewrap', '--to-key', 'new'])).code).toBe(2);
    expect((await run(box, ['rewrap', '--to-key', 'new', '--concurrency', '0', 'tree'])).code).toBe(2);
    const missing = await run(box, ['rewrap', '--to-key', 'new', 'nope']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope');
    const help = await run(box, ['rewrap', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout.toString()).toContain('--to-key ID');
  });
});

describe('kms-envelope rewrap killed with SIGKILL', () => {
  const FILES = 1000;
  it('leaves every file whole (old key or new), and the next run finishes the rest, skipping temporary files left behind', async () => {
    // 1000 files: the kill comes with at least 896 left, about a second of work, not a race with the end.
    const names = await sealFiles(FILES, 32 * 1024);
    const child = start(box, ['rewrap', '--to-key', 'new', '--concurrency', '2', 'tree']);
    const done = finish(child);
    const checkpoint = box.path('.kms-envelope/rewrap.checkpoint');
    const lines = () => {
      try {
        return readFileSync(checkpoint, 'utf8').split('\n').length - 1;
      } catch {
        return 0;
      }
    };
    const target = 5 + Math.floor(Math.random() * 100);
    await until(() => lines() >= target, 60_000, `${target} files done`);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    const envelope = createEnvelope({ kms });
    const keys = [];
    for (const n of names) {
      const sealed = readFileSync(box.path(n));
      keys.push(inspect(sealed).keyId);
      await envelope.open(sealed); // whole: it authenticates
    }
    expect(keys.filter((k) => k === 'new').length).toBeGreaterThanOrEqual(target);
    expect(keys.filter((k) => k === 'new').length).toBeLessThan(FILES);
    const rest = await run(box, ['rewrap', '--to-key', 'new', 'tree', '--json']);
    expect(rest.code).toBe(0);
    const summary = JSON.parse(rest.stdout.toString()) as { rewrapped: number; current: number; skipped: { reason: string }[] };
    expect(summary.rewrapped + summary.current).toBe(FILES);
    expect(summary.skipped.every((s) => s.reason === 'a temporary file left by an interrupted write')).toBe(true);
    for (const n of names) expect(inspect(readFileSync(box.path(n))).keyId).toBe('new');
  });
});

describe('kms-envelope rewrap (TencentKms, the emulator)', () => {
  let emulator: RunningEmulator;
  let keyId: string;
  beforeAll(async () => ({ emulator, keyId } = await useEmulator({ alias: 'first' })));
  afterAll(() => emulator.close());

  it('moves files to another CMK with one ReEncrypt each (no Decrypt, no GenerateDataKey), and they open afterwards', async () => {
    const newKey = emulator.createKey('second');
    const credentials = emulator.credentials[0]!;
    const tencent = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials });
    const envelope = createEnvelope({ kms: tencent });
    mkdirSync(box.path('t'));
    for (let i = 0; i < 5; i++) writeFileSync(box.path(`t/${i}.kmse`), await envelope.seal(`file ${i}`, { context: { n: String(i) } }));
    emulator.resetStats();
    const env = { TENCENTCLOUD_SECRET_ID: credentials.secretId, TENCENTCLOUD_SECRET_KEY: credentials.secretKey, TENCENTCLOUD_REGION: 'ap-guangzhou' };
    const r = await run(box, ['rewrap', '--kms', 'tencent', '--endpoint', emulator.url, '--to-key', newKey, 't'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toContain('rewrapped 5');
    expect(emulator.stats().calls).toEqual({ ReEncrypt: 5 });
    for (let i = 0; i < 5; i++) {
      const sealed = readFileSync(box.path(`t/${i}.kmse`));
      expect(inspect(sealed).keyId).toBe(newKey);
      expect(await envelope.openString(sealed)).toBe(`file ${i}`);
    }
    await envelope.close();
  });
  it('draws a progress bar with an ETA on a terminal, and Ctrl-C leaves every file whole (old key or new) and exits 130', async () => {
    // The bar shows once the work has lasted a second: 20 ms a KMS call makes 150 files last 3 s on
    // any machine (before this, a fast machine finished 400 local rewraps before the bar showed).
    const newKey = emulator.createKey('third');
    const credentials = emulator.credentials[0]!;
    const tencent = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials });
    const envelope = createEnvelope({ kms: tencent });
    mkdirSync(box.path('slow'));
    const names: string[] = [];
    for (let i = 0; i < 150; i++) {
      names.push(`slow/${i}.kmse`);
      writeFileSync(box.path(names[i]!), await envelope.seal(randomBytes(4096)));
    }
    emulator.setFaults({ latencyMs: 20 });
    try {
      const env = { TENCENTCLOUD_SECRET_ID: credentials.secretId, TENCENTCLOUD_SECRET_KEY: credentials.secretKey, TENCENTCLOUD_REGION: 'ap-guangzhou', KMS_ENVELOPE_FORCE_PROGRESS: '1' };
      const child = start(box, ['rewrap', '--kms', 'tencent', '--endpoint', emulator.url, '--to-key', newKey, '--concurrency', '1', 'slow'], { env });
      const done = finish(child);
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      await until(() => stderr.includes('ETA'), 30_000, 'a progress line');
      expect(stderr).toMatch(/rewrapping .*% \| .* ETA/);
      child.kill('SIGINT');
      const r = await done;
      expect(r.code).toBe(130);
      const keys = names.map((n) => inspect(readFileSync(box.path(n))).keyId);
      expect(keys.every((k) => k === keyId || k === newKey)).toBe(true);
      expect(keys.filter((k) => k === newKey).length).toBeLessThan(150);
      for (const n of names) await envelope.open(readFileSync(box.path(n)));
      expect(box.leftovers()).toEqual([]);
      emulator.setFaults({});
      // The next run finishes the rest.
      const rest = await run(box, ['rewrap', '--kms', 'tencent', '--endpoint', emulator.url, '--to-key', newKey, 'slow', '--json'], { env });
      const summary = JSON.parse(rest.stdout.toString()) as { rewrapped: number; current: number };
      expect(summary.rewrapped + summary.current).toBe(150);
    } finally {
      emulator.setFaults({});
      await envelope.close();
    }
  });
});
