/**
 * Streaming throughput: sealStream/openStream in memory and sealFile/openFile file to file, for
 * 64 MiB and 1 GiB, as ratios against raw node:crypto AES-256-GCM over the same 16 KiB segments
 * (a new cipher per segment) in the same process; and peak RSS sealing and opening a 1 GiB file,
 * each in a fresh child process.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEnvelope, LocalKms } from '../src/index.ts';

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
  const threads: string[] = [];
  out.push('\n## Streaming throughput (MB/s), ratio against raw node:crypto AES-256-GCM over the same 16 KiB segments\n');
  out.push('| size | path | raw enc | seal | ratio | raw dec | open | ratio |');
  out.push('|---|---|---|---|---|---|---|---|');
  try {
    for (const size of sizes) {
      const piece = randomBytes(PIECE);
      // In memory: a stream of 1 MiB pieces through sealStream, and the sealed bytes through openStream.
      const rawEnc = rawRate(size, false);
      let start = performance.now();
      await drain(pieces(size, piece).pipeThrough(envelope.sealStream()));
      const sealRate = size / MiB / ((performance.now() - start) / 1000);
      // The sealed message to open, made untimed.
      const sealedParts: Uint8Array[] = [];
      for await (const part of pieces(size, piece).pipeThrough(envelope.sealStream()) as unknown as AsyncIterable<Uint8Array>) {
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
      const opened = await drain(sealedSource.pipeThrough(envelope.openStream()));
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
      await envelope.sealFile(plainPath, join(dir, 'sealed'), { overwrite: true });
      const sealFileRate = size / MiB / ((performance.now() - start) / 1000);
      const rawDecFile = await rawFileRate(join(dir, 'raw-sealed'), join(dir, 'raw-opened'), true);
      start = performance.now();
      await envelope.openFile(join(dir, 'sealed'), join(dir, 'opened'), { overwrite: true });
      const openFileRate = size / MiB / ((performance.now() - start) / 1000);
      rmSync(join(dir, 'raw-sealed'));
      rmSync(join(dir, 'raw-opened'));
      start = performance.now();
      await envelope.sealFile(plainPath, join(dir, 'sealed-mt'), { overwrite: true, parallel: true });
      const sealMt = size / MiB / ((performance.now() - start) / 1000);
      start = performance.now();
      await envelope.openFile(join(dir, 'sealed-mt'), join(dir, 'opened-mt'), { overwrite: true, parallel: true });
      const openMt = size / MiB / ((performance.now() - start) / 1000);
      rmSync(join(dir, 'sealed-mt'));
      rmSync(join(dir, 'opened-mt'));
      threads.push(`| ${size / MiB} MiB | ${sealFileRate.toFixed(0)} | ${sealMt.toFixed(0)} | ${(sealMt / sealFileRate).toFixed(2)}x | ${openFileRate.toFixed(0)} | ${openMt.toFixed(0)} | ${(openMt / openFileRate).toFixed(2)}x |`);
      out.push(
        `| ${size / MiB} MiB | file to file (raw: same reads, writes and fsync) | ${rawEncFile.toFixed(0)} | ${sealFileRate.toFixed(0)} | ${(sealFileRate / rawEncFile).toFixed(2)}x | ${rawDecFile.toFixed(0)} | ${openFileRate.toFixed(0)} | ${(openFileRate / rawDecFile).toFixed(2)}x |`,
      );
      rmSync(join(dir, 'opened'));
    }
    out.push('\n### Worker threads (sealFile/openFile `parallel: true`), file to file, MB/s\n');
    out.push('| size | seal, 1 thread | seal, workers | ratio | open, 1 thread | open, workers | ratio |');
    out.push('|---|---|---|---|---|---|---|');
    out.push(...threads);
    // Peak RSS of a whole process sealing and opening a 1 GiB file.
    const big = join(dir, 'plain');
    const lib = new URL('../../dist/index.js', import.meta.url).href;
    const keyB64 = Buffer.alloc(32, 1).toString('base64');
    // getrusage's maxrss survives exec on Linux (a child would report this big parent's), so the
    // child samples its own RSS instead.
    const sampler = `let peak = 0; const sample = () => { peak = Math.max(peak, process.memoryUsage.rss()); }; const timer = setInterval(sample, 5);`;
    const script = (op: string) => `
      ${sampler}
      import { createEnvelope, LocalKms } from ${JSON.stringify(lib)};
      const e = createEnvelope({ kms: LocalKms.fromEnv() });
      await e.${op}(process.argv[1], process.argv[2], { overwrite: true });
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
