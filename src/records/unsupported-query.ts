/**
 * The error of a query that an ORM adapter cannot run on sealed columns without a silent wrong
 * answer: an operator the database cannot evaluate on ciphertext (ordering, ranges, `contains`),
 * an aggregate, raw SQL naming a sealed column. Kept out of core/errors.ts so that the browser
 * bundle of the main entry does not carry it.
 */
import { EnvelopeError } from '../core/errors.ts';

export class UnsupportedQueryError extends EnvelopeError {
  /** `Model.field` (or the model alone) the query touches. */
  readonly field: string;
  /** The operator, argument or operation refused (`contains`, `orderBy`, `groupBy`, `$queryRaw`). */
  readonly operator: string;
  constructor(field: string, operator: string, why: string) {
    super('ERR_UNSUPPORTED_QUERY', `${field} is sealed: ${operator} is not supported (${why})`);
    this.field = field;
    this.operator = operator;
  }
}
