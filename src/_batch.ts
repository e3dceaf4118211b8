/**
 * Coalesces calls into batches: items pushed while a flush is in flight go out together in the
 * next one. At idle an item is flushed at once (one microtask later); under load the batch
 * grows by itself, with no timer.
 *
 * @module
 */

interface Pending<T, R> {
  item: T;
  resolve: (value: R) => void;
  reject: (reason: unknown) => void;
}

/** A self-sizing batcher around `flush`, which must return one result per item, in order. */
export class Batcher<T, R> {
  #flush: (items: T[]) => Promise<R[]>;
  #queue: Pending<T, R>[] = [];
  #running = false;
  #idle: PromiseWithResolvers<void> | undefined;

  constructor(flush: (items: T[]) => Promise<R[]>) {
    this.#flush = flush;
  }

  /** Items waiting or in flight. */
  get size(): number {
    return this.#queue.length + (this.#running ? 1 : 0);
  }

  /** Adds an item; resolves with its result once its batch is flushed. */
  push(item: T): Promise<R> {
    const { promise, resolve, reject } = Promise.withResolvers<R>();
    this.#queue.push({ item, resolve, reject });
    if (!this.#running) {
      this.#running = true;
      queueMicrotask(() => this.#drain());
    }
    return promise;
  }

  /** Resolves once nothing is waiting or in flight. */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    this.#idle ??= Promise.withResolvers();
    return this.#idle.promise;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      try {
        const results = await this.#flush(batch.map((p) => p.item));
        batch.forEach((p, i) => p.resolve(results[i]!));
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.#running = false;
    this.#idle?.resolve();
    this.#idle = undefined;
  }
}
