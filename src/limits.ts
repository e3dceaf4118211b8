/**
 * Rate limits: at most `limit` starts per `interval` ms of a task (the task's `rateLimit`) or
 * of all of a queue's tasks (the Worker's `rateLimit`), across every worker of the queue, and
 * the pauses a handler asks for with `ctx.rateLimited(ms)` when a remote API answers 429.
 *
 * A worker asks Redis (TAKE, scripts/limit.ts) right before it starts a job of a limited task,
 * in one batched call for the jobs starting together. Redis logs the start, or books the job a
 * window and replies when it is; the worker then puts the job off until then on the delayed
 * zset (no attempt charged), so it takes no room meanwhile, and the promoter brings it back on
 * time, without polling. Jobs of tasks with no limit never ask: they cost nothing.
 *
 * @module
 */
import type { Keys } from "./keys.ts";
import { ValidationError } from "./errors.ts";
import { show } from "./_options.ts";
import { Batcher } from "./_batch.ts";
import type { Job } from "./job.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { type Asking, holdArgs, type Scope, takeArgs } from "./scripts/limit.ts";

/**
 * A rate limit: at most `limit` starts in any `interval` ms, across all workers of the queue.
 *
 * @example At most 100 emails a second
 * ```ts
 * import { task, type RateLimit } from "@sluice/sluice";
 * const perSecond: RateLimit = { limit: 100, interval: 1_000 };
 * const email = task("email", (to: string) => to, { rateLimit: perSecond });
 * console.log(email.rateLimit); // { limit: 100, interval: 1000 }
 * ```
 */
export interface RateLimit {
  /** Starts allowed per interval: an integer from 1 to 1,000,000. */
  readonly limit: number;
  /** The interval, ms: an integer from 1 (1 ms) to 86,400,000 (a day). */
  readonly interval: number;
}

/** The most starts a limit may allow per interval: Redis logs each start of the last interval. */
export const MAX_RATE = 1_000_000;
/** The longest interval: a day. */
export const MAX_INTERVAL = 86_400_000;

/**
 * Checks a rate limit option.
 *
 * @throws {ValidationError} Naming the action, the option and the value.
 */
export function checkRateLimit(action: string, name: string, value: unknown): RateLimit {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ValidationError(
      `${action}: ${name} must be an object { limit, interval }, got ${show(value)}`,
    );
  }
  const extra = Object.keys(value).filter((k) => k !== "limit" && k !== "interval");
  if (extra.length > 0) {
    throw new ValidationError(
      `${action}: ${name} has unknown option ${extra[0]} (it takes limit and interval)`,
    );
  }
  const { limit, interval } = value as Record<string, unknown>;
  checkCount(action, `${name}.limit`, limit, 1, MAX_RATE);
  checkCount(action, `${name}.interval`, interval, 1, MAX_INTERVAL);
  return Object.freeze({ limit: limit as number, interval: interval as number });
}

/** Throws a `ValidationError` unless `value` is an integer from `min` to `max`. */
export function checkCount(
  action: string,
  name: string,
  value: unknown,
  min: number,
  max: number,
): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(
      `${action}: ${name} must be an integer from ${min} to ${max}, got ${show(value)}`,
    );
  }
}

/**
 * The interval Redis holds a start for: `interval` plus 5% (at most 1 s more). Redis logs a
 * start a few ms before its handler runs, and that delay varies; the margin keeps the starts
 * handlers see (and the requests they make) within the limit too. Measured with 3 worker
 * processes at 50 a second: the log on Redis's clock never held more than 50 in a second,
 * while handler start times, 0 to 7 ms later, held up to 57 without the margin.
 */
export function heldFor(interval: number): number {
  return interval + Math.min(1_000, Math.floor(interval / 20));
}

/** What TAKE said of a batch: Redis's time, and per job 0 (start) or when it is booked for. */
interface Taken {
  readonly now: number;
  readonly due: number;
}

/** One worker's side of its queue's rate limits. */
export class Limiter {
  #keys: Keys;
  #client: ScriptClient;
  #queue: RateLimit | undefined;
  #tasks: ReadonlyMap<string, RateLimit>;
  /** Scopes paused by a handler's 429, heard here: scope -> end on this machine's clock. */
  #held = new Map<string, number>();
  #batcher: Batcher<Job, Taken>;

  /**
   * @param queue The Worker's `rateLimit`, over all tasks.
   * @param tasks The tasks' own limits, by task name.
   */
  constructor(
    keys: Keys,
    client: ScriptClient,
    queue: RateLimit | undefined,
    tasks: ReadonlyMap<string, RateLimit>,
  ) {
    this.#keys = keys;
    this.#client = client;
    this.#queue = queue;
    this.#tasks = tasks;
    this.#batcher = new Batcher((jobs) => this.#take(jobs), 2, 1_000);
  }

  /** True if a job of `task` must ask Redis before it starts: false for unlimited tasks. */
  needs(task: string): boolean {
    if (this.#queue !== undefined || this.#tasks.size > 0 && this.#tasks.has(task)) return true;
    return this.#held.size > 0 && this.#paused(`t:${task}`);
  }

  /**
   * Asks to start `job` now: resolves with 0 if it may, else with how long (ms) it must wait
   * and when (ms, Redis's clock) it is booked for.
   */
  async take(job: Job): Promise<{ wait: number; due: number }> {
    const { now, due } = await this.#batcher.push(job);
    return { wait: due === 0 ? 0 : Math.max(0, due - now), due };
  }

  /**
   * Pauses `job`'s task on every worker for `ms`: resolves with when the pause ends (ms,
   * Redis's clock) and how long that is from now.
   */
  async hold(job: Job, ms: number): Promise<{ wait: number; due: number }> {
    const scope = `t:${job.task}`;
    const due = await this.#client.sluiceHold(holdArgs(this.#keys, ms, [scope]));
    this.#held.set(scope, Math.max(this.#held.get(scope) ?? 0, Date.now() + ms));
    return { wait: ms, due };
  }

  /** A message on the `held` channel: "<scope> <until> <now>", both on Redis's clock. */
  heard(message: string | null): void {
    if (message === null) return;
    const [scope, until, now] = message.split(" ");
    const left = Number(until) - Number(now);
    if (scope === undefined || !(left > 0)) return;
    this.#held.set(scope, Math.max(this.#held.get(scope) ?? 0, Date.now() + left));
  }

  /** Learns the pauses in force now, for a worker that starts during one. */
  async load(): Promise<void> {
    const [[, holds], [, time]] = (await this.#client.multi()
      .hgetall(this.#keys.holds)
      .time()
      .exec()) as [[null, Record<string, string>], [null, [string, string]]];
    const now = Number(time[0]) * 1_000 + Math.floor(Number(time[1]) / 1_000);
    for (const [scope, until] of Object.entries(holds)) this.heard(`${scope} ${until} ${now}`);
  }

  /** True while `scope` is paused, as far as this worker heard; forgets pauses that ended. */
  #paused(scope: string): boolean {
    const until = this.#held.get(scope);
    if (until === undefined) return false;
    // A margin for the round trip the news took: Redis has the last word in TAKE.
    if (until + 1_000 > Date.now()) return true;
    this.#held.delete(scope);
    return false;
  }

  async #take(jobs: Job[]): Promise<Taken[]> {
    const scopes: Scope[] = [];
    const index = new Map<string, number>();
    const scope = (name: string, limit: RateLimit | undefined) => {
      let i = index.get(name);
      if (i === undefined) {
        i = scopes.length;
        index.set(name, i);
        scopes.push({
          name,
          limit: limit?.limit ?? 0,
          interval: limit === undefined ? 1 : heldFor(limit.interval),
        });
      }
      return i;
    };
    const asking: Asking[] = jobs.map((job) => {
      const mine: number[] = [];
      if (this.#queue !== undefined) mine.push(scope("q", this.#queue));
      const limit = this.#tasks.get(job.task);
      if (limit !== undefined || this.#paused(`t:${job.task}`)) {
        mine.push(scope(`t:${job.task}`, limit));
      }
      return { id: job.id, tag: `${job.lane}-${job.entryId}-${job.deliveries}`, scopes: mine };
    });
    const reply = await this.#client.sluiceTake(takeArgs(this.#keys, scopes, asking));
    const now = reply[0]!;
    return jobs.map((_, i) => ({ now, due: reply[i + 1]! }));
  }
}
