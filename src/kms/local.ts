/**
 * LocalKms: the embedded key provider for development, tests and single-machine use. Master keys
 * (one per key id) come from a key file, an environment variable, or are generated. Data keys are
 * wrapped with AES-256-GCM binding the key id and the encryption context (FORMAT.md §9), so a
 * wrong context fails exactly as a real KMS does.
 */
import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import type { CryptoBackend } from '../core/backend.ts';
import { NONCE_LENGTH, TAG_LENGTH } from '../core/backend.ts';
import { base64, base64url, utf8, wipe } from '../core/bytes.ts';
import type { CanonicalContext } from '../core/context.ts';
import { DecryptionFailedError, KmsError } from '../core/errors.ts';
import type { DataKey, DecryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider } from './key-provider.ts';
import { KEY_LENGTH_BY_SPEC } from './key-provider.ts';
import { type BackendName, selectBackend } from '../core/select-backend.ts';

const MASTER_KEY_LENGTH = 32;
const BLOB_PREFIX = 'lk1.';
const AAD_LABEL = utf8('kms-envelope/local-kms/v1', 'label');
const FILE_FORMAT = 'kms-envelope local key file v1';
export const DEFAULT_KEY_ID = 'default';
/** Environment variable read by LocalKms.fromEnv(): a base64 32-byte master key. */
export const LOCAL_KEY_ENV = 'KMS_ENVELOPE_LOCAL_KEY';
export const LOCAL_KEY_ID_ENV = 'KMS_ENVELOPE_LOCAL_KEY_ID';

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

function nodeModule<T>(id: string): T {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const mod = proc?.getBuiltinModule?.(id) as T | undefined;
  if (!mod) throw new TypeError(`LocalKms key files need ${id}, which this runtime does not have`);
  return mod;
}

function processEnv(): Record<string, string | undefined> {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
}

function isWindows(): boolean {
  return (globalThis as { process?: { platform?: string } }).process?.platform === 'win32';
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

  /** A LocalKms with one fresh in-memory master key (gone when the process ends). */
  static generate(options: LocalKmsOptions & { keyId?: string } = {}): LocalKms {
    const backend = selectBackend(options.backend);
    const random = options.randomBytes ?? backend.randomBytes;
    return new LocalKms({ [options.keyId ?? DEFAULT_KEY_ID]: random(MASTER_KEY_LENGTH) }, options);
  }

  /**
   * Reads a key file. With `create: true`, a missing file is created with a fresh key (mode 0600).
   * A file that others can read is refused.
   */
  static fromKeyFile(path: string, options: LocalKmsOptions & { create?: boolean } = {}): LocalKms {
    const fs = nodeModule<typeof NodeFs>('node:fs');
    let text: string;
    try {
      const stat = fs.statSync(path);
      if (!isWindows() && (stat.mode & 0o077) !== 0) {
        throw new KmsError(
          `local key file ${path} is readable by others (mode ${(stat.mode & 0o777).toString(8)}); run chmod 600 on it`,
        );
      }
      text = fs.readFileSync(path, 'utf8');
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT' && options.create) {
        LocalKms.createKeyFile(path, options);
        return LocalKms.fromKeyFile(path, { ...options, create: false });
      }
      if (error instanceof KmsError) throw error;
      throw new KmsError(`cannot read local key file ${path}: ${(error as Error).message}`, { cause: error });
    }
    let parsed: Partial<KeyFile>;
    try {
      parsed = JSON.parse(text) as Partial<KeyFile>;
    } catch {
      throw new KmsError(`local key file ${path} is not valid JSON`);
    }
    if (parsed?.format !== FILE_FORMAT || typeof parsed.keys !== 'object' || parsed.keys === null) {
      throw new KmsError(`local key file ${path} is not a kms-envelope key file`);
    }
    const keys: Record<string, Uint8Array> = {};
    for (const [keyId, value] of Object.entries(parsed.keys)) keys[keyId] = decodeMasterKey(value, `local key file ${path}`);
    return new LocalKms(keys, { ...options, defaultKeyId: options.defaultKeyId ?? parsed.defaultKeyId });
  }

  /** Writes a new key file with one fresh master key: mode 0600, never over an existing file. */
  static createKeyFile(path: string, options: { keyId?: string; backend?: BackendName } = {}): void {
    const fs = nodeModule<typeof NodeFs>('node:fs');
    const pathModule = nodeModule<typeof NodePath>('node:path');
    fs.mkdirSync(pathModule.dirname(path), { recursive: true, mode: 0o700 });
    const keyId = options.keyId ?? DEFAULT_KEY_ID;
    const key = selectBackend(options.backend).randomBytes(MASTER_KEY_LENGTH);
    const file: KeyFile = { format: FILE_FORMAT, defaultKeyId: keyId, keys: { [keyId]: base64.encode(key) } };
    wipe(key);
    // 'wx': fails if the file exists, so a key is never overwritten and lost.
    const fd = fs.openSync(path, 'wx', 0o600);
    try {
      fs.writeFileSync(fd, `${JSON.stringify(file, null, 2)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
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
    const master = this.#master(this.#defaultKeyId);
    const length = KEY_LENGTH_BY_SPEC[request.keySpec];
    if (!length) throw new KmsError(`LocalKms: unsupported key spec ${String(request.keySpec)}`);
    const plaintextKey = this.#random(length);
    const nonce = this.#random(NONCE_LENGTH);
    const sealed = new Uint8Array(NONCE_LENGTH + length + TAG_LENGTH);
    sealed.set(nonce);
    try {
      this.#backend.gcmSeal(master, nonce, plaintextKey, sealed, NONCE_LENGTH, this.#aad(this.#defaultKeyId, request.context));
    } catch (error) {
      wipe(plaintextKey);
      throw error;
    }
    return { keyId: this.#defaultKeyId, plaintextKey, ciphertextBlob: BLOB_PREFIX + base64url.encode(sealed) };
  }

  async decryptDataKey(request: DecryptDataKeyRequest): Promise<Uint8Array> {
    const master = this.#master(request.keyId);
    const blob = request.ciphertextBlob;
    const sealed = blob.startsWith(BLOB_PREFIX) ? base64url.decode(blob.slice(BLOB_PREFIX.length)) : undefined;
    if (!sealed || sealed.length !== NONCE_LENGTH + KEY_LENGTH_BY_SPEC[request.keySpec] + TAG_LENGTH) {
      throw new DecryptionFailedError();
    }
    const plaintextKey = new Uint8Array(sealed.length - NONCE_LENGTH - TAG_LENGTH);
    const ok = this.#backend.gcmOpen(
      master,
      sealed.subarray(0, NONCE_LENGTH),
      sealed.subarray(NONCE_LENGTH),
      plaintextKey,
      0,
      this.#aad(request.keyId, request.context),
    );
    if (!ok) throw new DecryptionFailedError();
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
