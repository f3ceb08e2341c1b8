import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync as makeTempDir, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvelope, DecryptionFailedError, LocalKms } from '../../src/index.ts';
import { openFile, sealFile } from '../../src/node.ts';
import { WriteBehind } from '../../src/node/write-behind.ts';
import { hex } from '../helpers.ts';

const masterKey = Buffer.alloc(32, 9).toString('base64');
const kms = LocalKms.fromEnv({ KMS_ENVELOPE_LOCAL_KEY: masterKey });
const envelope = createEnvelope({ kms });
const context = { file: 'report' };
const dirs: string[] = [];
const mkdtempSync = (prefix: string): string => {
  const dir = makeTempDir(prefix);
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
const tempFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.kmse-tmp'));

describe('sealFile / openFile', () => {
  it('round-trips a file, reporting progress, with the output at mode 0600', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-files-'));
    const plaintext = Buffer.alloc(3 * 1024 * 1024 + 17, 0x5a);
    writeFileSync(join(dir, 'a'), plaintext);
    const progress: number[] = [];
    const sealed = await sealFile(envelope, join(dir, 'a'), join(dir, 'a.kmse'), { context, onProgress: (done) => progress.push(done) });
    expect(sealed.bytesRead).toBe(plaintext.length);
    expect(progress.at(-1)).toBe(plaintext.length);
    expect(statSync(join(dir, 'a.kmse')).mode & 0o777).toBe(0o600);
    expect(Buffer.from(await envelope.open(readFileSync(join(dir, 'a.kmse')))).equals(plaintext)).toBe(true);
    await openFile(envelope, join(dir, 'a.kmse'), join(dir, 'a.out'));
    expect(readFileSync(join(dir, 'a.out')).equals(plaintext)).toBe(true);
    expect(tempFiles(dir)).toEqual([]);
  });

  it('refuses to overwrite an existing destination unless asked', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-files-'));
    writeFileSync(join(dir, 'a'), 'new');
    writeFileSync(join(dir, 'dest'), 'old');
    await expect(sealFile(envelope, join(dir, 'a'), join(dir, 'dest'))).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(join(dir, 'dest'), 'utf8')).toBe('old');
    await sealFile(envelope, join(dir, 'a'), join(dir, 'dest'), { overwrite: true });
    expect(await envelope.openString(readFileSync(join(dir, 'dest')))).toBe('new');
  });

  it('a failed open leaves the destination untouched and no plaintext behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-files-'));
    writeFileSync(join(dir, 'a'), Buffer.alloc(100_000, 1));
    await sealFile(envelope, join(dir, 'a'), join(dir, 'a.kmse'), { context, detachedContext: true });
    const sealed = readFileSync(join(dir, 'a.kmse'));
    sealed[sealed.length - 1]! ^= 1;
    writeFileSync(join(dir, 'bad.kmse'), sealed);
    writeFileSync(join(dir, 'out'), 'previous');
    await expect(openFile(envelope, join(dir, 'bad.kmse'), join(dir, 'out'), { context, overwrite: true })).rejects.toBeInstanceOf(DecryptionFailedError);
    await expect(openFile(envelope, join(dir, 'bad.kmse'), join(dir, 'fresh'), { context })).rejects.toBeInstanceOf(DecryptionFailedError);
    await expect(openFile(envelope, join(dir, 'a.kmse'), join(dir, 'fresh'), { context: { file: 'other' } })).rejects.toBeInstanceOf(DecryptionFailedError);
    expect(readFileSync(join(dir, 'out'), 'utf8')).toBe('previous');
    expect(existsSync(join(dir, 'fresh'))).toBe(false);
    expect(tempFiles(dir)).toEqual([]);
  });

  it('a missing source is an ENOENT error and writes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-files-'));
    await expect(sealFile(envelope, join(dir, 'missing'), join(dir, 'out'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(readdirSync(dir)).toEqual([]);
  });

  it('SIGKILL in the middle of sealing leaves the destination absent or the previous complete file, never partial', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-kill-'));
    const big = join(dir, 'big');
    writeFileSync(big, Buffer.alloc(512 * 1024 * 1024, 0x33));
    const previous = await envelope.seal('the previous complete file', { context });
    writeFileSync(join(dir, 'kept.kmse'), previous);
    const script = `
      import { createEnvelope, LocalKms } from ${JSON.stringify(new URL('../../dist/index.js', import.meta.url).href)};
      import { sealFile } from ${JSON.stringify(new URL('../../dist/node.js', import.meta.url).href)};
      import { writeSync } from 'node:fs';
      const envelope = createEnvelope({ kms: LocalKms.fromEnv() });
      let told = false;
      await sealFile(envelope, process.argv[1], process.argv[2], {
        overwrite: true,
        // Midway, it says so and stops dead (the kill comes while it waits): not a race with the end.
        onProgress: (done) => { if (!told && done > 64 * 1024 * 1024) { told = true; writeSync(1, 'midway\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); } },
      });
      process.stdout.write('finished\\n');`;
    for (const dest of [join(dir, 'absent.kmse'), join(dir, 'kept.kmse')]) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, big, dest], {
        env: { ...process.env, KMS_ENVELOPE_LOCAL_KEY: masterKey },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      await new Promise<void>((resolve) =>
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('midway')) resolve();
        }),
      );
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      expect(out).not.toContain('finished');
      // The interrupted write is in a temporary file, not at the destination.
      expect(tempFiles(dir).length).toBeGreaterThan(0);
      if (dest.endsWith('absent.kmse')) {
        expect(existsSync(dest)).toBe(false);
      } else {
        expect(hex(readFileSync(dest))).toBe(hex(previous));
        expect(await envelope.openString(readFileSync(dest))).toBe('the previous complete file');
      }
    }
  }, 120_000);
});

describe('sealFile / openFile on worker threads', () => {
  it('write the same bytes as the single-threaded path, and open each other', async () => {
    const dir = mkdtempSync('/tmp/kmse-parallel-');
    const size = 5 * 1024 * 1024 + 777; // several 64-chunk batches and a short tail
    const plaintext = Buffer.alloc(size);
    for (let i = 0; i < size; i += 97) plaintext[i] = i & 0xff;
    writeFileSync(join(dir, 'p'), plaintext);
    const seed = () => {
      let n = 0;
      return (length: number) => Uint8Array.from({ length }, () => (n++ * 13) & 0xff);
    };
    const make = () => {
      const random = seed();
      return createEnvelope({ kms: new LocalKms({ k: new Uint8Array(32).fill(4) }, { randomBytes: random }), randomBytes: random });
    };
    await sealFile(make(), join(dir, 'p'), join(dir, 'single.kmse'), { context });
    await sealFile(make(), join(dir, 'p'), join(dir, 'parallel.kmse'), { context, parallel: { minBytes: 1, workers: 2 } });
    expect(hex(readFileSync(join(dir, 'parallel.kmse')))).toBe(hex(readFileSync(join(dir, 'single.kmse'))));
    await sealFile(envelope, join(dir, 'p'), join(dir, 'p.kmse'), { context, parallel: true });
    await openFile(envelope, join(dir, 'p.kmse'), join(dir, 'p.out'), { parallel: true });
    expect(readFileSync(join(dir, 'p.out')).equals(plaintext)).toBe(true);
  });

  it('a tampered chunk inside a worker batch fails the open and leaves nothing', async () => {
    const dir = mkdtempSync('/tmp/kmse-parallel-');
    writeFileSync(join(dir, 'p'), Buffer.alloc(3 * 1024 * 1024, 9));
    await sealFile(envelope, join(dir, 'p'), join(dir, 'p.kmse'), { context });
    const sealed = readFileSync(join(dir, 'p.kmse'));
    sealed[sealed.length - 2 * 1024 * 1024]! ^= 1; // inside the first worker batches, not the tail
    writeFileSync(join(dir, 'bad.kmse'), sealed);
    await expect(openFile(envelope, join(dir, 'bad.kmse'), join(dir, 'bad.out'), { parallel: true })).rejects.toBeInstanceOf(DecryptionFailedError);
    expect(existsSync(join(dir, 'bad.out'))).toBe(false);
    expect(tempFiles(dir)).toEqual([]);
  });
});

describe('write-behind', () => {
  /** A file handle that completes writes out of order and writes short, into `file`. */
  function fakeHandle(file: number[], failAt?: number) {
    let calls = 0;
    const later = <T>(value: () => T): Promise<T> =>
      new Promise((resolve, reject) =>
        setTimeout(() => {
          try {
            resolve(value());
          } catch (error) {
            reject(error);
          }
        }, Math.random() * 3),
      );
    const put = (bytes: Uint8Array, position: number): number => {
      if (++calls === failAt) throw Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' });
      const n = Math.max(1, Math.floor(bytes.length * Math.random())); // short on purpose
      for (let i = 0; i < n; i++) file[position + i] = bytes[i]!;
      return n;
    };
    return {
      writev: (parts: Uint8Array[], position: number) => later(() => ({ bytesWritten: put(Uint8Array.from(parts.flatMap((p) => [...p])), position) })),
      write: (bytes: Uint8Array, offset: number, length: number, position: number) =>
        later(() => ({ bytesWritten: put(bytes.subarray(offset, offset + length), position) })),
    };
  }

  it('writes every byte at its place whatever order and length the writes complete in', async () => {
    const file: number[] = [];
    const writes = new WriteBehind(fakeHandle(file) as never);
    const expected: number[] = [];
    for (let i = 0; i < 60; i++) {
      const piece = Uint8Array.from({ length: 1 + ((i * 37) % 50) }, (_, j) => (i * 7 + j) & 0xff);
      expected.push(...piece);
      await writes.write(i % 3 === 0 ? [piece.subarray(0, 3), piece.subarray(3)] : piece);
    }
    await writes.flush();
    expect(writes.written).toBe(expected.length);
    expect(hex(Uint8Array.from(file))).toBe(hex(Uint8Array.from(expected)));
  });

  it('throws the first failure, from a later write or from flush()', async () => {
    const writes = new WriteBehind(fakeHandle([], 5) as never);
    const attempt = async (): Promise<void> => {
      for (let i = 0; i < 200; i++) await writes.write(new Uint8Array(100));
      await writes.flush();
    };
    await expect(attempt()).rejects.toMatchObject({ code: 'ENOSPC' });
    await writes.settle();
  });
});
