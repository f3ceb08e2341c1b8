/**
 * Data keys that never cross the wire in clear: the caller sends a public key with GenerateDataKey
 * and Decrypt (`EncryptionPublicKey`, `EncryptionAlgorithm`, reference/tencent-kms.md §2.5) and the
 * KMS returns `Plaintext` encrypted under it, so even a proxy that terminates TLS sees no data key.
 *
 * RSA-OAEP (2048-bit keys, as Tencent takes) through node:crypto where the runtime has it, and
 * WebCrypto otherwise; both keep the private key inside the runtime (a KeyObject or a
 * non-extractable CryptoKey), never as bytes in JavaScript memory, so close() drops the only
 * reference to it. RSAES_PKCS1_V1_5 is refused (CVE-2023-46809), and the SM2 forms are not
 * implemented (README: what is missing to pin them).
 */
import { base64, wipe } from '../core/bytes.ts';
import { ClosedError, KmsError } from '../core/errors.ts';
import { builtinModule } from '../core/runtime.ts';

/**
 * An EncryptionAlgorithm this library will not decrypt (or a runtime without RSA-OAEP): refused
 * before any KMS call, as ERR_KMS with kind `bad-request`, the reason in the message.
 */
export class UnsupportedAlgorithmError extends KmsError {
  constructor(message: string) {
    super(message, { kind: 'bad-request' });
  }
}

/** The algorithms this library decrypts (Tencent's names). */
export type ResponseKeyAlgorithm = 'RSAES_OAEP_SHA_256' | 'RSAES_OAEP_SHA_1';

export interface ResponseKeyOptions {
  /** Default `RSAES_OAEP_SHA_256`. */
  algorithm?: ResponseKeyAlgorithm;
  /**
   * `process` (default): one key pair for the provider's life, made on first use; `call`: a new
   * key pair for each call (a key-generation cost per call: BENCHMARKS.md).
   */
  keyPair?: 'process' | 'call';
  /** `auto` (default): node:crypto where the runtime has it, else WebCrypto. */
  backend?: 'auto' | 'node' | 'webcrypto';
}

/** What Tencent also accepts, and why this library does not. */
const REFUSED: Record<string, string> = {
  RSAES_PKCS1_V1_5:
    'RSAES_PKCS1_V1_5 is refused: PKCS#1 v1.5 decryption is open to padding-oracle attacks (Marvin), and Node refuses it since CVE-2023-46809; use RSAES_OAEP_SHA_256',
  SM2: 'SM2 (C1C3C2) is not implemented: the encoding of its C1 point is not pinned by the reference material',
  SM2_C1C3C2_ASN1: 'SM2_C1C3C2_ASN1 is not implemented: no SM2 library is kept in the key-provider room yet',
};

const RSA_BITS = 2048;
const HASH: Record<ResponseKeyAlgorithm, 'sha256' | 'sha1'> = { RSAES_OAEP_SHA_256: 'sha256', RSAES_OAEP_SHA_1: 'sha1' };

/** A checked algorithm name; UnsupportedAlgorithmError for every other. */
function checkResponseKeyAlgorithm(name: unknown): ResponseKeyAlgorithm {
  if (name === 'RSAES_OAEP_SHA_256' || name === 'RSAES_OAEP_SHA_1') return name;
  const reason = typeof name === 'string' ? REFUSED[name] : undefined;
  throw new UnsupportedAlgorithmError(reason ?? `EncryptionAlgorithm ${JSON.stringify(name)} is not one of RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1`);
}

/** One key pair: the public key as PEM to send, and the decryption of what comes back. */
export interface ResponseKeyPair {
  readonly publicKeyPem: string;
  /** The plaintext of `ciphertext`; the caller owns it and wipes it. */
  decrypt(ciphertext: Uint8Array): Promise<Uint8Array>;
}

// node:crypto's shapes, declared here: kms/ may not import node: modules, not even their types.
interface NodeKeyObject {
  readonly type: string;
}
interface NodeCrypto {
  generateKeyPair(
    type: 'rsa',
    options: { modulusLength: number; publicKeyEncoding: { type: 'spki'; format: 'pem' } },
    callback: (error: Error | null, publicKey: string, privateKey: NodeKeyObject) => void,
  ): void;
  privateDecrypt(key: { key: NodeKeyObject; padding: number; oaepHash: string }, buffer: Uint8Array): Uint8Array;
  constants: { RSA_PKCS1_OAEP_PADDING: number };
}

function nodeBackend(algorithm: ResponseKeyAlgorithm, crypto: NodeCrypto): Promise<ResponseKeyPair> {
  return new Promise((resolve, reject) => {
    crypto.generateKeyPair('rsa', { modulusLength: RSA_BITS, publicKeyEncoding: { type: 'spki', format: 'pem' } }, (error, publicKey, privateKey) => {
      if (error) return reject(error);
      const oaepHash = HASH[algorithm];
      resolve({
        publicKeyPem: publicKey,
        decrypt: async (ciphertext) => {
          const out = crypto.privateDecrypt({ key: privateKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, ciphertext);
          // A Buffer may sit in Node's shared pool: copy the key out and wipe where it was.
          const copy = Uint8Array.from(out);
          out.fill(0);
          return copy;
        },
      });
    });
  });
}

async function webCryptoBackend(algorithm: ResponseKeyAlgorithm): Promise<ResponseKeyPair> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new UnsupportedAlgorithmError('this runtime has neither node:crypto nor WebCrypto for RSA-OAEP');
  const hash = algorithm === 'RSAES_OAEP_SHA_256' ? 'SHA-256' : 'SHA-1';
  // Non-extractable: the private key never exists as bytes that JavaScript could read (or leak).
  const pair = await subtle.generateKey({ name: 'RSA-OAEP', modulusLength: RSA_BITS, publicExponent: Uint8Array.of(1, 0, 1), hash }, false, ['encrypt', 'decrypt']);
  const spki = new Uint8Array(await subtle.exportKey('spki', pair.publicKey));
  return {
    publicKeyPem: pem(spki),
    decrypt: async (ciphertext) => new Uint8Array(await subtle.decrypt({ name: 'RSA-OAEP' }, pair.privateKey, new Uint8Array(ciphertext))),
  };
}

function pem(spki: Uint8Array): string {
  const body = base64.encode(spki).replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN PUBLIC KEY-----\n${body}-----END PUBLIC KEY-----\n`;
}

/**
 * The key pairs of one provider: per process (one, made on first use, shared by concurrent calls)
 * or per call. close() drops them; later calls are refused with ClosedError.
 */
export class ResponseKeys {
  readonly algorithm: ResponseKeyAlgorithm;
  readonly perCall: boolean;
  readonly #make: () => Promise<ResponseKeyPair>;
  #shared: Promise<ResponseKeyPair> | undefined;
  #closed = false;

  constructor(options: ResponseKeyOptions = {}) {
    this.algorithm = checkResponseKeyAlgorithm(options.algorithm ?? 'RSAES_OAEP_SHA_256');
    const keyPair = options.keyPair ?? 'process';
    if (keyPair !== 'process' && keyPair !== 'call') throw new TypeError(`"keyPair" must be "process" or "call", got ${JSON.stringify(keyPair)}`);
    this.perCall = keyPair === 'call';
    const backend = options.backend ?? 'auto';
    if (backend !== 'auto' && backend !== 'node' && backend !== 'webcrypto') throw new TypeError(`"backend" must be "auto", "node" or "webcrypto", got ${JSON.stringify(backend)}`);
    const node = backend === 'webcrypto' ? undefined : builtinModule<NodeCrypto>('node:crypto');
    if (backend === 'node' && !node) throw new UnsupportedAlgorithmError('backend "node" asked for, and this runtime has no node:crypto');
    const algorithm = this.algorithm;
    this.#make = node ? () => nodeBackend(algorithm, node) : () => webCryptoBackend(algorithm);
  }

  /** The key pair for one call. */
  async pair(): Promise<ResponseKeyPair> {
    if (this.#closed) throw new ClosedError();
    if (this.perCall) return this.#make();
    const shared = (this.#shared ??= this.#make());
    // A failed generation is not kept: the next call tries again.
    shared.catch(() => {
      if (this.#shared === shared) this.#shared = undefined;
    });
    return shared;
  }

  /**
   * The data key from a response's `Plaintext` (base64 of the ciphertext under the public key),
   * length-checked; KmsError `bad-response` when it does not decrypt or has the wrong length.
   */
  async open(pair: ResponseKeyPair, text: unknown, expectedLength: number, action: string): Promise<Uint8Array> {
    const ciphertext = typeof text === 'string' ? base64.decode(text) : undefined;
    if (!ciphertext) throw new KmsError(`${action}: the KMS returned a Plaintext that is not base64`, { kind: 'bad-response' });
    let key: Uint8Array;
    try {
      key = await pair.decrypt(ciphertext);
    } catch {
      throw new KmsError(`${action}: the Plaintext the KMS returned does not decrypt under the public key sent (${this.algorithm})`, { kind: 'bad-response' });
    }
    if (key.length !== expectedLength) {
      const length = key.length;
      wipe(key);
      throw new KmsError(`${action}: the KMS returned a ${length}-byte data key where ${expectedLength} bytes were asked for`, { kind: 'bad-response' });
    }
    return key;
  }

  /** Drops the key pairs (the private keys live in the runtime: this drops the only reference). */
  close(): void {
    this.#closed = true;
    this.#shared = undefined;
  }
}
