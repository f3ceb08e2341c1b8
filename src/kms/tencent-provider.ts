/**
 * What the two Tencent providers share: the KeyProvider calls and Encrypt, written once over each
 * API's `call()` and its parameter spelling (API 3.0 `KeyId`, the legacy API `keyId`).
 */
import { base64, utf8 } from '../core/bytes.ts';
import { KmsError } from '../core/errors.ts';
import { KEY_LENGTH_BY_SPEC } from '../core/suites.ts';
import type {
  DataKey,
  DecryptDataKeyRequest,
  EncryptDataKeyRequest,
  GenerateDataKeyRequest,
  KeyAdministration,
  KeyProvider,
  WrappedDataKey,
} from './key-provider.ts';
import type { ResponseKeyPair, ResponseKeys } from './response-key.ts';
import { dataKeyFromResponse, decodeDataKey, stringField } from './tencent-transport.ts';

/** The parameter and field names of one API. */
export interface WireNames {
  keyId: string;
  keySpec: string;
  context: string;
  plaintext: string;
  blob: string;
  pendingWindow: string;
  deletionDate: string;
}

export const API3_NAMES: WireNames = { keyId: 'KeyId', keySpec: 'KeySpec', context: 'EncryptionContext', plaintext: 'Plaintext', blob: 'CiphertextBlob', pendingWindow: 'PendingWindowInDays', deletionDate: 'DeletionDate' };
export const LEGACY_NAMES: WireNames = { keyId: 'keyId', keySpec: 'keySpec', context: 'encryptionContext', plaintext: 'plaintext', blob: 'ciphertextBlob', pendingWindow: 'pendingWindowInDays', deletionDate: 'deletionDate' };

/**
 * The most EncryptionContext a Tencent KMS takes: 1024 characters by its documentation, held here
 * to 1024 UTF-8 bytes of the canonical JSON (never more than 1024 characters), so no call is sent
 * that the KMS would refuse.
 */
const TENCENT_MAX_CONTEXT_BYTES = 1024;

/** A context over the KMS's limit: refused before any network call (ERR_KMS, kind `bad-request`). */
export function checkContextSize(json: string, action: string): void {
  // Each UTF-16 unit is 1 to 3 UTF-8 bytes: most contexts are decided by their length alone.
  if (json.length * 3 <= TENCENT_MAX_CONTEXT_BYTES) return;
  const bytes = utf8(json, 'context').length;
  if (bytes > TENCENT_MAX_CONTEXT_BYTES) {
    throw new KmsError(`${action}: the encryption context is ${bytes} bytes as JSON; the KMS takes at most ${TENCENT_MAX_CONTEXT_BYTES}`, { kind: 'bad-request' });
  }
}

/** Tencent's window for ScheduleKeyDeletion, in days (reference/tencent-kms.md; InvalidParameter.InvalidPendingWindowInDays outside it). */
const PENDING_WINDOW_DAYS = { min: 7, max: 30 } as const;

export abstract class TencentProvider implements KeyProvider, KeyAdministration {
  abstract readonly id: string;
  /** The CMK that generateDataKey and encrypt use. Not needed to open: the blob names its CMK. */
  readonly keyId: string | undefined;
  readonly region: string;
  readonly #names: WireNames;
  readonly #endpoint: URL;
  readonly #className: string;
  /** Set when data keys come back under a public key (API 3.0 only; response-key.ts). */
  protected responseKeys: ResponseKeys | undefined;

  protected constructor(className: string, names: WireNames, keyId: string | undefined, region: string, endpoint: URL) {
    this.#className = className;
    this.#names = names;
    this.keyId = keyId;
    this.region = region;
    this.#endpoint = endpoint;
  }

  /** Any KMS action: the response object (API 3.0: without its `Response` wrapper). `signal` cancels the call. */
  abstract call(action: string, params: Record<string, string | number>, options?: CallOptions): Promise<Record<string, unknown>>;

  // The context is always sent, as `{}` when empty (FORMAT.md §3): Decrypt must see what GenerateDataKey saw.
  async generateDataKey(request: GenerateDataKeyRequest): Promise<DataKey> {
    const n = this.#names;
    const keyId = this.requireKeyId(this.keyId);
    const context = request.context.json;
    checkContextSize(context, 'GenerateDataKey');
    const length = KEY_LENGTH_BY_SPEC[request.keySpec];
    const params = { [n.keyId]: keyId, [n.keySpec]: request.keySpec, [n.context]: context };
    const keys = this.responseKeys;
    if (!keys) return dataKeyFromResponse(await this.call('GenerateDataKey', params, signalOf(request)), { plaintext: n.plaintext, blob: n.blob, keyId: n.keyId }, length, keyId);
    const pair = await keys.pair();
    const response = await this.call('GenerateDataKey', { ...params, ...publicKeyParams(pair, keys) }, signalOf(request));
    const ciphertextBlob = requireString(response, n.blob, 'GenerateDataKey');
    const plaintextKey = await keys.open(pair, response[n.plaintext], length, 'GenerateDataKey');
    return { keyId: stringField(response, n.keyId) ?? keyId, plaintextKey, ciphertextBlob };
  }

  async decryptDataKey(request: DecryptDataKeyRequest): Promise<Uint8Array> {
    const n = this.#names;
    const context = request.context.json;
    checkContextSize(context, 'Decrypt');
    const length = KEY_LENGTH_BY_SPEC[request.keySpec];
    const params = { [n.blob]: request.ciphertextBlob, [n.context]: context };
    const keys = this.responseKeys;
    if (!keys) return decodeDataKey((await this.call('Decrypt', params, signalOf(request)))[n.plaintext], length, 'Decrypt');
    const pair = await keys.pair();
    const response = await this.call('Decrypt', { ...params, ...publicKeyParams(pair, keys) }, signalOf(request));
    return keys.open(pair, response[n.plaintext], length, 'Decrypt');
  }

  /** Encrypts a small plaintext (up to 4 KiB) under a CMK; returns the ciphertext blob. */
  async encrypt(plaintext: Uint8Array, options: { keyId?: string; context?: string } = {}): Promise<string> {
    const n = this.#names;
    if (options.context !== undefined) checkContextSize(options.context, 'Encrypt');
    const response = await this.call('Encrypt', {
      [n.keyId]: this.requireKeyId(options.keyId ?? this.keyId),
      [n.plaintext]: base64.encode(plaintext),
      ...(options.context === undefined ? {} : { [n.context]: options.context }),
    });
    return requireString(response, n.blob, 'Encrypt');
  }

  /** Wraps a given data key under a master key (Encrypt): the second half of a rewrap without ReEncrypt. */
  async encryptDataKey(request: EncryptDataKeyRequest): Promise<WrappedDataKey> {
    const n = this.#names;
    const context = request.context.json;
    checkContextSize(context, 'Encrypt');
    const keyId = this.requireKeyId(request.keyId);
    const response = await this.call('Encrypt', { [n.keyId]: keyId, [n.plaintext]: base64.encode(request.plaintextKey), [n.context]: context }, signalOf(request));
    return { keyId: stringField(response, n.keyId) ?? keyId, ciphertextBlob: requireString(response, n.blob, 'Encrypt') };
  }

  /** DisableKey: every Decrypt, GenerateDataKey and ReEncrypt with this master key fails (ResourceUnavailable.CmkDisabled, legacy 4550). */
  async disableKey(keyId: string): Promise<void> {
    await this.call('DisableKey', { [this.#names.keyId]: this.requireKeyId(keyId) });
  }

  async enableKey(keyId: string): Promise<void> {
    await this.call('EnableKey', { [this.#names.keyId]: this.requireKeyId(keyId) });
  }

  /**
   * ScheduleKeyDeletion: the master key (disabled first, as Tencent requires) is deleted after
   * 7 to 30 days; until then CancelKeyDeletion brings it back, so the data is not yet gone.
   */
  async scheduleKeyDeletion(keyId: string, pendingWindowInDays: number): Promise<{ deletionDate: number | undefined }> {
    const n = this.#names;
    if (!Number.isInteger(pendingWindowInDays) || pendingWindowInDays < PENDING_WINDOW_DAYS.min || pendingWindowInDays > PENDING_WINDOW_DAYS.max) {
      throw new RangeError(`"pendingWindowInDays" must be an integer from ${PENDING_WINDOW_DAYS.min} to ${PENDING_WINDOW_DAYS.max}, got ${pendingWindowInDays}`);
    }
    const response = await this.call('ScheduleKeyDeletion', { [n.keyId]: this.requireKeyId(keyId), [n.pendingWindow]: pendingWindowInDays });
    const date = response[n.deletionDate];
    return { deletionDate: typeof date === 'number' ? date : undefined };
  }

  async cancelKeyDeletion(keyId: string): Promise<void> {
    await this.call('CancelKeyDeletion', { [this.#names.keyId]: this.requireKeyId(keyId) });
  }

  protected requireKeyId(keyId: string | undefined): string {
    if (!keyId) throw new TypeError(`${this.#className} needs "keyId" (the CMK) to generate data keys or encrypt`);
    return keyId;
  }

  toString(): string {
    return `${this.#className} { region: ${this.region}, keyId: ${this.keyId ?? '(none)'}, endpoint: ${this.#endpoint.origin} }`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

export function requireString(response: Record<string, unknown>, field: string, action: string): string {
  const value = stringField(response, field);
  if (!value) throw new KmsError(`${action}: the KMS response has no ${field}`, { kind: 'bad-response' });
  return value;
}

/** The parameters that make the KMS return Plaintext under the caller's public key. */
function publicKeyParams(pair: ResponseKeyPair, keys: ResponseKeys): Record<string, string> {
  return { EncryptionPublicKey: pair.publicKeyPem, EncryptionAlgorithm: keys.algorithm };
}

/** A call's options: `signal` cancels it; `probe` makes it one attempt, no retries. */
export interface CallOptions {
  signal?: AbortSignal;
  probe?: boolean;
}

/** A request's signal and probe flag, as the call's options. */
function signalOf(request: { readonly signal?: AbortSignal | undefined; readonly probe?: boolean | undefined }): CallOptions {
  return { ...(request.signal ? { signal: request.signal } : {}), ...(request.probe ? { probe: true } : {}) };
}
