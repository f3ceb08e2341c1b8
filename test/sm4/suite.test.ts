/**
 * Suite 03 (SM4-GCM-SM3) through every way in: createEnvelope({ suite: sm4 }) with each backend
 * (the WebCrypto one has no SM4 and falls back to the portable path, same bytes), sealSync, streams,
 * openRange, sealFile/openFile (the AES worker threads stay off), the caches and the key hierarchy.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { type BackendName, createEnvelope, decryptCache, encryptionCache, inspect, LocalKms, openRange, openStream, openSync, sealStream, sealSync } from '../../src/index.ts';
import { openFile, sealFile } from '../../src/node.ts';
import { sm4 } from '../../src/sm4.ts';
import { hex, seededRandom } from '../helpers.ts';
import { InstrumentedProvider } from '../instrumented.ts';

const MASTER = Uint8Array.from({ length: 32 }, (_, i) => i);
const BACKEND_NAMES: BackendName[] = ['node', 'noble', ...(globalThis.crypto?.subtle ? (['webcrypto'] as const) : [])];
const context = { table: 'users', row: '42' };
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream as unknown as AsyncIterable<Uint8Array>) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

function pieces(bytes: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    parts.push(bytes.slice(from, to));
    from = to;
  }
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(part);
      controller.close();
    },
  });
}

describe("createEnvelope({ suite: sm4 })", () => {
  it('seals suite 03 with an AES_128 (16-byte) data key, and every backend seals the same bytes and opens every other\'s', async () => {
    const sealedBy: string[] = [];
    for (const backend of BACKEND_NAMES) {
      const random = seededRandom('sm4 suite: backends');
      const envelope = createEnvelope({ kms: new LocalKms({ default: MASTER }, { randomBytes: random }), suite: sm4, backend, randomBytes: random });
      const sealed = await envelope.seal(new Uint8Array(40_000).fill(7), { context });
      expect(inspect(sealed)).toMatchObject({ suite: 'SM4-GCM-SM3' });
      sealedBy.push(hex(sealed));
    }
    expect(new Set(sealedBy).size).toBe(1);
    for (const backend of BACKEND_NAMES) {
      const reader = createEnvelope({ kms: new LocalKms({ default: MASTER }), backend, suites: [sm4] });
      expect(hex(await reader.open(Buffer.from(sealedBy[0]!, 'hex')))).toBe(hex(new Uint8Array(40_000).fill(7)));
    }
  });

  it("without the import, a suite-03 message fails with UnsupportedSuiteError naming it, before any KMS call; suite: 'sm4' names it too", async () => {
    const sealed = await createEnvelope({ kms: new LocalKms({ default: MASTER }), suite: sm4 }).seal('x', { context });
    const kms = new InstrumentedProvider(new LocalKms({ default: MASTER }));
    const error = await createEnvelope({ kms }).open(sealed).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'UnsupportedSuiteError', code: 'ERR_UNSUPPORTED_SUITE', suite: 3 });
    expect((error as Error).message).toContain("import { sm4 } from 'kms-envelope/sm4'");
    expect(kms.calls.decrypt).toBe(0);
    expect(inspect(sealed)).toMatchObject({ suite: 'SM4-GCM-SM3' });
    expect(() => createEnvelope({ kms, suite: 'sm4' as never })).toThrow(/import \{ sm4 \} from 'kms-envelope\/sm4'/);
  });

  it('asks the KMS for AES_128 and refuses a 32-byte key the provider returns', async () => {
    const kms = new InstrumentedProvider(new LocalKms({ default: MASTER }));
    const specs: string[] = [];
    const spy = { id: kms.id, generateDataKey: (r: Parameters<typeof kms.generateDataKey>[0]) => (specs.push(r.keySpec), kms.generateDataKey(r)), decryptDataKey: kms.decryptDataKey.bind(kms) };
    await createEnvelope({ kms: spy, suite: sm4 }).seal('x');
    expect(specs).toEqual(['AES_128']);
    const wrong = { id: 'local', generateDataKey: (r: Parameters<typeof kms.generateDataKey>[0]) => kms.generateDataKey({ ...r, keySpec: 'AES_256' }), decryptDataKey: kms.decryptDataKey.bind(kms) };
    await expect(createEnvelope({ kms: wrong, suite: sm4 }).seal('x')).rejects.toMatchObject({ code: 'ERR_KMS' });
  });

  it('sealSync and openSync with a cached key, one GenerateDataKey and one Decrypt for many messages', async () => {
    const kms = new InstrumentedProvider(new LocalKms({ default: MASTER }));
    const envelope = createEnvelope({ kms, suite: sm4, cache: encryptionCache(), decryptCache: decryptCache() });
    const first = await envelope.seal('warm', { context });
    const sealed = [first, ...Array.from({ length: 20 }, (_, i) => sealSync(envelope, `record ${i}`, { context }))];
    expect(kms.calls.generate).toBe(1);
    expect(await envelope.openString(first, { context })).toBe('warm');
    for (let i = 1; i < sealed.length; i++) expect(new TextDecoder().decode(openSync(envelope, sealed[i]!, { context }))).toBe(`record ${i - 1}`);
    expect(kms.calls.decrypt).toBe(1);
    // A cached key's HKDF state is SM3's: the cached and the uncached reader agree.
    const fresh = createEnvelope({ kms: new LocalKms({ default: MASTER }), suite: sm4 });
    expect(await fresh.openString(sealed[5]!, { context })).toBe('record 4');
  });

  it('streams: any split of the input seals and opens (property), and a tampered stream releases nothing after the bad chunk', async () => {
    const envelope = createEnvelope({ kms: new LocalKms({ default: MASTER }), suite: sm4 });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 50_000 }), fc.array(fc.nat(), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 6 }), async (length, sealCuts, openCuts) => {
        const plaintext = Uint8Array.from({ length }, (_, i) => (i * 31) & 0xff);
        const sealed = await collect(pieces(plaintext, sealCuts).pipeThrough(sealStream(envelope, { context })));
        expect(sealed[5]).toBe(3);
        expect(hex(await envelope.open(sealed))).toBe(hex(plaintext));
        expect(hex(await collect(pieces(sealed, openCuts).pipeThrough(openStream(envelope))))).toBe(hex(plaintext));
      }),
      { numRuns: 15 },
    );
    const sealed = await envelope.seal(new Uint8Array(40_000), { context });
    sealed[sealed.length - 20]! ^= 1;
    await expect(collect(pieces(sealed, []).pipeThrough(openStream(envelope)))).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });

  it('openRange decrypts only the chunks asked for, across chunk boundaries', async () => {
    const envelope = createEnvelope({ kms: new LocalKms({ default: MASTER }), suite: sm4 });
    const plaintext = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 13) & 0xff);
    const sealed = await envelope.seal(plaintext, { context });
    const source = { size: sealed.length, read: async (position: number, length: number) => sealed.slice(position, position + length) };
    for (const [offset, length] of [[0, 10], [16_380, 10], [50_000, 20_000], [69_999, 1], [0, 0]] as const) {
      expect(hex(await openRange(envelope, source, offset, length))).toBe(hex(plaintext.subarray(offset, offset + length)));
    }
    const bad = sealed.slice();
    bad[bad.length - 100]! ^= 1; // in the final chunk, which verifyLength opens
    await expect(openRange(envelope, { size: bad.length, read: async (p: number, n: number) => bad.slice(p, p + n) }, 0, 10)).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });

  it('sealFile and openFile, with parallel workers asked for: suite 03 stays on this thread and opens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmse-sm4-'));
    dirs.push(dir);
    const envelope = createEnvelope({ kms: new LocalKms({ default: MASTER }), suite: sm4 });
    const plaintext = Buffer.alloc(3 * 1024 * 1024 + 5, 0x42);
    writeFileSync(join(dir, 'a'), plaintext);
    await sealFile(envelope, join(dir, 'a'), join(dir, 'a.kmse'), { context, parallel: { minBytes: 0, workers: 2 } });
    const sealed = readFileSync(join(dir, 'a.kmse'));
    expect(sealed[5]).toBe(3);
    // Opened in memory by the single-threaded SM4 path: a worker's AES-GCM chunk would fail here.
    expect(Buffer.from(await envelope.open(sealed)).equals(plaintext)).toBe(true);
    await openFile(envelope, join(dir, 'a.kmse'), join(dir, 'a.out'), { parallel: { minBytes: 0, workers: 2 } });
    expect(readFileSync(join(dir, 'a.out')).equals(plaintext)).toBe(true);
  });

  it('under a key hierarchy (version 2, compact and chunked): one GenerateDataKey for the partition, and another envelope opens', async () => {
    const kms = new InstrumentedProvider(new LocalKms({ default: MASTER }));
    const store = new MemoryKeyStore();
    const writer = createEnvelope({ hierarchy: createKeyHierarchy({ store, kms }), suite: sm4 });
    const small = await Promise.all(Array.from({ length: 10 }, (_, i) => writer.seal(`field ${i}`, { context, partition: 'tenant-1' })));
    const big = await writer.seal(new Uint8Array(20_000).fill(3), { context, partition: 'tenant-1' });
    expect(kms.calls.generate).toBe(1);
    expect(inspect(small[0]!)).toMatchObject({ version: 2, suite: 'SM4-GCM-SM3', compact: true, keySource: 'intermediate' });
    expect(inspect(big)).toMatchObject({ compact: false });
    const reader = createEnvelope({ hierarchy: createKeyHierarchy({ store, kms: new LocalKms({ default: MASTER }) }), suites: [sm4] });
    for (let i = 0; i < small.length; i++) expect(await reader.openString(small[i]!, { context })).toBe(`field ${i}`);
    expect(hex(await reader.open(big, { context }))).toBe(hex(new Uint8Array(20_000).fill(3)));
    // The same partition's AES messages use another derived input key: their bytes never open as SM4.
    const aes = createEnvelope({ hierarchy: createKeyHierarchy({ store, kms }), suite: 'cobblestone-128' });
    const aesSealed = await aes.seal('aes', { context, partition: 'tenant-1' });
    await expect(reader.open(Object.assign(aesSealed.slice(), { 5: 3 }), { context })).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });
});
