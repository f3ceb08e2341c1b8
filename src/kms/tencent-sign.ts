/**
 * Tencent Cloud request signing (reference: ../shared/reference/tencent-kms.md §1.3, §2.3):
 * the v1/v2 query signature (HmacSHA1 / HmacSHA256 over method, host, path and sorted raw
 * parameters) and TC3-HMAC-SHA256. HMAC and hashes from @noble/hashes, so this runs anywhere.
 */
import { hmacSha1, hmacSha256, sha256 } from '../core/hashes.ts';
import { base64, compareBytes, toHex, utf8, wipe } from '../core/bytes.ts';

export type QuerySignatureMethod = 'HmacSHA1' | 'HmacSHA256';

const encoder = new TextEncoder();
const bytesOf = (s: string): Uint8Array => encoder.encode(s);

/**
 * The v1/v2 string to sign: METHOD + host + path + "?" + name=value pairs sorted by name (byte
 * order), values raw (not URL-encoded). `_` in a name (not at position 0) signs as `.`.
 */
export function queryStringToSign(method: string, host: string, path: string, params: Readonly<Record<string, string>>): string {
  const names = Object.keys(params)
    .filter((name) => name !== 'Signature')
    .map((name) => ({ name, signed: name.length > 1 ? name[0] + name.slice(1).replaceAll('_', '.') : name }))
    .sort((a, b) => compareBytes(bytesOf(a.signed), bytesOf(b.signed)));
  return `${method.toUpperCase()}${host}${path}?${names.map(({ name, signed }) => `${signed}=${params[name]}`).join('&')}`;
}

/** Base64 HMAC-SHA1 or HMAC-SHA256 of the string to sign, keyed by the secret key. */
export function querySignature(secretKey: string, stringToSign: string, method: QuerySignatureMethod): string {
  const key = utf8(secretKey, 'secret key');
  try {
    return base64.encode((method === 'HmacSHA256' ? hmacSha256 : hmacSha1)(key, bytesOf(stringToSign)));
  } finally {
    wipe(key);
  }
}

export interface Tc3Request {
  method: 'POST' | 'GET';
  /** Host name as signed, without port (the SDK signs URL.hostname). */
  host: string;
  /** The exact Content-Type header value sent. */
  contentType: string;
  /** POST: the exact body; GET: empty. */
  payload: Uint8Array | string;
  /** GET: the raw query string after `?`; POST: empty. */
  query?: string;
  /** Extra signed headers (lower-case name → value), e.g. `x-tc-action`. */
  extraHeaders?: Readonly<Record<string, string>>;
  /** Unix seconds. */
  timestamp: number;
  /** Credential scope service, e.g. `kms`. */
  service: string;
}

export interface Tc3Parts {
  canonicalRequest: string;
  signedHeaders: string;
  credentialScope: string;
  stringToSign: string;
}

export function utcDate(timestamp: number): string {
  return new Date(timestamp * 1000).toISOString().slice(0, 10);
}

/** Steps 1 and 2 of TC3-HMAC-SHA256: canonical request and string to sign. */
export function tc3StringToSign(request: Tc3Request): Tc3Parts {
  const headers: Record<string, string> = {
    'content-type': request.contentType,
    host: request.host,
    ...request.extraHeaders,
  };
  const names = Object.keys(headers)
    .map((n) => n.toLowerCase())
    .sort();
  const canonicalHeaders = names.map((n) => `${n}:${String(headers[n]).trim().toLowerCase()}\n`).join('');
  const signedHeaders = names.join(';');
  const payload = typeof request.payload === 'string' ? bytesOf(request.payload) : request.payload;
  const canonicalRequest = [
    request.method,
    '/',
    request.query ?? '',
    canonicalHeaders,
    signedHeaders,
    toHex(sha256(payload)),
  ].join('\n');
  const credentialScope = `${utcDate(request.timestamp)}/${request.service}/tc3_request`;
  const stringToSign = `TC3-HMAC-SHA256\n${request.timestamp}\n${credentialScope}\n${toHex(sha256(bytesOf(canonicalRequest)))}`;
  return { canonicalRequest, signedHeaders, credentialScope, stringToSign };
}

/** Step 3: the hex signature, from the derived signing key. */
export function tc3Signature(secretKey: string, date: string, service: string, stringToSign: string): string {
  const secret = utf8(`TC3${secretKey}`, 'secret key');
  const kDate = hmacSha256(secret, bytesOf(date));
  const kService = hmacSha256(kDate, bytesOf(service));
  const kSigning = hmacSha256(kService, bytesOf('tc3_request'));
  try {
    return toHex(hmacSha256(kSigning, bytesOf(stringToSign)));
  } finally {
    wipe(secret, kDate, kService, kSigning);
  }
}

/** The whole Authorization header value for a TC3 request. */
export function tc3Authorization(secretId: string, secretKey: string, request: Tc3Request): string {
  const parts = tc3StringToSign(request);
  const signature = tc3Signature(secretKey, utcDate(request.timestamp), request.service, parts.stringToSign);
  return `TC3-HMAC-SHA256 Credential=${secretId}/${parts.credentialScope}, SignedHeaders=${parts.signedHeaders}, Signature=${signature}`;
}
