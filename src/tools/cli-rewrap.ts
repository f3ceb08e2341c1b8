/**
 * `kms-envelope rewrap --to-key ID PATH...`: sealed files and directory trees moved to another
 * master key (kms-envelope/node's rewrapTree: only the headers change, each file atomically). A
 * progress bar with ETA on a terminal, a checkpoint so a second run skips what is done, and a
 * summary: rewrapped, already current, failed with reasons, skipped. Ctrl-C abandons the files
 * under way (each left as it was) and exits 130.
 */
import { parseArgs } from 'node:util';
import { createEnvelope, type KeyProvider } from '../index.ts';
import { rewrapTree, type FileSweepSummary } from '../node.ts';
import { ConfigError, EXIT, printable, safeJson, UsageError } from './cli-errors.ts';
import { interruption } from './cli-signals.ts';
import type { Progress } from './progress.ts';

export const REWRAP_HELP = (providerHelp: string, exitTable: string) => `Usage: kms-envelope rewrap --to-key ID [options] PATH...

Moves sealed files, and every sealed file under directories, to the master key ID: only each file's
header changes (its data key rewrapped by the KMS: one ReEncrypt, or Decrypt and Encrypt on the
legacy API); the payload is never decrypted. Each file is replaced atomically; a file that changes
meanwhile is left alone and reported. Files already under ID are left as they are; other files
(not sealed, links) are skipped. Exit 0 when no file failed, 1 when some did (the summary says which).

  --to-key ID            the master key to move the files to (required)
  --context k=v          the context of files sealed with a detached context; repeat for more
  --checkpoint FILE      record files done in FILE and skip them next time (default
                         ./.kms-envelope/rewrap.checkpoint); 'none' for no checkpoint
  --concurrency N        files at once, 1 to 64 (default 4)
  --json                 print the summary as JSON
  -q, --quiet            no progress line

${providerHelp}

${exitTable}`;

export interface RewrapDeps {
  provider(flags: Record<string, unknown>, sealing: boolean): KeyProvider;
  parseContext(pairs: string[] | undefined): Record<string, string> | undefined;
  progress(quiet: boolean | undefined, label: string): Progress & { onProgress: (done: number, total: number) => void };
  providerOptions: Record<string, { type: 'string' }>;
  help(): number;
}

const KEY_ID = /^[\x21-\x7e]{1,256}$/;

export async function rewrapCommand(args: string[], deps: RewrapDeps): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...deps.providerOptions,
      'to-key': { type: 'string' },
      context: { type: 'string', multiple: true },
      checkpoint: { type: 'string' },
      concurrency: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return deps.help();
  const toKeyId = values['to-key'];
  if (toKeyId === undefined) throw new UsageError('rewrap needs --to-key ID: the master key to move the files to');
  if (!KEY_ID.test(toKeyId)) throw new UsageError(`--to-key must be a CMK id or alias (printable, no spaces), got "${printable(toKeyId)}"`);
  if (positionals.length === 0) throw new UsageError('rewrap needs one or more PATHs (files or directories)');
  const concurrency = values.concurrency === undefined ? 4 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new UsageError(`--concurrency must be 1 to 64, got "${printable(String(values.concurrency))}"`);
  const context = deps.parseContext(values.context);
  const checkpoint = values.checkpoint === 'none' ? undefined : (values.checkpoint ?? '.kms-envelope/rewrap.checkpoint');
  const envelope = createEnvelope({ kms: deps.provider(values, false) });
  const bar = deps.progress(values.quiet, 'rewrapping');
  let summary: FileSweepSummary;
  try {
    summary = await rewrapTree(envelope, positionals, {
      toKeyId,
      concurrency,
      signal: interruption,
      ...(context ? { context } : {}),
      ...(checkpoint ? { checkpoint } : {}),
      onEvent(event) {
        if (event.type === 'progress') bar.update(event.bytes, event.totalBytes);
      },
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'ENOTDIR') throw new ConfigError((error as Error).message);
    throw error;
  } finally {
    bar.stop();
    await envelope.close();
  }
  if (summary.stopped) throw interruption.reason;
  if (values.json) console.log(safeJson(summary));
  else {
    for (const f of summary.failed) console.log(`failed: ${printable(f.path)}: ${printable(f.reason)}`);
    for (const s of summary.skipped) console.log(`skipped: ${printable(s.path)}: ${printable(s.reason)}`);
    console.log(`rewrapped ${summary.rewrapped}, already current ${summary.current}, failed ${summary.failed.length}, skipped ${summary.skipped.length}`);
  }
  return summary.failed.length ? EXIT.authentication : EXIT.ok;
}
