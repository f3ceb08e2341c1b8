/**
 * Several wrapped keys per message (src/wrapped-keys.ts, FORMAT.md §10.2): two Tencent regions
 * (two emulators), or a Tencent key and a local break-glass key; the order and cap of open()'s KMS
 * attempts, a region down, the commitment deciding, and rewrap adding and removing wrapped keys.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MAX_HEADER_LENGTH, parseHeader } from '../../src/core/header.ts';
import { replaceWrappedKeys } from '../../src/core/wrapped-section.ts';
import { createEnvelope, type EnvelopeEvent, LocalKms, openStream, rewrap } from '../../src/index.ts';
import type { KeyProvider } from '../../src/kms/key-provider.ts';
import { TencentKms } from '../../src/kms/tencent.ts';
import { useEmulator, type EmulatorFixture } from '../fixtures/emulator.ts';
import { InstrumentedProvider } from '../instrumented.ts';

let gz: EmulatorFixture;
let sh: EmulatorFixture;
const FAST = { retry: { limit: 1, baseDelayMs: 1, maxDelayMs: 5 }, timeoutMs: 1000, deadlineMs: 2000, rateLimit: false as const };

beforeAll(async () => {
  gz = await useEmulator({ alias: 'gz' });
  sh = await useEmulator({ alias: 'sh' });
});
afterAll(async () => {
  await gz.emulator.close();
  await sh.emulator.close();
});
beforeEach(() => {
  for (const e of [gz, sh]) {
    e.emulator.setFaults({});
    e.emulator.resetStats();
  }
});

const region = (e: EmulatorFixture, name: string, extra: Partial<ConstructorParameters<typeof TencentKms>[0]> = {}) =>
  new TencentKms({ keyId: e.keyId, region: name, endpoint: e.url, credentials: e.credentials, ...FAST, ...extra });
const breakGlass = () => new LocalKms({ 'break-glass': new Uint8Array(32).fill(7) });
const calls = (e: EmulatorFixture, action: string) => e.emulator.stats().calls[action] ?? 0;

function listening(): { events: EnvelopeEvent[]; onEvent: (e: EnvelopeEvent) => void } {
  const events: EnvelopeEvent[] = [];
  return { events, onEvent: (e) => events.push(e) };
}
const used = (events: EnvelopeEvent[]) => events.filter((e) => e.type === 'wrapped-key-used');

async function sealTwoRegions(text = 'two regions', context = { tenant: 'a' }): Promise<Uint8Array> {
  const writer = createEnvelope({ kms: region(gz, 'ap-guangzhou'), additionalWrapping: [{ kms: region(sh, 'ap-shanghai'), keyId: sh.keyId }] });
  return writer.seal(text, { context });
}

describe('seal with several providers', () => {
  it('one GenerateDataKey and one Encrypt per data key; a format-2 header with both wrapped keys, in order', async () => {
    const sealed = await sealTwoRegions();
    const header = parseHeader(sealed);
    expect(header.version).toBe(2);
    expect(header.wrappedKeys.map((w) => [w.provider, w.keyId])).toEqual([
      ['tencent', gz.keyId],
      ['tencent', sh.keyId],
    ]);
    expect([calls(gz, 'GenerateDataKey'), calls(sh, 'Encrypt'), calls(sh, 'GenerateDataKey')]).toEqual([1, 1, 0]);
  });

  it('a reader of either region opens it, and reports which wrapped key worked', async () => {
    const sealed = await sealTwoRegions();
    const a = listening();
    expect(await createEnvelope({ kms: region(gz, 'ap-guangzhou'), onEvent: a.onEvent }).openString(sealed)).toBe('two regions');
    expect(used(a.events)).toEqual([{ type: 'wrapped-key-used', provider: 'tencent', keyId: gz.keyId, index: 0, attempt: 1 }]);
    const b = listening();
    expect(await createEnvelope({ kms: region(sh, 'ap-shanghai'), onEvent: b.onEvent }).openString(sealed)).toBe('two regions');
    // The Shanghai reader tries the Guangzhou blob first (the order written), which its KMS refuses, then its own.
    expect(used(b.events)).toEqual([{ type: 'wrapped-key-used', provider: 'tencent', keyId: sh.keyId, index: 1, attempt: 2 }]);
  });

  it('a Tencent key plus a local break-glass key: the break-glass key alone opens it, no KMS call', async () => {
    const writer = createEnvelope({ kms: region(gz, 'ap-guangzhou'), additionalWrapping: [{ kms: breakGlass(), keyId: 'break-glass' }] });
    const sealed = await writer.seal('offline copy', { context: { row: '9' } });
    gz.emulator.resetStats();
    const reader = listening();
    expect(await createEnvelope({ kms: breakGlass(), onEvent: reader.onEvent }).openString(sealed, { context: { row: '9' } })).toBe('offline copy');
    expect(used(reader.events)).toEqual([{ type: 'wrapped-key-used', provider: 'local', keyId: 'break-glass', index: 1, attempt: 1 }]);
    expect(calls(gz, 'Decrypt')).toBe(0);
  });

  it('a failed additional wrap fails the seal (a message never lacks a way to open that was asked for)', async () => {
    sh.emulator.setFaults({ http503Rate: 1 });
    await expect(sealTwoRegions()).rejects.toMatchObject({ code: 'ERR_KMS' });
  });

  it('every data key is wiped: after a seal with extra wraps, a failed extra wrap, an open, and a rewrap that adds', async () => {
    const primary = new InstrumentedProvider();
    const good = { kms: breakGlass(), keyId: 'break-glass' };
    const failing: KeyProvider = { ...breakGlass(), id: 'down', generateDataKey: async () => { throw new Error('x'); }, decryptDataKey: async () => { throw new Error('x'); }, encryptDataKey: async () => { throw new Error('region down'); } };
    const sealed = await createEnvelope({ kms: primary, additionalWrapping: [good] }).seal('w');
    await expect(createEnvelope({ kms: primary, additionalWrapping: [good, { kms: failing, keyId: 'k' }] }).seal('w')).rejects.toMatchObject({ code: 'ERR_KMS' });
    const reader = createEnvelope({ kms: primary });
    expect(await reader.openString(sealed)).toBe('w');
    // The key a rewrap wraps anew is the opened one (a copy of what the provider handed out): seen through the target.
    const target = breakGlass();
    const given: Uint8Array[] = [];
    const spy: KeyProvider = { id: target.id, generateDataKey: (r) => target.generateDataKey(r), decryptDataKey: (r) => target.decryptDataKey(r), encryptDataKey: (r) => (given.push(r.plaintextKey), target.encryptDataKey(r)) };
    await rewrap(reader, sealed, { addWrappedKeys: [{ kms: spy, keyId: 'break-glass' }] });
    expect(primary.calls).toEqual({ generate: 2, decrypt: 2 });
    expect(primary.allWiped()).toBe(true);
    expect(given).toHaveLength(1);
    expect(given[0]!.every((b) => b === 0)).toBe(true);
  });

  it('limits and options are checked at createEnvelope, before any KMS call', () => {
    const target = { kms: region(sh, 'ap-shanghai'), keyId: sh.keyId };
    expect(() => createEnvelope({ kms: region(gz, 'x'), additionalWrapping: Array.from({ length: 8 }, () => target) })).toThrow(RangeError);
    expect(() => createEnvelope({ kms: region(gz, 'x'), additionalWrapping: Array.from({ length: 7 }, () => target) })).not.toThrow();
    expect(() => createEnvelope({ kms: region(gz, 'x'), format: 1, additionalWrapping: [target] })).toThrow(/format 2/);
    const noEncrypt: KeyProvider = { id: 'bare', generateDataKey: async () => ({ keyId: 'k', plaintextKey: new Uint8Array(32), ciphertextBlob: 'b' }), decryptDataKey: async () => new Uint8Array(32) };
    expect(() => createEnvelope({ kms: region(gz, 'x'), additionalWrapping: [{ kms: noEncrypt, keyId: 'k' }] })).toThrow(/encryptDataKey/);
    expect(() => createEnvelope({ kms: region(gz, 'x'), additionalWrapping: [{ kms: breakGlass(), keyId: '' }] })).toThrow(TypeError);
    for (const bad of [0, 17, 1.5]) expect(() => createEnvelope({ kms: region(gz, 'x'), maxKmsAttempts: bad })).toThrow(RangeError);
    expect(gz.emulator.stats().calls).toEqual({});
  });
});

describe('open: order, cap and faults', () => {
  it('with one region down (every call refused), open succeeds through the other within the deadline', async () => {
    const sealed = await sealTwoRegions();
    gz.emulator.setFaults({ http503Rate: 1 });
    const reader = listening();
    const envelope = createEnvelope({ kms: region(gz, 'ap-guangzhou'), fallbackKms: [region(sh, 'ap-shanghai')], onEvent: reader.onEvent });
    expect(await envelope.openString(sealed, { signal: AbortSignal.timeout(15_000) })).toBe('two regions');
    // Guangzhou tried on its own blob and on Shanghai's (both refused), then Shanghai on Guangzhou's blob (refused), then its own.
    expect(used(reader.events)).toEqual([{ type: 'wrapped-key-used', provider: 'tencent', keyId: sh.keyId, index: 1, attempt: 4 }]);
  });

  it('maxKmsAttempts caps the KMS calls of one open', async () => {
    const sealed = await sealTwoRegions();
    gz.emulator.setFaults({ http503Rate: 1 });
    const envelope = createEnvelope({ kms: region(gz, 'ap-guangzhou', { retry: { limit: 0 } }), fallbackKms: [region(sh, 'ap-shanghai')], maxKmsAttempts: 3 });
    await expect(envelope.open(sealed)).rejects.toMatchObject({ code: expect.stringMatching(/ERR_KMS|ERR_DECRYPTION_FAILED/) });
    expect(calls(gz, 'Decrypt') + calls(sh, 'Decrypt')).toBe(3);
  });

  it('the key commitment decides: a wrapped key that decrypts to another data key is rejected', async () => {
    const context = { tenant: 'a' };
    const sealed = await sealTwoRegions('mine', context);
    const other = parseHeader(await sealTwoRegions('other', context));
    const header = parseHeader(sealed);
    // Guangzhou's wrapped key of another message, same CMK and context: it decrypts, to the wrong data key.
    const swapped = concat(replaceWrappedKeys(header, [other.wrappedKeys[0]!, header.wrappedKeys[1]!]), sealed.subarray(header.length));
    await expect(createEnvelope({ kms: region(gz, 'ap-guangzhou') }).open(swapped)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    // Shanghai's reader never gets a key from the swapped blob, and opens with its own.
    expect(await createEnvelope({ kms: region(sh, 'ap-shanghai') }).openString(swapped)).toBe('mine');
  });

  it('messages of one wrapped key (format 1 and 2) open as before', async () => {
    for (const format of [1, 2] as const) {
      const envelope = createEnvelope({ kms: region(gz, 'ap-guangzhou'), format });
      expect(await envelope.openString(await envelope.seal('single'))).toBe('single');
    }
  });
});

describe('the largest header', () => {
  it('8 wrapped keys of the largest size stream open in small pieces (MAX_HEADER_LENGTH is what a streaming reader buffers)', async () => {
    expect(MAX_HEADER_LENGTH).toBe(7 + 16384 + 1 + 8 * (1 + 32 + 2 + 1024 + 2 + 8192));
    const kms = breakGlass();
    const envelope = createEnvelope({ kms, format: 2, compact: false });
    const sealed = await envelope.seal(new Uint8Array(randomBytes(50_000)));
    const header = parseHeader(sealed);
    const junk = { provider: 'p'.repeat(32), keyId: 'k'.repeat(1024), ciphertextBlob: 'b'.repeat(8192) };
    const big = concat(replaceWrappedKeys(header, [...Array.from({ length: 7 }, () => junk), header.wrappedKeys[0]!]), sealed.subarray(header.length));
    expect(parseHeader(big).length).toBe(header.authenticated.length + 1 + 7 * 9253 + (header.length - header.authenticated.length - 1));
    const pieces = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < big.length; at += 997) controller.enqueue(big.slice(at, at + 997));
        controller.close();
      },
    });
    const chunks: Uint8Array[] = [];
    for await (const chunk of pieces.pipeThrough(openStream(envelope))) chunks.push(chunk);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(await envelope.open(sealed)));
  });
});

describe('rewrap adds and removes wrapped keys, the payload untouched', () => {
  it('adds a region and removes the first one; authenticated bytes and payload byte for byte', async () => {
    const gzKms = region(gz, 'ap-guangzhou');
    const writer = createEnvelope({ kms: gzKms, format: 2 });
    const big = randomBytes(40_000);
    for (const plaintext of [new Uint8Array(randomBytes(100)), new Uint8Array(big)]) {
      const sealed = await writer.seal(plaintext, { context: { k: 'v' } });
      const header = parseHeader(sealed);
      const added = await rewrap(writer, sealed, { addWrappedKeys: [{ kms: region(sh, 'ap-shanghai'), keyId: sh.keyId }] });
      const addedHeader = parseHeader(added);
      expect(addedHeader.wrappedKeys.map((w) => w.keyId)).toEqual([gz.keyId, sh.keyId]);
      expect(addedHeader.authenticated).toEqual(header.authenticated);
      expect(added.subarray(addedHeader.length)).toEqual(sealed.subarray(header.length));
      const removed = await rewrap(writer, added, { removeWrappedKeys: [{ provider: 'tencent', keyId: gz.keyId }] });
      const removedHeader = parseHeader(removed);
      expect(removedHeader.wrappedKeys.map((w) => w.keyId)).toEqual([sh.keyId]);
      expect(removed.subarray(removedHeader.length)).toEqual(sealed.subarray(header.length));
      expect(await createEnvelope({ kms: region(sh, 'ap-shanghai') }).open(removed)).toEqual(plaintext);
      // Guangzhou's wrapped key is gone: its reader cannot open the message any more.
      await expect(createEnvelope({ kms: gzKms }).open(removed)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    }
  });

  it('refuses to remove the last wrapped key, to exceed 8, or to edit a format-1 message; nothing is called', async () => {
    const gzKms = region(gz, 'ap-guangzhou');
    const v2 = await createEnvelope({ kms: gzKms, format: 2 }).seal('x');
    const v1 = await createEnvelope({ kms: gzKms }).seal('x');
    const envelope = createEnvelope({ kms: gzKms });
    gz.emulator.resetStats();
    await expect(rewrap(envelope, v2, { removeWrappedKeys: [{ provider: 'tencent', keyId: gz.keyId }] })).rejects.toThrow(RangeError);
    const target = { kms: breakGlass(), keyId: 'break-glass' };
    await expect(rewrap(envelope, v2, { addWrappedKeys: Array.from({ length: 8 }, () => target) })).rejects.toThrow(RangeError);
    await expect(rewrap(envelope, v1, { addWrappedKeys: [target] })).rejects.toThrow(/format-1/);
    expect(gz.emulator.stats().calls).toEqual({});
  });

  it('a wrapped key that decrypts to another data key is never copied by an add', async () => {
    const gzKms = region(gz, 'ap-guangzhou');
    const writer = createEnvelope({ kms: gzKms, format: 2 });
    const sealed = await writer.seal('mine', { context: { t: '1' } });
    const other = parseHeader(await writer.seal('other', { context: { t: '1' } }));
    const header = parseHeader(sealed);
    const swapped = concat(replaceWrappedKeys(header, [other.wrappedKeys[0]!]), sealed.subarray(header.length));
    await expect(rewrap(writer, swapped, { addWrappedKeys: [{ kms: breakGlass(), keyId: 'break-glass' }] })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
