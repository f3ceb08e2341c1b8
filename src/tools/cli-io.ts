/**
 * Where the command line reads and writes. Outputs: a regular (or missing) file is written
 * atomically (temporary file, rename); a FIFO or a character device (/dev/null, a terminal) is
 * written through and never replaced; a symbolic link is replaced only with --replace-link (one
 * that points to a FIFO or a device is written through); anything else is refused. Inputs are
 * read as abortable streams; `spool()` copies ciphertext to a private temporary file so that a
 * two-pass open reads bytes no one else can change.
 */
import { createReadStream, type Stats, constants as fsConstants, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { type FileHandle, lstat, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { addAbortSignal, type Readable } from 'node:stream';
import { isatty } from 'node:tty';
import type { Sink } from '../node.ts';
import { ConfigError, tagged } from './cli-errors.ts';
import { checkInterrupted, interruption, onInterrupt } from './cli-signals.ts';

/** An output: a file written atomically, or a stream written through (stdout, a FIFO, a device). */
export type Destination =
  | { kind: 'file'; path: string; overwrite: boolean }
  | { kind: 'stream'; name: string; sink: Sink; terminal: boolean; close: () => Promise<void> };

export interface OutputFlags {
  force?: boolean | undefined;
  'replace-link'?: boolean | undefined;
}

function codeOf(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

async function statOrUndefined(path: string, follow: boolean): Promise<Stats | undefined> {
  try {
    return await (follow ? stat(path) : lstat(path));
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/** The folder a new file goes in: it must exist and be a folder (named, never the temporary file). */
async function checkFolder(path: string): Promise<void> {
  const folder = dirname(path);
  let info: Stats;
  try {
    info = await stat(folder);
  } catch (error) {
    if (codeOf(error) === 'ENOENT') throw new ConfigError(`no such folder: ${folder} (for ${path})`);
    if (codeOf(error) === 'ENOTDIR') throw new ConfigError(`not a folder: a part of ${folder} is a file (for ${path})`);
    throw error;
  }
  if (!info.isDirectory()) throw new ConfigError(`not a folder: ${folder} (for ${path})`);
}

/** What kind of file `info` is, in words. */
function kindOf(info: Stats): string {
  if (info.isSocket()) return 'a socket';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isDirectory()) return 'a folder';
  if (info.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/**
 * Classifies `-o PATH` before any work: a new or regular file (atomic), a FIFO or character device
 * (opened now, written through), a symbolic link (refused unless --replace-link), anything else
 * refused. A regular file is replaced only with --force.
 */
export async function outputDestination(path: string, flags: OutputFlags): Promise<Destination> {
  let info: Stats | undefined;
  try {
    info = await lstat(path);
  } catch (error) {
    // A folder that cannot be searched: name the folder.
    if (codeOf(error) === 'EACCES') throw Object.assign(error as Error, { where: `folder ${dirname(path)}` });
    if (codeOf(error) !== 'ENOENT' && codeOf(error) !== 'ENOTDIR') throw error;
  }
  if (!info) {
    await checkFolder(path);
    return { kind: 'file', path, overwrite: false };
  }
  if (info.isSymbolicLink()) {
    const target = await statOrUndefined(path, true).catch(() => undefined);
    // /dev/stdout and friends: writing through a link to a FIFO or a device replaces nothing.
    if (target && (target.isFIFO() || target.isCharacterDevice())) return writeThrough(path);
    if (!flags['replace-link']) {
      throw new ConfigError(
        `${path} is a symbolic link${target ? '' : ' (to nothing)'}: refusing to replace it; --replace-link replaces the link itself with the file (never its target)`,
      );
    }
    return { kind: 'file', path, overwrite: true };
  }
  if (info.isFIFO() || info.isCharacterDevice()) return writeThrough(path);
  if (info.isFile()) {
    if (!flags.force) throw new ConfigError(`${path} exists: use --force to replace it`);
    return { kind: 'file', path, overwrite: true };
  }
  throw new ConfigError(`${path} is ${kindOf(info)}: refusing to write to it`);
}

/** Writes every byte of `parts` to `handle` at its current position (a FIFO or a device has no other). */
async function writeAll(handle: FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  for (const part of parts) {
    for (let o = 0; o < part.length; ) o += (await handle.write(part, o, part.length - o, null)).bytesWritten;
  }
}

/** Opens a FIFO or character device for writing, without creating, truncating or replacing anything. */
async function writeThrough(path: string): Promise<Destination> {
  // A FIFO's open waits for a reader, as the shell's `> fifo` does; a signal still ends the wait.
  const handle = await open(path, fsConstants.O_WRONLY | (fsConstants.O_NOCTTY ?? 0));
  const info = await handle.stat();
  if (!info.isFIFO() && !info.isCharacterDevice()) {
    await handle.close();
    throw new ConfigError(`${path} changed while it was opened (now ${info.isFile() ? 'a regular file' : kindOf(info)}): nothing written`);
  }
  const sink: Sink = (bytes) =>
    tagged(path, async () => {
      checkInterrupted();
      await writeAll(handle, bytes instanceof Uint8Array ? [bytes] : bytes);
    });
  return { kind: 'stream', name: path, sink, terminal: isatty(handle.fd), close: () => handle.close() };
}

/** Standard output as a destination; its errors reach the write callbacks, never an 'error' crash. */
export function stdoutDestination(): Destination {
  process.stdout.on('error', () => {});
  const sink: Sink = (bytes) =>
    tagged('standard output', async () => {
      checkInterrupted();
      const data = bytes instanceof Uint8Array ? bytes : Buffer.concat(bytes as Uint8Array[]);
      await new Promise<void>((resolve, reject) => process.stdout.write(data, (error) => (error ? reject(error) : resolve())));
    });
  return { kind: 'stream', name: 'standard output', sink, terminal: process.stdout.isTTY === true, close: async () => {} };
}

/**
 * Removes, if the graceful unwinding of a signal does not finish in time, the temporary files
 * `.NAME.*.kmse-tmp` beside `path` that appeared after this call (an atomic write's, still empty
 * when a KMS call hangs). Returns the removal of this registration.
 */
export function removeLeftoversOnHardExit(path: string): () => void {
  const folder = dirname(path);
  const prefix = `.${basename(path)}.`;
  const ours = (name: string): boolean => name.startsWith(prefix) && name.endsWith('.kmse-tmp');
  let before: Set<string>;
  try {
    before = new Set(readdirSync(folder).filter(ours));
  } catch {
    before = new Set();
  }
  return onInterrupt(() => {
    for (const name of readdirSync(folder).filter(ours)) {
      if (!before.has(name)) unlinkSync(join(folder, name));
    }
  });
}

export interface Input {
  /** The path, or undefined for standard input. */
  path: string | undefined;
  /** The size of a regular file; NaN for standard input, a FIFO or a device. */
  size: number;
  regular: boolean;
}

/** Checks an input file before any work (a missing file, a folder); undefined is standard input. */
export async function inputFile(path: string | undefined): Promise<Input> {
  if (path === undefined) return { path, size: Number.NaN, regular: false };
  const info = await stat(path);
  if (info.isDirectory()) throw new ConfigError(`${path} is a folder, not a file`);
  return { path, size: info.isFile() ? info.size : Number.NaN, regular: info.isFile() };
}

/** An input's bytes as a stream that a signal destroys (so a read that waits, on a terminal or a pipe, ends). */
export function inputPieces(input: Input): AsyncIterable<Uint8Array> {
  const stream: Readable = input.path === undefined ? process.stdin : createReadStream(input.path, { highWaterMark: 1 << 20 });
  addAbortSignal(interruption, stream);
  const where = input.path ?? 'standard input';
  return (async function* () {
    try {
      for await (const piece of stream) yield piece as Uint8Array;
    } catch (error) {
      if (error && typeof error === 'object' && !(error as { where?: string }).where) Object.assign(error, { where });
      throw error;
    }
  })();
}

/** Says, on stderr, that standard input is a terminal being read (else a silent wait looks like a hang). */
export function noteTerminalInput(input: Input): void {
  if (input.path === undefined && process.stdin.isTTY) process.stderr.write('kms-envelope: reading from the terminal, end with Ctrl-D\n');
}

export interface Spool {
  path: string;
  size: number;
  cleanup(): Promise<void>;
}

/**
 * Copies sealed bytes (ciphertext only) to a private temporary file (a fresh 0700 folder under
 * the system's temporary folder, the file 0600), so that both passes of an open read the same
 * bytes whatever happens to the source meanwhile. A signal removes it at once.
 */
export async function spool(pieces: AsyncIterable<Uint8Array>, onProgress: (done: number) => void): Promise<Spool> {
  const folder = await mkdtemp(join(tmpdir(), 'kms-envelope-'));
  const unregister = onInterrupt(() => rmSync(folder, { recursive: true, force: true }), true);
  const cleanup = async (): Promise<void> => {
    unregister();
    await rm(folder, { recursive: true, force: true });
  };
  try {
    const path = join(folder, 'input.kmse');
    const handle = await open(path, 'wx', 0o600);
    let size = 0;
    try {
      for await (const piece of pieces) {
        checkInterrupted();
        for (let o = 0; o < piece.length; ) o += (await handle.write(piece, o, piece.length - o, size + o)).bytesWritten;
        size += piece.length;
        onProgress(size);
      }
    } finally {
      await handle.close();
    }
    return { path, size, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
