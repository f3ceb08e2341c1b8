/**
 * The package in a real Chromium (Debian's, headless, driven by playwright-core): the browser entry
 * bundled from dist/ as a user's bundler would, every vector file on every backend the page has,
 * seal/open, a 256 MiB Blob through sealStream/openStream, openRange over a Blob, tampered bytes,
 * LocalKms, and TencentKms against the emulator from the page's origin (CORS).
 *
 * Run with `npm run test:browser` (builds first). Without Chromium the suite is skipped with the
 * reason printed; under CI=true (.ci/run, which installs Chromium) a missing Chromium fails it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, LocalKms, TencentKms } from '../../src/index.ts';
import { type EmulatorFixture, useEmulator } from '../fixtures/emulator.ts';
import { hex, readVectors, unhex } from '../helpers.ts';
import { bundlePage, chromiumMissing, openPage, type PageServer, type PageSession, startPageServer } from './harness.ts';

const missing = chromiumMissing();
const inCi = process.env.CI === 'true' || process.env.CI === '1';
if (missing && !inCi) console.log(`test/browser/chromium.test.ts skipped: ${missing}`);

/** The backends a page has (no node:crypto there). */
const BACKENDS = ['noble', 'webcrypto'];
/** What a page gets when it names no backend: crypto.subtle, on a secure origin such as 127.0.0.1. */
const DEFAULT_BACKEND = 'webcrypto';
/** The big stream: 256 MiB on the default backend, 32 MiB on the others (the same code, slower). */
const BIG_MIB = 256;
const OTHER_MIB = 32;

// What the vector files hold, counted here, so that a page that skipped cases fails.
interface AeadGroups {
  testGroups: { ivSize: number; keySize: number; tagSize: number; tests: { key: string; result: string }[] }[];
}
const gcmCases = readVectors<AeadGroups>('wycheproof/aes_gcm_test.json').testGroups.filter((g) => g.ivSize === 96 && g.tagSize === 128).flatMap((g) => g.tests);
// The asynchronous AEAD (WebCrypto) takes 128- and 256-bit keys only in Chromium (no AES-192).
const gcmAeadCases = gcmCases.filter((t) => t.key.length === 32 || t.key.length === 64);
const hkdfValid = readVectors<{ testGroups: { tests: { result: string }[] }[] }>('wycheproof/hkdf_sha512_test.json')
  .testGroups.flatMap((g) => g.tests)
  .filter((t) => t.result === 'valid');
const chunkedCases = ['aes_256', 'aes_128'].flatMap((s) =>
  readVectors<{ testGroups: { tests: unknown[] }[] }>(`wycheproof/c2sp_chunked_encryption_${s}_gcm_test.json`).testGroups.flatMap((g) => g.tests),
);
const v1Cases = readVectors<{ cases: unknown[] }>('envelope-v1.json').cases;
const v2Cases = readVectors<{ cases: unknown[] }>('envelope-v2.json').cases;

describe.skipIf(missing !== undefined && !inCi)('Chromium', () => {
  let server: PageServer | undefined;
  let session: PageSession;
  let emulator: EmulatorFixture;
  let closedEmulator: EmulatorFixture;

  beforeAll(async () => {
    if (missing) throw new Error(`CI=true and the Chromium suite cannot run: ${missing}`);
    server = await startPageServer(await bundlePage());
    // One emulator lets the page's origin in; the other lets no origin in.
    emulator = await useEmulator({ alias: 'browser', cors: [server.origin] });
    closedEmulator = await useEmulator({ alias: 'closed' });
    session = await openPage(server.origin);
  }, 120_000);

  afterAll(async () => {
    await session?.close();
    await server?.close();
    await emulator?.emulator.close();
    await closedEmulator?.emulator.close();
  });

  it('loads the bundle with no error, and picks the expected backend unasked', async () => {
    const { available, chosen } = await session.call('backends');
    expect(available).toEqual(expect.arrayContaining(BACKENDS));
    expect(available).not.toContain('node');
    expect(chosen).toBe(DEFAULT_BACKEND);
    expect(session.errors).toEqual([]);
  });

  describe.each(BACKENDS)('backend %s', (backend) => {
    it('passes every Wycheproof AES-GCM vector with a 96-bit IV', async () => {
      const { checked, failures } = await session.call('wycheproofGcm', backend);
      expect(failures).toEqual([]);
      expect(checked).toBe(gcmCases.length + (backend === 'webcrypto' ? gcmAeadCases.length : 0));
    });

    it('computes every valid Wycheproof HKDF-SHA-512 vector', async () => {
      const { checked, failures } = await session.call('wycheproofHkdf', backend);
      expect(failures).toEqual([]);
      expect(checked).toBe(hkdfValid.length);
    });

    it('passes every Wycheproof C2SP chunked-encryption vector: whole, streamed, sealed again, random access', async () => {
      const { checked, failures } = await session.call('wycheproofChunked', backend);
      expect(failures).toEqual([]);
      expect(checked).toBe(chunkedCases.length);
    }, 300_000);

    it('opens every envelope-v1 vector as recorded, and seals the positive ones to the same bytes', async () => {
      const { checked, failures } = await session.call('vectorsV1', backend);
      expect(failures).toEqual([]);
      expect(checked).toBe(v1Cases.length);
    });

    it('opens every envelope-v2 vector as recorded, and seals the positive ones to the same bytes', async () => {
      const { checked, failures } = await session.call('vectorsV2', backend);
      expect(failures).toEqual([]);
      expect(checked).toBe(v2Cases.length + 7);
    });

    it('seals and opens strings and bytes (every input type), async and sync, with LocalKms.generate()', async () => {
      const { checked, failures, kmsId } = await session.call('sealOpen', backend);
      expect(failures).toEqual([]);
      expect(checked).toBe(3 + 6 * 4 + 1);
      expect(kmsId).toBe('local');
    });

    it('rejects a tampered byte with ERR_DECRYPTION_FAILED, releasing no plaintext that did not authenticate', async () => {
      const { cases } = await session.call('tamper', backend);
      expect(cases.map((c) => c.where)).toEqual(['first chunk', 'second chunk', 'last tag']);
      for (const c of cases) {
        expect(c.open, c.where).toBe('ERR_DECRYPTION_FAILED');
        expect(c.streamError, c.where).toBe('ERR_DECRYPTION_FAILED');
        expect(c.range, c.where).toBe('ERR_DECRYPTION_FAILED');
        expect(c.prefixIntact, c.where).toBe(true);
      }
      // Only whole chunks before the damaged one: none for the first, at most one for the second,
      // at most the three full chunks when the final tag is hit.
      expect(cases.map((c) => c.streamed)).toEqual([0, expect.any(Number), expect.any(Number)]);
      expect(cases[1]!.streamed).toBeLessThanOrEqual(16384);
      expect(cases[2]!.streamed).toBeLessThanOrEqual(3 * 16384);
    });

    it('LocalKms: a message sealed in the page opens in Node, and one sealed in Node opens in the page', async () => {
      const key = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);
      const nodeSide = createEnvelope({ kms: new LocalKms({ page: key }) });
      const fromNode = await nodeSide.seal('sealed in Node', { context: { where: 'node' } });
      const { sealed, openedFromNode, wrongKey } = await session.call('localKms', backend, hex(key), hex(fromNode));
      expect(openedFromNode).toBe('sealed in Node');
      expect(await nodeSide.openString(unhex(sealed), { context: { where: 'page' } })).toBe('sealed in Chromium');
      expect(wrongKey).toBe('ERR_DECRYPTION_FAILED');
    });

    it('TencentKms from the page against the emulator on another port (CORS): seal, open, and a message sealed in Node', async () => {
      const nodeKms = new TencentKms({ keyId: emulator.keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials });
      const fromNode = await createEnvelope({ kms: nodeKms }).seal('sealed in Node through the emulator');
      const result = await session.call('tencentKms', backend, emulator.url, emulator.credentials, emulator.keyId, hex(fromNode));
      expect(result.error).toBeUndefined();
      expect(result.opened).toBe('through the emulator');
      expect(result.openedFromNode).toBe('sealed in Node through the emulator');
      // And Node opens what the page sealed: the same KMS key on both sides.
      expect(await createEnvelope({ kms: nodeKms }).openString(unhex(result.sealed!), { context: { tenant: 'page' } })).toBe('through the emulator');
    });

    it(`sealStream/openStream over Blob.stream() of a ${backend === DEFAULT_BACKEND ? BIG_MIB : OTHER_MIB} MiB Blob, counted not held, and openRange over the sealed Blob`, async () => {
      const mib = backend === DEFAULT_BACKEND ? BIG_MIB : OTHER_MIB;
      const { result, heapMiB } = await session.heapAtPauses(session.call('bigStream', backend, mib));
      expect(result.plaintextBytes).toBe(mib * 2 ** 20);
      // 56 bytes of salt and commitment, 16 bytes of tag per 16 KiB chunk and the empty final one.
      const chunks = (mib * 2 ** 20) / 16384 + 1;
      expect(result.sealedBytes - chunks * 16 - mib * 2 ** 20 - 56).toBeGreaterThan(0); // the header
      expect(result.mismatches).toBe(0);
      expect(result.rangeOk).toBe(true);
      // Counted, not held: halfway through sealing and through opening, the page's live heap has
      // grown by far less than the 128 MiB of the big stream already through (measured: 10 to 18 MiB).
      expect(heapMiB).toHaveLength(3);
      const [before, sealing, opening] = heapMiB as [number, number, number];
      expect(Math.max(sealing, opening) - before).toBeLessThan(48);
    }, 900_000);
  });

  it('TencentKms with responseKey from the page: a WebCrypto key pair, the data key returned under it, sealed and opened', async () => {
    const result = await session.call('tencentResponseKey', emulator.url, emulator.credentials, emulator.keyId);
    expect(result).toMatchObject({ opened: 'under a public key', pemSent: true, nodeCrypto: false });
    const nodeKms = new TencentKms({ keyId: emulator.keyId, region: 'ap-guangzhou', endpoint: emulator.url, credentials: emulator.credentials });
    expect(await createEnvelope({ kms: nodeKms }).openString(unhex(result.sealed!), { context: { tenant: 'page' } })).toBe('under a public key');
  });

  it('TencentKms from the page fails as a KMS error when the emulator does not let the origin in', async () => {
    const result = await session.call('tencentKms', DEFAULT_BACKEND, closedEmulator.url, closedEmulator.credentials, closedEmulator.keyId, undefined);
    expect(result.opened).toBeUndefined();
    expect(result.error).toBe('ERR_KMS');
  });

  it('the page logged no error', () => {
    // The CORS refusal above is logged by Chromium itself; nothing else may be.
    expect(session.errors.filter((e) => !/CORS|Failed to load resource|net::ERR_FAILED/.test(e))).toEqual([]);
  });
});
