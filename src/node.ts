/**
 * kms-envelope/node: what needs Node (files, Node streams, key files, worker threads). Every
 * function takes an Envelope from createEnvelope() in 'kms-envelope'.
 *
 * @example
 * ```ts
 * import { createEnvelope } from 'kms-envelope';
 * import { localKmsFromKeyFile, sealFile, openFile } from 'kms-envelope/node';
 * const envelope = createEnvelope({ kms: localKmsFromKeyFile('./.kms-envelope/local.key', { create: true }) });
 * await sealFile(envelope, 'backup.tar', 'backup.tar.kmse', { context: { host: 'db1' } });
 * ```
 */
import { createNodeBackend } from './core/backend-node.ts';
import { provideNodeBackend } from './core/select-backend.ts';
import { coreOf, type OpenOptions, type SealOptions } from './envelope/engine.ts';
import { type Envelope, inspect, type MessageInfo } from './envelope/envelope.ts';
import { plaintextLength } from './core/chunked.ts';
import { compactPlaintextLength } from './core/compact.ts';
import type { RewrapOptions } from './envelope/rewrap.ts';
import { readFileHeader, rewrapFile as rewrapFileIn, type RewrapFileResult } from './node/rewrap-file.ts';
import type { Sink } from './node/atomic.ts';
import * as files from './node/files.ts';
import type { FileOptions, FileResult } from './node/files.ts';

// Node code: the node:crypto backend too (as the main entry under the `node` condition provides it).
provideNodeBackend(createNodeBackend);

/** Payload lengths (the bytes after the header): plaintext -> sealed, and sealed -> plaintext (undefined when impossible). */
export { plaintextLength, sealedLength } from './core/chunked.ts';
export { MAX_HEADER_LENGTH } from './core/header.ts';
export { type AtomicWriteOptions, type Sink, writeAtomically, writeFileAtomicSync } from './node/atomic.ts';
export type { FileOptions, FileResult } from './node/files.ts';
export type { RewrapFileResult } from './node/rewrap-file.ts';
export { createLocalKeyFile, localKmsFromKeyFile } from './node/key-file.ts';
export { openNodeStream, sealNodeStream } from './node/node-stream.ts';

/**
 * Seals the file `src` to `dest` atomically (temporary file, fsync, rename), in constant memory.
 * `options.signal` (as for every function here) cancels: the call rejects with the signal's reason,
 * the keys are wiped, the temporary file is removed and `dest` is left as it was.
 */
export function sealFile(envelope: Envelope, src: string, dest: string, options?: SealOptions & FileOptions): Promise<FileResult> {
  const core = coreOf(envelope);
  return core.track(() => files.sealFile(core, src, dest, options));
}

/** Opens the file `src` to `dest` atomically; on any failure `dest` is untouched and no plaintext is left. */
export function openFile(envelope: Envelope, src: string, dest: string, options?: OpenOptions & FileOptions): Promise<FileResult> {
  const core = coreOf(envelope);
  return core.track(() => files.openFile(core, src, dest, options));
}

/** Seals pieces (standard input, a socket, any async iterable) to the file `dest` atomically. */
export function sealToFile(
  envelope: Envelope,
  pieces: AsyncIterable<Uint8Array>,
  dest: string,
  options?: SealOptions & FileOptions,
): Promise<FileResult> {
  const core = coreOf(envelope);
  return core.track(() => files.sealToFile(core, pieces, dest, options));
}

/**
 * Seals pieces into `sink` (header, salt and commitment, chunks, in order); `size`, when known,
 * reserves a cached data key's budget up front. Returns the plaintext bytes read.
 */
export function sealInto(
  envelope: Envelope,
  pieces: AsyncIterable<Uint8Array>,
  sink: Sink,
  options?: SealOptions & Pick<FileOptions, 'onProgress' | 'parallel'>,
  size?: number,
): Promise<number> {
  const core = coreOf(envelope);
  return core.track(() => files.sealInto(core, pieces, sink, options, size));
}

/**
 * Opens the sealed file `src` into `sink`. With `verifyFirst`, a first pass authenticates the whole
 * message and writes nothing, so a sink that cannot take bytes back (stdout) never sees plaintext
 * of a message that fails. Returns the sealed bytes read.
 */
export function openInto(
  envelope: Envelope,
  src: string,
  sink: Sink,
  options?: OpenOptions & Pick<FileOptions, 'onProgress' | 'parallel'> & { verifyFirst?: boolean },
): Promise<number> {
  const core = coreOf(envelope);
  return core.track(() => files.openInto(core, src, sink, options));
}

/**
 * Moves the sealed file `path` to the master key `options.toKeyId` in place: only its header's
 * wrapped-key section changes (one KMS ReEncrypt), the payload is copied byte for byte in pieces
 * and never decrypted; the new file replaces the old atomically (temporary file, fsync, rename).
 * A file that changes meanwhile is left alone (FileChangedError, ERR_FILE_CHANGED).
 */
export function rewrapFile(envelope: Envelope, path: string, options: RewrapOptions): Promise<RewrapFileResult> {
  const core = coreOf(envelope);
  return core.track(() => rewrapFileIn(core, path, options));
}

/** inspect() of a sealed file: reads only its header (no KMS call). */
export async function inspectFile(path: string): Promise<MessageInfo> {
  const { head, size } = await readFileHeader(path);
  const info = inspect(head);
  const payloadLength = size - info.headerLength;
  return { ...info, plaintextLength: info.compact ? compactPlaintextLength(payloadLength) : plaintextLength(payloadLength) };
}

/** Key stores for the key hierarchy: a JSON file, SQLite and PostgreSQL (the caller's client). */
export { JsonFileKeyStore, type JsonFileKeyStoreOptions } from './node/json-file-key-store.ts';

/** Resumable table sweeps (rotation, backfill, re-index; src/sweep.ts) on PostgreSQL (several workers) and SQLite. */
export { type FileOutcome, type FileSweepEvent, type FileSweepOptions, type FileSweepSummary, rewrapTree } from './node/file-sweep.ts';
