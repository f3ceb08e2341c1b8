import { describe, expect, it } from 'vitest';
import { canonicalContext } from '../../src/core/context.ts';
import { createEnvelope, DecryptionFailedError, KmsError, LocalKms } from '../../src/index.ts';

describe('LocalKms', () => {
  it('parses key-file text: a typed error for malformed text, never with its contents', () => {
    const text = LocalKms.newKeyFileText({ keyId: 'k1' }).text;
    expect(LocalKms.fromKeyFileText(text, 'a.key').keyIds).toEqual(['k1']);
    for (const bad of ['{', '{}', JSON.stringify({ format: 'kms-envelope local key file v1', keys: { k: 'c2VjcmV0' } })]) {
      const error = (() => {
        try {
          LocalKms.fromKeyFileText(bad, 'bad.key');
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(KmsError);
      expect(error!.message).toContain('bad.key');
      expect(error!.message).not.toContain('c2VjcmV0');
    }
  });

  it('names a new key by a fingerprint of the key: two keys never share an id', () => {
    const a = LocalKms.newKeyFileText();
    const b = LocalKms.newKeyFileText();
    expect(a.keyId).toMatch(/^local-[A-Za-z0-9_-]{16}$/);
    expect(a.keyId).not.toBe(b.keyId);
    expect(LocalKms.fromKeyFileText(a.text, 'a.key').keyIds).toEqual([a.keyId]);
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
      await expect(kms.decryptDataKey({ keySpec: 'AES_256', keyId: kms.keyIds[0]!, ciphertextBlob: blob, context: canonicalContext({}) })).rejects.toBeInstanceOf(
        DecryptionFailedError,
      );
    }
  });

  it('generate() names its key by a fingerprint, so another process\'s key is named in the error', async () => {
    const [a, b] = [LocalKms.generate(), LocalKms.generate()];
    expect(a.keyIds[0]).toMatch(/^memory-[A-Za-z0-9_-]{16}$/);
    expect(a.keyIds[0]).not.toBe(b.keyIds[0]);
    expect(LocalKms.generate({ keyId: 'mine' }).keyIds).toEqual(['mine']);
    const dataKey = await a.generateDataKey({ keySpec: 'AES_256', context: canonicalContext({}) });
    await expect(b.decryptDataKey({ ...dataKey, keySpec: 'AES_256', context: canonicalContext({}) })).rejects.toThrow(a.keyIds[0]!);
  });

  it('destroy() wipes the master keys', () => {
    const master = new Uint8Array(32).fill(9);
    const kms = new LocalKms({ k: master });
    kms.destroy();
    expect(master.every((b) => b === 0)).toBe(true);
  });
});
