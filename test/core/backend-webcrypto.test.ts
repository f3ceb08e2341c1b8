/**
 * The WebCrypto backend (crypto.subtle, which Node 20 has too): the Wycheproof AES-GCM and C2SP
 * chunked vectors on its asynchronous AEAD, whole and streamed; byte-identical output to the
 * node backend on random inputs; and how it is chosen.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AsyncAead } from '../../src/core/backend.ts';
import { createNodeBackend } from '../../src/core/backend-node.ts';
import { nobleBackend } from '../../src/core/backend-noble.ts';
import { createWebCryptoBackend, testing as backendWebcryptoTesting } from '../../src/core/backend-webcrypto.ts';
import { CHUNK_SIZE, PayloadSealer, plaintextLength, sealedLength } from '../../src/core/chunked.ts';
import { AsyncStreamOpener, AsyncStreamSealer, openPayloadAsync, openPayloadRangeAsync, sealAllAsync, testing as chunkedAsyncTesting } from '../../src/core/chunked-async.ts';
import { DecryptionFailedError } from '../../src/core/errors.ts';
import { selectBackend } from '../../src/core/select-backend.ts';
import { COBBLESTONE_128, COBBLESTONE_256, type PayloadSuite } from '../../src/core/suites.ts';
import { createEnvelope, decryptCache, encryptionCache, LocalKms, openSync, sealSync } from '../../src/index.ts';
import { hex, readVectors, sealPayload, unhex } from '../helpers.ts';
const { AsyncChunkKey } = chunkedAsyncTesting;
const { globalSubtle } = backendWebcryptoTesting;

const webcrypto = createWebCryptoBackend()!;
const aead: AsyncAead = webcrypto.aead!;
const node = createNodeBackend()!;

interface AeadFile {
  testGroups: { ivSize: number; keySize: number; tagSize: number; tests: { tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: string }[] }[];
}

describe('backend webcrypto: AES-GCM', () => {
  it('passes every Wycheproof AES-GCM vector with a 96-bit IV and a 128-bit tag', async () => {
    const gcm = readVectors<AeadFile>('wycheproof/aes_gcm_test.json');
    let count = 0;
    for (const group of gcm.testGroups.filter((g) => g.ivSize === 96 && g.tagSize === 128)) {
      for (const t of group.tests) {
        const label = `Wycheproof/GCM/${group.keySize}/${t.tcId}`;
        const key = await aead.importKey(unhex(t.key));
        const aad = t.aad ? unhex(t.aad) : undefined;
        const opened = await aead.open(key, unhex(t.iv), unhex(t.ct + t.tag), aad);
        if (t.result === 'valid') {
          expect(opened && hex(opened), label).toBe(t.msg);
          expect(hex(await aead.seal(key, unhex(t.iv), unhex(t.msg), aad)), label).toBe(t.ct + t.tag);
        } else {
          expect(opened, label).toBeUndefined();
        }
        count++;
      }
    }
    expect(count).toBeGreaterThan(190);
  });

  it('imports keys as non-extractable CryptoKeys, for encryption and decryption only', async () => {
    const key = (await aead.importKey(new Uint8Array(32).fill(1))) as unknown as Parameters<typeof globalThis.crypto.subtle.exportKey>[1];
    expect(key.extractable).toBe(false);
    expect([...key.usages].sort()).toEqual(['decrypt', 'encrypt']);
    await expect(globalThis.crypto.subtle.exportKey('raw', key)).rejects.toThrow();
    await expect(aead.importKey(new Uint8Array(20))).rejects.toThrow(RangeError);
  });

  it('copies its inputs before a call returns: a buffer reused at once does not change the result', async () => {
    const key = await aead.importKey(new Uint8Array(32).fill(9));
    const nonce = new Uint8Array(12).fill(1);
    const plaintext = new Uint8Array(CHUNK_SIZE).fill(0x5a);
    const expected = hex(await aead.seal(key, nonce, plaintext));
    const pending = aead.seal(key, nonce, plaintext);
    plaintext.fill(0);
    nonce.fill(0);
    expect(hex(await pending)).toBe(expected);
  });

  it('answers a short or forged ciphertext with undefined, never an exception', async () => {
    const key = await aead.importKey(new Uint8Array(16));
    expect(await aead.open(key, new Uint8Array(12), new Uint8Array(15))).toBeUndefined();
    expect(await aead.open(key, new Uint8Array(12), new Uint8Array(40))).toBeUndefined();
  });
});

interface ChunkedFile {
  testGroups: { tests: { tcId: number; comment: string; flags: string[]; key: string; ctx: string; ct: string; msgLength?: number; msgSha512?: string; result: string }[] }[];
}

const sha512 = (b: Uint8Array): string => createHash('sha512').update(b).digest('hex');
const concat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

/** Streams `ct` through an AsyncStreamOpener in pieces of `step` bytes: what it emitted, and the error. */
async function streamOpen(suite: PayloadSuite, key: Uint8Array, ctx: Uint8Array, ct: Uint8Array, step: number) {
  const released: Uint8Array[] = [];
  const opener = new AsyncStreamOpener(webcrypto, aead, suite, key.slice(), ctx);
  const emit = (chunk: Uint8Array): void => void released.push(chunk);
  try {
    for (let i = 0; i < ct.length; i += step) await opener.push(ct.subarray(i, i + step), emit);
    await opener.end(emit);
    return { plaintext: concat(released), error: undefined, opener, emit };
  } catch (error) {
    return { plaintext: concat(released), error, opener, emit };
  }
}

/** Seals `plaintext` through an AsyncStreamSealer in pieces of `step` bytes. */
async function streamSeal(suite: PayloadSuite, key: Uint8Array, ctx: Uint8Array, salt: Uint8Array, plaintext: Uint8Array, step: number): Promise<Uint8Array> {
  const sealer = new PayloadSealer(webcrypto, suite, key, ctx, salt);
  const parts = [sealer.start()];
  const pipeline = new AsyncStreamSealer(aead, sealer);
  const emit = (chunk: Uint8Array): void => void parts.push(chunk);
  for (let i = 0; i < plaintext.length; i += step) await pipeline.push(plaintext.subarray(i, i + step), emit);
  await pipeline.end(emit);
  return concat(parts);
}

for (const [suite, file] of [
  [COBBLESTONE_256, 'wycheproof/c2sp_chunked_encryption_aes_256_gcm_test.json'],
  [COBBLESTONE_128, 'wycheproof/c2sp_chunked_encryption_aes_128_gcm_test.json'],
] as const) {
  const cases = readVectors<ChunkedFile>(file).testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, ctBytes: new Uint8Array(inflateSync(unhex(t.ct))) })));

  describe(`${suite.name} Wycheproof vectors on backend webcrypto's asynchronous AEAD`, () => {
    it('has all 35 vectors', () => expect(cases.length).toBe(35));

    const reader = (ct: Uint8Array) => async (position: number, length: number) => ct.subarray(position, position + length);
    const range = (t: (typeof cases)[0], start: number, length: number) =>
      openPayloadRangeAsync({ crypto: webcrypto, suite, key: unhex(t.key), context: unhex(t.ctx) }, aead, { read: reader(t.ctBytes), payloadLength: t.ctBytes.length, start, length, verifyLength: true });

    it.each(cases)('tcId $tcId through random access', async (t) => {
      const total = plaintextLength(t.ctBytes.length) ?? 0;
      if (t.result === 'valid') {
        const plain = await range(t, 0, total);
        expect(sha512(plain)).toBe(t.msgSha512);
        expect((await range(t, total, 0)).length).toBe(0);
        for (const [start, length] of [[1, 5], [16380, 10], [plain.length - 3, 3], [100, 3 * CHUNK_SIZE]] as const) {
          if (start < 0 || start + length > plain.length) continue;
          expect(hex(await range(t, start, length))).toBe(hex(plain.subarray(start, start + length)));
        }
      } else {
        await expect(range(t, 0, total)).rejects.toThrow();
        if (!t.flags.includes('ValidFinalChunk')) await expect(range(t, total, 0)).rejects.toThrow();
      }
    });

    it.each(cases)('tcId $tcId: $comment', async (t) => {
      const key = unhex(t.key);
      const ctx = unhex(t.ctx);
      const ct = t.ctBytes;
      if (t.result === 'valid') {
        const plain = await openPayloadAsync({ crypto: webcrypto, suite, key, context: ctx }, aead, ct);
        expect(plain.length).toBe(t.msgLength);
        expect(sha512(plain)).toBe(t.msgSha512);
        // The same salt seals to the same bytes, whole and streamed.
        const again = new Uint8Array(sealedLength(plain.length));
        await sealAllAsync(aead, new PayloadSealer(webcrypto, suite, key, ctx, ct.subarray(0, 24)), plain, again, 0);
        expect(sha512(again)).toBe(sha512(ct));
        expect(sha512(await streamSeal(suite, key, ctx, ct.subarray(0, 24), plain, 5000))).toBe(sha512(ct));
        for (const step of [ct.length, 1000, 16400]) {
          const s = await streamOpen(suite, key, ctx, ct, step);
          expect(s.error).toBeUndefined();
          expect(sha512(s.plaintext)).toBe(t.msgSha512);
        }
      } else {
        await expect(openPayloadAsync({ crypto: webcrypto, suite, key, context: ctx }, aead, ct)).rejects.toThrow(DecryptionFailedError);
        // PartialPlaintext: a stream may release the valid prefix, never more, and keeps failing.
        const prefix = t.msgLength ?? 0;
        for (const step of [ct.length || 1, 1000, 16400]) {
          const s = await streamOpen(suite, key, ctx, ct, step);
          expect(s.error).toBeInstanceOf(DecryptionFailedError);
          expect(s.plaintext.length).toBeLessThanOrEqual(prefix);
          if (s.plaintext.length === prefix && prefix > 0) expect(sha512(s.plaintext)).toBe(t.msgSha512);
          await expect(s.opener.push(new Uint8Array(1), s.emit)).rejects.toThrow(DecryptionFailedError);
          await expect(s.opener.end(s.emit)).rejects.toThrow(DecryptionFailedError);
        }
      }
    });
  });
}

describe('backend webcrypto against backend node', () => {
  it('seals the same payload bytes, and each opens the other, on random keys, contexts, sizes and pieces', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(COBBLESTONE_256, COBBLESTONE_128),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 24, maxLength: 24 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.integer({ min: 0, max: 3 * CHUNK_SIZE + 40 }),
        fc.integer({ min: 1, max: 40000 }),
        async (suite, keyBytes, salt, ctx, size, step) => {
          const key = keyBytes.subarray(0, suite.keyLength);
          const plaintext = Uint8Array.from({ length: size }, (_, i) => (i * 31 + size) & 0xff);
          const byNode = new Uint8Array(sealedLength(size));
          sealPayload(node, suite, key, ctx, salt, plaintext, byNode, 0);
          const byWeb = new Uint8Array(sealedLength(size));
          await sealAllAsync(aead, new PayloadSealer(webcrypto, suite, key, ctx, salt), plaintext, byWeb, 0);
          expect(hex(byWeb)).toBe(hex(byNode));
          expect(hex(await streamSeal(suite, key, ctx, salt, plaintext, step))).toBe(hex(byNode));
          expect(hex(await openPayloadAsync({ crypto: webcrypto, suite, key, context: ctx }, aead, byNode))).toBe(hex(plaintext));
          const streamed = await streamOpen(suite, key, ctx, byNode, step);
          expect(streamed.error).toBeUndefined();
          expect(hex(streamed.plaintext)).toBe(hex(plaintext));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('whole messages: sealed by one envelope backend, opened by the other, strings, bytes and streams', async () => {
    const kms = LocalKms.generate();
    const web = createEnvelope({ kms, backend: 'webcrypto' });
    const nodeEnvelope = createEnvelope({ kms, backend: 'node' });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 * CHUNK_SIZE + 10 }), fc.boolean(), async (size, compactFormat) => {
        const plaintext = Uint8Array.from({ length: size }, (_, i) => (i * 7) & 0xff);
        const format = compactFormat ? 2 : 1;
        const webV = format === 1 ? web : createEnvelope({ kms, backend: 'webcrypto', format });
        const nodeV = format === 1 ? nodeEnvelope : createEnvelope({ kms, backend: 'node', format });
        expect(hex(await nodeV.open(await webV.seal(plaintext, { context: { n: String(size) } })))).toBe(hex(plaintext));
        expect(hex(await webV.open(await nodeV.seal(plaintext, { context: { n: String(size) } })))).toBe(hex(plaintext));
      }),
      { numRuns: 30 },
    );
    expect(await web.openString(await nodeEnvelope.seal('héllo'))).toBe('héllo');
  });

  it('sealSync and openSync (the synchronous path: noble) work with webcrypto selected, in the same bytes', async () => {
    const kms = LocalKms.generate();
    const web = createEnvelope({ kms, backend: 'webcrypto', cache: encryptionCache(), decryptCache: decryptCache(), format: 2 });
    const nodeEnvelope = createEnvelope({ kms, backend: 'node' });
    const context = { row: '1' };
    // The encryption cache has the keys now (compact and chunked payloads have one each).
    await web.seal('warm', { context });
    await web.seal(new Uint8Array(CHUNK_SIZE), { context });
    for (const size of [0, 100, CHUNK_SIZE, CHUNK_SIZE + 1]) {
      const plaintext = new Uint8Array(size).fill(7);
      const sealed = sealSync(web, plaintext, { context });
      expect(await nodeEnvelope.open(sealed)).toEqual(plaintext);
      expect(await web.open(sealed)).toEqual(plaintext); // and the decrypt cache has it
      expect(openSync(web, sealed)).toEqual(plaintext);
    }
  });
});

describe('backend selection', () => {
  it("names 'webcrypto' explicitly; on Node the default stays node:crypto", () => {
    expect(selectBackend('webcrypto').name).toBe('webcrypto');
    expect(selectBackend('webcrypto').aead).toBeDefined();
    expect(selectBackend().name).toBe('node');
    expect(selectBackend('noble')).toBe(nobleBackend);
    expect(globalSubtle()).toBe(globalThis.crypto.subtle);
  });

  it('is the default where crypto.subtle exists and node:crypto does not, with the same bytes (the built package, node:crypto hidden)', async () => {
    const lib = new URL('../../dist/', import.meta.url).href;
    const script = `
      process.getBuiltinModule = undefined; // as in a browser or a Worker: no node: modules
      const { createEnvelope, LocalKms, sealStream } = await import(${JSON.stringify(`${lib}index.js`)});
      const { coreOf } = await import(${JSON.stringify(`${lib}envelope/engine.js`)});
      const kms = new LocalKms({ k: new Uint8Array(32).fill(3) });
      const envelope = createEnvelope({ kms });
      const big = new Uint8Array(40000).fill(9);
      const parts = [];
      const stream = new Blob([big]).stream().pipeThrough(sealStream(envelope, { context: { a: 'b' } }));
      for await (const part of stream) parts.push(Buffer.from(part));
      const sealed = [await envelope.seal('no node:crypto', { context: { a: 'b' } }), Buffer.concat(parts)];
      console.log(JSON.stringify({ backend: coreOf(envelope).backend.name, sealed: sealed.map((s) => Buffer.from(s).toString('base64')) }));`;
    const printed = execFileSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const { backend, sealed } = JSON.parse(printed) as { backend: string; sealed: string[] };
    expect(backend).toBe('webcrypto');
    const reader = createEnvelope({ kms: new LocalKms({ k: new Uint8Array(32).fill(3) }), backend: 'node' });
    expect(await reader.openString(Buffer.from(sealed[0]!, 'base64'))).toBe('no node:crypto');
    expect(await reader.open(Buffer.from(sealed[1]!, 'base64'))).toEqual(new Uint8Array(40000).fill(9));
  });

  it('has no backend without crypto.subtle', () => {
    expect(createWebCryptoBackend(null)).toBeUndefined();
  });

  it('its synchronous methods are noble: the same bytes as the node backend', () => {
    const key = new Uint8Array(32).fill(2);
    const nonce = new Uint8Array(12).fill(3);
    const plaintext = new Uint8Array(100).fill(4);
    const a = new Uint8Array(116);
    const b = new Uint8Array(116);
    webcrypto.gcmSeal(key, nonce, plaintext, a, 0);
    node.gcmSeal(key, nonce, plaintext, b, 0);
    expect(hex(a)).toBe(hex(b));
    expect(webcrypto.hkdfExpandSha512).toBe(nobleBackend.hkdfExpandSha512);
  });

  it('an AsyncChunkKey refuses counters outside the format and use after drop', async () => {
    const key = await AsyncChunkKey.import(aead, { key: new Uint8Array(32), baseNonce: new Uint8Array(12) });
    expect(() => key.seal(2 ** 38, new Uint8Array(0))).toThrow(RangeError);
    expect(() => key.seal(-1, new Uint8Array(0))).toThrow(RangeError);
    key.drop();
    expect(() => key.seal(0, new Uint8Array(0))).toThrow(/dropped/);
  });
});
