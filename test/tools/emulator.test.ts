import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it, onTestFinished } from 'vitest';
import { useEmulator } from '../fixtures/emulator.ts';
import { createEnvelope } from '../../src/index.ts';
import { TencentKms } from '../../src/kms/tencent.ts';

const CLI = new URL('../../dist/tools/cli.js', import.meta.url).pathname;

describe('emulator state', () => {
  it('persists keys to --state (mode 0600) so sealed data opens after a restart', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'kms-emulator-'));
    onTestFinished(() => rmSync(stateDir, { recursive: true, force: true }));
    const statePath = join(stateDir, 'state.json');
    const credentials = [{ secretId: 'AKIDstate', secretKey: 'state-secret' }];
    const { emulator: first } = await useEmulator({ credentials, statePath });
    const kms = (url: string, keyId?: string) =>
      new TencentKms({ region: 'ap-guangzhou', endpoint: url, credentials: credentials[0]!, ...(keyId ? { keyId } : {}) });
    const keyId = await kms(first.url).createKey({ alias: 'persisted' });
    const sealed = await createEnvelope({ kms: kms(first.url, keyId) }).seal('survives', { context: { a: 'b' } });
    await first.close();
    expect(statSync(statePath).mode & 0o777).toBe(0o600);
    expect(readFileSync(statePath, 'utf8')).toContain(keyId);
    const { emulator: second } = await useEmulator({ credentials, statePath });
    try {
      expect(await createEnvelope({ kms: kms(second.url) }).openString(sealed)).toBe('survives');
    } finally {
      await second.close();
    }
  });

  it('without state, a restart forgets every key', async () => {
    const credentials = [{ secretId: 'AKIDmem', secretKey: 'mem-secret' }];
    const { emulator: first, keyId } = await useEmulator({ credentials });
    const sealed = await createEnvelope({ kms: new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: first.url, credentials: credentials[0]! }) }).seal('x');
    await first.close();
    const { emulator: second } = await useEmulator({ credentials });
    try {
      const kms = new TencentKms({ region: 'ap-guangzhou', endpoint: second.url, credentials: credentials[0]! });
      await expect(createEnvelope({ kms }).open(sealed)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    } finally {
      await second.close();
    }
  });
});

describe('kms-envelope emulator (the CLI)', () => {
  it('prints "listening on http://HOST:PORT" first, generated credentials next, serves, and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, [CLI, 'emulator', '--port', '0', '--key-alias', 'cli'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const first = (await lines.next()).value as string;
    expect(first).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+$/);
    const secretId = ((await lines.next()).value as string).replace('secret id: ', '');
    const secretKey = ((await lines.next()).value as string).replace('secret key: ', '');
    const keyId = ((await lines.next()).value as string).replace('key id: ', '');
    expect(secretId).toMatch(/^AKID\w{32}$/);
    const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: first.replace('listening on ', ''), credentials: { secretId, secretKey } });
    const envelope = createEnvelope({ kms });
    expect(await envelope.openString(await envelope.seal('via the CLI'))).toBe('via the CLI');
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('uses the given credentials and prints no secret then', async () => {
    const child = spawn(process.execPath, [CLI, 'emulator', '--secret-id', 'AKIDgiven', '--secret-key', 'given-key'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toMatch(/^listening on /);
    expect(out).not.toContain('given-key');
  });

  it('exits 2 with usage on a bad flag', async () => {
    const child = spawn(process.execPath, [CLI, 'emulator', '--bogus'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(2);
    expect(err).toMatch(/Unknown option '--bogus'/);
  });
});
