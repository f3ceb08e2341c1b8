/**
 * TencentKmsV2: the legacy KMS API of the original GenerateDataKey page (`/v2/index.php`, query
 * parameters signed with HmacSHA256 or HmacSHA1; reference/tencent-kms.md §1).
 */
import { DecryptionFailedError, KmsError, type KmsErrorKind } from '../core/errors.ts';
import { processEnv } from '../core/runtime.ts';
import { type CallOptions, LEGACY_NAMES, TencentProvider } from './tencent-provider.ts';
import { querySignature, queryStringToSign, type QuerySignatureMethod } from './tencent-sign.ts';
import {
  checkEndpoint,
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
const TENCENT_V2_RATE_LIMITS: RateDefaults = {
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

/** The kind of a legacy error code (errors.ts, KmsErrorKind): 40xx parameters, 41xx authentication, 4420/4480 throttling. */
function kindOf(code: number): KmsErrorKind {
  if (code === 4420 || code === 4480) return 'throttled';
  if (code >= 4100 && code < 4200) return 'auth';
  if (code >= 4000 && code < 4100) return 'bad-request';
  return 'service';
}

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

/**
 * The legacy API has no ReEncrypt: a rewrap through it is Decrypt then Encrypt (kms/re-encrypt.ts,
 * through encryptDataKey), so the data key passes through the process that rewraps.
 */
export class TencentKmsV2 extends TencentProvider {
  readonly id = 'tencent-v2';
  readonly #url: URL;
  readonly #signingHost: string;
  readonly #signatureMethod: QuerySignatureMethod;
  readonly #method: 'GET' | 'POST';
  readonly #transport: TencentTransport;

  constructor(options: TencentKmsV2Options = {}) {
    const given = options.region ?? processEnv().TENCENTCLOUD_REGION;
    if (!given) throw new TypeError('"region" is required (or set TENCENTCLOUD_REGION): gz, sh or bj');
    const region = LEGACY_REGION[given] ?? given;
    if (!/^[a-z]{2,8}$/.test(region)) throw new TypeError(`"region" must be gz, sh or bj for the legacy API, got ${JSON.stringify(given)}`);
    const domain = options.network === 'public' ? 'api.qcloud.com' : 'api.tencentyun.com';
    const url = checkEndpoint(options.endpoint ?? `https://kms-${region}.${domain}${PATH}`);
    super('TencentKmsV2', LEGACY_NAMES, options.keyId, region, url);
    this.#url = url;
    this.#signingHost = options.signingHost ?? url.host;
    this.#signatureMethod = options.signatureMethod ?? 'HmacSHA256';
    if (this.#signatureMethod !== 'HmacSHA256' && this.#signatureMethod !== 'HmacSHA1') {
      throw new TypeError(`"signatureMethod" must be HmacSHA256 or HmacSHA1, got ${JSON.stringify(this.#signatureMethod)}`);
    }
    this.#method = options.method ?? 'POST';
    this.#transport = new TencentTransport(options, TENCENT_V2_RATE_LIMITS);
  }

  /** Creates a CMK; returns its keyId. */
  async createKey(options: { alias?: string; description?: string } = {}): Promise<string> {
    const response = await this.call('CreateKey', {
      ...(options.alias === undefined ? {} : { alias: options.alias }),
      ...(options.description === undefined ? {} : { description: options.description }),
    });
    const keyId = stringField(response.keyMetadata, 'keyId');
    if (!keyId) throw new KmsError('CreateKey: the KMS response has no keyMetadata.keyId', { kind: 'bad-response' });
    return keyId;
  }

  /** Any v2 action; returns the response object (code 0). `signal` cancels the call. */
  override async call(action: string, given: Record<string, string | number>, options: CallOptions = {}): Promise<Record<string, unknown>> {
    const params = Object.fromEntries(Object.entries(given).map(([k, v]) => [k, String(v)]));
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
    }, options.signal, options.probe ? { retries: 0 } : undefined);
  }

}

function judge(action: string, json: unknown): Verdict<Record<string, unknown>> {
  if (!json || typeof json !== 'object' || typeof (json as { code?: unknown }).code !== 'number') {
    return { fail: new KmsError(`${action}: the KMS response has no numeric code`, { kind: 'bad-response' }) };
  }
  const r = json as Record<string, unknown> & { code: number };
  if (r.code === 0) return { ok: r };
  const requestId = stringField(r, 'requestId');
  const message = (stringField(r, 'message') ?? '').slice(0, 300);
  // On Decrypt, a parameter error means the blob or its context does not open.
  if (action === 'Decrypt' && r.code === 4000) return { fail: new DecryptionFailedError() };
  const error = new KmsError(`${action} failed: code ${r.code}${message ? `: ${message}` : ''}`, {
    kind: kindOf(r.code),
    kmsCode: String(r.code),
    ...(requestId ? { requestId } : {}),
  });
  return RETRYABLE.has(r.code) ? { retry: error } : { fail: error };
}
