#!/usr/bin/env node
/**
 * The `kms-envelope` command. Exit codes: 0 ok, 1 decryption or integrity failure, 2 usage,
 * 3 KMS error.
 */
import { parseArgs } from 'node:util';
import { startEmulator } from './emulator.ts';

const USAGE = `Usage: kms-envelope <command> [options]

Commands:
  emulator   run a local Tencent Cloud KMS emulator (API 3.0 at /, legacy API at /v2/index.php)

Run 'kms-envelope <command> --help' for a command's options.`;

const EMULATOR_USAGE = `Usage: kms-envelope emulator [--host 127.0.0.1] [--port 0] [--secret-id ID --secret-key KEY] [--state FILE]

Runs a local KMS emulator for development and tests; never use it for production data.
Prints "listening on http://HOST:PORT" as its first line, then serves until SIGINT or SIGTERM.

Options:
  --host HOST        address to listen on (default 127.0.0.1)
  --port PORT        port (default 0: any free port)
  --secret-id ID     the accepted SecretId (with --secret-key; default: a generated pair, printed)
  --secret-key KEY   the accepted SecretKey
  --state FILE       keep keys in FILE (mode 0600, written atomically) so they survive a restart
  --key-alias NAME   create a key with this alias at start, and print its id
  -h, --help         this help`;

class UsageError extends Error {}

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
    strict: true,
  });
  if (values.help) {
    console.log(EMULATOR_USAGE);
    return 0;
  }
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
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'emulator':
        return await emulator(rest);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`kms-envelope: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`kms-envelope: ${(error as Error).message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
