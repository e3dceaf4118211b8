/**
 * Handles on jobs by id: their status, their result and their cancellation, from any process.
 *
 * @module
 */
import { CancelledError, SluiceError } from "./errors.ts";
import { abortable, delay } from "./async.ts";
import { retryWait } from "./backoff.ts";
import { isPassing } from "./redis/health.ts";
import type { Keys } from "./keys.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import { waitingArgs } from "./scripts/waiting.ts";
import { fieldsToRecord, uuidv7 } from "./codec.ts";
import { cancelArgs } from "./scripts/cancel.ts";
import type { Lanes } from "./priority.ts";

/** An XPENDING entry: entry id, consumer, idle ms, deliveries. */
type PendingEntry = [string, string, number, number];

/** How long (ms) a result() waiter's registration lasts unless refreshed (every third of it). */
const WAITER_TTL_MS = 60_000;

/** Where a job is in its life. */
export type JobState =
  | "waiting"
  | "delayed"
  | "active"
  | "retrying"
  | "completed"
  | "dead"
  | "cancelled";

/** What `handle.info()` tells about a job. */
export interface JobStatus {
  /** The job id. */
  id: string;
  /** Where it is now. */
  state: JobState;
  /** The task name. */
  task?: string;
  /** The current (or last) attempt. */
  attempt?: number;
  /** Deliveries of the current attempt; above 1 after a crash or lost lease. */
  deliveries?: number;
  /** First enqueue time, epoch ms. */
  enqueuedAt?: number;
  /** When the last attempt started, epoch ms (known once it has finished). */
  startedAt?: number;
  /** When it finished, epoch ms. */
  finishedAt?: number;
  /** When a delayed job or a retry is due, epoch ms. */
  dueAt?: number;
  /** The consumer running it, or that ran it last. */
  worker?: string;
  /** The last error, for a retrying or dead job. */
  error?: string;
  /** Why it went to the dead letters. */
  reason?: string;
  /** The job's group, if it has one. */
  group?: string;
  /** The last progress its handler reported (`ctx.progress`), by any attempt. */
  progress?: unknown;
}

/** What cancel() found and did. */
export interface CancelOutcome {
  /** True if this call cancelled it (or asked its worker to). */
  cancelled: boolean;
  /** The state it was in. A finished job (or an unknown one) is left as it is. */
  state: JobState | "unknown";
}

/** @internal What a handle needs from its queue. */
export interface HandleContext {
  readonly keys: Keys;
  readonly group: string;
  readonly keepResult: number;
  /** The events cap (0: no events): a job cancelled by its handle gets event `cancelled`. */
  readonly events?: number;
  /** The priorities' streams: a job in the stream sits in one of them. */
  readonly lanes: Lanes;
  /** Aborts when the queue closes. */
  readonly closed: AbortSignal;
  client(): ScriptClient;
  subscribe(
    channel: string,
    listener: (message: string | null) => void,
  ): Promise<() => Promise<void>>;
  /** Resolves once every message published so far has reached the subscriber (a PING). */
  drain(): Promise<void>;
  /**
   * The group a scoped producer (`queue.forGroup`) is limited to: a job of any other group
   * (or of none) is unknown to its handles.
   */
  readonly scope?: string;
}

/**
 * A handle on one job, by id: from `queue.enqueue()` or `queue.job(id)`. It works from any
 * process, not only the producer's.
 *
 * @example Await a result
 * ```ts
 * import { Queue, task, Worker } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 *
 * await using redis = await startRedis();
 * const double = task("double", (n: number) => 2 * n);
 * await using queue = new Queue("math", { redis: redis.url });
 * await using worker = new Worker("math", [double], { redis: redis.url, handleSignals: false });
 * const run = worker.run();
 * const handle = await queue.enqueue(double, 21);
 * console.log(await handle.result({ signal: AbortSignal.timeout(5_000) })); // 42
 * await worker.stop();
 * await run;
 * ```
 */
export class JobHandle<Result = unknown> {
  /** The job id. */
  readonly id: string;
  /** The stream entry id, for a job written to the stream at enqueue. */
  readonly entryId: string | undefined;
  /** When a delayed job is due, epoch ms on Redis's clock. */
  readonly dueAt: number | undefined;
  /** True if the id was still known, so enqueue wrote nothing and returned this handle. */
  readonly duplicate: boolean;
  #ctx: HandleContext;

  /** @internal Handles come from `queue.enqueue()` and `queue.job(id)`. */
  constructor(
    ctx: HandleContext,
    id: string,
    init: { entryId?: string; dueAt?: number; duplicate?: boolean } = {},
  ) {
    this.#ctx = ctx;
    this.id = id;
    this.entryId = init.entryId || undefined;
    this.dueAt = init.dueAt || undefined;
    this.duplicate = init.duplicate ?? false;
  }

  /**
   * The job's status, in O(1): its record, and for a job in the stream its pending entry.
   *
   * @returns The status, or undefined if the id is unknown (never enqueued, or its record
   * expired after `keepResult`).
   */
  async info(): Promise<JobStatus | undefined> {
    const { keys, scope } = this.#ctx;
    const r = await this.#ctx.client().hgetall(keys.job(this.id));
    if (r.state === undefined || scope !== undefined && r.group !== scope) return undefined;
    const status: JobStatus = { id: this.id, state: r.state as JobState };
    if (r.group !== undefined) {
      status.group = r.group;
      // The gate moves a waiting grouped job into the stream without touching its record: its
      // slot names the entry.
      if (r.state === "waiting" || r.state === "cancelling") {
        const entry = await this.#ctx.client().hget(keys.groupSlots, `j:${this.id}`);
        if (entry !== null) r.entry = entry;
      }
    }
    if (r.state === "cancelling") status.state = "active";
    if (r.job !== undefined) {
      // "<enq ms> <task>", written at enqueue; the attempt is 1 until a retry writes it.
      // Records written before field job hold task, attempt and enq as fields of their own.
      const cut = r.job.indexOf(" ");
      r.enq ??= r.job.slice(0, cut);
      r.task ??= r.job.slice(cut + 1);
      r.attempt ??= "1";
    }
    if (r.task) status.task = r.task;
    setNumber(status, "attempt", r.attempt);
    if (r.run !== undefined) {
      // "<started ms, or nothing> <deliveries> <consumer>", written as the job ended.
      const first = r.run.indexOf(" "), second = r.run.indexOf(" ", first + 1);
      r.started = r.run.slice(0, first);
      r.deliveries = r.run.slice(first + 1, second);
      r.worker = r.run.slice(second + 1);
    }
    setNumber(status, "deliveries", r.deliveries);
    setNumber(status, "enqueuedAt", r.enq);
    setNumber(status, "startedAt", r.started);
    setNumber(status, "finishedAt", r.finished);
    if (r.state === "delayed" || r.state === "retrying") setNumber(status, "dueAt", r.due);
    if (r.worker) status.worker = r.worker;
    if (r.error) status.error = r.error;
    if (r.reason) status.reason = r.reason;
    if (r.progress !== undefined) {
      try {
        status.progress = JSON.parse(r.progress);
      } catch {
        // Written by hand, not JSON: shown as it is.
        status.progress = r.progress;
      }
    }
    if ((r.state === "waiting" || r.state === "cancelling") && r.entry) {
      // In the stream: delivered to a worker means active.
      const entry = await this.#pending(r.entry);
      if (entry !== undefined) {
        status.state = "active";
        status.worker = entry[1];
        status.deliveries = Number(entry[3]);
      }
    }
    return status;
  }

  /**
   * Waits for the job to finish and returns its result. It never polls: it subscribes to the
   * job's end, then reads the record, so a job that finished before the call is seen too.
   *
   * @param options `signal` to stop waiting.
   * @returns The handler's result.
   * @throws {SluiceError} If the job ended dead (with its error text), or is unknown.
   * @throws {CancelledError} If the job was cancelled.
   */
  async result(options: { signal?: AbortSignal } = {}): Promise<Result> {
    const { signal } = options;
    signal?.throwIfAborted();
    const ended = Promise.withResolvers<Record<string, string>>();
    let heard: Record<string, string> | undefined;
    // Settles announce outcomes only while some waiter is registered. This one registers right
    // behind its SUBSCRIBE, on the command connection: a settle this process sends later lands
    // after both, and a settle that finds no waiter lands before we read the record. The
    // registration expires unless refreshed, so a waiter that crashed is forgotten.
    const { client, keys } = this.#ctx;
    const token = uuidv7();
    const stop = signal ? AbortSignal.any([signal, this.#ctx.closed]) : this.#ctx.closed;
    // Ends the rereads a reconnect started, once the call has returned.
    const over = new AbortController();
    const rereading = AbortSignal.any([stop, over.signal]);
    const register = () => client().sluiceWaiting(waitingArgs(keys, token, WAITER_TTL_MS));
    const reread = async () => {
      // After a reconnect a message may have been missed (and Redis may have lost the
      // registration): register again, then the record tells.
      await outlast(register, rereading);
      const record = await outlast(() => client().hgetall(keys.job(this.id)), rereading);
      if (isFinal(record.state) || record.state === undefined) ended.resolve(record);
    };
    // The SUBSCRIBE is written now, before the registration below.
    const subscribing = this.#ctx.subscribe(
      keys.done + this.id,
      (message) => {
        if (message === null) {
          reread().catch(() => {});
          return;
        }
        // "<state>\n<reason>\n<result JSON or error text>"
        const first = message.indexOf("\n");
        const second = message.indexOf("\n", first + 1);
        const state = message.slice(0, first);
        const reason = message.slice(first + 1, second);
        const body = message.slice(second + 1);
        heard = state === "completed" || state === "cancelled"
          ? { state, result: body }
          : { state, reason, error: body };
        ended.resolve(heard);
      },
    );
    // A failover must not end the wait: ioredis gives up on a command after a second or two of
    // retries (its redirections spent on a master that is gone), well before a replica has
    // taken over, so the registration and the reads are sent again until the signal says stop.
    const registered = outlast(register, stop);
    // Awaited below, after the subscription: until then a failure must not go unhandled.
    registered.catch(() => {});
    const refresh = setInterval(() => register().catch(() => {}), WAITER_TTL_MS / 3);
    let unsubscribe: (() => Promise<void>) | undefined;
    try {
      // The signal counts from the start: a subscription that waits on a failover, too.
      unsubscribe = await abortable(subscribing, stop);
      await registered;
      const record = await outlast(() => client().hgetall(keys.job(this.id)), stop);
      let outcome: Record<string, string>;
      const { scope } = this.#ctx;
      if (scope !== undefined && (record.state === undefined || record.group !== scope)) {
        // A scoped producer sees its group's jobs only, and needs the record to tell.
        throw new SluiceError(
          `Cannot get the result of job ${this.id}: no such job in group ${JSON.stringify(scope)}`,
        );
      }
      if (record.state === undefined) {
        // No record: the job may have finished after we subscribed, with no record kept
        // (keepResult 0). Its message is then on its way; let the subscriber catch up.
        await this.#ctx.drain();
      }
      if (isFinal(record.state)) {
        outcome = record;
      } else if (record.state === undefined && heard !== undefined) {
        outcome = heard;
      } else if (record.state === undefined) {
        throw new SluiceError(
          `Cannot get the result of job ${this.id}: no such job (never enqueued, or its record expired after keepResult)`,
        );
      } else {
        outcome = await abortable(ended.promise, stop);
        if (outcome.state === undefined) {
          throw new SluiceError(`Cannot get the result of job ${this.id}: its record is gone`);
        }
      }
      return this.#outcome(outcome);
    } finally {
      clearInterval(refresh);
      over.abort();
      if (unsubscribe !== undefined) await unsubscribe();
      // Given up on before it was confirmed: undone once it is.
      else subscribing.then((undo) => undo(), () => {});
      await registered.then(() => client().zrem(keys.waiters, token)).catch(() => {});
    }
  }

  /**
   * Cancels the job. A delayed or retrying job is removed; a waiting one is deleted from the
   * stream, so it never runs; a running one has its `ctx.signal` aborted with
   * `CancelledError` by the worker that holds it, in whatever process. Each ends `cancelled`.
   * A finished job is left as it is: the outcome says so.
   */
  async cancel(): Promise<CancelOutcome> {
    const before = await this.#ctx.client().sluiceCancel(
      cancelArgs(this.#ctx, this.id, this.#ctx.scope),
    );
    const finished = before === "completed" || before === "dead" || before === "cancelled";
    return { cancelled: !finished && before !== "unknown", state: before as JobState | "unknown" };
  }

  /**
   * The pending entry (id, consumer, idle ms, deliveries) of the job's stream entry `entry`, if
   * it is delivered. With priorities, entry ids of different streams may be equal: the job's
   * stream is the one whose entry at that id is this job's.
   */
  async #pending(entry: string): Promise<PendingEntry | undefined> {
    const { keys, group, lanes: { streams } } = this.#ctx;
    const client = this.#ctx.client();
    if (streams.length === 1) {
      const pending = await client.xpending(keys.stream, group, entry, entry, 1)
        .catch(() => []) as PendingEntry[];
      return pending[0];
    }
    // One round trip: each stream's entry at that id, and its pending entry.
    const pipeline = client.pipeline();
    for (const stream of streams) {
      pipeline.xrange(stream, entry, entry).xpending(stream, group, entry, entry, 1);
    }
    const replies = await pipeline.exec() ?? [];
    for (let lane = 0; lane < streams.length; lane++) {
      const [, found] = replies[2 * lane] ?? [];
      const [err, pending] = replies[2 * lane + 1] ?? [];
      const fields = (found as [string, string[]][] | undefined)?.[0]?.[1];
      if (fields === undefined || fieldsToRecord(fields).id !== this.id) continue;
      return err ? undefined : (pending as PendingEntry[])[0];
    }
    return undefined;
  }

  #outcome(outcome: Record<string, string>): Result {
    if (outcome.state === "completed") {
      return (outcome.result ? JSON.parse(outcome.result) : undefined) as Result;
    }
    if (outcome.state === "cancelled") {
      throw new CancelledError(`Job ${this.id} was cancelled`);
    }
    throw new SluiceError(
      `Job ${this.id} went to the dead letters (${outcome.reason ?? "failed"}): ${
        firstLine(outcome.error)
      }`,
    );
  }
}

/** Runs `work` until it succeeds, again after each failure that `isPassing` allows, until `stop`. */
async function outlast<T>(work: () => Promise<T>, stop: AbortSignal): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await abortable(work(), stop);
    } catch (err) {
      if (stop.aborted || !isPassing(err)) throw err;
      await delay(retryWait(50, attempt, 1_000), { signal: stop });
    }
  }
}

function isFinal(state: string | undefined): boolean {
  return state === "completed" || state === "dead" || state === "cancelled";
}

function firstLine(text: string | undefined): string {
  return (text ?? "").split("\n")[0] ?? "";
}

function setNumber<K extends keyof JobStatus>(status: JobStatus, key: K, value?: string): void {
  if (value !== undefined && value !== "") {
    (status as unknown as Record<string, number>)[key] = Number(value);
  }
}
