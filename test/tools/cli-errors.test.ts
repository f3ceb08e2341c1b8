/**
 * Errors and exit codes (hardening item 11): one line, no stack trace, for every expected failure,
 * and the exit code from the one table (1 authentication, 2 usage and local configuration, 3 KMS,
 * 4 I/O; 141 quietly for a closed reader).
 */
import { chmodSync, chownSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_TABLE } from '../../src/tools/cli-errors.ts';
import { type RunningEmulator, startEmulator } from '../../src/tools/emulator/index.ts';
import { finish, MiB, run, type Run, type Sandbox, sandbox, start } from './cli-harness.ts';

let box: Sandbox;
let emulator: RunningEmulator;
let keyId: string;

beforeAll(async () => {
  box = sandbox();
  emulator = await startEmulator();
  keyId = emulator.createKey('cli-errors');
  writeFileSync(box.path('plain.txt'), 'x'.repeat(4 * MiB));
  expect((await run(box, ['seal', 'plain.txt', '-o', 'plain.kmse'])).code).toBe(0);
});
afterAll(async () => {
  await emulator.close();
  box.remove();
});

/** One line on stderr, starting with the command's name, and no stack trace. */
function oneLine(r: Run): string {
  const lines = r.stderr.split('\n').filter(Boolean);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^kms-envelope: /);
  expect(r.stderr).not.toMatch(/\n\s+at |Error:|node:internal/);
  return lines[0]!;
}

const tencentEnv = () => ({
  TENCENTCLOUD_SECRET_ID: emulator.credentials[0]!.secretId,
  TENCENTCLOUD_SECRET_KEY: emulator.credentials[0]!.secretKey,
});

describe('kms-envelope errors and exit codes', () => {
  it('a missing input: exit 2, one line naming it', async () => {
    for (const args of [['seal', 'nowhere.txt'], ['open', 'nowhere.kmse'], ['inspect', 'nowhere.kmse']]) {
      const r = await run(box, args);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toContain(`${args[1]}: no such file`);
    }
  });

  it('a missing output folder: exit 2, naming the folder and not the temporary file', async () => {
    for (const command of ['seal', 'open']) {
      const r = await run(box, [command, command === 'seal' ? 'plain.txt' : 'plain.kmse', '-o', 'no/such/folder/out']);
      expect(r.code).toBe(2);
      const line = oneLine(r);
      expect(line).toContain('no such folder: no/such/folder');
      expect(line).not.toContain('kmse-tmp');
    }
  });

  it('ENOTDIR: a file used as a folder, for the output and the input: exit 2', async () => {
    const out = await run(box, ['seal', 'plain.txt', '-o', 'plain.txt/out']);
    expect(out.code).toBe(2);
    expect(oneLine(out)).toContain('not a folder');
    const input = await run(box, ['open', 'plain.txt/in.kmse']);
    expect(input.code).toBe(2);
    expect(oneLine(input)).toContain('not a folder');
  });

  it('EACCES: an input that cannot be read, a folder that cannot be written: exit 2, one line naming them', async () => {
    // Root reads and writes everything: run the CLI as nobody then, with a key file of its own.
    const root = process.getuid?.() === 0;
    const user = root ? { uid: 65534, gid: 65534 } : undefined;
    chmodSync(box.dir, 0o755);
    writeFileSync(box.path('locked.kmse'), readFileSync(box.path('plain.kmse')));
    chmodSync(box.path('locked.kmse'), 0o000);
    const locked = await run(box, ['inspect', 'locked.kmse'], { ...(user ? { user } : {}) });
    expect(locked.code).toBe(2);
    expect(oneLine(locked)).toContain('locked.kmse: permission denied');

    const keys = [box.path('.kms-envelope'), box.path('.kms-envelope/local.key')];
    if (root) for (const path of keys) chownSync(path, 65534, 65534);
    else chmodSync(box.tmp, 0o500); // root-owned 0700 keeps nobody out already
    try {
      const folder = await run(box, ['seal', 'plain.txt', '-o', 'tmp/out.kmse'], { ...(user ? { user } : {}) });
      expect(folder.code).toBe(2);
      const line = oneLine(folder);
      expect(line).toContain('folder tmp: permission denied');
      expect(line).not.toContain('kmse-tmp');
    } finally {
      chmodSync(box.tmp, 0o700);
      if (root) for (const path of keys) chownSync(path, 0, 0);
    }
  });

  it('a closed reader (open FILE | head -c1): exits quietly, 141', async () => {
    const child = start(box, ['open', 'plain.kmse']);
    child.stdin!.end();
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    child.stdout!.once('data', () => child.stdout!.destroy()); // the reader goes away after one piece
    expect(await closed).toBe(141);
    expect(stderr).toBe('');
  });

  it('ENOSPC (standard output is /dev/full): exit 4, one line', async () => {
    for (const args of [['seal', 'plain.txt'], ['open', 'plain.kmse']]) {
      const full = openSync('/dev/full', 'w');
      const child = start(box, args, { stdio: ['ignore', full, 'pipe'] });
      closeSync(full);
      const r = await finish(child);
      expect(r.code).toBe(4);
      expect(oneLine(r)).toContain('standard output: no space left on device');
    }
  });

  it('usage errors: one line and where to read more, never the whole usage', async () => {
    const cases: [string[], string, string][] = [
      [['seal', '--suite', '512'], '--suite must be 256, 128 or sm4', "see 'kms-envelope seal --help'"],
      [['open', '--bogus'], "Unknown option '--bogus'", "see 'kms-envelope open --help'"],
      [['seal', 'a', 'b'], 'at most one FILE', "see 'kms-envelope seal --help'"],
      [['frobnicate'], 'unknown command "frobnicate"', "see 'kms-envelope --help'"],
      [[], 'a command is needed', "see 'kms-envelope --help'"],
    ];
    for (const [args, says, see] of cases) {
      const r = await run(box, args);
      expect(r.code).toBe(2);
      const line = oneLine(r);
      expect(line).toContain(says);
      expect(line.endsWith(see)).toBe(true);
      expect(r.stderr).not.toContain('Usage:');
    }
  });

  it('local configuration (a key file readable by others): exit 2, not a KMS error', async () => {
    chmodSync(box.path('.kms-envelope/local.key'), 0o644);
    try {
      const r = await run(box, ['seal', 'plain.txt']);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toContain('chmod 600');
    } finally {
      chmodSync(box.path('.kms-envelope/local.key'), 0o600);
    }
  });

  it('authentication failures exit 1; KMS errors exit 3', async () => {
    const sealed = readFileSync(box.path('plain.kmse'));
    sealed[sealed.length - 1]! ^= 1;
    writeFileSync(box.path('tampered.kmse'), sealed);
    const tampered = await run(box, ['open', 'tampered.kmse']);
    expect(tampered.code).toBe(1);
    expect(oneLine(tampered)).toContain('decryption failed');
    const wrongContext = await run(box, ['open', 'plain.kmse', '--context', 'a=b']);
    expect(wrongContext.code).toBe(1);
    const kms = await run(box, ['seal', 'plain.txt', '--kms', 'tencent', '--region', 'ap-guangzhou', '--key-id', keyId, '--endpoint', emulator.url], {
      env: { ...tencentEnv(), TENCENTCLOUD_SECRET_KEY: 'wrong-secret-key-000000000000000' },
    });
    expect(kms.code).toBe(3);
    oneLine(kms);
  });

  it('Tencent: --key-id is checked like --region; a legacy endpoint without /v2/index.php gets a hint', async () => {
    for (const kms of ['tencent', 'tencent-v2']) {
      const r = await run(box, ['seal', 'plain.txt', '--kms', kms, '--region', 'gz', '--endpoint', emulator.url], { env: tencentEnv() });
      expect(r.code).toBe(2);
      expect(oneLine(r)).toContain(`--kms ${kms} needs --key-id`);
    }
    const bad = await run(box, ['seal', 'plain.txt', '--kms', 'tencent', '--region', 'gz', '--key-id', 'has space'], { env: tencentEnv() });
    expect(bad.code).toBe(2);
    const legacy = await run(box, ['seal', 'plain.txt', '--kms', 'tencent-v2', '--region', 'gz', '--key-id', keyId, '--endpoint', emulator.url], {
      env: tencentEnv(),
    });
    expect(legacy.code).toBe(3);
    expect(legacy.stderr).toContain(`hint: the legacy API (--kms tencent-v2) is served at /v2/index.php: try --endpoint ${emulator.url}/v2/index.php`);
    expect(legacy.stderr).not.toMatch(/\n\s+at /);
  });

  it('--version prints the version in package.json; --help and README.md carry the one exit-code table', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const version = await run(box, ['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.toString()).toBe(`kms-envelope ${pkg.version}\n`);
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const args of [['--help'], ['seal', '--help'], ['open', '--help']]) {
      expect((await run(box, args)).stdout.toString()).toContain(EXIT_TABLE);
    }
    expect(readme).toContain(EXIT_TABLE);
  });
});
