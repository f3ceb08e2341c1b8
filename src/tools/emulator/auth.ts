/**
 * Who is calling: the credential and signature checks of both wire protocols, as Tencent does
 * them. The query signature (legacy v2, and API 3.0 form posts and GETs) covers the method, host,
 * path and raw parameters; TC3-HMAC-SHA256 covers the exact headers, query and body received.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { querySignature, queryStringToSign, type QuerySignatureMethod, tc3Signature, tc3StringToSign, utcDate } from '../../kms/tencent-sign.ts';
import { err, header, type Params } from './api.ts';
import type { EmulatorCredentials } from './types.ts';

const SKEW_SECONDS = 300;

const TC3_AUTHORIZATION = /^TC3-HMAC-SHA256 Credential=([^/]+)\/(\d{4}-\d{2}-\d{2})\/([^/]*)\/tc3_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

/** The host names Tencent's KMS answers for: a client may sign one while its socket goes to loopback. */
export const DEFAULT_HOST_ALIASES = [
  'kms.tencentcloudapi.com',
  'kms.intl.tencentcloudapi.com',
  ...['ap-guangzhou', 'ap-shanghai', 'ap-beijing', 'ap-chengdu', 'ap-chongqing', 'ap-nanjing', 'ap-hongkong', 'ap-singapore'].map(
    (r) => `kms.${r}.tencentcloudapi.com`,
  ),
  ...['gz', 'sh', 'bj'].flatMap((r) => [`kms-${r}.api.tencentyun.com`, `kms-${r}.api.qcloud.com`]),
  // STS, for AssumeRole (sts.ts).
  'sts.tencentcloudapi.com',
  'sts.intl.tencentcloudapi.com',
];

export function generatedCredentials(): EmulatorCredentials {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const pick = (n: number): string => Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join('');
  return { secretId: `AKID${pick(32)}`, secretKey: pick(32) };
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Verifier {
  readonly #credentials: readonly EmulatorCredentials[];
  readonly #aliases: ReadonlySet<string>;
  readonly #now: () => number;

  /** `credentials` is read at each request: temporary ones issued later (sts.ts) are added to it. */
  constructor(credentials: readonly EmulatorCredentials[], aliases: Iterable<string>, now: () => number) {
    this.#credentials = credentials;
    this.#aliases = new Set(aliases);
    this.#now = now;
  }

  /** v1/v2 query signature over the raw parameter values; temporary credentials' token as the signed `Token`. */
  query(req: IncomingMessage, method: string, path: string, params: Params): void {
    const creds = this.#find(params.SecretId);
    this.#checkTimestamp(params.Timestamp);
    checkToken(creds, params.Token);
    this.#checkExpiry(creds);
    const sigMethod: QuerySignatureMethod = params.SignatureMethod === 'HmacSHA256' ? 'HmacSHA256' : 'HmacSHA1';
    if (params.SignatureMethod !== undefined && params.SignatureMethod !== 'HmacSHA256' && params.SignatureMethod !== 'HmacSHA1') {
      throw err.signature();
    }
    const given = params.Signature ?? '';
    for (const host of this.#hostCandidates(req, true)) {
      if (safeEqual(querySignature(creds.secretKey, queryStringToSign(method, host, path, params), sigMethod), given)) return;
    }
    throw err.signature();
  }

  /**
   * TC3-HMAC-SHA256 over the exact headers, query and body received. `product` is the service the
   * action belongs to (`kms`, or `sts` for AssumeRole): the scope must name it, or, for a request
   * addressed to an IP literal or localhost, the host's first label, as the official SDK signs it.
   */
  tc3(req: IncomingMessage, body: Buffer, rawQuery: string, product: 'kms' | 'sts'): void {
    const m = TC3_AUTHORIZATION.exec(header(req, 'authorization') ?? '');
    if (!m) throw err.authorization();
    const [, secretId, date, service, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string];
    const creds = this.#find(secretId);
    const timestamp = this.#checkTimestamp(header(req, 'x-tc-timestamp'));
    if (utcDate(timestamp) !== date) throw err.signature();
    // The scope names the product, which must be the one whose domain was called (Tencent's signature v3 doc).
    if (service !== product && !loopbackServices(req).includes(service)) throw err.signature();
    checkToken(creds, header(req, 'x-tc-token'));
    this.#checkExpiry(creds);
    const extra = signedExtraHeaders(req, signedHeaders);
    for (const host of this.#hostCandidates(req, false)) {
      const parts = tc3StringToSign({
        method: req.method === 'GET' ? 'GET' : 'POST',
        host,
        contentType: header(req, 'content-type') ?? '',
        payload: body,
        query: rawQuery,
        extraHeaders: extra,
        timestamp,
        service,
      });
      if (parts.signedHeaders !== signedHeaders) throw err.signature();
      if (safeEqual(tc3Signature(creds.secretKey, date, service, parts.stringToSign), signature)) return;
    }
    throw err.signature();
  }

  /** A temporary credential past its expiry is refused, its token valid or not. */
  #checkExpiry(creds: EmulatorCredentials): void {
    if (creds.expiresAt !== undefined && this.#now() >= creds.expiresAt) throw err.tokenExpired();
  }

  #find(secretId: string | undefined): EmulatorCredentials {
    const found = this.#credentials.find((c) => c.secretId === secretId);
    if (!found) throw err.secretId();
    return found;
  }

  #checkTimestamp(value: string | undefined): number {
    const ts = Number(value);
    if (!value || !Number.isInteger(ts)) throw err.missing('Timestamp');
    if (Math.abs(this.#now() - ts) > SKEW_SECONDS) throw err.expired();
    return ts;
  }

  /** Candidate host strings a client may have signed: the Host header (with and without port) and aliases. */
  #hostCandidates(req: IncomingMessage, withPort: boolean): string[] {
    const given = req.headers.host ?? '';
    const bare = given.replace(/:\d+$/, '');
    const set = new Set<string>(withPort ? [given, bare] : [bare, given]);
    for (const a of this.#aliases) set.add(a);
    return [...set];
  }
}

/**
 * The scope services a client may sign for a request addressed to an IP literal or localhost: no
 * product domain there to take the service from, so the official SDK signs the endpoint's first
 * label (`127` for 127.0.0.1:PORT; `localhost:PORT` whole, having no dot). Empty for a host name.
 */
export function loopbackServices(req: IncomingMessage): string[] {
  const given = req.headers.host ?? '';
  const name = given.replace(/:\d+$/, '');
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  if (bare !== 'localhost' && isIP(bare) === 0) return [];
  return [...new Set([given.split('.')[0]!, bare.split('.')[0]!])].filter((s) => s !== '');
}

/** Temporary credentials need their token; the request's, given or not, is compared with it. */
function checkToken(creds: EmulatorCredentials, given: string | undefined): void {
  if (creds.token !== undefined && (given === undefined || !safeEqual(given, creds.token))) throw err.token();
}

/** The signed headers besides host and content-type (which TC3 requires), as received. */
function signedExtraHeaders(req: IncomingMessage, signedHeaders: string): Record<string, string> {
  const names = signedHeaders.split(';');
  if (!names.includes('host') || !names.includes('content-type')) throw err.signature();
  const extra: Record<string, string> = {};
  for (const name of names) {
    if (name === 'host' || name === 'content-type') continue;
    const value = header(req, name);
    if (value === undefined) throw err.signature();
    extra[name] = value;
  }
  return extra;
}
