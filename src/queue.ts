/**
 * The producer side, and the door to the consumer side: `enqueue`, `enqueueMany` and
 * `consume`.
 *
 * @module
 */
import { type ConsumeOptions, Consumer, type QueueContext } from "./consume.ts";
import { encodeData, encodeFields, uuidv7 } from "./codec.ts";
import { toError, ValidationError } from "./errors.ts";
import type { Job } from "./job.ts";
import { checkName, type Keys, queueKeys } from "./keys.ts";
import { consoleLogger, type Logger } from "./_log.ts";
import { close, connect, DEFAULT_REDIS, processName, type RedisConfig } from "./redis.ts";
import type { ScriptClient } from "./scripts.ts";
import type { ChainableCommander } from "ioredis";
import { type Backoff, checkRetry } from "./backoff.ts";
import { MAX_MS, show } from "./_options.ts";
import { type AnyTask, type DataOf, type Task, validate } from "./task.ts";

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
   * Where warnings and errors that cannot be thrown go.
   *
   * @default {console}
   */
  logger?: Logger;
}

/** Options of one enqueued job. */
export interface EnqueueOptions {
  /**
   * The job id: 1 to 200 characters. Defaults to a UUIDv7, which sorts by time.
   */
  id?: string;
  /**
   * Run no sooner than this many ms from now, measured on Redis's clock. 0 runs at once.
   *
   * @default {0}
   */
  delay?: number;
  /** Run no sooner than this time (a Date or epoch ms). Cannot be combined with `delay`. */
  at?: Date | number;
  /**
   * This job's retry policy; it wins over the task's. Backoff must be fixed or exponential
   * here (a function cannot travel in the entry).
   */
  retry?: { attempts?: number; backoff?: Exclude<Backoff, (...args: never) => unknown> };
  /** This job's timeout in ms; it wins over the task's. */
  timeout?: number;
}

/** One item of {@linkcode Queue.enqueueMany}. */
export interface EnqueueItem<Data> extends EnqueueOptions {
  /** The job's data. */
  data: Data;
}

/** A handle on an enqueued job. */
export interface JobHandle {
  /** The job id. */
  readonly id: string;
  /** The stream entry id, for a job written to the stream at once. */
  readonly entryId?: string;
  /** When a delayed job is due, epoch ms on Redis's clock. */
  readonly dueAt?: number;
}

const ENQUEUE_CHUNK = 5_000;

interface Entry {
  id: string;
  fields: string[];
  when: { mode: "delay" | "at"; ms: number } | undefined;
}

/** When a job is due: undefined for now, else a delay or an epoch time. */
function schedule(action: string, options: EnqueueOptions): Entry["when"] {
  const { delay, at } = options;
  if (delay !== undefined && at !== undefined) {
    throw new ValidationError(`${action}: give delay or at, not both`);
  }
  if (delay !== undefined) {
    if (!Number.isInteger(delay) || delay < 0 || delay > MAX_DELAY) {
      throw new ValidationError(
        `${action}: delay must be an integer from 0 to ${MAX_DELAY} ms, got ${show(delay)}`,
      );
    }
    return delay === 0 ? undefined : { mode: "delay", ms: delay };
  }
  if (at !== undefined) {
    const ms = at instanceof Date ? at.getTime() : at;
    if (!Number.isInteger(ms) || ms < 0 || ms > Number.MAX_SAFE_INTEGER) {
      throw new ValidationError(`${action}: at must be a valid Date or epoch ms, got ${show(at)}`);
    }
    return { mode: "at", ms };
  }
  return undefined;
}

/** The per-job retry and timeout options, checked and put in wire form. */
function jobOptions(action: string, options: EnqueueOptions): { retry?: string; timeout?: number } {
  const out: { retry?: string; timeout?: number } = {};
  if (options.retry !== undefined) {
    try {
      if (typeof options.retry?.backoff === "function") {
        throw new TypeError(`${action}: retry.backoff cannot be a function at enqueue`);
      }
      checkRetry(action, options.retry);
    } catch (err) {
      throw new ValidationError(toError(err).message, { cause: err });
    }
    out.retry = JSON.stringify(options.retry);
  }
  if (options.timeout !== undefined) {
    if (!Number.isInteger(options.timeout) || options.timeout < 1 || options.timeout > MAX_MS) {
      throw new ValidationError(
        `${action}: timeout must be an integer from 1 to ${MAX_MS} ms, got ${
          show(options.timeout)
        }`,
      );
    }
    out.timeout = options.timeout;
  }
  return out;
}

/** Ten years: far enough for any schedule, near enough to catch unit mistakes. */
const MAX_DELAY = 10 * 365 * 24 * 3_600_000;

let openConsumerOf: (queue: Queue, options: ConsumeOptions) => Consumer;

/** @internal The consumer behind `queue.consume()`, with its held set, for `Worker`. */
export function openConsumer(queue: Queue, options: ConsumeOptions): Consumer {
  return openConsumerOf(queue, options);
}

/**
 * A queue: enqueue jobs, and read them as a stream. Holds one command connection, opened on
 * first use; each `consume()` stream adds one blocking connection.
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
  #redis: RedisConfig;
  #logger: Logger;
  #client: ScriptClient | undefined;
  #group: Promise<void> | undefined;
  #consumers = new Set<Consumer>();
  #writes = new Set<Promise<unknown>>();
  #closed = false;

  /**
   * Makes a queue handle. Nothing connects until the first enqueue or consume.
   *
   * @param name 1 to 200 characters of `A-Z a-z 0-9 . _ : -`.
   * @param options Where Redis is, the key prefix and the group.
   * @throws {TypeError} If the name, prefix or group is invalid.
   */
  constructor(name: string, options: QueueOptions = {}) {
    const { redis = DEFAULT_REDIS, prefix = "sluice", group = "sluice", logger = consoleLogger } =
      options;
    this.keys = queueKeys(name, prefix);
    checkName("group", group);
    if (typeof redis !== "string" && (typeof redis !== "object" || redis === null)) {
      throw new TypeError(
        `Cannot create queue: redis must be a URL or ioredis options, got ${redis}`,
      );
    }
    this.name = name;
    this.group = group;
    this.#redis = redis;
    this.#logger = logger;
  }

  /**
   * Enqueues one job.
   *
   * @param task A task (data is typed and validated by its schema) or a task name.
   * @param data JSON-serializable data.
   * @param options The job id.
   * @returns A handle on the job.
   * @throws {ValidationError} If the data fails the task's schema or is not JSON; nothing is
   * written.
   */
  async enqueue<T extends AnyTask | string>(
    task: T,
    data: T extends AnyTask ? DataOf<T> : unknown,
    options: EnqueueOptions = {},
  ): Promise<JobHandle> {
    const [handle] = await this.enqueueMany(task, [{ ...options, data }]);
    return handle!;
  }

  /**
   * Enqueues many jobs in pipelined round trips. Every item is validated first, so a bad item
   * throws before anything is written.
   *
   * @param task A task or a task name.
   * @param items Data and an optional id for each job.
   * @returns One handle per item, in order.
   * @throws {ValidationError} If any item fails validation; nothing is written.
   */
  async enqueueMany<T extends AnyTask | string>(
    task: T,
    items: Iterable<EnqueueItem<T extends AnyTask ? DataOf<T> : unknown>>,
  ): Promise<JobHandle[]> {
    this.#checkOpen("enqueue");
    const name = typeof task === "string" ? task : (task as AnyTask)?.name;
    checkName("task name", name, "Cannot enqueue");
    const now = Date.now();
    const entries: Entry[] = [];
    for (const item of items) {
      const { id = uuidv7() } = item;
      const action = `Cannot enqueue ${name}`;
      const when = schedule(action, item);
      const options = jobOptions(action, item);
      if (typeof id !== "string" || id.length === 0 || id.length > 200) {
        throw new ValidationError(
          `Cannot enqueue ${name}: id must be a string of 1 to 200 characters, got ${
            JSON.stringify(id)
          }`,
        );
      }
      let data: unknown = item.data;
      if (typeof task !== "string") data = await validate(`Cannot enqueue`, task as Task, data);
      let text: string;
      try {
        text = encodeData(data);
      } catch (err) {
        throw new ValidationError(
          `Cannot enqueue ${name}: data is not JSON-serializable: ${toError(err).message}`,
          { cause: err },
        );
      }
      entries.push({
        id,
        when,
        fields: encodeFields({ id, task: name, data: text, attempt: 1, enq: now, ...options }),
      });
    }
    const write = this.#write(entries);
    this.#writes.add(write);
    try {
      return await write;
    } finally {
      this.#writes.delete(write);
    }
  }

  async #write(entries: Entry[]): Promise<JobHandle[]> {
    const client = this.#command();
    const { stream, delayed, payloads, wake } = this.keys;
    const handles: JobHandle[] = [];
    for (let i = 0; i < entries.length; i += ENQUEUE_CHUNK) {
      const chunk = entries.slice(i, i + ENQUEUE_CHUNK);
      if (chunk.length === 1 && chunk[0]!.when === undefined) {
        const entryId = await client.xadd(stream, "*", ...chunk[0]!.fields);
        handles.push({ id: chunk[0]!.id, entryId: entryId! });
        continue;
      }
      const pipeline = client.pipeline() as unknown as ScriptClient;
      for (const { when, fields } of chunk) {
        if (when === undefined) pipeline.xadd(stream, "*", ...fields);
        else {pipeline.sluiceSchedule(
            delayed,
            payloads,
            wake,
            when.mode,
            String(when.ms),
            ...fields,
          );}
      }
      const results = (await (pipeline as unknown as ChainableCommander).exec()) ?? [];
      results.forEach(([err, reply], j) => {
        if (err) throw err;
        const { id, when } = chunk[j]!;
        handles.push(
          when === undefined ? { id, entryId: reply as string } : { id, dueAt: Number(reply) },
        );
      });
    }
    return handles;
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

  static {
    openConsumerOf = (queue, options) => queue.#openConsumer(options);
  }

  #openConsumer(options: ConsumeOptions): Consumer {
    this.#checkOpen("consume");
    const consumer = new Consumer(this.#context(), options);
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
    await Promise.all([...this.#consumers].map((c) => c.shutdown()));
    // Enqueues already under way finish first, so none is cut off by the disconnect.
    await Promise.allSettled(this.#writes);
    if (this.#client !== undefined) await close(this.#client);
  }

  /** Same as {@linkcode Queue.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(action: string): void {
    if (this.#closed) throw new TypeError(`Cannot ${action}: queue ${this.name} is closed`);
  }

  #command(): ScriptClient {
    this.#client ??= connect(this.#redis, "command", `${this.name}:${processName()}`);
    return this.#client;
  }

  #ensureGroup(force = false): Promise<void> {
    if (this.#group === undefined || force) {
      this.#group = this.#command()
        .xgroup("CREATE", this.keys.stream, this.group, "0", "MKSTREAM")
        .then(() => {}, (err) => {
          if (!String(err?.message).includes("BUSYGROUP")) {
            this.#group = undefined;
            throw err;
          }
        });
    }
    return this.#group;
  }

  #context(): QueueContext {
    return {
      name: this.name,
      keys: this.keys,
      group: this.group,
      redis: this.#redis,
      logger: this.#logger,
      client: () => this.#command(),
      ensureGroup: (force) => this.#ensureGroup(force),
    };
  }
}
