/**
 * `npm run bench:stream`: sealStream/openStream in memory against raw node:crypto AES-256-GCM over
 * the same 16 KiB chunks on one thread, into freshly allocated output as a stream must hand out
 * (issue 11 §5, goal: at least 0.9x). The cases are interleaved in rounds; the ratio is the median
 * over rounds of the raw time over the stream's time in the same round.
 *
 * The baselines: sealing, a new output buffer per 1 MiB input piece, each chunk's ciphertext and
 * tag copied into it (what a sealer must emit: ciphertext || tag, contiguous); opening, each
 * chunk's plaintext in the fresh buffer node:crypto returns (what an opener emits).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { createEnvelope, LocalKms, openStream, sealStream } from '../src/index.node.ts';
import { measure, ratioTo, type Result } from './harness.ts';

const MiB = 1024 * 1024;
const CHUNK = 16384;
const SEALED_CHUNK = CHUNK + 16;
const PIECE = MiB;

function nonceOf(counter: number, nonce: Uint8Array): Uint8Array {
  new DataView(nonce.buffer).setUint32(8, counter);
  return nonce;
}

/** Seals `total` bytes of `piece`s, chunk by chunk, each piece into a fresh buffer. */
function rawSeal(key: Uint8Array, piece: Uint8Array, total: number): number {
  const nonce = new Uint8Array(12);
  let counter = 0;
  let bytes = 0;
  for (let done = 0; done < total; done += piece.length) {
    const out = new Uint8Array((piece.length / CHUNK) * SEALED_CHUNK);
    for (let i = 0, o = 0; i < piece.length; i += CHUNK, o += SEALED_CHUNK) {
      const c = createCipheriv('aes-256-gcm', key, nonceOf(counter++, nonce));
      out.set(c.update(piece.subarray(i, i + CHUNK)), o);
      c.final();
      out.set(c.getAuthTag(), o + CHUNK);
    }
    bytes += out.length;
  }
  return bytes;
}

/** Opens sealed chunks one by one, each chunk's plaintext fresh. */
function rawOpen(key: Uint8Array, sealed: Uint8Array): number {
  const nonce = new Uint8Array(12);
  let bytes = 0;
  for (let i = 0, counter = 0; i < sealed.length; i += SEALED_CHUNK, counter++) {
    const d = createDecipheriv('aes-256-gcm', key, nonceOf(counter, nonce));
    d.setAuthTag(sealed.subarray(i + CHUNK, i + SEALED_CHUNK));
    const plain = d.update(sealed.subarray(i, i + CHUNK));
    d.final();
    bytes += plain.length;
  }
  return bytes;
}

function source(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i >= parts.length) controller.close();
      else controller.enqueue(parts[i++]!);
    },
  });
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const part of stream as unknown as AsyncIterable<Uint8Array>) n += part.length;
  return n;
}

export async function benchStreamSpeed(size = 64 * MiB, rounds = 21): Promise<{ text: string; seal: number; open: number }> {
  const envelope = createEnvelope({ kms: LocalKms.generate() });
  const key = randomBytes(32);
  const piece = new Uint8Array(randomBytes(PIECE));
  const pieces = Array.from({ length: size / PIECE }, () => piece);
  // Raw opening reads as many distinct bytes as openStream does (64 MiB, not one cached piece).
  const sealedChunks = new Uint8Array((size / CHUNK) * SEALED_CHUNK);
  const nonce = new Uint8Array(12);
  for (let o = 0, n = 0; o < sealedChunks.length; o += SEALED_CHUNK, n++) {
    const c = createCipheriv('aes-256-gcm', key, nonceOf(n, nonce));
    sealedChunks.set(c.update(piece.subarray((n * CHUNK) % PIECE, (n * CHUNK) % PIECE + CHUNK)), o);
    c.final();
    sealedChunks.set(c.getAuthTag(), o + CHUNK);
  }
  // The sealed message openStream reads, in 1 MiB pieces as a file or a socket would give it.
  const sealedParts: Uint8Array[] = [];
  for await (const part of source(pieces).pipeThrough(sealStream(envelope)) as unknown as AsyncIterable<Uint8Array>) sealedParts.push(part);
  const sealedMessage = new Uint8Array(sealedParts.reduce((n, p) => n + p.length, 0));
  sealedParts.reduce((o, p) => (sealedMessage.set(p, o), o + p.length), 0);
  const sealedPieces: Uint8Array[] = [];
  for (let o = 0; o < sealedMessage.length; o += PIECE) sealedPieces.push(sealedMessage.subarray(o, o + PIECE));

  const cases = [
    { name: 'raw seal', run: () => rawSeal(key, piece, size) },
    { name: 'sealStream', run: () => drain(source(pieces).pipeThrough(sealStream(envelope))) },
    { name: 'raw open', run: () => rawOpen(key, sealedChunks) },
    {
      name: 'openStream',
      run: async () => {
        if ((await drain(source(sealedPieces).pipeThrough(openStream(envelope)))) !== size) throw new Error('round trip failed');
      },
    },
  ];
  const rate = (ns: number): string => ((size / MiB) / (ns / 1e9)).toFixed(0);
  // Steady throughput (the goal), and for reference each batch after a forced full collection,
  // which also discards V8's optimized code for the stream machinery (harness.ts, collectBetween).
  const rows: string[] = [];
  let seal = 0;
  let open = 0;
  for (const collectBetween of [false, true]) {
    const [rawSealR, sealR, rawOpenR, openR] = (await measure(cases, { rounds, batchMs: 1, collectBetween })) as [Result, Result, Result, Result];
    const sealRatio = 1 / ratioTo(sealR, rawSealR);
    const openRatio = 1 / ratioTo(openR, rawOpenR);
    if (!collectBetween) [seal, open] = [sealRatio, openRatio];
    const how = collectBetween ? 'after a forced full GC' : 'steady';
    rows.push(`| seal, ${how} | ${rate(rawSealR.medianNs)} | ${rate(sealR.medianNs)} | ${sealRatio.toFixed(2)}x |`);
    rows.push(`| open, ${how} | ${rate(rawOpenR.medianNs)} | ${rate(openR.medianNs)} | ${openRatio.toFixed(2)}x |`);
  }
  await envelope.close();
  const text = [
    `\n### Streams in memory against raw node:crypto into fresh output (\`npm run bench:stream\`), ${size / MiB} MiB, medians of ${rounds} interleaved rounds, MB/s\n`,
    '| | raw node:crypto | stream | stream / raw (goal >= 0.9x, steady) |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
  return { text, seal, open };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { text } = await benchStreamSpeed();
  console.log(`Node ${process.version}`);
  console.log(text);
}
