/**
 * Requests to the emulator built by hand: raw bytes on a socket (for what fetch refuses to send)
 * and signed requests of both wire protocols (for what reaches the emulator past its checks).
 */
import { connect } from 'node:net';
import { querySignature, queryStringToSign, type QuerySignatureMethod, tc3Authorization } from '../../../src/kms/tencent-sign.ts';
import type { EmulatorCredentials } from '../../../src/tools/emulator/index.ts';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends `head` (and `body`, if any) on a fresh socket and resolves with the first response, read
 * by its Content-Length (not by the socket closing, which a server may do with a reset), or with
 * `undefined` when the socket ends without one. `headOnly`: the head is the whole answer (HEAD).
 */
export function rawRequest(port: number, head: string, body: Buffer | string = '', options: { timeoutMs?: number; headOnly?: boolean } = {}): Promise<RawResponse | undefined> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${options.timeoutMs ?? 5000} ms to ${JSON.stringify(head.slice(0, 80))}`));
    }, options.timeoutMs ?? 5000);
    const finish = (value: RawResponse | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const parsed = parseResponse(received, options.headOnly ?? false);
      if (parsed) finish(parsed);
    });
    socket.on('error', () => finish(parseResponse(received, true)));
    socket.on('end', () => finish(parseResponse(received, true)));
    socket.write(head);
    if (body.length) socket.write(body);
  });
}

function parseResponse(bytes: Buffer, headOnly: boolean): RawResponse | undefined {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  if (headOnly) return { status, headers, body: bytes.subarray(end + 4).toString('utf8') };
  const length = Number(headers['content-length'] ?? NaN);
  if (!Number.isInteger(length) || bytes.length - end - 4 < length) return undefined;
  return { status, headers, body: bytes.subarray(end + 4, end + 4 + length).toString('utf8') };
}

/** A raw request head: `METHOD target HTTP/1.1`, a Host, the given header lines. */
export function head(method: string, target: string, headers: Record<string, string | number> = {}): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export interface Tc3Options {
  action: string;
  body: string | Uint8Array;
  credentials: EmulatorCredentials;
  service?: string;
  token?: string;
  timestamp?: number;
  contentType?: string;
}

/** Headers of an API 3.0 POST signed with TC3-HMAC-SHA256 for host 127.0.0.1 (the port is not signed). */
export function tc3Headers(o: Tc3Options): Record<string, string> {
  const timestamp = o.timestamp ?? Math.floor(Date.now() / 1000);
  const contentType = o.contentType ?? 'application/json';
  return {
    'Content-Type': contentType,
    'X-TC-Action': o.action,
    'X-TC-Timestamp': String(timestamp),
    'X-TC-Version': '2019-01-18',
    'X-TC-Region': 'ap-guangzhou',
    ...(o.token !== undefined ? { 'X-TC-Token': o.token } : {}),
    Authorization: tc3Authorization(o.credentials.secretId, o.credentials.secretKey, {
      method: 'POST',
      host: '127.0.0.1',
      contentType,
      payload: o.body,
      timestamp,
      service: o.service ?? 'kms',
      extraHeaders: { 'x-tc-action': o.action },
    }),
  };
}

/** Query/form parameters signed with the v1/v2 query signature, for `METHOD host path`. */
export function signedParams(
  credentials: EmulatorCredentials,
  params: Record<string, string>,
  where: { method: 'GET' | 'POST'; host: string; path: string; signatureMethod?: QuerySignatureMethod },
): Record<string, string> {
  const signatureMethod = where.signatureMethod ?? 'HmacSHA256';
  const all: Record<string, string> = {
    Timestamp: String(Math.floor(Date.now() / 1000)),
    Nonce: String(1 + Math.floor(Math.random() * 65535)),
    SecretId: credentials.secretId,
    SignatureMethod: signatureMethod,
    ...params,
  };
  return { ...all, Signature: querySignature(credentials.secretKey, queryStringToSign(where.method, where.host, where.path, all), signatureMethod) };
}

/** The error code of either API's answer: API 3.0 `Response.Error.Code`, legacy `code` (0 = success). */
export function errorCode(body: string): string | number | undefined {
  const parsed = JSON.parse(body) as { Response?: { Error?: { Code?: string } }; code?: number };
  return parsed.Response ? parsed.Response.Error?.Code : parsed.code;
}
