/**
 * `kms-envelope verify` (src/tools/cli-verify.ts), in process: every key version of a JSON key
 * store checked through the KMS; exit 0 when all decrypt, 3 (KMS) naming each one that does not.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { TencentKms } from '../../src/index.ts';
import { JsonFileKeyStore } from '../../src/node.ts';
import { verifyCommand } from '../../src/tools/cli-verify.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

const dir = mkdtempSync(join(tmpdir(), 'kmse-verify-'));
let emulator: RunningEmulator;
let keyId: string;
beforeAll(async () => ({ emulator, keyId } = await useEmulator({ alias: 'verify' })));
afterAll(async () => {
  await emulator.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => vi.restoreAllMocks());

const kms = () => new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, retry: { baseDelayMs: 1, maxDelayMs: 5 } });
const deps = { provider: () => kms(), providerOptions: { kms: { type: 'string' as const } }, help: () => 0 };

describe('kms-envelope verify', () => {
  it('exits 0 when every version decrypts and 3 naming each version that does not; --json gives the report', async () => {
    const store = join(dir, 'keys.json');
    const hierarchy = createKeyHierarchy({ store: new JsonFileKeyStore(store), kms: kms() });
    await hierarchy.warm(['a', 'b']);
    await hierarchy.rotate('a');
    await hierarchy.close();
    const out: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: string) => void out.push(line));
    expect(await verifyCommand(['--store', store], deps)).toBe(0);
    expect(out.at(-1)).toBe('3 key versions checked: 3 decrypt, 0 do not');
    await kms().disableKey(keyId);
    try {
      out.length = 0;
      expect(await verifyCommand(['--store', store, '--partition', 'a'], deps)).toBe(3);
      expect(out).toEqual([
        `FAILED a version 1 (master key ${keyId}): ResourceUnavailable.CmkDisabled`,
        `FAILED a version 2 (master key ${keyId}): ResourceUnavailable.CmkDisabled`,
        '2 key versions checked: 0 decrypt, 2 do not',
      ]);
      out.length = 0;
      expect(await verifyCommand(['--store', store, '--json'], deps)).toBe(3);
      expect(JSON.parse(out[0]!)).toMatchObject({ checked: 3, ok: 0 });
    } finally {
      await kms().enableKey(keyId);
    }
  });

  it('refuses a missing --store and stray arguments as usage errors', async () => {
    await expect(verifyCommand([], deps)).rejects.toMatchObject({ name: 'UsageError' });
    await expect(verifyCommand(['--store', 'x', 'extra'], deps)).rejects.toMatchObject({ name: 'UsageError' });
  });
});
