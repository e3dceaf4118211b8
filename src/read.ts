/**
 * Reading: the consumer group's existence, blocking XREADGROUP on the consumer's own
 * connection, cutting it short with CLIENT UNBLOCK, and recovery when reads fail (a missing
 * group is recreated).
 *
 * @module
 */
import type { Holding } from "./consume.ts";
import type { ReadEntry } from "./admit.ts";
import { settlesWithin } from "./async.ts";
import { retryWait } from "./backoff.ts";
import { isOutOfMemory, toError } from "./errors.ts";
import { type BlockingLine, blockingLine } from "./redis/connect.ts";
import type { Redis } from "ioredis";

/** The longest a blocking read waits before the loop looks around again. */
const MAX_BLOCK_MS = 10_000;

/** One consumer's reads. */
export class Reader {
  #c: Holding;
  #line: BlockingLine;
  /** The blocking connection's CLIENT ID, once known on this connection. */
  #id: number | undefined;
  /** The connection `#id` belongs to. */
  #idOn: Redis | undefined;
  /** The blocking read, while under way. */
  #read: Promise<ReadEntry[]> | undefined;
  #group: Promise<void> | undefined;
  #failures = 0;

  constructor(c: Holding) {
    this.#c = c;
    const { redis, client, keys } = c.ctx;
    this.#line = blockingLine(redis, client, keys.stream, c.name);
  }

  /** Makes sure the consumer group exists (once, or again with `force`). */
  ensureGroup(force = false): Promise<void> {
    if (this.#group === undefined || force) {
      const { client, keys, group } = this.#c.ctx;
      this.#group = client.xgroup("CREATE", keys.stream, group, "0", "MKSTREAM")
        .then(() => {}, async (err) => {
          const message = toError(err).message;
          if (message.includes("BUSYGROUP")) return;
          // At maxmemory Redis refuses XGROUP CREATE before it looks for the group: if the
          // group is there, workers may still drain the queue.
          if (isOutOfMemory(err) && await this.#groupExists().catch(() => false)) return;
          this.#group = undefined;
          throw err;
        });
    }
    return this.#group;
  }

  async #groupExists(): Promise<boolean> {
    const { client, keys, group } = this.#c.ctx;
    const groups = await client.xinfo("GROUPS", keys.stream) as unknown[][];
    return groups.some((g) => {
      for (let i = 0; i + 1 < g.length; i += 2) if (g[i] === "name") return g[i + 1] === group;
      return false;
    });
  }

  /**
   * One blocking read for the room free now, for at most until `wakeAt` (local ms), and cut
   * short on time when a delayed job is due at `dueAt`. The entries it returns stay counted
   * in the window as requested until admitted: checking them may take a while, and a settle
   * must not read that room again meanwhile.
   */
  async read(wakeAt: number, dueAt: number): Promise<ReadEntry[]> {
    const blocking = await this.#line.connection();
    if (this.#idOn !== blocking) {
      this.#idOn = blocking;
      this.#id = undefined;
      blocking.on("close", () => {
        if (this.#idOn === blocking) this.#id = undefined;
      });
    }
    this.#id ??= Number(await blocking.client("ID"));
    if (this.#c.stopping) return [];
    const { window, held, ctx, name } = this.#c;
    const count = window.readRoom(held.size);
    if (count <= 0) return [];
    const block = Math.max(1, Math.min(MAX_BLOCK_MS, wakeAt - Date.now()));
    // Redis times blocked reads out on its own event loop tick (up to 100 ms late at hz 10):
    // when a delayed job is next due, a local timer cuts the read short on time instead.
    const timer = dueAt <= wakeAt && dueAt - Date.now() < MAX_BLOCK_MS
      ? setTimeout(() => this.interrupt(), Math.max(0, dueAt - Date.now()))
      : undefined;
    window.reserve(count);
    let entries: ReadEntry[];
    try {
      this.#read = blocking.xreadgroup(
        "GROUP",
        ctx.group,
        name,
        "COUNT",
        count,
        "BLOCK",
        block,
        "STREAMS",
        ctx.keys.stream,
        ">",
      ).then((reply) => (reply as [string, ReadEntry[]][] | null)?.[0]?.[1] ?? []);
      entries = await this.#read;
    } catch (err) {
      window.free(count);
      throw err;
    } finally {
      this.#read = undefined;
      clearTimeout(timer);
    }
    window.free(count - entries.length);
    return entries;
  }

  /** Ends a blocking read now, as if it had timed out; the loop then looks again. */
  interrupt(): void {
    if (this.#read !== undefined && this.#id !== undefined) {
      this.#line.unblock(this.#id).catch(() => {});
    }
  }

  /**
   * Cuts a blocking read short with CLIENT UNBLOCK, sent again until `busy()` (the loop's
   * round under way) is over (the read may not have reached Redis yet), with a disconnect as
   * the last resort.
   */
  async unblock(busy: () => Promise<void> | undefined): Promise<void> {
    const deadline = Date.now() + 1_000;
    for (let round = busy(); round !== undefined; round = busy()) {
      if (this.#read !== undefined) {
        if (Date.now() > deadline || this.#id === undefined) {
          this.#line.disconnect();
          return;
        }
        await this.#line.unblock(this.#id).catch(() => {});
      }
      await settlesWithin(round, 25);
    }
  }

  /** A round went well: the next failure starts the backoff over. */
  succeeded(): void {
    this.#failures = 0;
  }

  /**
   * A round failed: a missing group (Redis restarted without persistence, or the stream was
   * deleted) is recreated; anything else is logged, and the loop waits with backoff, or until
   * `woken` resolves.
   */
  async recover(err: unknown, woken: Promise<void>): Promise<void> {
    if (this.#c.stopping) return;
    this.#line.failed(err);
    const { logger, name, group } = this.#c.ctx;
    if (toError(err).message.includes("NOGROUP")) {
      logger.warn(
        `sluice: queue ${name}: consumer group ${group} is missing (Redis restarted without persistence, or the stream was deleted); recreating it`,
      );
      try {
        await this.ensureGroup(true);
        return;
      } catch (again) {
        err = again;
      }
    }
    this.#failures++;
    const wait = retryWait(50, this.#failures, 2_000);
    if (this.#failures === 1 || this.#failures % 10 === 0) {
      logger.error(
        `sluice: queue ${name}: reading failed (${this.#failures} in a row), retrying in ${wait} ms`,
        err,
      );
    }
    await settlesWithin(woken, wait);
  }

  /** Closes the blocking connection. */
  close(): Promise<void> {
    return this.#line.close();
  }
}
