/**
 * Files that appear whole or not at all: written to a temporary file (mode 0600) beside the
 * destination, fsynced, then renamed over it (or hard-linked into place when the destination must
 * not be replaced, so an existing file is never overwritten by accident), and the folder fsynced.
 * On any error the temporary file is removed and the destination is untouched.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { link, lstat, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { throwIfAborted } from '../core/abort.ts';
import { WriteBehind } from './write-behind.ts';

/** Where sealed or opened bytes go, in order: a file being written, stdout, or anything else. */
export type Sink = (bytes: Uint8Array | readonly Uint8Array[]) => Promise<void>;

export interface AtomicWriteOptions {
  /** Replace an existing destination; default false (an existing destination is an EEXIST error). */
  overwrite?: boolean;
  /** The file's mode; default 0o600. */
  mode?: number;
  /**
   * Cancels the write: an abort before the file is published rejects with the signal's reason and
   * removes the temporary file (`produce` should stop on it too); already aborted, nothing is created.
   */
  signal?: AbortSignal | undefined;
}

function existsError(dest: string): Error {
  return Object.assign(new Error(`${dest} exists: pass { overwrite: true } to replace it`), { code: 'EEXIST' });
}

/** A hidden temporary name beside `dest`, recognisable if a killed process leaves it behind. */
function temporaryPath(dest: string): string {
  return join(dirname(dest), `.${basename(dest)}.${randomBytes(6).toString('hex')}.kmse-tmp`);
}

/** Fails early with EEXIST when `dest` exists and may not be replaced. */
export async function checkDestination(dest: string, overwrite: boolean): Promise<void> {
  if (!overwrite && (await lstat(dest).then(() => true, () => false))) throw existsError(dest);
}

/**
 * Writes through `produce` into a temporary file beside `dest`, then publishes it atomically.
 * `produce` gets a write function and returns when all is written. Returns the bytes written.
 */
export async function writeAtomically(dest: string, options: AtomicWriteOptions, produce: (write: Sink) => Promise<void>): Promise<number> {
  const signal = options.signal;
  throwIfAborted(signal);
  const tmp = temporaryPath(dest);
  const handle = await open(tmp, 'wx', options.mode ?? 0o600);
  const writes = new WriteBehind(handle);
  try {
    await produce((bytes) => writes.write(bytes));
    await writes.flush();
    await handle.sync();
    await handle.close();
    throwIfAborted(signal); // the last moment to cancel: from here the file is published
  } catch (error) {
    await writes.settle();
    await handle.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw error;
  }
  try {
    if (options.overwrite) {
      await rename(tmp, dest);
    } else {
      // link() fails if dest appeared meanwhile: an existing file is never replaced.
      await link(tmp, dest);
      await unlink(tmp);
    }
  } catch (error) {
    await unlink(tmp).catch(() => {});
    if ((error as { code?: string }).code === 'EEXIST') throw existsError(dest);
    throw error;
  }
  // Make the rename itself durable.
  const folder = await open(dirname(dest), 'r').catch(() => undefined);
  await folder?.sync().catch(() => {});
  await folder?.close();
  return writes.written;
}

/** writeAtomically for a small file held in memory, synchronously (key files, state files). */
export function writeFileAtomicSync(dest: string, data: Uint8Array | string, options: AtomicWriteOptions = {}): void {
  const tmp = temporaryPath(dest);
  const fd = openSync(tmp, 'wx', options.mode ?? 0o600);
  try {
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (options.overwrite) {
      renameSync(tmp, dest);
    } else {
      linkSync(tmp, dest);
      unlinkSync(tmp);
    }
  } catch (error) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    if ((error as { code?: string }).code === 'EEXIST') throw existsError(dest);
    throw error;
  }
  try {
    const folder = openSync(dirname(dest), 'r');
    try {
      fsyncSync(folder);
    } finally {
      closeSync(folder);
    }
  } catch {
    // Some file systems refuse to fsync a folder: the file itself is durable.
  }
}
