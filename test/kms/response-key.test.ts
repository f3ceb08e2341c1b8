/**
 * GenerateDataKey and Decrypt with EncryptionPublicKey (option `responseKey`): the data key comes
 * back encrypted under a key pair of the provider's, so no response body carries it in clear.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '../../src/core/bytes.ts';
import { canonicalContext } from '../../src/core/context.ts';
import { createEnvelope } from '../../src/index.ts';
import { UnsupportedAlgorithmError } from '../../src/kms/response-key.ts';
import { TencentKms, type TencentKmsOptions } from '../../src/kms/tencent.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

let emulator: RunningEmulator;
let keyId: string;
const FAST = { retry: { baseDelayMs: 1, maxDelayMs: 5 }, timeoutMs: 5000, deadlineMs: 20000 };

beforeAll(async () => ({ emulator, keyId } = await useEmulator({ alias: 'response-key' })));
afterAll(() => emulator.close());

/** Every request and response body that crossed HTTP, as text. */
function capturing(rewrite?: (responseBody: string) => string): { fetch: typeof fetch; requests: string[]; responses: string[] } {
  const requests: string[] = [];
  const responses: string[] = [];
  const wrapped: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const body = await request.text();
    requests.push(body);
    const response = await fetch(request.url, { method: request.method, headers: request.headers, body, redirect: 'manual' });
    let text = await response.text();
    if (rewrite) text = rewrite(text);
    responses.push(text);
    return new Response(text, { status: response.status, headers: response.headers });
  };
  return { fetch: wrapped, requests, responses };
}

const kms = (options: TencentKmsOptions = {}) =>
  new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, ...FAST, ...options });

/** The ways a 32-byte key could appear in a JSON body. */
function forms(key: Uint8Array): string[] {
  return [Buffer.from(key).toString('base64'), toHex(key), Buffer.from(key).toString('base64url'), Buffer.from(key).toString('latin1')];
}

describe('responseKey: the data key never in a response body in clear', () => {
  const cases = [
    ['RSAES_OAEP_SHA_256', 'node'],
    ['RSAES_OAEP_SHA_256', 'webcrypto'],
    ['RSAES_OAEP_SHA_1', 'node'],
    ['RSAES_OAEP_SHA_1', 'webcrypto'],
  ] as const;

  it.each(cases)('%s through %s: GenerateDataKey and Decrypt return the key under the public key, and it decrypts locally', async (algorithm, backend) => {
    const capture = capturing();
    const provider = kms({ responseKey: { algorithm, backend }, fetch: capture.fetch });
    const context = canonicalContext({ table: 'users' });
    const dataKey = await provider.generateDataKey({ keySpec: 'AES_256', context });
    const again = await provider.decryptDataKey({ keySpec: 'AES_256', keyId: dataKey.keyId, ciphertextBlob: dataKey.ciphertextBlob, context });
    expect(toHex(again)).toBe(toHex(dataKey.plaintextKey));
    expect(capture.responses).toHaveLength(2);
    for (const body of capture.responses) for (const form of forms(dataKey.plaintextKey)) expect(body).not.toContain(form);
    for (const body of capture.requests) {
      const sent = JSON.parse(body) as Record<string, string>;
      expect(sent.EncryptionAlgorithm).toBe(algorithm);
      expect(sent.EncryptionPublicKey).toMatch(/^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n$/);
    }
    // Plaintext is 256 bytes of RSA-2048 ciphertext, not 32 bytes of key.
    expect(Buffer.from(JSON.parse(capture.responses[0]!).Response.Plaintext, 'base64')).toHaveLength(256);
  });

  it('without the option, the same capture does find the key in clear (the check above can fail)', async () => {
    const capture = capturing();
    const dataKey = await kms({ fetch: capture.fetch }).generateDataKey({ keySpec: 'AES_256', context: canonicalContext({}) });
    expect(capture.responses[0]).toContain(Buffer.from(dataKey.plaintextKey).toString('base64'));
  });

  it('seal and open through an envelope, both suites', async () => {
    const capture = capturing();
    const provider = kms({ responseKey: true, fetch: capture.fetch });
    for (const suite of ['cobblestone-256', 'cobblestone-128'] as const) {
      const envelope = createEnvelope({ kms: provider, suite });
      const sealed = await envelope.seal('card 4111', { context: { row: '1' } });
      expect(await createEnvelope({ kms: kms({ responseKey: true }), suite }).openString(sealed, { context: { row: '1' } })).toBe('card 4111');
    }
    expect(capture.requests.every((body) => body.includes('EncryptionPublicKey'))).toBe(true);
  });

  it('one key pair per process by default; a new one per call with keyPair: "call"', async () => {
    const context = canonicalContext({});
    const pems = async (provider: TencentKms, capture: ReturnType<typeof capturing>) => {
      await Promise.all([1, 2, 3].map(() => provider.generateDataKey({ keySpec: 'AES_128', context })));
      return new Set(capture.requests.map((body) => (JSON.parse(body) as { EncryptionPublicKey: string }).EncryptionPublicKey));
    };
    const shared = capturing();
    expect((await pems(kms({ responseKey: true, fetch: shared.fetch }), shared)).size).toBe(1);
    const perCall = capturing();
    expect((await pems(kms({ responseKey: { keyPair: 'call' }, fetch: perCall.fetch }), perCall)).size).toBe(3);
  });

  it('close() drops the key pair: later calls are refused with ERR_CLOSED, before any request', async () => {
    const capture = capturing();
    const provider = kms({ responseKey: true, fetch: capture.fetch });
    await provider.generateDataKey({ keySpec: 'AES_256', context: canonicalContext({}) });
    provider.close();
    await expect(provider.generateDataKey({ keySpec: 'AES_256', context: canonicalContext({}) })).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    await expect(provider.decryptDataKey({ keySpec: 'AES_256', keyId, ciphertextBlob: 'x', context: canonicalContext({}) })).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(capture.requests).toHaveLength(1);
  });

  it('a Plaintext that does not decrypt under the key pair (altered on the way) is a bad-response KmsError, never a wrong key', async () => {
    const altered = (body: string) => {
      const json = JSON.parse(body) as { Response: { Plaintext: string } };
      const bytes = Buffer.from(json.Response.Plaintext, 'base64');
      bytes[100]! ^= 1;
      json.Response.Plaintext = bytes.toString('base64');
      return JSON.stringify(json);
    };
    const capture = capturing(altered);
    await expect(kms({ responseKey: true, fetch: capture.fetch }).generateDataKey({ keySpec: 'AES_256', context: canonicalContext({}) })).rejects.toMatchObject({
      code: 'ERR_KMS',
      kind: 'bad-response',
    });
  });

  it('RSAES_PKCS1_V1_5 is refused with a typed error naming CVE-2023-46809; SM2 and unknown names are refused too', () => {
    const make = (algorithm: string) => () => kms({ responseKey: { algorithm: algorithm as 'RSAES_OAEP_SHA_256' } });
    expect(make('RSAES_PKCS1_V1_5')).toThrow(UnsupportedAlgorithmError);
    expect(make('RSAES_PKCS1_V1_5')).toThrow(/CVE-2023-46809/);
    expect(make('RSAES_PKCS1_V1_5')).toThrow(expect.objectContaining({ code: 'ERR_KMS', kind: 'bad-request' }));
    for (const name of ['SM2', 'SM2_C1C3C2_ASN1', 'rsa', '']) expect(make(name)).toThrow(UnsupportedAlgorithmError);
    expect(() => kms({ responseKey: { keyPair: 'thread' as 'call' } })).toThrow(TypeError);
  });
});

describe('the emulator checks EncryptionPublicKey and EncryptionAlgorithm with the real error codes', () => {
  const rsa = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const pem2048 = rsa(2048);
  const base = () => ({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: '{}' });

  it.each([
    ['a PEM that is no key', { EncryptionPublicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }, 'InvalidParameterValue'],
    ['a 1024-bit RSA key', { EncryptionPublicKey: rsa(1024), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }, 'InvalidParameterValue'],
    ['an unknown algorithm', { EncryptionPublicKey: pem2048, EncryptionAlgorithm: 'RSA_OAEP' }, 'InvalidParameterValue'],
    ['SM2 (the default) with an RSA key', { EncryptionPublicKey: pem2048 }, 'InvalidParameterValue'],
    ['an algorithm without a key', { EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }, 'MissingParameter'],
  ])('%s: %s', async (_name, extra, code) => {
    await expect(kms().call('GenerateDataKey', { ...base(), ...extra })).rejects.toMatchObject({ code: 'ERR_KMS', kmsCode: code });
  });

  it('Decrypt checks them too, and PKCS#1 v1.5 (which Tencent offers) is served', async () => {
    const generated = await kms().call('GenerateDataKey', base());
    await expect(kms().call('Decrypt', { CiphertextBlob: generated.CiphertextBlob as string, EncryptionContext: '{}', EncryptionPublicKey: 'nope', EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' })).rejects.toMatchObject({
      kmsCode: 'InvalidParameterValue',
    });
    const pkcs1 = await kms().call('Decrypt', { CiphertextBlob: generated.CiphertextBlob as string, EncryptionContext: '{}', EncryptionPublicKey: pem2048, EncryptionAlgorithm: 'RSAES_PKCS1_V1_5' });
    expect(Buffer.from(pkcs1.Plaintext as string, 'base64')).toHaveLength(256);
  });
});
