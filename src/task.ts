/**
 * Tasks: a name, a typed handler and options. A worker runs the tasks it is given; a producer
 * can enqueue by task object (typed, validated) or by name.
 *
 * @module
 */
import { checkName } from "./keys.ts";
import { ValidationError } from "./errors.ts";
import { type Backoff, checkRetry, DEFAULT_BACKOFF, type RetryOptions } from "./backoff.ts";
import { checkInt, MAX_MS } from "./_options.ts";
import { checkSchedule, type ScheduleOptions, type Spec } from "./schedule.ts";
import { checkRateLimit, type RateLimit } from "./limits.ts";

/**
 * The Standard Schema v1 interface (https://standardschema.dev), declared here so any
 * validator that implements it (zod, valibot, arktype, ...) works without a dependency.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (
      value: unknown,
    ) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/** The result of a Standard Schema validation. */
export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | {
    readonly issues: ReadonlyArray<
      { readonly message: string; readonly path?: ReadonlyArray<unknown> | undefined }
    >;
  };

/** What a handler knows about the job it runs. */
export interface JobInfo {
  /** The job id. */
  readonly id: string;
  /** The task name. */
  readonly task: string;
  /** 1 on the first attempt, +1 on each retry. */
  readonly attempt: number;
  /** How many times this entry has been delivered; above 1 after a crash or a lost lease. */
  readonly deliveries: number;
  /** When the job was first enqueued, ms since epoch. */
  readonly enqueuedAt: number;
  /** The job's priority, on a queue with `priorities`; else undefined. */
  readonly priority: string | undefined;
  /** The job's group, if it was enqueued with one; else undefined. */
  readonly group: string | undefined;
  /**
   * The OpenTelemetry trace the job runs in: its producer's (the span active at enqueue), or
   * the Worker's consumer span's when the job had none; undefined without tracing.
   */
  readonly traceId: string | undefined;
  /** The fencing token: who holds this delivery. */
  readonly token: { readonly consumer: string; readonly deliveries: number };
}

/** The second argument of every handler. */
export interface TaskContext<Context = unknown> {
  /** The job being run. */
  readonly job: JobInfo;
  /**
   * Aborts when the job times out (`TimeoutError`), is cancelled from any process
   * (`CancelledError`), loses its lease (`LeaseLostError`), and on shutdown once the grace
   * period is over (`ShutdownError`). Pass it to fetch() and friends.
   */
  readonly signal: AbortSignal;
  /** Whatever the worker's `lifespan` returned. */
  readonly context: Context;
  /**
   * Says the remote API answered "too many requests" (HTTP 429): throws a `RateLimitedError`
   * that a Worker turns into a pause. The job goes back with no attempt charged, and its task
   * starts no job on any worker of the queue for `ms` (then this job runs again).
   *
   * @param ms How long the task pauses, such as the API's Retry-After in ms: a finite number,
   *   0 or more, rounded up to a whole ms from 1 to 86,400,000 (a day).
   * @throws {RateLimitedError} Always (a `RangeError` if `ms` is negative, NaN, infinite or not
   *   a number: the attempt then fails as any error would).
   *
   * @example Pause on a 429
   * ```ts
   * import { task } from "@sluice/sluice";
   * const call = task("call", async (url: string, ctx) => {
   *   const res = await fetch(url, { signal: ctx.signal });
   *   // Retry-After in seconds; a date or no header: a second.
   *   if (res.status === 429) ctx.rateLimited(Number(res.headers.get("retry-after")) * 1_000 || 1_000);
   *   return res.status;
   * });
   * console.log(call.name); // "call"
   * ```
   */
  rateLimited(ms: number): never;
  /**
   * Reports how far the job has got: stored in its record (`info().progress`, from any
   * process) and fired as the Worker's `progress` event. Writes are coalesced to at most one
   * per job per 100 ms: the last value always lands, and a call resolves once its value (or a
   * later one) is stored. It never rejects for Redis: a write that fails is reported on the
   * Worker's `error` event, and the job runs on.
   *
   * @param value A number from 0 to 100, or a small JSON object (at most 4,096 bytes as JSON).
   * @returns A promise that rejects (it never throws) with a `RangeError` if a number is
   *   outside 0 to 100 (or NaN) or the JSON is too big, and with a `TypeError` if the value is
   *   neither a number nor an object that JSON can hold.
   *
   * @example Progress of a batch
   * ```ts
   * import { task } from "@sluice/sluice";
   * const resize = task("resize", async (images: string[], ctx) => {
   *   for (const [i, image] of images.entries()) {
   *     await ctx.progress({ done: i + 1, of: images.length, last: image });
   *   }
   *   await ctx.progress(100);
   * });
   * console.log(resize.name); // "resize"
   * ```
   */
  progress(value: number | Record<string, unknown> | unknown[]): Promise<void>;
}

/** A task handler: data in, result out. */
export type Handler<Data, Result, Context = unknown> = (
  data: Data,
  ctx: TaskContext<Context>,
) => Result | Promise<Result>;

/**
 * Options of {@linkcode task}. A static schedule (`cron` or `every`, with `tz`, `data`,
 * `catchUp`, `overlap`, `priority`) makes every Worker that has the task store the schedule,
 * with the task name as its id, when it starts: see `queue.schedules`. Without `cron` or
 * `every`, those options are refused (`ValidationError`).
 */
export interface TaskOptions<Data> extends ScheduleOptions<Data> {
  /**
   * A Standard Schema that checks data at enqueue and again before the handler runs. Data
   * that fails it throws `ValidationError` at enqueue, and is dead-lettered with reason
   * `invalid-data` at consume.
   */
  schema?: StandardSchemaV1<unknown, Data>;
  /**
   * Retry policy: attempts in all (default 3) and the backoff between them (default
   * exponential from 1 s, doubling, capped at an hour, with jitter). A job's own `retry`,
   * given at enqueue, wins.
   */
  retry?: RetryOptions;
  /**
   * How long (ms) a job may run before its `ctx.signal` aborts with `TimeoutError` and the
   * attempt counts as failed. A job's own `timeout`, given at enqueue, wins. None by default.
   */
  timeout?: number;
  /**
   * At most `limit` starts of this task in any `interval` ms, across all workers of the queue.
   * A job over the limit is not failed and not charged an attempt: it waits, taking no room,
   * and starts as soon as its window opens. Enforced in Redis, on Redis's clock. None by
   * default.
   *
   * @example 100 an hour
   * ```ts
   * import { task } from "@sluice/sluice";
   * const report = task("report", () => {}, { rateLimit: { limit: 100, interval: 3_600_000 } });
   * console.log(report.rateLimit?.limit); // 100
   * ```
   */
  rateLimit?: RateLimit;
}

/** A task: what `task()` returns, and what `Worker` and `Queue.enqueue` take. */
export interface Task<Data = unknown, Result = unknown, Context = unknown> {
  /** The task name, as written in every job entry. */
  readonly name: string;
  /** The handler. */
  readonly handler: Handler<Data, Result, Context>;
  /** The schema, if any. */
  readonly schema: StandardSchemaV1<unknown, Data> | undefined;
  /** Attempts in all, the first included. */
  readonly attempts: number;
  /** The wait before each retry. */
  readonly backoff: Backoff;
  /** The timeout in ms, if any. */
  readonly timeout: number | undefined;
  /** The static schedule (id: the task name), if `cron` or `every` was given. */
  readonly schedule?: Spec | undefined;
  /** The rate limit, if any. */
  readonly rateLimit?: RateLimit | undefined;
}

/** Any task, whatever its types. */
// deno-lint-ignore no-explicit-any
export type AnyTask = Task<any, any, any>;

/** The data type of a task. */
export type DataOf<T> = T extends Task<infer D, unknown, infer _C> ? D : never;
/** The result type of a task. */
export type ResultOf<T> = T extends Task<infer _D, infer R, infer _C> ? Awaited<R> : never;

/**
 * Defines a task.
 *
 * @param name 1 to 200 characters of `A-Z a-z 0-9 . _ : -`.
 * @param handler Runs the job; its return value is the job's result.
 * @param options A schema and a retry policy.
 * @returns The task, to give to a `Worker` and to `queue.enqueue`.
 * @throws {TypeError} If the name is invalid.
 * @throws {RangeError} If an option is out of range.
 * @throws {ValidationError} If `rateLimit` is out of range, or schedule options come alone.
 *
 * @example A typed task
 * ```ts
 * import { task } from "@sluice/sluice";
 * const resize = task("resize", (data: { url: string; width: number }) => {
 *   return { url: data.url, width: data.width };
 * }, { retry: { attempts: 5 } });
 * console.log(resize.name, resize.attempts); // "resize" 5
 * ```
 */
export function task<Data, Result, Context = unknown>(
  name: string,
  handler: Handler<Data, Result, Context>,
  options: TaskOptions<Data> = {},
): Task<Data, Result, Context> {
  checkName("task name", name, "Cannot define task");
  if (typeof handler !== "function") {
    throw new TypeError(`Cannot define task ${name}: handler must be a function, got ${handler}`);
  }
  const { schema, retry = {}, timeout } = options;
  const action = `Cannot define task ${name}`;
  checkRetry(action, retry);
  const { attempts = 3, backoff = DEFAULT_BACKOFF } = retry;
  if (timeout !== undefined) checkInt(action, "timeout", timeout, 1, MAX_MS);
  if (schema !== undefined && typeof schema?.["~standard"]?.validate !== "function") {
    throw new TypeError(`Cannot define task ${name}: schema must implement Standard Schema v1`);
  }
  const scheduled = options.cron !== undefined || options.every !== undefined;
  if (!scheduled) {
    // Schedule options alone would be dropped without a word: `priority` here is not the
    // task's priority, it is its schedule's.
    const alone = (["tz", "data", "catchUp", "overlap", "priority"] as const)
      .filter((key) => options[key] !== undefined);
    if (alone.length > 0) {
      throw new ValidationError(
        `${action}: ${alone.join(", ")} ${
          alone.length === 1 ? "is a schedule option" : "are schedule options"
        }: give cron or every too (a job's priority is given at enqueue)`,
      );
    }
  }
  const schedule = scheduled ? checkSchedule(action, name, options) : undefined;
  const rateLimit = options.rateLimit === undefined
    ? undefined
    : checkRateLimit(action, "rateLimit", options.rateLimit);
  return Object.freeze({ name, handler, schema, attempts, backoff, timeout, schedule, rateLimit });
}

/**
 * Runs a task's schema on `data`, if it has one.
 *
 * @throws {ValidationError} Naming the action, the task and the first issue.
 */
export async function validate<Data>(
  action: string,
  task: Task<Data, unknown, unknown>,
  data: unknown,
): Promise<Data> {
  if (task.schema === undefined) return data as Data;
  const result = await task.schema["~standard"].validate(data);
  if (result.issues === undefined) return result.value;
  const first = result.issues[0];
  const where = first?.path?.length ? ` at ${first.path.map(segment).join(".")}` : "";
  throw new ValidationError(
    `${action}: data for task ${task.name} is invalid${where}: ${first?.message ?? "unknown"}`,
    { issues: result.issues },
  );
}

/** A Standard Schema path segment is a key, or an object holding one. */
function segment(part: unknown): string {
  if (typeof part === "object" && part !== null && "key" in part) return String(part.key);
  return String(part);
}
