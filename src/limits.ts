/**
 * Rate limits: at most `limit` starts per `interval` ms of a task (the task's `rateLimit`) or
 * of all of a queue's tasks (the Worker's `rateLimit`), across every worker of the queue, and
 * the pauses a handler asks for with `ctx.rateLimited(ms)` when a remote API answers 429.
 *
 * A worker asks Redis (TAKE, scripts/limit.ts) right before it starts a job of a limited task,
 * in one batched call for the jobs starting together, unless it still holds starts granted
 * ahead (see `Limiter.spend`). Redis logs the start, or books the job a window and replies when
 * it is; the worker then puts the job off until then on the delayed zset (no attempt charged),
 * so it takes no room meanwhile, and the promoter brings it back on time, without polling. A
 * start skips Redis only when neither its task nor the Worker has a limit and no pause of the
 * task is known: on a queue with no limit at all, nothing is asked.
 *
 * @module
 */
import type { Keys } from "./keys.ts";
import { ValidationError } from "./errors.ts";
import { checkInt, show } from "./_options.ts";
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
 *
 * @example
 * ```ts
 * import { checkRateLimit } from "./limits.ts";
 * console.log(checkRateLimit("Cannot define task t", "rateLimit", { limit: 5, interval: 1_000 }));
 * // { limit: 5, interval: 1000 }
 * ```
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
  checkInt(action, `${name}.limit`, limit, 1, MAX_RATE, ValidationError);
  checkInt(action, `${name}.interval`, interval, 1, MAX_INTERVAL, ValidationError);
  return Object.freeze({ limit: limit as number, interval: interval as number });
}

/**
 * The interval Redis holds a start for: `interval` plus 5% (at most 1 s more). Redis logs a
 * start a few ms before its handler runs, and that delay varies; the margin keeps the starts
 * handlers see (and the requests they make) within the limit too. Measured with 3 worker
 * processes at 50 a second: the log on Redis's clock never held more than 50 in a second,
 * while handler start times, 0 to 7 ms later, held up to 57 without the margin.
 *
 * @example
 * ```ts
 * import { heldFor } from "./limits.ts";
 * console.log(heldFor(1_000), heldFor(60_000), heldFor(10)); // 1050 61000 10
 * ```
 */
export function heldFor(interval: number): number {
  return interval + Math.min(1_000, Math.floor(interval / 20));
}

/**
 * How long a pause asked with `ms` lasts: rounded up to a whole ms, at least 1, at most a day;
 * undefined unless `ms` is a finite number, 0 or more.
 *
 * @example Retry-After arithmetic
 * ```ts
 * import { pauseFor } from "./limits.ts";
 * console.log(pauseFor(1.5), pauseFor(0), pauseFor(1e12), pauseFor(NaN)); // 2 1 86400000 undefined
 * ```
 */
export function pauseFor(ms: unknown): number | undefined {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return undefined;
  return Math.min(MAX_INTERVAL, Math.max(1, Math.ceil(ms)));
}

/** What TAKE said of one job: Redis's time, and 0 (start now) or when it is booked for. */
export interface Grant {
  /** Redis's time at the call (ms). */
  readonly now: number;
  /** 0 if the job may start now, else when it is booked for (ms, Redis's clock). */
  readonly due: number;
}

/** Start permits Redis granted ahead to this worker for one set of scopes. */
interface Credit {
  /** Permits left. */
  left: number;
  /** When they lapse (performance.now() ms). */
  until: number;
  /** How many to ask for next time: doubled when they run out in time, halved when they lapse. */
  ask: number;
}

/** The scopes a job of one task counts in, with what their permits are worth. */
interface Plan {
  /** Names the set: credits are kept per set. */
  readonly key: string;
  readonly scopes: readonly { readonly name: string; readonly limit: RateLimit | undefined }[];
  /** How long (ms from the call) permits granted ahead may be used: 0 for none. */
  readonly lasts: number;
}

/** The most plans (task and group pairs) a worker keeps before it starts over. */
const MAX_PLANS = 10_000;

/** The fewest and most permits asked for ahead of need. */
const MIN_ASK = 4, MAX_ASK = 1_024;

/** What a job's limits depend on: its task, and its group if it has one. */
export interface Limited {
  readonly task: string;
  readonly group?: string | undefined;
}

/** The pause scope of a job: its group's if it has one, else its task's. */
function pauseScope(job: Limited): string {
  return job.group === undefined ? `t:${job.task}` : `g:${job.group}`;
}

/** One worker's side of its queue's rate limits. */
export class Limiter {
  #keys: Keys;
  #client: ScriptClient;
  #queue: RateLimit | undefined;
  #tasks: ReadonlyMap<string, RateLimit>;
  /** The Worker's `groups.rateLimit`: each group's own limit. */
  #groups: RateLimit | undefined;
  /** Scopes paused by a handler's 429, heard here: scope -> end on this machine's clock. */
  #held = new Map<string, number>();
  #plans = new Map<string, Plan>();
  #credits = new Map<string, Credit>();
  #batcher: Batcher<Job, Grant>;

  /**
   * @param queue The Worker's `rateLimit`, over all tasks.
   * @param tasks The tasks' own limits, by task name.
   * @param groups The Worker's `groups.rateLimit`, which each group has to itself.
   */
  constructor(
    keys: Keys,
    client: ScriptClient,
    queue: RateLimit | undefined,
    tasks: ReadonlyMap<string, RateLimit>,
    groups?: RateLimit,
  ) {
    this.#keys = keys;
    this.#client = client;
    this.#queue = queue;
    this.#tasks = tasks;
    this.#groups = groups;
    this.#batcher = new Batcher((jobs) => this.#take(jobs), 2, 1_000);
  }

  /** True if `job` must ask Redis before it starts: false for jobs nothing limits. */
  needs(job: Limited): boolean {
    if (this.#queue !== undefined || this.#tasks.size > 0 && this.#tasks.has(job.task)) return true;
    if (job.group !== undefined && this.#groups !== undefined) return true;
    return this.#held.size > 0 && this.#paused(pauseScope(job));
  }

  /**
   * Starts a job of `task` on a permit Redis granted ahead, if one is left and still good: true
   * if it did (the job starts now, with no call to Redis).
   *
   * Far from its limit (the last interval holds at most half of it, and nobody is waiting), a
   * TAKE grants the asking worker up to the extra starts it asked for (4 to 1,024, by how fast
   * it used the last ones), logged at once. They are
   * good for half the margin Redis holds each start beyond the interval (25 ms of a 1 s
   * interval), so a start made on one is never later after its log than the margin allows.
   */
  spend(job: Limited): boolean {
    if (this.#held.size > 0 && this.#paused(pauseScope(job))) return false;
    const plan = this.#plan(job);
    const credit = this.#credits.get(plan.key);
    if (credit === undefined || credit.left === 0) return false;
    if (performance.now() < credit.until) {
      credit.left--;
      if (credit.left === 0) credit.ask = Math.min(MAX_ASK, credit.ask * 2);
      return true;
    }
    credit.left = 0;
    credit.ask = Math.max(MIN_ASK, credit.ask >> 1);
    return false;
  }

  /** Asks to start `job` now (see TAKE in scripts/limit.ts). */
  take(job: Job): Promise<Grant> {
    return this.#batcher.push(job);
  }

  /**
   * Pauses `job`'s group (or, for a job with no group, its task) on every worker for `ms`:
   * resolves with when the pause ends (ms, Redis's clock; a longer pause in force stands) and
   * how long that is from now.
   */
  async hold(job: Job, ms: number): Promise<{ wait: number; due: number }> {
    const scope = pauseScope(job);
    // Paused here at once: this worker's permits for the task are not spent meanwhile.
    this.#held.set(scope, Math.max(this.#held.get(scope) ?? 0, Date.now() + ms));
    const [due, now] = await this.#client.sluiceHold(holdArgs(this.#keys, ms, [scope]));
    const wait = Math.max(0, due - now);
    this.#held.set(scope, Math.max(this.#held.get(scope) ?? 0, Date.now() + wait));
    return { wait, due };
  }

  /**
   * A message on the `held` channel: "<scope> <until> <now>", both on Redis's clock. A group's
   * scope may hold spaces: the two numbers are read from the end.
   */
  heard(message: string | null): void {
    if (message === null) return;
    const second = message.lastIndexOf(" "), first = message.lastIndexOf(" ", second - 1);
    if (first <= 0) return;
    const scope = message.slice(0, first);
    const left = Number(message.slice(first + 1, second)) - Number(message.slice(second + 1));
    if (!(left > 0)) return;
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

  /**
   * The scopes of `job`: the queue's limit, the task's, the group's, and a pause heard of (the
   * group's for a grouped job, else the task's).
   */
  #plan(job: Limited): Plan {
    const { task, group } = job;
    const paused = this.#held.size > 0 && this.#paused(pauseScope(job));
    const key = group === undefined ? task : `${task}\n${group}`;
    const cached = paused ? undefined : this.#plans.get(key);
    if (cached !== undefined) return cached;
    const scopes: { name: string; limit: RateLimit | undefined }[] = [];
    if (this.#queue !== undefined) scopes.push({ name: "q", limit: this.#queue });
    const limit = this.#tasks.get(task);
    if (limit !== undefined || paused && group === undefined) {
      scopes.push({ name: `t:${task}`, limit });
    }
    if (group !== undefined && (this.#groups !== undefined || paused)) {
      scopes.push({ name: `g:${group}`, limit: this.#groups });
    }
    let lasts = Infinity;
    for (const s of scopes) {
      if (s.limit !== undefined) {
        lasts = Math.min(lasts, (heldFor(s.limit.interval) - s.limit.interval) / 2);
      }
    }
    // Permits worth less than 2 ms are not worth asking for; a paused task gets none.
    if (paused || !(lasts >= 2)) lasts = 0;
    const plan = { key: scopes.map((s) => s.name).join("\n"), scopes, lasts };
    if (!paused) {
      // One plan per task and group: with many groups the cache is dropped now and then, so
      // it never grows without bound (and permits of groups long gone go with it).
      if (this.#plans.size >= MAX_PLANS) {
        this.#plans.clear();
        this.#credits.clear();
      }
      this.#plans.set(key, plan);
    }
    return plan;
  }

  async #take(jobs: Job[]): Promise<Grant[]> {
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
    // The first job of each set of scopes asks for permits ahead, for the jobs to come.
    const asked = new Set<string>();
    const asking: Asking[] = jobs.map((job) => {
      const plan = this.#plan(job);
      let extra = 0;
      if (plan.lasts > 0 && !asked.has(plan.key)) {
        asked.add(plan.key);
        extra = this.#credits.get(plan.key)?.ask ?? MIN_ASK;
      }
      return {
        id: job.id,
        tag: `${job.lane}-${job.entryId}-${job.deliveries}`,
        scopes: plan.scopes.map((s) => scope(s.name, s.limit)),
        extra,
      };
    });
    // Nothing to count in (a pause that ended meanwhile): every job may start.
    if (scopes.length === 0) return jobs.map(() => ({ now: 0, due: 0 }));
    const sent = performance.now();
    const reply = await this.#client.sluiceTake(takeArgs(this.#keys, scopes, asking));
    const now = reply[0]!;
    return jobs.map((job, i) => {
      const due = reply[i + 1]!;
      if (due < 0) {
        const plan = this.#plan(job);
        const credit = this.#credits.get(plan.key);
        const until = sent + plan.lasts;
        if (credit === undefined) this.#credits.set(plan.key, { left: -due, until, ask: MIN_ASK });
        else {
          credit.left = -due;
          credit.until = until;
        }
      }
      return { now, due: Math.max(0, due) };
    });
  }
}
