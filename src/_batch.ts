/**
 * Coalesces calls into batches: items pushed while flushes are in flight go out together in
 * the next one. At idle an item is flushed at once (one microtask later); under load the batch
 * grows by itself, with no timer. Up to `lanes` flushes may be in flight at once, so the far
 * side works on one batch while the next one fills.
 *
 * @module
 */

/** Microtasks a batch waits for work under way that has stopped moving, before it goes. */
const STILL_HOPS = 32;
/** Microtasks a batch waits at most, however busy the work under way: it never starves. */
const MAX_HOPS = 4_096;

/** A self-sizing batcher around `flush`, which must return one result per item, in order. */
export class Batcher<T, R> {
  #flush: (items: T[]) => Promise<R[]>;
  #lanes: number;
  #most: number;
  #coming: () => number;
  /** Items waiting for a batch, and beside each, its caller's promise (two arrays: no object
   * per item). */
  #items: T[] = [];
  #waits: PromiseWithResolvers<R>[] = [];
  #inFlight = 0;
  #scheduled = false;
  #idle: PromiseWithResolvers<void> | undefined;

  /**
   * @param flush Sends a batch; one result per item, in order.
   * @param lanes The most flushes under way at once.
   * @param most The most items per batch.
   * @param coming How much work is under way that will push items soon; a batch waits for it
   * while it moves.
   */
  constructor(
    flush: (items: T[]) => Promise<R[]>,
    lanes = 1,
    most = Infinity,
    coming: () => number = () => 0,
  ) {
    this.#flush = flush;
    this.#lanes = lanes;
    this.#most = most;
    this.#coming = coming;
  }

  /** The most items per batch, from the next batch on. */
  set most(most: number) {
    this.#most = most;
  }

  /** Items waiting, plus flushes in flight. */
  get size(): number {
    return this.#items.length + this.#inFlight;
  }

  /** Adds an item; resolves with its result once its batch is flushed. */
  push(item: T): Promise<R> {
    const wait = Promise.withResolvers<R>();
    this.#items.push(item);
    this.#waits.push(wait);
    this.#schedule();
    return wait.promise;
  }

  /** Resolves once nothing is waiting or in flight. */
  idle(): Promise<void> {
    if (this.#inFlight === 0 && this.#items.length === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers();
    return this.#idle.promise;
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#lanes) return;
    this.#scheduled = true;
    // While the caller reports work under way that will add items soon (jobs being handed out
    // to run), wait for it a few microtasks at a time rather than send a batch of one; give up
    // waiting as soon as that work stops moving.
    let last = this.#coming(), still = 0, hops = 0;
    const hop = () => {
      const coming = this.#coming();
      if (this.#items.length < this.#most && coming > 0 && ++hops < MAX_HOPS) {
        if (coming !== last) {
          last = coming;
          still = 0;
        }
        if (++still < STILL_HOPS) return queueMicrotask(hop);
      }
      this.#scheduled = false;
      this.#start();
    };
    queueMicrotask(hop);
  }

  #start(): void {
    if (this.#items.length === 0 || this.#inFlight >= this.#lanes) return;
    let items = this.#items, waits = this.#waits;
    if (items.length > this.#most) {
      this.#items = items.slice(this.#most);
      this.#waits = waits.slice(this.#most);
      items = items.slice(0, this.#most);
      waits = waits.slice(0, this.#most);
    } else {
      this.#items = [];
      this.#waits = [];
    }
    this.#inFlight++;
    if (this.#items.length > 0) this.#schedule();
    this.#flush(items).then(
      (results) => {
        for (let i = 0; i < waits.length; i++) waits[i]!.resolve(results[i]!);
      },
      (err) => {
        for (const wait of waits) wait.reject(err);
      },
    ).finally(() => {
      this.#inFlight--;
      while (this.#items.length > 0 && this.#inFlight < this.#lanes) this.#start();
      if (this.#inFlight === 0) {
        this.#idle?.resolve();
        this.#idle = undefined;
      }
    });
  }
}
