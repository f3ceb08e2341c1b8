/** The `kms-envelope emulator` command's help and start-up (issue: every option listed; how to make a key). */
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';

const CLI = new URL('../../dist/tools/cli.js', import.meta.url).pathname;

describe('kms-envelope emulator (the command)', () => {
  it('--help lists every option the command takes', () => {
    const help = spawnSync(process.execPath, [CLI, 'emulator', '--help'], { encoding: 'utf8' }).stdout;
    for (const option of ['--host', '--port', '--secret-id', '--secret-key', '--state', '--key-alias', '--cors', '--help']) expect(help).toContain(option);
  });

  it('without --key-alias says how to make a key; with --cors answers a preflight', async () => {
    const child = spawn(process.execPath, [CLI, 'emulator', '--cors'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const url = ((await lines.next()).value as string).replace('listening on ', '');
      await expect.poll(() => stderr, { timeout: 10_000 }).toContain('--key-alias NAME');
      const preflight = await fetch(url, { method: 'OPTIONS', headers: { origin: 'http://127.0.0.1:1', 'access-control-request-method': 'POST' } });
      expect(preflight.headers.get('access-control-allow-origin')).toBeTruthy();
    } finally {
      child.kill('SIGTERM');
    }
  });
});
