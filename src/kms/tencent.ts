/**
 * TencentKms: Tencent Cloud KMS API 3.0 (version 2019-01-18), POST JSON signed with
 * TC3-HMAC-SHA256 (reference/tencent-kms.md §2).
 */
import { DecryptionFailedError, KmsError, type KmsErrorKind } from '../core/errors.ts';
import { processEnv } from '../core/runtime.ts';
import type { ReEncryptDataKeyRequest, WrappedDataKey } from './key-provider.ts';
import { ResponseKeys, type ResponseKeyOptions } from './response-key.ts';
import { API3_NAMES, type CallOptions, checkContextSize, requireString, TencentProvider } from './tencent-provider.ts';
import { tc3Authorization } from './tencent-sign.ts';
import {
  checkEndpoint,
  type HttpRequest,
  type RateDefaults,
  stringField,
  TencentTransport,
  type TransportOptions,
  type Verdict,
} from './tencent-transport.ts';

const TENCENT_API_VERSION = '2019-01-18';
const SERVICE = 'kms';
const DEFAULT_HOST = 'kms.tencentcloudapi.com';
const CONTENT_TYPE = 'application/json';

export interface TencentKmsOptions extends TransportOptions {
  /** The CMK that generateDataKey uses (KeyId). Not needed to open: the blob names its CMK. */
  keyId?: string;
  /** Region, e.g. `ap-guangzhou`; default TENCENTCLOUD_REGION. */
  region?: string;
  /** Default `https://kms.tencentcloudapi.com`; plain http only for loopback (the emulator). */
  endpoint?: string;
  /**
   * The host name signed in the request. Default: the endpoint's host name, or
   * `kms.tencentcloudapi.com` when the endpoint is a loopback address (the emulator), so the
   * signature is the one the real service would check.
   */
  signingHost?: string;
  /** `X-TC-Language`. */
  language?: 'en-US' | 'zh-CN';
  /**
   * Have GenerateDataKey and Decrypt return the data key encrypted under a public key this provider
   * makes (`EncryptionPublicKey`), decrypted here, so the data key never crosses the wire in clear,
   * even to a proxy that terminates TLS. `true` for the defaults (RSAES_OAEP_SHA_256, one key pair
   * per process). close() drops the private key.
   */
  responseKey?: boolean | ResponseKeyOptions;
}

/**
 * Tencent's published per-account limits (GenerateDataKey 100/s, Decrypt and Encrypt 300/s,
 * ReEncrypt and CreateKey 100/s), split as qps + burst so that no second sees more than the limit.
 */
const TENCENT_RATE_LIMITS: RateDefaults = {
  actions: {
    GenerateDataKey: { qps: 80, burst: 20 },
    Decrypt: { qps: 240, burst: 60 },
    Encrypt: { qps: 240, burst: 60 },
    ReEncrypt: { qps: 80, burst: 20 },
    CreateKey: { qps: 80, burst: 20 },
  },
  fallback: { qps: 16, burst: 4 },
};

/** Errors that mean "this blob does not open under this context", not a service failure. */
const DECRYPT_FAILURES = new Set(['InvalidParameterValue.InvalidCiphertext', 'FailedOperation.DecryptError']);

/** The kind of an API 3.0 error code (errors.ts, KmsErrorKind). */
function kindOf(code: string): KmsErrorKind {
  if (code.startsWith('RequestLimitExceeded')) return 'throttled';
  if (code.startsWith('AuthFailure') || code.startsWith('UnauthorizedOperation')) return 'auth';
  if (/^(InvalidParameter|MissingParameter|UnknownParameter|InvalidParameterValue|InvalidAction|NoSuchVersion|UnsupportedProtocol)/.test(code)) return 'bad-request';
  return 'service';
}

function isRetryable(code: string): boolean {
  return (
    code.startsWith('RequestLimitExceeded') ||
    code === 'InternalError' ||
    code.startsWith('InternalError.') ||
    code === 'UnsupportedOperation.ServiceTemporaryUnavailable'
  );
}

export class TencentKms extends TencentProvider {
  readonly id = 'tencent';
  readonly #url: URL;
  readonly #signingHost: string;
  readonly #language: string | undefined;
  readonly #transport: TencentTransport;

  constructor(options: TencentKmsOptions = {}) {
    const region = options.region ?? processEnv().TENCENTCLOUD_REGION;
    if (!region) throw new TypeError('"region" is required (or set TENCENTCLOUD_REGION), e.g. "ap-guangzhou"');
    const url = checkEndpoint(options.endpoint ?? `https://${DEFAULT_HOST}`);
    super('TencentKms', API3_NAMES, options.keyId, region, url);
    this.#url = url;
    const loopback = url.protocol === 'http:';
    this.#signingHost = options.signingHost ?? (loopback ? DEFAULT_HOST : url.hostname);
    this.#language = options.language;
    this.#transport = new TencentTransport(options, TENCENT_RATE_LIMITS);
    const responseKey = options.responseKey;
    if (responseKey) this.responseKeys = new ResponseKeys(responseKey === true ? {} : responseKey);
  }

  /** Drops the response key pair (option `responseKey`): later GenerateDataKey and Decrypt calls are refused (ERR_CLOSED). */
  close(): void {
    this.responseKeys?.close();
  }

  /** Re-encrypts a blob under another CMK (or the rotated version of the same one). */
  async reEncrypt(options: {
    ciphertextBlob: string;
    destinationKeyId?: string;
    sourceContext?: string;
    destinationContext?: string;
    signal?: AbortSignal | undefined;
  }): Promise<{ ciphertextBlob: string; keyId: string | undefined; sourceKeyId: string | undefined }> {
    for (const context of [options.sourceContext, options.destinationContext]) if (context !== undefined) checkContextSize(context, 'ReEncrypt');
    const response = await this.call('ReEncrypt', {
      CiphertextBlob: options.ciphertextBlob,
      ...(options.destinationKeyId === undefined ? {} : { DestinationKeyId: options.destinationKeyId }),
      ...(options.sourceContext === undefined ? {} : { SourceEncryptionContext: options.sourceContext }),
      ...(options.destinationContext === undefined ? {} : { DestinationEncryptionContext: options.destinationContext }),
    }, options.signal ? { signal: options.signal } : {});
    return {
      ciphertextBlob: requireString(response, 'CiphertextBlob', 'ReEncrypt'),
      keyId: stringField(response, 'KeyId'),
      sourceKeyId: stringField(response, 'SourceKeyId'),
    };
  }

  /**
   * A rewrap in one ReEncrypt call: the data key never leaves the KMS. The blob stays bound to the
   * same context (sent as source and destination context).
   */
  async reEncryptDataKey(request: ReEncryptDataKeyRequest): Promise<WrappedDataKey> {
    const context = request.context.json;
    const result = await this.reEncrypt({
      ciphertextBlob: request.ciphertextBlob,
      destinationKeyId: request.toKeyId,
      sourceContext: context,
      destinationContext: context,
      signal: request.signal,
    });
    return { keyId: result.keyId ?? request.toKeyId, ciphertextBlob: result.ciphertextBlob };
  }

  /** Creates a CMK; returns its KeyId. */
  async createKey(options: { alias: string; description?: string }): Promise<string> {
    const response = await this.call('CreateKey', {
      Alias: options.alias,
      ...(options.description === undefined ? {} : { Description: options.description }),
    });
    return requireString(response, 'KeyId', 'CreateKey');
  }

  /** Any KMS action: the `Response` object without its wrapper. `signal` cancels the call. */
  override async call(action: string, params: Record<string, unknown>, options: CallOptions = {}): Promise<Record<string, unknown>> {
    const body = JSON.stringify(params);
    return this.#transport.call({
      action,
      sign: (credentials): HttpRequest => {
        const timestamp = Math.floor(Date.now() / 1000);
        const headers: Record<string, string> = {
          'Content-Type': CONTENT_TYPE,
          'X-TC-Action': action,
          'X-TC-Version': TENCENT_API_VERSION,
          'X-TC-Timestamp': String(timestamp),
          'X-TC-Region': this.region,
          Authorization: tc3Authorization(credentials.secretId, credentials.secretKey, {
            method: 'POST',
            host: this.#signingHost,
            contentType: CONTENT_TYPE,
            payload: body,
            timestamp,
            service: SERVICE,
            extraHeaders: { 'x-tc-action': action },
          }),
        };
        if (credentials.token) headers['X-TC-Token'] = credentials.token;
        if (this.#language) headers['X-TC-Language'] = this.#language;
        return { method: 'POST', url: this.#url.href, headers, body };
      },
      judge: (_status, json) => judge(action, json),
    }, options.signal, options.probe ? { retries: 0 } : undefined);
  }

}

function judge(action: string, json: unknown): Verdict<Record<string, unknown>> {
  const response = (json as { Response?: unknown } | null)?.Response;
  if (!response || typeof response !== 'object') {
    return { fail: new KmsError(`${action}: the KMS response has no Response object`, { kind: 'bad-response' }) };
  }
  const r = response as Record<string, unknown>;
  const requestId = stringField(r, 'RequestId');
  const error = r.Error as { Code?: unknown; Message?: unknown } | undefined;
  if (error === undefined) return { ok: r };
  const code = typeof error?.Code === 'string' ? error.Code : 'UnknownError';
  const message = typeof error?.Message === 'string' ? error.Message.slice(0, 300) : '';
  if ((action === 'Decrypt' || action === 'ReEncrypt') && DECRYPT_FAILURES.has(code)) return { fail: new DecryptionFailedError() };
  const kmsError = new KmsError(`${action} failed: ${code}${message ? `: ${message}` : ''}`, {
    kind: kindOf(code),
    kmsCode: code,
    ...(requestId ? { requestId } : {}),
  });
  if (code === 'AuthFailure.SignatureExpire') return { resign: kmsError };
  if (isRetryable(code)) return { retry: kmsError };
  return { fail: kmsError };
}
