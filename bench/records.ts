/**
 * Small records (64 B, 1 KiB, 16 KiB): seal, open and seal+open with a cached data key, a fresh
 * LocalKms data key per message, the portable backend, and the peers, against raw node:crypto
 * and raw @noble/ciphers AES-256-GCM (fresh cipher per op) on the same payload, interleaved in
 * rounds in one process. Every path is round-trip-checked before it is timed.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { gcm } from '@noble/ciphers/aes.js';
import { createEnvelope, decryptCache, encryptionCache, LocalKms } from '../src/index.node.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../src/hierarchy.ts';
import { type Case, measure, type Result } from './harness.ts';

export const RECORD_SIZES = [64, 1024, 16 * 1024];
const WARM_UP_MS = 1000;

export interface Peer {
  name: string;
  seal: (plaintext: Uint8Array) => Promise<Uint8Array>;
  open: (sealed: Uint8Array) => Promise<Uint8Array>;
}

/** Loads bench/peers (its own package.json), or returns none when it is not installed. */
export async function loadPeers(root: URL): Promise<Peer[]> {
  const entry = new URL('bench/peers/peers.mjs', root);
  if (!existsSync(new URL('bench/peers/node_modules', root))) return [];
  const module = (await import(entry.href)) as { loadPeers: () => Promise<Peer[]> };
  return module.loadPeers();
}

/**
 * The floor: AES-256-GCM seal+open with a fixed key and a fresh random nonce, the fastest plain way.
 * GCM's final() returns no bytes, so the update() outputs are the ciphertext and the plaintext:
 * no Buffer.concat (joining them cost 3.4% more instructions and about 10% more time, issue 30).
 * final() still runs both ways: it makes the tag, and checks it.
 */
function rawNode(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  const ct = c.update(plaintext);
  c.final();
  const tag = c.getAuthTag();
  const d = createDecipheriv('aes-256-gcm', key, nonce);
  d.setAuthTag(tag);
  const back = d.update(ct);
  d.final();
  return back;
}

function rawNoble(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const nonce = globalThis.crypto.getRandomValues(new Uint8Array(12));
  const sealed = gcm(key, nonce).encrypt(plaintext);
  return gcm(key, nonce).decrypt(sealed);
}

export interface RecordRow {
  size: number;
  results: Record<string, Result>;
}

/** Case names, used as keys in the report and the regression baseline. */
export const CASES = {
  rawNode: 'raw node:crypto GCM enc+dec',
  rawNoble: 'raw @noble/ciphers GCM enc+dec',
  seal: 'seal, cached key (node)',
  open: 'open, cached key (node)',
  sealOpen: 'seal+open, cached key (node)',
  sealOpenNoble: 'seal+open, cached key (noble)',
  sealOpenFresh: 'seal+open, fresh LocalKms key (node)',
  sealOpenHierarchy: 'seal+open, key hierarchy: a unique key per record (node)',
} as const;

export async function benchRecords(peers: Peer[], options: { rounds?: number; sizes?: number[] } = {}): Promise<RecordRow[]> {
  const kms = LocalKms.generate();
  const cache = encryptionCache({ maxMessages: 2 ** 40, maxAge: 2 ** 40, maxBytes: 2 ** 50 });
  const cached = createEnvelope({ kms, cache, decryptCache: decryptCache({ ttl: 2 ** 40 }) });
  const cachedNoble = createEnvelope({ kms, cache, decryptCache: decryptCache({ ttl: 2 ** 40 }), backend: 'noble' });
  const fresh = createEnvelope({ kms });
  // Warm intermediate key: no KMS call per record, each record under its own derived key.
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
  const underHierarchy = createEnvelope({ hierarchy, partition: 'tenant-1' });
  await underHierarchy.open(await underHierarchy.seal('warm'));
  const context = { table: 'users', row: '42' };
  const key = randomBytes(32);
  const rows: RecordRow[] = [];
  for (const size of options.sizes ?? RECORD_SIZES) {
    const plaintext = new Uint8Array(randomBytes(size));
    const sealedOnce = await cached.seal(plaintext, { context });
    const cases: Case[] = [
      { name: CASES.rawNode, run: () => rawNode(key, plaintext) },
      // Right after its floor, so that each round's ratio compares batches run moments apart.
      { name: CASES.sealOpenHierarchy, run: async () => underHierarchy.open(await underHierarchy.seal(plaintext, { context })) },
      { name: CASES.rawNoble, run: () => rawNoble(key, plaintext) },
      { name: CASES.seal, run: () => cached.seal(plaintext, { context }) },
      { name: CASES.open, run: () => cached.open(sealedOnce) },
      { name: CASES.sealOpen, run: async () => cached.open(await cached.seal(plaintext, { context })) },
      { name: CASES.sealOpenNoble, run: async () => cachedNoble.open(await cachedNoble.seal(plaintext, { context })) },
      { name: CASES.sealOpenFresh, run: async () => fresh.open(await fresh.seal(plaintext, { context })) },
      ...peers.map((p) => ({ name: p.name, run: async () => p.open(await p.seal(plaintext)) })),
    ];
    // Cross-check: every path gives the plaintext back, and nothing mutated the input.
    const copy = plaintext.slice();
    for (const c of cases) {
      if (c.name === CASES.seal) continue;
      const back = (await c.run()) as Uint8Array;
      if (!Buffer.from(back).equals(Buffer.from(copy))) throw new Error(`${c.name}: round trip failed`);
    }
    if (!Buffer.from(plaintext).equals(Buffer.from(copy))) throw new Error('a case mutated its input');
    // A second of each case first: with the peers' modules loaded and a full GC before every batch,
    // the library's functions reached optimized code only in the 4th to 7th round of 11
    // (--trace-opt), so the medians held warm-up rounds (BENCHMARKS.md, issue 30 session 10).
    for (const c of cases) {
      const until = performance.now() + WARM_UP_MS;
      while (performance.now() < until) await c.run();
    }
    // Batches of 100 ms: long enough that the young-generation collections (every few ms here) fall
    // evenly into every batch, so the rounds differ less.
    const results = await measure(cases, { rounds: options.rounds ?? 15, batchMs: 100 });
    rows.push({ size, results: Object.fromEntries(results.map((r) => [r.name, r])) });
  }
  await cached.close();
  await cachedNoble.close();
  await hierarchy.close();
  return rows;
}
