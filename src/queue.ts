/**
 * The Queue facade: options, then `enqueue`/`enqueueMany` (enqueue.ts), `stats` (stats.ts),
 * `job(id)` (handle.ts), `dead` (dead.ts), `consume` (consume.ts) and `close`.
 *
 * @module
 */
import { type ConsumeOptions, Consumer } from "./consume.ts";
import type { PubSub } from "./redis/pubsub.ts";
import type { Job } from "./job.ts";
import { checkName, type Keys, queueKeys } from "./keys.ts";
import { checkLogger, Log, type Logger } from "./_log.ts";
import {
  checkRedisConfig,
  DEFAULT_REDIS,
  type RedisConfig,
  share,
  type SharedRedis,
} from "./redis/connect.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { checkInt } from "./_options.ts";
import { eventsCap, type EventsOptions, follow, type QueueEvent } from "./events.ts";
import { checkDurability, type Durability } from "./durable.ts";
import { type HandleContext, JobHandle } from "./handle.ts";
import { DeadLetters } from "./dead.ts";
import { Signer, type SigningKey } from "./sign.ts";
import type { AnyTask, DataOf, ResultOf } from "./task.ts";
import {
  type EnqueueContext,
  type EnqueueItem,
  enqueueJob,
  enqueueJobs,
  type EnqueueManyOptions,
  type EnqueueOptions,
} from "./enqueue.ts";
import { liveWorkers, type QueueStats, stats, type WorkerInfo } from "./stats.ts";
import { pauseArgs } from "./scripts/pause.ts";
import { Schedules } from "./schedule.ts";
import { GroupProducer, Groups } from "./groups.ts";
import { checkRecorded, type Lanes, lanesOf } from "./priority.ts";
import { type JobsOptions, type JobsPage, listJobs, type ListState } from "./admin.ts";
import { findJobs, type JobDetails, jobDetails } from "./inspect.ts";
import {
  type BulkOptions,
  clean,
  type CleanOptions,
  type CleanState,
  drain,
  type DrainCounts,
  obliterate,
  type ObliterateOptions,
  retryDead,
  type RetryFilter,
} from "./bulk.ts";
import type { JobStatus } from "./handle.ts";

export type { EnqueueItem, EnqueueManyOptions, EnqueueOptions } from "./enqueue.ts";
export type { QueueStats, WorkerInfo } from "./stats.ts";
export type { EventsOptions, QueueEvent, QueueEventType } from "./events.ts";

/** Options of {@linkcode Queue}. */
export interface QueueOptions {
  /**
   * Where Redis is: a URL or ioredis options.
   *
   * @default {"redis://127.0.0.1:6379"}
   */
  redis?: RedisConfig;
  /**
   * The key prefix. Keys look like `<prefix>:{<queue>}:stream`.
   *
   * @default {"sluice"}
   */
  prefix?: string;
  /**
   * The consumer group that workers of this queue share.
   *
   * @default {"sluice"}
   */
  group?: string;
  /**
   * Where warnings and errors that cannot be thrown go: `"json"` writes one JSON object per
   * event to stderr (`time`, `level`, `msg`, `queue`, `worker_id`, and for a job `job_id`,
   * `task`, `attempt`, `trace_id`, `group`; never its data), `"text"` a line for a terminal,
   * and a {@linkcode Logger} of your own gets the message and that record.
   *
   * @default {"json"}
   */
  logger?: Logger | "json" | "text";
  /**
   * How long (ms) a finished job's record (state, result or error) is kept, for `result()`,
   * `info()` and dedup. 0 keeps nothing: the record goes when the job ends, and its id can be
   * used again at once. It applies where jobs are settled: set it on the Worker.
   *
   * @default {86_400_000} (24 h)
   */
  keepResult?: number;
  /**
   * The most dead letters kept; older ones are trimmed. 0 keeps all.
   *
   * @default {0}
   */
  maxDead?: number;
  /**
   * HMAC-SHA256 keys, `[current, ...previous]`: non-empty strings (their UTF-8 bytes are the
   * key) or Uint8Arrays; 32 random bytes or more is best. When set, every enqueue signs the
   * entry with the current key (wire field `sig`), and consumers run only entries signed with
   * one of the keys: others go to the dead letters as `bad-signature`. The signature covers
   * fields v, id, task, data, enq, trace, retry and timeout, not `attempt` (retries bump it
   * inside Redis, which has no key). To rotate, put the new key first and keep the old one
   * second until no entry signed with it is left.
   *
   * @default {undefined} (no signing, no checks)
   */
  signingKeys?: SigningKey[];
  /**
   * The most UTF-8 bytes a job's data (its JSON text) may hold; the limit itself is allowed.
   * A bigger enqueue throws `PayloadTooLargeError` and writes nothing; a bigger entry read
   * from the stream goes to the dead letters as `too-large`. 1 to 536,870,912 (512 MiB, the
   * largest value Redis takes by default).
   *
   * @default {1_048_576} (1 MiB)
   */
  maxPayloadBytes?: number;
  /**
   * Durable mode: each enqueue and each settle is followed, in the same pipeline, by
   * `WAIT replicas timeout`. `enqueue()` resolves only once that many replicas acknowledged
   * the jobs, and rejects with `DurabilityError` if they did not within `timeout` ms (the jobs
   * may or may not have been written). A worker reports a job done (its `ack()` resolves, its
   * `completed` event fires) only once its settle is replicated, sending it again until it
   * is. `replicas` 1 to 16, `timeout` 1 to 10,000 ms (and at most a third of `idleTimeout`).
   *
   * @default {undefined} (no WAIT: Redis replicates asynchronously, and a failover may lose
   * the last writes)
   */
  durability?: Durability;
  /**
   * Named priorities, lowest first, such as `["bulk", "normal", "urgent"]`: each has its own
   * stream, and workers start jobs of the highest non-empty priority first (strict order: a
   * flooded high priority starves the lower ones). Producers and workers of a queue must use
   * the same list: it is recorded in Redis at first use, and a different one is refused with
   * a `ValidationError`. 1 to 16 names of `A-Z a-z 0-9 . _ : -`.
   *
   * @default {undefined} (one priority, the plain stream)
   */
  priorities?: readonly string[];
  /**
   * The priority of jobs enqueued without one.
   *
   * @default {the first (lowest) of `priorities`}
   */
  defaultPriority?: string;
  /**
   * The queue's events (see {@linkcode Queue.events}): written by the scripts that move jobs,
   * in the same calls, to a stream capped at about `maxlen` events (approximate trimming).
   * `false` writes none. Set it the same way on producers and workers: each writes the events
   * of what it does (enqueues; starts, ends and retries). `maxlen` 1 to 10,000,000.
   *
   * @default {{ maxlen: 10_000 }}
   */
  events?: boolean | { maxlen?: number };
}

/** Redis's default proto-max-bulk-len: no bigger string can be written. */
const MAX_PAYLOAD = 512 * 1_048_576;

/** @internal A queue's options, checked, with their defaults: what Queue and Worker share. */
export interface QueueSettings {
  readonly name: string;
  readonly keys: Keys;
  readonly group: string;
  readonly redis: RedisConfig;
  readonly logger: Log;
  readonly keepResult: number;
  readonly maxDead: number;
  readonly maxPayloadBytes: number;
  readonly signer: Signer | undefined;
  /** Undefined: no WAIT anywhere. */
  readonly durability: Durability | undefined;
  /** The priorities' streams (one without priorities). */
  readonly lanes: Lanes;
  /** The events stream's cap (about how many events it keeps); 0: no events. */
  readonly events: number;
}

/**
 * @internal Checks a queue's options and fills in their defaults, for a Queue or a Worker.
 * @throws {TypeError} If the name, prefix, group, redis, durability or a signing key is
 * invalid.
 * @throws {RangeError} If a number is out of range.
 * @throws {ValidationError} If the priorities or the default priority are invalid.
 */
export function queueSettings(
  name: string,
  options: QueueOptions,
  action = "Cannot create queue",
): QueueSettings {
  const {
    redis = DEFAULT_REDIS,
    prefix = "sluice",
    group = "sluice",
    logger,
    keepResult = 86_400_000,
    maxDead = 0,
    maxPayloadBytes = 1_048_576,
    signingKeys,
    durability,
    priorities,
    defaultPriority,
    events = true,
  } = options;
  checkInt(action, "keepResult", keepResult, 0, 10 * 365 * 86_400_000);
  checkInt(action, "maxDead", maxDead, 0, Number.MAX_SAFE_INTEGER);
  checkInt(action, "maxPayloadBytes", maxPayloadBytes, 1, MAX_PAYLOAD);
  const signer = signingKeys === undefined ? undefined : new Signer(action, signingKeys);
  const keys = queueKeys(name, prefix);
  checkName("group", group);
  checkRedisConfig(action, redis);
  return {
    name,
    keys,
    group,
    redis,
    logger: new Log(checkLogger(action, logger), { queue: name }),
    keepResult,
    maxDead,
    maxPayloadBytes,
    signer,
    durability: durability === undefined ? undefined : checkDurability(action, durability),
    lanes: lanesOf(action, keys, priorities, defaultPriority),
    events: eventsCap(action, events),
  };
}

/** @internal What a consumer needs from its queue: settings and the shared connections. */
export interface QueueContext extends QueueSettings {
  /** The process's command connection. */
  readonly client: ScriptClient;
  /** The process's subscriptions. */
  readonly pubsub: PubSub;
  /** True for a Worker's consumer: it runs webhook deliveries (task sluice.webhook). */
  readonly delivers?: boolean;
}

/** @internal A consumer's view of a queue: its settings and the process's connections. */
export function queueContext(settings: QueueSettings, redis: SharedRedis): QueueContext {
  return { ...settings, client: redis.command, pubsub: redis.pubsub };
}

/**
 * A queue: enqueue jobs, and read them as a stream. Uses the process's shared command and
 * subscriber connections for its Redis, opened on first use; each `consume()` stream adds one
 * blocking connection.
 *
 * @example Enqueue and consume
 * ```ts
 * import { Queue, task } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 *
 * await using redis = await startRedis();
 * const resize = task("resize", (data: { url: string; width: number }) => data.width);
 * await using queue = new Queue("images", { redis: redis.url });
 * const handle = await queue.enqueue(resize, { url: "https://example.com/a.png", width: 100 });
 * await queue.enqueueMany(resize, [{ data: { url: "b.png", width: 50 } }]);
 * await queue.enqueue("resize", { url: "c.png", width: 10 }); // by name
 * console.log(typeof handle.id); // "string"
 * ```
 */
export class Queue implements AsyncDisposable {
  /** The queue name. */
  readonly name: string;
  /** The Redis keys of this queue. */
  readonly keys: Keys;
  /** The consumer group name. */
  readonly group: string;
  #settings: QueueSettings;
  #shared: SharedRedis | undefined;
  /** Aborts when the queue closes: waiting results reject then. */
  #closing = new AbortController();
  /** The dead letters: count, list, replay, purge. */
  readonly dead: DeadLetters;
  /** Cron and interval schedules: upsert, list, remove, pause, resume, trigger. */
  readonly schedules: Schedules;
  /** Groups: per-group concurrency, pause, resume, and their counts. */
  readonly groups: Groups;
  #consumers = new Set<Consumer>();
  /** Open `events()` streams: each resolves once its connection is closed. */
  #followers = new Set<Promise<void>>();
  #writes = new Set<Promise<unknown>>();
  #closed = false;
  /** What enqueue.ts needs: made once, since every enqueue uses it. */
  #producer: EnqueueContext;
  /** The priority list's check against Redis, once it has been started. */
  #checked: Promise<void> | undefined;

  /**
   * Makes a queue handle. Nothing connects until the first enqueue or consume.
   *
   * @param name 1 to 200 characters of `A-Z a-z 0-9 . _ : -`.
   * @param options Where Redis is, the key prefix and the group.
   * @throws {TypeError} If the name, prefix or group is invalid, a signing key is not a
   * non-empty string or Uint8Array, or `redis` is not a `redis://` URL or holds an option
   * ioredis does not know (or a `cluster` config that is not a list of nodes).
   * @throws {RangeError} If a number is out of range.
   */
  constructor(name: string, options: QueueOptions = {}) {
    const settings = queueSettings(name, options);
    this.#settings = settings;
    this.keys = settings.keys;
    this.name = name;
    this.group = settings.group;
    this.dead = new DeadLetters(this.#handleContext());
    this.#producer = this.#enqueueContext();
    this.schedules = new Schedules({
      keys: this.keys,
      lanes: settings.lanes,
      client: () => this.#command(),
      checkOpen: (action) => this.#checkOpen(action),
      enqueue: (task, data, id, priority) =>
        enqueueJob(this.#producer, task, data, priority === undefined ? { id } : { id, priority }),
    });
    this.groups = new Groups({
      keys: this.keys,
      client: () => this.#command(),
      checkOpen: (action) => this.#checkOpen(action),
    });
  }

  /**
   * A producer scoped to one group (tenant isolation): what it enqueues is in `group`, and its
   * `job(id)` sees only that group's jobs. Another group's job is unknown to it: `info()`
   * answers undefined, `cancel()` cancels nothing, `result()` rejects.
   *
   * @param group The group: 1 to 200 characters, no control characters.
   * @throws {ValidationError} If the group name is not valid.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * const tenant = queue.forGroup("tenant-42");
   * const handle = await tenant.enqueue("send", { to: "a@example.com" });
   * console.log((await handle.info())?.group); // "tenant-42"
   * ```
   */
  forGroup(group: string): GroupProducer {
    const handles: HandleContext = { ...this.#handleContext(), scope: group };
    return new GroupProducer(group, {
      enqueue: (task, data, options) => {
        this.#checkOpen("enqueue");
        return enqueueJob({ ...this.#producer, handles }, task, data, options);
      },
      enqueueMany: (task, items, options) => {
        this.#checkOpen("enqueue");
        return enqueueJobs({ ...this.#producer, handles }, task, items, options);
      },
      job: (id) => new JobHandle(handles, id),
    });
  }

  /**
   * A handle on job `id`, whoever enqueued it: `info()`, `result()`, `cancel()`.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("q", { redis: redis.url });
   * await queue.enqueue("t", 1, { id: "job-1" });
   * console.log((await queue.job("job-1").info())?.state); // "waiting"
   * ```
   */
  job<Result = unknown>(id: string): JobHandle<Result> {
    return new JobHandle<Result>(this.#handleContext(), id);
  }

  /**
   * Follows the queue's events, from any process: what happened to which job, as
   * {@linkcode QueueEvent}s (`waiting`, `delayed`, `active`, `progress`, `completed`,
   * `retrying`, `dead`, `cancelled`, `stalled`), read from the capped stream the queue's
   * scripts write them to (see the `events` option). The stream has a Redis connection of its
   * own; it ends when `signal` aborts, the stream is cancelled or the queue closes, and waits
   * out Redis going away.
   *
   * @param options Where to start (`since`: `"$"` from now on, the default), and a signal.
   * @throws {TypeError} If the queue is closed, or `since` is not a cursor, `"$"`, `"0"` or a
   * time.
   * @throws {RangeError} If `count` or a time is out of range.
   *
   * @example Follow a job from enqueue to its end
   * ```ts
   * import { Queue, task, Worker } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * const stop = new AbortController();
   * const events = queue.events({ signal: stop.signal });
   * await queue.enqueue("send", { to: "a@example.com" });
   * const worker = new Worker("mail", [task("send", () => "sent")], {
   *   redis: redis.url,
   *   handleSignals: false,
   * });
   * const run = worker.run();
   * const seen: string[] = [];
   * for await (const event of events) {
   *   seen.push(event.type);
   *   if (event.type === "completed") stop.abort();
   * }
   * console.log(seen); // ["waiting", "active", "completed"]
   * await worker.stop();
   * await run;
   * ```
   */
  events(options: EventsOptions = {}): ReadableStream<QueueEvent> {
    this.#checkOpen("follow events");
    const signal = options.signal === undefined
      ? this.#closing.signal
      : AbortSignal.any([options.signal, this.#closing.signal]);
    const { stream, ended } = follow(
      { name: this.name, keys: this.keys, redis: this.#settings.redis, client: this.#command() },
      { ...options, signal },
      `Cannot follow events of queue ${this.name}`,
    );
    this.#followers.add(ended);
    void ended.then(() => this.#followers.delete(ended));
    return stream;
  }

  /**
   * The queue's live workers (and `consume()` streams), from the heartbeat record each keeps
   * in Redis with its lease renewals: host, pid, version, start time, concurrency, running and
   * held jobs, processed and failed totals, last heartbeat. A worker killed with kill -9 drops
   * off when its heartbeat runs out (3 × idleTimeout, 90 s by default).
   *
   * @returns The live workers, soonest to expire first.
   * @throws {TypeError} If the queue is closed.
   * @example
   * ```ts
   * import { Queue, task, Worker } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("q", { redis: redis.url });
   * const worker = new Worker("q", [task("t", () => {})], {
   *   redis: redis.url,
   *   concurrency: 4,
   *   handleSignals: false,
   * });
   * const run = worker.run();
   * let live = await queue.workers();
   * while (live.length === 0) {
   *   await new Promise((r) => setTimeout(r, 10));
   *   live = await queue.workers();
   * }
   * console.log(live[0]?.concurrency, live[0]?.pid === Deno.pid); // 4 true
   * await worker.stop();
   * await run;
   * ```
   */
  async workers(): Promise<WorkerInfo[]> {
    this.#checkOpen("list workers");
    return await liveWorkers(this.#command(), this.keys);
  }

  /**
   * Lists the queue's jobs in one state, a page at a time: `waiting` (in a stream and not read
   * yet, or in a group's line), `active` (read by a worker and not settled), `delayed`
   * (delayed jobs and retries, soonest first), `dead` (the dead letters, oldest first), and
   * `completed` and `cancelled` (from the job records, while they are kept: see `keepResult`).
   * It reads Redis in bounded steps (XRANGE, XPENDING, ZRANGE, SCAN with COUNT), never KEYS.
   *
   * @param state Which jobs.
   * @param options `cursor` (the previous page's), `limit` (1 to 1,000, default 50), and
   * filters `task` and `group` (give the same ones with each page's cursor). Listings read
   * with SCAN (`completed`, `cancelled`, and waiting jobs in groups' lines) come in no set
   * order; a job whose record is written while you page may be listed twice or not at all, as
   * SCAN allows.
   * @returns The page, and the cursor of the next one (undefined at the end).
   * @throws {TypeError} If the state, cursor or a filter is invalid, or the queue is closed.
   * @throws {RangeError} If limit is out of range.
   *
   * @example Page through the waiting jobs
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * await queue.enqueueMany("welcome", [1, 2, 3].map((n) => ({ data: n })));
   * const first = await queue.jobs("waiting", { limit: 2 });
   * const rest = await queue.jobs("waiting", { cursor: first.cursor! });
   * console.log(first.jobs.length, rest.jobs.length, rest.cursor); // 2 1 undefined
   * ```
   */
  jobs(state: ListState, options: JobsOptions = {}): Promise<JobsPage> {
    this.#checkOpen("list jobs");
    return listJobs(this.#handleContext(), state, options);
  }

  /**
   * Finds jobs by id or by id prefix: the status of each, as {@linkcode JobHandle.info} gives
   * it. An id that is known gives that job alone, in one read; otherwise the job records whose
   * ids start with it are walked with SCAN (bounded steps), so it finds jobs whose records are
   * kept.
   *
   * @param idOrPrefix A job id, or the start of some.
   * @param options `limit`: the most jobs returned, 1 to 1,000 (default 20).
   * @returns The job with that id, or those whose ids start with it.
   * @throws {TypeError} If the id is not a non-empty string, or the queue is closed.
   * @throws {RangeError} If limit is out of range.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * await queue.enqueue("welcome", 1, { id: "order-17-mail" });
   * const [found] = await queue.find("order-17");
   * console.log(found?.id, found?.state); // "order-17-mail" "waiting"
   * ```
   */
  find(idOrPrefix: string, options: { limit?: number } = {}): Promise<JobStatus[]> {
    this.#checkOpen("find jobs");
    return findJobs(this.#handleContext(), idOrPrefix, options);
  }

  /**
   * Everything the admin tools show of one job: its status, its payload while Redis holds it,
   * its result once completed, and a timeline from its record and the queue's last 10,000
   * events (see {@linkcode Queue.events}).
   *
   * @param id The job id.
   * @returns The details, or undefined if the id is unknown.
   * @throws {TypeError} If the id is not a non-empty string, or the queue is closed.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * await queue.enqueue("welcome", { to: "a@example.com" }, { id: "w1" });
   * const details = await queue.jobDetails("w1");
   * console.log(details?.data, details?.timeline.map((s) => s.type)); // '{"to":"a@example.com"}' ["enqueued", "waiting"]
   * ```
   */
  jobDetails(id: string): Promise<JobDetails | undefined> {
    this.#checkOpen("read job details");
    return jobDetails(this.#handleContext(), id);
  }

  /**
   * Replays the dead letters there now (those that match the filter), oldest first, with
   * their attempts reset, in batches of 100. A letter replayed here and then dead again is
   * not replayed twice.
   *
   * @param state `"dead"`: the state retried.
   * @param filter `task`, `group` or `id` to pick letters; `signal` to stop between batches;
   * `onProgress` called with the count so far after each batch.
   * @returns How many were replayed.
   * @throws {TypeError} If a filter is invalid, or the queue is closed.
   *
   * @example Retry the dead letters of one task
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * console.log(await queue.retry("dead", { task: "welcome" })); // 0
   * ```
   */
  retry(state: "dead", filter: RetryFilter = {}): Promise<number> {
    this.#checkOpen("retry dead letters");
    if (state !== "dead") {
      throw new TypeError(
        `Cannot retry jobs: only "dead" jobs can be retried, got ${JSON.stringify(state)}`,
      );
    }
    return retryDead(this.#handleContext(), filter);
  }

  /**
   * Drains the queue: every waiting job (in a stream and not read yet, or in a group's line)
   * and every delayed job or retry ends as cancelled, as `cancel()` would end it (its record,
   * its `result()` waiters, its webhook and its event). Jobs workers hold run on, and dead
   * letters stay. It works in batches of 100, each all or nothing; jobs enqueued while it
   * runs may be drained or not.
   *
   * @param options `signal` to stop between batches; `onProgress` with the count so far.
   * @returns How many waiting and delayed jobs were drained.
   * @throws {TypeError} If the queue is closed.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * await queue.enqueue("welcome", 1);
   * await queue.enqueue("welcome", 2, { delay: 60_000 });
   * console.log(await queue.drain()); // { waiting: 1, delayed: 1 }
   * ```
   */
  drain(options: BulkOptions = {}): Promise<DrainCounts> {
    this.#checkOpen("drain");
    return drain(this.#handleContext(), options);
  }

  /**
   * Deletes finished jobs that ended at least `olderThan` ms ago: the kept records of
   * `completed` or `cancelled` jobs (walked with SCAN), or `dead` letters.
   *
   * @param state Which jobs.
   * @param options `olderThan` (ms, 0 for all; required), `signal`, `onProgress`.
   * @returns How many were deleted.
   * @throws {TypeError} If the state or an option is invalid, or the queue is closed.
   * @throws {RangeError} If olderThan is out of range.
   *
   * @example Delete dead letters older than a week
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * console.log(await queue.clean("dead", { olderThan: 7 * 86_400_000 })); // 0
   * ```
   */
  clean(state: CleanState, options: CleanOptions): Promise<number> {
    this.#checkOpen("clean");
    return clean(this.#handleContext(), state, options);
  }

  /**
   * Deletes every key of the queue: jobs in every state, records, dead letters, schedules,
   * settings and events. It refuses while live workers are attached, unless `force` is set.
   * Keys go 500 at a time; one cut off partway leaves some of the queue's keys, which can
   * disagree with each other (a group's count without its slots): run it again to finish
   * before using the queue.
   *
   * @param options `force`, `signal`, `onProgress` (keys deleted so far).
   * @returns How many keys were deleted.
   * @throws {SluiceError} If live workers are attached and `force` is not set.
   * @throws {TypeError} If an option is invalid, or the queue is closed.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("scratch", { redis: redis.url });
   * await queue.enqueue("t", 1);
   * console.log(await queue.obliterate() > 0, (await queue.stats()).waiting); // true 0
   * ```
   */
  obliterate(options: ObliterateOptions = {}): Promise<number> {
    this.#checkOpen("obliterate");
    return obliterate(this.#handleContext(), this.name, options);
  }

  /**
   * Counts jobs by state.
   *
   * @returns `waiting` (in the stream, not delivered), `active` (delivered, not settled),
   * `delayed` (delayed jobs and scheduled retries), `dead`, `consumers` (in the group),
   * `workers` (with a live heartbeat), `oldestWaitingMs` (age of the oldest waiting job, or
   * null), `lag` (the group's own count of undelivered entries, when Redis knows it),
   * `paused` (see {@linkcode Queue.pause}) and, on a queue with `priorities`,
   * `waitingByPriority`. With priorities, each count is over every priority's stream.
   */
  stats(): Promise<QueueStats> {
    return stats(this.#command(), this.keys, this.group, this.#settings.lanes);
  }

  /**
   * Pauses the queue, for every worker and `consume()` stream of it, in any process: within
   * one second of this resolving, none starts another job. Running jobs run to their end;
   * prefetched jobs stay held (leases renewed, no attempt charged) until the resume, or are
   * released if their worker stops. Enqueues and delayed jobs falling due go on as usual, and
   * the state lasts until {@linkcode Queue.resume}, across restarts of workers.
   *
   * @returns True if the queue was running, false if it was paused already.
   * @throws {TypeError} If the queue is closed.
   * @throws {Error} The Redis client's error if Redis cannot be reached.
   *
   * @example Pause, look, resume
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * console.log(await queue.pause()); // true
   * console.log(await queue.isPaused(), (await queue.stats()).paused); // true true
   * await queue.enqueue("welcome", { to: "a@example.com" }); // enqueues go on
   * console.log(await queue.resume()); // true
   * console.log(await queue.isPaused()); // false
   * ```
   */
  async pause(): Promise<boolean> {
    this.#checkOpen("pause");
    return await this.#command().sluicePause(pauseArgs(this.keys, true)) === 1;
  }

  /**
   * Resumes a paused queue: every worker and `consume()` stream of it, in any process, hears
   * it over pub/sub and starts jobs again at once (held ones first). No one polls.
   *
   * @returns True if the queue was paused, false if it was running already.
   * @throws {TypeError} If the queue is closed.
   * @throws {Error} The Redis client's error if Redis cannot be reached.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * await queue.pause();
   * console.log(await queue.resume(), await queue.resume()); // true false
   * ```
   */
  async resume(): Promise<boolean> {
    this.#checkOpen("resume");
    return await this.#command().sluicePause(pauseArgs(this.keys, false)) === 1;
  }

  /**
   * Whether the queue is paused now, as any process set it with {@linkcode Queue.pause}.
   *
   * @throws {TypeError} If the queue is closed.
   * @throws {Error} The Redis client's error if Redis cannot be reached.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * console.log(await queue.isPaused()); // false
   * ```
   */
  async isPaused(): Promise<boolean> {
    this.#checkOpen("read the pause state");
    return await this.#command().exists(this.keys.paused) === 1;
  }

  /**
   * Enqueues one job.
   *
   * If Redis cannot be reached, it fails with `ConnectionError`: after about 1.5 s when the
   * queue never connected, or when ioredis gives up reconnecting (`maxRetriesPerRequest`,
   * about 33 s by default) when the connection was lost. Give `signal` to wait less.
   *
   * @param task A task (data is typed and validated by its schema) or a task name.
   * @param data JSON-serializable data; `undefined` is written as `null`.
   * @param options The job id, delay, retry and timeout, and a `signal` to bound the wait.
   * @returns A handle on the job.
   * @throws {ValidationError} If the data fails the task's schema or is not JSON; nothing is
   * written.
   * @throws {PayloadTooLargeError} If the data's JSON is over `maxPayloadBytes`; nothing is
   * written.
   * @throws {OutOfMemoryError} If Redis is at `maxmemory`; nothing is written.
   * @throws {ConnectionError} If Redis cannot be reached; the message names the queue, the
   * address and the last connection error.
   * @throws {DurabilityError} With `durability`, if fewer replicas than asked acknowledged the
   * job within the timeout: it may or may not have been written.
   * @throws {unknown} `signal.reason`, soon after `signal` aborts. The job may still be
   * written if it was already sent: give an `id` so that trying again is deduplicated.
   *
   * @example Bound the wait in a request handler
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("mail", { redis: redis.url });
   * const handle = await queue.enqueue("welcome", { to: "a@example.com" }, {
   *   id: "welcome-a",
   *   signal: AbortSignal.timeout(2_000),
   * });
   * console.log(handle.id); // "welcome-a"
   * ```
   */
  async enqueue<T extends AnyTask | string>(
    task: T,
    data: T extends AnyTask ? DataOf<T> : unknown,
    options: EnqueueOptions = {},
  ): Promise<JobHandle<T extends AnyTask ? ResultOf<T> : unknown>> {
    this.#checkOpen("enqueue");
    return await enqueueJob(this.#producer, task, data, options) as JobHandle<
      T extends AnyTask ? ResultOf<T> : unknown
    >;
  }

  /**
   * Enqueues many jobs in pipelined round trips. Every item is validated first, so a bad item
   * throws before anything is written.
   *
   * @param task A task or a task name.
   * @param items Data (required; `null` for none) and options for each job.
   * @param options A `signal` to bound the wait, as for {@linkcode Queue.enqueue}.
   * @returns One handle per item, in order.
   * @throws {ValidationError} If any item fails validation or has no `data`; nothing is
   * written.
   * @throws {PayloadTooLargeError} If any item's data is over `maxPayloadBytes`; nothing is
   * written.
   * @throws {OutOfMemoryError} If Redis is at `maxmemory`. Jobs are written 100 to a script
   * call, each call all or nothing: the error says how many jobs were written, if any.
   * @throws {ConnectionError} If Redis cannot be reached, as for {@linkcode Queue.enqueue}.
   * @throws {DurabilityError} With `durability`, if fewer replicas than asked acknowledged
   * some of the jobs in time; its `ids` are those not known to be replicated.
   * @throws {unknown} `signal.reason`, soon after `signal` aborts; script calls already sent
   * may still be written.
   */
  async enqueueMany<T extends AnyTask | string>(
    task: T,
    items: Iterable<EnqueueItem<T extends AnyTask ? DataOf<T> : unknown>>,
    options: EnqueueManyOptions = {},
  ): Promise<JobHandle<T extends AnyTask ? ResultOf<T> : unknown>[]> {
    this.#checkOpen("enqueue");
    return await enqueueJobs(this.#producer, task, items, options) as JobHandle<
      T extends AnyTask ? ResultOf<T> : unknown
    >[];
  }

  #enqueueContext(): EnqueueContext {
    return {
      name: this.name,
      keys: this.keys,
      maxPayloadBytes: this.#settings.maxPayloadBytes,
      signer: this.#settings.signer,
      durability: this.#settings.durability,
      lanes: this.#settings.lanes,
      events: this.#settings.events,
      ready: () => this.#ready(),
      redis: this.#settings.redis,
      handles: this.#handleContext(),
      client: () => this.#command(),
      track: (write) => {
        this.#writes.add(write);
        const done = () => this.#writes.delete(write);
        write.then(done, done);
      },
    };
  }

  /** Records or checks the priority list in Redis, once: again only after a failure. */
  #ready(): Promise<void> {
    this.#checked ??= checkRecorded(
      `Cannot enqueue to ${this.name}`,
      this.#command(),
      this.keys,
      this.#settings.lanes,
    ).catch((err) => {
      this.#checked = undefined;
      throw err;
    });
    return this.#checked;
  }

  #handleContext(): HandleContext {
    return {
      keys: this.keys,
      group: this.group,
      keepResult: this.#settings.keepResult,
      events: this.#settings.events,
      lanes: this.#settings.lanes,
      closed: this.#closing.signal,
      client: () => this.#command(),
      subscribe: (channel, listener) => {
        this.#checkOpen("wait for a result");
        return this.#redis().pubsub.subscribe(channel, listener);
      },
      drain: () => this.#redis().pubsub.drain(),
    };
  }

  /**
   * Reads jobs as a stream. Iterate it with `for await`, or pipe it into `pool()`. Settle each
   * job with `ack`, `retry`, `fail` or `release`.
   *
   * When the stream ends (its signal aborts, or you break out of the loop), no more reads are
   * sent and prefetched jobs you never received are released at once. Jobs you hold stay
   * leased until you settle them or close the queue.
   *
   * @param options Signal, prefetch, idle timeout, delivery limit.
   * @returns A stream of leased jobs.
   * @throws {RangeError} If an option is out of range.
   *
   * @example The bare loop
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   *
   * await using redis = await startRedis();
   * await using queue = new Queue("q", { redis: redis.url });
   * await queue.enqueueMany("double", [1, 2, 3].map((n) => ({ data: n })));
   * const controller = new AbortController();
   * let sum = 0;
   * for await (const job of queue.consume({ signal: controller.signal, prefetch: 16 })) {
   *   sum += 2 * (job.data as number);
   *   await job.ack();
   *   if (sum === 12) controller.abort();
   * }
   * console.log(sum); // 12
   * ```
   */
  consume(options: ConsumeOptions = {}): ReadableStream<Job> {
    return this.#openConsumer(options).readable;
  }

  #openConsumer(options: ConsumeOptions): Consumer {
    this.#checkOpen("consume");
    const consumer = new Consumer(queueContext(this.#settings, this.#redis()), options);
    this.#consumers.add(consumer);
    consumer.done.then(() => this.#consumers.delete(consumer));
    return consumer;
  }

  /**
   * Closes the queue: open `consume()` streams stop and release every job they hold, then the
   * connections close. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new TypeError(`Cannot wait for a result: queue ${this.name} was closed`));
    await Promise.all([...this.#consumers].map((c) => c.shutdown()));
    await Promise.all(this.#followers);
    // Enqueues already under way finish first, so none is cut off by the disconnect.
    await Promise.allSettled(this.#writes);
    await this.#shared?.release();
  }

  /** Same as {@linkcode Queue.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(action: string): void {
    if (this.#closed) throw new TypeError(`Cannot ${action}: queue ${this.name} is closed`);
  }

  /** The process's connections to this queue's Redis, shared from first use. */
  #redis(): SharedRedis {
    return this.#shared ??= share(this.#settings.redis, this.#settings.logger);
  }

  #command(): ScriptClient {
    return this.#redis().command;
  }
}
