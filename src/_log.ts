/**
 * Where sluice reports what it cannot throw: lost leases, reconnects, dead-lettered entries.
 * Payloads are never logged.
 *
 * @module
 */

/** A logger; `console` fits. */
export interface Logger {
  /** Lifecycle news: a worker stopping, stopped. Optional. */
  info?(message: string): void;
  /** Something went wrong and sluice handled it. */
  warn(message: string): void;
  /** Something failed; sluice keeps going. */
  error(message: string, error?: unknown): void;
}

/** The default logger: console.warn and console.error. */
export const consoleLogger: Logger = {
  // deno-lint-ignore no-console
  info: (message) => console.info(message),
  // deno-lint-ignore no-console
  warn: (message) => console.warn(message),
  // deno-lint-ignore no-console
  error: (message, error) => console.error(message, error ?? ""),
};
