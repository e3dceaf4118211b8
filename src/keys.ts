/**
 * The Redis key layout. Every key of a queue carries the hash tag `{<queue>}`, so a whole queue
 * lives on one Redis Cluster slot and every Lua script can touch all of it. No other file builds
 * a key string.
 *
 * @module
 */

/** The keys of one queue. */
export interface Keys {
  /** Ready jobs: a stream read by the consumer group. With priorities, the lowest one's. */
  readonly stream: string;
  /**
   * The priority list a queue's producers and workers use, recorded at first use (a JSON array
   * of names, lowest first; absent while the queue has one priority): see priority.ts.
   */
  readonly priorities: string;
  /** The ready stream of priority `name`, for every priority but the lowest. */
  lane(name: string): string;
  /** Dead letters: a stream of the original fields plus `error`, `reason`, `failed_at`. */
  readonly dead: string;
  /** Live workers: a zset of consumer name scored by heartbeat expiry (ms). */
  readonly workers: string;
  /**
   * The workers' heartbeat records: a hash of consumer name to JSON (host, pid, version,
   * counts; see `queue.workers()`), written with each heartbeat, deleted when the worker
   * stops or its heartbeat is pruned.
   */
  readonly registry: string;
  /** Delayed jobs and scheduled retries: a zset of job id scored by due time (ms). */
  readonly delayed: string;
  /** The entries of delayed jobs: a hash of job id to their wire fields as a JSON array. */
  readonly payloads: string;
  /** A pub/sub channel: "a job is due in N ms", so sleeping workers wake in time. */
  readonly wake: string;
  /** A pub/sub channel: "cancel job <id>", for the worker that holds it. */
  readonly cancel: string;
  /**
   * Set (to "1") while the queue is paused: workers start no job. A string with no expiry,
   * absent when the queue runs.
   */
  readonly paused: string;
  /** A pub/sub channel: "1" when the queue is paused, "0" when it is resumed. */
  readonly pause: string;
  /** The prefix of per-job pub/sub channels that announce a job's end. */
  readonly done: string;
  /**
   * The `result()` calls waiting on this queue: a zset of waiter tokens scored by when the
   * registration expires (ms, Redis's clock). While none is live, settles publish no outcomes.
   */
  readonly waiters: string;
  /**
   * Durable mode only: a short-lived string a worker writes when it sends a settle again to
   * confirm it is replicated, so that the `WAIT` behind it has a write of its own connection to
   * wait for (a settle found done already writes nothing). Expires after a minute.
   */
  readonly sync: string;
  /**
   * Schedules (schedule.ts): a hash of schedule id to its definition, as canonical JSON written
   * by `queue.schedules.upsert` or a Worker's static schedule.
   */
  readonly schedules: string;
  /** Schedules' next ticks: a zset of schedule id scored by its next tick (ms); the promoter
   * wakes for the first one as it does for the delayed zset. A paused schedule has none. */
  readonly ticks: string;
  /** Schedules' run state: a hash of schedule id to JSON `{ last, job, skipped, paused }`. */
  readonly runs: string;
  /**
   * Rate-limit pauses (limits.ts): a hash of `t:<task>` to the time (ms, Redis's clock) until
   * which that task starts nothing, set by `ctx.rateLimited(ms)`.
   */
  readonly holds: string;
  /**
   * A pub/sub channel: "<scope> <until> <now>" (ms, Redis's clock) when `ctx.rateLimited`
   * pauses a scope.
   */
  readonly held: string;
  /**
   * A rate-limit scope's starts (`q` for the queue, `t:<task>` for a task; see
   * scripts/limit.ts): a zset of the last interval's starts, scored by time (ms).
   */
  rate(scope: string): string;
  /** How many starts a rate-limit scope's zset stands for (a member may count several). */
  tally(scope: string): string;
  /** A rate-limit scope's bookings: a zset of the ids of jobs put off, scored by when due. */
  booked(scope: string): string;
  /**
   * Groups' settings (groups.ts): a hash of `c` (the Workers' default per-group concurrency),
   * `c:<group>` (a group's own, from `queue.groups.set`) and `p:<group>` ("1" while the group
   * is paused).
   */
  readonly groups: string;
  /**
   * Grouped jobs waiting for room (scripts/_gate.ts): a hash of `<seq>:<group>` to the job's
   * wire fields as a JSON array; `seq` counts up per group, so each group is a FIFO.
   */
  readonly groupJobs: string;
  /**
   * Each group's state (scripts/_gate.ts): a hash of group to "<r> <h> <t> <n>": its entries in
   * the ready stream (waiting there or running), the last place taken from its line, the last
   * place given, and how many jobs wait. A group with none in the stream and none waiting has
   * no field.
   */
  readonly groupLines: string;
  /**
   * The stream entries of grouped jobs (scripts/_gate.ts): a hash of `e:<entry id>` to
   * "<group>\n<job id>" and `j:<job id>` to the entry id, so a settle, a reclaim or a cancel
   * gives the group its room back exactly once.
   */
  readonly groupSlots: string;
  /**
   * The queue's events (events.ts): a stream capped at about `events` events, one entry per
   * script call that wrote any: field "<type> <task>[ <detail>]", value the JSON array of the
   * ids of the jobs it happened to.
   */
  readonly events: string;
  /**
   * Jobs completed and failed per minute, over the last 64 minutes (scripts/_prelude.ts
   * `tally`): a hash of `m<slot>` (the minute, epoch ms / 60,000), `c<slot>` and `f<slot>`,
   * slot = minute % 64. Written by settles with events on; the dashboard's sparklines read it.
   */
  readonly minutes: string;
  /** The key of one job's record: a hash of its state, timestamps, result or error. */
  job(id: string): string;
  /** The prefix of every job record's key: scripts read a job id off its record's key. */
  readonly jobPrefix: string;
}

/** How long a pending job's record lives without news (ms): a week. Finished jobs' records
 * live for `keepResult` instead. */
export const RECORD_TTL_MS = 7 * 24 * 3_600_000;

/**
 * What a queue, task, group or prefix name may be ({@linkcode NAME_RULE}): nothing that could
 * break a key's hash tag (braces) or a log line.
 *
 * @example
 * ```ts
 * import { NAME } from "./keys.ts";
 * console.log(NAME.test("images.v2"), NAME.test("a{b}")); // true false
 * ```
 */
export const NAME: RegExp = /^[A-Za-z0-9._:-]{1,200}$/;

/** {@linkcode NAME} in words, for error messages. */
export const NAME_RULE = "1 to 200 characters of A-Z a-z 0-9 . _ : -";

/**
 * Builds the keys of queue `name` under `prefix`.
 *
 * @throws {TypeError} If the name or prefix has characters that would break the hash tag.
 */
export function queueKeys(name: string, prefix: string): Keys {
  checkName("queue name", name);
  checkName("prefix", prefix);
  const base = `${prefix}:{${name}}`;
  return {
    stream: `${base}:stream`,
    priorities: `${base}:priorities`,
    lane: (name) => `${base}:stream:${name}`,
    dead: `${base}:dead`,
    workers: `${base}:workers`,
    registry: `${base}:registry`,
    delayed: `${base}:delayed`,
    payloads: `${base}:payloads`,
    wake: `${base}:wake`,
    cancel: `${base}:cancel`,
    paused: `${base}:paused`,
    pause: `${base}:pause`,
    done: `${base}:done:`,
    waiters: `${base}:waiters`,
    sync: `${base}:sync`,
    schedules: `${base}:schedules`,
    ticks: `${base}:ticks`,
    runs: `${base}:runs`,
    holds: `${base}:holds`,
    held: `${base}:held`,
    rate: (scope) => `${base}:rate:${scope}`,
    tally: (scope) => `${base}:tally:${scope}`,
    booked: (scope) => `${base}:booked:${scope}`,
    groups: `${base}:groups`,
    groupJobs: `${base}:gjobs`,
    groupLines: `${base}:glines`,
    groupSlots: `${base}:gslots`,
    events: `${base}:events`,
    minutes: `${base}:minutes`,
    job: (id) => `${base}:job:${id}`,
    jobPrefix: `${base}:job:`,
  };
}

/** Throws a clear error unless `value` is a valid queue, task, group or prefix name. */
export function checkName(what: string, value: unknown, action = "Cannot create queue"): void {
  if (typeof value !== "string" || !NAME.test(value)) {
    throw new TypeError(
      `${action}: ${what} must be ${NAME_RULE}, got ${JSON.stringify(value) ?? String(value)}`,
    );
  }
}
