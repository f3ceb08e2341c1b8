/**
 * npm run bench:sm4 — suite 03 (SM4-GCM-SM3) against suite 01 (Cobblestone-256, AES-256-GCM), in
 * the same run, as ratios:
 *
 * 1. 1 KiB records: sealSync + openSync under cached keys (the record path: one HKDF and one AEAD
 *    call per message), on the node backend and on the portable (noble) one;
 * 2. a 64 MiB stream: sealStream then openStream in memory, 1 MiB pieces;
 * 3. the parts: SM4-GCM on one 16 KiB chunk by each path (OpenSSL sm4-gcm where this Node has it,
 *    OpenSSL sm4-ctr with ghash.ts, TypeScript), SM4-CTR and GHASH alone (ghash.ts against
 *    @noble/ciphers'), and HKDF-Expand-SM3 for one message
 *    (TypeScript, with and without a prepared key state, against one over node:crypto's HMAC-SM3).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { hasNativeSm4Gcm, nativeSm4Gcm, type NodeSm4Crypto, nodeSm4Gcm, portableSm4Gcm } from '../src/sm4/sm4-gcm.ts';
import { hkdfExpandSm3, hmacSm3Prepare } from '../src/sm4/sm3.ts';
import { sm4Ctr32, sm4ExpandKey } from '../src/sm4/sm4.ts';
import { Ghash } from '../src/sm4/ghash.ts';
import { GHASH } from '@noble/ciphers/_polyval.js';
import { type BackendName, createEnvelope, decryptCache, encryptionCache, LocalKms, openStream, openSync, sealStream, sealSync, type SuiteName } from '../src/index.node.ts';
import { type Suite, sm4 as sm4Suite } from '../src/sm4.ts';
import { type Case, formatNs, type Result, ratioTo } from './harness.ts';

const MiB = 1024 * 1024;

/** This process's CPU time in nanoseconds: other processes on a loaded machine do not count. */
function cpuNs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}

/**
 * harness.ts's measure(), timed in this process's CPU time rather than wall time: the machine this
 * runs on is shared (load averages of 10 to 20 on 2 cores), which inflates wall time by whatever
 * else runs. Batches of at least 30 ms of CPU, cases interleaved in rounds, medians.
 */
async function measure(cases: Case[], options: { rounds?: number } = {}): Promise<Result[]> {
  const rounds = options.rounds ?? 11;
  const timeBatch = async (c: Case, ops: number): Promise<number> => {
    const start = cpuNs();
    for (let i = 0; i < ops; i++) {
      const r = c.run();
      if (r instanceof Promise) await r;
    }
    return (cpuNs() - start) / ops;
  };
  const opsPerBatch = new Map<Case, number>();
  for (const c of cases) {
    let ops = 1;
    while ((await timeBatch(c, ops)) * ops < 30e6 && ops < 1e7) ops *= 2;
    opsPerBatch.set(c, ops);
  }
  const samples = new Map<Case, number[]>(cases.map((c) => [c, []]));
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) {
      (globalThis as { gc?: () => void }).gc?.();
      samples.get(c)!.push(await timeBatch(c, opsPerBatch.get(c)!));
    }
  }
  return cases.map((c) => {
    const all = samples.get(c)!;
    const sorted = [...all].sort((a, b) => a - b);
    return { name: c.name, medianNs: sorted[Math.floor(sorted.length / 2)]!, minNs: sorted[0]!, maxNs: sorted[sorted.length - 1]!, rounds: all };
  });
}
const context = { table: 'users', row: '42' };

async function records(backend: BackendName): Promise<string[]> {
  const plaintext = randomBytes(1024);
  const make = async (suite: SuiteName | Suite) => {
    const envelope = createEnvelope({ kms: LocalKms.generate(), suite, backend, cache: encryptionCache({ maxMessages: 2 ** 31 }), decryptCache: decryptCache() });
    const warm = await envelope.seal(plaintext, { context });
    await envelope.open(warm, { context });
    return () => openSync(envelope, sealSync(envelope, plaintext, { context }), { context });
  };
  const aes = await make('cobblestone-256');
  const sm4 = await make(sm4Suite);
  const results = await measure([
    { name: `AES-256 suite (01), ${backend}`, run: aes },
    { name: `SM4 suite (03), ${backend}`, run: sm4 },
  ]);
  return results.map((r) => `| 1 KiB record, seal + open, cached keys | ${r.name} | ${formatNs(r.medianNs)} | ${ratioTo(r, results[0]!).toFixed(2)}x |`);
}

function pieces(total: number, piece: Uint8Array): ReadableStream<Uint8Array> {
  let done = 0;
  return new ReadableStream({
    pull(controller) {
      if (done >= total) return controller.close();
      controller.enqueue(piece);
      done += piece.length;
    },
  });
}

async function drain(stream: ReadableStream<Uint8Array>, keep?: Uint8Array[]): Promise<number> {
  let n = 0;
  for await (const part of stream as unknown as AsyncIterable<Uint8Array>) {
    n += part.length;
    keep?.push(part);
  }
  return n;
}

/** Seal and open MB/s of a `size`-byte stream, the best of `runs`. */
async function streamRates(suite: SuiteName | Suite, backend: BackendName, size: number, runs: number): Promise<[seal: number, open: number]> {
  const envelope = createEnvelope({ kms: LocalKms.generate(), suite, backend });
  const piece = randomBytes(MiB);
  let seal = 0;
  let open = 0;
  for (let r = 0; r < runs; r++) {
    const sealed: Uint8Array[] = [];
    let start = cpuNs();
    await drain(pieces(size, piece).pipeThrough(sealStream(envelope, { context })), sealed);
    seal = Math.max(seal, size / MiB / ((cpuNs() - start) / 1e9));
    let i = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (i >= sealed.length) return controller.close();
        controller.enqueue(sealed[i++]!);
      },
    });
    start = cpuNs();
    if ((await drain(source.pipeThrough(openStream(envelope)))) !== size) throw new Error('round trip failed');
    open = Math.max(open, size / MiB / ((cpuNs() - start) / 1e9));
  }
  return [seal, open];
}

async function parts(): Promise<string[]> {
  const c = { createCipheriv, createDecipheriv } as unknown as NodeSm4Crypto;
  // Plain Uint8Arrays, as the library hands them on (not Buffers).
  const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
  const key = bytes(16);
  const key32 = bytes(32);
  const nonce = bytes(12);
  const chunk = bytes(16384);
  const out = new Uint8Array(16384 + 16);
  const counter = Uint8Array.of(...nonce, 0, 0, 0, 2);
  const hashKey = bytes(16);
  const aesGcm = () => {
    const cipher = createCipheriv('aes-256-gcm', key32, nonce, { authTagLength: 16 });
    out.set(cipher.update(chunk));
    cipher.final();
    out.set(cipher.getAuthTag(), 16384);
  };
  // Made once, as suite-backend.ts does (a fresh closure per call would run cold).
  const nodePath = nodeSm4Gcm(c);
  const nativePath = hasNativeSm4Gcm(c) ? nativeSm4Gcm(c) : undefined;
  const chunkCases = [
    { name: 'AES-256-GCM, node:crypto (suite 01 on Node)', run: aesGcm },
    ...(nativePath ? [{ name: 'SM4-GCM, OpenSSL sm4-gcm (suite 03 on this Node)', run: () => nativePath.seal(key, nonce, chunk, out, 0) }] : []),
    { name: 'SM4-GCM, OpenSSL sm4-ctr + GHASH (not chosen)', run: () => nodePath.seal(key, nonce, chunk, out, 0) },
    { name: `SM4-GCM, TypeScript SM4 + GHASH (portable${nativePath ? '' : '; suite 03 on this Node'})`, run: () => portableSm4Gcm.seal(key, nonce, chunk, out, 0) },
    { name: 'SM4-CTR alone, OpenSSL sm4-ctr', run: () => createCipheriv('sm4-ctr', key, counter).update(chunk) },
    { name: 'SM4-CTR alone, TypeScript', run: () => sm4Ctr32(sm4ExpandKey(key), counter.slice(), chunk, out, 0) },
    { name: 'GHASH alone, ghash.ts', run: () => new Ghash(hashKey).update(chunk).digestInto(out) },
    { name: 'GHASH alone, @noble/ciphers', run: () => new GHASH(hashKey, chunk.length).update(chunk).digest() },
  ];
  const chunkResults = await measure(chunkCases, { rounds: 9 });
  const rows = chunkResults.map(
    (r) => `| 16 KiB chunk, seal | ${r.name} | ${formatNs(r.medianNs)} (${((16384 / r.medianNs) * 1e9 / MiB).toFixed(0)} MB/s) | ${ratioTo(r, chunkResults[0]!).toFixed(2)}x |`,
  );
  // One suite-03 message's key schedule: key 16, base nonce 12, commitment 32 (60 bytes, two rounds).
  const prk = randomBytes(16);
  const state = hmacSm3Prepare(prk);
  const info = [randomBytes(44), randomBytes(24), randomBytes(40)];
  const okm = (): Uint8Array[] => [new Uint8Array(16), new Uint8Array(12), new Uint8Array(32)];
  // HKDF-Expand over node:crypto's HMAC-SM3 (hkdf.ts's hmacHkdf assumes SHA-512's 64-byte rounds).
  const opensslSm3 = (key: Uint8Array, parts: Uint8Array[], outs: Uint8Array[]): void => {
    let previous = new Uint8Array(0);
    let o = 0;
    for (let i = 1; o < 60; i++) {
      const h = createHmac('sm3', key).update(previous);
      for (const part of parts) h.update(part);
      previous = h.update(Uint8Array.of(i)).digest();
      o += 32;
    }
    void outs;
  };
  const hkdf = await measure([
    { name: 'HKDF-Expand-SM3 over node:crypto createHmac("sm3")', run: () => opensslSm3(prk, info, okm()) },
    { name: 'HKDF-Expand-SM3, TypeScript (both backends)', run: () => hkdfExpandSm3(prk, info, okm()) },
    { name: 'HKDF-Expand-SM3, TypeScript, key state prepared (cached keys)', run: () => hkdfExpandSm3(prk, info, okm(), state) },
  ]);
  for (const r of hkdf) rows.push(`| key schedule, 60 bytes | ${r.name} | ${formatNs(r.medianNs)} | ${ratioTo(r, hkdf[0]!).toFixed(2)}x |`);
  return rows;
}

async function main(): Promise<void> {
  const out: string[] = [];
  out.push(`Node ${process.version}, OpenSSL ${process.versions.openssl}, load average ${loadavg()[0]!.toFixed(1)} at the start`);
  out.push('\nTimes are CPU time of this process (medians of interleaved rounds); MB/s are MiB per CPU second.');
  out.push('\n| what | case | time | ratio to the first of its group |');
  out.push('|---|---|---|---|');
  for (const backend of ['node', 'noble'] as const) out.push(...(await records(backend)));
  out.push(...(await parts()));
  out.push('\n| 64 MiB stream, in memory | backend | seal MB/s | open MB/s | seal ratio | open ratio |');
  out.push('|---|---|---|---|---|---|');
  for (const backend of ['node', 'noble'] as const) {
    const [aesSeal, aesOpen] = await streamRates('cobblestone-256', backend, 64 * MiB, 3);
    const [smSeal, smOpen] = await streamRates(sm4Suite, backend, 64 * MiB, backend === 'node' ? 3 : 1);
    out.push(`| AES-256 suite (01) | ${backend} | ${aesSeal.toFixed(0)} | ${aesOpen.toFixed(0)} | 1.00x | 1.00x |`);
    out.push(`| SM4 suite (03) | ${backend} | ${smSeal.toFixed(0)} | ${smOpen.toFixed(0)} | ${(smSeal / aesSeal).toFixed(2)}x | ${(smOpen / aesOpen).toFixed(2)}x |`);
  }
  console.log(out.join('\n'));
}

await main();
