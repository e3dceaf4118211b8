/**
 * One job's run in a Worker: validation, the handler under its timeout and middleware, and
 * the outcome turned into a settle (ack, retry, dead letter, release), tried again while Redis
 * is unreachable.
 *
 * @module
 */
import type { Span } from "@opentelemetry/api";
import type { JobTracer } from "./trace.ts";
import { delay } from "./async.ts";
import {
  CancelledError,
  LeaseLostError,
  NonRetryableError,
  RateLimitedError,
  ShutdownError,
  SluiceError,
  TimeoutError,
  toError,
} from "./errors.ts";
import { backoffDelay, retryWait } from "./backoff.ts";
import { Job } from "./job.ts";
import { jobFields, type Log } from "./_log.ts";
import type { Slots } from "./_slots.ts";
import { internal } from "./_internal.ts";
import { type Limiter, pauseFor } from "./limits.ts";
import { show } from "./_options.ts";
import { type AnyTask, type TaskContext, validate } from "./task.ts";

/** The context middleware sees: the handler's context, the data, and the result once known. */
export interface MiddlewareContext<Context = unknown> extends TaskContext<Context> {
  /** The job data, after validation. */
  data: unknown;
  /** The handler's result, set when `next()` resolves; middleware may replace it. */
  result?: unknown;
}

/** Middleware: an onion around every handler. Call `next()` once to run the inner layers. */
export type Middleware<Context = unknown> = (
  ctx: MiddlewareContext<Context>,
  next: () => Promise<void>,
) => Promise<void>;

/** What each worker event carries in `detail`. */
export interface WorkerEventDetail {
  /** A handler is about to run the job. */
  started: { job: Job };
  /** The job's handler returned and the job was acked; `result` is what it returned. */
  completed: { job: Job; result: unknown };
  /**
   * The handler threw (or timed out) and the job was scheduled for another attempt, `delay`
   * ms from now, due at `dueAt` (epoch ms, this machine's clock).
   */
  retrying: { job: Job; error: Error; delay: number; dueAt: number };
  /** The job went to the dead letters; `reason` says why (`failed`, `unknown-task`, ...). */
  dead: { job: Job; error: Error; reason: string };
  /** The job was cancelled (from any process) and ended without running to completion. */
  cancelled: { job: Job };
  /**
   * The job was put off, with no attempt charged, until `dueAt` (epoch ms, this machine's
   * clock), `delay` ms from now: its task or queue was over its rate limit, its handler called
   * `ctx.rateLimited(ms)` (then `error` is the `RateLimitedError`), or Redis could not be asked
   * about the limit three times running (then it is put off a second).
   *
   * @example Count jobs put off
   * ```ts
   * import { task, Worker } from "@sluice/sluice";
   * const email = task("email", () => {}, { rateLimit: { limit: 10, interval: 1_000 } });
   * const worker = new Worker("mail", [email], { handleSignals: false });
   * let putOff = 0;
   * worker.addEventListener("rateLimited", (e) => {
   *   putOff++;
   *   console.log(e.detail.job.id, e.detail.delay, e.detail.error?.ms);
   * });
   * console.log(putOff); // 0
   * ```
   */
  rateLimited: { job: Job; delay: number; dueAt: number; error?: RateLimitedError };
  /** The handler reported progress (`ctx.progress`): each call, before its write coalesces. */
  progress: { job: Job; progress: unknown };
  /** Something failed that the worker survived: a lost lease, a settle Redis refused. */
  error: { error: Error; job?: Job };
}

/** The names of worker events. */
export type WorkerEventName = keyof WorkerEventDetail;

/** Tries at settling a job while Redis is unreachable, before its lease is left to lapse. */
const SETTLE_ATTEMPTS = 5;
/** Tries at asking the rate limits before a job is put off a second. */
const LIMIT_ATTEMPTS = 3;

/** What a run reports to its worker. */
export interface RunEvents {
  emit<K extends WorkerEventName>(type: K, detail: WorkerEventDetail[K]): void;
  report(error: Error, job?: Job): void;
}

/** Runs a worker's jobs, each in one of its slots. */
export class Executor<Context> {
  /** Jobs being run, with their runs. */
  readonly running = new Map<Job, Promise<void>>();
  /** The lifespan's value: every handler's `ctx.context`. */
  context: Context | undefined;
  /** The queue's rate limits, once the worker runs. */
  limiter: Limiter | undefined;
  /** Consumer spans, while an OpenTelemetry SDK is registered (see trace.ts). */
  tracer: JobTracer | undefined;
  #name: string;
  #tasks: ReadonlyMap<string, AnyTask>;
  #middleware: readonly Middleware<Context>[];
  #slots: Slots;
  #events: RunEvents;
  /** Where it logs: the worker's logger, with the worker's id once it runs. */
  logger: Log;
  #closing: AbortSignal;

  /**
   * @param closing Aborts when the worker is about to return: settle retries stop then.
   */
  constructor(
    name: string,
    tasks: ReadonlyMap<string, AnyTask>,
    middleware: readonly Middleware<Context>[],
    slots: Slots,
    events: RunEvents,
    logger: Log,
    closing: AbortSignal,
  ) {
    this.#name = name;
    this.#tasks = tasks;
    this.#middleware = middleware;
    this.#slots = slots;
    this.#events = events;
    this.logger = logger;
    this.#closing = closing;
  }

  /** Runs `job`, which holds one of the slots; the slot is given back once its handler ends. */
  start(job: Job): void {
    this.running.set(job, this.#run(job));
  }

  /**
   * The slot is given back as soon as the handler has returned; the settle goes on without it
   * (the job stays held, and counted by the window, until it lands), so slots bound running
   * handlers and not handlers plus a round trip.
   */
  async #run(job: Job): Promise<void> {
    let slot = true;
    let ctx: RunContext<Context> | undefined;
    let span: Span | undefined;
    try {
      // The signal is made only if someone asks for it (a handler, mostly): not read here.
      if (Job[internal].cancelled(job)) {
        // Cancelled while it waited for a slot: never run.
        await this.#settle(job, () => job.ack());
        this.#events.emit("cancelled", { job });
        return;
      }
      const task = this.#tasks.get(job.task);
      if (task === undefined) {
        const error = new SluiceError(
          `Cannot run job ${job.id}: worker ${this.#name} has no task named ${job.task}`,
        );
        await this.#settle(job, () => job.fail(error, "unknown-task"));
        this.#events.emit("dead", { job, error, reason: "unknown-task" });
        return;
      }
      let data: unknown = job.data;
      try {
        if (task.schema !== undefined) {
          data = await validate(`Cannot run job ${job.id}`, task, data);
        }
      } catch (err) {
        const error = toError(err);
        await this.#settle(job, () => job.fail(error, "invalid-data"));
        this.#events.emit("dead", { job, error, reason: "invalid-data" });
        return;
      }
      const limiter = this.limiter;
      if (limiter !== undefined && limiter.needs(job) && !limiter.spend(job)) {
        if (await this.#overLimit(job, limiter)) return;
      }
      Job[internal].started(job);
      const tracer = this.tracer;
      if (tracer !== undefined) {
        span = tracer.start(job);
        Job[internal].traced(job, span.spanContext().traceId);
      }
      this.#events.emit("started", { job });
      ctx = new RunContext<Context>(job, data, this.context as Context, this.#events);
      const timeout = job.policy.timeout ?? task.timeout;
      let outcome: "ok" | "timeout" | Error = "ok";
      let work: Promise<void> | undefined;
      if (timeout === undefined) {
        // The usual case: no timer, and with no middleware the handler is awaited directly.
        try {
          if (span !== undefined) await tracer!.run(span, () => this.#compose(ctx!, task));
          else if (this.#middleware.length === 0) ctx.result = await task.handler(data, ctx);
          else await this.#compose(ctx, task);
        } catch (err) {
          outcome = toError(err);
        }
        slot = false;
        this.#slots.give();
      } else {
        work = span === undefined
          ? this.#compose(ctx, task)
          : tracer!.run(span, () => this.#compose(ctx!, task));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), timeout);
        });
        outcome = await Promise.race([work.then(() => "ok" as const, toError), late]);
        clearTimeout(timer);
        if (outcome !== "timeout") {
          slot = false;
          this.#slots.give();
        }
      }
      // A progress write still due goes out now, ahead of the settle on the same connection:
      // it lands while the job still runs.
      ctx.close();
      if (span !== undefined) {
        const error = outcome === "ok"
          ? undefined
          : outcome === "timeout"
          ? new TimeoutError(`Job ${job.id} (${job.task}) timed out after ${timeout} ms`)
          : outcome;
        tracer!.end(span, error);
        span = undefined;
      }
      if (outcome === "ok") {
        const { result } = ctx;
        // #settle() inlined: the hot path makes no closure unless the first try fails.
        try {
          await job.ack(result);
        } catch (err) {
          await this.#settleAgain(job, () => job.ack(result), err);
        }
        if (Job[internal].cancelled(job)) this.#events.emit("cancelled", { job });
        else this.#events.emit("completed", { job, result });
      } else if (outcome === "timeout") {
        const error = new TimeoutError(`Job ${job.id} (${job.task}) timed out after ${timeout} ms`);
        Job[internal].abort(job, error);
        try {
          await this.#failed(job, task, error);
        } finally {
          // The job is settled; its slot stays taken until the handler really returns, so a
          // handler that ignores its signal can never push the worker past its concurrency.
          await work!.catch(() => {});
        }
      } else {
        await this.#failed(job, task, outcome);
      }
    } catch (err) {
      this.#events.report(toError(err), job);
    } finally {
      span?.end();
      ctx?.close();
      this.running.delete(job);
      if (slot) this.#slots.give();
    }
  }

  /**
   * Asks the rate limits whether `job` may start now; if not, puts it off until its window.
   * True if it will not start now: put off, or ended by what happened while it asked
   * (cancelled, lease lost, shutdown).
   */
  async #overLimit(job: Job, limiter: Limiter): Promise<boolean> {
    let due = 0, wait = 0;
    for (let attempt = 1;; attempt++) {
      try {
        const grant = await limiter.take(job);
        due = grant.due;
        wait = due === 0 ? 0 : Math.max(0, due - grant.now);
        break;
      } catch (err) {
        // Redis could not be asked: try again a few times, then put the job off a second
        // (no attempt charged), rather than give it back to be asked about at once.
        if (attempt < LIMIT_ATTEMPTS && !this.#closing.aborted) {
          await delay(retryWait(100, attempt, 400), { signal: this.#closing }).catch(() => {});
          continue;
        }
        this.#events.report(toError(err), job);
        await this.#putOff(job, "+1000", 1_000);
        return true;
      }
    }
    if (due === 0) {
      if (!job.signal.aborted) return false;
      // Cancelled, lease lost or shutting down while it asked: it does not start.
      await this.#failed(job, this.#tasks.get(job.task)!, toError(job.signal.reason));
      return true;
    }
    await this.#putOff(job, due, wait);
    return true;
  }

  /** Puts `job` off until `due` (Redis's clock, or "+ms"), `wait` ms from now. */
  async #putOff(
    job: Job,
    due: number | `+${number}`,
    wait: number,
    error?: RateLimitedError,
  ): Promise<void> {
    await this.#settle(job, () => Job[internal].defer(job, due));
    if (job.signal.reason instanceof CancelledError) this.#events.emit("cancelled", { job });
    else {
      const detail = { job, delay: wait, dueAt: Date.now() + wait };
      this.#events.emit("rateLimited", error ? { ...detail, error } : detail);
    }
  }

  async #failed(job: Job, task: AnyTask, error: Error): Promise<void> {
    const reason = job.signal.aborted ? job.signal.reason : undefined;
    if (reason instanceof LeaseLostError) throw reason;
    const pause = error instanceof RateLimitedError ? pauseFor(error.ms) : undefined;
    if (pause !== undefined && this.limiter !== undefined) {
      // The remote side is full: the task pauses everywhere, and the job waits it out (if the
      // pause cannot be stored, this job waits all the same).
      let held: { wait: number; due: number | `+${number}` } = {
        wait: pause,
        due: `+${pause}`,
      };
      try {
        held = await this.limiter.hold(job, pause);
      } catch (err) {
        this.#events.report(toError(err), job);
      }
      await this.#putOff(job, held.due, held.wait, error as RateLimitedError);
      return;
    }
    if (reason instanceof ShutdownError) {
      // Not the job's fault: give it back uncharged, for a peer to run.
      await this.#settle(job, () => job.release());
      return;
    }
    if (reason instanceof CancelledError) {
      await this.#settle(job, () => job.ack()); // ends cancelled
      this.#events.emit("cancelled", { job });
      return;
    }
    const attempts = job.policy.retry?.attempts ?? task.attempts;
    if (error instanceof NonRetryableError) {
      await this.#settle(job, () => job.fail(error, "non-retryable"));
      this.#events.emit("dead", { job, error, reason: "non-retryable" });
    } else if (job.attempt < attempts) {
      const backoff = job.policy.retry?.backoff ?? task.backoff;
      let delay: number;
      try {
        delay = backoffDelay(backoff, job.attempt, error);
      } catch (err) {
        this.#events.report(toError(err), job); // a custom backoff that throws: retry at once
        delay = 0;
      }
      await this.#settle(job, () => job.retry(error, { delay }));
      this.#events.emit("retrying", { job, error, delay, dueAt: Date.now() + delay });
    } else {
      const reason = error instanceof TimeoutError ? "timeout" : "failed";
      await this.#settle(job, () => job.fail(error, reason));
      this.#events.emit("dead", { job, error, reason });
    }
  }

  /**
   * Settles a job, trying again while Redis is unreachable. If it still fails, the job is
   * abandoned: its lease is no longer renewed, so a peer reclaims it after idleTimeout, and its
   * slot is freed. A lost lease is final at once.
   */
  async #settle(job: Job, settle: () => Promise<void>): Promise<void> {
    try {
      await settle();
    } catch (err) {
      await this.#settleAgain(job, settle, err);
    }
  }

  /** The rest of {@linkcode Executor.#settle}, once the first try failed with `err`. */
  async #settleAgain(job: Job, settle: () => Promise<void>, err: unknown): Promise<void> {
    for (let attempt = 1;; attempt++) {
      if (err instanceof LeaseLostError || job.settled) throw err;
      if (attempt >= SETTLE_ATTEMPTS || this.#closing.aborted) {
        Job[internal].lose(
          job,
          new LeaseLostError(`Gave up settling job ${job.id}`, { cause: err }),
        );
        throw err;
      }
      const wait = retryWait(100, attempt, 1_600);
      this.logger.error(
        `sluice: worker ${this.#name}: settling job ${job.id} failed (try ${attempt} of ${SETTLE_ATTEMPTS}), trying again in ${wait} ms`,
        err,
        jobFields(job),
      );
      await delay(wait, { signal: this.#closing }).catch(() => {});
      try {
        return await settle();
      } catch (again) {
        err = again;
      }
    }
  }

  #compose(ctx: MiddlewareContext<Context>, task: AnyTask): Promise<void> {
    const layers = this.#middleware;
    if (layers.length === 0) return runHandler(ctx, task);
    const dispatch = async (i: number): Promise<void> => {
      const layer = layers[i];
      if (layer === undefined) {
        ctx.result = await task.handler(ctx.data, ctx);
        return;
      }
      let called = false;
      await layer(ctx, () => {
        if (called) throw new SluiceError("Cannot call next() twice in one middleware");
        called = true;
        return dispatch(i + 1);
      });
    };
    return dispatch(0);
  }
}

/** What a handler and middleware see of a running job; one object per job. */
/** Progress writes per job: at most one per this many ms. */
const PROGRESS_EVERY_MS = 100;
/** The most bytes a progress value may take as JSON. */
const PROGRESS_MAX_BYTES = 4_096;

class RunContext<Context> implements MiddlewareContext<Context>, TaskContext<Context> {
  readonly job: Job;
  data: unknown;
  readonly context: Context;
  result?: unknown;
  #events: RunEvents;
  /** When the last progress write went out (performance.now()). */
  #wrote = -Infinity;
  /** The value a write due later will store, and who waits for it. */
  #next: { json: string; done: PromiseWithResolvers<void> } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(job: Job, data: unknown, context: Context, events: RunEvents) {
    this.job = job;
    this.data = data;
    this.context = context;
    this.#events = events;
  }

  progress(value: number | Record<string, unknown> | unknown[]): Promise<void> {
    let json: string;
    try {
      json = progressJson(this.job, value);
    } catch (err) {
      return Promise.reject(err);
    }
    this.#events.emit("progress", { job: this.job, progress: JSON.parse(json) });
    if (this.#next !== undefined) {
      // A write is due already: it stores this value instead.
      this.#next.json = json;
      return this.#next.done.promise;
    }
    const wait = this.#wrote + PROGRESS_EVERY_MS - performance.now();
    if (wait <= 0) return this.#write(json);
    const next = { json, done: Promise.withResolvers<void>() };
    this.#next = next;
    this.#timer = setTimeout(() => this.#flush(), wait);
    return next.done.promise;
  }

  /** The job ended: a write still due goes out now. */
  close(): void {
    if (this.#next !== undefined) this.#flush();
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const next = this.#next!;
    this.#next = undefined;
    void this.#write(next.json).then(next.done.resolve);
  }

  async #write(json: string): Promise<void> {
    this.#wrote = performance.now();
    try {
      await Job[internal].progress(this.job, json);
    } catch (err) {
      const error = toError(err);
      this.#events.report(
        new SluiceError(
          `Cannot store the progress of job ${this.job.id} (${this.job.task}): ${error.message}`,
          { cause: error },
        ),
        this.job,
      );
    }
  }

  /**
   * Aborts on the job's timeout, on cancellation, on a lost lease, and on shutdown once the
   * grace period is over.
   */
  get signal(): AbortSignal {
    return this.job.signal;
  }

  rateLimited(ms: number): never {
    const pause = pauseFor(ms);
    if (pause === undefined) {
      throw new RangeError(
        `Cannot pause task ${this.job.task}: ctx.rateLimited(ms) takes a finite number of ms, 0 or more, got ${
          show(ms)
        }`,
      );
    }
    // Retry-After arithmetic gives fractions and 0: rounded up, at least 1 ms, at most a day.
    throw new RateLimitedError(
      `Job ${this.job.id} (${this.job.task}) was rate limited: its task pauses for ${pause} ms`,
      pause,
    );
  }
}

/** Runs the handler alone; what it throws, even synchronously, rejects the promise. */
async function runHandler<C>(ctx: MiddlewareContext<C>, task: AnyTask): Promise<void> {
  ctx.result = await task.handler(ctx.data, ctx);
}

/** A progress value as JSON, checked: a number 0 to 100, or a small JSON object or array. */
function progressJson(job: Job, value: unknown): string {
  const action = `Cannot report the progress of job ${job.id} (${job.task})`;
  if (typeof value === "number") {
    if (!(value >= 0 && value <= 100)) {
      throw new RangeError(`${action}: a number must be 0 to 100, got ${show(value)}`);
    }
    return String(value);
  }
  if (typeof value !== "object" || value === null) {
    throw new TypeError(
      `${action}: it must be a number 0 to 100 or a JSON object, got ${show(value)}`,
    );
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new TypeError(`${action}: JSON cannot hold it: ${toError(err).message}`);
  }
  const bytes = new TextEncoder().encode(json).length;
  if (bytes > PROGRESS_MAX_BYTES) {
    throw new RangeError(
      `${action}: it takes ${bytes} bytes as JSON, more than ${PROGRESS_MAX_BYTES}`,
    );
  }
  return json;
}
