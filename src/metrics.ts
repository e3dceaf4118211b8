/**
 * A worker's metrics: counters and histograms kept with plain field increments as its events
 * happen, gauges read when asked, and the queue's counts read from Redis at most once per
 * `queueInterval`. Served in the Prometheus text format (with `/healthz` and `/readyz`) on
 * `Deno.serve`, returned by `worker.metrics()`, and reported to OpenTelemetry meters.
 *
 * @module
 */
import {
  type BatchObservableResult,
  createNoopMeter,
  type Meter,
  metrics as otel,
} from "@opentelemetry/api";
import { internal } from "./_internal.ts";
import { Job as JobClass } from "./job.ts";
import { TimeoutError, toError } from "./errors.ts";
import type { WorkerEventDetail, WorkerEventName } from "./execute.ts";
import { checkInt, MAX_MS, show } from "./_options.ts";
import type { QueueStats } from "./stats.ts";

/** Options of a Worker's `metrics`: counting is on; the HTTP endpoints with a `port`. */
export interface MetricsOptions {
  /**
   * Serves `/metrics` (Prometheus text format), `/healthz` and `/readyz` on this port, 0 for
   * any free one (see `worker.metricsAddress`). Left out, nothing listens: the figures are
   * still counted, for `worker.metrics()` and OpenTelemetry.
   */
  port?: number;
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The queue's counts (waiting, active, delayed, dead, oldest waiting) are read from Redis at
   * most this often (ms), however often they are scraped.
   *
   * @default {5_000}
   */
  queueInterval?: number;
}

/** A histogram: how many observations fell in each bucket, their sum and their count. */
export interface Histogram {
  /** The buckets' upper bounds, in seconds; a last bucket, +Inf, follows. */
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative), one more than `bounds`: the last is +Inf. */
  readonly counts: readonly number[];
  /** The sum of the observations, in seconds. */
  readonly sum: number;
  /** How many observations. */
  readonly count: number;
}

/** One label set's counts: a task, with its priority and group where its jobs have one. */
export interface JobCounts {
  /** The task name. */
  readonly task: string;
  /** The jobs' priority, on a queue with priorities. */
  readonly priority?: string;
  /**
   * The jobs' group. After 1,000 label sets, new groups count together as `"_other"`: a
   * label per tenant would grow without bound.
   */
  readonly group?: string;
  /** Handlers that returned, their jobs acked. */
  readonly completed: number;
  /** Handlers that failed (or timed out) with an attempt left: retried later. */
  readonly retried: number;
  /** Jobs dead-lettered, by reason (`failed`, `timeout`, `unknown-task`, ...). */
  readonly dead: Readonly<Record<string, number>>;
  /** Jobs cancelled while this worker held them. */
  readonly cancelled: number;
  /** Handlers that ran past their timeout (counted in `retried` or `dead` too). */
  readonly timedOut: number;
  /** Jobs put off by a rate limit or a `ctx.rateLimited` pause, no attempt charged. */
  readonly rateLimited: number;
  /** Handler run times, start to outcome. */
  readonly runSeconds: Histogram;
  /** Pickup latency: from when the job could start (enqueued, or due) to its start. */
  readonly pickupSeconds: Histogram;
}

/** What `worker.metrics()` returns. */
export interface WorkerMetrics {
  /** The queue name. */
  readonly queue: string;
  /** Handlers running now. */
  readonly running: number;
  /** Jobs this worker holds now: running, and read ahead waiting for a slot. */
  readonly held: number;
  /** Counts by label set, in the order first seen. */
  readonly jobs: readonly JobCounts[];
  /**
   * The queue's counts as last read from Redis (at most once per `queueInterval`), with when
   * (epoch ms); undefined before the first read.
   */
  readonly queueStats: (QueueStats & { readonly readAt: number }) | undefined;
}

/** Run-time buckets, seconds: from a fast no-op to a 5-minute media job. */
const RUN_BOUNDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Pickup buckets, seconds. */
const PICKUP_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300];
/** Label sets before new groups fold into "_other". */
const MAX_SERIES = 1_000;
/** The longest a scrape waits for the queue's counts before it answers without fresh ones. */
const READ_WAIT_MS = 1_000;

/**
 * Checks a Worker's `metrics` option.
 *
 * @param action What the caller was doing, for the error.
 * @param options The option.
 * @returns The option with its defaults.
 * @throws {TypeError} If it is not an object, or the hostname is not a non-empty string.
 * @throws {RangeError} If the port or the interval is out of range.
 */
export function checkMetricsOptions(action: string, options: unknown): Required<MetricsOptions> {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `${action}: metrics must be an object such as { port: 9464 }, got ${show(options)}`,
    );
  }
  const { port, hostname = "127.0.0.1", queueInterval = 5_000 } = options as MetricsOptions;
  if (port !== undefined) checkInt(action, "metrics.port", port, 0, 65_535);
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(
      `${action}: metrics.hostname must be a non-empty string, got ${show(hostname)}`,
    );
  }
  checkInt(action, "metrics.queueInterval", queueInterval, 100, MAX_MS);
  // -1: no port, nothing listens.
  return { port: port ?? -1, hostname, queueInterval };
}

class Buckets {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array(bounds.length + 1).fill(0);
  }
  observe(seconds: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
  snapshot(): Histogram {
    return { bounds: this.bounds, counts: [...this.counts], sum: this.sum, count: this.count };
  }
}

class Series {
  completed = 0;
  retried = 0;
  dead = new Map<string, number>();
  cancelled = 0;
  timedOut = 0;
  rateLimited = 0;
  run = new Buckets(RUN_BOUNDS);
  pickup = new Buckets(PICKUP_BOUNDS);
  /** Prometheus labels after `queue`, escaped. */
  readonly labels: string;
  /** OpenTelemetry attributes, made once. */
  readonly attributes: Record<string, string>;
  constructor(
    readonly task: string,
    readonly priority: string | undefined,
    readonly group: string | undefined,
  ) {
    let labels = `,task="${escape(task)}"`;
    const attributes: Record<string, string> = { task };
    if (priority !== undefined) {
      labels += `,priority="${escape(priority)}"`;
      attributes.priority = priority;
    }
    if (group !== undefined) {
      labels += `,group="${escape(group)}"`;
      attributes.group = group;
    }
    this.labels = labels;
    this.attributes = attributes;
  }
}

/** What the collector reads from its worker when asked. */
export interface MetricsSource {
  /** The queue name. */
  readonly queue: string;
  /** Handlers running now. */
  running(): number;
  /** Jobs held now. */
  held(): number;
  /** The queue's counts, from Redis. */
  readStats(): Promise<QueueStats>;
  /** Undefined if ready to take jobs, else why not ("starting", "stopping", ...). */
  notReady(): string | undefined;
}

/** Counts a worker's events; serves and reports them. One per Worker with `metrics` on. */
export class Collector {
  readonly #source: MetricsSource;
  readonly #options: Required<MetricsOptions>;
  readonly #series = new Map<string, Series>();
  /** Jobs with no priority and no group (the usual case), by task: no key to build. */
  readonly #byTask = new Map<string, Series>();
  #queue: (QueueStats & { readAt: number }) | undefined;
  #reading: Promise<void> | undefined;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #otel: (() => void) | undefined;
  #runHistogram: ReturnType<Meter["createHistogram"]> | undefined;
  #pickupHistogram: ReturnType<Meter["createHistogram"]> | undefined;

  constructor(source: MetricsSource, options: Required<MetricsOptions>) {
    this.#source = source;
    this.#options = options;
  }

  /** Where the endpoints listen, once they do. */
  get address(): { hostname: string; port: number } | undefined {
    const addr = this.#server?.addr;
    return addr ? { hostname: addr.hostname, port: addr.port } : undefined;
  }

  /** Counts one worker event: plain increments, no allocation but a label set's first time. */
  observe<K extends WorkerEventName>(type: K, detail: WorkerEventDetail[K]): void {
    // Progress and error events count nothing: no series is looked up for them.
    if (type === "progress" || type === "error") return;
    const job = (detail as { job?: JobClass }).job;
    if (job === undefined) return;
    const series = this.#of(job);
    switch (type) {
      case "started": {
        const now = JobClass[internal].startedAt(job) ?? Date.now();
        const readyAt = Math.max(job.enqueuedAt, entryMs(job.entryId));
        const pickup = Math.max(0, now - readyAt) / 1_000;
        series.pickup.observe(pickup);
        this.#pickupHistogram?.record(pickup, series.attributes);
        return;
      }
      case "completed":
        series.completed++;
        break;
      case "retrying":
        series.retried++;
        if ((detail as WorkerEventDetail["retrying"]).error instanceof TimeoutError) {
          series.timedOut++;
        }
        break;
      case "dead": {
        const { reason, error } = detail as WorkerEventDetail["dead"];
        series.dead.set(reason, (series.dead.get(reason) ?? 0) + 1);
        if (error instanceof TimeoutError) series.timedOut++;
        break;
      }
      case "cancelled":
        series.cancelled++;
        break;
      case "rateLimited":
        series.rateLimited++;
        return;
      default:
        return;
    }
    const started = JobClass[internal].startedAt(job);
    if (started !== undefined) {
      const seconds = Math.max(0, Date.now() - started) / 1_000;
      series.run.observe(seconds);
      this.#runHistogram?.record(seconds, series.attributes);
    }
  }

  #of(job: JobClass): Series {
    const { task, priority } = job;
    let { group } = job;
    if (priority === undefined && group === undefined) {
      const plain = this.#byTask.get(task);
      if (plain !== undefined) return plain;
    }
    let key = `${task}\u0000${priority ?? ""}\u0000${group ?? ""}`;
    let series = this.#series.get(key);
    if (series !== undefined) return series;
    if (this.#series.size >= MAX_SERIES && group !== undefined) {
      // Past the cap, new groups count together.
      group = "_other";
      key = `${task}\u0000${priority ?? ""}\u0000_other`;
      series = this.#series.get(key);
      if (series !== undefined) return series;
    }
    series = new Series(task, priority, group);
    this.#series.set(key, series);
    if (priority === undefined && group === undefined) this.#byTask.set(task, series);
    return series;
  }

  /** The figures as an object: see {@linkcode WorkerMetrics}. */
  snapshot(): WorkerMetrics {
    return {
      queue: this.#source.queue,
      running: this.#source.running(),
      held: this.#source.held(),
      jobs: [...this.#series.values()].map((s) => ({
        task: s.task,
        ...(s.priority === undefined ? {} : { priority: s.priority }),
        ...(s.group === undefined ? {} : { group: s.group }),
        completed: s.completed,
        retried: s.retried,
        dead: Object.fromEntries(s.dead),
        cancelled: s.cancelled,
        timedOut: s.timedOut,
        rateLimited: s.rateLimited,
        runSeconds: s.run.snapshot(),
        pickupSeconds: s.pickup.snapshot(),
      })),
      queueStats: this.#queue,
    };
  }

  /**
   * Reads the queue's counts if the last read is older than `queueInterval`: one read at a
   * time, however many scrapes ask. Failures keep the last counts (a scrape still answers).
   */
  refresh(): Promise<void> {
    const last = this.#queue?.readAt ?? -Infinity;
    if (this.#reading !== undefined || Date.now() - last < this.#options.queueInterval) {
      return this.#reading ?? Promise.resolve();
    }
    this.#reading = this.#source.readStats().then(
      (stats) => void (this.#queue = { ...stats, readAt: Date.now() }),
      () => {},
    ).finally(() => this.#reading = undefined);
    return this.#reading;
  }

  /** The Prometheus text exposition of every figure. */
  async render(): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise((r) => timer = setTimeout(r, READ_WAIT_MS));
    try {
      await Promise.race([this.refresh(), late]);
    } finally {
      clearTimeout(timer);
    }
    return this.text();
  }

  /** The Prometheus text, from what is known now. */
  text(): string {
    const q = `queue="${escape(this.#source.queue)}"`;
    const series = [...this.#series.values()];
    const out: string[] = [];
    const counter = (name: string, help: string, value: (s: Series) => number) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const s of series) out.push(`${name}{${q}${s.labels}} ${value(s)}`);
    };
    counter(
      "sluice_jobs_completed_total",
      "Jobs whose handler returned, acked.",
      (s) => s.completed,
    );
    counter(
      "sluice_jobs_retried_total",
      "Jobs whose handler failed or timed out with an attempt left.",
      (s) => s.retried,
    );
    out.push(
      "# HELP sluice_jobs_dead_total Jobs dead-lettered, by reason.",
      "# TYPE sluice_jobs_dead_total counter",
    );
    for (const s of series) {
      for (const [reason, n] of s.dead) {
        out.push(`sluice_jobs_dead_total{${q}${s.labels},reason="${escape(reason)}"} ${n}`);
      }
    }
    counter("sluice_jobs_cancelled_total", "Jobs cancelled while held.", (s) => s.cancelled);
    counter(
      "sluice_jobs_timed_out_total",
      "Handlers that ran past their timeout.",
      (s) => s.timedOut,
    );
    counter(
      "sluice_jobs_rate_limited_total",
      "Jobs put off by a rate limit, no attempt charged.",
      (s) => s.rateLimited,
    );
    const histogram = (name: string, help: string, of: (s: Series) => Buckets) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
      for (const s of series) {
        const h = of(s);
        let total = 0;
        for (let i = 0; i < h.counts.length; i++) {
          total += h.counts[i]!;
          const le = i < h.bounds.length ? String(h.bounds[i]) : "+Inf";
          out.push(`${name}_bucket{${q}${s.labels},le="${le}"} ${total}`);
        }
        out.push(
          `${name}_sum{${q}${s.labels}} ${h.sum}`,
          `${name}_count{${q}${s.labels}} ${h.count}`,
        );
      }
    };
    histogram("sluice_job_run_seconds", "Handler run time, start to outcome.", (s) => s.run);
    histogram(
      "sluice_job_pickup_seconds",
      "From when a job could start (enqueued or due) to its start.",
      (s) => s.pickup,
    );
    out.push(
      "# HELP sluice_worker_running_jobs Handlers running now.",
      "# TYPE sluice_worker_running_jobs gauge",
      `sluice_worker_running_jobs{${q}} ${this.#source.running()}`,
      "# HELP sluice_worker_held_jobs Jobs held now: running and read ahead.",
      "# TYPE sluice_worker_held_jobs gauge",
      `sluice_worker_held_jobs{${q}} ${this.#source.held()}`,
    );
    const stats = this.#queue;
    if (stats !== undefined) {
      out.push(
        "# HELP sluice_queue_jobs The queue's jobs by state, read from Redis.",
        "# TYPE sluice_queue_jobs gauge",
      );
      for (const state of ["waiting", "active", "delayed", "dead"] as const) {
        out.push(`sluice_queue_jobs{${q},state="${state}"} ${stats[state]}`);
      }
      out.push(
        "# HELP sluice_queue_oldest_waiting_seconds Age of the oldest waiting job (0: none).",
        "# TYPE sluice_queue_oldest_waiting_seconds gauge",
        `sluice_queue_oldest_waiting_seconds{${q}} ${(stats.oldestWaitingMs ?? 0) / 1_000}`,
        "# HELP sluice_queue_workers Workers of the queue with a live heartbeat.",
        "# TYPE sluice_queue_workers gauge",
        `sluice_queue_workers{${q}} ${stats.workers}`,
        "# HELP sluice_queue_read_age_seconds How old the sluice_queue_* figures are.",
        "# TYPE sluice_queue_read_age_seconds gauge",
        `sluice_queue_read_age_seconds{${q}} ${(Date.now() - stats.readAt) / 1_000}`,
      );
    }
    return out.join("\n") + "\n";
  }

  /**
   * Starts the endpoints (with a port) and the OpenTelemetry instruments.
   *
   * @throws {Deno.errors.AddrInUse} If the port is taken.
   */
  start(): void {
    this.#startOtel();
    const { port, hostname } = this.#options;
    if (port === -1) return;
    this.#server = Deno.serve({ port, hostname, onListen: () => {} }, (req) => this.#handle(req));
  }

  /** Stops the endpoints and the OpenTelemetry callbacks. */
  async stop(): Promise<void> {
    this.#otel?.();
    this.#otel = undefined;
    const server = this.#server;
    this.#server = undefined;
    await this.#reading;
    if (server !== undefined) await server.shutdown();
  }

  async #handle(req: Request): Promise<Response> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const { pathname } = new URL(req.url);
    const text = { "content-type": "text/plain; charset=utf-8" };
    switch (pathname) {
      case "/metrics":
        return new Response(await this.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      case "/healthz":
        return new Response("ok\n", { headers: text });
      case "/readyz": {
        const why = this.#source.notReady();
        return why === undefined
          ? new Response("ready\n", { headers: text })
          : new Response(`not ready: ${why}\n`, { status: 503, headers: text });
      }
      default:
        return new Response("not found: try /metrics, /healthz or /readyz\n", {
          status: 404,
          headers: text,
        });
    }
  }

  /**
   * OpenTelemetry: counters and gauges observed from these figures when the SDK collects
   * (nothing per job), histograms recorded per job. With no SDK registered (Deno registers one
   * with `OTEL_DENO=true`), every call is a no-op.
   */
  #startOtel(): void {
    let meter: Meter;
    try {
      meter = otel.getMeter("sluice");
    } catch (err) {
      // deno-lint-ignore no-console
      console.warn(`sluice: metrics: no OpenTelemetry meter: ${toError(err).message}`);
      return;
    }
    const attributes = { "messaging.destination.name": this.#source.queue };
    const seconds = (name: string, description: string, bounds: number[]) =>
      meter.createHistogram(name, {
        description,
        unit: "s",
        advice: { explicitBucketBoundaries: bounds },
      });
    const run = seconds("sluice.job.run", "Handler run time", RUN_BOUNDS);
    // With no SDK, the histograms are the no-op's: nothing is recorded per job.
    if (run.constructor !== createNoopMeter().createHistogram("probe").constructor) {
      this.#runHistogram = run;
      this.#pickupHistogram = seconds("sluice.job.pickup", "Pickup latency", PICKUP_BOUNDS);
    }
    const counters = {
      completed: meter.createObservableCounter("sluice.jobs.completed"),
      retried: meter.createObservableCounter("sluice.jobs.retried"),
      dead: meter.createObservableCounter("sluice.jobs.dead"),
      cancelled: meter.createObservableCounter("sluice.jobs.cancelled"),
      timedOut: meter.createObservableCounter("sluice.jobs.timed_out"),
      rateLimited: meter.createObservableCounter("sluice.jobs.rate_limited"),
    };
    const running = meter.createObservableGauge("sluice.worker.running");
    const held = meter.createObservableGauge("sluice.worker.held");
    const queued = meter.createObservableGauge("sluice.queue.jobs");
    const callback = (r: BatchObservableResult) => {
      for (const s of this.#series.values()) {
        const a = { ...attributes, ...s.attributes };
        r.observe(counters.completed, s.completed, a);
        r.observe(counters.retried, s.retried, a);
        for (const [reason, n] of s.dead) r.observe(counters.dead, n, { ...a, reason });
        r.observe(counters.cancelled, s.cancelled, a);
        r.observe(counters.timedOut, s.timedOut, a);
        r.observe(counters.rateLimited, s.rateLimited, a);
      }
      r.observe(running, this.#source.running(), attributes);
      r.observe(held, this.#source.held(), attributes);
      void this.refresh();
      const stats = this.#queue;
      if (stats !== undefined) {
        for (const state of ["waiting", "active", "delayed", "dead"] as const) {
          r.observe(queued, stats[state], { ...attributes, state });
        }
      }
    };
    const observables = [...Object.values(counters), running, held, queued];
    meter.addBatchObservableCallback(callback, observables);
    this.#otel = () => meter.removeBatchObservableCallback(callback, observables);
  }
}

/** Escapes a Prometheus label value. */
function escape(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** The ms part of a stream entry id: when the entry was added. */
function entryMs(entryId: string): number {
  const cut = entryId.indexOf("-");
  return Number(cut === -1 ? entryId : entryId.slice(0, cut)) || 0;
}
