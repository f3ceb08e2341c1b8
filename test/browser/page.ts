/**
 * What runs inside Chromium: bundled by test/browser/bundle.ts from the built package (dist/, as a
 * user's bundler would take it), loaded by the page the test server serves, and called by
 * test/browser/chromium.test.ts through `globalThis.kmsEnvelopeTests`. Every check returns plain
 * data (counts, failures, hashes) for the Node side to assert; nothing here asserts by itself.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import type { AsyncAead, CryptoBackend } from '../../src/core/backend.ts';
import { AsyncStreamOpener, AsyncStreamSealer, openPayloadAsync, sealAllAsync } from '../../src/core/chunked-async.ts';
import { openPayload, openPayloadRange, PayloadOpener, PayloadSealer, plaintextLength, sealedLength } from '../../src/core/chunked.ts';
import { testing as hkdfTesting } from '../../src/core/hkdf.ts';
import { type BackendName, selectBackend } from '../../src/core/select-backend.ts';
import { COBBLESTONE_128, COBBLESTONE_256, type PayloadSuite } from '../../src/core/suites.ts';
import { MemoryKeyStore, type StoredKey } from '../../src/hierarchy/key-store.ts';
import { createEnvelope, decryptCache, encryptionCache, type EncryptionContext, inspect, LocalKms, openRange, openStream, openSync, sealStream, sealSync, type SuiteName, TencentKms, usePortableCrypto } from '../../src/index.ts';
import { createKeyHierarchy } from '../../src/hierarchy.ts';
import { sm4 } from '../../src/sm4.ts';
const { hkdfExpandBytes } = hkdfTesting;

// The page checks the portable backend too (`backend: 'noble'`), which a browser bundle carries only when asked.
usePortableCrypto();

export interface Outcome {
  /** How many cases were checked. */
  checked: number;
  /** One line per case that did not do what its vector says (empty when all passed). */
  failures: string[];
}

// ---- bytes ----

function hex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

function unhex(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const sha512Hex = (bytes: Uint8Array): string => hex(sha512(bytes));

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** test/helpers.ts seededRandom, again: the randomness the vectors were sealed with. */
function seededRandom(seed: string): (length: number) => Uint8Array {
  const key = new TextEncoder().encode(seed);
  let counter = 0;
  return (length: number) => {
    const out = new Uint8Array(length);
    for (let o = 0; o < length; o += 64) {
      const block = hmac(sha512, key, new Uint8Array(new Uint32Array([counter++]).buffer));
      out.set(block.subarray(0, Math.min(64, length - o)), o);
    }
    return out;
  };
}

async function fetchJson<T>(path: string): Promise<T> {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

const errorCode = (e: unknown): string => (e as { code?: string })?.code ?? String(e);

function flip(bytes: Uint8Array, index: number): Uint8Array<ArrayBuffer> {
  const out = bytes.slice();
  out[index < 0 ? out.length + index : index]! ^= 0x01;
  return out;
}

/** A stream of `bytes` in pieces of `step`. */
function piecewise(bytes: Uint8Array, step: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + step));
      at += step;
    },
  });
}

// ---- the backends this page has ----

/** Names of the backends selectBackend() gives here, and which one it picks unasked. */
export function backends(): { available: string[]; chosen: string } {
  const available: string[] = [];
  for (const name of ['node', 'noble', 'webcrypto'] as string[]) {
    try {
      if (selectBackend(name as BackendName).name === name) available.push(name);
    } catch {
      // not in this runtime
    }
  }
  return { available, chosen: selectBackend().name };
}

function backendNamed(name: string): CryptoBackend {
  const backend = selectBackend(name as BackendName);
  if (backend.name !== name) throw new Error(`backend ${name} is not available in this page (got ${backend.name})`);
  return backend;
}

// ---- Wycheproof ----

interface AeadFile {
  testGroups: { ivSize: number; keySize: number; tagSize: number; tests: { tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: string }[] }[];
}

/**
 * Every Wycheproof AES-GCM vector with a 96-bit IV and a 128-bit tag: sealed and opened through the
 * backend's synchronous AES-GCM, and through its asynchronous one (`aead`) where it has one.
 */
export async function wycheproofGcm(name: string): Promise<Outcome> {
  const backend = backendNamed(name);
  const file = await fetchJson<AeadFile>('/vectors/wycheproof/aes_gcm_test.json');
  const failures: string[] = [];
  let checked = 0;
  for (const group of file.testGroups.filter((g) => g.ivSize === 96 && g.tagSize === 128)) {
    for (const t of group.tests) {
      const label = `GCM/${group.keySize}/${t.tcId}`;
      const [key, iv, aad, msg] = [unhex(t.key), unhex(t.iv), unhex(t.aad), unhex(t.msg)];
      const sealed = unhex(t.ct + t.tag);
      const opened = new Uint8Array(Math.max(0, sealed.length - 16));
      const ok = backend.gcmOpen(key, iv, sealed, opened, 0, aad);
      if (t.result === 'valid') {
        const out = new Uint8Array(msg.length + 16);
        backend.gcmSeal(key, iv, msg, out, 0, aad);
        if (!ok || hex(opened) !== t.msg) failures.push(`${label}: a valid vector did not open to its message`);
        if (hex(out) !== t.ct + t.tag) failures.push(`${label}: sealed to other bytes`);
      } else if (ok || !opened.every((b) => b === 0)) {
        failures.push(`${label}: an invalid vector opened, or left bytes behind`);
      }
      checked++;
      // The asynchronous AEAD (WebCrypto): Chromium has no 192-bit AES, which the format never uses.
      if (backend.aead && (key.length === 16 || key.length === 32)) {
        const aeadKey = await backend.aead.importKey(key.slice());
        const plain = await backend.aead.open(aeadKey, iv, sealed, aad);
        if (t.result === 'valid') {
          if (plain === undefined || hex(plain) !== t.msg) failures.push(`${label} (aead): a valid vector did not open to its message`);
          if (hex(await backend.aead.seal(aeadKey, iv, msg, aad)) !== t.ct + t.tag) failures.push(`${label} (aead): sealed to other bytes`);
        } else if (plain !== undefined) {
          failures.push(`${label} (aead): an invalid vector opened`);
        }
        checked++;
      }
    }
  }
  return { checked, failures };
}

interface HkdfFile {
  testGroups: { tests: { tcId: number; ikm: string; salt: string; info: string; size: number; okm: string; result: string }[] }[];
}

/** Every valid Wycheproof HKDF-SHA-512 vector through the backend's HKDF-Expand (Extract by @noble/hashes). */
export async function wycheproofHkdf(name: string): Promise<Outcome> {
  const backend = backendNamed(name);
  const { extract } = await import('@noble/hashes/hkdf.js');
  const file = await fetchJson<HkdfFile>('/vectors/wycheproof/hkdf_sha512_test.json');
  const failures: string[] = [];
  let checked = 0;
  for (const group of file.testGroups) {
    for (const t of group.tests) {
      if (t.result !== 'valid') continue;
      const prk = extract(sha512, unhex(t.ikm), unhex(t.salt));
      const info = unhex(t.info);
      const whole = hex(hkdfExpandBytes(backend.hkdfExpandSha512, prk, [info], t.size));
      const parts = hex(hkdfExpandBytes(backend.hkdfExpandSha512, prk, [info.subarray(0, 3), info.subarray(3)], t.size));
      if (whole !== t.okm || parts !== t.okm) failures.push(`HKDF/${t.tcId}: other output`);
      checked++;
    }
  }
  return { checked, failures };
}

const CHUNKED_FILES: [PayloadSuite, string][] = [
  [COBBLESTONE_256, 'c2sp_chunked_encryption_aes_256_gcm_test.json'],
  [COBBLESTONE_128, 'c2sp_chunked_encryption_aes_128_gcm_test.json'],
];

interface ChunkedCase {
  tcId: number;
  key: string;
  ctx: string;
  /** Inflated by the test server (the file holds it deflated). */
  ct: string;
  msgLength?: number;
  msgSha512?: string;
  result: 'valid' | 'invalid';
}

/**
 * The Wycheproof C2SP chunked-encryption vectors for both suites: opened whole, streamed in pieces
 * (a failing stream releases at most the valid prefix), sealed again from the same salt, and read
 * through random access. A backend with an asynchronous AEAD (WebCrypto) runs them on the paths
 * that use it (chunked-async.ts: whole, and the stream engines); its synchronous methods are
 * noble's, checked under that name.
 */
export async function wycheproofChunked(name: string): Promise<Outcome> {
  const backend = backendNamed(name);
  if (backend.aead) return wycheproofChunkedAsync(backend, backend.aead);
  const failures: string[] = [];
  let checked = 0;
  for (const [suite, file] of CHUNKED_FILES) {
    const cases = await fetchJson<ChunkedCase[]>(`/vectors/inflated/${file}`);
    for (const t of cases) {
      const label = `${suite.name}/${t.tcId}`;
      const [key, ctx, ct] = [unhex(t.key), unhex(t.ctx), unhex(t.ct)];
      let whole: Uint8Array | undefined;
      try {
        whole = openPayload({ crypto: backend, suite, key, context: ctx }, ct);
      } catch (e) {
        if (t.result === 'valid') failures.push(`${label}: did not open (${errorCode(e)})`);
        else if (errorCode(e) !== 'ERR_DECRYPTION_FAILED') failures.push(`${label}: failed as ${errorCode(e)}`);
      }
      if (t.result === 'invalid' && whole) failures.push(`${label}: an invalid vector opened`);
      if (t.result === 'valid' && whole) {
        if (sha512Hex(whole) !== t.msgSha512) failures.push(`${label}: other plaintext`);
        const again = new Uint8Array(sealedLength(whole.length));
        new PayloadSealer(backend, suite, key, ctx, ct.subarray(0, 24)).sealAll(whole, again, 0);
        if (sha512Hex(again) !== sha512Hex(ct)) failures.push(`${label}: sealed again to other bytes`);
        const total = plaintextLength(ct.length) ?? 0;
        const read = async (position: number, length: number) => ct.subarray(position, position + length);
        const ranged = await openPayloadRange({ crypto: backend, suite, key, context: ctx }, { read: read, payloadLength: ct.length, start: 0, length: total, verifyLength: true });
        if (sha512Hex(ranged) !== t.msgSha512) failures.push(`${label}: random access read other plaintext`);
      }
      for (const step of [ct.length || 1, 1000, 16400]) {
        const released: Uint8Array[] = [];
        let error: unknown;
        const opener = new PayloadOpener(backend, suite, key.slice(), ctx);
        try {
          for (let i = 0; i < ct.length; i += step) released.push(...opener.push(ct.subarray(i, i + step)));
          released.push(opener.end());
        } catch (e) {
          error = e;
        }
        const plain = concat(released);
        if (t.result === 'valid') {
          if (error !== undefined || sha512Hex(plain) !== t.msgSha512) failures.push(`${label}: streamed in ${step}-byte pieces, other plaintext`);
        } else {
          if (errorCode(error) !== 'ERR_DECRYPTION_FAILED') failures.push(`${label}: streamed in ${step}-byte pieces, did not fail`);
          if (plain.length > (t.msgLength ?? 0)) failures.push(`${label}: streamed in ${step}-byte pieces, released more than the valid prefix`);
        }
      }
      checked++;
    }
  }
  return { checked, failures };
}

async function wycheproofChunkedAsync(backend: CryptoBackend, aead: AsyncAead): Promise<Outcome> {
  const failures: string[] = [];
  let checked = 0;
  for (const [suite, file] of CHUNKED_FILES) {
    const cases = await fetchJson<ChunkedCase[]>(`/vectors/inflated/${file}`);
    for (const t of cases) {
      const label = `${suite.name}/${t.tcId} (aead)`;
      const [key, ctx, ct] = [unhex(t.key), unhex(t.ctx), unhex(t.ct)];
      let whole: Uint8Array | undefined;
      try {
        whole = await openPayloadAsync({ crypto: backend, suite, key, context: ctx }, aead, ct);
      } catch (e) {
        if (t.result === 'valid') failures.push(`${label}: did not open (${errorCode(e)})`);
        else if (errorCode(e) !== 'ERR_DECRYPTION_FAILED') failures.push(`${label}: failed as ${errorCode(e)}`);
      }
      if (t.result === 'invalid' && whole) failures.push(`${label}: an invalid vector opened`);
      if (t.result === 'valid' && whole) {
        if (sha512Hex(whole) !== t.msgSha512) failures.push(`${label}: other plaintext`);
        const salt = ct.subarray(0, 24);
        const again = new Uint8Array(sealedLength(whole.length));
        await sealAllAsync(aead, new PayloadSealer(backend, suite, key, ctx, salt), whole, again, 0);
        if (sha512Hex(again) !== sha512Hex(ct)) failures.push(`${label}: sealed again to other bytes`);
        const sealer = new PayloadSealer(backend, suite, key, ctx, salt);
        const parts = [sealer.start()];
        const pipeline = new AsyncStreamSealer(aead, sealer);
        const emit = (chunk: Uint8Array): void => void parts.push(chunk);
        for (let i = 0; i < whole.length; i += 5000) await pipeline.push(whole.subarray(i, i + 5000), emit);
        await pipeline.end(emit);
        if (sha512Hex(concat(parts)) !== sha512Hex(ct)) failures.push(`${label}: stream-sealed again to other bytes`);
      }
      for (const step of [ct.length || 1, 1000, 16400]) {
        const released: Uint8Array[] = [];
        const emit = (chunk: Uint8Array): void => void released.push(chunk);
        let error: unknown;
        const opener = new AsyncStreamOpener(backend, aead, suite, key.slice(), ctx);
        try {
          for (let i = 0; i < ct.length; i += step) await opener.push(ct.subarray(i, i + step), emit);
          await opener.end(emit);
        } catch (e) {
          error = e;
        }
        const plain = concat(released);
        if (t.result === 'valid') {
          if (error !== undefined || sha512Hex(plain) !== t.msgSha512) failures.push(`${label}: streamed in ${step}-byte pieces, other plaintext`);
        } else {
          if (errorCode(error) !== 'ERR_DECRYPTION_FAILED') failures.push(`${label}: streamed in ${step}-byte pieces, did not fail`);
          if (plain.length > (t.msgLength ?? 0)) failures.push(`${label}: streamed in ${step}-byte pieces, released more than the valid prefix`);
        }
      }
      checked++;
    }
  }
  return { checked, failures };
}

// ---- our own vectors ----

interface V1Case {
  name: string;
  suite: SuiteName;
  context: EncryptionContext;
  detached: boolean;
  plaintext: string;
  openContext?: EncryptionContext | null;
  sealed: string;
  expect: string;
}

/**
 * test/vectors/envelope-v1.json: every case opened (or refused with its code) on the backend, and
 * every positive case sealed again from its seeded randomness, byte for byte.
 */
export async function vectorsV1(name: string): Promise<Outcome> {
  const file = await fetchJson<{ masterKey: string; keyId: string; cases: V1Case[] }>('/vectors/envelope-v1.json');
  const backend = name as BackendName;
  const failures: string[] = [];
  let checked = 0;
  // With the SM4 suite, as vectors.test.ts opens them: a suite byte changed to 03 fails as recorded.
  const reader = createEnvelope({ kms: new LocalKms({ [file.keyId]: unhex(file.masterKey) }, { backend }), backend, suites: [sm4] });
  for (const c of file.cases) {
    const openContext = c.openContext === undefined ? (c.detached ? c.context : null) : c.openContext;
    const options = openContext === null ? {} : { context: openContext };
    try {
      const result = await reader.openWithInfo(unhex(c.sealed), options);
      if (c.expect !== 'ok') failures.push(`${c.name}: opened, expected ${c.expect}`);
      else if (hex(result.plaintext) !== c.plaintext) failures.push(`${c.name}: other plaintext`);
    } catch (e) {
      if (errorCode(e) !== c.expect) failures.push(`${c.name}: ${errorCode(e)}, expected ${c.expect}`);
    }
    if (c.expect === 'ok') {
      const random = seededRandom(`kms-envelope vectors v1: ${c.name}`);
      const kms = new LocalKms({ [file.keyId]: unhex(file.masterKey) }, { randomBytes: random, backend });
      const sealed = await createEnvelope({ kms, suite: c.suite, randomBytes: random, backend }).seal(unhex(c.plaintext), {
        context: c.context,
        detachedContext: c.detached,
      });
      if (hex(sealed) !== c.sealed) failures.push(`${c.name}: sealed to other bytes`);
    }
    checked++;
  }
  return { checked, failures };
}

interface V2Case extends V1Case {
  source: 'kms' | 'hierarchy';
  partition?: string;
  compact: boolean;
}

/**
 * test/vectors/envelope-v2.json: every case opened with the recorded key store, and the positive
 * cases sealed again in order (the hierarchy ones sharing one store, as they were made), byte for byte.
 */
export async function vectorsV2(name: string): Promise<Outcome> {
  const file = await fetchJson<{ masterKey: string; keyId: string; store: Omit<StoredKey, 'createdAt'>[]; cases: V2Case[] }>('/vectors/envelope-v2.json');
  const backend = name as BackendName;
  const failures: string[] = [];
  let checked = 0;
  const store = new MemoryKeyStore();
  for (const record of file.store) await store.createVersion({ ...record, createdAt: 0 });
  const kms = new LocalKms({ [file.keyId]: unhex(file.masterKey) }, { backend });
  const reader = createEnvelope({ kms, hierarchy: createKeyHierarchy({ store, kms, backend }), backend });
  for (const c of file.cases) {
    try {
      const result = await reader.openWithInfo(unhex(c.sealed), c.detached ? { context: c.context } : {});
      if (c.expect !== 'ok') failures.push(`${c.name}: opened, expected ${c.expect}`);
      else if (hex(result.plaintext) !== c.plaintext) failures.push(`${c.name}: other plaintext`);
      else if (inspect(unhex(c.sealed)).compact !== c.compact) failures.push(`${c.name}: inspect() says otherwise`);
    } catch (e) {
      if (errorCode(e) !== c.expect) failures.push(`${c.name}: ${errorCode(e)}, expected ${c.expect}`);
    }
    checked++;
  }
  // Seal the positive cases again as test/vectors-v2.test.ts made them: the first 7 cases in order,
  // a rotation before the one that names it.
  const kmsFor = (random: (n: number) => Uint8Array) => new LocalKms({ [file.keyId]: unhex(file.masterKey) }, { randomBytes: random, backend });
  const sealStore = new MemoryKeyStore();
  const hierarchy = createKeyHierarchy({ store: sealStore, kms: kmsFor(seededRandom('kms-envelope vectors v2: hierarchy')), backend });
  for (const c of file.cases.slice(0, 7)) {
    const random = seededRandom(`kms-envelope vectors v2: ${c.name}`);
    if (c.name.includes('after a rotation')) await hierarchy.rotate(c.partition!);
    const envelope =
      c.source === 'kms'
        ? createEnvelope({ kms: kmsFor(random), format: 2, compact: c.compact, suite: c.suite, randomBytes: random, backend })
        : createEnvelope({ hierarchy, compact: c.compact, suite: c.suite, randomBytes: random, backend });
    const sealed = await envelope.seal(unhex(c.plaintext), { context: c.context, detachedContext: c.detached, ...(c.partition ? { partition: c.partition } : {}) });
    if (hex(sealed) !== c.sealed) failures.push(`${c.name}: sealed to other bytes`);
    checked++;
  }
  return { checked, failures };
}

// ---- the public API in the page ----

/** seal/open of strings and bytes (empty, small, several chunks) with LocalKms.generate(). */
export async function sealOpen(name: string): Promise<Outcome & { kmsId: string }> {
  const backend = name as BackendName;
  const kms = LocalKms.generate({ backend });
  const envelope = createEnvelope({ kms, backend });
  const failures: string[] = [];
  let checked = 0;
  for (const text of ['', 'hello from Chromium', 'ü€𝄞'.repeat(3000)]) {
    const sealed = await envelope.seal(text, { context: { page: 'chromium' } });
    if ((await envelope.openString(sealed, { context: { page: 'chromium' } })) !== text) failures.push(`string of ${text.length}: other text`);
    checked++;
  }
  for (const size of [0, 1, 16383, 16384, 16385, 100_000]) {
    const bytes = new Uint8Array(seededRandom(`bytes ${size}`)(size));
    for (const input of [bytes, bytes.buffer, new DataView(bytes.buffer)]) {
      const sealed = await envelope.seal(input, { context: { size: String(size) } });
      const opened = await envelope.open(sealed, { context: { size: String(size) } });
      if (hex(opened) !== hex(bytes)) failures.push(`${size} bytes as ${input.constructor.name}: other bytes`);
      checked++;
    }
    // The synchronous path: with the caches, once a first async seal and open have warmed them.
    const cached = createEnvelope({ kms, backend, cache: encryptionCache(), decryptCache: decryptCache() });
    const context = { sync: String(size) };
    await cached.open(await cached.seal(bytes, { context }), { context });
    if (hex(openSync(cached, sealSync(cached, bytes, { context }), { context })) !== hex(bytes)) failures.push(`${size} bytes, sealSync/openSync: other bytes`);
    await cached.close();
    checked++;
  }
  // A message sealed with another local key does not open: the KMS key is what opens it.
  const other = createEnvelope({ kms: LocalKms.generate({ backend }), backend });
  try {
    await other.open(await envelope.seal('not yours'));
    failures.push('opened with another LocalKms key');
  } catch (e) {
    // Generated keys have fingerprint ids (memory-…): the other LocalKms has no key of that id, as a KMS would answer (CmkNotFound).
    const named = errorCode(e) === 'ERR_KMS' && /has no master key "memory-/.test((e as Error).message);
    if (!named && !['ERR_DECRYPTION_FAILED', 'ERR_KEY_NOT_FOUND', 'ERR_KEY_PROVIDER_MISMATCH'].includes(errorCode(e))) failures.push(`another key: ${errorCode(e)}`);
  }
  checked++;
  await envelope.close();
  return { checked, failures, kmsId: kms.id };
}

/** Byte i of the big test stream: a pattern that no shifted or repeated chunk reproduces. */
const patternByte = (i: number): number => (i * 31 + (i >>> 14) * 7 + 11) & 0xff;

function patternBlock(size: number, start: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = patternByte(start + i);
  return out;
}

/**
 * sealStream then openStream over Blob.stream() of a `mib` MiB Blob: the sealed bytes go to a
 * Blob (Chromium's blob store, not this page's heap), then stream back through openStream; the
 * plaintext is compared with the pattern as it comes and counted, never held. Also opens a range
 * of the sealed Blob with openRange. Pauses three times for Node to measure the heap: before the
 * streams, and halfway through each.
 */
export async function bigStream(name: string, mib: number): Promise<{ plaintextBytes: number; sealedBytes: number; mismatches: number; rangeOk: boolean }> {
  const backend = name as BackendName;
  const envelope = createEnvelope({ kms: LocalKms.generate({ backend }), backend });
  const block = patternBlock(1 << 20, 0);
  const blocks: Uint8Array<ArrayBuffer>[] = [];
  // 16 distinct MiB, repeated: a chunk moved by a multiple of 16 MiB goes unseen, any other move not.
  for (let m = 0; m < 16; m++) blocks.push(m === 0 ? block : patternBlock(1 << 20, m << 20));
  const parts: Uint8Array<ArrayBuffer>[] = [];
  for (let m = 0; m < mib; m++) parts.push(blocks[m % 16]!);
  const plainBlob = new Blob(parts);
  parts.length = 0;

  // Node measures the live heap before the streams and halfway through each (see pauseForNode).
  await pauseForNode();
  const half = (mib << 20) / 2;
  let sealedSoFar = 0;
  let pausedSeal = false;
  const pauseSeal = new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      sealedSoFar += chunk.length;
      if (!pausedSeal && sealedSoFar >= half) {
        pausedSeal = true;
        await pauseForNode();
      }
      controller.enqueue(chunk);
    },
  });
  const sealedBlob = await new Response(plainBlob.stream().pipeThrough(sealStream(envelope, { context: { file: 'big.bin' } })).pipeThrough(pauseSeal)).blob();

  let count = 0;
  let mismatches = 0;
  const reader = sealedBlob.stream().pipeThrough(openStream(envelope, { context: { file: 'big.bin' } })).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    for (let i = 0; i < value.length; i += 4099) if (value[i] !== expectedByte(count + i, mib)) mismatches++;
    if (value.length > 0 && value[value.length - 1] !== expectedByte(count + value.length - 1, mib)) mismatches++;
    if (count < half && count + value.length >= half) await pauseForNode();
    count += value.length;
  }

  // Random access into the sealed Blob: a stretch across a chunk boundary in the middle.
  const offset = Math.floor((mib << 20) / 2) - 5000;
  const source = { size: sealedBlob.size, read: (p: number, n: number) => sealedBlob.slice(p, p + n).arrayBuffer() };
  const range = await openRange(envelope, source, offset, 20_000, { context: { file: 'big.bin' } });
  let rangeOk = range.length === 20_000;
  for (let i = 0; i < range.length && rangeOk; i++) rangeOk = range[i] === expectedByte(offset + i, mib);
  await envelope.close();
  return { plaintextBytes: count, sealedBytes: sealedBlob.size, mismatches, rangeOk };
}

/**
 * Waits until Node has measured the page's heap (harness.ts, servePauses): from Node, through the
 * DevTools protocol, after a full collection. performance.memory read in the page is no measure:
 * it once said 275 MiB where the protocol, a moment later, counted 7.
 */
async function pauseForNode(): Promise<void> {
  const flag = globalThis as unknown as { kmsEnvelopePaused?: boolean };
  flag.kmsEnvelopePaused = true;
  while (flag.kmsEnvelopePaused) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** The byte at `i` of the big stream's plaintext: block (i >> 20) % 16 of the pattern. */
function expectedByte(i: number, _mib: number): number {
  const m = Math.floor(i / (1 << 20)) % 16;
  return patternByte((m << 20) + (i % (1 << 20)));
}

/**
 * A sealed message with one byte changed, at the first chunk, a middle chunk and the last tag:
 * open() refuses it, openStream() releases nothing past the last chunk that authenticated (and
 * nothing at all for the first chunk), openRange() refuses the chunk, with ERR_DECRYPTION_FAILED.
 */
export async function tamper(name: string): Promise<{ cases: { where: string; open: string; streamed: number; streamError: string; range: string; prefixIntact: boolean }[] }> {
  const backend = name as BackendName;
  const envelope = createEnvelope({ kms: LocalKms.generate({ backend }), backend });
  const plain = patternBlock(3 * 16384 + 100, 0);
  const sealed = await envelope.seal(plain, { context: { t: '1' } });
  // The payload starts after the header with a 24-byte salt and a 32-byte commitment.
  const header = inspect(sealed).headerLength;
  const cases = [];
  for (const [where, index] of [
    ['first chunk', header + 56 + 10],
    ['second chunk', header + 56 + 16400 + 10],
    ['last tag', sealed.length - 1],
  ] as const) {
    const bad = flip(sealed, index);
    let open = 'opened';
    try {
      await envelope.open(bad, { context: { t: '1' } });
    } catch (e) {
      open = errorCode(e);
    }
    let streamError = 'none';
    const released: Uint8Array[] = [];
    try {
      const reader = piecewise(bad, 5000).pipeThrough(openStream(envelope, { context: { t: '1' } })).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        released.push(value);
      }
    } catch (e) {
      streamError = errorCode(e);
    }
    const got = concat(released);
    let range = 'opened';
    try {
      const chunk = where === 'first chunk' ? 0 : where === 'second chunk' ? 1 : 3;
      await openRange(envelope, { size: bad.length, read: async (p, n) => bad.subarray(p, p + n) }, chunk * 16384, 10, { context: { t: '1' }, verifyLength: false });
    } catch (e) {
      range = errorCode(e);
    }
    cases.push({ where, open, streamed: got.length, streamError, range, prefixIntact: hex(got) === hex(plain.subarray(0, got.length)) });
  }
  await envelope.close();
  return { cases };
}

/** LocalKms from a fixed key: what it seals here opens in Node (the test opens `sealed`), and back. */
export async function localKms(name: string, keyHex: string, fromNode: string): Promise<{ sealed: string; openedFromNode: string; wrongKey: string }> {
  const backend = name as BackendName;
  const kms = new LocalKms({ page: unhex(keyHex) }, { backend });
  const envelope = createEnvelope({ kms, backend });
  const sealed = await envelope.seal('sealed in Chromium', { context: { where: 'page' } });
  const openedFromNode = await envelope.openString(unhex(fromNode), { context: { where: 'node' } });
  let wrongKey = 'opened';
  try {
    await createEnvelope({ kms: new LocalKms({ page: new Uint8Array(32).fill(9) }, { backend }), backend }).open(sealed);
  } catch (e) {
    wrongKey = errorCode(e);
  }
  return { sealed: hex(sealed), openedFromNode, wrongKey };
}

/**
 * TencentKms from the page against the emulator on another 127.0.0.1 port (a cross-origin call:
 * CORS preflight and all): seal, open, and a message sealed by Node opened here. With `expectBlocked`,
 * the same call to an emulator that does not let this origin in, which must fail as a KMS error.
 */
export async function tencentKms(
  name: string,
  endpoint: string,
  credentials: { secretId: string; secretKey: string },
  keyId: string,
  fromNode: string | undefined,
): Promise<{ opened?: string; sealed?: string; openedFromNode?: string; error?: string; kind?: string }> {
  const backend = name as BackendName;
  const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint, credentials, timeoutMs: 20_000, deadlineMs: 30_000, retry: { limit: 0 } });
  const envelope = createEnvelope({ kms, backend });
  try {
    const sealed = await envelope.seal('through the emulator', { context: { tenant: 'page' } });
    const opened = await envelope.openString(sealed, { context: { tenant: 'page' } });
    const openedFromNode = fromNode ? await envelope.openString(unhex(fromNode)) : undefined;
    return { opened, sealed: hex(sealed), ...(openedFromNode === undefined ? {} : { openedFromNode }) };
  } catch (e) {
    return { error: errorCode(e), kind: String((e as { kind?: unknown })?.kind) };
  } finally {
    await envelope.close();
  }
}

/**
 * TencentKms with `responseKey` from the page: the key pair is WebCrypto's (no node:crypto here),
 * the data key comes back under its public key; seal, open, and the PEM sent.
 */
export async function tencentResponseKey(
  endpoint: string,
  credentials: { secretId: string; secretKey: string },
  keyId: string,
): Promise<{ opened?: string; sealed?: string; error?: string; pemSent?: boolean; nodeCrypto: boolean }> {
  const sent: string[] = [];
  const watching: typeof fetch = async (input, init) => {
    if (typeof init?.body === 'string') sent.push(init.body);
    else if (input instanceof Request) sent.push(await input.clone().text());
    return fetch(input, init);
  };
  const kms = new TencentKms({ keyId, region: 'ap-guangzhou', endpoint, credentials, timeoutMs: 20_000, deadlineMs: 30_000, retry: { limit: 0 }, responseKey: true, fetch: watching });
  const envelope = createEnvelope({ kms });
  const nodeCrypto = typeof (globalThis as { process?: { getBuiltinModule?: unknown } }).process?.getBuiltinModule === 'function';
  try {
    const sealed = await envelope.seal('under a public key', { context: { tenant: 'page' } });
    const opened = await envelope.openString(sealed, { context: { tenant: 'page' } });
    return { opened, sealed: hex(sealed), pemSent: sent.length >= 2 && sent.every((b) => b.includes('BEGIN PUBLIC KEY')), nodeCrypto };
  } catch (e) {
    return { error: errorCode(e), nodeCrypto };
  } finally {
    await envelope.close();
    kms.close();
  }
}

const tests = { backends, wycheproofGcm, wycheproofHkdf, wycheproofChunked, vectorsV1, vectorsV2, sealOpen, bigStream, tamper, localKms, tencentKms, tencentResponseKey };
export type PageTests = typeof tests;
(globalThis as { kmsEnvelopeTests?: PageTests }).kmsEnvelopeTests = tests;
