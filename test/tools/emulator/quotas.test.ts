/** Tencent's per-account quotas, per action, answered with the real throttling code. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalContext } from '../../../src/core/context.ts';
import { TencentKms } from '../../../src/index.ts';
import { type EmulatorFixture, useEmulator } from '../../fixtures/emulator.ts';

let fixture: EmulatorFixture;
beforeAll(async () => {
  fixture = await useEmulator({ alias: 'quotas' });
});
afterAll(() => fixture.emulator.close());

describe('emulator: account quotas per action', () => {
  it('throttles an action past its own limit with RequestLimitExceeded, and leaves the others alone', async () => {
    const { url, credentials, keyId, emulator } = fixture;
    const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: url, credentials, rateLimit: false, retry: { limit: 0 } });
    emulator.setFaults({ qpsLimit: { GenerateDataKey: 2 } });
    const context = canonicalContext({});
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => kms.generateDataKey({ keySpec: 'AES_256', context })));
    const refused = outcomes.filter((o) => o.status === 'rejected');
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBeLessThanOrEqual(2);
    expect(refused.length).toBeGreaterThanOrEqual(3);
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({ kmsCode: 'RequestLimitExceeded' });
    const key = await kms.encrypt(Uint8Array.of(1, 2, 3)); // Encrypt has no limit here
    expect(key.length).toBeGreaterThan(0);
    emulator.setFaults({});
  });

  it('refuses a quota that is not a number per action', async () => {
    const response = await fetch(`${fixture.url}/__emulator/faults`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fixture.credentials.secretKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ qpsLimit: { Decrypt: 'many' } }),
    });
    expect(response.status).toBe(400);
  });
});
