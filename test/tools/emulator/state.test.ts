/** The --state file across restarts: generated credentials kept, aliases never duplicated. */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startEmulator } from '../../../src/tools/emulator/index.ts';
import { createEnvelope } from '../../../src/index.ts';
import { TencentKms } from '../../../src/kms/tencent.ts';
import { TencentKmsV2 } from '../../../src/kms/tencent-v2.ts';

let dir: string;
let statePath: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kms-emulator-state-'));
  statePath = join(dir, 'state.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('generated credentials', () => {
  it('are written to the state file (mode 0600) and used again after a restart', async () => {
    const first = await startEmulator({ statePath });
    const credentials = first.credentials[0]!;
    const keyId = first.createKey('kept');
    const sealed = await createEnvelope({ kms: new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: first.url, credentials }) }).seal('same keys');
    await first.close();
    expect(statSync(statePath).mode & 0o777).toBe(0o600);
    const second = await startEmulator({ statePath });
    try {
      expect(second.credentials).toEqual([credentials]);
      const kms = new TencentKms({ region: 'ap-guangzhou', endpoint: second.url, credentials });
      expect(await createEnvelope({ kms }).openString(sealed)).toBe('same keys');
    } finally {
      await second.close();
    }
  });

  it('are kept even when no key was made before the restart', async () => {
    const first = await startEmulator({ statePath });
    await first.close();
    const second = await startEmulator({ statePath });
    await second.close();
    expect(second.credentials).toEqual(first.credentials);
  });

  it('given credentials are used but never written to the state file', async () => {
    const generated = await startEmulator({ statePath });
    await generated.close();
    const given = { secretId: 'AKIDgiven', secretKey: 'given-secret-key-never-stored' };
    const withGiven = await startEmulator({ statePath, credentials: [given] });
    withGiven.createKey('with-given');
    await withGiven.close();
    expect(withGiven.credentials).toEqual([given]);
    expect(readFileSync(statePath, 'utf8')).not.toContain(given.secretKey);
    const again = await startEmulator({ statePath });
    await again.close();
    expect(again.credentials).toEqual(generated.credentials);
  });
});

describe('aliases', () => {
  it('CreateKey with an alias in use is refused: AliasAlreadyExists (API 3.0), 4000 (legacy), also after a restart', async () => {
    const first = await startEmulator({ statePath });
    const credentials = first.credentials[0]!;
    const v3 = (url: string) => new TencentKms({ region: 'ap-guangzhou', endpoint: url, credentials, retry: { limit: 0 } });
    const v2 = (url: string) => new TencentKmsV2({ region: 'gz', endpoint: `${url}/v2/index.php`, credentials, retry: { limit: 0 } });
    await v3(first.url).createKey({ alias: 'only-once' });
    await expect(v3(first.url).createKey({ alias: 'only-once' })).rejects.toMatchObject({ kmsCode: 'InvalidParameterValue.AliasAlreadyExists' });
    await expect(v2(first.url).createKey({ alias: 'only-once' })).rejects.toMatchObject({ kmsCode: '4000' });
    await first.close();
    const second = await startEmulator({ statePath });
    try {
      await expect(v3(second.url).createKey({ alias: 'only-once' })).rejects.toMatchObject({ kmsCode: 'InvalidParameterValue.AliasAlreadyExists' });
      const listed = await v3(second.url).call('ListKeys', { Limit: 100 });
      expect(listed.TotalCount).toBe(1);
    } finally {
      await second.close();
    }
  });

  it('keys without an alias (the legacy API allows it) are not duplicates of each other', async () => {
    const emulator = await startEmulator();
    try {
      const v2 = new TencentKmsV2({ region: 'gz', endpoint: `${emulator.url}/v2/index.php`, credentials: emulator.credentials[0]! });
      const a = await v2.createKey({});
      const b = await v2.createKey({});
      expect(a).not.toBe(b);
    } finally {
      await emulator.close();
    }
  });

  it('createKey(alias) in-process names the existing key after a restart, as `emulator --key-alias` does each start', async () => {
    const first = await startEmulator({ statePath });
    const keyId = first.createKey('cli-alias');
    expect(first.createKey('cli-alias')).toBe(keyId);
    await first.close();
    const second = await startEmulator({ statePath });
    try {
      expect(second.createKey('cli-alias')).toBe(keyId);
      const state = JSON.parse(readFileSync(statePath, 'utf8')) as { keys: { alias: string }[] };
      expect(state.keys.filter((k) => k.alias === 'cli-alias')).toHaveLength(1);
    } finally {
      await second.close();
    }
  });
});
