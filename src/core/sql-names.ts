// SQL names checked and quoted: shared by the SQL key stores (hierarchy/) and the sweep drivers (records/).

/**
 * A table name: `name` or `schema.name`, each part a plain SQL identifier, returned quoted. The
 * name is spliced into SQL text (identifiers cannot be bound as parameters), hence the strict check.
 */
export function quoteTableName(name: string): string {
  const part = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
  const parts = typeof name === 'string' ? name.split('.') : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => part.test(p))) {
    throw new TypeError(`"table" expected an SQL identifier (letters, digits, _; optionally schema.table), got ${JSON.stringify(name)}`);
  }
  return parts.map((p) => `"${p}"`).join('.');
}
