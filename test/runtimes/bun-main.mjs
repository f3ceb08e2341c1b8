// Run by test/runtimes/bun.test.ts as `bun test/runtimes/bun-main.mjs`: the built package as a Bun
// application imports it, the smoke checks, and one JSON line on standard output.
import { readFileSync } from 'node:fs';
import * as lib from '../../dist/index.js';
import { selectBackend } from '../../dist/core/select-backend.js';
import { smoke } from './smoke.mjs';

const vectors = JSON.parse(readFileSync(new URL('../vectors/envelope-v1.json', import.meta.url), 'utf8'));
const result = await smoke(lib, selectBackend, vectors, `Bun ${globalThis.Bun?.version}`);
console.log(JSON.stringify(result));
