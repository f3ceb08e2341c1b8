/**
 * The published declarations, compiled as a consumer compiles them: the packed tarball installed
 * in a project of its own, `skipLibCheck: false` (dist/*.d.ts and the dependencies' declarations
 * are checked too; only TypeScript's own lib files are skipped), strict, with the
 * project's TypeScript and with TypeScript 5.0 (devDependency "typescript-5.0"), and with the
 * module resolutions a consumer uses (NodeNext and bundler).
 *
 * The main entry is for browsers too: its consumer has `"types": []` (no @types/node) and the
 * DOM lib, and hands a sealed message to Blob, crypto.subtle and fetch. The Node entry's consumer
 * has `"types": ["node"]` and no DOM.
 *
 * TypeScript before 5.7 cannot read `Uint8Array<ArrayBuffer>`; it gets dist/ts5.0/ (written by
 * scripts/declarations-ts5.0.mjs in `npm run build`) through the "types@<5.7" export condition,
 * and the test checks which declarations each compiler read.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeConsumer, packOnce, removeDir, ROOT, run, tempDir } from './pack.ts';

const COMPILERS = {
  // The project's own TypeScript (node_modules/.bin/tsc may be either, so name the package).
  current: join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
  'ts5.0': join(ROOT, 'node_modules', 'typescript-5.0', 'bin', 'tsc'),
} as const;

const RESOLUTIONS = {
  nodenext: { module: 'NodeNext', moduleResolution: 'NodeNext' },
  bundler: { module: 'ESNext', moduleResolution: 'Bundler' },
} as const;

const BROWSER_CONSUMER = `
import { createEnvelope, type Envelope, LocalKms, sealStream } from 'kms-envelope';

const context = { table: 'users', row: '42' };
const envelope: Envelope = createEnvelope({ kms: LocalKms.generate() });
const sealed = await envelope.seal('card 4111', { context });
const plain: string = await envelope.openString(sealed, { context });
const bytes: Uint8Array = await envelope.open(sealed, { context });

const blob: Blob = new Blob([sealed], { type: 'application/octet-stream' });
const digest: ArrayBuffer = await crypto.subtle.digest('SHA-256', sealed);
const response: Response = await fetch('https://example.test/upload', { body: sealed, method: 'POST' });

const sealedStream = new Response('hello').body!.pipeThrough(sealStream(envelope, { context }));
const reader: ReadableStreamDefaultReader<Uint8Array> = sealedStream.getReader();
await envelope.close();

export { blob, bytes, digest, plain, reader, response };
`;

const NODE_CONSUMER = `
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createEnvelope, LocalKms, type Envelope } from 'kms-envelope';
import { localKmsFromKeyFile, openFile, sealFile, sealNodeStream, type FileResult } from 'kms-envelope/node';
import { startEmulator } from 'kms-envelope/emulator';
import { createKeyHierarchy, type KeyHierarchy, MemoryKeyStore } from 'kms-envelope/hierarchy';
import { createRecords, defineTable } from 'kms-envelope/records';

const context = { host: 'db1' };
const hierarchy: KeyHierarchy = createKeyHierarchy({ kms: LocalKms.generate(), store: new MemoryKeyStore() });
const customers = defineTable({ name: 'customers', primaryKey: 'id', partition: { column: 'tenant' }, columns: { email: { type: 'string' } } });
const row: { email?: unknown } = await createRecords({ hierarchy }).seal(customers, { id: 1, tenant: 'acme', email: 'a@example.test' });
const envelope: Envelope = createEnvelope({ kms: localKmsFromKeyFile('./local.key', { create: true }) });
const result: FileResult = await sealFile(envelope, 'backup.tar', 'backup.tar.kmse', { context });
await openFile(envelope, 'backup.tar.kmse', 'backup.tar', { context });
await pipeline(createReadStream('a'), sealNodeStream(envelope, { context }), createWriteStream('a.kmse'));
const sealed: Uint8Array = await createEnvelope({ kms: LocalKms.generate() }).seal(Buffer.from('row'));

const emulator = await startEmulator();
const url: string = emulator.url;
await emulator.close();

export { result, row, sealed, url };
`;

interface Case {
  entry: 'browser' | 'node';
  compiler: keyof typeof COMPILERS;
  resolution: keyof typeof RESOLUTIONS;
}

const CASES: Case[] = [];
for (const compiler of Object.keys(COMPILERS) as (keyof typeof COMPILERS)[]) {
  for (const resolution of Object.keys(RESOLUTIONS) as (keyof typeof RESOLUTIONS)[]) CASES.push({ entry: 'browser', compiler, resolution });
  CASES.push({ entry: 'node', compiler, resolution: 'nodenext' });
}

// Two projects: the browser one has no @types/node at all, so a `node:` import or a
// `/// <reference types="node" />` reached from the main entry's declarations fails there.
const dirs: Partial<Record<Case['entry'], string>> = {};

beforeAll(async () => {
  const { tarball } = await packOnce();
  for (const entry of ['browser', 'node'] as const) {
    const dir = (dirs[entry] = tempDir(`types-${entry}`));
    await makeConsumer(dir, tarball, entry === 'node' ? ['@types/node'] : []);
    writeFileSync(join(dir, `${entry}.ts`), entry === 'browser' ? BROWSER_CONSUMER : NODE_CONSUMER);
  }
  for (const { entry, resolution } of CASES) {
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        ...RESOLUTIONS[resolution],
        lib: entry === 'browser' ? ['ES2023', 'DOM'] : ['ES2023'],
        types: entry === 'browser' ? [] : ['node'],
        strict: true,
        skipLibCheck: false,
        // TypeScript's own lib files (lib.dom.d.ts...) are not ours to check; every other
        // declaration file (dist/, the dependencies', @types/node) is checked.
        skipDefaultLibCheck: true,
        noEmit: true,
      },
      files: [`${entry}.ts`],
    };
    writeFileSync(join(dirs[entry]!, `tsconfig.${resolution}.json`), JSON.stringify(tsconfig, null, 2));
  }
}, 120_000);

afterAll(() => {
  removeDir(dirs.browser);
  removeDir(dirs.node);
});

describe('the packed declarations compile in a consumer project', () => {
  // One compiler at a time: the files of the suite already run in parallel on the machine's cores.
  it.each(CASES)('$entry entry, TypeScript $compiler, moduleResolution $resolution', async ({ entry, compiler, resolution }) => {
    const args = [COMPILERS[compiler], '-p', `tsconfig.${resolution}.json`, '--pretty', 'false', '--listFiles'];
    const stdout = await run(process.execPath, args, { cwd: dirs[entry]! }).then(
      (done) => done.stdout,
      (error: { stdout?: string; stderr?: string; message: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}` || error.message,
    );
    // --listFiles prints the program's files (absolute paths) after the diagnostics.
    const lines = stdout.split('\n').filter((line) => line.trim() !== '');
    const diagnostics = lines.filter((line) => !line.startsWith('/')).join('\n');
    expect(diagnostics, `tsc (${compiler}) in a consumer of kms-envelope${entry === 'node' ? '/node' : ''}`).toBe('');
    // Compilers before 5.7 read dist/ts5.0/ (the "types@<5.7" condition), the others dist/.
    const ours = lines.filter((line) => line.includes('/node_modules/kms-envelope/dist/'));
    const old = ours.filter((line) => line.includes('/kms-envelope/dist/ts5.0/'));
    expect(ours.length).toBeGreaterThan(0);
    expect(old.length, 'declarations read from dist/ts5.0/').toBe(compiler === 'ts5.0' ? ours.length : 0);
  }, 120_000);
});
