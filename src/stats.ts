/**
 * Reads about a queue as a whole, for `queue.stats()` and the operator tools (CLI, dashboard)
 * built on the same calls. Every read is bounded: no KEYS, no unbounded ranges.
 *
 * @module
 */
import type { Redis } from "ioredis";
import { fieldsToRecord } from "./codec.ts";
import type { Keys } from "./keys.ts";
import type { Lanes } from "./priority.ts";

/** What `queue.stats()` returns. With priorities, each count is over every priority's stream. */
export interface QueueStats {
  /** In the stream, not yet delivered. */
  waiting: number;
  /**
   * On a queue with `priorities` only: `waiting` by priority name, every priority listed
   * (0 for an empty one).
   */
  waitingByPriority?: Record<string, number>;
  /** Delivered to a worker and not settled yet (prefetched or running). */
  active: number;
  /** Delayed jobs and scheduled retries. */
  delayed: number;
  /** Dead letters. */
  dead: number;
  /** Consumers in the group (with priorities: in the group of the stream that has most). */
  consumers: number;
  /** Consumers with a live heartbeat. */
  workers: number;
  /** Age of the oldest waiting job in ms, or null if none waits. */
  oldestWaitingMs: number | null;
  /**
   * The group's lag as Redis reports it, or null when Redis cannot tell (after deletions).
   * With priorities, the sum over the streams, null if Redis cannot tell for one that has
   * entries.
   */
  lag: number | null;
  /** True while the queue is paused (`queue.pause()`): workers start no job until resumed. */
  paused: boolean;
}

/** Redis's clock (TIME) in ms: what heartbeats, ticks and cutoffs are judged on. */
export async function redisNow(client: Redis): Promise<number> {
  const [seconds, micros] = await client.time();
  return Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000);
}

/** The most workers `liveWorkers` lists. */
const MAX_WORKERS = 10_000;

/** Most undelivered entries `stats()` counts one by one when the group's lag is unknown. */
const WAITING_COUNT_CAP = 10_000;

/** What one stream (one priority's) holds, as the group sees it. */
interface LaneCount {
  waiting: number;
  active: number;
  consumers: number;
  /** Undefined if the stream has no such group. */
  lag: number | null | undefined;
  length: number;
  /** Entry time of the oldest undelivered entry, ms. */
  oldest: number | undefined;
}

/**
 * Counts a queue's jobs by state, as seen by consumer group `group`.
 *
 * @param client A connection to the queue's Redis.
 * @param keys The queue's keys.
 * @param group The consumer group.
 * @param lanes The queue's priorities' streams (see `lanesOf` in priority.ts).
 * @returns The counts; see {@linkcode QueueStats}.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { stats } from "./stats.ts";
 * import { queueKeys } from "./keys.ts";
 * import { lanesOf } from "./priority.ts";
 * import { Queue } from "./queue.ts";
 * import { startRedis } from "./testing.ts";
 * await using redis = await startRedis();
 * await using queue = new Queue("q", { redis: redis.url });
 * await queue.enqueue("t", 1);
 * const client = new Redis(redis.url);
 * const keys = queueKeys("q", "sluice");
 * console.log((await stats(client, keys, "sluice", lanesOf("stats", keys))).waiting); // 1
 * await client.quit();
 * ```
 */
export async function stats(
  client: Redis,
  keys: Keys,
  group: string,
  lanes: Lanes,
): Promise<QueueStats> {
  const { delayed, dead, workers, paused } = keys;
  const { streams, names, labels } = lanes;
  // Heartbeats are scored on Redis's clock: count live ones against it too.
  const now = await redisNow(client);
  // Every stream's reads go out together: as many round trips as with one stream.
  const [delayedCount, deadCount, live, pausedFlag, ...counts] = await Promise.all([
    client.zcard(delayed),
    client.xlen(dead),
    client.zcount(workers, now, "+inf"),
    client.exists(paused),
    ...streams.map((stream) => count(client, stream, group)),
  ]);
  let waiting = 0, active = 0, consumers = 0, oldestMs: number | undefined;
  let lag: number | null = 0, seen = false;
  for (const lane of counts) {
    waiting += lane.waiting;
    active += lane.active;
    consumers = Math.max(consumers, lane.consumers);
    if (lane.oldest !== undefined) oldestMs = Math.min(oldestMs ?? Infinity, lane.oldest);
    // A stream with neither entries nor the group (a priority never used) adds nothing.
    if (lane.lag === undefined && lane.length === 0) continue;
    seen = true;
    lag = lag === null || lane.lag === null || lane.lag === undefined ? null : lag + lane.lag;
  }
  const result: QueueStats = {
    waiting,
    active,
    delayed: delayedCount,
    dead: deadCount,
    consumers,
    workers: live,
    oldestWaitingMs: oldestMs === undefined ? null : Math.max(0, Date.now() - oldestMs),
    lag: seen ? lag : null,
    paused: pausedFlag === 1,
  };
  if (names.length > 0) {
    const by: Record<string, number> = {};
    // Lowest first, as the queue lists them.
    for (let lane = counts.length - 1; lane >= 0; lane--) by[labels[lane]!] = counts[lane]!.waiting;
    result.waitingByPriority = by;
  }
  return result;
}

/** Counts one stream's jobs: two round trips, sent beside the other streams'. */
async function count(client: Redis, stream: string, group: string): Promise<LaneCount> {
  const [length, groups] = await Promise.all([
    client.xlen(stream),
    client.xinfo("GROUPS", stream).catch(() => []) as Promise<unknown[][]>,
  ]);
  const info = groups.map(fieldsToRecord).find((g) => g.name === group);
  const active = Number(info?.pending ?? 0);
  const lastDelivered = String(info?.["last-delivered-id"] ?? "0-0");
  const lag = info === undefined
    ? undefined
    : info.lag === null || info.lag === undefined
    ? null
    : Number(info.lag);
  // Finished entries linger in the stream until it is trimmed past them, so its length
  // overcounts. The undelivered entries are counted one by one, up to a cap; past it, the
  // group's lag (Redis 7.0 to 7.2 overstate it once an entry ahead of the group was deleted,
  // as a cancel does) or else the length bound the count.
  const ahead = await client.xrange(
    stream,
    `(${lastDelivered}`,
    "+",
    "COUNT",
    WAITING_COUNT_CAP + 1,
  );
  const oldest = ahead[0] ? Number(ahead[0][0].split("-")[0]) : undefined;
  const waiting = ahead.length <= WAITING_COUNT_CAP
    ? ahead.length
    : Math.max(ahead.length, lag ?? length - active);
  return { waiting, active, consumers: Number(info?.consumers ?? 0), lag, length, oldest };
}

/** A live worker (or `consume()` stream) of a queue, from its heartbeat record. */
export interface WorkerInfo {
  /** Its consumer name in the group. */
  id: string;
  /** The machine it runs on, if it could read its hostname. */
  host?: string;
  /** Its process id. */
  pid?: number;
  /** The sluice version it runs. */
  version?: string;
  /** When it started (epoch ms, its clock). */
  startedAt?: number;
  /** Its `concurrency` (a Worker's; a `consume()` stream has none). */
  concurrency?: number;
  /** Handlers running at its last heartbeat. */
  running?: number;
  /** Jobs it held at its last heartbeat: running, and read ahead. */
  held?: number;
  /** Jobs that reached an outcome in it since it started. */
  processed?: number;
  /** Of those, the ones that failed (retried or dead-lettered). */
  failed?: number;
  /** Its last heartbeat (epoch ms, its clock). */
  heartbeatAt?: number;
  /** When its heartbeat runs out unless renewed (epoch ms, Redis's clock). */
  expiresAt: number;
}

/**
 * The live workers of a queue: those whose heartbeat has not run out, with their records (a
 * worker of a version before the registry has its id and expiry only), in one MULTI. At most
 * 10,000 are listed; the records are read whole (one per live or lately dead worker).
 *
 * @param client A connection to the queue's Redis.
 * @param keys The queue's keys.
 * @returns The live workers, soonest to expire first.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { liveWorkers } from "./stats.ts";
 * import { queueKeys } from "./keys.ts";
 * import { startRedis } from "./testing.ts";
 * await using redis = await startRedis();
 * const client = new Redis(redis.url);
 * console.log(await liveWorkers(client, queueKeys("q", "sluice"))); // []
 * await client.quit();
 * ```
 */
export async function liveWorkers(client: Redis, keys: Keys): Promise<WorkerInfo[]> {
  const now = await redisNow(client);
  // One MULTI, so that a worker stopping meanwhile is either listed with its record or not.
  const replies = await client.multi()
    .zrangebyscore(keys.workers, now, "+inf", "WITHSCORES", "LIMIT", 0, MAX_WORKERS)
    .hgetall(keys.registry)
    .exec();
  const flat = (replies?.[0]?.[1] ?? []) as string[];
  const records = (replies?.[1]?.[1] ?? {}) as Record<string, string>;
  const out: WorkerInfo[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const id = flat[i]!, expiresAt = Number(flat[i + 1]);
    let record: Record<string, unknown> = {};
    try {
      const parsed = JSON.parse(records[id] ?? "{}");
      if (typeof parsed === "object" && parsed !== null) record = parsed;
    } catch {
      // A record that is not JSON (written by hand): the id and expiry still tell.
    }
    out.push({ ...record, id, expiresAt } as WorkerInfo);
  }
  return out;
}
