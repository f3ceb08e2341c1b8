/**
 * The emulator's HTTP layer under bad requests: odd methods, request targets, headers and bodies,
 * oversized and slow ones. None may end the process, and each gets an answer in the shape of the
 * API it was sent to (API 3.0 `Response.Error`, legacy `code`/`message`), bounded in count and
 * time, all on 127.0.0.1.
 */
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningEmulator, startEmulator } from '../../../src/tools/emulator/index.ts';
import { useEmulator } from '../../fixtures/emulator.ts';
import { errorCode, head, rawRequest, type RawResponse, tc3Headers } from './wire.ts';

let emulator: RunningEmulator;
let keyId: string;
beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ alias: 'http' }));
});
afterAll(() => emulator.close());

const creds = () => emulator.credentials[0]!;

/** A Tencent-shaped error answer: API 3.0 with a code and request id, or legacy with a non-zero code. */
function expectTencentError(response: RawResponse | undefined, api: 'v3' | 'v2' = 'v3'): string | number {
  expect(response).toBeDefined();
  expect(response!.headers['content-type']).toMatch(/^application\/json/);
  const body = JSON.parse(response!.body) as { Response?: { Error?: { Code?: unknown; Message?: unknown }; RequestId?: unknown }; code?: unknown; message?: unknown };
  if (api === 'v3') {
    expect(body.Response?.Error?.Code).toEqual(expect.any(String));
    expect(body.Response?.Error?.Message).toEqual(expect.any(String));
    expect(body.Response?.RequestId).toEqual(expect.any(String));
    return body.Response!.Error!.Code as string;
  }
  expect(body.code).toEqual(expect.any(Number));
  expect(body.code).not.toBe(0);
  expect(body.message).toEqual(expect.any(String));
  return body.code as number;
}

/** A good signed request still gets its data key: the emulator is up and serving. */
async function expectServing(): Promise<void> {
  const body = JSON.stringify({ KeyId: keyId, KeySpec: 'AES_256' });
  const response = await fetch(emulator.url, { method: 'POST', headers: tc3Headers({ action: 'GenerateDataKey', body, credentials: creds() }), body });
  expect(((await response.json()) as { Response: { KeyId?: string } }).Response.KeyId).toBe(keyId);
}

describe('request targets', () => {
  it.each(['//', '//:99999/', 'http://[/', '//x/../', '*', 'http://kms.tencentcloudapi.com:99999/', '/%', 'http://a/b', '/nope', '/v2/index.php/x'])(
    'a target %j gets a Tencent-shaped error, not the end of the process',
    async (target) => {
      const response = await rawRequest(emulator.port, head('GET', target));
      expect(response!.status).toBeGreaterThanOrEqual(400);
      expectTencentError(response);
      await expectServing();
    },
  );

  it.each([`http://127.0.0.1/?Action=ListKeys`, '/?%zz=%&Action=%'])('a served path with an unsigned query (%j) is an API error with HTTP 200', async (target) => {
    const response = await rawRequest(emulator.port, head('GET', target));
    expect(response!.status).toBe(200);
    expect(expectTencentError(response)).toBe('AuthFailure.SecretIdNotFound');
  });

  it('random targets, methods and bodies: every one answered in a Tencent shape', async () => {
    const targetChar = fc.constantFrom(...'/?#%[]:@!$&\'()*+,;=-._~aZ09'.split(''));
    const target = fc.oneof(
      fc.string({ unit: targetChar, minLength: 1, maxLength: 40 }),
      fc.string({ unit: targetChar, maxLength: 40 }).map((s) => `/${s}`),
      fc.string({ unit: targetChar, maxLength: 40 }).map((s) => `http://${s}`),
      fc.constantFrom('/', '/v2/index.php').chain((p) => fc.string({ unit: targetChar, maxLength: 40 }).map((q) => `${p}?${q}`)),
    );
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND');
    await fc.assert(
      fc.asyncProperty(method, target, fc.uint8Array({ maxLength: 512 }), async (m, t, bytes) => {
        const response = await rawRequest(emulator.port, head(m, t, { 'Content-Length': bytes.length, 'Content-Type': 'application/json' }), Buffer.from(bytes));
        expect(response).toBeDefined();
        expectTencentError(response, t.split('?')[0] === '/v2/index.php' ? 'v2' : 'v3');
      }),
      { numRuns: 150 },
    );
    await expectServing();
  });
});

describe('methods', () => {
  it.each(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE'])('%s on API 3.0 is UnsupportedProtocol; on the legacy API, 4000', async (method) => {
    expect(expectTencentError(await rawRequest(emulator.port, head(method, '/', { 'Content-Length': 0 })))).toBe('UnsupportedProtocol');
    expect(expectTencentError(await rawRequest(emulator.port, head(method, '/v2/index.php', { 'Content-Length': 0 })), 'v2')).toBe(4000);
  });

  it('HEAD gets a status and no body, and the connection goes on', async () => {
    const response = await rawRequest(emulator.port, head('HEAD', '/'), '', { headOnly: true });
    expect(response!.status).toBe(200);
    expect(response!.body).toBe('');
  });

  it('a request the HTTP parser refuses gets a Tencent-shaped 400', async () => {
    for (const bad of ['FOO / HTTP/1.1\r\nHost: x\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 'GET /\u0001 HTTP/1.1\r\nHost: x\r\n\r\n', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n']) {
      const response = await rawRequest(emulator.port, bad);
      expect(response!.status).toBe(400);
      expectTencentError(response);
    }
    const huge = await rawRequest(emulator.port, head('GET', '/', { 'X-Big': 'x'.repeat(20_000) }));
    expect(huge!.status).toBe(431);
    expectTencentError(huge);
    await expectServing();
  });
});

describe('headers', () => {
  it.each([
    ['a malformed TC3 Authorization', { Authorization: 'TC3-HMAC-SHA256 nonsense' }, 'AuthFailure.InvalidAuthorization'],
    ['a TC3 Authorization with no fields', { Authorization: 'TC3-HMAC-SHA256' }, 'AuthFailure.InvalidAuthorization'],
  ])('%s', async (_what, headers, code) => {
    const response = await rawRequest(emulator.port, head('POST', '/', { 'Content-Type': 'application/json', 'Content-Length': 2, ...headers }), '{}');
    expect(expectTencentError(response)).toBe(code);
  });

  it('random extra headers on a POST: answered in a Tencent shape', async () => {
    const name = fc.string({ unit: fc.constantFrom(...'abcxyzXYZ-_0123456789!#$%&\'*+.^`|~'.split('')), minLength: 1, maxLength: 20 });
    const value = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 60 });
    await fc.assert(
      fc.asyncProperty(fc.dictionary(name, value, { maxKeys: 6 }), async (extra) => {
        const headers = Object.fromEntries(Object.entries(extra).filter(([k]) => !/^(content-length|transfer-encoding|host|connection|expect|upgrade)$/i.test(k)));
        const response = await rawRequest(emulator.port, head('POST', '/', { ...headers, 'Content-Length': 2 }), '{}');
        expectTencentError(response);
      }),
      { numRuns: 100 },
    );
  });
});

describe('bodies', () => {
  it.each([
    ['null', 'null'],
    ['an array', '[]'],
    ['a string', '"GenerateDataKey"'],
    ['a number', '1'],
    ['broken JSON', '{"KeyId": '],
    ['deep nesting', `{"KeyId": ${'['.repeat(20_000)}${']'.repeat(20_000)}}`],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
  ])('a signed TC3 body that is %s: InvalidParameter', async (_what, text) => {
    const body = Buffer.from(text);
    const headers = tc3Headers({ action: 'GenerateDataKey', body, credentials: creds() });
    const response = await rawRequest(emulator.port, head('POST', '/', { ...headers, 'Content-Length': body.length }), body);
    expect(response!.status).toBe(200);
    expect(expectTencentError(response)).toMatch(/^InvalidParameter/);
  });

  it('a declared body over the limit is refused before it is sent: RequestSizeLimitExceeded (v3), 4100 (legacy)', async () => {
    const v3 = await rawRequest(emulator.port, head('POST', '/', { 'Content-Type': 'application/json', 'Content-Length': 20_000_000 }));
    expect(expectTencentError(v3)).toBe('RequestSizeLimitExceeded');
    const v2 = await rawRequest(emulator.port, head('POST', '/v2/index.php', { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': 2_000_000 }));
    expect(expectTencentError(v2, 'v2')).toBe(4100);
  });

  it('a chunked body that grows over the limit is answered, not cut off', async () => {
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const chunks = Array.from({ length: 20 }, () => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    const body = Buffer.concat([...chunks, Buffer.from('0\r\n\r\n')]);
    const response = await rawRequest(emulator.port, head('POST', '/v2/index.php', { 'Transfer-Encoding': 'chunked' }), body);
    expect(expectTencentError(response, 'v2')).toBe(4100);
    await expectServing();
  });
});

describe('slow clients', () => {
  it('clients that stop mid-body, then some hang up: others are served, and close() does not wait for them', async () => {
    const slowEmulator = await startEmulator({ credentials: [creds()] });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const socket = connect(slowEmulator.port, '127.0.0.1');
        socket.on('error', () => {});
        socket.write(head('POST', i % 2 ? '/' : '/v2/index.php', { 'Content-Type': 'application/json', 'Content-Length': 1000 }));
        socket.write('{"KeyId": "');
        sockets.push(socket);
      }
      await new Promise((r) => setTimeout(r, 50));
      const id = slowEmulator.createKey('slow');
      const body = JSON.stringify({ KeyId: id, KeySpec: 'AES_128' });
      const answer = await fetch(slowEmulator.url, { method: 'POST', headers: tc3Headers({ action: 'GenerateDataKey', body, credentials: creds() }), body });
      expect(errorCode(await answer.text())).toBeUndefined();
      for (const socket of sockets.slice(0, 4)) socket.destroy();
      await new Promise((r) => setTimeout(r, 50));
      expect(slowEmulator.stats().authFailures).toBe(0);
    } finally {
      const started = Date.now();
      await slowEmulator.close();
      expect(Date.now() - started).toBeLessThan(10_000); // waiting for the slow clients would take Node's 300 s request timeout
      for (const socket of sockets) socket.destroy();
    }
  });
});

describe('the control endpoint', () => {
  it('refuses faults that are not fault options with 400', async () => {
    const post = (body: string) =>
      fetch(`${emulator.url}/__emulator/faults`, { method: 'POST', headers: { Authorization: `Bearer ${creds().secretKey}` }, body });
    expect((await post('{"latencyMs": 1}')).status).toBe(200);
    for (const bad of ['null', '[]', '"x"', '{"script": "abc"}', '{"script": ["__proto__"]}', '{"latencyMs": "slow"}', '{"qpsLimit": -1}', '{"dropRate": 2}', '{']) {
      expect((await post(bad)).status, bad).toBe(400);
    }
    expect(await (await post('{}')).json()).toEqual({ faults: { script: [] } });
  });
});
