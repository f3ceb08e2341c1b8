/**
 * The page side of `npm run bench:browser` (bench/browser/run.mjs bundles this file from the built
 * package with esbuild, as a user's bundler would, and runs it in Chromium): MB/s for sealing and
 * opening a 64 MiB stream with the webcrypto and noble backends, bare crypto.subtle over the same
 * 16 KiB chunks (the limit here), and 1 KiB records. Cases are interleaved in rounds; ratios are
 * medians over rounds of the two cases' times in the same round.
 */
import { createEnvelope, decryptCache, encryptionCache, type Envelope, LocalKms, openStream, sealStream } from '../../src/index.ts';

const MiB = 1024 * 1024;
const CHUNK = 16384;
const SEALED_CHUNK = CHUNK + 16;
const PIECE = MiB;

export interface BenchOptions {
  /** Stream size in MiB; default 64. */
  streamMiB?: number;
  /** Rounds of the fast cases; default 5. */
  rounds?: number;
  /** Rounds of the noble stream cases (about 3 s each); default 2. */
  nobleRounds?: number;
  /** 1 KiB records per round; default 2000 (noble: a quarter). */
  records?: number;
  /** In-flight window of the bare-subtle baseline; default 8 (the backend's own). */
  window?: number;
}

export interface CaseResult {
  name: string;
  /** Milliseconds per round, in round order. */
  ms: number[];
  bytes: number;
}

export interface BenchReport {
  userAgent: string;
  cases: CaseResult[];
}

const subtle = globalThis.crypto.subtle;
type AesKey = Awaited<ReturnType<typeof subtle.importKey>>;

function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) globalThis.crypto.getRandomValues(out.subarray(o, o + 65536));
  return out;
}

function source(parts: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i >= parts.length) controller.close();
      else controller.enqueue(parts[i++]!);
    },
  });
}

/** Reads a stream to its end, counting the bytes (the result is counted, not held). */
async function count(stream: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stream.getReader();
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return n;
    n += value.length;
  }
}

function nonceOf(counter: number): Uint8Array<ArrayBuffer> {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setUint32(8, counter);
  return nonce;
}

/**
 * Bare crypto.subtle over `chunks` 16 KiB chunks of `data` (wrapping around it), at most `window`
 * calls under way, each result counted and dropped.
 */
async function bare(key: AesKey, data: Uint8Array<ArrayBuffer>, chunks: number, window: number, decrypt: boolean): Promise<void> {
  const size = decrypt ? SEALED_CHUNK : CHUNK;
  const per = Math.floor(data.length / size);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < chunks) {
      const c = next++;
      const at = (c % per) * size;
      const params = { name: 'AES-GCM', iv: nonceOf(c % per) };
      const input = data.subarray(at, at + size);
      await (decrypt ? subtle.decrypt(params, key, input) : subtle.encrypt(params, key, input));
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

async function sealedPieces(envelope: Envelope, pieces: readonly Uint8Array[]): Promise<Uint8Array[]> {
  const parts: Uint8Array[] = [];
  const reader = source(pieces).pipeThrough(sealStream(envelope)).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (whole.set(p, o), o + p.length), 0);
  const out: Uint8Array[] = [];
  for (let o = 0; o < whole.length; o += PIECE) out.push(whole.subarray(o, o + PIECE));
  return out;
}

export async function runBench(options: BenchOptions = {}): Promise<BenchReport> {
  const streamMiB = options.streamMiB ?? 64;
  const size = streamMiB * MiB;
  const rounds = options.rounds ?? 5;
  const nobleRounds = options.nobleRounds ?? 2;
  const records = options.records ?? 2000;
  const window = options.window ?? 8;
  const kms = LocalKms.generate({ backend: 'noble' });
  const web = createEnvelope({ kms, backend: 'webcrypto' });
  const noble = createEnvelope({ kms, backend: 'noble' });
  const webCached = createEnvelope({ kms, backend: 'webcrypto', cache: encryptionCache(), decryptCache: decryptCache() });
  const nobleCached = createEnvelope({ kms, backend: 'noble', cache: encryptionCache(), decryptCache: decryptCache() });

  const piece = randomBytes(PIECE);
  const pieces = Array.from({ length: streamMiB }, () => piece);
  const webSealed = await sealedPieces(web, pieces);
  const nobleSealed = await sealedPieces(noble, pieces);
  if ((await count(source(webSealed).pipeThrough(openStream(noble)))) !== size) throw new Error('webcrypto -> noble round trip failed');

  const key = await subtle.importKey('raw', randomBytes(32), 'AES-GCM', false, ['encrypt', 'decrypt']);
  const sealedPiece = new Uint8Array((PIECE / CHUNK) * SEALED_CHUNK);
  for (let c = 0; c < PIECE / CHUNK; c++) {
    sealedPiece.set(new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonceOf(c) }, key, piece.subarray(c * CHUNK, (c + 1) * CHUNK))), c * SEALED_CHUNK);
  }
  const chunks = size / CHUNK;

  const record = randomBytes(1024);
  const sealedRecord = { web: await webCached.seal(record), noble: await nobleCached.seal(record) };
  await webCached.open(sealedRecord.web);
  await nobleCached.open(sealedRecord.noble);
  const recordRound = async (envelope: Envelope, n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const sealed = await envelope.seal(record);
      await envelope.open(sealed);
    }
  };

  const checkCount = (n: number): void => {
    if (n !== size) throw new Error(`stream gave ${n} bytes, not ${size}`);
  };
  type Case = { name: string; bytes: number; rounds: number; run: () => Promise<unknown> };
  const cases: Case[] = [
    { name: 'bare subtle encrypt', bytes: size, rounds, run: () => bare(key, piece, chunks, window, false) },
    { name: 'sealStream webcrypto', bytes: size, rounds, run: () => count(source(pieces).pipeThrough(sealStream(web))) },
    { name: 'bare subtle decrypt', bytes: size, rounds, run: () => bare(key, sealedPiece, chunks, window, true) },
    { name: 'openStream webcrypto', bytes: size, rounds, run: async () => checkCount(await count(source(webSealed).pipeThrough(openStream(web)))) },
    { name: 'bare subtle encrypt, one at a time', bytes: size, rounds, run: () => bare(key, piece, chunks, 1, false) },
    { name: 'bare subtle encrypt, all at once', bytes: size, rounds, run: () => bare(key, piece, chunks, chunks, false) },
    { name: 'sealStream noble', bytes: size, rounds: nobleRounds, run: () => count(source(pieces).pipeThrough(sealStream(noble))) },
    { name: 'openStream noble', bytes: size, rounds: nobleRounds, run: async () => checkCount(await count(source(nobleSealed).pipeThrough(openStream(noble)))) },
    { name: '1 KiB records seal+open webcrypto', bytes: records * 1024, rounds, run: () => recordRound(webCached, records) },
    { name: '1 KiB records seal+open noble', bytes: (records / 4) * 1024, rounds, run: () => recordRound(nobleCached, records / 4) },
  ];
  const results: CaseResult[] = cases.map((c) => ({ name: c.name, ms: [], bytes: c.bytes }));
  // One warm-up pass of the fast cases, then interleaved rounds.
  for (const c of cases) if (c.rounds === rounds) await c.run();
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of cases.entries()) if (r < c.rounds) results[i]!.ms.push(await timed(c.run));
  }
  await Promise.all([web, noble, webCached, nobleCached].map((e) => e.close()));
  return { userAgent: (globalThis as { navigator?: { userAgent: string } }).navigator?.userAgent ?? 'unknown', cases: results };
}

(globalThis as unknown as { kmsEnvelopeBench: unknown }).kmsEnvelopeBench = { runBench };
