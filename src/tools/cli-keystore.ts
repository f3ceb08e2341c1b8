/**
 * `kms-envelope key-store export|import|rotate|retire|shred` on a JSON, PostgreSQL or SQLite key
 * store (cli-store.ts). export/import: a backup as JSON, wrapped keys only (exportKeyStore /
 * importKeyStore), no KMS call; import creates the records the store lacks and never overwrites
 * one that differs (a conflict, exit 4). rotate, retire and shred go through a key hierarchy.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createKeyHierarchy, exportKeyStore, importKeyStore, type KeyHierarchy, type VersionCensus } from '../hierarchy.ts';
import type { KeyProvider } from '../index.ts';
import { writeAtomically } from '../node.ts';
import { EXIT, printable, safeJson, UsageError } from './cli-errors.ts';
import { openKeyStore, type OpenedStore, STORE_HELP, type StoreFlags, storeOptions } from './cli-store.ts';

export const KEY_STORE_HELP = (providerHelp: string, exitTable: string) => `Usage: kms-envelope key-store export STORE [-o OUT] [--force] [--partition P ...]
       kms-envelope key-store import STORE [--create] IN
       kms-envelope key-store rotate STORE --partition P [--partition P ...]
       kms-envelope key-store retire STORE --partition P --version N --census TABLE:COLUMN[,COLUMN...] [--census-partition-column C]
       kms-envelope key-store shred  STORE --partition P --yes [--master-key ID [--delete-after-days N]]

export writes the key store as JSON to OUT (default: standard output): the wrapped intermediate
keys only, as safe to keep as the sealed data and useless without the KMS master keys. import adds
the records of the export IN that the store lacks; a record it holds with another wrapped key is
left as it is and reported (exit 4); --create makes the store (file or table) if it does not exist.
Check a restored store with 'kms-envelope verify'. A backup keeps a shredded tenant's wrapped keys:
see README "Crypto-shredding".

rotate adds a new active key version to each partition (one GenerateDataKey each); retire deletes
an old version's wrapped key once no sealed value names it (hierarchy.retire); shred deletes a
tenant's keys for good, with its blind-index partitions, leaving a tombstone (--yes to confirm;
--master-key also disables the tenant's own master key, --delete-after-days schedules its deletion).

${STORE_HELP}
  --partition P          the partition (tenant); for export, repeat to export only these
  --version N            the key version (retire)
  -o, --output OUT       where export writes (atomically)
  -f, --force            replace an existing OUT

${providerHelp}

${exitTable}`;

export interface KeyStoreDeps {
  provider(flags: Record<string, unknown>, sealing: boolean): KeyProvider;
  providerOptions: Record<string, { type: 'string' }>;
  help(): number;
}

type Values = StoreFlags & {
  partition?: string[] | undefined;
  version?: string | undefined;
  output?: string | undefined;
  force?: boolean | undefined;
  create?: boolean | undefined;
  'master-key'?: string | undefined;
  'delete-after-days'?: string | undefined;
  census?: string[] | undefined;
  'census-partition-column'?: string | undefined;
};

export async function keyStoreCommand(args: string[], deps: KeyStoreDeps): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...deps.providerOptions,
      ...storeOptions,
      partition: { type: 'string', multiple: true },
      version: { type: 'string' },
      output: { type: 'string', short: 'o' },
      force: { type: 'boolean', short: 'f' },
      create: { type: 'boolean' },
      yes: { type: 'boolean' },
      'master-key': { type: 'string' },
      census: { type: 'string', multiple: true },
      'census-partition-column': { type: 'string' },
      'delete-after-days': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return deps.help();
  const [action, ...files] = positionals;
  if (action === 'export' || action === 'import') return backup(action, files, values);
  if (action !== 'rotate' && action !== 'retire' && action !== 'shred') throw new UsageError('key-store needs export, import, rotate, retire or shred');
  if (files.length > 0) throw new UsageError(`key-store ${action} takes no file arguments, got "${printable(files[0]!)}"`);
  if (!values.partition?.length) throw new UsageError(`key-store ${action} needs --partition P`);
  if (action === 'shred' && !values.yes) throw new UsageError(`key-store shred deletes the keys of ${printable(values.partition.join(', '))} for good: add --yes to confirm`);
  const opened = await openKeyStore(values, `key-store ${action}`);
  const hierarchy = createKeyHierarchy({ store: opened.store, kms: deps.provider(values, action === 'rotate') });
  try {
    if (action === 'rotate') return await rotate(hierarchy, values.partition);
    if (action === 'retire') return await retire(hierarchy, values, opened);
    return await shred(hierarchy, values);
  } finally {
    await hierarchy.close();
    await opened.close();
  }
}

async function backup(action: 'export' | 'import', files: string[], values: Values): Promise<number> {
  if (action === 'export' && files.length > 0) throw new UsageError(`key-store export takes no file arguments (use -o OUT), got "${printable(files[0]!)}"`);
  if (action === 'import' && files.length !== 1) throw new UsageError('key-store import takes one export file');
  let text: string | undefined;
  if (action === 'import') {
    try {
      text = await readFile(files[0]!, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${printable(files[0]!)}: ${(error as Error).message}`);
    }
  }
  const opened = await openKeyStore(values, `key-store ${action}`, action === 'import' && values.create === true);
  try {
    return text === undefined ? await exportTo(opened, values) : await importFrom(opened, text, files[0]!);
  } finally {
    await opened.close();
  }
}

async function exportTo(opened: OpenedStore, values: Values): Promise<number> {
  const text = `${JSON.stringify(await exportKeyStore(opened.store, values.partition ? { partitions: values.partition } : {}), null, 2)}\n`;
  const output = values.output;
  if (output) await writeAtomically(output, { overwrite: values.force === true, mode: 0o600 }, (write) => write(Buffer.from(text)));
  else process.stdout.write(text);
  return EXIT.ok;
}

async function importFrom(opened: OpenedStore, text: string, file: string): Promise<number> {
  let result;
  try {
    result = await importKeyStore(opened.store, text);
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(`${printable(file)}: ${error.message}`);
    throw error;
  }
  console.log(safeJson(result));
  return result.conflicts.length === 0 ? EXIT.ok : EXIT.io;
}

async function rotate(hierarchy: KeyHierarchy, partitions: string[]): Promise<number> {
  for (const partition of partitions) {
    const key = await hierarchy.rotate(partition);
    console.log(`rotated ${printable(partition)}: version ${key.version} is active (master key ${printable(key.keyId)})`);
  }
  return EXIT.ok;
}

/** hierarchy.retire(partition, version), from the tenant-lifecycle work; a build without it says so. */
/** The tables `--census TABLE:COLUMN[,COLUMN…]` names, read through the store's own database. */
function censusesOf(values: Values, opened: OpenedStore): VersionCensus[] {
  const specs = values.census ?? [];
  if (specs.length === 0) {
    throw new UsageError('key-store retire needs --census TABLE:COLUMN[,COLUMN...] for every table holding values of the partition (and --census-partition-column C when the table holds several partitions): the values\' headers are read, never a marker column');
  }
  if (!opened.census) throw new UsageError('key-store retire reads the values in the key store\'s database: give the store as a PostgreSQL or SQLite URL (a JSON store has no tables to read)');
  return specs.map((spec) => {
    const [sqlTable, columns] = spec.split(':');
    if (!sqlTable || !columns) throw new UsageError(`--census expected TABLE:COLUMN[,COLUMN...], got "${printable(spec)}"`);
    return opened.census!({ sqlTable, columns: columns.split(',').filter(Boolean), partitionColumn: values['census-partition-column'] });
  });
}

async function retire(hierarchy: KeyHierarchy, values: Values, opened: OpenedStore): Promise<number> {
  if (values.partition!.length !== 1) throw new UsageError('key-store retire takes one --partition');
  const version = Number(values.version);
  if (values.version === undefined || !Number.isSafeInteger(version) || version < 1) throw new UsageError(`key-store retire needs --version N (a key version, 1 or more), got "${printable(values.version ?? '')}"`);
  const census = censusesOf(values, opened);
  const report = await hierarchy.retire(values.partition![0]!, version, { census });
  console.log(safeJson(report));
  return EXIT.ok;
}

async function shred(hierarchy: KeyHierarchy, values: Values): Promise<number> {
  const days = values['delete-after-days'] === undefined ? undefined : Number(values['delete-after-days']);
  if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw new UsageError(`--delete-after-days must be a whole number of days, got "${printable(values['delete-after-days'] ?? '')}"`);
  if (days !== undefined && values['master-key'] === undefined) throw new UsageError('--delete-after-days goes with --master-key');
  const options = { ...(values['master-key'] ? { masterKey: values['master-key'] } : {}), ...(days !== undefined ? { deleteAfterDays: days } : {}) };
  for (const partition of values.partition!) console.log(safeJson({ partition, ...(await hierarchy.shred(partition, options)) }));
  return EXIT.ok;
}
