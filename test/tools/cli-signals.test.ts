/**
 * Ctrl-C and SIGTERM during seal and open (hardening item 9): the hidden temporary file (or the
 * open's spool) is removed, the terminal cursor comes back, and the exit code is 130 / 143.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readlinkSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finish, MiB, run, type Sandbox, sandbox, start, until } from './cli-harness.ts';

let box: Sandbox;
const BIG = 300 * MiB;

/** A temporary file of the atomic write for `name` (`.name.<random>.kmse-tmp`) with bytes in it. */
function writing(name: string): boolean {
  return readdirSync(box.dir).some((f) => f.startsWith(`.${name}.`) && f.endsWith('.kmse-tmp') && statSync(join(box.dir, f)).size > 0);
}

beforeAll(async () => {
  box = sandbox();
  // 300 MiB written in 1 MiB pieces (no 300 MiB buffer in the test's memory).
  const fd = openSync(box.path('big.bin'), 'w');
  const piece = Buffer.alloc(MiB, 0x5a);
  for (let i = 0; i < BIG / MiB; i++) writeSync(fd, piece);
  closeSync(fd);
  const sealed = await run(box, ['seal', 'big.bin', '-o', 'big.kmse', '--quiet']);
  expect(sealed.code).toBe(0);
}, 120_000);
afterAll(() => box.remove());

describe('kms-envelope on SIGINT and SIGTERM', () => {
  it('SIGINT while seal writes -o OUT: exit 130, no temporary file, no OUT', async () => {
    const child = start(box, ['seal', 'big.bin', '-o', 'sealed-now.kmse']);
    const done = finish(child);
    await until(() => writing('sealed-now.kmse'), 30_000, 'the temporary file');
    child.kill('SIGINT');
    const r = await done;
    expect(r.signal).toBe(null);
    expect(r.code).toBe(130);
    expect(r.stderr).not.toMatch(/Error|at /);
    expect(box.leftovers()).toEqual([]);
    expect(existsSync(box.path('sealed-now.kmse'))).toBe(false);
  });

  it('SIGTERM while open writes plaintext to -o OUT: exit 143, no temporary (plaintext) file', async () => {
    const child = start(box, ['open', 'big.kmse', '-o', 'opened-now.bin']);
    const done = finish(child);
    await until(() => writing('opened-now.bin'), 30_000, 'the temporary file');
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code).toBe(143);
    expect(box.leftovers()).toEqual([]);
    expect(existsSync(box.path('opened-now.bin'))).toBe(false);
  });

  it('SIGTERM while open from standard input to standard output spools its input: exit 143, the spool removed', async () => {
    const input = openSync(box.path('big.kmse'), 'r');
    const child = start(box, ['open'], { stdio: [input, 'pipe', 'pipe'] });
    closeSync(input);
    const done = finish(child);
    await until(() => readdirSync(box.tmp, { recursive: true, encoding: 'utf8' }).some((f) => f.endsWith('.kmse')), 30_000, 'the spool');
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code).toBe(143);
    expect(box.leftovers()).toEqual([]);
  });

  it('Ctrl-C while seal waits for standard input, its progress line shown: exit 130, the cursor restored, no temporary file', async () => {
    const child = start(box, ['seal', '-o', 'from-stdin.kmse'], { env: { KMS_ENVELOPE_FORCE_PROGRESS: '1' } });
    const done = finish(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin!.on('error', () => {});
    const feed = setInterval(() => child.stdin!.write(Buffer.alloc(256 * 1024, 1)), 50);
    try {
      await until(() => stderr.includes('\x1b[?25l'), 30_000, 'the progress line');
      expect(writing('from-stdin.kmse')).toBe(true);
    } finally {
      clearInterval(feed);
    }
    child.kill('SIGINT');
    const r = await done;
    expect(r.code).toBe(130);
    expect(r.stderr.endsWith('\x1b[?25h')).toBe(true); // the last thing written shows the cursor again
    expect(box.leftovers()).toEqual([]);
    expect(existsSync(box.path('from-stdin.kmse'))).toBe(false);
  });

  it('SIGINT while a write to -o FIFO blocks (its reader never reads): ended by SIGINT after the grace (130 to a shell), the FIFO left as it was', async () => {
    const fifo = box.path('nobody-reads.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const holder = spawn('sh', ['-c', 'exec sleep 60 < "$0"', fifo], { stdio: 'ignore' }); // opens it, reads nothing
    try {
      const child = start(box, ['seal', 'big.bin', '-o', 'nobody-reads.fifo']);
      const done = finish(child);
      const fds = `/proc/${child.pid}/fd`;
      const holds = (): boolean => readdirSync(fds).some((fd) => readlinkOrEmpty(join(fds, fd)) === fifo);
      await until(holds, 30_000, 'the CLI to open the FIFO');
      await new Promise((r) => setTimeout(r, 300)); // the pipe fills; the next write waits forever
      const sent = Date.now();
      child.kill('SIGINT');
      const r = await done;
      // The write never returns, so the work cannot unwind: after the grace the process ends by
      // the signal itself (process.exit would wait for the blocked worker thread forever).
      expect(r.signal).toBe('SIGINT');
      expect(Date.now() - sent).toBeGreaterThan(2500);
      expect(Date.now() - sent).toBeLessThan(10_000);
      expect(lstatSync(fifo).isFIFO()).toBe(true);
      expect(box.leftovers()).toEqual([]);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

function readlinkOrEmpty(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}
