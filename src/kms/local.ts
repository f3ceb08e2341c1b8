/**
 * LocalKms: the embedded key provider for development, tests and single-machine use. Master keys
 * (one per key id) come from a key file (its text is parsed here; reading the file is
 * kms-envelope/node's localKmsFromKeyFile), an environment variable, or are generated. Data keys are
 * wrapped with AES-256-GCM binding the key id and the encryption context (FORMAT.md §9), so a
 * wrong context fails exactly as a real KMS does.
 */
import type { CryptoBackend } from '../core/backend.ts';
import { NONCE_LENGTH, TAG_LENGTH } from '../core/backend.ts';
import { base64, base64url, utf8, wipe } from '../core/bytes.ts';
import type { CanonicalContext } from '../core/context.ts';
import { DecryptionFailedError, KmsError } from '../core/errors.ts';
import type { DataKey, DecryptDataKeyRequest, EncryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider, ReEncryptDataKeyRequest, WrappedDataKey } from './key-provider.ts';
import { KEY_LENGTH_BY_SPEC } from '../core/suites.ts';
import { processEnv } from '../core/runtime.ts';
import { type BackendName, selectBackend } from '../core/select-backend.ts';

const MASTER_KEY_LENGTH = 32;
const BLOB_PREFIX = 'lk1.';
const AAD_LABEL = utf8('kms-envelope/local-kms/v1', 'label');
const FILE_FORMAT = 'kms-envelope local key file v1';
const DEFAULT_KEY_ID = 'default';
/** Environment variable read by LocalKms.fromEnv(): a base64 32-byte master key. */
const LOCAL_KEY_ENV = 'KMS_ENVELOPE_LOCAL_KEY';
const LOCAL_KEY_ID_ENV = 'KMS_ENVELOPE_LOCAL_KEY_ID';

export interface LocalKmsOptions {
  /** The key id that generateDataKey uses; default: the first key. */
  defaultKeyId?: string;
  /** Crypto backend; default node:crypto where available. */
  backend?: BackendName;
  /** Randomness source. Only for reproducible test vectors: never set it in production. */
  randomBytes?: (length: number) => Uint8Array;
}

interface KeyFile {
  format: typeof FILE_FORMAT;
  defaultKeyId: string;
  keys: Record<string, string>;
}

/**
 * `local-` (key files; `memory-` for generate()'s keys, which live only in this process) and 16
 * characters of SHA-256 over a label and the key: names the key, reveals nothing of it.
 */
function keyFingerprint(backend: CryptoBackend, key: Uint8Array, kind = 'local'): string {
  const label = utf8('kms-envelope/local-kms/key-id', 'label');
  const input = new Uint8Array(label.length + key.length);
  input.set(label);
  input.set(key, label.length);
  try {
    return `${kind}-${base64url.encode(base64.decode(backend.sha256Base64(input))!).slice(0, 16)}`;
  } finally {
    wipe(input);
  }
}

function decodeMasterKey(text: unknown, where: string): Uint8Array {
  const key = typeof text === 'string' ? base64.decode(text.trim()) : undefined;
  if (!key || key.length !== MASTER_KEY_LENGTH) {
    wipe(key);
    throw new KmsError(`${where}: a master key must be ${MASTER_KEY_LENGTH} bytes in base64`);
  }
  return key;
}

export class LocalKms implements KeyProvider {
  readonly id = 'local';
  readonly #keys = new Map<string, Uint8Array>();
  readonly #defaultKeyId: string;
  readonly #backend: CryptoBackend;
  readonly #random: (length: number) => Uint8Array;
  readonly #aads = new WeakMap<CanonicalContext, Map<string, { json: string; aad: Uint8Array }>>();

  /** Takes ownership of the master keys (they are wiped by destroy()). */
  constructor(masterKeys: Readonly<Record<string, Uint8Array>>, options: LocalKmsOptions = {}) {
    for (const [keyId, key] of Object.entries(masterKeys)) {
      if (!(key instanceof Uint8Array) || key.length !== MASTER_KEY_LENGTH) {
        throw new RangeError(`LocalKms master key "${keyId}" must be a Uint8Array of ${MASTER_KEY_LENGTH} bytes`);
      }
      if (keyId.length === 0 || keyId.length > 256) throw new RangeError('LocalKms key ids must be 1 to 256 characters');
      this.#keys.set(keyId, key);
    }
    const first = this.#keys.keys().next();
    if (first.done) throw new RangeError('LocalKms needs at least one master key');
    this.#defaultKeyId = options.defaultKeyId ?? first.value;
    if (!this.#keys.has(this.#defaultKeyId)) throw new RangeError(`LocalKms has no key "${this.#defaultKeyId}"`);
    this.#backend = selectBackend(options.backend);
    this.#random = options.randomBytes ?? ((n) => this.#backend.randomBytes(n));
  }

  /**
   * A LocalKms with one fresh in-memory master key (gone when the process ends). Its id is
   * `memory-` and a fingerprint of the key, so a blob wrapped by another process's key names it.
   */
  static generate(options: LocalKmsOptions & { keyId?: string } = {}): LocalKms {
    const backend = selectBackend(options.backend);
    const key = (options.randomBytes ?? backend.randomBytes)(MASTER_KEY_LENGTH);
    return new LocalKms({ [options.keyId ?? keyFingerprint(backend, key, 'memory')]: key }, options);
  }

  /**
   * Parses the text of a key file (see kms-envelope/node's localKmsFromKeyFile for reading one
   * safely); `where` names the file in errors.
   */
  static fromKeyFileText(text: string, where: string, options: LocalKmsOptions = {}): LocalKms {
    let parsed: Partial<KeyFile>;
    try {
      parsed = JSON.parse(text) as Partial<KeyFile>;
    } catch {
      throw new KmsError(`local key file ${where} is not valid JSON`);
    }
    if (parsed?.format !== FILE_FORMAT || typeof parsed.keys !== 'object' || parsed.keys === null) {
      throw new KmsError(`local key file ${where} is not a kms-envelope key file`);
    }
    const keys: Record<string, Uint8Array> = {};
    try {
      for (const [keyId, value] of Object.entries(parsed.keys)) keys[keyId] = decodeMasterKey(value, `local key file ${where}`);
    } catch (error) {
      for (const key of Object.values(keys)) wipe(key);
      throw error;
    }
    return new LocalKms(keys, { ...options, defaultKeyId: options.defaultKeyId ?? parsed.defaultKeyId });
  }

  /**
   * The text of a new key file with one fresh master key. Its key id is a fingerprint of the key
   * unless one is given, so two different keys never answer to the same id.
   */
  static newKeyFileText(options: { keyId?: string; backend?: BackendName } = {}): { text: string; keyId: string } {
    const backend = selectBackend(options.backend);
    const key = backend.randomBytes(MASTER_KEY_LENGTH);
    try {
      const keyId = options.keyId ?? keyFingerprint(backend, key);
      const file: KeyFile = { format: FILE_FORMAT, defaultKeyId: keyId, keys: { [keyId]: base64.encode(key) } };
      return { text: `${JSON.stringify(file, null, 2)}\n`, keyId };
    } finally {
      wipe(key);
    }
  }

  /**
   * From the environment: `KMS_ENVELOPE_LOCAL_KEY` (base64, 32 bytes) and optionally
   * `KMS_ENVELOPE_LOCAL_KEY_ID` (default "default").
   */
  static fromEnv(env: Record<string, string | undefined> = processEnv(), options: LocalKmsOptions = {}): LocalKms {
    const value = env[LOCAL_KEY_ENV];
    if (!value) throw new KmsError(`${LOCAL_KEY_ENV} is not set`);
    const keyId = env[LOCAL_KEY_ID_ENV] || DEFAULT_KEY_ID;
    return new LocalKms({ [keyId]: decodeMasterKey(value, LOCAL_KEY_ENV) }, options);
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  async generateDataKey(request: GenerateDataKeyRequest): Promise<DataKey> {
    const length = KEY_LENGTH_BY_SPEC[request.keySpec];
    if (!length) throw new KmsError(`LocalKms: unsupported key spec ${String(request.keySpec)}`);
    this.#master(this.#defaultKeyId);
    const plaintextKey = this.#random(length);
    try {
      return { keyId: this.#defaultKeyId, plaintextKey, ciphertextBlob: await this.#wrap(this.#defaultKeyId, plaintextKey, request.context) };
    } catch (error) {
      wipe(plaintextKey);
      throw error;
    }
  }

  /** A rewrap done here: the data key is unwrapped and wrapped under `toKeyId` (which this LocalKms must hold), then wiped. */
  async reEncryptDataKey(request: ReEncryptDataKeyRequest): Promise<WrappedDataKey> {
    this.#master(request.toKeyId);
    const key = await this.decryptDataKey(request);
    try {
      return { keyId: request.toKeyId, ciphertextBlob: await this.#wrap(request.toKeyId, key, request.context) };
    } finally {
      wipe(key);
    }
  }

  /**
   * Wraps a data key another provider generated under one of these master keys (a break-glass key
   * beside a KMS one: createEnvelope's `additionalWrapping`).
   */
  async encryptDataKey(request: EncryptDataKeyRequest): Promise<WrappedDataKey> {
    const length = request.plaintextKey?.length;
    if (!(request.plaintextKey instanceof Uint8Array) || (length !== 16 && length !== 32)) throw new KmsError('LocalKms: a data key is 16 or 32 bytes');
    return { keyId: request.keyId, ciphertextBlob: await this.#wrap(request.keyId, request.plaintextKey, request.context) };
  }

  /** AES-GCM under the master key: the backend's asynchronous AEAD where it has one (WebCrypto), else its synchronous one; the same bytes. */
  async #wrap(keyId: string, plaintextKey: Uint8Array, context: CanonicalContext): Promise<string> {
    const master = this.#master(keyId);
    const nonce = this.#random(NONCE_LENGTH);
    const aad = this.#aad(keyId, context);
    const sealed = new Uint8Array(NONCE_LENGTH + plaintextKey.length + TAG_LENGTH);
    sealed.set(nonce);
    const aead = this.#backend.aead;
    if (aead) sealed.set(await aead.seal(await aead.importKey(master), nonce, plaintextKey, aad), NONCE_LENGTH);
    else this.#backend.gcmSeal(master, nonce, plaintextKey, sealed, NONCE_LENGTH, aad);
    return BLOB_PREFIX + base64url.encode(sealed);
  }

  async decryptDataKey(request: DecryptDataKeyRequest): Promise<Uint8Array> {
    const master = this.#master(request.keyId);
    const blob = request.ciphertextBlob;
    const sealed = blob.startsWith(BLOB_PREFIX) ? base64url.decode(blob.slice(BLOB_PREFIX.length)) : undefined;
    if (!sealed || sealed.length !== NONCE_LENGTH + KEY_LENGTH_BY_SPEC[request.keySpec] + TAG_LENGTH) {
      throw new DecryptionFailedError();
    }
    const [nonce, body, aad] = [sealed.subarray(0, NONCE_LENGTH), sealed.subarray(NONCE_LENGTH), this.#aad(request.keyId, request.context)];
    const aead = this.#backend.aead;
    if (aead) {
      const opened = await aead.open(await aead.importKey(master), nonce, body, aad);
      if (!opened) throw new DecryptionFailedError();
      return opened;
    }
    const plaintextKey = new Uint8Array(sealed.length - NONCE_LENGTH - TAG_LENGTH);
    if (!this.#backend.gcmOpen(master, nonce, body, plaintextKey, 0, aad)) throw new DecryptionFailedError();
    return plaintextKey;
  }

  /** Wipes every master key; the instance is unusable afterwards. */
  destroy(): void {
    for (const key of this.#keys.values()) wipe(key);
    this.#keys.clear();
  }

  #master(keyId: string): Uint8Array {
    const key = this.#keys.get(keyId);
    if (!key) throw new KmsError(`LocalKms has no master key "${keyId}"`, { kmsCode: 'ResourceUnavailable.CmkNotFound' });
    return key;
  }

  /**
   * label || 0 || key id || 0 || context JSON, made once per context and key id (it is not
   * secret), and made again should a caller's context object show another JSON.
   */
  #aad(keyId: string, context: CanonicalContext): Uint8Array {
    const json = context.json;
    let byKeyId = this.#aads.get(context);
    if (!byKeyId) {
      byKeyId = new Map();
      this.#aads.set(context, byKeyId);
    }
    const known = byKeyId.get(keyId);
    if (known && known.json === json) return known.aad;
    const id = utf8(keyId, 'key id');
    const ctx = utf8(json, 'context');
    const aad = new Uint8Array(AAD_LABEL.length + 1 + id.length + 1 + ctx.length);
    aad.set(AAD_LABEL);
    aad.set(id, AAD_LABEL.length + 1);
    aad.set(ctx, AAD_LABEL.length + 2 + id.length);
    byKeyId.set(keyId, { json, aad });
    return aad;
  }

  toString(): string {
    return `LocalKms { keyIds: ${JSON.stringify(this.keyIds)} }`;
  }

  toJSON(): object {
    return { provider: this.id, keyIds: this.keyIds };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}
