/**
 * LocalKms key files on disk. A key file is read once through one descriptor: opened without
 * following a symlink and without blocking (a FIFO must not hang the process), then checked on
 * that descriptor (a regular file, owned by this user, mode 0600 or stricter) in a folder that no
 * other user can write to. New key files appear whole (atomic write) and never replace a file.
 */
import { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { KmsError } from '../core/errors.ts';
import { LocalKms, type LocalKmsOptions } from '../kms/local.ts';
import { writeFileAtomicSync } from './atomic.ts';

const IS_WINDOWS = process.platform === 'win32';

function refuse(message: string, cause?: unknown): KmsError {
  return new KmsError(message, cause === undefined ? undefined : { cause });
}

/** A folder others can write to lets them swap the key file: refused (a sticky folder like /tmp is fine). */
function checkFolder(path: string): void {
  if (IS_WINDOWS) return;
  const folder = dirname(path);
  const stat = statSync(folder);
  if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) {
    throw refuse(`local key file ${path}: its folder ${folder} is writable by others (mode ${(stat.mode & 0o777).toString(8)}); use a private folder`);
  }
}

/** Reads a key file's text through one descriptor, checked as the module comment says. */
function readKeyFileText(path: string): string {
  checkFolder(path);
  const flags = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
  const fd = openSync(path, flags);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw refuse(`local key file ${path} is not a regular file`);
    if (!IS_WINDOWS) {
      if ((stat.mode & 0o077) !== 0) {
        throw refuse(`local key file ${path} is readable or writable by others (mode ${(stat.mode & 0o777).toString(8)}); run chmod 600 on it`);
      }
      const uid = process.getuid?.();
      if (uid !== undefined && stat.uid !== uid) throw refuse(`local key file ${path} belongs to user ${stat.uid}, not to this user (${uid})`);
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * A LocalKms from a key file. With `create: true`, a missing file is created first with a fresh
 * key (mode 0600, its key id a fingerprint of the key). Relative paths are resolved, and errors
 * name the resolved path.
 */
export function localKmsFromKeyFile(path: string, options: LocalKmsOptions & { create?: boolean } = {}): LocalKms {
  const file = resolve(path);
  let text: string;
  try {
    text = readKeyFileText(file);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT' && options.create) {
      createLocalKeyFile(file, options);
      return localKmsFromKeyFile(file, { ...options, create: false });
    }
    if (error instanceof KmsError) throw error;
    if (code === 'ELOOP') throw refuse(`local key file ${file} is a symbolic link; point to the file itself`, error);
    throw refuse(`cannot read local key file ${file}: ${(error as Error).message}`, error);
  }
  return LocalKms.fromKeyFileText(text, file, options);
}

/**
 * Writes a new key file with one fresh master key: mode 0600, atomically, never over an existing
 * file. Returns the key id (a fingerprint of the key unless `keyId` is given).
 */
export function createLocalKeyFile(path: string, options: { keyId?: string; backend?: LocalKmsOptions['backend'] } = {}): string {
  const file = resolve(path);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const { text, keyId } = LocalKms.newKeyFileText(options);
  writeFileAtomicSync(file, text, { overwrite: false, mode: 0o600 });
  return keyId;
}
