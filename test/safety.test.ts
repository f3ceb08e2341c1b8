import { inspect as nodeInspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { openPayload, PayloadOpener, sealedLength } from '../src/core/chunked.ts';
import { COBBLESTONE_256 } from '../src/core/suites.ts';
import { createEnvelope, LocalKms } from '../src/index.ts';
import { InstrumentedProvider, recordingBackend } from './instrumented.ts';
import { BACKENDS, sealPayload } from './helpers.ts';

const zero = (b: Uint8Array): boolean => b.every((x) => x === 0);

describe('every plaintext data key is wiped after use, on every path', () => {
  it('after a successful seal and open', async () => {
    const provider = new InstrumentedProvider();
    const envelope = createEnvelope({ kms: provider });
    const sealed = await envelope.seal('secret', { context: { a: 'b' } });
    await envelope.open(sealed);
    expect(provider.handedOut.length).toBe(2);
    expect(provider.allWiped()).toBe(true);
  });

  it('when the payload fails to authenticate', async () => {
    const provider = new InstrumentedProvider();
    const envelope = createEnvelope({ kms: provider });
    const sealed = await envelope.seal('secret');
    sealed[sealed.length - 1]! ^= 1;
    await expect(envelope.open(sealed)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    expect(provider.calls.decrypt).toBe(1);
    expect(provider.allWiped()).toBe(true);
  });

  it('when the provider returns a data key of the wrong length (seal and open)', async () => {
    const provider = new InstrumentedProvider();
    const envelope = createEnvelope({ kms: provider });
    const sealed = await envelope.seal('secret');
    provider.mutateKey = (key) => {
      const longer = new Uint8Array(key.length + 1).fill(9);
      key.fill(0);
      return longer;
    };
    await expect(envelope.seal('secret')).rejects.toMatchObject({ code: 'ERR_KMS' });
    await expect(envelope.open(sealed)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    expect(provider.handedOut.length).toBe(3);
    expect(provider.allWiped()).toBe(true);
  });

  it('when encoding the header fails after the data key was generated', async () => {
    const provider = new InstrumentedProvider();
    const inner = provider.inner;
    const envelope = createEnvelope({
      kms: {
        id: 'local',
        generateDataKey: async (r) => ({ ...(await provider.generateDataKey(r)), keyId: 'k'.repeat(5000) }),
        decryptDataKey: (r) => inner.decryptDataKey(r),
      },
    });
    // An oversized key id is the provider's bad response, not the caller's bad argument.
    await expect(envelope.seal('secret')).rejects.toMatchObject({ code: 'ERR_KMS', kind: 'bad-response' });
    expect(provider.allWiped()).toBe(true);
  });
});

describe.each(BACKENDS)('derived keys and nonces are wiped (backend $name)', (inner) => {
  const key = () => new Uint8Array(32).fill(5);
  const context = new Uint8Array([1, 2, 3]);

  it('by sealPayload and a successful openPayload', () => {
    const { backend, seen } = recordingBackend(inner);
    const plaintext = new Uint8Array(20000).fill(3);
    const out = new Uint8Array(sealedLength(plaintext.length));
    sealPayload(backend, COBBLESTONE_256, key(), context, new Uint8Array(24), plaintext, out, 0);
    openPayload({ crypto: backend, suite: COBBLESTONE_256, key: key(), context: context }, out);
    expect(seen.length).toBeGreaterThan(4);
    expect(seen.every(zero)).toBe(true);
  });

  it('by a failed openPayload (bad tag, bad commitment)', () => {
    const { backend, seen } = recordingBackend(inner);
    const out = new Uint8Array(sealedLength(100));
    sealPayload(inner, COBBLESTONE_256, key(), context, new Uint8Array(24), new Uint8Array(100), out, 0);
    const badTag = out.slice();
    badTag[badTag.length - 1]! ^= 1;
    expect(() => openPayload({ crypto: backend, suite: COBBLESTONE_256, key: key(), context: context }, badTag)).toThrow();
    const badCommitment = out.slice();
    badCommitment[30]! ^= 1;
    expect(() => openPayload({ crypto: backend, suite: COBBLESTONE_256, key: key(), context: context }, badCommitment)).toThrow();
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.every(zero)).toBe(true);
  });

  it('by a streaming opener that ends, fails, or is abandoned', () => {
    const { backend, seen } = recordingBackend(inner);
    const out = new Uint8Array(sealedLength(40000));
    sealPayload(inner, COBBLESTONE_256, key(), context, new Uint8Array(24), new Uint8Array(40000), out, 0);
    const ok = new PayloadOpener(backend, COBBLESTONE_256, key(), context);
    ok.push(out);
    ok.end();
    const failing = new PayloadOpener(backend, COBBLESTONE_256, key(), context);
    expect(() => failing.end()).toThrow();
    const abandoned = new PayloadOpener(backend, COBBLESTONE_256, key(), context);
    abandoned.push(out.subarray(0, 20000));
    abandoned.destroy();
    expect(seen.every(zero)).toBe(true);
  });
});

describe('no key, secret or plaintext in errors, logs, toString or inspect', () => {
  it('LocalKms shows key ids only', () => {
    const master = new Uint8Array(32).fill(0x41);
    const kms = new LocalKms({ main: master });
    for (const shown of [nodeInspect(kms, { showHidden: true, depth: 9 }), String(kms), JSON.stringify(kms)]) {
      expect(shown).toContain('main');
      expect(shown).not.toMatch(/QUFB|4141|65, 65/);
    }
  });

  it('errors of a failed open carry no plaintext, key or context value', async () => {
    const kms = LocalKms.generate();
    const envelope = createEnvelope({ kms });
    const sealed = await envelope.seal('TOPSECRET-PLAINTEXT', { context: { secretish: 'VALUE-123' }, detachedContext: true });
    const errors: unknown[] = [];
    await envelope.open(sealed, { context: { secretish: 'VALUE-124' } }).catch((e: unknown) => errors.push(e));
    sealed[sealed.length - 3]! ^= 1;
    await envelope.open(sealed, { context: { secretish: 'VALUE-123' } }).catch((e: unknown) => errors.push(e));
    expect(errors.length).toBe(2);
    for (const e of errors) {
      const shown = nodeInspect(e, { showHidden: true, depth: 9 });
      expect(shown).toContain('decryption failed');
      expect(shown).not.toMatch(/TOPSECRET|VALUE-12/);
    }
  });
});
