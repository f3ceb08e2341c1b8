/**
 * `kms-envelope key-store export|import` (src/tools/cli-keystore.ts), in process: a JSON store
 * exported (wrapped keys only), imported into an empty store that then opens the records, a
 * second import creating nothing, a conflict left as it is (exit 4).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createEnvelope, LocalKms } from '../../src/index.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { JsonFileKeyStore } from '../../src/node.ts';
import { keyStoreCommand } from '../../src/tools/cli-keystore.ts';

const dir = mkdtempSync(join(tmpdir(), 'kmse-key-store-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());
const help = { provider: () => LocalKms.generate(), providerOptions: {}, help: () => 0 };

describe('kms-envelope key-store', () => {
  it('exports, imports into an empty store that opens the records, imports again without change, and reports a conflict', async () => {
    const kms = LocalKms.generate();
    const source = join(dir, 'source.json');
    const hierarchy = createKeyHierarchy({ store: new JsonFileKeyStore(source), kms });
    const sealed = await createEnvelope({ hierarchy, partition: 't1' }).seal('backed up', { context: { r: '1' } });
    await hierarchy.rotate('t1');
    await hierarchy.warm(['t2']);
    await hierarchy.close();

    const backup = join(dir, 'backup.json');
    expect(await keyStoreCommand(['export', '--store', source, '-o', backup], help)).toBe(0);
    const exported = JSON.parse(readFileSync(backup, 'utf8'));
    expect(exported.keys.map((k: { partition: string; version: number }) => `${k.partition}#${k.version}`)).toEqual(['t1#1', 't1#2', 't2#1']);
    await expect(keyStoreCommand(['export', '--store', source, '-o', backup], help)).rejects.toMatchObject({ code: 'EEXIST' });

    const out: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: string) => void out.push(line));
    const restored = join(dir, 'restored.json');
    expect(await keyStoreCommand(['import', '--store', restored, '--create', backup], help)).toBe(0);
    expect(JSON.parse(out[0]!)).toEqual({ created: 3, present: 0, conflicts: [], shredded: [], tombstones: 0 });
    expect(await keyStoreCommand(['import', '--store', restored, '--create', backup], help)).toBe(0);
    expect(JSON.parse(out[1]!)).toEqual({ created: 0, present: 3, conflicts: [], shredded: [], tombstones: 0 });
    const reader = createEnvelope({ hierarchy: createKeyHierarchy({ store: new JsonFileKeyStore(restored), kms }), partition: 't1' });
    expect(await reader.openString(sealed, { context: { r: '1' } })).toBe('backed up');

    const clash = join(dir, 'clash.json');
    await new JsonFileKeyStore(clash).createVersion({ ...exported.keys[0], ciphertextBlob: 'another' });
    expect(await keyStoreCommand(['import', '--store', clash, backup], help)).toBe(4);
    expect(JSON.parse(out[2]!).conflicts).toEqual([{ partition: 't1', version: 1 }]);
  });

  it('refuses bad usage and a file that is not an export as usage errors', async () => {
    await expect(keyStoreCommand([], help)).rejects.toMatchObject({ name: 'UsageError' });
    await expect(keyStoreCommand(['export'], help)).rejects.toMatchObject({ name: 'UsageError' });
    await expect(keyStoreCommand(['import', '--store', join(dir, 's.json'), '--create', join(dir, 'absent')], help)).rejects.toMatchObject({ name: 'UsageError' });
    await expect(keyStoreCommand(['import', '--store', join(dir, 's.json'), '--create', join(dir, 'source.json')], help)).rejects.toMatchObject({ name: 'UsageError' });
  });
});
