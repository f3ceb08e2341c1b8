/**
 * sealFile() and openFile(): files at rest, in constant memory, never half-written. The output goes
 * to a temporary file (mode 0600) in the destination's folder, is fsynced, then renamed over the
 * destination (or hard-linked into place when overwriting is not allowed, so an existing file is
 * never replaced by accident). On any error the temporary file is removed and the destination is
 * untouched; a failed open leaves no plaintext behind.
 */
import type * as NodeFs from 'node:fs';
import type * as NodeFsPromises from 'node:fs/promises';
import type * as NodePath from 'node:path';
import { wipe } from './bytes.ts';
import { PayloadOpener } from './chunked.ts';
import type { EnvelopeCore, OpenOptions, SealOptions } from './envelope.ts';
import { MAX_HEADER_LENGTH, parseHeader } from './header.ts';
import { budget } from './stream.ts';

export interface FileOptions {
  /** Replace an existing destination; default false (an existing destination is an EEXIST error). */
  overwrite?: boolean;
  /** Called after each piece with the input bytes done so far and the input's size. */
  onProgress?: (done: number, total: number) => void;
}

export interface FileResult {
  bytesRead: number;
  bytesWritten: number;
}

const READ_SIZE = 256 * 1024;

interface NodeModules {
  fs: typeof NodeFs;
  fsp: typeof NodeFsPromises;
  path: typeof NodePath;
}

function nodeModules(): NodeModules {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const load = <T>(id: string): T => {
    const mod = proc?.getBuiltinModule?.(id) as T | undefined;
    if (!mod) throw new TypeError(`file functions need ${id}; use sealStream()/openStream() in this runtime`);
    return mod;
  };
  return { fs: load('node:fs'), fsp: load('node:fs/promises'), path: load('node:path') };
}

function exists(message: string): Error {
  return Object.assign(new Error(message), { code: 'EEXIST' });
}

/**
 * Writes through `produce` into a temporary file beside `dest`, then publishes it atomically.
 * `produce` gets a write function and returns when all is written.
 */
async function writeAtomically(
  m: NodeModules,
  dest: string,
  overwrite: boolean,
  produce: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<number> {
  const dir = m.path.dirname(dest);
  const random = Array.from(globalThis.crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, '0')).join('');
  const tmp = m.path.join(dir, `.${m.path.basename(dest)}.${random}.kmse-tmp`);
  const handle = await m.fsp.open(tmp, 'wx', 0o600);
  let written = 0;
  try {
    await produce(async (bytes) => {
      let o = 0;
      while (o < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, o, bytes.length - o);
        o += bytesWritten;
      }
      written += bytes.length;
    });
    await handle.sync();
    await handle.close();
  } catch (error) {
    await handle.close().catch(() => {});
    await m.fsp.unlink(tmp).catch(() => {});
    throw error;
  }
  try {
    if (overwrite) {
      await m.fsp.rename(tmp, dest);
    } else {
      // link() fails if dest appeared meanwhile: an existing file is never replaced.
      await m.fsp.link(tmp, dest);
      await m.fsp.unlink(tmp);
    }
  } catch (error) {
    await m.fsp.unlink(tmp).catch(() => {});
    if ((error as { code?: string }).code === 'EEXIST') throw exists(`${dest} exists: pass { overwrite: true } to replace it`);
    throw error;
  }
  // Make the rename itself durable.
  const dirHandle = await m.fsp.open(dir, 'r').catch(() => undefined);
  await dirHandle?.sync().catch(() => {});
  await dirHandle?.close();
  return written;
}

async function checkDestination(m: NodeModules, dest: string, overwrite: boolean): Promise<void> {
  if (!overwrite && (await m.fsp.lstat(dest).then(() => true, () => false))) {
    throw exists(`${dest} exists: pass { overwrite: true } to replace it`);
  }
}

/** Where sealed or opened bytes go: a file being written, stdout, or anything else. */
export type Sink = (bytes: Uint8Array) => Promise<void>;

/** Seals plaintext pieces into `sink`: header, salt and commitment, chunks. */
export async function sealInto(
  core: EnvelopeCore,
  pieces: AsyncIterable<Uint8Array>,
  sink: Sink,
  options: SealOptions & Pick<FileOptions, 'onProgress'> = {},
  size = Number.NaN,
): Promise<number> {
  const declared = Number.isFinite(size) ? size : undefined;
  const session = await core.beginSeal(options, declared);
  const { header, sealer } = session;
  const spend = budget(session, declared);
  let bytesRead = 0;
  try {
    await sink(header);
    await sink(sealer.start());
    for await (const piece of pieces) {
      spend(piece.length);
      bytesRead += piece.length;
      const out = sealer.push(piece);
      if (out.length) await sink(out);
      options.onProgress?.(bytesRead, size);
    }
    await sink(sealer.end());
    return bytesRead;
  } finally {
    sealer.destroy();
  }
}

/**
 * Opens a sealed file into `sink`. With `verifyFirst`, the whole message is authenticated in a
 * first pass that writes nothing, so a sink that cannot be taken back (stdout) never sees
 * plaintext of a message that fails.
 */
export async function openInto(
  core: EnvelopeCore,
  src: string,
  sink: Sink,
  options: OpenOptions & Pick<FileOptions, 'onProgress'> & { verifyFirst?: boolean } = {},
): Promise<number> {
  const m = nodeModules();
  const source = await m.fsp.open(src, 'r');
  try {
    const { size } = await source.stat();
    const head = new Uint8Array(Math.min(size, MAX_HEADER_LENGTH));
    await source.read(head, 0, head.length, 0);
    const header = parseHeader(head);
    // Checks the context and the payload length before the KMS is asked for anything.
    const session = await core.beginOpen(header, options, size - header.length);
    const pass = async (key: Uint8Array, write: Sink | undefined, progressFrom: number, progressTotal: number): Promise<number> => {
      const opener = new PayloadOpener(core.backend, header.suite, key, session.payloadContext.slice());
      let bytesRead = header.length;
      try {
        const pieces = m.fs.createReadStream('', { fd: source.fd, start: header.length, highWaterMark: READ_SIZE, autoClose: false });
        for await (const piece of pieces as AsyncIterable<Uint8Array>) {
          bytesRead += piece.length;
          const out = opener.push(piece);
          if (write && out.length) await write(out);
          wipe(out);
          options.onProgress?.(progressFrom + bytesRead, progressTotal);
        }
        const last = opener.end();
        if (write) await write(last);
        wipe(last);
        return bytesRead;
      } finally {
        opener.destroy();
      }
    };
    if (options.verifyFirst) {
      // The opener takes ownership of (and wipes) its key: give the first pass a copy.
      await pass(session.key.slice(), undefined, 0, 2 * size);
      return await pass(session.key, sink, size, 2 * size);
    }
    return await pass(session.key, sink, 0, size);
  } finally {
    await source.close();
  }
}

export async function sealFile(core: EnvelopeCore, src: string, dest: string, options: SealOptions & FileOptions = {}): Promise<FileResult> {
  const m = nodeModules();
  const overwrite = options.overwrite ?? false;
  await checkDestination(m, dest, overwrite);
  const { size } = await m.fsp.stat(src);
  let bytesRead = 0;
  const bytesWritten = await writeAtomically(m, dest, overwrite, async (write) => {
    const pieces = m.fs.createReadStream(src, { highWaterMark: READ_SIZE }) as AsyncIterable<Uint8Array>;
    bytesRead = await sealInto(core, pieces, write, options, size);
  });
  return { bytesRead, bytesWritten };
}

/** Seals pieces (for example standard input) to `dest` atomically. */
export async function sealToFile(
  core: EnvelopeCore,
  pieces: AsyncIterable<Uint8Array>,
  dest: string,
  options: SealOptions & FileOptions = {},
): Promise<FileResult> {
  const m = nodeModules();
  const overwrite = options.overwrite ?? false;
  await checkDestination(m, dest, overwrite);
  let bytesRead = 0;
  const bytesWritten = await writeAtomically(m, dest, overwrite, async (write) => {
    bytesRead = await sealInto(core, pieces, write, options);
  });
  return { bytesRead, bytesWritten };
}

export async function openFile(core: EnvelopeCore, src: string, dest: string, options: OpenOptions & FileOptions = {}): Promise<FileResult> {
  const m = nodeModules();
  const overwrite = options.overwrite ?? false;
  await checkDestination(m, dest, overwrite);
  // Fail fast on a missing source, before a temporary file exists.
  await m.fsp.stat(src);
  let bytesRead = 0;
  const bytesWritten = await writeAtomically(m, dest, overwrite, async (write) => {
    bytesRead = await openInto(core, src, write, options);
  });
  return { bytesRead, bytesWritten };
}
