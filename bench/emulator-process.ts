/** The emulator in a process of its own (the CLI), so benchmarks do not share its event loop. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface EmulatorProcess {
  url: string;
  credentials: { secretId: string; secretKey: string };
  keyId: string;
  stop: () => void;
}

export async function spawnEmulator(): Promise<EmulatorProcess> {
  const cli = new URL('../../dist/tools/cli.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [cli, 'emulator', '--key-alias', 'bench'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (prefix: string): Promise<string> => ((await lines.next()).value as string).replace(prefix, '');
  const url = await next('listening on ');
  const secretId = await next('secret id: ');
  const secretKey = await next('secret key: ');
  const keyId = await next('key id: ');
  return { url, credentials: { secretId, secretKey }, keyId, stop: () => child.kill('SIGTERM') };
}
