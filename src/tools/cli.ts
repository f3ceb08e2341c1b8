#!/usr/bin/env node
/**
 * The `kms-envelope` command. Exit codes: 0 ok, 1 decryption or integrity failure, 2 usage
 * (bad flags, missing or existing files), 3 KMS error. Credentials come from the environment only.
 */
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, open as openHandle, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createEnvelope, inspect, isEnvelopeError, type KeyProvider, type SuiteName, TencentKms, TencentKmsV2 } from '../index.ts';
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
import { startEmulator } from './emulator/index.ts';
import { progress as progressLine } from './progress.ts';

const EXIT = { ok: 0, integrity: 1, usage: 2, kms: 3 } as const;
const DEFAULT_KEY_FILE = join('.kms-envelope', 'local.key');

const PROVIDER_HELP = `Key provider (flags, or the environment variables in brackets):
  --kms local|tencent|tencent-v2   default local [KMS_ENVELOPE_KMS]
  --key-file FILE                  LocalKms key file, default ./${DEFAULT_KEY_FILE} [KMS_ENVELOPE_KEY_FILE]
  --key-id ID                      the CMK for tencent/tencent-v2 [KMS_ENVELOPE_KEY_ID]
  --region REGION                  e.g. ap-guangzhou (v2: gz, sh, bj) [TENCENTCLOUD_REGION]
  --endpoint URL                   e.g. the emulator's http://127.0.0.1:PORT [KMS_ENVELOPE_ENDPOINT]
Tencent credentials come only from TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY and
TENCENTCLOUD_SESSION_TOKEN, never from flags.`;

const USAGE = `Usage: kms-envelope <command> [options]

Commands:
  seal [FILE]      seal FILE (or standard input) to -o OUT (or standard output)
  open [FILE]      open a sealed FILE (or standard input) to -o OUT (or standard output)
  inspect FILE     print a sealed file's header as JSON (no KMS call)
  keygen           create a LocalKms key file
  emulator         run a local Tencent Cloud KMS emulator

Run 'kms-envelope <command> --help' for a command's options.
Exit codes: 0 ok, 1 decryption or integrity failure, 2 usage, 3 KMS error.`;

const HELP: Record<string, string> = {
  seal: `Usage: kms-envelope seal [FILE] [-o OUT] [--context k=v ...] [--detached-context] [--force] [--quiet]

Seals FILE (default: standard input) under a fresh data key from the KMS. Writes OUT atomically
(a temporary file, then a rename), or standard output.

  -o, --output OUT        where to write (default: standard output)
  --context k=v           encryption context pair; repeat for more
  --detached-context      keep the context out of the file (open then needs the same --context)
  --suite 256|128         Cobblestone-256 (default) or Cobblestone-128
  -f, --force             replace an existing OUT
  -q, --quiet             no progress bar

${PROVIDER_HELP}`,
  open: `Usage: kms-envelope open [FILE] [-o OUT] [--context k=v ...] [--force] [--quiet]

Opens a sealed FILE (default: standard input). Nothing is written unless the whole file
authenticates: OUT appears only complete; standard output gets data only after a first pass
has checked every chunk.

  -o, --output OUT        where to write (default: standard output)
  --context k=v           the context it was sealed with (required for detached contexts)
  -f, --force             replace an existing OUT
  -q, --quiet             no progress bar

${PROVIDER_HELP}`,
  inspect: `Usage: kms-envelope inspect FILE

Prints the header of a sealed file as JSON: version, suite, key provider, key id, context, sizes.
Makes no KMS call and decrypts nothing.`,
  keygen: `Usage: kms-envelope keygen [--key-file FILE] [--key-id ID]

Creates a LocalKms key file (mode 0600) with one fresh master key. Never overwrites a file.

  --key-file FILE   default ./${DEFAULT_KEY_FILE} [KMS_ENVELOPE_KEY_FILE]
  --key-id ID       default: a fingerprint of the new key`,
  emulator: `Usage: kms-envelope emulator [--host 127.0.0.1] [--port 0] [--secret-id ID --secret-key KEY] [--state FILE]

Runs a local Tencent Cloud KMS emulator for development and tests; never use it for production data.
Prints "listening on http://HOST:PORT" as its first line, then serves until SIGINT or SIGTERM.
API 3.0 is at /, the legacy API at /v2/index.php.

  --host HOST        address to listen on (default 127.0.0.1)
  --port PORT        port (default 0: any free port)
  --secret-id ID     the accepted SecretId (with --secret-key; default: a generated pair, printed)
  --secret-key KEY   the accepted SecretKey
  --state FILE       keep keys in FILE (mode 0600, written atomically) so they survive a restart
  --key-alias NAME   create a key with this alias at start, and print its id`,
};

class UsageError extends Error {}

const providerOptions = {
  kms: { type: 'string' },
  'key-file': { type: 'string' },
  'key-id': { type: 'string' },
  region: { type: 'string' },
  endpoint: { type: 'string' },
} as const;

type ProviderFlags = { kms?: string; 'key-file'?: string; 'key-id'?: string; region?: string; endpoint?: string };

function provider(flags: ProviderFlags): KeyProvider {
  const env = process.env;
  const kind = flags.kms ?? env.KMS_ENVELOPE_KMS ?? 'local';
  const keyId = flags['key-id'] ?? env.KMS_ENVELOPE_KEY_ID;
  const region = flags.region ?? env.TENCENTCLOUD_REGION;
  const endpoint = flags.endpoint ?? env.KMS_ENVELOPE_ENDPOINT;
  switch (kind) {
    case 'local': {
      const keyFile = flags['key-file'] ?? env.KMS_ENVELOPE_KEY_FILE ?? DEFAULT_KEY_FILE;
      if (!existsSync(keyFile)) throw new UsageError(`no LocalKms key file at ${keyFile}: create one with 'kms-envelope keygen'`);
      return localKmsFromKeyFile(keyFile);
    }
    case 'tencent':
      if (!region) throw new UsageError('--kms tencent needs --region (or TENCENTCLOUD_REGION)');
      return new TencentKms({ region, ...(keyId ? { keyId } : {}), ...(endpoint ? { endpoint } : {}) });
    case 'tencent-v2':
      if (!region) throw new UsageError('--kms tencent-v2 needs --region (or TENCENTCLOUD_REGION)');
      return new TencentKmsV2({ region, ...(keyId ? { keyId } : {}), ...(endpoint ? { endpoint } : {}) });
    default:
      throw new UsageError(`--kms must be local, tencent or tencent-v2, got "${kind}"`);
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

/** A progress line on stderr for work that lasts more than a second, only on a terminal. */
function progress(quiet: boolean | undefined, label: string): ReturnType<typeof progressLine> {
  const enabled = !quiet && (process.stderr.isTTY || process.env.KMS_ENVELOPE_FORCE_PROGRESS === '1');
  return progressLine(process.stderr, enabled, label);
}

/** Writes to stdout, honouring back-pressure. */
const stdoutSink = (bytes: Uint8Array | readonly Uint8Array[]): Promise<void> =>
  new Promise((resolve, reject) => {
    const data = bytes instanceof Uint8Array ? bytes : Buffer.concat(bytes as Uint8Array[]);
    process.stdout.write(data, (error) => (error ? reject(error) : resolve()));
  });

/** Copies standard input to a private temporary file (ciphertext only), for a two-pass open. */
async function spoolStdin(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'kms-envelope-'));
  const path = join(dir, 'input.kmse');
  await pipeline(process.stdin, createWriteStream(path, { mode: 0o600 }));
  return { path, cleanup: () => rm(dir, { recursive: true, force: true }) };
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
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return help('seal');
  if (positionals.length > 1) throw new UsageError('seal takes at most one FILE');
  if (values.suite !== undefined && values.suite !== '256' && values.suite !== '128') throw new UsageError(`--suite must be 256 or 128, got "${values.suite}"`);
  const suite = `cobblestone-${values.suite ?? '256'}` as SuiteName;
  const context = parseContext(values.context);
  const envelope = createEnvelope({ kms: provider(values), suite });
  const options = { ...(context ? { context } : {}), detachedContext: values['detached-context'] ?? false, overwrite: values.force ?? false };
  const bar = progress(values.quiet, 'sealing');
  try {
    const [input] = positionals;
    if (values.output) {
      if (input) await sealFile(envelope, input, values.output, { ...options, onProgress: bar.update });
      else await sealToFile(envelope, process.stdin, values.output, { ...options, onProgress: bar.update });
    } else {
      const pieces = input ? createReadStream(input, { highWaterMark: 1 << 20 }) : process.stdin;
      const size = input ? (await stat(input)).size : Number.NaN;
      await sealInto(envelope, pieces as AsyncIterable<Uint8Array>, stdoutSink, { ...options, onProgress: bar.update }, size);
    }
  } finally {
    bar.stop();
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
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return help('open');
  if (positionals.length > 1) throw new UsageError('open takes at most one FILE');
  const context = parseContext(values.context);
  const envelope = createEnvelope({ kms: provider(values) });
  const options = { ...(context ? { context } : {}), overwrite: values.force ?? false };
  const bar = progress(values.quiet, 'opening');
  // Standard input is spooled (it is ciphertext) so the whole message can be checked before output.
  const spooled = positionals[0] === undefined ? await spoolStdin() : undefined;
  const input = positionals[0] ?? spooled!.path;
  try {
    if (values.output) await openFile(envelope, input, values.output, { ...options, onProgress: bar.update });
    else await openInto(envelope, input, stdoutSink, { ...options, onProgress: bar.update, verifyFirst: true });
  } finally {
    bar.stop();
    await spooled?.cleanup();
  }
  return EXIT.ok;
}

async function inspectCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) return help('inspect');
  if (positionals.length !== 1) throw new UsageError('inspect takes one FILE');
  const handle = await openHandle(positionals[0]!, 'r');
  try {
    const { size } = await handle.stat();
    const head = new Uint8Array(Math.min(size, MAX_HEADER_LENGTH));
    await handle.read(head, 0, head.length, 0);
    const info = inspect(head);
    // inspect() saw only the header bytes: the sizes come from the whole file.
    const plaintext = plaintextLength(size - info.headerLength);
    console.log(JSON.stringify({ ...info, size, plaintextLength: plaintext ?? null }, null, 2));
  } finally {
    await handle.close();
  }
  return EXIT.ok;
}

async function keygen(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'key-file': { type: 'string' }, 'key-id': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return help('keygen');
  const keyFile = values['key-file'] ?? process.env.KMS_ENVELOPE_KEY_FILE ?? DEFAULT_KEY_FILE;
  if (existsSync(keyFile)) throw new UsageError(`${keyFile} exists: a key file is never overwritten`);
  const keyId = createLocalKeyFile(keyFile, values['key-id'] ? { keyId: values['key-id'] } : {});
  console.log(`created ${keyFile} (mode 0600) with key ${keyId}; keep it safe: messages sealed with it open only with it`);
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
      'key-alias': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return help('emulator');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0 to 65535, got ${values.port}`);
  if (!values['secret-id'] !== !values['secret-key']) throw new UsageError('--secret-id and --secret-key go together');
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
  });
  console.log(`listening on ${running.url}`);
  if (!values['secret-id']) {
    // A generated pair for a local development emulator: printing it is the point.
    console.log(`secret id: ${running.credentials[0]!.secretId}`);
    console.log(`secret key: ${running.credentials[0]!.secretKey}`);
  }
  if (values['key-alias']) console.log(`key id: ${running.createKey(values['key-alias'])}`);
  await stopped;
  await running.close();
  return EXIT.ok;
}

function help(command: string): number {
  console.log(HELP[command]);
  return EXIT.ok;
}

function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) return EXIT.usage;
  if (isEnvelopeError(error)) return error.code === 'ERR_KMS' ? EXIT.kms : EXIT.integrity;
  if (code === 'ENOENT' || code === 'EEXIST' || code === 'EISDIR' || code === 'EACCES') return EXIT.usage;
  return EXIT.integrity;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'seal':
        return await seal(rest);
      case 'open':
        return await open(rest);
      case 'inspect':
        return await inspectCommand(rest);
      case 'keygen':
        return await keygen(rest);
      case 'emulator':
        return await emulator(rest);
      case '-h':
      case '--help':
      case 'help':
        console.log(USAGE);
        return EXIT.ok;
      case undefined:
        console.error(USAGE);
        return EXIT.usage;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    const exit = exitCodeOf(error);
    const message = ((error as Error)?.message ?? String(error)).replace('pass { overwrite: true } to replace it', 'use --force to replace it');
    console.error(`kms-envelope: ${message}${exit === EXIT.usage && error instanceof UsageError ? `\n\n${USAGE}` : ''}`);
    return exit;
  }
}

process.exitCode = await main(process.argv.slice(2));
