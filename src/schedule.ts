/**
 * Schedules: cron and interval schedules that fire exactly once per tick, however many workers
 * run.
 *
 * Design. A schedule is a definition (hash `schedules`: id → canonical JSON) and its next tick
 * (zset `ticks`: id → tick ms). The promoter (delayed.ts) wakes for the first tick as it does
 * for the first delayed job: DUE looks at both zsets and reports due schedules with their
 * definitions, on Redis TIME. The next cron time needs croner, which runs in JS, not Lua, so
 * the worker whose DUE saw a due tick computes, in JS, which ticks to fire (catch-up) and the
 * following tick, then sends FIRE. FIRE is fenced: it acts only if the schedule's tick and
 * definition are still the ones DUE reported. The first worker's FIRE writes the jobs and moves
 * the tick on; a racing worker's FIRE finds the tick moved and writes nothing. A tick's job id
 * is `<schedule>@<tick ms>`, and FIRE skips a tick whose job record exists (the dedup of
 * enqueue), so even a replayed FIRE cannot run a tick twice. A queue with no schedules pays one
 * ZRANGE of an empty key inside DUE and PROMOTE, and no extra call.
 *
 * Priorities: a schedule may name a `priority`, checked against the queue's when it is stored;
 * FIRE writes its jobs to that priority's stream (with field `pri`, unless it is the lowest).
 * Without one, its jobs get the queue's default priority, as an enqueue without one does.
 *
 * Missed ticks: a tick is on time if Redis TIME is at most {@linkcode ON_TIME_MS} past it when
 * it is fired. `catchUp` says what to do with the due ticks when the latest is late: `"latest"`
 * fires the latest one, `"none"` fires none (an on-time tick is always fired), `"all"` fires
 * them all, the latest 100 at most.
 *
 * @module
 */
import { redisNow } from "./stats.ts";
import { Cron } from "croner";
import { encodeData, encodeFields, uuidv7 } from "./codec.ts";
import { toError, ValidationError } from "./errors.ts";
import { type Keys, NAME, NAME_RULE, RECORD_TTL_MS } from "./keys.ts";
import type { Logger } from "./_log.ts";
import { show } from "./_options.ts";
import type { ScriptClient } from "./scripts/mod.ts";
import {
  fireArgs,
  type FireTick,
  schedulePauseArgs,
  scheduleRemoveArgs,
  scheduleSetArgs,
} from "./scripts/schedule.ts";
import type { Signer } from "./sign.ts";
import { laneOf, type Lanes } from "./priority.ts";
import { type AnyTask, type Task, validate } from "./task.ts";

/** How late (ms) a tick may be fired and still count as on time, not missed. */
export const ON_TIME_MS = 1_000;
/** The most missed ticks `catchUp: "all"` fires. */
export const CATCH_UP_MAX = 100;
/** The longest `every`: 366 days. */
const EVERY_MAX = 366 * 86_400_000;
/** A schedule id: what a name may hold, 180 characters at most (the job id adds `@<ms>`). */
const SCHEDULE_ID = /^[A-Za-z0-9._:-]{1,180}$/;

/** What to do with ticks missed while no worker ran. */
export type CatchUp = "latest" | "none" | "all";

/** When and how a schedule fires: a cron expression or an interval, and its job's data. */
export interface ScheduleOptions<Data = unknown> {
  /**
   * A cron expression: 5 fields (minute hour day month weekday), or 6 with a leading seconds
   * field. Give `cron` or `every`, not both.
   */
  cron?: string;
  /** The time zone of `cron`, an IANA name. @default {"UTC"} */
  tz?: string;
  /** An interval in ms (an integer from 1 to 366 days), counted from the first tick. */
  every?: number;
  /** Each job's data. @default {null} */
  data?: Data;
  /**
   * Ticks missed while no worker ran (or the schedule was overdue by over a second):
   * `"latest"` runs one job for the latest, `"none"` runs none, `"all"` runs them all (the
   * latest 100 at most).
   *
   * @default {"latest"}
   */
  catchUp?: CatchUp;
  /**
   * `false` skips a tick while the previous tick's job is still waiting, running or waiting
   * for a retry, and counts the skip (`skipped` in `list()`).
   *
   * @default {true}
   */
  overlap?: boolean;
  /**
   * The priority of the schedule's jobs: one of the queue's `priorities`, checked when the
   * schedule is stored (by `upsert`, or by a Worker for a static schedule).
   *
   * @default {the queue's `defaultPriority`}
   */
  priority?: string;
}

/** Options of `queue.schedules.upsert()`: a schedule and the task its jobs run. */
export interface UpsertScheduleOptions<Data = unknown> extends ScheduleOptions<Data> {
  /** The task (its schema checks `data`) or a task name. */
  task: AnyTask | string;
}

/** A stored schedule, as `queue.schedules.list()` returns it. */
export interface ScheduleInfo {
  /** The schedule id. */
  id: string;
  /** The cron expression, if it is a cron schedule. */
  cron?: string;
  /** The interval in ms, if it is an interval schedule. */
  every?: number;
  /** The cron time zone ("UTC" unless given; also "UTC" for intervals). */
  tz: string;
  /** The task name. */
  task: string;
  /** The jobs' data. */
  data: unknown;
  /** What happens to missed ticks. */
  catchUp: CatchUp;
  /** False: a tick is skipped while the previous job is unfinished. */
  overlap: boolean;
  /** The priority of its jobs, if the schedule names one (else the queue's default). */
  priority?: string;
  /** The next tick, or null while paused (or if the cron has no more). */
  next: Date | null;
  /** The tick of the last job fired, or null. */
  last: Date | null;
  /** The id of the last job fired, or null. */
  lastJob: string | null;
  /** Ticks skipped because of `overlap: false`. */
  skipped: number;
  /** True while paused. */
  paused: boolean;
}

/** A checked schedule, in the form stored: `json` is what the fences compare. */
export interface Spec {
  /** The task name. */
  readonly task: string;
  /** The cron expression, or null for an interval. */
  readonly cron: string | null;
  /** The interval (ms), or null for a cron. */
  readonly every: number | null;
  /** The cron time zone. */
  readonly tz: string;
  /** The data as JSON text. */
  readonly data: string;
  /** What happens to missed ticks. */
  readonly catchUp: CatchUp;
  /** False: skip a tick while the last job is unfinished. */
  readonly overlap: boolean;
  /** The jobs' priority, if one was given. */
  readonly priority?: string;
}

/** Throws a ValidationError: "<action>: <what> must be <rule>, got <value>". */
function invalid(action: string, what: string, value: unknown, cause?: unknown): never {
  const why = cause === undefined ? "" : ` (${toError(cause).message})`;
  throw new ValidationError(
    `${action}: ${what}, got ${show(value)}${why}`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * Checks a schedule id.
 *
 * @throws {ValidationError} Unless it is 1 to 180 characters of `A-Z a-z 0-9 . _ : -`.
 */
export function checkScheduleId(action: string, id: unknown): string {
  if (typeof id !== "string" || !SCHEDULE_ID.test(id)) {
    invalid(action, "id must be 1 to 180 characters of A-Z a-z 0-9 . _ : -", id);
  }
  return id;
}

/**
 * Checks a schedule's options and returns it in stored form (data not yet schema-checked).
 *
 * @throws {ValidationError} Naming the action, the option, the rule and the value.
 */
export function checkSchedule(action: string, task: string, options: ScheduleOptions): Spec {
  if (typeof options !== "object" || options === null) {
    invalid(action, "options must be an object", options);
  }
  const { cron, every, tz, data = null, catchUp = "latest", overlap = true, priority } = options;
  if (cron !== undefined && every !== undefined) {
    invalid(action, "give cron or every, not both", { cron, every });
  }
  if (cron === undefined && every === undefined) {
    invalid(action, "give cron or every", options);
  }
  if (catchUp !== "latest" && catchUp !== "none" && catchUp !== "all") {
    invalid(action, 'catchUp must be "latest", "none" or "all"', catchUp);
  }
  if (typeof overlap !== "boolean") invalid(action, "overlap must be a boolean", overlap);
  // Only its form here: whether the queue has it is known where the schedule is stored.
  if (priority !== undefined && (typeof priority !== "string" || !NAME.test(priority))) {
    invalid(action, `priority must be a priority name (${NAME_RULE})`, priority);
  }
  if (every !== undefined) {
    if (typeof every !== "number" || !Number.isInteger(every) || every < 1 || every > EVERY_MAX) {
      invalid(action, `every must be an integer from 1 to ${EVERY_MAX} (ms)`, every);
    }
    if (tz !== undefined) invalid(action, "tz applies to cron only, not to every", tz);
  }
  const zone = tz ?? "UTC";
  if (cron !== undefined) {
    if (typeof cron !== "string" || !/^\s*\S+(\s+\S+){4,5}\s*$/.test(cron)) {
      invalid(action, "cron must be a string of 5 or 6 fields", cron);
    }
    if (typeof zone !== "string") invalid(action, "tz must be an IANA time zone name", tz);
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: zone });
    } catch (err) {
      invalid(action, "tz must be a known IANA time zone", tz, err);
    }
    let first: Date | null;
    try {
      first = cronOf(cron, zone).nextRun();
    } catch (err) {
      invalid(action, "cron must be a valid cron expression", cron, err);
    }
    if (first === null) invalid(action, "cron never fires", cron);
  }
  let text: string;
  try {
    text = encodeData(data);
  } catch (err) {
    invalid(action, "data must be JSON-serializable", data, err);
  }
  return {
    task,
    cron: cron ?? null,
    every: every ?? null,
    tz: zone,
    data: text,
    catchUp,
    overlap,
    ...(priority === undefined ? {} : { priority }),
  };
}

/**
 * The stored JSON of a spec: fixed key order, so equal specs are equal strings. `priority` is
 * left out when not given, so a schedule stored before priorities existed stays unchanged.
 */
export function specJson(spec: Spec): string {
  const { task, cron, every, tz, data, catchUp, overlap, priority } = spec;
  return JSON.stringify(
    priority === undefined
      ? { task, cron, every, tz, data, catchUp, overlap }
      : { task, cron, every, tz, data, catchUp, overlap, priority },
  );
}

/** Reads a stored spec back, or undefined if it is unreadable. */
function parseSpec(json: string): Spec | undefined {
  try {
    const s = JSON.parse(json);
    if (typeof s?.task !== "string" || typeof s.data !== "string") return undefined;
    if (typeof s.cron !== "string" && typeof s.every !== "number") return undefined;
    if (s.priority !== undefined && typeof s.priority !== "string") return undefined;
    return s as Spec;
  } catch {
    return undefined;
  }
}

/** Croner instances by expression and zone: they hold no timer (paused), only the pattern. */
const crons = new Map<string, Cron>();

function cronOf(cron: string, tz: string): Cron {
  const key = `${tz} ${cron}`;
  let c = crons.get(key);
  if (c === undefined) {
    if (crons.size >= 1_000) crons.clear();
    c = new Cron(cron.trim(), { timezone: tz, paused: true });
    crons.set(key, c);
  }
  return c;
}

/**
 * The first tick of `spec` after `after` (ms), or null if there is none.
 *
 * @param spec A checked schedule.
 * @param after ms since epoch; the tick returned is strictly later.
 * @param anchor For `every`: a tick of the grid (the first tick); ticks are anchor + k·every.
 */
export function nextTick(spec: Spec, after: number, anchor?: number): number | null {
  if (spec.every !== null) {
    if (anchor === undefined || anchor > after) return anchor ?? after + spec.every;
    return anchor + (Math.floor((after - anchor) / spec.every) + 1) * spec.every;
  }
  return cronOf(spec.cron!, spec.tz).nextRun(new Date(after))?.getTime() ?? null;
}

/**
 * The ticks of `spec` from `from` (itself a tick) to `now`, both included: the latest `max`.
 * Cron ticks are enumerated over a window that grows back from `now`, so a long outage costs
 * about `max` steps, not one per missed tick.
 */
export function dueTicks(spec: Spec, from: number, now: number, max: number): number[] {
  if (from > now) return [];
  if (spec.every !== null) {
    const last = Math.floor((now - from) / spec.every);
    const out: number[] = [];
    for (let k = Math.max(0, last - max + 1); k <= last; k++) out.push(from + k * spec.every);
    return out;
  }
  for (let span = 2_000;; span *= 4) {
    const start = Math.max(from, now - span);
    const out: number[] = [];
    for (let t = nextTick(spec, start - 1); t !== null && t <= now; t = nextTick(spec, t)) {
      out.push(t);
    }
    if (start === from && out[0] !== from) out.unshift(from);
    if (out.length >= max || start === from) return out.slice(-max);
  }
}

/** What firing needs from its queue. */
export interface FireContext {
  readonly keys: Keys;
  /** The priorities' streams: a schedule's jobs go to its priority's. */
  readonly lanes: Lanes;
  readonly name: string;
  readonly client: ScriptClient;
  readonly signer: Signer | undefined;
  readonly logger: Logger;
  /** The events cap (0 or undefined: no events). */
  readonly events?: number;
}

/**
 * Fires the due schedules DUE reported (flat: id, tick, definition, run state): for each, works
 * out the ticks to fire and the following tick, and sends FIRE (fenced: only one worker's
 * write wins). An unreadable definition is logged and its tick put off by a minute.
 *
 * @returns How many jobs were written.
 */
export async function fireSchedules(
  ctx: FireContext,
  now: number,
  due: readonly string[],
): Promise<number> {
  let fired = 0;
  for (let i = 0; i + 3 < due.length; i += 4) {
    const id = due[i]!, tick = Number(due[i + 1]), json = due[i + 2]!;
    const state = parseState(due[i + 3]!);
    const spec = parseSpec(json);
    let follow: number | null, ticks: number[];
    try {
      // Not the definition itself: it holds the job's data, which is never logged.
      if (spec === undefined) {
        throw new TypeError(`unreadable definition (${json.length} characters of JSON)`);
      }
      const latest = dueTicks(spec, tick, now, spec.catchUp === "all" ? CATCH_UP_MAX : 1);
      const last = latest[latest.length - 1]!;
      ticks = spec.catchUp === "none" && now - last > ON_TIME_MS ? [] : latest;
      follow = nextTick(spec, Math.max(now, last), tick);
      if (follow !== null && follow <= now) throw new RangeError(`next tick ${follow} is due`);
    } catch (err) {
      ctx.logger.error(
        `sluice: queue ${ctx.name}: cannot fire schedule ${id}, trying again in a minute`,
        err,
      );
      ticks = [];
      follow = now + 60_000;
    }
    const task = spec?.task ?? "";
    const lane = ticks.length === 0 ? ctx.lanes.fallback : laneOfSchedule(ctx, id, spec!);
    const pri = lane === ctx.lanes.streams.length - 1 ? undefined : ctx.lanes.labels[lane];
    const jobs: FireTick[] = [];
    for (const at of ticks) {
      const job = { id: `${id}@${at}`, task, data: spec!.data, attempt: 1, enq: now };
      const sig = ctx.signer === undefined ? undefined : await ctx.signer.sign(job);
      jobs.push({
        at,
        id: job.id,
        fields: encodeFields(sig === undefined ? job : { ...job, sig }, pri),
      });
    }
    const [n] = await ctx.client.sluiceFire(fireArgs(ctx.keys, {
      id,
      stream: ctx.lanes.streams[lane]!,
      expected: tick,
      spec: json,
      follow: follow ?? -1,
      overlap: spec?.overlap ?? true,
      last: state.job ?? undefined,
      live: RECORD_TTL_MS,
      task,
      enq: now,
      ticks: jobs,
      events: ctx.events ?? 0,
    }));
    if (n > 0) fired += n;
  }
  return fired;
}

/**
 * The lane of a schedule's jobs. A priority the queue does not have (a static schedule stored
 * by a process with other priorities, say) is logged, and its jobs get the default priority:
 * they still run.
 */
function laneOfSchedule(ctx: FireContext, id: string, spec: Spec): number {
  try {
    return laneOf(`Cannot fire schedule ${id} at its priority`, ctx.lanes, spec.priority);
  } catch (err) {
    ctx.logger.error(
      `sluice: queue ${ctx.name}: schedule ${id}'s jobs go to the default priority instead`,
      err,
    );
    return ctx.lanes.fallback;
  }
}

interface RunState {
  last?: number;
  job?: string;
  skipped?: number;
  paused?: boolean;
}

function parseState(raw: string): RunState {
  if (raw === "") return {};
  try {
    const s = JSON.parse(raw);
    return typeof s === "object" && s !== null && !Array.isArray(s) ? s : {};
  } catch {
    return {};
  }
}

/**
 * Stores a schedule. The same definition stored already is left alone, its next tick kept;
 * else the first tick is computed from Redis TIME.
 *
 * @param client The queue's command connection.
 * @param keys The queue's keys.
 * @param id The schedule id.
 * @param spec The checked schedule.
 * @param lanes The queue's priorities: the schedule's `priority` must be one of them. Without
 * them it is not checked here (a priority the queue lacks is logged at each fire, and its
 * jobs get the default priority).
 * @returns 0 unchanged, 1 replaced, 2 created.
 * @throws {ValidationError} If the schedule's priority is not one of `lanes`.
 */
export async function storeSchedule(
  client: ScriptClient,
  keys: Keys,
  id: string,
  spec: Spec,
  lanes?: Lanes,
): Promise<number> {
  if (lanes !== undefined) laneOf(`Cannot store schedule ${id}`, lanes, spec.priority);
  const now = await redisNow(client);
  const first = nextTick(spec, now) ?? -1;
  return await client.sluiceScheduleSet(scheduleSetArgs(keys, id, specJson(spec), first));
}

/** What `Schedules` needs from its queue. */
export interface SchedulesContext {
  readonly keys: Keys;
  /** The queue's priorities: a schedule's must be one of them. */
  readonly lanes: Lanes;
  /** The queue's command connection (opened on first use). */
  client(): ScriptClient;
  /** Throws if the queue is closed. */
  checkOpen(action: string): void;
  /** Enqueues one job (what `trigger` does), at `priority` (undefined: the default). */
  enqueue(
    task: string,
    data: unknown,
    id: string,
    priority: string | undefined,
  ): Promise<{ readonly id: string }>;
}

/**
 * A queue's schedules: `upsert`, `list`, `remove`, `pause`, `resume`, `trigger`. Get it as
 * `queue.schedules`. Jobs are fired by running workers (or `consume()` streams), each tick
 * exactly once, with job id `<schedule id>@<tick ms>`.
 *
 * @example
 * ```ts
 * import { Queue } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * await using queue = new Queue("q", { redis: redis.url });
 * await queue.schedules.upsert("ping", { every: 10_000, task: "ping" });
 * const [ping] = await queue.schedules.list();
 * console.log(ping?.every, ping?.next instanceof Date); // 10000 true
 * ```
 */
export class Schedules {
  #q: SchedulesContext;

  /** @internal Made by the Queue. */
  constructor(q: SchedulesContext) {
    this.#q = q;
  }

  /**
   * Creates or replaces schedule `id`. Replacing with a different definition recomputes its
   * next tick; the same definition is left as it is.
   *
   * @param id 1 to 180 characters of `A-Z a-z 0-9 . _ : -`.
   * @param options `cron` (with `tz`) or `every`, the `task`, its `data`, `catchUp`, `overlap`,
   * `priority`.
   * @returns "created", "replaced" or "unchanged".
   * @throws {ValidationError} If an option is invalid, the priority is not one of the queue's,
   * or the data fails the task's schema.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("q", { redis: redis.url });
   * const how = await queue.schedules.upsert("report:acme", {
   *   cron: "0 9 * * 1-5",
   *   tz: "America/New_York",
   *   task: "report",
   *   data: { org: "acme" },
   * });
   * console.log(how); // "created"
   * ```
   */
  async upsert(
    id: string,
    options: UpsertScheduleOptions,
  ): Promise<"created" | "replaced" | "unchanged"> {
    const action = `Cannot upsert schedule ${typeof id === "string" ? id : show(id)}`;
    this.#q.checkOpen("upsert a schedule");
    checkScheduleId(action, id);
    const task = options?.task;
    const name = typeof task === "string" ? task : task?.name;
    if (typeof name !== "string" || !NAME.test(name)) {
      invalid(action, "task must be a task or a task name", task);
    }
    const spec = checkSchedule(action, name, options);
    laneOf(action, this.#q.lanes, spec.priority);
    if (typeof task !== "string") await validate(action, task as Task, JSON.parse(spec.data));
    const code = await storeSchedule(this.#q.client(), this.#q.keys, id, spec);
    return code === 0 ? "unchanged" : code === 1 ? "replaced" : "created";
  }

  /**
   * Every schedule of the queue, by id.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("q", { redis: redis.url });
   * await queue.schedules.upsert("nightly", { cron: "0 3 * * *", tz: "Asia/Kolkata", task: "t" });
   * const [nightly] = await queue.schedules.list();
   * console.log(nightly?.next?.toISOString().slice(11)); // "21:30:00.000Z"
   * ```
   */
  async list(): Promise<ScheduleInfo[]> {
    this.#q.checkOpen("list schedules");
    const { keys } = this.#q;
    const client = this.#q.client();
    const [specs, runs, ticks] = await Promise.all([
      client.hgetall(keys.schedules),
      client.hgetall(keys.runs),
      client.zrange(keys.ticks, 0, -1, "WITHSCORES"),
    ]);
    const next = new Map<string, number>();
    for (let i = 0; i + 1 < ticks.length; i += 2) next.set(ticks[i]!, Number(ticks[i + 1]));
    const out: ScheduleInfo[] = [];
    for (const id of Object.keys(specs).sort()) {
      const spec = parseSpec(specs[id]!);
      if (spec === undefined) continue;
      const state = parseState(runs[id] ?? "");
      const at = next.get(id);
      out.push({
        id,
        ...(spec.cron !== null ? { cron: spec.cron } : { every: spec.every! }),
        tz: spec.tz,
        task: spec.task,
        data: JSON.parse(spec.data),
        catchUp: spec.catchUp,
        overlap: spec.overlap,
        ...(spec.priority === undefined ? {} : { priority: spec.priority }),
        next: at === undefined ? null : new Date(at),
        last: typeof state.last === "number" ? new Date(state.last) : null,
        lastJob: state.job ?? null,
        skipped: state.skipped ?? 0,
        paused: state.paused === true,
      });
    }
    return out;
  }

  /**
   * Removes schedule `id`: no more ticks. Jobs it already fired stay.
   *
   * @returns True if it existed.
   */
  async remove(id: string): Promise<boolean> {
    this.#q.checkOpen("remove a schedule");
    checkScheduleId(`Cannot remove schedule ${show(id)}`, id);
    return await this.#q.client().sluiceScheduleRemove(scheduleRemoveArgs(this.#q.keys, id)) ===
      1;
  }

  /**
   * Pauses schedule `id`: no ticks until `resume`. Ticks that fall in the pause are not caught
   * up.
   *
   * @returns True if it exists.
   */
  async pause(id: string): Promise<boolean> {
    this.#q.checkOpen("pause a schedule");
    checkScheduleId(`Cannot pause schedule ${show(id)}`, id);
    const args = schedulePauseArgs(this.#q.keys, id, true, -1);
    return await this.#q.client().sluiceSchedulePause(args) === 1;
  }

  /**
   * Resumes schedule `id` from its next tick after now.
   *
   * @returns True if it exists.
   *
   * @example
   * ```ts
   * import { Queue } from "@sluice/sluice";
   * import { startRedis } from "@sluice/sluice/testing";
   * await using redis = await startRedis();
   * await using queue = new Queue("q", { redis: redis.url });
   * await queue.schedules.upsert("ping", { every: 10_000, task: "ping" });
   * await queue.schedules.pause("ping");
   * console.log((await queue.schedules.list())[0]?.paused); // true
   * await queue.schedules.resume("ping");
   * console.log((await queue.schedules.list())[0]?.paused); // false
   * ```
   */
  async resume(id: string): Promise<boolean> {
    this.#q.checkOpen("resume a schedule");
    checkScheduleId(`Cannot resume schedule ${show(id)}`, id);
    const client = this.#q.client();
    const json = await client.hget(this.#q.keys.schedules, id);
    if (json === null) return false;
    const spec = parseSpec(json);
    const first = spec === undefined ? -1 : nextTick(spec, await redisNow(client)) ?? -1;
    const args = schedulePauseArgs(this.#q.keys, id, false, first);
    return await client.sluiceSchedulePause(args) === 1;
  }

  /**
   * Runs schedule `id` once now, outside its ticks: one job of its task, data and priority,
   * with id `<schedule id>@trigger:<uuid>`. Its ticks go on as before.
   *
   * @returns The job's id, or null if there is no such schedule.
   * @throws {ValidationError} If the schedule's priority is not one of the queue's.
   */
  async trigger(id: string): Promise<string | null> {
    this.#q.checkOpen("trigger a schedule");
    checkScheduleId(`Cannot trigger schedule ${show(id)}`, id);
    const json = await this.#q.client().hget(this.#q.keys.schedules, id);
    const spec = json === null ? undefined : parseSpec(json);
    if (spec === undefined) return null;
    const job = await this.#q.enqueue(
      spec.task,
      JSON.parse(spec.data),
      `${id}@trigger:${uuidv7()}`,
      spec.priority,
    );
    return job.id;
  }
}
