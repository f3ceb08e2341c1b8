/**
 * Credentials as Tencent's SDK finds them: STS AssumeRole and a CVM instance role, served by the
 * emulator on loopback, refreshed before expiry, and replaced once when the KMS refuses them.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { canonicalContext } from '../../src/core/context.ts';
import { createEnvelope } from '../../src/index.ts';
import { cvmRoleCredentials, refreshingCredentials, stsCredentials, type TemporaryCredentials } from '../../src/kms/tencent-credentials.ts';
import { TencentKms } from '../../src/kms/tencent.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

let emulator: RunningEmulator;
let keyId: string;
const FAST = { retry: { baseDelayMs: 1, maxDelayMs: 5 }, timeoutMs: 5000, deadlineMs: 20000 };
const ROLE_ARN = 'qcs::cam::uin/100000000001:roleName/envelope-app';

beforeAll(async () => ({ emulator, keyId } = await useEmulator({ alias: 'credentials', instanceRole: { name: 'envelope-cvm' } })));
afterAll(() => emulator.close());
beforeEach(() => emulator.resetStats());

const sts = (extra: Partial<Parameters<typeof stsCredentials>[0]> = {}) =>
  stsCredentials({ credentials: emulator.credentials[0]!, roleArn: ROLE_ARN, roleSessionName: 'tests', endpoint: emulator.url, ...FAST, ...extra });
const kms = (credentials: ConstructorParameters<typeof TencentKms>[0] extends infer O ? (O extends { credentials?: infer C } ? C : never) : never, fetch?: typeof globalThis.fetch) =>
  new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials, ...FAST, rateLimit: false, ...(fetch ? { fetch } : {}) });
const context = canonicalContext({ t: '1' });

describe('STS temporary credentials', () => {
  it('seal and open with an AssumeRole pair; the token goes in X-TC-Token; one AssumeRole for many calls', async () => {
    const tokens = new Set<string | null>();
    const watching: typeof fetch = (input, init) => {
      tokens.add(new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined)).get('x-tc-token'));
      return fetch(input, init);
    };
    const envelope = createEnvelope({ kms: kms(sts(), watching) });
    for (let i = 0; i < 5; i++) expect(await envelope.openString(await envelope.seal(`v${i}`))).toBe(`v${i}`);
    expect(emulator.stats().calls.AssumeRole).toBe(1);
    expect(tokens.size).toBe(1);
    expect([...tokens][0]).toMatch(/^[\w-]{40,}$/);
    expect(emulator.stats().authFailures).toBe(0);
  });

  it('the emulator refuses an expired pair and a pair without its token with AuthFailure.TokenFailure; no secret in the error', async () => {
    const pair = await sts()();
    await kms(pair).generateDataKey({ keySpec: 'AES_256', context });
    const { token: _token, ...withoutToken } = pair;
    await expect(kms(withoutToken).generateDataKey({ keySpec: 'AES_256', context })).rejects.toMatchObject({ kind: 'auth', kmsCode: 'AuthFailure.TokenFailure' });
    emulator.expireTemporaryCredentials();
    const error = (await kms(pair).generateDataKey({ keySpec: 'AES_256', context }).catch((e: unknown) => e)) as Error;
    expect(error).toMatchObject({ code: 'ERR_KMS', kind: 'auth', kmsCode: 'AuthFailure.TokenFailure' });
    expect(`${error.message} ${String(error.stack)}`).not.toContain(pair.secretKey);
    expect(`${error.message} ${String(error.stack)}`).not.toContain(pair.token);
  });

  it('a pair that expires mid-run is replaced once: 100 concurrent calls refused with it, one AssumeRole, no failure', async () => {
    const source = sts();
    const provider = kms(source);
    await provider.generateDataKey({ keySpec: 'AES_256', context });
    expect(emulator.stats().calls.AssumeRole).toBe(1);
    emulator.expireTemporaryCredentials();
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => provider.generateDataKey({ keySpec: 'AES_256', context })));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(emulator.stats().calls.AssumeRole).toBe(2);
    expect(emulator.stats().authFailures).toBeGreaterThan(0); // the refusals happened, and were absorbed
  });

  it('short-lived pairs over several lifetimes: waves of concurrent calls never fail, one AssumeRole per lifetime at most', async () => {
    const provider = kms(sts({ durationSeconds: 2, refreshBeforeMs: 1000 }));
    const started = Date.now();
    const until = started + 4500;
    let waves = 0;
    while (Date.now() < until) {
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => provider.generateDataKey({ keySpec: 'AES_128', context })));
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      waves++;
      await new Promise((r) => setTimeout(r, 100));
    }
    const assumed = emulator.stats().calls.AssumeRole!;
    expect(assumed).toBeGreaterThanOrEqual(2);
    // A pair lives 2 s and is replaced 1 s before it ends: about one AssumeRole a second, however
    // few waves a loaded machine ran meanwhile (and room for the first pair and one early refresh).
    expect(assumed).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 1000) + 2);
    expect(waves).toBeGreaterThan(1);
  });

  it('AssumeRole errors are KmsErrors with the STS code; bad options are refused before any call', async () => {
    await expect(sts({ credentials: { secretId: 'AKIDnope', secretKey: 'x' } })()).rejects.toMatchObject({ code: 'ERR_KMS', kind: 'auth', kmsCode: 'AuthFailure.SecretIdNotFound' });
    await expect(sts({ roleArn: 'arn:aws:iam::1:role/x' })()).rejects.toMatchObject({ kmsCode: 'InvalidParameterValue' });
    expect(() => sts({ durationSeconds: 0 })).toThrow(RangeError);
    expect(() => sts({ roleSessionName: 'a b' })).toThrow(TypeError);
    expect(() => sts({ endpoint: 'http://sts.example.com' })).toThrow(TypeError);
  });
});

describe('CVM instance role through the metadata endpoint', () => {
  it('finds the role, reads its pair, and seals and opens with it', async () => {
    const source = cvmRoleCredentials({ metadataUrl: `${emulator.url}/latest/meta-data/` });
    const envelope = createEnvelope({ kms: kms(source) });
    expect(await envelope.openString(await envelope.seal('from a CVM'))).toBe('from a CVM');
    expect(emulator.stats().calls.metadata).toBe(2); // the role name, then its credentials
    expect((await source()).token).toMatch(/^[\w-]{40,}$/);
  });

  it('an instance without that role: an auth KmsError; a plain-http metadata URL elsewhere is refused', async () => {
    await expect(cvmRoleCredentials({ metadataUrl: `${emulator.url}/latest/meta-data`, roleName: 'other' })()).rejects.toMatchObject({ code: 'ERR_KMS', kind: 'auth' });
    expect(() => cvmRoleCredentials({ metadataUrl: 'http://169.254.0.23/latest/meta-data/' })).toThrow(TypeError);
    expect(() => cvmRoleCredentials({ metadataUrl: 'http://metadata.tencentyun.com/latest/meta-data/' })).not.toThrow();
  });

  it('an expired role pair is replaced once through the metadata endpoint', async () => {
    const provider = kms(cvmRoleCredentials({ metadataUrl: `${emulator.url}/latest/meta-data/` }));
    await provider.generateDataKey({ keySpec: 'AES_256', context });
    emulator.expireTemporaryCredentials();
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => provider.generateDataKey({ keySpec: 'AES_256', context })));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(emulator.stats().calls.metadata).toBe(3); // role name once, credentials twice
  });
});

describe('refreshingCredentials (clock in the test)', () => {
  const pair = (n: number, expiresAt: number): TemporaryCredentials => ({ secretId: `id${n}`, secretKey: `key${n}`, token: `token${n}`, expiresAt });

  it('one fetch for many concurrent callers; early refresh in the background; past expiry callers wait for the new pair', async () => {
    let t = 0;
    let fetched = 0;
    let release: () => void = () => {};
    const source = refreshingCredentials(
      async () => {
        fetched++;
        const n = fetched;
        await new Promise<void>((r) => (release = r));
        return pair(n, t + 1000);
      },
      { refreshBeforeMs: 200, now: () => t },
    );
    const first = Array.from({ length: 50 }, () => source());
    release();
    expect(new Set((await Promise.all(first)).map((p) => p.secretId))).toEqual(new Set(['id1']));
    expect(fetched).toBe(1);
    t = 850; // inside the refresh window: the old pair, and one refresh started
    expect((await source()).secretId).toBe('id1');
    expect((await source()).secretId).toBe('id1');
    expect(fetched).toBe(2);
    release();
    await new Promise((r) => setTimeout(r, 0));
    expect((await source()).secretId).toBe('id2');
    t = 5000; // past the expiry of id2 (1850): callers wait
    const waiting = Array.from({ length: 10 }, () => source());
    release();
    expect(new Set((await Promise.all(waiting)).map((p) => p.secretId))).toEqual(new Set(['id3']));
    expect(fetched).toBe(3);
  });

  it('invalidate drops only the pair in use, once; a failed refresh reaches its callers and the next call tries again', async () => {
    let fetched = 0;
    let fail = false;
    const source = refreshingCredentials(async () => {
      fetched++;
      if (fail) throw new Error('STS down');
      return pair(fetched, Date.now() + 3_600_000);
    });
    const a = await source();
    source.invalidate(pair(99, 0)); // another pair: nothing happens
    expect(await source()).toBe(a);
    source.invalidate(a);
    source.invalidate(a);
    const b = await source();
    expect(b.secretId).toBe('id2');
    source.invalidate(b);
    fail = true;
    await expect(source()).rejects.toThrow('STS down');
    fail = false;
    expect((await source()).secretId).toBe('id4');
  });

  it('a pair without a token or expiry is an auth KmsError', async () => {
    await expect(refreshingCredentials(async () => ({ secretId: 'a', secretKey: 'b', token: '', expiresAt: 1 }))()).rejects.toMatchObject({ kind: 'auth' });
    await expect(refreshingCredentials(async () => ({ secretId: 'a', secretKey: 'b', token: 't', expiresAt: Number.NaN }))()).rejects.toMatchObject({ kind: 'auth' });
  });
});
