// Declarations for TypeScript before 5.7, written by `npm run build` after tsc.
//
// TypeScript 5.7 made the typed arrays generic over their buffer (`Uint8Array<ArrayBuffer>`), and
// the declarations in dist/ say `Uint8Array<ArrayBuffer>` where a consumer needs to know the bytes
// are not shared (Blob, fetch and crypto.subtle take only those from 5.7 on). An older compiler
// reads that as "Type 'Uint8Array' is not generic" (TS2315). So dist/ts5.0/ holds a copy of every
// dist/**/*.d.ts with the buffer argument dropped, the same types as a compiler before 5.7 knew
// them; package.json serves it to those compilers through the "types@<5.7" export condition and
// typesVersions "<5.7". test/package/types.test.ts compiles a consumer with TypeScript 5.0.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const out = join(dist, 'ts5.0');

const TYPED = 'Uint8Array|Uint8ClampedArray|Uint16Array|Uint32Array|Int8Array|Int16Array|Int32Array|Float32Array|Float64Array|BigInt64Array|BigUint64Array|DataView|ArrayBufferView|Buffer';
const BUFFER = 'ArrayBuffer|ArrayBufferLike|SharedArrayBuffer';
const GENERIC_BUFFER = new RegExp(`\\b(${TYPED})<\\s*(?:${BUFFER})\\s*>`, 'g');

function* declarations(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (path !== out) yield* declarations(path);
    } else if (entry.name.endsWith('.d.ts')) {
      yield path;
    }
  }
}

rmSync(out, { recursive: true, force: true });
let files = 0;
for (const path of declarations(dist)) {
  const text = readFileSync(path, 'utf8');
  const old = text.replace(GENERIC_BUFFER, '$1');
  const target = join(out, relative(dist, path));
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, old);
  files += 1;
}
if (files === 0) throw new Error(`no declarations under ${dist}: run tsc first`);
