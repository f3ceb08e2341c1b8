/**
 * The official tencentcloud-sdk-nodejs (a dev dependency) against the emulator: CreateKey →
 * GenerateDataKey → Decrypt with TC3-HMAC-SHA256, HmacSHA256 and HmacSHA1, so the emulator checks
 * signatures as Tencent does, for a client that is not ours.
 */
import { Agent } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from 'tencentcloud-sdk-nodejs/tencentcloud/services/kms/v20190118/kms_client.js';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

let emulator: RunningEmulator;
beforeAll(async () => {
  ({ emulator } = await useEmulator());
});
afterAll(() => emulator.close());

interface SdkClient {
  CreateKey(req: object): Promise<{ KeyId: string }>;
  GenerateDataKey(req: object): Promise<{ KeyId: string; Plaintext: string; CiphertextBlob: string }>;
  Decrypt(req: object): Promise<{ KeyId: string; Plaintext: string }>;
}

type SignMethod = 'TC3-HMAC-SHA256' | 'HmacSHA256' | 'HmacSHA1';

/** Every connection to the emulator, whatever host the request names. */
class LoopbackAgent extends Agent {
  override createConnection(): ReturnType<Agent['createConnection']> {
    return connect(emulator.port, '127.0.0.1');
  }
}

/**
 * The SDK takes the TC3 scope's service from the endpoint's first label, so it keeps Tencent's
 * host name (service `kms`) and the agent sends its socket to loopback. An explicit agent also
 * keeps an http_proxy in the environment from rerouting loopback traffic.
 */
function sdk(signMethod: SignMethod, reqMethod: 'POST' | 'GET', secretKey?: string, endpoint = 'kms.tencentcloudapi.com'): SdkClient {
  const { secretId, secretKey: key } = emulator.credentials[0]!;
  return new Client({
    credential: { secretId, secretKey: secretKey ?? key },
    region: 'ap-guangzhou',
    profile: {
      signMethod,
      httpProfile: { endpoint, protocol: 'http://', reqMethod, reqTimeout: 10, agent: new LoopbackAgent({ keepAlive: false }) },
    },
  }) as unknown as SdkClient;
}

describe('official tencentcloud-sdk-nodejs against the emulator', () => {
  it.each([
    ['TC3-HMAC-SHA256', 'POST'],
    ['TC3-HMAC-SHA256', 'GET'],
    ['HmacSHA256', 'POST'],
    ['HmacSHA1', 'POST'],
    ['HmacSHA1', 'GET'],
  ] as const)('completes CreateKey → GenerateDataKey → Decrypt with %s over %s', async (signMethod, reqMethod) => {
    const client = sdk(signMethod, reqMethod);
    const before = emulator.stats().authFailures;
    const { KeyId } = await client.CreateKey({ Alias: `sdk-${signMethod.replace(/[^A-Za-z0-9]/g, '')}-${reqMethod}` });
    expect(KeyId).toMatch(/^[0-9a-f-]{36}$/);
    const context = JSON.stringify({ bucket: 'b1', obj: 'k/ä' });
    const generated = await client.GenerateDataKey({ KeyId, KeySpec: 'AES_256', EncryptionContext: context });
    expect(Buffer.from(generated.Plaintext, 'base64').length).toBe(32);
    const decrypted = await client.Decrypt({ CiphertextBlob: generated.CiphertextBlob, EncryptionContext: context });
    expect(decrypted.Plaintext).toBe(generated.Plaintext);
    expect(decrypted.KeyId).toBe(KeyId);
    await expect(client.Decrypt({ CiphertextBlob: generated.CiphertextBlob, EncryptionContext: '{"bucket":"b2"}' })).rejects.toMatchObject({
      code: 'InvalidParameterValue.InvalidCiphertext',
    });
    expect(emulator.stats().authFailures).toBe(before);
  });

  it.each(['TC3-HMAC-SHA256', 'HmacSHA256', 'HmacSHA1'] as const)('rejects the SDK signing with a wrong secret key (%s)', async (signMethod) => {
    const client = sdk(signMethod, 'POST', 'not-the-secret-key-0000000000000');
    await expect(client.CreateKey({ Alias: 'never' })).rejects.toMatchObject({ code: 'AuthFailure.SignatureFailure' });
  });

  it.each([
    ['TC3-HMAC-SHA256', 'POST'],
    ['TC3-HMAC-SHA256', 'GET'],
    ['HmacSHA256', 'POST'],
    ['HmacSHA1', 'GET'],
  ] as const)('works pointed at 127.0.0.1:PORT, whose TC3 scope names service "127" (%s over %s)', async (signMethod, reqMethod) => {
    const client = sdk(signMethod, reqMethod, undefined, `127.0.0.1:${emulator.port}`);
    const { KeyId } = await client.CreateKey({ Alias: `loopback-${signMethod.replace(/[^A-Za-z0-9]/g, '')}-${reqMethod}` });
    const context = JSON.stringify({ tenant: 't1' });
    const generated = await client.GenerateDataKey({ KeyId, KeySpec: 'AES_128', EncryptionContext: context });
    expect(Buffer.from(generated.Plaintext, 'base64').length).toBe(16);
    await expect(client.Decrypt({ CiphertextBlob: generated.CiphertextBlob, EncryptionContext: context })).resolves.toMatchObject({ Plaintext: generated.Plaintext });
  });

  it('works pointed at localhost:PORT, whose TC3 scope names service "localhost:PORT"', async () => {
    const client = sdk('TC3-HMAC-SHA256', 'POST', undefined, `localhost:${emulator.port}`);
    await expect(client.CreateKey({ Alias: 'loopback-localhost' })).resolves.toMatchObject({ KeyId: expect.any(String) });
  });

  it("still refuses a scope naming another product for a host name (cvm for Tencent's KMS host), and sts for a KMS action", async () => {
    // The agent sends the socket to loopback; the Host header and the scope say cvm.tencentcloudapi.com / cvm.
    await expect(sdk('TC3-HMAC-SHA256', 'POST', undefined, 'cvm.tencentcloudapi.com').CreateKey({ Alias: 'never-cvm' })).rejects.toMatchObject({
      code: 'AuthFailure.SignatureFailure',
    });
    await expect(sdk('TC3-HMAC-SHA256', 'POST', undefined, 'sts.tencentcloudapi.com').CreateKey({ Alias: 'never-sts' })).rejects.toMatchObject({
      code: 'AuthFailure.SignatureFailure',
    });
  });

  it('refuses a parameter of the wrong JSON type with InvalidParameter, as Tencent does (EncryptionContext as an object, KeyId as a number)', async () => {
    const client = sdk('TC3-HMAC-SHA256', 'POST', undefined, `127.0.0.1:${emulator.port}`);
    const { KeyId } = await client.CreateKey({ Alias: 'typed-fields' });
    await expect(client.GenerateDataKey({ KeyId, KeySpec: 'AES_256', EncryptionContext: { bucket: 'b1' } })).rejects.toMatchObject({
      code: 'InvalidParameter',
      message: expect.stringContaining('EncryptionContext'),
    });
    await expect(client.GenerateDataKey({ KeyId: 42, KeySpec: 'AES_256' })).rejects.toMatchObject({ code: 'InvalidParameter', message: expect.stringContaining('KeyId') });
    // An integer parameter takes a JSON number.
    const generated = await client.GenerateDataKey({ KeyId, NumberOfBytes: 24 });
    expect(Buffer.from(generated.Plaintext, 'base64').length).toBe(24);
  });
});
