/**
 * Rewrap (src/rewrap.ts, FORMAT.md §10.5): only the wrapped-key section changes; the payload and
 * the authenticated header bytes stay byte for byte; the result opens with the new master key, and
 * not with the old one once that is disabled. Through LocalKms, Tencent API 3.0 (one ReEncrypt) and
 * the legacy API (Decrypt + Encrypt; the emulator refuses ReEncrypt there as Tencent does).
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHeader } from '../../src/core/header.ts';
import { createEnvelope, inspect, LocalKms, needsRewrap, rewrap, rewrapReasons, TencentKms, TencentKmsV2 } from '../../src/index.ts';
import type { EnvelopeEvent } from '../../src/index.ts';
import type { RunningEmulator } from '../../src/tools/emulator/index.ts';
import { useEmulator } from '../fixtures/emulator.ts';

const FAST = { retry: { baseDelayMs: 1, maxDelayMs: 5 }, timeoutMs: 2000, deadlineMs: 10000 };

let emulator: RunningEmulator;
let oldKey: string;
let newKey: string;
beforeAll(async () => {
  ({ emulator, keyId: oldKey } = await useEmulator({ alias: 'rewrap-old' }));
  newKey = emulator.createKey('rewrap-new');
});
afterAll(() => emulator.close());

const v3 = (keyId = oldKey) => new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, ...FAST });
const v2 = (keyId = oldKey) => new TencentKmsV2({ keyId, region: 'gz', endpoint: `${emulator.url}/v2/index.php`, credentials: emulator.credentials[0]!, ...FAST });

/** The payload: the bytes after the header. */
const payloadOf = (sealed: Uint8Array) => sealed.subarray(parseHeader(sealed).length);
const authenticatedOf = (sealed: Uint8Array) => parseHeader(sealed).authenticated;

function twoKeyLocal(): LocalKms {
  const a = crypto.getRandomValues(new Uint8Array(32));
  const b = crypto.getRandomValues(new Uint8Array(32));
  return new LocalKms({ old: a, new: b }, { defaultKeyId: 'old' });
}

describe('rewrap through LocalKms', () => {
  it('keeps the payload and the authenticated bytes identical and opens under the new key (formats 1 and 2, stored and detached contexts)', async () => {
    const kms = twoKeyLocal();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 40_000 }), fc.constantFrom<1 | 2>(1, 2), fc.boolean(), async (plaintext, format, detached) => {
        const envelope = createEnvelope({ kms, format, detachedContext: detached });
        const context = { tenant: 't1' };
        const sealed = await envelope.seal(plaintext, { context });
        const rewrapped = await rewrap(envelope, sealed, { toKeyId: 'new', ...(detached ? { context } : {}) });
        expect(Buffer.from(payloadOf(rewrapped)).equals(Buffer.from(payloadOf(sealed)))).toBe(true);
        expect(Buffer.from(authenticatedOf(rewrapped)).equals(Buffer.from(authenticatedOf(sealed)))).toBe(true);
        expect(inspect(rewrapped).keyId).toBe('new');
        expect(Buffer.from(await envelope.open(rewrapped, { context })).equals(Buffer.from(plaintext))).toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it('refuses a detached message without its context, a wrong context, a key it does not hold, and a hierarchy message, with typed errors', async () => {
    const kms = twoKeyLocal();
    const envelope = createEnvelope({ kms, detachedContext: true });
    const sealed = await envelope.seal('x', { context: { a: '1' } });
    await expect(rewrap(envelope, sealed, { toKeyId: 'new' })).rejects.toMatchObject({ code: 'ERR_CONTEXT_MISMATCH' });
    await expect(rewrap(envelope, sealed, { toKeyId: 'new', context: { a: '2' } })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    await expect(rewrap(envelope, sealed, { toKeyId: 'absent', context: { a: '1' } })).rejects.toMatchObject({ code: 'ERR_KMS' });
    await expect(rewrap(envelope, sealed, { toKeyId: '' } as never)).rejects.toThrow(TypeError);
  });
});

describe('rewrap through the emulator', () => {
  it('API 3.0: one ReEncrypt per message; opens with the new key, and the old message fails with the real code once the old key is disabled', async () => {
    const events: EnvelopeEvent[] = [];
    const kms = v3();
    const envelope = createEnvelope({ kms, onEvent: (e) => events.push(e) });
    const plaintext = new Uint8Array(randomBytes(70_000));
    const sealed = await envelope.seal(plaintext, { context: { tenant: 'acme' } });
    emulator.resetStats();
    const rewrapped = await rewrap(envelope, sealed, { toKeyId: newKey });
    expect(emulator.stats().calls).toEqual({ ReEncrypt: 1 });
    expect(events.filter((e) => e.type === 'kms-call').map((e) => (e as { action: string }).action)).toContain('ReEncrypt');
    expect(Buffer.from(payloadOf(rewrapped)).equals(Buffer.from(payloadOf(sealed)))).toBe(true);
    expect(inspect(rewrapped).keyId).toBe(newKey);
    expect(needsRewrap(sealed, { keyIds: [newKey] })).toBe(true);
    expect(needsRewrap(rewrapped, { keyIds: [newKey] })).toBe(false);
    expect(rewrapReasons(sealed, { keyIds: [newKey] })[0]).toContain(oldKey);

    await kms.disableKey(oldKey);
    try {
      const reader = createEnvelope({ kms: v3(newKey) });
      expect(Buffer.from(await reader.open(rewrapped)).equals(Buffer.from(plaintext))).toBe(true);
      await expect(reader.open(sealed)).rejects.toMatchObject({ code: 'ERR_KMS', kmsCode: 'ResourceUnavailable.CmkDisabled' });
    } finally {
      await kms.enableKey(oldKey);
    }
  });

  it('the legacy API: Decrypt + Encrypt (no ReEncrypt, which the emulator refuses there as Tencent does)', async () => {
    const kms = v2();
    await expect(kms.call('ReEncrypt', { ciphertextBlob: 'x' })).rejects.toMatchObject({ code: 'ERR_KMS', kmsCode: '4000', message: expect.stringContaining('unknown action ReEncrypt') });
    const envelope = createEnvelope({ kms });
    const sealed = await envelope.seal('legacy secret', { context: { tenant: 'old-co' } });
    emulator.resetStats();
    const rewrapped = await rewrap(envelope, sealed, { toKeyId: newKey });
    expect(emulator.stats().calls).toEqual({ Decrypt: 1, Encrypt: 1 });
    expect(Buffer.from(payloadOf(rewrapped)).equals(Buffer.from(payloadOf(sealed)))).toBe(true);
    expect(inspect(rewrapped).keyId).toBe(newKey);
    expect(await createEnvelope({ kms: v2(newKey) }).openString(rewrapped)).toBe('legacy secret');
  });
});
