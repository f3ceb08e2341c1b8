/**
 * The HTTP layer: routes a request to API 3.0 (`/`), the legacy API (`/v2/index.php`) or the
 * control endpoint (`/__emulator/*`), reads and authenticates it, applies the injected fault, runs
 * the action and answers in the API's own shape.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type Api, ApiError, err, header, lowerKeys, type Params } from './api.ts';
import { safeEqual, type Verifier } from './auth.ts';
import { type CorsPolicy, corsHeaders } from './cors.ts';
import { checkFaultOptions, type Faults } from './faults.ts';
import { type KeyStore, type Lookup, runAction } from './kms.ts';
import type { Stats } from './stats.ts';
import { METADATA_PREFIX, metadataAnswer, STS_VERSION, type TemporaryCredentials } from './sts.ts';
import type { FaultKind } from './types.ts';

// Tencent's request size limits: TC3 POST 10 MB, v1-signed (and legacy) POST 1 MB.
const MAX_TC3_BODY = 10 * 1024 * 1024;
const MAX_FORM_BODY = 1024 * 1024;
const API_VERSION = '2019-01-18';
const API_PATHS: ReadonlyMap<string, Api> = new Map([['/', 'v3'], ['/v2/index.php', 'v2']]);
const utf8 = new TextDecoder('utf-8', { fatal: true });

export interface Services {
  verifier: Verifier;
  store: KeyStore;
  faults: Faults;
  stats: Stats;
  /** The control endpoint's bearer token: the first secret key, so only whoever started the emulator can use it. */
  controlKey: string;
  cors?: CorsPolicy | undefined;
  /** STS AssumeRole and the instance role's credentials. */
  temporary: TemporaryCredentials;
  instanceRole?: { name: string; ttlSeconds?: number } | undefined;
}

export interface Listening {
  port: number;
  close(): Promise<void>;
}

/**
 * Reads the request body up to `limit` bytes. Past it (declared or sent) the answer goes out at
 * once and the rest is left to Node, which discards it after the answer and keeps the connection:
 * destroying the socket instead would lose the answer to the client's reset.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      reject(err.tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        reject(err.tooLarge());
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => reject(new Error('the client went away before the whole body')));
  });
}

/** The path and raw query of an origin-form or absolute-form request target; undefined for any other. */
function parseTarget(raw: string): { path: string; query: string } | undefined {
  let target = raw;
  if (/^https?:\/\//i.test(target)) {
    try {
      const url = new URL(target);
      target = `${url.pathname}${url.search}`;
    } catch {
      return undefined;
    }
  }
  if (!target.startsWith('/')) return undefined;
  const end = target.indexOf('#');
  if (end >= 0) target = target.slice(0, end);
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function errorBody(api: Api, requestId: string, error: ApiError): object {
  return api === 'v3'
    ? { Response: { Error: { Code: error.v3Code, Message: error.message.replace(/^\(\d+\) /, '') }, RequestId: requestId } }
    : { code: error.v2Code, message: error.message, codeDesc: error.v3Code, requestId };
}

/** Tencent answers API errors with HTTP 200 and the error in the body; `status` is for what is not an API call. */
function respond(res: ServerResponse, api: Api, requestId: string, result: Record<string, unknown> | ApiError, status = 200): void {
  if (result instanceof ApiError) {
    send(res, status, JSON.stringify(errorBody(api, requestId, result)));
    return;
  }
  const body = api === 'v3' ? { Response: { ...result, RequestId: requestId } } : { code: 0, message: '', requestId, ...lowerKeys(result) };
  send(res, status, JSON.stringify(body));
}

interface Call {
  action: string;
  lookup: Lookup;
  /** The product the request was signed for: `sts` only for AssumeRole. */
  service?: 'sts' | undefined;
}

/** An API 3.0 request signed with TC3-HMAC-SHA256: JSON body (POST) or query (GET), routed by its action. */
function readTc3Call(services: Services, req: IncomingMessage, body: Buffer, rawQuery: string): Call {
  const action = header(req, 'x-tc-action') ?? '';
  const product = action === 'AssumeRole' ? 'sts' : 'kms';
  services.verifier.tc3(req, body, req.method === 'GET' ? rawQuery : '', product);
  const version = header(req, 'x-tc-version');
  // STS needs its own version named; KMS takes its one version, or none.
  if (product === 'sts' ? version !== STS_VERSION : version !== undefined && version !== API_VERSION) throw err.version();
  let lookup: Lookup;
  if (req.method === 'GET') {
    const params = Object.fromEntries(new URLSearchParams(rawQuery));
    lookup = (name) => params[name];
  } else {
    if (!(header(req, 'content-type') ?? '').toLowerCase().startsWith('application/json')) throw err.signature();
    lookup = jsonLookup(body);
  }
  return { action, lookup, ...(product === 'sts' ? { service: product } : {}) };
}

/** Parameters Tencent types as integers: a JSON number, or its decimal text. Every other one the KMS and STS take is a string. */
const INTEGER_PARAMETERS: ReadonlySet<string> = new Set(['NumberOfBytes', 'PendingWindowInDays', 'DurationSeconds', 'Offset', 'Limit', 'Type']);

/**
 * A JSON body's fields by name, each checked against the type the API gives it when read: a string
 * parameter given as an object, array, number or boolean (EncryptionContext as an object, say) is
 * refused with InvalidParameter, as Tencent's gateway does; null is an absent field.
 */
function jsonLookup(body: Buffer): Lookup {
  let parsed: unknown;
  try {
    parsed = body.length ? JSON.parse(utf8.decode(body)) : {};
  } catch {
    throw err.notJson();
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw err.notJson();
  const fields = new Map(Object.entries(parsed));
  return (name) => {
    const value = fields.get(name);
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string') return value;
    if (typeof value === 'number' && INTEGER_PARAMETERS.has(name)) return String(value);
    throw err.type(name, INTEGER_PARAMETERS.has(name) ? 'Integer' : 'String');
  };
}

/** A query-signed request: legacy v2, or API 3.0 signed v1; query (GET) or form body (POST). */
function readQueryCall(services: Services, req: IncomingMessage, api: Api, path: string, body: Buffer, rawQuery: string): Call {
  const params: Params = Object.fromEntries(new URLSearchParams(req.method === 'GET' ? rawQuery : body.toString('utf8')));
  const action = params.Action ?? '';
  services.verifier.query(req, req.method ?? 'GET', path, params);
  // API 3.0 is routed by action here too: AssumeRole to STS, with STS's version.
  if (api === 'v3' && action === 'AssumeRole') {
    if (params.Version !== STS_VERSION) throw err.version();
    return { action, lookup: (name) => params[name], service: 'sts' };
  }
  if (api === 'v3' && params.Version !== undefined && params.Version !== API_VERSION) throw err.version();
  const lookup: Lookup = api === 'v3' ? (name) => params[name] : (name) => params[name[0]!.toLowerCase() + name.slice(1)];
  return { action, lookup };
}

/** Answers for an injected fault (or drops the connection); 'none' when the request goes on to its action. */
function answerFault(req: IncomingMessage, res: ServerResponse, fault: FaultKind): 'dropped' | 'answered' | 'none' {
  switch (fault) {
    case 'drop':
      req.socket.destroy();
      return 'dropped';
    case 'http503':
      res.writeHead(503, { 'Content-Type': 'text/plain' });
      res.end('Service Unavailable');
      return 'answered';
    case 'malformed':
      send(res, 200, '{"Response": {"RequestId": "');
      return 'answered';
    case 'throttle':
      throw err.throttle();
    case 'internal':
      throw err.internal();
    default:
      return 'none';
  }
}

interface Client {
  /** The client went away before its answer. */
  readonly gone: boolean;
  /** Waits `ms`, or less if the client goes away meanwhile. */
  wait(ms: number): Promise<void>;
}

function watchClient(res: ServerResponse): Client {
  let gone = false;
  let wake = (): void => {};
  res.once('close', () => {
    if (res.writableFinished) return;
    gone = true;
    wake();
  });
  return {
    get gone() {
      return gone;
    },
    wait: (ms) =>
      new Promise<void>((resolve) => {
        if (gone) return resolve();
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      }),
  };
}

/** Reads and authenticates an API request: its action, and its parameters by API 3.0 name. */
async function readCall(services: Services, req: IncomingMessage, api: Api, target: { path: string; query: string }): Promise<Call> {
  if (req.method !== 'GET' && req.method !== 'POST') throw err.method(req.method ?? '');
  const tc3 = api === 'v3' && (header(req, 'authorization') ?? '').startsWith('TC3-HMAC-SHA256');
  const body = await readBody(req, tc3 ? MAX_TC3_BODY : MAX_FORM_BODY);
  return tc3 ? readTc3Call(services, req, body, target.query) : readQueryCall(services, req, api, target.path, body, target.query);
}

/**
 * Applies the injected fault and latency. A call whose client leaves meanwhile is abandoned: it
 * gives back its place under the QPS limit at once, and its action does not run.
 */
async function admit(services: Services, req: IncomingMessage, res: ServerResponse, action: string, client: Client): Promise<'go' | 'dropped' | 'answered' | 'abandoned'> {
  const { fault, release } = services.faults.pick(action);
  if (fault !== 'none') services.stats.fault(fault);
  if (services.faults.latencyMs) await client.wait(services.faults.latencyMs);
  if (client.gone) {
    release();
    return 'abandoned';
  }
  const answered = answerFault(req, res, fault);
  return answered === 'none' ? 'go' : answered;
}

async function handleApi(services: Services, req: IncomingMessage, res: ServerResponse, api: Api, target: { path: string; query: string }): Promise<void> {
  const requestId = randomUUID();
  const client = watchClient(res);
  let action: string | undefined;
  let answer: Record<string, unknown> | ApiError;
  try {
    const call = await readCall(services, req, api, target);
    action = call.action;
    services.stats.call(action);
    const admitted = await admit(services, req, res, action, client);
    if (admitted === 'abandoned') services.stats.abandoned(action);
    if (admitted === 'answered') services.stats.served(action);
    if (admitted !== 'go') return;
    answer = call.service === 'sts' ? services.temporary.assumeRole(call.lookup) : runAction(services.store, action, call.lookup, api);
  } catch (error) {
    if (error instanceof ApiError && error.v3Code.startsWith('AuthFailure')) services.stats.authFailure();
    answer = error instanceof ApiError ? error : err.internal();
  }
  if (action !== undefined) {
    if (client.gone) services.stats.abandoned(action);
    else services.stats.served(action);
  }
  respond(res, api, requestId, answer);
}

async function handleControl(services: Services, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const token = (header(req, 'authorization') ?? '').replace(/^Bearer /, '');
  if (!safeEqual(token, services.controlKey)) {
    send(res, 401, '{"error":"unauthorized"}');
    return;
  }
  if (path === '/__emulator/faults' && req.method === 'POST') {
    const body = await readBody(req, MAX_FORM_BODY);
    try {
      services.faults.set(checkFaultOptions(JSON.parse(body.toString('utf8'))));
    } catch (error) {
      send(res, 400, JSON.stringify({ error: error instanceof TypeError ? error.message : 'faults must be a JSON object' }));
      return;
    }
    send(res, 200, JSON.stringify({ faults: services.faults.options }));
  } else if (path === '/__emulator/stats') {
    send(res, 200, JSON.stringify(services.stats.snapshot()));
  } else {
    send(res, 404, '{"error":"not found"}');
  }
}

/**
 * What Tencent's gateway answers for a target that is no API is not documented: the API 3.0 error
 * shape, which its clients read, with an HTTP status that says it was no API call.
 */
async function route(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const target = parseTarget(req.url ?? '');
  if (target?.path.startsWith('/__emulator/')) return handleControl(services, req, res, target.path);
  if (target?.path.startsWith(METADATA_PREFIX) && req.method === 'GET') {
    services.stats.call('metadata');
    const { status, body, type } = metadataAnswer(services.temporary, services.instanceRole, target.path.slice(METADATA_PREFIX.length));
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  const preflight = services.cors !== undefined && services.cors !== false && req.method === 'OPTIONS';
  for (const [name, value] of Object.entries(corsHeaders(services.cors, header(req, 'origin'), preflight))) res.setHeader(name, value);
  if (!target) return respond(res, 'v3', randomUUID(), new ApiError('InvalidParameter', 4000, '(10000) the request target is not a path'), 400);
  const api = API_PATHS.get(target.path);
  if (api && preflight) {
    res.writeHead(204);
    res.end();
    return;
  }
  if (!api) return respond(res, 'v3', randomUUID(), new ApiError('ResourceNotFound', 4000, '(10000) no API at this path'), 404);
  return handleApi(services, req, res, api, target);
}

/** The last resort of a request whose handling threw: an internal error if nothing was sent yet. */
function failSafe(res: ServerResponse): void {
  try {
    if (!res.headersSent) respond(res, 'v3', randomUUID(), err.internal(), 500);
    else res.destroy();
  } catch {
    res.destroy();
  }
}

/**
 * A request Node's HTTP parser refused (bad method, header, framing; headers too large): a
 * Tencent-shaped answer, then the connection closes, since the parser cannot find the next request.
 */
function answerClientError(error: Error & { code?: string }, socket: Socket, busy: WeakSet<Socket>): void {
  if (!socket.writable || busy.has(socket)) {
    socket.destroy();
    return;
  }
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const apiError = status === 431 ? err.tooLarge() : new ApiError('InvalidParameter', 4000, '(10000) the request is not valid HTTP/1.1');
  const body = JSON.stringify(errorBody('v3', randomUUID(), apiError));
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Starts serving; `close()` also ends the connections still open (keep-alive, slow clients). */
export async function listen(services: Services, host: string, port: number): Promise<Listening> {
  const sockets = new Set<Socket>();
  // Sockets with an answer in progress: a parser error there must not write a second one.
  const busy = new WeakSet<Socket>();
  const server: Server = createServer((req, res) => {
    const socket = req.socket;
    busy.add(socket);
    res.on('close', () => busy.delete(socket));
    route(services, req, res).catch(() => failSafe(res));
  });
  server.on('clientError', (error: Error, socket: Socket) => answerClientError(error, socket, busy));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  // After listening, a server error (such as running out of file descriptors on accept) must not end the process.
  server.on('error', () => {});
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
