/**
 * The checks of one enqueued item: its shape, when it is due, its retry and timeout options.
 * Each throws `ValidationError` naming the action, the rule and the value.
 *
 * @module
 */
import { toError, ValidationError } from "./errors.ts";
import { checkRetry } from "./backoff.ts";
import { MAX_MS, show } from "./_options.ts";
import type { EnqueueOptions, Entry, WireOptions } from "./enqueue.ts";

/** Ten years: far enough for any schedule, near enough to catch unit mistakes. */
const MAX_DELAY = 10 * 365 * 24 * 3_600_000;

/**
 * An item of enqueueMany must be an object with its own `data`, so that `[{ n: 1 }]` (data
 * left out) is caught. An explicit `data: undefined` is taken, written as null like
 * `enqueue(task, undefined)`: a task typed `(data: undefined) => ...` has no other way.
 */
export function checkItem(action: string, item: unknown, index: number): void {
  if (typeof item !== "object" || item === null) {
    throw new ValidationError(
      `${action}: item ${index} must be an object like { data }, got ${brief(item)}`,
    );
  }
  if (!Object.hasOwn(item, "data")) {
    throw new ValidationError(
      `${action}: item ${index} has no data (give data: null for none), got ${brief(item)}`,
    );
  }
}

/** A value for a message, cut short: items may be big. */
function brief(value: unknown): string {
  const text = show(value);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** When a job is due: undefined for now, else a delay or an epoch time. */
export function schedule(action: string, options: EnqueueOptions): Entry["when"] {
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
export function wireOptions(action: string, options: EnqueueOptions): WireOptions {
  const out: WireOptions = {};
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
