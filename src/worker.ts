/**
 * The main job: a consumer feeding a bounded set of slots, with dispatch by task name,
 * middleware, events, OS signals, the grace period and the lifespan. One job's run is in
 * execute.ts. Run a worker with `deno run -A worker.ts`.
 *
 * @module
 */
import { dispose, settlesWithin } from "./async.ts";
import { Consumer, type ConsumeSettings, consumeSettings } from "./consume.ts";
import { LeaseLostError, ShutdownError, toError, ValidationError } from "./errors.ts";
import { Job } from "./job.ts";
import { jobFields, type Log } from "./_log.ts";
import { checkInt, MAX_MS, pick, show } from "./_options.ts";
import { queueContext, type QueueOptions, type QueueSettings, queueSettings } from "./queue.ts";
import { evictionPolicy, share, type SharedRedis } from "./redis/connect.ts";
import { type AnyTask, validate } from "./task.ts";
import { storeSchedule } from "./schedule.ts";
import { checkRecorded } from "./priority.ts";
import { Slots } from "./_slots.ts";
import { checkIdle } from "./durable.ts";
import {
  Executor,
  type Middleware,
  type WorkerEventDetail,
  type WorkerEventName,
} from "./execute.ts";
import { internal } from "./_internal.ts";
import { checkRateLimit, Limiter, type RateLimit } from "./limits.ts";
import { checkGroupOptions, type GroupOptions, storeGroupOptions } from "./groups.ts";
import {
  checkMetricsOptions,
  Collector,
  type MetricsOptions,
  type WorkerMetrics,
} from "./metrics.ts";
import { stats } from "./stats.ts";
import { JobTracer } from "./trace.ts";
import { checkWebhookOptions, WEBHOOK_TASK, type WebhookOptions, webhookTask } from "./webhook.ts";

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
   * How this worker delivers webhooks (jobs enqueued with `webhook`): each POST's timeout, and
   * the deliveries' retry policy. Every worker of the queue delivers them.
   *
   * @default {{ timeout: 10_000, retry: { attempts: 10, backoff: exponential from 1 s to 1 h } }}
   */
  webhooks?: WebhookOptions;
  /**
   * Stop gracefully on the first SIGINT/SIGTERM; on a second one, release everything and exit
   * the process with code 0 at once.
   *
   * @default {true}
   */
  handleSignals?: boolean;
  /**
   * At most `limit` starts in any `interval` ms of all this queue's tasks together, across all
   * workers (give every worker of the queue the same). A task's own `rateLimit` applies too. A
   * job over the limit waits, with no attempt charged and taking no room, and starts as soon
   * as its window opens. None by default.
   *
   * @example 500 starts a second over every task of the queue
   * ```ts
   * import { task, Worker } from "@sluice/sluice";
   * const tasks = [task("email", () => {}), task("sms", () => {})];
   * const worker = new Worker("notify", tasks, {
   *   rateLimit: { limit: 500, interval: 1_000 },
   *   handleSignals: false,
   * });
   * console.log(worker.name); // "notify"
   * ```
   */
  rateLimit?: RateLimit;
  /**
   * Limits each group (jobs enqueued with `group`) has to itself, across all workers:
   * `concurrency`, at most that many of a group's jobs in the ready stream at once (waiting or
   * running; a group's own `queue.groups.set` wins), and `rateLimit`, each group's own start
   * limit. Groups take turns: a group with a backlog holds no more of the stream than its
   * concurrency, so a small group's jobs start among a big one's. None by default.
   *
   * @example At most 2 running jobs and 10 starts a second per tenant
   * ```ts
   * import { task, Worker } from "@sluice/sluice";
   * const worker = new Worker("mail", [task("send", () => {})], {
   *   groups: { concurrency: 2, rateLimit: { limit: 10, interval: 1_000 } },
   *   handleSignals: false,
   * });
   * console.log(worker.name); // "mail"
   * ```
   */
  groups?: GroupOptions;
  /**
   * Counts this worker's jobs (completed, retried, dead, cancelled, timed out, rate-limited,
   * run times and pickup latency) for {@linkcode Worker.metrics} and OpenTelemetry; with a
   * `port`, serves them at `/metrics` in the Prometheus text format, with `/healthz` and
   * `/readyz` (503 while starting, stopping, or cut off from Redis). Off by default: nothing
   * is counted and nothing listens.
   *
   * @example Metrics on port 9464
   * ```ts
   * import { task, Worker } from "@sluice/sluice";
   * const worker = new Worker("mail", [task("send", () => {})], {
   *   metrics: { port: 9464, hostname: "127.0.0.1", queueInterval: 5_000 },
   *   handleSignals: false,
   * });
   * console.log(worker.metrics().jobs); // []
   * ```
   */
  metrics?: MetricsOptions;
  /**
   * Runs once before the first job; its value is every handler's `ctx.context`. If it is
   * `AsyncDisposable` or `Disposable`, it is disposed after the last job, at stop.
   */
  lifespan?: () => Context | Promise<Context>;
}

export type {
  Middleware,
  MiddlewareContext,
  WorkerEventDetail,
  WorkerEventName,
} from "./execute.ts";

/** How long aborted jobs get to wind down before they are released. */
const ABORT_WAIT_MS = 1_000;
/** The most an adaptive prefetch grows to (unless concurrency is higher). Throughput at
 * concurrency 32 was flat from a window of 256 up (65-68k/s at 256, 480 and 992). */
const AUTO_PREFETCH_MAX = 512;

/**
 * Runs tasks from a queue: reads jobs, runs at most `concurrency` at once, settles each one,
 * and shuts down gracefully. Extends `EventTarget`: listen for `started`, `completed`,
 * `retrying`, `dead`, `cancelled`, `rateLimited`, `progress` and `error`.
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
  #settings: QueueSettings;
  #consume: ConsumeSettings;
  #tasks: Map<string, AnyTask>;
  #options: WorkerOptions<Context>;
  /** Undefined: adaptive. */
  #prefetch: number | undefined;
  #gracePeriod: number;
  #logger: Log;
  #middleware: Middleware<Context>[] = [];
  /** One per running handler: `concurrency` of them. */
  #slots: Slots;
  #executor: Executor<Context>;
  #consumer: Consumer | undefined;
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
  #rateLimit: RateLimit | undefined;
  #groups: GroupOptions | undefined;
  #collector: Collector | undefined;
  #redis: SharedRedis | undefined;
  /** Jobs that reached an outcome here, and those of them that failed (retried or dead). */
  #processed = 0;
  #failed = 0;

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
    const { concurrency = 1, prefetch, gracePeriod = 10_000 } = options;
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
    this.#consume = consumeSettings(action, {
      prefetch: concurrency + (prefetch ?? concurrency),
      ...pick(options, "idleTimeout", "maxDeliveries"),
    });
    checkInt(action, "gracePeriod", gracePeriod, 0, MAX_MS);
    if (options.rateLimit !== undefined) {
      this.#rateLimit = checkRateLimit(action, "rateLimit", options.rateLimit);
    }
    if (options.groups !== undefined) this.#groups = checkGroupOptions(action, options.groups);
    const metrics = options.metrics === undefined
      ? undefined
      : checkMetricsOptions(action, options.metrics);
    this.#tasks = byName(tasks);
    if (this.#tasks.has(WEBHOOK_TASK)) {
      throw new TypeError(
        `${action}: task name ${WEBHOOK_TASK} is reserved: workers deliver webhooks with it`,
      );
    }
    const webhooks = checkWebhookOptions(action, options.webhooks ?? {});
    this.#settings = queueSettings(name, options);
    this.#tasks.set(WEBHOOK_TASK, webhookTask(this.#settings.signer, webhooks));
    checkIdle(action, this.#settings.durability, this.#consume.idleTimeout);
    this.name = name;
    this.concurrency = concurrency;
    this.#prefetch = prefetch;
    this.#gracePeriod = gracePeriod;
    this.#options = options;
    this.#logger = this.#settings.logger;
    this.#slots = new Slots(concurrency);
    this.#executor = new Executor(
      name,
      this.#tasks,
      this.#middleware,
      this.#slots,
      {
        emit: (type, detail) => this.#emit(type, detail),
        report: (e, job) => this.#report(e, job),
      },
      this.#logger,
      this.#closing.signal,
    );
    if (metrics !== undefined) {
      this.#collector = new Collector({
        queue: name,
        running: () => this.#executor.running.size,
        held: () => this.#consumer?.held.size ?? 0,
        readStats: () => {
          const { keys, group, lanes } = this.#settings;
          return this.#redis === undefined
            ? Promise.reject(new Error("not running"))
            : stats(this.#redis.command, keys, group, lanes);
        },
        notReady: () => this.#notReady(),
      }, metrics);
    }
    const { signal } = options;
    if (signal?.aborted) this.stop();
    signal?.addEventListener("abort", () => this.stop(), { once: true });
  }

  /** How many jobs are running now. */
  get running(): number {
    return this.#executor.running.size;
  }

  /**
   * This worker's figures: see {@linkcode WorkerMetrics}. The queue's counts in it are the
   * last read, at most `metrics.queueInterval` old while `/metrics` or OpenTelemetry asks.
   *
   * @throws {TypeError} If the `metrics` option is off.
   * @example
   * ```ts
   * import { Queue, task, Worker } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   *
   * await using redis = await startRedis();
   * await using queue = new Queue("q", { redis: redis.url });
   * const hello = task("hello", () => "hi");
   * await queue.enqueue(hello, null);
   * const worker = new Worker("q", [hello], {
   *   redis: redis.url,
   *   metrics: {},
   *   handleSignals: false,
   * });
   * worker.addEventListener("completed", () => worker.stop());
   * await worker.run();
   * console.log(worker.metrics().jobs[0]?.completed); // 1
   * ```
   */
  metrics(): WorkerMetrics {
    if (this.#collector === undefined) {
      throw new TypeError(
        `Cannot read the metrics of worker ${this.name}: the metrics option is off; pass metrics: {} (or { port }) to count`,
      );
    }
    return this.#collector.snapshot();
  }

  /** Where `/metrics`, `/healthz` and `/readyz` listen while the worker runs, if they do. */
  get metricsAddress(): { hostname: string; port: number } | undefined {
    return this.#collector?.address;
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
    const redis = share(this.#settings.redis, this.#logger);
    this.#redis = redis;
    /** The rate-limit pause channel's subscription, once the worker gets that far. */
    let listening: Promise<() => Promise<void>> | undefined;
    try {
      try {
        this.#collector?.start();
      } catch (err) {
        const { port, hostname } = this.#options.metrics!;
        throw new TypeError(
          `Cannot run worker ${this.name}: cannot serve metrics on ${
            hostname ?? "127.0.0.1"
          }:${port}: ${toError(err).message}`,
          { cause: err },
        );
      }
      void this.#checkEviction(redis);
      if (this.#options.lifespan) this.#executor.context = await this.#options.lifespan();
      // A priority list other than Redis's rejects run() here; if Redis cannot be reached
      // yet, the consumer checks again before its first read.
      await checkRecorded(
        `Cannot run worker ${this.name}`,
        redis.command,
        this.#settings.keys,
        this.#settings.lanes,
      ).catch((err) => {
        if (err instanceof ValidationError) throw err;
      });
      await this.#storeSchedules(redis);
      if (this.#groups !== undefined) {
        await storeGroupOptions(redis.command, this.#settings.keys, this.#groups)
          .catch((err) =>
            this.#logger.warn(
              `sluice: worker ${this.name}: could not store its groups option: ${
                toError(err).message
              }`,
            )
          );
      }
      [this.#executor.limiter, listening] = this.#limits(redis);
      this.#executor.tracer = JobTracer.create(this.name, this.#settings.group);
      const c = this.concurrency;
      const consumer = new Consumer(
        { ...queueContext(this.#settings, redis), delivers: true },
        this.#consume,
      );
      if (this.#prefetch === undefined) {
        consumer.adapt(c, c, Math.max(c, Math.min(AUTO_PREFETCH_MAX, 100_000 - c)));
      }
      this.#logger = this.#logger.child({ worker_id: consumer.name });
      this.#executor.logger = this.#logger;
      consumer.describe = () => ({
        concurrency: c,
        running: this.#executor.running.size,
        processed: this.#processed,
        failed: this.#failed,
      });
      this.#consumer = consumer;
      void this.#dispatch(consumer);
      if (this.#state !== "running") consumer.stop(); // stop() came during the lifespan
      await this.#stopRequested.promise;
      await this.#shutdown(consumer);
      if (consumer.failure !== undefined) throw consumer.failure;
    } finally {
      this.#closing.abort();
      await this.#collector?.stop();
      if (listening && !await settlesWithin(listening.then((stop) => stop()), 1_000)) {
        this.#logger.warn(`sluice: worker ${this.name}: could not unsubscribe`);
      }
      await this.#dispose();
      await redis.release();
      this.#redis = undefined;
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
      this.#stopped.resolve();
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
   * Stores the static schedules of this worker's tasks (id: the task name). A schedule stored
   * with the same definition already, by this worker's last run or by a peer, is left as it is.
   * Errors are logged: the worker runs its jobs all the same.
   */
  async #storeSchedules(redis: SharedRedis): Promise<void> {
    for (const task of this.#tasks.values()) {
      if (task.schedule === undefined) continue;
      try {
        await validate(`Cannot store schedule ${task.name}`, task, JSON.parse(task.schedule.data));
        await storeSchedule(
          redis.command,
          this.#settings.keys,
          task.name,
          task.schedule,
          this.#settings.lanes,
        );
      } catch (err) {
        this.#logger.error(
          `sluice: worker ${this.name}: could not store schedule ${task.name}`,
          err,
        );
      }
    }
  }

  /**
   * Warns once if Redis may evict keys when full: eviction deletes jobs without a trace. Sent
   * before the consumer's first command on the same connection, so it is answered first.
   */
  async #checkEviction(redis: SharedRedis): Promise<void> {
    const policy = await evictionPolicy(redis.command);
    if (policy === undefined || policy === "noeviction") return;
    this.#logger.warn(
      `sluice: worker ${this.name}: Redis maxmemory-policy is ${policy}, not noeviction: once Redis reaches maxmemory it evicts keys, which silently deletes queued jobs, delayed jobs and their records; set maxmemory-policy noeviction, so that enqueues fail with OutOfMemoryError instead`,
    );
  }

  async #shutdown(consumer: Consumer): Promise<void> {
    this.#state = "stopping";
    consumer.stop();
    const { running } = this.#executor;
    this.#logger.info?.(
      `sluice: worker ${this.name} (${consumer.name}) stopping: ${running.size} running, grace period ${this.#gracePeriod} ms`,
    );
    this.#slots.wake(); // the dispatcher may be waiting for a slot: it ends now
    // Held but not started (prefetched, or waiting for a slot): give back at once.
    await Promise.allSettled(
      [...consumer.held.values()].filter((job) => !running.has(job)).map((job) => job.release()),
    );
    const allDone = () => Promise.all(running.values());
    await Promise.race([settlesWithin(allDone(), this.#gracePeriod), this.#now.promise]);
    if (running.size > 0) {
      const reason = new ShutdownError(
        `Worker ${this.name} is shutting down and the grace period of ${this.#gracePeriod} ms is over`,
      );
      for (const job of running.keys()) Job[internal].abort(job, reason);
      await Promise.race([settlesWithin(allDone(), ABORT_WAIT_MS), this.#now.promise]);
    }
    // A second signal allows Redis one second; otherwise a few, then leases lapse to peers.
    await consumer.shutdown(this.#hurry ? 1_000 : 5_000);
  }

  /**
   * The rate limits: the Worker's and its tasks'. It listens for pauses asked by handlers on
   * any worker (`ctx.rateLimited`), and learns those already in force (Redis enforces them
   * for limited tasks in any case; this tells the worker to ask for the others). Returns the
   * limiter and the subscription (its undo once confirmed and the pauses read).
   */
  #limits(redis: SharedRedis): [Limiter, Promise<() => Promise<void>>] {
    const tasks = new Map<string, RateLimit>();
    for (const t of this.#tasks.values()) if (t.rateLimit) tasks.set(t.name, t.rateLimit);
    const { keys } = this.#settings;
    const limiter = new Limiter(
      keys,
      redis.command,
      this.#rateLimit,
      tasks,
      this.#groups?.rateLimit,
    );
    const warn = (err: unknown) =>
      this.#logger.warn(
        `sluice: worker ${this.name}: could not read rate-limit pauses: ${toError(err).message}`,
      );
    const listening = redis.pubsub.subscribe(keys.held, (m) => limiter.heard(m))
      .then(async (stop) => {
        await limiter.load().catch(warn);
        return stop;
      });
    listening.catch(warn);
    return [limiter, listening];
  }

  /**
   * Starts jobs as slots free up, taking each from the consumer: at once from its prefetch
   * buffer when it has one, so a job changes hands with no promise when one is ready. Ends
   * when the consumer stops.
   */
  async #dispatch(consumer: Consumer): Promise<void> {
    const slots = this.#slots;
    try {
      while (this.#state === "running") {
        if (!slots.tryTake()) {
          await slots.freed();
          continue;
        }
        const next = consumer.next();
        const job = next instanceof Promise ? await next : next;
        // Stopping meanwhile: the job stays held, and the shutdown releases it.
        if (job === undefined || this.#state !== "running" || job.settled) {
          slots.give();
          if (job === undefined) {
            // The consumer stopped on its own: run() rejects with why, once shut down.
            if (consumer.failure !== undefined && this.#state === "running") void this.stop();
            return;
          }
          continue;
        }
        this.#executor.start(job);
      }
    } catch (err) {
      this.#report(toError(err));
    }
  }

  #emit<K extends WorkerEventName>(type: K, detail: WorkerEventDetail[K]): void {
    this.#collector?.observe(type, detail);
    if (type === "completed" || type === "cancelled") this.#processed++;
    else if (type === "retrying" || type === "dead") {
      this.#processed++;
      this.#failed++;
    }
    // No event object on the hot path for an event nobody ever listened to.
    if (this.#listening.has(type)) this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Why the worker cannot take jobs now, or undefined if it can (for `/readyz`). */
  #notReady(): string | undefined {
    if (this.#state === "stopping" || this.#state === "stopped") return "stopping";
    if (this.#state !== "running" || this.#consumer === undefined) return "starting";
    const status = (this.#redis?.command as { status?: string } | undefined)?.status;
    if (status !== "ready") return `Redis connection is ${status ?? "closed"}`;
    return undefined;
  }

  #report(error: Error, job?: Job): void {
    const where = job ? ` (job ${job.id})` : "";
    if (!(error instanceof LeaseLostError)) {
      this.#logger.error(
        `sluice: worker ${this.name}${where}: ${error.message}`,
        error,
        job ? jobFields(job) : undefined,
      );
    }
    this.#emit("error", job ? { error, job } : { error });
  }

  #listen(): () => void {
    return onSignals(() => {
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
    });
  }

  async #dispose(): Promise<void> {
    const value = this.#executor.context as unknown;
    this.#executor.context = undefined;
    try {
      await dispose(value);
    } catch (err) {
      this.#report(toError(err));
    }
  }
}

/** The tasks by name, checked. */
function byName(tasks: readonly AnyTask[]): Map<string, AnyTask> {
  if (!Array.isArray(tasks) || tasks.length === 0) {
    throw new TypeError(
      `Cannot create worker: tasks must be a non-empty array, got ${show(tasks)}`,
    );
  }
  const map = new Map<string, AnyTask>();
  for (const t of tasks) {
    if (typeof t?.name !== "string" || typeof t.handler !== "function") {
      throw new TypeError(`Cannot create worker: ${show(t)} is not a task; make one with task()`);
    }
    if (map.has(t.name)) throw new TypeError(`Cannot create worker: two tasks are named ${t.name}`);
    map.set(t.name, t);
  }
  return map;
}

/** Calls `listener` on SIGINT and SIGTERM (SIGINT alone on Windows); returns the undo. */
function onSignals(listener: () => void): () => void {
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const sig of signals) Deno.addSignalListener(sig, listener);
  return () => {
    for (const sig of signals) Deno.removeSignalListener(sig, listener);
  };
}
