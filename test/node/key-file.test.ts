import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvelope, KmsError } from '../../src/index.ts';
import { createLocalKeyFile, localKmsFromKeyFile } from '../../src/node.ts';

const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-keyfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function failure(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

describe('LocalKms key files (kms-envelope/node)', () => {
  it('creates a key file with mode 0600 and reads it back', async () => {
    const path = join(dir, 'nested', 'local.key');
    const created = localKmsFromKeyFile(path, { create: true });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const sealed = await createEnvelope({ kms: created }).seal('persisted');
    const reread = localKmsFromKeyFile(path);
    expect(await createEnvelope({ kms: reread }).openString(sealed)).toBe('persisted');
    expect(readFileSync(path, 'utf8')).toContain('kms-envelope local key file v1');
  });

  it('gives new key files a fingerprint key id, so another key file cannot open their messages under the same name', async () => {
    const a = createLocalKeyFile(join(dir, 'fp-a.key'));
    const b = createLocalKeyFile(join(dir, 'fp-b.key'));
    expect(a).toMatch(/^local-/);
    expect(a).not.toBe(b);
    const sealed = await createEnvelope({ kms: localKmsFromKeyFile(join(dir, 'fp-a.key')) }).seal('x');
    const wrong = createEnvelope({ kms: localKmsFromKeyFile(join(dir, 'fp-b.key')) });
    await expect(wrong.open(sealed)).rejects.toThrow(new RegExp(`no master key "${a}"`));
    // An explicit id is kept, as older key files keep theirs.
    expect(createLocalKeyFile(join(dir, 'named.key'), { keyId: 'default' })).toBe('default');
    expect(localKmsFromKeyFile(join(dir, 'named.key')).keyIds).toEqual(['default']);
  });

  it('refuses a key file others can read or write', () => {
    const path = join(dir, 'open.key');
    createLocalKeyFile(path);
    for (const mode of [0o644, 0o620, 0o604]) {
      chmodSync(path, mode);
      expect(() => localKmsFromKeyFile(path)).toThrow(/readable or writable by others/);
    }
  });

  it('never overwrites an existing key file', () => {
    const path = join(dir, 'once.key');
    createLocalKeyFile(path);
    const before = readFileSync(path, 'utf8');
    expect(failure(() => createLocalKeyFile(path))).toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(path, 'utf8')).toBe(before);
  });

  it('refuses a symbolic link, a FIFO (without hanging) and a folder', () => {
    const target = join(dir, 'target.key');
    createLocalKeyFile(target);
    const link = join(dir, 'link.key');
    symlinkSync(target, link);
    expect(() => localKmsFromKeyFile(link)).toThrow(/symbolic link/);
    const fifo = join(dir, 'fifo.key');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    expect(() => localKmsFromKeyFile(fifo)).toThrow(/not a regular file/);
    const folder = join(dir, 'folder.key');
    mkdirSync(folder, { mode: 0o700 });
    expect(() => localKmsFromKeyFile(folder)).toThrow(KmsError);
  });

  it('refuses a key file in a folder that others can write to, unless the folder is sticky', () => {
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    createLocalKeyFile(join(shared, 'k.key'));
    chmodSync(shared, 0o777);
    expect(() => localKmsFromKeyFile(join(shared, 'k.key'))).toThrow(/folder .* is writable by others/);
    chmodSync(shared, 0o1777);
    expect(localKmsFromKeyFile(join(shared, 'k.key')).keyIds).toHaveLength(1);
  });

  it('refuses a key file that belongs to another user', () => {
    if (process.getuid?.() !== 0) return; // only root can give a file away
    const path = join(dir, 'theirs.key');
    createLocalKeyFile(path);
    chownSync(path, 65534, 65534);
    expect(() => localKmsFromKeyFile(path)).toThrow(/belongs to user 65534/);
  });

  it('names the resolved path in errors, and never the key', () => {
    const path = join(dir, 'bad.key');
    writeFileSync(path, JSON.stringify({ format: 'kms-envelope local key file v1', keys: { k: 'c2VjcmV0' } }), { mode: 0o600 });
    const error = failure(() => localKmsFromKeyFile(relative(process.cwd(), path)));
    expect(error).toBeInstanceOf(KmsError);
    expect(error.message).toContain(path);
    expect(error.message).not.toContain('c2VjcmV0');
    const missing = failure(() => localKmsFromKeyFile(relative(process.cwd(), join(dir, 'missing.key'))));
    expect(missing).toBeInstanceOf(KmsError);
    expect(missing.message).toContain(join(dir, 'missing.key'));
  });
});
