#!/usr/bin/env node
/**
 * `node scripts/structure.mjs [--json] [--check] [--src DIR]`: the shape of src/, from the files
 * present (no list of files or rooms is kept here, so it reads any layout).
 *
 * Functions: every function declaration, method, arrow function, function expression,
 * constructor and get/set accessor with a body in src/**\/*.ts. Its length is the lines from the
 * node's first line (its signature, decorators and modifiers, not the comment above it) to its
 * last, both counted. Its positional parameters are all its parameters but TypeScript's `this`;
 * a rest parameter counts as one, and so does a destructured object.
 *
 * Rooms: a file in a folder of src/ belongs to the room of its first folder (src/core/x.ts and
 * src/node/key-stores/y.ts are in core and node); each file at the top of src/ is a room of its
 * own (index.ts, records.ts). An edge A → B: a file of room A imports a file of room B through a
 * relative specifier: `import`, `export ... from`, `import x = require()`, dynamic `import()` and
 * `typeof import()` in a type. Type-only imports are counted; the "without import type" view drops
 * `import type`, `export type ... from` and import() types (`import { type A }` stays: under
 * verbatimModuleSyntax it still loads the module). A circle is a strongly connected component of
 * more than one room. Layers: the number of rooms on the longest chain of rooms each importing
 * the next, i.e. the longest path in the DAG of components (each component counting its rooms),
 * printed importer first.
 *
 * Seal options path (a heuristic, on the type checker of a program made of src/ alone, no
 * packages): start at the `seal` method of the Envelope, found in the file that declares and
 * exports createEnvelope as a member named `seal` of a class or an object literal (a method, a
 * property holding a function, or a shorthand naming one; failing those, any function named seal
 * in that file); its options parameter is the one named `o`/`...options` or typed `...Options`,
 * else the last. Inside a function, the options are the tracked parameter, the names bound by
 * destructuring it, and local variables initialised from a carrying expression; an argument
 * carries the options when it is one of those names, a property of one (`o.signal`), an object
 * literal spreading one (`{ ...o, signal }`), `x ?? y` / `x || y` with x carrying, or a
 * conditional with a carrying branch. Every call or `new` with a carrying argument is followed
 * into the function it reaches (through imports; a variable or property holding a function; the
 * function a factory returns, `beginSeal: sealStarter(s)`; an interface member, to the same
 * member of the classes implementing the interface and the object literals typed as it), with the
 * argument's position mapped onto the callee's parameters, recursively (at most 16 calls deep, no
 * function twice on a path). Functions reached only through a value of a function type (a
 * callback parameter) are not followed; calls inside a callback written in the body are. The
 * measure is the number of distinct rooms on the path through the most rooms (the start's room
 * included; ties: the shorter path); the path is printed. A second search, reported under it,
 * also lets values computed from the options carry them: a call given a carrying argument (or its
 * await), e.g. `const signal = checkSignal(o.signal)`, `canonicalContext(o.context)`; it follows
 * the context and the signal down to the KMS call. Neither is the "9 rooms" of issue 21, whose
 * method is not stated; compare this script's numbers before and after a change.
 *
 * `--check` exits 1 when a function is over 140 lines, takes more than 6 positional parameters,
 * or a room circle exists (type imports included); layers and the seal path are reported, not
 * checked. `--json` prints the whole report as JSON.
 */
import { fileURLToPath } from 'node:url';
import { analyze, LIMITS, readSources, violations } from './structure-lib.mjs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const srcArg = args.indexOf('--src');
const src = srcArg >= 0 ? args[srcArg + 1] : fileURLToPath(new URL('../src/', import.meta.url));

const report = analyze(readSources(src), { root: src });
const failures = violations(report);

if (flag('--json')) {
  console.log(JSON.stringify({ limits: LIMITS, ...report, violations: failures }, null, 2));
} else {
  const out = [];
  const pad = (s, n) => String(s).padStart(n);
  out.push(`src/: ${report.files} files, ${report.functions} functions, ${report.rooms.length} rooms`);
  out.push('', `Longest functions (limit ${LIMITS.functionLines} lines; ${report.overLong.length} over):`);
  for (const f of report.longestFunctions) out.push(`  ${pad(f.lines, 4)}  src/${f.file}:${f.line}  ${f.name}`);
  out.push('', `Most positional parameters (limit ${LIMITS.parameters}; ${report.overParameters.length} over):`);
  for (const f of report.mostParameters) out.push(`  ${pad(f.parameters, 4)}  src/${f.file}:${f.line}  ${f.name}`);
  for (const [title, view] of [
    ['Room import graph (type imports included)', report.imports],
    ['Room import graph without import type', report.runtimeImports],
  ]) {
    out.push('', `${title}: ${report.rooms.length} rooms, ${view.edges} edges`);
    out.push(`  circles: ${view.circles.length}${view.circles.map((c) => `\n    ${c.join(' ⇄ ')}`).join('')}`);
    out.push(`  layers: ${view.layers.count} (limit ${LIMITS.layers}): ${view.layers.chain.join(' → ')}`);
  }
  const seal = report.sealOptions;
  out.push('');
  if (!seal.found) out.push(`Seal options path: not measured (${seal.reason})`);
  else {
    for (const [title, path] of [
      [`Seal options path (from src/${seal.home})`, seal],
      ['  with values computed from them', seal.derived],
    ]) {
      out.push(`${title}: ${path.rooms} rooms (target ≤ ${LIMITS.sealOptionsRooms}): ${path.roomList.join(' → ')}${path.truncated ? ' (search budget hit: a lower bound)' : ''}`);
      for (const s of path.path) out.push(`    src/${s.file}:${s.line}  ${s.name}${s.call ? `  (called at src/${s.call.file}:${s.call.line})` : ''}`);
    }
  }
  if (flag('--check')) {
    out.push('', failures.length ? `check: FAILED (${failures.length})` : 'check: ok');
    for (const f of failures) out.push(`  ${f}`);
  }
  console.log(out.join('\n'));
}
if (flag('--check') && failures.length) process.exitCode = 1;
