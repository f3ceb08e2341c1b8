/**
 * rewrapFile(): a sealed file moved to another master key in place. Only the header changes
 * (rewrap.ts); the payload is copied byte for byte in pieces, never decrypted and never held
 * whole. The new file is written beside the old one (temporary file, fsync, rename over it), so a
 * crash leaves the old file or the new one, never half of either. A file that changes while it is
 * rewrapped (size, modification or change time, inode) is left alone: FileChangedError.
 */
import type { Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { checkSignal, throwIfAborted } from '../core/abort.ts';
import { FileChangedError, HeaderTruncatedError } from '../core/errors.ts';
import { MAX_HEADER_LENGTH, parseHeader } from '../core/header.ts';
import type { EnvelopeCore } from '../envelope/engine.ts';
import { rewrapHeader, type RewrapOptions } from '../envelope/rewrap.ts';
import { writeAtomically } from './atomic.ts';

export interface RewrapFileResult {
  /** The header's length before and after (the payload is unchanged). */
  oldHeaderLength: number;
  newHeaderLength: number;
  payloadLength: number;
}

const COPY_SIZE = 256 * 1024;

function sameFile(a: Stats, b: Stats): boolean {
  return a.ino === b.ino && a.dev === b.dev && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

export async function rewrapFile(core: EnvelopeCore, path: string, options: RewrapOptions): Promise<RewrapFileResult> {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('"path" expected a file path');
  const signal = checkSignal(options?.signal);
  throwIfAborted(signal);
  const handle = await open(path, 'r');
  try {
    const before = await handle.stat();
    const head = new Uint8Array(Math.min(before.size, MAX_HEADER_LENGTH));
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const header = parseHeader(head.subarray(0, bytesRead));
    if (header.length > before.size) throw new HeaderTruncatedError('header truncated');
    const newHeader = await rewrapHeader(core, header, options);
    const payloadLength = before.size - header.length;
    const unchanged = async (): Promise<void> => {
      const [now, named] = await Promise.all([handle.stat(), stat(path)]);
      if (!sameFile(before, now) || !sameFile(before, named)) throw new FileChangedError(path);
    };
    await unchanged(); // the KMS call took a while: check before writing anything
    await writeAtomically(path, { overwrite: true, mode: before.mode & 0o777, signal }, async (write) => {
      await write(newHeader);
      const buffer = new Uint8Array(COPY_SIZE);
      for (let offset = header.length; offset < before.size; ) {
        throwIfAborted(signal);
        const { bytesRead: n } = await handle.read(buffer, 0, Math.min(COPY_SIZE, before.size - offset), offset);
        if (n === 0) throw new FileChangedError(path); // shorter than it was
        await write(buffer.slice(0, n));
        offset += n;
      }
      // The last moment before the rename: a writer that touched the file meanwhile wins, and the rewrap is dropped.
      await unchanged();
    });
    return { oldHeaderLength: header.length, newHeaderLength: newHeader.length, payloadLength };
  } finally {
    await handle.close();
  }
}

/** The header of a sealed file, read from its first bytes: what inspect() reports for a buffer. */
export async function readFileHeader(path: string): Promise<{ head: Uint8Array; size: number }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const head = new Uint8Array(Math.min(size, MAX_HEADER_LENGTH));
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return { head: head.subarray(0, bytesRead), size };
  } finally {
    await handle.close();
  }
}
