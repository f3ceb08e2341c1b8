/**
 * Rewrapping files and directory trees to another master key (`kms-envelope rewrap`): each file
 * through rewrapFile() (only the header's wrapped keys change, atomically; a file that changes
 * meanwhile is left alone), a few at once. A file already under the target key is left as it is
 * (its header says so: no KMS call). A checkpoint file (JSON lines, appended as files are done)
 * lets a second run skip a file done before without reading it, as long as it has not changed
 * since (same size, times and inode). Progress and the outcome of every file are events.
 */
import type { Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseHeader, MAX_HEADER_LENGTH } from '../core/header.ts';
import { isEnvelopeError } from '../core/errors.ts';
import type { ContextInput } from '../core/context.ts';
import { coreOf } from '../envelope/engine.ts';
import type { Envelope } from '../envelope/envelope.ts';
import { rewrapFile } from './rewrap-file.ts';

export type FileOutcome = 'rewrapped' | 'current' | 'failed' | 'skipped';

export type FileSweepEvent =
  /** After the walk: the regular files found and their bytes. */
  | { type: 'start'; files: number; bytes: number }
  /** One file done: `reason` for failed and skipped ones (`code` when the library's error). */
  | { type: 'file'; path: string; outcome: FileOutcome; bytes: number; code?: string; reason?: string; fromCheckpoint?: boolean }
  /** After each file: files and bytes done of the total. */
  | { type: 'progress'; files: number; totalFiles: number; bytes: number; totalBytes: number; elapsedMs: number }
  | { type: 'end'; summary: FileSweepSummary };

export interface FileSweepSummary {
  rewrapped: number;
  /** Already under the target key (the header says so, or the checkpoint). */
  current: number;
  /** Could not be rewrapped (not openable by the KMS, changed meanwhile, …): left as they were. */
  failed: { path: string; code: string; reason: string }[];
  /** Not sealed files, symbolic links and other non-regular files met in the trees. */
  skipped: { path: string; reason: string }[];
  /** True when the signal stopped the sweep (files under way were abandoned intact). */
  stopped: boolean;
  elapsedMs: number;
}

export interface FileSweepOptions {
  /** The master key the files end up under. */
  toKeyId: string;
  /** For files sealed with a detached context: the context (the same for every file). */
  context?: ContextInput;
  /** A checkpoint file (JSON lines), created if missing: files done are recorded and skipped next time. */
  checkpoint?: string;
  /** Files rewrapped at once; default 4. */
  concurrency?: number;
  /** Stops: no new file is started, files under way are abandoned (each left as it was), the summary says `stopped`. */
  signal?: AbortSignal;
  onEvent?: (event: FileSweepEvent) => void;
}

interface Found {
  path: string;
  stats: Stats;
}

interface CheckpointEntry {
  path: string;
  toKeyId: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

const fingerprint = (s: Stats) => ({ size: s.size, mtimeMs: s.mtimeMs, ino: s.ino });

/** Every regular file under the paths (directories walked in name order; links not followed). */
async function walk(paths: readonly string[], skipped: FileSweepSummary['skipped']): Promise<Found[]> {
  const found: Found[] = [];
  const seen = new Set<string>();
  const visit = async (path: string, top: boolean): Promise<void> => {
    let stats: Stats;
    try {
      stats = await lstat(path);
    } catch (error) {
      if (top) throw error; // a path given that does not exist is the caller's mistake
      skipped.push({ path, reason: (error as Error).message });
      return;
    }
    if (stats.isDirectory()) {
      const names = (await readdir(path)).sort();
      for (const name of names) await visit(join(path, name), false);
    } else if (stats.isFile() && path.endsWith('.kmse-tmp')) {
      // A temporary file of a write that was killed (node/atomic.ts names them so): never a sealed file to move.
      skipped.push({ path, reason: 'a temporary file left by an interrupted write' });
    } else if (stats.isFile()) {
      const key = `${stats.dev}:${stats.ino}`;
      if (!seen.has(key)) {
        seen.add(key);
        found.push({ path, stats });
      }
    } else skipped.push({ path, reason: stats.isSymbolicLink() ? 'a symbolic link (not followed)' : 'not a regular file' });
  };
  for (const p of paths) await visit(p, true);
  return found;
}

async function loadCheckpoint(path: string): Promise<Map<string, CheckpointEntry>> {
  const done = new Map<string, CheckpointEntry>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return done;
    throw error;
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const e = JSON.parse(line) as CheckpointEntry;
      if (typeof e.path === 'string' && typeof e.toKeyId === 'string') done.set(e.path, e);
    } catch {
      // A line torn by a crash: that file is looked at again.
    }
  }
  return done;
}

/**
 * Whether a file's header says there is nothing to do (no KMS call): every wrapped key of this
 * envelope's provider is under the target key (keys of other providers are not rewrapped).
 */
async function alreadyCurrent(path: string, toKeyId: string, provider: string | undefined): Promise<boolean | 'not-sealed'> {
  const handle = await open(path, 'r');
  try {
    const head = new Uint8Array(MAX_HEADER_LENGTH);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    let header;
    try {
      header = parseHeader(head.subarray(0, bytesRead));
    } catch {
      return 'not-sealed';
    }
    const ours = header.keySource === 'kms' ? header.wrappedKeys.filter((w) => w.provider === provider) : [];
    return ours.length > 0 && ours.every((w) => w.keyId === toKeyId);
  } finally {
    await handle.close();
  }
}

/**
 * Rewraps every sealed file under `paths` (files and directories) to `options.toKeyId`. Resolves
 * with the summary; rejects only when a path given does not exist or the checkpoint cannot be
 * written. Every file's failure is in the summary, never thrown.
 */
export async function rewrapTree(envelope: Envelope, paths: readonly string[], options: FileSweepOptions): Promise<FileSweepSummary> {
  if (!Array.isArray(paths) || paths.length === 0 || !paths.every((p) => typeof p === 'string' && p.length > 0)) throw new TypeError('"paths" expected one or more file or directory paths');
  if (typeof options?.toKeyId !== 'string' || options.toKeyId.length === 0) throw new TypeError('"toKeyId" expected the master key to rewrap to');
  const concurrency = options.concurrency ?? 4;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new RangeError('"concurrency" must be an integer from 1 to 64');
  const core = coreOf(envelope);
  const { toKeyId, signal } = options;
  const emit = (event: FileSweepEvent): void => {
    try {
      options.onEvent?.(event);
    } catch {
      // A progress hook must not break the sweep.
    }
  };
  const started = performance.now();
  const summary: FileSweepSummary = { rewrapped: 0, current: 0, failed: [], skipped: [], stopped: false, elapsedMs: 0 };
  const files = await walk(paths, summary.skipped);
  const totalBytes = files.reduce((n, f) => n + f.stats.size, 0);
  emit({ type: 'start', files: files.length, bytes: totalBytes });

  const done = options.checkpoint ? await loadCheckpoint(options.checkpoint) : new Map<string, CheckpointEntry>();
  let record: ((entry: CheckpointEntry) => Promise<void>) | undefined;
  let closeCheckpoint = async (): Promise<void> => {};
  if (options.checkpoint) {
    await mkdir(dirname(resolve(options.checkpoint)), { recursive: true });
    const handle = await open(options.checkpoint, 'a', 0o600);
    record = async (entry) => {
      await handle.appendFile(`${JSON.stringify(entry)}\n`);
    };
    closeCheckpoint = async () => {
      await handle.sync().catch(() => {});
      await handle.close();
    };
  }

  let filesDone = 0;
  let bytesDone = 0;
  const finish = (path: string, outcome: FileOutcome, bytes: number, extra: { code?: string; reason?: string; fromCheckpoint?: boolean } = {}) => {
    filesDone++;
    bytesDone += bytes;
    emit({ type: 'file', path, outcome, bytes, ...extra });
    emit({ type: 'progress', files: filesDone, totalFiles: files.length, bytes: bytesDone, totalBytes, elapsedMs: performance.now() - started });
  };

  async function one({ path, stats }: Found): Promise<void> {
    const absolute = resolve(path);
    const entry = done.get(absolute);
    if (entry && entry.toKeyId === toKeyId && entry.size === stats.size && entry.mtimeMs === stats.mtimeMs && entry.ino === stats.ino) {
      summary.current++;
      return finish(path, 'current', stats.size, { fromCheckpoint: true });
    }
    try {
      const state = await alreadyCurrent(path, toKeyId, core.kms?.id);
      if (state === 'not-sealed') {
        summary.skipped.push({ path, reason: 'not a sealed file' });
        return finish(path, 'skipped', stats.size, { reason: 'not a sealed file' });
      }
      if (state) {
        summary.current++;
        await record?.({ path: absolute, toKeyId, ...fingerprint(await lstat(path)) });
        return finish(path, 'current', stats.size);
      }
      await rewrapFile(core, path, { toKeyId, ...(options.context ? { context: options.context } : {}), ...(signal ? { signal } : {}) });
      summary.rewrapped++;
      await record?.({ path: absolute, toKeyId, ...fingerprint(await lstat(path)) });
      return finish(path, 'rewrapped', stats.size);
    } catch (error) {
      if (signal?.aborted) return; // abandoned, left as it was; not a failure of the file
      const code = isEnvelopeError(error) ? error.code : String((error as { code?: unknown }).code ?? (error as Error).name);
      const reason = error instanceof Error ? error.message : String(error);
      summary.failed.push({ path, code, reason });
      return finish(path, 'failed', stats.size, { code, reason });
    }
  }

  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(concurrency, files.length) }, async () => {
        while (next < files.length && !signal?.aborted) await one(files[next++]!);
      }),
    );
  } finally {
    await closeCheckpoint();
  }
  summary.stopped = signal?.aborted === true;
  summary.elapsedMs = performance.now() - started;
  emit({ type: 'end', summary });
  return summary;
}
