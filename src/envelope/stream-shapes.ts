/**
 * One parked pipeline per process, so that a full collection does not cost the next stream its
 * optimized code. Node's WHATWG streams are JavaScript, and V8 drops the shape (map) of a kind of
 * object once a full collection finds none alive, deoptimizing every function compiled against it.
 * Between two streams no reader, read request, pipe or write of Node's is alive, so a stream after
 * a full collection ran the stream machinery unoptimized and paid to compile it again (measured:
 * 43-85 such deoptimizations in 6-8 collections, openStream 0.70x raw node:crypto after a forced
 * GC; BENCHMARKS.md, session 11). The parked pipeline holds one of each for good: a pipe waiting
 * on its source's read, into a TransformStream whose readable a for-await loop waits on; a
 * reader's read; a sink's write in flight with one queued. It carries no bytes of anyone's,
 * never runs again, and keeps nothing of any caller's stream (see keepShape, core/bytes.ts).
 * Made where `process.versions.node` is set (Node; Deno and Bun set it too, harmlessly);
 * browsers' streams are native code, with no shapes of this kind to keep.
 */

let parked: readonly object[] | undefined;

/** Parks the pipeline, once per process, on Node. */
export function keepStreamShapes(): void {
  if (parked || typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== 'string') return;
  const never = new Promise<void>(() => {});
  const empty = new Uint8Array(0);
  const waiting = (): ReadableStream<Uint8Array> => new ReadableStream<Uint8Array>({ pull: () => never });
  // A pipe waiting on its source's read, into a for-await read waiting on the TransformStream.
  const through = waiting().pipeThrough(new TransformStream<Uint8Array, Uint8Array>());
  const iterator = (through as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  void iterator.next();
  const reader = waiting().getReader();
  void reader.read();
  // A sink's write in flight and one queued behind it (a pipeTo into the caller's WritableStream).
  const writer = new WritableStream<Uint8Array>({ write: () => never }).getWriter();
  void writer.write(empty);
  void writer.write(empty);
  parked = [through, iterator, reader, writer];
}

/** For the tests only: not part of the API (never imported by src/). */
export const testing = { parked: (): readonly object[] | undefined => parked };
