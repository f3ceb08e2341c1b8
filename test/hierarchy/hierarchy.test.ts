import { describe, expect, it } from 'vitest';
import { type KeyStore, MemoryKeyStore } from '../../src/hierarchy/key-store.ts';
import { createKeyHierarchy } from '../../src/hierarchy/hierarchy.ts';
import { createEnvelope, DecryptionFailedError, inspect, KeyNotFoundError, KmsError, LocalKms, openRange, openStream } from '../../src/index.ts';
import { InstrumentedProvider } from '../instrumented.ts';

function fleet(options: { kms?: InstrumentedProvider; store?: KeyStore } = {}) {
  const kms = options.kms ?? new InstrumentedProvider();
  const store = options.store ?? new MemoryKeyStore();
  const audits: unknown[] = [];
  const hierarchy = createKeyHierarchy({ store, kms, audit: (r) => audits.push(r) });
  const envelope = createEnvelope({ hierarchy, partition: 'tenant-1' });
  return { kms, store, hierarchy, envelope, audits };
}

const base64url = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');

describe('the key hierarchy', () => {
  it('seals every message under its own key with no KMS call once warm: KMS calls do not grow with the records', async () => {
    const { kms, envelope, hierarchy } = fleet();
    const sealed = await Promise.all(Array.from({ length: 500 }, (_, i) => envelope.seal(`record ${i}`, { context: { row: String(i) } })));
    // The process that created the key version uses GenerateDataKey's plaintext: no Decrypt.
    expect(kms.calls).toEqual({ generate: 1, decrypt: 0 });
    const opened = await Promise.all(sealed.map((s, i) => envelope.openString(s, { context: { row: String(i) } })));
    expect(opened[123]).toBe('record 123');
    expect(kms.calls).toEqual({ generate: 1, decrypt: 0 });
    expect(hierarchy.metrics()).toMatchObject({
      versionsCreated: 1,
      versionsInUse: { 'tenant-1': [1] },
      kmsCalls: { GenerateDataKey: { ok: 1, failed: 0 }, Decrypt: { ok: 0, failed: 0 } },
    });
    expect(hierarchy.metrics().hits).toBeGreaterThanOrEqual(500); // every open, once the seals had loaded the key
    const same = await Promise.all([envelope.seal('x'), envelope.seal('x')]);
    expect(Buffer.from(same[0]).equals(Buffer.from(same[1]))).toBe(false); // fresh salt, fresh key
  });

  it('takes the plaintext of the version it created, and the stored record of one another process created first (wiping its own)', async () => {
    const store = new MemoryKeyStore();
    const kms = new InstrumentedProvider();
    const first = fleet({ store, kms });
    const sealed = await first.envelope.seal('first', { context: { row: '1' } });
    expect(kms.calls).toEqual({ generate: 1, decrypt: 0 });
    // A second process sharing the store loads the stored version through Decrypt.
    const second = fleet({ store, kms });
    expect(await second.envelope.openString(sealed, { context: { row: '1' } })).toBe('first');
    expect(kms.calls).toEqual({ generate: 1, decrypt: 1 });

    // A lost race: the store already holds version 1 when this process's createVersion lands.
    const raceStore = new MemoryKeyStore();
    const raceKms = new InstrumentedProvider();
    const winner = fleet({ store: raceStore, kms: raceKms });
    const won = await winner.envelope.seal('winner', { context: { row: '2' } });
    const generated: Uint8Array[] = [];
    const loser = createKeyHierarchy({
      // A store whose active record this process did not see: it goes on to create version 1.
      store: {
        getActive: async () => undefined,
        getVersion: (p, v) => raceStore.getVersion(p, v),
        createVersion: (r) => raceStore.createVersion(r),
        listVersions: (p) => raceStore.listVersions(p),
        setState: (p, v, st) => raceStore.setState(p, v, st),
      } satisfies KeyStore,
      kms: {
        id: raceKms.id,
        generateDataKey: async (r) => {
          const key = await raceKms.generateDataKey(r);
          generated.push(key.plaintextKey);
          return key;
        },
        decryptDataKey: (r) => raceKms.decryptDataKey(r),
      },
    });
    const loserEnvelope = createEnvelope({ hierarchy: loser, partition: 'tenant-1' });
    const sealedByLoser = await loserEnvelope.seal('loser', { context: { row: '3' } });
    expect(generated).toHaveLength(1);
    expect(generated[0]!.every((b) => b === 0)).toBe(true); // its own plaintext, not used, is wiped
    expect(raceKms.calls.decrypt).toBe(1); // it loaded the winner's record
    expect(await winner.envelope.openString(sealedByLoser, { context: { row: '3' } })).toBe('loser');
    expect(await loserEnvelope.openString(won, { context: { row: '2' } })).toBe('winner');
  });

  it('a seal or open that finds the version this process is still creating waits for its plaintext: no Decrypt of its own key', async () => {
    const inner = new MemoryKeyStore();
    let written!: () => void;
    const wrote = new Promise<void>((resolve) => (written = resolve));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // The record is in the store, readable by anyone, before createVersion returns (a file store
    // still unlocking, a database still committing its answer).
    const store: KeyStore = {
      getActive: (p) => inner.getActive(p),
      getVersion: (p, v) => inner.getVersion(p, v),
      createVersion: async (r) => {
        const stored = await inner.createVersion(r);
        written();
        await held;
        return stored;
      },
      listVersions: (p) => inner.listVersions(p),
      setState: (p, v, st) => inner.setState(p, v, st),
    };
    const { kms, envelope, hierarchy } = fleet({ store });
    const first = envelope.seal('first', { context: { row: '1' } });
    await wrote;
    // A second seal, and a warm(), now read the active version from the store; neither may load it through the KMS.
    const second = envelope.seal('second', { context: { row: '2' } });
    const warmed = hierarchy.warm(['tenant-1']);
    await new Promise((resolve) => setTimeout(resolve, 10));
    release();
    const [a, b] = await Promise.all([first, second, warmed]);
    expect(kms.calls).toEqual({ generate: 1, decrypt: 0 });
    expect(await envelope.openString(a, { context: { row: '1' } })).toBe('first');
    expect(await envelope.openString(b, { context: { row: '2' } })).toBe('second');
    expect(kms.calls).toEqual({ generate: 1, decrypt: 0 });
  });

  it('an open of a version this process is still creating by rotation waits for its plaintext: no Decrypt', async () => {
    const inner = new MemoryKeyStore();
    const gate = { hold: false, written: () => {}, release: () => {} };
    const store: KeyStore = {
      getActive: (p) => inner.getActive(p),
      getVersion: (p, v) => inner.getVersion(p, v),
      createVersion: async (r) => {
        const stored = await inner.createVersion(r);
        if (gate.hold) {
          gate.written();
          await new Promise<void>((resolve) => (gate.release = resolve));
        }
        return stored;
      },
      listVersions: (p) => inner.listVersions(p),
      setState: (p, v, st) => inner.setState(p, v, st),
    };
    const kms = new InstrumentedProvider();
    const mine = fleet({ store, kms });
    await mine.envelope.seal('version 1');
    gate.hold = true;
    const wrote = new Promise<void>((resolve) => (gate.written = resolve));
    const rotation = mine.hierarchy.rotate('tenant-1');
    await wrote;
    // Another process sees version 2 active and seals under it; this one opens that record.
    const other = fleet({ store: inner, kms });
    const sealed = await other.envelope.seal('version 2', { context: { row: '9' } });
    expect(kms.calls).toEqual({ generate: 2, decrypt: 1 }); // the other process's load of version 2
    const opened = mine.envelope.openString(sealed, { context: { row: '9' } });
    await new Promise((resolve) => setTimeout(resolve, 10));
    gate.release();
    await rotation;
    expect(await opened).toBe('version 2');
    expect(kms.calls).toEqual({ generate: 2, decrypt: 1 });
  });

  it('a read of the active version that was out while this process created it does not create it again', async () => {
    const inner = new MemoryKeyStore();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reads = 0;
    const store: KeyStore = {
      // The first read answers what the store held when it was sent (nothing), but only once released.
      getActive: async (p) => {
        const answer = await inner.getActive(p);
        if (reads++ === 0) await held;
        return answer;
      },
      getVersion: (p, v) => inner.getVersion(p, v),
      createVersion: (r) => inner.createVersion(r),
      listVersions: (p) => inner.listVersions(p),
      setState: (p, v, st) => inner.setState(p, v, st),
    };
    const { kms, envelope } = fleet({ store });
    const slow = envelope.seal('read before the creation', { context: { row: '1' } });
    await new Promise((resolve) => setTimeout(resolve, 0));
    const sealed = await envelope.seal('created the version', { context: { row: '2' } });
    release();
    const late = await slow;
    expect(kms.calls).toEqual({ generate: 1, decrypt: 0 });
    expect(await envelope.openString(late, { context: { row: '1' } })).toBe('read before the creation');
    expect(await envelope.openString(sealed, { context: { row: '2' } })).toBe('created the version');
  });

  it('a creation the KMS refuses fails its seal with the KMS error, and the next seal creates the version', async () => {
    const kms = new InstrumentedProvider();
    let refuse = true;
    const hierarchy = createKeyHierarchy({
      store: new MemoryKeyStore(),
      kms: {
        id: kms.id,
        generateDataKey: (r) => (refuse ? ((refuse = false), Promise.reject(new KmsError('GenerateDataKey: refused'))) : kms.generateDataKey(r)),
        decryptDataKey: (r) => kms.decryptDataKey(r),
      },
    });
    const envelope = createEnvelope({ hierarchy, partition: 'tenant-1' });
    await expect(envelope.seal('first')).rejects.toThrow(KmsError);
    const sealed = await envelope.seal('second');
    expect(await envelope.openString(sealed)).toBe('second');
    expect(kms.calls).toEqual({ generate: 1, decrypt: 0 });
  });

  it('writes format 2 with the partition and key version, and a compact payload for small values', async () => {
    const { envelope } = fleet();
    const sealed = await envelope.seal(new Uint8Array(16).fill(7), { context: { table: 't', column: 'c' }, detachedContext: true });
    expect(sealed[4]).toBe(2);
    const info = inspect(sealed);
    expect(info).toMatchObject({ version: 2, keySource: 'intermediate', partition: 'tenant-1', keyVersion: 1, compact: true, provider: 'hierarchy', keyId: 'tenant-1#1', wrappedKeys: [] });
    // A 16-byte value in text form (base64url plus a short prefix) within 120 characters.
    expect(`kme2.${base64url(sealed)}`.length).toBeLessThanOrEqual(120);
    expect(sealed.length).toBe(7 + 1 + 'tenant-1'.length + 1 + 16 + 16 + 16 + 16);
    const large = await envelope.seal(new Uint8Array(20000));
    expect(inspect(large).compact).toBe(false);
    expect((await envelope.open(large)).length).toBe(20000);
  });

  it('opens through streams and ranges as through open(), compact or not', async () => {
    const { envelope } = fleet();
    for (const size of [0, 5, 16383, 16384, 40000]) {
      const plaintext = new Uint8Array(size).map((_, i) => i % 251);
      const sealed = await envelope.seal(plaintext, { context: { n: String(size) } });
      const chunks: Uint8Array[] = [];
      await new Blob([sealed]).stream().pipeThrough(openStream(envelope)).pipeTo(new WritableStream({ write: (c) => void chunks.push(c) }));
      expect(Buffer.concat(chunks).equals(Buffer.from(plaintext))).toBe(true);
      const source = { size: sealed.length, read: async (p: number, n: number) => sealed.slice(p, p + n) };
      const middle = await openRange(envelope, source, Math.floor(size / 3), Math.floor(size / 3));
      expect(Buffer.from(middle).equals(Buffer.from(plaintext.subarray(Math.floor(size / 3), 2 * Math.floor(size / 3))))).toBe(true);
    }
  });

  it('a key store that returns a corrupted wrapped key fails the open with a typed error (the KMS refuses it)', async () => {
    const { store, envelope, kms } = fleet();
    const sealed = await envelope.seal('secret');
    const stored = (await store.getVersion('tenant-1', 1))!;
    const corrupt = new MemoryKeyStore();
    await corrupt.createVersion({ ...stored, ciphertextBlob: `${stored.ciphertextBlob.slice(0, -3)}AAA` });
    const reader = createEnvelope({ hierarchy: createKeyHierarchy({ store: corrupt, kms }) });
    await expect(reader.open(sealed)).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('a key store that swaps two versions fails the open at the KMS (context binds partition and version)', async () => {
    const { store, envelope, hierarchy, kms } = fleet();
    const sealed = await envelope.seal('secret');
    await hierarchy.rotate('tenant-1');
    const [v1, v2] = await store.listVersions('tenant-1');
    const swapped = new MemoryKeyStore();
    await swapped.createVersion({ ...v1!, ciphertextBlob: v2!.ciphertextBlob });
    await swapped.createVersion({ ...v2!, ciphertextBlob: v1!.ciphertextBlob });
    const reader = createEnvelope({ hierarchy: createKeyHierarchy({ store: swapped, kms }) });
    await expect(reader.open(sealed)).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('another intermediate key under the same partition and version (a restored or forked store) fails at the key commitment', async () => {
    const kms = new InstrumentedProvider();
    const a = fleet({ kms });
    const b = fleet({ kms });
    const sealed = await a.envelope.seal('secret');
    await b.envelope.seal('makes version 1 in the other store');
    expect((await a.store.getVersion('tenant-1', 1))!.ciphertextBlob).not.toBe((await b.store.getVersion('tenant-1', 1))!.ciphertextBlob);
    await expect(b.envelope.open(sealed)).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('a missing version is a typed error naming the partition and the version', async () => {
    const { envelope } = fleet();
    const sealed = await envelope.seal('secret', { partition: 'tenant-9' });
    const empty = createEnvelope({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: new InstrumentedProvider() }) });
    const error = await empty.open(sealed).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeyNotFoundError);
    expect(error).toMatchObject({ code: 'ERR_KEY_NOT_FOUND', partition: 'tenant-9', version: 1 });
    expect((error as Error).message).toContain('"tenant-9"');
  });

  it('rotation adds an active version for new writes; old versions stay decrypt-only and still open', async () => {
    const { envelope, hierarchy, store } = fleet();
    const old = await envelope.seal('old');
    const created = await hierarchy.rotate('tenant-1');
    expect(created.version).toBe(2);
    const fresh = await envelope.seal('new');
    expect(inspect(fresh).keyVersion).toBe(2);
    expect(await envelope.openString(old)).toBe('old');
    expect((await store.listVersions('tenant-1')).map((k) => [k.version, k.state])).toEqual([[1, 'decrypt-only'], [2, 'active']]);
  });

  it('a mixed fleet: writers keep format 1 until told, and every reader of this version opens both', async () => {
    const kms = LocalKms.generate();
    const v1writer = createEnvelope({ kms });
    const v2writer = createEnvelope({ kms, format: 2 });
    const a = await v1writer.seal('from a v1 writer', { context: { t: '1' } });
    const b = await v2writer.seal('from a v2 writer', { context: { t: '1' } });
    expect([a[4], b[4]]).toEqual([1, 2]);
    expect(inspect(b)).toMatchObject({ keySource: 'kms', compact: true, wrappedKeys: [{ provider: 'local' }] });
    for (const reader of [v1writer, v2writer]) {
      expect(await reader.openString(a)).toBe('from a v1 writer');
      expect(await reader.openString(b)).toBe('from a v2 writer');
    }
    // A reader with the hierarchy and the KMS opens both kinds.
    const { envelope: h } = fleet();
    const both = createEnvelope({ kms, hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms }) });
    expect(await both.openString(a)).toBe('from a v1 writer');
    await expect(h.open(a)).rejects.toMatchObject({ code: 'ERR_KEY_PROVIDER_MISMATCH' });
  });

  it('calls the audit hook on every open, with a digest of the context and caller metadata, never a key', async () => {
    const { envelope, audits } = fleet();
    const sealed = await envelope.seal('audited', { context: { row: '1' } });
    await envelope.open(sealed, { audit: { user: 'alice' } });
    await envelope.open(sealed);
    // The first seal created version 1: an admin record before the opens.
    expect(audits[0]).toMatchObject({ operation: 'create-version', partitions: ['tenant-1'], versions: [1], ok: true });
    audits.shift();
    expect(audits).toHaveLength(2);
    expect(audits[0]).toMatchObject({ operation: 'open', partition: 'tenant-1', version: 1, fromCache: true, metadata: { user: 'alice' } });
    expect((audits[0] as { contextDigest: string }).contextDigest).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(JSON.stringify(audits)).not.toMatch(/audited/);
  });

  it('wipes the intermediate keys it received on close()', async () => {
    const { envelope, hierarchy, kms } = fleet();
    await envelope.open(await envelope.seal('x'));
    await hierarchy.close();
    expect(kms.allWiped()).toBe(true);
  });

  it('gives each tenant its own master key through a resolver', async () => {
    const keys = { a: new InstrumentedProvider(), b: new InstrumentedProvider() };
    const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms: (partition) => keys[partition as 'a' | 'b'] });
    const envelope = createEnvelope({ hierarchy });
    const fromA = await envelope.seal('for a', { partition: 'a' });
    const fromB = await envelope.seal('for b', { partition: 'b' });
    expect([keys.a.calls.generate, keys.b.calls.generate]).toEqual([1, 1]);
    expect(await envelope.openString(fromA)).toBe('for a');
    expect(await envelope.openString(fromB)).toBe('for b');
  });
});
