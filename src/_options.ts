/**
 * Up-front option checks with messages that name the action, the rule and the value.
 *
 * @module
 */

/**
 * Throws unless `value` is an integer from `min` to `max`.
 *
 * @param Err The error class thrown: `RangeError` unless the caller's contract says otherwise
 *   (rate limits throw `ValidationError`).
 * @throws {RangeError} "Cannot create worker: concurrency must be an integer from 1 to 100000,
 * got 0"
 */
export function checkInt(
  action: string,
  name: string,
  value: unknown,
  min: number,
  max: number,
  Err: new (message: string) => Error = RangeError,
): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Err(
      `${action}: ${name} must be an integer from ${min} to ${max}, got ${show(value)}`,
    );
  }
}

/** Like {@linkcode checkInt}, but `Infinity` is allowed too. */
export function checkLimit(action: string, name: string, value: unknown, min: number): void {
  if (value !== Infinity) checkInt(action, name, value, min, Number.MAX_SAFE_INTEGER);
}

/** The largest timer delay setTimeout honours. */
export const MAX_MS = 2 ** 31 - 1;

/** A value as it should appear in an error message. */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (typeof value === "number") return String(value); // NaN, Infinity, -0 as they are
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** The options that are set, of `keys`: the rest keep the receiver's defaults. */
export function pick<T extends object, K extends keyof T>(
  options: T,
  ...keys: K[]
): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (options[key] !== undefined) out[key] = options[key];
  return out;
}
