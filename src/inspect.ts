/**
 * Finding jobs by id or id prefix (`queue.find`) and reading all there is of one
 * (`queue.jobDetails`), for the CLI and the dashboard.
 *
 * @module
 */
import type { Redis } from "ioredis";
import { fieldsToRecord } from "./codec.ts";
import { JobHandle, type JobStatus } from "./handle.ts";
import { checkInt, show } from "./_options.ts";
import type { AdminContext } from "./admin.ts";
import { ENTRY_STEP, lineFields, recordedLanes, scanStep, STEP } from "./_scan.ts";

/**
 * Finds jobs by id, or by id prefix (`queue.find`): the status of each, as `info()` gives it.
 * An id that is known gives that job alone, in one read; otherwise the job records whose ids
 * start with it are walked with SCAN, up to `limit` found.
 *
 * @throws {TypeError} If the id is not a non-empty string.
 * @throws {RangeError} If limit is out of range.
 */
export async function findJobs(
  ctx: AdminContext,
  idOrPrefix: string,
  options: { limit?: number } = {},
): Promise<JobStatus[]> {
  const action = "Cannot find jobs";
  if (typeof idOrPrefix !== "string" || idOrPrefix === "") {
    throw new TypeError(
      `${action}: the id or prefix must be a non-empty string, got ${show(idOrPrefix)}`,
    );
  }
  const { limit = 20 } = options;
  checkInt(action, "limit", limit, 1, STEP);
  const exact = await new JobHandle(ctx, idOrPrefix).info();
  if (exact !== undefined) return [exact];
  const found: JobStatus[] = [];
  const client = ctx.client();
  const prefix = ctx.keys.jobPrefix;
  const match = `${prefix}${idOrPrefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
  let scan = "0";
  do {
    const [next, keys] = await scanStep(client, scan, match);
    scan = next;
    for (const key of keys) {
      const id = key.slice(prefix.length);
      if (found.length >= limit) break;
      const status = await new JobHandle(ctx, id).info();
      if (status !== undefined && !found.some((s) => s.id === id)) found.push(status);
    }
  } while (scan !== "0" && found.length < limit);
  return found;
}

/** One step of a job's life, for a timeline. */
export interface TimelineStep {
  /** What happened: an event type (`waiting`, `active`, `completed`...), or `enqueued`. */
  type: string;
  /** When, epoch ms. */
  at: number;
  /** The event's detail, such as the attempt, the worker or the reason. */
  detail?: string;
}

/** Everything the admin tools show of one job (`queue.jobDetails`). */
export interface JobDetails {
  /** Its status, as `info()` gives it. */
  status: JobStatus;
  /** Its payload, as JSON text, while Redis still holds it (not after it completed). */
  data?: string;
  /**
   * Its result, as JSON text, once completed (while the record is kept); undefined if its
   * handler returned nothing.
   */
  result?: string;
  /** Its dead letter's entry id, if it is in the last 10,000 dead letters. */
  deadId?: string;
  /** Its steps, oldest first: from its record and from the queue's recent events. */
  timeline: TimelineStep[];
}

/** The most recent events and dead letters `jobDetails` looks through. */
const LOOK_BACK = 10_000;

/**
 * One job's status, payload, result or error, and timeline (`queue.jobDetails`). It reads the
 * record, the job's entry or payload, and looks through the last 10,000 events and dead
 * letters in steps of 200.
 *
 * @returns Undefined if the id is unknown.
 */
export async function jobDetails(ctx: AdminContext, id: string): Promise<JobDetails | undefined> {
  if (typeof id !== "string" || id === "") {
    throw new TypeError(
      `Cannot read job details: the id must be a non-empty string, got ${show(id)}`,
    );
  }
  const status = await new JobHandle(ctx, id).info();
  if (status === undefined) return undefined;
  const client = ctx.client(), keys = ctx.keys;
  const details: JobDetails = { status, timeline: [] };
  const [entry, place, result] = await client.hmget(keys.job(id), "entry", "place", "result");
  // A handler that returned nothing leaves no field result (earlier versions wrote it empty).
  if (result && status.state === "completed") details.result = result;
  let fields: Record<string, string> | undefined;
  if (status.state === "delayed" || status.state === "retrying") {
    const payload = await client.hget(keys.payloads, id);
    try {
      const parsed = JSON.parse(payload ?? "null");
      if (Array.isArray(parsed)) fields = fieldsToRecord(parsed.map(String));
    } catch {
      // Not JSON: no data to show.
    }
  } else if (place !== null && status.group !== undefined && status.state === "waiting") {
    // Places start over when a line empties: the item there may be another job's.
    const item = await client.hgetBuffer(keys.groupJobs, `${place}:${status.group}`);
    const flat = item === null ? undefined : lineFields(item);
    const f = flat === undefined ? undefined : fieldsToRecord(flat);
    if (f?.id === id) fields = f;
  }
  if (fields === undefined && (status.state === "waiting" || status.state === "active")) {
    const at = status.group === undefined ? entry : await client.hget(keys.groupSlots, `j:${id}`);
    const lanes = await recordedLanes(client, keys);
    for (const stream of at === null || at === undefined ? [] : lanes.streams) {
      const [found] = await client.xrange(stream, at!, at!);
      const f = found && fieldsToRecord(found[1]);
      if (f?.id === id) fields = f;
      if (fields) break;
    }
  }
  if (status.state === "dead") {
    await lookBack(client, keys.dead, (entryId, flat) => {
      const f = fieldsToRecord(flat);
      if (f.id !== id) return false;
      fields = f;
      details.deadId = entryId;
      return true;
    });
  }
  if (fields?.data !== undefined) details.data = fields.data;
  if (status.enqueuedAt !== undefined) {
    details.timeline.push({ type: "enqueued", at: status.enqueuedAt });
  }
  // As the scripts' cjson writes it (it escapes "/"), and as JSON.stringify does.
  const quoted = JSON.stringify(id), escaped = quoted.replaceAll("/", "\\/");
  const steps: TimelineStep[] = [];
  await lookBack(client, keys.events, (entryId, flat) => {
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const ids = flat[i + 1]!;
      if (!ids.includes(quoted) && !ids.includes(escaped)) continue;
      const [type = "", , ...rest] = flat[i]!.split(" ");
      const step: TimelineStep = { type, at: Number(entryId.split("-")[0]) };
      if (rest.length > 0) step.detail = rest.join(" ");
      steps.push(step);
    }
    return false;
  });
  details.timeline.push(...steps.reverse());
  // The events stream is capped: steps it no longer holds come from the record.
  const has = (type: string) => steps.some((step) => step.type === type);
  if (status.startedAt !== undefined && !has("active")) {
    details.timeline.push({ type: "active", at: status.startedAt });
  }
  const final = status.state;
  if (
    status.finishedAt !== undefined && !has(final) &&
    (final === "completed" || final === "dead" || final === "cancelled")
  ) {
    const step: TimelineStep = { type: final, at: status.finishedAt };
    if (status.reason !== undefined) step.detail = status.reason;
    details.timeline.push(step);
  }
  details.timeline.sort((a, b) => a.at - b.at);
  return details;
}

/** Calls `each` on a stream's entries newest first, up to LOOK_BACK, until it returns true. */
async function lookBack(
  client: Redis,
  stream: string,
  each: (id: string, flat: string[]) => boolean,
): Promise<void> {
  let end = "+";
  for (let seen = 0; seen < LOOK_BACK; seen += ENTRY_STEP) {
    const entries = await client.xrevrange(stream, end, "-", "COUNT", ENTRY_STEP);
    for (const [entryId, flat] of entries) if (each(entryId, flat)) return;
    if (entries.length < ENTRY_STEP) return;
    end = `(${entries.at(-1)![0]}`;
  }
}
