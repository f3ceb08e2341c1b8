/**
 * rewrapFile (src/node/rewrap-file.ts): the header's wrapped-key section replaced in place, the
 * payload copied byte for byte and never decrypted, the file replaced atomically; a file that
 * changes meanwhile is left alone with FileChangedError.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvelope, FileChangedError, LocalKms } from '../../src/index.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../../src/hierarchy.ts';
import type { KeyProvider, ReEncryptDataKeyRequest } from '../../src/index.ts';
import { inspectFile, openFile, rewrapFile, sealFile } from '../../src/node.ts';

const dir = mkdtempSync(join(tmpdir(), 'kmse-rewrap-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const path = (name: string) => join(dir, `${++n}-${name}`);

function twoKeys(): LocalKms {
  return new LocalKms({ old: randomBytes(32), new: randomBytes(32) }, { defaultKeyId: 'old' });
}

async function sealedFile(kms: KeyProvider, size: number, format: 1 | 2 = 1): Promise<{ file: string; plain: string; plaintext: Buffer }> {
  const plain = path('plain');
  const plaintext = randomBytes(size);
  writeFileSync(plain, plaintext);
  const file = path('sealed');
  await sealFile(createEnvelope({ kms, format }), plain, file, { context: { file: 'f' } });
  return { file, plain, plaintext };
}

const leftovers = () => readdirSync(dir).filter((f) => f.endsWith('.kmse-tmp'));

describe('rewrapFile', () => {
  it('replaces only the header: the payload bytes are identical, the file opens under the new key, mode kept, no temporary file left', async () => {
    for (const format of [1, 2] as const) {
      const kms = twoKeys();
      const { file, plaintext } = await sealedFile(kms, 3 * 1024 * 1024 + 17, format);
      chmodSync(file, 0o640);
      const before = readFileSync(file);
      const infoBefore = await inspectFile(file);
      const result = await rewrapFile(createEnvelope({ kms }), file, { toKeyId: 'new' });
      const after = readFileSync(file);
      expect(result.payloadLength).toBe(before.length - infoBefore.headerLength);
      expect(after.subarray(result.newHeaderLength).equals(before.subarray(result.oldHeaderLength))).toBe(true);
      const info = await inspectFile(file);
      expect(info).toMatchObject({ keyId: 'new', version: format, plaintextLength: plaintext.length });
      expect(statSync(file).mode & 0o777).toBe(0o640);
      const out = path('opened');
      await openFile(createEnvelope({ kms }), file, out, { context: { file: 'f' } });
      expect(readFileSync(out).equals(plaintext)).toBe(true);
      expect(leftovers()).toEqual([]);
    }
  });

  it('never decrypts the payload: a file whose payload was damaged is rewrapped as it is (and still fails to open)', async () => {
    const kms = twoKeys();
    const { file } = await sealedFile(kms, 200_000);
    const bytes = readFileSync(file);
    bytes[bytes.length - 100]! ^= 1;
    writeFileSync(file, bytes);
    const { newHeaderLength, oldHeaderLength } = await rewrapFile(createEnvelope({ kms }), file, { toKeyId: 'new' });
    expect(readFileSync(file).subarray(newHeaderLength).equals(bytes.subarray(oldHeaderLength))).toBe(true);
    await expect(openFile(createEnvelope({ kms }), file, path('never'), { context: { file: 'f' } })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });

  it('leaves a file that changed while the KMS call ran as it is (FileChangedError), with no temporary file', async () => {
    const kms = twoKeys();
    const { file } = await sealedFile(kms, 100_000);
    // A provider whose ReEncrypt answers while another writer appends to the file.
    const meddling: KeyProvider = {
      id: kms.id,
      generateDataKey: (r) => kms.generateDataKey(r),
      decryptDataKey: (r) => kms.decryptDataKey(r),
      reEncryptDataKey: async (r: ReEncryptDataKeyRequest) => {
        const result = await kms.reEncryptDataKey(r);
        appendFileSync(file, 'appended by another writer');
        return result;
      },
    };
    const error = await rewrapFile(createEnvelope({ kms: meddling }), file, { toKeyId: 'new' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileChangedError);
    expect(error).toMatchObject({ code: 'ERR_FILE_CHANGED', path: file });
    expect(readFileSync(file).subarray(-26).toString()).toBe('appended by another writer');
    expect((await inspectFile(file)).keyId).toBe('old');
    expect(leftovers()).toEqual([]);
  });

  it('refuses what it cannot rewrap with typed errors and leaves the file untouched: a hierarchy file, not a sealed file, an aborted call', async () => {
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() });
    const plain = path('plain');
    writeFileSync(plain, 'tenant data');
    const file = path('sealed');
    await sealFile(createEnvelope({ hierarchy, partition: 't' }), plain, file);
    const before = readFileSync(file);
    await expect(rewrapFile(createEnvelope({ kms: twoKeys() }), file, { toKeyId: 'new' })).rejects.toMatchObject({ code: 'ERR_KEY_PROVIDER_MISMATCH' });
    expect(readFileSync(file).equals(before)).toBe(true);
    await expect(rewrapFile(createEnvelope({ kms: twoKeys() }), plain, { toKeyId: 'new' })).rejects.toMatchObject({ code: 'ERR_HEADER_MALFORMED' });
    const kms = twoKeys();
    const { file: sealed } = await sealedFile(kms, 1000);
    const original = readFileSync(sealed);
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(rewrapFile(createEnvelope({ kms }), sealed, { toKeyId: 'new', signal: controller.signal })).rejects.toThrow('stop');
    expect(readFileSync(sealed).equals(original)).toBe(true);
    expect(leftovers()).toEqual([]);
  });
});
