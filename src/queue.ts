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
  fieldsToRecord,
  oversize,
  uuidv7,
  WIRE_VERSION,
  type WireJob,
} from "./codec.ts";
import {
  isOutOfMemory,
  OutOfMemoryError,
  PayloadTooLargeError,
  toError,
  ValidationError,
} from "./errors.ts";
import type { Job } from "./job.ts";
import { checkName, type Keys, queueKeys, RECORD_TTL_MS } from "./keys.ts";
import { consoleLogger, type Logger } from "./_log.ts";
import {
  checkRedisConfig,
  close,
  connect,
  DEFAULT_REDIS,
  processName,
  type RedisConfig,
} from "./redis.ts";
import type { ScriptClient } from "./scripts.ts";
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

/**
 * The arguments of one enqueue script call, for entries `from` to `to`: the key count, the keys,
 * the call's own arguments (`head`, then its shape) and each job's. See ENQUEUE in scripts.ts.
 */
function enqueueArgs(
  keys: Keys,
  head: readonly string[],
  entries: readonly Entry[],
  from: number,
  to: number,
): string[] {
  let plain = true;
  for (let i = from; i < to && plain; i++) {
    plain = entries[i]!.when === undefined && entries[i]!.extras === undefined;
  }
  const args = [String(3 + to - from), keys.stream, keys.delayed, keys.payloads];
  for (let i = from; i < to; i++) args.push(keys.job(entries[i]!.id));
  for (const arg of head) args.push(arg);
  args.push(plain ? "plain" : "full");
  for (let i = from; i < to; i++) {
    const { data, when, extras } = entries[i]!;
    if (plain) {
      args.push(data);
      continue;
    }
    args.push(when?.mode ?? "now", String(when?.ms ?? 0), String(extras?.length ?? 0), data);
    if (extras !== undefined) args.push(...extras);
  }
  return args;
}

/** One enqueue script call's reply, per job: see ENQUEUE in scripts.ts. */
type EnqueueReply = (string | number | [string, number])[];

/** Ten years: far enough for any schedule, near enough to catch unit mistakes. */
const MAX_DELAY = 10 * 365 * 24 * 3_600_000;
/** Redis's default proto-max-bulk-len: no bigger string can be written. */
const MAX_PAYLOAD = 512 * 1_048_576;

let openConsumerOf: (queue: Queue, options: ConsumeOptions) => Consumer;
let commandOf: (queue: Queue) => ScriptClient;

/** @internal The consumer behind `queue.consume()`, with its held set, for `Worker`. */
export function openConsumer(queue: Queue, options: ConsumeOptions): Consumer {
  return openConsumerOf(queue, options);
}

/** @internal The queue's command connection, for `Worker`'s start-up checks. */
export function commandClient(queue: Queue): ScriptClient {
  return commandOf(queue);
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
  #subscriber: ScriptClient | undefined;
  #listeners = new Map<
    string,
    { listeners: Set<(message: string | null) => void>; ready: Promise<void> }
  >();
  /** Aborts when the queue closes: waiting results reject then. */
  #closing = new AbortController();
  #keepResult: number;
  #maxDead: number;
  #maxPayloadBytes: number;
  #signer: Signer | undefined;
  /** The dead letters: count, list, replay, purge. */
  readonly dead: DeadLetters;
  #group: Promise<void> | undefined;
  #consumers = new Set<Consumer>();
  #writes = new Set<Promise<unknown>>();
  #closed = false;

  /**
   * Makes a queue handle. Nothing connects until the first enqueue or consume.
   *
   * @param name 1 to 200 characters of `A-Z a-z 0-9 . _ : -`.
   * @param options Where Redis is, the key prefix and the group.
   * @throws {TypeError} If the name, prefix or group is invalid, a signing key is not a
   * non-empty string or Uint8Array, or `redis` is not a `redis://` URL or holds an option
   * ioredis does not know (or `cluster`, which is not supported yet).
   * @throws {RangeError} If a number is out of range.
   */
  constructor(name: string, options: QueueOptions = {}) {
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
    const action = "Cannot create queue";
    checkInt(action, "keepResult", keepResult, 0, 10 * 365 * 86_400_000);
    checkInt(action, "maxDead", maxDead, 0, Number.MAX_SAFE_INTEGER);
    checkInt(action, "maxPayloadBytes", maxPayloadBytes, 1, MAX_PAYLOAD);
    this.#keepResult = keepResult;
    this.#maxDead = maxDead;
    this.#maxPayloadBytes = maxPayloadBytes;
    this.#signer = signingKeys === undefined ? undefined : new Signer(action, signingKeys);
    this.keys = queueKeys(name, prefix);
    checkName("group", group);
    checkRedisConfig(action, redis);
    this.name = name;
    this.group = group;
    this.#redis = redis;
    this.#logger = logger;
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
    const info = groups.map(fieldsToRecord).find((g) => g.name === this.group);
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
    const maxBytes = this.#maxPayloadBytes;
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
    if (this.#signer !== undefined) await sign(this.#signer, entries, name, now);
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
    const { wake, jobPrefix } = this.keys;
    const head = [wake, String(RECORD_TTL_MS), task, String(now), jobPrefix, WIRE_VERSION];
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
    if (!isOutOfMemory(err)) return err;
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
      keepResult: this.#keepResult,
      closed: this.#closing.signal,
      client: () => this.#command(),
      subscribe: (channel, listener) => this.#subscribe(channel, listener),
      drain: async () => {
        await this.#subscriber?.ping().catch(() => {});
      },
    };
  }

  /**
   * Listens on a pub/sub channel over this queue's one subscriber connection. Resolves once
   * the subscription is confirmed, for every caller. After a reconnect, listeners get `null`:
   * messages may have been missed, so they should look again.
   */
  async #subscribe(
    channel: string,
    listener: (message: string | null) => void,
  ): Promise<() => Promise<void>> {
    this.#checkOpen("wait for a result");
    if (this.#subscriber === undefined) {
      const subscriber = connect(this.#redis, "subscriber", `${this.name}:${processName()}`);
      subscriber.on("message", (from: string, message: string) => {
        for (const fn of this.#listeners.get(from)?.listeners ?? []) fn(message);
      });
      let connected = false;
      subscriber.on("ready", () => {
        if (connected) {
          for (const { listeners } of this.#listeners.values()) {
            for (const fn of listeners) fn(null);
          }
        }
        connected = true;
      });
      this.#subscriber = subscriber;
    }
    let entry = this.#listeners.get(channel);
    if (entry === undefined) {
      const ready = this.#subscriber.subscribe(channel).then(() => {});
      entry = { listeners: new Set(), ready };
      this.#listeners.set(channel, entry);
      ready.catch(() => {
        if (this.#listeners.get(channel) === entry) this.#listeners.delete(channel);
      });
    }
    const mine = entry;
    mine.listeners.add(listener);
    try {
      await mine.ready;
    } catch (err) {
      mine.listeners.delete(listener);
      throw err;
    }
    return async () => {
      mine.listeners.delete(listener);
      if (mine.listeners.size === 0 && this.#listeners.get(channel) === mine) {
        this.#listeners.delete(channel);
        await this.#subscriber?.unsubscribe(channel).catch(() => {});
      }
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

  static {
    openConsumerOf = (queue, options) => queue.#openConsumer(options);
    commandOf = (queue) => queue.#command();
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
    this.#closing.abort(new TypeError(`Cannot wait for a result: queue ${this.name} was closed`));
    await Promise.all([...this.#consumers].map((c) => c.shutdown()));
    // Enqueues already under way finish first, so none is cut off by the disconnect.
    await Promise.allSettled(this.#writes);
    await Promise.all([this.#client, this.#subscriber].map((c) => c && close(c)));
  }

  /** Same as {@linkcode Queue.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(action: string): void {
    if (this.#closed) throw new TypeError(`Cannot ${action}: queue ${this.name} is closed`);
  }

  #command(): ScriptClient {
    if (this.#client === undefined) {
      const client = connect(this.#redis, "command", `${this.name}:${processName()}`);
      // One line per outage, not one per reconnect attempt; commands wait and are retried.
      let down = false;
      client.on("error", (err: Error) => {
        if (down || client.status === "ready") return;
        down = true;
        this.#logger.warn(
          `sluice: queue ${this.name}: cannot reach Redis (${err.message}); reconnecting with backoff (commands wait, and fail after about 20 attempts)`,
        );
      });
      client.on("ready", () => {
        if (!down) return;
        down = false;
        this.#logger.warn(`sluice: queue ${this.name}: Redis is reachable again`);
      });
      this.#client = client;
    }
    return this.#client;
  }

  #ensureGroup(force = false): Promise<void> {
    if (this.#group === undefined || force) {
      this.#group = this.#command()
        .xgroup("CREATE", this.keys.stream, this.group, "0", "MKSTREAM")
        .then(() => {}, async (err) => {
          const message = String(err?.message);
          if (message.includes("BUSYGROUP")) return;
          // At maxmemory Redis refuses XGROUP CREATE before it looks for the group: if the
          // group is there, workers may still drain the queue.
          if (isOutOfMemory(err) && await this.#groupExists().catch(() => false)) return;
          this.#group = undefined;
          throw err;
        });
    }
    return this.#group;
  }

  async #groupExists(): Promise<boolean> {
    const groups = await this.#command().xinfo("GROUPS", this.keys.stream) as unknown[][];
    return groups.some((group) => fieldsToRecord(group).name === this.group);
  }

  #context(): QueueContext {
    return {
      name: this.name,
      keys: this.keys,
      group: this.group,
      keepResult: this.#keepResult,
      maxDead: this.#maxDead,
      maxPayloadBytes: this.#maxPayloadBytes,
      signer: this.#signer,
      redis: this.#redis,
      logger: this.#logger,
      client: () => this.#command(),
      ensureGroup: (force) => this.#ensureGroup(force),
    };
  }
}
