/**
 * Retry policies: how many attempts a job gets, and how long to wait before each retry.
 *
 * @module
 */
import { checkInt, MAX_MS, show } from "./_options.ts";

/** How long to wait before a retry: fixed, exponential, or your own function. */
export type Backoff =
  | {
    /** The same delay before every retry. */
    type: "fixed";
    /** The delay in ms. @default {1_000} */
    delay?: number;
  }
  | {
    /**
     * `base * factor^(attempt - 1)`, capped at `max`. With jitter (on by default), the delay
     * is drawn uniformly from [delay / 2, delay], so retries of many jobs spread out.
     */
    type: "exponential";
    /** The first delay in ms. @default {1_000} */
    base?: number;
    /** The growth factor. @default {2} */
    factor?: number;
    /** The longest delay in ms. @default {3_600_000} */
    max?: number;
    /** Spread delays over [delay / 2, delay]. @default {true} */
    jitter?: boolean;
  }
  | ((attempt: number, error: Error) => number);

/** A retry policy. */
export interface RetryOptions {
  /**
   * How many attempts in all, the first included. 1 means no retries.
   *
   * @default {3}
   */
  attempts?: number;
  /**
   * The wait before each retry.
   *
   * @default {{ type: "exponential", base: 1_000, factor: 2, max: 3_600_000, jitter: true }}
   */
  backoff?: Backoff;
}

/** The default backoff: exponential from 1 s, doubling, capped at an hour, with jitter. */
export const DEFAULT_BACKOFF: Backoff = { type: "exponential" };

/**
 * Checks a retry policy up front.
 *
 * @throws {RangeError} Naming the action, the field and the value.
 */
export function checkRetry(action: string, retry: RetryOptions): void {
  const { attempts = 3, backoff = DEFAULT_BACKOFF } = retry;
  checkInt(action, "retry.attempts", attempts, 1, 1_000_000);
  if (typeof backoff === "function") return;
  if (backoff?.type === "fixed") {
    checkInt(action, "retry.backoff.delay", backoff.delay ?? 1_000, 0, MAX_MS);
  } else if (backoff?.type === "exponential") {
    checkInt(action, "retry.backoff.base", backoff.base ?? 1_000, 0, MAX_MS);
    checkInt(action, "retry.backoff.max", backoff.max ?? 3_600_000, 0, MAX_MS);
    const factor = backoff.factor ?? 2;
    if (typeof factor !== "number" || !(factor >= 1) || factor > 1_000) {
      throw new RangeError(
        `${action}: retry.backoff.factor must be a number from 1 to 1000, got ${show(factor)}`,
      );
    }
  } else {
    throw new TypeError(
      `${action}: retry.backoff must be { type: "fixed" }, { type: "exponential" } or a function, got ${
        show(backoff)
      }`,
    );
  }
}

/**
 * The delay before the retry that follows failed attempt `attempt`, in ms.
 *
 * @param backoff The policy.
 * @param attempt The attempt that just failed, 1 for the first.
 * @param error What it failed with (custom functions may look at it).
 * @param random A number in [0, 1); `Math.random()` by default.
 * @returns A whole number of ms from 0 to 2³¹−1. A custom function's NaN or negative result
 * counts as 0.
 *
 * @example
 * ```ts
 * import { backoffDelay } from "@sluice/sluice";
 * const policy = { type: "exponential", base: 100, jitter: false } as const;
 * console.log([1, 2, 3].map((n) => backoffDelay(policy, n, new Error("x")))); // [100, 200, 400]
 * ```
 */
export function backoffDelay(
  backoff: Backoff,
  attempt: number,
  error: Error,
  random: number = Math.random(),
): number {
  let ms: number;
  if (typeof backoff === "function") {
    ms = backoff(attempt, error);
  } else if (backoff.type === "fixed") {
    ms = backoff.delay ?? 1_000;
  } else {
    const { base = 1_000, factor = 2, max = 3_600_000, jitter = true } = backoff;
    ms = Math.min(max, base * factor ** Math.max(0, attempt - 1));
    if (jitter) ms = ms / 2 + (ms / 2) * random;
  }
  if (!(ms > 0)) return 0;
  return Math.min(MAX_MS, Math.round(ms));
}

/**
 * A capped exponential wait for sluice's own retries (reconnects, a failed read or promote):
 * `base * 2^attempt`, at most `max`. With `jitter`, the wait is drawn uniformly from
 * [wait / 2, wait], so many processes that failed together do not retry together.
 *
 * @param base The wait in ms before growth (attempt 0).
 * @param attempt How many times in a row it failed; 0 or more.
 * @param max The longest wait in ms.
 * @param jitter Spread the wait over its upper half.
 * @returns A whole number of ms from 0 to `max`.
 *
 * @example
 * ```ts
 * import { retryWait } from "./backoff.ts";
 * console.log([0, 1, 2, 3, 10].map((n) => retryWait(50, n, 1_000))); // [50, 100, 200, 400, 1000]
 * const spread = retryWait(100, 3, 5_000, true);
 * console.log(spread >= 400 && spread <= 800); // true
 * ```
 */
export function retryWait(base: number, attempt: number, max: number, jitter = false): number {
  // 2^31 already passes any sensible max; capping the exponent keeps the product finite.
  let wait = Math.min(max, base * 2 ** Math.min(Math.max(attempt, 0), 31));
  if (jitter) wait = wait / 2 + (wait / 2) * Math.random();
  return Math.round(wait);
}
