/**
 * Cancellation on the consumer side: the cancel channel, the memory of cancels that beat the
 * read reply bringing their job, and the look at job records when a message may have been
 * missed.
 *
 * @module
 */
import type { Holding } from "./consume.ts";
import { CancelledError } from "./errors.ts";
import { Job } from "./job.ts";
import { internal } from "./_internal.ts";
import { cancelledArgs } from "./scripts/cancelled.ts";

/** How long a cancel message is remembered, for a read reply it may have overtaken. */
const CANCEL_MEMORY_MS = 10_000;

/** One consumer's view of cancellations. */
export class Cancels {
  #c: Holding;
  /** Cancel messages of the last few seconds, by entry id and job id (or job id alone), with
   * their time. */
  #memory = new Map<string, number>();

  constructor(c: Holding) {
    this.#c = c;
  }

  /**
   * Where we stand before a read: the subscriber's epoch if the cancel channel is confirmed,
   * else -1. Give it to `missed()` once the read's jobs are held.
   */
  mark(): number {
    const { pubsub, keys } = this.#c.ctx;
    return pubsub.listening(keys.cancel) ? pubsub.epoch : -1;
  }

  /** True unless we listened the whole time since `mark`: then every cancel reached us. */
  missed(mark: number): boolean {
    const { pubsub, keys } = this.#c.ctx;
    return mark !== pubsub.epoch || !pubsub.listening(keys.cancel);
  }

  /**
   * A producer cancelled a job: "<job id>\n<entry id>" (older senders omit the entry id). If we
   * hold it, its signal aborts with `CancelledError`; its holder settles it (a Worker acks it
   * unrun, or stops its handler), ending it `cancelled`.
   */
  heard(message: string): void {
    const cut = message.indexOf("\n");
    const id = cut < 0 ? message : message.slice(0, cut);
    const entry = cut < 0 ? undefined : message.slice(cut + 1);
    for (const job of this.#c.held.values()) {
      if (job.id === id) Job[internal].abort(job, new CancelledError(`Job ${id} was cancelled`));
    }
    // The message may beat the read reply that brings the job: remember it for a while, by
    // the delivery's entry id, so a later job reusing the id is not touched.
    const now = Date.now();
    for (const [old, at] of this.#memory) {
      if (now - at < CANCEL_MEMORY_MS) break;
      this.#memory.delete(old);
    }
    // Entry ids of different priorities' streams may be equal: the job id goes in the key too.
    const key = entry ? `${entry}\n${id}` : id;
    this.#memory.delete(key);
    this.#memory.set(key, now);
  }

  /** Aborts a job just admitted if a cancel message for it came before it. */
  admitted(job: Job): void {
    if (this.#memory.size === 0) return;
    const at = this.#memory.get(`${job.entryId}\n${job.id}`) ?? this.#memory.get(job.id);
    if (at !== undefined && Date.now() - at < CANCEL_MEMORY_MS) {
      Job[internal].abort(job, new CancelledError(`Job ${job.id} was cancelled`));
    }
  }

  /**
   * Before jobs are handed out, one look at their records: a cancel can land while a read reply
   * is on its way, or while a crashed worker held the job, and its message then reaches nobody.
   * CANCEL marks the record before it publishes, so this look cannot miss it.
   */
  async check(jobs: readonly Job[]): Promise<void> {
    if (jobs.length === 0) return;
    const { keys, client } = this.#c.ctx;
    const cancelled = await client.sluiceCancelled(cancelledArgs(keys, jobs));
    for (const position of cancelled) this.heard(jobs[position - 1]!.id);
  }
}
