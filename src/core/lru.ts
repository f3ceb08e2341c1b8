/**
 * Entries in least-recently-used order, for the caches: a Map keeps insertion order, so using an
 * entry moves it to the end and the oldest is first. Moving costs a delete and a set, skipped
 * when the entry used is already the most recent (the common case of one hot key).
 */
export class Lru<V> {
  readonly #entries = new Map<string, V>();
  #mostRecent: V | undefined;

  get size(): number {
    return this.#entries.size;
  }

  /** The entry, without marking it used. */
  peek(key: string): V | undefined {
    return this.#entries.get(key);
  }

  /** Marks the entry under `key` (which must be `value`) as the most recently used. */
  touch(key: string, value: V): void {
    if (this.#mostRecent === value) return;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    this.#mostRecent = value;
  }

  /** Adds or replaces, as the most recently used. */
  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    this.#mostRecent = value;
  }

  delete(key: string): void {
    const value = this.#entries.get(key);
    this.#entries.delete(key);
    if (value !== undefined && value === this.#mostRecent) this.#mostRecent = undefined;
  }

  /** The least recently used entry. */
  oldest(): [string, V] | undefined {
    return this.#entries.entries().next().value;
  }

  entries(): IterableIterator<[string, V]> {
    return this.#entries.entries();
  }
}
