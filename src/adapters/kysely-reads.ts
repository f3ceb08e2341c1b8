/**
 * The reads of the Kysely plugin: which result keys of a query hold which declared table's sealed
 * columns (found by their name or alias in the selection of a SELECT or a RETURNING), and the
 * opening of those columns in the result rows. Values read through a subquery, a CTE or an
 * expression are not opened: they come back sealed.
 */
import type { AliasNode, ColumnNode, OperationNode, QueryResult, ReferenceNode, RootOperationNode, SelectionNode, UnknownRow } from 'kysely';
import type { FieldSpec, Records, SealedRow } from '../records.ts';
import { is, scopeEntry } from './kysely-nodes.ts';
import type { AnyTable } from './kysely-pending.ts';
import { bindingColumns } from './kysely-tables.ts';

export interface OpenPlan {
  table: AnyTable;
  /** Record column (sealed, primary key or partition) -> the key it has in the result rows. */
  keys: Map<string, string>;
}

interface TablePlan extends OpenPlan {
  name: string;
  ref: string;
}

/** The columns a read of the table needs: its sealed columns and those they are bound to. */
const relevant = (table: AnyTable): string[] => [...Object.keys(table.columns), ...bindingColumns(table)];

const selectAll = (plan: TablePlan): void => {
  for (const column of relevant(plan.table)) plan.keys.set(column, column);
};

/** The open plans of a query: the tables in its scope and the selection that reads them. */
export function plansOf(tables: ReadonlyMap<string, AnyTable>, node: RootOperationNode): OpenPlan[] {
  const joined = (joins: readonly { table: OperationNode }[] | undefined): OperationNode[] => (joins ?? []).map((j) => j.table);
  switch (node.kind) {
    case 'InsertQueryNode':
      return node.into ? openPlans(tables, [node.into], node.returning?.selections) : [];
    case 'UpdateQueryNode':
      return node.table ? openPlans(tables, [node.table, ...(node.from?.froms ?? []), ...joined(node.joins)], node.returning?.selections) : [];
    case 'DeleteQueryNode':
      return openPlans(tables, [...node.from.froms, ...joined(node.joins)], node.returning?.selections);
    case 'SelectQueryNode':
      return openPlans(tables, [...(node.from?.froms ?? []), ...joined(node.joins)], node.selections);
    default:
      return [];
  }
}

/** Which result keys hold which declared table's columns, from the scope and the selections. */
function openPlans(tables: ReadonlyMap<string, AnyTable>, scope: readonly OperationNode[], selections: readonly SelectionNode[] | undefined): OpenPlan[] {
  const entries = scope.map(scopeEntry).filter((e): e is { name: string; ref: string } => e !== undefined);
  const plans: TablePlan[] = entries.flatMap((e) => {
    const table = tables.get(e.name);
    return table ? [{ ...e, table, keys: new Map<string, string>() }] : [];
  });
  if (plans.length === 0 || !selections) return [];
  for (const { selection } of selections) planSelection(plans, selection);
  const active = plans.filter((p) => Object.keys(p.table.columns).some((c) => p.keys.has(c)));
  for (const plan of active) {
    const missing = relevant(plan.table).filter((c) => !Object.hasOwn(plan.table.columns, c) && !plan.keys.has(c));
    if (missing.length) {
      throw new TypeError(`kms-envelope/kysely: a query that reads sealed columns of ${plan.name} must select ${missing.join(', ')} too (sealed values are bound to their row and partition)`);
    }
  }
  return active.map(({ table, keys }) => ({ table, keys }));
}

/** Notes the result key of one selected item in the plans of the tables it may come from. */
function planSelection(plans: readonly TablePlan[], selection: OperationNode): void {
  let target: OperationNode = selection;
  let alias: string | undefined;
  if (is<AliasNode>(target, 'AliasNode')) {
    alias = (target.alias as { name?: string }).name;
    target = target.node;
  }
  if (target.kind === 'SelectAllNode') {
    plans.forEach(selectAll);
    return;
  }
  if (!is<ReferenceNode>(target, 'ReferenceNode')) return;
  const qualifier = target.table?.table.identifier.name;
  const owners = plans.filter((p) => qualifier === undefined || p.ref === qualifier);
  if (target.column.kind === 'SelectAllNode') {
    owners.forEach(selectAll);
    return;
  }
  const column = (target.column as ColumnNode).column.name;
  for (const plan of owners) if (relevant(plan.table).includes(column)) plan.keys.set(column, alias ?? column);
}

/** The result with the sealed columns of each plan opened (the first value that fails to open throws). */
export async function openResult(records: Records, found: readonly OpenPlan[], result: QueryResult<UnknownRow>): Promise<QueryResult<UnknownRow>> {
  const rows = result.rows.map((row) => ({ ...row }));
  for (const { table, keys } of found) {
    const inputs = rows.map((row) => {
      const input: Record<string, unknown> = {};
      for (const [column, key] of keys) input[column] = row[key];
      return input;
    });
    const opened = await records.openMany(table, inputs as SealedRow<Record<string, FieldSpec>>[], { failFast: true });
    opened.forEach((r, i) => {
      if (!r.ok) throw r.error;
      for (const column of Object.keys(table.columns)) {
        const key = keys.get(column);
        if (key !== undefined) rows[i]![key] = r.value[column];
      }
    });
  }
  return { ...result, rows };
}
