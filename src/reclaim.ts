/**
 * Reclaim: XAUTOCLAIM of deliveries idle past idleTimeout (their consumer died or stalled),
 * following the cursor across ticks, claiming no more than the free room. Also prunes dead
 * consumers, and dead-letters crash loops past `maxDeliveries`.
 *
 * @module
 */
import { jobFields } from "./_log.ts";
import type { Holding } from "./consume.ts";
import type { Admitter, ReadEntry } from "./admit.ts";
import type { Cancels } from "./cancel.ts";
import { Job } from "./job.ts";
import { internal } from "./_internal.ts";
import { markDeadArgs } from "./scripts/mark_dead.ts";
import { reclaimArgs } from "./scripts/reclaim.ts";
import { heldKey } from "./priority.ts";

/** One consumer's reclaimer. */
export class Reclaimer {
  /** Local time of the next reclaim. */
  next = 0;
  #c: Holding;
  #admitter: Admitter;
  #cancels: Cancels;
  #idleTimeout: number;
  #maxDeliveries: number;
  /** Where each lane's XAUTOCLAIM left off. */
  #cursors: string[];
  #runs = 0;

  constructor(
    c: Holding,
    admitter: Admitter,
    cancels: Cancels,
    idleTimeout: number,
    maxDeliveries: number,
  ) {
    this.#c = c;
    this.#admitter = admitter;
    this.#cancels = cancels;
    this.#idleTimeout = idleTimeout;
    this.#maxDeliveries = maxDeliveries;
    this.#cursors = c.views.map(() => "0-0");
  }

  /**
   * One reclaim step. What it may claim is room nothing else may read into meanwhile (a
   * settle's read among them), until the claimed jobs are held.
   */
  async run(): Promise<void> {
    const { window, held, views } = this.#c;
    const room = Math.max(0, window.room(held.size));
    window.reserve(room);
    const prune = this.#runs++ % 10 === 0;
    this.next = Date.now() + Math.max(1, Math.floor(this.#idleTimeout / 3));
    try {
      // Each lane (priority stream) in turn, highest first, while room is left.
      let left = room;
      for (let lane = 0; lane < views.length && left > 0; lane++) {
        left -= await this.#claim(lane, left, prune);
      }
    } finally {
      window.free(room);
    }
  }

  /** One XAUTOCLAIM step on one lane; returns how many entries it claimed. */
  async #claim(lane: number, room: number, prune: boolean): Promise<number> {
    const { ctx, held, name, views } = this.#c;
    const { logger, client } = ctx;
    const view = views[lane]!;
    const [cursor, claimed, deleted, buried] = await client.sluiceReclaim(reclaimArgs(view, name, {
      minIdle: this.#idleTimeout,
      cursor: this.#cursors[lane]!,
      count: room,
      maxDeliveries: this.#maxDeliveries,
      prune,
    }));
    this.#cursors[lane] = cursor;
    if (deleted.length > 0) {
      logger.warn(
        `sluice: queue ${ctx.name}: ${deleted.length} pending entries were trimmed from the stream before they were settled; dropped them from the pending list (${
          deleted.slice(0, 5).join(", ")
        }${deleted.length > 5 ? ", ..." : ""})`,
      );
    }
    // Admit what was claimed first: it is ours in Redis now, whatever happens next.
    const fresh: ReadEntry[] = [], counts: number[] = [];
    for (const [entryId, deliveries, fields] of claimed) {
      const mine = held.get(heldKey(lane, entryId));
      if (mine === undefined) {
        fresh.push([entryId, fields]);
        counts.push(deliveries);
        continue;
      }
      // Our own job went idle (a blocked event loop, or renewals failing) and we claimed it
      // back: it is still ours, under a new delivery count. Keep one Job, never two.
      Job[internal].reclaimed(mine, deliveries);
      logger.warn(
        `sluice: queue ${ctx.name}: job ${mine.id} sat idle past idleTimeout (${this.#idleTimeout} ms) while held; was the event loop blocked?`,
        jobFields(mine),
      );
    }
    await this.#cancels.check(
      fresh.length === 0 ? [] : await this.#admitter.admit(fresh, counts, lane),
    );
    const ids = buried.filter((id) => id !== "");
    if (buried.length > 0) {
      logger.warn(
        `sluice: queue ${ctx.name}: ${buried.length} jobs went to the dead letters with reason delivery-limit (delivered more than ${this.#maxDeliveries} times)`,
      );
    }
    if (ids.length > 0) {
      const error = `delivered more than maxDeliveries ${this.#maxDeliveries} times`;
      await client.sluiceMarkDead(markDeadArgs(ctx, ids, error))
        .catch((err) => logger.error(`sluice: queue ${ctx.name}: could not mark dead`, err));
    }
    return fresh.length;
  }
}
