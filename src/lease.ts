/**
 * Leases: every job a consumer holds, prefetched or running, is renewed in one batched script
 * call per tick (idleTimeout / 3), on a timer independent of handlers, along with the worker's
 * heartbeat. A job whose delivery another consumer owns now is marked lost.
 *
 * @module
 */
import { jobFields } from "./_log.ts";
import type { Holding } from "./consume.ts";
import { LeaseLostError } from "./errors.ts";
import { Job } from "./job.ts";
import { internal } from "./_internal.ts";
import { renewArgs } from "./scripts/renew.ts";
import { heldKey } from "./priority.ts";
import type { ScriptQueue } from "./scripts/_prelude.ts";

/** Most deliveries per renewal script call; bigger sets are split. */
const CHUNK = 1_000;

/** One consumer's lease keeper. */
export class Leases {
  #c: Holding;
  #idleTimeout: number;
  #timer: ReturnType<typeof setInterval>;
  #renewing = false;
  #stopped = false;

  /** Starts renewing at once, then every `idleTimeout / 3` ms. */
  constructor(c: Holding, idleTimeout: number) {
    this.#c = c;
    this.#idleTimeout = idleTimeout;
    this.#timer = setInterval(() => this.renew(), Math.max(1, Math.floor(idleTimeout / 3)));
    // After the constructor's caller is done: a Worker describes its consumer first.
    queueMicrotask(() => void this.renew());
  }

  /** Stops renewing; leases then lapse unless settled. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  /** One renewal: every held job's lease and the heartbeat, in one script call per chunk. */
  async renew(): Promise<void> {
    if (this.#renewing || this.#stopped) return;
    this.#renewing = true;
    const { ctx, held } = this.#c;
    // Jobs being settled are left out: their settle reports their fate.
    const leased = [...held.values()].filter(Job[internal].leased);
    // One call per lane (priority stream) with jobs; the lowest lane's carries the heartbeat
    // when no job is held.
    const { views } = this.#c, lanes = views.length;
    try {
      for (let lane = 0; lane < lanes; lane++) {
        const jobs = lanes === 1 ? leased : leased.filter((job) => job.lane === lane);
        if (jobs.length === 0 && (lane < lanes - 1 || leased.length > 0)) continue;
        await this.#renew(lane, views[lane]!, jobs);
      }
    } catch (err) {
      ctx.logger.error(`sluice: queue ${ctx.name}: lease renewal failed`, err);
    } finally {
      this.#renewing = false;
    }
  }

  /** Renews `jobs`, all of one lane, and the heartbeat. */
  async #renew(lane: number, view: ScriptQueue, jobs: Job[]): Promise<void> {
    const { ctx, held, name } = this.#c;
    const hooks = Job[internal];
    for (let i = 0; i === 0 || i < jobs.length; i += CHUNK) {
      const chunk = jobs.slice(i, i + CHUNK);
      const sent = new Map(chunk.map((job) => [job, job.deliveries]));
      const lost = await ctx.client.sluiceRenew(
        renewArgs(view, name, this.#idleTimeout * 3, sent, this.#c.record()),
      );
      for (const entryId of lost) {
        const job = held.get(heldKey(lane, entryId));
        // Our own reclaim may have moved the delivery count on meanwhile: still ours.
        if (job === undefined || sent.get(job) !== job.deliveries) continue;
        const error = new LeaseLostError(
          `Lost the lease on job ${job.id} (${entryId}): another consumer owns it now`,
        );
        if (hooks.lose(job, error)) {
          ctx.logger.warn(`sluice: queue ${ctx.name}: ${error.message}`, jobFields(job));
        }
      }
    }
  }
}
