/**
 * The promoter: moves due delayed jobs (and retries) to the stream on Redis `TIME`, fires due
 * schedule ticks (schedule.ts), and keeps the time the next one is due, so a worker sleeps
 * until then instead of polling.
 *
 * @module
 */
import type { Holding } from "./consume.ts";
import { isOutOfMemory } from "./errors.ts";
import { retryWait } from "./backoff.ts";
import { promote } from "./scripts/promote.ts";
import { fireSchedules } from "./schedule.ts";

/** Most delayed jobs moved to the stream per promotion call. */
const PROMOTE_BATCH = 1_000;

/** One consumer's promoter. */
export class Promoter {
  /** Local time at which the next delayed job is due (0: look now). */
  dueAt = 0;
  #c: Holding;
  #tickMs: number;
  #failures = 0;
  /** While run() is under way: the earliest wake-up heard meanwhile (Infinity: none). Its
   * reply must not push dueAt past a due time announced after DUE looked. */
  #heardDuring: number | undefined;

  /** @param tickMs The longest sleep between looks at the delayed set. */
  constructor(c: Holding, tickMs: number) {
    this.#c = c;
    this.#tickMs = tickMs;
  }

  /**
   * Promotes due jobs, and learns when the next one is due. If Redis refuses (at maxmemory the
   * XADD is refused), logs it and tries again later: reading what is already in the stream must
   * go on. Other errors are thrown.
   */
  async run(): Promise<void> {
    this.#heardDuring = Infinity;
    try {
      const { ctx } = this.#c;
      const [moved, wait, now, schedules] = await promote(ctx.client, ctx, PROMOTE_BATCH);
      // Due schedule ticks: fire them, then look again at once (DUE tells the next tick).
      if (schedules.length > 0) await fireSchedules(ctx, now, schedules);
      this.#failures = 0;
      if (moved === PROMOTE_BATCH || schedules.length > 0) this.dueAt = 0; // more may be due
      else this.dueAt = Date.now() + (wait < 0 ? this.#tickMs : Math.min(wait, this.#tickMs));
    } catch (err) {
      if (!isOutOfMemory(err)) throw err;
      this.#failures++;
      const wait = retryWait(100, this.#failures, 5_000);
      this.dueAt = Date.now() + wait;
      if (this.#failures === 1 || this.#failures % 10 === 0) {
        this.#c.ctx.logger.error(
          `sluice: queue ${this.#c.ctx.name}: could not move due delayed jobs to the stream (${this.#failures} in a row), retrying in ${wait} ms`,
          err,
        );
      }
    } finally {
      this.dueAt = Math.min(this.dueAt, this.#heardDuring);
      this.#heardDuring = undefined;
    }
  }

  /**
   * A message on the wake channel: a producer or a retry scheduled a job due in `message` ms
   * (null: messages may have been missed, so look now). A read blocking past the new due time
   * is cut short, so the loop can promote.
   */
  heard(message: string | null): void {
    if (this.#c.stopping) return;
    const wait = message === null ? 0 : Number(message);
    if (!Number.isFinite(wait)) return;
    const at = message === null ? 0 : Date.now() + Math.max(0, wait);
    if (this.#heardDuring !== undefined) this.#heardDuring = Math.min(this.#heardDuring, at);
    if (at >= this.dueAt) return;
    this.dueAt = at;
    this.#c.interrupt();
  }
}
