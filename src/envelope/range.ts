/**
 * openRange(): random access into a sealed message held in a file or any byte source, decrypting
 * only the chunks the range needs (C2SP chunked encryption: chunk k of the payload is at
 * 56 + k * 16400). With `verifyLength` (the default) the final chunk is decrypted too, which
 * authenticates the message's length, as the spec asks for seeks relative to the end.
 */
import { type ByteInput, toBytes, wipe } from '../core/bytes.ts';
import { openPayloadRange, plaintextLength } from '../core/chunked.ts';
import { openPayloadRangeAsync } from '../core/chunked-async.ts';
import { compactPlaintextLength, openCompact, openCompactAsync } from '../core/compact.ts';
import { coreOf, type EnvelopeCore, type OpenOptions, payloadKeyOf } from './engine.ts';
import type { Bytes, Envelope } from './envelope.ts';
import { DecryptionFailedError } from '../core/errors.ts';
import { MAX_HEADER_LENGTH, type ParsedHeader, parseHeader, parseHeaderIfComplete } from '../core/header.ts';

/**
 * Reads `length` bytes at `position`; may return fewer only at the end of the source. Any view or
 * an ArrayBuffer will do (`blob.slice(p, p + n).arrayBuffer()`).
 */
export type ReadAt = (position: number, length: number) => Promise<ByteInput>;

/** A Node FileHandle (fs.promises.open) or anything with the same read/stat. */
export interface FileHandleLike {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<{ size: number }>;
  /** Absent: tells a handle from `{ size, read }`, so that form's read() parameters need no types. */
  readonly size?: undefined;
}

export type RangeSource = FileHandleLike | ReadAt | { size: number; read: ReadAt };

export interface RangeOptions extends OpenOptions {
  /** Total size of the sealed message; required when the source is a plain function. */
  size?: number;
  /** Decrypt the final chunk as well, authenticating the message length; default true. */
  verifyLength?: boolean;
}

/** A ReadAt as the range reader uses it: always a Uint8Array. */
type ReadBytes = (position: number, length: number) => Promise<Uint8Array>;

const asBytes = (read: ReadAt): ReadBytes => async (position, length) => toBytes(await read(position, length), 'read()');

async function resolveSource(source: RangeSource, size: number | undefined): Promise<{ size: number; read: ReadBytes }> {
  if (typeof source === 'function') {
    if (size === undefined) throw new TypeError('"size" is required when the source is a function');
    return { size, read: asBytes(source) };
  }
  if (source && typeof (source as FileHandleLike).stat === 'function') {
    const handle = source as FileHandleLike;
    const { size: fileSize } = await handle.stat();
    return {
      size: fileSize,
      read: async (position, length) => {
        const buffer = new Uint8Array(length);
        let filled = 0;
        while (filled < length) {
          const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        return filled === length ? buffer : buffer.subarray(0, filled);
      },
    };
  }
  const s = source as { size?: unknown; read?: unknown };
  if (typeof s?.read !== 'function' || typeof s.size !== 'number') {
    throw new TypeError('"source" expected a FileHandle, a read(position, length) function, or { size, read }');
  }
  return { size: s.size, read: asBytes(s.read as ReadAt) };
}

/**
 * Plaintext bytes [offset, offset + length) of a sealed message in `source` (a FileHandle, a
 * read(position, length) function with `size`, or `{ size, read }`), decrypting only the chunks
 * needed. (Envelope.openRange() before 0.3.)
 *
 * @example
 * ```ts
 * import { openRange } from 'kms-envelope';
 * const page = await openRange(envelope, { size: blob.size, read: (p, n) => blob.slice(p, p + n).arrayBuffer() }, 1 << 20, 4096);
 * ```
 */
export function openRange(envelope: Envelope, source: RangeSource, offset: number, length: number, options?: RangeOptions): Promise<Bytes> {
  const core = coreOf(envelope);
  return core.track(() => openRangeIn(core, source, offset, length, options));
}

async function openRangeIn(
  core: EnvelopeCore,
  source: RangeSource,
  offset: number,
  length: number,
  options: RangeOptions = {},
): Promise<Uint8Array<ArrayBuffer>> {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`"offset" must be a non-negative integer, got ${offset}`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`"length" must be a non-negative integer, got ${length}`);
  const { size, read } = await resolveSource(source, options.size);
  const header = await readHeader(read, size);
  const payloadLength = size - header.length;
  const total = header.compact ? compactPlaintextLength(payloadLength) : plaintextLength(payloadLength);
  if (total !== undefined && offset + length > total) {
    throw new RangeError(`range [${offset}, ${offset}+${length}) is outside the plaintext of ${total} bytes`);
  }
  const session = await core.beginOpen(header, options, { payloadLength });
  try {
    const readPayload = async (position: number, n: number): Promise<Uint8Array> => {
      const bytes = await read(header.length + position, n);
      if (bytes.length !== n) throw new DecryptionFailedError(); // the source shrank or lied about its size
      return bytes;
    };
    if (header.compact) {
      // One small chunk: read and open it whole, then cut the range out.
      const payload = await readPayload(0, payloadLength);
      const aead = session.crypto.aead;
      const plaintext = aead ? await openCompactAsync(payloadKeyOf(session), aead, payload) : openCompact(payloadKeyOf(session), payload);
      try {
        return plaintext.slice(offset, offset + length);
      } finally {
        wipe(plaintext);
      }
    }
    // openPayloadRange returns a slice: fresh memory over a plain ArrayBuffer. With an asynchronous
    // AEAD (the WebCrypto backend) the chunks are opened several at once.
    const aead = session.crypto.aead;
    const range = { read: readPayload, payloadLength, start: offset, length, verifyLength: options.verifyLength ?? true };
    const plaintext = aead ? openPayloadRangeAsync(payloadKeyOf(session), aead, range) : openPayloadRange(payloadKeyOf(session), range);
    return (await plaintext) as Uint8Array<ArrayBuffer>;
  } finally {
    wipe(session.key);
  }
}

/** Reads the header with as few bytes as it takes: 1 KiB first, doubling up to its largest size. */
async function readHeader(read: ReadBytes, size: number): Promise<ParsedHeader> {
  for (let n = Math.min(size, 1024); ; n = Math.min(size, n * 2, MAX_HEADER_LENGTH)) {
    const head = await read(0, n);
    // All there is: a complete header, or a typed error saying what is wrong with it.
    if (n >= size || n >= MAX_HEADER_LENGTH) return parseHeader(head);
    const header = parseHeaderIfComplete(head);
    if (header) return header;
  }
}
