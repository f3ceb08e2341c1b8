/**
 * Terminal safety (hardening item 12), on a real pseudo-terminal from util-linux `script`: no
 * ciphertext to a terminal unless --force, a note when standard input is the terminal, "empty
 * input" for an empty open, and control characters from the input escaped wherever they are printed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, run, type Sandbox, sandbox, until } from './cli-harness.ts';

const hasScript = spawnSync('script', ['--version']).status === 0;
let box: Sandbox;

beforeAll(() => {
  box = sandbox();
  writeFileSync(box.path('plain.txt'), 'not for a terminal');
});
afterAll(() => box.remove());

const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Runs the CLI under `script`, its standard input, output and error all one terminal; `typing`
 * is called with a function that types into that terminal. Returns the exit code and what the
 * terminal showed.
 */
function onTerminal(args: string[], typing?: (type: (text: string) => void, shown: () => string) => Promise<void>): Promise<{ code: number | null; shown: string }> {
  const command = [process.execPath, CLI, ...args].map(quote).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], {
    cwd: box.dir,
    env: { PATH: process.env.PATH ?? '', TMPDIR: box.tmp, SHELL: '/bin/sh', TERM: 'dumb' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let shown = '';
  child.stdout.on('data', (d: Buffer) => (shown += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (shown += d.toString('latin1')));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const typed = typing ? typing((text) => child.stdin.write(text), () => shown) : Promise.resolve();
  return typed.then(
    async () => {
      const code = await exited;
      child.stdin.destroy();
      return { code, shown };
    },
    (error: unknown) => {
      child.kill('SIGKILL'); // never leave script (and the CLI under it) waiting for input
      throw error;
    },
  );
}

describe.skipIf(!hasScript)('kms-envelope on a terminal', () => {
  it('seal refuses to write ciphertext to a terminal (standard output or -o /dev/tty) unless --force', async () => {
    for (const args of [['seal', 'plain.txt'], ['seal', 'plain.txt', '-o', '/dev/tty']]) {
      const refused = await onTerminal(args);
      expect(refused.code).toBe(2);
      expect(refused.shown).toContain('refusing to write ciphertext to a terminal');
      expect(refused.shown).not.toContain('KMSE'); // no header bytes either
    }
    const forced = await onTerminal(['seal', 'plain.txt', '--force']);
    expect(forced.code).toBe(0);
  });

  it('says "reading from the terminal, end with Ctrl-D" when standard input is a terminal', async () => {
    const r = await onTerminal(['seal', '-o', 'typed.kmse'], async (type, shown) => {
      await until(() => shown().includes('reading from the terminal, end with Ctrl-D'), 20_000, 'the note');
      type('typed at the terminal\n');
      type('\x04'); // Ctrl-D: the end of the input
    });
    expect(r.code).toBe(0);
    const opened = await run(box, ['open', 'typed.kmse']);
    expect(opened.stdout.toString()).toBe('typed at the terminal\n');
  });
});

describe('kms-envelope and untrusted text', () => {
  it('says "empty input" for an empty open, from a file or from standard input', async () => {
    writeFileSync(box.path('empty.kmse'), '');
    for (const r of [await run(box, ['open', 'empty.kmse']), await run(box, ['open'], { input: '' }), await run(box, ['inspect', 'empty.kmse'])]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('empty input');
    }
  });

  it('escapes control characters in key ids, contexts and KMS messages it prints', async () => {
    const evil = 'id\x1b]0;owned\x07\u009b31m\u202eevil';
    expect((await run(box, ['keygen', '--key-file', 'evil/local.key', '--key-id', evil])).code).toBe(0);
    const sealed = await run(box, ['seal', 'plain.txt', '-o', 'evil.kmse', '--key-file', 'evil/local.key', '--context', `k=\x1b[2J\u009b2J\u2066`]);
    expect(sealed.code).toBe(0);
    const unsafe = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

    const info = await run(box, ['inspect', 'evil.kmse']);
    expect(info.code).toBe(0);
    const json = info.stdout.toString();
    expect(json).not.toMatch(unsafe);
    const parsed = JSON.parse(json) as { keyId: string; context: Record<string, string> };
    expect(parsed.keyId).toBe(evil); // escaped on the terminal, the same string for a JSON reader
    expect(parsed.context.k).toBe('\x1b[2J\u009b2J\u2066');

    // The default key file has no such key: exit 2 (configuration), naming the key file and the key id from the file.
    const open = await run(box, ['open', 'evil.kmse']);
    expect(open.code).toBe(2);
    expect(open.stderr).toContain('the key file .kms-envelope/local.key has no key');
    expect(open.stderr).toContain('id\\x1b]0;owned\\x07\\x9b31m\\u202eevil');
    expect(open.stderr).not.toMatch(unsafe);
    expect(readFileSync(box.path('plain.txt'), 'utf8')).toBe('not for a terminal');
  });
});
