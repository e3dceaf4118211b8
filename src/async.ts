/**
 * Small async helpers that stand in for `@std/async`, which cannot be installed here.
 *
 * @module
 */

/**
 * Resolves after `ms` milliseconds, or rejects with `signal.reason` as soon as `signal` aborts.
 * The timer is cleared on abort, so nothing leaks.
 *
 * @param ms How long to wait, in milliseconds.
 * @param options `signal` to cut the wait short.
 * @returns A promise that resolves after the delay.
 *
 * @example Wait, but stop early on abort
 * ```ts
 * import { delay } from "./async.ts";
 * const signal = AbortSignal.timeout(5);
 * await delay(1_000, { signal }).catch((err: Error) => console.log(err.name)); // "TimeoutError"
 * ```
 */
export function delay(ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Races `promise` against `signal`: rejects with `signal.reason` as soon as it aborts. The
 * promise itself is not cancelled; its outcome is ignored after the abort.
 *
 * @param promise The work to wait for.
 * @param signal Aborts the wait.
 * @returns The promise's value.
 *
 * @example
 * ```ts
 * import { abortable } from "./async.ts";
 * const never = new Promise<never>(() => {});
 * const err = await abortable(never, AbortSignal.abort(new Error("stop"))).catch((e: Error) => e);
 * console.log(err.message); // "stop"
 * ```
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const { promise: aborted, reject } = Promise.withResolvers<never>();
  const onAbort = () => reject(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return Promise.race([promise, aborted]).finally(() =>
    signal.removeEventListener("abort", onAbort)
  );
}

/**
 * Waits until `promise` settles or `ms` passes, whichever comes first; never rejects.
 * The timer is cleared either way.
 *
 * @returns true if the promise settled in time.
 *
 * @example
 * ```ts
 * import { settlesWithin } from "./async.ts";
 * console.log(await settlesWithin(Promise.resolve(), 10)); // true
 * console.log(await settlesWithin(new Promise(() => {}), 10)); // false
 * ```
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Disposes `value` if it is `AsyncDisposable` or `Disposable` (a Worker's lifespan value, say);
 * anything else is left alone.
 *
 * @example
 * ```ts
 * import { dispose } from "./async.ts";
 * let closed = false;
 * await dispose({ [Symbol.asyncDispose]: async () => void (closed = true) });
 * console.log(closed); // true
 * ```
 */
export async function dispose(value: unknown): Promise<void> {
  if (isObject(value) && Symbol.asyncDispose in value) {
    await (value as AsyncDisposable)[Symbol.asyncDispose]();
  } else if (isObject(value) && Symbol.dispose in value) {
    (value as Disposable)[Symbol.dispose]();
  }
}

function isObject(value: unknown): value is object {
  return (typeof value === "object" && value !== null) || typeof value === "function";
}
