/**
 * The command line's failures: one exit-code table (EXIT, printed by --help and README.md), the
 * error classes the commands throw, and how any error becomes one line on stderr and an exit code.
 * Nothing here prints a stack trace: every expected failure is a sentence.
 */
import { basename, dirname } from 'node:path';
import { isEnvelopeError } from '../index.ts';

export const EXIT = {
  ok: 0,
  /** The input did not authenticate or is not a sealed message: tampered, truncated, wrong key, provider or context. */
  authentication: 1,
  /** Usage and local configuration: bad flags, missing or existing files, key file mode, permissions. */
  usage: 2,
  /** The KMS refused or could not be reached. */
  kms: 3,
  /** Input/output while data moved: disk full, read or write errors; and anything unexpected. */
  io: 4,
  /** Interrupted by SIGINT (Ctrl-C) or SIGTERM: 128 + the signal number, as a shell reports it. */
  sigint: 130,
  sigterm: 143,
  /** The reader of standard output (or of a FIFO) went away: nothing is printed, as if killed by SIGPIPE. */
  closedReader: 141,
} as const;

/** The exit-code table, as `--help` prints it (README.md's "The command line" has the same). */
export const EXIT_TABLE = `Exit codes:
  0    ok
  1    authentication failed: tampered, truncated or not a sealed message, wrong key or context
  2    usage and local configuration: bad flags, missing or existing files, key file, permissions
  3    KMS error (refused, unreachable, credentials)
  4    input/output error while reading or writing (disk full, read errors), or unexpected
  130  interrupted (Ctrl-C), 143 terminated (SIGTERM): temporary files removed
  141  the reader of the output went away (e.g. | head): quietly`;

/** A bad command line: one line, then where to read the command's help. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A local configuration problem (key file, files given, permissions): exit 2, without the help hint. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The input is not a sealed message at all, or visibly cut short (empty, truncated): exit 1. */
export class NotSealed extends Error {
  override name = 'NotSealed';
}

/** SIGINT or SIGTERM arrived: the work was abandoned and its temporary files removed. */
export class Interrupted extends Error {
  override name = 'Interrupted';
  readonly exitCode: number;
  constructor(signal: 'SIGINT' | 'SIGTERM') {
    super(signal === 'SIGINT' ? 'interrupted' : 'terminated');
    this.exitCode = signal === 'SIGINT' ? EXIT.sigint : EXIT.sigterm;
  }
}

/** Attaches what an I/O error was about ("standard output", a path) when Node's error names nothing useful. */
export function tagged<T>(where: string, work: () => Promise<T>): Promise<T> {
  return work().catch((error: unknown) => {
    if (error && typeof error === 'object' && (error as { code?: unknown }).code) Object.assign(error, { where });
    throw error;
  });
}

// C0 and C1 controls, DEL, line and paragraph separators, bidirectional overrides and isolates,
// zero-width marks: anything that could move the cursor, recolour, retitle or reorder a terminal.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;

const UNSAFE_BEYOND_C0 = /[\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;

/** Text from untrusted input (key ids, contexts, KMS messages), with every control character made visible. */
export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** JSON whose strings escape, besides what JSON.stringify does, DEL, C1 controls and bidi/zero-width marks. */
export function safeJson(value: unknown): string {
  // JSON.stringify escapes C0 controls inside strings; the newlines left are its own indentation.
  return JSON.stringify(value, null, 2).replace(UNSAFE_BEYOND_C0, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or folder',
  ENOTDIR: 'not a folder',
  EISDIR: 'is a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'exists',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'name too long',
  EROFS: 'read-only file system',
  ENXIO: 'no such device or address (a FIFO without a reader, or a socket)',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
  EAGAIN: 'resource temporarily unavailable',
};

/** Errors about the paths on the command line (exit 2); any other system error is I/O (exit 4). */
const USAGE_ERRNOS = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'EEXIST', 'ELOOP', 'ENAMETOOLONG', 'EROFS', 'ENXIO']);

interface SystemError {
  code: string;
  path?: string;
  where?: string;
  syscall?: string;
  message: string;
}

function isSystemError(error: unknown): error is SystemError {
  const e = error as Partial<SystemError> | null;
  return !!e && typeof e === 'object' && typeof e.code === 'string' && /^E[A-Z0-9]+$/.test(e.code) && !isEnvelopeError(error);
}

/** What a system error was about: the folder for a temporary file, never the temporary file itself. */
function subject(error: SystemError): string {
  if (error.where) return error.where;
  const path = error.path;
  if (!path) return error.syscall ? `(${error.syscall})` : '';
  if (/^\..*\.kmse-tmp$/.test(basename(path))) return `folder ${dirname(path)}`;
  return path;
}

export interface Failure {
  exit: number;
  /** The line(s) for stderr, already made printable; empty for a quiet exit. */
  message: string;
}

/**
 * The exit code and message for an error thrown by a command. `command` names the command for
 * the usage hint; `hint` adds a line for a KMS error (e.g. a legacy endpoint without its path).
 */
export function failure(error: unknown, command: string | undefined, kmsHint?: string): Failure {
  const see = `see 'kms-envelope ${command ? `${command} ` : ''}--help'`;
  if (error instanceof Interrupted) return { exit: error.exitCode, message: '' };
  if (error instanceof UsageError) return { exit: EXIT.usage, message: `${printable(error.message)}; ${see}` };
  if (error instanceof ConfigError) return { exit: EXIT.usage, message: printable(error.message) };
  if (error instanceof NotSealed) return { exit: EXIT.authentication, message: printable(error.message) };
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    // Node's parser explains at length; its first sentence is the error.
    const first = String((error as Error).message).split(/\.\s/)[0]!.replace(/\.$/, '');
    return { exit: EXIT.usage, message: `${printable(first)}; ${see}` };
  }
  if (isEnvelopeError(error)) {
    if (error.code === 'ERR_KMS') return { exit: EXIT.kms, message: printable(error.message) + (kmsHint ? `\n${kmsHint}` : '') };
    return { exit: EXIT.authentication, message: printable(error.message) };
  }
  if (isSystemError(error)) {
    if (error.code === 'EPIPE') return { exit: EXIT.closedReader, message: '' };
    const text = ERRNO_TEXT[error.code] ?? error.message.replace(/^[A-Z0-9]+: /, '').replace(/, \w+ '.*'$/, '');
    const about = subject(error);
    const exit = USAGE_ERRNOS.has(error.code) ? EXIT.usage : EXIT.io;
    return { exit, message: printable(`${about ? `${about}: ` : ''}${text} (${error.code})`) };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { exit: EXIT.io, message: printable(message) };
}
