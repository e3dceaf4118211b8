/**
 * Reads about a queue as a whole, for `queue.stats()` and the operator tools (CLI, dashboard)
 * built on the same calls. Every read is bounded: no KEYS, no unbounded ranges.
 *
 * @module
 */
import type { Redis } from "ioredis";
import { fieldsToRecord } from "./codec.ts";
import type { Keys } from "./keys.ts";

/** What `queue.stats()` returns. */
export interface QueueStats {
  /** In the stream, not yet delivered. */
  waiting: number;
  /** Delivered to a worker and not settled yet (prefetched or running). */
  active: number;
  /** Delayed jobs and scheduled retries. */
  delayed: number;
  /** Dead letters. */
  dead: number;
  /** Consumers in the group. */
  consumers: number;
  /** Consumers with a live heartbeat. */
  workers: number;
  /** Age of the oldest waiting job in ms, or null if none waits. */
  oldestWaitingMs: number | null;
  /** The group's lag as Redis reports it, or null when Redis cannot tell (after deletions). */
  lag: number | null;
  /** True while the queue is paused (`queue.pause()`): workers start no job until resumed. */
  paused: boolean;
}

/** Most undelivered entries `stats()` counts one by one when the group's lag is unknown. */
const WAITING_COUNT_CAP = 10_000;

/**
 * Counts a queue's jobs by state, as seen by consumer group `group`.
 *
 * @param client A connection to the queue's Redis.
 * @param keys The queue's keys.
 * @param group The consumer group.
 * @returns The counts; see {@linkcode QueueStats}.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { stats } from "./stats.ts";
 * import { queueKeys } from "./keys.ts";
 * import { Queue } from "./queue.ts";
 * import { startRedis } from "./testing.ts";
 * await using redis = await startRedis();
 * await using queue = new Queue("q", { redis: redis.url });
 * await queue.enqueue("t", 1);
 * const client = new Redis(redis.url);
 * console.log((await stats(client, queueKeys("q", "sluice"), "sluice")).waiting); // 1
 * await client.quit();
 * ```
 */
export async function stats(client: Redis, keys: Keys, group: string): Promise<QueueStats> {
  const { stream, delayed, dead, workers, paused } = keys;
  // Heartbeats are scored on Redis's clock: count live ones against it too.
  const [seconds, micros] = await client.time();
  const now = Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000);
  const [length, delayedCount, deadCount, live, pausedFlag, groups] = await Promise.all([
    client.xlen(stream),
    client.zcard(delayed),
    client.xlen(dead),
    client.zcount(workers, now, "+inf"),
    client.exists(paused),
    client.xinfo("GROUPS", stream).catch(() => []) as Promise<unknown[][]>,
  ]);
  const info = groups.map(fieldsToRecord).find((g) => g.name === group);
  const active = Number(info?.pending ?? 0);
  const lastDelivered = String(info?.["last-delivered-id"] ?? "0-0");
  const lag = info?.lag === null || info?.lag === undefined ? null : Number(info.lag);
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
  const oldestMs = ahead[0] ? Number(ahead[0][0].split("-")[0]) : undefined;
  const waiting = ahead.length <= WAITING_COUNT_CAP
    ? ahead.length
    : Math.max(ahead.length, lag ?? length - active);
  return {
    waiting,
    active,
    delayed: delayedCount,
    dead: deadCount,
    consumers: Number(info?.consumers ?? 0),
    workers: live,
    oldestWaitingMs: oldestMs === undefined ? null : Math.max(0, Date.now() - oldestMs),
    lag,
    paused: pausedFlag === 1,
  };
}
