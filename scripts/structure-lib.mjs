/**
 * The measures of scripts/structure.mjs, shared with test/structure.test.ts. Plain Node ESM on the
 * `typescript` package's compiler API; every measure is derived from the files present, so it
 * reads any layout of src/ (see the script's header for what each measure counts and how).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import ts from 'typescript';

/** The limits issue 21 sets for every later change. */
export const LIMITS = Object.freeze({ functionLines: 140, parameters: 6, layers: 8, sealOptionsRooms: 5 });

// ---------------------------------------------------------------------------------------------
// Sources

/** Every .ts file under `srcDir` (recursively), as a map of path under src/ ('core/header.ts') to text. */
export function readSources(srcDir) {
  const files = {};
  const paths = readdirSync(srcDir, { recursive: true, encoding: 'utf8' })
    .map((f) => f.split('\\').join('/'))
    .filter((f) => f.endsWith('.ts'))
    .sort();
  for (const path of paths) files[path] = readFileSync(join(srcDir, path), 'utf8');
  return files;
}

const parse = (path, text) => ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);

/**
 * The room of a path under src/: the first folder ('core/header.ts' → 'core'); a file at the top
 * of src/ is a room of its own ('index.ts' → 'index.ts').
 */
export function roomOf(path) {
  const slash = path.indexOf('/');
  return slash < 0 ? path : path.slice(0, slash);
}

// ---------------------------------------------------------------------------------------------
// Functions: length and positional parameters

const isFunctionLike = (node) =>
  ts.isFunctionDeclaration(node) ||
  ts.isMethodDeclaration(node) ||
  ts.isArrowFunction(node) ||
  ts.isFunctionExpression(node) ||
  ts.isConstructorDeclaration(node) ||
  ts.isGetAccessorDeclaration(node) ||
  ts.isSetAccessorDeclaration(node);

const textOfName = (name) => (name && (ts.isIdentifier(name) || ts.isPrivateIdentifier(name) || ts.isStringLiteral(name) || ts.isNumericLiteral(name)) ? name.text : name ? name.getText() : undefined);

/** The name of the class or object literal a member belongs to, when it has one. */
function ownerName(container) {
  if (ts.isClassLike(container)) return container.name?.text ?? '<class>';
  if (ts.isObjectLiteralExpression(container)) {
    let p = container.parent;
    // Through parentheses, casts and a wrapping call (`Object.freeze({ ... })`).
    while (p && (ts.isParenthesizedExpression(p) || ts.isAsExpression(p) || ts.isSatisfiesExpression(p) || ts.isCallExpression(p))) p = p.parent;
    if (p && ts.isVariableDeclaration(p)) return textOfName(p.name);
    if (p && ts.isPropertyAssignment(p)) return textOfName(p.name);
    if (p && ts.isReturnStatement(p)) return '<returned object>';
    return undefined;
  }
  return undefined;
}

/** A readable name for a function node: its own, its variable's or property's, else where it sits. */
export function functionName(node) {
  const member = (name) => {
    const owner = ownerName(node.parent);
    return owner ? `${owner}.${name}` : name;
  };
  if (ts.isConstructorDeclaration(node)) return member('constructor');
  if (ts.isGetAccessorDeclaration(node)) return member(`get ${textOfName(node.name)}`);
  if (ts.isSetAccessorDeclaration(node)) return member(`set ${textOfName(node.name)}`);
  if (ts.isMethodDeclaration(node)) return member(textOfName(node.name));
  if (ts.isFunctionDeclaration(node)) return node.name?.text ?? 'default';
  if (ts.isFunctionExpression(node) && node.name) return node.name.text;
  let p = node.parent;
  while (p && (ts.isParenthesizedExpression(p) || ts.isAsExpression(p) || ts.isSatisfiesExpression(p))) p = p.parent;
  if (!p) return '<anonymous>';
  if (ts.isVariableDeclaration(p)) return textOfName(p.name);
  if (ts.isPropertyAssignment(p)) {
    const owner = ownerName(p.parent);
    return owner ? `${owner}.${textOfName(p.name)}` : textOfName(p.name);
  }
  if (ts.isPropertyDeclaration(p)) {
    const owner = ownerName(p.parent);
    return owner ? `${owner}.${textOfName(p.name)}` : textOfName(p.name);
  }
  if (ts.isBinaryExpression(p) && p.operatorToken.kind === ts.SyntaxKind.EqualsToken) return p.left.getText();
  if (ts.isExportAssignment(p)) return 'default';
  if (ts.isCallExpression(p) || ts.isNewExpression(p)) {
    const callee = p.expression.getText();
    return `<callback of ${callee.length > 40 ? `${callee.slice(0, 37)}...` : callee}()>`;
  }
  if (ts.isReturnStatement(p)) {
    let f = p.parent;
    while (f && !isFunctionLike(f)) f = f.parent;
    return f ? `<returned by ${functionName(f)}>` : '<returned>';
  }
  return '<anonymous>';
}

/** Positional parameters: every parameter but TypeScript's `this`; a rest parameter or a destructured object counts as one. */
export const positionalParameters = (node) => node.parameters.filter((p) => !(ts.isIdentifier(p.name) && p.name.text === 'this')).length;

/** Every function of one file: { file, line, name, lines, parameters }, lines from the node's first line to its last. */
export function functionsOf(path, text, sf = parse(path, text)) {
  const out = [];
  const visit = (node) => {
    if (isFunctionLike(node) && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      out.push({ file: path, line: start + 1, name: functionName(node), lines: end - start + 1, parameters: positionalParameters(node) });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Imports and the room graph

/** The path under src/ a relative specifier names, or undefined when it leaves src/ or is not a source file present. */
function resolveSpecifier(from, spec, present) {
  const base = posix.normalize(posix.join(posix.dirname(from), spec));
  if (base.startsWith('../') || base === '..') return undefined;
  const candidates = [base, base.replace(/\.(?:m|c)?js$/, '.ts'), `${base}.ts`, `${base}/index.ts`];
  for (const c of candidates) if (present.has(c)) return c;
  return base.endsWith('.ts') ? base : undefined;
}

/**
 * The local imports of one file: imports, export-froms, `import x = require()`, dynamic import()
 * and `typeof import()` types. typeOnly: `import type ...`, `export type ... from` and import()
 * in a type (erased from the JavaScript); `import { type A }` is not type-only (under
 * verbatimModuleSyntax it still loads the module).
 */
export function importsOf(path, text, present = new Set(), sf = parse(path, text)) {
  const edges = [];
  const add = (specNode, typeOnly) => {
    if (!specNode || !ts.isStringLiteralLike(specNode)) return;
    const spec = specNode.text;
    if (!spec.startsWith('./') && !spec.startsWith('../')) return;
    const to = resolveSpecifier(path, spec, present);
    if (to) edges.push({ from: path, to, typeOnly });
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node)) add(node.moduleSpecifier, Boolean(node.importClause?.isTypeOnly));
    else if (ts.isExportDeclaration(node)) add(node.moduleSpecifier, node.isTypeOnly);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression, node.isTypeOnly);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0], false);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal, true);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

/** Room → rooms it imports (edges inside a room left out). `runtimeOnly` leaves out type-only imports. */
export function roomGraph(edges, { runtimeOnly = false, rooms = [] } = {}) {
  const graph = new Map();
  const node = (r) => graph.get(r) ?? graph.set(r, new Set()).get(r);
  for (const r of rooms) node(r);
  for (const e of edges) {
    const a = roomOf(e.from);
    const b = roomOf(e.to);
    node(a);
    node(b);
    if (a !== b && !(runtimeOnly && e.typeOnly)) node(a).add(b);
  }
  return graph;
}

/** Strongly connected components (Tarjan), each sorted; in reverse topological order (a component after the ones it imports). */
export function components(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      out.push(comp.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) strong(v);
  return out;
}

/** The room circles: components of more than one room (a room importing itself is no circle). */
export const circles = (graph) => components(graph).filter((c) => c.length > 1);

/**
 * The layers: the number of rooms on the longest chain of rooms each importing the next (the
 * longest path in the DAG of components, each component counting its rooms), and that chain
 * (importer first; a circle appears as one step listing its rooms).
 */
export function layers(graph) {
  const comps = components(graph); // dependencies before dependents
  const compOf = new Map();
  comps.forEach((c, i) => c.forEach((r) => compOf.set(r, i)));
  const best = comps.map(() => ({ length: 0, next: -1 }));
  comps.forEach((comp, i) => {
    let length = 0;
    let next = -1;
    const targets = new Set(comp.flatMap((r) => [...(graph.get(r) ?? [])].map((t) => compOf.get(t))).filter((j) => j !== i));
    for (const j of [...targets].sort((a, b) => a - b)) {
      if (best[j].length > length) {
        length = best[j].length;
        next = j;
      }
    }
    best[i] = { length: length + comp.length, next };
  });
  let start = -1;
  comps.forEach((_, i) => {
    if (start < 0 || best[i].length > best[start].length) start = i;
  });
  const chain = [];
  for (let i = start; i >= 0; i = best[i].next) chain.push(comps[i].length === 1 ? comps[i][0] : `{${comps[i].join(', ')}}`);
  return { count: start < 0 ? 0 : best[start].length, chain };
}

// ---------------------------------------------------------------------------------------------
// The seal options path

/**
 * How many rooms the options given to the envelope's seal() pass through (see scripts/structure.mjs
 * for the method). `files`: path under src/ → text; `root`: the absolute src/ directory (any
 * absolute path for sources held in memory).
 */
export function sealOptionsPath(files, { root = '/__structure__/src', maxDepth = 16, budget = 200_000 } = {}) {
  /** Whether values computed from the options carry them (the second search). */
  let derived = false;
  root = resolve(root);
  const abs = (p) => join(root, p).split('\\').join('/');
  const byAbs = new Map(Object.entries(files).map(([p, t]) => [abs(p), { path: p, text: t }]));
  const libDir = dirname(ts.getDefaultLibFilePath({})).split('\\').join('/');
  const options = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
    noEmit: true,
    types: [],
    lib: ['lib.es2023.d.ts'],
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options, true);
  const norm = (f) => resolve(f).split('\\').join('/');
  const outside = (f) => !norm(f).startsWith(`${root.split('\\').join('/')}/`);
  const readable = (f) => byAbs.has(norm(f)) || (outside(f) && norm(f).startsWith(`${libDir}/`) && ts.sys.fileExists(f));
  const getSourceFile = host.getSourceFile.bind(host);
  const rootDir = `${root.split('\\').join('/')}/`;
  host.fileExists = readable;
  // Sources held in memory live in no real directory: module resolution must see their folders.
  host.directoryExists = (d) => {
    const dir = `${norm(d)}/`;
    if (rootDir.startsWith(dir)) return true;
    if (dir.startsWith(rootDir)) return [...byAbs.keys()].some((f) => f.startsWith(dir));
    return ts.sys.directoryExists(d);
  };
  host.realpath = (f) => (outside(f) && ts.sys.realpath ? ts.sys.realpath(f) : f);
  host.readFile = (f) => (byAbs.has(norm(f)) ? byAbs.get(norm(f)).text : readable(f) ? ts.sys.readFile(f) : undefined);
  host.getSourceFile = (f, lang, onError) => {
    const held = byAbs.get(norm(f));
    if (held) return ts.createSourceFile(f, held.text, lang, true, ts.ScriptKind.TS);
    return readable(f) ? getSourceFile(f, lang, onError) : undefined;
  };
  const program = ts.createProgram([...byAbs.keys()], options, host);
  const checker = program.getTypeChecker();
  const pathOf = (node) => byAbs.get(norm(node.getSourceFile().fileName))?.path;
  const lineOf = (node) => node.getSourceFile().getLineAndCharacterOfPosition(node.getStart()).line + 1;
  const sources = program.getSourceFiles().filter((sf) => byAbs.has(norm(sf.fileName)));

  // 1. The file that declares and exports createEnvelope.
  const exported = (node) => (ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Export) !== 0;
  const declaresCreateEnvelope = (sf) =>
    sf.statements.some(
      (s) =>
        ((ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s)) && s.name?.text === 'createEnvelope' && exported(s)) ||
        (ts.isVariableStatement(s) && exported(s) && s.declarationList.declarations.some((d) => ts.isIdentifier(d.name) && d.name.text === 'createEnvelope')) ||
        (ts.isExportDeclaration(s) && !s.moduleSpecifier && s.exportClause && ts.isNamedExports(s.exportClause) && s.exportClause.elements.some((e) => e.name.text === 'createEnvelope')),
    );
  const home = sources.find(declaresCreateEnvelope);
  if (!home) return { found: false, reason: 'no file declares and exports createEnvelope', rooms: 0, roomList: [], path: [], truncated: false, derived: undefined };

  // 2. The seal methods in it: of a class, or of an object literal (method, function-valued property, or shorthand naming a function).
  const starts = [];
  const visitHome = (node) => {
    if (ts.isClassLike(node) || ts.isObjectLiteralExpression(node)) {
      const members = ts.isObjectLiteralExpression(node) ? node.properties : node.members;
      for (const m of members) if (m.name && textOfName(m.name) === 'seal') starts.push(...implementationsOfMember(m));
    }
    ts.forEachChild(node, visitHome);
  };
  visitHome(home);
  if (starts.length === 0) {
    // No class or object with a seal method: any function named seal in that file.
    const visitAny = (node) => {
      if (isFunctionLike(node) && node.body && functionName(node).split('.').pop() === 'seal') starts.push(node);
      ts.forEachChild(node, visitAny);
    };
    visitAny(home);
  }
  if (starts.length === 0) return { found: false, reason: `no seal method in src/${pathOf(home)}`, rooms: 0, roomList: [], path: [], truncated: false, derived: undefined };

  /** The function implementations a member of a class or object literal stands for. */
  function implementationsOfMember(m) {
    if (isFunctionLike(m) && m.body) return [m];
    if ((ts.isPropertyAssignment(m) || ts.isPropertyDeclaration(m)) && m.initializer) return functionsOfExpression(m.initializer, 0);
    if (ts.isShorthandPropertyAssignment(m)) {
      const sym = checker.getShorthandAssignmentValueSymbol(m);
      return sym ? functionsOfSymbol(sym, 0) : [];
    }
    return [];
  }

  /** The functions an expression evaluates to: a function, a name of one, either branch of a conditional, what a factory returns. */
  function functionsOfExpression(expr, depth) {
    if (depth > 4 || !expr) return [];
    while (ts.isParenthesizedExpression(expr) || ts.isAsExpression(expr) || ts.isNonNullExpression(expr) || ts.isSatisfiesExpression(expr)) expr = expr.expression;
    if ((ts.isArrowFunction(expr) || ts.isFunctionExpression(expr)) && expr.body) return [expr];
    if (ts.isConditionalExpression(expr)) return [...functionsOfExpression(expr.whenTrue, depth + 1), ...functionsOfExpression(expr.whenFalse, depth + 1)];
    if (ts.isBinaryExpression(expr) && [ts.SyntaxKind.QuestionQuestionToken, ts.SyntaxKind.BarBarToken].includes(expr.operatorToken.kind))
      return [...functionsOfExpression(expr.left, depth + 1), ...functionsOfExpression(expr.right, depth + 1)];
    if (ts.isIdentifier(expr) || ts.isPropertyAccessExpression(expr)) {
      const sym = symbolAt(ts.isPropertyAccessExpression(expr) ? expr.name : expr);
      return sym ? functionsOfSymbol(sym, depth + 1) : [];
    }
    if (ts.isCallExpression(expr)) {
      // A factory: the functions it returns (`beginSeal: sealStarter(s)`).
      const out = [];
      for (const factory of calleeFunctions(expr, depth + 1)) out.push(...returnedFunctions(factory, depth + 1));
      return out;
    }
    return [];
  }

  function returnedFunctions(fn, depth) {
    if (!ts.isBlock(fn.body)) return functionsOfExpression(fn.body, depth);
    const out = [];
    const visit = (node) => {
      if (isFunctionLike(node) || ts.isClassLike(node)) return;
      if (ts.isReturnStatement(node) && node.expression) out.push(...functionsOfExpression(node.expression, depth));
      ts.forEachChild(node, visit);
    };
    ts.forEachChild(fn.body, visit);
    return out;
  }

  function symbolAt(node) {
    let sym = checker.getSymbolAtLocation(node);
    if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
    return sym;
  }

  /** Classes and object literals that implement an interface (implements, or the literal's contextual type), indexed lazily. */
  let implementers;
  function implementersOf(iface) {
    if (!implementers) {
      implementers = new Map();
      const note = (sym, node) => {
        if (!sym) return;
        if (sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
        (implementers.get(sym) ?? implementers.set(sym, []).get(sym)).push(node);
      };
      const visit = (node) => {
        if (ts.isClassLike(node)) {
          for (const clause of node.heritageClauses ?? []) for (const t of clause.types) note(checker.getSymbolAtLocation(t.expression), node);
        } else if (ts.isObjectLiteralExpression(node)) {
          const type = checker.getContextualType(node);
          const types = type ? (type.isUnionOrIntersection() ? type.types : [type]) : [];
          for (const t of types) note(t.aliasSymbol ?? t.getSymbol(), node);
        }
        ts.forEachChild(node, visit);
      };
      for (const sf of sources) visit(sf);
    }
    return implementers.get(iface) ?? [];
  }

  /** The function implementations a symbol stands for, in src/ only. */
  function functionsOfSymbol(sym, depth) {
    if (depth > 6) return [];
    const out = [];
    for (const d of sym.declarations ?? []) {
      if (!pathOf(d)) continue;
      if (isFunctionLike(d) && d.body) out.push(d);
      else if (ts.isVariableDeclaration(d) && d.initializer) out.push(...functionsOfExpression(d.initializer, depth + 1));
      else if (ts.isPropertyAssignment(d) || ts.isPropertyDeclaration(d) || ts.isShorthandPropertyAssignment(d)) out.push(...implementationsOfMember(d));
      else if (ts.isClassDeclaration(d) || ts.isClassExpression(d)) out.push(...d.members.filter((m) => ts.isConstructorDeclaration(m) && m.body));
      else if ((ts.isMethodSignature(d) || ts.isPropertySignature(d)) && ts.isInterfaceDeclaration(d.parent)) {
        // A member of an interface: the same member of the classes and object literals that implement it.
        const name = textOfName(d.name);
        for (const impl of implementersOf(symbolAt(d.parent.name))) {
          const members = ts.isObjectLiteralExpression(impl) ? impl.properties : impl.members;
          for (const m of members) if (m.name && textOfName(m.name) === name) out.push(...implementationsOfMember(m));
        }
      }
    }
    return out;
  }

  /** The functions a call or `new` reaches. */
  function calleeFunctions(call, depth = 0) {
    let callee = call.expression;
    while (ts.isParenthesizedExpression(callee) || ts.isNonNullExpression(callee)) callee = callee.expression;
    const at = ts.isPropertyAccessExpression(callee) ? callee.name : ts.isElementAccessExpression(callee) ? callee.argumentExpression : callee;
    const sym = symbolAt(at);
    return sym ? functionsOfSymbol(sym, depth) : [];
  }

  /** The symbols a parameter binds: its name, or each name it destructures. */
  function bound(name) {
    if (ts.isIdentifier(name)) {
      const s = checker.getSymbolAtLocation(name);
      return s ? [s] : [];
    }
    return name.elements.flatMap((e) => (ts.isOmittedExpression(e) ? [] : bound(e.name)));
  }

  /**
   * Whether an expression carries the tracked options: the name, a property of it, an object
   * literal holding one (spread, property or shorthand), `x ?? y` / `a ? x : y` of those; with
   * `derived`, also a call (or its await) given one of those (`checkSignal(o.signal)`).
   */
  function carries(expr, tracked) {
    while (ts.isParenthesizedExpression(expr) || ts.isAsExpression(expr) || ts.isNonNullExpression(expr) || ts.isSatisfiesExpression(expr)) expr = expr.expression;
    if (ts.isIdentifier(expr)) {
      const s = checker.getSymbolAtLocation(expr);
      return s !== undefined && tracked.has(s);
    }
    if (ts.isPropertyAccessExpression(expr) || ts.isElementAccessExpression(expr)) return carries(expr.expression, tracked);
    if (ts.isObjectLiteralExpression(expr))
      return expr.properties.some(
        (p) =>
          (ts.isSpreadAssignment(p) && carries(p.expression, tracked)) ||
          (ts.isPropertyAssignment(p) && carries(p.initializer, tracked)) ||
          (ts.isShorthandPropertyAssignment(p) && tracked.has(checker.getShorthandAssignmentValueSymbol(p))),
      );
    if (ts.isBinaryExpression(expr) && [ts.SyntaxKind.QuestionQuestionToken, ts.SyntaxKind.BarBarToken].includes(expr.operatorToken.kind)) return carries(expr.left, tracked);
    if (ts.isConditionalExpression(expr)) return carries(expr.whenTrue, tracked) || carries(expr.whenFalse, tracked);
    if (derived && ts.isAwaitExpression(expr)) return carries(expr.expression, tracked);
    if (derived && (ts.isCallExpression(expr) || ts.isNewExpression(expr))) return (expr.arguments ?? []).some((a) => !ts.isSpreadElement(a) && carries(a, tracked));
    return false;
  }

  /** The calls of a function that pass on the tracked options: [{ target, parameters (indices), call }]. */
  const childrenMemo = new Map();
  function children(fn, paramIndices) {
    const key = `${derived}:${fn.getSourceFile().fileName}:${fn.pos}:${[...paramIndices].sort().join(',')}`;
    if (childrenMemo.has(key)) return childrenMemo.get(key);
    const params = fn.parameters.filter((p) => !(ts.isIdentifier(p.name) && p.name.text === 'this'));
    const tracked = new Set([...paramIndices].flatMap((i) => (params[i] ? bound(params[i].name) : [])));
    // Aliases in the body: `const x = options.y`, `const { a } = options` (to a fixed point).
    const declarations = [];
    const collect = (node) => {
      if (ts.isVariableDeclaration(node) && node.initializer) declarations.push(node);
      ts.forEachChild(node, collect);
    };
    if (fn.body) collect(fn.body);
    for (let grew = true; grew; ) {
      grew = false;
      for (const d of declarations) {
        if (!carries(d.initializer, tracked)) continue;
        for (const s of bound(d.name)) if (!tracked.has(s)) (tracked.add(s), (grew = true));
      }
    }
    const found = new Map();
    const visit = (node) => {
      if ((ts.isCallExpression(node) || ts.isNewExpression(node)) && node.arguments?.length) {
        const indices = [];
        node.arguments.forEach((a, i) => {
          if (!ts.isSpreadElement(a) && carries(a, tracked)) indices.push(i);
        });
        if (indices.length) {
          for (const target of calleeFunctions(node)) {
            const positional = target.parameters.filter((p) => !(ts.isIdentifier(p.name) && p.name.text === 'this'));
            const rest = positional.findIndex((p) => p.dotDotDotToken);
            const mapped = indices.map((i) => (rest >= 0 && i >= rest ? rest : i)).filter((i) => i < positional.length);
            if (!mapped.length) continue;
            const entry = found.get(target) ?? found.set(target, { target, parameters: new Set(), call: node }).get(target);
            for (const i of mapped) entry.parameters.add(i);
          }
        }
      }
      ts.forEachChild(node, visit);
    };
    if (fn.body) visit(fn.body);
    const list = [...found.values()];
    childrenMemo.set(key, list);
    return list;
  }

  const optionsIndex = (fn) => {
    const params = fn.parameters.filter((p) => !(ts.isIdentifier(p.name) && p.name.text === 'this'));
    const named = params.findIndex((p) => (ts.isIdentifier(p.name) && /^o$|options$/i.test(p.name.text)) || (p.type && /Options\b/.test(p.type.getText())));
    return named >= 0 ? named : params.length - 1;
  };

  // 3. Depth-first over the paths, keeping the one through the most distinct rooms (ties: the shorter).
  const step = (fn, via) => ({ file: pathOf(fn), line: lineOf(fn), name: functionName(fn), call: via ? { file: pathOf(via), line: lineOf(via) } : undefined });
  const search = () => {
    let best = { rooms: [], steps: [] };
    let expanded = 0;
    let truncated = false;
    const walk = (fn, indices, steps, seen) => {
      if (++expanded > budget) {
        truncated = true;
        return;
      }
      const rooms = [...new Set(steps.map((s) => roomOf(s.file)))];
      if (rooms.length > best.rooms.length || (rooms.length === best.rooms.length && steps.length < best.steps.length)) best = { rooms, steps };
      if (steps.length >= maxDepth) return;
      for (const { target, parameters, call } of children(fn, indices)) {
        const key = `${target.getSourceFile().fileName}:${target.pos}`;
        if (seen.has(key)) continue;
        seen.add(key);
        walk(target, parameters, [...steps, step(target, call)], seen);
        seen.delete(key);
      }
    };
    for (const start of starts) {
      const i = optionsIndex(start);
      if (i < 0) continue;
      walk(start, new Set([i]), [step(start)], new Set([`${start.getSourceFile().fileName}:${start.pos}`]));
    }
    return { rooms: best.rooms.length, roomList: best.rooms, path: best.steps, truncated };
  };
  derived = false;
  const strict = search();
  derived = true;
  return { found: true, home: pathOf(home), ...strict, derived: search() };
}

// ---------------------------------------------------------------------------------------------
// Everything together

/** All measures over `files` (path under src/ → text; readSources(srcDir) reads them). */
export function analyze(files, { root, sealPath = true, top = 10 } = {}) {
  const present = new Set(Object.keys(files));
  const parsed = Object.entries(files).map(([p, t]) => [p, t, parse(p, t)]);
  const functions = parsed.flatMap(([p, t, sf]) => functionsOf(p, t, sf));
  const edges = parsed.flatMap(([p, t, sf]) => importsOf(p, t, present, sf));
  const rooms = [...new Set([...present].map(roomOf))].sort();
  const view = (runtimeOnly) => {
    const graph = roomGraph(edges, { runtimeOnly, rooms });
    return {
      edges: [...graph.values()].reduce((n, s) => n + s.size, 0),
      circles: circles(graph),
      layers: layers(graph),
      graph: Object.fromEntries([...graph].map(([k, v]) => [k, [...v].sort()])),
    };
  };
  const byLength = [...functions].sort((a, b) => b.lines - a.lines || a.file.localeCompare(b.file) || a.line - b.line);
  const byParams = [...functions].sort((a, b) => b.parameters - a.parameters || b.lines - a.lines || a.file.localeCompare(b.file) || a.line - b.line);
  return {
    files: present.size,
    functions: functions.length,
    rooms,
    longestFunctions: byLength.slice(0, top),
    mostParameters: byParams.slice(0, top),
    overLong: byLength.filter((f) => f.lines > LIMITS.functionLines),
    overParameters: byParams.filter((f) => f.parameters > LIMITS.parameters),
    imports: view(false),
    runtimeImports: view(true),
    sealOptions: sealPath ? sealOptionsPath(files, root ? { root } : {}) : undefined,
  };
}

/** The failures of `--check`: functions over the line limit, over the parameter limit, room circles (type imports included). */
export function violations(report, limits = LIMITS) {
  const out = [];
  for (const f of report.overLong) if (f.lines > limits.functionLines) out.push(`src/${f.file}:${f.line} ${f.name}: ${f.lines} lines (limit ${limits.functionLines})`);
  for (const f of report.overParameters) if (f.parameters > limits.parameters) out.push(`src/${f.file}:${f.line} ${f.name}: ${f.parameters} positional parameters (limit ${limits.parameters})`);
  for (const c of report.imports.circles) out.push(`room circle: ${c.join(' ⇄ ')}`);
  return out;
}
