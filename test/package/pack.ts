/**
 * The published package as a consumer gets it: `npm pack` of the built dist/, made once per
 * build and reused by every test under test/package/.
 *
 * The tarball is cached in node_modules/.cache/kms-envelope-pack/<key>/, where the key hashes
 * package.json and the path, size and mtime of every file the tarball can hold, so a rebuild (or
 * an edit of package.json or a shipped document) packs again and a second test file of the same
 * run reuses the first one's tarball. `npm pack --ignore-scripts` packs what `npm run build` made:
 * prepack (a clean build) would delete dist/ under the feet of the other test files that run at
 * the same time. Test files run in parallel workers, so a pack goes to a private directory first
 * and is renamed into place; the loser of a race keeps the winner's tarball.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const run = promisify(execFile);

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CACHE = join(ROOT, 'node_modules', '.cache', 'kms-envelope-pack');
const SHIPPED_DOCS = ['README.md', 'FORMAT.md', 'LICENSE', 'CHANGELOG.md', 'SECURITY.md'];

/** What `npm pack --json` says about one tarball. */
export interface PackResult {
  filename: string;
  name: string;
  version: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number; mode: number }[];
}

export interface Packed {
  /** Absolute path of the .tgz. */
  tarball: string;
  /** npm's own account of the tarball: the file list, sizes. */
  result: PackResult;
}

function walk(dir: string, out: string[]): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path, out);
    else out.push(path);
  }
  return out;
}

function cacheKey(): string {
  const hash = createHash('sha256');
  hash.update(readFileSync(join(ROOT, 'package.json')));
  const paths = walk(join(ROOT, 'dist'), []).concat(SHIPPED_DOCS.map((doc) => join(ROOT, doc)).filter((p) => existsSync(p)));
  for (const path of paths.sort()) {
    const stat = statSync(path);
    hash.update(`${relative(ROOT, path)}\0${stat.size}\0${stat.mtimeMs}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

let packing: Promise<Packed> | undefined;

/** The packed tarball of the current build; packs at most once per build. */
export function packOnce(): Promise<Packed> {
  packing ??= pack();
  return packing;
}

async function pack(): Promise<Packed> {
  if (!existsSync(join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` before test/package');
  const key = cacheKey();
  const dir = join(CACHE, key);
  const resultFile = join(dir, 'pack.json');
  if (!existsSync(resultFile)) {
    mkdirSync(CACHE, { recursive: true });
    const scratch = mkdtempSync(join(CACHE, `.${key}-`));
    try {
      const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', scratch], {
        cwd: ROOT,
        maxBuffer: 64 << 20,
      });
      // npm 11 prints the JSON alone on stdout; keep to the array in case a notice comes first.
      const [result] = JSON.parse(stdout.slice(stdout.indexOf('['))) as PackResult[];
      if (!result) throw new Error(`npm pack printed no result: ${stdout}`);
      writeFileSync(join(scratch, 'pack.json'), JSON.stringify(result));
      try {
        renameSync(scratch, dir);
      } catch (error) {
        // Another worker of this run got there first: its tarball is the same build.
        if (!existsSync(resultFile)) throw error;
      }
      // Tarballs of earlier builds: nothing reads them any more.
      for (const old of readdirSync(CACHE)) {
        if (old !== key && !old.startsWith('.')) rmSync(join(CACHE, old), { recursive: true, force: true });
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  const result = JSON.parse(readFileSync(resultFile, 'utf8')) as PackResult;
  return { tarball: join(dir, result.filename), result };
}

/** A fresh temporary directory; the caller removes it (see removeDir). */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `kms-envelope-${prefix}-`));
}

export function removeDir(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/**
 * A consumer project in `dir` (a temporary directory outside the repository, so nothing resolves
 * through the repository's node_modules by accident): package.json of type module, the tarball
 * unpacked as node_modules/kms-envelope (what `npm install kms-envelope-x.y.z.tgz` puts there),
 * and the package's runtime dependencies plus `extra` symlinked from the repository's
 * node_modules, so no network and no npm cache is needed.
 */
export async function makeConsumer(dir: string, tarball: string, extra: string[] = []): Promise<string> {
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
  const pkgDir = join(dir, 'node_modules', 'kms-envelope');
  mkdirSync(pkgDir, { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', pkgDir, '--strip-components=1']);
  const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const name of [...Object.keys(manifest.dependencies ?? {}), ...extra]) {
    const target = join(ROOT, 'node_modules', name);
    if (!existsSync(target)) throw new Error(`${name} is not installed in the repository's node_modules`);
    const link = join(dir, 'node_modules', name);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(target, link, 'dir');
  }
  return pkgDir;
}

/** The project's package.json: the package tests derive their lists of entries from its "exports". */
export const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  exports: Record<string, string | Record<string, string>>;
};
