/**
 * sealSync() and openSync(): seal() and open() that answer at once, for hooks that cannot wait
 * (ORM column types, the record API). They bring the portable AES-GCM (@noble/ciphers) for the
 * WebCrypto backend, whose own answers later: an application that never calls them never loads it.
 */
import type { ByteInput } from '../core/bytes.ts';
import { usePortableCrypto } from '../core/backend-noble.ts';
import { wipe } from '../core/bytes.ts';
import { type Bytes, openSealedSync, sealBuffer } from './buffers.ts';
import { coreOf, type EnvelopeCore, type OpenOptions, type SealOptions } from './engine.ts';
import type { Envelope } from './envelope.ts';

/**
 * seal(), synchronously: when its key is in memory (a warm key hierarchy, or the encryption
 * cache), else a KeyNotWarmError (ERR_KEY_NOT_WARM) while the key loads. (Envelope.sealSync() before 0.3.)
 *
 * @example
 * ```ts
 * import { sealSync } from 'kms-envelope';
 * const sealed = sealSync(envelope, 'secret', { context, partition: 'tenant-1' });
 * ```
 */
export function sealSync(envelope: Envelope, plaintext: ByteInput | string, options?: SealOptions): Bytes {
  const core = coreOf(envelope);
  usePortableCrypto();
  return core.trackSync(sealNow, plaintext, options, 'sealSync', ignore);
}

/** open(), synchronously, as sealSync. (Envelope.openSync() before 0.3.) */
export function openSync(envelope: Envelope, sealed: ByteInput, options?: OpenOptions): Bytes {
  const core = coreOf(envelope);
  usePortableCrypto();
  return core.trackSync(openNow, sealed, options, 'openSync', wipe);
}

// The work of each call as module functions: no closures per call (a database row makes several).
const sealNow = (core: EnvelopeCore, plaintext: ByteInput | string, options: SealOptions | undefined): Bytes | Promise<Bytes> => sealBuffer(core, plaintext, options, true);
const openNow = (core: EnvelopeCore, sealed: ByteInput, options: OpenOptions | undefined): Bytes | Promise<Bytes> => openSealedSync(core, sealed, options);
const ignore = (): void => {};
