/**
 * `-o OUT` on special files (hardening item 8): a FIFO or a character device is written through,
 * never renamed over; a symbolic link is replaced only with --replace-link; the atomic rename stays
 * for regular files.
 */
import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type Sandbox, sandbox } from './cli-harness.ts';

let box: Sandbox;
beforeAll(() => {
  box = sandbox();
  writeFileSync(box.path('plain.txt'), 'through the fifo '.repeat(10_000));
});
afterAll(() => box.remove());

/** `cat FIFO > file` in the background; settles with whether cat ended by itself within `ms`. */
function drain(fifo: string, into: string): { done: (ms: number) => Promise<boolean> } {
  const cat = spawn('sh', ['-c', 'exec cat "$0" > "$1"', fifo, into], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => cat.on('exit', () => resolve()));
  return {
    done: async (ms) => {
      const ended = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
      if (!ended) cat.kill('SIGKILL'); // the FIFO was replaced: nothing will ever write to it
      return ended;
    },
  };
}

describe('kms-envelope -o on special files', () => {
  it('writes through an existing FIFO (seal and open, even with --force) and leaves it a FIFO', async () => {
    const fifo = box.path('out.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);

    const sealedCopy = box.path('from-fifo.kmse');
    const reader = drain(fifo, sealedCopy);
    const sealed = await run(box, ['seal', 'plain.txt', '-o', 'out.fifo', '--force']);
    expect(sealed.stderr).toBe('');
    expect(sealed.code).toBe(0);
    expect(await reader.done(5000)).toBe(true);
    expect(lstatSync(fifo).isFIFO()).toBe(true);

    const plainCopy = box.path('from-fifo.txt');
    const reader2 = drain(fifo, plainCopy);
    const opened = await run(box, ['open', 'from-fifo.kmse', '-o', 'out.fifo']);
    expect(opened.stderr).toBe('');
    expect(opened.code).toBe(0);
    expect(await reader2.done(5000)).toBe(true);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(readFileSync(plainCopy).equals(readFileSync(box.path('plain.txt')))).toBe(true);
  });

  it('writes through a character device and never replaces it', async () => {
    // As root the old code renamed over a device node (it replaced /dev/full): test on a node of
    // our own (the null device's numbers) so a regression cannot harm /dev. Not root: /dev/null.
    let device = '/dev/null';
    if (process.getuid?.() === 0) {
      device = box.path('null');
      expect(spawnSync('mknod', [device, 'c', '1', '3']).status).toBe(0);
    }
    for (const args of [['--force'], []]) {
      const r = await run(box, ['seal', 'plain.txt', '-o', device, ...args]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(lstatSync(device).isCharacterDevice()).toBe(true);
    }
    expect(statSync('/dev/null').isCharacterDevice()).toBe(true);
  });

  it('refuses a symbolic link (even with --force) unless --replace-link, which replaces the link and never its target', async () => {
    writeFileSync(box.path('target.txt'), 'keep me');
    symlinkSync('target.txt', box.path('link.kmse'));
    for (const args of [[], ['--force']]) {
      const r = await run(box, ['seal', 'plain.txt', '-o', 'link.kmse', ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/link\.kmse is a symbolic link.*--replace-link/);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(readlinkSync(box.path('link.kmse'))).toBe('target.txt');
    }
    const replaced = await run(box, ['seal', 'plain.txt', '-o', 'link.kmse', '--replace-link']);
    expect(replaced.code).toBe(0);
    expect(lstatSync(box.path('link.kmse')).isFile()).toBe(true);
    expect(readFileSync(box.path('target.txt'), 'utf8')).toBe('keep me');
    const back = await run(box, ['open', 'link.kmse']);
    expect(back.stdout.equals(readFileSync(box.path('plain.txt')))).toBe(true);
  });

  it('keeps the atomic rename for regular files, and refuses a folder', async () => {
    writeFileSync(box.path('regular.kmse'), 'old');
    expect((await run(box, ['seal', 'plain.txt', '-o', 'regular.kmse'])).code).toBe(2);
    expect(readFileSync(box.path('regular.kmse'), 'utf8')).toBe('old');
    const inode = statSync(box.path('regular.kmse')).ino;
    expect((await run(box, ['seal', 'plain.txt', '-o', 'regular.kmse', '--force'])).code).toBe(0);
    expect(statSync(box.path('regular.kmse')).ino).not.toBe(inode); // a new file renamed into place
    expect(box.leftovers()).toEqual([]);
    const folder = await run(box, ['seal', 'plain.txt', '-o', 'tmp', '--force']);
    expect(folder.code).toBe(2);
    expect(folder.stderr).toContain('tmp is a folder');
  });
});
