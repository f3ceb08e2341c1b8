/**
 * `kms-envelope key-store export|import`: a backup of a key store (the JSON file store) as JSON,
 * wrapped keys only (exportKeyStore / importKeyStore). No KMS call: an export opens nothing
 * without the KMS master keys. Import creates the records the store lacks and never overwrites
 * one that differs (a conflict, exit 4).
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { exportKeyStore, importKeyStore } from '../hierarchy.ts';
import { JsonFileKeyStore, writeAtomically } from '../node.ts';
import { EXIT, printable, safeJson, UsageError } from './cli-errors.ts';

export const KEY_STORE_HELP = (exitTable: string) => `Usage: kms-envelope key-store export --store FILE [-o OUT] [--force] [--partition P ...]
       kms-envelope key-store import --store FILE IN

export writes the key store FILE (a JsonFileKeyStore) as JSON to OUT (default: standard output):
the wrapped intermediate keys only, as safe to keep as the sealed data and useless without the KMS
master keys. import adds the records of the export IN that FILE lacks; a record that FILE holds
with another wrapped key is left as it is and reported (exit 4). Check a restored store with
'kms-envelope verify --store FILE'. A backup keeps a shredded tenant's wrapped keys: see README
"Crypto-shredding".

  --store FILE           the key store (required)
  --partition P          export only this partition; repeat for more (default: every partition)
  -o, --output OUT       where export writes (atomically)
  -f, --force            replace an existing OUT

${exitTable}`;

export async function keyStoreCommand(args: string[], help: () => number): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      store: { type: 'string' },
      partition: { type: 'string', multiple: true },
      output: { type: 'string', short: 'o' },
      force: { type: 'boolean', short: 'f' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return help();
  const [action, ...files] = positionals;
  if (action !== 'export' && action !== 'import') throw new UsageError('key-store needs "export" or "import"');
  if (!values.store) throw new UsageError(`key-store ${action} needs --store FILE (the key store)`);
  const store = new JsonFileKeyStore(values.store);
  if (action === 'export') {
    if (files.length > 0) throw new UsageError(`key-store export takes no file arguments (use -o OUT), got "${printable(files[0]!)}"`);
    const text = `${JSON.stringify(await exportKeyStore(store, values.partition ? { partitions: values.partition } : {}), null, 2)}\n`;
    if (values.output) await writeAtomically(values.output, { overwrite: values.force ?? false, mode: 0o600 }, (write) => write(Buffer.from(text)));
    else process.stdout.write(text);
    return EXIT.ok;
  }
  if (files.length !== 1) throw new UsageError('key-store import takes one export file');
  let text: string;
  try {
    text = await readFile(files[0]!, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${printable(files[0]!)}: ${(error as Error).message}`);
  }
  let result;
  try {
    result = await importKeyStore(store, text);
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(`${printable(files[0]!)}: ${error.message}`);
    throw error;
  }
  console.log(safeJson(result));
  return result.conflicts.length === 0 ? EXIT.ok : EXIT.io;
}
