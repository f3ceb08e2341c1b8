/**
 * Suite 03 (SM4-GCM-SM3, FORMAT.md §13) known-answer vectors (test/vectors/envelope-sm4.json):
 * whole messages of version 1 and 2 (KMS data key, compact and chunked, and under a key hierarchy)
 * sealed with a fixed local master key and injected randomness. Positive cases are sealed again on
 * every backend and compared byte for byte; every case is opened on every backend; the key
 * schedule of the first is recomputed from OpenSSL's HMAC-SM3.
 * UPDATE_VECTORS=1 writes the file (only to add cases: never change the bytes of existing ones).
 */
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/core/chunked.ts';
import { parseHeader } from '../../src/core/header.ts';
import { sm4 } from '../../src/sm4.ts';
import { MemoryKeyStore, type StoredKey } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { type BackendName, createEnvelope, type EncryptionContext, inspect, LocalKms } from '../../src/index.ts';
import { BACKENDS, hex, readVectors, seededRandom, unhex } from '../helpers.ts';

interface VectorCase {
  name: string;
  format: 1 | 2;
  source: 'kms' | 'hierarchy';
  partition?: string;
  compact: boolean;
  context: EncryptionContext;
  detached: boolean;
  plaintext: string;
  sealed: string;
  expect: 'ok' | string;
}
interface VectorFile {
  comment: string;
  masterKey: string;
  keyId: string;
  store: Omit<StoredKey, 'createdAt'>[];
  keySchedule: { case: string; dataKey: string; info: string; key: string; baseNonce: string; commitment: string };
  cases: VectorCase[];
}

const MASTER_KEY = hex(Uint8Array.from({ length: 32 }, (_, i) => i));
const KEY_ID = 'default';
const pattern = (n: number): string => hex(Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff));
const text = (s: string): string => hex(new TextEncoder().encode(s));

type Positive = Omit<VectorCase, 'sealed' | 'expect'>;
const POSITIVE: Positive[] = [
  { name: 'v1, hello, stored context', format: 1, source: 'kms', compact: false, context: { table: 'users', row: '42' }, detached: false, plaintext: text('hello') },
  { name: 'v1, empty message, empty context', format: 1, source: 'kms', compact: false, context: {}, detached: false, plaintext: '' },
  { name: 'v1, one full chunk and an empty final chunk', format: 1, source: 'kms', compact: false, context: { file: 'a.bin' }, detached: false, plaintext: pattern(16384) },
  { name: 'v1, two chunks', format: 1, source: 'kms', compact: false, context: { file: 'b.bin' }, detached: false, plaintext: pattern(20000) },
  { name: 'v1, detached context', format: 1, source: 'kms', compact: false, context: { tenant: 'acme', row: '7' }, detached: true, plaintext: text('card 4111 1111 1111 1111') },
  { name: 'v2, kms key, compact, stored context', format: 2, source: 'kms', compact: true, context: { table: 'users', row: '42' }, detached: false, plaintext: text('hello') },
  { name: 'v2, kms key, chunked, two chunks', format: 2, source: 'kms', compact: false, context: { file: 'c.bin' }, detached: false, plaintext: pattern(20000) },
  { name: 'v2, hierarchy, compact, detached, 16 bytes', format: 2, source: 'hierarchy', partition: 'tenant-1', compact: true, context: { table: 'users', column: 'card', row: '42' }, detached: true, plaintext: pattern(16) },
  { name: 'v2, hierarchy, chunked, one full chunk', format: 2, source: 'hierarchy', partition: 'tenant-1', compact: false, context: { file: 'd.bin' }, detached: false, plaintext: pattern(16384) },
];

function kmsFor(random: (n: number) => Uint8Array, backend?: BackendName): LocalKms {
  return new LocalKms({ [KEY_ID]: unhex(MASTER_KEY) }, { randomBytes: random, ...(backend ? { backend } : {}) });
}

/** Seals every positive case in order on `backend`, the hierarchy cases sharing one store. */
async function sealAll(backend: BackendName): Promise<{ sealed: Record<string, Uint8Array>; store: MemoryKeyStore }> {
  const store = new MemoryKeyStore();
  const hierarchy = createKeyHierarchy({ store, kms: kmsFor(seededRandom('kms-envelope vectors sm4: hierarchy'), backend), backend });
  const sealed: Record<string, Uint8Array> = {};
  for (const c of POSITIVE) {
    const random = seededRandom(`kms-envelope vectors sm4: ${c.name}`);
    const envelope =
      c.source === 'kms'
        ? createEnvelope({ kms: kmsFor(random, backend), format: c.format, compact: c.compact, suite: sm4, randomBytes: random, backend })
        : createEnvelope({ hierarchy, compact: c.compact, suite: sm4, randomBytes: random, backend });
    sealed[c.name] = await envelope.seal(unhex(c.plaintext), { context: c.context, detachedContext: c.detached, ...(c.partition ? { partition: c.partition } : {}) });
  }
  return { sealed, store };
}

function flip(bytes: Uint8Array, index: number): Uint8Array {
  const out = bytes.slice();
  out[index < 0 ? out.length + index : index]! ^= 0x01;
  return out;
}

/** HKDF-Expand over OpenSSL's HMAC-SM3: the key schedule recomputed without the library's SM3. */
function opensslHkdfSm3(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let previous = new Uint8Array(0);
  for (let o = 0, i = 1; o < length; o += 32, i++) {
    const block = createHmac('sm3', prk).update(previous).update(info).update(Uint8Array.of(i)).digest();
    out.set(block.subarray(0, Math.min(32, length - o)), o);
    previous = block;
  }
  return out;
}

async function keyScheduleOf(sealed: Uint8Array, name: string): Promise<VectorFile['keySchedule']> {
  const header = parseHeader(sealed);
  const kms = new LocalKms({ [KEY_ID]: unhex(MASTER_KEY) });
  const dataKey = await kms.decryptDataKey({ ...header.wrappedKeys[0]!, keySpec: 'AES_128', context: header.context! });
  const salt = sealed.subarray(header.length, header.length + 24);
  const info = new Uint8Array([...new TextEncoder().encode('c2sp.org/chunked-encryption@v1+AEAD_SM4_GCM'), 0, ...salt, ...header.authenticated]);
  const okm = opensslHkdfSm3(dataKey, info, 16 + 12 + 32);
  return { case: name, dataKey: hex(dataKey), info: hex(info), key: hex(okm.subarray(0, 16)), baseNonce: hex(okm.subarray(16, 28)), commitment: hex(okm.subarray(28)) };
}

async function generate(): Promise<VectorFile> {
  const { sealed, store } = await sealAll('node');
  const cases: VectorCase[] = POSITIVE.map((c) => ({ ...c, sealed: hex(sealed[c.name]!), expect: 'ok' }));
  const neg = (name: string, bytes: Uint8Array, code: string, base: Positive): void => void cases.push({ ...base, name, sealed: hex(bytes), expect: code });
  const hello = sealed[POSITIVE[0]!.name]!;
  const h = parseHeader(hello);
  neg('v1: bit flipped in the last tag', flip(hello, -1), 'ERR_DECRYPTION_FAILED', POSITIVE[0]!);
  neg('v1: bit flipped in the salt', flip(hello, h.length), 'ERR_DECRYPTION_FAILED', POSITIVE[0]!);
  neg('v1: bit flipped in the commitment', flip(hello, h.length + 30), 'ERR_DECRYPTION_FAILED', POSITIVE[0]!);
  neg('v1: suite byte 03 changed to 02 (AES-128, same key length)', Object.assign(hello.slice(), { 5: 2 }), 'ERR_DECRYPTION_FAILED', POSITIVE[0]!);
  const twoChunks = sealed[POSITIVE[3]!.name]!;
  const t = parseHeader(twoChunks);
  neg('v1: chunks swapped', new Uint8Array([...twoChunks.subarray(0, t.length + 56), ...twoChunks.subarray(t.length + 56 + 16400), ...twoChunks.subarray(t.length + 56, t.length + 56 + 16400)]), 'ERR_DECRYPTION_FAILED', POSITIVE[3]!);
  neg('v1: final chunk dropped', twoChunks.subarray(0, t.length + 56 + 16400), 'ERR_DECRYPTION_FAILED', POSITIVE[3]!);
  const compact = sealed[POSITIVE[5]!.name]!;
  const c = parseHeader(compact);
  neg('v2: compact commitment flipped', flip(compact, c.length + 20), 'ERR_DECRYPTION_FAILED', POSITIVE[5]!);
  neg('v2: compact tag flipped', flip(compact, -1), 'ERR_DECRYPTION_FAILED', POSITIVE[5]!);
  neg('v2: compact suite byte 03 changed to 02', Object.assign(compact.slice(), { 5: 2 }), 'ERR_DECRYPTION_FAILED', POSITIVE[5]!);
  const field = sealed[POSITIVE[7]!.name]!;
  neg('v2: hierarchy suite byte 03 changed to 02', Object.assign(field.slice(), { 5: 2 }), 'ERR_DECRYPTION_FAILED', POSITIVE[7]!);
  const records = await store.listVersions('tenant-1');
  return {
    comment:
      'kms-envelope suite 03 (SM4-GCM-SM3, FORMAT.md §13) vectors, versions 1 and 2. LocalKms master key `masterKey` under key id `keyId`; randomness is HMAC-SHA-512(seed, counter) (test/helpers.ts seededRandom) with seed "kms-envelope vectors sm4: <name>" for each message and "kms-envelope vectors sm4: hierarchy" for the intermediate keys, made in case order. `store` holds the key store the hierarchy cases need; `keySchedule` is the first case\'s HKDF-Expand-SM3 output. Hex throughout.',
    masterKey: MASTER_KEY,
    keyId: KEY_ID,
    store: records.map(({ createdAt: _, ...r }) => r),
    keySchedule: await keyScheduleOf(hello, POSITIVE[0]!.name),
    cases,
  };
}

if (process.env.UPDATE_VECTORS === '1') {
  writeFileSync(new URL('../vectors/envelope-sm4.json', import.meta.url), `${JSON.stringify(await generate(), null, 1)}\n`);
}

const vectors = readVectors<VectorFile>('envelope-sm4.json');

async function readerFor(backend: BackendName) {
  const store = new MemoryKeyStore();
  for (const record of vectors.store) await store.createVersion({ ...record, createdAt: 0 });
  const kms = new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) }, { backend });
  return createEnvelope({ kms, hierarchy: createKeyHierarchy({ store, kms, backend }), backend, suites: [sm4] });
}

describe('envelope-sm4 vectors (FORMAT.md §13)', () => {
  it('cover positive and negative cases, versions 1 and 2, KMS keys and a hierarchy', () => {
    expect(vectors.cases.filter((c) => c.expect === 'ok').length).toBe(POSITIVE.length);
    expect(vectors.cases.filter((c) => c.expect !== 'ok').length).toBeGreaterThanOrEqual(10);
    for (const c of vectors.cases) expect(unhex(c.sealed)[5]).toBe(c.name.includes('changed to 02') ? 2 : 3);
  });

  for (const backend of BACKENDS) {
    it(`seals every positive case to the recorded bytes, byte for byte (${backend.name})`, async () => {
      const { sealed, store } = await sealAll(backend.name);
      for (const c of POSITIVE) expect(hex(sealed[c.name]!), c.name).toBe(vectors.cases.find((v) => v.name === c.name)!.sealed);
      expect((await store.listVersions('tenant-1')).map(({ createdAt: _, ...r }) => r)).toEqual(vectors.store);
    });

    it.each(vectors.cases)(`opens "$name" as $expect (${backend.name})`, async (c) => {
      const envelope = await readerFor(backend.name);
      const options = c.detached ? { context: c.context } : {};
      if (c.expect === 'ok') {
        const result = await envelope.openWithInfo(unhex(c.sealed), options);
        expect(hex(result.plaintext)).toBe(c.plaintext);
        expect(inspect(unhex(c.sealed))).toMatchObject({ version: c.format, suite: 'SM4-GCM-SM3' });
      } else {
        await expect(envelope.open(unhex(c.sealed), options)).rejects.toMatchObject({ code: c.expect });
      }
    });
  }

  it('A suite-03 writer and reader MUST derive the key, base nonce and commitment with HKDF-Expand-SM3 (HMAC-SM3), never with SHA-512', async () => {
    const sealed = unhex(vectors.cases[0]!.sealed);
    const recomputed = await keyScheduleOf(sealed, vectors.cases[0]!.name);
    expect(recomputed).toEqual(vectors.keySchedule);
    const header = parseHeader(sealed);
    for (const backend of BACKENDS) {
      const keys = deriveKeys(sm4.primitives(backend), sm4, unhex(vectors.keySchedule.dataKey), sealed.subarray(header.length, header.length + 24), header.authenticated);
      expect([hex(keys.key), hex(keys.baseNonce), hex(keys.commitment)]).toEqual([vectors.keySchedule.key, vectors.keySchedule.baseNonce, vectors.keySchedule.commitment]);
      keys.wipe();
    }
    // The commitment in the message is the HKDF-SM3 one.
    expect(hex(sealed.subarray(header.length + 24, header.length + 56))).toBe(vectors.keySchedule.commitment);
  });

  it('A message whose suite byte is changed between 02 and 03 MUST fail as ERR_DECRYPTION_FAILED', async () => {
    const envelope = await readerFor('node');
    const aes = createEnvelope({ kms: new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) }), suite: 'cobblestone-128' });
    const aesSealed = await aes.seal('hello', { context: { table: 'users', row: '42' } });
    await expect(envelope.open(Object.assign(aesSealed.slice(), { 5: 3 }))).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    const smSealed = unhex(vectors.cases[0]!.sealed);
    await expect(envelope.open(Object.assign(smSealed.slice(), { 5: 2 }))).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
  });
});
