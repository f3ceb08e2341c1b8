/**
 * The listeners of a key hierarchy or a record set (kept out of events.ts, which the main entry
 * bundles: an application that never listens never ships this).
 */
/** Listeners of a hierarchy: each called in turn, none letting its failure reach the operation. */
export class Listeners<E> {
  readonly #list = new Set<(event: E) => void>();

  get size(): number {
    return this.#list.size;
  }

  add(listener: (event: E) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('"listener" expected a function');
    this.#list.add(listener);
    return () => void this.#list.delete(listener);
  }

  readonly emit = (event: E): void => {
    for (const listener of this.#list) {
      try {
        listener(event);
      } catch {
        // A listener must not break encryption.
      }
    }
  };
}
