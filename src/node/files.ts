/**
 * sealFile() and openFile(): files at rest, in constant memory, never half-written. The output goes
 * to a temporary file (mode 0600) in the destination's folder, is fsynced, then renamed over the
 * destination (or hard-linked into place when overwriting is not allowed, so an existing file is
 * never replaced by accident). On any error the temporary file is removed and the destination is
 * untouched; a failed open leaves no plaintext behind.
 */
import { createReadStream } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { abortable, checkSignal, throwIfAborted } from '../core/abort.ts';
import { wipe } from '../core/bytes.ts';
import { CHUNK_SIZE, PAYLOAD_PREFIX, PayloadOpener, SEALED_CHUNK_SIZE } from '../core/chunked.ts';
import { CompactOpener } from '../core/compact.ts';
import { DecryptionFailedError } from '../core/errors.ts';
import { MAX_HEADER_LENGTH, parseHeader } from '../core/header.ts';
import type { Suite } from '../core/suites.ts';
import { chunkedSealer, type EnvelopeCore, type OpenOptions, type SealOptions } from '../envelope/engine.ts';
import { budget } from '../envelope/stream.ts';
import { checkDestination, type Sink, writeAtomically } from './atomic.ts';
import { ChunkWorkerPool, defaultWorkers, type PoolSession } from './worker-pool.ts';

export interface FileOptions {
  /** Replace an existing destination; default false (an existing destination is an EEXIST error). */
  overwrite?: boolean;
  /**
   * Seal or open on worker threads (batches of 64 chunks, written back in order, same bytes):
   * `true`, or `{ minBytes, workers }` to use them only from a size on. Off by default: one thread
   * already overlaps its reads and writes with the crypto, so workers pay only on machines with
   * cores to spare (BENCHMARKS.md): measure before turning it on.
   */
  parallel?: boolean | { minBytes?: number; workers?: number };
  /** Called after each piece with the input bytes done so far and the input's size. */
  onProgress?: (done: number, total: number) => void;
}

export interface FileResult {
  bytesRead: number;
  bytesWritten: number;
}

const READ_SIZE = 256 * 1024;
/** Chunks per worker job: 1 MiB of plaintext. */
const BATCH_CHUNKS = 64;
const PARALLEL_MIN_BYTES = 256 * 1024 * 1024;

/**
 * The worker pool for an input of `size` bytes, or undefined to stay on this thread: a suite
 * whose chunks workers cannot run (no `workerCipher`: SM4) stays on this thread.
 */
function poolFor(options: Pick<FileOptions, 'parallel'>, size: number, suite: Suite): ChunkWorkerPool | undefined {
  const p = options.parallel;
  if (!p || suite.workerCipher === undefined) return undefined;
  const minBytes = p === true ? 0 : (p.minBytes ?? PARALLEL_MIN_BYTES);
  if (!(size >= minBytes)) return undefined;
  try {
    return new ChunkWorkerPool(typeof p === 'object' && p.workers ? p.workers : defaultWorkers());
  } catch {
    return undefined; // no worker threads here: the single-threaded path does the same work
  }
}

/**
 * Keeps up to `limit` worker jobs in flight and writes their results in order, so memory stays
 * bounded whatever the input size.
 */
class OrderedJobs {
  readonly #queue: Promise<Uint8Array | undefined>[] = [];
  readonly #limit: number;
  readonly #sink: Sink;

  constructor(limit: number, sink: Sink) {
    this.#limit = limit;
    this.#sink = sink;
  }

  async add(job: Promise<Uint8Array | undefined>): Promise<void> {
    this.#queue.push(job);
    if (this.#queue.length >= this.#limit) await this.#writeOldest();
  }

  async drain(): Promise<void> {
    while (this.#queue.length) await this.#writeOldest();
  }

  /** Settles every job still running (after a failure), writing nothing. */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.#queue.splice(0));
  }

  async #writeOldest(): Promise<void> {
    const result = await this.#queue.shift()!;
    if (!result) throw new DecryptionFailedError();
    await this.#sink(result);
  }
}


/** Seals plaintext pieces into `sink`: header, salt and commitment, chunks. */
export async function sealInto(
  core: EnvelopeCore,
  pieces: AsyncIterable<Uint8Array>,
  sink: Sink,
  options: SealOptions & Pick<FileOptions, 'onProgress' | 'parallel'> = {},
  size = Number.NaN,
): Promise<number> {
  const signal = checkSignal(options.signal);
  const declared = Number.isFinite(size) ? size : undefined;
  const session = await core.beginSeal(options, { bytes: declared });
  const { header } = session;
  const sealer = chunkedSealer(session);
  const spend = budget(session, declared);
  const pool = declared === undefined ? undefined : poolFor(options, declared, session.suite);
  let bytesRead = 0;
  try {
    await sink(header);
    await sink(sealer.start());
    if (pool) {
      // Whole 1 MiB batches go to the workers; the tail (and the final chunk) stays here.
      const keys = sealer.sharedKeys();
      const shared = pool.session(keys.key, keys.baseNonce);
      const jobs = new OrderedJobs(2 * defaultWorkers(), sink);
      let batch = new Uint8Array(BATCH_CHUNKS * CHUNK_SIZE);
      let filled = 0;
      try {
        for await (const piece of untilAborted(pieces, signal)) {
          spend(piece.length);
          bytesRead += piece.length;
          for (let i = 0; i < piece.length; ) {
            const take = Math.min(batch.length - filled, piece.length - i);
            batch.set(piece.subarray(i, i + take), filled);
            filled += take;
            i += take;
            if (filled === batch.length) {
              // The full batch moves to the worker without a copy; the next one is new.
              await jobs.add(shared.seal(sealer.reserveChunks(BATCH_CHUNKS), batch, true));
              batch = new Uint8Array(BATCH_CHUNKS * CHUNK_SIZE);
              filled = 0;
            }
          }
          options.onProgress?.(bytesRead, size);
        }
        await jobs.drain();
        const out = sealer.push(batch.subarray(0, filled));
        if (out.length) await sink(out);
      } catch (error) {
        await jobs.abandon();
        throw error;
      } finally {
        shared.end();
        wipe(batch);
      }
    } else {
      for await (const piece of untilAborted(pieces, signal)) {
        spend(piece.length);
        bytesRead += piece.length;
        const out = sealer.push(piece);
        if (out.length) await sink(out);
        options.onProgress?.(bytesRead, size);
      }
    }
    throwIfAborted(signal);
    await sink(sealer.end());
    return bytesRead;
  } finally {
    sealer.destroy();
    await pool?.close();
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
  options: OpenOptions & Pick<FileOptions, 'onProgress' | 'parallel'> & { verifyFirst?: boolean } = {},
): Promise<number> {
  const signal = checkSignal(options.signal);
  throwIfAborted(signal);
  const source = await open(src, 'r');
  try {
    const { size } = await source.stat();
    const head = new Uint8Array(Math.min(size, MAX_HEADER_LENGTH));
    await source.read(head, 0, head.length, 0);
    const header = parseHeader(head);
    // Checks the context and the payload length before the KMS is asked for anything.
    const session = await core.beginOpen(header, options, { payloadLength: size - header.length });
    const pool = header.compact ? undefined : poolFor(options, size, session.suite);
    const pass = async (key: Uint8Array, write: Sink | undefined, progressFrom: number, progressTotal: number): Promise<number> => {
      const Opener = header.compact ? CompactOpener : PayloadOpener;
      const opener = new Opener(session.crypto, header.suite, key, session.payloadContext.slice());
      let bytesRead = header.length;
      const pieces = untilAborted(readPieces(source, header.length), signal);
      try {
        if (pool && opener instanceof PayloadOpener) {
          bytesRead += await openWithPool(pool, opener, pieces as AsyncIterable<Uint8Array>, size - header.length, write, (n) =>
            options.onProgress?.(progressFrom + header.length + n, progressTotal),
          );
        } else {
          for await (const piece of pieces as AsyncIterable<Uint8Array>) {
            bytesRead += piece.length;
            const out = opener.push(piece);
            if (write && out.length) await write(out);
            options.onProgress?.(progressFrom + bytesRead, progressTotal);
          }
        }
        throwIfAborted(signal);
        const last = opener.end();
        if (write) await write(last);
        return bytesRead;
      } finally {
        opener.destroy();
      }
    };
    try {
      if (options.verifyFirst) {
        // The opener takes ownership of (and wipes) its key: give the first pass a copy.
        try {
          await pass(session.key.slice(), undefined, 0, 2 * size);
        } catch (error) {
          wipe(session.key); // no second pass takes it
          throw error;
        }
        return await pass(session.key, sink, size, 2 * size);
      }
      return await pass(session.key, sink, 0, size);
    } catch (error) {
      // A failed verifying pass never handed session.key to an opener (nor did a pass that never
      // started): wipe it here; for a writing pass that failed it is wiped already, and again is harmless.
      wipe(session.key);
      throw error;
    } finally {
      await pool?.close();
    }
  } finally {
    await source.close();
  }
}

/**
 * The pieces of `pieces`, each only while `signal` has not aborted: an abort rejects with its
 * reason at once, even while the source is waiting for its next piece (a quiet pipe), and the
 * source is closed (return()) so it reads no more.
 */
async function* untilAborted(pieces: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  if (!signal) return yield* pieces;
  const iterator = pieces[Symbol.asyncIterator]();
  try {
    for (;;) {
      throwIfAborted(signal);
      const next = iterator.next();
      const step = await abortable(next, signal);
      if (step.done) return;
      yield step.value;
    }
  } finally {
    // A source left waiting (a quiet pipe) is told to stop; its pending read is not waited for.
    void Promise.resolve(iterator.return?.()).catch(() => {});
  }
}

/**
 * Reads a file handle from `start` to its end in READ_SIZE pieces (the handle stays open), one
 * read ahead: the next piece is read while the caller works on this one.
 */
async function* readPieces(handle: FileHandle, start: number): AsyncGenerator<Uint8Array> {
  const readAt = async (position: number): Promise<Uint8Array> => {
    const buffer = new Uint8Array(READ_SIZE);
    const { bytesRead } = await handle.read(buffer, 0, READ_SIZE, position);
    return buffer.subarray(0, bytesRead);
  };
  let next = readAt(start);
  try {
    for (let position = start; ; ) {
      const piece = await next;
      if (piece.length === 0) return;
      position += piece.length;
      next = readAt(position);
      yield piece;
    }
  } finally {
    await next.catch(() => {}); // a caller that stops early leaves no read behind
  }
}

/**
 * Opens a payload of `payloadLength` bytes with the workers: the 56-byte prefix (commitment) and
 * the final chunk here, whole 64-chunk batches in between on the pool, written in order. Leaves
 * the final chunk in `opener` for end(). Returns the bytes read.
 */
async function openWithPool(
  pool: ChunkWorkerPool,
  opener: PayloadOpener,
  pieces: AsyncIterable<Uint8Array>,
  payloadLength: number,
  write: Sink | undefined,
  progress: (done: number) => void,
): Promise<number> {
  const sealedBatch = BATCH_CHUNKS * SEALED_CHUNK_SIZE;
  // Everything up to the last batch boundary that leaves the final chunk (and at least one byte) here.
  const body = payloadLength - PAYLOAD_PREFIX;
  const parallelBytes = Math.max(0, Math.floor((body - 1) / sealedBatch)) * sealedBatch;
  const prefix = new Uint8Array(PAYLOAD_PREFIX);
  let prefixFilled = 0;
  let shared: PoolSession | undefined;
  const jobs = new OrderedJobs(2 * defaultWorkers(), async (plain) => {
    if (write) await write(plain);
  });
  let batch = new Uint8Array(sealedBatch);
  let filled = 0;
  let dispatched = 0;
  let read = 0;
  try {
    for await (const piece of pieces) {
      read += piece.length;
      let i = 0;
      if (prefixFilled < PAYLOAD_PREFIX) {
        const take = Math.min(PAYLOAD_PREFIX - prefixFilled, piece.length);
        prefix.set(piece.subarray(0, take), prefixFilled);
        prefixFilled += take;
        i = take;
        if (prefixFilled < PAYLOAD_PREFIX) continue;
        opener.push(prefix); // checks the commitment before any chunk
        const keys = opener.sharedKeys();
        shared = pool.session(keys.key, keys.baseNonce);
      }
      while (i < piece.length) {
        if (dispatched < parallelBytes) {
          const take = Math.min(sealedBatch - filled, piece.length - i);
          batch.set(piece.subarray(i, i + take), filled);
          filled += take;
          i += take;
          if (filled === sealedBatch) {
            await jobs.add(shared!.open(opener.reserveChunks(BATCH_CHUNKS), batch, true));
            batch = new Uint8Array(sealedBatch);
            dispatched += sealedBatch;
            filled = 0;
          }
        } else {
          await jobs.drain(); // everything before the tail is written first, in order
          const out = opener.push(piece.subarray(i));
          if (write && out.length) await write(out);
          i = piece.length;
        }
      }
      progress(read);
    }
    await jobs.drain();
    return read;
  } catch (error) {
    await jobs.abandon();
    opener.fail();
    throw error;
  } finally {
    shared?.end();
  }
}

export async function sealFile(core: EnvelopeCore, src: string, dest: string, options: SealOptions & FileOptions = {}): Promise<FileResult> {
  const overwrite = options.overwrite ?? false;
  await checkDestination(dest, overwrite);
  const { size } = await stat(src);
  let bytesRead = 0;
  const bytesWritten = await writeAtomically(dest, { overwrite, signal: options.signal }, async (write) => {
    const pieces = createReadStream(src, { highWaterMark: READ_SIZE }) as AsyncIterable<Uint8Array>;
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
  const overwrite = options.overwrite ?? false;
  await checkDestination(dest, overwrite);
  let bytesRead = 0;
  const bytesWritten = await writeAtomically(dest, { overwrite, signal: options.signal }, async (write) => {
    bytesRead = await sealInto(core, pieces, write, options);
  });
  return { bytesRead, bytesWritten };
}

export async function openFile(core: EnvelopeCore, src: string, dest: string, options: OpenOptions & FileOptions = {}): Promise<FileResult> {
  const overwrite = options.overwrite ?? false;
  await checkDestination(dest, overwrite);
  // Fail fast on a missing source, before a temporary file exists.
  await stat(src);
  let bytesRead = 0;
  const bytesWritten = await writeAtomically(dest, { overwrite, signal: options.signal }, async (write) => {
    bytesRead = await openInto(core, src, write, options);
  });
  return { bytesRead, bytesWritten };
}
