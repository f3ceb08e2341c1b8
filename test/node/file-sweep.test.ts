/**
 * rewrapTree() over files and directory trees (LocalKms with two master keys): every sealed file
 * moved to the new key with its payload bytes unchanged, already-current files left alone, a
 * checkpoint that lets a second run skip without reading, failures reported with reasons (a file
 * that changes during its rewrap, a damaged header, a file of another key provider), non-sealed
 * files and links skipped, events for progress, and a stop that leaves every file whole.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEnvelope, inspect, LocalKms } from '../../src/index.ts';
import type { KeyProvider } from '../../src/kms/key-provider.ts';
import { type FileSweepEvent, rewrapTree } from '../../src/node.ts';

const masterKeys = () => ({ old: new Uint8Array(randomBytes(32)), new: new Uint8Array(randomBytes(32)) });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmse-sweep-files-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function sealedTree(kms: LocalKms, count: number): Promise<Map<string, Uint8Array>> {
  const envelope = createEnvelope({ kms });
  const files = new Map<string, Uint8Array>();
  mkdirSync(join(dir, 'a', 'b'), { recursive: true });
  for (let i = 0; i < count; i++) {
    const path = join(dir, i % 3 === 0 ? 'a' : i % 3 === 1 ? join('a', 'b') : '', `f${i}.kmse`);
    const sealed = await envelope.seal(randomBytes(100 + i * 997), { context: { file: String(i) } });
    writeFileSync(path, sealed);
    files.set(path, sealed);
  }
  await envelope.close();
  return files;
}

const keyOf = (path: string) => inspect(readFileSync(path)).keyId;

describe('rewrapTree', () => {
  it('moves every sealed file under the directories to the new key, payload bytes unchanged; a second run finds them current', async () => {
    const kms = new LocalKms(masterKeys(), { defaultKeyId: 'old' });
    const files = await sealedTree(kms, 12);
    writeFileSync(join(dir, 'notes.txt'), 'not sealed');
    symlinkSync(join(dir, 'notes.txt'), join(dir, 'link'));
    const envelope = createEnvelope({ kms });
    const events: FileSweepEvent[] = [];
    const summary = await rewrapTree(envelope, [dir], { toKeyId: 'new', onEvent: (e) => events.push(e) });
    expect(summary).toMatchObject({ rewrapped: 12, current: 0, failed: [], stopped: false });
    expect(summary.skipped.map((s) => s.reason).sort()).toEqual(['a symbolic link (not followed)', 'not a sealed file']);
    for (const [path, before] of files) {
      const after = new Uint8Array(readFileSync(path));
      expect(keyOf(path)).toBe('new');
      const oldHeader = inspect(before).headerLength;
      const newHeader = inspect(after).headerLength;
      expect(Buffer.from(after.subarray(newHeader)).equals(Buffer.from(before.subarray(oldHeader)))).toBe(true);
      const i = /f(\d+)\.kmse$/.exec(path)![1]!;
      expect((await envelope.open(after, { context: { file: i } })).length).toBe(100 + Number(i) * 997);
    }
    const start = events[0];
    expect(start).toMatchObject({ type: 'start', files: 13 });
    const progress = events.filter((e) => e.type === 'progress');
    expect(progress.at(-1)).toMatchObject({ files: 13, totalFiles: 13 });
    expect(progress.at(-1)!.type === 'progress' && progress.at(-1)!.bytes).toBe(start!.type === 'start' && start!.bytes);
    const again = await rewrapTree(envelope, [dir], { toKeyId: 'new' });
    expect(again).toMatchObject({ rewrapped: 0, current: 12, failed: [] });
  });

  it('a checkpoint lets a second run skip the files done without reading them, unless they changed since', async () => {
    const kms = new LocalKms(masterKeys(), { defaultKeyId: 'old' });
    const files = [...(await sealedTree(kms, 6)).keys()];
    const checkpoint = join(dir, 'state', 'rewrap.checkpoint');
    let reads = 0;
    const counting: KeyProvider = { id: kms.id, generateDataKey: (r) => kms.generateDataKey(r), decryptDataKey: (r) => kms.decryptDataKey(r), reEncryptDataKey: (r) => (reads++, kms.reEncryptDataKey(r)) };
    const envelope = createEnvelope({ kms: counting });
    const first = await rewrapTree(envelope, [dir], { toKeyId: 'new', checkpoint });
    expect(first.rewrapped).toBe(6);
    expect(reads).toBe(6);
    const events: FileSweepEvent[] = [];
    // One file sealed again under the old key since (it changed): looked at and rewrapped again.
    writeFileSync(files[2]!, await createEnvelope({ kms }).seal('changed', { context: { file: '2' } }));
    const second = await rewrapTree(envelope, [dir], { toKeyId: 'new', checkpoint, onEvent: (e) => events.push(e) });
    expect(second).toMatchObject({ rewrapped: 1, current: 5 });
    expect(events.filter((e) => e.type === 'file' && e.fromCheckpoint).length).toBe(5);
    expect(reads).toBe(7);
    // A torn last line (a crash while appending) is ignored.
    appendFileSync(checkpoint, '{"path":"/x", "toK');
    expect((await rewrapTree(envelope, [dir], { toKeyId: 'new', checkpoint })).current).toBe(6);
  });

  it('failures are reported with reasons and the files left as they were: changed during the rewrap, damaged, another provider', async () => {
    const kms = new LocalKms(masterKeys(), { defaultKeyId: 'old' });
    const files = [...(await sealedTree(kms, 4)).keys()].sort();
    const [changing, damaged, other] = files;
    // The file changes while the KMS call is under way (a writer appends to it).
    const racing: KeyProvider = {
      id: kms.id,
      generateDataKey: (r) => kms.generateDataKey(r),
      decryptDataKey: (r) => kms.decryptDataKey(r),
      async reEncryptDataKey(r) {
        const result = await kms.reEncryptDataKey(r);
        if (r.context.json.includes(`"${/f(\d+)\.kmse$/.exec(changing!)![1]}"`)) appendFileSync(changing!, 'more');
        return result;
      },
    };
    const bytes = readFileSync(damaged!);
    const at = bytes.indexOf('old') + 1;
    bytes[at] = bytes[at]! ^ 1; // the key id in the header: the KMS cannot find the key
    writeFileSync(damaged!, bytes);
    writeFileSync(other!, await createEnvelope({ kms: LocalKms.generate({ keyId: 'elsewhere' }) }).seal('x'));
    const before = new Map(files.map((f) => [f, readFileSync(f)]));
    const summary = await rewrapTree(createEnvelope({ kms: racing }), [dir], { toKeyId: 'new' });
    expect(summary.rewrapped).toBe(1);
    const byPath = new Map(summary.failed.map((f) => [f.path, f]));
    expect(byPath.get(changing!)).toMatchObject({ code: 'ERR_FILE_CHANGED' });
    expect(byPath.get(damaged!)?.code).toMatch(/^ERR_/);
    expect(byPath.get(other!)?.code).toMatch(/^ERR_/);
    for (const f of [damaged!, other!]) expect(readFileSync(f).equals(before.get(f)!)).toBe(true);
    expect(readFileSync(changing!).subarray(0, before.get(changing!)!.length).equals(before.get(changing!)!)).toBe(true);
    expect(readFileSync(changing!).length).toBe(before.get(changing!)!.length + 4); // the writer's bytes kept
  });

  it('stops on the signal: no file started after, every file whole (old or new key), no temporary file left', async () => {
    const kms = new LocalKms(masterKeys(), { defaultKeyId: 'old' });
    const files = await sealedTree(kms, 30);
    const controller = new AbortController();
    const envelope = createEnvelope({ kms });
    const summary = await rewrapTree(envelope, [dir], {
      toKeyId: 'new',
      concurrency: 2,
      signal: controller.signal,
      onEvent: (e) => e.type === 'file' && e.outcome === 'rewrapped' && controller.abort(),
    });
    expect(summary.stopped).toBe(true);
    expect(summary.rewrapped).toBeGreaterThanOrEqual(1);
    expect(summary.rewrapped).toBeLessThan(30);
    let moved = 0;
    for (const [path] of files) {
      const key = keyOf(path);
      expect(['old', 'new']).toContain(key);
      if (key === 'new') moved++;
      const i = /f(\d+)\.kmse$/.exec(path)![1]!;
      await envelope.open(readFileSync(path), { context: { file: i } });
    }
    expect(moved).toBe(summary.rewrapped);
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.includes('tmp'))).toEqual([]);
  });

  it('refuses bad arguments with typed errors', async () => {
    const envelope = createEnvelope({ kms: LocalKms.generate() });
    await expect(rewrapTree(envelope, [], { toKeyId: 'x' })).rejects.toThrow(TypeError);
    await expect(rewrapTree(envelope, [dir], { toKeyId: '' })).rejects.toThrow(TypeError);
    await expect(rewrapTree(envelope, [dir], { toKeyId: 'x', concurrency: 0 })).rejects.toThrow(RangeError);
    await expect(rewrapTree(envelope, [join(dir, 'missing')], { toKeyId: 'x' })).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
