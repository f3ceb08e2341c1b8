// Run by test/runtimes/bun.test.ts as `bun test/runtimes/bun-main.mjs`: the built package as a Bun
// application imports it, the smoke checks, and one JSON line on standard output.
import { readFileSync } from 'node:fs';
// Through the package's own "exports" (a self-reference), as an application's import resolves it:
// Bun takes the `node` condition, so the main entry provides the node:crypto backend.
import * as main from 'kms-envelope';
import * as hierarchy from 'kms-envelope/hierarchy';
import * as records from 'kms-envelope/records';
import { sm4 } from 'kms-envelope/sm4';
import { selectBackend } from '../../dist/core/select-backend.js';
import { smoke } from './smoke.mjs';

const vectors = JSON.parse(readFileSync(new URL('../vectors/envelope-v1.json', import.meta.url), 'utf8'));
const result = await smoke({ ...main, ...hierarchy, ...records, sm4 }, selectBackend, vectors, `Bun ${globalThis.Bun?.version}`);
console.log(JSON.stringify(result));
