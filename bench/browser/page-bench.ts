/**
 * The page side of `npm run bench:browser` (bench/browser/run.mjs bundles this file from the built
 * package with esbuild, as a user's bundler would, and runs it in Chromium): MB/s for sealing and
 * opening a 64 MiB stream (1 MiB pieces in memory, and a Blob) with the webcrypto and noble
 * backends, bare crypto.subtle over the same 16 KiB chunks at several depths (calls in flight: the
 * limit here is the best of them), and 1 KiB records (a cached data key, a warm key hierarchy, and
 * bare subtle encrypt+decrypt of the same record). Cases are interleaved in rounds; ratios are
 * medians over rounds of the two cases' times in the same round.
 */
import { createEnvelope, decryptCache, encryptionCache, type Envelope, LocalKms, openStream, sealStream, usePortableCrypto } from '../../src/index.ts';
import { createKeyHierarchy, MemoryKeyStore } from '../../src/hierarchy.ts';

usePortableCrypto(); // the noble cases (an app that seals asynchronously in a browser need not)

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
  /** Depths (calls in flight) of the bare-subtle baseline; default 1, 4, 16, 64. */
  depths?: number[];
  /** Only the cases whose name starts with one of these (profiling one case). */
  only?: string[];
}

export interface CaseResult {
  name: string;
  /** Milliseconds per round, in round order. */
  ms: number[];
  bytes: number;
  /** CPU ms per round of Chromium's threads (run.mjs reads them): the page's main thread, its other threads, other processes. */
  cpu: CpuTime[];
}

export interface CpuTime {
  main: number;
  rendererOther: number;
  otherProcesses: number;
}

export interface BenchReport {
  userAgent: string;
  /** The mean size of the reads of the 64 MiB Blob's stream (Chromium's choice). */
  blobReadBytes: number;
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

const cpuNow = (): Promise<CpuTime> | undefined => (globalThis as { kmsEnvelopeCpu?: () => Promise<CpuTime> }).kmsEnvelopeCpu?.();

/** Runs `run` once into `result`: its wall-clock ms, and the CPU time Chromium's threads spent meanwhile. */
/**
 * Bare crypto.subtle over a Blob: each read cut into 16 KiB chunks (sealed: 16 KiB + 16), a tail
 * carried to the next, a read's chunks called at once and awaited together, results counted and
 * dropped. Decrypting, the Blob holds `per` chunks sealed with nonces 0 .. per - 1, over and over.
 */
async function bareOverBlob(key: AesKey, blob: Blob, decrypt: boolean, per: number): Promise<number> {
  const size = decrypt ? SEALED_CHUNK : CHUNK;
  const reader = blob.stream().getReader();
  const carry = new Uint8Array(size);
  let carried = 0;
  let counter = 0;
  let n = 0;
  const call = (bytes: Uint8Array): Promise<void> => {
    const params = { name: 'AES-GCM', iv: nonceOf(counter++ % per) };
    return (decrypt ? subtle.decrypt(params, key, bytes) : subtle.encrypt(params, key, bytes)).then((b) => void (n += b.byteLength));
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const calls: Promise<void>[] = [];
    let i = 0;
    if (carried > 0) {
      i = Math.min(size - carried, value.length);
      carry.set(value.subarray(0, i), carried);
      carried += i;
      if (carried === size) calls.push(call(carry)), (carried = 0);
    }
    for (; value.length - i >= size; i += size) calls.push(call(value.subarray(i, i + size)));
    carry.set(value.subarray(i), carried);
    carried += value.length - i;
    await Promise.all(calls);
  }
  if (carried > 0) await call(carry.subarray(0, carried));
  return decrypt ? n : n - counter * 16;
}

/** The worker of `workerOverBlob`: seals each read it is sent (a tail carried to the next) and sends the sealed chunks back. */
const SEAL_WORKER = `
let key, carry = new Uint8Array(${CHUNK}), carried = 0, counter = 0;
const seal = (bytes) => {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setUint32(8, counter++ % PER);
  return crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, bytes);
};
onmessage = async ({ data }) => {
  if (data.key) return void (key = data.key);
  const value = data.last ? new Uint8Array(0) : new Uint8Array(data.buffer);
  const calls = [];
  let i = 0;
  if (carried > 0) {
    i = Math.min(${CHUNK} - carried, value.length);
    carry.set(value.subarray(0, i), carried);
    carried += i;
    if (carried === ${CHUNK}) calls.push(seal(carry)), (carried = 0);
  }
  for (; value.length - i >= ${CHUNK}; i += ${CHUNK}) calls.push(seal(value.subarray(i, i + ${CHUNK})));
  carry.set(value.subarray(i), carried);
  carried += value.length - i;
  if (data.last && carried > 0) calls.push(seal(carry.subarray(0, carried)));
  if (data.last) carried = 0, counter = 0;
  const outs = await Promise.all(calls);
  postMessage(outs, outs);
};`;

/** The page's Worker, typed here: the project's TypeScript libraries are not the DOM's. */
interface PageWorker {
  onmessage: ((event: { data: unknown }) => void) | null;
  postMessage(message: unknown, transfer?: ArrayBuffer[]): void;
  terminate(): void;
}
declare const Worker: new (url: string) => PageWorker;

/**
 * What a stream over a Blob could reach with its AES on another thread: the page reads the Blob and
 * transfers each read to a Worker, which seals its 16 KiB chunks with the same (non-extractable,
 * cloned) CryptoKey and transfers the sealed chunks back; at most two reads are out at once.
 */
async function workerOverBlob(worker: PageWorker, blob: Blob): Promise<number> {
  const replies: ((outs: ArrayBuffer[]) => void)[] = [];
  worker.onmessage = ({ data }) => replies.shift()!(data as ArrayBuffer[]);
  const out: Promise<ArrayBuffer[]>[] = [];
  let n = 0;
  const take = async (): Promise<void> => {
    for (const b of await out.shift()!) n += b.byteLength - 16;
  };
  const send = (message: unknown, transfer: ArrayBuffer[]): void => {
    out.push(new Promise((done) => replies.push(done)));
    worker.postMessage(message, transfer);
  };
  const reader = blob.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const bytes = value.byteOffset === 0 && value.byteLength === value.buffer.byteLength ? value : value.slice();
    send({ buffer: bytes.buffer }, [bytes.buffer]);
    if (out.length > 2) await take();
  }
  send({ last: true }, []);
  while (out.length > 0) await take();
  return n;
}

/** A Blob through a TransformStream that only cuts it into 16 KiB views: the stream machinery's own cost. */
function cutInto16KiB(): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, controller) {
      for (let i = 0; i < chunk.length; i += CHUNK) controller.enqueue(chunk.subarray(i, i + CHUNK));
    },
  });
}

async function timed(run: () => Promise<unknown>, result: CaseResult): Promise<void> {
  const before = await cpuNow();
  const start = performance.now();
  await run();
  result.ms.push(performance.now() - start);
  const after = await cpuNow();
  if (before && after) result.cpu.push({ main: after.main - before.main, rendererOther: after.rendererOther - before.rendererOther, otherProcesses: after.otherProcesses - before.otherProcesses });
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
  const depths = options.depths ?? [1, 4, 16, 64];
  const kms = LocalKms.generate({ backend: 'noble' });
  const web = createEnvelope({ kms, backend: 'webcrypto' });
  const noble = createEnvelope({ kms, backend: 'noble' });
  const webCached = createEnvelope({ kms, backend: 'webcrypto', cache: encryptionCache(), decryptCache: decryptCache() });
  const nobleCached = createEnvelope({ kms, backend: 'noble', cache: encryptionCache(), decryptCache: decryptCache() });
  const hierarchy = createKeyHierarchy({ store: new MemoryKeyStore(), kms });
  const underHierarchy = createEnvelope({ hierarchy, partition: 'tenant-1', backend: 'webcrypto' });

  const piece = randomBytes(PIECE);
  const pieces = Array.from({ length: streamMiB }, () => piece);
  const blob = new Blob(pieces);
  const webSealed = await sealedPieces(web, pieces);
  const sealedBlob = new Blob(webSealed);
  // The noble cases' input, and a cross-check of the two backends (slow: skipped with no noble rounds).
  const nobleSealed = nobleRounds > 0 ? await sealedPieces(noble, pieces) : [];
  if (nobleRounds > 0 && (await count(source(webSealed).pipeThrough(openStream(noble)))) !== size) throw new Error('webcrypto -> noble round trip failed');

  const key = await subtle.importKey('raw', randomBytes(32), 'AES-GCM', false, ['encrypt', 'decrypt']);
  const sealedPiece = new Uint8Array((PIECE / CHUNK) * SEALED_CHUNK);
  for (let c = 0; c < PIECE / CHUNK; c++) {
    sealedPiece.set(new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonceOf(c) }, key, piece.subarray(c * CHUNK, (c + 1) * CHUNK))), c * SEALED_CHUNK);
  }
  const chunks = size / CHUNK;
  const bareSealedBlob = new Blob(Array.from({ length: streamMiB }, () => sealedPiece));
  // The same stream size in distinct bytes (the 1 MiB piece above stays in the CPU's caches when reused).
  const distinct = randomBytes(size);
  const distinctSealed = new Uint8Array(chunks * SEALED_CHUNK);
  for (let c = 0; c < chunks; c++) {
    distinctSealed.set(new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonceOf(c) }, key, distinct.subarray(c * CHUNK, (c + 1) * CHUNK))), c * SEALED_CHUNK);
  }

  const record = randomBytes(1024);
  const context = { table: 'users', column: 'email' };
  const sealedRecord = { web: await webCached.seal(record), noble: await nobleCached.seal(record) };
  await webCached.open(sealedRecord.web);
  await nobleCached.open(sealedRecord.noble);
  await underHierarchy.open(await underHierarchy.seal(record, { context }));
  const recordRound = async (envelope: Envelope, n: number, withContext = false): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const sealed = await envelope.seal(record, withContext ? { context } : undefined);
      await envelope.open(sealed, withContext ? { context } : undefined);
    }
  };
  // The floor of a record: bare subtle AES-256-GCM encrypt then decrypt of the same 1 KiB, a fresh random nonce each.
  const bareRecordRound = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
      const sealed = await subtle.encrypt({ name: 'AES-GCM', iv }, key, record);
      await subtle.decrypt({ name: 'AES-GCM', iv }, key, sealed);
    }
  };

  const worker = new Worker(URL.createObjectURL(new Blob([SEAL_WORKER.replace('PER', String(chunks))], { type: 'text/javascript' })));
  worker.postMessage({ key });
  let blobReads = 0;
  for (const reader = blob.stream().getReader(); !(await reader.read()).done; ) blobReads++;
  const checkCount = (n: number): void => {
    if (n !== size) throw new Error(`stream gave ${n} bytes, not ${size}`);
  };
  type Case = { name: string; bytes: number; rounds: number; run: () => Promise<unknown> };
  const cases: Case[] = [
    ...depths.map((d) => ({ name: `bare subtle encrypt, ${d} in flight`, bytes: size, rounds, run: () => bare(key, piece, chunks, d, false) })),
    ...depths.map((d) => ({ name: `bare subtle encrypt of distinct bytes, ${d} in flight`, bytes: size, rounds, run: () => bare(key, distinct, chunks, d, false) })),
    { name: 'sealStream webcrypto', bytes: size, rounds, run: () => count(source(pieces).pipeThrough(sealStream(web))) },
    { name: 'sealStream webcrypto, Blob', bytes: size, rounds, run: () => count(blob.stream().pipeThrough(sealStream(web))) },
    ...depths.map((d) => ({ name: `bare subtle decrypt, ${d} in flight`, bytes: size, rounds, run: () => bare(key, sealedPiece, chunks, d, true) })),
    ...depths.map((d) => ({ name: `bare subtle decrypt of distinct bytes, ${d} in flight`, bytes: size, rounds, run: () => bare(key, distinctSealed, chunks, d, true) })),
    { name: 'openStream webcrypto', bytes: size, rounds, run: async () => checkCount(await count(source(webSealed).pipeThrough(openStream(web)))) },
    { name: 'openStream webcrypto, Blob', bytes: size, rounds, run: async () => checkCount(await count(sealedBlob.stream().pipeThrough(openStream(web)))) },
    { name: 'Blob read alone', bytes: size, rounds, run: async () => checkCount(await count(blob.stream())) },
    { name: 'Blob through a TransformStream cutting 16 KiB views, no crypto', bytes: size, rounds, run: async () => checkCount(await count(blob.stream().pipeThrough(cutInto16KiB()))) },
    { name: "bare subtle encrypt over the Blob, a read's chunks at once", bytes: size, rounds, run: async () => checkCount(await bareOverBlob(key, blob, false, chunks)) },
    { name: 'bare subtle encrypt over the Blob, AES in a Worker', bytes: size, rounds, run: async () => checkCount(await workerOverBlob(worker, blob)) },
    { name: "bare subtle decrypt over a Blob, a read's chunks at once", bytes: size, rounds, run: async () => checkCount(await bareOverBlob(key, bareSealedBlob, true, PIECE / CHUNK)) },
    { name: 'sealStream noble', bytes: size, rounds: nobleRounds, run: () => count(source(pieces).pipeThrough(sealStream(noble))) },
    { name: 'openStream noble', bytes: size, rounds: nobleRounds, run: async () => checkCount(await count(source(nobleSealed).pipeThrough(openStream(noble)))) },
    { name: '1 KiB records seal+open webcrypto', bytes: records * 1024, rounds, run: () => recordRound(webCached, records) },
    { name: '1 KiB records seal+open noble', bytes: (records / 4) * 1024, rounds, run: () => recordRound(nobleCached, records / 4) },
    { name: '1 KiB records seal+open webcrypto, key hierarchy', bytes: records * 1024, rounds, run: () => recordRound(underHierarchy, records, true) },
    { name: '1 KiB bare subtle encrypt+decrypt', bytes: records * 1024, rounds, run: () => bareRecordRound(records) },
  ];
  if (options.only) cases.splice(0, cases.length, ...cases.filter((c) => options.only!.some((o) => c.name.startsWith(o))));
  const results: CaseResult[] = cases.map((c) => ({ name: c.name, ms: [], bytes: c.bytes, cpu: [] }));
  // One warm-up pass of the fast cases, then interleaved rounds.
  for (const c of cases) if (c.rounds === rounds) await c.run();
  await (globalThis as { kmsEnvelopeMark?: (what: string) => Promise<void> }).kmsEnvelopeMark?.('rounds'); // a profile starts here
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of cases.entries()) if (r < c.rounds) await timed(c.run, results[i]!);
  }
  await Promise.all([web, noble, webCached, nobleCached, underHierarchy].map((e) => e.close()));
  await hierarchy.close();
  worker.terminate();
  const userAgent = (globalThis as { navigator?: { userAgent: string } }).navigator?.userAgent ?? 'unknown';
  return { userAgent, blobReadBytes: size / blobReads, cases: results };
}

(globalThis as unknown as { kmsEnvelopeBench: unknown }).kmsEnvelopeBench = { runBench };
