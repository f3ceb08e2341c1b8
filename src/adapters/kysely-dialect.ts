/**
 * The dialect of the Kysely plugin: the given dialect, its driver's connections sealing every
 * PendingSeal of a compiled query (asynchronously, through the record API) just before the query
 * goes to the database.
 */
import type { CompiledQuery, DatabaseConnection, Dialect, Driver } from 'kysely';
import type { Records } from '../records.ts';
import { PendingSeal } from './kysely-pending.ts';

/** The compiled query with every PendingSeal sealed. */
async function sealParameters(records: Records, query: CompiledQuery): Promise<CompiledQuery> {
  if (!query.parameters.some((p) => p instanceof PendingSeal)) return query;
  const parameters = await Promise.all(query.parameters.map((p) => (p instanceof PendingSeal ? p.seal(records) : p)));
  return { ...query, parameters: Object.freeze(parameters) };
}

function wrapConnection(records: Records, connection: DatabaseConnection): DatabaseConnection {
  return {
    executeQuery: async (query) => connection.executeQuery(await sealParameters(records, query)),
    streamQuery: async function* (query, chunkSize) {
      yield* connection.streamQuery(await sealParameters(records, query), chunkSize);
    },
  };
}

/** The driver, its connections wrapped; a wrapped connection given back to it (releaseConnection) is unwrapped. */
function wrapDriver(records: Records, driver: Driver): Driver {
  const inner = new WeakMap<DatabaseConnection, DatabaseConnection>();
  const unwrap = (arg: unknown): unknown => (typeof arg === 'object' && arg !== null && inner.get(arg as DatabaseConnection)) || arg;
  return new Proxy(driver, {
    get(target, property) {
      if (property === 'acquireConnection') {
        return async () => {
          const connection = await target.acquireConnection();
          const wrapped = wrapConnection(records, connection);
          inner.set(wrapped, connection);
          return wrapped;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (...args: unknown[]) => (value as (...a: unknown[]) => unknown).apply(target, args.map(unwrap)) : value;
    },
  });
}

/** The dialect that seals the marked values before each query runs. */
export function sealingDialect(records: Records, dialect: Dialect): Dialect {
  if (!dialect || typeof dialect.createDriver !== 'function') throw new TypeError('dialect() expected a Kysely dialect');
  return {
    createDriver: () => wrapDriver(records, dialect.createDriver()),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (db) => dialect.createIntrospector(db),
  };
}
