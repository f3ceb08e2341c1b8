/**
 * TencentKmsV2: the legacy KMS API of the original GenerateDataKey page (`/v2/index.php`, query
 * parameters signed with HmacSHA256 or HmacSHA1; reference/tencent-kms.md §1).
 */
import { base64 } from '../core/bytes.ts';
import { DecryptionFailedError, KmsError } from '../core/errors.ts';
import type { DataKey, DecryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider } from './key-provider.ts';
import { KEY_LENGTH_BY_SPEC } from '../core/suites.ts';
import { querySignature, queryStringToSign, type QuerySignatureMethod } from './tencent-sign.ts';
import {
  checkEndpoint,
  dataKeyFromResponse,
  decodeDataKey,
  env,
  type HttpRequest,
  randomNonce,
  type RateDefaults,
  stringField,
  TencentTransport,
  type TransportOptions,
  type Verdict,
} from './tencent-transport.ts';

const PATH = '/v2/index.php';
/** API 3.0 region names, mapped to the legacy ones that name the host. */
const LEGACY_REGION: Record<string, string> = { 'ap-guangzhou': 'gz', 'ap-shanghai': 'sh', 'ap-beijing': 'bj' };
/** The legacy API's documented 5000 QPS for data-plane calls, as qps + burst. */
export const TENCENT_V2_RATE_LIMITS: RateDefaults = {
  actions: {
    GenerateDataKey: { qps: 4000, burst: 1000 },
    Decrypt: { qps: 4000, burst: 1000 },
    Encrypt: { qps: 4000, burst: 1000 },
  },
  // Control calls (CreateKey, ListKey, …) have lower, unpublished limits (code 4480).
  fallback: { qps: 16, burst: 4 },
};

/** Throttling (4420, 4480) and internal errors (6000) are worth a retry; nothing else is. */
const RETRYABLE = new Set([4420, 4480, 6000]);

export interface TencentKmsV2Options extends TransportOptions {
  /** The CMK that generateDataKey uses (keyId). */
  keyId?: string;
  /** `gz`, `sh` or `bj` (or the API 3.0 name); default TENCENTCLOUD_REGION. */
  region?: string;
  /** `private` (default, `kms-<r>.api.tencentyun.com`, free inside Tencent Cloud) or `public` (`.api.qcloud.com`). */
  network?: 'private' | 'public';
  /** Overrides the URL, e.g. the emulator's `http://127.0.0.1:PORT/v2/index.php`. */
  endpoint?: string;
  /** `HmacSHA256` (default) or `HmacSHA1`. */
  signatureMethod?: QuerySignatureMethod;
  /** `POST` form body (default) or `GET` query. */
  method?: 'GET' | 'POST';
  /** The host signed; default the endpoint's host as addressed (with its port). */
  signingHost?: string;
}

export class TencentKmsV2 implements KeyProvider {
  readonly id = 'tencent-v2';
  readonly keyId: string | undefined;
  readonly region: string;
  readonly #url: URL;
  readonly #signingHost: string;
  readonly #signatureMethod: QuerySignatureMethod;
  readonly #method: 'GET' | 'POST';
  readonly #transport: TencentTransport;

  constructor(options: TencentKmsV2Options = {}) {
    const given = options.region ?? env().TENCENTCLOUD_REGION;
    if (!given) throw new TypeError('"region" is required (or set TENCENTCLOUD_REGION): gz, sh or bj');
    const region = LEGACY_REGION[given] ?? given;
    if (!/^[a-z]{2,8}$/.test(region)) throw new TypeError(`"region" must be gz, sh or bj for the legacy API, got ${JSON.stringify(given)}`);
    this.region = region;
    this.keyId = options.keyId;
    const domain = options.network === 'public' ? 'api.qcloud.com' : 'api.tencentyun.com';
    this.#url = checkEndpoint(options.endpoint ?? `https://kms-${region}.${domain}${PATH}`);
    this.#signingHost = options.signingHost ?? this.#url.host;
    this.#signatureMethod = options.signatureMethod ?? 'HmacSHA256';
    if (this.#signatureMethod !== 'HmacSHA256' && this.#signatureMethod !== 'HmacSHA1') {
      throw new TypeError(`"signatureMethod" must be HmacSHA256 or HmacSHA1, got ${JSON.stringify(this.#signatureMethod)}`);
    }
    this.#method = options.method ?? 'POST';
    this.#transport = new TencentTransport(options, TENCENT_V2_RATE_LIMITS);
  }

  async generateDataKey(request: GenerateDataKeyRequest): Promise<DataKey> {
    const keyId = this.#requireKeyId(this.keyId);
    const response = await this.call('GenerateDataKey', { keyId, keySpec: request.keySpec, encryptionContext: request.context.json });
    const names = { plaintext: 'plaintext', blob: 'ciphertextBlob', keyId: 'keyId' };
    return dataKeyFromResponse(response, names, KEY_LENGTH_BY_SPEC[request.keySpec], keyId);
  }

  async decryptDataKey(request: DecryptDataKeyRequest): Promise<Uint8Array> {
    const response = await this.call('Decrypt', { ciphertextBlob: request.ciphertextBlob, encryptionContext: request.context.json });
    return decodeDataKey(response.plaintext, KEY_LENGTH_BY_SPEC[request.keySpec], 'Decrypt');
  }

  /** Encrypt a small plaintext under a CMK; returns the ciphertextBlob. */
  async encrypt(plaintext: Uint8Array, options: { keyId?: string; context?: string } = {}): Promise<string> {
    const response = await this.call('Encrypt', {
      keyId: this.#requireKeyId(options.keyId ?? this.keyId),
      plaintext: base64.encode(plaintext),
      ...(options.context === undefined ? {} : { encryptionContext: options.context }),
    });
    const blob = stringField(response, 'ciphertextBlob');
    if (!blob) throw new KmsError('Encrypt: the KMS response has no ciphertextBlob');
    return blob;
  }

  /** Creates a CMK; returns its keyId. */
  async createKey(options: { alias?: string; description?: string } = {}): Promise<string> {
    const response = await this.call('CreateKey', {
      ...(options.alias === undefined ? {} : { alias: options.alias }),
      ...(options.description === undefined ? {} : { description: options.description }),
    });
    const keyId = stringField(response.keyMetadata, 'keyId');
    if (!keyId) throw new KmsError('CreateKey: the KMS response has no keyMetadata.keyId');
    return keyId;
  }

  /** Any v2 action; returns the response object (code 0). */
  async call(action: string, params: Record<string, string>): Promise<Record<string, unknown>> {
    return this.#transport.call({
      action,
      sign: (credentials): HttpRequest => {
        const all: Record<string, string> = {
          ...params,
          Action: action,
          Region: this.region,
          Timestamp: String(Math.floor(Date.now() / 1000)),
          Nonce: String(randomNonce()),
          SecretId: credentials.secretId,
          SignatureMethod: this.#signatureMethod,
        };
        // Unverified for the legacy API: temporary credentials' token as a signed parameter.
        if (credentials.token) all.Token = credentials.token;
        const stringToSign = queryStringToSign(this.#method, this.#signingHost, this.#url.pathname, all);
        all.Signature = querySignature(credentials.secretKey, stringToSign, this.#signatureMethod);
        const encoded = new URLSearchParams(all).toString();
        if (this.#method === 'GET') {
          return { method: 'GET', url: `${this.#url.origin}${this.#url.pathname}?${encoded}`, headers: { Accept: 'application/json' } };
        }
        return {
          method: 'POST',
          url: this.#url.href,
          headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
          body: encoded,
        };
      },
      judge: (_status, json) => judge(action, json),
    });
  }

  #requireKeyId(keyId: string | undefined): string {
    if (!keyId) throw new TypeError('TencentKmsV2 needs "keyId" (the CMK) to generate data keys or encrypt');
    return keyId;
  }

  toString(): string {
    return `TencentKmsV2 { region: ${this.region}, keyId: ${this.keyId ?? '(none)'}, endpoint: ${this.#url.origin} }`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

function judge(action: string, json: unknown): Verdict<Record<string, unknown>> {
  if (!json || typeof json !== 'object' || typeof (json as { code?: unknown }).code !== 'number') {
    return { fail: new KmsError(`${action}: the KMS response has no numeric code`) };
  }
  const r = json as Record<string, unknown> & { code: number };
  if (r.code === 0) return { ok: r };
  const requestId = stringField(r, 'requestId');
  const message = (stringField(r, 'message') ?? '').slice(0, 300);
  // On Decrypt, a parameter error means the blob or its context does not open.
  if (action === 'Decrypt' && r.code === 4000) return { fail: new DecryptionFailedError() };
  const error = new KmsError(`${action} failed: code ${r.code}${message ? `: ${message}` : ''}`, {
    kmsCode: String(r.code),
    ...(requestId ? { requestId } : {}),
  });
  return RETRYABLE.has(r.code) ? { retry: error } : { fail: error };
}
