/**
 * What the runtime offers, probed without a static `node:` import, so that core/ bundles for
 * browsers and edge runtimes unchanged: Node's built-in modules through
 * `process.getBuiltinModule` (Node 20.16+, Deno, Bun) and the environment.
 */
interface ProcessLike {
  getBuiltinModule?: (id: string) => unknown;
  env?: Record<string, string | undefined>;
}

function processLike(): ProcessLike | undefined {
  return (globalThis as { process?: ProcessLike }).process;
}

/** A Node built-in module (`node:crypto`, ...), or undefined where the runtime has none. */
export function builtinModule<T>(id: `node:${string}`): T | undefined {
  try {
    return processLike()?.getBuiltinModule?.(id) as T | undefined;
  } catch {
    return undefined;
  }
}

/** The process environment, or an empty one (browsers). */
export function processEnv(): Record<string, string | undefined> {
  return processLike()?.env ?? {};
}

