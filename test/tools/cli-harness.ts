/**
 * Shared by the test/tools/cli-*.test.ts files: spawns the built CLI (dist/tools/cli.js; run
 * `npm run build` first) in a private temporary folder with its own LocalKms key file and TMPDIR.
 */
import { type ChildProcess, spawn, type StdioOptions } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalKeyFile } from '../../src/node.ts';

export const CLI = new URL('../../dist/tools/cli.js', import.meta.url).pathname;
export const MiB = 1024 * 1024;

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface Sandbox {
  dir: string;
  /** The TMPDIR the CLI gets (where open spools its input). */
  tmp: string;
  path(name: string): string;
  /** Hidden temporary files (`.kmse-tmp`) in the sandbox, and anything left in its TMPDIR. */
  leftovers(): string[];
  remove(): void;
}

/** A private folder with ./.kms-envelope/local.key and a TMPDIR of its own. */
export function sandbox(): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'kmse-cli-'));
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { mode: 0o700 });
  createLocalKeyFile(join(dir, '.kms-envelope', 'local.key'));
  return {
    dir,
    tmp,
    path: (name) => join(dir, name),
    leftovers: () => [
      ...readdirSync(dir).filter((name) => name.endsWith('.kmse-tmp')),
      ...readdirSync(tmp, { recursive: true, encoding: 'utf8' }).map((name) => `tmp/${name}`),
    ],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface SpawnOptions {
  input?: Uint8Array | string;
  env?: Record<string, string>;
  stdio?: StdioOptions;
  /** Another built CLI to run (a copy of the package), instead of dist/tools/cli.js. */
  cli?: string;
  /** Run as this user (root only). */
  user?: { uid: number; gid: number };
}

/** Starts the CLI in `box.dir` with a minimal environment (PATH, TMPDIR, and `env`). */
export function start(box: Sandbox, args: string[], options: SpawnOptions = {}): ChildProcess {
  return spawn(process.execPath, [options.cli ?? CLI, ...args], {
    cwd: box.dir,
    env: { PATH: process.env.PATH ?? '', TMPDIR: box.tmp, ...options.env },
    stdio: options.stdio ?? ['pipe', 'pipe', 'pipe'],
    ...options.user,
  });
}

/** Collects a started CLI's output and exit. */
export function finish(child: ChildProcess): Promise<Run> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out), stderr }));
  });
}

/** Runs the CLI to its end; standard input gets `input` (or nothing) and is closed. */
export function run(box: Sandbox, args: string[], options: SpawnOptions = {}): Promise<Run> {
  const child = start(box, args, options);
  const done = finish(child);
  child.stdin?.on('error', () => {}); // a CLI that exits before reading its input
  child.stdin?.end(options.input ?? '');
  return done;
}

/** Polls `check` every 5 ms until it is true (or throws after `ms`). */
export async function until(check: () => boolean, ms = 20_000, what = 'the condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
