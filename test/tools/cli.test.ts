/** The real `kms-envelope` binary (dist/tools/cli.js), spawned against the emulator started in-process. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

const CLI = new URL('../../dist/tools/cli.js', import.meta.url).pathname;
let emulator: RunningEmulator;
let keyId: string;
let dir: string;

beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ alias: 'cli' }));
  dir = mkdtempSync(join(tmpdir(), 'kmse-cli-'));
});
afterAll(async () => {
  await emulator.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function run(args: string[], options: { input?: Uint8Array | string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
    child.stdin.end(options.input ?? '');
  });
}

const tencentEnv = () => ({
  TENCENTCLOUD_SECRET_ID: emulator.credentials[0]!.secretId,
  TENCENTCLOUD_SECRET_KEY: emulator.credentials[0]!.secretKey,
  TENCENTCLOUD_REGION: 'ap-guangzhou',
});

describe('kms-envelope CLI', () => {
  it('--help for every command, and exit 2 with usage for no or an unknown command', async () => {
    for (const command of ['seal', 'open', 'inspect', 'keygen', 'emulator']) {
      const r = await run([command, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toContain(`Usage: kms-envelope ${command}`);
    }
    expect((await run([])).code).toBe(2);
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const flag = await run(['seal', '--bogus']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("Unknown option '--bogus'");
  });

  it('keygen writes a 0600 key file once; seal says to run keygen when there is none', async () => {
    const missing = await run(['seal', '--key-file', 'none.key'], { input: 'x' });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("kms-envelope keygen");
    expect((await run(['keygen'])).code).toBe(0);
    expect(statSync(join(dir, '.kms-envelope/local.key')).mode & 0o777).toBe(0o600);
    const again = await run(['keygen']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('never overwritten');
  });

  it('seals and opens files and pipes with the local key file', async () => {
    const plaintext = Buffer.alloc(100_000, 0x61);
    writeFileSync(join(dir, 'plain.bin'), plaintext);
    expect((await run(['seal', 'plain.bin', '-o', 'plain.kmse', '--context', 'table=users', '--context', 'row=42'])).code).toBe(0);
    const opened = await run(['open', 'plain.kmse', '--context', 'row=42', '--context', 'table=users']);
    expect(opened.code).toBe(0);
    expect(opened.stdout.equals(plaintext)).toBe(true);
    const piped = await run(['seal'], { input: 'from a pipe' });
    expect(piped.code).toBe(0);
    const back = await run(['open'], { input: piped.stdout });
    expect(back.stdout.toString()).toBe('from a pipe');
    expect((await run(['open', 'plain.kmse', '-o', 'plain.out'])).code).toBe(0);
    expect(readFileSync(join(dir, 'plain.out')).equals(plaintext)).toBe(true);
    const exists = await run(['open', 'plain.kmse', '-o', 'plain.out']);
    expect(exists.code).toBe(2);
    expect(exists.stderr).toContain('--force');
    expect((await run(['open', 'plain.kmse', '-o', 'plain.out', '--force'])).code).toBe(0);
  });

  it('a wrong context or a tampered file exits 1 and writes no plaintext anywhere', async () => {
    writeFileSync(join(dir, 'secret.txt'), 'TOP SECRET '.repeat(5000));
    expect((await run(['seal', 'secret.txt', '-o', 'secret.kmse', '--context', 'k=v', '--detached-context'])).code).toBe(0);
    const wrong = await run(['open', 'secret.kmse', '--context', 'k=w']);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout.length).toBe(0);
    expect(wrong.stderr).toContain('decryption failed');
    const sealed = readFileSync(join(dir, 'secret.kmse'));
    sealed[sealed.length - 1]! ^= 1; // only the last chunk is bad: earlier chunks would authenticate
    writeFileSync(join(dir, 'tampered.kmse'), sealed);
    const toStdout = await run(['open', 'tampered.kmse', '--context', 'k=v']);
    expect(toStdout.code).toBe(1);
    expect(toStdout.stdout.length).toBe(0);
    const fromStdin = await run(['open', '--context', 'k=v'], { input: sealed });
    expect(fromStdin.code).toBe(1);
    expect(fromStdin.stdout.length).toBe(0);
    const toFile = await run(['open', 'tampered.kmse', '--context', 'k=v', '-o', 'tampered.out']);
    expect(toFile.code).toBe(1);
    expect(existsSync(join(dir, 'tampered.out'))).toBe(false);
    const missing = await run(['open', 'no-such.kmse']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
  });

  it('inspect prints the header as JSON without any KMS call', async () => {
    const env = tencentEnv();
    writeFileSync(join(dir, 'i.txt'), 'inspect me');
    const flags = ['--kms', 'tencent', '--key-id', keyId, '--endpoint', emulator.url];
    expect((await run(['seal', 'i.txt', '-o', 'i.kmse', '--context', 'a=b', ...flags], { env })).code).toBe(0);
    emulator.resetStats();
    const r = await run(['inspect', 'i.kmse']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
    expect(info).toMatchObject({ version: 1, suite: 'Cobblestone-256', provider: 'tencent', keyId, context: { a: 'b' }, plaintextLength: 10 });
    expect(emulator.stats().calls).toEqual({});
    expect((await run(['inspect', 'i.txt'])).code).toBe(1);
  });

  it('--suite sm4 seals suite 03 (SM4-GCM-SM3) under an AES_128 data key from the emulator, and open needs no flag', async () => {
    const env = tencentEnv();
    const plaintext = Buffer.alloc(40_000, 0x62);
    writeFileSync(join(dir, 'sm4.bin'), plaintext);
    const flags = ['--kms', 'tencent', '--key-id', keyId, '--endpoint', emulator.url];
    expect((await run(['seal', 'sm4.bin', '-o', 'sm4.kmse', '--suite', 'sm4', '--context', 'a=b', ...flags], { env })).code).toBe(0);
    const sealed = readFileSync(join(dir, 'sm4.kmse'));
    expect(sealed[5]).toBe(0x03);
    const info = JSON.parse((await run(['inspect', 'sm4.kmse'])).stdout.toString()) as Record<string, unknown>;
    expect(info).toMatchObject({ suite: 'SM4-GCM-SM3', plaintextLength: 40_000 });
    const opened = await run(['open', 'sm4.kmse', ...flags], { env });
    expect(opened.code).toBe(0);
    expect(opened.stdout.equals(plaintext)).toBe(true);
  });

  it('tencent and tencent-v2 through the emulator, credentials from the environment only', async () => {
    const env = tencentEnv();
    writeFileSync(join(dir, 't.txt'), 'through the emulator');
    for (const [kms, endpoint, region] of [
      ['tencent', emulator.url, 'ap-guangzhou'],
      ['tencent-v2', `${emulator.url}/v2/index.php`, 'gz'],
    ] as const) {
      const flags = ['--kms', kms, '--key-id', keyId, '--endpoint', endpoint, '--region', region];
      expect((await run(['seal', 't.txt', '-o', `t.${kms}.kmse`, ...flags], { env })).code).toBe(0);
      const opened = await run(['open', `t.${kms}.kmse`, ...flags], { env });
      expect(opened.stdout.toString()).toBe('through the emulator');
    }
    const noCredentials = await run(['seal', 't.txt', '--kms', 'tencent', '--key-id', keyId, '--endpoint', emulator.url, '--region', 'ap-guangzhou']);
    expect(noCredentials.code).toBe(3);
    expect(noCredentials.stderr).toContain('TENCENTCLOUD_SECRET_ID');
    const unknownFlag = await run(['seal', 't.txt', '--secret-key', 'x']);
    expect(unknownFlag.code).toBe(2);
  });

  it('a KMS error exits 3', async () => {
    const env = { ...tencentEnv(), TENCENTCLOUD_SECRET_KEY: 'wrong-secret-key-000000000000000' };
    const r = await run(['seal', '--kms', 'tencent', '--key-id', keyId, '--endpoint', emulator.url], { env, input: 'x' });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('AuthFailure.SignatureFailure');
    expect(r.stderr).not.toContain('wrong-secret-key');
  });

  it('shows a progress bar on stderr for work over a second (forced, as stderr is no terminal here), and stays silent otherwise', async () => {
    writeFileSync(join(dir, 'big.bin'), Buffer.alloc(8 * 1024 * 1024, 1));
    emulator.setFaults({ latencyMs: 1100 });
    try {
      const flags = ['seal', 'big.bin', '-o', 'big.kmse', '--force', '--kms', 'tencent', '--key-id', keyId, '--endpoint', emulator.url];
      const forced = await run(flags, { env: { ...tencentEnv(), KMS_ENVELOPE_FORCE_PROGRESS: '1' } });
      expect(forced.code).toBe(0);
      expect(forced.stderr).toMatch(/sealing .*\d+% \| [\d.]+\/8\.0 MiB \| [\d.]+ MiB\/s \| ETA/);
      const quiet = await run([...flags, '--quiet'], { env: { ...tencentEnv(), KMS_ENVELOPE_FORCE_PROGRESS: '1' } });
      expect(quiet.stderr).toBe('');
      const plain = await run(flags, { env: tencentEnv() });
      expect(plain.stderr).toBe('');
    } finally {
      emulator.setFaults({});
    }
  });
});
