/**
 * What the command line says when the key is not where it looks: the provider read from the
 * header (a wrong --kms exits 2 naming the right one), key errors naming the key file and key id,
 * advice that fits the command (keygen only for seal), and several --key-alias on one emulator.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, run, type Sandbox, sandbox } from './cli-harness.ts';

let box: Sandbox;
let emulator: ChildProcess;
let env: Record<string, string>;
let keyIds: string[];

beforeAll(async () => {
  box = sandbox();
  writeFileSync(box.path('plain.txt'), 'card 4111');
  emulator = spawn(process.execPath, [CLI, 'emulator', '--key-alias', 'first', '--key-alias', 'second', '--key-alias', 'third'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = createInterface({ input: emulator.stdout! })[Symbol.asyncIterator]();
  const next = async () => (await lines.next()).value as string;
  const url = (await next()).replace('listening on ', '');
  const secretId = (await next()).replace('secret id: ', '');
  const secretKey = (await next()).replace('secret key: ', '');
  keyIds = [await next(), await next(), await next()];
  env = { TENCENTCLOUD_SECRET_ID: secretId, TENCENTCLOUD_SECRET_KEY: secretKey, TENCENTCLOUD_REGION: 'ap-guangzhou', KMS_ENVELOPE_ENDPOINT: url };
});
afterAll(() => {
  emulator?.kill('SIGTERM');
  box?.remove();
});

describe('kms-envelope: keys and providers', () => {
  it('emulator --key-alias a --key-alias b --key-alias c makes three keys, one line each in order', () => {
    expect(keyIds).toEqual([
      expect.stringMatching(/^key id: [0-9a-f-]{36} \(alias first\)$/),
      expect.stringMatching(/^key id: [0-9a-f-]{36} \(alias second\)$/),
      expect.stringMatching(/^key id: [0-9a-f-]{36} \(alias third\)$/),
    ]);
    expect(new Set(keyIds.map((line) => line.split(' ')[2])).size).toBe(3);
  });

  it('open takes the provider from the header; a wrong --kms exits 2 naming the right one, not 1 (tampering)', async () => {
    const keyId = keyIds[1]!.split(' ')[2]!;
    const sealed = await run(box, ['seal', 'plain.txt', '-o', 'tencent.kmse', '--kms', 'tencent', '--key-id', keyId], { env });
    expect([sealed.code, sealed.stderr]).toEqual([0, '']);
    const auto = await run(box, ['open', 'tencent.kmse'], { env });
    expect([auto.code, auto.stdout.toString()]).toEqual([0, 'card 4111']);
    const wrong = await run(box, ['open', 'tencent.kmse', '--kms', 'local'], { env });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('open it with --kms tencent');
    const wrongFromStdin = await run(box, ['open', '--kms', 'tencent-v2'], { env, input: readFileSync(box.path('tencent.kmse')) });
    expect([wrongFromStdin.code, wrongFromStdin.stderr]).toEqual([2, expect.stringContaining('open it with --kms tencent')]);
  });

  it('a missing or wrong key file: open names the file and the key id and never suggests keygen; seal does', async () => {
    const sealed = await run(box, ['seal', 'plain.txt', '-o', 'local.kmse']);
    expect(sealed.code).toBe(0);
    const keyId = JSON.parse((await run(box, ['inspect', 'local.kmse'])).stdout.toString()).keyId as string;

    const missing = await run(box, ['open', 'local.kmse', '--key-file', 'gone.key']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no LocalKms key file at gone.key');
    expect(missing.stderr).toContain(`sealed under LocalKms key "${keyId}"`);
    expect(missing.stderr).not.toContain('keygen');

    expect((await run(box, ['keygen', '--key-file', 'other.key', '--key-id', 'other'])).code).toBe(0);
    const wrong = await run(box, ['open', 'local.kmse', '--key-file', 'other.key']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain(`the key file other.key has no key "${keyId}"`);
    expect(wrong.stderr).toContain('"other"');

    const sealMissing = await run(box, ['seal', 'plain.txt', '-o', 'x.kmse', '--key-file', 'gone.key']);
    expect([sealMissing.code, sealMissing.stderr]).toEqual([2, expect.stringContaining("create one with 'kms-envelope keygen'")]);
  });
});
