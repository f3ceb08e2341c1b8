/**
 * Who may call: the session token on every signing path, the TC3 credential scope's service, and
 * action names that are not actions (the names an object inherits).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmulatorCredentials, RunningEmulator } from '../../../src/tools/emulator/index.ts';
import { createEnvelope } from '../../../src/index.ts';
import { TencentKmsV2 } from '../../../src/kms/tencent-v2.ts';
import { useEmulator } from '../../fixtures/emulator.ts';
import { loopbackServices } from '../../../src/tools/emulator/auth.ts';
import { signedParams, tc3Headers } from './wire.ts';

const TEMPORARY: EmulatorCredentials = { secretId: 'AKIDtemporary', secretKey: 'temporary-secret-key', token: 'session-token' };

let emulator: RunningEmulator;
let keyId: string;
beforeAll(async () => {
  ({ emulator, keyId } = await useEmulator({ credentials: [TEMPORARY], alias: 'auth' }));
});
afterAll(() => emulator.close());

interface Answer {
  v3?: { Error?: { Code: string }; KeyId?: string };
  v2?: { code: number; codeDesc?: string };
}

/** A query-signed request (legacy v2 or API 3.0 v1) by GET or form POST. */
async function querySigned(api: 'v2' | 'v3', method: 'GET' | 'POST', params: Record<string, string>, credentials = TEMPORARY): Promise<Answer> {
  const path = api === 'v2' ? '/v2/index.php' : '/';
  const host = new URL(emulator.url).host;
  const signed = signedParams(credentials, { ...params, ...(api === 'v3' ? { Version: '2019-01-18' } : {}) }, { method, host, path });
  const query = new URLSearchParams(signed).toString();
  const response = method === 'GET' ? await fetch(`${emulator.url}${path}?${query}`) : await fetch(`${emulator.url}${path}`, { method: 'POST', body: new URLSearchParams(signed) });
  const body = (await response.json()) as { Response?: Answer['v3'] } & Answer['v2'];
  return api === 'v3' ? { v3: body.Response! } : { v2: body as Answer['v2'] };
}

async function tc3(action: string, payload: object, options: { token?: string; service?: string } = {}): Promise<NonNullable<Answer['v3']>> {
  const body = JSON.stringify(payload);
  const response = await fetch(emulator.url, { method: 'POST', headers: tc3Headers({ action, body, credentials: TEMPORARY, ...options }), body });
  return ((await response.json()) as { Response: NonNullable<Answer['v3']> }).Response;
}

describe('the session token', () => {
  const v2Params = (token?: string) => ({ Action: 'GenerateDataKey', keyId, keySpec: 'AES_256', ...(token !== undefined ? { Token: token } : {}) });
  const v3Params = (token?: string) => ({ Action: 'GenerateDataKey', KeyId: keyId, KeySpec: 'AES_256', ...(token !== undefined ? { Token: token } : {}) });

  it.each(['GET', 'POST'] as const)('legacy v2 over %s: the Token parameter is required and must match', async (method) => {
    expect((await querySigned('v2', method, v2Params('session-token'))).v2).toMatchObject({ code: 0 });
    for (const token of [undefined, 'stale-token', '']) {
      expect((await querySigned('v2', method, v2Params(token))).v2).toMatchObject({ code: 4100, codeDesc: 'AuthFailure.TokenFailure' });
    }
  });

  it.each(['GET', 'POST'] as const)('API 3.0 signed v1 over %s: the Token parameter is required and must match', async (method) => {
    expect((await querySigned('v3', method, v3Params('session-token'))).v3).toMatchObject({ KeyId: keyId });
    for (const token of [undefined, 'stale-token', '']) {
      expect((await querySigned('v3', method, v3Params(token))).v3).toMatchObject({ Error: { Code: 'AuthFailure.TokenFailure' } });
    }
  });

  it('API 3.0 with TC3: the X-TC-Token header is required and must match', async () => {
    expect(await tc3('GenerateDataKey', { KeyId: keyId }, { token: 'session-token' })).toMatchObject({ KeyId: keyId });
    for (const token of [undefined, 'stale-token', '']) {
      expect(await tc3('GenerateDataKey', { KeyId: keyId }, token === undefined ? {} : { token })).toMatchObject({ Error: { Code: 'AuthFailure.TokenFailure' } });
    }
  });

  it('TencentKmsV2 with temporary credentials: the right token seals and opens, a wrong one is refused', async () => {
    const make = (token: string) =>
      new TencentKmsV2({ keyId, region: 'gz', endpoint: `${emulator.url}/v2/index.php`, credentials: { ...TEMPORARY, token }, retry: { limit: 0 } });
    const envelope = createEnvelope({ kms: make('session-token') });
    expect(await envelope.openString(await envelope.seal('legacy token'))).toBe('legacy token');
    await expect(createEnvelope({ kms: make('stale-token') }).seal('x')).rejects.toMatchObject({ kmsCode: '4100' });
  });
});

describe('the TC3 credential scope', () => {
  it.each(['cvm', 'sts', '128', 'KMS', 'kms.tencentcloudapi.com', ''])('a scope for service %j is refused even when signed with the right key', async (service) => {
    expect(await tc3('GenerateDataKey', { KeyId: keyId }, { token: 'session-token', service })).toMatchObject({ Error: { Code: 'AuthFailure.SignatureFailure' } });
  });

  it('routes API 3.0 by action: AssumeRole goes to STS signed for sts over TC3, and signed v1 with STS version', async () => {
    const assume = { RoleArn: 'qcs::cam::uin/100000000001:roleName/app', RoleSessionName: 'routing' };
    const body = JSON.stringify(assume);
    const headers = { ...tc3Headers({ action: 'AssumeRole', body, credentials: TEMPORARY, token: 'session-token', service: 'sts' }), 'X-TC-Version': '2018-08-13' };
    // The version header is not signed (only content-type;host and x-tc-action), so it may be replaced.
    const tc3Answer = ((await (await fetch(emulator.url, { method: 'POST', headers, body })).json()) as { Response: Record<string, unknown> }).Response;
    expect(tc3Answer).toMatchObject({ Credentials: { TmpSecretId: expect.any(String) } });
    const signed = signedParams(TEMPORARY, { Action: 'AssumeRole', Version: '2018-08-13', Token: 'session-token', ...assume }, { method: 'POST', host: new URL(emulator.url).host, path: '/' });
    const v1 = ((await (await fetch(emulator.url, { method: 'POST', body: new URLSearchParams(signed) })).json()) as { Response: Record<string, unknown> }).Response;
    expect(v1).toMatchObject({ Credentials: { TmpSecretId: expect.any(String) } });
    // A KMS action is never STS's, whatever the scope says.
    expect(await tc3('GenerateDataKey', { KeyId: keyId }, { token: 'session-token', service: 'sts' })).toMatchObject({ Error: { Code: 'AuthFailure.SignatureFailure' } });
  });

  it('a request addressed to 127.0.0.1 may name its first label, 127, as the official SDK does', async () => {
    expect(await tc3('GenerateDataKey', { KeyId: keyId }, { token: 'session-token', service: '127' })).toMatchObject({ KeyId: keyId });
  });

  it('the host-label services: only for an IP literal or localhost, never for a host name', () => {
    const services = (host: string) => loopbackServices({ headers: { host } } as never);
    expect(services('127.0.0.1:8080')).toEqual(['127']);
    expect(services('10.1.2.3')).toEqual(['10']);
    expect(services('localhost:8080')).toEqual(['localhost:8080', 'localhost']);
    expect(services('[::1]:8080')).toEqual(['[::1]:8080', '::1']);
    expect(services('kms.tencentcloudapi.com')).toEqual([]);
    expect(services('127.example.com:8080')).toEqual([]);
    expect(services('')).toEqual([]);
  });
});

describe('action names that an object inherits are unknown actions', () => {
  const NAMES = ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', '__defineGetter__', 'toLocaleString'];

  it.each(NAMES)('%s: InvalidAction over TC3, v1 and the legacy API', async (name) => {
    emulator.resetStats();
    expect(await tc3(name, { KeyId: keyId }, { token: 'session-token' })).toMatchObject({ Error: { Code: 'InvalidAction' } });
    expect((await querySigned('v3', 'POST', { Action: name, Token: 'session-token' })).v3).toMatchObject({ Error: { Code: 'InvalidAction' } });
    expect((await querySigned('v2', 'POST', { Action: name, Token: 'session-token' })).v2).toMatchObject({ code: 4000, codeDesc: 'InvalidAction' });
    const { calls } = emulator.stats();
    expect(Object.getOwnPropertyDescriptor(calls, name)?.value).toBe(3);
    expect(Object.values(calls).every((n) => typeof n === 'number')).toBe(true);
  });
});
