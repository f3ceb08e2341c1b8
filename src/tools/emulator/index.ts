/**
 * A local Tencent Cloud KMS emulator for development, demos and tests (never for production data).
 * It speaks both wire protocols: the legacy API at /v2/index.php (GET query or POST form, HmacSHA1 /
 * HmacSHA256) and API 3.0 at / (POST JSON with TC3-HMAC-SHA256, and v1-signed form posts), and it
 * verifies every signature as Tencent does. Data keys are wrapped under per-CMK master keys with
 * AES-256-GCM binding the encryption context, so Decrypt with another context fails like the real
 * KMS. Faults (latency, throttling, 5xx, dropped connections, malformed bodies, a QPS limit) can be
 * injected by option or through the control endpoint, for tests.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { querySignature, queryStringToSign, type QuerySignatureMethod, tc3Signature, tc3StringToSign, utcDate } from '../../kms/tencent-sign.ts';

export interface EmulatorCredentials {
  secretId: string;
  secretKey: string;
  /** When set, API 3.0 requests must carry it as X-TC-Token (temporary credentials). */
  token?: string;
}

export type FaultKind = 'throttle' | 'internal' | 'http503' | 'drop' | 'malformed' | 'none';

export interface FaultOptions {
  /** Added latency before each answer, ms. */
  latencyMs?: number;
  /** Fractions of requests (0..1) that get each fault. */
  throttleRate?: number;
  internalErrorRate?: number;
  http503Rate?: number;
  dropRate?: number;
  malformedRate?: number;
  /** Requests per second per action before answering with the real throttling code. */
  qpsLimit?: number;
  /** Faults for the next requests, one each, before any rate applies. */
  script?: FaultKind[];
}

export interface EmulatorOptions {
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Accepted credentials; default one generated pair (see `credentials` on the result). */
  credentials?: EmulatorCredentials[];
  /** Persist keys to this file (written atomically, mode 0600) so they survive a restart. */
  statePath?: string;
  faults?: FaultOptions;
  /**
   * Host names the emulator answers for, besides the one in the Host header: clients may sign for
   * the real service name while their socket goes to loopback. Default: Tencent's KMS host names.
   */
  hostAliases?: string[];
  /** Clock, Unix seconds (tests of signature expiry). */
  now?: () => number;
}

export interface EmulatorStats {
  /** Requests per action that passed authentication (faulted ones included). */
  calls: Record<string, number>;
  /** Requests answered with each injected fault. */
  faults: Record<string, number>;
  /** Requests rejected for their signature, credentials or timestamp. */
  authFailures: number;
}

export interface RunningEmulator {
  /** `http://HOST:PORT` (API 3.0 at `/`, legacy at `/v2/index.php`). */
  url: string;
  host: string;
  port: number;
  credentials: EmulatorCredentials[];
  setFaults(faults: FaultOptions): void;
  stats(): EmulatorStats;
  resetStats(): void;
  /** Creates a CMK directly (no request); returns its key id. */
  createKey(alias?: string): string;
  close(): Promise<void>;
}

interface Cmk {
  keyId: string;
  alias: string;
  description: string;
  keyUsage: string;
  state: 'Enabled' | 'Disabled';
  createTime: number;
  material: Buffer;
}

const SKEW_SECONDS = 300;
const MAX_BODY = 1024 * 1024;
const API_VERSION = '2019-01-18';
const BLOB_AAD = 'kms-envelope-emulator/v1';

const DEFAULT_ALIASES = [
  'kms.tencentcloudapi.com',
  'kms.intl.tencentcloudapi.com',
  ...['ap-guangzhou', 'ap-shanghai', 'ap-beijing', 'ap-chengdu', 'ap-chongqing', 'ap-nanjing', 'ap-hongkong', 'ap-singapore'].map(
    (r) => `kms.${r}.tencentcloudapi.com`,
  ),
  ...['gz', 'sh', 'bj'].flatMap((r) => [`kms-${r}.api.tencentyun.com`, `kms-${r}.api.qcloud.com`]),
];

/** Thrown by handlers: becomes the API's own error shape. */
class ApiError extends Error {
  readonly v3Code: string;
  readonly v2Code: number;
  constructor(v3Code: string, v2Code: number, message: string) {
    super(message);
    this.v3Code = v3Code;
    this.v2Code = v2Code;
  }
}

const err = {
  missing: (name: string) => new ApiError('MissingParameter', 4000, `(10100) missing parameter ${name}`),
  invalid: (name: string) => new ApiError('InvalidParameterValue', 4000, `(10110) invalid value of ${name}`),
  notFound: () => new ApiError('ResourceUnavailable.CmkNotFound', 4530, '(10630) key is not existed'),
  disabled: () => new ApiError('ResourceUnavailable.CmkDisabled', 4550, '(10650) key is disabled'),
  ciphertext: () => new ApiError('InvalidParameterValue.InvalidCiphertext', 4000, '(10400) ciphertext or encryption context is invalid'),
  action: (a: string) => new ApiError('InvalidAction', 4000, `(10010) unknown action ${a}`),
  signature: () => new ApiError('AuthFailure.SignatureFailure', 4100, '(10030) authentication failed'),
  expired: () => new ApiError('AuthFailure.SignatureExpire', 4100, '(10030) signature expired: timestamp too far from server time'),
  secretId: () => new ApiError('AuthFailure.SecretIdNotFound', 4100, '(10270) secretId does not exist'),
  token: () => new ApiError('AuthFailure.TokenFailure', 4100, '(10030) token invalid'),
  throttle: () => new ApiError('RequestLimitExceeded', 4420, '(10250) request limit exceeded'),
  internal: () => new ApiError('InternalError', 6000, '(10050) internal error'),
  version: () => new ApiError('NoSuchVersion', 4000, '(10010) unsupported version'),
};

type Params = Record<string, string>;
type Api = 'v2' | 'v3';

function generatedCredentials(): EmulatorCredentials {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const pick = (n: number): string => Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join('');
  return { secretId: `AKID${pick(32)}`, secretKey: pick(32) };
}

/** Reads the request body with a size cap. */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new ApiError('InvalidParameter', 4000, '(10000) request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<RunningEmulator> {
  const credentials = options.credentials?.length ? options.credentials : [generatedCredentials()];
  const aliases = new Set(options.hostAliases ?? DEFAULT_ALIASES);
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  let faults: FaultOptions = { ...options.faults, script: [...(options.faults?.script ?? [])] };
  const keys = new Map<string, Cmk>();
  let stats: EmulatorStats = { calls: {}, faults: {}, authFailures: 0 };
  const windows = new Map<string, number[]>();

  if (options.statePath) loadState(options.statePath, keys);

  const persist = (): void => {
    if (options.statePath) saveState(options.statePath, keys);
  };

  const createKey = (alias = '', description = '', keyUsage = 'ENCRYPT_DECRYPT'): Cmk => {
    const cmk: Cmk = { keyId: randomUUID(), alias, description, keyUsage, state: 'Enabled', createTime: now(), material: randomBytes(32) };
    keys.set(cmk.keyId, cmk);
    persist();
    return cmk;
  };

  const cmkFor = (keyId: string | undefined, name: string, needEnabled = true): Cmk => {
    if (!keyId) throw err.missing(name);
    const cmk = keys.get(keyId);
    if (!cmk) throw err.notFound();
    if (needEnabled && cmk.state !== 'Enabled') throw err.disabled();
    return cmk;
  };

  const checkContext = (context: string | undefined, name: string): string => {
    if (context === undefined || context === '') return '';
    if (context.length > 1024) throw err.invalid(name);
    try {
      const parsed: unknown = JSON.parse(context);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    } catch {
      throw err.invalid(name);
    }
    return context;
  };

  const wrap = (cmk: Cmk, plaintext: Buffer, context: string): string => {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', cmk.material, nonce);
    cipher.setAAD(Buffer.from(`${BLOB_AAD}\0${cmk.keyId}\0${context}`));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return [Buffer.from(cmk.keyId).toString('base64'), nonce.toString('base64'), ct.toString('base64')].join('-k-');
  };

  const unwrap = (blob: string | undefined, context: string): { cmk: Cmk; plaintext: Buffer } => {
    if (!blob) throw err.missing('CiphertextBlob');
    const parts = blob.split('-k-');
    if (parts.length !== 3) throw err.ciphertext();
    const keyId = Buffer.from(parts[0]!, 'base64').toString('utf8');
    const cmk = keys.get(keyId);
    if (!cmk) throw err.ciphertext();
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
  };

  /** API 3.0 actions take PascalCase parameters; v2 the same names in lower camelCase. */
  const actions: Record<string, (p: (name: string) => string | undefined, api: Api) => Record<string, unknown>> = {
    CreateKey(p, api) {
      const alias = p('Alias') ?? '';
      if (api === 'v3' && !/^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$/.test(alias)) throw alias ? err.invalid('Alias') : err.missing('Alias');
      const cmk = createKey(alias, p('Description') ?? '', p('KeyUsage') ?? 'ENCRYPT_DECRYPT');
      const meta = { KeyId: cmk.keyId, Alias: cmk.alias, CreateTime: cmk.createTime, Description: cmk.description, KeyState: cmk.state, KeyUsage: cmk.keyUsage };
      return api === 'v3' ? meta : { keyMetadata: lowerKeys(meta) };
    },
    GenerateDataKey(p) {
      const cmk = cmkFor(p('KeyId'), 'KeyId');
      const spec = p('KeySpec');
      const nob = p('NumberOfBytes');
      let length: number;
      if (nob !== undefined && nob !== '') {
        length = Number(nob);
        if (!Number.isInteger(length) || length < 1 || length > 1024) throw err.invalid('NumberOfBytes');
      } else if (spec === 'AES_256' || spec === undefined || spec === '') {
        length = 32;
      } else if (spec === 'AES_128') {
        length = 16;
      } else {
        throw err.invalid('KeySpec');
      }
      const context = checkContext(p('EncryptionContext'), 'EncryptionContext');
      const dataKey = randomBytes(length);
      const blob = wrap(cmk, dataKey, context);
      const plaintext = dataKey.toString('base64');
      dataKey.fill(0);
      return { KeyId: cmk.keyId, Plaintext: plaintext, CiphertextBlob: blob };
    },
    Encrypt(p) {
      const cmk = cmkFor(p('KeyId'), 'KeyId');
      const text = p('Plaintext');
      if (text === undefined) throw err.missing('Plaintext');
      const plaintext = Buffer.from(text, 'base64');
      if (plaintext.length > 4096 || plaintext.toString('base64') !== text) throw new ApiError('InvalidParameterValue.InvalidPlaintext', 4000, '(10110) invalid plaintext');
      return { KeyId: cmk.keyId, CiphertextBlob: wrap(cmk, plaintext, checkContext(p('EncryptionContext'), 'EncryptionContext')) };
    },
    Decrypt(p) {
      const { cmk, plaintext } = unwrap(p('CiphertextBlob'), checkContext(p('EncryptionContext'), 'EncryptionContext'));
      const text = plaintext.toString('base64');
      plaintext.fill(0);
      return { KeyId: cmk.keyId, Plaintext: text };
    },
    ReEncrypt(p) {
      const source = unwrap(p('CiphertextBlob'), checkContext(p('SourceEncryptionContext'), 'SourceEncryptionContext'));
      const destinationId = p('DestinationKeyId') || source.cmk.keyId;
      const destination = cmkFor(destinationId, 'DestinationKeyId');
      const blob = wrap(destination, source.plaintext, checkContext(p('DestinationEncryptionContext'), 'DestinationEncryptionContext'));
      source.plaintext.fill(0);
      return { CiphertextBlob: blob, KeyId: destination.keyId, SourceKeyId: source.cmk.keyId, ReEncrypted: true };
    },
    EnableKey(p) {
      cmkFor(p('KeyId'), 'KeyId', false).state = 'Enabled';
      persist();
      return {};
    },
    DisableKey(p) {
      cmkFor(p('KeyId'), 'KeyId', false).state = 'Disabled';
      persist();
      return {};
    },
    ListKeys(p, api) {
      const offset = Number(p('Offset') ?? 0) || 0;
      const limit = Number(p('Limit') ?? 10) || 10;
      const all = [...keys.values()];
      const page = all.slice(offset, offset + limit);
      return api === 'v3' ? { Keys: page.map((k) => ({ KeyId: k.keyId })), TotalCount: all.length } : { keys: page.map((k) => k.keyId), totalCount: all.length };
    },
  };
  actions.ListKey = actions.ListKeys!;

  /** The next fault for this request, if any (script first, then rates, then the QPS limit). */
  const pickFault = (action: string): FaultKind => {
    const scripted = faults.script?.shift();
    if (scripted) return scripted;
    const roll = (rate: number | undefined): boolean => rate !== undefined && rate > 0 && Math.random() < rate;
    if (roll(faults.dropRate)) return 'drop';
    if (roll(faults.http503Rate)) return 'http503';
    if (roll(faults.malformedRate)) return 'malformed';
    if (roll(faults.throttleRate)) return 'throttle';
    if (roll(faults.internalErrorRate)) return 'internal';
    if (faults.qpsLimit !== undefined && faults.qpsLimit > 0) {
      const t = Date.now();
      const window = (windows.get(action) ?? []).filter((x) => t - x < 1000);
      if (window.length >= faults.qpsLimit) {
        windows.set(action, window);
        return 'throttle';
      }
      window.push(t);
      windows.set(action, window);
    }
    return 'none';
  };

  /** Candidate host strings a client may have signed: the Host header (with and without port) and aliases. */
  const hostCandidates = (req: IncomingMessage, withPort: boolean): string[] => {
    const header = req.headers.host ?? '';
    const bare = header.replace(/:\d+$/, '');
    const set = new Set<string>(withPort ? [header, bare] : [bare, header]);
    for (const a of aliases) set.add(a);
    return [...set];
  };

  const findCredentials = (secretId: string | undefined): EmulatorCredentials => {
    const found = credentials.find((c) => c.secretId === secretId);
    if (!found) throw err.secretId();
    return found;
  };

  const checkTimestamp = (value: string | undefined): number => {
    const ts = Number(value);
    if (!value || !Number.isInteger(ts)) throw err.missing('Timestamp');
    if (Math.abs(now() - ts) > SKEW_SECONDS) throw err.expired();
    return ts;
  };

  /** v1/v2 query signature over the raw parameter values. */
  const verifyQuery = (req: IncomingMessage, method: string, path: string, params: Params): void => {
    const creds = findCredentials(params.SecretId);
    checkTimestamp(params.Timestamp);
    const sigMethod: QuerySignatureMethod = params.SignatureMethod === 'HmacSHA256' ? 'HmacSHA256' : 'HmacSHA1';
    if (params.SignatureMethod !== undefined && params.SignatureMethod !== 'HmacSHA256' && params.SignatureMethod !== 'HmacSHA1') {
      throw err.signature();
    }
    const given = params.Signature ?? '';
    for (const host of hostCandidates(req, true)) {
      if (safeEqual(querySignature(creds.secretKey, queryStringToSign(method, host, path, params), sigMethod), given)) return;
    }
    throw err.signature();
  };

  /** TC3-HMAC-SHA256 over the exact headers, query and body received. */
  const verifyTc3 = (req: IncomingMessage, body: Buffer, rawQuery: string): void => {
    const auth = req.headers.authorization ?? '';
    const m = /^TC3-HMAC-SHA256 Credential=([^/]+)\/(\d{4}-\d{2}-\d{2})\/([^/]+)\/tc3_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) throw err.signature();
    const [, secretId, date, service, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string];
    const creds = findCredentials(secretId);
    const timestamp = checkTimestamp(header(req, 'x-tc-timestamp'));
    if (utcDate(timestamp) !== date) throw err.signature();
    if (creds.token !== undefined && header(req, 'x-tc-token') !== creds.token) throw err.token();
    const names = signedHeaders.split(';');
    if (!names.includes('host') || !names.includes('content-type')) throw err.signature();
    const extra: Record<string, string> = {};
    for (const name of names) {
      if (name === 'host' || name === 'content-type') continue;
      const value = header(req, name);
      if (value === undefined) throw err.signature();
      extra[name] = value;
    }
    for (const host of hostCandidates(req, false)) {
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
  };

  const send = (res: ServerResponse, status: number, body: string): void => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };

  const respond = (res: ServerResponse, api: Api, requestId: string, result: Record<string, unknown> | ApiError): void => {
    if (result instanceof ApiError) {
      const body = api === 'v3'
        ? { Response: { Error: { Code: result.v3Code, Message: result.message.replace(/^\(\d+\) /, '') }, RequestId: requestId } }
        : { code: result.v2Code, message: result.message, codeDesc: result.v3Code, requestId };
      send(res, 200, JSON.stringify(body));
      return;
    }
    const body = api === 'v3' ? { Response: { ...result, RequestId: requestId } } : { code: 0, message: '', requestId, ...lowerKeys(result) };
    send(res, 200, JSON.stringify(body));
  };

  const handleApi = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const api: Api = url.pathname === '/v2/index.php' ? 'v2' : 'v3';
    const requestId = randomUUID();
    let action = 'unknown';
    try {
      const body = await readBody(req);
      const rawQuery = url.search.slice(1);
      const contentType = (header(req, 'content-type') ?? '').toLowerCase();
      let params: Params;
      let lookup: (name: string) => string | undefined;
      if (api === 'v3' && (header(req, 'authorization') ?? '').startsWith('TC3-HMAC-SHA256')) {
        action = header(req, 'x-tc-action') ?? '';
        verifyTc3(req, body, req.method === 'GET' ? rawQuery : '');
        const version = header(req, 'x-tc-version');
        if (version !== undefined && version !== API_VERSION) throw err.version();
        if (req.method === 'GET') {
          params = Object.fromEntries(new URLSearchParams(rawQuery));
        } else {
          if (!contentType.startsWith('application/json')) throw err.signature();
          const parsed: unknown = body.length ? JSON.parse(body.toString('utf8')) : {};
          params = Object.fromEntries(Object.entries(parsed as Record<string, unknown>).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
        }
        lookup = (name) => params[name];
      } else {
        params = Object.fromEntries(new URLSearchParams(req.method === 'GET' ? rawQuery : body.toString('utf8')));
        action = params.Action ?? '';
        verifyQuery(req, req.method ?? 'GET', url.pathname, params);
        if (api === 'v3' && params.Version !== undefined && params.Version !== API_VERSION) throw err.version();
        lookup = api === 'v3' ? (name) => params[name] : (name) => params[name[0]!.toLowerCase() + name.slice(1)];
      }
      stats.calls[action] = (stats.calls[action] ?? 0) + 1;
      const fault = pickFault(action);
      if (fault !== 'none') stats.faults[fault] = (stats.faults[fault] ?? 0) + 1;
      if (faults.latencyMs) await new Promise((r) => setTimeout(r, faults.latencyMs));
      switch (fault) {
        case 'drop':
          req.socket.destroy();
          return;
        case 'http503':
          res.writeHead(503, { 'Content-Type': 'text/plain' });
          res.end('Service Unavailable');
          return;
        case 'malformed':
          send(res, 200, '{"Response": {"RequestId": "');
          return;
        case 'throttle':
          throw err.throttle();
        case 'internal':
          throw err.internal();
      }
      const handler = actions[action];
      if (!handler) throw err.action(action);
      respond(res, api, requestId, handler(lookup, api));
    } catch (error) {
      if (error instanceof ApiError) {
        if (error.v3Code.startsWith('AuthFailure')) stats.authFailures++;
        respond(res, api, requestId, error);
      } else if (error instanceof SyntaxError) {
        respond(res, api, requestId, new ApiError('InvalidParameter', 4000, '(10000) request body is not valid JSON'));
      } else {
        respond(res, api, requestId, err.internal());
      }
    }
  };

  const handleControl = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    // The control endpoint needs the first secret key, so only whoever started the emulator can use it.
    const token = (header(req, 'authorization') ?? '').replace(/^Bearer /, '');
    if (!safeEqual(token, credentials[0]!.secretKey)) {
      send(res, 401, '{"error":"unauthorized"}');
      return;
    }
    if (url.pathname === '/__emulator/faults' && req.method === 'POST') {
      const body = await readBody(req);
      try {
        running.setFaults(JSON.parse(body.toString('utf8')) as FaultOptions);
      } catch {
        send(res, 400, '{"error":"faults must be a JSON object"}');
        return;
      }
      send(res, 200, JSON.stringify({ faults }));
    } else if (url.pathname === '/__emulator/stats') {
      send(res, 200, JSON.stringify(stats));
    } else {
      send(res, 404, '{"error":"not found"}');
    }
  };

  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const route = url.pathname.startsWith('/__emulator/')
      ? handleControl(req, res, url)
      : url.pathname === '/' || url.pathname === '/v2/index.php'
        ? handleApi(req, res, url)
        : Promise.resolve(send(res, 404, '{"error":"not found"}'));
    route.catch(() => {
      if (!res.headersSent) send(res, 500, '{"error":"internal"}');
      else res.destroy();
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  const running: RunningEmulator = {
    url: `http://${urlHost}:${port}`,
    host,
    port,
    credentials,
    setFaults(next) {
      faults = { ...next, script: [...(next.script ?? [])] };
      windows.clear();
    },
    stats: () => structuredClone(stats),
    resetStats() {
      stats = { calls: {}, faults: {}, authFailures: 0 };
    },
    createKey: (alias) => createKey(alias ?? '').keyId,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
  return running;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

function lowerKeys(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k[0]!.toLowerCase() + k.slice(1), v]));
}

interface StateFile {
  format: 'kms-envelope emulator state v1';
  keys: (Omit<Cmk, 'material'> & { material: string })[];
}

function loadState(path: string, keys: Map<string, Cmk>): void {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return;
    throw error;
  }
  const state = JSON.parse(text) as StateFile;
  if (state.format !== 'kms-envelope emulator state v1') throw new Error(`${path} is not an emulator state file`);
  for (const k of state.keys) keys.set(k.keyId, { ...k, material: Buffer.from(k.material, 'base64') });
}

/** Writes the state to a temporary file beside it, fsyncs, then renames over it. */
function saveState(path: string, keys: Map<string, Cmk>): void {
  const state: StateFile = {
    format: 'kms-envelope emulator state v1',
    keys: [...keys.values()].map((k) => ({ ...k, material: k.material.toString('base64') })),
  };
  const tmp = join(dirname(path), `.${Date.now()}-${randomUUID()}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, JSON.stringify(state));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
