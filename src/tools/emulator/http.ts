/**
 * The HTTP layer: routes a request to API 3.0 (`/`), the legacy API (`/v2/index.php`) or the
 * control endpoint (`/__emulator/*`), reads and authenticates it, applies the injected fault, runs
 * the action and answers in the API's own shape.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type Api, ApiError, err, header, lowerKeys, type Params } from './api.ts';
import { safeEqual, type Verifier } from './auth.ts';
import type { Faults } from './faults.ts';
import { type KeyStore, type Lookup, runAction } from './kms.ts';
import type { Stats } from './stats.ts';
import type { FaultKind, FaultOptions } from './types.ts';

const MAX_BODY = 1024 * 1024;
const API_VERSION = '2019-01-18';

export interface Services {
  verifier: Verifier;
  store: KeyStore;
  faults: Faults;
  stats: Stats;
  /** The control endpoint's bearer token: the first secret key, so only whoever started the emulator can use it. */
  controlKey: string;
}

export interface Listening {
  port: number;
  close(): Promise<void>;
}

/** Reads the request body with a size cap. */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(err.tooLarge());
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function respond(res: ServerResponse, api: Api, requestId: string, result: Record<string, unknown> | ApiError): void {
  if (result instanceof ApiError) {
    const body = api === 'v3'
      ? { Response: { Error: { Code: result.v3Code, Message: result.message.replace(/^\(\d+\) /, '') }, RequestId: requestId } }
      : { code: result.v2Code, message: result.message, codeDesc: result.v3Code, requestId };
    send(res, 200, JSON.stringify(body));
    return;
  }
  const body = api === 'v3' ? { Response: { ...result, RequestId: requestId } } : { code: 0, message: '', requestId, ...lowerKeys(result) };
  send(res, 200, JSON.stringify(body));
}

interface Call {
  action: string;
  lookup: Lookup;
}

/** An API 3.0 request signed with TC3-HMAC-SHA256: JSON body (POST) or query (GET). */
function readTc3Call(services: Services, req: IncomingMessage, body: Buffer, rawQuery: string): Call {
  const action = header(req, 'x-tc-action') ?? '';
  services.verifier.tc3(req, body, req.method === 'GET' ? rawQuery : '');
  const version = header(req, 'x-tc-version');
  if (version !== undefined && version !== API_VERSION) throw err.version();
  let params: Params;
  if (req.method === 'GET') {
    params = Object.fromEntries(new URLSearchParams(rawQuery));
  } else {
    if (!(header(req, 'content-type') ?? '').toLowerCase().startsWith('application/json')) throw err.signature();
    const parsed: unknown = body.length ? JSON.parse(body.toString('utf8')) : {};
    params = Object.fromEntries(Object.entries(parsed as Record<string, unknown>).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
  }
  return { action, lookup: (name) => params[name] };
}

/** A query-signed request: legacy v2, or API 3.0 signed v1; query (GET) or form body (POST). */
function readQueryCall(services: Services, req: IncomingMessage, api: Api, path: string, body: Buffer, rawQuery: string): Call {
  const params: Params = Object.fromEntries(new URLSearchParams(req.method === 'GET' ? rawQuery : body.toString('utf8')));
  const action = params.Action ?? '';
  services.verifier.query(req, req.method ?? 'GET', path, params);
  if (api === 'v3' && params.Version !== undefined && params.Version !== API_VERSION) throw err.version();
  const lookup: Lookup = api === 'v3' ? (name) => params[name] : (name) => params[name[0]!.toLowerCase() + name.slice(1)];
  return { action, lookup };
}

/** Answers for an injected fault; false when the request goes on to its action. */
function answerFault(req: IncomingMessage, res: ServerResponse, fault: FaultKind): boolean {
  switch (fault) {
    case 'drop':
      req.socket.destroy();
      return true;
    case 'http503':
      res.writeHead(503, { 'Content-Type': 'text/plain' });
      res.end('Service Unavailable');
      return true;
    case 'malformed':
      send(res, 200, '{"Response": {"RequestId": "');
      return true;
    case 'throttle':
      throw err.throttle();
    case 'internal':
      throw err.internal();
    default:
      return false;
  }
}

async function handleApi(services: Services, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const api: Api = url.pathname === '/v2/index.php' ? 'v2' : 'v3';
  const requestId = randomUUID();
  try {
    const body = await readBody(req);
    const rawQuery = url.search.slice(1);
    const { action, lookup } = api === 'v3' && (header(req, 'authorization') ?? '').startsWith('TC3-HMAC-SHA256')
      ? readTc3Call(services, req, body, rawQuery)
      : readQueryCall(services, req, api, url.pathname, body, rawQuery);
    services.stats.call(action);
    const fault = services.faults.pick(action);
    if (fault !== 'none') services.stats.fault(fault);
    const latency = services.faults.latencyMs;
    if (latency) await new Promise((r) => setTimeout(r, latency));
    if (answerFault(req, res, fault)) return;
    respond(res, api, requestId, runAction(services.store, action, lookup, api));
  } catch (error) {
    if (error instanceof ApiError) {
      if (error.v3Code.startsWith('AuthFailure')) services.stats.authFailure();
      respond(res, api, requestId, error);
    } else if (error instanceof SyntaxError) {
      respond(res, api, requestId, err.notJson());
    } else {
      respond(res, api, requestId, err.internal());
    }
  }
}

async function handleControl(services: Services, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const token = (header(req, 'authorization') ?? '').replace(/^Bearer /, '');
  if (!safeEqual(token, services.controlKey)) {
    send(res, 401, '{"error":"unauthorized"}');
    return;
  }
  if (url.pathname === '/__emulator/faults' && req.method === 'POST') {
    const body = await readBody(req);
    try {
      services.faults.set(JSON.parse(body.toString('utf8')) as FaultOptions);
    } catch {
      send(res, 400, '{"error":"faults must be a JSON object"}');
      return;
    }
    send(res, 200, JSON.stringify({ faults: services.faults.options }));
  } else if (url.pathname === '/__emulator/stats') {
    send(res, 200, JSON.stringify(services.stats.snapshot()));
  } else {
    send(res, 404, '{"error":"not found"}');
  }
}

function route(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://emulator');
  if (url.pathname.startsWith('/__emulator/')) return handleControl(services, req, res, url);
  if (url.pathname === '/' || url.pathname === '/v2/index.php') return handleApi(services, req, res, url);
  send(res, 404, '{"error":"not found"}');
  return Promise.resolve();
}

/** Starts serving; `close()` also ends the connections still open (keep-alive, slow clients). */
export async function listen(services: Services, host: string, port: number): Promise<Listening> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    route(services, req, res).catch(() => {
      if (!res.headersSent) send(res, 500, '{"error":"internal"}');
      else res.destroy();
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
