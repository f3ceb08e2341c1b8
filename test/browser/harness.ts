/**
 * The Node side of the Chromium suite: finds Debian's Chromium, bundles test/browser/page.ts from
 * the built package with esbuild (platform browser, as a user's bundler would take dist/), serves
 * the page and the vectors on 127.0.0.1, and launches Chromium headless through playwright-core
 * (no browser download: the executable is the system's).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import type { PageTests } from './page.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = join(ROOT, 'test/vectors');

/** Where Chromium is: KMS_ENVELOPE_CHROMIUM, else Debian's /usr/bin/chromium. */
export const CHROMIUM = process.env.KMS_ENVELOPE_CHROMIUM ?? '/usr/bin/chromium';

/** Why the suite cannot run here, or undefined when it can. */
export function chromiumMissing(): string | undefined {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium, or set KMS_ENVELOPE_CHROMIUM)`;
  if (!existsSync(join(ROOT, 'dist/index.js'))) return 'no dist/index.js: build the package first (npm run build)';
  return undefined;
}

// Headless, and quiet on a machine whose network is closed: without the background-networking
// flags Chromium keeps trying to reach Google's hosts.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** test/browser/page.ts bundled for the browser, with every import of src/ taken from dist/. */
export async function bundlePage(): Promise<string> {
  const esbuild = await import('esbuild');
  const src = join(ROOT, 'src') + sep;
  const result = await esbuild.build({
    entryPoints: [join(ROOT, 'test/browser/page.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    plugins: [
      {
        name: 'built-package',
        setup(build) {
          // The page imports src/ for its types; the bundle takes the built files, as a user's would.
          build.onResolve({ filter: /\.ts$/ }, (args) => {
            const path = resolve(args.resolveDir, args.path);
            if (!path.startsWith(src)) return undefined;
            return { path: join(ROOT, 'dist', relative(src, path)).replace(/\.ts$/, '.js') };
          });
        },
      },
    ],
  });
  return result.outputFiles[0]!.text;
}

/** The Wycheproof chunked vectors with their ciphertexts inflated (the files hold them deflated). */
function inflatedChunked(file: string): string {
  const vectors = JSON.parse(readFileSync(join(VECTORS, 'wycheproof', file), 'utf8')) as { testGroups: { tests: { ct: string }[] }[] };
  const cases = vectors.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, ct: inflateSync(Buffer.from(t.ct, 'hex')).toString('hex') })));
  return JSON.stringify(cases);
}

export interface PageServer {
  origin: string;
  close(): Promise<void>;
}

/** Serves the page, its bundle and test/vectors on 127.0.0.1. */
export async function startPageServer(bundle: string): Promise<PageServer> {
  const server: Server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://127.0.0.1').pathname);
    const send = (status: number, type: string, body: string | Buffer): void => {
      response.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' }).end(body);
    };
    if (path === '/') return send(200, 'text/html', '<!doctype html><meta charset="utf-8"><title>kms-envelope</title><script type="module" src="/page.js"></script>');
    if (path === '/page.js') return send(200, 'text/javascript', bundle);
    if (path === '/favicon.ico') return send(204, 'image/x-icon', '');
    const inflated = /^\/vectors\/inflated\/([\w.]+\.json)$/.exec(path);
    if (inflated) return send(200, 'application/json', inflatedChunked(inflated[1]!));
    const vector = /^\/vectors\/((?:wycheproof\/)?[\w.-]+\.json)$/.exec(path);
    if (vector && existsSync(join(VECTORS, vector[1]!))) return send(200, 'application/json', readFileSync(join(VECTORS, vector[1]!)));
    return send(404, 'text/plain', 'not found');
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

export interface PageSession {
  browser: Browser;
  page: Page;
  /** Calls one of page.ts's checks in the page and hands back what it returned. */
  call<K extends keyof PageTests>(name: K, ...args: Parameters<PageTests[K]>): Promise<Awaited<ReturnType<PageTests[K]>>>;
  /**
   * Waits for `running` (a call), measuring the page's live heap each time the page pauses for it
   * (page.ts, pauseForNode): MiB of JS objects and ArrayBuffer memory after a full collection, from
   * the DevTools protocol.
   */
  heapAtPauses<T>(running: Promise<T>): Promise<{ result: T; heapMiB: number[] }>;
  /** Errors the page threw or logged, for the failure messages. */
  errors: string[];
  close(): Promise<void>;
}

/** Chromium headless, on a fresh profile, with the page at `origin` loaded. */
export async function openPage(origin: string): Promise<PageSession> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => 'kmsEnvelopeTests' in globalThis, undefined, { timeout: 30_000 });
  return {
    browser,
    page,
    errors,
    call: (name, ...args) =>
      page.evaluate(
        ([n, a]) => (globalThis as unknown as { kmsEnvelopeTests: Record<string, (...x: unknown[]) => unknown> }).kmsEnvelopeTests[n]!(...a),
        [name, args] as [string, unknown[]],
      ) as never,
    async heapAtPauses(running) {
      const cdp = await page.context().newCDPSession(page);
      const heapMiB: number[] = [];
      let settled = false;
      const watched = running.finally(() => (settled = true));
      while (!settled) {
        const paused = await page.evaluate(() => (globalThis as { kmsEnvelopePaused?: boolean }).kmsEnvelopePaused === true);
        if (!paused) {
          await Promise.race([watched.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 20))]);
          continue;
        }
        await cdp.send('HeapProfiler.collectGarbage');
        const usage = await cdp.send('Runtime.getHeapUsage');
        heapMiB.push((usage.usedSize + (usage.backingStorageSize ?? 0)) / 2 ** 20);
        await page.evaluate(() => {
          (globalThis as { kmsEnvelopePaused?: boolean }).kmsEnvelopePaused = false;
        });
      }
      await cdp.detach();
      return { result: await watched, heapMiB };
    },
    close: () => browser.close(),
  };
}
