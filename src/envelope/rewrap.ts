/**
 * Rewrap (README "Rotation"): a sealed message moved to another master key by replacing only its
 * wrapped-key section (core/wrapped-section.ts). The data key is re-wrapped by the KMS (one
 * ReEncrypt where the provider has it, Decrypt + Encrypt otherwise: kms/re-encrypt.ts); the
 * payload is never decrypted and its bytes, like the authenticated header bytes, stay identical.
 */
import { abortable, checkSignal, throwIfAborted } from '../core/abort.ts';
import { type ByteInput, describe, toBytes, wipe } from '../core/bytes.ts';
import { type CanonicalContext, canonicalContext, type ContextInput, sameContext } from '../core/context.ts';
import { ContextMismatchError, DecryptionFailedError, EnvelopeError, KeyProviderMismatchError, KmsError } from '../core/errors.ts';
import { HEADER_LIMITS, type ParsedHeader, parseHeader, VERSION, type WrappedKey } from '../core/header.ts';
import { usePortableCrypto } from '../core/backend-noble.ts';
import { keyOpensPayload } from '../core/key-check.ts';
import { replaceWrappedKeys } from '../core/wrapped-section.ts';
import { coreOf, type EnvelopeCore, payloadKeyOf } from './engine.ts';
import type { Bytes, Envelope } from './envelope.ts';
import type { KeyProvider } from '../kms/key-provider.ts';
import { reEncryptDataKey, rewrapPath } from '../kms/re-encrypt.ts';
import { checkTargets, type WrapTarget, wrapAlso } from './wrapped-keys.ts';

export interface RewrapOptions {
  /**
   * The master key the data key is wrapped under afterwards (for a KMS that rotates key material,
   * the same id moves it to the newest). Optional when the rewrap only adds or removes wrapped keys.
   */
  toKeyId?: string;
  /**
   * Format 2: wrapped keys to add (FORMAT.md §10.2), each by that provider's Encrypt of the data
   * key, which is first got through this envelope's providers and checked against the message's
   * key commitment (a wrapped key that decrypts to another data key is never copied).
   */
  addWrappedKeys?: readonly WrapTarget[];
  /** Format 2: wrapped keys to remove, by provider and master key; at least one stays. Removed before any is added. */
  removeWrappedKeys?: readonly { provider: string; keyId: string }[];
  /**
   * The message's context: required when it was sealed with a detached context (the KMS binds the
   * wrapped key to it); when stored, optional, and if given it must equal the stored one.
   */
  context?: ContextInput;
  /** Only the wrapped keys under this master key are rewrapped (format 2 may carry several); default every one of the envelope's provider. */
  fromKeyId?: string;
  /** Cancels: rejects with the signal's reason; nothing is written. */
  signal?: AbortSignal;
}

function checkOptions(options: RewrapOptions): { toKeyId: string | undefined; fromKeyId: string | undefined; signal: AbortSignal | undefined } {
  if (options === null || typeof options !== 'object') throw new TypeError(`"options" expected an object with "toKeyId", got ${describe(options)}`);
  const editsOnly = (options.addWrappedKeys !== undefined || options.removeWrappedKeys !== undefined) && options.toKeyId === undefined;
  if (!editsOnly && (typeof options.toKeyId !== 'string' || options.toKeyId.length === 0)) throw new TypeError(`"toKeyId" expected a non-empty string, got ${describe(options.toKeyId)}`);
  if (options.fromKeyId !== undefined && (typeof options.fromKeyId !== 'string' || options.fromKeyId.length === 0)) {
    throw new TypeError(`"fromKeyId" expected a non-empty string, got ${describe(options.fromKeyId)}`);
  }
  return { toKeyId: options.toKeyId, fromKeyId: options.fromKeyId, signal: checkSignal(options.signal) };
}

/** The context the wrapped key is bound to: the stored one (checked against the caller's), or the caller's for a detached one. */
function rewrapContext(header: ParsedHeader, given: ContextInput | undefined): CanonicalContext {
  const expected = given === undefined ? undefined : canonicalContext(given);
  if (header.detached) {
    if (!expected) throw new ContextMismatchError('this message was sealed with a detached context: pass the same context to rewrap()');
    return expected;
  }
  if (expected && !sameContext(expected, header.context!)) throw new ContextMismatchError('the context given to rewrap() is not the one the message was sealed with');
  return header.context!;
}

/** The KMS-wrapped keys of a message after the rewrap: the ones chosen rewrapped in place, the others as they were. */
async function rewrappedKeys(
  core: EnvelopeCore,
  kms: KeyProvider,
  header: ParsedHeader,
  context: CanonicalContext,
  options: { toKeyId: string; fromKeyId: string | undefined; signal: AbortSignal | undefined },
): Promise<WrappedKey[]> {
  const chosen = (w: WrappedKey): boolean => w.provider === kms.id && (options.fromKeyId === undefined || w.keyId === options.fromKeyId);
  if (!header.wrappedKeys.some(chosen)) {
    const named = header.wrappedKeys.map((w) => `${w.provider}:${w.keyId}`).join('", "');
    throw new KeyProviderMismatchError(`no wrapped key of this message is for key provider "${kms.id}"${options.fromKeyId === undefined ? '' : ` and master key "${options.fromKeyId}"`} (it has "${named}")`);
  }
  const path = rewrapPath(kms) ?? 'ReEncrypt';
  const out: WrappedKey[] = [];
  for (const w of header.wrappedKeys) {
    if (!chosen(w)) {
      out.push(w);
      continue;
    }
    throwIfAborted(options.signal);
    const started = Date.now();
    try {
      const request = { keySpec: header.suite.keySpec, keyId: w.keyId, ciphertextBlob: w.ciphertextBlob, toKeyId: options.toKeyId, context, signal: options.signal };
      const result = await abortable(reEncryptDataKey(kms, request), options.signal);
      core.emit({ type: 'kms-call', provider: kms.id, action: path, durationMs: Date.now() - started, ok: true });
      out.push({ provider: kms.id, keyId: result.keyId, ciphertextBlob: result.ciphertextBlob });
    } catch (error) {
      const aborted = options.signal?.aborted && error === options.signal.reason;
      const failure = aborted || error instanceof EnvelopeError || error instanceof TypeError ? error : new KmsError('key provider failed to rewrap the data key', { cause: error });
      const code = failure instanceof KmsError ? (failure.kmsCode ?? failure.code) : failure instanceof EnvelopeError ? failure.code : 'ABORTED';
      core.emit({ type: 'kms-call', provider: kms.id, action: path, durationMs: Date.now() - started, ok: false, errorCode: code });
      throw failure;
    }
  }
  return out;
}

/**
 * The rewrapped header of a message whose header is `header`: its authenticated bytes as they
 * were, and a new wrapped-key section. The payload that follows the old header follows this one
 * unchanged.
 */
export async function rewrapHeader(core: EnvelopeCore, header: ParsedHeader, options: RewrapOptions, payload?: Uint8Array): Promise<Uint8Array> {
  const checked = checkOptions(options);
  throwIfAborted(checked.signal);
  if (header.keySource !== 'kms') {
    const ref = header.intermediate!;
    throw new KeyProviderMismatchError(
      `this message was sealed under a key hierarchy (partition ${JSON.stringify(ref.partition)} version ${ref.version}): it has no KMS-wrapped key to rewrap; rotate the master key with hierarchy.rotateMasterKey() (the stored intermediate keys), or re-seal it to move it to a newer key version`,
    );
  }
  const kms = core.kms;
  if (!kms) throw new KeyProviderMismatchError('this envelope has no key provider ("kms"): rewrap needs the KMS that wrapped the data key');
  const context = rewrapContext(header, options.context);
  const edits = checkEdits(header, options);
  const toKeyId = checked.toKeyId;
  let wrapped = toKeyId === undefined ? [...header.wrappedKeys] : await rewrappedKeys(core, kms, header, context, { ...checked, toKeyId });
  wrapped = wrapped.filter((w) => !edits.remove.some((r) => r.provider === w.provider && r.keyId === w.keyId));
  if (edits.add.length > 0) wrapped.push(...(await addedKeys(core, { header, payload, context }, edits.add, checked.signal, options)));
  return replaceWrappedKeys(header, wrapped);
}

/** The wrapped keys to add and remove, checked (counts included) before any KMS call. */
function checkEdits(header: ParsedHeader, options: RewrapOptions): { add: readonly WrapTarget[]; remove: readonly { provider: string; keyId: string }[] } {
  const remove = options.removeWrappedKeys ?? [];
  if (!Array.isArray(remove) || remove.some((r) => r === null || typeof r !== 'object' || typeof r.provider !== 'string' || typeof r.keyId !== 'string')) {
    throw new TypeError(`"removeWrappedKeys" expected an array of { provider, keyId }, got ${describe(remove)}`);
  }
  const addGiven = options.addWrappedKeys ?? [];
  if ((remove.length > 0 || (Array.isArray(addGiven) && addGiven.length > 0)) && header.version === VERSION) {
    throw new RangeError('a format-1 message carries exactly one wrapped key: re-seal it with format 2 to add or remove wrapped keys');
  }
  const add = checkTargets(addGiven, HEADER_LIMITS.maxWrappedKeys - 1, '"addWrappedKeys"');
  const kept = header.wrappedKeys.filter((w) => !remove.some((r) => r.provider === w.provider && r.keyId === w.keyId)).length;
  if (kept === 0) throw new RangeError('removing every wrapped key would leave the message unopenable: at least one stays');
  if (kept + add.length > HEADER_LIMITS.maxWrappedKeys) throw new RangeError(`a message carries at most ${HEADER_LIMITS.maxWrappedKeys} wrapped keys: ${kept} kept and ${add.length} added`);
  return { add, remove };
}

/** The message a rewrap works on: its header, its payload (when given), the context its wrapped keys are bound to. */
interface RewrapMessage {
  readonly header: ParsedHeader;
  readonly payload: Uint8Array | undefined;
  readonly context: CanonicalContext;
}

/**
 * The new wrapped keys: the data key got as open() gets it (caches, providers, the cap on KMS
 * attempts), checked against the payload's key commitment, wrapped by each target, wiped.
 */
async function addedKeys(
  core: EnvelopeCore,
  { header, payload, context }: RewrapMessage,
  add: readonly WrapTarget[],
  signal: AbortSignal | undefined,
  options: RewrapOptions,
): Promise<WrappedKey[]> {
  if (!payload) throw new TypeError('adding a wrapped key needs the payload (its key commitment is checked first): rewrap the whole message');
  usePortableCrypto(); // a compact payload's commitment is checked by opening it, synchronously
  const session = await core.beginOpen(header, { ...(options.context === undefined ? {} : { context: options.context }), ...(signal ? { signal } : {}) }, { payloadLength: payload.length });
  const key = session.key;
  try {
    if (!keyOpensPayload(payloadKeyOf(session), payload, header.compact)) throw new DecryptionFailedError();
    const timed = async <T>(provider: string, call: () => Promise<T>): Promise<T> => {
      const started = Date.now();
      try {
        const result = await abortable(call(), signal);
        core.emit({ type: 'kms-call', provider, action: 'Encrypt', durationMs: Date.now() - started, ok: true });
        return result;
      } catch (error) {
        const code = error instanceof KmsError ? (error.kmsCode ?? error.code) : error instanceof EnvelopeError ? error.code : 'ERROR';
        core.emit({ type: 'kms-call', provider, action: 'Encrypt', durationMs: Date.now() - started, ok: false, errorCode: code });
        throw error instanceof EnvelopeError || (signal?.aborted && error === signal.reason) ? error : new KmsError('key provider failed to wrap the data key', { cause: error });
      }
    };
    return await wrapAlso({ extra: add, openers: [], maxAttempts: 1 }, key, context, signal, timed);
  } finally {
    if (!session.borrowed) wipe(key);
  }
}

/** A whole sealed message, rewrapped: the new header, then the payload bytes as they were. */
async function rewrapSealed(core: EnvelopeCore, sealed: Uint8Array, header: ParsedHeader, options: RewrapOptions): Promise<Uint8Array<ArrayBuffer>> {
  const newHeader = await rewrapHeader(core, header, options, sealed.subarray(header.length));
  const payload = sealed.subarray(header.length);
  const out = new Uint8Array(newHeader.length + payload.length);
  out.set(newHeader);
  out.set(payload, newHeader.length);
  return out;
}

/**
 * The message moved to the master key `toKeyId`: only its wrapped-key section is replaced (one KMS
 * ReEncrypt per wrapped key, or Decrypt + Encrypt where the provider has no ReEncrypt) through
 * `envelope`'s key providers; the payload is not decrypted and its bytes are identical. Needs
 * `context` for a detached context. (Envelope.rewrap() before 0.3.)
 *
 * @example
 * ```ts
 * import { createEnvelope, rewrap } from 'kms-envelope';
 * const moved = await rewrap(envelope, sealed, { toKeyId: 'alias/new' });
 * ```
 */
export function rewrap(envelope: Envelope, sealed: ByteInput, options: RewrapOptions): Promise<Bytes> {
  const core = coreOf(envelope);
  return core.track(() => {
    const bytes = toBytes(sealed, 'sealed');
    return rewrapSealed(core, bytes, parseHeader(bytes), options);
  });
}
