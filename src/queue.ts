/**
 * The producer side, and the door to the consumer side: `enqueue`, `enqueueMany` and
 * `consume`.
 *
 * @module
 */
import { type ConsumeOptions, Consumer, type QueueContext } from "./consume.ts";
import {
  decodeData,
  encodeData,
  encodeExtras,
  oversize,
  uuidv7,
  WIRE_VERSION,
  type WireJob,
} from "./codec.ts";
import { OutOfMemoryError, PayloadTooLargeError, toError, ValidationError } from "./errors.ts";
import type { Job } from "./job.ts";
import { checkName, type Keys, queueKeys } from "./keys.ts";
import { consoleLogger, type Logger } from "./_log.ts";
import { DEFAULT_REDIS, type RedisConfig, share, type SharedRedis } from "./redis/connect.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { enqueueArgs, enqueueHead, type EnqueueReply } from "./scripts/enqueue.ts";
import type { ChainableCommander } from "ioredis";
import { type Backoff, checkRetry } from "./backoff.ts";
import { checkInt, MAX_MS, show } from "./_options.ts";
import { type HandleContext, JobHandle } from "./handle.ts";
import { DeadLetters } from "./dead.ts";
import { Signer, type SigningKey } from "./sign.ts";
import { type AnyTask, type DataOf, type ResultOf, type Task, validate } from "./task.ts";

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

/** Jobs per enqueue script call: big enough to spread the call's cost, small enough not to
 * hold Redis up (about a millisecond of work). */
const ENQUEUE_BATCH = 100;
/** Jobs per pipeline: each is sent as soon as it is built, so Redis runs one while the next is
 * serialized. */
const PIPELINE_JOBS = 1_000;
/** Most undelivered entries `stats()` counts one by one when the group's lag is unknown. */
const WAITING_COUNT_CAP = 10_000;
/** What `queue.stats()` returns. */
export interface QueueStats {
  /** In the stream, not yet delivered. */
  waiting: number;
  /** Delivered to a worker and not settled yet (prefetched or running). */
  active: number;
  /** Delayed jobs and scheduled retries. */
  delayed: number;
  /** Dead letters. */
  dead: number;
  /** Consumers in the group. */
  consumers: number;
  /** Consumers with a live heartbeat. */
  workers: number;
  /** Age of the oldest waiting job in ms, or null if none waits. */
  oldestWaitingMs: number | null;
  /** The group's lag as Redis reports it, or null when Redis cannot tell (after deletions). */
  lag: number | null;
}

function toRecord(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

interface Entry {
  id: string;
  /** The data as JSON text. */
  data: string;
  when: { mode: "delay" | "at"; ms: number } | undefined;
  /** Retry and timeout in wire form, if given. */
  options: JobOptions | undefined;
  /** The optional wire fields (retry, timeout, sig), flat; undefined if none. */
  extras: string[] | undefined;
}

type JobOptions = { retry?: string; timeout?: number };

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
function jobOptions(action: string, options: EnqueueOptions): JobOptions {
  const out: JobOptions = {};
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

/** Fills in each entry's optional fields, with its signature by the current key. */
async function sign(signer: Signer, entries: Entry[], task: string, enq: number): Promise<void> {
  await Promise.all(entries.map(async (entry) => {
    const job: WireJob = {
      id: entry.id,
      task,
      data: entry.data,
      attempt: 1,
      enq,
      ...entry.options,
    };
    entry.extras = encodeExtras({ ...entry.options, sig: await signer.sign(job) });
  }));
}

/** Ten years: far enough for any schedule, near enough to catch unit mistakes. */
const MAX_DELAY = 10 * 365 * 24 * 3_600_000;
/** Redis's default proto-max-bulk-len: no bigger string can be written. */
const MAX_PAYLOAD = 512 * 1_048_576;

/** @internal A queue's options, checked, with their defaults: what Queue and Worker share. */
export interface QueueSettings {
  readonly name: string;
  readonly keys: Keys;
  readonly group: string;
  readonly redis: RedisConfig;
  readonly logger: Logger;
  readonly keepResult: number;
  readonly maxDead: number;
  readonly maxPayloadBytes: number;
  readonly signer: Signer | undefined;
}

/**
 * @internal Checks a queue's options and fills in their defaults, for a Queue or a Worker.
 * @throws {TypeError} If the name, prefix, group, redis or a signing key is invalid.
 * @throws {RangeError} If a number is out of range.
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
    logger = consoleLogger,
    keepResult = 86_400_000,
    maxDead = 0,
    maxPayloadBytes = 1_048_576,
    signingKeys,
  } = options;
  checkInt(action, "keepResult", keepResult, 0, 10 * 365 * 86_400_000);
  checkInt(action, "maxDead", maxDead, 0, Number.MAX_SAFE_INTEGER);
  checkInt(action, "maxPayloadBytes", maxPayloadBytes, 1, MAX_PAYLOAD);
  const signer = signingKeys === undefined ? undefined : new Signer(action, signingKeys);
  const keys = queueKeys(name, prefix);
  checkName("group", group);
  if (typeof redis !== "string" && (typeof redis !== "object" || redis === null)) {
    throw new TypeError(`${action}: redis must be a URL or ioredis options, got ${redis}`);
  }
  return { name, keys, group, redis, logger, keepResult, maxDead, maxPayloadBytes, signer };
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
  #consumers = new Set<Consumer>();
  #writes = new Set<Promise<unknown>>();
  #closed = false;

  /**
   * Makes a queue handle. Nothing connects until the first enqueue or consume.
   *
   * @param name 1 to 200 characters of `A-Z a-z 0-9 . _ : -`.
   * @param options Where Redis is, the key prefix and the group.
   * @throws {TypeError} If the name, prefix or group is invalid, or a signing key is not a
   * non-empty string or Uint8Array.
   * @throws {RangeError} If a number is out of range.
   */
  constructor(name: string, options: QueueOptions = {}) {
    const settings = queueSettings(name, options);
    this.#settings = settings;
    this.keys = settings.keys;
    this.name = name;
    this.group = settings.group;
    this.dead = new DeadLetters(this.#handleContext());
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
   * Counts jobs by state.
   *
   * @returns `waiting` (in the stream, not delivered), `active` (delivered, not settled),
   * `delayed` (delayed jobs and scheduled retries), `dead`, `consumers` (in the group),
   * `workers` (with a live heartbeat), `oldestWaitingMs` (age of the oldest waiting job, or
   * null) and `lag` (the group's own count of undelivered entries, when Redis knows it).
   */
  async stats(): Promise<QueueStats> {
    const client = this.#command();
    const { stream, delayed, dead, workers } = this.keys;
    // Heartbeats are scored on Redis's clock: count live ones against it too.
    const [seconds, micros] = await client.time();
    const now = Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000);
    const [length, delayedCount, deadCount, live, groups] = await Promise.all([
      client.xlen(stream),
      client.zcard(delayed),
      client.xlen(dead),
      client.zcount(workers, now, "+inf"),
      client.xinfo("GROUPS", stream).catch(() => []) as Promise<unknown[][]>,
    ]);
    const info = groups.map(toRecord).find((g) => g.name === this.group);
    const active = Number(info?.pending ?? 0);
    const lastDelivered = String(info?.["last-delivered-id"] ?? "0-0");
    const lag = info?.lag === null || info?.lag === undefined ? null : Number(info.lag);
    // Finished entries linger in the stream until it is trimmed past them, so its length
    // overcounts. The undelivered entries are counted one by one, up to a cap; past it, the
    // group's lag (Redis 7.0 to 7.2 overstate it once an entry ahead of the group was deleted,
    // as a cancel does) or else the length bound the count.
    const ahead = await client.xrange(
      stream,
      `(${lastDelivered}`,
      "+",
      "COUNT",
      WAITING_COUNT_CAP + 1,
    );
    const oldestMs = ahead[0] ? Number(ahead[0][0].split("-")[0]) : undefined;
    const waiting = ahead.length <= WAITING_COUNT_CAP
      ? ahead.length
      : Math.max(ahead.length, lag ?? length - active);
    return {
      waiting,
      active,
      delayed: delayedCount,
      dead: deadCount,
      consumers: Number(info?.consumers ?? 0),
      workers: live,
      oldestWaitingMs: oldestMs === undefined ? null : Math.max(0, Date.now() - oldestMs),
      lag,
    };
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
   * @throws {PayloadTooLargeError} If the data's JSON is over `maxPayloadBytes`; nothing is
   * written.
   * @throws {OutOfMemoryError} If Redis is at `maxmemory`; nothing is written.
   */
  async enqueue<T extends AnyTask | string>(
    task: T,
    data: T extends AnyTask ? DataOf<T> : unknown,
    options: EnqueueOptions = {},
  ): Promise<JobHandle<T extends AnyTask ? ResultOf<T> : unknown>> {
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
   * @throws {PayloadTooLargeError} If any item's data is over `maxPayloadBytes`; nothing is
   * written.
   * @throws {OutOfMemoryError} If Redis is at `maxmemory`. Jobs are written 100 to a script
   * call, each call all or nothing: the error says how many jobs were written, if any.
   */
  async enqueueMany<T extends AnyTask | string>(
    task: T,
    items: Iterable<EnqueueItem<T extends AnyTask ? DataOf<T> : unknown>>,
  ): Promise<JobHandle<T extends AnyTask ? ResultOf<T> : unknown>[]> {
    this.#checkOpen("enqueue");
    const name = typeof task === "string" ? task : (task as AnyTask)?.name;
    checkName("task name", name, "Cannot enqueue");
    const action = `Cannot enqueue ${name}`;
    const schema = typeof task !== "string" && (task as Task).schema !== undefined;
    const maxBytes = this.#settings.maxPayloadBytes;
    const now = Date.now();
    const entries: Entry[] = [];
    for (const item of items) {
      const id = item.id === undefined ? uuidv7() : item.id;
      const when = item.delay === undefined && item.at === undefined
        ? undefined
        : schedule(action, item);
      const options = item.retry === undefined && item.timeout === undefined
        ? undefined
        : jobOptions(action, item);
      if (typeof id !== "string" || id.length === 0 || id.length > 200) {
        throw new ValidationError(
          `${action}: id must be a string of 1 to 200 characters, got ${JSON.stringify(id)}`,
        );
      }
      let data: unknown = item.data;
      if (schema) data = await validate(`Cannot enqueue`, task as Task, data);
      let text: string;
      try {
        text = encodeData(data);
      } catch (err) {
        throw new ValidationError(
          `${action}: data is not JSON-serializable: ${toError(err).message}`,
          { cause: err },
        );
      }
      const size = oversize(text, maxBytes);
      if (size !== undefined) {
        throw new PayloadTooLargeError(
          `${action}: data must be at most maxPayloadBytes ${maxBytes} bytes of JSON, got ${size}`,
        );
      }
      // Consumers refuse such data (bad-json): say so now, before anything is written.
      if (text.includes("__proto__")) {
        try {
          decodeData(text);
        } catch (err) {
          throw new ValidationError(`${action}: ${toError(err).message}`, { cause: err });
        }
      }
      const extras = options === undefined ? undefined : encodeExtras(options);
      entries.push({ id, data: text, when, options, extras });
    }
    const { signer } = this.#settings;
    if (signer !== undefined) await sign(signer, entries, name, now);
    const write = this.#write(entries, name, now);
    this.#writes.add(write);
    try {
      return await write as JobHandle<T extends AnyTask ? ResultOf<T> : unknown>[];
    } finally {
      this.#writes.delete(write);
    }
  }

  async #write(entries: Entry[], task: string, now: number): Promise<JobHandle[]> {
    const client = this.#command();
    const head = enqueueHead(this.keys, task, now, WIRE_VERSION);
    // One script call per batch of jobs. The calls go in pipelines of PIPELINE_JOBS, each sent
    // once built: Redis runs the first while the client builds the next.
    const sent: Promise<[Error | null, unknown][] | null>[] = [];
    for (let i = 0; i < entries.length; i += PIPELINE_JOBS) {
      const pipeline = client.pipeline() as unknown as ScriptClient;
      const end = Math.min(i + PIPELINE_JOBS, entries.length);
      for (let j = i; j < end; j += ENQUEUE_BATCH) {
        pipeline.sluiceEnqueue(
          enqueueArgs(this.keys, head, entries, j, Math.min(j + ENQUEUE_BATCH, end)),
        );
      }
      sent.push((pipeline as unknown as ChainableCommander).exec());
    }
    // Every pipeline is awaited, so an error reports what the others wrote.
    const settled = await Promise.allSettled(sent);
    const results: [Error | null, unknown][] = [];
    for (const outcome of settled) {
      if (outcome.status === "rejected") throw outcome.reason;
      results.push(...outcome.value ?? []);
    }
    const refused = results.find(([err]) => err)?.[0];
    if (refused) throw this.#writeError(refused, results, entries.length);
    const ctx = this.#handleContext();
    const handles: JobHandle[] = [];
    for (const [, replies] of results) {
      for (const reply of replies as EnqueueReply) {
        const { id } = entries[handles.length]!;
        handles.push(
          typeof reply === "string"
            ? new JobHandle(ctx, id, { entryId: reply })
            : typeof reply === "number"
            ? new JobHandle(ctx, id, { dueAt: reply })
            : new JobHandle(ctx, id, { entryId: reply[0], dueAt: reply[1], duplicate: true }),
        );
      }
    }
    return handles;
  }

  /** An enqueue script call failed: out of memory gets its own error, with what was written. */
  #writeError(err: Error, results: [Error | null, unknown][], total: number): Error {
    if (!/^OOM\b/.test(err.message)) return err;
    let written = 0;
    for (const [failed, replies] of results) {
      if (failed) continue;
      // A duplicate's reply is a pair; a written job's is its entry id or due time.
      for (const reply of replies as EnqueueReply) if (!Array.isArray(reply)) written++;
    }
    const part = written > 0
      ? ` (${written} of ${total} jobs were written, in whole batches of ${ENQUEUE_BATCH})`
      : "";
    return new OutOfMemoryError(
      `Cannot enqueue to ${this.name}: Redis is out of memory (maxmemory reached): ${err.message}${part}`,
      { cause: err },
    );
  }

  #handleContext(): HandleContext {
    return {
      keys: this.keys,
      group: this.group,
      keepResult: this.#settings.keepResult,
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
