/**
 * Every queue under a key prefix (`listQueues`), and one queue's summary, for the CLI and the
 * dashboard.
 *
 * @module
 */
import type { Cluster, Redis } from "ioredis";
import { checkName, NAME, queueKeys } from "./keys.ts";
import { checkRedisConfig, DEFAULT_REDIS, type RedisConfig, share } from "./redis/connect.ts";
import { liveWorkers, type QueueStats, stats, type WorkerInfo } from "./stats.ts";
import { recordedLanes, STEP } from "./_scan.ts";
import { Queue, type QueueOptions } from "./queue.ts";

/** One queue, as `listQueues` finds it. */
export interface QueueSummary {
  /** The queue name. */
  name: string;
  /** Its counts by state, whether it is paused, and more: see `queue.stats()`. */
  stats: QueueStats;
  /** Its live workers: see `queue.workers()`. */
  workers: WorkerInfo[];
  /** Its priorities as recorded in Redis, lowest first (empty for one priority). */
  priorities: string[];
}

/** Options of {@linkcode listQueues}. */
export interface ListQueuesOptions {
  /** The key prefix the queues were made with. @default {"sluice"} */
  prefix?: string;
  /** The consumer group the counts are seen by. @default {"sluice"} */
  group?: string;
}

/**
 * Finds every queue under a key prefix, with SCAN (on Redis Cluster, a SCAN of every master),
 * and reports each one's counts, pause state and live workers. It walks every key in Redis in
 * steps of 1,000, so it takes about a second per million keys.
 *
 * @param redis Where Redis is: a URL, ioredis options or a cluster, as for `Queue`.
 * @param options `prefix` and `group`.
 * @returns The queues, by name.
 * @throws {TypeError} If the prefix, group or redis config is invalid.
 *
 * @example
 * ```ts
 * import { listQueues, Queue } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * await using queue = new Queue("mail", { redis: redis.url });
 * await queue.enqueue("welcome", 1);
 * const [mail] = await listQueues(redis.url);
 * console.log(mail?.name, mail?.stats.waiting, mail?.stats.paused); // "mail" 1 false
 * ```
 */
export async function listQueues(
  redis: RedisConfig = DEFAULT_REDIS,
  options: ListQueuesOptions = {},
): Promise<QueueSummary[]> {
  const action = "Cannot list queues";
  const { prefix = "sluice", group = "sluice" } = options;
  checkName("prefix", prefix, action);
  checkName("group", group, action);
  checkRedisConfig(action, redis);
  const shared = share(redis);
  try {
    const client = shared.command;
    const nodes = (client as unknown as { isCluster?: boolean }).isCluster
      ? (client as unknown as Cluster).nodes("master")
      : [client];
    const names = new Set<string>();
    const head = `${prefix}:{`;
    for (const node of nodes) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", `${prefix}:{*}:*`, "COUNT", STEP);
        cursor = String(next);
        for (const key of keys) {
          const end = key.indexOf("}:", head.length);
          if (key.startsWith(head) && end > head.length) names.add(key.slice(head.length, end));
        }
      } while (cursor !== "0");
    }
    const found = [...names].filter((name) => NAME.test(name)).sort();
    return await Promise.all(found.map((name) => describeQueue(client, name, prefix, group)));
  } finally {
    await shared.release();
  }
}

/** One queue's summary: its counts, pause state, live workers and recorded priorities. */
export async function describeQueue(
  client: Redis,
  name: string,
  prefix = "sluice",
  group = "sluice",
): Promise<QueueSummary> {
  const keys = queueKeys(name, prefix);
  const lanes = await recordedLanes(client, keys);
  const [counts, workers] = await Promise.all([
    stats(client, keys, group, lanes),
    liveWorkers(client, keys),
  ]);
  return { name, stats: counts, workers, priorities: [...lanes.names] };
}

/**
 * A queue handle for the admin tools: with the priorities recorded for the queue in Redis, so
 * that cancel, info and enqueue see every priority's stream whatever this process was told.
 */
export async function openQueue(
  client: Redis,
  name: string,
  options: QueueOptions & { prefix: string },
): Promise<Queue> {
  const lanes = await recordedLanes(client, queueKeys(name, options.prefix));
  return queueFor(name, lanes.names, options);
}

/** A queue handle with these recorded priorities (none: one priority). */
export function queueFor(
  name: string,
  priorities: readonly string[],
  options: QueueOptions,
): Queue {
  return new Queue(name, { ...options, ...(priorities.length > 0 ? { priorities } : {}) });
}
