/**
 * Wire format version 1: how a job is laid out in a stream entry. Any language can enqueue a
 * job with a plain XADD of these fields (see the README's wire-format section). Entries are
 * untrusted input: decoding never throws, and says why an entry cannot run.
 *
 * @module
 */

import { checkRetry } from "./backoff.ts";
import { NAME, NAME_RULE } from "./keys.ts";

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
  /** The job's group (fair queueing, per-group limits; see groups.ts), if any. */
  group?: string;
  /** Where to POST the job's outcome when it ends (see webhook.ts), if anywhere. */
  webhook?: string;
  /** HMAC-SHA256 signature, base64url (see `sign.ts`), if any. */
  sig?: string;
}

/** Why an entry could not be decoded. */
export interface DecodeFailure {
  /**
   * `malformed`: a field is missing, given twice or invalid; `unknown-version`: field v is
   * not `1`; `too-large`: field data is over the payload limit.
   */
  reason: "malformed" | "unknown-version" | "too-large";
  /** What is wrong, without the payload. */
  error: string;
}

/** The fields sluice reads; each may appear once. */
const KNOWN = new Set([
  "v",
  "id",
  "task",
  "data",
  "attempt",
  "enq",
  "trace",
  "retry",
  "timeout",
  "sig",
  "pri",
  "group",
  "webhook",
]);

/**
 * Flattens a job into XADD field/value pairs, in wire order.
 *
 * @param job The job.
 * @param pri Field `pri`: the job's priority, unless it is the lowest (see encodeExtras).
 */
export function encodeFields(job: WireJob, pri?: string): string[] {
  return [
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
    ...encodeExtras(job, pri),
  ];
}

/**
 * The optional fields of a job (pri, trace, retry, timeout, group, webhook, sig) as XADD
 * field/value pairs, in
 * wire order: they follow `enq`. The enqueue script writes the fields before them itself, in
 * the order of {@linkcode encodeFields}, so a batch sends only what differs from job to job.
 * Field `pri` names the job's priority where it is not the lowest: the stream it goes back to
 * after a delay. It is not signed (the stream an entry sits in decides its order anyway).
 */
export function encodeExtras(
  job: Pick<WireJob, "trace" | "retry" | "timeout" | "group" | "webhook" | "sig">,
  pri?: string,
): string[] {
  const fields: string[] = [];
  if (pri !== undefined) fields.push("pri", pri);
  if (job.trace !== undefined) fields.push("trace", job.trace);
  if (job.retry !== undefined) fields.push("retry", job.retry);
  if (job.timeout !== undefined) fields.push("timeout", String(job.timeout));
  if (job.group !== undefined) fields.push("group", job.group);
  if (job.webhook !== undefined) fields.push("webhook", job.webhook);
  if (job.sig !== undefined) fields.push("sig", job.sig);
  return fields;
}

const INTEGER = /^(0|[1-9][0-9]{0,15})$/;

/**
 * What a group name may be ({@linkcode GROUP_RULE}): any text of 1 to 200 characters without
 * control characters (a group is often a tenant id or an email address).
 *
 * @example
 * ```ts
 * import { GROUP } from "./codec.ts";
 * console.log(GROUP.test("tenant-42"), GROUP.test("ann@example.com"), GROUP.test("a\nb"));
 * // true true false
 * ```
 */
// deno-lint-ignore no-control-regex
export const GROUP: RegExp = /^[^\x00-\x1f\x7f]{1,200}$/;

/** {@linkcode GROUP} in words, for error messages. */
export const GROUP_RULE = "1 to 200 characters, none of them a control character";

/** {@linkcode validWebhook} in words, for error messages. */
export const WEBHOOK_RULE = "an http: or https: URL of at most 2,048 characters";

/**
 * True if `url` can be a job's webhook ({@linkcode WEBHOOK_RULE}).
 *
 * @example
 * ```ts
 * import { validWebhook } from "./codec.ts";
 * console.log(validWebhook("https://example.com/done"), validWebhook("ftp://example.com"));
 * // true false
 * ```
 */
export function validWebhook(url: unknown): boolean {
  if (typeof url !== "string" || url.length > 2_048 || !URL.canParse(url)) return false;
  const { protocol } = new URL(url);
  return protocol === "http:" || protocol === "https:";
}

/**
 * Decodes the flat field list of a stream entry. Never throws: an entry that cannot run comes
 * back as a {@linkcode DecodeFailure} naming what is wrong, checked in this order: the
 * version, the fields, then the size of field data.
 *
 * @param fields The entry's field/value pairs, flat.
 * @param maxPayloadBytes The most UTF-8 bytes field data may hold.
 */
export function decodeFields(
  fields: readonly string[],
  maxPayloadBytes: number = Infinity,
): WireJob | DecodeFailure {
  let v,
    id,
    task,
    data,
    attempt,
    enq,
    trace,
    retry,
    timeout,
    group,
    webhook,
    sig:
      | string
      | undefined;
  let twice: string | undefined;
  if (
    (fields.length === 12 || fields.length === 14 && (fields[12] === "pri" ||
          fields[12] === "group")) &&
    fields[0] === "v" && fields[2] === "id" && fields[4] === "task" &&
    fields[6] === "data" && fields[8] === "attempt" && fields[10] === "enq"
  ) {
    // The usual entry, as sluice writes it (with a priority, a group or neither): read in
    // place, with no map. Field pri is not read: the stream an entry sits in is its priority.
    [, v, , id, , task, , data, , attempt, , enq] = fields;
    if (fields[12] === "group") group = fields[13];
  } else {
    const map = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const key = fields[i]!;
      if (!map.has(key)) map.set(key, fields[i + 1]!);
      else if (KNOWN.has(key)) twice ??= key;
    }
    v = map.get("v");
    id = map.get("id");
    task = map.get("task");
    data = map.get("data");
    attempt = map.get("attempt");
    enq = map.get("enq");
    trace = map.get("trace");
    retry = map.get("retry");
    timeout = map.get("timeout");
    group = map.get("group");
    webhook = map.get("webhook");
    sig = map.get("sig");
  }
  if (v === undefined) return malformed("field v is missing");
  if (v !== WIRE_VERSION) {
    return {
      reason: "unknown-version",
      error: `unknown wire version ${quote(v)}; this worker reads version ${WIRE_VERSION}`,
    };
  }
  if (twice !== undefined) return malformed(`field ${twice} appears more than once`);
  for (const [name, value] of [["id", id], ["task", task], ["data", data]] as const) {
    if (value === undefined || value === "") return malformed(`field ${name} is missing`);
  }
  if (id!.length > 200) return malformed(`field id must be 1 to 200 characters, got ${id!.length}`);
  if (!NAME.test(task!)) {
    return malformed(
      `field task must be ${NAME_RULE}, got ${quote(task)}`,
    );
  }
  if (attempt === undefined || !INTEGER.test(attempt) || attempt === "0") {
    return malformed(`field attempt must be an integer >= 1, got ${quote(attempt)}`);
  }
  if (enq === undefined || !INTEGER.test(enq)) {
    return malformed(`field enq must be ms since epoch, got ${quote(enq)}`);
  }
  const job: WireJob = {
    id: id!,
    task: task!,
    data: data!,
    attempt: Number(attempt),
    enq: Number(enq),
  };
  if (trace !== undefined) job.trace = trace;
  if (retry !== undefined) {
    if (!validRetry(retry)) {
      return malformed(`field retry must be JSON like {"attempts":3}, got ${quote(retry)}`);
    }
    job.retry = retry;
  }
  if (timeout !== undefined) {
    if (!INTEGER.test(timeout) || timeout === "0") {
      return malformed(`field timeout must be an integer >= 1 (ms), got ${quote(timeout)}`);
    }
    job.timeout = Number(timeout);
  }
  if (group !== undefined) {
    if (!GROUP.test(group)) {
      return malformed(`field group must be ${GROUP_RULE}, got ${quote(group)}`);
    }
    job.group = group;
  }
  if (webhook !== undefined) {
    if (!validWebhook(webhook)) {
      return malformed(`field webhook must be ${WEBHOOK_RULE}, got ${quote(webhook)}`);
    }
    job.webhook = webhook;
  }
  if (sig !== undefined) job.sig = sig;
  const size = oversize(data!, maxPayloadBytes);
  if (size !== undefined) {
    return {
      reason: "too-large",
      error: `field data is ${size} bytes, over maxPayloadBytes ${maxPayloadBytes}`,
    };
  }
  return job;
}

function validRetry(text: string): boolean {
  try {
    const value = decodeData(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
    checkRetry("", value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Turns Redis's flat field/value list (an entry's fields, an XINFO reply) into an object.
 * A field given twice keeps its last value. The list is untrusted: a field named `__proto__`
 * becomes a plain property, never the object's prototype.
 *
 * @param flat `[field, value, field, value, ...]`; a trailing odd item is ignored.
 * @returns The fields as an object.
 *
 * @example
 * ```ts
 * import { fieldsToRecord } from "./codec.ts";
 * console.log(fieldsToRecord(["id", "a", "reason", "failed", "reason", "too-large"]));
 * // { id: "a", reason: "too-large" }
 * ```
 */
export function fieldsToRecord<T>(flat: readonly T[]): Record<string, T> {
  const out: Record<string, T> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const key = String(flat[i]);
    const value = flat[i + 1]!;
    if (key === "__proto__") {
      Object.defineProperty(out, key, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** True if `decoded` is a failure. */
export function isFailure<F extends { reason: string }>(decoded: WireJob | F): decoded is F {
  return "reason" in decoded;
}

function malformed(error: string): DecodeFailure {
  return { reason: "malformed", error };
}

/** A field value as error text shows it: quoted, and cut short, for values are untrusted. */
function quote(value: string | undefined): string {
  if (value === undefined) return "nothing";
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/**
 * The UTF-8 length of `text` in bytes, if it is over `limit`; else undefined. Texts short
 * enough that even 3 bytes per UTF-16 unit fit are not counted.
 */
export function oversize(text: string, limit: number): number | undefined {
  if (text.length * 3 <= limit) return undefined;
  const size = utf8Length(text);
  return size > limit ? size : undefined;
}

/** The UTF-8 length of `text` in bytes, as TextEncoder would encode it; nothing is allocated. */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A surrogate pair: 2 units, 4 bytes.
        bytes += 2;
        i++;
      } else {
        bytes += 2; // a lone surrogate becomes U+FFFD: 3 bytes
      }
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/**
 * True if any field holds U+FFFD. ioredis decodes replies as UTF-8 and turns invalid bytes into
 * U+FFFD, so only such entries need a look at their raw bytes.
 */
export function mayBeMangled(fields: readonly string[]): boolean {
  for (const field of fields) if (field.includes("\uFFFD")) return true;
  return false;
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/** True if every field of an entry, given as raw bytes, is valid UTF-8. */
export function validUtf8(raw: readonly Uint8Array[]): boolean {
  try {
    for (const bytes of raw) STRICT_UTF8.decode(bytes);
    return true;
  } catch {
    return false;
  }
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
 * Parses JSON job data. A key named `__proto__`, at any depth, is refused: JSON.parse makes it
 * an own property, harmless in itself, but code that later merges the data into other objects
 * would hand it to a prototype.
 *
 * @throws {SyntaxError} If the text is not JSON.
 * @throws {TypeError} If the data has a key named `__proto__`.
 */
export function decodeData(text: string): unknown {
  // The reviver is slower, so only texts that could spell the key (also through \u escapes)
  // pay for it.
  if (!text.includes("__proto__") && !text.includes("\\u")) return JSON.parse(text);
  return JSON.parse(text, (key, value) => {
    if (key === "__proto__") throw new TypeError(PROTO_KEY);
    return value;
  });
}

const PROTO_KEY = "data has a key named __proto__, which sluice refuses";

/**
 * Why field data cannot be decoded, as dead-letter text. Never quotes the data: V8's own
 * SyntaxError messages show a piece of it, so only the position is kept.
 */
export function dataError(err: unknown): string {
  if (err instanceof TypeError && err.message === PROTO_KEY) return `field ${PROTO_KEY}`;
  const at = /at position (\d+)/.exec(err instanceof Error ? err.message : "")?.[1];
  return at === undefined ? "field data is not JSON" : `field data is not JSON (at position ${at})`;
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
  const ms = Date.now();
  if (ms !== uuidMs) {
    const hex = ms.toString(16).padStart(12, "0");
    uuidMs = ms;
    uuidHead = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7`;
  }
  // Random bits come from a pooled buffer: one getRandomValues call per 800 ids, not per id.
  if (randomAt + 10 > randomPool.length) {
    crypto.getRandomValues(randomPool);
    randomAt = 0;
  }
  const r = randomPool;
  const i = randomAt;
  randomAt += 10;
  return uuidHead + HEX[r[i]! & 0x0f]![1] + HEX[r[i + 1]!] + "-" + HEX[(r[i + 2]! & 0x3f) | 0x80] +
    HEX[r[i + 3]!] + "-" + HEX[r[i + 4]!] + HEX[r[i + 5]!] + HEX[r[i + 6]!] + HEX[r[i + 7]!] +
    HEX[r[i + 8]!] + HEX[r[i + 9]!];
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
/** The ms of the last id, and its first 15 characters: the timestamp and the version digit. */
let uuidMs = -1;
let uuidHead = "";
/** 10 random bytes per id, 74 random bits once the version and variant bits are set. */
const randomPool = new Uint8Array(8_000);
let randomAt = randomPool.length;
