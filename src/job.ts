/**
 * A leased delivery of one job. Settle it exactly once: `ack`, `retry`, `fail` or `release`.
 * Each is an owner-checked script call, batched with other jobs' settles.
 *
 * @module
 */
import { traceIdOf } from "./trace.ts";
import { CancelledError, LeaseLostError, SluiceError, toError } from "./errors.ts";
import type { JobInfo } from "./task.ts";
import type { RetryOptions } from "./backoff.ts";
import { internal } from "./_internal.ts";
import type { SettleOp } from "./scripts/settle.ts";
import type { WireJob } from "./codec.ts";
import { MAX_MS } from "./_options.ts";
import { heldKey } from "./priority.ts";

/**
 * Dead-letter reasons. A handler's job ends with `failed`, `non-retryable` or `timeout`; a
 * crash loop with `delivery-limit`. The rest are entries that never ran:
 *
 * - `bad-encoding`: a field is not valid UTF-8;
 * - `unknown-version`: field v is not `1`;
 * - `malformed`: a field is missing, given twice or invalid;
 * - `too-large`: field data is over `maxPayloadBytes`;
 * - `bad-signature`: signing keys are set and the entry is unsigned, or signed with none of them;
 * - `bad-json`: field data is not JSON, or has a key named `__proto__`;
 * - `unknown-task`: the worker has no task of that name;
 * - `invalid-data`: the data fails the task's schema.
 */
export type DeadReason =
  | "failed"
  | "non-retryable"
  | "delivery-limit"
  | "timeout"
  | "unknown-task"
  | "malformed"
  | "invalid-data"
  | "bad-json"
  | "bad-encoding"
  | "unknown-version"
  | "too-large"
  | "bad-signature";

/** @internal How a job reaches Redis: the settler of the consumer that read it. */
export interface Lessor {
  /** The consumer that holds the job. */
  readonly consumer: string;
  /** Sends one settle in the next batch; resolves with its code (see SETTLE). */
  settle(op: SettleOp): Promise<number>;
  /** The job is settled or lost: it no longer takes room. */
  forget(job: Job): void;
  /** Stores the job's progress (JSON) in its record: 1 if stored, 0 if it has ended. */
  progress(id: string, json: string): Promise<number>;
  /** A handler started the job: its `active` event is written. */
  started?(job: Job): void;
}

/** @internal What a consumer's parts may do to a job's lease, through `Job[internal]`. */
export interface JobHooks {
  /** Marks the lease lost: aborts the signal, forgets the job. False unless it was held. */
  lose(job: Job, reason: Error): boolean;
  /** Aborts the job's signal (shutdown, timeout, cancellation); the lease stays. */
  abort(job: Job, reason: unknown): void;
  /** This consumer claimed its own held job again: the delivery count moved on. */
  reclaimed(job: Job, deliveries: number): void;
  /** The handler starts now: the time is stored with the outcome. */
  started(job: Job): void;
  /** True while the job is held and no settle is under way. */
  leased(job: Job): boolean;
  /**
   * Puts the job off until `due` (ms, Redis's clock; `+<ms>`: from now), no attempt charged
   * (a rate limit).
   */
  defer(job: Job, due: number | `+${number}`): Promise<void>;
  /** Stores the job's progress (JSON) in its record; false if it was not (the job ended). */
  progress(job: Job, json: string): Promise<boolean>;
  /** A consumer span runs the job, in this trace. */
  traced(job: Job, traceId: string): void;
  /** When its handler started (epoch ms), if it has. */
  startedAt(job: Job): number | undefined;
  /** True if the job was cancelled: its signal's reason, read without making the signal. */
  cancelled(job: Job): boolean;
}

/** Options a producer gave one job, overriding the task's. */
export interface JobPolicy {
  /** Retry policy given at enqueue. */
  readonly retry?: RetryOptions;
  /** Timeout in ms given at enqueue. */
  readonly timeout?: number;
}

/** Longest error text kept in a dead letter. */
const MAX_ERROR_TEXT = 4_096;

/**
 * A job read from a queue, leased to this consumer until settled. Get one from
 * `queue.consume()`; a `Worker` settles them for you.
 *
 * @example Settle jobs by hand
 * ```ts
 * import { Queue } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 *
 * await using redis = await startRedis();
 * await using queue = new Queue("mail", { redis: redis.url });
 * await queue.enqueue("send", { to: "a@example.com" });
 * const controller = new AbortController();
 * for await (const job of queue.consume({ signal: controller.signal })) {
 *   console.log(job.task, job.data, job.attempt); // "send" { to: "a@example.com" } 1
 *   await job.ack();
 *   controller.abort();
 * }
 * ```
 */
export class Job<Data = unknown> implements JobInfo {
  /** The job id. */
  readonly id: string;
  /** The task name. */
  readonly task: string;
  /** The decoded payload. */
  readonly data: Data;
  /** 1 on the first attempt, +1 on each retry. */
  readonly attempt: number;
  /** First enqueue time, ms since epoch. */
  readonly enqueuedAt: number;
  /** The stream entry id of this delivery. */
  readonly entryId: string;
  /** The job's priority, on a queue with `priorities`; else undefined. */
  readonly priority: string | undefined;
  /** The job's group, if it was enqueued with one; else undefined. */
  readonly group: string | undefined;
  /** The W3C traceparent its producer wrote (wire field `trace`), if any. */
  readonly trace: string | undefined;
  /** Where its outcome is POSTed when it ends (wire field `webhook`), if anywhere. */
  readonly webhook: string | undefined;
  /** @internal The lane (priority stream, highest first) the entry sits in. */
  readonly lane: number;
  /** @internal The key of this delivery among its consumer's held jobs (see `heldKey`). */
  readonly key: string;
  /** Options given at enqueue, which win over the task's. */
  readonly policy: JobPolicy;
  #deliveries: number;
  #startedAt: number | undefined;
  #traceId: string | undefined;
  #lessor: Lessor;
  #state: "held" | "settling" | "settled" | "lost" = "held";
  #controller: AbortController | undefined;
  #reason: unknown;

  /** @internal Hooks for sluice's own consumer; not API. */
  static readonly [internal]: JobHooks = {
    lose: (job, reason) => job.#lose(reason),
    abort: (job, reason) => job.#abort(reason),
    reclaimed: (job, deliveries) => job.#deliveries = deliveries,
    started: (job) => {
      job.#startedAt = Date.now();
      job.#lessor.started?.(job);
    },
    leased: (job) => job.#state === "held",
    defer: (job, due) =>
      job.#reason instanceof CancelledError
        ? job.#settle("defer", { op: "cancel", job, startedAt: "" })
        : job.#settle("defer", { op: "defer", job, due }),
    progress: async (job, json) => await job.#lessor.progress(job.id, json) === 1,
    traced: (job, traceId) => job.#traceId = traceId,
    startedAt: (job) => job.#startedAt,
    cancelled: (job) => job.#reason instanceof CancelledError,
  };

  /**
   * @internal Jobs are made by a consumer only: the key is package-private.
   * @throws {TypeError} If called from outside sluice.
   */
  constructor(
    key: typeof internal,
    lessor: Lessor,
    wire: WireJob,
    entryId: string,
    deliveries: number,
    data: Data,
    policy: JobPolicy,
    lane = 0,
    priority?: string,
  ) {
    if (key !== internal) {
      throw new TypeError("Cannot create a job: jobs come from queue.consume() or a Worker");
    }
    this.entryId = entryId;
    this.lane = lane;
    this.key = heldKey(lane, entryId);
    this.priority = priority;
    this.policy = policy;
    this.id = wire.id;
    this.group = wire.group;
    this.trace = wire.trace;
    this.webhook = wire.webhook;
    this.task = wire.task;
    this.data = data;
    this.attempt = wire.attempt;
    this.#deliveries = deliveries;
    this.enqueuedAt = wire.enq;
    this.#lessor = lessor;
  }

  /**
   * The OpenTelemetry trace the job runs in: the consumer span's while a Worker traces it,
   * else its producer's (from field `trace`); undefined without either.
   */
  get traceId(): string | undefined {
    return this.#traceId ?? traceIdOf(this.trace);
  }

  /** How many times this entry has been delivered; above 1 after a crash or a lost lease. */
  get deliveries(): number {
    return this.#deliveries;
  }

  /** The fencing token: who holds this delivery. Every state change checks it in Redis. */
  get token(): { readonly consumer: string; readonly deliveries: number } {
    return { consumer: this.#lessor.consumer, deliveries: this.#deliveries };
  }

  /**
   * Aborts when the lease is lost (`LeaseLostError`), and when the owner aborts the job (a
   * `Worker` does so on shutdown after the grace period, with `ShutdownError`).
   */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** True once the job is settled, or its lease was lost. */
  get settled(): boolean {
    return this.#state === "settled" || this.#state === "lost";
  }

  /**
   * Marks the job done: acks and deletes its entry, and stores `result` (JSON) in the job's
   * record for `keepResult`, in the same script. If the job was cancelled meanwhile (its
   * signal aborted with `CancelledError`), it ends `cancelled` instead.
   *
   * With the queue's `durability` option, it resolves only once that many replicas have the
   * ack, which is sent again until they do.
   *
   * @param result The job's result; anything JSON can hold. `undefined` stores none.
   * @throws {TypeError} If the result cannot be serialized; the job stays held.
   * @throws {LeaseLostError} If this consumer no longer owns the delivery; nothing changes.
   * @throws {DurabilityError} With `durability`, if the stream is closed before the replicas
   * acknowledged the ack; it may or may not stand.
   */
  ack(result?: unknown): Promise<void> {
    let text = "";
    try {
      if (result !== undefined) text = JSON.stringify(result) ?? "";
    } catch (err) {
      return Promise.reject(
        new TypeError(`Cannot ack job ${this.id}: its result is not JSON`, { cause: err }),
      );
    }
    const started = String(this.#startedAt ?? "");
    if (this.#reason instanceof CancelledError) {
      return this.#settle("ack", { op: "cancel", job: this, startedAt: started });
    }
    return this.#settle("ack", { op: "ack", job: this, result: text, startedAt: started });
  }

  /**
   * Gives the job another attempt, with `attempt + 1`, atomically with the ack: re-added to
   * the stream at once, or after `delay` ms (measured on Redis's clock) from the delayed set.
   * The caller decides whether attempts remain; a `Worker` follows the retry policy.
   *
   * @param _error Why the attempt failed (a `Worker` reports it in its `retrying` event).
   * @param options `delay`: ms to wait before the job is due again; 0 re-adds it at once.
   * @throws {RangeError} If delay is not an integer from 0 to 2³¹−1.
   * @throws {LeaseLostError} If this consumer no longer owns the delivery; nothing changes.
   */
  retry(_error?: unknown, options: { delay?: number } = {}): Promise<void> {
    const { delay = 0 } = options;
    if (!Number.isInteger(delay) || delay < 0 || delay > MAX_MS) {
      return Promise.reject(
        new RangeError(
          `Cannot retry job ${this.id}: delay must be an integer from 0 to 2147483647, got ${delay}`,
        ),
      );
    }
    if (this.#reason instanceof CancelledError) {
      return this.#settle("retry", { op: "cancel", job: this, startedAt: "" });
    }
    const error = errorText(_error ?? "retried");
    return this.#settle("retry", { op: "retry", job: this, delay, error });
  }

  /**
   * Sends the job to the dead letters now, with the error text and a reason.
   *
   * @param error What went wrong; its message and stack are kept, trimmed to 4 KiB.
   * @param reason The dead-letter reason.
   * @throws {LeaseLostError} If this consumer no longer owns the delivery; nothing changes.
   */
  fail(error: unknown, reason: DeadReason = "failed"): Promise<void> {
    return this.#settle("fail", { op: "dead", job: this, error: errorText(error), reason });
  }

  /**
   * Gives the job back unchanged, with no attempt charged, so another consumer runs it at once.
   *
   * @throws {LeaseLostError} If this consumer no longer owns the delivery; nothing changes.
   */
  release(): Promise<void> {
    if (this.#reason instanceof CancelledError) {
      return this.#settle("release", { op: "cancel", job: this, startedAt: "" });
    }
    return this.#settle("release", { op: "release", job: this });
  }

  async #settle(action: string, op: SettleOp): Promise<void> {
    if (this.#state === "lost") {
      throw new LeaseLostError(`Cannot ${action} job ${this.id}: its lease was lost`, {
        cause: this.#reason,
      });
    }
    if (this.#state !== "held") {
      throw new SluiceError(`Cannot ${action} job ${this.id}: it is already settled`);
    }
    this.#state = "settling";
    let code: number;
    try {
      code = await this.#lessor.settle(op);
    } catch (err) {
      this.#state = "held";
      throw err;
    }
    if (code === 3) {
      this.#state = "held";
      throw new SluiceError(
        `Cannot ${action} job ${this.id}: Redis is out of memory (maxmemory reached) and refused the write; nothing changed`,
      );
    }
    if (code === 0) {
      const lost = new LeaseLostError(
        `Cannot ${action} job ${this.id}: another consumer owns delivery ${this.entryId} now`,
      );
      this.#state = "held";
      this.#lose(lost);
      throw lost;
    }
    this.#state = "settled";
    this.#lessor.forget(this);
  }

  #lose(reason: Error): boolean {
    // A job being settled reports its own outcome; a renewal racing it must not.
    if (this.#state !== "held") return false;
    this.#state = "lost";
    this.#abort(reason);
    this.#lessor.forget(this);
    return true;
  }

  #abort(reason: unknown): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** The text kept for an error: its stack (or name and message), trimmed. */
export function errorText(thrown: unknown): string {
  const err = toError(thrown);
  return trimText(err.stack ?? `${err.name}: ${err.message}`);
}

/** `text` cut to 4,096 characters: the most error text a dead letter keeps. */
export function trimText(text: string): string {
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text;
}
