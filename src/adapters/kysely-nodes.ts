/**
 * Kysely's operation nodes, read by their kind (Kysely's node classes are not loaded), and the
 * few the plugin makes.
 */
import type { AliasNode, ColumnNode, OperationNode, ReferenceNode, TableNode, ValueNode } from 'kysely';

export const is = <N extends OperationNode>(node: OperationNode | undefined, kind: N['kind']): node is N => node?.kind === kind;

export function tableName(node: TableNode): string {
  const { schema, identifier } = node.table;
  return schema ? `${schema.name}.${identifier.name}` : identifier.name;
}

const identifier = (name: string) => ({ kind: 'IdentifierNode', name }) as const;
export const columnNode = (name: string) => ({ kind: 'ColumnNode', column: identifier(name) }) as unknown as ColumnNode;
export const valueNode = (value: unknown) => ({ kind: 'ValueNode', value }) as unknown as ValueNode;
/** SQL text with nodes between its fragments (fragments.length === nodes.length + 1). */
export const rawNode = (sqlFragments: readonly string[], parameters: readonly OperationNode[]) => ({ kind: 'RawNode', sqlFragments, parameters }) as unknown as OperationNode;

export function columnName(node: OperationNode): string | undefined {
  if (is<ColumnNode>(node, 'ColumnNode')) return node.column.name;
  if (is<ReferenceNode>(node, 'ReferenceNode') && is<ColumnNode>(node.column, 'ColumnNode')) return node.column.column.name;
  return undefined;
}

/** A table in a FROM, a JOIN or an UPDATE: its SQL name and the name it is referred to by. */
export function scopeEntry(node: OperationNode): { name: string; ref: string } | undefined {
  if (is<TableNode>(node, 'TableNode')) return { name: tableName(node), ref: node.table.identifier.name };
  if (is<AliasNode>(node, 'AliasNode') && is<TableNode>(node.node, 'TableNode')) {
    const alias = (node.alias as { name?: string }).name;
    return { name: tableName(node.node), ref: alias ?? node.node.table.identifier.name };
  }
  return undefined;
}

/** `column = value` terms joined by AND at the top of a WHERE (what pins a row). */
export function equalities(node: OperationNode | undefined, out: Record<string, unknown> = {}): Record<string, unknown> {
  if (!node) return out;
  if (node.kind === 'WhereNode') return equalities((node as unknown as { where: OperationNode }).where, out);
  if (node.kind === 'ParensNode') return equalities((node as unknown as { node: OperationNode }).node, out);
  if (node.kind === 'AndNode') {
    const and = node as unknown as { left: OperationNode; right: OperationNode };
    equalities(and.left, out);
    return equalities(and.right, out);
  }
  if (node.kind === 'BinaryOperationNode') {
    const op = node as unknown as { leftOperand: OperationNode; operator: { operator?: string }; rightOperand: OperationNode };
    const column = columnName(op.leftOperand);
    if (op.operator.operator === '=' && column !== undefined && is<ValueNode>(op.rightOperand, 'ValueNode') && !op.rightOperand.immediate) {
      out[column] = op.rightOperand.value;
    }
  }
  return out;
}
