/**
 * Streaming throughput: sealStream/openStream in memory and sealFile/openFile file to file, for
 * 64 MiB and 1 GiB, as ratios against raw node:crypto AES-256-GCM over the same 16 KiB segments
 * (a new cipher per segment) in the same process; and peak RSS sealing and opening a 1 GiB file,
 * each in a fresh child process.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { createEnvelope, LocalKms, openStream, sealStream } from '../src/index.node.ts';
import { openFile, sealFile } from '../src/node.ts';
import { defaultWorkers } from '../src/node/worker-pool.ts';

const MiB = 1024 * 1024;
const SEGMENT = 16384;
const PIECE = MiB;

function rawEncrypt(key: Uint8Array, data: Uint8Array, out: Uint8Array): void {
  const nonce = new Uint8Array(12);
  for (let i = 0, o = 0, n = 0; i < data.length; i += SEGMENT, n++) {
    new DataView(nonce.buffer).setUint32(8, n);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    const body = c.update(data.subarray(i, i + SEGMENT));
    c.final();
    out.set(body, o);
    out.set(c.getAuthTag(), o + body.length);
    o += body.length + 16;
  }
}

function rawDecrypt(key: Uint8Array, sealed: Uint8Array, out: Uint8Array): void {
  const nonce = new Uint8Array(12);
  for (let i = 0, o = 0, n = 0; i < sealed.length; i += SEGMENT + 16, n++) {
    new DataView(nonce.buffer).setUint32(8, n);
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    const seg = sealed.subarray(i, i + SEGMENT + 16);
    d.setAuthTag(seg.subarray(seg.length - 16));
    out.set(d.update(seg.subarray(0, seg.length - 16)), o);
    d.final();
    o += seg.length - 16;
  }
}

/** Runs the raw baseline over `total` bytes in 1 MiB pieces; returns MB/s. */
function rawRate(total: number, decrypt: boolean): number {
  const key = randomBytes(32);
  const piece = randomBytes(PIECE);
  const sealedPiece = new Uint8Array((PIECE / SEGMENT) * (SEGMENT + 16));
  rawEncrypt(key, piece, sealedPiece);
  const out = new Uint8Array(sealedPiece.length);
  const start = performance.now();
  for (let done = 0; done < total; done += PIECE) {
    if (decrypt) rawDecrypt(key, sealedPiece, out);
    else rawEncrypt(key, piece, out);
  }
  return total / MiB / ((performance.now() - start) / 1000);
}

/**
 * The same I/O as sealFile/openFile with raw crypto: read in 256 KiB pieces, AES-256-GCM each
 * 16 KiB segment (new cipher per segment), write, fsync. Returns MB/s of plaintext.
 */
async function rawFileRate(src: string, dest: string, decrypt: boolean): Promise<number> {
  const { open } = await import('node:fs/promises');
  const { createReadStream } = await import('node:fs');
  const key = randomBytes(32);
  const segment = decrypt ? SEGMENT + 16 : SEGMENT;
  const output = await open(dest, 'w');
  const start = performance.now();
  let carry: Uint8Array = new Uint8Array(0);
  let plainBytes = 0;
  for await (const piece of createReadStream(src, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
    const data = carry.length ? Buffer.concat([carry, piece]) : piece;
    const whole = data.length - (data.length % segment);
    const out = new Uint8Array((whole / segment) * (decrypt ? SEGMENT : SEGMENT + 16));
    if (decrypt) {
      // Tags will not verify (the data was never sealed with this key): time the work, not the result.
      const nonce = new Uint8Array(12);
      for (let i = 0, o = 0; i < whole; i += segment, o += SEGMENT) {
        const d = createDecipheriv('aes-256-gcm', key, nonce);
        d.setAuthTag(data.subarray(i + SEGMENT, i + segment));
        out.set(d.update(data.subarray(i, i + SEGMENT)), o);
        try {
          d.final();
        } catch {
          // expected
        }
      }
    } else {
      rawEncrypt(key, data.subarray(0, whole), out);
    }
    plainBytes += decrypt ? out.length : whole;
    await output.write(out);
    carry = data.subarray(whole);
  }
  await output.sync();
  await output.close();
  return plainBytes / MiB / ((performance.now() - start) / 1000);
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

async function drain(stream: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const part of stream as unknown as AsyncIterable<Uint8Array>) n += part.length;
  return n;
}

export async function benchStream(sizes = [64 * MiB, 1024 * MiB]): Promise<string> {
  const out: string[] = [];
  const kms = LocalKms.generate();
  const envelope = createEnvelope({ kms });
  const dir = mkdtempSync(join(tmpdir(), 'kmse-bench-'));
  out.push('\n## Streaming throughput (MB/s), ratio against raw node:crypto AES-256-GCM over the same 16 KiB segments\n');
  out.push('| size | path | raw enc | seal | ratio | raw dec | open | ratio |');
  out.push('|---|---|---|---|---|---|---|---|');
  try {
    for (const size of sizes) {
      const piece = randomBytes(PIECE);
      // In memory: a stream of 1 MiB pieces through sealStream, and the sealed bytes through openStream.
      const rawEnc = rawRate(size, false);
      let start = performance.now();
      await drain(pieces(size, piece).pipeThrough(sealStream(envelope)));
      const sealRate = size / MiB / ((performance.now() - start) / 1000);
      // The sealed message to open, made untimed.
      const sealedParts: Uint8Array[] = [];
      for await (const part of pieces(size, piece).pipeThrough(sealStream(envelope)) as unknown as AsyncIterable<Uint8Array>) {
        sealedParts.push(part);
      }
      const rawDec = rawRate(size, true);
      let i = 0;
      const sealedSource = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (i >= sealedParts.length) return controller.close();
          controller.enqueue(sealedParts[i++]!);
        },
      });
      start = performance.now();
      const opened = await drain(sealedSource.pipeThrough(openStream(envelope)));
      const openRate = size / MiB / ((performance.now() - start) / 1000);
      if (opened !== size) throw new Error('round trip failed');
      sealedParts.length = 0;
      out.push(
        `| ${size / MiB} MiB | memory (WHATWG streams) | ${rawEnc.toFixed(0)} | ${sealRate.toFixed(0)} | ${(sealRate / rawEnc).toFixed(2)}x | ${rawDec.toFixed(0)} | ${openRate.toFixed(0)} | ${(openRate / rawDec).toFixed(2)}x |`,
      );
      // File to file.
      const plainPath = join(dir, 'plain');
      const buffer = Buffer.allocUnsafe(64 * MiB);
      for (let o = 0; o < buffer.length; o += PIECE) buffer.set(piece, o);
      writeFileSync(plainPath, '');
      for (let done = 0; done < size; done += buffer.length) writeFileSync(plainPath, buffer, { flag: 'a' });
      const rawEncFile = await rawFileRate(plainPath, join(dir, 'raw-sealed'), false);
      start = performance.now();
      await sealFile(envelope, plainPath, join(dir, 'sealed'), { overwrite: true });
      const sealFileRate = size / MiB / ((performance.now() - start) / 1000);
      const rawDecFile = await rawFileRate(join(dir, 'raw-sealed'), join(dir, 'raw-opened'), true);
      start = performance.now();
      await openFile(envelope, join(dir, 'sealed'), join(dir, 'opened'), { overwrite: true });
      const openFileRate = size / MiB / ((performance.now() - start) / 1000);
      rmSync(join(dir, 'raw-sealed'));
      rmSync(join(dir, 'raw-opened'));
      out.push(
        `| ${size / MiB} MiB | file to file (raw: same reads, writes and fsync) | ${rawEncFile.toFixed(0)} | ${sealFileRate.toFixed(0)} | ${(sealFileRate / rawEncFile).toFixed(2)}x | ${rawDecFile.toFixed(0)} | ${openFileRate.toFixed(0)} | ${(openFileRate / rawDecFile).toFixed(2)}x |`,
      );
      rmSync(join(dir, 'opened'));
    }
    // Peak RSS of a whole process sealing and opening a 1 GiB file.
    const big = join(dir, 'plain');
    const lib = new URL('../../dist/index.js', import.meta.url).href;
    const nodeLib = new URL('../../dist/node.js', import.meta.url).href;
    const keyB64 = Buffer.alloc(32, 1).toString('base64');
    // getrusage's maxrss survives exec on Linux (a child would report this big parent's), so the
    // child samples its own RSS instead.
    const sampler = `let peak = 0; const sample = () => { peak = Math.max(peak, process.memoryUsage.rss()); }; const timer = setInterval(sample, 5);`;
    const script = (op: string) => `
      ${sampler}
      import { createEnvelope, LocalKms } from ${JSON.stringify(lib)};
      import { ${op} } from ${JSON.stringify(nodeLib)};
      const e = createEnvelope({ kms: LocalKms.fromEnv() });
      await ${op}(e, process.argv[1], process.argv[2], { overwrite: true });
      sample(); clearInterval(timer); console.log(peak);`;
    const env = { ...process.env, KMS_ENVELOPE_LOCAL_KEY: keyB64 };
    const run = (args: string[]) => Number(execFileSync(process.execPath, args, { env }).toString()) / MiB;
    const bare = run(['-e', `${sampler} setTimeout(() => { sample(); clearInterval(timer); console.log(peak); }, 50);`]);
    const sealRss = run(['--input-type=module', '-e', script('sealFile'), big, join(dir, 'rss.kmse')]);
    const openRss = run(['--input-type=module', '-e', script('openFile'), join(dir, 'rss.kmse'), join(dir, 'rss.out')]);
    out.push(`\nPeak RSS, whole process, ${sizes.at(-1)! / MiB} MiB file: sealFile ${sealRss.toFixed(0)} MiB, openFile ${openRss.toFixed(0)} MiB (a bare node process: ${bare.toFixed(0)} MiB)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out.join('\n');
}

/**
 * sealFile/openFile on one thread against `parallel` (the worker pool), file to file on tmpfs
 * (/dev/shm) where it exists so that the disk does not bound both: medians of `rounds` interleaved
 * runs. Also two threads of bare AES-GCM (no I/O, no messages): the most two threads can give here.
 */
export async function benchWorkers(
  sizes = [256 * MiB, 1024 * MiB],
  rounds = 3,
): Promise<{ text: string; ratios: { size: number; seal: number; open: number }[] }> {
  const envelope = createEnvelope({ kms: LocalKms.generate() });
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'kmse-bench-'));
  const out: string[] = [];
  const ratios: { size: number; seal: number; open: number }[] = [];
  out.push(`\n### Worker threads: sealFile/openFile with \`parallel\` (${defaultWorkers()} workers) against one thread, file to file on ${base}, MB/s, medians of ${rounds} runs\n`);
  out.push('| size | seal, 1 thread | seal, workers | ratio | open, 1 thread | open, workers | ratio |');
  out.push('|---|---|---|---|---|---|---|');
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  try {
    for (const size of sizes) {
      const plain = join(dir, 'plain');
      const piece = randomBytes(64 * MiB);
      writeFileSync(plain, '');
      for (let done = 0; done < size; done += piece.length) writeFileSync(plain, piece, { flag: 'a' });
      const rates: Record<string, number[]> = { seal1: [], sealN: [], open1: [], openN: [] };
      const timed = async (key: string, run: () => Promise<unknown>): Promise<void> => {
        const start = performance.now();
        await run();
        rates[key]!.push(size / MiB / ((performance.now() - start) / 1000));
      };
      const parallel = { minBytes: 0 };
      for (let r = 0; r < rounds; r++) {
        await timed('seal1', () => sealFile(envelope, plain, join(dir, 'sealed1'), { overwrite: true }));
        await timed('sealN', () => sealFile(envelope, plain, join(dir, 'sealedN'), { overwrite: true, parallel }));
        await timed('open1', () => openFile(envelope, join(dir, 'sealed1'), join(dir, 'opened1'), { overwrite: true }));
        await timed('openN', () => openFile(envelope, join(dir, 'sealedN'), join(dir, 'openedN'), { overwrite: true, parallel }));
      }
      for (const name of ['plain', 'sealed1', 'sealedN', 'opened1', 'openedN']) rmSync(join(dir, name));
      const [s1, sN, o1, oN] = ['seal1', 'sealN', 'open1', 'openN'].map((k) => median(rates[k]!)) as [number, number, number, number];
      ratios.push({ size, seal: sN / s1, open: oN / o1 });
      out.push(`| ${size / MiB} MiB | ${s1.toFixed(0)} | ${sN.toFixed(0)} | ${(sN / s1).toFixed(2)}x | ${o1.toFixed(0)} | ${oN.toFixed(0)} | ${(oN / o1).toFixed(2)}x |`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const [one, two] = [await bareThreads(1), await bareThreads(2)];
  out.push(`\nThe ceiling: bare AES-256-GCM over 16 KiB segments (node:crypto, no I/O, no messages) runs at ${one.toFixed(0)} MB/s on one worker thread and ${two.toFixed(0)} MB/s on two together: ${(two / one).toFixed(2)}x.`);
  return { text: out.join('\n'), ratios };
}

/** Total MB/s of `threads` worker threads each sealing 256 MiB in 16 KiB segments, at once. */
async function bareThreads(threads: number): Promise<number> {
  const source = `
    const { parentPort } = process.getBuiltinModule('node:worker_threads');
    const c = process.getBuiltinModule('node:crypto');
    const key = new Uint8Array(32), nonce = new Uint8Array(12), data = c.randomBytes(64 << 20), out = new Uint8Array(${SEGMENT + 16});
    const start = performance.now();
    for (let r = 0; r < 4; r++) for (let o = 0; o < data.length; o += ${SEGMENT}) {
      const x = c.createCipheriv('aes-256-gcm', key, nonce);
      out.set(x.update(data.subarray(o, o + ${SEGMENT})));
      x.final();
      out.set(x.getAuthTag(), ${SEGMENT});
    }
    parentPort.postMessage(256 / ((performance.now() - start) / 1000));`;
  const rates = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<number>((resolve, reject) => {
          const worker = new Worker(source, { eval: true });
          worker.once('message', (rate: number) => {
            resolve(rate);
            void worker.terminate();
          });
          worker.once('error', reject);
        }),
    ),
  );
  return rates.reduce((a, b) => a + b, 0);
}
