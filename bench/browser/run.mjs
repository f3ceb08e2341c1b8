/**
 * `npm run bench:browser`: bundles bench/browser/page-bench.ts from the built package (dist/, as a
 * user's bundler would), serves it on 127.0.0.1 (a secure context: crypto.subtle is there), runs
 * it in headless Chromium through playwright-core (Debian's /usr/bin/chromium, or
 * KMS_ENVELOPE_CHROMIUM; no browser download) and prints MB/s and the goals' ratios as markdown.
 *
 *   node bench/browser/run.mjs [--mib 64] [--rounds 5] [--noble-rounds 2] [--records 2000] [--json]
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.KMS_ENVELOPE_CHROMIUM ?? '/usr/bin/chromium';
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

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

/** page-bench.ts bundled for the browser, every import of src/ taken from dist/. */
export async function bundleBench() {
  const esbuild = await import('esbuild');
  const src = join(ROOT, 'src') + sep;
  // KMS_ENVELOPE_BENCH_DIST: another build of the package to bundle (trying a change side by side).
  const dist = process.env.KMS_ENVELOPE_BENCH_DIST ? resolve(process.env.KMS_ENVELOPE_BENCH_DIST) : join(ROOT, 'dist');
  const result = await esbuild.build({
    entryPoints: [join(ROOT, 'bench/browser/page-bench.ts')],
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
          build.onResolve({ filter: /\.ts$/ }, (args) => {
            const path = resolve(args.resolveDir, args.path);
            if (!path.startsWith(src)) return undefined;
            return { path: join(dist, relative(src, path)).replace(/\.ts$/, '.js') };
          });
        },
      },
    ],
  });
  return result.outputFiles[0].text;
}

/** Runs the page benchmark in Chromium; resolves to the page's report. */
export async function runBrowserBench(options = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium, or set KMS_ENVELOPE_CHROMIUM)`);
  if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('no dist/index.js: npm run build first');
  const bundle = await bundleBench();
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    if (path === '/') return response.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><meta charset="utf-8"><title>bench</title><script type="module" src="/bench.js"></script>');
    if (path === '/bench.js') return response.writeHead(200, { 'Content-Type': 'text/javascript' }).end(bundle);
    response.writeHead(404).end();
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => 'kmsEnvelopeBench' in globalThis, undefined, { timeout: 30_000 });
    try {
      return await page.evaluate((o) => globalThis.kmsEnvelopeBench.runBench(o), options);
    } catch (error) {
      throw new Error(`${error.message}${errors.length ? `\npage errors: ${errors.join('; ')}` : ''}`);
    }
  } finally {
    await browser.close();
    server.close();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The report as markdown: MB/s per case, and each goal's ratio (median over rounds of the time ratio). */
export function formatReport(report, options = {}) {
  const byName = new Map(report.cases.map((c) => [c.name, c]));
  const rate = (c) => c.bytes / 1048576 / (median(c.ms) / 1000);
  const ratio = (a, b) => {
    const x = byName.get(a);
    const y = byName.get(b);
    const n = Math.min(x.ms.length, y.ms.length);
    // Speed ratio a/b: time of b over time of a, per round, then the median.
    return median(Array.from({ length: n }, (_, r) => y.ms[r] / y.bytes / (x.ms[r] / x.bytes)));
  };
  const lines = [];
  lines.push(`\n### Chromium (\`npm run bench:browser\`), ${options.mib ?? 64} MiB streams in 1 MiB pieces, medians of the rounds, MB/s\n`);
  lines.push(`${report.userAgent}\n`);
  lines.push('| case | MB/s | rounds |', '|---|---|---|');
  for (const c of report.cases) lines.push(`| ${c.name} | ${rate(c).toFixed(0)} | ${c.ms.length} |`);
  // The seal goal is held against the fastest way to drive bare subtle here (8 in flight, one at a time or all at once).
  const bareSeal = ['bare subtle encrypt', 'bare subtle encrypt, one at a time', 'bare subtle encrypt, all at once'].reduce((best, n) =>
    rate(byName.get(n)) > rate(byName.get(best)) ? n : best,
  );
  lines.push('', '| goal | measured | holds |', '|---|---|---|');
  const goal = (text, value, min) => lines.push(`| ${text} | ${value.toFixed(2)}x | ${value >= min ? 'yes' : 'no'} |`);
  goal(`sealStream webcrypto / ${bareSeal} (the fastest bare variant), at least 0.8x`, ratio('sealStream webcrypto', bareSeal), 0.8);
  goal('openStream webcrypto / bare subtle decrypt (8 in flight), at least 0.8x', ratio('openStream webcrypto', 'bare subtle decrypt'), 0.8);
  goal('sealStream webcrypto / sealStream noble, at least 5x', ratio('sealStream webcrypto', 'sealStream noble'), 5);
  goal('openStream webcrypto / openStream noble, at least 5x', ratio('openStream webcrypto', 'openStream noble'), 5);
  lines.push(`| 1 KiB records seal+open, webcrypto / noble | ${ratio('1 KiB records seal+open webcrypto', '1 KiB records seal+open noble').toFixed(2)}x | (no goal) |`);
  return lines.join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = { streamMiB: option('mib', 64), rounds: option('rounds', 5), nobleRounds: option('noble-rounds', 2), records: option('records', 2000) };
  const report = await runBrowserBench(options);
  if (process.argv.includes('--json')) console.log(JSON.stringify(report, null, 2));
  console.log(formatReport(report, { mib: options.streamMiB }));
}
