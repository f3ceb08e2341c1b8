/**
 * Workers-runtime smoke test: Cloudflare's workerd (the `@cloudflare/workerd-linux-64`
 * devDependency's binary) serves test/runtimes/worker.mjs, bundled from the built package with
 * esbuild as a Workers bundler would, on 127.0.0.1; one request runs the smoke checks
 * (test/runtimes/smoke.mjs): a record, a message, a 16 MiB stream, the vectors made on Node.
 * No nodejs_compat flag, so the package meets no Node API. Run by `npm run test:runtimes` and
 * .ci/run; needs dist/ (npm run build).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SMOKE_CHECKS, type SmokeResult } from './expected.ts';

const WORKERD = fileURLToPath(new URL('../../node_modules/@cloudflare/workerd-linux-64/bin/workerd', import.meta.url));
/** The backend a Worker gets unasked: crypto.subtle, with no node:crypto beside it. */
const EXPECTED_BACKEND = 'webcrypto';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

function config(port: number): string {
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .smoke) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const smoke :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-09-01",
);
`;
}

describe('workerd', () => {
  let dir: string;
  let workerd: ChildProcess | undefined;
  let log = '';
  let result: SmokeResult;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kmse-workerd-'));
    const esbuild = await import('esbuild');
    await esbuild.build({
      entryPoints: [fileURLToPath(new URL('./worker.mjs', import.meta.url))],
      bundle: true,
      platform: 'browser',
      conditions: ['workerd', 'worker', 'browser'],
      format: 'esm',
      target: 'es2022',
      outfile: join(dir, 'worker.js'),
      logLevel: 'silent',
    });
    const port = await freePort();
    writeFileSync(join(dir, 'config.capnp'), config(port));
    workerd = spawn(WORKERD, ['serve', join(dir, 'config.capnp')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    workerd.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    workerd.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<never>((_, fail) => workerd!.once('exit', (code) => fail(new Error(`workerd exited (${code}): ${log}`))));
    // Poll until workerd listens (it prints nothing when it is ready), then ask for the checks.
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await Promise.race([fetch(`http://127.0.0.1:${port}/`), exited]);
        const text = await response.text();
        if (!response.ok) throw new Error(`HTTP ${response.status}: ${text}\n${log}`);
        result = JSON.parse(text) as SmokeResult;
        return;
      } catch (e) {
        if (attempt >= 200 || !(e instanceof TypeError)) throw e;
        await new Promise((ok) => setTimeout(ok, 100));
      }
    }
  }, 180_000);

  afterAll(() => {
    workerd?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`runs the package in workerd with the ${EXPECTED_BACKEND} backend (no node:crypto there)`, () => {
    expect(result.runtime).toBe('workerd');
    expect(result.backend).toBe(EXPECTED_BACKEND);
    expect(result.checks.map((c) => c.name)).toEqual(SMOKE_CHECKS);
  });

  it.each(SMOKE_CHECKS)('%s', (name) => {
    const check = result.checks.find((c) => c.name === name)!;
    expect(check.detail, name).toBeTypeOf('string');
    expect(check.ok, check.detail).toBe(true);
  });
});
