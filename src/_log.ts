/**
 * Where sluice reports what it cannot throw: lost leases, reconnects, dead-lettered entries.
 * Each event is a structured record (time, level, message, queue, worker, job); the default
 * logger writes it as one JSON line to stderr, `"text"` as a line for a terminal, and a custom
 * logger gets the record too. Payloads are never logged.
 *
 * @module
 */
import { show } from "./_options.ts";

/** A log event's level. */
export type LogLevel = "info" | "warn" | "error";

/** One log event, as the default logger writes it (one JSON object per line). */
export interface LogRecord {
  /** When, as an ISO 8601 string. */
  time: string;
  /** How bad. */
  level: LogLevel;
  /** What happened, in words. */
  msg: string;
  /** The queue. */
  queue?: string;
  /** The worker's consumer name (see `queue.workers()`). */
  worker_id?: string;
  /** The job, where there is one. */
  job_id?: string;
  /** The job's task. */
  task?: string;
  /** The job's attempt. */
  attempt?: number;
  /** The job's OpenTelemetry trace, if it has one. */
  trace_id?: string;
  /** The job's group, if it has one. */
  group?: string;
  /** The error, if the event has one: its name, message and stack. */
  error?: { name: string; message: string; stack?: string };
}

/** The fields a log call adds: the job's and the worker's. */
export type LogFields = Omit<Partial<LogRecord>, "time" | "level" | "msg">;

/**
 * A logger. `console` fits; a logger that wants the structured record takes the last argument.
 */
export interface Logger {
  /** Lifecycle news: a worker stopping, stopped. Optional. */
  info?(message: string, record?: LogRecord): void;
  /** Something went wrong and sluice handled it. */
  warn(message: string, record?: LogRecord): void;
  /** Something failed; sluice keeps going. */
  error(message: string, error?: unknown, record?: LogRecord): void;
}

const line = (record: LogRecord) => JSON.stringify(record);

/** The default logger: one JSON object per event, on stderr. */
export const jsonLogger: Logger = {
  // deno-lint-ignore no-console
  info: (message, record) => console.error(line(record ?? plain("info", message))),
  // deno-lint-ignore no-console
  warn: (message, record) => console.error(line(record ?? plain("warn", message))),
  // deno-lint-ignore no-console
  error: (message, error, record) => console.error(line(record ?? plain("error", message, error))),
};

/** `logger: "text"`: the message as a line, for a terminal (console.info/warn/error). */
export const textLogger: Logger = {
  // deno-lint-ignore no-console
  info: (message) => console.info(message),
  // deno-lint-ignore no-console
  warn: (message) => console.warn(message),
  // deno-lint-ignore no-console
  error: (message, error) => console.error(message, error ?? ""),
};

function plain(level: LogLevel, msg: string, error?: unknown): LogRecord {
  const record: LogRecord = { time: new Date().toISOString(), level, msg };
  if (error !== undefined) record.error = errorFields(error);
  return record;
}

function errorFields(error: unknown): NonNullable<LogRecord["error"]> {
  if (error instanceof Error) {
    const out: NonNullable<LogRecord["error"]> = { name: error.name, message: error.message };
    if (error.stack !== undefined) out.stack = error.stack;
    return out;
  }
  return { name: "Error", message: String(error) };
}

/**
 * Checks the `logger` option: `"json"` (the default), `"text"`, or an object with `warn` and
 * `error` functions.
 *
 * @throws {TypeError} If it is none of these.
 */
export function checkLogger(action: string, logger: unknown): Logger {
  if (logger === undefined || logger === "json") return jsonLogger;
  if (logger === "text") return textLogger;
  const l = logger as Partial<Logger> | null;
  if (
    typeof l !== "object" || l === null || typeof l.warn !== "function" ||
    typeof l.error !== "function" || (l.info !== undefined && typeof l.info !== "function")
  ) {
    throw new TypeError(
      `${action}: logger must be "json", "text" or an object with warn and error functions, got ${
        show(logger)
      }`,
    );
  }
  return l as Logger;
}

/**
 * sluice's own handle on a logger: calls take the event's fields, and the logger gets the
 * whole record (with the queue's and the worker's fields this handle carries).
 */
export class Log implements Logger {
  readonly #out: Logger;
  readonly #fields: LogFields;

  constructor(out: Logger, fields: LogFields = {}) {
    this.#out = out;
    this.#fields = fields;
  }

  /** The same logger, with more fields on every record. */
  child(fields: LogFields): Log {
    return new Log(this.#out, { ...this.#fields, ...fields });
  }

  info(message: string, fields?: LogFields): void {
    this.#out.info?.(message, this.#record("info", message, fields));
  }

  warn(message: string, fields?: LogFields): void {
    this.#out.warn(message, this.#record("warn", message, fields));
  }

  error(message: string, error?: unknown, fields?: LogFields): void {
    const record = this.#record("error", message, fields);
    if (error !== undefined) record.error = errorFields(error);
    this.#out.error(message, error, record);
  }

  #record(level: LogLevel, msg: string, fields: LogFields | undefined): LogRecord {
    const record: LogRecord = { time: new Date().toISOString(), level, msg, ...this.#fields };
    if (fields !== undefined) {
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined) (record as unknown as Record<string, unknown>)[k] = v;
      }
    }
    return record;
  }
}

/** A job's log fields: id, task, attempt, trace and group (never its data). */
export function jobFields(job: {
  readonly id: string;
  readonly task: string;
  readonly attempt: number;
  readonly traceId?: string | undefined;
  readonly group?: string | undefined;
}): LogFields {
  const out: LogFields = { job_id: job.id, task: job.task, attempt: job.attempt };
  if (job.traceId !== undefined) out.trace_id = job.traceId;
  if (job.group !== undefined) out.group = job.group;
  return out;
}
