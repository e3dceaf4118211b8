/**
 * The dead letters of a queue: jobs that failed for good, kept with their error and reason,
 * to inspect, replay or purge.
 *
 * @module
 */
import type { HandleContext } from "./handle.ts";
import { checkInt, show } from "./_options.ts";
import { replayArgs } from "./scripts/replay.ts";
import { fieldsToRecord } from "./codec.ts";

/** One dead letter. */
export interface DeadLetter {
  /** The dead stream's entry id: what `replay` and `purge` take. */
  deadId: string;
  /** The job id. */
  id: string;
  /** The task name. */
  task: string;
  /** The payload, as JSON text. */
  data: string;
  /** The attempt it died on. */
  attempt: number;
  /** Why: a `DeadReason` such as `failed`, `unknown-task` or `bad-signature`. */
  reason: string;
  /** The error message and stack, trimmed to 4 KiB. */
  error: string;
  /** When, epoch ms. */
  failedAt: number;
  /** Every field of the entry, as stored. */
  fields: Record<string, string>;
}

/** Which dead letters: a list of `deadId`s, or all of them. */
export type DeadSelection = readonly string[] | { all: true };

const PAGE = 500;

/**
 * The dead letters of a queue, as `queue.dead`.
 *
 * @example Inspect and replay
 * ```ts
 * import { Queue } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 *
 * await using redis = await startRedis();
 * await using queue = new Queue("q", { redis: redis.url });
 * console.log(await queue.dead.count()); // 0
 * for (const letter of await queue.dead.list({ limit: 10 })) {
 *   console.log(letter.id, letter.reason, letter.error);
 * }
 * await queue.dead.replay({ all: true });
 * ```
 */
export class DeadLetters {
  #ctx: HandleContext;

  /** @internal Made by `Queue`. */
  constructor(ctx: HandleContext) {
    this.#ctx = ctx;
  }

  /** How many dead letters there are. */
  count(): Promise<number> {
    return this.#ctx.client().xlen(this.#ctx.keys.dead);
  }

  /**
   * Lists dead letters, oldest first, a page at a time.
   *
   * @param options `limit` (1 to 10,000, default 100) and `after`, the last `deadId` of the
   * previous page.
   * @throws {RangeError} If limit is out of range.
   */
  async list(options: { limit?: number; after?: string } = {}): Promise<DeadLetter[]> {
    const { limit = 100, after } = options;
    checkInt("Cannot list dead letters", "limit", limit, 1, 10_000);
    const start = after === undefined ? "-" : `(${after}`;
    const entries = await this.#ctx.client().xrange(
      this.#ctx.keys.dead,
      start,
      "+",
      "COUNT",
      limit,
    );
    return entries.map(([deadId, flat]) => toLetter(deadId, flat));
  }

  /**
   * Puts dead letters back in the queue with their attempts reset. Each is moved in one
   * script, so replaying the same letter twice (from two processes, say) runs it once.
   *
   * @returns How many were replayed.
   */
  async replay(which: DeadSelection): Promise<number> {
    let replayed = 0;
    for await (const page of this.#pages(which, "replay")) {
      replayed += await this.#ctx.client().sluiceReplay(replayArgs(this.#ctx, page));
    }
    return replayed;
  }

  /**
   * Deletes dead letters for good.
   *
   * @returns How many were deleted.
   */
  async purge(which: DeadSelection): Promise<number> {
    const { keys } = this.#ctx;
    if (!Array.isArray(which)) {
      const count = await this.count();
      await this.#ctx.client().del(keys.dead);
      return count;
    }
    if (which.length === 0) return 0;
    return await this.#ctx.client().xdel(keys.dead, ...which);
  }

  async *#pages(which: DeadSelection, action: string): AsyncGenerator<DeadLetter[]> {
    if (Array.isArray(which)) {
      for (const id of which) {
        if (typeof id !== "string" || !/^\d+-\d+$/.test(id)) {
          throw new TypeError(`Cannot ${action} dead letters: ${show(id)} is not a deadId`);
        }
      }
      for (let i = 0; i < which.length; i += PAGE) {
        const page: DeadLetter[] = [];
        for (const deadId of which.slice(i, i + PAGE)) {
          const [entry] = await this.#ctx.client().xrange(this.#ctx.keys.dead, deadId, deadId);
          if (entry) page.push(toLetter(entry[0], entry[1]));
        }
        if (page.length > 0) yield page;
      }
      return;
    }
    if ((which as { all?: unknown })?.all !== true) {
      throw new TypeError(
        `Cannot ${action} dead letters: give a list of deadIds or { all: true }, got ${
          show(which)
        }`,
      );
    }
    // Only the letters there now: a replayed job that dies again is not replayed again.
    const { keys } = this.#ctx;
    const [last] = await this.#ctx.client().xrevrange(keys.dead, "+", "-", "COUNT", 1);
    if (last === undefined) return;
    let after = "-";
    while (true) {
      const entries = await this.#ctx.client().xrange(keys.dead, after, last[0], "COUNT", PAGE);
      if (entries.length === 0) return;
      yield entries.map(([deadId, flat]) => toLetter(deadId, flat));
      after = `(${entries.at(-1)![0]}`;
    }
  }
}

function toLetter(deadId: string, flat: string[]): DeadLetter {
  // The last error/reason/failed_at win: sluice appends its own after the original fields.
  const fields = fieldsToRecord(flat);
  return {
    deadId,
    id: fields.id ?? "",
    task: fields.task ?? "",
    data: fields.data ?? "",
    attempt: Number(fields.attempt ?? 0),
    reason: fields.reason ?? "",
    error: fields.error ?? "",
    failedAt: Number(fields.failed_at ?? 0),
    fields,
  };
}
