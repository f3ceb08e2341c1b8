/**
 * Raw SQL through a client with the extension: refused when it names a sealed column (by its SQL
 * name, as a whole word), since the extension cannot seal what it writes nor open what it reads.
 * Run raw SQL that needs sealed values on the client without the extension, and seal or open
 * them with the record API.
 */
import { isObject, type Models, refuse } from './prisma-models.ts';

/** The SQL text of a raw operation's arguments: a tagged template, an Sql object, a string, or a TypedSQL. */
function sqlText(args: unknown): string {
  if (typeof args === 'string') return args;
  if (Array.isArray(args)) return args.map(sqlText).join(' ');
  if (isObject(args)) {
    const parts = [args.strings, args.sql, args.text, args.query].filter((p) => p !== undefined);
    return parts.map(sqlText).join(' ');
  }
  return '';
}

export function refuseRaw(models: Models, operation: string, args: unknown): void {
  if (!operation.startsWith('$') && !operation.endsWith('Raw')) return;
  const text = sqlText(args).toLowerCase();
  for (const name of models.sealedSqlNames()) {
    if (new RegExp(`(^|[^a-z0-9_$])${name.toLowerCase().replace(/[^a-z0-9_]/g, '\\$&')}($|[^a-z0-9_$])`).test(text)) {
      refuse('raw SQL', name, operation, 'it names a sealed column, which the extension can neither seal nor open there');
    }
  }
}
