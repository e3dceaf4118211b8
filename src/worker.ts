/**
 * The main job: `consume()` piped into `pool()`, plus dispatch by task name, middleware,
 * events, OS signals, the grace period and the lifespan. Run it with `deno run -A worker.ts`.
 *
 * @module
 */
import { delay, settlesWithin } from "./async.ts";
import type { Consumer } from "./consume.ts";
import {
  CancelledError,
  LeaseLostError,
  NonRetryableError,
  ShutdownError,
  SluiceError,
  TimeoutError,
  toError,
} from "./errors.ts";
import { backoffDelay } from "./backoff.ts";
import { abort, type Job, markStarted } from "./job.ts";
import { consoleLogger, type Logger } from "./_log.ts";
import { checkInt, checkLimit, MAX_MS, show } from "./_options.ts";
import { commandClient, openConsumer, Queue, type QueueOptions } from "./queue.ts";
import { evictionPolicy } from "./redis.ts";
import { type AnyTask, type TaskContext, validate } from "./task.ts";

/** Options of {@linkcode Worker}. */
export interface WorkerOptions<Context = unknown> extends QueueOptions {
  /**
   * The most jobs running at once.
   *
   * @default {1}
   */
  concurrency?: number;
  /**
   * How many jobs to hold beyond the running ones, ready to start. Reads ask for exactly
   * `concurrency + prefetch` minus the jobs held. 0 holds only what runs.
   *
   * Left out, it adapts to the work: `concurrency`, plus as many jobs as this worker settles in
   * about 5 ms, up to 512. Slow jobs are then held no more than with `prefetch: concurrency`,
   * while fast ones travel in big batches, with fewer round trips per job. When jobs turn slow,
   * prefetched jobs that would wait over a second go back to the stream for idle peers.
   *
   * @default {concurrency, growing with fast jobs up to 512}
   */
  prefetch?: number;
  /**
   * A delivery idle this long (ms) is presumed dead and reclaimed by a peer. Held jobs are
   * renewed every `idleTimeout / 3`. A handler that blocks the event loop for longer can lose
   * its job: move CPU-bound work to a Web Worker.
   *
   * @default {30_000}
   */
  idleTimeout?: number;
  /**
   * On shutdown, how long (ms) running jobs get to finish before their signals abort with
   * `ShutdownError`. 0 aborts them at once.
   *
   * @default {10_000}
   */
  gracePeriod?: number;
  /**
   * A job delivered more than this many times (a crash loop) goes to the dead letters with
   * reason `delivery-limit`. `Infinity` turns the check off.
   *
   * @default {5}
   */
  maxDeliveries?: number;
  /** Stops the worker gracefully when it aborts, like SIGTERM. */
  signal?: AbortSignal;
  /**
   * Stop gracefully on the first SIGINT/SIGTERM; on a second one, release everything and exit
   * the process with code 0 at once.
   *
   * @default {true}
   */
  handleSignals?: boolean;
  /**
   * Runs once before the first job; its value is every handler's `ctx.context`. If it is
   * `AsyncDisposable` or `Disposable`, it is disposed after the last job, at stop.
   */
  lifespan?: () => Context | Promise<Context>;
}

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
  /** Something failed that the worker survived: a lost lease, a settle Redis refused. */
  error: { error: Error; job?: Job };
}

/** The names of worker events. */
export type WorkerEventName = keyof WorkerEventDetail;

/** How long aborted jobs get to wind down before they are released. */
const ABORT_WAIT_MS = 1_000;
/** Tries at settling a job while Redis is unreachable, before its lease is left to lapse. */
const SETTLE_ATTEMPTS = 5;
/** The most an adaptive prefetch grows to (unless concurrency is higher). Throughput at
 * concurrency 32 was flat from a window of 256 up (65-68k/s at 256, 480 and 992). */
const AUTO_PREFETCH_MAX = 512;

/**
 * Runs tasks from a queue: reads jobs, runs at most `concurrency` at once, settles each one,
 * and shuts down gracefully. Extends `EventTarget`: listen for `started`, `completed`,
 * `retrying`, `dead`, `cancelled` and `error`.
 *
 * @example A worker that stops itself
 * ```ts
 * import { Queue, task, Worker } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 *
 * await using redis = await startRedis();
 * const hello = task("hello", (data: { name: string }) => `hello ${data.name}`);
 * await using queue = new Queue("greetings", { redis: redis.url });
 * await queue.enqueue(hello, { name: "Ada" });
 *
 * const worker = new Worker("greetings", [hello], {
 *   redis: redis.url,
 *   concurrency: 4,
 *   handleSignals: false,
 * });
 * worker.addEventListener("completed", (e) => {
 *   console.log(e.detail.result); // "hello Ada"
 *   worker.stop();
 * });
 * await worker.run();
 * ```
 */
export class Worker<Context = unknown> extends EventTarget implements AsyncDisposable {
  /** The queue name. */
  readonly name: string;
  /** The most jobs running at once. */
  readonly concurrency: number;
  #queue: Queue;
  #tasks = new Map<string, AnyTask>();
  #options: WorkerOptions<Context>;
  /** Undefined: adaptive. */
  #prefetch: number | undefined;
  #gracePeriod: number;
  #logger: Logger;
  #middleware: Middleware<Context>[] = [];
  #running = new Map<Job, Promise<void>>();
  /** Jobs whose handler is running: each takes one of `concurrency` slots. */
  #handling = new Set<Job>();
  /** Resolves when a slot frees up. */
  #slot: PromiseWithResolvers<void> | undefined;
  #consumer: Consumer | undefined;
  #context: Context | undefined;
  #state: "idle" | "running" | "stopping" | "stopped" = "idle";
  #stopRequested = Promise.withResolvers<void>();
  #now = Promise.withResolvers<void>();
  #hurry = false;
  /** Aborts when run() is about to return: settle retries stop then. */
  #closing = new AbortController();
  #stopped = Promise.withResolvers<void>();
  #signalCount = 0;
  /** Event types that ever had a listener: the others are never built. */
  #listening = new Set<string>();

  /**
   * Makes a worker. Nothing connects until `run()`.
   *
   * @param name The queue to work on.
   * @param tasks The tasks this worker runs; jobs for other tasks are dead-lettered with
   * reason `unknown-task`.
   * @param options Concurrency, prefetch, timeouts, signals and lifespan.
   * @throws {RangeError} If an option is out of range.
   * @throws {TypeError} If a task is not a task, or two share a name.
   */
  constructor(name: string, tasks: readonly AnyTask[], options: WorkerOptions<Context> = {}) {
    super();
    const {
      concurrency = 1,
      prefetch,
      idleTimeout = 30_000,
      gracePeriod = 10_000,
      maxDeliveries = 5,
      logger = consoleLogger,
    } = options;
    const action = "Cannot create worker";
    checkInt(action, "concurrency", concurrency, 1, 100_000);
    if (prefetch !== undefined) checkInt(action, "prefetch", prefetch, 0, 100_000);
    if (concurrency + (prefetch ?? concurrency) > 100_000) {
      throw new RangeError(
        `${action}: concurrency + prefetch must be at most 100000, got ${concurrency} + ${
          prefetch ?? concurrency
        }`,
      );
    }
    checkInt(action, "idleTimeout", idleTimeout, 100, MAX_MS);
    checkInt(action, "gracePeriod", gracePeriod, 0, MAX_MS);
    checkLimit(action, "maxDeliveries", maxDeliveries, 1);
    if (!Array.isArray(tasks) || tasks.length === 0) {
      throw new TypeError(
        `Cannot create worker: tasks must be a non-empty array, got ${show(tasks)}`,
      );
    }
    for (const t of tasks) {
      if (typeof t?.name !== "string" || typeof t.handler !== "function") {
        throw new TypeError(`Cannot create worker: ${show(t)} is not a task; make one with task()`);
      }
      if (this.#tasks.has(t.name)) {
        throw new TypeError(`Cannot create worker: two tasks are named ${t.name}`);
      }
      this.#tasks.set(t.name, t);
    }
    this.#queue = new Queue(name, options);
    this.name = name;
    this.concurrency = concurrency;
    this.#prefetch = prefetch;
    this.#gracePeriod = gracePeriod;
    this.#options = options;
    this.#logger = logger;
    const { signal } = options;
    if (signal?.aborted) this.stop();
    signal?.addEventListener("abort", () => this.stop(), { once: true });
  }

  /** How many jobs are running now. */
  get running(): number {
    return this.#running.size;
  }

  /** This worker's consumer name in the group, once running. */
  get consumer(): string | undefined {
    return this.#consumer?.name;
  }

  /**
   * Adds middleware around every handler, outermost first.
   *
   * @example Time every job
   * ```ts
   * import { task, Worker } from "@sluice/sluice";
   * const worker = new Worker("q", [task("noop", () => {})], { handleSignals: false });
   * worker.use(async (ctx, next) => {
   *   const start = performance.now();
   *   await next();
   *   console.log(ctx.job.task, performance.now() - start);
   * });
   * ```
   */
  use(middleware: Middleware<Context>): this {
    if (typeof middleware !== "function") {
      throw new TypeError(`Cannot add middleware: it must be a function, got ${show(middleware)}`);
    }
    this.#middleware.push(middleware);
    return this;
  }

  /**
   * Runs until stopped: by `stop()`, the `signal` option, or SIGINT/SIGTERM. Resolves after
   * the graceful shutdown.
   *
   * @throws {TypeError} If the worker is already running.
   */
  async run(): Promise<void> {
    if (this.#state === "running") {
      throw new TypeError(`Cannot run worker ${this.name}: it is already running`);
    }
    if (this.#state !== "idle") return await this.#stopped.promise;
    this.#state = "running";
    // Listeners stay until run() resolves, so a late signal never meets Deno's default handler.
    const removeSignals = this.#options.handleSignals === false ? () => {} : this.#listen();
    try {
      void this.#checkEviction();
      if (this.#options.lifespan) this.#context = await this.#options.lifespan();
      const c = this.concurrency;
      const consumer = openConsumer(this.#queue, {
        prefetch: c + (this.#prefetch ?? c),
        idleTimeout: this.#options.idleTimeout ?? 30_000,
        maxDeliveries: this.#options.maxDeliveries ?? 5,
      });
      if (this.#prefetch === undefined) {
        consumer.adapt(c, c, Math.max(c, Math.min(AUTO_PREFETCH_MAX, 100_000 - c)));
      }
      this.#consumer = consumer;
      void this.#dispatch(consumer);
      if (this.#state !== "running") consumer.stop(); // stop() came during the lifespan
      await this.#stopRequested.promise;
      await this.#shutdown(consumer);
    } finally {
      this.#closing.abort();
      await this.#dispose();
      await this.#queue.close();
      this.#logger.info?.(`sluice: worker ${this.name} stopped`);
      this.#state = "stopped";
      removeSignals();
      this.#stopped.resolve();
    }
  }

  /**
   * Asks for a graceful stop and resolves when `run()` has finished.
   */
  stop(): Promise<void> {
    this.#stopRequested.resolve();
    if (this.#state === "running") {
      // At once, not a few microtasks later: no read may be sent after a stop.
      this.#state = "stopping";
      this.#consumer?.stop();
    } else if (this.#state === "idle") {
      this.#state = "stopped";
      this.#queue.close().finally(() => this.#stopped.resolve());
    }
    return this.#stopped.promise;
  }

  /** Same as {@linkcode Worker.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Typed listener for worker events. */
  override addEventListener<K extends WorkerEventName>(
    type: K,
    listener: (event: CustomEvent<WorkerEventDetail[K]>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /** Untyped listener, as on any `EventTarget`. */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | ((event: CustomEvent<never>) => void) | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (listener !== null) this.#listening.add(type);
    super.addEventListener(type, listener as EventListenerOrEventListenerObject | null, options);
  }

  /**
   * Warns once if Redis may evict keys when full: eviction deletes jobs without a trace. Sent
   * before the consumer's first command on the same connection, so it is answered first.
   */
  async #checkEviction(): Promise<void> {
    const policy = await evictionPolicy(commandClient(this.#queue));
    if (policy === undefined || policy === "noeviction") return;
    this.#logger.warn(
      `sluice: worker ${this.name}: Redis maxmemory-policy is ${policy}, not noeviction: once Redis reaches maxmemory it evicts keys, which silently deletes queued jobs, delayed jobs and their records; set maxmemory-policy noeviction, so that enqueues fail with OutOfMemoryError instead`,
    );
  }

  async #shutdown(consumer: Consumer): Promise<void> {
    this.#state = "stopping";
    consumer.stop();
    this.#logger.info?.(
      `sluice: worker ${this.name} (${consumer.name}) stopping: ${this.#running.size} running, grace period ${this.#gracePeriod} ms`,
    );
    this.#freed(); // the dispatcher may be waiting for a slot: it ends now
    // Held but not started (prefetched, or waiting for a slot): give back at once.
    await Promise.allSettled(
      [...consumer.held.values()].filter((job) => !this.#running.has(job)).map((job) =>
        job.release()
      ),
    );
    const allDone = () => Promise.all(this.#running.values());
    await Promise.race([settlesWithin(allDone(), this.#gracePeriod), this.#now.promise]);
    if (this.#running.size > 0) {
      const reason = new ShutdownError(
        `Worker ${this.name} is shutting down and the grace period of ${this.#gracePeriod} ms is over`,
      );
      for (const job of this.#running.keys()) abort(job, reason);
      await Promise.race([settlesWithin(allDone(), ABORT_WAIT_MS), this.#now.promise]);
    }
    // A second signal allows Redis one second; otherwise a few, then leases lapse to peers.
    await consumer.shutdown(this.#hurry ? 1_000 : 5_000);
  }

  /**
   * Starts jobs as slots free up, taking each from the consumer: at once from its prefetch
   * buffer when it has one. This is `consume()` piped into `pool()`, without a stream between
   * them: a job changes hands with no promise when one is ready. Ends when the consumer stops.
   */
  async #dispatch(consumer: Consumer): Promise<void> {
    try {
      while (this.#state === "running") {
        if (this.#handling.size >= this.concurrency) {
          this.#slot ??= Promise.withResolvers();
          await this.#slot.promise;
          continue;
        }
        const next = consumer.next();
        const job = next instanceof Promise ? await next : next;
        if (job === undefined) return;
        // Stopping meanwhile: the job stays held, and the shutdown releases it.
        if (this.#state !== "running" || job.settled) continue;
        this.#handling.add(job);
        this.#running.set(job, this.#execute(job));
      }
    } catch (err) {
      this.#report(toError(err));
    }
  }

  /** A handler returned (or the job ended without one): its slot goes to the next job. */
  #release(job: Job): void {
    if (this.#handling.delete(job)) this.#freed();
  }

  #freed(): void {
    const slot = this.#slot;
    this.#slot = undefined;
    slot?.resolve();
  }

  /**
   * Runs a job in a slot. The slot is freed as soon as the handler has returned; the settle
   * goes on without it (the job stays held, and counted by prefetch, until it lands), so a
   * slot bounds running handlers and not handlers plus a round trip.
   */
  async #execute(job: Job): Promise<void> {
    try {
      await this.#runJob(job);
    } catch (err) {
      this.#report(toError(err), job);
    } finally {
      this.#running.delete(job);
      this.#release(job);
    }
  }

  async #runJob(job: Job): Promise<void> {
    if (job.signal.reason instanceof CancelledError) {
      // Cancelled while it waited for a slot: never run.
      await this.#settle(job, () => job.ack());
      this.#emit("cancelled", { job });
      return;
    }
    const task = this.#tasks.get(job.task);
    if (task === undefined) {
      const error = new SluiceError(
        `Cannot run job ${job.id}: worker ${this.name} has no task named ${job.task}`,
      );
      await this.#settle(job, () => job.fail(error, "unknown-task"));
      this.#emit("dead", { job, error, reason: "unknown-task" });
      return;
    }
    let data: unknown = job.data;
    try {
      if (task.schema !== undefined) data = await validate(`Cannot run job ${job.id}`, task, data);
    } catch (err) {
      const error = toError(err);
      await this.#settle(job, () => job.fail(error, "invalid-data"));
      this.#emit("dead", { job, error, reason: "invalid-data" });
      return;
    }
    markStarted(job);
    this.#emit("started", { job });
    const ctx = new RunContext<Context>(job, data, this.#context as Context);
    const timeout = job.policy.timeout ?? task.timeout;
    let outcome: "ok" | "timeout" | Error = "ok";
    let work: Promise<void> | undefined;
    if (timeout === undefined) {
      // The usual case: no timer, and with no middleware the handler is awaited directly.
      try {
        if (this.#middleware.length === 0) ctx.result = await task.handler(data, ctx);
        else await this.#compose(ctx, task);
      } catch (err) {
        outcome = toError(err);
      }
      this.#release(job);
    } else {
      work = this.#compose(ctx, task);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), timeout);
      });
      outcome = await Promise.race([work.then(() => "ok" as const, toError), late]);
      clearTimeout(timer);
      if (outcome !== "timeout") this.#release(job);
    }
    if (outcome === "ok") {
      const { result } = ctx;
      // #settle() inlined: the hot path makes no closure unless the first try fails.
      try {
        await job.ack(result);
      } catch (err) {
        await this.#settleAgain(job, () => job.ack(result), err);
      }
      if (job.signal.reason instanceof CancelledError) this.#emit("cancelled", { job });
      else this.#emit("completed", { job, result });
      return;
    }
    if (outcome === "timeout") {
      const error = new TimeoutError(`Job ${job.id} (${job.task}) timed out after ${timeout} ms`);
      abort(job, error);
      try {
        await this.#failed(job, task, error);
      } finally {
        // The job is settled; its slot stays taken until the handler really returns, so a
        // handler that ignores its signal can never push the worker past its concurrency.
        await work!.catch(() => {});
      }
      return;
    }
    await this.#failed(job, task, outcome);
  }

  async #failed(job: Job, task: AnyTask, error: Error): Promise<void> {
    const reason = job.signal.aborted ? job.signal.reason : undefined;
    if (reason instanceof LeaseLostError) throw reason;
    if (reason instanceof ShutdownError) {
      // Not the job's fault: give it back uncharged, for a peer to run.
      await this.#settle(job, () => job.release());
      return;
    }
    if (reason instanceof CancelledError) {
      await this.#settle(job, () => job.ack()); // ends cancelled
      this.#emit("cancelled", { job });
      return;
    }
    const attempts = job.policy.retry?.attempts ?? task.attempts;
    if (error instanceof NonRetryableError) {
      await this.#settle(job, () => job.fail(error, "non-retryable"));
      this.#emit("dead", { job, error, reason: "non-retryable" });
    } else if (job.attempt < attempts) {
      const backoff = job.policy.retry?.backoff ?? task.backoff;
      let delay: number;
      try {
        delay = backoffDelay(backoff, job.attempt, error);
      } catch (err) {
        this.#report(toError(err), job); // a custom backoff that throws: retry at once
        delay = 0;
      }
      await this.#settle(job, () => job.retry(error, { delay }));
      this.#emit("retrying", { job, error, delay, dueAt: Date.now() + delay });
    } else {
      const reason = error instanceof TimeoutError ? "timeout" : "failed";
      await this.#settle(job, () => job.fail(error, reason));
      this.#emit("dead", { job, error, reason });
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

  /** The rest of {@linkcode Worker.#settle}, once the first try failed with `err`. */
  async #settleAgain(job: Job, settle: () => Promise<void>, err: unknown): Promise<void> {
    for (let attempt = 1;; attempt++) {
      if (err instanceof LeaseLostError || job.settled) throw err;
      if (attempt >= SETTLE_ATTEMPTS || this.#closing.signal.aborted) {
        this.#consumer?.abandon(
          job,
          new LeaseLostError(`Gave up settling job ${job.id}`, { cause: err }),
        );
        throw err;
      }
      const wait = 100 * 2 ** attempt;
      this.#logger.error(
        `sluice: worker ${this.name}: settling job ${job.id} failed (try ${attempt} of ${SETTLE_ATTEMPTS}), trying again in ${wait} ms`,
        err,
      );
      await delay(wait, { signal: this.#closing.signal }).catch(() => {});
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

  #emit<K extends WorkerEventName>(type: K, detail: WorkerEventDetail[K]): void {
    // No event object on the hot path for an event nobody ever listened to.
    if (this.#listening.has(type)) this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #report(error: Error, job?: Job): void {
    const where = job ? ` (job ${job.id})` : "";
    if (!(error instanceof LeaseLostError)) {
      this.#logger.error(`sluice: worker ${this.name}${where}: ${error.message}`, error);
    }
    this.#emit("error", job ? { error, job } : { error });
  }

  #listen(): () => void {
    const onSignal = () => {
      this.#signalCount++;
      if (this.#signalCount === 1) {
        this.stop();
        return;
      }
      // A second signal: skip the grace period, give Redis a moment to take the jobs back,
      // and exit 0 whatever happens.
      this.#hurry = true;
      this.#now.resolve();
      settlesWithin(this.#stopped.promise, 2_500).finally(() => Deno.exit(0));
    };
    const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
    for (const sig of signals) Deno.addSignalListener(sig, onSignal);
    return () => {
      for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
    };
  }

  async #dispose(): Promise<void> {
    const value = this.#context as unknown;
    this.#context = undefined;
    try {
      if (isObject(value) && Symbol.asyncDispose in value) {
        await (value as AsyncDisposable)[Symbol.asyncDispose]();
      } else if (isObject(value) && Symbol.dispose in value) {
        (value as Disposable)[Symbol.dispose]();
      }
    } catch (err) {
      this.#report(toError(err));
    }
  }
}

/** What a handler and middleware see of a running job; one object per job. */
class RunContext<Context> implements MiddlewareContext<Context> {
  readonly job: Job;
  data: unknown;
  readonly context: Context;
  result?: unknown;

  constructor(job: Job, data: unknown, context: Context) {
    this.job = job;
    this.data = data;
    this.context = context;
  }

  get signal(): AbortSignal {
    return this.job.signal;
  }
}

/** Runs the handler alone; what it throws, even synchronously, rejects the promise. */
async function runHandler<C>(ctx: MiddlewareContext<C>, task: AnyTask): Promise<void> {
  ctx.result = await task.handler(ctx.data, ctx);
}

function isObject(value: unknown): value is object {
  return (typeof value === "object" && value !== null) || typeof value === "function";
}
