/**
 * The admin API's listing, which the CLI and the dashboard share: jobs by state in pages
 * (`queue.jobs`). Finding jobs is in inspect.ts, listing queues in queues.ts, and the bulk
 * actions in bulk.ts.
 *
 * Every read is a bounded step: XRANGE, XPENDING, ZRANGE and HSCAN with a COUNT or LIMIT of at
 * most 200, and SCAN with COUNT 1,000, never KEYS. A page walks as many steps as it needs,
 * so Redis is never blocked for more than one step.
 *
 * Where each state is read: `waiting` from each priority's stream past the consumer group's
 * last delivered entry, then from the groups' lines; `active` from the group's pending entries;
 * `delayed` from the delayed zset and its payloads; `dead` from the dead letters; `completed`
 * and `cancelled` from the job records (only while kept: see `keepResult`).
 *
 * @module
 */
import type { Redis } from "ioredis";
import { fieldsToRecord } from "./codec.ts";
import type { HandleContext } from "./handle.ts";
import type { Lanes } from "./priority.ts";
import { checkInt, show } from "./_options.ts";
import { entryBefore } from "./scripts/settle.ts";
import { ENTRY_STEP, lastDelivered, lineFields, recordedLanes, scanStep, STEP } from "./_scan.ts";

/** The states `queue.jobs()` lists. */
export type ListState = "waiting" | "active" | "delayed" | "completed" | "dead" | "cancelled";

/**
 * Every {@linkcode ListState}, in a job's order of life.
 *
 * @example
 * ```ts
 * import { LIST_STATES } from "@sluice/sluice";
 * console.log(LIST_STATES.join(" ")); // "waiting active delayed completed dead cancelled"
 * ```
 */
export const LIST_STATES: readonly ListState[] = [
  "waiting",
  "active",
  "delayed",
  "completed",
  "dead",
  "cancelled",
];

/** Options of `queue.jobs()`. */
export interface JobsOptions {
  /** Where the previous page ended: its `cursor`. @default {undefined} (the first page) */
  cursor?: string;
  /** The most jobs on the page, 1 to 1,000. @default {50} */
  limit?: number;
  /** Only jobs of this task. @default {undefined} (all tasks) */
  task?: string;
  /** Only jobs of this group. @default {undefined} (grouped or not) */
  group?: string;
}

/** One job in a listing: what its state's keys tell without reading anything else. */
export interface JobSummary {
  /** The job id. */
  id: string;
  /** The state it was listed in. */
  state: ListState;
  /** The task name. */
  task: string;
  /** Its group, if it has one. */
  group?: string;
  /** Its priority, on a queue with priorities. */
  priority?: string;
  /** The attempt it is on (or died on). */
  attempt?: number;
  /** The payload, as JSON text (not listed for completed and cancelled jobs). */
  data?: string;
  /** First enqueue time, epoch ms. */
  enqueuedAt?: number;
  /** When a delayed job or a retry is due, epoch ms. */
  dueAt?: number;
  /** When it finished, epoch ms (completed, cancelled, dead). */
  finishedAt?: number;
  /** The consumer holding it (active) or that ran it last (completed). */
  worker?: string;
  /** Deliveries of an active job: above 1 after a crash or a lost lease. */
  deliveries?: number;
  /** How long an active job's lease has gone unrenewed, ms. */
  idleMs?: number;
  /** Why a dead job died, and its error. */
  reason?: string;
  /** The last error (dead). */
  error?: string;
  /** The dead stream's entry id: what `queue.dead.replay` takes. */
  deadId?: string;
}

/** A page of `queue.jobs()`. */
export interface JobsPage {
  /** The jobs, in the state's order (stream order; due time; unordered for records). */
  jobs: JobSummary[];
  /** Give it back as `cursor` for the next page; undefined when there is none. */
  cursor: string | undefined;
}

/** @internal What the admin reads need of a queue: a handle context (keys, group, client). */
export type AdminContext = HandleContext;

/**
 * Lists a queue's jobs in one state, a page at a time (`queue.jobs`).
 *
 * @throws {TypeError} If the state, the cursor or a filter is invalid.
 * @throws {RangeError} If limit is out of range.
 */
export async function listJobs(
  ctx: AdminContext,
  state: ListState,
  options: JobsOptions = {},
): Promise<JobsPage> {
  const action = `Cannot list ${show(state)} jobs`;
  if (!LIST_STATES.includes(state)) {
    throw new TypeError(`${action}: the state must be one of ${LIST_STATES.join(", ")}`);
  }
  const { cursor, limit = 50, task, group } = options;
  checkInt(action, "limit", limit, 1, STEP);
  for (const [name, value] of [["task", task], ["group", group]] as const) {
    if (value !== undefined && (typeof value !== "string" || value === "")) {
      throw new TypeError(`${action}: ${name} must be a non-empty string, got ${show(value)}`);
    }
  }
  if (cursor !== undefined && (typeof cursor !== "string" || !cursor.startsWith(`${state}:`))) {
    throw new TypeError(`${action}: ${show(cursor)} is not a cursor of this state's listing`);
  }
  const at = cursor?.slice(state.length + 1);
  const keep = (job: JobSummary) =>
    (task === undefined || job.task === task) && (group === undefined || job.group === group);
  // Unfiltered, a step asks for what the page still needs; filtered, for a full step.
  const filtered = task !== undefined || group !== undefined;
  const page = await READERS[state](ctx, at, limit, Object.assign(keep, { filtered }), action);
  return { jobs: page.jobs, cursor: page.next === undefined ? undefined : `${state}:${page.next}` };
}

type Keep = ((job: JobSummary) => boolean) & { filtered: boolean };

/** How many entries the next step asks for. */
function want(keep: Keep, limit: number, have: number): number {
  return keep.filtered ? ENTRY_STEP : Math.min(ENTRY_STEP, limit - have);
}
type Reader = (
  ctx: AdminContext,
  at: string | undefined,
  limit: number,
  keep: Keep,
  action: string,
) => Promise<{ jobs: JobSummary[]; next: string | undefined }>;

const READERS: Record<ListState, Reader> = {
  waiting: readWaiting,
  active: readActive,
  delayed: readDelayed,
  dead: readDead,
  completed: (ctx, at, limit, keep, action) =>
    readRecords(ctx, at, limit, keep, action, "completed"),
  cancelled: (ctx, at, limit, keep, action) =>
    readRecords(ctx, at, limit, keep, action, "cancelled"),
};

function badCursor(action: string, at: string): never {
  throw new TypeError(`${action}: the cursor ${show(at)} is damaged`);
}

/** Entry fields (as a record) and where they came from, as a summary. */
function summary(state: ListState, f: Record<string, string>, lanes?: Lanes): JobSummary {
  const job: JobSummary = { id: f.id ?? "", state, task: f.task ?? "" };
  if (f.group !== undefined) job.group = f.group;
  if (f.pri !== undefined) job.priority = f.pri;
  else if (lanes !== undefined && lanes.names.length > 0) job.priority = lanes.names[0]!;
  if (f.attempt !== undefined) job.attempt = Number(f.attempt);
  if (f.data !== undefined) job.data = f.data;
  if (f.enq !== undefined) job.enqueuedAt = Number(f.enq);
  return job;
}

const ENTRY = /^\d+-\d+$/;

/** A stream cursor "<lane>:<entry id>": the lane's index and the last entry listed. */
function laneCursor(action: string, at: string): { lane: number; entry: string } {
  const cut = at.indexOf(":");
  const lane = Number(at.slice(0, cut)), entry = at.slice(cut + 1);
  if (!Number.isInteger(lane) || lane < 0 || !ENTRY.test(entry)) badCursor(action, at);
  return { lane, entry };
}

async function readWaiting(
  ctx: AdminContext,
  at: string | undefined,
  limit: number,
  keep: Keep,
  action: string,
): Promise<{ jobs: JobSummary[]; next: string | undefined }> {
  const client = ctx.client();
  const lanes = await recordedLanes(client, ctx.keys);
  const jobs: JobSummary[] = [];
  // Cursor: "<lane>:<entry id>" in the streams, then "line:<hscan cursor>" in the lines.
  let lane = 0, after: string | undefined;
  if (at !== undefined && !at.startsWith("line:")) {
    ({ lane, entry: after } = laneCursor(action, at));
  }
  if (at === undefined || !at.startsWith("line:")) {
    for (; lane < lanes.streams.length; lane++, after = undefined) {
      const stream = lanes.streams[lane]!;
      const last = await lastDelivered(client, stream, ctx.group);
      let from = after !== undefined && entryBefore(last, after) ? after : last;
      while (true) {
        const entries = await client.xrange(
          stream,
          `(${from}`,
          "+",
          "COUNT",
          want(keep, limit, jobs.length),
        );
        for (const [entry, flat] of entries) {
          const job = summary("waiting", fieldsToRecord(flat));
          if (lanes.labels[lane] !== undefined) job.priority = lanes.labels[lane]!;
          from = entry;
          if (keep(job) && jobs.push(job) >= limit) return { jobs, next: `${lane}:${from}` };
        }
        if (entries.length === 0) break;
      }
    }
  }
  // The groups' lines: jobs waiting for their group's room.
  let [scan, past] = scanCursor(action, at?.startsWith("line:") ? at.slice(5) : undefined);
  do {
    const [next, flat] = await client.hscanBuffer(ctx.keys.groupJobs, scan, "COUNT", ENTRY_STEP);
    const step: JobSummary[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const fields = lineFields(flat[i + 1]!);
      if (fields === undefined) continue;
      const job = summary("waiting", fieldsToRecord(fields));
      if (keep(job)) step.push(job);
    }
    const end = pageOfStep(step, past, limit - jobs.length);
    jobs.push(...end.jobs);
    if (end.last !== undefined) return { jobs, next: `line:${scan}:${end.last}` };
    [scan, past] = [String(next), undefined];
  } while (scan !== "0");
  return { jobs, next: undefined };
}

async function readActive(
  ctx: AdminContext,
  at: string | undefined,
  limit: number,
  keep: Keep,
  action: string,
): Promise<{ jobs: JobSummary[]; next: string | undefined }> {
  const client = ctx.client();
  const lanes = await recordedLanes(client, ctx.keys);
  const jobs: JobSummary[] = [];
  let lane = 0, from = "-";
  if (at !== undefined) {
    const cursor = laneCursor(action, at);
    lane = cursor.lane;
    from = `(${cursor.entry}`;
  }
  for (; lane < lanes.streams.length; lane++, from = "-") {
    const stream = lanes.streams[lane]!;
    while (true) {
      const pending = await client.xpending(
        stream,
        ctx.group,
        from,
        "+",
        want(keep, limit, jobs.length),
      ).catch(() => []) as [string, string, number, number][];
      if (pending.length === 0) break;
      const pipeline = client.pipeline();
      for (const [entry] of pending) pipeline.xrange(stream, entry, entry);
      const replies = await pipeline.exec() ?? [];
      for (let i = 0; i < pending.length; i++) {
        const [entry, consumer, idle, deliveries] = pending[i]!;
        const found = (replies[i]?.[1] as [string, string[]][] | undefined)?.[0];
        // An entry trimmed away while pending (rare) has no fields left to list.
        const job = summary("active", found ? fieldsToRecord(found[1]) : {});
        if (lanes.labels[lane] !== undefined) job.priority = lanes.labels[lane]!;
        job.worker = consumer;
        job.idleMs = Number(idle);
        job.deliveries = Number(deliveries);
        from = `(${entry}`;
        if (keep(job) && jobs.push(job) >= limit) return { jobs, next: `${lane}:${entry}` };
      }
    }
  }
  return { jobs, next: undefined };
}

async function readDelayed(
  ctx: AdminContext,
  at: string | undefined,
  limit: number,
  keep: Keep,
  action: string,
): Promise<{ jobs: JobSummary[]; next: string | undefined }> {
  const client = ctx.client();
  const { delayed, payloads } = ctx.keys;
  // Cursor: "<score>:<member>", the last job listed. The next page starts after its rank, in
  // O(log n); if it left the zset meanwhile, at the first job due at its time or later.
  let last: [score: string, member: string] | undefined;
  if (at !== undefined) {
    const cut = at.indexOf(":");
    last = [at.slice(0, cut), at.slice(cut + 1)];
    if (cut < 1 || !/^\d+$/.test(last[0])) badCursor(action, at);
  }
  const jobs: JobSummary[] = [];
  while (true) {
    // Each step resumes after the last job seen, found again: ranks shift as jobs fall due.
    const rank = last === undefined ? 0 : await rankPast(client, delayed, ...last);
    const n = want(keep, limit, jobs.length);
    const flat = await client.zrange(delayed, rank, rank + n - 1, "WITHSCORES");
    if (flat.length === 0) return { jobs, next: undefined };
    const ids = flat.filter((_, i) => i % 2 === 0);
    last = [flat.at(-1)!, ids.at(-1)!];
    const bodies = await client.hmget(payloads, ...ids);
    for (let i = 0; i < ids.length; i++) {
      const due = flat[2 * i + 1]!;
      let f: Record<string, string> = { id: ids[i]! };
      try {
        const parsed = JSON.parse(bodies[i] ?? "null");
        if (Array.isArray(parsed)) f = fieldsToRecord(parsed.map(String));
      } catch {
        // A payload that is not JSON: listed by its id.
      }
      const job = summary("delayed", f);
      job.dueAt = Number(due);
      if (keep(job) && jobs.push(job) >= limit) return { jobs, next: `${due}:${ids[i]}` };
    }
  }
}

/**
 * The rank just past `member`, due at `score`: its rank + 1 if it is still there at that
 * score, else (it left, or came back due at another time) see {@linkcode rankAfter}.
 */
async function rankPast(
  client: Redis,
  key: string,
  score: string,
  member: string,
): Promise<number> {
  const [rank, now] = await Promise.all([client.zrank(key, member), client.zscore(key, member)]);
  if (rank !== null && now !== null && Number(now) === Number(score)) return rank + 1;
  return await rankAfter(client, key, score, member);
}

/**
 * The rank a listing resumes at after `member` (due at `score`) left the zset: past every job
 * due earlier, and past those due at the same time whose ids sort before it (Redis orders them
 * by their bytes), counted in steps of ENTRY_STEP.
 */
async function rankAfter(
  client: Redis,
  key: string,
  score: string,
  member: string,
): Promise<number> {
  let rank = await client.zcount(key, "-inf", `(${score}`);
  const mine = new TextEncoder().encode(member);
  for (let offset = 0;; offset += ENTRY_STEP) {
    const same = await client.zrangebyscore(key, score, score, "LIMIT", offset, ENTRY_STEP);
    for (const other of same) {
      if (compareBytes(new TextEncoder().encode(other), mine) > 0) return rank;
      rank++;
    }
    if (same.length < ENTRY_STEP) return rank;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

async function readDead(
  ctx: AdminContext,
  at: string | undefined,
  limit: number,
  keep: Keep,
  action: string,
): Promise<{ jobs: JobSummary[]; next: string | undefined }> {
  if (at !== undefined && !ENTRY.test(at)) badCursor(action, at);
  const client = ctx.client();
  const jobs: JobSummary[] = [];
  let from = at === undefined ? "-" : `(${at}`;
  while (true) {
    const entries = await client.xrange(
      ctx.keys.dead,
      from,
      "+",
      "COUNT",
      want(keep, limit, jobs.length),
    );
    if (entries.length === 0) return { jobs, next: undefined };
    for (const [deadId, flat] of entries) {
      const f = fieldsToRecord(flat);
      const job = summary("dead", f);
      job.deadId = deadId;
      if (f.reason !== undefined) job.reason = f.reason;
      if (f.error !== undefined) job.error = f.error;
      if (f.failed_at !== undefined) job.finishedAt = Number(f.failed_at);
      from = `(${deadId}`;
      if (keep(job) && jobs.push(job) >= limit) return { jobs, next: deadId };
    }
  }
}

/** The record fields a listing reads. */
const RECORD_FIELDS = ["state", "job", "task", "attempt", "group", "finished", "run", "reason"];

async function readRecords(
  ctx: AdminContext,
  at: string | undefined,
  limit: number,
  keep: Keep,
  action: string,
  state: "completed" | "cancelled",
): Promise<{ jobs: JobSummary[]; next: string | undefined }> {
  const client = ctx.client();
  const jobs: JobSummary[] = [];
  let [scan, after] = scanCursor(action, at);
  do {
    const [next, keys] = await scanStep(client, scan, `${ctx.keys.jobPrefix}*`);
    const step: JobSummary[] = [];
    for (const [key, r] of await readRecordFields(client, keys)) {
      if (r.state !== state) continue;
      const job = recordSummary(key.slice(ctx.keys.jobPrefix.length), state, r);
      if (keep(job)) step.push(job);
    }
    const end = pageOfStep(step, after, limit - jobs.length);
    jobs.push(...end.jobs);
    if (end.last !== undefined) return { jobs, next: `${scan}:${end.last}` };
    [scan, after] = [next, undefined];
  } while (scan !== "0");
  return { jobs, next: undefined };
}

/**
 * One SCAN step's jobs, by id, past `after` (the last id listed from this step): up to `room`
 * of them, and the last id listed if the page ends inside the step. Skipping by id, not by
 * count, keeps a job that left the step from hiding another.
 */
function pageOfStep(
  step: JobSummary[],
  after: string | undefined,
  room: number,
): { jobs: JobSummary[]; last: string | undefined } {
  const rest = step.sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    .filter((job) => after === undefined || job.id > after);
  if (rest.length <= room) return { jobs: rest, last: undefined };
  const jobs = rest.slice(0, room);
  return { jobs, last: jobs.at(-1)!.id };
}

/**
 * A SCAN-based listing's cursor: "<scan cursor>:<the last id listed from that step>". A page
 * that ends inside a step starts the next one at the same step, past that id.
 */
function scanCursor(action: string, at: string | undefined): [string, string | undefined] {
  if (at === undefined) return ["0", undefined];
  const match = /^(\d+):(.+)$/s.exec(at);
  if (match === null) badCursor(action, at);
  return [match[1]!, match[2]!];
}

async function readRecordFields(
  client: Redis,
  keys: readonly string[],
): Promise<[string, Record<string, string | null>][]> {
  if (keys.length === 0) return [];
  const pipeline = client.pipeline();
  for (const key of keys) pipeline.hmget(key, ...RECORD_FIELDS);
  const replies = await pipeline.exec() ?? [];
  return keys.map((key, i) => {
    const values = (replies[i]?.[1] ?? []) as (string | null)[];
    const r: Record<string, string | null> = {};
    RECORD_FIELDS.forEach((name, j) => r[name] = values[j] ?? null);
    return [key, r];
  });
}

function recordSummary(
  id: string,
  state: ListState,
  r: Record<string, string | null>,
): JobSummary {
  const cut = r.job?.indexOf(" ") ?? -1;
  const job: JobSummary = { id, state, task: r.task ?? (cut >= 0 ? r.job!.slice(cut + 1) : "") };
  if (cut >= 0) job.enqueuedAt = Number(r.job!.slice(0, cut));
  if (r.group !== null && r.group !== undefined) job.group = r.group;
  job.attempt = Number(r.attempt ?? 1);
  if (r.finished) job.finishedAt = Number(r.finished);
  if (r.run) job.worker = r.run.slice(r.run.indexOf(" ", r.run.indexOf(" ") + 1) + 1);
  if (r.reason) job.reason = r.reason;
  return job;
}
