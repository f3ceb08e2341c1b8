/** Writes behind the producer: see WriteBehind. */
import type { FileHandle } from 'node:fs/promises';

/** Written bytes allowed in flight before the producer waits. */
const WRITE_BEHIND_BYTES = 4 * 1024 * 1024;

/**
 * Writes at explicit positions without waiting for each write, so that reading and encrypting the
 * next piece overlap the last one's write; the producer waits only while more than
 * WRITE_BEHIND_BYTES are in flight. Every buffer handed over is the producer's to give (never
 * reused). The first failure is thrown by the next write() or by flush().
 */
export class WriteBehind {
  readonly #handle: FileHandle;
  readonly #inFlight = new Set<Promise<void>>();
  #inFlightBytes = 0;
  #failure: unknown;
  /** Bytes handed to write(): the position of the next one. */
  written = 0;

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  async write(bytes: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const parts = bytes instanceof Uint8Array ? [bytes] : bytes;
    let length = 0;
    for (const part of parts) length += part.length;
    if (length === 0) return;
    const position = this.written;
    this.written += length;
    this.#inFlightBytes += length;
    const done = this.#writeAll(parts, position).then(
      () => {
        this.#inFlightBytes -= length;
        this.#inFlight.delete(done);
      },
      (error: unknown) => {
        this.#failure ??= error;
        this.#inFlightBytes -= length;
        this.#inFlight.delete(done);
      },
    );
    this.#inFlight.add(done);
    while (this.#inFlightBytes > WRITE_BEHIND_BYTES && this.#inFlight.size > 0) await Promise.race(this.#inFlight);
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Waits for every write; throws the first failure. */
  async flush(): Promise<void> {
    await this.settle();
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Waits for every write, failed or not. */
  async settle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  // One writev, then single writes for whatever a short write left.
  async #writeAll(parts: readonly Uint8Array[], position: number): Promise<void> {
    let { bytesWritten: skip } = await this.#handle.writev(parts as Uint8Array[], position);
    for (const part of parts) {
      for (let o = Math.min(skip, part.length); o < part.length; ) {
        o += (await this.#handle.write(part, o, part.length - o, position + o)).bytesWritten;
      }
      skip = Math.max(0, skip - part.length);
      position += part.length;
    }
  }
}
