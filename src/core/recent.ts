/**
 * A few recent items, most recent first, searched in order: the memo of parsed headers and of
 * decrypt-cache ids. A reader mostly sees what it saw last (every message under one cached data
 * key has the same header), so the search usually stops at the first item.
 */
export class RecentList<T> {
  readonly #items: T[] = [];
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** The first item that matches, moved to the front; undefined when none does. */
  find(match: (item: T) => boolean): T | undefined {
    const items = this.#items;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (!match(item)) continue;
      if (i > 0) {
        items.splice(i, 1);
        items.unshift(item);
      }
      return item;
    }
    return undefined;
  }

  /** Adds an item at the front, dropping the oldest beyond capacity. */
  add(item: T): void {
    this.#items.unshift(item);
    if (this.#items.length > this.#capacity) this.#items.pop();
  }
}
