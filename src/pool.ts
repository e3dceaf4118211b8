/**
 * A bounded concurrency pool as a `WritableStream`: pipe jobs in, and at most `concurrency`
 * handlers run at once. A write resolves when its handler has started, so a full pool pushes
 * back on whatever is piped into it.
 *
 * @module
 */

import { checkInt } from "./_options.ts";
import { Slots } from "./_slots.ts";

/** Options of {@linkcode pool}. */
export interface PoolOptions {
  /**
   * The most handlers running at once.
   *
   * @default {1}
   */
  concurrency?: number;
  /**
   * Called with whatever a handler throws; the pool keeps going.
   *
   * @default {logs with console.error}
   */
  onError?: (error: unknown, item: unknown) => void;
}

/** A pool: a `WritableStream` that runs a handler per item, with observable state. */
export class Pool<T> extends WritableStream<T> {
  #state: PoolState<T>;

  /**
   * Makes a pool; {@linkcode pool} is the same, as a function.
   *
   * @param handler Runs one item.
   * @param options The concurrency bound and the error callback.
   * @throws {RangeError} If concurrency is not an integer from 1 to 100,000.
   */
  constructor(handler: (item: T) => unknown, options: PoolOptions = {}) {
    const state = new PoolState(handler, options);
    super({
      write: (item) => state.write(item),
      close: () => state.idle(),
    });
    this.#state = state;
  }

  /** How many handlers are running now. */
  get running(): number {
    return this.#state.running.size;
  }

  /** Resolves once no handler is running. */
  idle(): Promise<void> {
    return this.#state.idle();
  }
}

class PoolState<T> {
  readonly running = new Set<Promise<void>>();
  #slots: Slots;
  #handler: (item: T) => unknown;
  #onError: (error: unknown, item: unknown) => void;

  constructor(handler: (item: T) => unknown, options: PoolOptions) {
    const {
      concurrency = 1,
      // deno-lint-ignore no-console
      onError = (error) => console.error("sluice: pool handler failed:", error),
    } = options;
    checkInt("Cannot create pool", "concurrency", concurrency, 1, 100_000);
    if (typeof handler !== "function") {
      throw new TypeError(`Cannot create pool: handler must be a function, got ${handler}`);
    }
    this.#slots = new Slots(concurrency);
    this.#handler = handler;
    this.#onError = onError;
  }

  async write(item: T): Promise<void> {
    while (!this.#slots.tryTake()) await this.#slots.freed();
    const run = (async () => {
      try {
        await this.#handler(item);
      } catch (err) {
        try {
          this.#onError(err, item);
        } catch {
          // A failing error callback must not take the pool down with an unhandled rejection.
        }
      }
    })();
    this.running.add(run);
    run.finally(() => {
      this.running.delete(run);
      this.#slots.give();
    });
  }

  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
  }
}

/**
 * Makes a pool: a `WritableStream<T>` that runs `handler` for each item written, at most
 * `concurrency` at once. Pipe `queue.consume()` into it; its backpressure stops the reads.
 *
 * @param handler Runs one item. What it throws goes to `onError`.
 * @param options The concurrency bound.
 * @returns A writable stream that is also a {@linkcode Pool}.
 * @throws {RangeError} If concurrency is out of range.
 *
 * @example Run at most two at once
 * ```ts
 * import { pool } from "@sluice/sluice";
 * let running = 0, most = 0;
 * const sink = pool(async (n: number) => {
 *   most = Math.max(most, ++running);
 *   await new Promise((resolve) => setTimeout(resolve, n));
 *   running--;
 * }, { concurrency: 2 });
 * await ReadableStream.from([5, 1, 3, 2]).pipeTo(sink);
 * console.log(most); // 2
 * ```
 */
export function pool<T>(handler: (item: T) => unknown, options: PoolOptions = {}): Pool<T> {
  return new Pool(handler, options);
}
