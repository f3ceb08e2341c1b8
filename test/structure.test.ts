/**
 * The shape of src/ (scripts/structure.mjs, its measures in scripts/structure-lib.mjs): functions
 * of at most 140 lines and 6 positional parameters, no import circle between rooms, at most 8
 * layers of rooms. The limits are the script's (LIMITS) and bind every change (issue 21). The
 * checks on small sources below always run: each measure can fail.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { analyze, circles, functionsOf, importsOf, layers, LIMITS, readSources, type Report, roomGraph, roomOf, sealOptionsPath, violations } from '../scripts/structure-lib.mjs';

/** The src/-wide limits bind every change since issue 21's refactor landed. */
export const ENFORCED = true;

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

let report: Report | undefined;
const srcReport = (): Report => (report ??= analyze(readSources(SRC), { root: SRC, sealPath: false }));
const where = (fs: readonly { file: string; line: number; name: string }[]): string[] => fs.map((f) => `src/${f.file}:${f.line} ${f.name}`);

describe('src/ (limits from scripts/structure-lib.mjs)', () => {
  it.skipIf(!ENFORCED)(`has no function longer than ${LIMITS.functionLines} lines`, () => {
    expect(where(srcReport().overLong)).toEqual([]);
  });

  it.skipIf(!ENFORCED)(`has no function with more than ${LIMITS.parameters} positional parameters`, () => {
    expect(where(srcReport().overParameters)).toEqual([]);
  });

  it('has no import circle between rooms, type imports included', () => {
    expect(srcReport().imports.circles).toEqual([]);
  });

  it.skipIf(!ENFORCED)(`has at most ${LIMITS.layers} layers of rooms`, () => {
    const { count, chain } = srcReport().imports.layers;
    expect(count, chain.join(' → ')).toBeLessThanOrEqual(LIMITS.layers);
  });

  it('finds the envelope seal() the options path starts from', () => {
    const path = sealOptionsPath(readSources(SRC), { root: SRC });
    expect(path.reason).toBeUndefined();
    expect(path.found).toBe(true);
    expect(path.path[0]!.name).toMatch(/seal$/);
    expect(path.rooms).toBeGreaterThanOrEqual(2);
    expect(path.derived!.rooms).toBeGreaterThanOrEqual(path.rooms);
  });
});

const lines = (n: number, head: string, body = '  void 0;', tail = '}'): string => [head, ...Array.from({ length: n - 2 }, () => body), tail].join('\n');

describe('function length', () => {
  it(`finds a function of ${LIMITS.functionLines + 1} lines and passes one of ${LIMITS.functionLines}`, () => {
    const source = `${lines(LIMITS.functionLines + 1, 'export function tooLong(): void {')}\n${lines(LIMITS.functionLines, 'export function justRight(): void {')}\n`;
    const found = functionsOf('a.ts', source);
    expect(found.map((f) => [f.name, f.line, f.lines])).toEqual([
      ['tooLong', 1, LIMITS.functionLines + 1],
      ['justRight', LIMITS.functionLines + 2, LIMITS.functionLines],
    ]);
    const r = analyze({ 'core/a.ts': source }, { sealPath: false });
    expect(where(r.overLong)).toEqual(['src/core/a.ts:1 tooLong']);
    expect(violations(r)).toEqual([`src/core/a.ts:1 tooLong: ${LIMITS.functionLines + 1} lines (limit ${LIMITS.functionLines})`]);
  });

  it('measures methods, constructors, getters, arrow functions and function expressions', () => {
    const source = [
      'class Box {',
      '  constructor() {',
      '    void 0;',
      '  }',
      '  get size(): number {',
      '    return 1;',
      '  }',
      '  open(): void {}',
      '}',
      'const arrow = (): void => {',
      '  void 0;',
      '};',
      'const expression = function (): void {};',
      'const object = { method(): void {}, value: () => 1 };',
      'void [Box, arrow, expression, object];',
    ].join('\n');
    expect(functionsOf('x.ts', source).map((f) => [f.name, f.line, f.lines])).toEqual([
      ['Box.constructor', 2, 3],
      ['Box.get size', 5, 3],
      ['Box.open', 8, 1],
      ['arrow', 10, 3],
      ['expression', 13, 1],
      ['object.method', 14, 1],
      ['object.value', 14, 1],
    ]);
  });
});

describe('positional parameters', () => {
  it('finds a function of 7 and passes one of 6 (a rest parameter and a destructured object count one, `this` none)', () => {
    const source = [
      'export function seven(a: number, b: number, c: number, d: number, e: number, f: number, g: number): number {',
      '  return a + b + c + d + e + f + g;',
      '}',
      'export function six(this: unknown, { a }: { a: number }, b: number, c: number, d: number, e: number, ...rest: number[]): number {',
      '  return a + b + c + d + e + rest.length;',
      '}',
      'export const arrow = (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number): number => a + b + c + d + e + f + g + h;',
    ].join('\n');
    expect(functionsOf('p.ts', source).map((f) => [f.name, f.parameters])).toEqual([
      ['seven', 7],
      ['six', 6],
      ['arrow', 8],
    ]);
    const r = analyze({ 'p.ts': source }, { sealPath: false });
    expect(r.overParameters.map((f) => f.name)).toEqual(['arrow', 'seven']);
    expect(violations(r)).toContain(`src/p.ts:1 seven: 7 positional parameters (limit ${LIMITS.parameters})`);
  });
});

describe('rooms, circles and layers', () => {
  it('puts a file in its first folder, and each top-level file in a room of its own', () => {
    expect(['core/header.ts', 'node/key-stores/sqlite.ts', 'index.ts', 'records.ts'].map(roomOf)).toEqual(['core', 'node', 'index.ts', 'records.ts']);
  });

  it('reads imports, export-froms, dynamic imports and type imports, local only', () => {
    const present = new Set(['a/x.ts', 'b/y.ts', 'b/z.ts', 'c/index.ts', 'top.ts']);
    const source = [
      "import { y } from '../b/y.ts';",
      "import type { Z } from '../b/z.ts';",
      "import { type W } from '../top.ts';",
      "export * from '../c';",
      "import 'node:fs';",
      "import ky from 'ky';",
      "export const load = () => import('../b/z.js');",
      "export type T = typeof import('../top.ts');",
      'void y;',
    ].join('\n');
    expect(importsOf('a/x.ts', source, present)).toEqual([
      { from: 'a/x.ts', to: 'b/y.ts', typeOnly: false },
      { from: 'a/x.ts', to: 'b/z.ts', typeOnly: true },
      { from: 'a/x.ts', to: 'top.ts', typeOnly: false },
      { from: 'a/x.ts', to: 'c/index.ts', typeOnly: false },
      { from: 'a/x.ts', to: 'b/z.ts', typeOnly: false },
      { from: 'a/x.ts', to: 'top.ts', typeOnly: true },
    ]);
  });

  it('finds a circle between rooms, through a type import too', () => {
    const files = {
      'a/x.ts': "import { y } from '../b/y.ts';\nexport const x = y;\n",
      'b/y.ts': "import type { X } from '../a/x.ts';\nexport const y = 1;\nexport type Y = X;\n",
      'b/inner.ts': "import { y } from './y.ts';\nexport const z = y;\n",
      'index.ts': "export { x } from './a/x.ts';\n",
    };
    const r = analyze(files, { sealPath: false });
    expect(r.imports.circles).toEqual([['a', 'b']]);
    expect(r.runtimeImports.circles).toEqual([]);
    expect(violations(r)).toEqual(['room circle: a ⇄ b']);
    // Without the type import, no circle: the script's check passes.
    expect(violations(analyze({ ...files, 'b/y.ts': 'export const y = 1;\n' }, { sealPath: false }))).toEqual([]);
  });

  it('counts layers as the rooms on the longest chain of rooms each importing the next', () => {
    const edge = (from: string, to: string) => ({ from: `${from}/f.ts`, to: `${to}/f.ts`, typeOnly: false });
    // a → b → c → d, a → d, e → d, f alone: 4 layers, a b c d.
    const graph = roomGraph([edge('a', 'b'), edge('b', 'c'), edge('c', 'd'), edge('a', 'd'), edge('e', 'd')], { rooms: ['f'] });
    expect(layers(graph)).toEqual({ count: 4, chain: ['a', 'b', 'c', 'd'] });
    expect(circles(graph)).toEqual([]);
    // A top-level file is a room: index.ts → a → b → c → d is 5.
    graph.set('index.ts', new Set(['a']));
    expect(layers(graph).count).toBe(5);
    // A circle counts its rooms: d ⇄ g makes the chain index.ts a b c {d, g}, 6 rooms.
    graph.get('d')!.add('g');
    graph.set('g', new Set(['d']));
    expect(circles(graph)).toEqual([['d', 'g']]);
    expect(layers(graph)).toEqual({ count: 6, chain: ['index.ts', 'a', 'b', 'c', '{d, g}'] });
    expect(layers(new Map())).toEqual({ count: 0, chain: [] });
  });
});

describe('seal options path', () => {
  const common = {
    'core/types.ts': 'export interface SealOptions { context?: Record<string, string>; signal?: AbortSignal }\n',
    'core/abort.ts': 'export function checkSignal(signal?: AbortSignal): void {\n  void signal;\n}\n',
    'core/context.ts': 'export function canonical(context?: Record<string, string>): string {\n  return JSON.stringify(context ?? {});\n}\n',
    'core/bytes.ts': 'export function encode(text: string): string {\n  return text;\n}\n',
    'kms/wrap.ts': "import { encode } from '../core/bytes.ts';\nexport function wrap(plaintext: string, context: string): string {\n  return plaintext + encode(context);\n}\n",
    'engine/core.ts': [
      "import type { SealOptions } from '../core/types.ts';",
      "import { checkSignal } from '../core/abort.ts';",
      "import { canonical } from '../core/context.ts';",
      "import { wrap } from '../kms/wrap.ts';",
      'export interface Core {',
      '  beginSeal(plaintext: string, options?: SealOptions): string;',
      '}',
      "function starter(): Core['beginSeal'] {",
      '  return function beginSeal(plaintext, options = {}) {',
      '    checkSignal(options.signal);',
      '    const context = canonical(options.context);',
      '    return wrap(plaintext, context);',
      '  };',
      '}',
      'export function createCore(): Core {',
      '  return { beginSeal: starter() };',
      '}',
      'export function unrelated(plaintext: string): string {',
      "  return wrap(plaintext, '');",
      '}',
    ].join('\n'),
  };

  it('follows the options from seal() of an object, through imports and an interface, to the rooms they reach', () => {
    const envelope = [
      "import type { SealOptions } from './core/types.ts';",
      "import { createCore } from './engine/core.ts';",
      'export function createEnvelope() {',
      '  const core = createCore();',
      '  const seal = (plaintext: string, o?: SealOptions): string => core.beginSeal(plaintext, o);',
      '  return Object.freeze({ seal });',
      '}',
    ].join('\n');
    const r = sealOptionsPath({ ...common, 'envelope.ts': envelope, 'index.ts': "export { createEnvelope } from './envelope.ts';\n" });
    expect(r.found).toBe(true);
    expect(r.home).toBe('envelope.ts');
    // The options object itself: seal → beginSeal → checkSignal(options.signal).
    expect({ rooms: r.rooms, list: r.roomList, path: r.path.map((s) => s.name) }).toEqual({
      rooms: 3,
      list: ['envelope.ts', 'engine', 'core'],
      path: ['seal', 'beginSeal', 'checkSignal'],
    });
    // With what is computed from them: the context goes on to kms/ and back to core/.
    expect(r.derived!.roomList).toEqual(['envelope.ts', 'engine', 'kms', 'core']);
    expect(r.derived!.path.map((s) => s.name)).toEqual(['seal', 'beginSeal', 'wrap', 'encode']);
  });

  it('starts from a class method too, and reaches an interface member through the class implementing it', () => {
    const files = {
      ...common,
      'engine/impl.ts': [
        "import type { SealOptions } from '../core/types.ts';",
        "import type { Core } from './core.ts';",
        "import { checkSignal } from '../core/abort.ts';",
        'export class CoreImpl implements Core {',
        '  beginSeal(plaintext: string, options: SealOptions = {}): string {',
        '    checkSignal(options.signal);',
        '    return plaintext;',
        '  }',
        '}',
      ].join('\n'),
      'envelope/envelope.ts': [
        "import type { SealOptions } from '../core/types.ts';",
        "import type { Core } from '../engine/core.ts';",
        "import { CoreImpl } from '../engine/impl.ts';",
        'export class Envelope {',
        '  readonly #core: Core = new CoreImpl();',
        '  seal(plaintext: string, options?: SealOptions): string {',
        '    return this.#core.beginSeal(plaintext, options);',
        '  }',
        '}',
        'export function createEnvelope(): Envelope {',
        '  return new Envelope();',
        '}',
      ].join('\n'),
    };
    const r = sealOptionsPath(files);
    expect(r.home).toBe('envelope/envelope.ts');
    expect(r.path[0]!.name).toBe('Envelope.seal');
    expect(r.roomList).toEqual(['envelope', 'engine', 'core']);
  });

  it('says so when no file declares createEnvelope', () => {
    const r = sealOptionsPath({ 'a.ts': 'export const seal = (o: object): object => o;\n' });
    expect(r).toMatchObject({ found: false, rooms: 0 });
    expect(r.reason).toMatch(/createEnvelope/);
  });
});
