/**
 * The nonce of chunk `counter` (C2SP chunked encryption): the base nonce XOR the counter,
 * big-endian, in the last bytes. The counter is below 2^38, so it spans the last 5 bytes: a high
 * byte and a low 32-bit word.
 *
 * Self-contained on purpose (no imports, no outer names): the worker threads of kms-envelope/node
 * run this very function from its source text, so both sides compute nonces from one definition.
 */
export function chunkNonce(base: Uint8Array, counter: number, out: Uint8Array): Uint8Array {
  out.set(base);
  const high = Math.floor(counter / 4294967296);
  const low = counter >>> 0;
  out[7]! ^= high;
  out[8]! ^= low >>> 24;
  out[9]! ^= (low >>> 16) & 0xff;
  out[10]! ^= (low >>> 8) & 0xff;
  out[11]! ^= low & 0xff;
  return out;
}
