/**
 * Wire format version 1: how a job is laid out in a stream entry. Any language can enqueue a
 * job with a plain XADD of these fields (see the README's wire-format section).
 *
 * @module
 */

import { checkRetry } from "./backoff.ts";

/** The wire version this code writes and reads. */
export const WIRE_VERSION = "1";

/** The fields of one job entry, decoded. */
export interface WireJob {
  /** Job id: given at enqueue, or a UUIDv7. */
  id: string;
  /** Task name. */
  task: string;
  /** Payload as JSON text. */
  data: string;
  /** 1 on first enqueue, +1 on each retry. */
  attempt: number;
  /** First enqueue time, ms since epoch. */
  enq: number;
  /** W3C traceparent, if any. */
  trace?: string;
  /** This job's retry policy as JSON (`{ attempts, backoff }`), if any. */
  retry?: string;
  /** This job's timeout in ms, if any. */
  timeout?: number;
}

/** Why an entry could not be decoded. */
export interface DecodeFailure {
  reason: "malformed";
  error: string;
}

/** Flattens a job into XADD field/value pairs, in wire order. */
export function encodeFields(job: WireJob): string[] {
  const fields = [
    "v",
    WIRE_VERSION,
    "id",
    job.id,
    "task",
    job.task,
    "data",
    job.data,
    "attempt",
    String(job.attempt),
    "enq",
    String(job.enq),
  ];
  if (job.trace !== undefined) fields.push("trace", job.trace);
  if (job.retry !== undefined) fields.push("retry", job.retry);
  if (job.timeout !== undefined) fields.push("timeout", String(job.timeout));
  return fields;
}

const INTEGER = /^(0|[1-9][0-9]{0,15})$/;

/**
 * Decodes the flat field list of a stream entry. Never throws: an entry that is not valid wire
 * format comes back as a {@linkcode DecodeFailure} naming what is wrong.
 */
export function decodeFields(fields: readonly string[]): WireJob | DecodeFailure {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const key = fields[i]!;
    if (!map.has(key)) map.set(key, fields[i + 1]!);
  }
  const v = map.get("v");
  if (v !== WIRE_VERSION) {
    return malformed(
      v === undefined ? "field v is missing" : `unknown wire version ${JSON.stringify(v)}`,
    );
  }
  const id = map.get("id");
  const task = map.get("task");
  const data = map.get("data");
  const attempt = map.get("attempt");
  const enq = map.get("enq");
  for (const [name, value] of [["id", id], ["task", task], ["data", data]] as const) {
    if (value === undefined || value === "") return malformed(`field ${name} is missing`);
  }
  if (attempt === undefined || !INTEGER.test(attempt) || attempt === "0") {
    return malformed(`field attempt must be an integer >= 1, got ${JSON.stringify(attempt)}`);
  }
  if (enq === undefined || !INTEGER.test(enq)) {
    return malformed(`field enq must be ms since epoch, got ${JSON.stringify(enq)}`);
  }
  const job: WireJob = {
    id: id!,
    task: task!,
    data: data!,
    attempt: Number(attempt),
    enq: Number(enq),
  };
  const trace = map.get("trace");
  if (trace !== undefined) job.trace = trace;
  const retry = map.get("retry");
  if (retry !== undefined) {
    if (!validRetry(retry)) {
      return malformed(
        `field retry must be JSON like {"attempts":3}, got ${JSON.stringify(retry)}`,
      );
    }
    job.retry = retry;
  }
  const timeout = map.get("timeout");
  if (timeout !== undefined) {
    if (!INTEGER.test(timeout) || timeout === "0") {
      return malformed(
        `field timeout must be an integer >= 1 (ms), got ${JSON.stringify(timeout)}`,
      );
    }
    job.timeout = Number(timeout);
  }
  return job;
}

function validRetry(text: string): boolean {
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
    checkRetry("", value);
    return true;
  } catch {
    return false;
  }
}

/** True if `decoded` is a failure. */
export function isFailure(decoded: WireJob | DecodeFailure): decoded is DecodeFailure {
  return "reason" in decoded;
}

function malformed(error: string): DecodeFailure {
  return { reason: "malformed", error };
}

/**
 * Serializes job data to JSON text. `undefined` becomes `null`.
 *
 * @throws {TypeError} If the value cannot be serialized (a BigInt, a cycle, a function).
 */
export function encodeData(data: unknown): string {
  const text = JSON.stringify(data ?? null);
  if (text === undefined) throw new TypeError(`${typeof data} is not JSON`);
  return text;
}

/**
 * Parses JSON job data. Keys named `__proto__` are dropped, so hostile payloads cannot reach a
 * prototype through code that later merges the data into other objects.
 *
 * @throws {SyntaxError} If the text is not JSON.
 */
export function decodeData(text: string): unknown {
  // The reviver is slower, so only texts that could spell the key (also through \u escapes)
  // pay for it.
  if (!text.includes("__proto__") && !text.includes("\\u")) return JSON.parse(text);
  return JSON.parse(text, (key, value) => key === "__proto__" ? undefined : value);
}

/**
 * A UUIDv7: 48 bits of ms timestamp then random bits, so ids sort by creation time.
 *
 * @example
 * ```ts
 * import { uuidv7 } from "./codec.ts";
 * console.log(uuidv7().length); // 36
 * ```
 */
export function uuidv7(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  let hex = "";
  for (const b of bytes) hex += HEX[b];
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
