/**
 * Cancellation of the file functions (src/node.ts, src/node/files.ts, src/node/atomic.ts): an
 * abort rejects with the signal's reason, removes the temporary file, leaves the destination as it
 * was, and wipes the keys; a signal already aborted rejects before any KMS call or temporary file.
 */
import { mkdtempSync as makeTempDir, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, LocalKms, TencentKms } from '../../src/index.ts';
import { openFile, openInto, sealFile, sealInto, sealToFile } from '../../src/node.ts';
import { type RunningEmulator, startEmulator } from '../../src/tools/emulator/index.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = makeTempDir(join(tmpdir(), 'kmse-abort-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
const tempFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.kmse-tmp'));
const allWiped = (keys: Uint8Array[]) => keys.length > 0 && keys.every((k) => k.every((b) => b === 0));

/** A file of `mib` MiB: 4 pieces of 256 KiB per MiB, so an abort at the first progress call lands mid-file. */
function largeFile(dir: string, mib: number): string {
  const path = join(dir, 'large');
  writeFileSync(path, Buffer.alloc(mib * 1024 * 1024, 0x3c));
  return path;
}

describe('cancellation of the file functions', { timeout: 5000 }, () => {
  it('abort mid-sealFile of a large file: rejects with the reason, no temporary file, no destination, keys wiped', async () => {
    const dir = tempDir();
    const kms = new InstrumentedProvider(LocalKms.generate());
    const envelope = createEnvelope({ kms });
    const controller = new AbortController();
    const reason = new Error('stop sealing');
    let progressed = 0;
    const sealing = sealFile(envelope, largeFile(dir, 8), join(dir, 'large.kmse'), {
      signal: controller.signal,
      onProgress: (done, total) => {
        progressed = done;
        if (done < total) controller.abort(reason);
      },
    });
    await expect(sealing).rejects.toBe(reason);
    expect(progressed).toBeLessThan(8 * 1024 * 1024);
    expect(readdirSync(dir)).toEqual(['large']);
    expect(allWiped(kms.handedOut)).toBe(true);
  });

  it('abort mid-openFile: rejects with the reason, no temporary file, the destination untouched', async () => {
    const dir = tempDir();
    const kms = new InstrumentedProvider(LocalKms.generate());
    const envelope = createEnvelope({ kms });
    await sealFile(envelope, largeFile(dir, 8), join(dir, 'large.kmse'));
    writeFileSync(join(dir, 'out'), 'previous');
    const controller = new AbortController();
    const reason = new Error('stop opening');
    const opening = openFile(envelope, join(dir, 'large.kmse'), join(dir, 'out'), {
      overwrite: true,
      signal: controller.signal,
      onProgress: (done, total) => {
        if (done < total) controller.abort(reason);
      },
    });
    await expect(opening).rejects.toBe(reason);
    expect(readdirSync(dir).sort()).toEqual(['large', 'large.kmse', 'out']);
    expect(allWiped(kms.handedOut)).toBe(true);
  });

  it('a signal already aborted rejects sealFile, openFile, sealToFile, sealInto and openInto before any KMS call or temporary file', async () => {
    const dir = tempDir();
    const kms = new InstrumentedProvider(LocalKms.generate());
    const envelope = createEnvelope({ kms });
    writeFileSync(join(dir, 'a'), 'small');
    await sealFile(envelope, join(dir, 'a'), join(dir, 'a.kmse'));
    const before = { ...kms.calls };
    const reason = new Error('already aborted');
    const signal = AbortSignal.abort(reason);
    const pieces = async function* () {
      yield new Uint8Array(3);
    };
    const sink = async () => {};
    await expect(sealFile(envelope, join(dir, 'a'), join(dir, 'b.kmse'), { signal })).rejects.toBe(reason);
    await expect(openFile(envelope, join(dir, 'a.kmse'), join(dir, 'b'), { signal })).rejects.toBe(reason);
    await expect(sealToFile(envelope, pieces(), join(dir, 'c.kmse'), { signal })).rejects.toBe(reason);
    await expect(sealInto(envelope, pieces(), sink, { signal })).rejects.toBe(reason);
    await expect(openInto(envelope, join(dir, 'a.kmse'), sink, { signal })).rejects.toBe(reason);
    expect(kms.calls).toEqual(before);
    expect(readdirSync(dir).sort()).toEqual(['a', 'a.kmse']);
  });

  it('sealToFile: an abort while waiting for the next piece rejects with the reason and removes the temporary file', async () => {
    const dir = tempDir();
    const envelope = createEnvelope({ kms: LocalKms.generate() });
    const controller = new AbortController();
    const reason = new Error('input never came');
    let stall: () => void = () => {};
    const pieces = async function* () {
      yield new Uint8Array(1000);
      await new Promise<void>((resolve) => (stall = resolve)); // a pipe that goes quiet
      yield new Uint8Array(1000);
    };
    const sealing = sealToFile(envelope, pieces(), join(dir, 'out.kmse'), { signal: controller.signal, onProgress: () => setTimeout(() => controller.abort(reason), 10) });
    await expect(sealing).rejects.toBe(reason);
    stall();
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('cancellation of the file functions through the Tencent transport (emulator, 127.0.0.1)', { timeout: 5000 }, () => {
  let emulator: RunningEmulator;
  let keyId: string;
  beforeAll(async () => {
    emulator = await startEmulator();
    keyId = emulator.createKey('files-abort');
  });
  afterAll(() => emulator.close());

  it('abort during a slow emulator call (latency fault) rejects sealFile and openFile promptly with the reason and leaves no temporary file', async () => {
    const dir = tempDir();
    const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, timeoutMs: 20_000, deadlineMs: 30_000 });
    const envelope = createEnvelope({ kms });
    writeFileSync(join(dir, 'a'), Buffer.alloc(100_000, 7));
    await sealFile(envelope, join(dir, 'a'), join(dir, 'a.kmse'));
    emulator.setFaults({ latencyMs: 20_000 });
    try {
      for (const run of [
        (signal: AbortSignal) => sealFile(envelope, join(dir, 'a'), join(dir, 'b.kmse'), { signal }),
        (signal: AbortSignal) => openFile(envelope, join(dir, 'a.kmse'), join(dir, 'b'), { signal }),
      ]) {
        const controller = new AbortController();
        const started = Date.now();
        const pending = run(controller.signal);
        await new Promise((resolve) => setTimeout(resolve, 50));
        const reason = new Error('user pressed cancel');
        controller.abort(reason);
        await expect(pending).rejects.toBe(reason);
        expect(Date.now() - started).toBeLessThan(10_000); // the 20 s answer is not waited for
        expect(tempFiles(dir)).toEqual([]);
      }
      expect(readdirSync(dir).sort()).toEqual(['a', 'a.kmse']);
    } finally {
      emulator.setFaults({});
    }
  });
});
