// The smoke checks that run inside another runtime (Bun, workerd): plain JavaScript, so that each
// runtime takes it as it is, given the built package (`lib`: its entries kms-envelope, /hierarchy, /records and /sm4 together) and the version-1
// vectors made on Node (test/vectors/envelope-v1.json). Each check reports { name, ok, detail };
// test/runtimes/*.test.ts assert them on the Node side.

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const unhex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
const byteAt = (i) => (i * 31 + (i >>> 14) * 7 + 11) & 0xff;

// The checks' names, in order, are listed in test/runtimes/expected.ts for the Node side.

async function check(name, run) {
  try {
    const detail = await run();
    return { name, ok: true, detail };
  } catch (e) {
    return { name, ok: false, detail: `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}${e?.code ? ` (${e.code})` : ''}` };
  }
}

function expectEqual(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
}

/**
 * Runs every smoke check against `lib` and returns { runtime, backend, checks }; `selectBackend`
 * (dist/core/select-backend.js) tells which crypto backend the runtime gets unasked.
 */
export async function smoke(lib, selectBackend, vectors, runtime) {
  const { createEnvelope, createKeyHierarchy, createRecords, defineTable, LocalKms, MemoryKeyStore, openStream, sealStream, sm4 } = lib;
  const checks = [];

  checks.push(
    await check('record', async () => {
      // A row through the records API: sealed columns, a blind index, a key hierarchy in memory.
      const records = createRecords({ hierarchy: createKeyHierarchy({ store: new MemoryKeyStore(), kms: LocalKms.generate() }) });
      const people = defineTable({
        name: 'people',
        primaryKey: 'id',
        partition: { column: 'tenant' },
        columns: { email: { type: 'string', index: { column: 'email_index', bits: 32, normalize: ['trim', 'casefold'] } }, born: { type: 'date' } },
      });
      const row = { id: 'p1', tenant: 'acme', name: 'Ada', email: 'ada@example.com', born: new Date('1815-12-10') };
      const sealed = await records.seal(people, row);
      if (typeof sealed.email !== 'string' || sealed.email.includes('ada@')) throw new Error('the e-mail was not sealed');
      const opened = await records.open(people, sealed);
      expectEqual(opened.email, row.email, 'opened e-mail');
      expectEqual(opened.born.toISOString(), row.born.toISOString(), 'opened date');
      expectEqual(await records.indexOf(people, 'email', ' ADA@example.com', { partition: 'acme' }), sealed.email_index, 'blind index of a normalised term');
      return `sealed e-mail of ${sealed.email.length} characters`;
    }),
  );

  checks.push(
    await check('message', async () => {
      const envelope = createEnvelope({ kms: LocalKms.generate() });
      const sealed = await envelope.seal(`sealed on ${runtime}`, { context: { runtime } });
      expectEqual(await envelope.openString(sealed, { context: { runtime } }), `sealed on ${runtime}`, 'opened text');
      let refused = 'opened';
      try {
        await envelope.open(sealed, { context: { runtime: 'elsewhere' } });
      } catch (e) {
        refused = e.code;
      }
      expectEqual(refused, 'ERR_CONTEXT_MISMATCH', 'another context');
      return `${sealed.length} bytes`;
    }),
  );

  checks.push(
    await check('stream 16 MiB', async () => {
      // 16 MiB through sealStream and openStream, made piece by piece and counted, never held whole.
      const size = 16 << 20;
      const piece = 100_000; // not a multiple of the 16 KiB chunk
      const envelope = createEnvelope({ kms: LocalKms.generate() });
      let made = 0;
      const source = new ReadableStream({
        pull(controller) {
          if (made >= size) return controller.close();
          const n = Math.min(piece, size - made);
          const bytes = new Uint8Array(n);
          for (let i = 0; i < n; i++) bytes[i] = byteAt(made + i);
          made += n;
          controller.enqueue(bytes);
        },
      });
      let sealedBytes = 0;
      const counted = new TransformStream({
        transform(chunk, controller) {
          sealedBytes += chunk.length;
          controller.enqueue(chunk);
        },
      });
      const reader = source
        .pipeThrough(sealStream(envelope, { context: { file: 'big.bin' } }))
        .pipeThrough(counted)
        .pipeThrough(openStream(envelope, { context: { file: 'big.bin' } }))
        .getReader();
      let count = 0;
      let mismatches = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (let i = 0; i < value.length; i += 997) if (value[i] !== byteAt(count + i)) mismatches++;
        count += value.length;
      }
      expectEqual(count, size, 'plaintext bytes');
      expectEqual(mismatches, 0, 'bytes that differ');
      return `${count} bytes out of ${sealedBytes} sealed`;
    }),
  );

  checks.push(
    await check('vectors made on Node', async () => {
      // Every case of envelope-v1.json: positive ones open to their plaintext, negative ones fail
      // with their code (with the SM4 suite, as on Node: a suite byte changed to 03 fails as recorded).
      const reader = createEnvelope({ kms: new LocalKms({ [vectors.keyId]: unhex(vectors.masterKey) }), suites: [sm4] });
      let opened = 0;
      for (const c of vectors.cases) {
        const openContext = c.openContext === undefined ? (c.detached ? c.context : null) : c.openContext;
        const options = openContext === null ? {} : { context: openContext };
        let outcome;
        try {
          outcome = hex(await reader.open(unhex(c.sealed), options));
        } catch (e) {
          outcome = e.code ?? String(e);
        }
        expectEqual(outcome, c.expect === 'ok' ? c.plaintext : c.expect, c.name);
        opened++;
      }
      return `${opened} cases`;
    }),
  );

  return { runtime, backend: selectBackend().name, checks };
}
