/**
 * The room a consumer may read into, and how big its window is: every counter behind
 * `reserve()`/`free()`, the adaptive size, and which prefetched jobs to give back. Pure: no
 * Redis, no timers, so it is tested alone.
 *
 * @module
 */

/** An adaptive window holds about this many ms of work beyond what runs. */
export const ADAPT_TARGET_MS = 5;
/** The shortest time (ms) over which an adaptive window measures the rate of settles. */
export const ADAPT_EVERY_MS = 10;
/** How often (ms) an adaptive window is measured when settles are rare (jobs turned slow). */
export const ADAPT_CHECK_MS = 100;
/** Prefetched jobs that would take longer than this (ms) to start are given back. */
export const ADAPT_DRAIN_MS = 1_000;

/** A measurement: the rate of ended jobs (per ms), and the limit it sets. */
export interface Resize {
  readonly limit: number;
  readonly rate: number;
  /** The limit moved. */
  readonly changed: boolean;
  /** The limit moved down. */
  readonly shrank: boolean;
}

/**
 * A consumer's window. Room is `limit − held − burying − requested`: jobs held (read and not
 * yet settled) are counted by the caller, the rest here.
 *
 * - `requested`: entries asked for by reads (or reclaims) in flight, and entries read but not
 *   yet held (checks under way): room they may fill;
 * - `burying`: entries being dead-lettered;
 * - `settling`: held jobs that settle calls under way end for certain (acks). Redis runs the
 *   read pipelined behind a settle after it, so that read may fill this room too.
 */
export class Window {
  /** The most jobs held at once now. */
  limit: number;
  requested = 0;
  burying = 0;
  settling = 0;
  #adapt: { base: number; min: number; max: number; since: number; ended: number } | undefined;

  /** @param limit The exact window, until `adapt()` lets it follow the work. */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** True once `adapt()` was called. */
  get adaptive(): boolean {
    return this.#adapt !== undefined;
  }

  /** Free room, with `held` jobs held. May be negative when the window just shrank. */
  room(held: number): number {
    return this.limit - held - this.burying - this.requested;
  }

  /**
   * The room a blocking read may fill. An adaptive window grows only through the reads behind
   * settles, which follow the measured rate; a blocking read (the stream was empty, or we are
   * starting) knows nothing of the jobs it will get, so it fills no more than the base window:
   * after a burst of fast jobs, a worker waiting on an empty stream must not take a pile of
   * slow ones.
   */
  readRoom(held: number): number {
    const room = this.room(held);
    const adapt = this.#adapt;
    if (adapt === undefined) return room;
    return Math.min(room, room - this.limit + adapt.base + adapt.min);
  }

  /** The room a read pipelined behind a settle may fill: free room plus what the settle frees. */
  settleRoom(held: number): number {
    return Math.max(0, this.room(held) + this.settling);
  }

  /** Takes `n` of the room for a read or a reclaim under way. */
  reserve(n: number): void {
    this.requested += n;
  }

  /** Gives back room taken by `reserve(n)`: the entries came back held, or not at all. */
  free(n: number): void {
    this.requested -= n;
  }

  /**
   * Lets the window follow the work: `base` plus enough jobs for about ADAPT_TARGET_MS of work
   * at the rate jobs end, kept from `min` to `max`. Fast jobs then travel in big batches (fewer
   * round trips per job), while slow jobs are never hoarded: at their rate the window stays at
   * `base + min`.
   */
  adapt(base: number, min: number, max: number, now: number): void {
    this.#adapt = { base, min, max, since: now, ended: 0 };
    this.limit = base + min;
  }

  /**
   * Counts `n` jobs that ran to an end (retried and failed ones too: fast failing jobs are fast
   * work all the same), then measures if at least `every` ms passed since the last time.
   * Returns the measurement, or undefined if it is too soon (or the window is fixed).
   */
  ended(n: number, now: number, every: number = ADAPT_EVERY_MS): Resize | undefined {
    const adapt = this.#adapt;
    if (adapt === undefined) return undefined;
    adapt.ended += n;
    const elapsed = now - adapt.since;
    if (elapsed < every) return undefined;
    const rate = adapt.ended / elapsed; // jobs per ms
    adapt.since = now;
    adapt.ended = 0;
    const limit = adapt.base +
      Math.min(adapt.max, Math.max(adapt.min, Math.ceil(rate * ADAPT_TARGET_MS)));
    const changed = limit !== this.limit, shrank = limit < this.limit;
    this.limit = limit;
    return { limit, rate, changed, shrank };
  }

  /**
   * How many of `buffered` prefetched jobs to keep, at a measured rate of `rate` jobs/ms, with
   * `held` jobs held in all (not counting jobs already on their way back). Jobs beyond the
   * window that would wait more than ADAPT_DRAIN_MS to start go back to the stream, for idle
   * peers, instead of being hoarded here. A brief dip in a fast stream gives back nothing: its
   * buffer drains in milliseconds at the rate measured.
   *
   * Asked at every measurement, not only when the window shrinks: the shrink to the minimum
   * may come at a rate that still drains the buffer in time (the tail of fast jobs counted in),
   * and jobs of reads in flight may land after it.
   */
  keep(buffered: number, held: number, rate: number): number {
    if (buffered === 0 || buffered <= rate * ADAPT_DRAIN_MS) return buffered;
    return Math.min(buffered, Math.max(0, this.limit - (held - buffered)));
  }
}
