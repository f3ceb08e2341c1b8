/**
 * The key store and the KMS actions. Data keys are wrapped under per-CMK master keys with
 * AES-256-GCM binding the encryption context, so Decrypt with another context fails like the real
 * KMS. Actions read API 3.0's PascalCase names; the caller maps them for the legacy API.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { type Api, ApiError, err, lowerKeys } from './api.ts';
import { plaintextField, responseKeyOf } from './response-key.ts';

export interface Cmk {
  keyId: string;
  alias: string;
  description: string;
  keyUsage: string;
  /** PendingDelete: disabled, and deleted at `deletionDate` (Unix seconds) unless CancelKeyDeletion. */
  state: 'Enabled' | 'Disabled' | 'PendingDelete';
  createTime: number;
  material: Buffer;
  deletionDate?: number;
}

/** A parameter of the request by its API 3.0 name. */
export type Lookup = (name: string) => string | undefined;

const BLOB_AAD = 'kms-envelope-emulator/v1';

export class KeyStore {
  readonly keys = new Map<string, Cmk>();
  /** Ids of keys deleted after their pending window, so their blobs answer CmkNotFound. */
  readonly #deleted = new Set<string>();
  readonly #now: () => number;
  readonly #changed: () => void;

  /** `changed` runs after every change to the keys (persistence). */
  constructor(now: () => number, changed: () => void) {
    this.#now = now;
    this.#changed = changed;
  }

  create(alias = '', description = '', keyUsage = 'ENCRYPT_DECRYPT'): Cmk {
    const cmk: Cmk = { keyId: randomUUID(), alias, description, keyUsage, state: 'Enabled', createTime: this.#now(), material: randomBytes(32) };
    this.keys.set(cmk.keyId, cmk);
    this.#changed();
    return cmk;
  }

  byAlias(alias: string): Cmk | undefined {
    for (const cmk of this.keys.values()) if (cmk.alias === alias) return cmk;
    return undefined;
  }

  /** The CMK named by a parameter, enabled unless `needEnabled` is false. */
  find(keyId: string | undefined, name: string, needEnabled = true): Cmk {
    if (!keyId) throw err.missing(name);
    const cmk = this.#live(this.keys.get(keyId));
    if (!cmk) throw err.notFound();
    if (needEnabled && cmk.state !== 'Enabled') throw err.disabled();
    return cmk;
  }

  /** A key past its deletion date is gone (with its material): every later call finds no key. */
  #live(cmk: Cmk | undefined): Cmk | undefined {
    if (cmk?.state === 'PendingDelete' && cmk.deletionDate !== undefined && this.#now() >= cmk.deletionDate) {
      cmk.material.fill(0);
      this.keys.delete(cmk.keyId);
      this.#deleted.add(cmk.keyId);
      this.#changed();
      return undefined;
    }
    return cmk;
  }

  /** ScheduleKeyDeletion: Tencent deletes only a disabled key, after 7 to 30 days. */
  scheduleDeletion(cmk: Cmk, days: string | undefined): number {
    if (days === undefined || days === '') throw err.missing('PendingWindowInDays');
    const n = Number(days);
    if (!Number.isInteger(n) || n < 7 || n > 30) throw err.pendingWindow();
    if (cmk.state === 'Enabled') throw err.shouldBeDisabled();
    if (cmk.state === 'PendingDelete') throw err.stateNotSupport();
    cmk.state = 'PendingDelete';
    cmk.deletionDate = this.#now() + n * 86_400;
    this.#changed();
    return cmk.deletionDate;
  }

  cancelDeletion(cmk: Cmk): void {
    if (cmk.state !== 'PendingDelete') throw err.notPendingDelete();
    cmk.state = 'Disabled';
    delete cmk.deletionDate;
    this.#changed();
  }

  setState(cmk: Cmk, state: Cmk['state']): void {
    cmk.state = state;
    this.#changed();
  }

  wrap(cmk: Cmk, plaintext: Buffer, context: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', cmk.material, nonce);
    cipher.setAAD(Buffer.from(`${BLOB_AAD}\0${cmk.keyId}\0${context}`));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return [Buffer.from(cmk.keyId).toString('base64'), nonce.toString('base64'), ct.toString('base64')].join('-k-');
  }

  unwrap(blob: string | undefined, context: string): { cmk: Cmk; plaintext: Buffer } {
    if (!blob) throw err.missing('CiphertextBlob');
    const parts = blob.split('-k-');
    if (parts.length !== 3) throw err.ciphertext();
    const cmk = this.#live(this.keys.get(Buffer.from(parts[0]!, 'base64').toString('utf8')));
    // A deleted key's blobs name a key that is no more: Tencent answers CmkNotFound.
    if (!cmk) throw parts[0] && this.#deleted.has(Buffer.from(parts[0], 'base64').toString('utf8')) ? err.notFound() : err.ciphertext();
    if (cmk.state !== 'Enabled') throw err.disabled();
    const nonce = Buffer.from(parts[1]!, 'base64');
    const ct = Buffer.from(parts[2]!, 'base64');
    if (nonce.length !== 12 || ct.length < 16) throw err.ciphertext();
    try {
      const decipher = createDecipheriv('aes-256-gcm', cmk.material, nonce);
      decipher.setAAD(Buffer.from(`${BLOB_AAD}\0${cmk.keyId}\0${context}`));
      decipher.setAuthTag(ct.subarray(ct.length - 16));
      const body = decipher.update(ct.subarray(0, ct.length - 16));
      try {
        decipher.final();
      } catch (error) {
        body.fill(0);
        throw error;
      }
      return { cmk, plaintext: body };
    } catch {
      throw err.ciphertext();
    }
  }
}

/** An encryption context as given (KMS compares the string), once checked to be a JSON object. */
function checkContext(context: string | undefined, name: string): string {
  if (context === undefined || context === '') return '';
  if (context.length > 1024) throw err.invalid(name);
  try {
    const parsed: unknown = JSON.parse(context);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
  } catch {
    throw err.invalid(name);
  }
  return context;
}

/** NumberOfBytes wins over KeySpec; neither means AES_256. */
function dataKeyLength(spec: string | undefined, numberOfBytes: string | undefined): number {
  if (numberOfBytes !== undefined && numberOfBytes !== '') {
    const length = Number(numberOfBytes);
    if (!Number.isInteger(length) || length < 1 || length > 1024) throw err.invalid('NumberOfBytes');
    return length;
  }
  if (spec === 'AES_256' || spec === undefined || spec === '') return 32;
  if (spec === 'AES_128') return 16;
  throw err.invalid('KeySpec');
}

type Action = (store: KeyStore, p: Lookup, api: Api) => Record<string, unknown>;

// A Map, so that names an object inherits (constructor, toString, __proto__...) are unknown actions, never calls.
const actions = new Map<string, Action>(Object.entries({
  CreateKey(store, p, api) {
    const alias = p('Alias') ?? '';
    if (api === 'v3' && !/^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$/.test(alias)) throw alias ? err.invalid('Alias') : err.missing('Alias');
    if (alias && store.byAlias(alias)) throw err.aliasExists();
    const cmk = store.create(alias, p('Description') ?? '', p('KeyUsage') ?? 'ENCRYPT_DECRYPT');
    const meta = { KeyId: cmk.keyId, Alias: cmk.alias, CreateTime: cmk.createTime, Description: cmk.description, KeyState: cmk.state, KeyUsage: cmk.keyUsage };
    return api === 'v3' ? meta : { keyMetadata: lowerKeys(meta) };
  },
  GenerateDataKey(store, p) {
    const cmk = store.find(p('KeyId'), 'KeyId');
    const length = dataKeyLength(p('KeySpec'), p('NumberOfBytes'));
    const context = checkContext(p('EncryptionContext'), 'EncryptionContext');
    const responseKey = responseKeyOf(p);
    const dataKey = randomBytes(length);
    const blob = store.wrap(cmk, dataKey, context);
    const plaintext = plaintextField(dataKey, responseKey);
    dataKey.fill(0);
    return { KeyId: cmk.keyId, Plaintext: plaintext, CiphertextBlob: blob };
  },
  Encrypt(store, p) {
    const cmk = store.find(p('KeyId'), 'KeyId');
    const text = p('Plaintext');
    if (text === undefined) throw err.missing('Plaintext');
    const plaintext = Buffer.from(text, 'base64');
    if (plaintext.length > 4096 || plaintext.toString('base64') !== text) throw new ApiError('InvalidParameterValue.InvalidPlaintext', 4000, '(10110) invalid plaintext');
    return { KeyId: cmk.keyId, CiphertextBlob: store.wrap(cmk, plaintext, checkContext(p('EncryptionContext'), 'EncryptionContext')) };
  },
  Decrypt(store, p) {
    const responseKey = responseKeyOf(p);
    const { cmk, plaintext } = store.unwrap(p('CiphertextBlob'), checkContext(p('EncryptionContext'), 'EncryptionContext'));
    let text: string;
    try {
      text = plaintextField(plaintext, responseKey);
    } finally {
      plaintext.fill(0);
    }
    return { KeyId: cmk.keyId, Plaintext: text };
  },
  ReEncrypt(store, p, api) {
    // The legacy API has no ReEncrypt (reference/tencent-kms.md §1.5): refused as an unknown action, as Tencent does.
    if (api === 'v2') throw err.action('ReEncrypt');
    const source = store.unwrap(p('CiphertextBlob'), checkContext(p('SourceEncryptionContext'), 'SourceEncryptionContext'));
    const destination = store.find(p('DestinationKeyId') || source.cmk.keyId, 'DestinationKeyId');
    const blob = store.wrap(destination, source.plaintext, checkContext(p('DestinationEncryptionContext'), 'DestinationEncryptionContext'));
    source.plaintext.fill(0);
    return { CiphertextBlob: blob, KeyId: destination.keyId, SourceKeyId: source.cmk.keyId, ReEncrypted: true };
  },
  EnableKey(store, p) {
    const cmk = store.find(p('KeyId'), 'KeyId', false);
    if (cmk.state === 'PendingDelete') throw err.stateNotSupport();
    store.setState(cmk, 'Enabled');
    return {};
  },
  DisableKey(store, p) {
    const cmk = store.find(p('KeyId'), 'KeyId', false);
    if (cmk.state === 'PendingDelete') throw err.stateNotSupport();
    store.setState(cmk, 'Disabled');
    return {};
  },
  ScheduleKeyDeletion(store, p) {
    const cmk = store.find(p('KeyId'), 'KeyId', false);
    return { KeyId: cmk.keyId, DeletionDate: store.scheduleDeletion(cmk, p('PendingWindowInDays')) };
  },
  CancelKeyDeletion(store, p) {
    const cmk = store.find(p('KeyId'), 'KeyId', false);
    store.cancelDeletion(cmk);
    return { KeyId: cmk.keyId };
  },
  ListKeys(store, p, api) {
    const offset = Number(p('Offset') ?? 0) || 0;
    const limit = Number(p('Limit') ?? 10) || 10;
    const all = [...store.keys.values()];
    const page = all.slice(offset, offset + limit);
    return api === 'v3' ? { Keys: page.map((k) => ({ KeyId: k.keyId })), TotalCount: all.length } : { keys: page.map((k) => k.keyId), totalCount: all.length };
  },
} satisfies Record<string, Action>));
actions.set('ListKey', actions.get('ListKeys')!);

/** Runs an action; its result is the answer's fields (API 3.0 names, or legacy ones for v2 shapes). */
export function runAction(store: KeyStore, action: string, p: Lookup, api: Api): Record<string, unknown> {
  const handler = actions.get(action);
  if (!handler) throw err.action(action);
  return handler(store, p, api);
}
