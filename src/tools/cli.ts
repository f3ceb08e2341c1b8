#!/usr/bin/env node
/**
 * The `kms-envelope` command. Exit codes: EXIT_TABLE in cli-errors.ts (0 ok, 1 authentication
 * failed, 2 usage and local configuration, 3 KMS, 4 I/O; 130/143 on a signal, 141 for a closed
 * reader). Credentials come from the environment only. Where bytes go: cli-io.ts; signals:
 * cli-signals.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { open as openHandle, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createEnvelope, type Envelope, inspect, type KeyProvider, KmsError, type SuiteName, TencentKms, TencentKmsV2 } from '../index.ts';
import { type Suite, sm4 } from '../sm4.ts';
import {
  createLocalKeyFile,
  localKmsFromKeyFile,
  MAX_HEADER_LENGTH,
  openFile,
  openInto,
  plaintextLength,
  sealFile,
  sealInto,
  sealToFile,
} from '../node.ts';
import { ConfigError, EXIT, EXIT_TABLE, failure, Interrupted, NotSealed, printable, safeJson, UsageError } from './cli-errors.ts';
import {
  type Destination,
  inputFile,
  inputPieces,
  noteTerminalInput,
  outputDestination,
  removeLeftoversOnHardExit,
  spool,
  stdoutDestination,
} from './cli-io.ts';
import { checkInterrupted, handleSignals, interruption, onInterrupt } from './cli-signals.ts';
import { startEmulator } from './emulator/index.ts';
import { type Progress, progress as progressLine } from './progress.ts';
import { REWRAP_HELP, rewrapCommand } from './cli-rewrap.ts';
import { VERIFY_HELP, verifyCommand } from './cli-verify.ts';
import { KEY_STORE_HELP, keyStoreCommand } from './cli-keystore.ts';

const DEFAULT_KEY_FILE = join('.kms-envelope', 'local.key');

const PROVIDER_HELP = `Key provider (flags, or the environment variables in brackets):
  --kms local|tencent|tencent-v2   default local [KMS_ENVELOPE_KMS]
  --key-file FILE                  LocalKms key file, default ./${DEFAULT_KEY_FILE} [KMS_ENVELOPE_KEY_FILE]
  --key-id ID                      the CMK for tencent/tencent-v2, needed to seal [KMS_ENVELOPE_KEY_ID]
  --region REGION                  e.g. ap-guangzhou (v2: gz, sh, bj) [TENCENTCLOUD_REGION]
  --endpoint URL                   e.g. the emulator's http://127.0.0.1:PORT (v2: .../v2/index.php) [KMS_ENVELOPE_ENDPOINT]
Tencent credentials come only from TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY and
TENCENTCLOUD_SESSION_TOKEN, never from flags.`;

const OUTPUT_HELP = `  -o, --output OUT        where to write (default: standard output). A new or regular file is
                          written atomically (a hidden temporary file, then a rename); a FIFO or a
                          device (/dev/null, a terminal) is written through, never replaced
  -f, --force             replace an existing regular file OUT`;

const USAGE = `Usage: kms-envelope <command> [options]

Commands:
  seal [FILE]      seal FILE (or standard input) to -o OUT (or standard output)
  open [FILE]      open a sealed FILE (or standard input) to -o OUT (or standard output)
  inspect FILE     print a sealed file's header as JSON (no KMS call, no cryptographic check)
  rewrap PATH...   move sealed files and trees to another master key (--to-key ID), headers only
  verify           check every key version in a key store (JSON file, PostgreSQL, SQLite) still decrypts
  key-store        export or import a key store (wrapped keys only); rotate, retire or shred a partition's keys
  keygen           create a LocalKms key file
  emulator         run a local Tencent Cloud KMS emulator

  --version        print the version

Run 'kms-envelope <command> --help' for a command's options.
${EXIT_TABLE}`;

const HELP: Record<string, string> = {
  rewrap: REWRAP_HELP(PROVIDER_HELP, EXIT_TABLE),
  verify: VERIFY_HELP(PROVIDER_HELP, EXIT_TABLE),
  'key-store': KEY_STORE_HELP(PROVIDER_HELP, EXIT_TABLE),
  seal: `Usage: kms-envelope seal [FILE] [-o OUT] [--context k=v ...] [--detached-context] [--force] [--quiet]

Seals FILE (default: standard input) under a fresh data key from the KMS, to OUT or standard
output. Ciphertext is never written to a terminal unless --force is given.

${OUTPUT_HELP}; with standard output a terminal, write there anyway
  --replace-link          replace OUT when it is a symbolic link (the link, never its target)
  --context k=v           encryption context pair; repeat for more
  --detached-context      keep the context out of the file (open then needs the same --context)
  --suite 256|128|sm4     Cobblestone-256 (default), Cobblestone-128, or SM4-GCM-SM3 (suite 03:
                          SM4-GCM with HKDF-SM3, for the Chinese commercial algorithms)
  -q, --quiet             no progress line

${PROVIDER_HELP}

${EXIT_TABLE}`,
  open: `Usage: kms-envelope open [FILE] [-o OUT] [--context k=v ...] [--force] [--quiet]

Opens a sealed FILE (default: standard input). Nothing is written unless the whole file
authenticates: a file OUT appears only complete; standard output (or a FIFO or device OUT) gets
data only after a first pass has checked every chunk. For that first pass the sealed input is
copied to a private temporary file (ciphertext only, in TMPDIR), so a source changed meanwhile
changes nothing.

${OUTPUT_HELP}
  --replace-link          replace OUT when it is a symbolic link (the link, never its target)
  --context k=v           the context it was sealed with (required for detached contexts)
  -q, --quiet             no progress line

${PROVIDER_HELP}

${EXIT_TABLE}`,
  inspect: `Usage: kms-envelope inspect FILE

Prints the header of a sealed file as JSON: version, suite, key provider, key id, context, sizes.
Makes no KMS call, decrypts nothing and does NO cryptographic check: the header may be forged and
the chunks tampered with; only 'open' authenticates. It compares the file's size with what the
format allows and exits 1 for a file that is truncated (or not a sealed file at all). A size that
fits does not prove the file whole (a file cut short can fit): "complete" is then null, unknown;
'open' finds a cut.

${EXIT_TABLE}`,
  keygen: `Usage: kms-envelope keygen [--key-file FILE] [--key-id ID]

Creates a LocalKms key file (mode 0600) with one fresh master key. Never overwrites a file.

  --key-file FILE   default ./${DEFAULT_KEY_FILE} [KMS_ENVELOPE_KEY_FILE]
  --key-id ID       default: a fingerprint of the new key`,
  emulator: `Usage: kms-envelope emulator [--host 127.0.0.1] [--port 0] [--secret-id ID --secret-key KEY] [--state FILE] [--key-alias NAME ...] [--cors]

Runs a local Tencent Cloud KMS emulator for development and tests; never use it for production data.
Prints "listening on http://HOST:PORT" as its first line, then serves until SIGINT or SIGTERM.
API 3.0 is at /, the legacy API at /v2/index.php.

  --host HOST        address to listen on (default 127.0.0.1)
  --port PORT        port (default 0: any free port)
  --secret-id ID     the accepted SecretId (with --secret-key; default: a generated pair, printed)
  --secret-key KEY   the accepted SecretKey
  --state FILE       keep keys in FILE (mode 0600, written atomically) so they survive a restart
  --key-alias NAME   create a key with this alias at start (or find it again with --state), and print its id;
                     repeat for more keys (one "key id: ID (alias NAME)" line each, in order)
  --cors             answer browsers' preflights and allow any origin (for pages that call it)
  -h, --help         this help`,
};

/** The version in package.json (beside dist/ and src/). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

const providerOptions = {
  kms: { type: 'string' },
  'key-file': { type: 'string' },
  'key-id': { type: 'string' },
  region: { type: 'string' },
  endpoint: { type: 'string' },
} as const;

type ProviderFlags = { kms?: string; 'key-file'?: string; 'key-id'?: string; region?: string; endpoint?: string };

/** A line added to a KMS error's message (a likely mistake in the flags), if any. */
let kmsHint: string | undefined;

// Printable, no spaces: a CMK id (a UUID) or an alias.
const KEY_ID = /^[\x21-\x7e]{1,256}$/;

/** What a sealed input's header says about its key: the provider and master key id, and where it came from. */
export interface SealedWith {
  provider: string;
  keyId: string;
  source: string;
}

const KINDS: ReadonlySet<string> = new Set(['local', 'tencent', 'tencent-v2']);

/** The provider kind: the header's (an open), unless the flags name another, which is refused naming the right --kms. */
function providerKind(given: string | undefined, sealedWith: SealedWith | undefined): string {
  if (!sealedWith || sealedWith.provider === given) return given ?? 'local';
  const { provider: kind, source } = sealedWith;
  if (!KINDS.has(kind)) {
    throw new ConfigError(`${source} names the key provider "${kind}" (key ${sealedWith.keyId}), which the command line does not have: open it with the library (local, tencent and tencent-v2 are the --kms kinds)`);
  }
  if (given !== undefined) throw new ConfigError(`${source} was sealed by the ${kind} key provider (key ${sealedWith.keyId}), not ${given}: open it with --kms ${kind}`);
  return kind;
}

/** LocalKms from its key file, with advice that fits the command: keygen only when sealing. */
function localProvider(keyFile: string, sealing: boolean, sealedWith: SealedWith | undefined): KeyProvider {
  if (!existsSync(keyFile)) {
    if (sealing) throw new ConfigError(`no LocalKms key file at ${keyFile}: create one with 'kms-envelope keygen'`);
    const wanted = sealedWith ? `${sealedWith.source} was sealed under LocalKms key "${sealedWith.keyId}"` : 'the master keys are in a key file';
    throw new ConfigError(`no LocalKms key file at ${keyFile}: ${wanted}; give the key file that holds it with --key-file FILE (or KMS_ENVELOPE_KEY_FILE)`);
  }
  let kms: ReturnType<typeof localKmsFromKeyFile>;
  try {
    kms = localKmsFromKeyFile(keyFile);
  } catch (error) {
    // The key file's mode, owner, folder or content: local configuration, not the KMS.
    throw new ConfigError((error as Error).message);
  }
  if (sealedWith && !kms.keyIds.includes(sealedWith.keyId)) {
    throw new ConfigError(
      `the key file ${keyFile} has no key "${sealedWith.keyId}", which ${sealedWith.source} was sealed under (it holds ${kms.keyIds.map((id) => `"${id}"`).join(', ')}): give the key file that does with --key-file FILE`,
    );
  }
  // A key the store or a file names that this key file lacks: the KMS error says which key, the hint which file.
  kmsHint = `hint: the LocalKms key file is ${keyFile} (keys ${kms.keyIds.map((id) => `"${id}"`).join(', ')}); give another with --key-file FILE`;
  return kms;
}

/**
 * The key provider the flags and the environment name; `sealing` needs a Tencent key id. For an
 * open, `sealedWith` (the input's header) chooses the provider when no --kms is given.
 */
function provider(flags: ProviderFlags, sealing: boolean, sealedWith?: SealedWith): KeyProvider {
  const env = process.env;
  const kind = providerKind(flags.kms ?? env.KMS_ENVELOPE_KMS, sealedWith);
  const keyId = flags['key-id'] ?? env.KMS_ENVELOPE_KEY_ID;
  const region = flags.region ?? env.TENCENTCLOUD_REGION;
  const endpoint = flags.endpoint ?? env.KMS_ENVELOPE_ENDPOINT;
  if (kind === 'local') return localProvider(flags['key-file'] ?? env.KMS_ENVELOPE_KEY_FILE ?? DEFAULT_KEY_FILE, sealing, sealedWith);
  if (kind !== 'tencent' && kind !== 'tencent-v2') throw new UsageError(`--kms must be local, tencent or tencent-v2, got "${kind}"`);
  if (!region) throw new UsageError(`--kms ${kind} needs --region (or TENCENTCLOUD_REGION)`);
  if (sealing && !keyId) throw new UsageError(`--kms ${kind} needs --key-id (or KMS_ENVELOPE_KEY_ID) to seal: the CMK that wraps the data key`);
  if (keyId !== undefined && !KEY_ID.test(keyId)) throw new UsageError(`--key-id must be a CMK id or alias (printable, no spaces), got "${keyId}"`);
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new UsageError(`--endpoint must be a URL, got "${endpoint}"`);
    }
    if (kind === 'tencent-v2' && !url.pathname.endsWith('/v2/index.php')) {
      kmsHint = `hint: the legacy API (--kms tencent-v2) is served at /v2/index.php: try --endpoint ${url.origin}/v2/index.php`;
    }
  }
  const options = { region, ...(keyId ? { keyId } : {}), ...(endpoint ? { endpoint } : {}) };
  try {
    return kind === 'tencent' ? new TencentKms(options) : new TencentKmsV2(options);
  } catch (error) {
    if (error instanceof KmsError) throw error;
    throw new UsageError((error as Error).message);
  }
}

function parseContext(pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs) return undefined;
  const context: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--context expects key=value, got "${pair}"`);
    const key = pair.slice(0, eq);
    if (key in context) throw new UsageError(`--context key "${key}" given twice`);
    context[key] = pair.slice(eq + 1);
  }
  return context;
}

/**
 * The progress line on stderr (work over a second, only on a terminal). Its cursor comes back
 * at once on a signal; its callback is where a signal stops the library's loops.
 */
function progress(quiet: boolean | undefined, label: string): Progress & { onProgress: (done: number, total: number) => void } {
  const enabled = !quiet && (process.stderr.isTTY || process.env.KMS_ENVELOPE_FORCE_PROGRESS === '1');
  const bar = progressLine(process.stderr, enabled, label);
  const unregister = onInterrupt(() => bar.stop(), true);
  return {
    ...bar,
    stop() {
      unregister();
      bar.stop();
    },
    onProgress(done, total) {
      checkInterrupted();
      bar.update(done, total);
    },
  };
}

/** Output for `-o OUT` or standard output, checked before any work. */
async function destination(output: string | undefined, flags: { force?: boolean; 'replace-link'?: boolean }): Promise<Destination> {
  return output === undefined ? stdoutDestination() : outputDestination(output, flags);
}

async function seal(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...providerOptions,
      output: { type: 'string', short: 'o' },
      context: { type: 'string', multiple: true },
      'detached-context': { type: 'boolean' },
      suite: { type: 'string' },
      force: { type: 'boolean', short: 'f' },
      'replace-link': { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return help('seal');
  if (positionals.length > 1) throw new UsageError('seal takes at most one FILE');
  if (values.suite !== undefined && values.suite !== '256' && values.suite !== '128' && values.suite !== 'sm4') {
    throw new UsageError(`--suite must be 256, 128 or sm4, got "${values.suite}"`);
  }
  const suite: SuiteName | Suite = values.suite === 'sm4' ? sm4 : `cobblestone-${values.suite === '128' ? '128' : '256'}`;
  const context = parseContext(values.context);
  const input = await inputFile(positionals[0]);
  const kms = provider(values, true);
  const out = await destination(values.output, values);
  try {
    if (out.kind === 'stream' && out.terminal && !values.force) {
      throw new ConfigError(`refusing to write ciphertext to a terminal (${out.name}): use -o FILE or a pipe, or --force`);
    }
    const envelope = createEnvelope({ kms, suite });
    const options = { ...(context ? { context } : {}), detachedContext: values['detached-context'] ?? false };
    const bar = progress(values.quiet, 'sealing');
    noteTerminalInput(input);
    try {
      if (out.kind === 'file') {
        const fileOptions = { ...options, overwrite: out.overwrite, onProgress: bar.onProgress };
        const unregister = removeLeftoversOnHardExit(out.path);
        try {
          if (input.regular) await sealFile(envelope, input.path!, out.path, fileOptions);
          else await sealToFile(envelope, inputPieces(input), out.path, fileOptions);
        } finally {
          unregister();
        }
      } else {
        await sealInto(envelope, inputPieces(input), out.sink, { ...options, onProgress: bar.onProgress }, input.size);
      }
    } finally {
      bar.stop();
    }
  } finally {
    if (out.kind === 'stream') await out.close();
  }
  return EXIT.ok;
}

async function open(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...providerOptions,
      output: { type: 'string', short: 'o' },
      context: { type: 'string', multiple: true },
      force: { type: 'boolean', short: 'f' },
      'replace-link': { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return help('open');
  if (positionals.length > 1) throw new UsageError('open takes at most one FILE');
  const context = parseContext(values.context);
  const input = await inputFile(positionals[0]);
  if (input.regular && input.size === 0) throw new NotSealed(`empty input: ${input.path} is empty, not a sealed message`);
  // The provider comes from the header: read it (and check the key file) before touching the output.
  const envelopeFor = async (path: string, source: string) => createEnvelope({ kms: provider(values, false, await sealedWith(path, source)), suites: [sm4] });
  const early = input.regular ? await envelopeFor(input.path!, input.path!) : undefined;
  const out = await destination(values.output, values);
  const bar = progress(values.quiet, 'opening');
  try {
    noteTerminalInput(input);
    const options = context ? { context } : {};
    if (out.kind === 'file' && early) {
      // One pass into a temporary file that is renamed only once every chunk authenticated.
      await openToFile(early, input.path!, out, options, bar);
    } else {
      // Standard input, a FIFO or a device as input, or a stream as output: spool the ciphertext first.
      bar.phase('reading');
      const spooled = await spool(inputPieces(input), (done) => bar.onProgress(done, input.size));
      try {
        if (spooled.size === 0) throw new NotSealed('empty input: nothing to open');
        const envelope = early ?? (await envelopeFor(spooled.path, 'the input'));
        if (out.kind === 'file') await openToFile(envelope, spooled.path, out, options, bar);
        else await openToStream(envelope, spooled.path, spooled.size, out, options, bar);
      } finally {
        await spooled.cleanup();
      }
    }
  } finally {
    bar.stop();
    if (out.kind === 'stream') await out.close();
  }
  return EXIT.ok;
}

type Bar = ReturnType<typeof progress>;

/** The provider and key id a sealed file's header names; undefined when the header does not parse (open then says why). */
async function sealedWith(path: string, source: string): Promise<SealedWith | undefined> {
  const handle = await openHandle(path, 'r');
  try {
    const head = new Uint8Array(MAX_HEADER_LENGTH);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const info = inspect(head.subarray(0, bytesRead));
    return { provider: info.provider, keyId: info.keyId, source };
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}

async function openToFile(envelope: Envelope, src: string, out: Destination & { kind: 'file' }, options: { context?: Record<string, string> }, bar: Bar): Promise<void> {
  bar.phase('opening');
  const unregister = removeLeftoversOnHardExit(out.path);
  try {
    await openFile(envelope, src, out.path, { ...options, overwrite: out.overwrite, onProgress: bar.onProgress });
  } finally {
    unregister();
  }
}

/** Two passes over the private spool: verifying (writes nothing), then writing; each counted over its own bytes. */
async function openToStream(
  envelope: Envelope,
  spooled: string,
  size: number,
  out: Destination & { kind: 'stream' },
  options: { context?: Record<string, string> },
  bar: Bar,
): Promise<void> {
  bar.phase('verifying');
  let writing = false;
  const sink = (bytes: Uint8Array | readonly Uint8Array[]): Promise<void> => {
    if (!writing) {
      writing = true; // only the second pass writes
      bar.phase('writing');
    }
    return out.sink(bytes);
  };
  await openInto(envelope, spooled, sink, {
    ...options,
    verifyFirst: true,
    // The library counts both passes over twice the size; each phase here counts its own pass.
    onProgress: (done) => bar.onProgress(writing && done > size ? done - size : Math.min(done, size), size),
  });
}

/** inspect FILE: the header as JSON and what the size says; nothing is authenticated. */
async function inspectCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) return help('inspect');
  if (positionals.length !== 1) throw new UsageError('inspect takes one FILE');
  const path = positionals[0]!;
  const handle = await openHandle(path, 'r');
  let info: ReturnType<typeof inspect>;
  let size: number;
  let plaintext: number | undefined;
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new ConfigError(`${path} is not a regular file`);
    size = stats.size;
    if (size === 0) throw new NotSealed(`empty input: ${path} is empty, not a sealed message`);
    const head = new Uint8Array(Math.min(size, MAX_HEADER_LENGTH));
    await handle.read(head, 0, head.length, 0);
    try {
      info = inspect(head);
    } catch (error) {
      if ((error as Error).name === 'HeaderTruncatedError' && size < MAX_HEADER_LENGTH) {
        throw new NotSealed(`${path} is truncated: its ${size} bytes end inside the header (${(error as Error).message}); or it is not a sealed file`);
      }
      throw error;
    }
    // inspect() saw only the header bytes (or the whole of a small file): the payload's length is the file's.
    if (size <= head.length) plaintext = info.plaintextLength ?? undefined;
    else if ((info as { compact?: boolean }).compact) plaintext = inspect(await readFile(path)).plaintextLength ?? undefined;
    else plaintext = plaintextLength(size - info.headerLength);
  } finally {
    await handle.close();
  }
  // A size the format allows says nothing of completeness: a file cut at any point past the first
  // chunk's tag has one (the last chunk's marker is inside its encryption). Only open knows.
  const sizeFits = plaintext !== undefined;
  console.log(
    safeJson({
      ...info,
      size,
      plaintextLength: plaintext ?? null,
      sizeFits,
      complete: sizeFits ? null : false,
      checked:
        "size only: complete is null (unknown) when the size fits, since a file cut short can fit too; no cryptographic check (the header may be forged, the chunks tampered with); 'kms-envelope open' authenticates and finds a cut",
    }),
  );
  if (!sizeFits) {
    throw new NotSealed(
      `${path} is truncated: ${size - info.headerLength} bytes after the header cannot end a sealed message (or the file is damaged); inspect does no cryptographic check`,
    );
  }
  return EXIT.ok;
}

async function keygen(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'key-file': { type: 'string' }, 'key-id': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return help('keygen');
  const keyFile = values['key-file'] ?? process.env.KMS_ENVELOPE_KEY_FILE ?? DEFAULT_KEY_FILE;
  if (existsSync(keyFile)) throw new ConfigError(`${keyFile} exists: a key file is never overwritten`);
  let keyId: string;
  try {
    keyId = createLocalKeyFile(keyFile, values['key-id'] ? { keyId: values['key-id'] } : {});
  } catch (error) {
    if (error instanceof RangeError || error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
  console.log(`created ${printable(keyFile)} (mode 0600) with key ${printable(keyId)}; keep it safe: messages sealed with it open only with it`);
  return EXIT.ok;
}

async function emulator(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      'secret-id': { type: 'string' },
      'secret-key': { type: 'string' },
      state: { type: 'string' },
      'key-alias': { type: 'string', multiple: true },
      cors: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return help('emulator');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0 to 65535, got ${values.port}`);
  if (!values['secret-id'] !== !values['secret-key']) throw new UsageError('--secret-id and --secret-key go together');
  const aliases = values['key-alias'] ?? [];
  if (new Set(aliases).size !== aliases.length) throw new UsageError('--key-alias given twice with the same name: one key per alias');
  // Listen for the stop signals before announcing the address, so an early signal is not lost.
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  const running = await startEmulator({
    host: values.host,
    port,
    ...(values['secret-id'] ? { credentials: [{ secretId: values['secret-id'], secretKey: values['secret-key']! }] } : {}),
    ...(values.state ? { statePath: values.state } : {}),
    ...(values.cors ? { cors: true } : {}),
  });
  console.log(`listening on ${running.url}`);
  if (!values['secret-id']) {
    // A generated pair for a local development emulator: printing it is the point.
    console.log(`secret id: ${running.credentials[0]!.secretId}`);
    console.log(`secret key: ${running.credentials[0]!.secretKey}`);
  }
  // One line per alias, in the order given: `key id: ID`, and the alias after it when there are several.
  for (const alias of aliases) console.log(`key id: ${running.createKey(alias)}${aliases.length > 1 ? ` (alias ${printable(alias)})` : ''}`);
  // The hint goes to stderr: stdout keeps its fixed lines for scripts that read them.
  if (aliases.length === 0) console.error('no key made: pass --key-alias NAME to make one at start, or call CreateKey (TencentKms.createKey())');
  await stopped;
  await running.close();
  return EXIT.ok;
}

function help(command: string): number {
  console.log(HELP[command]);
  return EXIT.ok;
}

async function run(command: string | undefined, rest: string[]): Promise<number> {
  switch (command) {
    case 'seal':
      handleSignals();
      return await seal(rest);
    case 'open':
      handleSignals();
      return await open(rest);
    case 'inspect':
      return await inspectCommand(rest);
    case 'rewrap':
      handleSignals();
      return await rewrapCommand(rest, { provider, parseContext, progress, providerOptions, help: () => help('rewrap') });
    case 'verify':
      return await verifyCommand(rest, { provider, providerOptions, help: () => help('verify') });
    case 'key-store':
      return await keyStoreCommand(rest, { provider, providerOptions, help: () => help('key-store') });
    case 'keygen':
      return await keygen(rest);
    case 'emulator':
      return await emulator(rest);
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return EXIT.ok;
    case '--version':
    case '-V':
      console.log(`kms-envelope ${version()}`);
      return EXIT.ok;
    case undefined:
      throw new UsageError('a command is needed: seal, open, inspect, rewrap, verify, key-store, keygen or emulator');
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const known = command !== undefined && command in HELP;
  try {
    return await run(command, rest);
  } catch (error) {
    // Whatever the work threw on its way out, a signal decides the exit code.
    const reason = interruption.aborted ? (interruption.reason as Interrupted) : error;
    const { exit, message } = failure(reason, known ? command : undefined, kmsHint);
    if (message) process.stderr.write(`kms-envelope: ${message}\n`);
    return exit;
  }
}

// After a signal, a read still blocked in a worker thread (a FIFO) keeps the process alive until
// the signal's grace ends it (cli-signals.ts); otherwise it exits now, with this code.
process.exitCode = await main(process.argv.slice(2));
