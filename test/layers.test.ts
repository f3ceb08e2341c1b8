/**
 * The walls of the house (src/): which room may import which, type imports included, and no
 * import circle anywhere. A violation fails here; move the code instead of weakening a rule.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

type Room = 'core' | 'economy' | 'kms' | 'envelope' | 'hierarchy' | 'records' | 'sm4' | 'node' | 'tools' | 'adapters' | 'entry';

interface Edge {
  from: string; // path under src/, e.g. 'core/header.ts'
  to: string; // path under src/, or a bare specifier ('node:fs', 'ky', '@noble/ciphers/aes.js')
  local: boolean;
  /** Every import of it is `import type` or `export type ... from` (erased from the JavaScript). */
  typeOnly?: boolean;
}

const PACKAGE = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { exports: Record<string, string | Record<string, string>> };
/** The entry files: the top-level files of src/ that package.json "exports" names (derived, not kept by hand). */
export const ENTRY_FILES = Object.values(PACKAGE.exports)
  .flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)))
  .filter((target): target is string => typeof target === 'string' && /^\.\/dist\/[^/]+\.js$/.test(target))
  .map((target) => target.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts'));
/**
 * An entry under an export condition builds on the same export's default entry (index.node.ts,
 * Node's 'kms-envelope', re-exports index.ts): derived from package.json "exports" too.
 */
const CONDITIONAL_BASE = new Map(
  Object.values(PACKAGE.exports).flatMap((target) =>
    typeof target === 'string' || !target.default
      ? []
      : Object.entries(target)
          .filter(([condition, file]) => condition !== 'default' && !condition.startsWith('types') && file !== target.default)
          .map(([, file]): [string, string] => [file.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts'), target.default!.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts')]),
  ),
);
const FOLDERS: readonly Room[] = ['core', 'economy', 'kms', 'envelope', 'hierarchy', 'records', 'sm4', 'node', 'tools', 'adapters'];

export function roomOf(file: string): Room {
  if (!file.includes('/')) {
    if (ENTRY_FILES.includes(file)) return 'entry';
    throw new Error(`src/${file} is at the top of src/ but no entry of package.json "exports": move it into a room`);
  }
  const top = file.split('/')[0] as Room;
  if (FOLDERS.includes(top)) return top;
  throw new Error(`src/${file} is in no room: put it in ${FOLDERS.join('/, ')}/`);
}

/** Every import, export-from and dynamic import of a file, type-only ones included. */
export function importsOf(file: string, source: string): Edge[] {
  const specs = new Set<string>();
  const patterns = [
    /^\s*import\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/gms,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /^\s*export\s+(?:type\s+)?(?:\*|\{[^}]*\})\s*(?:as\s+\w+\s*)?from\s*['"]([^'"]+)['"]/gms,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) for (const m of source.matchAll(pattern)) specs.add(m[1]!);
  // Only `import type` and `export type` are erased whole (under verbatimModuleSyntax, `import { type A }` still loads the module).
  const typed = /^\s*(?:import|export)\s+type\s+[^'";]*?\bfrom\s*['"]([^'"]+)['"]/gms;
  const typeOnly = new Map<string, number>();
  for (const m of source.matchAll(typed)) typeOnly.set(m[1]!, (typeOnly.get(m[1]!) ?? 0) + 1);
  const all = new Map<string, number>();
  for (const pattern of patterns) for (const m of source.matchAll(pattern)) all.set(m[1]!, (all.get(m[1]!) ?? 0) + 1);
  return [...specs].map((spec) => ({
    from: file,
    to: spec.startsWith('.') ? normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts') : spec,
    local: spec.startsWith('.'),
    typeOnly: typeOnly.get(spec) === all.get(spec),
  }));
}

function allEdges(): Edge[] {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  return files.flatMap((file) => importsOf(file, readFileSync(join(SRC, file), 'utf8')));
}

const EMULATOR_SIGNING = 'kms/tencent-sign.ts';
/**
 * The packages the adapters are written against (ORMs, and the optional peers of later adapters:
 * Prisma, Redis, OpenTelemetry): their types only, never loaded by the library; the caller passes the client.
 */
const ORM_PACKAGES = /^(?:drizzle-orm|kysely|sequelize|@prisma\/client|ioredis|@opentelemetry\/api)(?:\/|$)/;
const CHUNK_CODE = ['core/header.ts', 'core/chunked.ts', 'core/chunk-nonce.ts'];
/** The public faces of envelope/ and hierarchy/ that records/ builds on: their entries. */
const RECORDS_FACES = ['index.ts', 'hierarchy.ts'];

/** Which rooms each room may import (its own included); entries and records/ have extra rules below. */
const ALLOWED: Record<Room, readonly Room[]> = {
  core: ['core'],
  economy: ['core', 'economy'],
  kms: ['core', 'economy', 'kms'],
  sm4: ['core', 'sm4'],
  envelope: ['core', 'economy', 'kms', 'envelope'],
  hierarchy: ['core', 'economy', 'kms', 'hierarchy'],
  records: ['core', 'records'],
  node: ['core', 'economy', 'kms', 'envelope', 'hierarchy', 'records', 'sm4', 'node', 'entry'],
  entry: ['core', 'economy', 'kms', 'envelope', 'hierarchy', 'records', 'sm4', 'node'],
  tools: ['tools'],
  adapters: ['adapters'],
};

/** The database drivers the command line loads on demand for a key store URL (never a dependency of the library). */
const CLI_DRIVERS = /^(?:pg|better-sqlite3)$/;

function packageViolation(room: Room, bare: string, typeOnly: boolean | undefined, from?: string): string | undefined {
  if (room === 'tools' && from === 'tools/cli-store.ts' && CLI_DRIVERS.test(bare)) return undefined;
  if (room === 'adapters') {
    if (!ORM_PACKAGES.test(bare)) return `adapters/ may import only the ORM packages (as types), not ${bare}`;
    return typeOnly ? undefined : `adapters/ may import ${bare} only as types (import type): the library never loads an ORM`;
  }
  if (bare.startsWith('node:')) return room === 'node' || room === 'tools' ? undefined : `${room}/ may not import ${bare} (even as a type)`;
  if (room === 'core' || room === 'sm4') return bare.startsWith('@noble/') ? undefined : `${room}/ may import only @noble/*, not ${bare}`;
  if (room === 'kms') return bare === 'ky' ? undefined : `kms/ may import only ky of the packages, not ${bare}`;
  return `${room === 'entry' ? 'an entry' : `${room}/`} may not import the package ${bare}`;
}

/** Why an edge breaks the walls, or undefined when it is allowed. */
export function violation({ from, to, local, typeOnly }: Edge): string | undefined {
  const room = roomOf(from);
  if (!local) return packageViolation(room, to, typeOnly, from);
  if (to.startsWith('..')) return `${to} is outside src/`;
  const target = roomOf(to);
  if (room === 'adapters' || room === 'tools') {
    if (target === room || target === 'entry') return undefined;
    if (room === 'tools' && to === EMULATOR_SIGNING && from.startsWith('tools/emulator/')) return undefined;
    return `${room}/ may import only the public entries (${ENTRY_FILES.join(', ')}), not ${to}`;
  }
  if (room === 'kms' && CHUNK_CODE.includes(to)) return 'kms/ never parses the format: no header or chunk code';
  if (room === 'records' && RECORDS_FACES.includes(to)) return undefined;
  if (room === 'entry' && CONDITIONAL_BASE.get(from) === to) return undefined;
  if (ALLOWED[room].includes(target)) return undefined;
  return `${room === 'entry' ? `the entry ${from}` : `${room}/`} may not import ${target === 'entry' ? to : `${target}/`}`;
}

/** The files a file reaches through its imports (JavaScript ones: type-only imports are erased). */
export function reach(edges: Edge[], start: string): Set<string> {
  const next = new Map<string, string[]>();
  for (const { from, to, local, typeOnly } of edges) if (local && !typeOnly) next.set(from, [...(next.get(from) ?? []), to]);
  const seen = new Set<string>();
  const stack = [start];
  while (stack.length > 0) {
    for (const to of next.get(stack.pop()!) ?? []) if (!seen.has(to)) (seen.add(to), stack.push(to));
  }
  return seen;
}

/** Every import circle among local files, each as a path that returns to its start. */
export function cycles(edges: Edge[]): string[][] {
  const graph = new Map<string, string[]>();
  for (const { from, to, local } of edges) if (local) graph.set(from, [...(graph.get(from) ?? []), to]);
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}

describe('the walls of src/', () => {
  const edges = allEdges();

  it('finds the imports it checks (type imports, export-from and dynamic imports included)', () => {
    expect(edges.length).toBeGreaterThan(100);
    const sample = importsOf('x/a.ts', `import type { A } from './b.ts';\nexport { C } from '../c.ts';\nconst d = await import('./d.ts');\nimport {\n  e,\n} from 'node:fs';`);
    expect(sample.map((e) => e.to).sort()).toEqual(['c.ts', 'node:fs', 'x/b.ts', 'x/d.ts']);
  });

  it('every import follows the room rules', () => {
    const broken = edges.map((edge) => ({ edge, why: violation(edge) })).filter((v) => v.why);
    expect(broken.map(({ edge, why }) => `src/${edge.from} -> ${edge.to}: ${why}`)).toEqual([]);
  });

  it('the rules refuse what they should', () => {
    const refused: Edge[] = [
      { from: 'core/header.ts', to: 'node:crypto', local: false },
      { from: 'core/header.ts', to: 'kms/local.ts', local: true },
      { from: 'core/header.ts', to: 'ky', local: false },
      { from: 'economy/cache.ts', to: 'kms/local.ts', local: true },
      { from: 'kms/local.ts', to: 'core/header.ts', local: true },
      { from: 'kms/local.ts', to: 'node/files.ts', local: true },
      { from: 'kms/local.ts', to: 'envelope/envelope.ts', local: true },
      { from: 'envelope/envelope.ts', to: 'node/files.ts', local: true },
      { from: 'envelope/engine.ts', to: 'hierarchy/hierarchy.ts', local: true },
      { from: 'envelope/engine.ts', to: 'hierarchy.ts', local: true },
      { from: 'envelope/engine.ts', to: 'records/records.ts', local: true },
      { from: 'envelope/engine.ts', to: 'node:stream', local: false },
      { from: 'hierarchy/hierarchy.ts', to: 'envelope/engine.ts', local: true },
      { from: 'hierarchy/hierarchy.ts', to: 'records/records.ts', local: true },
      { from: 'hierarchy/stores/postgres.ts', to: 'node:crypto', local: false },
      { from: 'records/records.ts', to: 'envelope/engine.ts', local: true },
      { from: 'records/records.ts', to: 'hierarchy/hierarchy.ts', local: true },
      { from: 'records/records.ts', to: 'economy/cache.ts', local: true },
      { from: 'records/records.ts', to: 'kms/local.ts', local: true },
      { from: 'records/sql/postgres.ts', to: 'hierarchy/stores/common.ts', local: true },
      { from: 'records/records.ts', to: 'node.ts', local: true },
      { from: 'sm4/sm4.ts', to: 'envelope/engine.ts', local: true },
      { from: 'node/files.ts', to: 'tools/cli.ts', local: true },
      { from: 'node/files.ts', to: 'adapters/kysely.ts', local: true },
      { from: 'tools/cli.ts', to: 'envelope/engine.ts', local: true },
      { from: 'tools/cli.ts', to: 'pg', local: false },
      { from: 'tools/emulator/kms.ts', to: 'better-sqlite3', local: false },
      { from: 'tools/cli-store.ts', to: 'ky', local: false },
      { from: 'hierarchy/stores/postgres.ts', to: 'pg', local: false },
      { from: 'tools/cli.ts', to: 'kms/tencent-sign.ts', local: true },
      { from: 'adapters/kysely.ts', to: 'kysely', local: false, typeOnly: false },
      { from: 'adapters/drizzle.ts', to: 'pg', local: false, typeOnly: true },
      { from: 'adapters/redis.ts', to: 'ioredis', local: false, typeOnly: false },
      { from: 'hierarchy/hierarchy.ts', to: 'ioredis', local: false, typeOnly: true },
      { from: 'envelope/engine.ts', to: '@opentelemetry/api', local: false, typeOnly: true },
      { from: 'adapters/kysely.ts', to: 'envelope/envelope.ts', local: true },
      { from: 'adapters/kysely.ts', to: 'records/records.ts', local: true },
      { from: 'adapters/kysely.ts', to: 'core/errors.ts', local: true },
      { from: 'adapters/kysely.ts', to: 'node:fs', local: false, typeOnly: true },
      { from: 'index.ts', to: 'adapters/kysely.ts', local: true },
      { from: 'index.ts', to: 'tools/cli.ts', local: true },
      { from: 'node.ts', to: 'adapters/kysely.ts', local: true },
      { from: 'tools/cli.ts', to: 'adapters/kysely.ts', local: true },
    ];
    for (const edge of refused) expect(violation(edge), `${edge.from} -> ${edge.to}`).toBeDefined();
    expect(violation({ from: 'tools/emulator/auth.ts', to: 'kms/tencent-sign.ts', local: true })).toBeUndefined();
    expect(violation({ from: 'node/files.ts', to: 'node:fs', local: false })).toBeUndefined();
    expect(violation({ from: 'records/records.ts', to: 'index.ts', local: true })).toBeUndefined();
    expect(violation({ from: 'records/records.ts', to: 'hierarchy.ts', local: true })).toBeUndefined();
    expect(violation({ from: 'records/records.ts', to: 'core/header.ts', local: true })).toBeUndefined();
    expect(violation({ from: 'envelope/engine.ts', to: 'core/key-source.ts', local: true })).toBeUndefined();
    expect(violation({ from: 'adapters/kysely.ts', to: 'kysely', local: false, typeOnly: true })).toBeUndefined();
    expect(violation({ from: 'adapters/drizzle.ts', to: 'drizzle-orm/pg-core', local: false, typeOnly: true })).toBeUndefined();
    expect(violation({ from: 'adapters/redis.ts', to: 'ioredis', local: false, typeOnly: true })).toBeUndefined();
    expect(violation({ from: 'adapters/kysely.ts', to: 'records.ts', local: true })).toBeUndefined();
    expect(violation({ from: 'tools/cli.ts', to: 'node.ts', local: true })).toBeUndefined();
    expect(() => roomOf('loose.ts')).toThrow(/no entry/);
    expect(() => roomOf('misc/thing.ts')).toThrow(/no room/);
    expect(importsOf('adapters/a.ts', `import type { A } from 'kysely';\nimport { type B } from 'sequelize';`).map((e) => [e.to, e.typeOnly])).toEqual([
      ['kysely', true],
      ['sequelize', false],
    ]);
  });

  it('the entries are the files package.json exports, and the top of src/ holds only them', () => {
    expect(ENTRY_FILES).toEqual(expect.arrayContaining(['index.ts', 'node.ts', 'hierarchy.ts', 'records.ts']));
    const top = readdirSync(SRC).filter((f) => f.endsWith('.ts'));
    expect(top.filter((f) => !ENTRY_FILES.includes(f))).toEqual([]);
  });

  it('the main entry reaches neither hierarchy/ nor records/ (nor node/, tools/, adapters/)', () => {
    const reached = [...reach(edges, 'index.ts')];
    expect(reached.filter((f) => /^(?:hierarchy|records|node|tools|adapters)\/|^(?:hierarchy|records|node)\.ts$/.test(f))).toEqual([]);
    // The check itself: an extra edge from a file the entry reaches is found.
    const extra = [...edges, { from: 'envelope/engine.ts', to: 'hierarchy/hierarchy.ts', local: true }];
    expect([...reach(extra, 'index.ts')]).toContain('hierarchy/hierarchy.ts');
  });

  it('every node/ file imports a node: module (else it belongs in another room)', () => {
    const nodeFiles = readdirSync(join(SRC, 'node'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => `node/${f}`);
    const withoutNode = nodeFiles.filter((file) => !edges.some((e) => e.from === file && !e.local && e.to.startsWith('node:')));
    expect(withoutNode).toEqual([]);
  });

  it('has no import circle', () => {
    expect(cycles(edges).map((c) => c.join(' -> '))).toEqual([]);
    expect(cycles([{ from: 'a.ts', to: 'b.ts', local: true }, { from: 'b.ts', to: 'c.ts', local: true }, { from: 'c.ts', to: 'a.ts', local: true }])).toEqual([['a.ts', 'b.ts', 'c.ts', 'a.ts']]);
  });

  it('puts every file in a room', () => {
    const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    expect(files.map((f) => relative('.', f)).filter((f) => { try { roomOf(f); return false; } catch { return true; } })).toEqual([]);
  });
});
