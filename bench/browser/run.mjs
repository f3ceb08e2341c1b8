/**
 * `npm run bench:browser`: bundles bench/browser/page-bench.ts from the built package (dist/, as a
 * user's bundler would), serves it on 127.0.0.1 (a secure context: crypto.subtle is there), runs
 * it in headless Chromium through playwright-core (Debian's /usr/bin/chromium, or
 * KMS_ENVELOPE_CHROMIUM; no browser download) and prints MB/s and the goals' ratios as markdown.
 *
 *   node bench/browser/run.mjs [--mib 64] [--rounds 5] [--noble-rounds 2] [--records 2000] [--json]
 *
 * The goals compare each stream with bare subtle at its best depth in the same round (the fastest
 * of the depths measured); the load average is printed before and after.
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
export async function runBrowserBench(options = {}, { profile = false } = {}) {
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
    await page.exposeFunction('kmsEnvelopeCpu', cpuSample);
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => 'kmsEnvelopeBench' in globalThis, undefined, { timeout: 30_000 });
    const cdp = profile ? await page.context().newCDPSession(page) : undefined;
    if (cdp) await cdp.send('Profiler.enable').then(() => cdp.send('Profiler.setSamplingInterval', { interval: 100 }));
    await page.exposeFunction('kmsEnvelopeMark', async (what) => {
      if (cdp && what === 'rounds') await cdp.send('Profiler.start');
    });
    try {
      const report = await page.evaluate((o) => globalThis.kmsEnvelopeBench.runBench(o), options);
      if (cdp) report.profile = (await cdp.send('Profiler.stop')).profile;
      return report;
    } catch (error) {
      throw new Error(`${error.message}${errors.length ? `\npage errors: ${errors.join('; ')}` : ''}`);
    }
  } finally {
    await browser.close();
    server.close();
  }
}

/** Every process descended from this one (the browser Chromium and its children). */
function descendants(readdir, readFile) {
  const parent = new Map();
  for (const entry of readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFile(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const ours = new Set([process.pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parent) if (!ours.has(pid) && ours.has(ppid)) grew = ours.add(pid) !== undefined;
  }
  ours.delete(process.pid);
  return [...ours];
}

/**
 * CPU time (ms, user + system) of Chromium's threads so far, by group: the page's main thread, its
 * other threads (WebCrypto runs on its thread pool), and every other process (the browser process
 * serves a Blob's bytes). Load does not change it much, unlike wall-clock time.
 */
export async function cpuSample() {
  const { readdirSync, readFileSync } = await import('node:fs');
  const tick = 1000 / 100; // USER_HZ
  const out = { main: 0, rendererOther: 0, otherProcesses: 0 };
  for (const pid of descendants(readdirSync, readFileSync)) {
    let tasks;
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {}
    if (!cmdline.includes('chrom')) continue; // esbuild's service is a child too
    const isRenderer = cmdline.includes('--type=renderer');
    for (const tid of tasks) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const ms = (Number(fields[11]) + Number(fields[12])) * tick;
        if (!isRenderer) out.otherProcesses += ms;
        else if (tid === String(pid)) out.main += ms;
        else out.rendererOther += ms;
      } catch {}
    }
  }
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The report as markdown: MB/s per case, and each goal's ratio (median over rounds of the time ratio). */
export function formatReport(report, options = {}) {
  const byName = new Map(report.cases.map((c) => [c.name, c]));
  const rate = (c) => c.bytes / 1048576 / (median(c.ms) / 1000);
  const roundsOf = (names) => Math.min(...names.map((n) => byName.get(n).ms.length));
  // Per round, the fastest of several cases (bare subtle at its best depth in that round).
  const best = (prefix) => {
    const names = report.cases.map((c) => c.name).filter((n) => n.startsWith(prefix));
    const n = roundsOf(names);
    return { name: `${prefix}best depth`, bytes: byName.get(names[0]).bytes, ms: Array.from({ length: n }, (_, r) => Math.min(...names.map((x) => byName.get(x).ms[r]))) };
  };
  const get = (x) => (typeof x === 'string' ? byName.get(x) : x);
  const ratio = (a, b) => {
    const x = get(a);
    const y = get(b);
    const n = Math.min(x.ms.length, y.ms.length);
    // Speed ratio a/b: time of b over time of a, per round, then the median.
    return Array.from({ length: n }, (_, r) => y.ms[r] / y.bytes / (x.ms[r] / x.bytes));
  };
  const spread = (xs) => `${median(xs).toFixed(2)}x (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
  const lines = [];
  lines.push(`\n### Chromium (\`npm run bench:browser\`), ${options.mib ?? 64} MiB streams in 1 MiB pieces or a Blob, medians of the rounds, MB/s\n`);
  lines.push(`${report.userAgent}${options.load ? `; load average ${options.load}` : ''}; the Blob's stream reads ${(report.blobReadBytes / 1024).toFixed(0)} KiB at a time\n`);
  lines.push('| case | MB/s | rounds |', '|---|---|---|');
  for (const c of report.cases) if (c.ms.length > 0) lines.push(`| ${c.name} | ${rate(c).toFixed(0)} | ${c.ms.length} |`);
  const bareSeal = best('bare subtle encrypt, ');
  const bareOpen = best('bare subtle decrypt, ');
  const coldSeal = best('bare subtle encrypt of distinct bytes, ');
  const coldOpen = best('bare subtle decrypt of distinct bytes, ');
  for (const c of [bareSeal, bareOpen, coldSeal, coldOpen]) lines.push(`| ${c.name} each round | ${rate(c).toFixed(0)} | ${c.ms.length} |`);
  lines.push('', '| goal | median (min-max over rounds) | holds |', '|---|---|---|');
  const goal = (text, values, min) => values.length > 0 && lines.push(`| ${text} | ${spread(values)} | ${min === undefined ? '(no goal)' : median(values) >= min ? 'yes' : 'no'} |`);
  goal('sealStream webcrypto, Blob / bare subtle encrypt at its best depth (one 1 MiB piece again and again), at least 0.8x', ratio('sealStream webcrypto, Blob', bareSeal), 0.8);
  goal('openStream webcrypto, Blob / bare subtle decrypt at its best depth (one 1 MiB piece again and again), at least 0.8x', ratio('openStream webcrypto, Blob', bareOpen), 0.8);
  goal('sealStream webcrypto, Blob / bare subtle encrypt of 64 MiB of distinct bytes at its best depth', ratio('sealStream webcrypto, Blob', coldSeal));
  goal('openStream webcrypto, Blob / bare subtle decrypt of 64 MiB of distinct bytes at its best depth', ratio('openStream webcrypto, Blob', coldOpen));
  goal("sealStream webcrypto, Blob / bare subtle encrypt over the Blob's reads", ratio('sealStream webcrypto, Blob', "bare subtle encrypt over the Blob, a read's chunks at once"));
  goal('bare subtle encrypt over the Blob with the AES in a Worker / bare subtle encrypt at its best depth', ratio('bare subtle encrypt over the Blob, AES in a Worker', bareSeal));
  goal("openStream webcrypto, Blob / bare subtle decrypt over a Blob's reads", ratio('openStream webcrypto, Blob', "bare subtle decrypt over a Blob, a read's chunks at once"));
  goal('sealStream webcrypto, 1 MiB pieces / bare subtle encrypt at its best depth', ratio('sealStream webcrypto', bareSeal));
  goal('openStream webcrypto, 1 MiB pieces / bare subtle decrypt at its best depth', ratio('openStream webcrypto', bareOpen));
  goal('sealStream webcrypto / sealStream noble, at least 5x', ratio('sealStream webcrypto', 'sealStream noble'), 5);
  goal('openStream webcrypto / openStream noble, at least 5x', ratio('openStream webcrypto', 'openStream noble'), 5);
  goal('1 KiB records seal+open, webcrypto / noble', ratio('1 KiB records seal+open webcrypto', '1 KiB records seal+open noble'));
  goal('1 KiB seal+open under a warm key hierarchy / bare subtle encrypt+decrypt', ratio('1 KiB records seal+open webcrypto, key hierarchy', '1 KiB bare subtle encrypt+decrypt'));
  // CPU time of Chromium's threads per 16 KiB of stream (µs): independent of the load, unlike MB/s.
  const cpuCases = report.cases.filter((c) => c.cpu?.length > 0 && c.bytes >= 1048576 && !c.name.startsWith('1 KiB'));
  if (cpuCases.length > 0) {
    lines.push('', 'CPU time of Chromium per 16 KiB chunk (µs, medians of the rounds; the bound on an idle 2-core machine is the larger of the main thread and half the total):', '');
    lines.push('| case | page main thread | page other threads | other processes | total | idle bound, MB/s |', '|---|---|---|---|---|---|');
    // (With a Worker, its thread is among the page's other threads, and the bound is also that thread's time: not shown apart.)
    for (const c of cpuCases) {
      const per = (f) => (median(c.cpu.map(f)) * 1000) / (c.bytes / 16384);
      const main = per((x) => x.main);
      const total = per((x) => x.main + x.rendererOther + x.otherProcesses);
      const bound = 16384 / 1048576 / (Math.max(main, total / 2) / 1e6);
      lines.push(`| ${c.name} | ${main.toFixed(1)} | ${per((x) => x.rendererOther).toFixed(1)} | ${per((x) => x.otherProcesses).toFixed(1)} | ${total.toFixed(1)} | ${bound.toFixed(0)} |`);
    }
  }
  // The same goals in CPU time of all Chromium's processes (bare subtle at its cheapest depth each round).
  const cpuTotal = (c, r) => c.cpu[r].main + c.cpu[r].rendererOther + c.cpu[r].otherProcesses;
  const cpuRatio = (ours, prefix) => {
    const o = byName.get(ours);
    const bares = report.cases.filter((c) => c.name.startsWith(prefix) && c.cpu?.length > 0);
    if (!o?.cpu?.length || bares.length === 0) return [];
    const n = Math.min(o.cpu.length, ...bares.map((b) => b.cpu.length));
    return Array.from({ length: n }, (_, r) => Math.min(...bares.map((b) => cpuTotal(b, r) / b.bytes)) / (cpuTotal(o, r) / o.bytes));
  };
  if (cpuCases.length > 0) {
    lines.push('', '| CPU time of Chromium per byte, bare / ours | median (min-max over rounds) |', '|---|---|');
    for (const [ours, prefix] of [
      ['sealStream webcrypto, Blob', 'bare subtle encrypt, '],
      ['openStream webcrypto, Blob', 'bare subtle decrypt, '],
      ['sealStream webcrypto, Blob', 'bare subtle encrypt of distinct bytes, '],
      ['openStream webcrypto, Blob', 'bare subtle decrypt of distinct bytes, '],
      ['sealStream webcrypto, Blob', 'bare subtle encrypt over the Blob'],
      ['openStream webcrypto, Blob', 'bare subtle decrypt over a Blob'],
      ['sealStream webcrypto', 'bare subtle encrypt, '],
      ['openStream webcrypto', 'bare subtle decrypt, '],
    ]) {
      const values = cpuRatio(ours, prefix);
      if (values.length > 0) lines.push(`| ${ours} / ${prefix.replace(/, $/, ' at its cheapest depth')} | ${spread(values)} |`);
    }
  }
  const perRecord = (name) => `${((median(byName.get(name).ms) * 1000) / (byName.get(name).bytes / 1024)).toFixed(0)} µs`;
  lines.push('', `1 KiB seal+open per record: cached data key ${perRecord('1 KiB records seal+open webcrypto')}, key hierarchy ${perRecord('1 KiB records seal+open webcrypto, key hierarchy')}, bare subtle encrypt+decrypt ${perRecord('1 KiB bare subtle encrypt+decrypt')}`);
  return lines.join('\n');
}

const loadAverage = async () => {
  try {
    const { readFile } = await import('node:fs/promises');
    return (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  } catch {
    return undefined;
  }
};

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = { streamMiB: option('mib', 64), rounds: option('rounds', 5), nobleRounds: option('noble-rounds', 2), records: option('records', 2000) };
  const before = await loadAverage();
  const report = await runBrowserBench(options);
  const after = await loadAverage();
  if (process.argv.includes('--json')) console.log(JSON.stringify(report, null, 2));
  console.log(formatReport(report, { mib: options.streamMiB, load: before && `${before} before, ${after} after` }));
}
