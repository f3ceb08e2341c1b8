/**
 * AES-GCM over node:crypto (OpenSSL), with a 16-byte tag. The node backend uses these functions,
 * and the worker threads of kms-envelope/node run them from their source text: each is
 * self-contained (no imports, no outer names), so there is one definition of each.
 *
 * `NodeCryptoLike` is the part of node:crypto they use, typed here so that core/ needs no
 * `node:` types.
 */

export interface NodeGcmCipher {
  setAAD(aad: Uint8Array): unknown;
  update(data: Uint8Array): Uint8Array;
  final(): Uint8Array;
  getAuthTag(): Uint8Array;
}

export interface NodeGcmDecipher {
  setAAD(aad: Uint8Array): unknown;
  setAuthTag(tag: Uint8Array): unknown;
  update(data: Uint8Array): Uint8Array;
  final(): Uint8Array;
}

export interface NodeHmac {
  update(data: Uint8Array): unknown;
  digest(): Uint8Array;
}

export interface NodeCryptoLike {
  createCipheriv(algorithm: string, key: Uint8Array, iv: Uint8Array, options: { authTagLength: number }): NodeGcmCipher;
  createDecipheriv(algorithm: string, key: Uint8Array, iv: Uint8Array, options: { authTagLength: number }): NodeGcmDecipher;
  createHmac(algorithm: string, key: Uint8Array): NodeHmac;
  createHash(algorithm: string): { update(data: Uint8Array): { digest(encoding: 'base64'): string } };
  randomFillSync(buffer: Uint8Array): unknown;
  /** Node 20.12+: the one-call hash. */
  hash?: (algorithm: string, data: Uint8Array, encoding: 'base64') => string;
}

/** One AES-GCM call's key, nonce and additional data. */
export interface GcmInput {
  readonly key: Uint8Array;
  readonly nonce: Uint8Array;
  readonly aad?: Uint8Array | undefined;
}

/**
 * Writes ciphertext || tag (plaintext.length + 16 bytes) into `out` at `offset`. Self-contained
 * (no import used): node/worker-pool.ts ships its source to worker threads.
 */
export function nodeGcmSeal(c: NodeCryptoLike, { key, nonce, aad }: GcmInput, plaintext: Uint8Array, out: Uint8Array, offset: number): void {
  const algorithm = key.length === 32 ? 'aes-256-gcm' : key.length === 16 ? 'aes-128-gcm' : key.length === 24 ? 'aes-192-gcm' : '';
  if (!algorithm) throw new RangeError(`AES-GCM key must be 16, 24 or 32 bytes, got ${key.length}`);
  const cipher = c.createCipheriv(algorithm, key, nonce, { authTagLength: 16 });
  if (aad) cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  const tail = cipher.final();
  out.set(body, offset);
  out.set(tail, offset + body.length);
  out.set(cipher.getAuthTag(), offset + body.length + tail.length);
}

/**
 * Verifies and decrypts `sealed` (ciphertext || tag) into `out` at `offset`; false when the tag
 * does not verify, and the output region is then zero. With `fresh`, returns the plaintext in a
 * buffer of its own instead (out and offset unused), or undefined. Self-contained, as nodeGcmSeal.
 */
export function nodeGcmOpen(c: NodeCryptoLike, { key, nonce, aad }: GcmInput, sealed: Uint8Array, out: Uint8Array | undefined, offset: number): Uint8Array | boolean {
  if (sealed.length < 16) return false;
  const algorithm = key.length === 32 ? 'aes-256-gcm' : key.length === 16 ? 'aes-128-gcm' : key.length === 24 ? 'aes-192-gcm' : '';
  if (!algorithm) throw new RangeError(`AES-GCM key must be 16, 24 or 32 bytes, got ${key.length}`);
  const ctLen = sealed.length - 16;
  const decipher = c.createDecipheriv(algorithm, key, nonce, { authTagLength: 16 });
  decipher.setAuthTag(sealed.subarray(ctLen));
  if (aad) decipher.setAAD(aad);
  // OpenSSL decrypts before it verifies: the plaintext is released only once the tag verified,
  // and zeroed (with any copy) when it does not.
  const body = decipher.update(sealed.subarray(0, ctLen));
  if (out) out.set(body, offset);
  try {
    decipher.final();
  } catch {
    body.fill(0);
    if (out) out.fill(0, offset, offset + ctLen);
    return false;
  }
  if (!out) {
    // A plain Uint8Array over the Buffer's own memory (OpenSSL output is never pooled; copied if it
    // ever were, so that `.buffer` exposes nothing else).
    return body.buffer.byteLength === body.length ? new Uint8Array(body.buffer, body.byteOffset, body.length) : new Uint8Array(body);
  }
  // Small outputs are data keys (LocalKms unwrap): no copy of them may survive. Message chunks are
  // the caller's plaintext anyway, and skipping their wipe saves a pass.
  if (ctLen <= 64) body.fill(0);
  return true;
}
