/**
 * The Tencent transport and providers at their edges (src/kms/tencent-transport.ts,
 * tencent-provider.ts): deadlines that include every wait, the message a hung KMS fails with,
 * a typed `kind` on every KmsError, and the KMS's context limit checked before any network call.
 * Everything runs against the in-process emulator or a stub server on 127.0.0.1.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { canonicalContext } from '../../src/core/context.ts';
import { type RunningEmulator, startEmulator } from '../../src/tools/emulator/index.ts';
import { createEnvelope, KmsError } from '../../src/index.ts';
import { TencentKms, type TencentKmsOptions } from '../../src/kms/tencent.ts';
import { TencentKmsV2, type TencentKmsV2Options } from '../../src/kms/tencent-v2.ts';
import { InstrumentedProvider } from '../instrumented.ts';

let emulator: RunningEmulator;
let keyId: string;
const FAST = { retry: { limit: 1, baseDelayMs: 1, maxDelayMs: 5 }, timeoutMs: 2000, deadlineMs: 10000 };

beforeAll(async () => {
  emulator = await startEmulator();
  keyId = emulator.createKey('transport');
});
afterAll(() => emulator.close());
beforeEach(() => {
  emulator.setFaults({});
  emulator.resetStats();
});

const creds = () => emulator.credentials[0]!;
const v3 = (options: TencentKmsOptions = {}) =>
  new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: creds(), ...FAST, ...options });
const v2 = (options: TencentKmsV2Options = {}) =>
  new TencentKmsV2({ keyId, region: 'gz', endpoint: `${emulator.url}/v2/index.php`, credentials: creds(), ...FAST, ...options });
const generate = (kms: TencentKms | TencentKmsV2, context: Record<string, string> = {}) =>
  kms.generateDataKey({ keySpec: 'AES_256', context: canonicalContext(context) });
const failure = async (promise: Promise<unknown>): Promise<KmsError> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KmsError);
  return error as KmsError;
};

describe('deadlines', () => {
  it('a hung KMS fails at the deadline with "deadline N ms exceeded after K attempts (each timed out at M ms)"', async () => {
    emulator.setFaults({ latencyMs: 10_000 }); // far past the deadline: no answer ever comes in time
    let requests = 0;
    const kms = v3({ timeoutMs: 100, deadlineMs: 400, retry: { limit: 50, baseDelayMs: 1, maxDelayMs: 5 }, fetch: (input, init) => (requests++, fetch(input, init)) });
    const error = await failure(generate(kms));
    expect(error.kind).toBe('timeout');
    const match = /^GenerateDataKey: deadline 400 ms exceeded after (\d+) attempts? \(each timed out at 100 ms\)$/.exec(error.message);
    expect(match, error.message).not.toBeNull();
    expect(Number(match![1])).toBeGreaterThanOrEqual(1);
    expect(Number(match![1])).toBe(requests);
  });

  it('the deadline includes the wait in the client rate limiter: no call waits past it for a token', { timeout: 3000 }, async () => {
    // One token, then one every 10 s: the second call would wait 10 s for the limiter alone.
    let requests = 0;
    const kms = v3({ deadlineMs: 300, rateLimit: { qps: 0.1, burst: 1 }, fetch: (input, init) => (requests++, fetch(input, init)) });
    await generate(kms);
    const started = Date.now();
    const error = await failure(generate(kms));
    expect(Date.now() - started).toBeLessThan(5000); // at the 300 ms deadline, nowhere near the 10 s wait
    expect(error.kind).toBe('throttled');
    expect(error.message).toMatch(/^GenerateDataKey: deadline 300 ms exceeded after 0 attempts \(waiting for the client-side rate limit\)$/);
    expect(requests).toBe(1);
  });
});

describe('every KmsError has a kind', () => {
  it('timeout, after the retries, when each attempt timed out', async () => {
    emulator.setFaults({ latencyMs: 10_000 });
    const error = await failure(generate(v3({ timeoutMs: 100, deadlineMs: 10_000, retry: { limit: 1, baseDelayMs: 1 } })));
    expect(error.kind).toBe('timeout');
    expect(error.message).toBe('GenerateDataKey: no answer after 2 attempts (each timed out at 100 ms)');
  });

  it.each([
    ['throttled', 'throttle', 'RequestLimitExceeded', '4420'],
    ['service', 'internal', 'InternalError', '6000'],
    ['service', 'http503', 'HTTP503', 'HTTP503'],
    ['unreachable', 'drop', undefined, undefined],
    ['bad-response', 'malformed', undefined, undefined],
  ] as const)('%s: the fault %s on every attempt', async (kind, fault, v3Code, v2Code) => {
    for (const [kms, code] of [
      [v3(), v3Code],
      [v2(), v2Code],
    ] as const) {
      emulator.setFaults({ script: new Array(4).fill(fault) });
      const error = await failure(generate(kms));
      expect(error.kind).toBe(kind);
      expect(error.kmsCode).toBe(code);
    }
  });

  it('auth: a wrong secret key, and no credentials at all', async () => {
    const wrong = { secretId: creds().secretId, secretKey: 'not-the-key' };
    expect((await failure(generate(v3({ credentials: wrong })))).kind).toBe('auth');
    expect((await failure(generate(v2({ credentials: wrong })))).kind).toBe('auth');
    const none = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: () => ({ secretId: '', secretKey: '' }) });
    expect((await failure(generate(none))).kind).toBe('auth');
  });

  it('service: a disabled or unknown CMK', async () => {
    const id = emulator.createKey('kinds-disabled');
    await v3().call('DisableKey', { KeyId: id });
    expect((await failure(generate(v3({ keyId: id })))).kind).toBe('service');
    expect((await failure(generate(v2({ keyId: 'no-such-key' })))).kind).toBe('service');
  });

  it('bad-request: a parameter the KMS refuses', async () => {
    const error = await failure(v3().call('GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_512' }));
    expect(error).toMatchObject({ kind: 'bad-request', kmsCode: 'InvalidParameterValue' });
  });

  it('throttled: HTTP 429 is retried, then fails with its kind', async () => {
    let answers = 0;
    const stub: typeof fetch = async (input, init) => {
      await new Request(input, init).text();
      answers++;
      return new Response('slow down', { status: 429 });
    };
    const error = await failure(generate(v3({ fetch: stub, retry: { limit: 2, baseDelayMs: 1 } })));
    expect(error).toMatchObject({ kind: 'throttled', kmsCode: 'HTTP429' });
    expect(answers).toBe(3);
  });

  it('unreachable: nothing listens at the endpoint', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: `http://127.0.0.1:${port}`, credentials: creds(), ...FAST });
    expect((await failure(generate(kms))).kind).toBe('unreachable');
  });
});

describe('oversized or malformed KMS fields are ERR_KMS of kind bad-response, with the key wiped', () => {
  let server: Server;
  let url: string;
  let answer: () => { status: number; body: string; headers?: Record<string, string> } = () => ({ status: 200, body: '{}' });

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const a = answer();
        res.writeHead(a.status, { 'Content-Type': 'application/json', ...a.headers });
        res.end(a.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const ok = (fields: Record<string, unknown>) => ({ status: 200, body: JSON.stringify({ Response: { ...fields, RequestId: 'r-1' } }) });
  const key = Buffer.alloc(32, 7).toString('base64');

  it.each([
    ['a 16-byte key for AES_256', ok({ KeyId: 'k', Plaintext: Buffer.alloc(16).toString('base64'), CiphertextBlob: 'blob' })],
    ['a key that is not base64', ok({ KeyId: 'k', Plaintext: 'not base64!', CiphertextBlob: 'blob' })],
    ['a key that is not a string', ok({ KeyId: 'k', Plaintext: 42, CiphertextBlob: 'blob' })],
    ['no CiphertextBlob', ok({ KeyId: 'k', Plaintext: key })],
    ['an empty CiphertextBlob', ok({ KeyId: 'k', Plaintext: key, CiphertextBlob: '' })],
    ['a CiphertextBlob over 8192 bytes', ok({ KeyId: 'k', Plaintext: key, CiphertextBlob: 'b'.repeat(9000) })],
    ['a CiphertextBlob that is not well-formed Unicode', ok({ KeyId: 'k', Plaintext: key, CiphertextBlob: 'blob\ud800' })],
    ['a KeyId over 1024 bytes', ok({ KeyId: 'k'.repeat(1025), Plaintext: key, CiphertextBlob: 'blob' })],
    ['an empty KeyId', ok({ KeyId: '', Plaintext: key, CiphertextBlob: 'blob' })],
    ['a KeyId that is not well-formed Unicode', ok({ KeyId: '\udc00k', Plaintext: key, CiphertextBlob: 'blob' })],
    ['no Response object', { status: 200, body: '{"Error":"x"}' }],
    ['a body that is not JSON', { status: 200, body: '<html>' }],
    ['a redirect', { status: 302, body: '', headers: { Location: 'https://elsewhere.example/' } }],
    ['a 64 KiB+ body', { status: 200, body: JSON.stringify({ Response: { Pad: 'x'.repeat(70000) } }) }],
  ])('%s', async (_what, response) => {
    answer = () => response;
    const kms = new InstrumentedProvider(new TencentKms({ keyId: 'k', region: 'ap-guangzhou', endpoint: url, credentials: creds(), ...FAST }));
    const error = await failure(createEnvelope({ kms }).seal('x'));
    expect(error.code).toBe('ERR_KMS');
    expect(error.kind).toBe('bad-response');
    expect(kms.handedOut.every((k) => k.every((b) => b === 0))).toBe(true);
  });
});

describe('KMS context limits', () => {
  /** A context whose canonical JSON is exactly `bytes` UTF-8 bytes long, with `unit` repeated in its value. */
  const contextOf = (bytes: number, unit = 'v'): Record<string, string> => {
    const unitBytes = Buffer.byteLength(JSON.stringify(unit)) - 2;
    const fill = bytes - Buffer.byteLength('{"k":""}');
    expect(fill % unitBytes).toBe(0);
    return { k: unit.repeat(fill / unitBytes) };
  };

  it.each([
    ['TencentKms', (options: { fetch: typeof fetch }) => v3(options)],
    ['TencentKmsV2', (options: { fetch: typeof fetch }) => v2(options)],
  ])('%s refuses more than 1024 UTF-8 bytes of canonical JSON before any network call (ERR_KMS, kind bad-request)', async (_name, make) => {
    let requests = 0;
    const kms = make({ fetch: (input, init) => (requests++, fetch(input, init)) });
    // 1024 bytes is the most the KMS takes: through.
    await generate(kms, contextOf(1024));
    expect(requests).toBe(1);
    // 1025 bytes, 1026 bytes of 2-byte characters (513 characters: under Tencent's 1024 characters,
    // over our 1024 bytes), and escapes (each U+0001 is 6 bytes of JSON): refused, nothing sent.
    for (const context of [contextOf(1025), contextOf(1026, 'é'), contextOf(1028, '\u0001')]) {
      const sealing = await failure(generate(kms, context));
      expect(sealing).toMatchObject({ code: 'ERR_KMS', kind: 'bad-request' });
      expect(sealing.message).toMatch(/encryption context is \d+ bytes as JSON; the KMS takes at most 1024/);
      const opening = await failure(kms.decryptDataKey({ keySpec: 'AES_256', keyId, ciphertextBlob: 'blob', context: canonicalContext(context) }));
      expect(opening).toMatchObject({ code: 'ERR_KMS', kind: 'bad-request' });
    }
    expect(requests).toBe(1);
  });
});

describe('the context on the wire (FORMAT.md §3)', () => {
  it('an empty context is sent to the KMS as {} and never omitted, by GenerateDataKey and Decrypt of both providers', async () => {
    const sent: { action: string; context: string | null }[] = [];
    const spy: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      const body = await request.clone().text();
      if (request.headers.get('content-type')?.includes('json')) {
        const json = JSON.parse(body) as Record<string, unknown>;
        sent.push({ action: request.headers.get('x-tc-action') ?? '', context: typeof json.EncryptionContext === 'string' ? json.EncryptionContext : null });
      } else {
        // The legacy API: a form body, or (GET) the query string.
        const form = request.method === 'GET' ? new URL(request.url).searchParams : new URLSearchParams(body);
        sent.push({ action: form.get('Action') ?? '', context: form.get('encryptionContext') });
      }
      return fetch(request);
    };
    for (const kms of [v3({ fetch: spy }), v2({ fetch: spy }), v2({ fetch: spy, method: 'GET' })]) {
      const envelope = createEnvelope({ kms });
      expect(await envelope.openString(await envelope.seal('empty'))).toBe('empty');
      expect(await envelope.openString(await envelope.seal('empty', { context: {}, detachedContext: true }), { context: new Map() })).toBe('empty');
    }
    expect(sent.length).toBe(12); // 3 providers x 2 messages x (GenerateDataKey, Decrypt)
    for (const call of sent) expect(call.context, call.action).toBe('{}');
  });
});
