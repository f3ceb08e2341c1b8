import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { canonicalContext } from '../../src/core/context.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { createEnvelope, DecryptionFailedError, KmsError } from '../../src/index.ts';
import { TencentKms, type TencentKmsOptions } from '../../src/kms/tencent.ts';
import { TencentKmsV2 } from '../../src/kms/tencent-v2.ts';
import { querySignature, queryStringToSign, tc3Authorization } from '../../src/kms/tencent-sign.ts';
import { useEmulator } from '../fixtures/emulator.ts';
import { InstrumentedProvider } from '../instrumented.ts';

let emulator: RunningEmulator;
let keyId: string;
const FAST = { retry: { baseDelayMs: 1, maxDelayMs: 5 }, timeoutMs: 2000, deadlineMs: 10000 };

beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ alias: 'main' }));
});
afterAll(() => emulator.close());
beforeEach(() => {
  emulator.setFaults({});
  emulator.resetStats();
});

const creds = () => emulator.credentials[0]!;
const v3 = (options: TencentKmsOptions = {}) =>
  new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: creds(), ...FAST, ...options });
const v2 = (options: ConstructorParameters<typeof TencentKmsV2>[0] = {}) =>
  new TencentKmsV2({ keyId, region: 'gz', endpoint: `${emulator.url}/v2/index.php`, credentials: creds(), ...FAST, ...options });

describe('providers seal and open through the emulator', () => {
  const providers = [
    ['API 3.0, TC3-HMAC-SHA256', () => v3()],
    ['legacy v2, POST, HmacSHA256', () => v2()],
    ['legacy v2, POST, HmacSHA1', () => v2({ signatureMethod: 'HmacSHA1' })],
    ['legacy v2, GET, HmacSHA256', () => v2({ method: 'GET' })],
    ['legacy v2, GET, HmacSHA1', () => v2({ method: 'GET', signatureMethod: 'HmacSHA1' })],
  ] as const;

  it.each(providers)('%s: both suites, stored and detached context', async (_name, make) => {
    for (const suite of ['cobblestone-256', 'cobblestone-128'] as const) {
      const envelope = createEnvelope({ kms: make(), suite });
      const context = { table: 'users', row: '42', note: 'ä 🔐' };
      for (const detachedContext of [false, true]) {
        const sealed = await envelope.seal('card 4111', { context, detachedContext });
        expect(await envelope.openString(sealed, { context })).toBe('card 4111');
      }
      const detached = await envelope.seal('x', { context, detachedContext: true });
      await expect(envelope.open(detached, { context: { ...context, row: '43' } })).rejects.toBeInstanceOf(DecryptionFailedError);
    }
    expect(emulator.stats().authFailures).toBe(0);
  });

  it('a TencentKms message names provider "tencent", a v2 one "tencent-v2"', async () => {
    const sealed = await createEnvelope({ kms: v3() }).seal('x');
    await expect(createEnvelope({ kms: v2() }).open(sealed)).rejects.toMatchObject({ code: 'ERR_KEY_PROVIDER_MISMATCH' });
  });

  it('TencentKms signs for kms.tencentcloudapi.com and service kms while the socket goes to loopback', async () => {
    const seen: string[] = [];
    const kms = v3({
      fetch: (input, init) => {
        seen.push((input instanceof Request ? input.headers : new Headers(init?.headers)).get('authorization') ?? '');
        return fetch(input, init);
      },
    });
    await createEnvelope({ kms }).seal('x');
    expect(seen[0]).toMatch(/Credential=AKID\w+\/\d{4}-\d\d-\d\d\/kms\/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=[0-9a-f]{64}$/);
  });

  it('encrypt, reEncrypt and createKey (API 3.0); encrypt and createKey (v2)', async () => {
    const kms = v3();
    const other = await kms.createKey({ alias: 'second', description: 'rewrap target' });
    const blob = await kms.encrypt(new Uint8Array([1, 2, 3]), { context: '{"a":"b"}' });
    const moved = await kms.reEncrypt({ ciphertextBlob: blob, destinationKeyId: other, sourceContext: '{"a":"b"}', destinationContext: '{"c":"d"}' });
    expect(moved.keyId).toBe(other);
    expect(moved.sourceKeyId).toBe(keyId);
    const back = await kms.call('Decrypt', { CiphertextBlob: moved.ciphertextBlob, EncryptionContext: '{"c":"d"}' });
    expect(back.Plaintext).toBe('AQID');
    const legacy = v2();
    const legacyKey = await legacy.createKey({ alias: 'legacy' });
    const legacyBlob = await legacy.encrypt(new Uint8Array([9]), { keyId: legacyKey });
    expect((await legacy.call('Decrypt', { ciphertextBlob: legacyBlob })).plaintext).toBe('CQ==');
  });
});

describe('credentials', () => {
  it('temporary credentials: the token travels as X-TC-Token, and a wrong one is refused without retry', async () => {
    const { emulator: withToken, keyId: id } = await useEmulator({ credentials: [{ secretId: 'AKIDtemp', secretKey: 'temp-key', token: 'session-token' }] });
    try {
      const make = (token: string) =>
        new TencentKms({ keyId: id, region: 'ap-guangzhou', endpoint: withToken.url, credentials: { secretId: 'AKIDtemp', secretKey: 'temp-key', token }, ...FAST });
      const envelope = createEnvelope({ kms: make('session-token') });
      expect(await envelope.openString(await envelope.seal('t'))).toBe('t');
      await expect(createEnvelope({ kms: make('stale-token') }).seal('t')).rejects.toMatchObject({ kmsCode: 'AuthFailure.TokenFailure' });
      expect(withToken.stats().calls.GenerateDataKey).toBe(1);
    } finally {
      await withToken.close();
    }
  });

  it('an async credential function is asked before every attempt (rotation)', async () => {
    let asked = 0;
    emulator.setFaults({ script: ['throttle'] });
    const kms = v3({ credentials: async () => (asked++, creds()) });
    await createEnvelope({ kms }).seal('rotate');
    expect(asked).toBe(2);
  });

  it('reads TENCENTCLOUD_* from the environment, and says what is missing', async () => {
    const saved = { ...process.env };
    try {
      process.env.TENCENTCLOUD_SECRET_ID = creds().secretId;
      process.env.TENCENTCLOUD_SECRET_KEY = creds().secretKey;
      process.env.TENCENTCLOUD_REGION = 'ap-guangzhou';
      const kms = new TencentKms({ keyId, endpoint: emulator.url, ...FAST });
      expect(await createEnvelope({ kms }).openString(await createEnvelope({ kms }).seal('env'))).toBe('env');
      delete process.env.TENCENTCLOUD_SECRET_KEY;
      await expect(createEnvelope({ kms }).seal('env')).rejects.toThrow(/TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY/);
    } finally {
      process.env = saved;
    }
  });

  it('never puts a secret key, signature or data key in an error', async () => {
    const secretKey = 'SECRET-KEY-THAT-MUST-NOT-LEAK-000';
    const kms = v3({ credentials: { secretId: creds().secretId, secretKey } });
    const error = (await createEnvelope({ kms })
      .seal('x')
      .catch((e: unknown) => e)) as KmsError;
    expect(error).toBeInstanceOf(KmsError);
    expect(error.kmsCode).toBe('AuthFailure.SignatureFailure');
    const shown = `${String(error)} ${JSON.stringify(error)} ${String(error.cause ?? '')}`;
    expect(shown).not.toContain(secretKey);
    expect(shown).not.toMatch(/Signature=[0-9a-f]{64}/);
    expect(String(kms)).not.toContain(secretKey);
  });
});

describe('endpoint rules', () => {
  it('requires HTTPS except for loopback', () => {
    expect(() => new TencentKms({ region: 'ap-guangzhou', endpoint: 'http://kms.example.com' })).toThrow(/https/);
    expect(() => new TencentKmsV2({ region: 'gz', endpoint: 'http://10.0.0.1/v2/index.php' })).toThrow(/https/);
    expect(() => new TencentKms({ region: 'ap-guangzhou', endpoint: 'http://localhost:9' })).not.toThrow();
    expect(() => new TencentKms({ region: 'ap-guangzhou', endpoint: 'https://kms.ap-guangzhou.tencentcloudapi.com' })).not.toThrow();
  });

  it('defaults the legacy endpoint to the private network, as the API page recommends', async () => {
    const urls: string[] = [];
    // A stub KMS: records the URL, consumes the body as a real server would, and refuses.
    const stub = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
      const request = new Request(input, init);
      urls.push(request.url);
      await request.text();
      return new Response('{"code":4100,"message":"(10030) authentication failed"}');
    };
    for (const options of [{ region: 'ap-beijing' }, { region: 'sh', network: 'public' as const }]) {
      const kms = new TencentKmsV2({ keyId: 'k', credentials: creds(), ...FAST, fetch: stub, ...options });
      await expect(createEnvelope({ kms }).seal('x')).rejects.toMatchObject({ kmsCode: '4100' });
    }
    expect(urls).toEqual(['https://kms-bj.api.tencentyun.com/v2/index.php', 'https://kms-sh.api.qcloud.com/v2/index.php']);
  });
});

describe('the emulator verifies every signature', () => {
  async function tc3Request(mutate: (r: { headers: Record<string, string>; body: string }) => void): Promise<unknown> {
    const body = JSON.stringify({ KeyId: keyId, KeySpec: 'AES_256' });
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'X-TC-Action': 'GenerateDataKey',
      'X-TC-Timestamp': String(timestamp),
      'X-TC-Version': '2019-01-18',
      'X-TC-Region': 'ap-guangzhou',
      Authorization: tc3Authorization(creds().secretId, creds().secretKey, {
        method: 'POST',
        host: '127.0.0.1',
        contentType: 'application/json',
        payload: body,
        timestamp,
        service: 'kms',
        extraHeaders: { 'x-tc-action': 'GenerateDataKey' },
      }),
    };
    const r = { headers, body };
    mutate(r);
    const response = await fetch(emulator.url, { method: 'POST', headers: r.headers, body: r.body });
    return ((await response.json()) as { Response: unknown }).Response;
  }

  it('accepts an untouched TC3 request', async () => {
    expect(await tc3Request(() => {})).toMatchObject({ KeyId: keyId });
  });

  it.each([
    ['a body byte', (r: { body: string }) => void (r.body = r.body.replace('AES_256', 'AES_128'))],
    ['the signed action', (r: { headers: Record<string, string> }) => void (r.headers['X-TC-Action'] = 'Decrypt')],
    ['the timestamp', (r: { headers: Record<string, string> }) => void (r.headers['X-TC-Timestamp'] = String(Number(r.headers['X-TC-Timestamp']) - 1))],
    ['the content type', (r: { headers: Record<string, string> }) => void (r.headers['Content-Type'] = 'application/json; charset=utf-8')],
    ['one signature digit', (r: { headers: Record<string, string> }) => void (r.headers.Authorization = r.headers.Authorization!.replace(/.$/, (c) => (c === '0' ? '1' : '0')))],
    ['the credential scope date', (r: { headers: Record<string, string> }) => void (r.headers.Authorization = r.headers.Authorization!.replace(/\/\d{4}-/, '/1999-'))],
  ])('rejects a TC3 request with one change in %s', async (_what, mutate) => {
    expect(await tc3Request(mutate as never)).toMatchObject({ Error: { Code: 'AuthFailure.SignatureFailure' } });
  });

  it('rejects a v2 request with one changed parameter byte, and an unknown SecretId', async () => {
    const params: Record<string, string> = {
      Action: 'GenerateDataKey',
      Region: 'gz',
      Timestamp: String(Math.floor(Date.now() / 1000)),
      Nonce: '11886',
      SecretId: creds().secretId,
      SignatureMethod: 'HmacSHA256',
      keyId,
      keySpec: 'AES_256',
    };
    const host = new URL(emulator.url).host;
    const sign = (p: Record<string, string>) => ({ ...p, Signature: querySignature(creds().secretKey, queryStringToSign('POST', host, '/v2/index.php', p), 'HmacSHA256') });
    const post = async (p: Record<string, string>) =>
      (await fetch(`${emulator.url}/v2/index.php`, { method: 'POST', body: new URLSearchParams(p) })).json() as Promise<{ code: number }>;
    expect((await post(sign(params))).code).toBe(0);
    expect((await post({ ...sign(params), keySpec: 'AES_128' })).code).toBe(4100);
    expect((await post({ ...sign(params), Nonce: '11887' })).code).toBe(4100);
    expect((await post(sign({ ...params, SecretId: 'AKIDunknown' }))).code).toBe(4100);
  });

  it('answers AuthFailure.SignatureExpire beyond 5 minutes of skew; the client re-signs once, then fails', async () => {
    const { emulator: skewed } = await useEmulator({ credentials: [creds()], now: () => Math.floor(Date.now() / 1000) + 301 });
    try {
      const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: skewed.url, credentials: creds(), ...FAST });
      await expect(createEnvelope({ kms }).seal('x')).rejects.toMatchObject({ kmsCode: 'AuthFailure.SignatureExpire' });
      expect(skewed.stats().authFailures).toBe(2);
    } finally {
      await skewed.close();
    }
  });
});

describe('KMS errors', () => {
  it('a disabled CMK gives ResourceUnavailable.CmkDisabled (v3) and 4550 (v2), without retry', async () => {
    const id = emulator.createKey('to-disable');
    const kms = v3({ keyId: id });
    const sealed = await createEnvelope({ kms }).seal('x');
    await kms.call('DisableKey', { KeyId: id });
    emulator.resetStats();
    await expect(createEnvelope({ kms }).open(sealed)).rejects.toMatchObject({ code: 'ERR_KMS', kmsCode: 'ResourceUnavailable.CmkDisabled' });
    await expect(createEnvelope({ kms: v2({ keyId: id }) }).seal('x')).rejects.toMatchObject({ kmsCode: '4550' });
    expect(emulator.stats().calls).toEqual({ Decrypt: 1, GenerateDataKey: 1 });
    await kms.call('EnableKey', { KeyId: id });
    expect(await createEnvelope({ kms }).openString(sealed)).toBe('x');
  });

  it('an unknown CMK gives ResourceUnavailable.CmkNotFound (v3) and 4530 (v2)', async () => {
    await expect(createEnvelope({ kms: v3({ keyId: 'no-such-key' }) }).seal('x')).rejects.toMatchObject({ kmsCode: 'ResourceUnavailable.CmkNotFound' });
    await expect(createEnvelope({ kms: v2({ keyId: 'no-such-key' }) }).seal('x')).rejects.toMatchObject({ kmsCode: '4530' });
  });

  it('lists keys in each API shape', async () => {
    const listed = await v3().call('ListKeys', { Limit: 100 });
    expect((listed.Keys as { KeyId: string }[]).map((k) => k.KeyId)).toContain(keyId);
    const legacy = await v2().call('ListKey', { limit: '100' });
    expect(legacy.keys as string[]).toContain(keyId);
  });
});

describe('fault matrix: retries within bounds, then typed errors, and no key left unwiped', () => {
  const LIMIT = 3;
  const kmsWith = (options: TencentKmsOptions = {}) => new InstrumentedProvider(v3({ retry: { limit: LIMIT, baseDelayMs: 1, maxDelayMs: 4 }, ...options }));

  it.each(['throttle', 'internal', 'http503', 'drop'] as const)('%s: retried, then succeeds', async (fault) => {
    const kms = kmsWith();
    const envelope = createEnvelope({ kms });
    emulator.setFaults({ script: [fault, fault] });
    const sealed = await envelope.seal('retry me');
    emulator.setFaults({ script: [fault] });
    expect(await envelope.openString(sealed)).toBe('retry me');
    expect(emulator.stats().calls).toEqual({ GenerateDataKey: 3, Decrypt: 2 });
    expect(kms.allWiped()).toBe(true);
  });

  it.each([
    ['throttle', 'RequestLimitExceeded'],
    ['internal', 'InternalError'],
    ['http503', 'HTTP503'],
    ['drop', undefined],
  ] as const)('%s on every attempt: %s after exactly 1 + limit attempts', async (fault, kmsCode) => {
    const kms = kmsWith();
    const envelope = createEnvelope({ kms });
    const sealed = await envelope.seal('x');
    emulator.resetStats();
    emulator.setFaults({ script: new Array(10).fill(fault) });
    const error = await envelope.open(sealed).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KmsError);
    expect((error as KmsError).kmsCode).toBe(kmsCode);
    expect(emulator.stats().calls.Decrypt).toBe(1 + LIMIT);
    expect(kms.allWiped()).toBe(true);
  });

  it('a malformed body is a typed error at once, not retried', async () => {
    emulator.setFaults({ script: ['malformed'] });
    await expect(createEnvelope({ kms: kmsWith() }).seal('x')).rejects.toThrow(/not JSON/);
    expect(emulator.stats().calls.GenerateDataKey).toBe(1);
  });

  it('timeouts: each attempt is cut at timeoutMs and retried; the deadline bounds the whole call', async () => {
    // Attempts of 300 ms against answers that take longer than the whole deadline: room for a
    // loaded machine to reach the emulator within each attempt, and no answer in time, not even an
    // earlier attempt's late one (a retry of the same call may be handed that; it is the same answer).
    emulator.setFaults({ latencyMs: 4000 });
    const started = Date.now();
    const error = await createEnvelope({ kms: kmsWith({ timeoutMs: 300, deadlineMs: 1500 }) })
      .seal('x')
      .catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(KmsError);
    expect(String((error as Error).message)).toMatch(/timed out|deadline/);
    expect(elapsed).toBeLessThan(4000); // the deadline, well before any answer
    expect(emulator.stats().calls.GenerateDataKey).toBeGreaterThanOrEqual(2);
  });

  it('every attempt is cut at timeoutMs, even after dozens of abandoned ones (the abort alone once let one wait 20 s)', async () => {
    // Seen once: after ~12 seals of 4 timed-out attempts each against a slow endpoint, an abort no
    // longer ended the fetch and a 150 ms attempt waited for the 20 s answer. The attempt now races
    // its own timer; here no answer ever comes in time, so every seal must fail near its deadline.
    emulator.setFaults({ latencyMs: 5000 });
    const slow: number[] = [];
    for (let i = 0; i < 16; i++) {
      const started = Date.now();
      const error = await createEnvelope({ kms: kmsWith({ timeoutMs: 150, deadlineMs: 600 }) })
        .seal('x')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KmsError);
      if (Date.now() - started > 2000) slow.push(Date.now() - started);
    }
    expect(slow).toEqual([]);
  }, 60_000);

  it('a QPS limit answers with the real throttling code; the client backs off and gets through', async () => {
    emulator.setFaults({ qpsLimit: 5 });
    const kms = v3({ retry: { limit: 12, baseDelayMs: 100, maxDelayMs: 1000 }, deadlineMs: 20000 });
    const envelope = createEnvelope({ kms });
    const sealed = await Promise.all(Array.from({ length: 10 }, (_, i) => envelope.seal(`row ${i}`)));
    expect(sealed.length).toBe(10);
    expect(emulator.stats().faults.throttle).toBeGreaterThan(0);
  });

  it('the control endpoint sets faults and reports stats, for the first secret key only', async () => {
    const control = (path: string, init: RequestInit = {}, key = creds().secretKey) =>
      fetch(`${emulator.url}/__emulator/${path}`, { ...init, headers: { Authorization: `Bearer ${key}` } });
    expect((await control('stats', {}, 'wrong')).status).toBe(401);
    expect((await control('faults', { method: 'POST', body: JSON.stringify({ script: ['internal'] }) })).status).toBe(200);
    await expect(createEnvelope({ kms: v3({ retry: { limit: 0 } }) }).seal('x')).rejects.toMatchObject({ kmsCode: 'InternalError' });
    const stats = (await (await control('stats')).json()) as { faults: Record<string, number> };
    expect(stats.faults.internal).toBe(1);
  });
});

describe('bad responses are typed errors, with the key wiped', () => {
  let server: Server;
  let url: string;
  let answer: (body: string) => { status: number; body: string; headers?: Record<string, string> } = () => ({ status: 200, body: '{}' });

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const a = answer(body);
        res.writeHead(a.status, { 'Content-Type': 'application/json', ...a.headers });
        res.end(a.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const stubKms = () => new TencentKms({ keyId: 'k', region: 'ap-guangzhou', endpoint: url, credentials: creds(), ...FAST, retry: { limit: 1, baseDelayMs: 1 } });
  const ok = (fields: Record<string, unknown>) => ({ status: 200, body: JSON.stringify({ Response: { ...fields, RequestId: 'r-1' } }) });
  const b64 = (n: number) => Buffer.alloc(n, 7).toString('base64');

  it.each([
    ['a 16-byte key for AES_256', ok({ KeyId: 'k', Plaintext: b64(16), CiphertextBlob: 'blob' }), /16-byte data key where 32/],
    ['a key that is not base64', ok({ KeyId: 'k', Plaintext: 'not base64!', CiphertextBlob: 'blob' }), /not base64/],
    ['no CiphertextBlob', ok({ KeyId: 'k', Plaintext: b64(32) }), /no CiphertextBlob/],
    ['no Response object', { status: 200, body: '{"Error":"x"}' }, /no Response object/],
    ['a body that is not JSON', { status: 200, body: '<html>' }, /not JSON/],
    ['a redirect', { status: 302, body: '', headers: { Location: 'https://elsewhere.example/' } }, /redirect/],
    ['a 64 KiB+ body', { status: 200, body: JSON.stringify({ Response: { Pad: 'x'.repeat(70000) } }) }, /exceeds 65536 bytes/],
    ['HTTP 403', { status: 403, body: 'Forbidden' }, /HTTP 403/],
  ])('%s', async (_what, response, message) => {
    answer = () => response;
    const kms = new InstrumentedProvider(stubKms());
    await expect(createEnvelope({ kms }).seal('x')).rejects.toThrow(message);
    expect(kms.handedOut.length).toBe(0);
  });

  it('a Decrypt that answers InvalidCiphertext is the opaque decryption failure', async () => {
    answer = () => ({ status: 200, body: JSON.stringify({ Response: { Error: { Code: 'InvalidParameterValue.InvalidCiphertext', Message: 'm' }, RequestId: 'r' } }) });
    const request = { keySpec: 'AES_256' as const, keyId: 'k', ciphertextBlob: 'b', context: canonicalContext({}) };
    await expect(stubKms().decryptDataKey(request)).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('a good key after a bad open is wiped: seal succeeds, open fails on the payload', async () => {
    answer = (body) =>
      body.includes('KeySpec')
        ? ok({ KeyId: 'k', Plaintext: b64(32), CiphertextBlob: 'blob' })
        : ok({ KeyId: 'k', Plaintext: b64(32) });
    const kms = new InstrumentedProvider(stubKms());
    const envelope = createEnvelope({ kms });
    const sealed = await envelope.seal('wipe');
    sealed[sealed.length - 1]! ^= 1;
    await expect(envelope.open(sealed)).rejects.toBeInstanceOf(DecryptionFailedError);
    expect(kms.handedOut.length).toBe(2);
    expect(kms.allWiped()).toBe(true);
  });
});
