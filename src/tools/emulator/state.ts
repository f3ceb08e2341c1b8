/**
 * The --state file: the keys (with their master key material) and the generated credentials, so
 * that both survive a restart. Credentials given to the emulator are never written.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomicSync } from '../../node.ts';
import type { Cmk } from './kms.ts';
import type { EmulatorCredentials } from './types.ts';

// Files written before credentials were kept have none; they load as they are.
const FORMAT = 'kms-envelope emulator state v1';

export interface EmulatorState {
  /** Generated credentials, when the emulator generated them. */
  credentials?: readonly EmulatorCredentials[] | undefined;
  keys: Iterable<Cmk>;
}

interface StateFile {
  format: typeof FORMAT;
  credentials?: EmulatorCredentials[];
  keys: (Omit<Cmk, 'material'> & { material: string })[];
}

/** What was saved at `path`; no keys and no credentials when there is no file yet. */
export function loadState(path: string): EmulatorState & { keys: Cmk[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return { keys: [] };
    throw error;
  }
  const state = JSON.parse(text) as StateFile;
  if (state.format !== FORMAT) throw new Error(`${path} is not an emulator state file`);
  const keys = state.keys.map((k) => ({ ...k, material: Buffer.from(k.material, 'base64') }));
  return state.credentials?.length ? { credentials: state.credentials, keys } : { keys };
}

export function saveState(path: string, state: EmulatorState): void {
  const file: StateFile = {
    format: FORMAT,
    ...(state.credentials ? { credentials: [...state.credentials] } : {}),
    keys: [...state.keys].map((k) => ({ ...k, material: k.material.toString('base64') })),
  };
  // Atomic and 0600: a crash mid-write leaves the previous state, never half a file.
  writeFileAtomicSync(path, JSON.stringify(file), { overwrite: true, mode: 0o600 });
}

/** Writes to a temporary file beside `path` (mode 0600: it holds key material and secrets), fsyncs, renames over it. */
