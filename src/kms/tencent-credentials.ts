/**
 * Credentials as Tencent's SDK finds them, besides the environment variables (tencent-transport.ts):
 * temporary credentials from STS AssumeRole, and a CVM instance role from the metadata endpoint.
 * Both are a secret id, a secret key and a token with an expiry; they are refreshed before they
 * expire, one refresh at a time however many calls are waiting (single flight), and a pair the KMS
 * refuses as expired is replaced once, not once per call.
 */
import { KmsError } from '../core/errors.ts';
import { tc3Authorization } from './tencent-sign.ts';
import { checkEndpoint, type CredentialSource, type HttpRequest, type TencentCredentials, TencentTransport, type TransportOptions, type Verdict } from './tencent-transport.ts';

/** A temporary pair: always a token, and when it stops working (ms since the epoch). */
export interface TemporaryCredentials extends TencentCredentials {
  readonly token: string;
  readonly expiresAt: number;
}

export interface RefreshOptions {
  /** Refresh this long before the expiry, in ms; default 300000 (5 minutes). */
  refreshBeforeMs?: number;
  /** The clock, ms since the epoch (tests). */
  now?: () => number;
}

/**
 * A credential source the transport calls before each attempt, which it can also tell that the KMS
 * refused a pair (`invalidate`): the next call fetches a new one, once.
 */
export interface RefreshingCredentials {
  (): Promise<TemporaryCredentials>;
  invalidate(refused: TencentCredentials): void;
}

/**
 * Wraps a fetch of temporary credentials: the pair is kept until `refreshBeforeMs` before its
 * expiry; from then one refresh runs while callers keep the still-valid pair; once expired (or
 * refused), callers wait for the one refresh. A failed refresh is reported to the callers that
 * waited for it, and the next call tries again.
 */
export function refreshingCredentials(fetchPair: () => Promise<TemporaryCredentials>, options: RefreshOptions = {}): RefreshingCredentials {
  const refreshBeforeMs = options.refreshBeforeMs ?? 300_000;
  if (!(refreshBeforeMs >= 0) || !Number.isFinite(refreshBeforeMs)) throw new RangeError(`"refreshBeforeMs" must be a non-negative number, got ${refreshBeforeMs}`);
  const now = options.now ?? Date.now;
  let current: TemporaryCredentials | undefined;
  let flight: Promise<TemporaryCredentials> | undefined;

  const refresh = (): Promise<TemporaryCredentials> => {
    flight ??= (async () => {
      try {
        const pair = checkPair(await fetchPair());
        current = pair;
        return pair;
      } finally {
        flight = undefined;
      }
    })();
    return flight;
  };

  const source = async (): Promise<TemporaryCredentials> => {
    const pair = current;
    const t = now();
    if (pair && t < pair.expiresAt - refreshBeforeMs) return pair;
    if (pair && t < pair.expiresAt) {
      // Early refresh in the background: callers keep the valid pair meanwhile.
      refresh().catch(() => {});
      return pair;
    }
    return refresh();
  };
  return Object.assign(source, {
    invalidate(refused: TencentCredentials): void {
      // Only the pair in use: a hundred calls refused with the same pair drop it once.
      if (current && current.secretId === refused.secretId && current.token === refused.token) current = undefined;
    },
  });
}

function checkPair(pair: TemporaryCredentials): TemporaryCredentials {
  if (!pair || typeof pair.secretId !== 'string' || !pair.secretId || typeof pair.secretKey !== 'string' || !pair.secretKey || typeof pair.token !== 'string' || !pair.token) {
    throw new KmsError('temporary credentials without a secret id, secret key and token', { kind: 'auth' });
  }
  if (!Number.isFinite(pair.expiresAt)) throw new KmsError('temporary credentials without an expiry', { kind: 'auth' });
  return pair;
}

/** `ExpiredTime` (Unix seconds) and the three fields, as STS and the metadata endpoint name them. */
function temporaryFrom(fields: Record<string, unknown>, expiredTime: unknown, what: string): TemporaryCredentials {
  const { TmpSecretId, TmpSecretKey, Token } = fields;
  if (typeof TmpSecretId !== 'string' || typeof TmpSecretKey !== 'string' || typeof Token !== 'string' || typeof expiredTime !== 'number') {
    throw new KmsError(`${what}: the answer has no TmpSecretId, TmpSecretKey, Token and ExpiredTime`, { kind: 'bad-response' });
  }
  return { secretId: TmpSecretId, secretKey: TmpSecretKey, token: Token, expiresAt: expiredTime * 1000 };
}

const STS_API_VERSION = '2018-08-13';
const STS_HOST = 'sts.tencentcloudapi.com';

export interface StsCredentialsOptions extends RefreshOptions, Pick<TransportOptions, 'timeoutMs' | 'deadlineMs' | 'retry' | 'fetch'> {
  /** The long-term credentials that call AssumeRole; default the environment variables. */
  credentials?: CredentialSource;
  /** `qcs::cam::uin/<uin>:roleName/<name>`. */
  roleArn: string;
  /** 2 to 128 of `[\w+=,.@-]`. */
  roleSessionName: string;
  /** Lifetime of each pair, 1 to 43200 s; default 7200 (STS's default). */
  durationSeconds?: number;
  /** Default `https://sts.tencentcloudapi.com`; plain http only for loopback (the emulator). */
  endpoint?: string;
  /** Default `ap-guangzhou`, as the SDK's STSCredential. */
  region?: string;
  /** The host name signed; default as TencentKms (the real one for a loopback endpoint). */
  signingHost?: string;
}

/** Temporary credentials from STS AssumeRole (what the SDK's STSCredential does), refreshed before expiry. */
export function stsCredentials(options: StsCredentialsOptions): RefreshingCredentials {
  const url = checkEndpoint(options.endpoint ?? `https://${STS_HOST}`);
  const signingHost = options.signingHost ?? (url.protocol === 'http:' ? STS_HOST : url.hostname);
  const region = options.region ?? 'ap-guangzhou';
  const duration = options.durationSeconds ?? 7200;
  if (!Number.isInteger(duration) || duration < 1 || duration > 43200) throw new RangeError(`"durationSeconds" must be an integer from 1 to 43200, got ${duration}`);
  if (typeof options.roleArn !== 'string' || !options.roleArn) throw new TypeError('"roleArn" is required, e.g. "qcs::cam::uin/100000000001:roleName/app"');
  if (typeof options.roleSessionName !== 'string' || !/^[\w+=,.@-]{2,128}$/.test(options.roleSessionName)) throw new TypeError('"roleSessionName" must be 2 to 128 of [A-Za-z0-9_+=,.@-]');
  // The long-term credentials' own transport: no client-side rate limit (one call per lifetime).
  const transport = new TencentTransport({ ...pick(options), ...(options.credentials ? { credentials: options.credentials } : {}), rateLimit: false });
  const body = JSON.stringify({ RoleArn: options.roleArn, RoleSessionName: options.roleSessionName, DurationSeconds: duration });
  const fetchPair = (): Promise<TemporaryCredentials> =>
    transport.call({
      action: 'AssumeRole',
      sign: (credentials): HttpRequest => {
        const timestamp = Math.floor(Date.now() / 1000);
        const headers: Record<string, string> = {
          'Content-Type': 'application/json',
          'X-TC-Action': 'AssumeRole',
          'X-TC-Version': STS_API_VERSION,
          'X-TC-Timestamp': String(timestamp),
          'X-TC-Region': region,
          Authorization: tc3Authorization(credentials.secretId, credentials.secretKey, {
            method: 'POST',
            host: signingHost,
            contentType: 'application/json',
            payload: body,
            timestamp,
            service: 'sts',
            extraHeaders: { 'x-tc-action': 'AssumeRole' },
          }),
        };
        if (credentials.token) headers['X-TC-Token'] = credentials.token;
        return { method: 'POST', url: url.href, headers, body };
      },
      judge: (_status, json) => judgeSts(json),
    });
  return refreshingCredentials(fetchPair, options);
}

function pick(options: StsCredentialsOptions): TransportOptions {
  const out: TransportOptions = {};
  if (options.timeoutMs !== undefined) out.timeoutMs = options.timeoutMs;
  if (options.deadlineMs !== undefined) out.deadlineMs = options.deadlineMs;
  if (options.retry !== undefined) out.retry = options.retry;
  if (options.fetch !== undefined) out.fetch = options.fetch;
  return out;
}

function judgeSts(json: unknown): Verdict<TemporaryCredentials> {
  const response = (json as { Response?: Record<string, unknown> } | null)?.Response;
  if (!response || typeof response !== 'object') return { fail: new KmsError('AssumeRole: the STS response has no Response object', { kind: 'bad-response' }) };
  const error = response.Error as { Code?: unknown } | undefined;
  if (error !== undefined) {
    const code = typeof error.Code === 'string' ? error.Code : 'UnknownError';
    const kind = code.startsWith('AuthFailure') || code.startsWith('UnauthorizedOperation') ? 'auth' : code.startsWith('RequestLimitExceeded') ? 'throttled' : code.startsWith('Invalid') || code.startsWith('Missing') ? 'bad-request' : 'service';
    const failure = new KmsError(`AssumeRole failed: ${code}`, { kind, kmsCode: code });
    if (code === 'AuthFailure.SignatureExpire') return { resign: failure };
    if (kind === 'throttled' || code === 'InternalError' || code.startsWith('InternalError.')) return { retry: failure };
    return { fail: failure };
  }
  const credentials = response.Credentials;
  if (!credentials || typeof credentials !== 'object') return { fail: new KmsError('AssumeRole: the STS response has no Credentials', { kind: 'bad-response' }) };
  try {
    return { ok: temporaryFrom(credentials as Record<string, unknown>, response.ExpiredTime, 'AssumeRole') };
  } catch (error) {
    return { fail: error as KmsError };
  }
}

const CVM_METADATA_URL = 'http://metadata.tencentyun.com/latest/meta-data/';
const METADATA_HOST = 'metadata.tencentyun.com';

export interface CvmRoleCredentialsOptions extends RefreshOptions {
  /** Default `http://metadata.tencentyun.com/latest/meta-data/` (plain http, as on a CVM); loopback for tests. */
  metadataUrl?: string;
  /** The role; default the one the metadata endpoint names. */
  roleName?: string;
  /** Timeout of each metadata request in ms; default 2000. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** The instance role of a CVM (what the SDK's CvmRoleCredential does), refreshed before expiry. */
export function cvmRoleCredentials(options: CvmRoleCredentialsOptions = {}): RefreshingCredentials {
  const base = metadataBase(options.metadataUrl ?? CVM_METADATA_URL);
  const timeoutMs = options.timeoutMs ?? 2000;
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const get = async (path: string): Promise<string> => {
    let response: Response;
    try {
      response = await doFetch(new URL(path, base).href, { redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      throw new KmsError('the CVM metadata endpoint did not answer (is this a CVM with a role bound?)', { kind: 'unreachable', cause: error });
    }
    const text = await response.text();
    if (response.status !== 200) throw new KmsError(`the CVM metadata endpoint answered HTTP ${response.status} (is a role bound to this instance?)`, { kind: 'auth', kmsCode: `HTTP${response.status}` });
    if (text.length > 64 * 1024) throw new KmsError('the CVM metadata answer is too large', { kind: 'bad-response' });
    return text;
  };
  let roleName = options.roleName;
  const fetchPair = async (): Promise<TemporaryCredentials> => {
    roleName ??= (await get('cam/security-credentials/')).split('\n')[0]!.trim();
    if (!/^[\w+=,.@-]{1,128}$/.test(roleName)) throw new KmsError('the CVM metadata endpoint named no usable role', { kind: 'bad-response' });
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await get(`cam/security-credentials/${roleName}`)) as Record<string, unknown>;
    } catch (error) {
      if (error instanceof KmsError) throw error;
      throw new KmsError('the CVM role credentials are not JSON', { kind: 'bad-response' });
    }
    if (json.Code !== 'Success') throw new KmsError('the CVM metadata endpoint did not give the role credentials', { kind: 'auth' });
    return temporaryFrom(json, json.ExpiredTime, 'CVM role');
  };
  return refreshingCredentials(fetchPair, options);
}

/** HTTPS, plain HTTP to the CVM metadata host, or loopback (the emulator); ends with `/`. */
function metadataBase(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(`"metadataUrl" is not a URL: ${JSON.stringify(text)}`);
  }
  if (url.protocol === 'http:' && url.hostname === METADATA_HOST) return withSlash(url);
  return withSlash(checkEndpoint(text));
}

function withSlash(url: URL): URL {
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}
