/**
 * Version-2 known-answer vectors (test/vectors/envelope-v2.json, FORMAT.md §10): messages with a
 * KMS data key (compact and chunked, several wrapped keys) and under a key hierarchy, sealed with a
 * fixed local master key and injected randomness. Positive cases are sealed again byte for byte;
 * every case is opened. UPDATE_VECTORS=1 rewrites the file (only for a new format version).
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeWrappedKeys, parseHeader } from '../src/core/header.ts';
import { MemoryKeyStore, type StoredKey } from '../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../src/hierarchy/hierarchy.ts';
import { type BackendName, createEnvelope, type EncryptionContext, inspect, LocalKms, type SuiteName } from '../src/index.ts';
import { recordingBackend } from './instrumented.ts';
import { BACKENDS, hex, readVectors, seededRandom, unhex } from './helpers.ts';

interface VectorCase {
  name: string;
  suite: SuiteName;
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
  /** The key store the hierarchy cases were sealed with: wrapped intermediate keys only. */
  store: Omit<StoredKey, 'createdAt'>[];
  cases: VectorCase[];
}

const MASTER_KEY = hex(Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i));
const KEY_ID = 'vectors-v2';
const text = (s: string): string => hex(new TextEncoder().encode(s));
const pattern = (n: number): string => hex(Uint8Array.from({ length: n }, (_, i) => (i * 13 + 5) & 0xff));

type Positive = Omit<VectorCase, 'sealed' | 'expect'> & { rotate?: boolean; wrapTwice?: boolean };
const POSITIVE: Positive[] = [
  { name: 'kms key, compact, stored context', suite: 'cobblestone-256', source: 'kms', compact: true, context: { table: 'users', row: '42' }, detached: false, plaintext: text('hello') },
  { name: 'kms key, compact, detached, 16 bytes', suite: 'cobblestone-256', source: 'kms', compact: true, context: { table: 'users', column: 'card', row: '42' }, detached: true, plaintext: pattern(16) },
  { name: 'kms key, chunked, cobblestone-128', suite: 'cobblestone-128', source: 'kms', compact: false, context: { file: 'c.bin' }, detached: false, plaintext: pattern(20000) },
  { name: 'hierarchy, compact, detached, 16 bytes', suite: 'cobblestone-256', source: 'hierarchy', partition: 'tenant-1', compact: true, context: { table: 'users', column: 'card', row: '42' }, detached: true, plaintext: pattern(16) },
  { name: 'hierarchy, chunked, one full chunk', suite: 'cobblestone-256', source: 'hierarchy', partition: 'tenant-1', compact: false, context: { file: 'd.bin' }, detached: false, plaintext: pattern(16384) },
  { name: 'hierarchy, cobblestone-128, compact, empty', suite: 'cobblestone-128', source: 'hierarchy', partition: 'tenant-2', compact: true, context: {}, detached: false, plaintext: '' },
  { name: 'hierarchy, key version 2 after a rotation', suite: 'cobblestone-256', source: 'hierarchy', partition: 'tenant-1', compact: true, context: { row: '9' }, detached: false, plaintext: text('rotated'), rotate: true },
  // Sealed with additionalWrapping (src/wrapped-keys.ts): GenerateDataKey, then Encrypt of the same data key.
  { name: 'kms key, two wrapped keys sealed (additionalWrapping)', suite: 'cobblestone-256', source: 'kms', compact: true, context: { table: 'users', row: '42' }, detached: false, plaintext: text('twice'), wrapTwice: true },
];

function kmsFor(random: (n: number) => Uint8Array): LocalKms {
  return new LocalKms({ [KEY_ID]: unhex(MASTER_KEY) }, { randomBytes: random });
}

/** Seals every positive case in order, the hierarchy cases sharing one store (as a fleet would). */
async function sealAll(): Promise<{ sealed: Record<string, Uint8Array>; store: MemoryKeyStore }> {
  const store = new MemoryKeyStore();
  const hierarchyRandom = seededRandom('kms-envelope vectors v2: hierarchy');
  const hierarchy = createKeyHierarchy({ store, kms: kmsFor(hierarchyRandom) });
  const sealed: Record<string, Uint8Array> = {};
  for (const c of POSITIVE) {
    const random = seededRandom(`kms-envelope vectors v2: ${c.name}`);
    if (c.rotate) await hierarchy.rotate(c.partition!);
    const envelope =
      c.source === 'kms'
        ? (() => {
            const kms = kmsFor(random);
            const additionalWrapping = c.wrapTwice ? [{ kms, keyId: KEY_ID }] : [];
            return createEnvelope({ kms, format: 2, compact: c.compact, suite: c.suite, randomBytes: random, additionalWrapping });
          })()
        : createEnvelope({ hierarchy, compact: c.compact, suite: c.suite, randomBytes: random });
    sealed[c.name] = await envelope.seal(unhex(c.plaintext), { context: c.context, detachedContext: c.detached, ...(c.partition ? { partition: c.partition } : {}) });
  }
  return { sealed, store };
}

function flip(bytes: Uint8Array, index: number): Uint8Array {
  const out = bytes.slice();
  out[index < 0 ? out.length + index : index]! ^= 0x01;
  return out;
}

/** The same message with its wrapped-key section replaced. */
function rewrapped(message: Uint8Array, wrapped: Parameters<typeof encodeWrappedKeys>[0] | Uint8Array): Uint8Array {
  const h = parseHeader(message);
  const section = wrapped instanceof Uint8Array ? wrapped : encodeWrappedKeys(wrapped);
  return new Uint8Array([...h.authenticated, ...section, ...message.subarray(h.length)]);
}

async function generate(): Promise<VectorFile> {
  const { sealed, store } = await sealAll();
  const cases: VectorCase[] = POSITIVE.map(({ rotate: _, wrapTwice: _w, ...c }) => ({ ...c, sealed: hex(sealed[c.name]!), expect: 'ok' }));
  const hello = sealed[POSITIVE[0]!.name]!;
  const field = sealed[POSITIVE[3]!.name]!;
  const h = parseHeader(hello);
  const ours = h.wrappedKeys[0]!;
  const positive = (name: string, bytes: Uint8Array): void => void cases.push({ ...POSITIVE[0]!, name, sealed: hex(bytes), expect: 'ok' });
  const neg = (name: string, bytes: Uint8Array, code: string, base: Positive = POSITIVE[0]!): void => {
    const { rotate: _, wrapTwice: _w, ...c } = base;
    cases.push({ ...c, name, sealed: hex(bytes), expect: code });
  };
  positive('two wrapped keys, another provider first', rewrapped(hello, [{ provider: 'tencent', keyId: 'cmk-1', ciphertextBlob: 'elsewhere' }, ours]));
  positive('two wrapped keys of ours, the first not opening', rewrapped(hello, [{ ...ours, ciphertextBlob: `${ours.ciphertextBlob.slice(0, -4)}AAAA` }, ours]));
  neg('flags with a reserved bit', Object.assign(hello.slice(), { 6: hello[6]! | 0x10 }), 'ERR_HEADER_MALFORMED');
  neg('reserved key source 2', Object.assign(hello.slice(), { 6: (hello[6]! & 0xf3) | 0x08 }), 'ERR_HEADER_MALFORMED');
  neg('wrapped key count 0', rewrapped(hello, Uint8Array.of(0)), 'ERR_HEADER_MALFORMED');
  neg('wrapped key count 9', rewrapped(hello, Uint8Array.of(9)), 'ERR_LIMIT_EXCEEDED');
  neg('compact flag cleared', Object.assign(hello.slice(), { 6: hello[6]! & ~0x02 }), 'ERR_DECRYPTION_FAILED');
  neg('compact commitment flipped', flip(hello, h.length + 20), 'ERR_DECRYPTION_FAILED');
  neg('compact tag flipped', flip(hello, -1), 'ERR_DECRYPTION_FAILED');
  neg('compact payload truncated', hello.subarray(0, hello.length - 1), 'ERR_DECRYPTION_FAILED');
  neg('compact payload of a chunk and more', new Uint8Array([...hello.subarray(0, h.length), ...new Uint8Array(16 + 16 + 16384 + 16)]), 'ERR_DECRYPTION_FAILED');
  const f = parseHeader(field);
  const partitionAt = f.authenticated.length - 1 - 1 - 'tenant-1'.length + 1; // the partition's first byte
  neg('hierarchy: another partition', Object.assign(field.slice(), { [partitionAt + 7]: '9'.charCodeAt(0) }), 'ERR_KEY_NOT_FOUND', POSITIVE[3]);
  neg('hierarchy: key version 0', Object.assign(field.slice(), { [f.authenticated.length - 1]: 0 }), 'ERR_HEADER_MALFORMED', POSITIVE[3]);
  const at = f.authenticated.length - 1;
  const nonMinimal = new Uint8Array([...field.subarray(0, at), 0x81, 0x00, ...field.subarray(at + 1)]);
  neg('hierarchy: key version not minimally encoded', nonMinimal, 'ERR_HEADER_MALFORMED', POSITIVE[3]);
  const tooLong = new Uint8Array([...field.subarray(0, at), 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, ...field.subarray(at + 1)]);
  neg('hierarchy: key version longer than 5 bytes', tooLong, 'ERR_HEADER_MALFORMED', POSITIVE[3]);
  neg('hierarchy: key version above 2^32-1', new Uint8Array([...field.subarray(0, at), 0xff, 0xff, 0xff, 0xff, 0x1f, ...field.subarray(at + 1)]), 'ERR_HEADER_MALFORMED', POSITIVE[3]);
  neg('hierarchy: partition bit flipped', flip(field, partitionAt), 'ERR_KEY_NOT_FOUND', POSITIVE[3]);
  neg('hierarchy: detached context opened without it', field, 'ERR_CONTEXT_MISMATCH', { ...POSITIVE[3]!, detached: false, context: {} });
  // Several wrapped keys (issue 16 §3): the most a message carries, and the key commitment deciding.
  positive('eight wrapped keys, the most a message carries', rewrapped(hello, Array.from({ length: 8 }, () => ours)));
  const twice = parseHeader(sealed['kms key, two wrapped keys sealed (additionalWrapping)']!);
  neg('two wrapped keys, the first decrypting to another data key', rewrapped(hello, [twice.wrappedKeys[0]!, ours]), 'ERR_DECRYPTION_FAILED');
  const records = (await Promise.all(['tenant-1', 'tenant-2'].map((p) => store.listVersions(p)))).flat();
  return {
    comment:
      'kms-envelope FORMAT.md version-2 vectors. LocalKms master key `masterKey` under key id `keyId`; randomness is HMAC-SHA-512(seed, counter) (test/helpers.ts seededRandom) with seed "kms-envelope vectors v2: <name>" for each message and "kms-envelope vectors v2: hierarchy" for the intermediate keys, made in case order. `store` holds the key store the hierarchy cases need. Hex throughout.',
    masterKey: MASTER_KEY,
    keyId: KEY_ID,
    store: records.map(({ createdAt: _, ...r }) => r),
    cases,
  };
}

if (process.env.UPDATE_VECTORS === '1') {
  writeFileSync(new URL('./vectors/envelope-v2.json', import.meta.url), `${JSON.stringify(await generate(), null, 1)}\n`);
}

const vectors = readVectors<VectorFile>('envelope-v2.json');

async function readerFor(backend: BackendName) {
  const store = new MemoryKeyStore();
  for (const record of vectors.store) await store.createVersion({ ...record, createdAt: 0 });
  const kms = new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) }, { backend });
  return createEnvelope({ kms, hierarchy: createKeyHierarchy({ store, kms, backend }), backend });
}

describe('envelope-v2 vectors (FORMAT.md §10)', () => {
  it('cover positive and negative cases', () => {
    expect(vectors.cases.filter((c) => c.expect === 'ok').length).toBe(POSITIVE.length + 3);
    expect(vectors.cases.filter((c) => c.expect !== 'ok').length).toBeGreaterThanOrEqual(16);
    expect(vectors.store.map((r) => `${r.partition}#${r.version}`)).toEqual(['tenant-1#1', 'tenant-1#2', 'tenant-2#1']);
  });

  it('seals every positive case to the recorded bytes, byte for byte (and the key store to the recorded records)', async () => {
    const { sealed, store } = await sealAll();
    for (const c of POSITIVE) expect(hex(sealed[c.name]!), c.name).toBe(vectors.cases.find((v) => v.name === c.name)!.sealed);
    const records = (await Promise.all(['tenant-1', 'tenant-2'].map((p) => store.listVersions(p)))).flat();
    expect(records.map(({ createdAt: _, ...r }) => r)).toEqual(vectors.store);
  });

  for (const backend of [...BACKENDS.map((b) => b.name), 'webcrypto' as const]) {
    it.each(vectors.cases)(`opens "$name" as $expect (${backend})`, async (c) => {
      const envelope = await readerFor(backend);
      const options = c.detached ? { context: c.context } : {};
      if (c.expect === 'ok') {
        const result = await envelope.openWithInfo(unhex(c.sealed), options);
        expect(hex(result.plaintext)).toBe(c.plaintext);
        const info = inspect(unhex(c.sealed));
        expect(info).toMatchObject({ version: 2, compact: c.compact, keySource: c.source === 'kms' ? 'kms' : 'intermediate' });
        if (c.partition) expect(info.partition).toBe(c.partition);
      } else {
        await expect(envelope.open(unhex(c.sealed), options)).rejects.toMatchObject({ code: c.expect });
      }
    });
  }

  it('A version-2 reader MUST reject a flags byte with any of bits 4–7 set, or a reserved key source, with ERR_HEADER_MALFORMED', async () => {
    const envelope = await readerFor('node');
    const hello = unhex(vectors.cases[0]!.sealed);
    for (const flags of [0x10, 0x20, 0x40, 0x80, 0x08, 0x0c]) {
      await expect(envelope.open(Object.assign(hello.slice(), { 6: (hello[6]! & 0x03) | flags }))).rejects.toMatchObject({ code: 'ERR_HEADER_MALFORMED' });
    }
  });

  it('A reader MUST check the wrapped-key count against its limit of 8 before reading a wrapped key (ERR_LIMIT_EXCEEDED), and MUST reject a count of 0 (ERR_HEADER_MALFORMED)', () => {
    const hello = unhex(vectors.cases[0]!.sealed);
    const h = parseHeader(hello);
    // A count of 200 followed by nothing: the limit is checked before any wrapped key is read.
    const head = new Uint8Array([...h.authenticated, 200]);
    expect(() => parseHeader(head)).toThrow(expect.objectContaining({ code: 'ERR_LIMIT_EXCEEDED' }));
    expect(() => parseHeader(new Uint8Array([...h.authenticated, 0]))).toThrow(expect.objectContaining({ code: 'ERR_HEADER_MALFORMED' }));
    const eight = rewrapped(hello, Array.from({ length: 8 }, () => h.wrappedKeys[0]!));
    expect(parseHeader(eight).wrappedKeys).toHaveLength(8);
  });

  it('The compact commitment MUST be checked before the tag, and a compact payload whose plaintext would exceed 16383 bytes MUST fail as ERR_DECRYPTION_FAILED', async () => {
    const { compactPlaintextLength, openCompact } = await import('../src/core/compact.ts');
    const { COBBLESTONE_256 } = await import('../src/core/suites.ts');
    const { backend, seen } = recordingBackend(BACKENDS[0]!);
    const kms = new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) });
    const hello = unhex(vectors.cases[0]!.sealed);
    const h = parseHeader(hello);
    const key = await kms.decryptDataKey({ ...h.wrappedKeys[0]!, keySpec: 'AES_256', context: h.context! });
    const payload = flip(hello, h.length + 20).subarray(h.length);
    const before = seen.length;
    expect(() => openCompact({ crypto: backend, suite: COBBLESTONE_256, key, context: h.authenticated }, payload)).toThrow(expect.objectContaining({ code: 'ERR_DECRYPTION_FAILED' }));
    expect(seen.length - before).toBe(3); // the HKDF outputs only: no AES-GCM call was made
    expect(compactPlaintextLength(16 + 16 + 16383 + 16)).toBe(16383);
    expect(compactPlaintextLength(16 + 16 + 16384 + 16)).toBeUndefined();
    expect(() => openCompact({ crypto: backend, suite: COBBLESTONE_256, key, context: h.authenticated }, new Uint8Array(16 + 16 + 16384 + 16))).toThrow(expect.objectContaining({ code: 'ERR_DECRYPTION_FAILED' }));
  });

  it('A reader MUST reject a key version that is zero, longer than 5 bytes, above 2^32−1 or not minimally encoded (ERR_HEADER_MALFORMED)', () => {
    for (const name of ['hierarchy: key version 0', 'hierarchy: key version longer than 5 bytes', 'hierarchy: key version above 2^32-1', 'hierarchy: key version not minimally encoded']) {
      const c = vectors.cases.find((v) => v.name === name)!;
      expect(() => parseHeader(unhex(c.sealed)), name).toThrow(expect.objectContaining({ code: 'ERR_HEADER_MALFORMED' }));
    }
  });
});
