/**
 * sealStream() and openStream(): WHATWG TransformStreams (browsers, Deno, Node) over the same
 * bytes as seal() and open(). Memory stays flat: at most one 16 KiB chunk is held back, and over
 * an asynchronous AEAD (the WebCrypto backend) at most two batches of chunks (2 MiB) are in flight.
 */
import { checkSignal, throwIfAborted } from '../core/abort.ts';
import type { AsyncAead } from '../core/backend.ts';
import { type ByteInput, toBytes, wipe } from '../core/bytes.ts';
import { PayloadOpener, type PayloadSealer } from '../core/chunked.ts';
import { AsyncStreamOpener, AsyncStreamSealer } from '../core/chunked-async.ts';
import { CompactOpener } from '../core/compact.ts';
import { chunkedSealer, coreOf, type EnvelopeCore, type OpenOptions, type SealSession, type StreamSealOptions } from './engine.ts';
import type { Envelope } from './envelope.ts';
import { HeaderMalformedError } from '../core/errors.ts';
import { MAX_HEADER_LENGTH, type ParsedHeader, parseHeaderIfComplete } from '../core/header.ts';
import { keepStreamShapes } from './stream-shapes.ts';

/** A transformer as TransformStream takes it, with the cancel() that older DOM typings lack. */
type StreamTransformer = NonNullable<ConstructorParameters<typeof TransformStream<ByteInput, Uint8Array>>[0]> & {
  cancel?: (reason?: unknown) => void | Promise<void>;
};

const HIGH_WATER_MARK = 4; // chunks queued on each side before back-pressure applies

/**
 * Counts a stream's plaintext against a cached data key's byte budget: a declared size is reserved
 * up front, anything beyond it (or everything, when no size was declared) as it goes.
 */
export function budget(session: SealSession, declared: number | undefined): (bytes: number) => void {
  let remaining = declared ?? 0;
  return (bytes) => {
    const covered = Math.min(remaining, bytes);
    remaining -= covered;
    if (bytes > covered) session.reserve(bytes - covered);
  };
}

/**
 * Ends a stream when `signal` aborts: `stop` wipes the keys, and the stream errors with the
 * signal's reason (both sides). Returns a function that removes the listener.
 */
function onAbort(signal: AbortSignal | undefined, controller: TransformStreamDefaultController<Uint8Array>, stop: () => void): () => void {
  if (!signal) return () => {};
  const listener = (): void => {
    stop();
    controller.error(signal.reason);
  };
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/**
 * A TransformStream from plaintext to the sealed message: the same bytes as seal().
 * (Envelope.sealStream() before 0.3.)
 *
 * @example
 * ```ts
 * import { sealStream } from 'kms-envelope';
 * await file.stream().pipeThrough(sealStream(envelope, { context })).pipeTo(upload);
 * ```
 */
export function sealStream(envelope: Envelope, options?: StreamSealOptions): TransformStream<ByteInput, Uint8Array> {
  return createSealStream(coreOf(envelope), options);
}

/**
 * A TransformStream from a sealed message to its plaintext. Each chunk's plaintext is released
 * only after that chunk authenticates; a truncated, reordered or extended stream ends in an error.
 * (Envelope.openStream() before 0.3.)
 */
export function openStream(envelope: Envelope, options?: OpenOptions): TransformStream<ByteInput, Uint8Array> {
  return createOpenStream(coreOf(envelope), options);
}

export function createSealStream(core: EnvelopeCore, options?: StreamSealOptions): TransformStream<ByteInput, Uint8Array> {
  const signal = checkSignal(options?.signal);
  keepStreamShapes();
  let sealer: PayloadSealer | undefined;
  // Over an asynchronous AEAD (WebCrypto): several chunks in flight, emitted in order.
  let pipeline: AsyncStreamSealer | undefined;
  let spend: (bytes: number) => void = () => {};
  let unlisten = (): void => {};
  const stop = (): void => {
    sealer?.destroy();
    pipeline?.destroy();
  };
  return new TransformStream<ByteInput, Uint8Array>(
    {
      async start(controller) {
        unlisten = onAbort(signal, controller, stop);
        const session = await core.track(async () => core.beginSeal(options, { bytes: options?.size }));
        sealer = chunkedSealer(session);
        if (signal?.aborted) {
          sealer.destroy(); // aborted as the key arrived
          throw signal.reason;
        }
        spend = budget(session, options?.size);
        const prefix = sealer.start();
        if (core.sealAead) {
          pipeline = new AsyncStreamSealer(core.sealAead, sealer); // takes the sealer's keys, and destroys it
          sealer = undefined;
        }
        const first = new Uint8Array(session.header.length + prefix.length);
        first.set(session.header);
        first.set(prefix, session.header.length);
        controller.enqueue(first);
      },
      transform(chunk, controller) {
        try {
          throwIfAborted(signal);
          const bytes = toBytes(chunk, 'chunk');
          spend(bytes.length);
          if (pipeline) {
            // Each sealed chunk is handed on as it comes: joining a write's chunks into one buffer
            // costs more than the reader's per-chunk reads (BENCHMARKS.md, "Streams in memory").
            return pipeline.push(bytes, (out) => controller.enqueue(out)).catch((error: unknown) => {
              stop();
              throw error;
            });
          }
          const out = sealer!.push(bytes);
          if (out.length > 0) controller.enqueue(out);
        } catch (error) {
          stop();
          throw error;
        }
        return undefined;
      },
      async flush(controller) {
        unlisten();
        throwIfAborted(signal);
        if (pipeline) await pipeline.end((out) => controller.enqueue(out));
        else controller.enqueue(sealer!.end());
      },
      // Called when the readable side is cancelled or the writable side aborted (where supported).
      cancel() {
        unlisten();
        stop();
      },
    } as StreamTransformer,
    { highWaterMark: HIGH_WATER_MARK },
    { highWaterMark: HIGH_WATER_MARK },
  );
}

/**
 * Hands an opener's output on. A function of the module, not of each stream: V8 holds a
 * closure's optimized code only while a closure made from it is alive, so a closure per stream
 * would be compiled again after every full collection.
 */
function emit(controller: TransformStreamDefaultController<Uint8Array>, out: Uint8Array | Uint8Array[]): void {
  if (out instanceof Uint8Array) {
    if (out.length > 0) controller.enqueue(out);
  } else {
    for (const chunk of out) controller.enqueue(chunk);
  }
}

export function createOpenStream(core: EnvelopeCore, options?: OpenOptions): TransformStream<ByteInput, Uint8Array> {
  const signal = checkSignal(options?.signal);
  keepStreamShapes();
  let pending = new Uint8Array(1024);
  let pendingLength = 0;
  let opener: PayloadOpener | CompactOpener | undefined;
  // A compact message over an asynchronous AEAD: gathered, then opened with it at the end.
  let compactAead: AsyncAead | undefined;
  // Over an asynchronous AEAD (WebCrypto): several chunks in flight, emitted in order.
  let pipeline: AsyncStreamOpener | undefined;
  let unlisten = (): void => {};
  const stop = (): void => {
    opener?.destroy();
    pipeline?.destroy();
  };

  return new TransformStream<ByteInput, Uint8Array>(
    {
      start(controller) {
        unlisten = onAbort(signal, controller, stop);
      },
      async transform(input, controller) {
        throwIfAborted(signal);
        const chunk = toBytes(input, 'chunk');
        if (pipeline) {
          await pipeline.push(chunk, (out) => controller.enqueue(out));
          return;
        }
        if (opener) {
          emit(controller, opener.push(chunk));
          return;
        }
        // Collect the header (at most MAX_HEADER_LENGTH bytes) before asking the KMS for anything.
        if (pendingLength + chunk.length > pending.length) {
          const grown = new Uint8Array(Math.max(pending.length * 2, pendingLength + chunk.length));
          grown.set(pending.subarray(0, pendingLength));
          pending = grown;
        }
        pending.set(chunk, pendingLength);
        pendingLength += chunk.length;
        const header: ParsedHeader | undefined = parseHeaderIfComplete(pending.subarray(0, pendingLength));
        if (!header) return;
        const session = await core.track(async () => core.beginOpen(header, options));
        if (signal?.aborted) {
          wipe(session.key); // aborted as the key arrived
          throw signal.reason;
        }
        const rest = pending.slice(header.length, pendingLength);
        pending = new Uint8Array(0);
        const aead = session.crypto.aead;
        try {
          if (aead && !header.compact) {
            pipeline = new AsyncStreamOpener(session.crypto, aead, header.suite, session.key, session.payloadContext.slice());
            await pipeline.push(rest, (out) => controller.enqueue(out));
          } else {
            const Opener = header.compact ? CompactOpener : PayloadOpener;
            opener = new Opener(session.crypto, header.suite, session.key, session.payloadContext.slice());
            if (header.compact) compactAead = aead;
            emit(controller, opener.push(rest));
          }
        } finally {
          wipe(rest);
        }
      },
      async flush(controller) {
        unlisten();
        throwIfAborted(signal);
        if (pipeline) {
          await pipeline.end((out) => controller.enqueue(out));
          return;
        }
        if (!opener) {
          throw pendingLength >= MAX_HEADER_LENGTH
            ? new HeaderMalformedError('header exceeds its largest possible size')
            : new HeaderMalformedError(pendingLength === 0 ? 'empty input: not a kms-envelope message' : 'input ends inside the header');
        }
        emit(controller, compactAead && opener instanceof CompactOpener ? await opener.endAsync(compactAead) : opener.end());
      },
      cancel() {
        unlisten();
        stop();
      },
    } as StreamTransformer,
    { highWaterMark: HIGH_WATER_MARK },
    { highWaterMark: HIGH_WATER_MARK },
  );
}
