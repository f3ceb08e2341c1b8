/**
 * Cancellation: the `signal` option of seal, open (openString, openWithInfo), sealMany/openMany and
 * the WHATWG streams. An abort rejects with the signal's own reason, wipes every key (one the KMS
 * sends after the abort too), and a signal already aborted rejects before any KMS call. The signal
 * reaches the KMS call (GenerateDataKeyRequest/DecryptDataKeyRequest.signal), and the Tencent
 * transport ends its attempt and its waits on it. Files: test/node/files-abort.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, decryptCache, encryptionCache, LocalKms, openMany, openStream, sealMany, sealStream, TencentKms } from '../../src/index.ts';
import type { DataKey, DecryptDataKeyRequest, GenerateDataKeyRequest, KeyProvider } from '../../src/kms/key-provider.ts';
import { type RunningEmulator, startEmulator } from '../../src/tools/emulator/index.ts';
import { InstrumentedProvider } from '../instrumented.ts';

/**
 * A provider that holds every call until released, ignoring the signal (as a third-party provider
 * may), and records the signals it was given and every key it handed out.
 */
class HeldProvider implements KeyProvider {
  readonly id = 'local';
  readonly inner = new InstrumentedProvider(LocalKms.generate());
  readonly signals: (AbortSignal | undefined)[] = [];
  calls = 0;
  #held: (() => void)[] = [];
  hold = true;

  async generateDataKey(request: GenerateDataKeyRequest): Promise<DataKey> {
    this.calls++;
    this.signals.push(request.signal);
    await this.#wait();
    return this.inner.generateDataKey(request);
  }

  async decryptDataKey(request: DecryptDataKeyRequest): Promise<Uint8Array> {
    this.calls++;
    this.signals.push(request.signal);
    await this.#wait();
    return this.inner.decryptDataKey(request);
  }

  /** Lets every held call go on. */
  release(): void {
    this.hold = false;
    for (const go of this.#held.splice(0)) go();
  }

  /** Resolves once `n` calls have arrived. */
  async arrived(n: number): Promise<void> {
    while (this.calls < n) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  #wait(): Promise<void> {
    return this.hold ? new Promise((resolve) => this.#held.push(resolve)) : Promise.resolve();
  }
}

const settle = (ms = 20) => new Promise((resolve) => setTimeout(resolve, ms));
const allWiped = (keys: Uint8Array[]) => keys.every((k) => k.every((b) => b === 0));

describe('cancellation: a signal already aborted', { timeout: 5000 }, () => {
  it('rejects seal, open, openString, openWithInfo, sealMany, openMany, sealStream and openStream with its reason, before any KMS call', async () => {
    const kms = new InstrumentedProvider(LocalKms.generate());
    const envelope = createEnvelope({ kms, cache: encryptionCache(), decryptCache: decryptCache() });
    const sealed = await envelope.seal('x');
    const before = { ...kms.calls };
    const reason = new Error('already aborted');
    const signal = AbortSignal.abort(reason);
    await expect(envelope.seal('x', { signal })).rejects.toBe(reason);
    await expect(envelope.open(sealed, { signal })).rejects.toBe(reason);
    await expect(envelope.openString(sealed, { signal })).rejects.toBe(reason);
    await expect(envelope.openWithInfo(sealed, { signal })).rejects.toBe(reason);
    await expect(sealMany(envelope, ['a', 'b'], { signal })).rejects.toBe(reason);
    await expect(openMany(envelope, [sealed, sealed], { signal })).rejects.toBe(reason);
    await expect(new Blob(['x']).stream().pipeThrough(sealStream(envelope, { signal })).pipeTo(new WritableStream())).rejects.toBe(reason);
    await expect(new Blob([sealed]).stream().pipeThrough(openStream(envelope, { signal })).pipeTo(new WritableStream())).rejects.toBe(reason);
    expect(kms.calls).toEqual(before);
    await envelope.close();
  });

  it('a signal that is not an AbortSignal is a TypeError', async () => {
    const envelope = createEnvelope({ kms: LocalKms.generate() });
    // @ts-expect-error wrong type on purpose
    await expect(envelope.seal('x', { signal: { aborted: 'no' } })).rejects.toThrow(/"signal" expected an AbortSignal/);
  });
});

describe('cancellation: an abort during the KMS call', { timeout: 5000 }, () => {
  it('rejects seal and open at once with the reason, passes the signal to the provider, and wipes the key the provider sends later', async () => {
    const kms = new HeldProvider();
    const envelope = createEnvelope({ kms });
    kms.hold = false;
    const sealed = await envelope.seal('secret');
    kms.hold = true;
    for (const run of [(signal: AbortSignal) => envelope.seal('secret', { signal }), (signal: AbortSignal) => envelope.open(sealed, { signal })]) {
      const controller = new AbortController();
      const calls = kms.calls;
      const pending = run(controller.signal);
      await kms.arrived(calls + 1);
      expect(kms.signals.at(-1)).toBeInstanceOf(AbortSignal);
      const reason = new Error('cancelled by the caller');
      controller.abort(reason);
      await expect(pending).rejects.toBe(reason);
    }
    kms.release(); // the provider ignored the signal: its keys arrive after the aborts
    await settle();
    expect(kms.inner.handedOut.length).toBe(3);
    expect(allWiped(kms.inner.handedOut)).toBe(true);
  });

  it('concurrent opens share one Decrypt: one that aborts leaves the others their key; the shared call is aborted only when every waiter has gone', async () => {
    const kms = new HeldProvider();
    const envelope = createEnvelope({ kms });
    kms.hold = false;
    const sealed = await envelope.seal('shared');
    kms.hold = true;
    const leaving = new AbortController();
    const staying = new AbortController();
    const a = envelope.openString(sealed, { signal: leaving.signal });
    const b = envelope.openString(sealed, { signal: staying.signal });
    const c = envelope.openString(sealed);
    await kms.arrived(2);
    leaving.abort(new Error('a left'));
    await expect(a).rejects.toThrow('a left');
    expect(kms.signals.at(-1)!.aborted).toBe(false);
    kms.release();
    expect(await b).toBe('shared');
    expect(await c).toBe('shared');
    expect(kms.calls).toBe(2); // GenerateDataKey, then one Decrypt for all three

    kms.hold = true;
    const first = new AbortController();
    const second = new AbortController();
    const x = envelope.open(sealed, { signal: first.signal });
    const y = envelope.open(sealed, { signal: second.signal });
    await kms.arrived(3);
    first.abort(new Error('x left'));
    await expect(x).rejects.toThrow('x left');
    expect(kms.signals.at(-1)!.aborted).toBe(false);
    second.abort(new Error('y left'));
    await expect(y).rejects.toThrow('y left');
    expect(kms.signals.at(-1)!.aborted).toBe(true); // nobody waits any more: the KMS call is told
    kms.release();
    await settle();
    expect(allWiped(kms.inner.handedOut)).toBe(true);
  });

  it('without a signal no abort machinery is made: no AbortController, and the KMS calls get no signal', async () => {
    const kms = new HeldProvider();
    kms.hold = false;
    const envelope = createEnvelope({ kms });
    const Original = globalThis.AbortController;
    let made = 0;
    globalThis.AbortController = class extends Original {
      constructor() {
        super();
        made++;
      }
    };
    try {
      const sealed = await envelope.seal('fresh');
      expect(await Promise.all([envelope.openString(sealed), envelope.openString(sealed)])).toEqual(['fresh', 'fresh']);
    } finally {
      globalThis.AbortController = Original;
    }
    expect(made).toBe(0);
    expect(kms.signals).toEqual([undefined, undefined]); // one GenerateDataKey, one Decrypt shared by both opens
    await envelope.close();
  });

  it('concurrent seals share one GenerateDataKey (encryption cache): one that aborts leaves the others their key', async () => {
    const kms = new HeldProvider();
    const envelope = createEnvelope({ kms, cache: encryptionCache() });
    const leaving = new AbortController();
    const a = envelope.seal('a', { signal: leaving.signal });
    const b = envelope.seal('b');
    await kms.arrived(1);
    leaving.abort(new Error('a left'));
    await expect(a).rejects.toThrow('a left');
    expect(kms.signals[0]!.aborted).toBe(false);
    kms.release();
    const sealed = await b;
    expect(await envelope.openString(sealed)).toBe('b');
    expect(kms.calls).toBe(2);
    await envelope.close();
    expect(allWiped(kms.inner.handedOut)).toBe(true);
  });

  it('sealMany and openMany reject with the reason, and no plaintext of the batch is left unwiped', async () => {
    const kms = new HeldProvider();
    kms.hold = false;
    const envelope = createEnvelope({ kms });
    const sealed = await Promise.all(['one', 'two', 'three'].map((t) => envelope.seal(t)));
    kms.hold = true;
    const controller = new AbortController();
    const opening = openMany(envelope, sealed, { concurrency: 3, signal: controller.signal });
    await kms.arrived(6);
    const reason = new Error('batch cancelled');
    controller.abort(reason);
    await expect(opening).rejects.toBe(reason);
    const sealing = sealMany(envelope, ['p', 'q'], { signal: AbortSignal.timeout(1) });
    await expect(sealing).rejects.toMatchObject({ name: 'TimeoutError' });
    kms.release();
    await settle();
    expect(allWiped(kms.inner.handedOut)).toBe(true);
  });

  it('sealStream and openStream error with the reason when the signal aborts mid-stream, and wipe their keys', async () => {
    const kms = new InstrumentedProvider(LocalKms.generate());
    const envelope = createEnvelope({ kms });
    const sealed = await envelope.seal(new Uint8Array(100_000));
    for (const [make, input] of [
      [(signal: AbortSignal) => sealStream(envelope, { signal }), new Uint8Array(100_000)],
      [(signal: AbortSignal) => openStream(envelope, { signal }), sealed],
    ] as const) {
      const controller = new AbortController();
      const reason = new Error('stream cancelled');
      let pieces = 0;
      const source = new ReadableStream<Uint8Array>({
        pull(c) {
          if (pieces === 3) controller.abort(reason);
          if (pieces * 16384 >= input.length) return c.close();
          c.enqueue(input.slice(pieces * 16384, ++pieces * 16384));
        },
      });
      await expect(source.pipeThrough(make(controller.signal)).pipeTo(new WritableStream())).rejects.toBe(reason);
    }
    expect(allWiped(kms.handedOut)).toBe(true);
  });
});

describe('cancellation through the Tencent transport (emulator, 127.0.0.1)', { timeout: 5000 }, () => {
  let emulator: RunningEmulator;
  let keyId: string;
  beforeAll(async () => {
    emulator = await startEmulator();
    keyId = emulator.createKey('abort');
  });
  afterAll(() => emulator.close());

  it('an abort during a slow KMS call (latency fault) rejects seal and open promptly with the reason', async () => {
    const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, timeoutMs: 20_000, deadlineMs: 30_000 });
    const envelope = createEnvelope({ kms });
    const sealed = await envelope.seal('slow');
    emulator.setFaults({ latencyMs: 20_000 });
    try {
      for (const run of [(signal: AbortSignal) => envelope.seal('slow', { signal }), (signal: AbortSignal) => envelope.open(sealed, { signal })]) {
        const controller = new AbortController();
        const started = Date.now();
        const pending = run(controller.signal);
        await settle(50);
        const reason = new Error('user pressed cancel');
        controller.abort(reason);
        await expect(pending).rejects.toBe(reason);
        expect(Date.now() - started).toBeLessThan(10_000); // the 20 s answer is not waited for
      }
    } finally {
      emulator.setFaults({});
    }
  });

  it('an abort while waiting in the client rate limiter rejects with the reason', async () => {
    const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials[0]!, rateLimit: { qps: 0.1, burst: 1 } });
    const envelope = createEnvelope({ kms });
    await envelope.seal('first');
    const controller = new AbortController();
    const pending = envelope.seal('second', { signal: controller.signal }); // 10 s to the next token
    await settle(50);
    const reason = new Error('not waiting for the limiter');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });
});
