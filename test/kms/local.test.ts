import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalContext } from '../../src/core/context.ts';
import { createEnvelope, DecryptionFailedError, KmsError, LocalKms } from '../../src/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-local-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('LocalKms', () => {
  it('creates a key file with mode 0600 and reads it back', async () => {
    const path = join(dir, 'nested', 'local.key');
    const created = LocalKms.fromKeyFile(path, { create: true });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const sealed = await createEnvelope({ kms: created }).seal('persisted');
    const reread = LocalKms.fromKeyFile(path);
    expect(await createEnvelope({ kms: reread }).openString(sealed)).toBe('persisted');
    expect(readFileSync(path, 'utf8')).toContain('kms-envelope local key file v1');
  });

  it('refuses a key file readable by others', () => {
    const path = join(dir, 'open.key');
    LocalKms.createKeyFile(path);
    chmodSync(path, 0o644);
    expect(() => LocalKms.fromKeyFile(path)).toThrow(/readable by others/);
  });

  it('never overwrites an existing key file', () => {
    const path = join(dir, 'once.key');
    LocalKms.createKeyFile(path);
    const before = readFileSync(path, 'utf8');
    expect(() => LocalKms.createKeyFile(path)).toThrow(/EEXIST/);
    expect(readFileSync(path, 'utf8')).toBe(before);
  });

  it('gives a typed error for a missing or malformed key file, without its contents', () => {
    expect(() => LocalKms.fromKeyFile(join(dir, 'missing.key'))).toThrow(KmsError);
    const path = join(dir, 'bad.key');
    writeFileSync(path, JSON.stringify({ format: 'kms-envelope local key file v1', keys: { k: 'c2VjcmV0' } }), { mode: 0o600 });
    const error = (() => {
      try {
        LocalKms.fromKeyFile(path);
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(KmsError);
    expect(error!.message).not.toContain('c2VjcmV0');
  });

  it('reads a master key from the environment', async () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const kms = LocalKms.fromEnv({ KMS_ENVELOPE_LOCAL_KEY: key, KMS_ENVELOPE_LOCAL_KEY_ID: 'env-key' });
    expect(kms.keyIds).toEqual(['env-key']);
    const sealed = await createEnvelope({ kms }).seal('env');
    expect(await createEnvelope({ kms: LocalKms.fromEnv({ KMS_ENVELOPE_LOCAL_KEY: key, KMS_ENVELOPE_LOCAL_KEY_ID: 'env-key' }) }).openString(sealed)).toBe('env');
    expect(() => LocalKms.fromEnv({})).toThrow(/KMS_ENVELOPE_LOCAL_KEY is not set/);
    expect(() => LocalKms.fromEnv({ KMS_ENVELOPE_LOCAL_KEY: 'short' })).toThrow(KmsError);
  });

  it('binds the encryption context: decrypt with another context fails like a real KMS', async () => {
    const kms = LocalKms.generate();
    const a = canonicalContext({ table: 'users' });
    const b = canonicalContext({ table: 'orders' });
    const dataKey = await kms.generateDataKey({ keySpec: 'AES_256', context: a });
    const back = await kms.decryptDataKey({ keySpec: 'AES_256', keyId: dataKey.keyId, ciphertextBlob: dataKey.ciphertextBlob, context: a });
    expect(Buffer.from(back).equals(Buffer.from(dataKey.plaintextKey))).toBe(true);
    await expect(kms.decryptDataKey({ keySpec: 'AES_256', keyId: dataKey.keyId, ciphertextBlob: dataKey.ciphertextBlob, context: b })).rejects.toBeInstanceOf(
      DecryptionFailedError,
    );
    expect(dataKey.ciphertextBlob).toMatch(/^lk1\.[A-Za-z0-9_-]+$/);
    // The same context object, its JSON changed by a caller: bound to what it says now.
    const mutable = { ...canonicalContext({ table: 'users' }), json: '{"table":"users"}' };
    const key2 = await kms.generateDataKey({ keySpec: 'AES_256', context: mutable });
    const request = { keySpec: 'AES_256' as const, keyId: key2.keyId, ciphertextBlob: key2.ciphertextBlob, context: mutable };
    expect((await kms.decryptDataKey(request)).length).toBe(32);
    mutable.json = '{"table":"orders"}';
    await expect(kms.decryptDataKey(request)).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('binds the key id, and names an unknown one', async () => {
    const kms = new LocalKms({ one: new Uint8Array(32).fill(1), two: new Uint8Array(32).fill(1) });
    const ctx = canonicalContext({});
    const dataKey = await kms.generateDataKey({ keySpec: 'AES_128', context: ctx });
    expect(dataKey.plaintextKey.length).toBe(16);
    await expect(kms.decryptDataKey({ ...dataKey, keySpec: 'AES_128', keyId: 'two', context: ctx })).rejects.toBeInstanceOf(DecryptionFailedError);
    await expect(kms.decryptDataKey({ ...dataKey, keySpec: 'AES_128', keyId: 'three', context: ctx })).rejects.toThrow(/no master key "three"/);
  });

  it('rejects a malformed blob as a decryption failure', async () => {
    const kms = LocalKms.generate();
    for (const blob of ['', 'lk1.', 'lk1.!!!!', 'lk2.AAAA', `lk1.${'A'.repeat(80)}`]) {
      await expect(kms.decryptDataKey({ keySpec: 'AES_256', keyId: 'default', ciphertextBlob: blob, context: canonicalContext({}) })).rejects.toBeInstanceOf(
        DecryptionFailedError,
      );
    }
  });

  it('destroy() wipes the master keys', () => {
    const master = new Uint8Array(32).fill(9);
    const kms = new LocalKms({ k: master });
    kms.destroy();
    expect(master.every((b) => b === 0)).toBe(true);
  });
});
