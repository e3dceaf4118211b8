/**
 * Error classes thrown and reported by sluice. Each sets `name` and passes `cause`,
 * so `err instanceof LeaseLostError` and `err.name === "LeaseLostError"` both work.
 *
 * @module
 */

/**
 * The base class of every error sluice throws.
 *
 * @example Catch any sluice error
 * ```ts
 * import { SluiceError, ValidationError } from "@sluice/sluice";
 * const err: Error = new ValidationError("Cannot enqueue: data is not JSON");
 * console.log(err instanceof SluiceError); // true
 * ```
 */
export class SluiceError extends Error {
  /**
   * Makes an error; `name` is set to the class name.
   *
   * @param message What happened: the action, the reason, the value.
   * @param options `cause`, the underlying error.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Data or options failed validation. At enqueue it is thrown before anything is written;
 * at consume the job goes to the dead letters with reason `invalid-data`.
 *
 * @example
 * ```ts
 * import { ValidationError } from "@sluice/sluice";
 * const err = new ValidationError("Cannot enqueue resize: width must be a number, got \"x\"");
 * console.log(err.name); // "ValidationError"
 * ```
 */
export class ValidationError extends SluiceError {
  /** The schema issues, when a Standard Schema rejected the data. */
  readonly issues: readonly { message: string; path?: readonly unknown[] }[];
  /**
   * Makes a validation error.
   *
   * @param message What failed and why.
   * @param options `cause` and the schema `issues`, if any.
   */
  constructor(
    message: string,
    options: ErrorOptions & { issues?: readonly { message: string }[] } = {},
  ) {
    super(message, options);
    this.issues = options.issues ?? [];
  }
}

/**
 * Thrown by a handler to send the job to the dead letters at once, skipping any attempts left.
 *
 * @example
 * ```ts
 * import { NonRetryableError, task } from "@sluice/sluice";
 * const charge = task("charge", (data: { card: string }) => {
 *   if (data.card === "") throw new NonRetryableError("card is empty");
 * });
 * console.log(charge.name); // "charge"
 * ```
 */
export class NonRetryableError extends SluiceError {}

/**
 * A job ran past its timeout; its `ctx.signal` aborts with this reason.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@sluice/sluice";
 * console.log(new TimeoutError("job 1 timed out after 30000 ms").name); // "TimeoutError"
 * ```
 */
export class TimeoutError extends SluiceError {}

/**
 * A job was cancelled; its `ctx.signal` aborts with this reason.
 *
 * @example
 * ```ts
 * import { CancelledError } from "@sluice/sluice";
 * console.log(new CancelledError("job 1 was cancelled").name); // "CancelledError"
 * ```
 */
export class CancelledError extends SluiceError {}

/**
 * This worker no longer owns the job: its lease expired and another worker claimed it, or it
 * was settled elsewhere. The job's `signal` aborts with it, and `ack`, `retry`, `fail` and
 * `release` reject with it without changing anything in Redis.
 *
 * @example
 * ```ts
 * import { LeaseLostError } from "@sluice/sluice";
 * console.log(new LeaseLostError("Cannot ack job 1: lease lost").name); // "LeaseLostError"
 * ```
 */
export class LeaseLostError extends SluiceError {}

/**
 * The worker is shutting down and the grace period is over; running jobs' signals abort with
 * it, and the jobs are released to a peer.
 *
 * @example
 * ```ts
 * import { ShutdownError } from "@sluice/sluice";
 * console.log(new ShutdownError("worker stopped").name); // "ShutdownError"
 * ```
 */
export class ShutdownError extends SluiceError {}

/**
 * A handler met a remote rate limit (an HTTP 429): thrown by `ctx.rateLimited(ms)`. The job goes
 * back without an attempt charged, and its task pauses on every worker for `ms`. A handler may
 * throw one itself: its `ms` is taken as `ctx.rateLimited` takes it (rounded up to 1 ms .. a day;
 * one that is not a finite number, 0 or more, fails the attempt like any error).
 *
 * @example
 * ```ts
 * import { RateLimitedError } from "@sluice/sluice";
 * const err = new RateLimitedError("429 from the API", 30_000);
 * console.log(err.name, err.ms); // "RateLimitedError" 30000
 * ```
 */
export class RateLimitedError extends SluiceError {
  /** How long (ms) the job's task pauses on every worker. */
  readonly ms: number;
  /**
   * Makes the error.
   *
   * @param message What happened.
   * @param ms How long the task pauses, ms.
   */
  constructor(message: string, ms: number, options?: ErrorOptions) {
    super(message, options);
    this.ms = ms;
  }
}

/**
 * An entry's HMAC signature is missing or wrong.
 *
 * @example
 * ```ts
 * import { SignatureError } from "@sluice/sluice";
 * console.log(new SignatureError("bad signature").name); // "SignatureError"
 * ```
 */
export class SignatureError extends SluiceError {}

/**
 * A payload is larger than the configured limit.
 *
 * @example
 * ```ts
 * import { PayloadTooLargeError } from "@sluice/sluice";
 * console.log(new PayloadTooLargeError("payload is 2 MiB").name); // "PayloadTooLargeError"
 * ```
 */
export class PayloadTooLargeError extends SluiceError {}

/**
 * Redis refused a write because it reached `maxmemory` (with the `noeviction` policy). Nothing
 * of the refused call was written.
 *
 * @example
 * ```ts
 * import { OutOfMemoryError, SluiceError } from "@sluice/sluice";
 * const err = new OutOfMemoryError("Cannot enqueue to q: Redis is out of memory");
 * console.log(err instanceof SluiceError, err.name); // true "OutOfMemoryError"
 * ```
 */
export class OutOfMemoryError extends SluiceError {}

/**
 * Redis cannot be reached: the connection was never made, or it was lost and did not come
 * back in time. The message names the action, the queue, where Redis was looked for and the
 * last connection error (such as `ECONNREFUSED`); `cause` is that error.
 *
 * @example Tell an outage from a bad request
 * ```ts
 * import { ConnectionError, Queue } from "@sluice/sluice";
 *
 * await using queue = new Queue("q", { redis: "redis://127.0.0.1:1" }); // nothing listens there
 * try {
 *   await queue.enqueue("t", 1);
 * } catch (err) {
 *   console.log(err instanceof ConnectionError); // true
 *   // "Cannot enqueue t on queue q: Redis at 127.0.0.1:1 is unreachable (ECONNREFUSED)"
 *   console.log((err as Error).message);
 * }
 * ```
 */
export class ConnectionError extends SluiceError {}

/**
 * With the `durability` option, a write Redis ran was not acknowledged by enough replicas
 * within the timeout (`WAIT` said so). The jobs may or may not have been written: the master
 * has them, but a failover before a replica caught up would lose them. Enqueueing again with
 * the same `ids` is safe: a known id is not written twice.
 *
 * @example Tell an unreplicated enqueue apart, and try again
 * ```ts
 * import { DurabilityError, SluiceError } from "@sluice/sluice";
 *
 * const err: unknown = new DurabilityError(
 *   "Cannot enqueue welcome on queue mail: 0 of 1 replicas acknowledged the write within 100 ms",
 *   { acknowledged: 0, required: 1, ids: ["welcome-a"] },
 * );
 * if (err instanceof DurabilityError) {
 *   console.log(err instanceof SluiceError, err.acknowledged, err.required); // true 0 1
 *   console.log(err.ids); // ["welcome-a"]: enqueue these again, with the same ids
 * }
 * ```
 */
export class DurabilityError extends SluiceError {
  /** How many replicas acknowledged the write (WAIT's reply; 0 if WAIT itself failed). */
  readonly acknowledged: number;
  /** How many replicas `durability.replicas` asks for. */
  readonly required: number;
  /** The ids of the jobs whose write is not known to be replicated. */
  readonly ids: readonly string[];

  /**
   * Makes a durability error.
   *
   * @param message What was being done, how many replicas acknowledged of how many required,
   * and what that means for the jobs.
   * @param options The counts, the job ids and `cause` (WAIT's error, if it failed).
   */
  constructor(
    message: string,
    options: ErrorOptions & { acknowledged: number; required: number; ids: readonly string[] },
  ) {
    super(message, options);
    this.acknowledged = options.acknowledged;
    this.required = options.required;
    this.ids = options.ids;
  }
}

/**
 * True if `err` is Redis refusing a write at `maxmemory` (a reply starting with `OOM`), or an
 * {@linkcode OutOfMemoryError} made from one.
 *
 * @param err Anything thrown.
 * @returns Whether it is an out-of-memory refusal.
 *
 * @example
 * ```ts
 * import { isOutOfMemory } from "@sluice/sluice";
 * const reply = new Error("OOM command not allowed when used memory > 'maxmemory'.");
 * console.log(isOutOfMemory(reply), isOutOfMemory(new Error("ERR syntax error"))); // true false
 * ```
 */
export function isOutOfMemory(err: unknown): boolean {
  if (err instanceof OutOfMemoryError) return true;
  const message = err instanceof Error ? err.message : typeof err === "string" ? err : "";
  return /^OOM\b/.test(message);
}

/** Turns anything thrown into an Error, keeping Errors as they are. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === "string" ? thrown : safeString(thrown));
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
