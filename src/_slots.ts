/**
 * A counting semaphore with a synchronous fast path: what bounds concurrency in `pool()` and in
 * a Worker. Taking a free slot costs no promise; only a full set makes a waiter.
 *
 * @module
 */

/** `size` slots; take one before work starts, give it back when it ends. */
export class Slots {
  /** How many slots there are. */
  readonly size: number;
  #used = 0;
  #waiter: PromiseWithResolvers<void> | undefined;

  /** @param size How many slots; at least 1. */
  constructor(size: number) {
    this.size = size;
  }

  /** How many slots are taken. */
  get used(): number {
    return this.#used;
  }

  /** Takes a slot if one is free, at once. */
  tryTake(): boolean {
    if (this.#used >= this.size) return false;
    this.#used++;
    return true;
  }

  /** Gives a slot back. */
  give(): void {
    this.#used--;
    this.wake();
  }

  /** Resolves when a slot is given back (or `wake()` is called): then try again. */
  freed(): Promise<void> {
    this.#waiter ??= Promise.withResolvers();
    return this.#waiter.promise;
  }

  /** Wakes whoever waits in `freed()`, without giving a slot back (to stop a loop, say). */
  wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve();
  }
}
