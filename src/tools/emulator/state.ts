/** The --state file: the keys (and their master key material), so they survive a restart. */
import { randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Cmk } from './kms.ts';

const FORMAT = 'kms-envelope emulator state v1';

interface StateFile {
  format: typeof FORMAT;
  keys: (Omit<Cmk, 'material'> & { material: string })[];
}

/** The keys saved at `path`; none when there is no file yet. */
export function loadState(path: string): Cmk[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return [];
    throw error;
  }
  const state = JSON.parse(text) as StateFile;
  if (state.format !== FORMAT) throw new Error(`${path} is not an emulator state file`);
  return state.keys.map((k) => ({ ...k, material: Buffer.from(k.material, 'base64') }));
}

export function saveState(path: string, keys: Iterable<Cmk>): void {
  const state: StateFile = { format: FORMAT, keys: [...keys].map((k) => ({ ...k, material: k.material.toString('base64') })) };
  writeAtomically(path, JSON.stringify(state));
}

/** Writes to a temporary file beside `path` (mode 0600: it holds key material), fsyncs, renames over it. */
function writeAtomically(path: string, text: string): void {
  const tmp = join(dirname(path), `.${Date.now()}-${randomUUID()}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
