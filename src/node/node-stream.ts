/** Node stream adapters over the WHATWG streams of an envelope: the same bytes as seal() and open(). */
import { Duplex } from 'node:stream';
import type { ReadableWritablePair } from 'node:stream/web';
import { coreOf, type OpenOptions, type StreamSealOptions } from '../envelope/engine.ts';
import type { Envelope } from '../envelope/envelope.ts';
import { createOpenStream, createSealStream } from '../envelope/stream.ts';

function toDuplex(stream: TransformStream<Uint8Array, Uint8Array>): Duplex {
  return Duplex.fromWeb(stream as unknown as ReadableWritablePair<Uint8Array, Uint8Array>);
}

/** `pipeline(fs.createReadStream(a), sealNodeStream(envelope, { context }), fs.createWriteStream(b))`. */
export function sealNodeStream(envelope: Envelope, options?: StreamSealOptions): Duplex {
  return toDuplex(createSealStream(coreOf(envelope), options));
}

/** Releases each chunk's plaintext only after it authenticates; a truncated stream ends in an error. */
export function openNodeStream(envelope: Envelope, options?: OpenOptions): Duplex {
  return toDuplex(createOpenStream(coreOf(envelope), options));
}
